"""The training state's arrays (params, adam_m, adam_v, then 9.6's adam_m_shift,
adam_v_shift, kahan_comp: arrays) and their bytes, for checkpoints (ckpt.py), dumps
(dump.py) and the run's final hash (sampling.finish): each array as little-endian int32,
in pieces.

Not a part of model.Model: only the setup (layout.views, for restore), a save, a dump or
the run's end needs it, so its code is in memory only then (qgpt_train.save drops it
after each save), and the Model keeps no tuples of the arrays: state(mdl) makes them
again when asked (firmware/README.md, "Memory").
"""

import kernels as K
from micropython import const

_CHUNK = const(32)  # values widened at a time: model.py's I/O chunk (N is a multiple)
_N = const(4192)  # parameters (qgpt/params.py; tests/test_firmware_train.py checks it)
_KAHAN = const(4)  # the Kahan update's rounding mode (kernels.py _ROUND_KAHAN)


def arrays(nb, blocks, kahan, bufs):
    """The state arrays, in their order (9.6): (name, array, bytes a value (negative:
    unsigned), values) of the containers nb = (bw, ba, bg, bm, bv, bs) and
    blocks = (Bm, Nm, Bv, Nv) of the policy, with Kahan's compensations when kahan; bufs:
    the addresses of (the weight store, m, v, m's shifts, v's shifts, the compensations)
    in the state block. (restore.py checks a checkpoint's values against their ranges.)"""
    store, m, v, mk, vk, comp = bufs
    st = [("params", store, nb[5], _N), ("adam_m", m, nb[3], _N),
          ("adam_v", v, 0 - nb[4] if blocks[2] else nb[4], _N)]
    if blocks[0]:
        st.append(("adam_m_shift", mk, -1, (_N + blocks[1] - 1) // blocks[1]))
    if blocks[2]:
        st.append(("adam_v_shift", vk, -1, (_N + blocks[3] - 1) // blocks[3]))
    if kahan:
        st.append(("kahan_comp", comp, 1, _N))
    return st


def state(mdl):
    """The state arrays of the Model mdl (arrays)."""
    b = mdl.blk
    return arrays(mdl.nb, b[8], mdl.opt[4] == _KAHAN, (mdl.store, mdl.m, mdl.v, b[0], b[1],
                                                       b[9]))


def pieces(st):
    """How many pieces piece(mdl, st, k) gives for the state array st: 1 for an int32
    array, else one per CHUNK values."""
    _, _, nb, n = st
    return 1 if nb == 4 else (n + _CHUNK - 1) // _CHUNK


def piece(mdl, st, k):
    """Piece k of mdl's state array st as int32 LE bytes: the array itself when it is
    int32, else its values k * CHUNK .. widened into the Model's one chunk buffer (no
    allocation but for a short last piece)."""
    _, buf, nb, n = st
    if nb == 4:  # buf: its address (layout.views)
        from uctypes import bytearray_at

        return bytearray_at(buf, 4 * n)
    left = n - k * _CHUNK
    chunk = mdl.bufs[3]
    K.widen(0, 0, chunk, buf, k * _CHUNK, _CHUNK if left > _CHUNK else left, nb)
    return chunk if left >= _CHUNK else chunk[: 4 * left]


def state_crc(mdl, crc32):
    """CRC32 of params, m, v (and 9.6's arrays) as little-endian int32 bytes."""
    crc = 0
    for st in state(mdl):
        for k in range(pieces(st)):
            crc = crc32(piece(mdl, st, k), crc)
    return crc & 0xFFFFFFFF
