"""The run's setup on the device, used once and then dropped from memory by
qgpt_train (firmware/README.md, "Memory"): the config, the dataset's check, the
numbers the Model takes from the policy, the state block, and the state at the start
(restore.py).
"""

import gc
import json
import struct
import sys

from micropython import const
from runbase import DATA_HEADER, RECORD, RunError

_DATA_MAGIC = const(b"QGPTDATA")  # the packed dataset (qgpt/pack.py)
_DATA_VERSION = const(1)

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


def _format(name, key, bits):
    """(I, F) of the format `name` given for the config's key, at most `bits` bits."""
    import policy

    try:
        i, f = policy.parse_format(name)
    except (ValueError, IndexError, TypeError, AttributeError):
        raise RunError(f"{key} {name!r} is not a format like q4.12") from None
    if i < 1 or f < 0 or i + f > bits:
        raise RunError(f"{key} {name}: want qI.F with I >= 1 and at most {bits} bits")
    return i, f


def _drop(name):
    if name in sys.modules:
        del sys.modules[name]


def setup(path, _):
    """The config at path, checked, with the number of records of the dataset
    ("count"), the Model's numbers with the block's layout (layout.block_bytes) and
    prng.init_tensor's arguments ("numbers"), and the state block, zeroed ("block").
    The block takes the bottom of the heap (its size from a first look at the config)
    before anything else of the setup is allocated, so that the setup's code comes and
    goes above it; restore.setup fills it."""
    import layout

    size = layout.first_look(path)  # a small int: nothing of the look stays
    _drop("layout")
    layout = None
    gc.collect()
    block = bytearray(size)  # zeroed; the state block if the first look was right
    cfg = load_config(path)
    cfg["count"] = check_dataset(cfg["data"])
    nums, init = cfg["numbers"]
    _drop("policy")
    _drop("params")
    import layout

    lay = layout.block_bytes(nums[0], nums[6], nums[7], nums[4][4] == 4)  # mode 4: kahan
    if lay[0] != size:  # the first look missed (it cannot for a good config): again
        block = None
        gc.collect()
        block = bytearray(lay[0])
    cfg["numbers"] = nums + (lay,), init
    cfg["block"] = block
    return cfg


def load_config(path):
    """The config: DEFAULTS updated by the JSON file at path, checked; with the
    firmware Policy under "policy"."""
    import policy  # imported here: setup reserves the block's place first

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
    data = _format(cfg["format"], "format", 16)
    if cfg["rounding"] not in policy.ROUNDINGS:
        raise RunError(f"rounding {cfg['rounding']!r}: want one of {', '.join(policy.ROUNDINGS)}")
    master = None
    if cfg["master"] in ("", "none", None):
        cfg["master"] = ""
    else:
        master = _format(cfg["master"], "master", 32)
    classes = cfg["policy"] or {}
    if not isinstance(classes, dict):
        raise RunError(f"policy {classes!r}: want null or an object of class: format")
    given = classes.get("master")
    if master is not None and given is not None:
        other = None if given in ("", "none") else _format(given, "policy master", 32)
        if other != master:
            raise RunError(f"master {cfg['master']} and the policy's master {given} differ:"
                           " give one of them")
    for k, low in (("steps", 1), ("checkpoint_every", 0), ("samples", 0), ("log_every", 1)):
        if not isinstance(cfg[k], int) or cfg[k] < low:
            raise RunError(f"{k} {cfg[k]!r}: want a whole number >= {low}")
    if cfg["stop_at"] is not None and (not isinstance(cfg["stop_at"], int) or cfg["stop_at"] < 0):
        raise RunError(f"stop_at {cfg['stop_at']!r}: want a whole number >= 0 or null")
    if not 0 < cfg["lr"] < 1:
        raise RunError(f"lr {cfg['lr']!r} must lie in (0, 1)")
    if not cfg["temperature"] > 0:
        raise RunError(f"temperature {cfg['temperature']!r} must be above 0")
    lr_q30 = cfg["lr_q30"]
    if lr_q30 is None:
        lr_q30 = round(cfg["lr"] * (1 << 30))
    try:
        P = policy.Policy(data, cfg["rounding"], master, lr_q30, classes)
    except ValueError as e:
        raise RunError(str(e)) from None
    W = P.formats[0]
    # the classes that --format (= the weights' format) and master imply
    defaults = policy.resolve(W.name, {"master": P.master.name} if P.master else {})
    # the Model's numbers; prng.init_tensor's (sh, lo, hi, nb) for the initial weights;
    # the (name, lo, hi) of the weight store, adam_m and adam_v, for a resume
    cfg["numbers"] = (model_numbers(P), P.init_args())
    master_name = P.master.name if P.master else "-"
    spec = policy.canonical(P.formats)
    cfg["formats"] = (f"format={W.name} rounding={P.rounding} master={master_name} "
                      f"policy={spec}")
    # the checkpoint's config: the host's TrainConfig fields (qgpt/train.py), with the
    # normal form of 3.8: format = weights, policy "" when the classes are format's defaults
    cfg["train_config"] = {
        "data": cfg["data"], "steps": cfg["steps"], "seed": cfg["seed"], "lr": cfg["lr"],
        "format": W.name, "rounding": cfg["rounding"],
        "master": P.master.name if P.master else "",
        "policy": "" if policy.canonical(defaults) == spec else spec,
        "lowercase": False, "skip_long": False, "checkpoint_every": cfg["checkpoint_every"],
        "strict": False}
    for k in ("format", "rounding", "master", "policy", "lr", "lr_q30"):
        del cfg[k]  # in train_config and the numbers now: memory for the run
    return cfg


def check_dataset(path):
    """The number of records of the packed dataset at path (qgpt/pack.py), after
    checking its header and the records' CRC32 (streamed)."""
    import ckpt

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
            got = ckpt.crc32(mv[:n], got)
            size += n
    if count < 1 or size != count * RECORD or (got & 0xFFFFFFFF) != crc:
        raise RunError(f"data {path}: corrupted or truncated (size or CRC32 mismatch)")
    return count


def model_numbers(P):
    """What firmware/model.py's Model takes from the policy P and the parameter table,
    in tuples (the order of Model.__init__), so that neither module stays in memory
    during training."""
    import params

    nb, fwd, bwd, opt, schedule, wide, blocks = P.numbers()
    offs = [off for _, off, _ in params.layout()] + [params.N_PARAMS]
    return nb, tuple(offs), fwd, bwd, opt, schedule, wide, blocks
