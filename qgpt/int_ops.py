"""The integer simulator's ops: the float reference's forward/backward pairs in integers.

Every function implements the section of docs/arithmetic.md with its name, on
raw integers held in numpy int64, vectorised over positions. All sums are sums
of individually shifted products, so a result never depends on evaluation
order: the firmware, which goes token by token, gets the same bits.

`ctx` carries the policy, the saturation counters and the strict check: with
ctx.strict every intermediate is checked against int32 and a violation names
the op and the tensor. Shapes use the legend in params.py.
"""

import math

import numpy as np

from qgpt.params import HEAD_DIM, N_HEAD, RMS_EPS
from qgpt.policy import PROB_FRAC, guard
from qgpt.qformat import saturate, shift_round

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
PROB_ONE = 1 << PROB_FRAC


class Int32Overflow(ArithmeticError):
    pass


class Ctx:
    """Policy, saturation counts per tensor, and the strict int32 check."""

    def __init__(self, policy, strict=False):
        self.p = policy
        self.strict = strict
        self.saturations = {}

    def check(self, op, tensor, x):
        if self.strict:
            x = np.asarray(x)
            if x.size and (x.min() < INT32_MIN or x.max() > INT32_MAX):
                i = int(np.argmax((x < INT32_MIN) | (x > INT32_MAX)))
                raise Int32Overflow(f"{op}: {tensor}[{i}] = {x.flat[i]} does not fit int32")
        return x

    def sat(self, x, fmt, tensor):
        return saturate(x, fmt, self.saturations, tensor)


def dot(ctx, op, tensor, a, b, bits_a, bits_b, axis_sum):
    """sum over axis_sum of (a*b) >> g, g = guard(n, bits_a, bits_b); returns (sum, g).

    The caller has broadcast a and b so that their product has the summed axis.
    """
    prod = a * b
    n = prod.shape[axis_sum]
    g = guard(n, bits_a, bits_b)
    ctx.check(op, tensor + " products", prod)
    s = np.sum(shift_round(prod, g), axis=axis_sum)
    ctx.check(op, tensor + " sum", s)
    return s, g


# --- integer functions: exact floor sqrt, exp and the softmax row ---


def isqrt(n):
    """floor(sqrt(n)) exactly, for int64 arrays of n >= 0."""
    n = np.asarray(n, dtype=np.int64)
    s = np.floor(np.sqrt(n.astype(np.float64))).astype(np.int64)
    s -= s * s > n
    s += (s + 1) * (s + 1) <= n
    return s


# 2**(k/64) in Q15 for k = 0..64, and the constants of exp (arithmetic.md, "exp")
EXP2_TABLE = np.array([round(2 ** (k / 64) * PROB_ONE) for k in range(65)], dtype=np.int64)
LOG2E_Q14 = 23637
EXP_ZERO_BELOW = 16  # exp(z) for z <= -16 is below 2**-16: it is 0


def exp_neg(z, frac):
    """exp(z) for raw z <= 0 with `frac` fractional bits -> unsigned Q15 in [0, 2**15]."""
    z = np.asarray(z, dtype=np.int64)
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
        zmax = np.max(np.where(mask, z, np.iinfo(np.int64).min), axis=-1, keepdims=True)
        e = np.where(mask, exp_neg(np.where(mask, z - zmax, 0), frac), 0)
    else:
        zmax = np.max(z, axis=-1, keepdims=True)
        e = exp_neg(z - zmax, frac)
    s = np.sum(e, axis=-1, keepdims=True)  # in [2**15, 27 * 2**15]
    return ((e << PROB_FRAC) + (s >> 1)) // s


# --- embedding ---


def embedding_forward(ctx, wte, wpe, tokens):
    # wte (V,C), wpe (BLOCK,C) in data -> x (T,C) in data
    return ctx.sat(wte[tokens] + wpe[: len(tokens)], ctx.p.data, "embedding.x")


def embedding_backward(ctx, dx, tokens, dwte, dwpe):
    # forward was x[t] = wte[tokens[t]] + wpe[t]: both rows receive dx[t], as param grads
    d = shift_round(dx, ctx.p.grad.frac_bits - ctx.p.pgrad_frac)
    np.add.at(dwte, tokens, d)
    dwpe[: len(tokens)] += d
    ctx.check("embedding_backward", "dwte", dwte)


# --- rmsnorm ---


def rmsnorm_shape(ctx):
    """The product guard g (even) and the fractional bits fm of the mean square."""
    b = ctx.p.data.bits
    g = guard(16, b, b)
    g += g & 1
    return g, 2 * ctx.p.data.frac_bits - g + 4


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
    nbits = np.frexp(ms.astype(np.float64))[1]  # bit length, exact for ms < 2**53
    k = (nbits - 29) // 2  # a = ms / 4**k has 29 or 30 bits
    a = np.where(k >= 0, ms >> np.maximum(2 * k, 0), ms << np.maximum(-2 * k, 0))
    s = isqrt(a)
    m = ((1 << 29) + (s >> 1)) // s
    return m, 29 + k - fm // 2


def rmsnorm_forward(ctx, x):
    # x (T,C) in data -> y (T,C) in data, and (M, sh) per row for backward
    g, fm = rmsnorm_shape(ctx)
    eps = rmsnorm_eps(fm)
    ss, _ = dot(ctx, "rmsnorm_forward", "sum x^2", x, x, ctx.p.data.bits, ctx.p.data.bits, -1)
    ms = ss + eps  # mean square (the /16 is in fm), in Q.fm
    ctx.check("rmsnorm_forward", "mean square", ms)
    m, sh = rsqrt(ms, fm)
    p = x * m[:, None]
    ctx.check("rmsnorm_forward", "x*M", p)
    y = ctx.sat(_shift_rows(p, sh), ctx.p.data, "rmsnorm.y")
    return y, (m, sh)


def _shift_rows(p, sh):
    """Row t of p shifted by sh[t] with shift_round (negative: left)."""
    sh = np.asarray(sh)[:, None]
    right = (p + ((1 << np.maximum(sh, 1)) >> 1)) >> np.maximum(sh, 0)
    return np.where(sh > 0, right, p << np.maximum(-sh, 0))


def rmsnorm_backward(ctx, dy, y, rs):
    # y = x * r with r = M/2**sh: dx = r * (dy - y * mean(dy * y))
    m, sh = rs
    p, gf = ctx.p, ctx.p.grad
    c, g = dot(ctx, "rmsnorm_backward", "sum dy*y", dy, y, gf.bits, p.data.bits, -1)
    # c has frac(grad) + frac(data) - g bits and is a sum of 16: the mean adds 4 bits
    c = ctx.sat(shift_round(c, p.data.frac_bits - g + 4), gf, "rmsnorm.c")  # |c| <= 2
    yc = y * c[:, None]
    ctx.check("rmsnorm_backward", "y*c", yc)
    t = ctx.sat(dy - shift_round(yc, p.data.frac_bits), gf, "rmsnorm.t")
    q = t * m[:, None]
    ctx.check("rmsnorm_backward", "t*M", q)
    return ctx.sat(_shift_rows(q, sh), gf, "rmsnorm.dx")


# --- linear ---


def linear_forward(ctx, x, w, out_fmt, tensor):
    # x (T,in) in data, w (out,in) in data -> y (T,out) in out_fmt
    b = ctx.p.data.bits
    s, g = dot(ctx, "linear_forward", tensor, x[:, None, :], w[None, :, :], b, b, -1)
    return ctx.sat(shift_round(s, 2 * ctx.p.data.frac_bits - g - out_fmt.frac_bits),
                   out_fmt, tensor)


def linear_backward(ctx, dy, x, w, dw, tensor):
    # forward was y = x @ w.T: dx = dy @ w (grad), dw += dy.T @ x (param grad)
    p, gf = ctx.p, ctx.p.grad
    s, g = dot(ctx, "linear_backward", tensor + ".dx", dy[:, :, None], w[None, :, :],
               gf.bits, p.data.bits, 1)
    dx = ctx.sat(shift_round(s, p.data.frac_bits - g), gf, tensor + ".dx")
    # each product dy*x is rounded to the param-grad format on its own, then summed
    prod = dy[:, :, None] * x[:, None, :]
    ctx.check("linear_backward", tensor + ".dw products", prod)
    dw += np.sum(shift_round(prod, p.pgrad_guard), axis=0)
    ctx.check("linear_backward", tensor + ".dw", dw)
    return dx


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
    # q, k, v (T,C) in data -> out (T,C) in data, probs (H,T,T) in Q15
    p = ctx.p
    b, f = p.data.bits, p.data.frac_bits
    qh, kh, vh = _heads(q), _heads(k), _heads(v)
    t = q.shape[0]
    # scores = q.k / sqrt(4): the /2 is one more bit of shift, into the logits format
    s, g = dot(ctx, "attention_forward", "scores", qh[:, :, None, :], kh[:, None, :, :], b, b, -1)
    scores = ctx.sat(shift_round(s, f - g + 1), p.logits, "attention.scores")
    mask = np.tril(np.ones((t, t), dtype=bool))[None]
    probs = softmax(scores, f, mask)
    o, g = dot(ctx, "attention_forward", "out", probs[:, :, :, None], vh[:, None, :, :],
               PROB_FRAC + 1, b, 2)
    out = ctx.sat(shift_round(o, PROB_FRAC - g), p.data, "attention.out")
    return _merge(out), probs


def attention_backward(ctx, dout, q, k, v, probs):
    # forward: scores = q k^T / 2; probs = softmax(scores); out = probs v
    p, gf = ctx.p, ctx.p.grad
    b, f = p.data.bits, p.data.frac_bits
    qh, kh, vh, dh = _heads(q), _heads(k), _heads(v), _heads(dout)
    op = "attention_backward"
    # out = probs v: dprobs[t,s] = dout[t] . v[s], dv[s] = sum_t probs[t,s] dout[t]
    s, g = dot(ctx, op, "dprobs", dh[:, :, None, :], vh[:, None, :, :], gf.bits, b, -1)
    dprobs = ctx.sat(shift_round(s, f - g), gf, "attention.dprobs")
    s, g = dot(ctx, op, "dv", probs[:, :, :, None], dh[:, :, None, :], PROB_FRAC + 1, gf.bits, 1)
    dv = ctx.sat(shift_round(s, PROB_FRAC - g), gf, "attention.dv")
    # probs = softmax(scores): dscores = probs * (dprobs - sum(probs * dprobs)), then / 2
    s, g = dot(ctx, op, "sum p*dp", probs, dprobs, PROB_FRAC + 1, gf.bits, -1)
    pd = shift_round(s, PROB_FRAC - g)
    diff = ctx.sat(dprobs - pd[:, :, None], gf, "attention.diff")
    ds = probs * diff
    ctx.check(op, "p*diff", ds)
    dscores = shift_round(ds, PROB_FRAC + 1)  # grad format, |.| <= 1
    # scores = q k^T / 2 (the /2 is in dscores): dq = dscores k, dk = dscores^T q
    s, g = dot(ctx, op, "dq", dscores[:, :, :, None], kh[:, None, :, :], gf.bits, b, 2)
    dq = ctx.sat(shift_round(s, f - g), gf, "attention.dq")
    s, g = dot(ctx, op, "dk", dscores[:, :, :, None], qh[:, :, None, :], gf.bits, b, 1)
    dk = ctx.sat(shift_round(s, f - g), gf, "attention.dk")
    return _merge(dq), _merge(dk), _merge(dv)


# --- relu ---


def relu_forward(x):
    return np.maximum(x, 0)


def relu_backward(dy, x):
    return np.where(x > 0, dy, 0)


# --- cross-entropy over the vocabulary ---


def cross_entropy_forward(ctx, logits, targets):
    # logits (T,V) in the logits format -> probs (T,V) in Q15
    return softmax(logits, ctx.p.data.frac_bits)


def cross_entropy_backward(ctx, probs, targets):
    # loss = mean_t -log p[t, target]: dlogits = (p - onehot) / T, Q15 -> grad format
    t = len(targets)
    d = probs.copy()
    d[np.arange(t), targets] -= PROB_ONE
    s = PROB_FRAC - ctx.p.grad.frac_bits  # 1 for q2.14
    return (d + t * (1 << s) // 2) // (t << s)  # round half up of d / (T * 2**s)


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
