"""The integer simulator's fast paths (issue 15) give the integers of the general ones.

1. rsqrt row by row on Python ints (a training step's few rows) equals rsqrt on arrays.
2. isqrt's tables and exp_neg's table read at negative indices equal their formulas.
3. Saturation checks the policy proves to be no-ops (rmsnorm's output: Ctx.rms_y_fits;
   the weight gradient: dw_fits) find nothing to clip on extreme inputs, under strict
   (which checks); a policy outside the proof does clip, so its condition matters.
4. The counted updates: count_stalled() equals the count of d == 0 where delta != 0, for
   every rounding mode; Ctx.clipped equals the sum of the per-tensor counts.

Every failing comparison names the op, the policy or format, the index and both values.
"""

import math

import numpy as np
import pytest

from qgpt import int_model, qformat
from qgpt import int_ops as ops
from qgpt.params import BLOCK, N_EMBD, N_PARAMS
from qgpt.policy import UPDATE_ROUNDINGS, make_policy, parse_policy


def first_difference(got, want):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"shape {got.shape} vs {want.shape}"
    bad = np.argwhere(got != want)
    if bad.size:
        i = tuple(bad[0])
        return f"[{list(i)}] = {got[i]}, want {want[i]} ({len(bad)} of {got.size} differ)"
    return None


@pytest.mark.parametrize("fm", [0, 8, 16, 24, 28, 30])
def test_rsqrt_rows_equal_rsqrt_on_arrays(fm):
    rng = np.random.default_rng(fm)
    ms = np.concatenate([np.arange(1, 3000), 2 ** np.arange(31), 2 ** np.arange(1, 32) - 1,
                         rng.integers(1, 2**31, 20_000)]).astype(np.int64)
    assert ms.size > ops.SCALAR_ROWS  # one call on arrays ...
    m_all, sh_all = ops.rsqrt(ms, fm)
    for start in range(0, ms.size, ops.SCALAR_ROWS):  # ... and many row by row
        rows = ms[start : start + ops.SCALAR_ROWS]
        m, sh = ops.rsqrt(rows, fm)
        for name, got, want in (("M", m, m_all), ("sh", sh, sh_all)):
            bad = first_difference(got, want[start : start + rows.size])
            assert bad is None, f"rsqrt fm={fm} rows from {start}: {name}{bad}"
    # a (B,T) block of rows keeps its shape
    m, sh = ops.rsqrt(ms[:16].reshape(2, 8), fm)
    assert m.shape == sh.shape == (2, 8) and first_difference(m.ravel(), m_all[:16]) is None


def test_isqrt_tables_up_to_2_32():
    r = np.arange(1 << 15, 1 << 16, dtype=np.int64)  # the top octave of roots below 2**16
    for name, n in (("r*r", r * r), ("r*r - 1", r * r - 1),
                    ("(r+1)**2 - 1", np.minimum((r + 1) ** 2 - 1, 2**32 - 1))):
        s = ops.isqrt(n)
        bad = np.flatnonzero((s * s > n) | ((s + 1) * (s + 1) <= n))
        assert not bad.size, f"isqrt({name})[{bad[0]}]: n = {n[bad[0]]}, got {s[bad[0]]}"
    n = np.arange(1 << 20, dtype=np.int64)  # every n below 2**20
    want = np.array([math.isqrt(int(v)) for v in n[::97]])
    assert first_difference(ops.isqrt(n)[::97], want) is None
    assert ops.isqrt(n).dtype == np.int64


def test_exp_table_read_at_negative_indices_is_the_formula():
    z12 = -np.arange((ops.EXP_ZERO_BELOW << 12) + 1, dtype=np.int64)  # 0 .. -2**16
    bad = first_difference(ops.EXP_NEG_BY_Q12.take(z12), ops.exp_q12(z12))
    assert bad is None, f"EXP_NEG_BY_Q12 at z12 = -index: {bad}"


def extreme_rows(fmt, rng):
    """(16,16) rows that push rmsnorm's output to its bound: one element at lo or hi and
    the rest 0, all equal, one step, random full range, and tiny values."""
    x = rng.integers(fmt.lo, fmt.hi + 1, (BLOCK, N_EMBD))
    x[0], x[1], x[2], x[3] = 0, 0, fmt.lo, fmt.hi
    x[0, 5], x[1, 0] = fmt.hi, fmt.lo
    x[4] = 0
    x[4, 9] = 1
    x[5] = rng.integers(-3, 4, N_EMBD)
    return x


@pytest.mark.parametrize("spec", ["weights=q4.12,acts=q4.12", "weights=q8.8,acts=q8.8",
                                  "weights=q2.6,acts=q4.4", "weights=q12.4,acts=q12.4",
                                  "weights=q8.8,acts=q6.10"])
def test_rmsnorm_output_cannot_saturate_where_the_policy_skips_its_check(spec):
    p = parse_policy(spec)
    assert ops.Ctx(p).rms_y_fits
    rng = np.random.default_rng(len(spec))
    x = extreme_rows(p.acts, rng)
    strict = ops.Ctx(p, strict=True)  # strict runs the check the fast path skips
    y, rs = ops.rmsnorm_forward(strict, x)
    assert strict.saturations["rmsnorm.y"] == 0, f"{spec}: rmsnorm.y clipped on extreme rows"
    fast = ops.Ctx(p)
    y_fast, rs_fast = ops.rmsnorm_forward(fast, x)
    assert first_difference(y_fast, y) is None and fast.saturations == {"rmsnorm.y": 0}
    assert np.abs(y).max() <= 4.0004 * 2**p.acts.frac_bits + 1, f"{spec}: |y| > 4"


def test_rmsnorm_output_saturates_with_three_integer_bits():
    """Outside the proof (q3.13 holds [-4, 4)), a one-hot row reaches 4 and is clipped."""
    p = make_policy("q3.13")
    ctx = ops.Ctx(p)
    assert not ctx.rms_y_fits
    x = np.zeros((1, N_EMBD), dtype=np.int64)
    x[0, 0] = p.acts.hi
    ops.rmsnorm_forward(ctx, x)
    assert ctx.saturations["rmsnorm.y"] == 1


@pytest.mark.parametrize("spec", ["weights=q4.12,acts=q4.12", "weights=q8.8,acts=q8.8",
                                  "weights=q2.6,acts=q4.4", "weights=q12.4,acts=q12.4"])
def test_weight_gradient_cannot_saturate_where_the_policy_skips_its_check(spec):
    p = parse_policy(spec)
    assert ops.dw_fits(p)
    rng = np.random.default_rng(7)
    dy = rng.choice([p.grads.lo, p.grads.hi], (BLOCK, 64))
    dy[:, 0] = p.grads.lo  # a column of BLOCK products at their largest
    x = rng.choice([p.acts.lo, p.acts.hi], (BLOCK, N_EMBD))
    x[:, 0] = p.acts.lo
    w = rng.integers(p.weights.lo, p.weights.hi + 1, (64, N_EMBD))
    dws = []
    for strict in (True, False):
        ctx = ops.Ctx(p, strict=strict)
        dw = np.zeros((64, N_EMBD), dtype=np.int64)
        ops.linear_backward(ctx, dy, x, w, dw, "fc")
        assert ctx.saturations["fc.dw"] == 0, f"{spec} strict={strict}: dw clipped"
        dws.append(dw)
    assert first_difference(dws[1], dws[0]) is None
    assert np.abs(dws[0]).max() <= p.pgrads.abs_limit


def test_weight_gradient_check_stays_where_the_policy_cannot_skip_it():
    p = parse_policy("int8")  # pgrads q2.14: narrower than a sum of 16 products
    assert not ops.dw_fits(p)
    ctx = ops.Ctx(p)
    dy = np.full((BLOCK, 4), p.grads.lo, dtype=np.int64)
    x = np.full((BLOCK, N_EMBD), p.acts.lo, dtype=np.int64)
    dw = np.zeros((4, N_EMBD), dtype=np.int64)
    ops.linear_backward(ctx, dy, x, np.zeros((4, N_EMBD), dtype=np.int64), dw, "fc")
    assert ctx.saturations["fc.dw"] == dw.size and np.all(dw == p.pgrads.hi)


@pytest.mark.parametrize("rounding", UPDATE_ROUNDINGS)
def test_stalled_counts_the_updates_rounded_to_zero(rounding):
    """count_stalled(delta, d) = #(d == 0 and delta != 0): every mode rounds delta = 0 to 0."""
    p = make_policy("q4.12", rounding=rounding)
    opt = int_model.IntAdam(p, 3)
    rng = np.random.default_rng(11)
    u = p.update_shift
    delta = rng.integers(-(1 << (u + 1)), 1 << (u + 1), N_PARAMS)
    delta[::5] = 0
    delta[1::7] = rng.integers(-(1 << (u - 1)), 1 << (u - 1), delta[1::7].size)
    store = np.zeros(N_PARAMS, dtype=np.int64)
    got = opt._update(store, delta, 0, ops.Ctx(p))
    d = -store if rounding != "kahan" else None  # the store started at 0: store = -d
    if d is not None:
        want = int(np.count_nonzero((d == 0) & (delta != 0)))
        assert got == want, f"{rounding}: stalled {got}, want {want}"
        assert np.all(d[delta == 0] == 0), f"{rounding}: delta = 0 rounded to d != 0"
    assert got > 0


def test_ctx_clipped_is_the_sum_of_the_counts():
    p = make_policy("q4.12")
    ctx = ops.Ctx(p)
    x = np.array([[0, 40000, -40000, 5]], dtype=np.int64)
    ctx.sat(x, p.acts, "a")
    ctx.sat(x, p.acts, "b", where=np.array([[True, True, False, True]]))
    ctx.sat(x, qformat.QFormat(8, 8), "a")
    assert ctx.saturations == {"a": 4, "b": 1} and ctx.clipped == 5


@pytest.mark.parametrize("top, k", [(2**15, 64), (2**25, 4), (2**26, 2), (2**26, 3), (2**27, 64)])
def test_exact_matmul_is_the_exact_integer_sum(top, k):
    """exact_matmul's float64 path (every partial sum below 2**53) and its int64 fallback
    (above) against Python's ints, at the extremes: every entry +-top, and random ones."""
    rng = np.random.default_rng(k)
    a = rng.choice([-top, top - 1], size=(40, 9, k)).astype(np.int64)  # large: > ops.LARGE
    b = rng.choice([-top, top - 1], size=(k, 5)).astype(np.int64)
    for x, y in ((a, b), (rng.integers(-top, top, a.shape), rng.integers(-top, top, b.shape))):
        got = ops.exact_matmul(x, y)
        want = [[[sum(int(x[i, t, j]) * int(y[j, o]) for j in range(k)) for o in range(5)]
                 for t in range(9)] for i in range(40)]
        assert got.dtype == np.int64
        bad = np.argwhere(got != np.array(want, dtype=object))
        assert not len(bad), f"top {top}, k {k}: at {bad[0]} {got[tuple(bad[0])]} != exact"
