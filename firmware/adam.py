"""Adam's per-step scalars on the device (docs/arithmetic.md, section 9, "per step").

Plain Python on unbounded integers, once a step, like qgpt/int_model.py's
beta_powers and alpha_at; the per-parameter work is kernels.adam_update.
"""

from micropython import const

# (consts with an underscore leave no interned name behind: firmware/README.md, "Memory")
_ADAM_C1 = const(4915)  # 1 - beta1 in Q15 (beta1 = 0.85)
_ADAM_C2 = const(328)  # 1 - beta2 in Q15 (beta2 = 0.99)
ONE_Q30 = 1 << 30  # p1 and p2 start here: beta^0 in Q30


def isqrt(n):
    """floor(sqrt(n)) for any int n >= 0 (MicroPython has no math.isqrt): Newton's
    iteration from above, exact on big ints. It starts from 2**k, the least power of two
    with 4**k > n, found 8 bits of k at a time and then bit by bit (alpha_at's n, once a
    step, is near 2**60: about 9 rounds, not 30)."""
    if n < 2:
        return n
    k = 1
    while n >> (k + k + 14):  # n >= 4**(k + 7)
        k += 8
    while n >> (k + k):  # n >= 4**k
        k += 1
    x = 1 << k  # x * x > n >= x * x / 4
    while True:
        y = (x + n // x) >> 1
        if y >= x:
            return x
        x = y


def beta_powers(p1, p2):
    """(b1^t, b2^t) -> (b1^(t+1), b2^(t+1)) in Q30, each product rounded half up."""
    p1 = (p1 * ((1 << 15) - _ADAM_C1) + (1 << 14)) >> 15
    p2 = (p2 * ((1 << 15) - _ADAM_C2) + (1 << 14)) >> 15
    return p1, p2


def alpha_at(schedule, step, num_steps, p1, p2):
    """The bias-corrected step size lr_t * sqrt(1 - b2^t) / (1 - b1^t) with alpha_frac
    fractional bits (policy.alpha_frac), t = step + 1; schedule = (policy.lr_q30,
    alpha_frac, ...); p1, p2 from beta_powers. Its frame (locals and operand stack) fits
    11 words: MicroPython puts a larger one on the heap at each call (once a step, some
    thousands of instructions in the search for free blocks)."""
    # x / y, half up, with x = (lr_t num) << alpha_frac and y = den << 30, lr_t = lr_q30
    # (num_steps - step) // num_steps, num = sqrt(1 - b2^t) and den = 1 - b1^t in Q30; their
    # common factor 2**s out of both (the same quotient): below 2**62, no big int on a
    # 64-bit port, no garbage
    s = min(schedule[1], 30)
    y = (ONE_Q30 - p1) << (30 - s)
    return (((schedule[0] * (num_steps - step) // num_steps * isqrt((ONE_Q30 - p2) << 30))
             << (schedule[1] - s + 1)) + y) // (y << 1)
