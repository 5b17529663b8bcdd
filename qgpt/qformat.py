"""Q formats, rounding and saturation (docs/arithmetic.md, sections 1-2).

qI.F is a signed word of I+F bits: I integer bits counting the sign, F
fractional bits (fxpmath's convention). q8.8 spans [-128, 128) in steps of
1/256. Raw values are held in numpy int64 on the host; every store into a Q
format saturates, and every shift right rounds by one of three modes:

    nearest     round half up: (x + 2**(s-1)) >> s   (fxpmath 'nearest_posinf')
    floor       x >> s                               (fxpmath 'floor')
    stochastic  (x + r) >> s, r the top s bits of a 30-bit prng number
"""

import re
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from qgpt import prng

ROUNDINGS = ("nearest", "floor", "stochastic")
DATA_MAX_BITS = 16  # the data path multiplies 16x16 -> 32 bits
WIDE_MAX_BITS = 32  # state classes (parameter gradients, Adam, master weights): int32
KERNEL_LIMIT = 1 << 30  # a 32-bit format holds [-2**30, 2**30] (arithmetic.md, section 1)


class FormatError(ValueError):
    """A malformed or unsupported format, worded for the user."""


@dataclass(frozen=True)
class QFormat:
    int_bits: int  # I, counting the sign
    frac_bits: int  # F

    @cached_property
    def bits(self):
        return self.int_bits + self.frac_bits

    @cached_property
    def lo(self):
        """The smallest raw value: -2**(b-1), or the kernel range's -2**30 for b = 32."""
        return -KERNEL_LIMIT if self.bits >= 32 else -(1 << (self.bits - 1))

    @cached_property
    def hi(self):
        """The largest raw value: 2**(b-1) - 1, or the kernel range's 2**30 for b = 32
        (half of int32, so that two such values add without overflow)."""
        return KERNEL_LIMIT if self.bits >= 32 else (1 << (self.bits - 1)) - 1

    @cached_property
    def abs_limit(self):
        """The largest |x| that no bound clips, min(hi, -lo): below it, saturation is a no-op."""
        return min(self.hi, -self.lo)

    @cached_property
    def abs_limit_array(self):
        """abs_limit as a 0-d int64 array: numpy compares an array with it faster than
        with a Python int (no conversion per call)."""
        return np.array(self.abs_limit, dtype=np.int64)

    @cached_property
    def step(self):
        return 2.0**-self.frac_bits

    @cached_property
    def name(self):
        return f"q{self.int_bits}.{self.frac_bits}"

    def __str__(self):
        return self.name

    def range(self):
        """(smallest, largest) real value."""
        return self.lo * self.step, self.hi * self.step

    def describe(self):
        """'q2.6: 8 bits, [-2, 1.98438], step 2^-6': width, range and step, for listings."""
        lo, hi = self.range()
        return f"{self.name}: {self.bits} bits, [{lo:g}, {hi:g}], step 2^-{self.frac_bits}"


_PATTERN = re.compile(r"q(\d+)\.(\d+)")


def parse(text, max_bits=DATA_MAX_BITS):
    """'q4.12' -> QFormat(4, 12); FormatError naming what is accepted otherwise."""
    m = _PATTERN.fullmatch(str(text).strip().lower())
    accepted = (f"qI.F with I >= 1 integer bits (counting the sign) and I+F <= {max_bits}, "
                "e.g. q4.12")
    if not m:
        raise FormatError(f"format {text!r} is malformed: want {accepted}")
    fmt = QFormat(int(m.group(1)), int(m.group(2)))
    if fmt.int_bits < 1 or fmt.bits > max_bits:
        raise FormatError(f"format {text!r} is not supported: want {accepted}")
    return fmt


USEFUL = ("q2.14", "q3.13", "q4.12", "q5.11", "q6.10", "q8.8", "q10.6", "q12.4", "q4.8", "q6.6")


def describe_formats():
    from tabulate import tabulate

    rows = []
    for name in USEFUL:
        f = parse(name)
        lo, hi = f.range()
        rows.append([f.name, f.bits, f"[{lo:g}, {hi + f.step:g})", f"{f.step:g}", f.frac_bits])
    return tabulate(rows, headers=["format", "bits", "range", "step", "frac bits"])


# --- saturation, shifts and rounding on int64 arrays ---


def saturate(x, fmt, counter=None, name=""):
    """Clamp raw values to fmt; counter[name] += how many were clipped."""
    if not isinstance(x, np.ndarray) or x.dtype != np.int64:
        x = np.asarray(x, dtype=np.int64)
    # one reduction: x - lo as unsigned is at most hi - lo exactly when x is in range
    if x.size == 0 or np.maximum.reduce((x - fmt.lo).view(np.uint64), None) <= fmt.hi - fmt.lo:
        if counter is not None and name not in counter:
            counter[name] = 0
        return x  # the common case: nothing to clip, no copy
    if counter is not None:
        counter[name] = counter.get(name, 0) + int(np.count_nonzero((x < fmt.lo) | (x > fmt.hi)))
    return np.minimum(np.maximum(x, fmt.lo), fmt.hi)


def shift_round(x, s):
    """x / 2**s rounded half up (s > 0), or x * 2**-s (s <= 0): the default requantizer."""
    if s > 0:
        return (x + (1 << (s - 1))) >> s
    if s == 0:
        return x
    return np.asarray(x, dtype=np.int64) << (-s)


def shift_mode(x, s, rounding, rand30=None):
    """x / 2**s rounded by mode; rand30 holds one 30-bit prng number per element."""
    x = np.asarray(x, dtype=np.int64)
    if s <= 0:
        return x << (-s)
    if rounding == "nearest":
        return (x + (1 << (s - 1))) >> s
    if rounding == "floor":
        return x >> s
    if rounding == "stochastic":
        if s > 30:
            raise ValueError(f"stochastic rounding shifts at most 30 bits, not {s}")
        return (x + (np.asarray(rand30, dtype=np.int64) >> (30 - s))) >> s
    raise FormatError(f"rounding {rounding!r} is unknown: want one of {', '.join(ROUNDINGS)}")


def requantize(x, from_frac, fmt, rounding="nearest", seed=0, stream_key=None, counter=None,
               name=""):
    """Raw values with from_frac fractional bits -> fmt, rounded by mode, saturated.

    Stochastic rounding draws element i's number as prng.hash30(stream_key + i),
    with stream_key = prng.key(seed, STREAM_ROUND) unless given.
    """
    x = np.asarray(x, dtype=np.int64)
    rand = None
    if rounding == "stochastic":
        k = prng.key(seed, prng.STREAM_ROUND) if stream_key is None else stream_key
        rand = prng.draws(k, 0, x.size).reshape(x.shape)
    return saturate(shift_mode(x, from_frac - fmt.frac_bits, rounding, rand), fmt, counter, name)


def quantize(x, fmt, rounding="nearest", seed=0, stream_key=None):
    """Float values -> raw integers of fmt (rounded by mode, saturated).

    Exact for float64 inputs: x * 2**F is exact, and the rounding is applied to it.
    Stochastic: floor(x * 2**F) + 1 when u30 + frac * 2**30 >= 2**30, u30 a hash30 number.
    """
    xs = np.asarray(x, dtype=np.float64) * 2.0**fmt.frac_bits
    q = np.floor(xs)
    frac = xs - q  # exact in float64
    if rounding == "nearest":
        q = q + (frac >= 0.5)
    elif rounding == "floor":
        pass
    elif rounding == "stochastic":
        k = prng.key(seed, prng.STREAM_ROUND) if stream_key is None else stream_key
        u30 = prng.draws(k, 0, xs.size).reshape(xs.shape)
        q = q + (u30 + frac * 2.0**30 >= 2.0**30)  # up with probability frac
    else:
        raise FormatError(f"rounding {rounding!r} is unknown: want one of {', '.join(ROUNDINGS)}")
    q = np.clip(q, fmt.lo, fmt.hi)
    return q.astype(np.int64)


def to_float(raw, frac_bits):
    return np.asarray(raw, dtype=np.float64) / 2.0**frac_bits
