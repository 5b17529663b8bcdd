"""Resuming a run on the device: a checkpoint (ckpt.py's container) read back into
the Model, checked, once per run. Imported at a resume only, then dropped from
memory by qgpt_train.
"""

import json
import struct

import ckpt
from qgpt_train import RunError


def resume(cfg, mdl):
    """Load cfg's checkpoint into mdl; returns its meta. A checkpoint made with other
    settings, or a damaged one, is refused."""
    path = cfg["checkpoint"]
    meta = load_checkpoint(path, mdl)
    if meta.get("kind") != "int":
        raise RunError(f"checkpoint {path}: kind {meta.get('kind')!r}, want an integer run")
    saved = meta.get("config", {})
    diff = [k for k in ("format", "rounding", "master", "seed", "steps", "lr")
            if saved.get(k) != cfg[k]]
    if diff:
        raise RunError(f"checkpoint {path} was made with other settings ({', '.join(diff)});"
                       " resume with the same ones or use another checkpoint path")
    mdl.p1, mdl.p2 = meta["p1"], meta["p2"]
    mdl.stalled_total, mdl.steps_taken = meta["stalled_total"], meta["steps_taken"]
    return meta


def load_checkpoint(path, model):
    """Read a checkpoint into model (store, m, v) after checking its magic, version,
    CRC32 and arrays; returns its meta. Raises RunError, saying what is wrong."""
    try:
        f = open(path, "rb")
    except OSError:
        raise RunError(path + ": no such checkpoint") from None
    with f:
        size = f.seek(0, 2)
        f.seek(0)
        head = f.read(10)
        if size < 14 or head[:4] != ckpt.MAGIC:
            raise RunError(path + ": not a qgpt checkpoint (bad magic)")
        # the CRC32 of everything before the trailer, streamed
        buf = bytearray(256)
        mv = memoryview(buf)
        crc = ckpt.crc32(head, 0)
        left = size - 4 - len(head)
        while left > 0:
            n = f.readinto(mv[: min(256, left)])
            if not n:
                break
            crc = ckpt.crc32(mv[:n], crc)
            left -= n
        trailer = struct.unpack("<I", f.read(4))[0]
        if left != 0 or (crc & 0xFFFFFFFF) != trailer:
            raise RunError(path + ": corrupted or truncated (CRC32 mismatch)")
        f.seek(10)
        version, hlen = struct.unpack("<HI", head[4:10])
        if version != ckpt.VERSION:
            raise RunError(f"{path}: checkpoint version {version}, this firmware reads "
                           f"version {ckpt.VERSION}")
        header = json.loads(f.read(hlen))
        if header.get("arrays") != ckpt.ARRAYS:
            raise RunError(f"{path}: holds arrays {header.get('arrays')}, want params, "
                           f"adam_m, adam_v as i4 of {ckpt.N}")
        if size != 10 + hlen + 12 * ckpt.N + 4:
            raise RunError(path + ": array sizes do not match the file length")
        # params: int32 on file; an int16 store takes them narrowed (checked)
        if model.wide:
            f.readinto(model.store)
        else:
            name, lo, hi = model.store_format
            bad = 0
            for off in range(0, ckpt.N, len(model.chunk)):
                f.readinto(model.chunk)
                bad += model.narrow_into_store(off, lo, hi)
            if bad:
                raise RunError(f"{path}: {bad} weights do not fit {name}")
        f.readinto(model.m)
        f.readinto(model.v)
    model.refresh_data(0, ckpt.N)
    return header["meta"]
