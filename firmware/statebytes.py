"""The training state as bytes, for checkpoints (ckpt.py), dumps (dump.py) and the run's
final hash (sampling.finish): each array of model.Model.state (params, adam_m, adam_v,
then 9.6's adam_m_shift, adam_v_shift, kahan_comp) as little-endian int32, in pieces.

Not a part of model.Model: only a save, a dump or the run's end needs it, so its code is
in memory only then (qgpt_train.save drops it after each save: firmware/README.md,
"Memory").
"""

import kernels as K
from micropython import const

_CHUNK = const(32)  # values widened at a time: model.py's I/O chunk (N is a multiple)


def pieces(mdl, w):
    """How many pieces piece(mdl, w, k) gives: 1 for an int32 array, else one per CHUNK
    values."""
    _, _, nb, n, _, _ = mdl.state[w]
    return 1 if nb == 4 else (n + _CHUNK - 1) // _CHUNK


def piece(mdl, w, k):
    """Piece k of mdl's state array w as int32 LE bytes: the array itself when it is
    int32, else its values k * CHUNK .. widened into the Model's one chunk buffer (no
    allocation but for a short last piece)."""
    _, buf, nb, n, _, _ = mdl.state[w]
    if nb == 4:  # buf: its address (layout.views)
        from uctypes import bytearray_at

        return bytearray_at(buf, 4 * n)
    left = n - k * _CHUNK
    chunk = mdl.bufs[3]
    K.widen(chunk, buf, k * _CHUNK, _CHUNK if left > _CHUNK else left, nb)
    return chunk if left >= _CHUNK else chunk[: 4 * left]


def state_crc(mdl, crc32):
    """CRC32 of params, m, v (and 9.6's arrays) as little-endian int32 bytes."""
    crc = 0
    for w in range(len(mdl.state)):
        for k in range(pieces(mdl, w)):
            crc = crc32(piece(mdl, w, k), crc)
    return crc & 0xFFFFFFFF
