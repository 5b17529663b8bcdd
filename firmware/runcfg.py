"""The run's setup on the device, the first of its four stages (then runpolicy.setup,
layout.setup and restore.setup), each dropped from memory by qgpt_train after use
(firmware/README.md, "Memory"): the state block's place, the config, the dataset's
check.
"""

import json
import struct
import sys

from micropython import const
from runbase import DATA_HEADER, RECORD, RunError, collect

_DATA_MAGIC = const(b"QGPTDATA")  # the packed dataset (qgpt/pack.py)
_DATA_VERSION = const(1)
_N = const(4192)  # parameters (qgpt/params.py; tests/test_firmware_train.py checks it)
_LARGEST_BLOCK = const(56000)  # the block of the widest containers, without master weights

DEFAULTS = {
    "format": "q4.12",  # the data format qI.F
    "rounding": "nearest",  # weight-update rounding: nearest | floor | stochastic
    "master": "",  # "" or a master-weight format, e.g. "q4.20"
    "policy": None,  # null, or {class: format} for any of policy.CLASSES (3.8)
    "lr": 0.01,  # peak learning rate, decayed linearly to 0 over `steps`
    "lr_q30": None,  # round(lr * 2**30), exact from the host (a float32 port may differ)
    "steps": 1000,  # the run's length: the lr schedule and the final checkpoint
    "seed": 42,  # init, data order, stochastic rounding, sampling
    "data": "names.bin",  # the packed dataset (qgpt pack)
    "checkpoint": "ckpt.bin",
    "checkpoint_every": 100,  # 0: only at the end (and at stop_at)
    "resume": False,  # continue from `checkpoint` if it exists
    "samples": 20,  # names printed at the end
    "temperature": 0.5,
    "stop_at": None,  # stop after this many steps (the schedule still uses `steps`)
    "log_every": 1,  # a step line every this many steps
    "dump_steps": [],  # debug: after these steps write DUMP-STEP.bin (params, grad, m, v)
    "dump_prefix": "dump",
}


def _drop(name):
    if name in sys.modules:
        del sys.modules[name]


def setup(path, _):
    """The config at path, checked (load_config), with the number of records of the
    dataset ("count") and the state block, zeroed ("block"). The block takes the bottom
    of the heap (its size from a first look at the config) before anything else of the
    setup is allocated, so that the setup's code comes and goes above it; runpolicy
    resolves the policy, layout.setup checks the block's size, restore.setup fills it."""
    size = first_look(path)  # a small int: nothing of the look stays
    collect()
    block = bytearray(size)  # zeroed; the state block if the first look was right
    cfg = load_config(path)
    cfg["count"] = check_dataset(cfg["data"])
    cfg["block"] = block
    return cfg


def _container(text):
    """(bytes a value of the format text takes, 0, 0) for qI.F (3.3: 1, 2 or 4), and
    (bytes of a mantissa, B, N) for a block-scaled bBxN (9.6)."""
    text = text.strip().lower()
    if text[:1] == "b":
        bits, n = text[1:].split("x")
        return (1 if int(bits) <= 8 else 2), int(bits), int(n)
    i, f = text[1:].split(".")
    bits = int(i) + int(f)
    return (1 if bits <= 8 else (2 if bits <= 16 else 4)), 0, 0


def first_look(path):
    """The state block's size for the config at path, from a first look at its formats
    (the containers of section 3.3: the defaults of the other classes are 16-bit grads
    and 32-bit Adam state; 9.6's block-scaled state and Kahan compensations), for
    setup's reservation: a small int, so that nothing of the look stays in memory;
    load_config checks the config later and layout.setup compares. The largest block
    with master weights if the config cannot be read. layout (block_bytes) comes for the
    look and leaves: its stage is the third, and lighter without the look's code."""
    import layout

    try:
        with open(path) as f:
            user = json.load(f)
        named = user.get("policy") or {}
        base = user.get("format", "q4.12")
        master = named.get("master", user.get("master")) or "none"
        # data classes have at most 16 bits: a wider one is an error runcfg reports
        bw = min(2, _container(named.get("weights") or base)[0])
        wide = 0 if master.strip().lower() == "none" else 1
        m = _container(named["adam_m"]) if "adam_m" in named else (4, 0, 0)  # 32-bit
        v = _container(named["adam_v"]) if "adam_v" in named else (4, 0, 0)  # defaults,
        g = min(2, _container(named["grads"])[0]) if "grads" in named else 2  # 16-bit G
        nb = (bw, min(2, _container(named.get("acts") or base)[0]), g, m[0], v[0],
              _container(master)[0] if wide else bw)
        return layout.block_bytes(nb, wide, (m[1], m[2], v[1], v[2]),
                                  user.get("rounding") == "kahan")[0]
    except Exception:  # a bad config: load_config says what is wrong
        return _LARGEST_BLOCK + 4 * _N
    finally:
        layout = None
        _drop("layout")


def load_config(path):
    """The config: DEFAULTS updated by the JSON file at path, checked but for its
    formats, rounding and policy (runpolicy.setup checks those), with lr_q30."""
    try:
        with open(path) as f:
            user = json.load(f)
    except OSError:
        raise RunError(f"config {path}: cannot open it") from None
    except ValueError as e:
        raise RunError(f"config {path}: not JSON ({e})") from None
    cfg = dict(DEFAULTS)
    for k in user:
        if k not in DEFAULTS:
            known = ", ".join(sorted(DEFAULTS))
            raise RunError(f"config {path}: unknown key {k!r} (known: {known})")
        cfg[k] = user[k]
    if not isinstance(cfg["policy"] or {}, dict):
        raise RunError(f"policy {cfg['policy']!r}: want null or an object of class: format")
    for k, low in (("steps", 1), ("checkpoint_every", 0), ("samples", 0), ("log_every", 1)):
        if not isinstance(cfg[k], int) or cfg[k] < low:
            raise RunError(f"{k} {cfg[k]!r}: want a whole number >= {low}")
    if cfg["stop_at"] is not None and (not isinstance(cfg["stop_at"], int) or cfg["stop_at"] < 0):
        raise RunError(f"stop_at {cfg['stop_at']!r}: want a whole number >= 0 or null")
    if not 0 < cfg["lr"] < 1:
        raise RunError(f"lr {cfg['lr']!r} must lie in (0, 1)")
    if not cfg["temperature"] > 0:
        raise RunError(f"temperature {cfg['temperature']!r} must be above 0")
    if cfg["lr_q30"] is None:
        cfg["lr_q30"] = round(cfg["lr"] * (1 << 30))
    return cfg


def check_dataset(path):
    """The number of records of the packed dataset at path (qgpt/pack.py), after
    checking its header and the records' CRC32 (streamed)."""
    try:
        from binascii import crc32
    except ImportError:  # a port built without it: crcpy's plain-Python CRC32 (as ckpt.py)
        from crcpy import crc32
    try:
        f = open(path, "rb")
    except OSError:
        raise RunError(f"data {path}: no such file (write it with: qgpt pack --out FILE)") \
            from None
    with f:
        head = f.read(DATA_HEADER)
        if len(head) < DATA_HEADER or head[:8] != _DATA_MAGIC:
            raise RunError(f"data {path}: not a packed dataset (bad magic); write it with "
                           "qgpt pack")
        version, record, count, crc = struct.unpack("<HHII", head[8:])
        if version != _DATA_VERSION or record != RECORD:
            raise RunError(f"data {path}: version {version}, record size {record}: this "
                           f"firmware reads version {_DATA_VERSION} with {RECORD}-byte records;"
                           " pack it again")
        buf = bytearray(256)
        mv = memoryview(buf)
        got, size = 0, 0
        while True:
            n = f.readinto(buf)
            if not n:
                break
            got = crc32(mv[:n], got)
            size += n
    if count < 1 or size != count * RECORD or (got & 0xFFFFFFFF) != crc:
        raise RunError(f"data {path}: corrupted or truncated (size or CRC32 mismatch)")
    return count
