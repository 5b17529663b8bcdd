"""The integer simulator's fast paths (issue 15) give the integers of the general ones.

1. rsqrt row by row on Python ints (a training step's few rows) equals rsqrt on arrays,
   also as rmsnorm's scaled multipliers M << (S - sh) (rsqrt_scaled_rows).
2. isqrt's tables and exp_neg's table read at negative indices equal their formulas.
3. Saturation checks the policy proves to be no-ops (rmsnorm's output: Ctx.rms_y_fits;
   the weight gradient: dw_fits; dlogits: Ctx.dlogits_fits) find nothing to clip on
   extreme inputs, under strict (which checks); a policy outside the proof does clip, so
   its condition matters.
4. The counted updates: count_stalled() equals the count of d == 0 where delta != 0, for
   every rounding mode; Ctx.clipped equals the sum of the per-tensor counts.
5. Adam's stacked moments (m, v, g and gs^2 in one (4,N) array) and the saturation of m, v and the
   weight store checked by bounds carried from step to step give the integers and counts
   of strict steps (the general path, every check), from states beyond the formats' edges
   and gradients at gs's edge; the bounds hold at every step.
6. Speculative steps (saturation checks deferred to the step's end, the step redone with
   every check when one would clip) give the losses, telemetry, state and counts of
   steps checked op by op, on runs that clip.
7. The reported losses of many steps at once (int_losses.reported_losses_of_steps, a
   training loop's loss_batch) are the floats and integers of each step alone: on random
   and extreme logits of every length, and on runs with and without batches, checkpoints
   inside and outside them.
8. Stochastic rounding's draws made for several steps at once equal prng.draws of each
   step, in any order of steps.

Every failing comparison names the op, the policy or format, the index and both values.
"""

import math

import numpy as np
import pytest

from qgpt import data, int_model, qformat
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


@pytest.mark.parametrize("fm", [0, 8, 16, 24, 28, 30])
def test_rmsnorm_rows_on_python_ints_equal_rsqrt(fm):
    """rsqrt_scaled_rows (a training step's rows: ms = rnd(sum, g) + eps and rsqrt on
    Python ints) gives M << (S - sh) of rsqrt's (M, sh) on arrays, for every mean square
    up to 2**31 - 1; a larger one raises ValueError (a speculative step's unclipped
    values)."""
    rng = np.random.default_rng(fm + 1)
    g, eps = 4, ops.rmsnorm_eps(fm)
    ms = np.concatenate([np.arange(eps, 3000), 2 ** np.arange(31), 2 ** np.arange(1, 32) - 1,
                         rng.integers(eps, 2**31, 20_000)]).astype(np.int64)
    sums = np.maximum((ms - eps) << g, 0) + rng.integers(0, 1 << g, ms.size)  # any low bits
    ms = ((sums + (1 << (g - 1))) >> g) + eps
    keep = ms < 2**31
    sums, ms = sums[keep], ms[keep]
    m, sh = ops.rsqrt(ms, fm)
    got = np.array(ops.rsqrt_scaled_rows(sums.tolist(), g, fm), dtype=np.int64)
    assert (sh <= ops.rms_scale_shift(fm)).all()
    bad = first_difference(got, m << (ops.rms_scale_shift(fm) - sh))
    assert bad is None, f"rsqrt_scaled_rows fm={fm}: M << (S - sh){bad}"
    with pytest.raises(ValueError, match="does not fit int32"):
        ops.rsqrt_scaled_rows([((2**31 - eps) << g)], g, fm)


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


def test_isqrt_plus_one_narrow_equals_the_wide_path():
    """narrow=True (Adam's v, below 65535**2) adds the 1 in uint16: the same integers as
    the int64 path, on the roots' octaves' edges up to its limit and every n < 2**20."""
    r = np.arange(1, 65535, dtype=np.int64)
    limit = ops.ISQRT_NARROW_LIMIT
    n = np.concatenate([r * r, r * r - 1, np.minimum((r + 1) ** 2 - 1, limit - 1),
                        np.arange(1 << 20, dtype=np.int64)])
    got, want = ops.isqrt_plus_one(n, narrow=True), ops.isqrt_plus_one(n)
    bad = first_difference(got, want)
    assert bad is None, f"isqrt_plus_one(narrow=True){bad}"
    assert want[n.size // 2] == math.isqrt(int(n[n.size // 2])) + 1


def test_exp_table_by_the_gap_is_the_formula():
    z12 = -np.arange((ops.EXP_ZERO_BELOW << 12) + 1, dtype=np.int64)  # 0 .. -2**16
    bad = first_difference(ops.EXP_BY_GAP_Q12.take(-z12), ops.exp_q12(z12))
    assert bad is None, f"EXP_BY_GAP_Q12 at k = -z12: {bad}"


def test_exp_of_gap_is_step_1_then_the_formula_at_every_gap():
    """exp_of_gap (softmax's clamp by take's clip mode) against step 1's clamp and the
    formula, exp_q12(rnd(-gap, f - 12)), every gap up to past the cut-off and far ones."""
    for frac in (4, 8, 11, 12, 13, 16):
        cut = ops.EXP_ZERO_BELOW << frac
        gap = np.concatenate([np.arange(cut + (1 << max(frac - 12, 0)) + 3), [cut + 12345,
                              1 << 40, (1 << 40) + (1 << 24)]]).astype(np.int64)
        want = np.where(gap >= cut, 0, ops.exp_q12(ops.rnd(-np.minimum(gap, cut), frac - 12)))
        bad = first_difference(ops.exp_of_gap(gap, frac), want)
        assert bad is None, f"exp_of_gap, f={frac}: {bad}"


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


@pytest.mark.parametrize("wide, narrow, want", [
    (500000, 5, True),  # the wide range's array beyond 16 bits, within its own range
    (-524288, -32768, True),  # both at their ranges' lower ends
    (524288, 5, False),  # the wide range's array beyond its range
    (5, 32768, False),  # the 16-bit array beyond its range
    (5, -32769, False),
])
def test_deferred_check_finds_each_range_on_its_own_arrays(wide, narrow, want):
    p = make_policy("q4.12")  # acts: [-32768, 32767], logits: [-524288, 524287]
    ctx = ops.Ctx(p)
    ctx.defer()
    ctx.sat(np.array([[1, -2]], dtype=np.int64), p.acts, "a")
    ctx.sat(np.array([[wide, 0]], dtype=np.int64), p.logits, "l")
    ctx.sat(np.array([narrow, 3], dtype=np.int64), p.acts, "b")
    assert (p.acts.hi, p.logits.hi) == (32767, 524287)
    assert ctx.deferred_clip_nothing() is want


@pytest.mark.parametrize("spec", ["weights=q4.12,acts=q4.12", "weights=q2.6,acts=q4.4,grads=q2.6",
                                  "weights=q8.8,acts=q8.8,grads=q3.13"])
def test_dlogits_cannot_saturate_where_the_policy_skips_its_check(spec):
    """(p - onehot) / T at its extremes (p = 1 on the target or off it, T = 1 and 16) is
    within grads: the skipped check (Ctx.dlogits_fits) would clip nothing."""
    p = parse_policy(spec)
    assert ops.Ctx(p).dlogits_fits
    for t in (1, 3, BLOCK):
        probs = np.zeros((t, 27), dtype=np.int64)
        probs[:, 0] = 1 << 15  # all mass on token 0
        for targets in (np.zeros(t, dtype=np.int64), np.ones(t, dtype=np.int64)):
            strict = ops.Ctx(p, strict=True)
            want = ops.cross_entropy_backward(strict, probs, targets)
            assert strict.saturations["dlogits"] == 0, f"{spec} T={t}: dlogits clipped"
            fast = ops.Ctx(p)
            got = ops.cross_entropy_backward(fast, probs, targets)
            assert first_difference(got, want) is None and fast.saturations == {"dlogits": 0}


def test_dlogits_check_stays_where_the_policy_cannot_skip_it():
    """grads q1.15 holds [-1, 1): p - onehot = -1 at T = 1 reaches -1 (in range) and
    p = 1 off the target reaches 1, which clips: the check runs and counts it."""
    p = parse_policy("weights=q4.12,acts=q4.12,grads=q1.15")
    ctx = ops.Ctx(p)
    assert not ctx.dlogits_fits
    probs = np.zeros((1, 27), dtype=np.int64)
    probs[0, 0] = 1 << 15
    ops.cross_entropy_backward(ctx, probs, np.array([1]))
    assert ctx.saturations["dlogits"] == 1


@pytest.mark.parametrize("fmt, rounding", [("q2.6", "nearest"), ("q3.5", "stochastic")])
def test_speculative_steps_equal_steps_checked_op_by_op(fmt, rounding, monkeypatch):
    from qgpt.train import TrainConfig, make_model, training_steps

    cfg = TrainConfig(steps=60, seed=3, format=fmt, rounding=rounding)
    ds = data.load(cfg.data)
    redone = []
    clip_nothing = ops.Ctx.deferred_clip_nothing

    def counted(self):
        ok = clip_nothing(self)
        redone.append(not ok)
        return ok

    def run():
        model = make_model(cfg)
        rows = [(step, loss, sorted(tele.items()))
                for step, loss, tele in training_steps(model, ds, cfg)]
        meta, arrays = model.state()
        return rows, meta, {k: a.copy() for k, a in arrays.items()}

    monkeypatch.setattr(ops.Ctx, "deferred_clip_nothing", counted)
    fast = run()
    assert any(redone), f"{fmt}: no step clipped, so the redo path went untested"
    monkeypatch.setattr(ops.Ctx, "defer", lambda self: None)  # every check op by op
    checked = run()
    for (s, *got), (_, *want) in zip(fast[0], checked[0], strict=True):
        assert got == want, f"{fmt} step {s}: loss, telemetry {got} vs checked {want}"
    assert list(fast[1]["saturations"].items()) == list(checked[1]["saturations"].items())
    assert fast[1] == checked[1]
    for name, a in checked[2].items():
        assert first_difference(fast[2][name], a) is None, f"{fmt}: {name} differs"


@pytest.mark.parametrize("fmt, rounding", [("q4.12", "nearest"), ("q8.8", "stochastic")])
def test_adam_stacked_moments_equal_the_general_path(fmt, rounding):
    p = make_policy(fmt, rounding=rounding)
    rng = np.random.default_rng(5)
    gs_edge = p.gs_word.hi << (p.pgrads.frac_bits - p.sqrt_frac)  # |g| that keeps gs in range
    grads = [rng.integers(-gs_edge, gs_edge + 1, N_PARAMS) for _ in range(4)]
    grads += [rng.integers(-(1 << 12), 1 << 12, N_PARAMS) for _ in range(6)]
    grads[1][::3] = gs_edge  # gs = hi: its square at the check's bound
    m0 = rng.integers(-p.m_limit, p.m_limit + 1, N_PARAMS)
    m0[::4] = p.m_limit
    m0[1::4] = 2**31 - 1  # beyond adam_m's limit, as a loaded state might be: clipped
    v0 = rng.integers(0, p.v_wide.hi + 1, N_PARAMS)
    v0[::5] = 2**31 - 1  # beyond v's top: clipped
    store0 = rng.integers(p.weight_store.lo, p.weight_store.hi + 1, N_PARAMS)

    def run(strict):
        ctx = ops.Ctx(p, strict=strict)
        opt = int_model.IntAdam(p, 9)
        opt.m, opt.v, store = m0.copy(), v0.copy(), store0.copy()
        steps = []
        for step, g in enumerate(grads):
            stalled = opt.step(store, g, step, len(grads), ctx)
            steps.append((opt.m.copy(), opt.v.copy(), store.copy(), stalled))
            # the bounds the next step checks by hold: max|m| and max v never exceed them
            assert np.abs(opt.m).max() <= opt._m_max and opt.v.max() <= opt._v_max, step
            assert opt._store_max is None or np.abs(store).max() <= opt._store_max, step
        return steps, ctx.saturations

    fast, fast_counts = run(strict=False)
    general, general_counts = run(strict=True)
    for step, (got, want) in enumerate(zip(fast, general, strict=True)):
        for name, a, b in zip(("m", "v", "store"), got[:3], want[:3], strict=True):
            bad = first_difference(a, b)
            assert bad is None, f"adam {fmt} {rounding} step {step}: {name}{bad}"
        assert got[3] == want[3], f"adam {fmt} step {step}: stalled {got[3]} vs {want[3]}"
    assert fast_counts == general_counts and fast_counts["adam.m"] > 0 < fast_counts["adam.v"]


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


# --- 7. the reported losses of many steps at once ---


def test_reported_losses_of_steps_equal_each_step_alone():
    from qgpt.int_losses import ln_q16_array, reported_losses, reported_losses_of_steps

    rng = np.random.default_rng(7)
    for frac in (4, 8, 12, 16):
        steps, want = [], []
        for i in range(120):
            t = 1 + i % BLOCK  # every length, interleaved
            top = 1 << (frac + (4, 8, 20)[i % 3])  # up to exp's underflow of a whole row
            logits = rng.integers(-top, top, (t, 27))
            logits[:, i % 27] = logits.max()  # ties at the max
            targets = rng.integers(0, 27, t)
            _, row_max, sums, below = ops.softmax_sums(logits, frac)
            steps.append((targets, row_max, sums, below))
            want.append(reported_losses(logits, targets, frac, row_max, sums, below))
        got = reported_losses_of_steps(steps, frac)
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert g[0] == w[0] and g[1] == w[1], (
                f"frac {frac} step {i} (T={len(steps[i][0])}): {g} vs alone {w}")
    s = np.concatenate([np.arange(1 << 15, (1 << 15) + 5000), 2 ** np.arange(15, 62),
                        2 ** np.arange(16, 62) - 1, rng.integers(1 << 15, 1 << 40, 5000)])
    got, want = ln_q16_array(s), [ops.ln_q16(int(x)) for x in s]
    bad = first_difference(got, np.array(want))
    assert bad is None, f"ln_q16_array{bad}"


@pytest.mark.parametrize("batch, every, rounding", [(7, 10, "stochastic"), (50, 0, "nearest"),
                                                    (4, 6, "kahan")])
def test_batched_losses_equal_step_by_step_losses(batch, every, rounding):
    from qgpt.train import TrainConfig, make_model, training_steps

    cfg = TrainConfig(steps=23, seed=4, format="q4.12", rounding=rounding,
                      checkpoint_every=every)
    ds = data.load(cfg.data)
    alone = make_model(cfg)
    want = [(s, loss, tele) for s, loss, tele in training_steps(alone, ds, cfg)]
    batched = make_model(cfg)
    got, states = [], {}
    for s, loss, tele in training_steps(batched, ds, cfg, loss_batch=batch):
        got.append((s, loss, tele))
        done = s + 1
        if done % batch == 0 or done == cfg.steps or (every and done % every == 0):
            states[done] = batched.state()[1]["params"].copy()  # in step with the loop here
    for (s, *g), (_, *w) in zip(got, want, strict=True):
        assert g == w, f"step {s}: loss, telemetry {g} vs step by step {w}"
    replay = make_model(cfg)
    for s, _, _ in training_steps(replay, ds, cfg):
        if s + 1 in states:
            bad = first_difference(states[s + 1], replay.state()[1]["params"])
            assert bad is None, f"after step {s}: the batched run's params{bad}"
    assert not batched.defer_losses and batched.deferred_results() == []


# --- 8. stochastic rounding's draws, several steps at once ---


def test_rounding_draws_of_several_steps_equal_prng_draws():
    from qgpt import prng

    steps = [0, 1, 15, 16, 17, 3, 40, 39, 2 * int_model.DRAW_STEPS + 1, 5, 1000]
    for shift in (0, 8):  # (an optimizer's is 30 - update_shift at every step)
        opt = int_model.IntAdam(make_policy("q4.12", rounding="stochastic"), 11)
        for step in steps:
            want = prng.draws(prng.key(11, prng.STREAM_ROUND, step), 0, N_PARAMS) >> shift
            bad = first_difference(opt._rounding_draws(step, shift).astype(np.int64), want)
            assert bad is None, f"step {step} shift {shift}: draws{bad}"


def test_rounding_draws_where_key_plus_counter_passes_2_30():
    """Seed 56616's key at step 1 is 2,623 below 2**30: its draws' counters k + i pass
    2**30 (hash30's first mask matters there, and _rounding_draws keeps it)."""
    from qgpt import prng

    key = prng.key(56616, prng.STREAM_ROUND, 1)
    assert key + N_PARAMS - 1 > prng.M30  # (the case this test is for)
    opt = int_model.IntAdam(make_policy("q4.12", rounding="stochastic"), 56616)
    for step in (0, 1, 2):
        want = prng.draws(prng.key(56616, prng.STREAM_ROUND, step), 0, N_PARAMS)
        bad = first_difference(opt._rounding_draws(step, 0).astype(np.int64), want)
        assert bad is None, f"step {step}: draws{bad}"


@pytest.mark.parametrize("below_2_30", [False, True])
def test_hash30_in_place_on_uint32_is_hash30(below_2_30):
    from qgpt import prng

    x = np.array([0, 1, 2**16 - 1, 2**16, 2**30 - 1, 2**30, 2**31 + 7, 2**32 - 1,
                  *np.random.default_rng(3).integers(0, 2**32, 500)], dtype=np.uint32)
    if below_2_30:  # (the caller's promise: hash30's first mask is skipped)
        x &= np.uint32(prng.M30)
    got = prng.hash30_uint32(x.copy(), np.empty_like(x), below_2_30=below_2_30)
    for i, (a, b) in enumerate(zip(x.tolist(), got.tolist(), strict=True)):
        assert b == prng.hash30(a & prng.M30), f"hash30_uint32[{i}] of {a}: {b}"


@pytest.mark.parametrize("shape", [(7, 27), (4, 7, 7), (2, 3, 5, 16), (1, 1), (200, 27),
                                   (512, 9, 27)])
def test_row_sums_are_the_exact_row_sums(shape):
    """row_sums (a product with ones on small arrays, a reduction on large ones) against
    Python's sum of each row, with values up to 2**40."""
    from qgpt.int_shapes import row_sums

    a = np.random.default_rng(5).integers(0, 2**40, shape)
    got = row_sums(a)
    assert got.shape == (*shape[:-1], 1)
    for i, row in enumerate(a.reshape(-1, shape[-1]).tolist()):
        assert int(got.reshape(-1)[i]) == sum(row), f"row_sums row {i}: {got.reshape(-1)[i]}"


@pytest.mark.parametrize("spec", ["q4.12", "q8.8", "q2.14"])
@pytest.mark.parametrize("scale", [1, 64])
def test_stacked_attention_gradients_equal_the_three_merged(spec, scale):
    """attention_backward(stacked=True), the training step's [dq | dk | dv] formed in one
    buffer, equals the three (T,C) gradients side by side, with the same saturation counts,
    also where dq, dk and dv clip (scale 64: clipped results are new arrays, copied back)."""
    rng = np.random.default_rng(3)
    policy = make_policy(spec)
    results = []
    for stacked in (False, True):
        ctx = ops.Ctx(policy)
        q, k, v, dout = (rng.integers(-2**14, 2**14, (7, N_EMBD)) for _ in range(4))
        _, probs = ops.attention_forward(ctx, q, k, v)
        out = ops.attention_backward(ctx, dout * scale, q, k, v, probs, stacked=stacked)
        results.append((out if stacked else np.concatenate(out, axis=1), ctx.saturations))
        rng = np.random.default_rng(3)  # the same inputs for the stacked call
    (merged, counts), (stacked_out, stacked_counts) = results
    bad = np.argwhere(merged != stacked_out)
    assert not bad.size, (f"{spec}: dqkv{tuple(bad[0])} stacked {stacked_out[tuple(bad[0])]} "
                          f"!= merged {merged[tuple(bad[0])]}")
    assert stacked_counts == counts
    if scale > 1 and spec == "q8.8":  # the copy-back path is taken
        assert counts["attention.dq"] and counts["attention.dk"]
