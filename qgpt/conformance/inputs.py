"""The op level's golden cases: the Case record and the makers of their inputs.

A Case is one kernel run: inputs in, expected outputs out (the simulator's, from
qgpt/int_ops.py). The helpers below make inputs at realistic scale and at the edges
of a format, and tag arrays with the typecode the device reads them as.
"""

from dataclasses import dataclass

import numpy as np

from qgpt import int_ops as ops
from qgpt.params import BLOCK, N_EMBD, VOCAB
from qgpt.policy import GRAD, make_policy
from qgpt.qformat import USEFUL, FormatError, QFormat, parse

# The edges the host accepts: F = 15; Adam's ratio shift e = 27 - P at 14 and 15 and
# embedding_backward's right shift (P < 14); F = 1 and F = 0 (these train with master
# weights: alone they are too coarse for the update).
EDGE_FORMATS = ("q1.15", "q13.3", "q14.2", "q14.1", "q12.0")
FORMATS = USEFUL + EDGE_FORMATS  # every format `qgpt formats` lists, and the edges
NO_FORMAT = "-"  # the group of format-free cases (isqrt, the PRNG, Adam's scalars)
C, T_MAX = N_EMBD, BLOCK


def master_for(fmt):
    """A master-weight format for fmt: 8 more fractional bits, within 31 bits."""
    d = parse(fmt)
    return QFormat(d.int_bits, min(d.frac_bits + 8, 31 - d.int_bits))


def widest_master(fmt):
    """The widest master-weight format for fmt: 31 bits."""
    d = parse(fmt)
    return QFormat(d.int_bits, 31 - d.int_bits)


def ops_master(fmt, rounding="nearest"):
    """The master format a case of fmt trains with: none, unless the data format alone
    is too coarse for the update (few fractional bits): then master_for(fmt)."""
    try:
        make_policy(fmt, rounding)
        return ""
    except FormatError:
        return master_for(fmt).name


def ops_policy(fmt):
    """The policy of fmt's op-level cases (with ops_master's master weights)."""
    return make_policy(fmt, "nearest", ops_master(fmt))


@dataclass
class Case:
    """One kernel run: inputs in, expected outputs (tensors and scalars) out."""

    op: str
    fmt: str  # the data format, or NO_FORMAT
    name: str  # what the case tests, e.g. "random T=16"
    policy: dict | None  # the device's Policy spec: fmt, rounding, master, lr_q30
    params: dict  # dimensions and other small numbers the device handler reads
    inputs: dict  # name -> (typecode, int64 array)
    expected: dict  # name -> (typecode, int64 array) or int; names shared with inputs are in/out




# --- helpers for making inputs ---


def _fmt_spec(policy):
    m = policy.master
    return {"fmt": policy.data.name, "rounding": policy.rounding,
            "master": [m.int_bits, m.frac_bits] if m else None, "lr_q30": policy.lr_q30}


def _ctx(policy):
    return ops.Ctx(policy, strict=True)  # goldens must themselves obey the int32 rule


def _normal(rng, shape, fmt, std):
    """Real values ~ N(0, std) in fmt, rounded and saturated."""
    x = np.round(rng.normal(0.0, std, shape) * 2.0**fmt.frac_bits)
    return np.clip(x, fmt.lo, fmt.hi).astype(np.int64)


def _uniform(rng, shape, lo, hi):
    """Raw values uniform over [lo, hi]: the full range, saturation included."""
    return rng.integers(lo, hi + 1, size=shape, dtype=np.int64)


def _grad(rng, shape, std=0.05):
    """Activation gradients in G: heavy-tailed (Student t, 3 dof), mostly small."""
    x = np.round(rng.standard_t(3, shape) * std * 2.0**GRAD.frac_bits)
    return np.clip(x, GRAD.lo, GRAD.hi).astype(np.int64)


def _ties(rng, shape):
    """Small values whose sums, shifted by a few bits, often land half way: 2**k and
    small odd numbers."""
    return rng.choice(np.array([-8, -4, -3, -2, -1, 0, 1, 2, 3, 4, 8, 64, -64, 512]), size=shape)


def _tokens(rng, T, n=VOCAB):
    return rng.integers(0, n, size=T, dtype=np.int64)


def _h(a):
    return ("h", np.array(a, dtype=np.int64))  # a copy: the simulator updates in place


def _i(a):
    return ("i", np.array(a, dtype=np.int64))


def _b(a):
    return ("B", np.array(a, dtype=np.int64))


def _u(a):
    return ("H", np.array(a, dtype=np.int64))  # uint16: softmax probabilities in [0, 2**15]
