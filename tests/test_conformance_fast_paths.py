"""The golden cases on the speed work's thresholds (qgpt/conformance/fast_path_cases.py):
they sit where they say, and a fast path without its bound is caught on the int32 target
(the 64-bit unix port computes the same integers and cannot see it)."""

import math

import numpy as np
from firmware_edit import edited_firmware

from qgpt import conformance as cf
from qgpt.conformance.fast_path_cases import FIT, fast_path_groups

GROUP = "weights=q4.12,acts=q4.12,fast path int32 edge"


def assert_caught_only_on_int32(fw, groups, op):
    """The 64-bit port computes the same integers; the int32 target finds op wrong."""
    assert cf.run_ops(cases=groups, firmware_dir=fw).ok
    report = cf.run_ops(cases=groups, firmware_dir=fw, target="int32")
    assert not report.ok
    assert all(m.op == op for m in report.mismatches)


def test_the_linear_cases_meet_the_fast_paths_bound_exactly():
    cases = [c for c in fast_path_groups()[GROUP] if c.op == "linear_forward" and "max" in c.name]
    assert cases
    for c in cases:
        x, w = c.inputs["x"][1], c.inputs["w"][1]
        top = int(np.abs(w).max())
        l1 = np.abs(x).sum(axis=1)
        assert {FIT // top, FIT // top + 1, (2**31 - 1) // top} <= set(l1.tolist()), c.name
        # rows 0 and 1 of W are +-max everywhere and each x row has one sign: |S| = L1 * max
        assert np.array_equal(np.abs(x @ w[:2].T), np.stack([l1 * top] * 2, axis=1)), c.name


def test_adam_v_lands_on_the_isqrt_thresholds():
    label = "weights=q4.12,acts=q4.12,isqrt int32 edge"
    v = np.concatenate([c.expected["v"][1] for c in fast_path_groups()[label]])
    assert {0, 1, 255, 256, 257, 64 << 20, 96 << 10, 192 << 16, 1 << 20} <= set(v.tolist())


def test_a_fast_path_without_its_bound_is_caught_only_on_the_int32_target(tmp_path):
    # linear_forward's bound twice as wide (2**31 - 1, built within int32): rows with L1 *
    # max up to int32's limit take the fast path, whose rounding then leaves int32 (an L1
    # taken as x, not |x|, is caught on both targets: its rounded bound skips saturation)
    fw = edited_firmware(tmp_path, "l1_max = ((one << 30) - 1) // wmax if",
                         "l1_max = ((one << 30) - 1 + (one << 30)) // wmax if")
    group = {GROUP: [c for c in fast_path_groups()[GROUP] if c.op == "linear_forward"]}
    assert_caught_only_on_int32(fw, group, "linear_forward")


ADAM_GROUP = "weights=q4.12,acts=q4.12,adam unsplit int32 edge"


def test_adam_cases_sit_on_the_unsplit_bounds():
    cases = fast_path_groups()[ADAM_GROUP]
    m = np.concatenate([c.inputs["m"][1] for c in cases])
    g = np.concatenate([c.inputs["g"][1] for c in cases])
    v = np.concatenate([c.inputs["v"][1] for c in cases])
    b = 1 << 18
    assert {-b - 1, -b, b - 1, b} <= set(m.tolist()) & set(g.tolist())
    assert {(1 << 22) - 1, 1 << 22} <= set(v.tolist())
    # the extremes of the unsplit path: m = g = -2**18 gives m = -2**18 exactly
    assert any(mi == gi == -b for mi, gi in zip(m.tolist(), g.tolist(), strict=True))


def test_adams_unsplit_bound_widened_is_caught_only_on_the_int32_target(tmp_path):
    # v's bound 2**22 widened to 2**23: v * C2 leaves int32 at v = 2**23 - 1
    fw = edited_firmware(tmp_path, "| (vi >> 3) |", "| (vi >> 4) |")
    assert_caught_only_on_int32(fw, {ADAM_GROUP: fast_path_groups()[ADAM_GROUP]},
                                "adam_update")


def test_adam_ratio_cases_sit_on_the_quotients_bound():
    from qgpt.conformance.fast_path_cases import ADAM_RATIO_POLICIES
    from qgpt.policy import parse_policy

    groups = fast_path_groups()
    for spec in ADAM_RATIO_POLICIES:
        p = parse_policy(spec)
        (case,) = groups[p.short_spec + ",adam ratio int32 edge"]
        m, v = case.expected["m"][1], case.expected["v"][1]
        for lim in (((1 << 30) - (1 << 14)) >> p.adam_e, (1 << 30) >> p.adam_e):
            assert {lim - 1, lim, lim + 1, -lim - 1, -lim, 1 - lim} <= set(m.tolist()), spec
        dens = {math.isqrt(x) + 1 for x in v.tolist()}
        assert dens == {2**15 - 1, 2**15, 2**15 + 1, 1, 2**10}, spec


def test_adams_ratio_bound_widened_is_caught_only_on_the_int32_target(tmp_path):
    # the bound before (2**30 >> e): (a << e) + den/2 leaves +-2**30 at a = 2**30 >> e
    fw = edited_firmware(tmp_path, "a_lim = (big - (1 << 14)) >> e", "a_lim = big >> e")
    label = "weights=q4.12,acts=q4.12,adam ratio int32 edge"
    assert_caught_only_on_int32(fw, {label: fast_path_groups()[label]}, "adam_update")


def _slow_groups():
    from qgpt.conformance.fast_path_cases import ADAM_SLOW_POLICIES
    from qgpt.policy import parse_policy

    groups = fast_path_groups()
    out = {}
    for spec in ADAM_SLOW_POLICIES:
        p = parse_policy(spec)
        label = p.short_spec + ",adam ratio int32 edge"
        out[label] = (p, groups[label])
    return out


def test_adam_slow_ratio_cases_sit_on_the_clamps_threshold():
    # above the bound a_lim: |m| at the least a with a * 2**e >= den * 2**15 and beside
    # it, and a step whose alpha moves d with every unit of r
    es = set()
    for label, (p, (case,)) in _slow_groups().items():
        e = p.adam_e
        es.add(e)
        a_lim = ((1 << 30) - (1 << 14)) >> e
        m, v = case.expected["m"][1].tolist(), case.expected["v"][1].tolist()
        dens = [math.isqrt(x) + 1 for x in v]
        assert set(dens) == {2**15 - 1, 2**15, 2**15 + 1}, label
        assert all(abs(x) > a_lim for x in m), label
        for den in set(dens):
            t = -(-(den << 15) >> e)
            got = {abs(x) for x, d in zip(m, dens, strict=True) if d == den}
            assert {x for x in (t, t + 1) if x > a_lim} <= got, (label, den)
            assert t - 1 in got or t - 1 <= a_lim, (label, den)  # unless not above the bound
            assert a_lim + 1 in got, (label, den)
        assert case.expected["alpha"] >= 1 << p.update_shift, label
    assert min(es) <= 5 and {15, 16, 19} <= es  # the test's two forms, e - 15 = 0, 1, 4


def test_a_clamp_test_rounded_down_is_caught_by_the_slow_ratio_cases(tmp_path):
    # ceil(den / 2**(e - 15)) taken as floor((den - 2**(e-15) + 1) / 2**(e - 15)): at
    # den = 2**15 + 1 the ratio clamps to 2**15 where the quotient is 2**15 - 1
    fw = edited_firmware(tmp_path, "+ small_add) >> small_sh", "- small_add) >> small_sh")
    groups = {label: cases for label, (_, cases) in _slow_groups().items()}
    report = cf.run_ops(cases=groups, firmware_dir=fw)
    assert not report.ok
    assert all(m.op == "adam_update" for m in report.mismatches)
    assert cf.run_ops(cases=groups).ok  # the firmware as it is


def test_the_slow_ratios_division_before_its_fix_is_caught_only_on_the_int32_target(tmp_path):
    # ((a << e) + den/2 - den) // den + 1, the form before the shortfall's: the same
    # quotient, but its dividend reaches 2**30 + 2**14 at den = 2**15 + 1, e <= 13
    fw = edited_firmware(
        tmp_path, "vi = _R_MAX + ((root >> 1) - ((root << 15) - (vi << e))) // root",
        "vi = ((vi << e) + (root >> 1) - root) // root + 1")
    groups = {label: cases for label, (_, cases) in _slow_groups().items()}
    assert_caught_only_on_int32(fw, groups, "adam_update")


def _saturation_skip_cases():
    """linear_forward and linear_backward's dx (q4.12: shift 12 into [-32768, 32767])
    with max |W| = 4096 and rows of L1 norm L = 32766 .. 32769, one sign, against W's
    +-max rows (columns): the sums are +-L * 4096, rounded +-L, so the bound's rounded
    value top = L sits at hi - 1, hi (the saturation skipped) and hi + 1, hi + 2 (kept,
    where a sum reaches hi + 1)."""
    from qgpt import int_ops as ops
    from qgpt.conformance.fast_path_cases import _l1_rows
    from qgpt.conformance.inputs import Case, _ctx, _i
    from qgpt.conformance.policy_cases import _in, _spec
    from qgpt.policy import parse_policy

    p = parse_policy("")
    A, W, G = p.acts, p.weights, p.grads
    rng = np.random.default_rng(15)
    targets = [32766, 32767, 32768, 32769]
    top = 4096
    n_in, n_out = 16, 64
    w = rng.integers(-top, top + 1, (n_out, n_in))
    w[0], w[1] = top, -top  # forward: y[t, 0] = L * top, y[t, 1] = -L * top
    x = _l1_rows(n_in, targets, A.hi, rng)
    x = np.concatenate([x, -x[::-1]])  # pairs (x[t], x[t + 1]) with both L1 orders
    y = ops.linear_forward(_ctx(p), x, w, A, "y")
    cases = [Case("linear_forward", "skip", "top at hi - 1 .. hi + 2", _spec(p),
                  {"T": len(x), "n_in": n_in, "n_out": n_out, "wide": 0},
                  {"x": _in(A, x), "w": _in(W, w)}, {"y": _in(A, y)})]
    wt = rng.integers(-top, top + 1, (n_out, n_in))
    wt[:, 0], wt[:, 1] = top, -top  # dx: dx[t, 0] = L * top, dx[t, 1] = -L * top
    dy = _l1_rows(n_out, targets, G.hi, rng)
    dy = np.concatenate([dy, -dy[::-1]])
    xb = rng.integers(-100, 101, (len(dy), n_in))
    dw = np.zeros((n_out, n_in), np.int64)
    dx = ops.linear_backward(_ctx(p), dy, xb, wt, dw, "w")
    cases.append(Case("linear_backward", "skip", "dx's top at hi - 1 .. hi + 2", _spec(p),
                      {"T": len(dy), "n_in": n_in, "n_out": n_out},
                      {"dy": _in(G, dy), "x": _in(A, xb), "w": _in(W, wt),
                       "dw": _i(np.zeros_like(dw))}, {"dx": _in(G, dx), "dw": _i(dw)}))
    return cases, y, dx, A


def test_the_saturation_is_skipped_only_where_nothing_saturates(tmp_path):
    cases, y, dx, A = _saturation_skip_cases()
    # the cases reach both sides: sums at hi (no saturation), beyond it (saturated to hi)
    for out in (y[:, 0], dx[:, 0]):
        assert set(out.tolist()) == {32766, A.hi, -32766, -A.hi, -A.hi - 1}
    for target in ("unix", "int32"):
        report = cf.run_ops(cases={GROUP: cases}, target=target)
        assert report.ok, report.summary() + "\n" + "\n".join(map(str, report.mismatches[:9]))
    # and the test is needed: without it both kernels store the sums beyond hi unsaturated
    fw = edited_firmware(tmp_path, "clamp = 1 if top > hi or 0 - top - 1 < lo else 0",
                         "clamp = 0", count=2)  # linear_forward's and linear_backward's
    report = cf.run_ops(cases={GROUP: cases}, firmware_dir=fw)
    assert {m.op for m in report.mismatches} == {"linear_forward", "linear_backward"}
