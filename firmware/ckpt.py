"""Checkpoints on the device, in the container of qgpt/checkpoint.py, streamed:
no buffer of a checkpoint's size is ever allocated.

    offset  size  what
    0       4     magic b"QGPT"
    4       2     version 1 (uint16, little-endian)
    6       4     header length L (uint32)
    10      L     UTF-8 JSON {"meta": {...}, "arrays": [["params", "i4", N],
                  ["adam_m", "i4", N], ["adam_v", "i4", N], ...]}
    10+L          params (the weight store, widened to int32), adam_m, adam_v, and
                  9.6's adam_m_shift, adam_v_shift, kahan_comp when the policy has
                  them (statebytes.arrays): int32 LE
    end-4   4     CRC32 of every byte before it (uint32)

This module writes checkpoints (qgpt_train imports it for each save and drops it
after; firmware/README.md, "Memory"); restore.load_checkpoint reads them (once, at a
resume).

A checkpoint is written to PATH.tmp, then renamed over PATH. MicroPython's
os.rename replaces an existing file on the unix port (rename(2), atomic) and on
littlefs (lfs_rename, atomic); on FAT the VFS removes the old file first and then
renames, so a power cut in between leaves only PATH.tmp (a resume says so). Ports
whose rename refuses an existing target get the same remove-then-rename here.
"""

from micropython import const

try:
    from binascii import crc32
except ImportError:  # a port built without it: crcpy's slow plain-Python CRC32
    from crcpy import crc32

MAGIC = b"QGPT"
VERSION = 1
_CHUNK = const(32)  # values widened at a time: model.py's I/O chunk (N is a multiple)
_N = const(4192)  # parameters (qgpt/params.py; tests/test_firmware_train.py checks it)
_KAHAN = const(4)  # the Kahan update's rounding mode (kernels.py _ROUND_KAHAN)


def save(cfg, mdl, step, seconds):
    """Write mdl's state (params, adam_m, adam_v, 9.6's arrays) after `step` steps
    atomically to the run's checkpoint path, with the meta of firmware/README.md.

    This module is in memory only while it saves, at the run's fullest moment, in a
    heap with small holes only (firmware/README.md, "Memory"): so it needs no other
    firmware module (statebytes.py, which dumps and the run's end use, would take 0.9 KB
    more), its functions are small (each a small piece of memory), the header goes out
    in small pieces (no dict, list or whole JSON text), and every array is widened to
    int32 through the Model's I/O chunk."""
    import struct

    import kernels as K

    path = cfg["checkpoint"]
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        crc = header(f, cfg, mdl, step, seconds)
        chunk = mdl.bufs[3]
        i = 0
        st = array(mdl, 0)
        while st is not None:
            _, buf, w, n = st
            for k in range(0, n, _CHUNK):
                left = n - k
                K.widen(0, 0, chunk, buf, k, _CHUNK if left > _CHUNK else left, w)
                b = chunk if left >= _CHUNK else chunk[: 4 * left]
                f.write(b)
                crc = crc32(b, crc)
            i += 1
            st = array(mdl, i)
        f.write(struct.pack("<I", crc & 0xFFFFFFFF))
        f.flush()
    replace(tmp, path)


def array(mdl, i):
    """State array i of the Model mdl, in their order (9.6): (name, address, bytes a
    value (negative: unsigned), values), as statebytes.state(mdl) makes them for dumps
    and the run's hash (conformance checks both against the host: checkpoints at level
    run, dumps at level steps); None past the last. One at a time: no list of them takes
    memory during a save, the run's fullest moment."""
    nb, blk = mdl.nb, mdl.blk
    blocks = blk[8]
    if i < 3:
        if i == 0:
            return "params", mdl.store, nb[5], _N
        if i == 1:
            return "adam_m", mdl.m, nb[3], _N
        return "adam_v", mdl.v, 0 - nb[4] if blocks[2] else nb[4], _N
    if blocks[0]:
        if i == 3:
            return "adam_m_shift", blk[0], -1, (_N + blocks[1] - 1) // blocks[1]
        i -= 1
    if blocks[2]:
        if i == 3:
            return "adam_v_shift", blk[1], -1, (_N + blocks[3] - 1) // blocks[3]
        i -= 1
    if i == 3 and mdl.opt[4] == _KAHAN:
        return "kahan_comp", blk[9], 1, _N
    return None


def header(f, cfg, mdl, step, seconds):
    """The magic, the version and the length of the JSON header, then the header (the
    pieces of piece, counted first), written to f; returns their CRC32."""
    import struct

    length = 0
    j = 0
    b = piece(0, cfg, mdl, step, seconds)
    while b is not None:
        length += len(b)
        j += 1
        b = piece(j, cfg, mdl, step, seconds)
    b = MAGIC + struct.pack("<HI", VERSION, length)
    f.write(b)
    crc = crc32(b, 0)
    j = 0
    b = piece(0, cfg, mdl, step, seconds)
    while b is not None:
        f.write(b)
        crc = crc32(b, crc)
        j += 1
        b = piece(j, cfg, mdl, step, seconds)
    return crc


def piece(j, cfg, mdl, step, seconds):
    """Piece j of the checkpoint's JSON header, {"meta": {"config": CONFIG, META'S
    OTHER KEYS}, "arrays": ARRAYS} (CONFIG: restore._compact's JSON bytes, as they are);
    None past the last."""
    if j == 0:
        return b'{"meta": {"config": '
    if j == 1:
        return cfg["train_config"]
    if j == 2:
        c = mdl.counts
        return b', "kind": "int", "step": %d, "p1": %d, "p2": %d' % (step, c[0], c[1])
    if j == 3:
        return b', "stalled_total": %d, "steps_taken": %d, "saturations": {}' % (
            mdl.counts[2], mdl.counts[3])
    if j == 4:
        return f', "seconds": {seconds!r}, "firmware": 1}}, "arrays": ['.encode()
    st = array(mdl, j - 5)
    if st is not None:
        return entry(st, j > 5)
    return b"]}" if array(mdl, j - 6) is not None else None  # then no more pieces


def entry(st, more):
    """The header's entry of the state array st (array), all int32 on file; after a
    comma if more (a function of its own: piece's code would not fit a small hole)."""
    return f'{", " if more else ""}["{st[0]}", "i4", {st[3]}]'.encode()


def replace(tmp, path):
    """Rename tmp over path; where rename refuses an existing target, remove it first (a
    crash between the two leaves tmp: restore says so)."""
    import os

    try:
        os.rename(tmp, path)
    except OSError:
        try:
            os.remove(path)
        except OSError:
            pass
        os.rename(tmp, path)
    if hasattr(os, "sync"):
        os.sync()
