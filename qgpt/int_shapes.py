"""The integer simulator's host-only array helpers (no device counterpart): attention's
masks by length, cached, the exact sum of a row's products in one numpy call, isqrt's
tables (int_ops.isqrt; the device finds the root digit by digit), and exp's formula
tabulated over every Q12 input, read by the gap max - z (the device computes it); an array's
bit lengths and cross-entropy's one-hot table.

A step's arrays are small, so a numpy call costs about the same whatever they hold; one
with operands of one shape costs about half what a broadcast one does (docs/BENCHMARKS.md,
"Host training"). int_ops.py re-exports these names.
"""

import math
from functools import cache

import numpy as np

from qgpt.int_ctx import _SHIFT
from qgpt.params import HEAD_DIM, N_HEAD
from qgpt.policy import PROB_FRAC

PROB_ONE = 1 << PROB_FRAC

# a masked entry's z: below every row's max by more than 16 in any format, and its gap
# max - z, shifted left by up to 12 (exp_of_gap), still within int64
MASKED = -(1 << 40)


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


@cache
def head_mask(t):
    """(H,T,T) int64: causal_mask(t) for every head, 1 where s <= t. The shape of the
    scores: numpy multiplies equal shapes with no broadcasting iterator (about half the
    cost of a call on a step's small arrays)."""
    mask = np.broadcast_to(causal_mask(t), (N_HEAD, t, t)).astype(np.int64)
    mask.flags.writeable = False
    return mask


@cache
def head_future_bias(t):
    """(H,T,T) int64: future_bias(t) for every head (see head_mask)."""
    bias = np.broadcast_to(future_bias(t), (N_HEAD, t, t)).copy()
    bias.flags.writeable = False
    return bias


def split_heads(qkv):
    """The stacked [q | k | v] (...,T,3C) as q, k, v by head, (3,...,H,T,D): one reshape and
    one transpose (a view), where the three slices cut into heads one by one take six."""
    *lead, t, _ = qkv.shape
    a = qkv.reshape(*lead, t, 3, N_HEAD, HEAD_DIM)
    n = a.ndim  # axes: lead..., T, 3, H, D
    return a.transpose(n - 3, *range(n - 4), n - 2, n - 4, n - 1)


def row_dot(a, b):
    """The exact sum of a * b along the last axis, (...,n) -> (...): one numpy call
    (np.vecdot, numpy >= 2.0) instead of a product and a reduction."""
    return np.add.reduce(a * b, axis=-1)


if hasattr(np, "vecdot"):
    row_dot = np.vecdot  # noqa: F811 (integers: exact, as the product and the sum)


@cache
def _ones_column(n):
    """(n,1) int64 ones (row_sums' operand)."""
    ones = np.ones((n, 1), dtype=np.int64)
    ones.flags.writeable = False
    return ones


_dot = getattr(np.dot, "_implementation", np.dot)  # (without numpy's dispatch)


def row_sums(a):
    """The exact sum of each row of an int64 array, (...,n) -> (...,1). A training step's
    small arrays: a product with a column of ones (np.dot on 2-d arrays, np.matmul
    above), the same integers as np.add.reduce(a, axis=-1, keepdims=True) in a cheaper
    numpy call (a reduction sets up its iterator at every call); large ones (evaluation's
    batches) by that reduction."""
    if a.size > ROW_SUMS_BY_PRODUCT:
        return np.add.reduce(a, axis=-1, keepdims=True)
    ones = _ones_column(a.shape[-1])
    return _dot(a, ones) if a.ndim == 2 else np.matmul(a, ones)


ROW_SUMS_BY_PRODUCT = 4096  # elements: row_sums by a product up to this size


# isqrt by table: n < 2**32 is cut to its top 15 or 16 bits i = n >> sh (sh even, from a
# table over n >> 16), whose root floor(sqrt(i) * 2**8) is tabled too. The tables are in
# the narrowest dtypes (64 KB and 128 KB): Adam gathers from them at every parameter, and
# wide ones fall out of the cache between steps (it then costs several times as much)
ISQRT_SHIFT = np.array([0] + [b + (b & 1) for b in (h.bit_length() for h in range(1, 1 << 16))],
                       dtype=np.int8)  # by n >> 16: the even sh that leaves n >> sh < 2**16
ISQRT_ROOT_Q8 = np.array([math.isqrt(i << 16) for i in range(1 << 16)], dtype=np.uint16)
for _table in (ISQRT_SHIFT, ISQRT_ROOT_Q8):
    _table.flags.writeable = False


def isqrt_plus_one(n, out=None, narrow=False):
    """isqrt(n) + 1 (Adam's denominator), formed in isqrt's last step: one pass less; out:
    into that int64 array, which also holds the steps (fewer arrays: Adam's cache).
    narrow: every n < 65535**2 (Adam's v, a 32-bit signed format: < 2**31), so that the
    root's estimate plus 1 still fits uint16: added there, before the widening (less
    than an int64 add)."""
    n = np.asarray(n, dtype=np.int64)
    above = np.right_shift(n, _SHIFT[16], out=out)
    # the gathers' indices are within the tables for 0 <= n < 2**32: take's wrap mode (the
    # same values) skips its bounds checks (and costs less than its clip mode)
    sh = ISQRT_SHIFT_U8.take(above, mode="wrap")
    # the root's shift 8 - sh/2 and the shifted root c in uint8 and uint16 (0-d operands of
    # those types keep them), then c + 1 widened to int64, + 1 again where (c + 1)**2 <= n
    s2 = np.subtract(_U8_EIGHT, sh >> _U8_ONE)
    np.right_shift(n, sh, out=above)
    if narrow:
        c = ISQRT_ROOT_Q8.take(above, mode="wrap")
        c >>= s2
        c += _U16_ONE
        np.copyto(above, c)
    else:
        np.add(np.right_shift(ISQRT_ROOT_Q8.take(above, mode="wrap"), s2), _ONE, out=above)
    above += above * above <= n
    return above


def isqrt_plus_one_int32(n, out, scratch):
    """isqrt_plus_one of an int32 array 0 <= n < 2**31 (Adam's v in int32), into the
    uint32 array out (scratch: an int32 array of n's shape): the same tables and steps in
    32-bit lanes (a quarter of int64's instructions for a shift or a multiply). The root
    estimate c + 1 <= 46341 and its square < 2**32 fit uint32."""
    np.right_shift(n, _I32_SIXTEEN, out=scratch)
    sh = ISQRT_SHIFT_U16.take(scratch, mode="wrap")  # (indices < 2**15: within the table)
    np.right_shift(n, sh, out=scratch)  # < 2**16
    # the root's shift 8 - sh/2 in sh's place, in uint16 as the root (no mixed types)
    sh >>= _U16_ONE
    s2 = np.subtract(_U16_EIGHT, sh, out=sh)
    c = ISQRT_ROOT_Q8.take(scratch, mode="wrap")
    c >>= s2
    c += _U16_ONE
    _copyto(out, c)
    square = np.multiply(out, out, out=scratch.view(np.uint32))
    out += square <= n.view(np.uint32)
    return out


_copyto = getattr(np.copyto, "_implementation", np.copyto)  # (without numpy's dispatch)


ISQRT_SHIFT_U8 = ISQRT_SHIFT.view(np.uint8)  # (its values 0..16)
# isqrt_plus_one_int32's copy, in the root table's dtype (64 KB of the first 32 K entries:
# the int32 path's n < 2**31 reads no other)
ISQRT_SHIFT_U16 = ISQRT_SHIFT_U8[: 1 << 15].astype(np.uint16)
ISQRT_SHIFT_U16.flags.writeable = False
_U16_EIGHT = np.array(8, dtype=np.uint16)
_I32_SIXTEEN = np.array(16, dtype=np.int32)
_U8_ONE, _U8_EIGHT = np.array(1, dtype=np.uint8), np.array(8, dtype=np.uint8)
_ONE = np.array(1, dtype=np.int64)
_U16_ONE = np.array(1, dtype=np.uint16)
ISQRT_NARROW_LIMIT = 65535**2  # isqrt_plus_one(narrow=True) takes n below this


# 2**(k/64) in Q15 for k = 0..64, and the constants of exp (arithmetic.md, "exp")
EXP2_TABLE = np.array([round(2 ** (k / 64) * (1 << PROB_FRAC)) for k in range(65)], dtype=np.int64)
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
# the formula tabulated once, by the gap k = -z12 (exp_of_gap)
EXP_BY_GAP_Q12 = exp_q12(-np.arange((EXP_ZERO_BELOW << 12) + 1, dtype=np.int64))
EXP_BY_GAP_Q12.flags.writeable = False
assert EXP_BY_GAP_Q12[-1] == 0  # z = -16: step 1's zero, by the formula


@cache
def _gap_round(s):
    """(2**s >> 1) - 1 as a 0-d int64 array: -rnd(-g, s) = (g + that) >> s (exp_of_gap)."""
    return np.array(((1 << s) >> 1) - 1, dtype=np.int64)


def exp_of_gap(gap, frac):
    """exp_neg(-gap) for raw 0 <= gap < 2**50 (softmax's max - z): the table at
    k = -rnd(-gap, frac - 12) = (gap + 2**(s-1) - 1) >> s (s = frac - 12 > 0; rnd rounds
    half up). k grows with gap and is 2**16 at gap = 16, so take's clip mode, which reads
    every larger k as the last entry (0), is step 1's clamp: no pass for it."""
    s = frac - 12
    if s > 0:
        gap = (gap + _gap_round(s)) >> _SHIFT[s]
    elif s < 0:
        gap = gap << _SHIFT[-s]
    return EXP_BY_GAP_Q12.take(gap, mode="clip")


POWERS_OF_TWO = np.array([1 << k for k in range(63)], dtype=np.int64)


def bit_length(x):
    """int.bit_length() of each element of a non-negative int64 array, by integer
    comparisons (no float): the number of powers of two <= x."""
    return POWERS_OF_TWO.searchsorted(np.asarray(x, dtype=np.int64), side="right")


@cache
def onehot_q15(v):
    """(V,V) int64: PROB_ONE on the diagonal, 0 elsewhere (row j: a target j's one-hot)."""
    table = np.eye(v, dtype=np.int64) * PROB_ONE
    table.flags.writeable = False
    return table
