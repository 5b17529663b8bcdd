"""The state at the start of a run on the device, once per run: the initial weights
from the seed, or a checkpoint (ckpt.py's container) read back and checked, into the
state block. The last of the setup's stages (qgpt_train), then dropped from memory
(kernels and prng stay for the run).
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
    """The state at the start of the run of cfg into the state block (views:
    layout.setup's): cfg["begin"] = (its first step, the seconds of the sessions
    before, the Model's (p1, p2, stalled_total, steps_taken) or None for a new run).
    Resumes from cfg's checkpoint if asked and it exists; else the initial weights from
    the seed."""
    init = cfg.pop("init")  # prng.init_tensor's (sh, lo, hi, nb) for the weight store
    if not (cfg["resume"] and _exists(cfg["checkpoint"])):
        cfg.pop("state", None)  # layout.setup's, for a resume
    path = cfg["checkpoint"]
    if cfg["resume"]:
        if _exists(path):
            meta = resume(cfg, views)
            cfg["begin"] = (meta["step"], meta.get("seconds", 0.0), (
                meta["p1"], meta["p2"], meta["stalled_total"], meta["steps_taken"]))
            _compact(cfg)
            return
        if _exists(path + ".tmp"):  # FAT: a save cut short between remove and rename
            raise RunError(f"checkpoint {path} is missing but {path}.tmp is there (a save "
                           f"was cut short): rename it to {path} to resume")
        print("note no checkpoint", path, "to resume: starting from step 0")
    init_weights(views[5], cfg["numbers"][1], cfg["seed"], init)
    cfg["begin"] = (0, 0.0, None)
    _compact(cfg)


def _compact(cfg):
    """The run's config in a table of its size (the copy of runcfg.DEFAULTS it started
    as had room for every key the setup took out), its checkpoint config as JSON bytes
    (ckpt.save writes them as they are; made here, where policy.py has left memory)."""
    cfg["train_config"] = json.dumps(cfg["train_config"]).encode()
    items = list(cfg.items())
    cfg.clear()
    for k, v in items:
        cfg[k] = v


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def init_weights(store, off, seed, init):
    """The initial weights from the seed (section 4, init) into the weight store, tensor
    j of the table (off: its offsets, then N) from key(seed, INIT, j); init: the
    policy's init_args (sh, lo, hi, nb)."""
    import prng

    sh, lo, hi, w = init  # w: bytes a weight of the store (its address: layout.views)
    for j in range(len(off) - 1):
        k = prng.key(seed, prng.STREAM_INIT, j)
        prng.init_tensor(store + w * off[j], k, off[j + 1] - off[j], sh, lo, hi, w)


def resume(cfg, views):
    """Load cfg's checkpoint into the state block; returns its meta. A checkpoint made
    with other settings, or a damaged one, is refused."""
    path = cfg["checkpoint"]
    meta = load_checkpoint(path, views, cfg)
    if meta.get("kind") != "int":
        raise RunError(f"checkpoint {path}: kind {meta.get('kind')!r}, want an integer run")
    saved = meta.get("config", {})
    mine = cfg["train_config"]
    diff = [k for k in ("format", "rounding", "master", "policy", "seed", "steps", "lr")
            if saved.get(k, "") != mine[k]]
    if diff:
        raise RunError(f"checkpoint {path} was made with other settings ({', '.join(diff)});"
                       " resume with the same ones or use another checkpoint path")
    return meta


def _range(name, opt, blocks):
    """(lo, hi) of the state array `name` (statebytes.arrays) for the numbers opt (the
    store's limits, m's and v's bounds) and blocks = (Bm, Nm, Bv, Nv) of the policy:
    block-scaled m and v hold B-bit mantissas (m signed, v unsigned), their shifts 0 to
    30 (9.6)."""
    if name == "params":
        return opt[5], opt[6]
    if name == "adam_m":
        hi = (1 << (blocks[0] - 1)) - 1 if blocks[0] else opt[7]
        return 0 - hi, hi
    if name == "adam_v":
        return 0, (1 << blocks[2]) - 1 if blocks[2] else opt[8]
    if name == "kahan_comp":
        return -128, 127
    return 0, 30


def load_checkpoint(path, views, cfg):
    """Read a checkpoint into the state block (the state arrays layout.setup gives in
    cfg["state"]: store, m, v and 9.6's arrays, which leave with this stage) after
    checking its magic,
    version, CRC32 and arrays; returns its meta. Raises RunError, saying what is
    wrong."""
    import kernels

    chunk, state = views[4], cfg.pop("state")
    opt, blocks = cfg["numbers"][4], cfg["numbers"][7]
    # the arrays the header must list, as ckpt.save writes them (crc32: binascii's, or
    # crcpy's on ports without it, as ckpt.py's; not ckpt.py itself, which would take a
    # resume's fullest moment's memory for two constants)
    try:
        from binascii import crc32
    except ImportError:
        from crcpy import crc32
    want = [[st[0], "i4", st[3]] for st in state]
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
        # every array int32 on file; each container takes them narrowed, checked
        # against the class's range
        for name, buf, nb, n in state:
            lo, hi = _range(name, opt, blocks)
            bad = 0
            for off in range(0, n, _CHUNK):
                k = min(_CHUNK, n - off)
                f.readinto(memoryview(chunk)[: 4 * k])
                bad += kernels.narrow(buf, off, chunk, k, lo, hi, nb)
            if bad:
                raise RunError(f"{path}: {bad} values of {name} do not fit this run's policy")
    return header["meta"]
