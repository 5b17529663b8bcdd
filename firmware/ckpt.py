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
                  them (model.Model.state): int32 LE
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

import json
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
    module is in memory only while it saves, at the run's peak: so it has little code
    (two functions, in two smaller pieces of memory than one), and the header,
    {"meta": {"config": CONFIG, META'S OTHER KEYS}, "arrays": ARRAYS}, goes out in
    pieces (CONFIG: the JSON bytes of restore._compact, no copy)."""
    meta = json.dumps({"kind": "int", "step": step, "p1": model.p1, "p2": model.p2,
                       "stalled_total": model.stalled_total,
                       "steps_taken": model.steps_taken, "saturations": {},
                       "seconds": seconds, "firmware": 1}).encode()
    state = model.state
    arrays = json.dumps([[st[0], "i4", st[3]] for st in state]).encode()  # all int32
    parts = (b'{"meta": {"config": ', cfg["train_config"], b", ", memoryview(meta)[1:],
             b', "arrays": ', arrays, b"}")
    meta = arrays = None
    path = cfg["checkpoint"]
    tmp = path + ".tmp"
    crc = 0
    with open(tmp, "wb") as f:
        for b in (MAGIC, struct.pack("<HI", VERSION, sum(len(b) for b in parts))) + parts:
            f.write(b)
            crc = crc32(b, crc)
        parts = None
        import statebytes as S  # qgpt_train.save drops it with this module

        for w in range(len(state)):
            for k in range(S.pieces(model, w)):
                b = S.piece(model, w, k)
                f.write(b)
                crc = crc32(b, crc)
        f.write(struct.pack("<I", crc & 0xFFFFFFFF))
        f.flush()
    replace(tmp, path)


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
