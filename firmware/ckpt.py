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

import os
import struct

try:
    from binascii import crc32
except ImportError:  # a port built without it: crcpy's slow plain-Python CRC32
    from crcpy import crc32

MAGIC = b"QGPT"
VERSION = 1


def save(cfg, model, step, seconds):
    """Write model's state (params, adam_m, adam_v, 9.6's arrays) after `step` steps
    atomically to the run's checkpoint path, with the meta of firmware/README.md. This
    module is in memory only while it saves, at the run's peak, in a heap with small
    holes only: so it has little code (a few functions, each in a smaller piece of memory
    than one would take), and the header goes out in small pieces (header), counted
    first, then written."""
    import statebytes as S  # qgpt_train.save drops it with this module

    state = S.state(model)
    path = cfg["checkpoint"]
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(MAGIC)
        b = struct.pack("<HI", VERSION, header(None, 0, cfg, model, state, step, seconds))
        f.write(b)
        crc = header(f, crc32(b, crc32(MAGIC, 0)), cfg, model, state, step, seconds)
        for st in state:
            for k in range(S.pieces(st)):
                b = S.piece(model, st, k)
                f.write(b)
                crc = crc32(b, crc)
        f.write(struct.pack("<I", crc & 0xFFFFFFFF))
        f.flush()
    replace(tmp, path)


def header(f, crc, cfg, model, state, step, seconds):
    """The checkpoint's JSON header, {"meta": {"config": CONFIG, META'S OTHER KEYS},
    "arrays": ARRAYS}, piece by piece (CONFIG: the JSON bytes of restore._compact, no
    copy; no dict or list made): written to f and returns the CRC32 continued from crc,
    or, with f None, returns the header's length."""
    n = 0
    for i in range(6 + len(state)):
        if i == 0:
            b = b'{"meta": {"config": '
        elif i == 1:
            b = cfg["train_config"]
        elif i == 2:
            b = b', "kind": "int", "step": %d, "p1": %d, "p2": %d' % (step, model.p1, model.p2)
        elif i == 3:
            b = b', "stalled_total": %d, "steps_taken": %d, "saturations": {}' % (
                model.stalled_total, model.steps_taken)
        elif i == 4:
            b = f', "seconds": {seconds!r}, "firmware": 1}}, "arrays": ['.encode()
        elif i < 5 + len(state):  # the arrays, all int32 on file
            st = state[i - 5]
            b = f'{", " if i > 5 else ""}["{st[0]}", "i4", {st[3]}]'.encode()
        else:
            b = b"]}"
        if f is None:
            n += len(b)
        else:
            f.write(b)
            crc = crc32(b, crc)
    return n if f is None else crc


def replace(tmp, path):
    """Rename tmp over path; where rename refuses an existing target, remove it first (a
    crash between the two leaves tmp: restore says so)."""
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
