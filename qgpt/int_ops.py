"""The integer simulator's ops: the float reference's forward/backward pairs in integers.

Every function implements the section of docs/arithmetic.md with its name, on
raw integers held in numpy int64, vectorised over positions (and, in the forward
ops, over any leading batch axes: (..., T, C), so that evaluation runs many names of
one length at once). Every dot product is the exact sum of its products (int64 here;
a pair of int32 halves on the device), rounded once: the result never depends on
evaluation order, so the firmware, which goes token by token, gets the same bits.

`ctx` carries the policy, the saturation counters and the strict check: with
ctx.strict every intermediate the device forms is checked against the bound the
contract gives it (int32; `±2**30` where the firmware clamps there; a dot product's
exact sum against `2**36`, the bound of its pair of int32 halves), and a violation
names the op and the tensor. Shapes use the legend in params.py.

Speed (`qgpt bench --breakdown`, docs/BENCHMARKS.md): the arrays are small (T <= 16 rows
of 16 to 64), so a step's cost is the number of numpy calls, not the arithmetic. Each op
therefore makes few of them: saturation is one count_nonzero of |x| > limit in the
common case where nothing clips, and is skipped (counted as 0) where the policy proves
it cannot clip (Ctx.dw_fits, Ctx.rms_y_fits); the causal mask of a length is built
once, the future entries of attention are zeroed before they are requantized (they are
never formed on the device, so they must not saturate); exp_neg is a table of its
formula over every Q12 input, isqrt two small tables and one comparison, rsqrt of a
step's few rows a loop on Python ints; and no float is used (tests/test_policy.py checks
that a training step calls none of numpy's float functions). tests/test_int_fast_paths.py
checks each shortcut against the general path.
"""

import math
from functools import cache

import numpy as np

from qgpt.params import BLOCK, HEAD_DIM, N_HEAD, RMS_EPS
from qgpt.policy import PROB_FRAC
from qgpt.qformat import shift_round

try:  # the C function behind np.count_nonzero, without its Python wrapper (a step calls
    # it some forty times)
    from numpy._core.multiarray import count_nonzero as _count_nonzero
except ImportError:  # numpy 1.26
    from numpy.core.multiarray import count_nonzero as _count_nonzero

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
KERNEL_LIMIT = 1 << 30  # unsaturated sums and kernel-range state stay within +-2**30
PAIR_LIMIT = 1 << 36  # a dot product's exact sum, kept on the device as (H, L)
INT64_MIN = np.iinfo(np.int64).min
PROB_ONE = 1 << PROB_FRAC
LARGE = 2048  # elements: sat checks larger arrays by their max
MASKED = -(1 << 61)  # a masked entry's z: below every row's max by more than 16 in any format


# rnd's constants by shift, as 0-d int64 arrays: numpy adds and shifts by those about
# twice as fast as by Python ints (no scalar conversion per call), and a training step
# rounds some sixty times
_HALF = [np.array((1 << s) >> 1, dtype=np.int64) for s in range(63)]
_SHIFT = [np.array(s, dtype=np.int64) for s in range(63)]


def rnd(x, s):
    """rnd(x, s) of arithmetic.md: x / 2**s rounded half up (s > 0), x (s = 0), x * 2**-s
    (s < 0), on an int64 array (qformat.shift_round's integers)."""
    if s > 0:
        return (x + _HALF[s]) >> _SHIFT[s]
    return x if s == 0 else x << _SHIFT[-s]


class Int32Overflow(ArithmeticError):
    pass


class Ctx:
    """Policy, saturation counts per tensor, and the strict int32 check."""

    def __init__(self, policy, strict=False):
        self.p = policy
        self.strict = strict
        self.saturations = {}
        self.clipped = 0  # every count added to saturations since this Ctx was made
        # saturations the policy proves to be no-ops: skipped and counted as 0 (strict runs
        # them all; tests/test_int_fast_paths.py tries extreme inputs on both sides)
        self.dw_fits = dw_fits(policy)
        self.rms_y_fits = policy.acts.int_bits >= 4  # rmsnorm's |y| <= 4.0004: rms_y_bound

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
        (the others are clamped too, uncounted)."""
        if where is None and _within(x, fmt):  # the common case: nothing to clip
            self.saturations.setdefault(tensor, 0)
            return x
        return self.clip(x, fmt, tensor, where)

    def clip(self, x, fmt, tensor, where=None):
        """sat's exact path, for any range with lo and hi: clamp x, count the clipped
        elements (where: only those) into tensor."""
        outside = (x < fmt.lo) | (x > fmt.hi)
        clipped = int(np.count_nonzero(outside if where is None else outside & where))
        self.saturations[tensor] = self.saturations.get(tensor, 0) + clipped
        self.clipped += clipped
        if where is None and not clipped:
            return x
        return np.minimum(np.maximum(x, fmt.lo), fmt.hi)


def _within(x, fmt):
    """True if no |x| exceeds fmt.abs_limit, so that saturation clips nothing (x = lo
    exactly is False here; sat's exact path then finds nothing to clip either).
    count_nonzero is numpy's cheapest reduction, a third less than np.max on a step's
    small arrays; on large ones (evaluation's batches, Adam's) the max, which writes no
    mask, is faster."""
    if x.size <= LARGE:
        return not _count_nonzero(np.abs(x) > fmt.abs_limit_array)
    return np.maximum.reduce(np.abs(x), None) <= fmt.abs_limit


def dw_fits(policy):
    """True if no weight gradient can leave pgrads (the default pgrads): a sum of BLOCK
    products of a grads and an acts word is at most BLOCK * 2**(bg-1) * 2**(ba-1) in
    magnitude, and that, rounded by dw_shift, is within pgrads."""
    top = BLOCK << (policy.grads.bits - 1 + policy.acts.bits - 1)
    return rnd(top, policy.dw_shift) <= policy.pgrads.abs_limit


# rms_y_bound: rmsnorm's |y| <= 4 * (1 + 2**-13) + half a step, because ms >= mean(x^2)
# (eps >= 1 covers the mean's rounding down), so |x_i| <= 4 sqrt(ms), and M / 2**sh
# exceeds 1 / sqrt(ms) by at most 2**-14 + 2**-15 + 2**-29 (arithmetic.md, rsqrt): acts
# with 4 or more integer bits, [-8, 8) and wider, hold every y.


def requant(ctx, op, tensor, s, shift, fmt=None):
    """sat(rnd(s, shift), fmt) of an exact sum s (arithmetic.md, "dot products").

    s may exceed int32 (the device holds it as a pair of int32 halves); the
    rounded result fits int32 by the bounds of each op. fmt None: no saturation.
    """
    if shift > 0:  # rnd(s, shift), inline
        r = (s + _HALF[shift]) >> _SHIFT[shift]
    else:
        r = s if shift == 0 else s << _SHIFT[-shift]
    if ctx.strict:
        ctx.check(op, tensor + " (exact sum)", s, -PAIR_LIMIT, PAIR_LIMIT)
        if fmt is None:  # the recipe's unsaturated sums: lo, hi = -2**30, 2**30
            ctx.check(op, tensor, r, -KERNEL_LIMIT, KERNEL_LIMIT)
    return r if fmt is None else ctx.sat(r, fmt, tensor)


@cache
def causal_mask(t):
    """(T,T) bool, True where s <= t: the entries attention forms (built once per length)."""
    mask = np.tril(np.ones((t, t), dtype=bool))
    mask.flags.writeable = False
    return mask


@cache
def future_bias(t):
    """(T,T) int64: 0 where s <= t, MASKED where s > t. Added to scores that are 0 in the
    future, it gives softmax's masked input (z = MASKED there) in one addition."""
    bias = np.where(causal_mask(t), 0, MASKED)
    bias.flags.writeable = False
    return bias


# --- integer functions: exact floor sqrt, exp and the softmax row ---


# isqrt by table: n < 2**32 is cut to its top 15 or 16 bits i = n >> sh (sh even, from a
# table over n >> 16), whose root floor(sqrt(i) * 2**8) is tabled too. The tables are in
# the narrowest dtypes (64 KB and 128 KB): Adam gathers from them at every parameter, and
# wide ones fall out of the cache between steps (it then costs several times as much)
ISQRT_SHIFT = np.array([0] + [b + (b & 1) for b in (h.bit_length() for h in range(1, 1 << 16))],
                       dtype=np.int8)  # by n >> 16: the even sh that leaves n >> sh < 2**16
ISQRT_ROOT_Q8 = np.array([math.isqrt(i << 16) for i in range(1 << 16)], dtype=np.uint16)
for _table in (ISQRT_SHIFT, ISQRT_ROOT_Q8):
    _table.flags.writeable = False


def isqrt(n):
    """floor(sqrt(n)) exactly, for int64 arrays of 0 <= n < 2**32, in integers only.

    The firmware finds the root digit by digit (16 rounds). The host reads it from tables:
    with sh the even shift that leaves i = n >> sh below 2**16 (0 if n < 2**16, else 15 or
    16 bits), c = floor(sqrt(i) * 2**8) >> (8 - sh/2) = floor(sqrt(i * 2**sh)) <= sqrt(n).
    For sh = 0 that is the root. Otherwise i >= 2**14 and sqrt(n) < sqrt(i + 1) * 2**(sh/2)
    < (sqrt(i) + 2**-8) * 2**(sh/2) <= c + 2 (sh <= 16): the root is c or c + 1, and one
    comparison decides. (tests: every square, square - 1 and square + 2r, up to 2**32;
    random n below 2**31.)
    """
    n = np.asarray(n, dtype=np.int64)
    sh = ISQRT_SHIFT.take(n >> 16)  # (take: a gather, twice as fast as indexing)
    # the root's shift 8 - sh/2 in int8, the shifted root widened to int64
    c = np.right_shift(ISQRT_ROOT_Q8.take(n >> sh), 8 - (sh >> 1), dtype=np.int64)
    above = c + 1
    c += above * above <= n
    return c


POWERS_OF_TWO = np.array([1 << k for k in range(63)], dtype=np.int64)


def bit_length(x):
    """int.bit_length() of each element of a non-negative int64 array, by integer
    comparisons (no float): the number of powers of two <= x."""
    return POWERS_OF_TWO.searchsorted(np.asarray(x, dtype=np.int64), side="right")


# 2**(k/64) in Q15 for k = 0..64, and the constants of exp (arithmetic.md, "exp")
EXP2_TABLE = np.array([round(2 ** (k / 64) * PROB_ONE) for k in range(65)], dtype=np.int64)
LOG2E_Q14 = 23637
EXP_ZERO_BELOW = 16  # exp(z) for z <= -16 is below 2**-16: it is 0


def exp_q12(z12):
    """Steps 2-5 of exp (arithmetic.md, "exp") from z12 = rnd(z, f - 12), Q12 in
    [-2**16, 0] -> unsigned Q15. At z12 = -2**16 (z = -16) the result is 0, as step 1
    says for every z <= -16."""
    w = z12 * LOG2E_Q14  # z * log2(e) in Q26, in (-2**31, 0]
    ip = w >> 26  # floor: the integer part, in [-24, 0]
    fr = w - (ip << 26)  # the fraction in [0, 2**26)
    idx, rem = fr >> 20, (fr & ((1 << 20) - 1)) >> 5
    lo, hi = EXP2_TABLE[idx], EXP2_TABLE[idx + 1]
    val = lo + (((hi - lo) * rem + (1 << 14)) >> 15)  # 2**fraction, Q15 in [2**15, 2**16)
    sh = -ip
    return (val + ((1 << sh) >> 1)) >> sh  # rnd(val, sh); sh = 0 adds nothing


# exp_neg depends on z only through z12, which takes the 2**16 + 1 values of [-2**16, 0]:
# the formula tabulated once, at index z12 read as numpy reads a negative index (from the
# end: z12 = -1 is the last entry, z12 = -2**16 the second), so no negation is needed
_Z12 = np.arange(0, -(EXP_ZERO_BELOW << 12) - 1, -1, dtype=np.int64)  # 0, -1, ..., -2**16
EXP_NEG_BY_Q12 = np.empty_like(_Z12)
EXP_NEG_BY_Q12[_Z12] = exp_q12(_Z12)
EXP_NEG_BY_Q12.flags.writeable = False
assert EXP_NEG_BY_Q12[-(EXP_ZERO_BELOW << 12)] == 0  # z = -16: step 1's zero, by the formula


def exp_neg(z, frac):
    """exp(z) for raw z <= 0 with `frac` fractional bits -> unsigned Q15 in [0, 2**15]."""
    # step 1: every z <= -16 gives 0, as z = -16 does; step 2's z12 then lies in [-2**16, 0]
    z = np.maximum(z, -(EXP_ZERO_BELOW << frac))
    return EXP_NEG_BY_Q12.take(rnd(z, frac - 12))


def softmax(z, frac, mask=None):
    """Rows of raw z (last axis) -> Q15 probabilities; masked entries (mask False) are left
    out of the max and the sum and get 0."""
    return softmax_sums(z, frac, mask)[0]


def softmax_sums(z, frac, mask=None):
    """softmax, and what the loss reuses of it: each row's max and its sum S of exps."""
    z = np.asarray(z, dtype=np.int64)
    if mask is not None:  # a masked entry's exp_neg is 0: out of the sum, probability 0
        z = np.where(mask, z, MASKED)
    zmax = np.maximum.reduce(z, axis=-1, keepdims=True)
    e = exp_neg(z - zmax, frac)
    s = np.add.reduce(e, axis=-1, keepdims=True)  # in [2**15, 27 * 2**15]
    return ((e << PROB_FRAC) + (s >> 1)) // s, zmax, s


# --- embedding ---


def embedding_forward(ctx, wte, wpe, tokens):
    # wte (V,C), wpe (BLOCK,C) in weights, tokens (...,T) -> x (...,T,C) in acts
    p = ctx.p
    x = wte.take(tokens, axis=0) + wpe[: tokens.shape[-1]]
    return ctx.sat(rnd(x, p.weights.frac_bits - p.acts.frac_bits), p.acts, "embedding.x")


def embedding_backward(ctx, dx, tokens, dwte, dwpe):
    # forward was x[t] = wte[tokens[t]] + wpe[t]: both rows receive dx[t], as param grads,
    # added position by position, each sum saturated to pgrads
    pf = ctx.p.pgrads
    d = ctx.sat(rnd(dx, ctx.p.grads.frac_bits - pf.frac_bits), pf, "embedding.dw")
    t = len(tokens)
    dwpe[:t] = ctx.sat(dwpe[:t] + d, pf, "embedding.dw")
    reach = int(np.maximum.reduce(np.abs(dwte), None)) + t * int(
        np.maximum.reduce(np.abs(d), None))
    if reach <= pf.abs_limit:
        np.add.at(dwte, tokens, d)  # no partial sum can leave pgrads: the same integers
    else:
        for i, tok in enumerate(tokens):
            dwte[tok] = ctx.sat(dwte[tok] + d[i], pf, "embedding.dw")
    ctx.check("embedding_backward", "dwte", dwte)


# --- rmsnorm ---


def rmsnorm_shape(ctx):
    """The shift g (even) that keeps the mean square in int32, and its fractional bits fm."""
    return ctx.p.rms_guard, ctx.p.rms_fm


@cache
def rmsnorm_eps(fm):
    """eps = 1e-5 with fm fractional bits, rounded half up in integers, at least 1."""
    assert RMS_EPS == 1e-5
    return max(1, ((1 << fm) + 50000) // 100000)


# M = (2**29 + s//2) // s for every root s in [2**14, 2**15) (0 below, never read)
RSQRT_M = np.array([0] * (1 << 14) + [((1 << 29) + (s >> 1)) // s for s in range(1 << 14, 1 << 15)],
                   dtype=np.int64)
RSQRT_M.flags.writeable = False
RSQRT_M_LIST = RSQRT_M.tolist()
SCALAR_ROWS = 32  # rsqrt of at most this many rows (a training step's) goes row by row


def rsqrt(ms, fm):
    """1/sqrt(ms / 2**fm) as (M, sh): y = x * M >> sh maps x to x / sqrt(mean square).

    ms (1 <= ms < 2**31) is normalised by an even power of two, ms = a * 4**k with a in
    [2**28, 2**30) (the low bits drop when k > 0); M = round(2**29 / isqrt(a)) in
    (2**14, 2**15]. A few rows go one by one on Python ints (a dozen numpy calls on a
    handful of numbers cost more); many rows, as arrays: the same integers.
    """
    ms = np.asarray(ms, dtype=np.int64)
    # k = floor((bitlen(ms) - 29) / 2) >= -14; ms >> 2k (k >= 0) and ms << -2k (k < 0) are
    # both one right shift of ms * 2**28 (< 2**59), by 2k + 28 = (bitlen(ms) - 1) & ~1
    if ms.size <= SCALAR_ROWS:
        m, sh = [], []
        for n in ms.ravel().tolist():
            shift = (n.bit_length() - 1) & -2
            m.append(RSQRT_M_LIST[math.isqrt((n << 28) >> shift)])
            sh.append((shift >> 1) + (15 - fm // 2))
        return (np.array(m, dtype=np.int64).reshape(ms.shape),
                np.array(sh, dtype=np.int64).reshape(ms.shape))
    shift = (bit_length(ms) - 1) & -2
    a = (ms << 28) >> shift  # 29 or 30 bits
    m = RSQRT_M.take(isqrt(a))  # isqrt(a) in [2**14, 2**15)
    return m, (shift >> 1) + (15 - fm // 2)  # sh = 29 + k - fm/2, k = shift/2 - 14


def rmsnorm_forward(ctx, x):
    # x (...,T,C) in acts -> y (...,T,C) in acts, and (M, sh) per row for backward
    g, fm = rmsnorm_shape(ctx)
    ms = requant(ctx, "rmsnorm_forward", "mean square", np.add.reduce(x * x, axis=-1), g)
    ms = ctx.check("rmsnorm_forward", "ms + eps", ms + rmsnorm_eps(fm))  # Q.fm (/16 in fm)
    m, sh = rsqrt(ms, fm)
    p = x * m[..., None]
    ctx.check("rmsnorm_forward", "x*M", p, -KERNEL_LIMIT, KERNEL_LIMIT)
    y = _shift_rows(p, sh)
    if ctx.rms_y_fits and not ctx.strict:  # |y| <= 4.0004 (rms_y_bound): no check
        ctx.saturations.setdefault("rmsnorm.y", 0)
        return y, (m, sh)
    return ctx.sat(y, ctx.p.acts, "rmsnorm.y"), (m, sh)


_HALF_BY_SHIFT = np.array([(1 << s) >> 1 for s in range(63)], dtype=np.int64)  # 0 at s = 0


def _shift_rows(p, sh):
    """rnd(p[t], sh[t]) for each row t, with every sh[t] >= 0 (rsqrt's, since fm <= 30)."""
    sh = sh[..., None]
    return (p + _HALF_BY_SHIFT.take(sh)) >> sh


def rmsnorm_backward(ctx, dy, y, rs):
    # y = x * r with r = M/2**sh: dx = r * (dy - y * mean(dy * y))
    m, sh = rs
    fa, gf = ctx.p.acts.frac_bits, ctx.p.grads
    # sum dy*y has grads + acts fractional bits; the mean (/16) adds 4 more
    c = requant(ctx, "rmsnorm_backward", "rmsnorm.c", np.add.reduce(dy * y, axis=-1), fa + 4,
                gf)
    yc = y * c[:, None]
    ctx.check("rmsnorm_backward", "y*c", yc)
    t = ctx.sat(dy - rnd(yc, fa), gf, "rmsnorm.t")
    q = t * m[:, None]
    ctx.check("rmsnorm_backward", "t*M", q)
    return ctx.sat(_shift_rows(q, sh), gf, "rmsnorm.dx")


# --- linear ---


FLOAT_EXACT = 1 << 53  # float64 holds every integer up to 2**53 in magnitude exactly


def exact_matmul(a, b):
    """a @ b of int64 arrays, the exact integer sums. A large a (evaluation's batches of
    names; a training step's arrays are never large) goes through float64's matmul
    (BLAS, several times faster than numpy's int64 loop) when in_features * max|a| *
    max|b| < 2**53: every product and every partial sum, in whatever order BLAS adds
    them, is then an integer float64 holds exactly, so the result is the same integer."""
    if a.size > LARGE:
        def top(x):  # max |x|, without the temporary array of np.abs
            return max(int(np.maximum.reduce(x, None)), -int(np.minimum.reduce(x, None)))

        if top(a) * top(b) * a.shape[-1] < FLOAT_EXACT:
            return (a.astype(np.float64) @ b.astype(np.float64)).astype(np.int64)
    return a @ b


def linear_forward(ctx, x, w, out_fmt, tensor):
    # x (...,T,in) in acts, w (out,in) in weights -> y (...,T,out) in out_fmt (acts or logits)
    p = ctx.p
    return requant(ctx, "linear_forward", tensor, exact_matmul(x, w.T),
                   p.weights.frac_bits + p.acts.frac_bits - out_fmt.frac_bits, out_fmt)


def linear_backward(ctx, dy, x, w, dw, tensor, paths=1):
    # forward was y = x @ w.T: dx = dy @ w (grad), dw = dy.T @ x (param grad).
    # paths > 1: w stacks that many equal blocks of rows (wq; wk; wv), each its own
    # linear: the result is one dx per block, (paths,T,in), from one stacked matmul
    p, gf = ctx.p, ctx.p.grads
    if paths == 1:
        exact = dy @ w
    else:
        t, n = dy.shape[0], dy.shape[1] // paths
        exact = dy.reshape(t, paths, n).transpose(1, 0, 2) @ w.reshape(paths, n, w.shape[1])
    dx = requant(ctx, "linear_backward", tensor + ".dx", exact, p.weights.frac_bits, gf)
    if ctx.dw_fits and dy.shape[0] <= BLOCK and not ctx.strict:  # nothing can clip: no check
        d = rnd(dy.T @ x, p.dw_shift)
        ctx.saturations.setdefault(tensor + ".dw", 0)
    else:
        d = requant(ctx, "linear_backward", tensor + ".dw", dy.T @ x, p.dw_shift, p.pgrads)
    if dw.any():  # the op accumulates, sat(dw + dW, P) as the device (a step's dw is zeroed)
        dw[...] = ctx.sat(dw + d, p.pgrads, tensor + ".dw")
    else:
        dw += d
    return dx


# --- add (residual) ---


def add_forward(ctx, a, b, fmt, tensor):
    return ctx.sat(a + b, fmt, tensor)


def add_backward(dy):
    return dy, dy


# --- attention ---


def _heads(a):
    # (...,T,C) -> (...,H,T,D)
    return a.reshape(*a.shape[:-1], N_HEAD, HEAD_DIM).swapaxes(-3, -2)


def _merge(a):
    # (...,H,T,D) -> (...,T,C)
    a = a.swapaxes(-3, -2)
    return a.reshape(*a.shape[:-2], N_HEAD * HEAD_DIM)


def attention_forward(ctx, q, k, v):
    # q, k, v (...,T,C) in acts -> out (...,T,C) in acts, probs (...,H,T,T) in Q15
    p = ctx.p
    qh, kh, vh = _heads(q), _heads(k), _heads(v)
    op = "attention_forward"
    t = q.shape[-2]
    mask = causal_mask(t)  # (T,T): s <= t
    # scores = q.k / sqrt(4): the /2 is one more bit of shift, into the logits format.
    # The future scores (s > t) are never formed on the device: zeroed, they cannot saturate
    exact = (qh @ kh.swapaxes(-1, -2)) * mask
    scores = requant(ctx, op, "attention.scores", exact, p.score_shift, p.logits)
    # softmax over s <= t: the future entries, 0 here, become MASKED (probability 0)
    probs = softmax(scores + future_bias(t), p.logits.frac_bits)
    out = requant(ctx, op, "attention.out", probs @ vh, PROB_FRAC, p.acts)
    return _merge(out), probs


def attention_backward(ctx, dout, q, k, v, probs):
    # forward: scores = q k^T / 2; probs = softmax(scores); out = probs v
    p, gf = ctx.p, ctx.p.grads
    f = p.acts.frac_bits
    qh, kh, vh, dh = _heads(q), _heads(k), _heads(v), _heads(dout)
    op = "attention_backward"
    mask = causal_mask(q.shape[0])  # (T,T): s <= t; probs is 0 elsewhere
    # out = probs v: dprobs[t,s] = dout[t] . v[s] for s <= t (the others are never formed:
    # zeroed), dv[s] = sum_t probs[t,s] dout[t]
    dprobs = requant(ctx, op, "attention.dprobs", (dh @ vh.transpose(0, 2, 1)) * mask, f, gf)
    dv = requant(ctx, op, "attention.dv", probs.transpose(0, 2, 1) @ dh, PROB_FRAC, gf)
    # probs = softmax(scores): dscores = probs * (dprobs - sum(probs * dprobs)), then / 2
    pd = requant(ctx, op, "attention.pd", np.add.reduce(probs * dprobs, axis=-1), PROB_FRAC)
    diff = ctx.sat((dprobs - pd[:, :, None]) * mask, gf, "attention.diff")
    ds = probs * diff
    ctx.check(op, "p*diff", ds, -KERNEL_LIMIT, KERNEL_LIMIT)
    dscores = rnd(ds, PROB_FRAC + 1)  # grad format, |.| <= 1
    # scores = q k^T / 2 (the /2 is in dscores): dq = dscores k, dk = dscores^T q
    dq = requant(ctx, op, "attention.dq", dscores @ kh, f, gf)
    dk = requant(ctx, op, "attention.dk", dscores.transpose(0, 2, 1) @ qh, f, gf)
    return _merge(dq), _merge(dk), _merge(dv)


# --- relu ---


def relu_forward(x):
    return np.maximum(x, 0)


def relu_backward(dy, x):
    return dy * (x > 0)


# --- cross-entropy over the vocabulary ---


def cross_entropy_forward(ctx, logits, targets, sums=False):
    # logits (T,V) in the logits format -> probs (T,V) in Q15; sums: also each row's max
    # and sum of exps, (T,1) each, from which the reported loss follows (loss_q16_of_sums)
    out = softmax_sums(logits, ctx.p.logits.frac_bits)
    return out if sums else out[0]


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
    sums = exp_neg(logits - mx[:, None], frac).sum(axis=-1)
    gaps = mx - logits[np.arange(len(targets)), targets]
    return loss_q16_of_sums(gaps.tolist(), sums.tolist(), frac)


def loss_q16_of_sums(gaps, sums, frac):
    """loss_q16 from each position's max - l_target and sum of exps (lists of ints; the
    training step has both from softmax_sums)."""
    total = sum((gap << (16 - frac)) + ln_q16(s) for gap, s in zip(gaps, sums, strict=True))
    t = len(gaps)
    return (2 * total + t) // (2 * t)
