"""The integer ops (qgpt/int_ops.py) against math, the float reference and the contract.

1. The integer functions (exp_neg, softmax, rsqrt, isqrt, ln_q16, loss_q16) against
   math / float64, with error bounds derived from docs/arithmetic.md (sections 5 and 8).
2. Every op's forward and backward against float_ops on the same quantized inputs, in
   q4.12 and q8.8. Each bound is derived, per element, from where the op rounds
   (the comment at each bound says how); forward ops get the float inputs' quantized
   values, backward ops also get the integer forward's saved tensors (y and 1/rms,
   probabilities), so a bound measures the op alone.
3. Exactness the contract promises: every dot product is the exact sum rounded once,
   so the device's int32 (H, L) recipe of section 3, written here in plain Python,
   gives the same integers; attention is causal (a prefix gives the first rows, as the
   device's KV cache does); saturations are counted per tensor, only where stored.
4. Strict mode: forward, backward and Adam never leave int32, on realistic inputs and
   on max-magnitude ones, for every data-path width; Ctx.check names op and tensor.

Every failing comparison names the op, the format, the tensor, the index and both values.
"""

import math

import numpy as np
import pytest

from qgpt import float_ops as fops
from qgpt import int_model
from qgpt import int_ops as ops
from qgpt.data import encode
from qgpt.float_model import split_tokens
from qgpt.params import BLOCK, HEAD_DIM, MLP_HIDDEN, N_EMBD, N_HEAD, N_PARAMS, VOCAB
from qgpt.policy import make_policy
from qgpt.qformat import QFormat, parse

Q15 = 1 << 15
G_FRAC = 14  # activation gradients are q2.14 (arithmetic.md, section 7)
G_HALF = 2.0**-15  # half a step of q2.14: the error of one round-half-up into it
OP_FORMATS = ("q4.12", "q8.8")
STRICT_FORMATS = ("q1.15", "q2.14", "q4.12", "q8.8", "q12.4", "q16.0", "q4.8")
NAMES = ("emma", "olivia", "christopherjohn", "ava", "xavier", "zoe", "muhammad")

# --- helpers ----------------------------------------------------------------


def strict_policy_args(fmt_name):
    # q16.0 has no fractional bits: with lr 0.01 the update would shift by 34 bits, which
    # the policy refuses (see test_train_cli); lr 0.25 keeps the shift at 29
    return {"lr": 0.25} if fmt_name == "q16.0" else {}


def ctx_for(fmt, strict=False, **kw):
    return ops.Ctx(make_policy(fmt, **kw), strict=strict)


def quant(x, frac, fmt=None):
    """Float -> raw integers with frac fractional bits, half up (np.floor(x + 0.5) is
    exact here: |x * 2**frac| < 2**52), clamped to fmt when given."""
    q = np.floor(np.asarray(x, dtype=np.float64) * 2.0**frac + 0.5).astype(np.int64)
    return q if fmt is None else np.clip(q, fmt.lo, fmt.hi)


def deq(raw, frac):
    return np.asarray(raw, dtype=np.float64) / 2.0**frac


def check_within(op, fmt, tensor, got, want, bound):
    """|got - want| <= bound element-wise; on failure name the worst element."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"{op} {fmt} {tensor}: shape {got.shape} vs {want.shape}"
    bound = np.broadcast_to(np.asarray(bound, dtype=np.float64), got.shape)
    err = np.abs(got - want)
    bad = err > bound
    if bad.any():
        i = np.unravel_index(int(np.argmax(np.where(bad, err / np.maximum(bound, 1e-300), 0))),
                             got.shape)
        raise AssertionError(
            f"{op} in {fmt}: {tensor}{list(i)} = {got[i]!r}, float reference {want[i]!r}, "
            f"error {err[i]:.3g} > bound {bound[i]:.3g} ({int(bad.sum())} of {got.size} "
            f"elements out of bound)")
    return float((err / np.maximum(bound, 1e-300)).max()) if err.size else 0.0


def check_equal(op, fmt, tensor, got, want):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{op} {fmt} {tensor}: shape {got.shape} vs {want.shape}"
    bad = np.argwhere(got != want)
    if bad.size:
        i = tuple(bad[0])
        raise AssertionError(f"{op} in {fmt}: {tensor}{list(i)} = {got[i]}, want {want[i]} "
                             f"({len(bad)} of {got.size} elements differ)")


def normal(rng, shape, scale, limit):
    return np.clip(rng.normal(scale=scale, size=shape), -limit, limit)


# --- 1. integer functions vs math -------------------------------------------

# exp_neg (arithmetic.md, "exp"): against 2**15 exp(z), in Q15 units, the error is at most
#   2**15 exp(z) * (EXP_REL + LOG2E_REL * |z|) + 0.5, where
# EXP_REL = 4.6e-5 covers, relative to 2**fraction in [2**15, 2**16): the table entries'
#   rounding (0.5 / 2**15 = 1.53e-5), linear interpolation of 2**x over steps of 1/64
#   ((ln 2 / 64)**2 / 8 = 1.47e-5) and the interpolation's rounding (1.53e-5);
# LOG2E_REL = 4.9e-6: log2(e) in Q14 (23637 / 2**14) is 4.89e-6 low, so exp(z) comes out
#   as exp(z (1 - 4.89e-6));
# 0.5 is the final round half up by -ip bits. With f > 12 fractional bits z is first
# rounded to Q12 (at most 2**-13 off), a further relative expm1(2**-13).
EXP_REL = 4.6e-5
LOG2E_REL = 4.9e-6
EXP_FRACS = (0, 4, 8, 12, 14, 15)


def exp_bound_q15(z_real, frac):
    z_in = math.expm1(2.0**-13) if frac > 12 else 0.0
    return Q15 * np.exp(z_real) * (EXP_REL + LOG2E_REL * np.abs(z_real) + z_in) + 0.5


@pytest.mark.parametrize("frac", EXP_FRACS)
def test_exp_neg_every_input_against_math_exp(frac):
    """Every raw z from just below the cut-off -16 up to 0 (2**19 values for f = 15)."""
    z = np.arange(-(16 << frac) - 3, 1, dtype=np.int64)
    e = ops.exp_neg(z, frac)
    zr = z / 2.0**frac
    check_within("exp_neg", f"f={frac}", "e", e, Q15 * np.exp(zr), exp_bound_q15(zr, frac))
    # "about 3e-5 plus one Q15 step" (arithmetic.md): the relative error, where one step is
    # at most 2**-14 of the result (z > -ln 2), stays below 3e-5 + 2**-14 + the Q12 input
    rel = np.abs(e / (Q15 * np.exp(zr)) - 1)[zr > -math.log(2)]
    assert rel.max() <= 3e-5 + 2**-14 + (1.3e-4 if frac > 12 else 0), (frac, rel.max())
    assert np.all(np.diff(e) >= 0), f"exp_neg f={frac}: not monotonic"


@pytest.mark.parametrize("frac", EXP_FRACS)
def test_exp_neg_endpoints(frac):
    assert int(ops.exp_neg(np.array([0]), frac)[0]) == Q15
    cut = -(16 << frac)
    below = np.array([cut, cut - 1, cut - 12345, -(1 << 40)], dtype=np.int64)
    assert ops.exp_neg(below, frac).tolist() == [0, 0, 0, 0], f"f={frac}: z <= -16 must give 0"
    # just above the cut-off exp(-16) * 2**15 = 0.004 rounds to 0 as well
    assert int(ops.exp_neg(np.array([cut + 1]), frac)[0]) == 0


# softmax: with p the float softmax of the reference inputs, and dz the largest error
# of the integer inputs, each e_j = exp_neg(z_j - max) is within e_j * eta + 0.5 (Q15
# units) of the reference, eta = EXP_REL + LOG2E_REL * |z_j - max| + expm1(dz); the sum S
# is then within S * eta + n/2, and S >= 2**15 (the max contributes exactly 2**15), so
#   |p_int - p| <= 2 p eta (1 + 1%) + (1 + p n / 2) / 2**15
# (the 1 is half a step of e over S >= 2**15, plus the final rounding of p to Q15).


def softmax_bound(p_ref, z_ref, n, dz=0.0, frac=12):
    z_in = math.expm1(2.0**-13) if frac > 12 else 0.0
    gap = np.nanmax(z_ref, axis=-1, keepdims=True) - z_ref
    gap = np.where(np.isfinite(gap), gap, 0.0)
    eta = EXP_REL + LOG2E_REL * (gap + 2 * dz) + math.expm1(dz) + z_in
    eta = eta.max(axis=-1, keepdims=True)
    return 2.02 * p_ref * eta + (1 + p_ref * n / 2) / Q15


@pytest.mark.parametrize("fmt_name", OP_FORMATS + ("q1.15",))
def test_softmax_rows_against_float(fmt_name):
    f = parse(fmt_name).frac_bits
    logits = QFormat(parse(fmt_name).int_bits + 4, f)
    rng = np.random.default_rng(11)
    scale = min(4.0, 2.0 ** (parse(fmt_name).int_bits + 1))
    z = quant(normal(rng, (500, VOCAB), scale, 3 * scale), f, logits)
    p = ops.softmax(z, f)
    zr = deq(z, f)
    ref = fops.softmax(zr)
    check_within("softmax", fmt_name, "p", deq(p, 15), ref, softmax_bound(ref, zr, VOCAB, 0, f))
    # each p_j is rounded once from e_j / S, whose sum is exactly 1: within n/2 steps
    s = p.sum(axis=-1)
    assert np.abs(s - Q15).max() <= VOCAB / 2, f"softmax row sums {s.min()}..{s.max()}"


def test_softmax_masked_rows():
    rng = np.random.default_rng(12)
    f = 12
    t = BLOCK
    z = quant(normal(rng, (N_HEAD, t, t), 3.0, 12.0), f)
    mask = np.tril(np.ones((t, t), dtype=bool))[None]
    p = ops.softmax(z, f, mask)
    assert np.all(p[:, ~mask[0]] == 0), "masked (future) entries must be 0"
    zr = np.where(mask, deq(z, f), -np.inf)
    ref = fops.softmax(zr)
    n = mask.sum(axis=-1, keepdims=True)
    check_within("softmax(mask)", "f=12", "p", deq(p, 15), ref,
                 softmax_bound(ref, np.where(mask, zr, np.nan), n, 0, f))
    # masked values do not take part: changing them changes nothing
    p2 = ops.softmax(np.where(mask, z, 10**6), f, mask)
    check_equal("softmax(mask)", "f=12", "p", p2, p)
    assert np.all(p[:, 0, 0] == Q15), "a row with one visible entry is exactly one"


@pytest.mark.parametrize("n", [1, 2, 3, 7, 16, 27])
def test_softmax_one_hot_and_equal_rows(n):
    f = 12
    # all equal: e_j = 2**15 each, S = n 2**15, p_j = 2**15 / n rounded half up
    p = ops.softmax(np.full((1, n), 12345, dtype=np.int64), f)
    assert p.tolist() == [[math.floor(Q15 / n + 0.5)] * n]
    # one entry 16 or more above all others: the others' exp is 0, it gets all the mass
    z = np.full(n, -(20 << f), dtype=np.int64)
    z[n // 2] = 3 << f
    want = [0] * n
    want[n // 2] = Q15
    assert ops.softmax(z[None], f).tolist() == [want]


# rsqrt (arithmetic.md, "rsqrt"): M / 2**sh against 1 / sqrt(ms / 2**fm), relative:
# isqrt drops less than 1 of s >= 2**14 (2**-14), M = 2**29 / s is rounded (0.5 of
# M > 2**14: 2**-15), and a = ms >> 2k drops bits below 2**-28 of a (2**-29 after the
# square root): RSQRT_REL = 2**-14 + 2**-15 + 2**-29.
RSQRT_REL = 2.0**-14 + 2.0**-15 + 2.0**-29


@pytest.mark.parametrize("fm", [0, 8, 16, 24, 30])
def test_rsqrt_against_math(fm):
    rng = np.random.default_rng(fm)
    ms = np.unique(np.concatenate([
        np.arange(1, 4097), rng.integers(1, 2**31, 100_000), 2 ** np.arange(31),
        2 ** np.arange(1, 32) - 1, (2 ** np.arange(1, 16)) ** 2 - 1])).astype(np.int64)
    m, sh = ops.rsqrt(ms, fm)
    assert m.min() > 2**14 and m.max() <= 2**15, (m.min(), m.max())
    got = m / 2.0**sh
    ref = 1 / np.sqrt(ms / 2.0**fm)
    check_within("rsqrt", f"fm={fm}", "M/2**sh", got, ref, ref * RSQRT_REL)
    # the multiplication it feeds: |x * M| <= 2**30 for every 16-bit x
    assert 2**15 * int(m.max()) <= 2**30


def test_rsqrt_reciprocal_range_over_every_root():
    """M = (2**29 + s//2) // s lies in (2**14, 2**15] for every s = isqrt(a) in [2**14, 2**15)."""
    s = np.arange(2**14, 2**15, dtype=np.int64)
    a = s * s  # isqrt(a) = s: rsqrt with fm = 0 and ms = a (k = 0 for a >= 2**28)
    m, sh = ops.rsqrt(a[a >= 2**28], 0)
    want = ((1 << 29) + (s[a >= 2**28] >> 1)) // s[a >= 2**28]
    check_equal("rsqrt", "fm=0", "M", m, want)
    assert np.all(sh == 29)


def test_isqrt_exact_at_every_square_and_random():
    k = np.arange(1, 46341, dtype=np.int64)  # 46340**2 < 2**31 <= 46341**2
    check_equal("isqrt", "", "isqrt(k*k)", ops.isqrt(k * k), k)
    check_equal("isqrt", "", "isqrt(k*k - 1)", ops.isqrt(k * k - 1), k - 1)
    check_equal("isqrt", "", "isqrt(k*k + 2k)", ops.isqrt(k * k + 2 * k), k)
    top = np.array([0, 1, 2, 3, 2**31 - 1, 2**30, 2**30 - 1], dtype=np.int64)
    rng = np.random.default_rng(5)
    n = np.concatenate([top, rng.integers(0, 2**31, 100_000)])
    want = np.array([math.isqrt(int(v)) for v in n])
    check_equal("isqrt", "", "isqrt(n)", ops.isqrt(n), want)


# ln_q16 (arithmetic.md, section 8), in nats: linear interpolation of log2(1 + x) over
# steps of 1/64 errs by at most (1/64)**2 / (8 ln 2) in log2, (1/64)**2 / 8 = 3.05e-5 nats;
# three roundings to Q16 (table, interpolation, the ln 2 conversion): 3 * 2**-17; the
# dropped low 8 bits of the mantissa: 2**-21; ln 2 in Q15 and Q16 (0.69314575) is 1.43e-6
# low, once for the mantissa and once per octave (n - 15).
def ln_bound(s):
    n = s.bit_length() - 1
    return (1 / 64) ** 2 / 8 + 3 * 2.0**-17 + 2.0**-21 + 1.43e-6 * (1 + n - 15)


def test_ln_q16_against_math_log():
    ss = list(range(Q15, 27 * Q15 + 1, 7)) + [Q15, Q15 + 1, 2 * Q15 - 1, 2 * Q15, 27 * Q15,
                                              2**30 - 1, 2**30, 2**31 - 1, 2**40 + 3]
    worst = 0.0
    for s in ss:
        got = ops.ln_q16(s) / 65536
        want = math.log(s / Q15)
        assert abs(got - want) <= ln_bound(s), f"ln_q16({s}) = {got!r}, math.log {want!r}"
        worst = max(worst, abs(got - want))
    assert ops.ln_q16(Q15) == 0


@pytest.mark.parametrize("fmt_name", OP_FORMATS)
def test_loss_q16_against_float_log_sum_exp(fmt_name):
    """Per position the loss is (max - l_target) exactly plus ln of the integer sum S, which
    is within S eta + n/2 of the float sum (see softmax_bound): the mean is off by at most
    the mean of ln_bound + (S eta + n/2) / (S - S eta - n/2), plus the final half step."""
    fmt = parse(fmt_name)
    f = fmt.frac_bits
    logit_fmt = QFormat(fmt.int_bits + 4, f)
    rng = np.random.default_rng(13)
    for t in (1, 5, 16):
        z = quant(normal(rng, (t, VOCAB), 3.0, 11.0), f, logit_fmt)
        targets = rng.integers(0, VOCAB, t)
        got = ops.loss_q16(z, targets, f) / 65536
        zr = deq(z, f)
        want, _ = fops.cross_entropy_forward(zr, targets)
        gap = zr.max(axis=-1, keepdims=True) - zr
        s_ref = Q15 * np.exp(-gap).sum(axis=-1)
        ds = (Q15 * np.exp(-gap) * (EXP_REL + LOG2E_REL * gap)).sum(axis=-1) + VOCAB / 2
        s_int = ops.exp_neg(z - z.max(axis=-1, keepdims=True), f).sum(axis=-1)
        per_pos = [ln_bound(int(s)) for s in s_int] + ds / (s_ref - ds)
        check_within("loss_q16", fmt_name, f"loss(T={t})", got, want,
                     np.mean(per_pos) + 2.0**-17)


# --- 2. every op forward and backward vs the float reference ---------------


@pytest.mark.parametrize("fmt_name", OP_FORMATS)
def test_embedding_forward_and_backward_are_exact(fmt_name):
    """x = wte[tok] + wpe[t] fits the format: no rounding. Backward only shifts left into
    the parameter-gradient format (P > 14): exact too."""
    ctx = ctx_for(fmt_name)
    fmt, f, pf = ctx.p.data, ctx.p.data.frac_bits, ctx.p.pgrad_frac
    rng = np.random.default_rng(21)
    wte = quant(normal(rng, (VOCAB, N_EMBD), 0.5, 1.4), f, fmt)
    wpe = quant(normal(rng, (BLOCK, N_EMBD), 0.5, 1.4), f, fmt)
    tokens = np.array([26, 4, 12, 12, 0, 12, 25, 4, 4])
    x = ops.embedding_forward(ctx, wte, wpe, tokens)
    check_within("embedding_forward", fmt_name, "x", deq(x, f),
                 fops.embedding_forward(deq(wte, f), deq(wpe, f), tokens), 0.0)
    dx = quant(normal(rng, (len(tokens), N_EMBD), 0.05, 1.0), G_FRAC)
    dwte, dwpe = np.zeros((VOCAB, N_EMBD), np.int64), np.zeros((BLOCK, N_EMBD), np.int64)
    ops.embedding_backward(ctx, dx, tokens, dwte, dwpe)
    fwte, fwpe = np.zeros((VOCAB, N_EMBD)), np.zeros((BLOCK, N_EMBD))
    fops.embedding_backward(deq(dx, G_FRAC), tokens, fwte, fwpe)
    check_within("embedding_backward", fmt_name, "dwte", deq(dwte, pf), fwte, 0.0)
    check_within("embedding_backward", fmt_name, "dwpe", deq(dwpe, pf), fwpe, 0.0)


def rms_rows(rng, t, f, fmt):
    """Rows of realistic and extreme scales: rms from 0.05 (the embedding's 0.077 is the
    smallest seen in training) to 3."""
    scale = np.geomspace(0.05, 3.0, t)[:, None]
    return quant(np.clip(rng.normal(size=(t, N_EMBD)) * scale, -7.9, 7.9), f, fmt)


def contract_rmsnorm_shape(fmt):
    """g, fm and eps of rmsnorm_forward, from the contract's own formulas."""
    b, f = fmt.bits, fmt.frac_bits
    g = max(0, (16 - 1).bit_length() + (b - 1) + (b - 1) - 30)
    g += g % 2
    fm = 2 * f - g + 4
    return g, fm, max(1, ((1 << fm) + 50000) // 100000)


@pytest.mark.parametrize("fmt_name", OP_FORMATS)
def test_rmsnorm_forward_against_float(fmt_name):
    """y = rnd(x * M, sh): half a step of D, plus |y| times the relative error of M/2**sh:
    RSQRT_REL, plus half the relative error of the mean square (rounded by g bits: half a
    step of 2**-fm, and eps off by its own rounding)."""
    ctx = ctx_for(fmt_name)
    fmt, f = ctx.p.data, ctx.p.data.frac_bits
    g, fm, eps = contract_rmsnorm_shape(fmt)
    assert ops.rmsnorm_shape(ctx) == (g, fm) and ops.rmsnorm_eps(fm) == eps
    x = rms_rows(np.random.default_rng(22), 200, f, fmt)
    y, (m, sh) = ops.rmsnorm_forward(ctx, x)
    xr = deq(x, f)
    ref, rstd = fops.rmsnorm_forward(xr)
    ms_ref = np.mean(xr * xr, axis=-1) + 1e-5
    ms_rel = (0.5 * 2.0**-fm + abs(eps * 2.0**-fm - 1e-5)) / ms_ref
    rel = (RSQRT_REL + 0.5 * ms_rel) * 1.01
    check_within("rmsnorm_forward", fmt_name, "1/rms", m / 2.0**sh, rstd, rstd * rel)
    check_within("rmsnorm_forward", fmt_name, "y", deq(y, f), ref,
                 np.abs(ref) * rel[:, None] + 0.5 * 2.0**-f)


@pytest.mark.parametrize("fmt_name", OP_FORMATS)
def test_rmsnorm_backward_against_float(fmt_name):
    """Same y and r = M/2**sh as the float op gets. c = mean(dy y) is the exact sum rounded
    once into q2.14 (2**-15 off); y c is rounded into q2.14 (|y| 2**-15 + 2**-15 off);
    dx = rnd(t M, sh) multiplies that by r and rounds once more:
    |dx - ref| <= r (|y| + 1) 2**-15 + 2**-15 (rmsnorm amplifies by r = 1/rms, up to 20 here)."""
    ctx = ctx_for(fmt_name)
    fmt, f = ctx.p.data, ctx.p.data.frac_bits
    rng = np.random.default_rng(23)
    x = rms_rows(rng, 200, f, fmt)
    y, (m, sh) = ops.rmsnorm_forward(ctx, x)
    dy = quant(normal(rng, x.shape, 0.02, 0.1), G_FRAC)
    dx = ops.rmsnorm_backward(ctx, dy, y, (m, sh))
    r = m / 2.0**sh
    yr = deq(y, f)
    ref = fops.rmsnorm_backward(deq(dy, G_FRAC), yr, r)
    assert np.abs(ref).max() < 1.9, "inputs chosen so that nothing saturates"
    check_within("rmsnorm_backward", fmt_name, "dx", deq(dx, G_FRAC), ref,
                 r[:, None] * (np.abs(yr) + 1) * G_HALF + G_HALF)


@pytest.mark.parametrize("out", ["data", "logits"])
@pytest.mark.parametrize("n_in", [N_EMBD, MLP_HIDDEN])
@pytest.mark.parametrize("fmt_name", OP_FORMATS)
def test_linear_forward_against_float(fmt_name, n_in, out):
    """The exact dot product rounded once: half a step of the output format."""
    ctx = ctx_for(fmt_name)
    fmt, f = ctx.p.data, ctx.p.data.frac_bits
    out_fmt = fmt if out == "data" else ctx.p.logits
    rng = np.random.default_rng(24 + n_in)
    x = quant(normal(rng, (BLOCK, n_in), 1.0, 4.0), f, fmt)
    w = quant(normal(rng, (VOCAB, n_in), 1.0 / math.sqrt(n_in), 1.3), f, fmt)
    y = ops.linear_forward(ctx, x, w, out_fmt, "y")
    ref = fops.linear_forward(deq(x, f), deq(w, f))
    assert np.abs(ref).max() < out_fmt.hi * out_fmt.step, "inputs chosen not to saturate"
    check_within("linear_forward", fmt_name, f"y({out_fmt})", deq(y, out_fmt.frac_bits), ref,
                 0.5 * out_fmt.step)
    assert ctx.saturations == {"y": 0}


@pytest.mark.parametrize("n_in", [N_EMBD, MLP_HIDDEN])
@pytest.mark.parametrize("fmt_name", OP_FORMATS)
def test_linear_backward_against_float(fmt_name, n_in):
    """dx: the exact sum dy . W rounded once into q2.14 (2**-15); dW: the exact sum over
    positions rounded once to P fractional bits (half a step of 2**-P)."""
    ctx = ctx_for(fmt_name)
    fmt, f, pf = ctx.p.data, ctx.p.data.frac_bits, ctx.p.pgrad_frac
    rng = np.random.default_rng(25 + n_in)
    n_out = N_EMBD if n_in == MLP_HIDDEN else MLP_HIDDEN
    x = quant(normal(rng, (BLOCK, n_in), 1.0, 4.0), f, fmt)
    w = quant(normal(rng, (n_out, n_in), 0.3, 1.3), f, fmt)
    dy = quant(normal(rng, (BLOCK, n_out), 0.05, 0.5), G_FRAC)
    dw = np.zeros(w.shape, dtype=np.int64)
    dx = ops.linear_backward(ctx, dy, x, w, dw, "lin")
    fdw = np.zeros(w.shape)
    ref = fops.linear_backward(deq(dy, G_FRAC), deq(x, f), deq(w, f), fdw)
    check_within("linear_backward", fmt_name, "dx", deq(dx, G_FRAC), ref, G_HALF)
    check_within("linear_backward", fmt_name, "dW", deq(dw, pf), fdw, 2.0 ** -(pf + 1))


@pytest.mark.parametrize("fmt_name", OP_FORMATS)
def test_add_and_relu_are_exact(fmt_name):
    ctx = ctx_for(fmt_name)
    fmt, f = ctx.p.data, ctx.p.data.frac_bits
    rng = np.random.default_rng(26)
    a = quant(normal(rng, (BLOCK, N_EMBD), 1.0, 3.0), f, fmt)
    b = quant(normal(rng, (BLOCK, N_EMBD), 1.0, 3.0), f, fmt)
    check_within("add_forward", fmt_name, "y", deq(ops.add_forward(ctx, a, b, fmt, "r"), f),
                 fops.add_forward(deq(a, f), deq(b, f)), 0.0)
    dy = quant(normal(rng, a.shape, 0.05, 1.0), G_FRAC)
    for got, want in zip(ops.add_backward(dy), fops.add_backward(deq(dy, G_FRAC)), strict=True):
        check_within("add_backward", fmt_name, "dx", deq(got, G_FRAC), want, 0.0)
    a[0, :4] = 0  # the kink: relu passes no gradient at 0, like the float op
    check_within("relu_forward", fmt_name, "y", deq(ops.relu_forward(a), f),
                 fops.relu_forward(deq(a, f)), 0.0)
    check_within("relu_backward", fmt_name, "dx", deq(ops.relu_backward(dy, a), G_FRAC),
                 fops.relu_backward(deq(dy, G_FRAC), deq(a, f)), 0.0)


def heads(a):
    return a.reshape(a.shape[0], N_HEAD, HEAD_DIM).transpose(1, 0, 2)


def merge(a):
    return a.transpose(1, 0, 2).reshape(a.shape[1], N_EMBD)


def qkv_inputs(rng, t, f, fmt, scale=1.0):
    return [quant(normal(rng, (t, N_EMBD), scale, 2.6), f, fmt) for _ in range(3)]


@pytest.mark.parametrize("fmt_name", OP_FORMATS)
def test_attention_forward_against_float(fmt_name):
    """Scores: the exact q.k/2 rounded once to F bits (dz = 2**-(F+1)); probabilities within
    softmax_bound of the float ones; out = rnd(sum_s p v, 15): sum_s |v_s| |dp_s| plus half a
    step of D."""
    ctx = ctx_for(fmt_name)
    fmt, f = ctx.p.data, ctx.p.data.frac_bits
    rng = np.random.default_rng(27)
    for t in (1, 2, 7, BLOCK):
        q, k, v = qkv_inputs(rng, t, f, fmt, scale=1.2)
        out, probs = ops.attention_forward(ctx, q, k, v)
        qr, kr, vr = deq(q, f), deq(k, f), deq(v, f)
        ref, pref = fops.attention_forward(qr, kr, vr)
        scores = heads(qr) @ heads(kr).transpose(0, 2, 1) / 2
        mask = np.tril(np.ones((t, t), dtype=bool))
        n = mask.sum(axis=-1)[None, :, None]
        pb = softmax_bound(pref, np.where(mask, scores, np.nan), n, 2.0 ** -(f + 1), f)
        pb = np.where(mask, pb, 0.0)
        check_within("attention_forward", fmt_name, f"probs(T={t})", deq(probs, 15), pref, pb)
        ob = merge(pb @ np.abs(heads(vr))) + 0.5 * 2.0**-f
        check_within("attention_forward", fmt_name, f"out(T={t})", deq(out, f), ref, ob)


@pytest.mark.parametrize("fmt_name", OP_FORMATS)
def test_attention_backward_against_float(fmt_name):
    """Same q, k, v and probabilities as the float op gets (the integer forward's). Per head:
    dp = rnd(dout.v, F) and dv = rnd(sum p dout, 15): 2**-15 each; pd = rnd(sum p dp, 15):
    (sum p + 1) 2**-15; diff = dp - pd: (sum p + 2) 2**-15; ds = rnd(p diff, 16), which
    also halves: p (sum p + 2) 2**-16 + 2**-15; dq[t] = rnd(sum_s ds k[s], F):
    sum_s |k_s| err(ds[t,s]) + 2**-15, and dk[s] likewise with q[t]."""
    ctx = ctx_for(fmt_name)
    fmt, f = ctx.p.data, ctx.p.data.frac_bits
    rng = np.random.default_rng(28)
    for t in (1, 3, BLOCK):
        q, k, v = qkv_inputs(rng, t, f, fmt)
        _, probs = ops.attention_forward(ctx, q, k, v)
        dout = quant(normal(rng, (t, N_EMBD), 0.05, 0.5), G_FRAC)
        dq, dk, dv = ops.attention_backward(ctx, dout, q, k, v, probs)
        pr, qr, kr, vr = deq(probs, 15), deq(q, f), deq(k, f), deq(v, f)
        rq, rk, rv = fops.attention_backward(deq(dout, G_FRAC), qr, kr, vr, pr)
        psum = pr.sum(axis=-1, keepdims=True)
        ds_err = pr * (psum + 2) * 2.0**-16 + G_HALF
        ds_err = np.where(np.tril(np.ones((t, t), dtype=bool)), ds_err, 0.0)
        bq = merge(ds_err @ np.abs(heads(kr))) + G_HALF
        bk = merge(ds_err.transpose(0, 2, 1) @ np.abs(heads(qr))) + G_HALF
        check_within("attention_backward", fmt_name, f"dv(T={t})", deq(dv, G_FRAC), rv, G_HALF)
        check_within("attention_backward", fmt_name, f"dq(T={t})", deq(dq, G_FRAC), rq, bq)
        check_within("attention_backward", fmt_name, f"dk(T={t})", deq(dk, G_FRAC), rk, bk)


@pytest.mark.parametrize("fmt_name", OP_FORMATS)
def test_cross_entropy_forward_and_backward_against_float(fmt_name):
    """Forward: the softmax of exact logits (softmax_bound with dz = 0). Backward, given the
    same probabilities: (p - onehot) / T rounded half up once into q2.14: 2**-15."""
    ctx = ctx_for(fmt_name)
    f, lf = ctx.p.data.frac_bits, ctx.p.logits
    rng = np.random.default_rng(29)
    for t in (1, 6, BLOCK):
        z = quant(normal(rng, (t, VOCAB), 3.0, 11.0), f, lf)
        targets = rng.integers(0, VOCAB, t)
        probs = ops.cross_entropy_forward(ctx, z, targets)
        zr = deq(z, f)
        _, pref = fops.cross_entropy_forward(zr, targets)
        check_within("cross_entropy_forward", fmt_name, f"probs(T={t})", deq(probs, 15), pref,
                     softmax_bound(pref, zr, VOCAB, 0, f))
        d = ops.cross_entropy_backward(ctx, probs, targets)
        ref = fops.cross_entropy_backward(deq(probs, 15), targets)
        check_within("cross_entropy_backward", fmt_name, f"dlogits(T={t})", deq(d, G_FRAC),
                     ref, G_HALF)


# --- 3. exactness: the device recipe, causality, saturation counts ----------

INT32 = (-(2**31), 2**31 - 1)


def fits32(*values):
    for v in values:
        assert INT32[0] <= v <= INT32[1], f"device recipe intermediate {v} leaves int32"


def device_dot_requant(a, b, s, lo, hi):
    """sat(rnd(dot(a, b), s)) by arithmetic.md section 3's int32 recipe, on plain ints,
    checking that every intermediate fits int32."""
    h = low = 0
    for x, y in zip(a, b, strict=True):
        p = x * y
        fits32(p)
        h += p >> 16
        low += p & 0xFFFF
        fits32(h, low)
    h += low >> 16
    low &= 0xFFFF
    fits32(h, low)
    if s >= 16:
        q = (h + ((low + (1 << (s - 1))) >> 16)) >> (s - 16)
    else:
        lim = 1 << (14 + s)
        if h >= lim:
            q = hi
        elif h < -lim:
            q = lo
        else:
            fits32(h << (16 - s), low + ((1 << s) >> 1))
            q = (h << (16 - s)) + ((low + ((1 << s) >> 1)) >> s)
    fits32(q)
    return min(max(q, lo), hi)


def extreme_or_random(rng, shape, fmt):
    """Raw values of fmt: a third at lo or hi, the rest uniform over the whole range."""
    r = rng.integers(fmt.lo, fmt.hi, size=shape, endpoint=True)
    pick = rng.random(shape)
    r = np.where(pick < 1 / 6, fmt.lo, r)
    return np.where((pick >= 1 / 6) & (pick < 1 / 3), fmt.hi, r)


@pytest.mark.parametrize("fmt_name", ["q12.4", "q1.15", "q4.8", "q4.12", "q8.8", "q16.0"])
def test_linear_equals_the_device_int32_recipe(fmt_name):
    """linear_forward (into D and L), linear_backward's dx and dW, on full-range inputs
    (many results saturate), against the contract's int32 pair recipe on plain ints."""
    ctx = ctx_for(fmt_name, **strict_policy_args(fmt_name))
    p = ctx.p
    fmt, f = p.data, p.data.frac_bits
    rng = np.random.default_rng(31 + fmt.bits)
    for n_in, n_out in ((N_EMBD, 5), (MLP_HIDDEN, 3)):
        t = 4
        x = extreme_or_random(rng, (t, n_in), fmt)
        w = extreme_or_random(rng, (n_out, n_in), fmt)
        for out_fmt in (fmt, p.logits):
            s = 2 * f - out_fmt.frac_bits
            y = ops.linear_forward(ctx, x, w, out_fmt, "y")
            want = [[device_dot_requant(x[i].tolist(), w[o].tolist(), s, out_fmt.lo, out_fmt.hi)
                     for o in range(n_out)] for i in range(t)]
            check_equal("linear_forward", fmt_name, f"y({out_fmt})", y, np.array(want))
        dy = extreme_or_random(rng, (t, n_out), p.grad)
        dw = np.zeros(w.shape, dtype=np.int64)
        dx = ops.linear_backward(ctx, dy, x, w, dw, "lin")
        want = [[device_dot_requant(dy[i].tolist(), w[:, j].tolist(), f, p.grad.lo, p.grad.hi)
                 for j in range(n_in)] for i in range(t)]
        check_equal("linear_backward", fmt_name, "dx", dx, np.array(want))
        # dW is not saturated: the contract's recipe with lo, hi = -2**30, 2**30
        want = [[device_dot_requant(dy[:, o].tolist(), x[:, j].tolist(), p.pgrad_guard,
                                    -(2**30), 2**30) for j in range(n_in)] for o in range(n_out)]
        check_equal("linear_backward", fmt_name, "dW", dw, np.array(want))


@pytest.mark.parametrize("fmt_name", ["q12.4", "q1.15", "q4.8"])
def test_attention_scores_equal_the_device_recipe(fmt_name):
    """score[t,s] = sat(rnd(q_h[t].k_h[s], F + 1), L), and out = sat(rnd(sum p v, 15), D)."""
    ctx = ctx_for(fmt_name)
    p = ctx.p
    fmt, f = p.data, p.data.frac_bits
    rng = np.random.default_rng(32)
    t = 6
    q, k, v = (extreme_or_random(rng, (t, N_EMBD), fmt) for _ in range(3))
    out, probs = ops.attention_forward(ctx, q, k, v)
    qh, kh, vh = heads(q), heads(k), heads(v)
    for h in range(N_HEAD):
        for i in range(t):
            row = [device_dot_requant(qh[h, i].tolist(), kh[h, j].tolist(), f + 1,
                                      p.logits.lo, p.logits.hi) for j in range(i + 1)]
            check_equal("attention_forward", fmt_name, f"probs[{h},{i}]", probs[h, i, : i + 1],
                        ops.softmax(np.array([row]), f)[0])
            got = [int(out[i, h * HEAD_DIM + d]) for d in range(HEAD_DIM)]
            want = [device_dot_requant(probs[h, i, : i + 1].tolist(),
                                       vh[h, : i + 1, d].tolist(), 15, fmt.lo, fmt.hi)
                    for d in range(HEAD_DIM)]
            assert got == want, f"attention_forward {fmt_name}: out[{i}] head {h}: {got} {want}"


def rnd(x, s):
    return (x + (1 << (s - 1))) >> s if s > 0 else x << -s


def sat(x, fmt):
    return min(max(x, fmt.lo), fmt.hi)


def contract_rsqrt(ms, fm):
    k = (ms.bit_length() - 29) // 2
    a = ms >> (2 * k) if k >= 0 else ms << (-2 * k)
    s = math.isqrt(a)
    return ((1 << 29) + (s >> 1)) // s, 29 + k - fm // 2


@pytest.mark.parametrize("fmt_name", ["q12.4", "q1.15", "q2.14", "q4.8", "q4.12", "q16.0"])
def test_rmsnorm_equals_the_contract_in_plain_python(fmt_name):
    """rmsnorm forward and backward, arithmetic.md section 6 and 7, element by element on
    plain ints with the device's dot-product recipe; rows from 0 (ms = eps) to lo / hi."""
    ctx = ctx_for(fmt_name, **strict_policy_args(fmt_name))
    fmt, gf, f = ctx.p.data, ctx.p.grad, ctx.p.data.frac_bits
    g, fm, eps = contract_rmsnorm_shape(fmt)
    rng = np.random.default_rng(37 + fmt.bits)
    x = extreme_or_random(rng, (BLOCK, N_EMBD), fmt)
    x[0] = 0
    x[1] = 0
    x[1, 3] = 1  # the smallest mean squares: eps alone, and one step
    x[2] = fmt.lo
    x[3] >>= 12  # small values: a left-shifted mean square
    dy = extreme_or_random(rng, (BLOCK, N_EMBD), gf)
    dy[4] >>= 10
    y, rs = ops.rmsnorm_forward(ctx, x)
    dx = ops.rmsnorm_backward(ctx, dy, y, rs)
    for t in range(BLOCK):
        xs, dys = x[t].tolist(), dy[t].tolist()
        ms = device_dot_requant(xs, xs, g, -(2**30), 2**30) + eps
        m, sh = contract_rsqrt(ms, fm)
        assert (int(rs[0][t]), int(rs[1][t])) == (m, sh), f"{fmt_name} row {t}: M, sh"
        want_y = [sat(rnd(xi * m, sh), fmt) for xi in xs]
        assert y[t].tolist() == want_y, f"rmsnorm_forward {fmt_name} row {t}"
        c = device_dot_requant(dys, want_y, f + 4, gf.lo, gf.hi)
        ts = [sat(d - rnd(yi * c, f), gf) for d, yi in zip(dys, want_y, strict=True)]
        want_dx = [sat(rnd(ti * m, sh), gf) for ti in ts]
        assert dx[t].tolist() == want_dx, f"rmsnorm_backward {fmt_name} row {t}"


@pytest.mark.parametrize("fmt_name", ["q12.4", "q1.15", "q4.12", "q8.8"])
def test_attention_backward_equals_the_contract_in_plain_python(fmt_name):
    """arithmetic.md section 7, attention_backward steps 1-4, per head on plain ints (only
    s <= t exists), from full-range inputs."""
    ctx = ctx_for(fmt_name)
    fmt, gf, f = ctx.p.data, ctx.p.grad, ctx.p.data.frac_bits
    rng = np.random.default_rng(38 + fmt.bits)
    t_len = 5
    q, k, v = (extreme_or_random(rng, (t_len, N_EMBD), fmt) for _ in range(3))
    dout = extreme_or_random(rng, (t_len, N_EMBD), gf)
    dout[1:3] >>= 9  # some rows that do not saturate
    _, probs = ops.attention_forward(ctx, q, k, v)
    dq, dk, dv = ops.attention_backward(ctx, dout, q, k, v, probs)
    for h in range(N_HEAD):
        cols = slice(h * HEAD_DIM, (h + 1) * HEAD_DIM)
        qh, kh, vh, dh = (a[:, cols].tolist() for a in (q, k, v, dout))
        p = probs[h].tolist()
        rows = range(t_len)
        dp = {(t, s): device_dot_requant(dh[t], vh[s], f, gf.lo, gf.hi)
              for t in rows for s in range(t + 1)}
        want_dv = [[device_dot_requant([p[t][s] for t in range(s, t_len)],
                                       [dh[t][d] for t in range(s, t_len)], 15, gf.lo, gf.hi)
                    for d in range(HEAD_DIM)] for s in rows]
        pd = [rnd(sum(p[t][s] * dp[t, s] for s in range(t + 1)), 15) for t in rows]
        ds = {(t, s): rnd(p[t][s] * sat(dp[t, s] - pd[t], gf), 16)
              for t in rows for s in range(t + 1)}
        want_dq = [[device_dot_requant([ds[t, s] for s in range(t + 1)],
                                       [kh[s][d] for s in range(t + 1)], f, gf.lo, gf.hi)
                    for d in range(HEAD_DIM)] for t in rows]
        want_dk = [[device_dot_requant([ds[t, s] for t in range(s, t_len)],
                                       [qh[t][d] for t in range(s, t_len)], f, gf.lo, gf.hi)
                    for d in range(HEAD_DIM)] for s in rows]
        check_equal("attention_backward", fmt_name, f"dv head {h}", dv[:, cols],
                    np.array(want_dv))
        check_equal("attention_backward", fmt_name, f"dq head {h}", dq[:, cols],
                    np.array(want_dq))
        check_equal("attention_backward", fmt_name, f"dk head {h}", dk[:, cols],
                    np.array(want_dk))


@pytest.mark.parametrize("fmt_name", OP_FORMATS + ("q1.15",))
def test_attention_prefix_equals_first_rows(fmt_name):
    """The device computes position t from positions 0..t only (its KV cache): attention over
    a prefix must give exactly the first rows of attention over the whole sequence."""
    ctx = ctx_for(fmt_name)
    fmt, f = ctx.p.data, ctx.p.data.frac_bits
    q, k, v = qkv_inputs(np.random.default_rng(33), BLOCK, f, fmt, scale=1.5)
    out, probs = ops.attention_forward(ctx, q, k, v)
    for t in range(1, BLOCK + 1):
        o, p = ops.attention_forward(ctx, q[:t], k[:t], v[:t])
        check_equal("attention_forward", fmt_name, f"out(prefix {t})", o, out[:t])
        check_equal("attention_forward", fmt_name, f"probs(prefix {t})", p, probs[:, :t, :t])


def test_saturations_counted_per_tensor():
    ctx = ctx_for("q4.12")
    fmt = ctx.p.data
    a = np.array([[fmt.hi, fmt.hi, 5, fmt.lo, 0]], dtype=np.int64)
    b = np.array([[1, -1, 7, -1, fmt.lo]], dtype=np.int64)
    y = ops.add_forward(ctx, a, b, fmt, "residual")
    assert y.tolist() == [[fmt.hi, fmt.hi - 1, 12, fmt.lo, fmt.lo]]
    assert ctx.saturations == {"residual": 2}  # hi + 1 and lo - 1
    ops.add_forward(ctx, a, b, fmt, "residual")
    ops.add_forward(ctx, a, -b, fmt, "other")
    assert ctx.saturations == {"residual": 4, "other": 2}  # hi + 1 and 0 - lo = 2**15
    # linear: count the results outside D from the exact sums, independently
    rng = np.random.default_rng(34)
    x = extreme_or_random(rng, (8, N_EMBD), fmt)
    w = extreme_or_random(rng, (N_EMBD, N_EMBD), fmt)
    exact = [[sum(int(i) * int(j) for i, j in zip(xr, wr, strict=True)) for wr in w] for xr in x]
    rounded = [(e + (1 << 11)) >> 12 for row in exact for e in row]
    want = sum(1 for r in rounded if not fmt.lo <= r <= fmt.hi)
    assert want > 0
    ops.linear_forward(ctx, x, w, fmt, "mlp_hidden")
    assert ctx.saturations["mlp_hidden"] == want


def masked_overflow_inputs(fmt):
    """Two positions whose visible scores and dp fit while the masked (future) ones overflow:
    score[0,1] = 4 * 2**30 / 2**13 = 2**19 > L.hi, dp[0,1] = 4 * 2**30 / 2**12 > q2.14's hi."""
    t = 2
    q, k, v, dout = (np.zeros((t, N_EMBD), dtype=np.int64) for _ in range(4))
    q[0], k[1], q[1] = fmt.lo, fmt.lo, 1
    dout[0], v[1] = fmt.lo, fmt.lo
    return q, k, v, dout


def test_attention_forward_counts_saturations_only_where_it_stores():
    """The contract computes score[t,s] only for s <= t (the device never forms the future
    ones), and telemetry counts the stores that saturate: here none."""
    ctx = ctx_for("q4.12")
    q, k, v, _ = masked_overflow_inputs(ctx.p.data)
    ops.attention_forward(ctx, q, k, v)
    counted = {name: n for name, n in ctx.saturations.items() if n}
    assert not counted, (
        f"attention_forward counted saturations {counted} of masked (future) scores s > t, "
        "which no position ever computes or stores")


def test_attention_backward_counts_saturations_only_where_it_stores():
    """dp[t,s] and diff[t,s] exist only for s <= t (arithmetic.md, attention_backward)."""
    ctx = ctx_for("q4.12")
    q, k, v, dout = masked_overflow_inputs(ctx.p.data)
    _, probs = ops.attention_forward(ops.Ctx(ctx.p), q, k, v)
    ops.attention_backward(ctx, dout, q, k, v, probs)
    counted = {name: n for name, n in ctx.saturations.items() if n}
    assert not counted, (
        f"attention_backward counted saturations {counted} of masked (future) entries s > t, "
        "which no position ever computes or stores")


# --- 4. strict mode ---------------------------------------------------------


def full_step(ctx, flat, tokens, adam, step=0):
    inputs, targets = split_tokens(tokens)
    logits, cache = int_model.forward(ctx, flat, inputs, targets)
    grad = np.zeros(N_PARAMS, dtype=np.int64)
    int_model.backward(ctx, flat, cache, grad)
    ops.loss_q16(logits, targets, ctx.p.data.frac_bits)
    adam.step(flat, grad, step, 10, ctx)
    return grad


@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
@pytest.mark.parametrize("fmt_name", STRICT_FORMATS)
def test_strict_full_step_on_realistic_inputs(fmt_name, rounding):
    ctx = ctx_for(fmt_name, strict=True, rounding=rounding, **strict_policy_args(fmt_name))
    flat = int_model.init_params(7, ctx.p.data)
    adam = int_model.IntAdam(ctx.p, 7)
    for step, name in enumerate(NAMES):
        full_step(ctx, flat, encode(name), adam, step)


@pytest.mark.parametrize("pattern", ["hi", "lo", "mixed"])
@pytest.mark.parametrize("fmt_name", STRICT_FORMATS)
def test_strict_full_step_on_max_magnitude_inputs(fmt_name, pattern):
    """Every weight at lo or hi drives every activation, score, logit and gradient to its
    extremes; the Adam state starts at its limits too (|m| = 2**30 - 1, v = 2**30 or 0)."""
    ctx = ctx_for(fmt_name, strict=True, rounding="stochastic", **strict_policy_args(fmt_name))
    fmt = ctx.p.data
    rng = np.random.default_rng(35)
    if pattern == "mixed":
        flat = rng.choice([fmt.lo, fmt.hi], N_PARAMS).astype(np.int64)
    else:
        flat = np.full(N_PARAMS, fmt.hi if pattern == "hi" else fmt.lo, dtype=np.int64)
    adam = int_model.IntAdam(ctx.p, 7)
    adam.m = rng.choice([-(2**30 - 1), 2**30 - 1], N_PARAMS).astype(np.int64)
    adam.v = rng.choice([0, 2**30], N_PARAMS).astype(np.int64)
    tokens = encode("aaaaaaaaaaaaaaa")  # 16 positions, one token: dwte sums 16 rows
    grad = full_step(ctx, flat, tokens, adam)
    assert np.abs(grad).max() <= 2**30
    full_step(ctx, flat, encode("zyxwvutsrqponml"), adam, 1)


@pytest.mark.parametrize("fmt_name", STRICT_FORMATS)
def test_strict_ops_on_max_magnitude_activations(fmt_name):
    """The backward ops fed activations and gradients at lo / hi directly."""
    ctx = ctx_for(fmt_name, strict=True, **strict_policy_args(fmt_name))
    p = ctx.p
    fmt, gf = p.data, p.grad
    rng = np.random.default_rng(36)
    for pick in ("lo", "hi", "mixed"):
        def act(shape, f=fmt, pick=pick):
            if pick == "mixed":
                return rng.choice([f.lo, f.hi], shape).astype(np.int64)
            return np.full(shape, f.lo if pick == "lo" else f.hi, dtype=np.int64)

        x = act((BLOCK, N_EMBD))
        y, rs = ops.rmsnorm_forward(ctx, x)
        ops.rmsnorm_backward(ctx, act((BLOCK, N_EMBD), gf), act((BLOCK, N_EMBD)), rs)
        q, k, v = act((BLOCK, N_EMBD)), act((BLOCK, N_EMBD)), act((BLOCK, N_EMBD))
        _, probs = ops.attention_forward(ctx, q, k, v)
        ops.attention_backward(ctx, act((BLOCK, N_EMBD), gf), q, k, v, probs)
        w = act((MLP_HIDDEN, N_EMBD))
        ops.linear_backward(ctx, act((BLOCK, MLP_HIDDEN), gf), x, w,
                            np.zeros(w.shape, dtype=np.int64), "fc1")
        dwte = np.zeros((VOCAB, N_EMBD), dtype=np.int64)
        ops.embedding_backward(ctx, act((BLOCK, N_EMBD), gf), np.zeros(BLOCK, dtype=np.int64),
                               dwte, np.zeros((BLOCK, N_EMBD), dtype=np.int64))


def test_check_raises_naming_op_and_tensor():
    ctx = ctx_for("q4.12", strict=True)
    ctx.check("some_op", "some_tensor", np.array([0, 2**31 - 1, -(2**31)]))  # the limits fit
    with pytest.raises(ops.Int32Overflow, match=r"some_op: some_tensor\[1\] = 2147483648"):
        ctx.check("some_op", "some_tensor", np.array([5, 2**31, 3]))
    with pytest.raises(ops.Int32Overflow, match=r"op2: t2\[0\] = -2147483649"):
        ctx.check("op2", "t2", np.array([-(2**31) - 1]))
    # an unsaturated exact sum whose rounded value leaves int32 (fmt None)
    with pytest.raises(ops.Int32Overflow, match="linear_backward: lm_head.dw"):
        ops.requant(ctx, "linear_backward", "lm_head.dw", np.array([2**45]), 4)
    # without strict nothing is checked
    loose = ctx_for("q4.12")
    loose.check("some_op", "some_tensor", np.array([2**40]))
    assert int(ops.requant(loose, "op", "t", np.array([2**45]), 4)[0]) == 2**41


# --- per-class formats (arithmetic.md section 3): mixed policies against plain Python ---


def test_bit_length_is_exact_without_float():
    v = [0, 1, 2, 3] + [x for k in range(2, 63) for x in ((1 << k) - 1, 1 << k, (1 << k) + 1)
                        if x < 2**63]
    got = ops.bit_length(np.array(v, dtype=np.int64))
    want = [int(x).bit_length() for x in v]
    assert got.tolist() == want, [(x, g, w) for x, g, w in zip(v, got, want, strict=True)
                                  if g != w][:5]


def test_isqrt_up_to_2_to_the_32():
    n = np.array([2**32 - 1, 2**32 - 2, 65535**2, 65535**2 - 1, 2**31], dtype=np.int64)
    assert ops.isqrt(n).tolist() == [math.isqrt(int(x)) for x in n]


def test_isqrt_every_small_input_and_every_square_edge_below_2_to_the_32():
    """isqrt's table start and single Newton step: exact for every n < 2**20 and at every
    square r*r, r*r - 1 and r*r + 2r (the largest n with root r) below 2**32."""
    n = np.arange(1 << 20, dtype=np.int64)
    check_equal("isqrt", "", "isqrt(n)", ops.isqrt(n), np.array([math.isqrt(int(v)) for v in n]))
    r = np.arange(1, 1 << 16, dtype=np.int64)
    check_equal("isqrt", "", "isqrt(r*r)", ops.isqrt(r * r), r)
    check_equal("isqrt", "", "isqrt(r*r - 1)", ops.isqrt(r * r - 1), r - 1)
    check_equal("isqrt", "", "isqrt(r*r + 2r)", ops.isqrt(r * r + 2 * r), r)


def mixed_ctx(spec, strict=True, **kw):
    from qgpt.policy import parse_policy

    return ops.Ctx(parse_policy(spec, **kw), strict=strict)


def req_py(x, s, fmt):
    """req of section 2 on a Python int: round half up (s > 0) or exact left shift, then
    saturate."""
    return sat(rnd(x, s) if s > 0 else x << -s, fmt)


@pytest.mark.parametrize("spec", ["weights=q2.6,acts=q4.4", "weights=q4.4,acts=q2.6",
                                  "weights=q1.7,acts=q8.8"])
def test_embedding_forward_requantizes_weights_into_acts(spec):
    ctx = mixed_ctx(spec)
    p = ctx.p
    rng = np.random.default_rng(len(spec))
    wte = extreme_or_random(rng, (VOCAB, N_EMBD), p.weights)
    wpe = extreme_or_random(rng, (BLOCK, N_EMBD), p.weights)
    tokens = rng.integers(0, VOCAB, BLOCK)
    got = ops.embedding_forward(ctx, wte, wpe, tokens)
    s = p.weights.frac_bits - p.acts.frac_bits
    for t in range(BLOCK):
        for c in range(N_EMBD):
            want = req_py(int(wte[tokens[t], c] + wpe[t, c]), s, p.acts)
            assert got[t, c] == want, (spec, "embedding.x", t, c, got[t, c], want)


@pytest.mark.parametrize("spec, out", [("weights=q2.6,acts=q4.4", "acts"),
                                       ("weights=q2.6,acts=q4.4", "logits"),
                                       ("weights=q8.8,acts=q3.5,logits=q10.10", "logits"),
                                       ("weights=q1.15,acts=q4.12,logits=q12.12", "logits")])
def test_linear_forward_mixed_formats_equal_the_device_recipe(spec, out):
    ctx = mixed_ctx(spec)
    p = ctx.p
    of = getattr(p, out)
    rng = np.random.default_rng(3)
    x = extreme_or_random(rng, (BLOCK, MLP_HIDDEN), p.acts)
    w = extreme_or_random(rng, (N_EMBD, MLP_HIDDEN), p.weights)
    got = ops.linear_forward(ctx, x, w, of, "y")
    s = p.weights.frac_bits + p.acts.frac_bits - of.frac_bits
    for t in range(BLOCK):
        for o in range(N_EMBD):
            want = device_dot_requant(x[t].tolist(), w[o].tolist(), s, of.lo, of.hi)
            assert got[t, o] == want, (spec, out, t, o, got[t, o], want)


def test_attention_scores_with_their_own_logits_format():
    ctx = mixed_ctx("acts=q4.4,logits=q6.6")
    p = ctx.p
    rng = np.random.default_rng(8)
    q, k, v = (extreme_or_random(rng, (BLOCK, N_EMBD), p.acts) for _ in range(3))
    scores = []
    orig = ops.softmax

    def spy(z, frac, mask=None):
        scores.append((z.copy(), frac))
        return orig(z, frac, mask)

    ops.softmax = spy
    try:
        ops.attention_forward(ctx, q, k, v)
    finally:
        ops.softmax = orig
    z, frac = scores[0]
    assert frac == 6
    s = 2 * 4 + 1 - 6
    for h in range(N_HEAD):
        sl = slice(h * HEAD_DIM, (h + 1) * HEAD_DIM)
        for t in range(BLOCK):
            for u in range(t + 1):
                want = device_dot_requant(q[t, sl].tolist(), k[u, sl].tolist(), s,
                                          p.logits.lo, p.logits.hi)
                assert z[h, t, u] == want, ("scores", h, t, u, z[h, t, u], want)


@pytest.mark.parametrize("spec", ["grads=q1.7,acts=q4.4", "grads=q2.14", "grads=q1.15"])
def test_cross_entropy_backward_rounds_into_grads(spec):
    from fractions import Fraction

    ctx = mixed_ctx(spec)
    gf = ctx.p.grads
    rng = np.random.default_rng(2)
    for t in (1, 3, 16):
        probs = rng.integers(0, Q15 + 1, (t, VOCAB))
        targets = rng.integers(0, VOCAB, t)
        got = ops.cross_entropy_backward(ctx, probs, targets)
        for i in range(t):
            for j in range(VOCAB):
                d = int(probs[i, j]) - (Q15 if j == targets[i] else 0)
                exact = Fraction(d, t) * 2**gf.frac_bits / Q15
                want = sat(math.floor(exact + Fraction(1, 2)), gf)
                assert got[i, j] == want, (spec, t, i, j, got[i, j], want)


def test_embedding_backward_saturates_position_by_position():
    """A narrow pgrads: dwte[tok] takes d[0], d[1], ... in order, each sum saturated."""
    ctx = mixed_ctx("acts=q4.4,pgrads=q4.4", strict=False)
    p = ctx.p
    rng = np.random.default_rng(4)
    dx = extreme_or_random(rng, (BLOCK, N_EMBD), p.grads)
    tokens = np.array([3, 3, 3, 5, 3, 5, 3, 3, 3, 7, 3, 3, 3, 3, 3, 3])
    dwte = np.zeros((VOCAB, N_EMBD), dtype=np.int64)
    dwpe = np.zeros((BLOCK, N_EMBD), dtype=np.int64)
    ops.embedding_backward(ctx, dx, tokens, dwte, dwpe)
    s = p.grads.frac_bits - p.pgrads.frac_bits
    want_te = [[0] * N_EMBD for _ in range(VOCAB)]
    for t, tok in enumerate(tokens):
        for c in range(N_EMBD):
            d = req_py(int(dx[t, c]), s, p.pgrads)
            assert dwpe[t, c] == d, ("dwpe", t, c, dwpe[t, c], d)
            want_te[tok][c] = sat(want_te[tok][c] + d, p.pgrads)
    assert dwte.tolist() == want_te
    assert ctx.saturations["embedding.dw"] > 0


def test_strict_names_the_device_form_of_adams_products():
    """mul15 on the device multiplies x >> 15 by c: a state beyond 2**31 overflows there,
    although int64 computes x * c without trouble."""
    ctx = ctx_for("q4.12", strict=True)
    adam = int_model.IntAdam(ctx.p, 0)
    adam.m = np.full(N_PARAMS, 2**40, dtype=np.int64)
    with pytest.raises(ops.Int32Overflow, match=r"adam: \(m >> 15\) \* 27853"):
        adam.step(np.zeros(N_PARAMS, dtype=np.int64), np.zeros(N_PARAMS, dtype=np.int64), 0,
                  10, ctx)
