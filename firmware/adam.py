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
    iteration from above, exact on big ints."""
    if n < 2:
        return n
    x = 1
    while x * x <= n:  # a power of two above the root
        x <<= 1
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


def alpha_at(lr_q30, alpha_frac, step, num_steps, p1, p2):
    """The bias-corrected step size lr_t * sqrt(1 - b2^t) / (1 - b1^t) with alpha_frac
    fractional bits (policy.alpha_frac), t = step + 1; lr_q30 = policy.lr_q30; p1, p2
    from beta_powers."""
    lr_t = lr_q30 * (num_steps - step) // num_steps
    num = isqrt((ONE_Q30 - p2) << 30)  # sqrt(1 - b2^t) in Q30
    den = ONE_Q30 - p1  # 1 - b1^t in Q30
    # x = (lr_t num) << alpha_frac and y = den << 30 with their common factor 2**s out of
    # both (the same quotient): below 2**62, no big int on a 64-bit port, no garbage
    s = min(alpha_frac, 30)
    x = (lr_t * num) << (alpha_frac - s)
    y = den << (30 - s)
    return (2 * x + y) // (2 * y)
