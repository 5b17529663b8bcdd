"""The integer simulator's host-only array helpers (no device counterpart): attention's
masks by length, cached, and the exact sum of a row's products in one numpy call.

A step's arrays are small, so a numpy call costs about the same whatever they hold; one
with operands of one shape costs about half what a broadcast one does (docs/BENCHMARKS.md,
"Host training"). int_ops.py re-exports these names.
"""

from functools import cache

import numpy as np

from qgpt.params import N_HEAD

MASKED = -(1 << 61)  # a masked entry's z: below every row's max by more than 16 in any format


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


def row_dot(a, b):
    """The exact sum of a * b along the last axis, (...,n) -> (...): one numpy call
    (np.vecdot, numpy >= 2.0) instead of a product and a reduction."""
    return np.add.reduce(a * b, axis=-1)


if hasattr(np, "vecdot"):
    row_dot = np.vecdot  # noqa: F811 (integers: exact, as the product and the sum)
