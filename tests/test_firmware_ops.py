"""Op-level conformance: the firmware's kernels on the MicroPython unix port equal the
simulator's ops, value for value (qgpt/conformance.py), and a mismatch fails loudly.

The firmware's tables and constants are read from its source with ast: no viper
code is imported into CPython.
"""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from qgpt import conformance as cf
from qgpt import int_model, int_ops, params, policy, prng, qformat

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
            "doc_index", "policy"} <= ops_run
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


def test_no_intermediate_leaves_int32():
    # the firmware run by CPython with every viper +, -, *, <<, >>, // checked: what the
    # x86-64 unix port cannot show. The extremes of the grid: q12.4 and q2.14.
    report = cf.run_ops(("q12.4", "q2.14"), target="int32")
    assert report.ok, _report_text(report)
    assert "32-bit viper" in report.device


@pytest.mark.slow
def test_no_intermediate_leaves_int32_in_any_format():
    report = cf.run_ops(cf.FORMATS, target="int32")
    assert report.ok, _report_text(report)


def test_the_int32_target_catches_what_the_unix_port_cannot(tmp_path):
    # Adam's rnd(g, P - 14) written as (g + half) >> s overflows int32 for g near
    # 2**31: equal results on the 64-bit unix port, an error on the int32 target
    fw = tmp_path / "firmware"
    shutil.copytree(FIRMWARE, fw)
    src = (fw / "kernels.py").read_text()
    safe = "gs = (gi >> gs_rs) + ((gi >> (gs_rs - 1)) & 1)"
    assert safe in src
    (fw / "kernels.py").write_text(src.replace(safe, "gs = (gi + (1 << (gs_rs - 1))) >> gs_rs"))
    cases = {"q4.12": [c for c in cf.build_cases("q4.12")
                       if c.op == "adam_update" and c.name.startswith("edges")][:1]}
    assert cf.run_ops(cases=cases, firmware_dir=fw).ok
    report = cf.run_ops(cases=cases, firmware_dir=fw, target="int32")
    assert not report.ok
    msg = str(report.mismatches[0])
    assert "Int32Overflow" in msg and "kernels.py" in msg and "adam_update" in msg


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_other_seeds_and_the_ports_own_compiler(seed):
    report = cf.run_ops(cf.FORMATS, seed=seed, build="py" if seed == 3 else "mpy")
    assert report.ok, _report_text(report)


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
    report = cf.run_ops(cases={cf.NO_FORMAT: cf.build_cases(cf.NO_FORMAT)[:2]},
                        micropython=str(tmp_path / "no-micropython"))
    assert report.exit_code == 1 and "no-micropython" in str(report.mismatches[0])


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
    assert (loss["LN2_Q15"], loss["LN2_Q16"]) == (int_ops.LN2_Q15, int_ops.LN2_Q16)


def test_constants_equal_the_simulators():
    k = _module_values(FIRMWARE / "kernels.py")
    assert k["_LOG2E_Q14"] == int_ops.LOG2E_Q14
    assert k["_EXP_ZERO_BELOW"] == int_ops.EXP_ZERO_BELOW
    assert k["_PROB_ONE"] == int_ops.PROB_ONE
    assert (k["_G_LO"], k["_G_HI"]) == (policy.GRAD.lo, policy.GRAD.hi)
    assert (k["_ADAM_C1"], k["_ADAM_C2"]) == (policy.ADAM_C1, policy.ADAM_C2)
    assert (k["_ADAM_K1"], k["_ADAM_K2"]) == (2**15 - policy.ADAM_C1, 2**15 - policy.ADAM_C2)
    assert k["_M_LIMIT"] == int_model.IntAdam.M_LIMIT
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
    assert pol["ROUNDINGS"] == qformat.ROUNDINGS
    a = _module_values(FIRMWARE / "adam.py")
    assert (a["ADAM_C1"], a["ADAM_C2"]) == (policy.ADAM_C1, policy.ADAM_C2)


def test_parameter_table_equals_the_simulators():
    fw = _module_values(FIRMWARE / "params.py")
    assert fw["PARAMS"] == params.PARAMS
    assert fw["N_PARAMS"] == params.N_PARAMS
    for name in ("VOCAB", "BOS", "BLOCK", "N_EMBD", "N_HEAD", "HEAD_DIM", "MLP_HIDDEN"):
        assert fw[name] == getattr(params, name), name
