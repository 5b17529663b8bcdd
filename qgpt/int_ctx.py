"""The integer simulator's context: rounding by a shift, saturation and its counts, the
strict int32 check, and the round-once requantizer of exact sums (docs/arithmetic.md,
sections 1-2 and "dot products"). int_ops.py's ops take a Ctx; its names are re-exported
there (ops.Ctx, ops.rnd, ops.requant).

Speed (docs/BENCHMARKS.md, "Host training"): a step's arrays are small, so numpy's call
overhead, not the elements, is their cost. Saturation is one count_nonzero of |x| > limit
where nothing clips; it is skipped (counted as 0) where the policy proves it cannot clip
(Ctx.dw_fits, rms_y_fits, embed_dw_fits, dlogits_fits; strict runs every check); and in a
training step it is deferred to one check by range at the step's end (Ctx.defer:
IntModel.train_step redoes the step with every check where one would clip).
"""

from itertools import chain
from operator import itemgetter

import numpy as np

from qgpt.params import BLOCK
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
INT64 = np.dtype(np.int64)
_LO, _HI = itemgetter(0), itemgetter(1)  # of a (lo, hi) range (no generator: no call)
LARGE = 2048  # elements: sat checks larger arrays by their max


# rnd's constants by shift, as 0-d int64 arrays: numpy adds and shifts by those about
# twice as fast as by Python ints (no scalar conversion per call), and a training step
# rounds some sixty times
_HALF = [np.array((1 << s) >> 1, dtype=np.int64) for s in range(63)]
_SHIFT = [np.array(s, dtype=np.int64) for s in range(63)]


def rnd(x, s, out=None):
    """rnd(x, s) of arithmetic.md: x / 2**s rounded half up (s > 0), x (s = 0), x * 2**-s
    (s < 0), on an int64 array (qformat.shift_round's integers); out: into that array
    (which may be x), with no temporary."""
    if out is None:
        if s > 0:
            return (x + _HALF[s]) >> _SHIFT[s]
        return x if s == 0 else x << _SHIFT[-s]
    if s > 0:
        if out is x:  # in-place operators: a little less call overhead than out=
            x += _HALF[s]
            x >>= _SHIFT[s]
            return x
        np.add(x, _HALF[s], out=out)
        out >>= _SHIFT[s]
        return out
    if s < 0:
        return np.left_shift(x, _SHIFT[-s], out=out)
    np.copyto(out, x)
    return out


class Int32Overflow(ArithmeticError):
    pass


class Ctx:
    """Policy, saturation counts per tensor, and the strict int32 check.

    Deferred saturation (a training step's speculation, IntModel.train_step): between
    defer() and deferred_clip_nothing(), sat counts 0 and returns x unchecked, keeping x
    with the other arrays of its format's range (acts and grads of 16 bits each are one);
    the step's result is exact if deferred_clip_nothing() then finds every kept array
    within its range (a saturation that clips nothing is the identity), and is recomputed
    with the checks otherwise. One check by range a step instead of one by tensor: numpy's
    call overhead, not the elements, is a small array's cost.
    """

    def __init__(self, policy, strict=False):
        self.p = policy
        self.strict = strict
        self.saturations = {}
        self.clipped = 0  # every count added to saturations since this Ctx was made
        # saturations the policy proves to be no-ops: skipped and counted as 0 (strict runs
        # them all; tests/test_int_fast_paths.py tries extreme inputs on both sides)
        self.dw_fits = dw_fits(policy)
        self.rms_y_fits = policy.acts.int_bits >= 4  # rmsnorm's |y| <= 4.0004: rms_y_bound
        self.embed_dw_fits = embed_dw_fits(policy)
        # dlogits = rnd((p - onehot) / T) in grads: |.| <= 2**Fg, within grads when Ig >= 2
        self.dlogits_fits = policy.grads.int_bits >= 2 and policy.grads.frac_bits <= 14
        self.deferred = None  # {id(fmt): [arrays]} while saturation is deferred
        self._deferred_ranges = {}  # {(lo, hi): [arrays]}: the same lists, by range

    def defer(self):
        """Defer sat's checks from here on (not with strict, which checks every op)."""
        self.deferred = None if self.strict else {}
        self._deferred_ranges = {}

    def deferred_clip_nothing(self):
        """End deferral; True if no array kept since defer() leaves its format (nothing
        would have clipped, so the values computed are the exact ones)."""
        kept, self.deferred = self._deferred_ranges, None
        self._deferred_ranges = {}
        # every kept array's bytes end to end, range after range, read as one int64 array
        # (sat keeps int64 arrays only): a third of np.concatenate's cost on a step's
        # thirty-odd small arrays. bytes.join reads C-contiguous arrays' memory in place
        # (the buffer protocol; 40% less than a tobytes copy of each); any other array
        # makes it raise TypeError, and every array is then copied by tobytes
        try:
            joined = b"".join(chain.from_iterable(kept.values()))
        except TypeError:
            joined = b"".join(map(np.ndarray.tobytes, chain.from_iterable(kept.values())))
        x = np.frombuffer(joined, dtype=np.int64)
        if not x.size:
            return True
        # every range holds 0: within the narrowest bounds (max lo, min hi) is within every
        # range, one max and one min for all (a training step's logits-format arrays are
        # almost always within 16 bits too); otherwise each range on its own part of x
        top, bottom = np.maximum.reduce(x), np.minimum.reduce(x)
        if top <= min(map(_HI, kept)) and bottom >= max(map(_LO, kept)):
            return True
        start = 0
        for (lo, hi), arrays in kept.items():
            part = x[start:start + sum(a.size for a in arrays)]
            start += part.size
            if part.size and (np.maximum.reduce(part) > hi or np.minimum.reduce(part) < lo):
                return False
        return True

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
        if self.deferred is not None and where is None and x.dtype is INT64:  # at the end
            self.saturations.setdefault(tensor, 0)
            kept = self.deferred.get(id(fmt))
            if kept is None:  # the list of fmt's range
                kept = self.deferred[id(fmt)] = self._deferred_ranges.setdefault(
                    (fmt.lo, fmt.hi), [])
            kept.append(x)
            return x
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


def embed_dw_fits(policy):
    """True if a zeroed embedding gradient cannot saturate in embedding_backward: a grads
    word brought to pgrads, |d| <= rnd(2**(bg-1), shift), summed over at most BLOCK
    positions (a token repeated in every one), stays within pgrads."""
    top = 1 << (policy.grads.bits - 1)
    shift = policy.grads.frac_bits - policy.pgrads.frac_bits
    top = (top + ((1 << shift) >> 1)) >> shift if shift > 0 else top << -shift
    return BLOCK * top <= policy.pgrads.abs_limit


# rms_y_bound: rmsnorm's |y| <= 4 * (1 + 2**-13) + half a step, because ms >= mean(x^2)
# (eps >= 1 covers the mean's rounding down), so |x_i| <= 4 sqrt(ms), and M / 2**sh
# exceeds 1 / sqrt(ms) by at most 2**-14 + 2**-15 + 2**-29 (arithmetic.md, rsqrt): acts
# with 4 or more integer bits, [-8, 8) and wider, hold every y.


def requant(ctx, op, tensor, s, shift, fmt=None):
    """sat(rnd(s, shift), fmt) of an exact sum s (arithmetic.md, "dot products").

    s may exceed int32 (the device holds it as a pair of int32 halves); the
    rounded result fits int32 by the bounds of each op. fmt None: no saturation.
    s is an op's temporary int64 array: it is rounded in place.
    """
    if ctx.strict:
        ctx.check(op, tensor + " (exact sum)", s, -PAIR_LIMIT, PAIR_LIMIT)
    if shift > 0:  # rnd(s, shift), in place
        s += _HALF[shift]
        s >>= _SHIFT[shift]
        r = s
    else:
        r = s if shift == 0 else s << _SHIFT[-shift]
    if fmt is None:
        if ctx.strict:  # the recipe's unsaturated sums: lo, hi = -2**30, 2**30
            ctx.check(op, tensor, r, -KERNEL_LIMIT, KERNEL_LIMIT)
        return r
    kept = ctx.deferred
    if kept is not None and r.dtype is INT64:  # Ctx.sat's deferred path, inline: a training
        # step makes some twenty requants, and a Python call costs about 2,000 instructions
        ctx.saturations.setdefault(tensor, 0)
        kept = kept.get(id(fmt))
        if kept is not None:
            kept.append(r)
            return r
    return ctx.sat(r, fmt, tensor)
