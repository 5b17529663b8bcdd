"""The precision policy on the device: every number the kernels take, computed once.

The same rules and names as qgpt/policy.py and the kernels' sections of
docs/arithmetic.md (section 3: the formats, guard bits and dot products). Plain Python on
unbounded ints; nothing here runs per element.
"""

from micropython import const

BLOCK = 16  # positions (qgpt/params.py)
_GRAD_BITS = const(16)  # G = q2.14, activation gradients
GRAD_FRAC = 14
GRAD_LO = -32768
GRAD_HI = 32767
PROB_FRAC = 15  # softmax probabilities, unsigned Q15
LOGIT_EXTRA_BITS = 4
V_FRAC = 28  # Adam v
GS_FRAC = 14  # the gradient Adam squares, in G
R_FRAC = 13  # Adam's ratio m / sqrt(v) in Q13
ROUNDINGS = ("nearest", "floor", "stochastic")  # kernel mode numbers 0, 1, 2


def bitlen(x):
    """int.bit_length() for x >= 0 (MicroPython's int has none)."""
    n = 0
    while x:
        x >>= 1
        n += 1
    return n


def guard(n, bits_a, bits_b):
    """Bits each product of an n-term dot product of bits_a- and bits_b-bit words is
    shifted right before the sum, so that the sum stays within 2**30 (section 3)."""
    return max(0, bitlen(n - 1) + (bits_a - 1) + (bits_b - 1) - 30)


def parse_format(name):
    """'q4.12' -> (4, 12)."""
    i, f = name[1:].split(".")
    return int(i), int(f)


class QFormat:
    """qI.F: a signed word of I + F bits with F fractional bits."""

    def __init__(self, int_bits, frac_bits):
        self.int_bits = int_bits
        self.frac_bits = frac_bits
        self.bits = int_bits + frac_bits
        self.lo = -(1 << (self.bits - 1))
        self.hi = (1 << (self.bits - 1)) - 1

    @property
    def name(self):
        return f"q{self.int_bits}.{self.frac_bits}"


class Policy:
    """The data format D = qI.F and everything derived from it (section 3).

    rounding: 'nearest' | 'floor' | 'stochastic' (the weight update, section 9);
    master: None or (I, Fm), int32 master weights; lr_q30 = round(lr * 2**30),
    computed on the host (a 32-bit float on the device could round it otherwise).
    """

    def __init__(self, data, rounding="nearest", master=None, lr_q30=10737418):
        if isinstance(data, str):
            data = parse_format(data)
        self.data = D = QFormat(data[0], data[1])
        self.rounding = rounding
        self.mode = ROUNDINGS.index(rounding)
        self.master = QFormat(master[0], master[1]) if master else None
        self.lr_q30 = lr_q30
        b, F = D.bits, D.frac_bits
        self.logits = QFormat(D.int_bits + LOGIT_EXTRA_BITS, F)  # L
        self.pgrad_guard = guard(BLOCK, _GRAD_BITS, b)
        self.pgrad_frac = GRAD_FRAC + F - self.pgrad_guard  # P
        self.m_frac = self.pgrad_frac
        self.weight_store = self.master or D
        self.alpha_frac = 45 - bitlen(lr_q30)  # Fa
        self.update_shift = self.alpha_frac + R_FRAC - self.weight_store.frac_bits  # u

        # rmsnorm (section 6): the mean square's shift (guard rounded up to even),
        # its fractional bits (the +4 is the /16) and eps = 1e-5 half up
        g = guard(16, b, b)
        self.rms_guard = g + (g & 1)
        self.rms_fm = 2 * F - self.rms_guard + 4
        self.rms_eps = max(1, ((1 << self.rms_fm) + 50000) // 100000)
        self.rms_back_shift = F + 4  # rmsnorm_backward's c: the mean adds 4 bits

        # attention (sections 6, 7): the shifts that round each dot product once
        self.score_shift = F + 1  # the +1 is the 1/sqrt(4)
        self.attn_out_shift = PROB_FRAC
        self.dp_shift = F
        self.pv_shift = PROB_FRAC  # dv and pd, sums of probabilities times gradients
        self.dqk_shift = F

        # embedding_backward (section 7): dx (Q14) into P bits
        self.embed_back_shift = GRAD_FRAC - self.pgrad_frac

        # Adam (section 9)
        self.gs_shift = self.pgrad_frac - GS_FRAC
        self.r_shift = 27 - self.pgrad_frac  # e

        # what the kernels can take
        if not 0 <= self.update_shift <= 30:
            raise ValueError(f"weight store {self.weight_store.name} with lr_q30 {self.lr_q30}:"
                             f" the update would shift by {self.update_shift} bits (want 0..30)")
        if not 0 <= self.r_shift <= 15:
            raise ValueError(f"Adam's ratio shift e = {self.r_shift} is outside 0..15")
        if not 0 <= self.rms_guard < 16 or not 0 <= self.pgrad_guard < 16:
            raise ValueError("the unsaturated sums need a shift below 16")

    def linear_forward_args(self, wide):
        """(sh, lo, hi) of linear_forward: into L (the logits) when wide, else into D."""
        D = self.data
        out = self.logits if wide else D
        return 2 * D.frac_bits - out.frac_bits, out.lo, out.hi

    def linear_backward_args(self):
        """(sh, sh_w) of linear_backward: dx's shift F, dW's shift gP."""
        return self.data.frac_bits, self.pgrad_guard

    def init_args(self):
        """(sh, lo, hi, wide) of prng.init_tensor for the weight store."""
        s = self.weight_store
        return 28 - s.frac_bits, s.lo, s.hi, 1 if self.master else 0
