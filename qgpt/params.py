"""The model's shape and its one parameter table.

Dimension legend, used in shape comments across qgpt:
    T  positions in a sequence (1..BLOCK)     C  embedding width (N_EMBD)
    H  heads (N_HEAD)                         D  head width (HEAD_DIM)
    V  vocabulary (VOCAB)                     M  MLP hidden width (4 * C)

PARAMS is the single (name, shape) table, in microgpt's order and with its
names, matrices stored [out][in]. It defines the flat parameter buffer, the
gradient buffer, the optimizer state, checkpoints and the firmware's buffers,
so their layouts cannot drift apart.
"""

from dataclasses import dataclass
from functools import cache

import numpy as np

VOCAB = 27  # a..z -> 0..25, BOS = 26 (microgpt's ids)
BOS = 26
BLOCK = 16  # context length
N_EMBD = 16
N_HEAD = 4
HEAD_DIM = N_EMBD // N_HEAD
MLP_HIDDEN = 4 * N_EMBD
RMS_EPS = 1e-5
INIT_STD = 0.08

PARAMS = (
    ("wte", (VOCAB, N_EMBD)),
    ("wpe", (BLOCK, N_EMBD)),
    ("lm_head", (VOCAB, N_EMBD)),
    ("layer0.attn_wq", (N_EMBD, N_EMBD)),
    ("layer0.attn_wk", (N_EMBD, N_EMBD)),
    ("layer0.attn_wv", (N_EMBD, N_EMBD)),
    ("layer0.attn_wo", (N_EMBD, N_EMBD)),
    ("layer0.mlp_fc1", (MLP_HIDDEN, N_EMBD)),
    ("layer0.mlp_fc2", (N_EMBD, MLP_HIDDEN)),
)


@dataclass(frozen=True)
class Slot:
    """Where one tensor lives in the flat buffer."""

    name: str
    shape: tuple
    offset: int
    size: int


def layout():
    """The flat layout of PARAMS: one Slot per tensor, in table order."""
    slots, offset = [], 0
    for name, shape in PARAMS:
        size = int(np.prod(shape))
        slots.append(Slot(name, shape, offset, size))
        offset += size
    return tuple(slots)


SLOTS = layout()
N_PARAMS = SLOTS[-1].offset + SLOTS[-1].size  # 4,192


def views(flat):
    """Name -> shaped view into a flat buffer laid out by PARAMS (no copy)."""
    assert flat.shape == (N_PARAMS,), f"flat buffer has shape {flat.shape}, want ({N_PARAMS},)"
    return {s.name: flat[s.offset : s.offset + s.size].reshape(s.shape) for s in SLOTS}


@cache
def _span(names):
    slots = [next(s for s in SLOTS if s.name == n) for n in names]
    for a, b in zip(slots, slots[1:], strict=False):
        assert a.offset + a.size == b.offset and a.shape[1] == b.shape[1], (a.name, b.name)
    rows = sum(s.shape[0] for s in slots)
    return slots[0].offset, slots[-1].offset + slots[-1].size, (rows, slots[0].shape[1])


def stacked(flat, names):
    """One (sum of rows, cols) view over consecutive matrices of the table, e.g. wq, wk, wv."""
    start, end, shape = _span(names)
    return flat[start:end].reshape(shape)


QKV = ("layer0.attn_wq", "layer0.attn_wk", "layer0.attn_wv")
