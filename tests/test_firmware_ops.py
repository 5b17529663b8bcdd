"""Op-level conformance: the firmware's kernels on the MicroPython unix port equal the
simulator's ops, value for value (qgpt/conformance/), and a mismatch fails loudly.

The firmware's tables and constants are read from its source with ast: no viper
code is imported into CPython.
"""

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from firmware_edit import edited_firmware

from qgpt import conformance as cf
from qgpt import int_ops, params, policy, prng, qformat

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE = ROOT / "firmware"


def _report_text(report):
    return report.summary() + "\n" + "\n".join(str(m) for m in report.mismatches[:30])


def test_every_op_in_every_format_equals_the_simulator():
    report = cf.run_ops(cf.FORMATS, seed=0)
    assert report.ok, _report_text(report)
    ops_run = {c.op for c in report.cases}
    assert {"linear_forward", "linear_backward", "rmsnorm_forward", "rmsnorm_backward",
            "attention_forward", "attention_backward", "cross_entropy_forward",
            "cross_entropy_backward", "embedding_forward", "embedding_backward", "add_forward",
            "relu_forward", "relu_backward", "exp_neg", "softmax", "isqrt", "rsqrt",
            "adam_update", "adam_scalars", "loss_q16", "hash30", "key", "init", "permute",
            "doc_index", "policy", "next_token"} <= ops_run
    assert {c.fmt for c in report.cases} == {cf.NO_FORMAT, *cf.FORMATS}
    assert sum(report.values.values()) > 400_000
    assert report.heap_free_min is not None and report.heap_free_min > 0  # ran in 96 KB


def test_cases_cover_the_edges():
    cases = cf.build_cases("q4.12")
    names = {(c.op, c.name) for c in cases}
    for op in ("linear_forward", "linear_backward"):
        for dims in ("16->16", "16->64", "64->16", "16->27"):
            for kind in ("random T=16", "random T=1", "full range", "limits", "ties"):
                assert (op, f"{dims} {kind}") in names
    for kind in ("all equal scores", "one-hot rows", "random T=1", "random T=16", "limits"):
        assert ("attention_forward", kind) in names
    for kind in ("all equal", "one-hot, target hot", "one-hot, target cold", "random T=1"):
        assert ("cross_entropy_backward", kind) in names
    adam = [c.name for c in cases if c.op == "adam_update"]
    for rounding in ("nearest", "floor", "stochastic"):
        assert sum(rounding in n and "master q4.20" in n for n in adam) == 3
        assert sum(rounding in n and "no master" in n for n in adam) == 3
    # the edge cases saturate: some golden outputs sit on the format's limits
    lf = [c for c in cases if c.op == "linear_forward" and c.name == "16->16 limits"][0]
    d = policy.make_policy("q4.12").data
    assert {d.lo, d.hi} <= set(lf.expected["y"][1].ravel().tolist())


def test_no_intermediate_leaves_int32_in_any_format():
    # the firmware run by CPython with every viper +, -, *, <<, >>, // checked: what the
    # x86-64 unix port cannot show; every format and edge (without the exhaustive exp
    # domains, whose extremes the edge cases hold)
    report = cf.run_ops(cf.FORMATS, target="int32")
    assert report.ok, _report_text(report)
    assert "32-bit viper" in report.device
    assert {c.fmt for c in report.cases} == {cf.NO_FORMAT, *cf.FORMATS}


def test_every_format_qgpt_lists_and_the_edges_are_tested():
    from qgpt.policy import make_policy
    from qgpt.qformat import USEFUL

    assert set(USEFUL) <= set(cf.FORMATS)
    edges = {f: make_policy(f, "nearest", cf.ops_master(f)) for f in cf.FORMATS}
    assert any(p.data.frac_bits == 15 for p in edges.values())  # F = 15
    assert any(p.data.frac_bits <= 1 for p in edges.values())  # F <= 1
    assert {27 - p.pgrad_frac for p in edges.values()} >= {14, 15}  # Adam's shift e
    assert any(p.pgrad_frac < 14 for p in edges.values())  # embedding_backward's >> path
    masters = {c.name.split("master ")[1] for c in cf.build_cases("q4.12")
               if c.op == "adam_update" and "master " in c.name}
    assert "q4.27" in masters  # a 31-bit master


def test_exp_neg_is_tested_on_its_whole_domain():
    # F <= 12: every z of [-(16 << F) - 1, 0]; F > 12: every z12 with both ends of
    # the z that round to it (the tie rounds up)
    for fmt in ("q4.12", "q8.8", "q12.0"):
        F = qformat.parse(fmt).frac_bits
        z = np.concatenate([c.inputs["z"][1] for c in cf.build_cases(fmt)
                            if c.op == "exp_neg"])
        assert set(range(-(16 << F) - 1, 1)) <= set(z.tolist()), fmt
    z = set(np.concatenate([c.inputs["z"][1] for c in cf.build_cases("q2.14")
                            if c.op == "exp_neg"]).tolist())
    for z12 in range(-(16 << 12), 0):
        assert {4 * z12 - 2, 4 * z12 + 1} <= z, z12
    assert {-2, -1, 0} <= z and max(z) == 0  # z12 = 0: the domain ends at z = 0
    rows = [c for c in cf.build_cases("q4.12") if c.op == "softmax" and "every d" in c.name]
    d = np.concatenate([c.inputs["z"][1][:, 1] for c in rows])
    assert set(range(-(16 << 12) - 1, 1)) - set(d.tolist()) <= {-(16 << 12) - 1, 0}


def test_softmax_normalisation_ties_are_constructed():
    # each row named a tie has an element whose (e << 15) mod S sits where the half's
    # +-1 flips the quotient; checked here with Python's ints from exp_neg's goldens
    for fmt in ("q4.12", "q2.14"):
        ties = [c for c in cf.build_cases(fmt) if "normalisation tie" in c.name]
        kinds = {c.name.split(": ")[1].split(",")[0] for c in ties}
        assert {"half+1 flips", "beside a tie"} <= kinds
        for c in ties:
            n = c.params["n"]
            for row, S in zip(c.inputs["z"][1], c.expected["S"][1], strict=True):
                e = int_ops.exp_neg(row - row.max(), qformat.parse(fmt).frac_bits)
                assert int(e.sum()) == S
                rems = {(int(x) << 15) % int(S) - (int(S) - (int(S) >> 1)) for x in e}
                want = {"half-1 flips": 0, "half+1 flips": -1, "beside a tie": 1}
                assert want[c.name.split(": ")[1].split(",")[0]] in rems, (fmt, n, row)


@pytest.mark.parametrize("wrong", ["(total >> 1) - 1", "(total + 1) >> 1"])
def test_a_wrong_rounding_in_softmax_is_caught_at_the_ops_level(tmp_path, wrong):
    # softmax's normalisation p = ((e << 15) + S/2) // S with the half off by one: the
    # random rows never sit on its ties, the constructed ones do
    good = "    bias = (total >> 1) - total\n"  # the half S/2, less S (kernels.py, softmax)
    fw = edited_firmware(tmp_path, good, f"    bias = ({wrong}) - total\n")
    cases = {f: [c for c in cf.build_cases(f) if c.op == "softmax"]
             for f in ("q4.12", "q8.8", "q2.14")}
    random_only = {f: [c for c in group if "tie" not in c.name and "every d" not in c.name]
                   for f, group in cases.items()}
    assert cf.run_ops(cases=random_only, firmware_dir=fw).ok  # what conformance had
    report = cf.run_ops(cases=cases, firmware_dir=fw)
    assert not report.ok
    assert {m.op for m in report.mismatches} == {"softmax"}
    assert all("normalisation tie" in m.case and m.tensor == "p" for m in report.mismatches)


def test_the_exp_interpolations_rounding_constant_is_equivalent_everywhere():
    # the mutants 2**14 -> 2**14 +- 1 of exp's interpolation survive every case: over
    # every z12 of the domain (docs/arithmetic.md, section 5, in Python's ints) the
    # interpolation's ties exist, but the final rnd(val, -ip) absorbs each of them
    table = int_ops.EXP2_TABLE
    ties, changed = 0, 0
    for z12 in range(-(16 << 12) + 1, 1):
        w = z12 * 23637
        ip = w >> 26
        fr = w - (ip << 26)
        idx, rem = fr >> 20, (fr & (2**20 - 1)) >> 5
        x = (table[idx + 1] - table[idx]) * rem
        results = set()
        for half in (2**14 - 1, 2**14, 2**14 + 1):
            val = table[idx] + ((x + half) >> 15)
            results.add((val + (1 << (-ip - 1))) >> -ip if ip < 0 else val)
        ties += x % 2**15 in (2**14, 2**14 - 1)
        changed += len(results) > 1
    assert ties > 0 and changed == 0


# --- a mismatch is reported, and fails the run ---


def test_a_corrupted_golden_value_is_reported():
    cases = {"q4.12": [c for c in cf.build_cases("q4.12") if c.op == "linear_forward"]}
    fmt, case, tensor, j = cf.corrupt_one(cases, "linear_forward")
    report = cf.run_ops(cases=cases)
    assert report.exit_code == 1 and len(report.mismatches) == 1
    m = report.mismatches[0]
    c = cases[fmt][0]
    want = c.expected[tensor][1]
    assert (m.level, m.op, m.fmt, m.case, m.tensor) == ("ops", "linear_forward", "q4.12", case,
                                                        tensor)
    assert m.index == tuple(int(i) for i in np.unravel_index(j, want.shape))
    assert m.simulator == want.flat[j] and m.device == want.flat[j] - 1
    text = str(m)
    assert text.startswith("ops linear_forward q4.12 [") and f"device {m.device}" in text
    assert f"simulator {m.simulator}" in text and "FAIL (1)" in report.summary()


def test_the_command_exits_non_zero_on_a_mismatch():
    r = subprocess.run([sys.executable, "-m", "qgpt.conformance", "--formats", "q8.8",
                        "--corrupt", "attention_backward"], capture_output=True, text=True,
                       cwd=ROOT)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "ops attention_backward q8.8 [" in r.stdout
    assert "device" in r.stdout and "!= simulator" in r.stdout
    assert "attention_backward" in r.stdout.split("level ops")[0]  # its summary row fails


def test_a_device_error_is_reported():
    good = cf.build_cases(cf.NO_FORMAT)[:1]
    bad = cf.Case("no_such_op", cf.NO_FORMAT, "unknown op", None, {}, {},
                  {"y": ("i", np.array([1]))})
    report = cf.run_ops(cases={cf.NO_FORMAT: [bad] + good})
    assert report.exit_code == 1
    assert len(report.mismatches) == 1 and report.mismatches[0].op == "no_such_op"
    assert "KeyError" in str(report.mismatches[0])
    assert report.values[cf.NO_FORMAT] > 1  # the case after the failed one still ran


def test_a_missing_micropython_is_reported(tmp_path):
    with pytest.raises(cf.SetupError, match="no-micropython: cannot run it"):
        cf.run_ops(cases={cf.NO_FORMAT: cf.build_cases(cf.NO_FORMAT)[:2]},
                   micropython=str(tmp_path / "no-micropython"))


# --- the firmware's tables and constants are the simulator's ---


def _module_values(path):
    """Module-level NAME = expression of a firmware file, evaluated over the literals and
    earlier names only (const(x) is x, array(tc, x) is x)."""
    values = {"const": lambda x: x, "array": lambda tc, x: x}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            try:
                values[node.targets[0].id] = eval(compile(ast.Expression(node.value), path.name,
                                                          "eval"), {"__builtins__": {}}, values)
            except (NameError, TypeError, AttributeError):
                pass  # not a constant of the module
    return values


def test_tables_equal_the_simulators():
    k = _module_values(FIRMWARE / "kernels.py")
    assert list(k["EXP2_Q15"]) == int_ops.EXP2_TABLE.tolist()
    assert list(k["EXP2_Q15"]) == [round(2 ** (i / 64) * 2**15) for i in range(65)]
    loss = _module_values(FIRMWARE / "loss.py")
    assert list(loss["LOG2_Q16"]) == int_ops.LOG2_TABLE
    assert (loss["_LN2_Q15"], loss["_LN2_Q16"]) == (int_ops.LN2_Q15, int_ops.LN2_Q16)


def test_constants_equal_the_simulators():
    k = _module_values(FIRMWARE / "kernels.py")
    assert k["_LOG2E_Q14"] == int_ops.LOG2E_Q14
    assert k["_EXP_ZERO_BELOW"] == int_ops.EXP_ZERO_BELOW
    assert k["PROB_ONE"] == int_ops.PROB_ONE
    assert (k["_G_LO"], k["_G_HI"]) == (policy.GRAD.lo, policy.GRAD.hi)
    assert (k["_ADAM_C1"], k["_ADAM_C2"]) == (policy.ADAM_C1, policy.ADAM_C2)
    assert (k["_ADAM_K1"], k["_ADAM_K2"]) == (2**15 - policy.ADAM_C1, 2**15 - policy.ADAM_C2)
    assert k["_M_LIMIT"] == policy.M_LIMIT
    assert k["_R_MAX"] == policy.R_MAX << policy.R_FRAC
    assert k["_DS_SHIFT"] == policy.PROB_FRAC + 1
    assert (k["_M30"], k["_HASH_MUL"]) == (prng.M30, prng.HASH_MUL)
    p = _module_values(FIRMWARE / "prng.py")
    assert (p["M30"], p["_HASH_MUL"]) == (prng.M30, prng.HASH_MUL)
    assert [p[f"STREAM_{s}"] for s in ("INIT", "DATA", "ROUND", "SAMPLE")] == [
        prng.STREAM_INIT, prng.STREAM_DATA, prng.STREAM_ROUND, prng.STREAM_SAMPLE]
    assert p["_INIT_DRAWS"] == prng.INIT_DRAWS and p["_INIT_STD_Q16"] == prng.INIT_STD_Q
    assert p["INIT_FRAC"] == prng.INIT_FRAC
    assert p["_INIT_OFFSET"] == prng.INIT_DRAWS << (prng.INIT_UNIFORM_BITS - 1)
    assert p["_INIT_DRAW_SHIFT"] == 30 - prng.INIT_UNIFORM_BITS
    pol = _module_values(FIRMWARE / "policy.py")
    assert (pol["GRAD_LO"], pol["GRAD_HI"], pol["GRAD_FRAC"]) == (
        policy.GRAD.lo, policy.GRAD.hi, policy.GRAD.frac_bits)
    assert (pol["PROB_FRAC"], pol["V_FRAC"], pol["GS_FRAC"], pol["R_FRAC"]) == (
        policy.PROB_FRAC, policy.V_FRAC, policy.GS_FRAC, policy.R_FRAC)
    assert pol["LOGIT_EXTRA_BITS"] == policy.LOGIT_EXTRA_BITS and pol["BLOCK"] == params.BLOCK
    assert pol["ROUNDINGS"] == policy.UPDATE_ROUNDINGS  # 9.5 and 9.6: five modes
    a = _module_values(FIRMWARE / "adam.py")
    assert (a["_ADAM_C1"], a["_ADAM_C2"]) == (policy.ADAM_C1, policy.ADAM_C2)


def test_parameter_table_equals_the_simulators():
    fw = _module_values(FIRMWARE / "params.py")
    assert fw["PARAMS"] == params.PARAMS
    assert fw["N_PARAMS"] == params.N_PARAMS
    for name in ("VOCAB", "BOS", "BLOCK", "N_EMBD", "N_HEAD", "HEAD_DIM", "MLP_HIDDEN"):
        assert fw[name] == getattr(params, name), name
