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

This module writes checkpoints (every checkpoint_every steps, so it stays in
memory); restore.load_checkpoint reads them (once, at a resume).

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
except ImportError:  # a port built without it: a slow plain-Python CRC32
    crc32 = None

MAGIC = b"QGPT"
VERSION = 1


def arrays(state):
    """The header's arrays: those of model.Model.state, each as int32 ("i4") of its
    length."""
    return [[st[0], "i4", st[3]] for st in state]


_NIBBLE = None


def _crc32_py(data, crc=0):
    """CRC32 (the zlib one) with a 16-entry table, for ports without binascii.crc32."""
    global _NIBBLE
    if _NIBBLE is None:
        _NIBBLE = []
        for i in range(16):
            c = i
            for _ in range(4):
                c = (c >> 1) ^ (0xEDB88320 if c & 1 else 0)
            _NIBBLE.append(c)
    t = _NIBBLE
    crc ^= 0xFFFFFFFF
    for b in bytes(data):
        crc = (crc >> 4) ^ t[(crc ^ b) & 15]
        crc = (crc >> 4) ^ t[(crc ^ (b >> 4)) & 15]
    return crc ^ 0xFFFFFFFF


if crc32 is None:
    crc32 = _crc32_py


def _put(f, data, crc):
    f.write(data)
    return crc32(data, crc)


def replace(tmp, path):
    """Rename tmp over path; where rename refuses an existing target, remove it first
    (a crash between the two leaves tmp: see load)."""
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


def save(cfg, model, step, seconds):
    """Write model's state (params, adam_m, adam_v, 9.6's arrays) after `step` steps
    atomically to the run's checkpoint path, with the meta of firmware/README.md. The
    header is written in pieces of a few hundred bytes (memory: no piece of the
    header's size)."""
    meta = {"kind": "int", "step": step, "p1": model.p1, "p2": model.p2,
            "stalled_total": model.stalled_total, "steps_taken": model.steps_taken,
            "saturations": {}, "seconds": seconds, "firmware": 1}
    # {"meta": {"config": CONFIG, META'S OTHER KEYS}, "arrays": ARRAYS}
    parts = [b'{"meta": {"config": ', cfg["train_config"].encode(), b", ",
             json.dumps(meta)[1:].encode(), b', "arrays": ',
             json.dumps(arrays(model.state)).encode(), b"}"]
    meta = None
    path = cfg["checkpoint"]
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        crc = _put(f, MAGIC, 0)
        crc = _put(f, struct.pack("<HI", VERSION, sum(len(b) for b in parts)), crc)
        for b in parts:
            crc = _put(f, b, crc)
        parts = None
        for w in range(len(model.state)):
            for k in range(model.pieces(w)):
                crc = _put(f, model.piece(w, k), crc)
        f.write(struct.pack("<I", crc & 0xFFFFFFFF))
        f.flush()
    replace(tmp, path)
