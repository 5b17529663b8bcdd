"""The reported integer loss on the device (docs/arithmetic.md, section 8).

Plain Python on unbounded ints, once a position: kernels.cross_entropy_forward
returns the softmax denominator S, and the loss needs only ln(S / 2**15).
"""

from array import array

from micropython import const

# log2(1 + k/64) in Q16, k = 0..64: round(log2(1 + k/64) * 2**16), the same
# literals as qgpt.int_ops.LOG2_TABLE. A list: a tuple of constants would stay in the
# module's constant table, a second copy in memory (firmware/README.md, "Memory")
LOG2_Q16 = array("i", [
    0, 1466, 2909, 4331, 5732, 7112, 8473, 9814, 11136, 12440, 13727, 14996, 16248,
    17484, 18704, 19909, 21098, 22272, 23433, 24579, 25711, 26830, 27936, 29029, 30109,
    31178, 32234, 33279, 34312, 35334, 36346, 37346, 38336, 39316, 40286, 41246, 42196,
    43137, 44068, 44990, 45904, 46809, 47705, 48593, 49472, 50344, 51207, 52063, 52911,
    53751, 54584, 55410, 56229, 57040, 57845, 58643, 59434, 60219, 60997, 61769, 62534,
    63294, 64047, 64794, 65536,
])
# ln 2 in Q15 and Q16 (consts with an underscore leave no interned name behind)
_LN2_Q15 = const(22713)
_LN2_Q16 = const(45426)


def ln_q16(s):
    """ln(s / 2**15) in Q16 for an int s >= 2**15 (a softmax denominator). Its frame
    (locals and operand stack) fits 11 words: MicroPython puts a larger one on the heap
    at each call (thousands of instructions, once a position)."""
    n = 15  # bitlen(s) - 1, from s >= 2**15
    x = s >> 16
    while x:
        x >>= 1
        n += 1
    mant = s << (29 - n) if n <= 29 else s >> (n - 29)  # in [2**29, 2**30)
    idx, rem = (mant >> 23) & 63, (mant >> 8) & 0x7FFF
    x = LOG2_Q16[idx]
    x += ((LOG2_Q16[idx + 1] - x) * rem + (1 << 14)) >> 15  # log2 of the mantissa, Q16
    return (n - 15) * _LN2_Q16 + ((x * _LN2_Q15 + (1 << 14)) >> 15)


# (argument names are one letter or shared with other modules: every distinct name
# takes memory on the device for good; firmware/README.md, "Memory")


def nll_q16(m, t, s, f):
    """One position's negative log p[target] in Q16: (max - l_target) + ln(sum_j exp(l_j - max)),
    from the row's largest raw logit m and the target's t (f fractional bits) and
    their softmax denominator s."""
    return ((m - t) << (16 - f)) + ln_q16(s)


def loss_q16(s, T):
    """The step's mean loss in Q16: s, the sum of T positions' nll, divided by T, half
    up."""
    return (2 * s + T) // (2 * T)
