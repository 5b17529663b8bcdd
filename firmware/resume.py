"""A resume's look at its checkpoint (ckpt.py's container), a setup stage of its own
between layout's and restore's (runbase.start), then dropped from memory: the magic,
the CRC32, the version and the JSON header (the arrays it lists, its kind and the
settings it was made with) checked, so that the parse of the header, a resume's
fullest moment, comes without restore's code in memory and restore.setup without the
header's; restore.setup then reads the arrays (firmware/README.md, "Memory").
"""

import json
import os
import struct

from micropython import const
from runbase import RunError

_CHUNK = const(32)  # int32 values read at a time into the Model's chunk buffer
_MAGIC = const(b"QGPT")  # ckpt.py's MAGIC and VERSION (tests/test_firmware_train.py checks)
_VERSION = const(1)
_SCRATCH = const(2048)  # bytes of the attention probabilities (model.py: 2 * NH * T * T)


def setup(cfg, views):
    """If cfg resumes from a checkpoint that exists: checks it (check) and sets
    cfg["resumed"] = (the arrays' offset in the file, (its first step, the seconds of
    the sessions before, the Model's (p1, p2, stalled_total, steps_taken))) for
    restore.setup; else leaves cfg as it is (restore.setup says what is missing)."""
    path = cfg["checkpoint"]
    try:
        os.stat(path)
    except OSError:
        return
    meta, at = check(path, views, cfg)
    if meta.get("kind") != "int":
        raise RunError(f"checkpoint {path}: kind {meta.get('kind')!r}, want an integer run")
    saved = meta.get("config", {})
    mine = cfg["train_config"]
    diff = [k for k in ("format", "rounding", "master", "policy", "seed", "steps", "lr")
            if saved.get(k, "") != mine[k]]
    if diff:
        raise RunError(f"checkpoint {path} was made with other settings ({', '.join(diff)});"
                       " resume with the same ones or use another checkpoint path")
    cfg["resumed"] = (at, (meta["step"], meta.get("seconds", 0.0), (
        meta["p1"], meta["p2"], meta["stalled_total"], meta["steps_taken"])))


def check(path, views, cfg):
    """(the checkpoint's meta, the offset of its arrays) after checking its magic, CRC32,
    version, header and length against the state arrays layout.setup gives in
    cfg["state"] (restore.setup reads them). Raises RunError, saying what is wrong."""
    chunk = views[4]
    # crc32: binascii's, or crcpy's on ports without it, as ckpt.py's (not ckpt.py
    # itself, which would take a resume's fullest moment's memory for two constants)
    try:
        from binascii import crc32
    except ImportError:
        from crcpy import crc32
    want = [[st[0], "i4", st[3]] for st in cfg["state"]]  # as ckpt.save writes them
    try:
        f = open(path, "rb")
    except OSError:
        raise RunError(path + ": no such checkpoint") from None
    with f:
        size = f.seek(0, 2)
        f.seek(0)
        head = f.read(10)
        if size < 14 or head[:4] != _MAGIC:
            raise RunError(path + ": not a qgpt checkpoint (bad magic)")
        # the CRC32 of everything before the trailer, streamed through the Model's I/O
        # chunk (4 * CHUNK bytes of the state block, free until the arrays are read)
        mv = memoryview(chunk)
        crc = crc32(head, 0)
        left = size - 4 - len(head)
        while left > 0:
            n = f.readinto(mv[: min(4 * _CHUNK, left)])
            if not n:
                break
            crc = crc32(mv[:n], crc)
            left -= n
        trailer = struct.unpack("<I", f.read(4))[0]
        if left != 0 or (crc & 0xFFFFFFFF) != trailer:
            raise RunError(path + ": corrupted or truncated (CRC32 mismatch)")
        f.seek(10)
        version, hlen = struct.unpack("<HI", head[4:10])
        if version != _VERSION:
            raise RunError(f"{path}: checkpoint version {version}, this firmware reads "
                           f"version {_VERSION}")
        if hlen > _SCRATCH:
            raise RunError(f"{path}: a header of {hlen} bytes, this firmware reads at most "
                           f"{_SCRATCH}")
        # the header read into the activations (the probabilities' buffer, free until
        # training), not into a new buffer: a resume's fullest moment (MicroPython's
        # bytearray_at is a bytearray, which json takes as it is; the int32 target's a
        # memoryview)
        from uctypes import bytearray_at

        text = bytearray_at(views[3][0], hlen)
        f.readinto(text)
        header = json.loads(text if isinstance(text, bytearray) else bytes(text))
        for i in range(hlen):  # zero again, as a fresh block's activations are
            text[i] = 0
        text = None
    if header.get("arrays") != want:
        raise RunError(f"{path}: holds arrays {header.get('arrays')}, this run's policy "
                       f"has {want}")
    if size != 10 + hlen + 4 * sum(a[2] for a in want) + 4:
        raise RunError(path + ": array sizes do not match the file length")
    return header["meta"], 10 + hlen
