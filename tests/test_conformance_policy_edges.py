"""The op level's edge policies (qgpt/conformance/policy_edge_cases.py): they reach the
branches a per-class policy opens (8-bit containers, shifts of both signs, 0 and 1,
every update rounding), their cases equal the simulator on the device, and a kernel
wrong only in such a branch, which the formats' cases cannot see, is caught."""


from firmware_edit import edited_firmware

from qgpt import conformance as cf
from qgpt.conformance.policy_edge_cases import (
    EDGE_POLICIES,
    OVERFLOW_POLICY,
    edge_policy_groups,
    overflow_edge_cases,
)
from qgpt.policy import UPDATE_ROUNDINGS, container_bytes, parse_policy


def _policies():
    return [parse_policy(spec, lr=lr or 0.01) for spec, lr in EDGE_POLICIES]


def test_the_edge_policies_reach_every_sign_of_every_shift_and_every_container():
    ps = _policies()
    for name in ("embed_shift", "embed_back_shift", "gm_shift", "gs_shift"):
        got = {p.shifts()[name] for p in ps}
        assert min(got) < 0 and {0, 1} <= got and max(got) > 1, (name, sorted(got))
    es = {p.adam_e for p in ps}  # Adam's clamp test: a << e against den << 15
    assert {15, 16} <= es and min(es) < 15 and max(es) > 16, sorted(es)
    assert {p.rounding for p in ps} == set(UPDATE_ROUNDINGS)
    assert {p.update_shift for p in ps} >= {0, 13}  # no rounding at all; kahan's smallest
    for cls in ("weights", "acts", "grads"):
        assert {container_bytes(getattr(p, cls)) for p in ps} == {1, 2}, cls
    for cls in ("adam_m", "adam_v", "weight_store"):
        assert {container_bytes(getattr(p, cls)) for p in ps} == {1, 2, 4}, cls
    assert max(p.lm_head_shift for p in ps) >= 16 and max(p.dw_shift for p in ps) >= 16


def test_ln_tables_cases_read_every_entry_with_one_position():
    cases = edge_policy_groups()["ln table"]
    entries = {int(c.name.split()[3].rstrip(",")) for c in cases}
    assert entries == set(range(64))
    assert all(c.params["T"] == 1 and c.inputs["logits"][1].shape == (1, 27) for c in cases)


def test_the_int32_edge_sums_sit_just_below_the_limit():
    p = parse_policy(OVERFLOW_POLICY)
    groups = overflow_edge_cases()
    fwd, bwd, accumulated = next(g for label, g in groups.items()
                                 if label.startswith("weights=q12.4"))
    x, w = fwd.inputs["x"][1], fwd.inputs["w"][1]
    s = p.weights.frac_bits  # the linear layer's shift (into acts)
    sums = x @ w.T
    assert {int(v) for v in sums[0, :8]} == {2**(31 + s) - k for k in range(1, 9)}
    dy, xb, wb = (bwd.inputs[k][1] for k in ("dy", "x", "w"))
    assert {int(v) for v in (dy @ wb)[0]} == {2**(31 + s) - k for k in range(1, 17)}
    dw_shift = p.dw_shift
    assert int((dy.T @ xb)[40, 0]) == 2**(31 + dw_shift) - 1
    dy, xb = accumulated.inputs["dy"][1], accumulated.inputs["x"][1]
    lim_w = 1 << (14 + dw_shift)  # hh = S >> 16 one below -lim_w
    assert int((dy.T @ xb)[0, 0]) >> 16 == -lim_w - 1
    assert accumulated.inputs["dw"][1].min() > 0


def test_the_edge_cases_equal_the_simulator_on_the_device():
    report = cf.run_ops((), cases=edge_policy_groups())
    assert report.ok, report.summary() + "\n" + "\n".join(map(str, report.mismatches[:20]))


def test_a_wrong_8_bit_sign_extension_is_caught_only_by_an_edge_policy(tmp_path):
    # embedding_backward's int8 load of dx with 0x7F for 0x80: no format has 8-bit
    # gradients, the edge policies with grads=q2.6, q4.4 and q1.7 do
    fw = edited_firmware(tmp_path, "d = (pdx8[i] ^ 0x80) - 0x80",
                  "d = (pdx8[i] ^ 0x80) - 0x7F")
    formats = {f: [c for c in cf.build_cases(f) if c.op == "embedding_backward"]
               for f in ("q4.12", "q8.8", "q1.15")}
    assert cf.run_ops(cases=formats, firmware_dir=fw).ok  # what conformance had
    groups = {g: [c for c in cases if c.op == "embedding_backward"]
              for g, cases in edge_policy_groups().items()}
    report = cf.run_ops(cases={g: c for g, c in groups.items() if c}, firmware_dir=fw)
    assert not report.ok
    assert {m.op for m in report.mismatches} == {"embedding_backward"}
    eight_bit = {c.fmt for cases in groups.values() for c in cases
                 if c.inputs["dx"][0] == "b"}
    assert {m.fmt for m in report.mismatches} == eight_bit


def test_a_shift_of_one_taken_for_none_is_caught_at_the_ops_level(tmp_path):
    # Adam's g -> m rounding skipped when Fp - Fm = 1 (sh_m > 1 for sh_m > 0): only the
    # edge policy with every shift 1 has it, and adam_model_cases.py's sh_m = 1 group
    fw = edited_firmware(tmp_path, "if sh_m > 0:  # within +-2**30 as g is",
                  "if sh_m > 1:  # within +-2**30 as g is")
    groups = {g: [c for c in cases if c.op == "adam_update"]
              for g, cases in edge_policy_groups().items()}
    report = cf.run_ops(cases={g: c for g, c in groups.items() if c}, firmware_dir=fw)
    assert not report.ok
    assert {m.op for m in report.mismatches} == {"adam_update"}
    assert all("pgrads=q3.13" in m.fmt or "adam_m=q12.20,adam sh_m" in m.fmt
               for m in report.mismatches)
    assert {m.tensor for m in report.mismatches} <= {"m", "store", "stalled"}
