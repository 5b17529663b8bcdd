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
therefore makes few of them: exact sums are rounded in place; saturation (int_ctx.py) is
skipped where the policy proves it cannot clip and, in a training step, deferred to one
check by range at the step's end; attention's mask and future bias of a length are built
once in the scores' (H,T,T) shape, and a row's sum of products is one call (int_shapes.py);
the future entries of attention are zeroed before they are requantized (they are never formed on
the device, so they must not saturate); exp_neg is a table of its formula over every Q12
input, isqrt two small tables and one comparison; rmsnorm's per-row rsqrt of a step's
few rows is a loop on Python ints, applied as rnd(x * (M << (S - sh)), S) with one shift
S for every row; and no float is used (tests/test_policy.py checks that a training step
calls none of numpy's float functions). tests/test_int_fast_paths.py checks each
shortcut against the general path.
"""

import math
from functools import cache

import numpy as np

from qgpt.int_ctx import (  # noqa: F401 (re-exported: ops.Ctx, ops.rnd, ops.requant, ...)
    _HALF,
    _SHIFT,
    INT32_MAX,
    INT32_MIN,
    INT64,
    INT64_MIN,
    KERNEL_LIMIT,
    LARGE,
    PAIR_LIMIT,
    Ctx,
    Int32Overflow,
    _count_nonzero,
    _within,
    dw_fits,
    embed_dw_fits,
    requant,
    rnd,
)
from qgpt.int_losses import (  # noqa: F401 (re-exported: ops.loss_q16, ops.ln_q16, ...)
    LN2_Q15,
    LN2_Q16,
    LOG2_TABLE,
    ln_q16,
    loss_q16,
    loss_q16_of_sums,
)
from qgpt.int_shapes import (  # noqa: F401 (re-exported: ops.causal_mask, ops.MASKED, ...)
    _ONE,
    EXP2_TABLE,
    EXP_BY_GAP_Q12,
    EXP_ZERO_BELOW,
    ISQRT_NARROW_LIMIT,
    ISQRT_ROOT_Q8,
    ISQRT_SHIFT,
    LOG2E_Q14,
    MASKED,
    POWERS_OF_TWO,
    bit_length,
    causal_mask,
    exp_of_gap,
    exp_q12,
    future_bias,
    head_future_bias,
    head_mask,
    isqrt_plus_one,
    onehot_q15,
    row_dot,
    row_sums,
    split_heads,
)
from qgpt.params import BLOCK, HEAD_DIM, N_HEAD, RMS_EPS
from qgpt.policy import PROB_FRAC
from qgpt.qformat import shift_round  # noqa: F401 (ops.shift_round, as before)

PROB_ONE = 1 << PROB_FRAC
# --- integer functions: exact floor sqrt, exp and the softmax row ---


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
    c = isqrt_plus_one(n)
    c -= _ONE
    return c


# exp: its formula and its table by the gap max - z are in int_shapes.py (exp_q12,
# EXP_BY_GAP_Q12, exp_of_gap)


@cache
def _exp_cut(frac):
    """16 with frac fractional bits, as a 0-d int64 array (exp_neg's step 1)."""
    return np.array(EXP_ZERO_BELOW << frac, dtype=np.int64)


def exp_neg(z, frac):
    """exp(z) for raw z <= 0 with `frac` fractional bits -> unsigned Q15 in [0, 2**15]."""
    # step 1: every z <= -16 gives 0, as z = -16 does
    return exp_of_gap(np.minimum(np.negative(z), _exp_cut(frac)), frac)


def softmax(z, frac, mask=None):
    """Rows of raw z (last axis) -> Q15 probabilities; masked entries (mask False) are left
    out of the max and the sum and get 0."""
    return softmax_sums(z, frac, mask)[0]


def softmax_sums(z, frac, mask=None):
    """softmax, and what the loss reuses of it: each row's max, its sum S of exps and
    the gaps max - z (>= 0)."""
    z = np.asarray(z, dtype=np.int64)
    if mask is not None:  # a masked entry's exp_neg is 0: out of the sum, probability 0
        z = np.where(mask, z, MASKED)
    zmax = np.maximum.reduce(z, axis=-1, keepdims=True)
    gaps = zmax - z
    e = exp_of_gap(gaps, frac)
    s = row_sums(e)  # (...,1), in [2**15, 27 * 2**15]
    e <<= _SHIFT[PROB_FRAC]
    e += s >> _SHIFT[1]
    e //= s
    return e, zmax, s, gaps


# --- embedding ---


def embedding_forward(ctx, wte, wpe, tokens):
    # wte (V,C), wpe (BLOCK,C) in weights, tokens (...,T) -> x (...,T,C) in acts
    p = ctx.p
    x = wte.take(tokens, axis=0) + wpe[: tokens.shape[-1]]
    shift = p.weights.frac_bits - p.acts.frac_bits
    return ctx.sat(rnd(x, shift) if shift else x, p.acts, "embedding.x")


def embedding_backward(ctx, dx, tokens, dwte, dwpe, zeroed=False):
    # forward was x[t] = wte[tokens[t]] + wpe[t]: both rows receive dx[t], as param grads,
    # added position by position, each sum saturated to pgrads
    pf = ctx.p.pgrads
    t = len(tokens)
    # zeroed: the caller knows dwte and dwpe are 0 (a training step's fresh gradient)
    if ctx.embed_dw_fits and not ctx.strict and (zeroed or not (_count_nonzero(dwte)
                                                                or _count_nonzero(dwpe))):
        # a training step's zeroed gradients: nothing can clip (embed_dw_fits), no check
        d = rnd(dx, ctx.p.grads.frac_bits - pf.frac_bits, out=dwpe[:t])  # into wpe's rows
        ctx.saturations.setdefault("embedding.dw", 0)
        np.add.at(dwte, tokens, d)
        return
    d = ctx.sat(rnd(dx, ctx.p.grads.frac_bits - pf.frac_bits), pf, "embedding.dw")
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


@cache  # (a cached call costs a fraction of a Python function's; a step makes nine)
def rms_scale_shift(fm):
    """S = 30 - fm/2, the largest sh of rsqrt (ms < 2**31): rmsnorm applies each row's
    (M, sh) as rnd(x * (M << (S - sh)), S), the same integer as rnd(x * M, sh) (both are
    floor((x * M * 2**(S - sh) + 2**(S - 1)) / 2**S)), with one shift for every row."""
    return 30 - fm // 2


def rsqrt_scaled_rows(sums, g, fm):
    """rmsnorm's per-row multiplier M << (S - sh) (rms_scale_shift), with (M, sh) rsqrt's
    of ms = rnd(sum, g) + eps, from each row's exact sum of squares (a list of ints), on
    Python ints (a step's few rows: fewer numpy calls). An out-of-range sum raises
    ValueError (a speculative step's unclipped values: Ctx.defer)."""
    eps, s_top = rmsnorm_eps(fm), rms_scale_shift(fm) - (15 - fm // 2)  # S - sh = s_top - k
    half, table, isqrt_ = (1 << g) >> 1, RSQRT_M_LIST, math.isqrt
    scaled = []
    for total in sums:
        n = (((total + half) >> g) if g >= 0 else total << -g) + eps
        if n >= 1 << 31:
            raise ValueError(f"rmsnorm: mean square {n} does not fit int32")
        shift = (n.bit_length() - 1) & -2  # sh = shift / 2 + 15 - fm / 2
        scaled.append(table[isqrt_((n << 28) >> shift)] << (s_top - (shift >> 1)))
    return scaled


class RowScale:
    """rmsnorm_forward's per-row scale, for backward: it iterates (and indexes) as rsqrt's
    pair (M, sh), arrays of shape (...,T), the op's contract; and it keeps what the ops
    apply, M << (S - sh) (rms_scale_shift) of shape (...,T,1), or repeated along each row.
    Made from a step's few rows (rsqrt_scaled_rows: repeated), it computes the pair only
    when read, by rsqrt on arrays from the rows' mean squares (a step never reads it)."""

    __slots__ = ("scaled", "_pair", "_sums")

    def __init__(self, scaled, pair=None, sums=None):
        self.scaled, self._pair, self._sums = scaled, pair, sums  # sums: (sums, g, fm)

    def _get_pair(self):
        if self._pair is None:  # rsqrt of ms = rnd(sum, g) + eps, on arrays
            squares, g, fm = self._sums  # (...,T)
            self._pair = rsqrt(rnd(squares, g) + rmsnorm_eps(fm), fm)
        return self._pair

    def __iter__(self):
        return iter(self._get_pair())

    def __getitem__(self, i):
        return self._get_pair()[i]

    def __len__(self):
        return 2


def rmsnorm_forward(ctx, x):
    # x (...,T,C) in acts -> y (...,T,C) in acts, and rs = (M, sh) per row (a RowScale)
    g, fm = ctx.p.rms_guard, ctx.p.rms_fm  # (rmsnorm_shape, without a call)
    squares = row_dot(x, x)  # (...,T)
    if squares.size <= SCALAR_ROWS and not ctx.strict:
        scaled = rsqrt_scaled_rows(squares.ravel().tolist(), g, fm)
        # each row's multiplier repeated along the row, x's shape: x * it (and backward's
        # t * it) multiply equal shapes, about half a broadcast product's cost
        rs = RowScale(np.array(scaled, dtype=np.int64).repeat(x.shape[-1]).reshape(x.shape),
                      sums=(squares, g, fm))
    else:
        sums = squares[..., None]  # (...,T,1)
        ms = requant(ctx, "rmsnorm_forward", "mean square", sums, g)
        ms = ctx.check("rmsnorm_forward", "ms + eps", ms + rmsnorm_eps(fm))  # Q.fm (/16 in fm)
        m, sh = rsqrt(ms, fm)
        ctx.check("rmsnorm_forward", "x*M", x * m, -KERNEL_LIMIT, KERNEL_LIMIT)
        rs = RowScale(m << (rms_scale_shift(fm) - sh), pair=(m[..., 0], sh[..., 0]))
    y = x * rs.scaled  # rnd(y, S) in place (rms_scale_shift)
    y += _HALF[rms_scale_shift(fm)]
    y >>= _SHIFT[rms_scale_shift(fm)]
    if ctx.rms_y_fits and not ctx.strict:  # |y| <= 4.0004 (rms_y_bound): no check
        ctx.saturations.setdefault("rmsnorm.y", 0)
        return y, rs
    return ctx.sat(y, ctx.p.acts, "rmsnorm.y"), rs


def rmsnorm_backward(ctx, dy, y, rs):
    # y = x * r with r = M/2**sh: dx = r * (dy - y * mean(dy * y)); rs = (M, sh) per row
    fa, gf, fm = ctx.p.acts.frac_bits, ctx.p.grads, ctx.p.rms_fm
    scaled = getattr(rs, "scaled", None)  # rmsnorm_forward's RowScale, or a plain pair
    if scaled is None:
        m, sh = rs
        scaled = (m << (rms_scale_shift(fm) - sh))[..., None]
    # sum dy*y has grads + acts fractional bits; the mean (/16) adds 4 more
    c = requant(ctx, "rmsnorm_backward", "rmsnorm.c",
                row_dot(dy, y)[..., None], fa + 4, gf)
    yc = y * c
    if ctx.strict:  # (the checks only with strict: a Python call less a step without)
        ctx.check("rmsnorm_backward", "y*c", yc)
    if fa > 0:  # rnd(yc, fa) in place (inline: a Python call less)
        yc += _HALF[fa]
        yc >>= _SHIFT[fa]
    t = ctx.sat(np.subtract(dy, yc, out=yc), gf, "rmsnorm.t")
    if ctx.strict:
        ctx.check("rmsnorm_backward", "t*M", t * rs[0][..., None])
    dx = t * scaled  # rnd(dx, S) in place (rms_scale_shift)
    dx += _HALF[rms_scale_shift(fm)]
    dx >>= _SHIFT[rms_scale_shift(fm)]
    return ctx.sat(dx, gf, "rmsnorm.dx")


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
    return _dot(a, b) if a.ndim == 2 else a @ b  # (np.dot: less overhead than @)


EINSUM_ROWS = 5  # a step's x of this many rows or more: linear_forward's product by einsum
DX_BY_COPY = 1024  # weights: linear_backward's dx by einsum's contiguous dot products on a
# transposed copy of w (the MLP's: the copy costs less than np.dot's strided loop saves)
# np.einsum and np.dot's C functions, without numpy's Python-level wrappers (argument
# dispatch, optimize=False's checks): the same sums, some thousand instructions less a call
try:
    from numpy._core.multiarray import c_einsum as _einsum
except ImportError:  # numpy 1.26
    from numpy.core.multiarray import c_einsum as _einsum
_dot = getattr(np.dot, "_implementation", np.dot)


def linear_forward(ctx, x, w, out_fmt, tensor):
    # x (...,T,in) in acts, w (out,in) in weights -> y (...,T,out) in out_fmt (acts or logits)
    # (a training step's (T,in) of 5 rows or more: einsum's contiguous dot products, the
    # same exact sums in 10-30% fewer instructions than matmul's int64 loop; below, more)
    p = ctx.p
    exact = (_einsum("ti,oi->to", x, w) if x.ndim == 2 and x.shape[0] >= EINSUM_ROWS
             else exact_matmul(x, w.T))
    return requant(ctx, "linear_forward", tensor, exact,
                   p.weights.frac_bits + p.acts.frac_bits - out_fmt.frac_bits, out_fmt)


def linear_backward(ctx, dy, x, w, dw, tensor, paths=1, zeroed=False, exact_dw=False):
    # forward was y = x @ w.T: dx = dy @ w (grad), dw = dy.T @ x (param grad).
    # paths > 1: w stacks that many equal blocks of rows (wq; wk; wv), each its own
    # linear: the result is one dx per block, (paths,T,in), from one stacked matmul
    p, gf = ctx.p, ctx.p.grads
    if paths == 1:  # (np.dot: a little less overhead than @; the MLP's by DX_BY_COPY)
        exact = _einsum("to,io->ti", dy, w.T.copy()) if w.size >= DX_BY_COPY else _dot(dy, w)
    else:
        t, n = dy.shape[0], dy.shape[1] // paths
        exact = dy.reshape(t, paths, n).transpose(1, 0, 2) @ w.reshape(paths, n, w.shape[1])
    dx = requant(ctx, "linear_backward", tensor + ".dx", exact, p.weights.frac_bits, gf)
    # a training step's dw is zeroed (zeroed: the caller knows; else numpy's cheapest test)
    fresh = zeroed or not _count_nonzero(dw)
    if ctx.dw_fits and dy.shape[0] <= BLOCK and not ctx.strict:  # nothing can clip: no check
        ctx.saturations.setdefault(tensor + ".dw", 0)
        if fresh:  # dw = rnd(dy^T x, dw_shift), formed in place (einsum: 4% fewer
            # instructions than np.matmul on a step's five)
            _einsum("to,ti->oi", dy, x, out=dw)
            if not exact_dw:  # (exact_dw: the caller rounds every weight's at once)
                rnd(dw, p.dw_shift, out=dw)
            return dx
    if exact_dw:
        raise ValueError("linear_backward: exact_dw needs a zeroed dw, dw_fits and no strict")
        d = rnd(dy.T @ x, p.dw_shift)
    else:
        d = requant(ctx, "linear_backward", tensor + ".dw", dy.T @ x, p.dw_shift, p.pgrads)
    if fresh:
        dw += d
    else:  # the op accumulates, sat(dw + dW, P) as the device
        dw[...] = ctx.sat(dw + d, p.pgrads, tensor + ".dw")
    return dx


# --- add (residual) ---


def add_forward(ctx, a, b, fmt, tensor):
    s = a + b
    kept = ctx.deferred
    if kept is not None and s.dtype is INT64:  # Ctx.sat's deferred path, inline (as
        # requant's: a step makes six adds, and a Python call costs more than this)
        kept = kept.get(id(fmt))
        if kept is not None:
            ctx.saturations.setdefault(tensor, 0)
            kept.append(s)
            return s
    return ctx.sat(s, fmt, tensor)


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


def _zero_future(x, mask):
    """x *= mask: attention's future entries (s > t), never formed on the device, zeroed so
    that saturation neither clips nor counts them. A speculative step (ctx.deferred) skips
    it (its callers test ctx.deferred: no call): those entries reach no result (probs is 0
    there: the softmax's future bias makes them MASKED, dscores = probs * diff), and one
    out of range only sends the step to the checked path (Ctx.defer), which zeroes them."""
    x *= mask


def attention_forward(ctx, q, k, v, heads=None):
    # q, k, v (...,T,C) in acts -> out (...,T,C) in acts, probs (...,H,T,T) in Q15
    p = ctx.p
    # heads: q, k, v already as (...,H,T,D) (split_heads of the stacked qkv: two calls, not six)
    qh, kh, vh = (_heads(q), _heads(k), _heads(v)) if heads is None else heads
    op = "attention_forward"
    t = q.shape[-2]
    mask = head_mask(t)  # (H,T,T): s <= t
    # scores = q.k / sqrt(4): the /2 is one more bit of shift, into the logits format.
    # The future scores (s > t) are never formed on the device: zeroed, they cannot saturate
    # (a speculative step leaves them: _zero_future)
    exact = qh @ kh.swapaxes(-1, -2)
    if ctx.deferred is None:
        _zero_future(exact, mask)
    scores = requant(ctx, op, "attention.scores", exact, p.score_shift, p.logits)
    # softmax over s <= t: the future entries, 0 here, become MASKED (probability 0)
    probs = softmax(scores + head_future_bias(t), p.logits.frac_bits)
    if q.ndim == 2:  # a step's: the product formed in (T,H,D) order, merged by a view
        out = np.empty((t, N_HEAD, HEAD_DIM), dtype=np.int64)
        np.matmul(probs, vh, out=out.swapaxes(0, 1))
        out = requant(ctx, op, "attention.out", out, PROB_FRAC, p.acts)
        return out.reshape(t, N_HEAD * HEAD_DIM), probs
    out = requant(ctx, op, "attention.out", probs @ vh, PROB_FRAC, p.acts)
    return _merge(out), probs


def attention_backward(ctx, dout, q, k, v, probs, stacked=False, heads=None):
    # forward: scores = q k^T / 2; probs = softmax(scores); out = probs v
    # stacked: (T,3C) [dq | dk | dv] instead of the three (T,C) (the stacked qkv linear's
    # dy): the three formed in one (3,H,T,D) buffer, merged by one copy
    p, gf = ctx.p, ctx.p.grads
    t = q.shape[0]
    dqkv = np.empty((3, N_HEAD, t, HEAD_DIM), dtype=np.int64) if stacked else None
    into = (None, None, None) if dqkv is None else tuple(dqkv)  # the matmuls' out=
    f = p.acts.frac_bits
    qh, kh, vh = (_heads(q), _heads(k), _heads(v)) if heads is None else heads
    dh = _heads(dout)
    op = "attention_backward"
    mask = head_mask(t)  # (H,T,T): s <= t; probs is 0 elsewhere
    # out = probs v: dprobs[t,s] = dout[t] . v[s] for s <= t (the others are never formed:
    # zeroed), dv[s] = sum_t probs[t,s] dout[t]
    exact = dh @ vh.transpose(0, 2, 1)
    if ctx.deferred is None:
        _zero_future(exact, mask)
    dprobs = requant(ctx, op, "attention.dprobs", exact, f, gf)
    dv = requant(ctx, op, "attention.dv", np.matmul(probs.transpose(0, 2, 1), dh, out=into[2]),
                 PROB_FRAC, gf)
    # probs = softmax(scores): dscores = probs * (dprobs - sum(probs * dprobs)), then / 2
    pd = requant(ctx, op, "attention.pd", row_dot(probs, dprobs)[..., None], PROB_FRAC)
    diff = dprobs - pd
    if ctx.deferred is None:
        _zero_future(diff, mask)
    diff = ctx.sat(diff, gf, "attention.diff")
    ds = probs * diff
    if ctx.strict:
        ctx.check(op, "p*diff", ds, -KERNEL_LIMIT, KERNEL_LIMIT)
    dscores = rnd(ds, PROB_FRAC + 1, out=ds)  # grad format, |.| <= 1
    # scores = q k^T / 2 (the /2 is in dscores): dq = dscores k, dk = dscores^T q
    exact_dq = np.matmul(dscores, kh, out=into[0])
    exact_dk = np.matmul(dscores.transpose(0, 2, 1), qh, out=into[1])
    if stacked and ctx.deferred is not None and f > 0:  # a speculative step: both rounded
        # in place as one array, adjacent in dqkv (the same integers; sat keeps it for the
        # step's check, and dv is in its place: requant by PROB_FRAC > 0 rounds in place)
        requant(ctx, op, "attention.dq", dqkv[:2], f, gf)
        ctx.saturations.setdefault("attention.dk", 0)
        return dqkv.transpose(2, 0, 1, 3).reshape(t, 3 * N_HEAD * HEAD_DIM)
    dq = requant(ctx, op, "attention.dq", exact_dq, f, gf)
    dk = requant(ctx, op, "attention.dk", exact_dk, f, gf)
    if stacked:  # (3,H,T,D) -> (T,3,H,D) -> (T,3C): columns q, k, v, each head by head
        for buffer, result in zip(into, (dq, dk, dv), strict=True):
            if result is not buffer:  # requant made a new array (a clip): into its place
                np.copyto(buffer, result)
        return dqkv.transpose(2, 0, 1, 3).reshape(t, 3 * N_HEAD * HEAD_DIM)
    return _merge(dq), _merge(dk), _merge(dv)


# --- relu ---


def relu_forward(x):
    return np.maximum(x, _SHIFT[0])


def relu_backward(dy, x):
    return dy * (x > _SHIFT[0])


# --- cross-entropy over the vocabulary ---


def cross_entropy_forward(ctx, logits, targets, sums=False):
    # logits (T,V) in the logits format -> probs (T,V) in Q15; sums: also each row's max
    # and sum of exps, (T,1) each, and max - logits (T,V), from which the reported losses
    # follow (loss_q16_of_sums, int_model.reported_losses)
    out = softmax_sums(logits, ctx.p.logits.frac_bits)
    return out if sums else out[0]


def cross_entropy_backward(ctx, probs, targets):
    # loss = mean_t -log p[t, target]: dlogits = (p - onehot) / T, Q15 -> grad format
    t = len(targets)
    d = probs - onehot_q15(probs.shape[-1]).take(targets, axis=0)
    s = PROB_FRAC - ctx.p.grads.frac_bits  # 1 for q2.14
    # round half up of d / (T * 2**s), saturated to grads (never for q2.14: |d / T| <= 1)
    d += (t << s) >> 1
    d //= t << s
    if ctx.dlogits_fits and not ctx.strict:  # |d| <= 2**Fg: nothing can clip
        ctx.saturations.setdefault("dlogits", 0)
        return d
    return ctx.sat(d, ctx.p.grads, "dlogits")
