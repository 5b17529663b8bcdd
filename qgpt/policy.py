"""The precision policy: which format each kind of tensor uses (docs/arithmetic.md, section 3).

`--format qI.F` sets the data path (weights as the forward pass sees them, and
activations); every other format follows from it by the rules below, or is set
explicitly. Every run records policy.describe() in its config.json.
"""

from dataclasses import dataclass
from functools import cache, cached_property

from qgpt import qformat
from qgpt.params import BLOCK

GRAD = qformat.QFormat(2, 14)  # activation gradients: measured |max| < 1 in float runs
LOGIT_EXTRA_BITS = 4  # logits get 4 more integer bits than the data path
V_FRAC = 28  # Adam second moment, int32, v < 4
GS_FRAC = 14  # the gradient as Adam squares it: saturated to q2.14
R_FRAC = 13  # Adam ratio m / sqrt(v), clamped to [-4, 4]
R_MAX = 4
# Adam betas as Q15 coefficients of (1 - beta): beta1 = 1 - 4915/2**15, beta2 = 1 - 328/2**15
ADAM_C1 = 4915
ADAM_C2 = 328
PROB_FRAC = 15  # softmax probabilities, unsigned Q15 in [0, 2**15]


@cache
def guard(n, bits_a, bits_b):
    """Bits each product of an n-term dot product is shifted right before the sum, so that
    the sum of n products of a bits_a-bit and a bits_b-bit word stays within 2**30."""
    return max(0, (n - 1).bit_length() + (bits_a - 1) + (bits_b - 1) - 30)


@dataclass(frozen=True)
class Policy:
    data: qformat.QFormat  # weights (forward view) and activations
    rounding: str = "nearest"  # rounding of weight updates: nearest | floor | stochastic
    master: qformat.QFormat | None = None  # int32 master weights, or None: update data weights
    grad: qformat.QFormat = GRAD  # activation gradients
    lr: float = 0.01

    @cached_property
    def logits(self):
        """Attention scores and lm_head logits: the data path's step, more range, int32."""
        return qformat.QFormat(self.data.int_bits + LOGIT_EXTRA_BITS, self.data.frac_bits)

    @cached_property
    def pgrad_frac(self):
        """Parameter gradients (int32): each product dy*x rounded to this many bits."""
        return self.grad.frac_bits + self.data.frac_bits - self.pgrad_guard

    @cached_property
    def pgrad_guard(self):
        return guard(BLOCK, self.grad.bits, self.data.bits)

    @cached_property
    def m_frac(self):
        return self.pgrad_frac

    @cached_property
    def weight_store(self):
        """The format the optimizer writes: the master weights, or the data weights."""
        return self.master or self.data

    @cached_property
    def lr_q30(self):
        return round(self.lr * 2**30)

    @cached_property
    def alpha_frac(self):
        """Fractional bits of the step size alpha_t: the most that keep alpha < 2**15."""
        return 45 - self.lr_q30.bit_length()

    @cached_property
    def update_shift(self):
        """Bits the update alpha * r drops to land in the weight store's format."""
        return self.alpha_frac + R_FRAC - self.weight_store.frac_bits

    def validate(self):
        if self.rounding not in qformat.ROUNDINGS:
            raise qformat.FormatError(
                f"rounding {self.rounding!r} is unknown: want one of {', '.join(qformat.ROUNDINGS)}"
            )
        if not 0 < self.lr < 1:
            raise qformat.FormatError(f"learning rate {self.lr} must lie in (0, 1)")
        if self.master is not None:
            m, d = self.master, self.data
            if m.int_bits != d.int_bits or m.frac_bits < d.frac_bits:
                raise qformat.FormatError(
                    f"master format {self.master} must have the data format's {self.data.int_bits} "
                    f"integer bits and at least its {self.data.frac_bits} fractional bits"
                )
        if self.update_shift > 30:
            raise qformat.FormatError(
                f"weight store {self.weight_store} is too coarse for lr {self.lr}: every update "
                f"would round to zero (a shift of {self.update_shift} bits, at most 30 work); "
                "give more fractional bits, a master format (--master), or a larger lr"
            )
        if self.update_shift < 0:
            raise qformat.FormatError(
                f"weight store {self.weight_store} has more fractional bits than the update "
                f"(a shift of {self.update_shift} bits): give fewer fractional bits or a smaller lr"
            )
        return self

    def describe(self):
        d = {
            "data": self.data.name,
            "weights_forward": self.data.name,
            "activations": self.data.name,
            "logits": self.logits.name + " (int32)",
            "softmax_probs": f"unsigned Q{PROB_FRAC}",
            "activation_grads": self.grad.name,
            "param_grads": f"int32, {self.pgrad_frac} fractional bits",
            "adam_m": f"int32, {self.m_frac} fractional bits",
            "adam_v": f"int32, {V_FRAC} fractional bits",
            "master_weights": self.master.name if self.master else "none",
            "update_rounding": self.rounding,
            "other_rounding": "nearest (round half up)",
            "alpha_frac": self.alpha_frac,
            "adam_c1_q15": ADAM_C1,
            "adam_c2_q15": ADAM_C2,
        }
        return d


def make_policy(fmt, rounding="nearest", master="", lr=0.01):
    data = qformat.parse(fmt)
    if master in ("", "none", None):
        m = None
    else:
        m = qformat.parse(master, max_bits=qformat.WIDE_MAX_BITS)
    return Policy(data=data, rounding=rounding, master=m, lr=lr).validate()
