"""The state at the start of a run on the device, once per run: the initial weights
from the seed, or the arrays of a checkpoint (ckpt.py's container) that resume.py
checked, read back, into the state block. The last of the setup's stages
(runbase.start), then dropped from memory (kernels and prng stay for the run).
"""

import json
import os

from micropython import const
from runbase import RunError

_CHUNK = const(32)  # int32 values read at a time into the Model's chunk buffer


def setup(cfg, views):
    """The state at the start of the run of cfg into the state block (views:
    layout.setup's): a checkpoint's arrays if resume.setup found and checked one
    (cfg["resumed"]); else the initial weights from the seed. Returns (the run's
    config, compact (_compact), and (its first step, the seconds of the sessions
    before, the Model's (p1, p2, stalled_total, steps_taken) or None for a new run))."""
    init = cfg.pop("init")  # prng.init_tensor's (sh, lo, hi, nb) for the weight store
    got = cfg.pop("resumed", None)
    if got is not None:
        load_arrays(cfg["checkpoint"], got[0], views[4], cfg)
        return _compact(cfg), got[1]
    cfg.pop("state", None)  # layout.setup's, for a resume
    path = cfg["checkpoint"]
    if cfg["resume"]:
        if _exists(path + ".tmp"):  # FAT: a save cut short between remove and rename
            raise RunError(f"checkpoint {path} is missing but {path}.tmp is there (a save "
                           f"was cut short): rename it to {path} to resume")
        print("note no checkpoint", path, "to resume: starting from step 0")
    init_weights(views[5], cfg["numbers"][1], cfg["seed"], init)
    return _compact(cfg), (0, 0.0, None)


def _compact(cfg):
    """The run's config: the keys the run reads after the setup (qgpt_train, ckpt,
    dump, sampling), in a new table made at once, of their number (a dict display
    allocates its table in one piece; the setup's config, a copy of runcfg.DEFAULTS
    with the setup's keys, had room for twice as many, and a table grown a key at a
    time leaves five smaller ones behind), with the checkpoint's config as JSON bytes
    (ckpt.save writes them as they are; made here, where policy.py has left memory)."""
    run = {"steps": cfg["steps"], "seed": cfg["seed"], "data": cfg["data"],
           "count": cfg["count"], "stop_at": cfg["stop_at"], "formats": cfg["formats"],
           "log_every": cfg["log_every"], "checkpoint_every": cfg["checkpoint_every"],
           "dump_steps": cfg["dump_steps"], "dump_prefix": cfg["dump_prefix"],
           "checkpoint": cfg["checkpoint"], "samples": cfg["samples"],
           "temperature": cfg["temperature"],
           "train_config": json.dumps(cfg["train_config"]).encode()}
    cfg.clear()  # the setup's table and values leave now (a stale reference to the
    return run  # dict in runbase.start's frame, where the call was, keeps it empty)


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


def load_arrays(path, at, chunk, cfg):
    """Read the checkpoint at path, which resume.setup checked, into the state block
    from its arrays' offset at: every array int32 on file, taken by its container
    narrowed, checked against its class's range (the state arrays layout.setup gives
    in cfg["state"], which leave with this stage). Raises RunError for values out of
    range."""
    import kernels

    state = cfg.pop("state")
    opt, blocks = cfg["numbers"][4], cfg["numbers"][7]
    with open(path, "rb") as f:
        f.seek(at)
        for name, buf, nb, n in state:
            lo, hi = _range(name, opt, blocks)
            bad = 0
            for off in range(0, n, _CHUNK):
                k = min(_CHUNK, n - off)
                f.readinto(memoryview(chunk)[: 4 * k])
                bad += kernels.narrow(0, 0, buf, off, chunk, k, lo, hi, nb)
            if bad:
                raise RunError(f"{path}: {bad} values of {name} do not fit this run's policy")
