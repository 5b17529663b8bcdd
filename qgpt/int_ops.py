"""The integer simulator's ops: the float reference's forward/backward pairs in integers.

Every function implements the section of docs/arithmetic.md with its name, on
raw integers held in numpy int64, vectorised over positions. Every dot product
is the exact sum of its products (int64 here; a pair of int32 halves on the
device), rounded once: the result never depends on evaluation order, so the
firmware, which goes token by token, gets the same bits.

`ctx` carries the policy, the saturation counters and the strict check: with
ctx.strict every intermediate the device forms is checked against the bound the
contract gives it (int32; `±2**30` where the firmware clamps there; a dot product's
exact sum against `2**36`, the bound of its pair of int32 halves), and a violation
names the op and the tensor. Shapes use the legend in params.py.
"""

import math

import numpy as np

from qgpt.params import HEAD_DIM, N_HEAD, RMS_EPS
from qgpt.policy import PROB_FRAC
from qgpt.qformat import saturate, shift_round

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
KERNEL_LIMIT = 1 << 30  # unsaturated sums and kernel-range state stay within +-2**30
PAIR_LIMIT = 1 << 36  # a dot product's exact sum, kept on the device as (H, L)
INT64_MIN = np.iinfo(np.int64).min
PROB_ONE = 1 << PROB_FRAC


class Int32Overflow(ArithmeticError):
    pass


class Ctx:
    """Policy, saturation counts per tensor, and the strict int32 check."""

    def __init__(self, policy, strict=False):
        self.p = policy
        self.strict = strict
        self.saturations = {}

    def check(self, op, tensor, x, lo=INT32_MIN, hi=INT32_MAX, where=None):
        """With strict, raise Int32Overflow naming op and tensor if x leaves [lo, hi]
        (int32 unless given); where: check only those elements."""
        if self.strict:
            x = np.asarray(x)
            bad = (x < lo) | (x > hi)
            if where is not None:
                bad &= where
            if x.size and bad.any():
                i = int(np.argmax(bad.ravel()))
                bound = "int32" if (lo, hi) == (INT32_MIN, INT32_MAX) else f"[{lo}, {hi}]"
                raise Int32Overflow(f"{op}: {tensor}[{i}] = {x.flat[i]} does not fit {bound}")
        return x

    def req(self, x, s, fmt, tensor):
        """req(x, s, fmt) of arithmetic.md section 2: x / 2**s rounded half up (s > 0) or
        x * 2**-s (s <= 0), saturated to fmt and counted into tensor."""
        return self.sat(shift_round(np.asarray(x, dtype=np.int64), s), fmt, tensor)

    def sat(self, x, fmt, tensor, where=None):
        """saturate(x, fmt), counting into tensor; where: count only those elements
        (attention's causal entries: the device never forms the others)."""
        if where is None:
            return saturate(x, fmt, self.saturations, tensor)
        clipped = np.count_nonzero(((x < fmt.lo) | (x > fmt.hi)) & where)
        self.saturations[tensor] = self.saturations.get(tensor, 0) + int(clipped)
        return np.minimum(np.maximum(x, fmt.lo), fmt.hi)


def requant(ctx, op, tensor, s, shift, fmt=None, where=None):
    """sat(rnd(s, shift), fmt) of an exact sum s (arithmetic.md, "dot products").

    s may exceed int32 (the device holds it as a pair of int32 halves); the
    rounded result fits int32 by the bounds of each op. fmt None: no saturation.
    """
    r = shift_round(s, shift)
    if ctx.strict:
        ctx.check(op, tensor + " (exact sum)", s, -PAIR_LIMIT, PAIR_LIMIT)
        if fmt is None:  # the recipe's unsaturated sums: lo, hi = -2**30, 2**30
            ctx.check(op, tensor, r, -KERNEL_LIMIT, KERNEL_LIMIT)
    return r if fmt is None else ctx.sat(r, fmt, tensor, where)


# --- integer functions: exact floor sqrt, exp and the softmax row ---


def isqrt(n):
    """floor(sqrt(n)) exactly, for int64 arrays of 0 <= n < 2**32: the firmware's
    digit-by-digit loop (one result bit per round, 16 rounds), vectorised, no float."""
    rem = np.array(n, dtype=np.int64)
    root = np.zeros_like(rem)
    bit = 1 << 30
    while bit:
        trial = root + bit
        take = rem >= trial
        rem = np.where(take, rem - trial, rem)
        root = np.where(take, (root >> 1) + bit, root >> 1)
        bit >>= 2
    return root


POWERS_OF_TWO = np.array([1 << k for k in range(63)], dtype=np.int64)


def bit_length(x):
    """int.bit_length() of each element of a non-negative int64 array, by integer
    comparisons (no float): the number of powers of two <= x."""
    return np.searchsorted(POWERS_OF_TWO, np.asarray(x, dtype=np.int64), side="right")


# 2**(k/64) in Q15 for k = 0..64, and the constants of exp (arithmetic.md, "exp")
EXP2_TABLE = np.array([round(2 ** (k / 64) * PROB_ONE) for k in range(65)], dtype=np.int64)
LOG2E_Q14 = 23637
EXP_ZERO_BELOW = 16  # exp(z) for z <= -16 is below 2**-16: it is 0


def exp_neg(z, frac):
    """exp(z) for raw z <= 0 with `frac` fractional bits -> unsigned Q15 in [0, 2**15]."""
    zero = z <= -(EXP_ZERO_BELOW << frac)
    z = np.where(zero, 0, z)
    z12 = shift_round(z, frac - 12) if frac >= 12 else z << (12 - frac)  # Q12, > -16
    w = z12 * LOG2E_Q14  # z * log2(e) in Q26, in (-2**31, 0]
    ip = w >> 26  # floor: the integer part, in [-24, 0]
    fr = w - (ip << 26)  # the fraction in [0, 2**26)
    idx, rem = fr >> 20, (fr & ((1 << 20) - 1)) >> 5
    lo, hi = EXP2_TABLE[idx], EXP2_TABLE[idx + 1]
    val = lo + (((hi - lo) * rem + (1 << 14)) >> 15)  # 2**fraction, Q15 in [2**15, 2**16)
    sh = -ip
    e = np.where(sh > 0, (val + ((1 << np.maximum(sh, 1)) >> 1)) >> sh, val)
    return np.where(zero, 0, e)


def softmax(z, frac, mask=None):
    """Rows of raw z (last axis) -> Q15 probabilities; masked entries get 0."""
    z = np.asarray(z, dtype=np.int64)
    if mask is not None:
        zmax = np.maximum.reduce(np.where(mask, z, INT64_MIN), axis=-1, keepdims=True)
        e = np.where(mask, exp_neg(np.where(mask, z - zmax, 0), frac), 0)
    else:
        zmax = np.maximum.reduce(z, axis=-1, keepdims=True)
        e = exp_neg(z - zmax, frac)
    s = np.add.reduce(e, axis=-1, keepdims=True)  # in [2**15, 27 * 2**15]
    return ((e << PROB_FRAC) + (s >> 1)) // s


# --- embedding ---


def embedding_forward(ctx, wte, wpe, tokens):
    # wte (V,C), wpe (BLOCK,C) in weights -> x (T,C) in acts
    p = ctx.p
    return ctx.req(wte[tokens] + wpe[: len(tokens)], p.weights.frac_bits - p.acts.frac_bits,
                   p.acts, "embedding.x")


def embedding_backward(ctx, dx, tokens, dwte, dwpe):
    # forward was x[t] = wte[tokens[t]] + wpe[t]: both rows receive dx[t], as param grads,
    # added position by position, each sum saturated to pgrads
    pf = ctx.p.pgrads
    d = ctx.req(dx, ctx.p.grads.frac_bits - pf.frac_bits, pf, "embedding.dw")
    t = len(tokens)
    dwpe[:t] = ctx.sat(dwpe[:t] + d, pf, "embedding.dw")
    reach = int(np.abs(dwte).max(initial=0)) + t * int(np.abs(d).max(initial=0))
    if reach <= min(pf.hi, -pf.lo):
        np.add.at(dwte, tokens, d)  # no partial sum can leave pgrads: the same integers
    else:
        for i, tok in enumerate(tokens):
            dwte[tok] = ctx.sat(dwte[tok] + d[i], pf, "embedding.dw")
    ctx.check("embedding_backward", "dwte", dwte)


# --- rmsnorm ---


def rmsnorm_shape(ctx):
    """The shift g (even) that keeps the mean square in int32, and its fractional bits fm."""
    return ctx.p.rms_guard, ctx.p.rms_fm


def rmsnorm_eps(fm):
    """eps = 1e-5 with fm fractional bits, rounded half up in integers, at least 1."""
    assert RMS_EPS == 1e-5
    return max(1, ((1 << fm) + 50000) // 100000)


def rsqrt(ms, fm):
    """1/sqrt(ms / 2**fm) as (M, sh): y = x * M >> sh maps x to x / sqrt(mean square).

    ms is normalised by an even power of two, ms = a * 4**k with a in [2**28, 2**30)
    (the low bits drop when k > 0); M = round(2**29 / isqrt(a)) in (2**14, 2**15].
    """
    ms = np.asarray(ms, dtype=np.int64)
    nbits = bit_length(ms)
    k = (nbits - 29) // 2  # a = ms / 4**k has 29 or 30 bits
    a = np.where(k >= 0, ms >> np.maximum(2 * k, 0), ms << np.maximum(-2 * k, 0))
    s = isqrt(a)
    m = ((1 << 29) + (s >> 1)) // s
    return m, 29 + k - fm // 2


def rmsnorm_forward(ctx, x):
    # x (T,C) in data -> y (T,C) in data, and (M, sh) per row for backward
    g, fm = rmsnorm_shape(ctx)
    ms = requant(ctx, "rmsnorm_forward", "mean square", (x * x).sum(axis=-1), g)
    ms = ctx.check("rmsnorm_forward", "ms + eps", ms + rmsnorm_eps(fm))  # Q.fm (/16 in fm)
    m, sh = rsqrt(ms, fm)
    p = x * m[:, None]
    ctx.check("rmsnorm_forward", "x*M", p, -KERNEL_LIMIT, KERNEL_LIMIT)
    y = ctx.sat(_shift_rows(p, sh), ctx.p.acts, "rmsnorm.y")
    return y, (m, sh)


def _shift_rows(p, sh):
    """Row t of p shifted by sh[t] with shift_round (negative: left)."""
    sh = sh[:, None]
    if sh.min() > 0:  # the common case
        return (p + (1 << (sh - 1))) >> sh
    right = (p + ((1 << np.maximum(sh, 1)) >> 1)) >> np.maximum(sh, 0)
    return np.where(sh > 0, right, p << np.maximum(-sh, 0))


def rmsnorm_backward(ctx, dy, y, rs):
    # y = x * r with r = M/2**sh: dx = r * (dy - y * mean(dy * y))
    m, sh = rs
    fa, gf = ctx.p.acts.frac_bits, ctx.p.grads
    # sum dy*y has grads + acts fractional bits; the mean (/16) adds 4 more
    c = requant(ctx, "rmsnorm_backward", "rmsnorm.c", (dy * y).sum(axis=-1), fa + 4, gf)
    yc = y * c[:, None]
    ctx.check("rmsnorm_backward", "y*c", yc)
    t = ctx.sat(dy - shift_round(yc, fa), gf, "rmsnorm.t")
    q = t * m[:, None]
    ctx.check("rmsnorm_backward", "t*M", q)
    return ctx.sat(_shift_rows(q, sh), gf, "rmsnorm.dx")


# --- linear ---


def linear_forward(ctx, x, w, out_fmt, tensor):
    # x (T,in) in acts, w (out,in) in weights -> y (T,out) in out_fmt (acts or logits)
    p = ctx.p
    return requant(ctx, "linear_forward", tensor, x @ w.T,
                   p.weights.frac_bits + p.acts.frac_bits - out_fmt.frac_bits, out_fmt)


def linear_backward(ctx, dy, x, w, dw, tensor, paths=1):
    # forward was y = x @ w.T: dx = dy @ w (grad), dw = dy.T @ x (param grad).
    # paths > 1: w stacks that many equal blocks of rows (wq; wk; wv), each its own
    # linear: the result is one dx per block, (paths,T,in)
    p, gf = ctx.p, ctx.p.grads
    n = dy.shape[1] // paths
    dx = np.stack([requant(ctx, "linear_backward", tensor + ".dx",
                           dy[:, i * n : (i + 1) * n] @ w[i * n : (i + 1) * n],
                           p.weights.frac_bits, gf) for i in range(paths)])
    dw += requant(ctx, "linear_backward", tensor + ".dw", dy.T @ x, p.dw_shift, p.pgrads)
    return dx[0] if paths == 1 else dx


# --- add (residual) ---


def add_forward(ctx, a, b, fmt, tensor):
    return ctx.sat(a + b, fmt, tensor)


def add_backward(dy):
    return dy, dy


# --- attention ---


def _heads(a):
    t = a.shape[0]
    return a.reshape(t, N_HEAD, HEAD_DIM).transpose(1, 0, 2)  # (H,T,D)


def _merge(a):
    return a.transpose(1, 0, 2).reshape(a.shape[1], N_HEAD * HEAD_DIM)


def attention_forward(ctx, q, k, v):
    # q, k, v (T,C) in acts -> out (T,C) in acts, probs (H,T,T) in Q15
    p = ctx.p
    qh, kh, vh = _heads(q), _heads(k), _heads(v)
    t = q.shape[0]
    op = "attention_forward"
    # scores = q.k / sqrt(4): the /2 is one more bit of shift, into the logits format
    mask = np.tril(np.ones((t, t), dtype=bool))[None]  # (1,T,T): s <= t
    scores = requant(ctx, op, "attention.scores", qh @ kh.transpose(0, 2, 1), p.score_shift,
                     p.logits, mask)
    probs = softmax(scores, p.logits.frac_bits, mask)
    out = requant(ctx, op, "attention.out", probs @ vh, PROB_FRAC, p.acts)
    return _merge(out), probs


def attention_backward(ctx, dout, q, k, v, probs):
    # forward: scores = q k^T / 2; probs = softmax(scores); out = probs v
    p, gf = ctx.p, ctx.p.grads
    f = p.acts.frac_bits
    qh, kh, vh, dh = _heads(q), _heads(k), _heads(v), _heads(dout)
    op = "attention_backward"
    # out = probs v: dprobs[t,s] = dout[t] . v[s], dv[s] = sum_t probs[t,s] dout[t]
    mask = np.tril(np.ones((q.shape[0],) * 2, dtype=bool))[None]  # (1,T,T): s <= t
    dprobs = requant(ctx, op, "attention.dprobs", dh @ vh.transpose(0, 2, 1), f, gf, mask)
    dv = requant(ctx, op, "attention.dv", probs.transpose(0, 2, 1) @ dh, PROB_FRAC, gf)
    # probs = softmax(scores): dscores = probs * (dprobs - sum(probs * dprobs)), then / 2
    pd = requant(ctx, op, "attention.pd", (probs * dprobs).sum(axis=-1), PROB_FRAC)
    diff = ctx.sat(dprobs - pd[:, :, None], gf, "attention.diff", mask)
    ds = probs * diff
    ctx.check(op, "p*diff", ds, -KERNEL_LIMIT, KERNEL_LIMIT)
    dscores = shift_round(ds, PROB_FRAC + 1)  # grad format, |.| <= 1
    # scores = q k^T / 2 (the /2 is in dscores): dq = dscores k, dk = dscores^T q
    dq = requant(ctx, op, "attention.dq", dscores @ kh, f, gf)
    dk = requant(ctx, op, "attention.dk", dscores.transpose(0, 2, 1) @ qh, f, gf)
    return _merge(dq), _merge(dk), _merge(dv)


# --- relu ---


def relu_forward(x):
    return np.maximum(x, 0)


def relu_backward(dy, x):
    return np.where(x > 0, dy, 0)


# --- cross-entropy over the vocabulary ---


def cross_entropy_forward(ctx, logits, targets):
    # logits (T,V) in the logits format -> probs (T,V) in Q15
    return softmax(logits, ctx.p.logits.frac_bits)


def cross_entropy_backward(ctx, probs, targets):
    # loss = mean_t -log p[t, target]: dlogits = (p - onehot) / T, Q15 -> grad format
    t = len(targets)
    d = probs.copy()
    d[np.arange(t), targets] -= PROB_ONE
    s = PROB_FRAC - ctx.p.grads.frac_bits  # 1 for q2.14
    # round half up of d / (T * 2**s), saturated to grads (never for q2.14: |d / T| <= 1)
    return ctx.sat((d + ((t << s) >> 1)) // (t << s), ctx.p.grads, "dlogits")


# --- the integer loss (reported by the firmware; arithmetic.md, "loss") ---

LOG2_TABLE = [round(math.log2(1 + k / 64) * 65536) for k in range(65)]
LN2_Q15, LN2_Q16 = 22713, 45426


def ln_q16(s):
    """ln(s / 2**15) in Q16 for an int s >= 2**15 (a softmax denominator)."""
    n = s.bit_length() - 1
    mant = s << (29 - n) if n <= 29 else s >> (n - 29)  # in [2**29, 2**30)
    idx, rem = (mant >> 23) & 63, (mant >> 8) & 0x7FFF
    lo, hi = LOG2_TABLE[idx], LOG2_TABLE[idx + 1]
    lg = lo + (((hi - lo) * rem + (1 << 14)) >> 15)  # log2 of the mantissa, Q16
    return (n - 15) * LN2_Q16 + ((lg * LN2_Q15 + (1 << 14)) >> 15)


def loss_q16(logits, targets, frac):
    """The step's mean loss in Q16 nats, from raw logits: per position
    (max - l_target) + ln(sum_j exp(l_j - max)), summed, then divided by T half up.
    Scalar code on unbounded ints (plain Python on the device)."""
    logits = np.asarray(logits, dtype=np.int64)
    mx = logits.max(axis=-1)
    sums = exp_neg(logits - mx[:, None], frac).sum(axis=-1).tolist()
    gaps = (mx - logits[np.arange(len(targets)), targets]).tolist()
    total = sum((gap << (16 - frac)) + ln_q16(s) for gap, s in zip(gaps, sums, strict=True))
    t = len(targets)
    return (2 * total + t) // (2 * t)
