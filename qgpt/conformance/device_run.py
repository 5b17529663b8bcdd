"""A training run of firmware/qgpt_train.py on a device: its config, starting it,
parsing what it prints (firmware/README.md) and its dumps, the state hash."""

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from qgpt.conformance.build import default_micropython, device_env
from qgpt.params import N_PARAMS, SLOTS
from qgpt.policy import make_policy, train_settings

TRAIN_SEED = 42
TRAIN_STEPS = 1000  # the lr schedule's length (a run may stop earlier: stop_at)
TRAIN_HEAPSIZE = "96K"  # the 64-bit unix port trains from 90K: firmware/README.md, "Memory"
TRAIN_HEAPSIZE_MASTER = "112K"  # int32 master weights take 16 KB more (from 107K)
TRAIN_HEAPSIZE_PY = "160K"  # --build py: the port compiles the sources itself
TRAIN_HEAPSIZE_INT8 = "64K"  # --policy int8 trains and resumes from 56K
STATE_ARRAYS = ("params", "grad", "adam_m", "adam_v")  # a dump file's arrays, in order


@dataclass
class TrainCase:
    fmt: str
    rounding: str
    master: str = ""
    policy: str = ""  # "" (the defaults of fmt and master) or the canonical SPEC (3.8)
    label: str = ""  # the policy's label (a preset name or the short SPEC)
    lr: float = 0.01  # the peak learning rate (qgpt train --lr)

    @property
    def name(self):
        return (self.rounding + (f", master {self.master}" if self.master else "")
                + (f", policy {self.label or self.policy}" if self.policy else "")
                + (f", lr {self.lr}" if self.lr != 0.01 else ""))

    @property
    def resolved(self):
        """The case's qgpt.policy.Policy (what both sides train with)."""
        from qgpt.policy import parse_policy

        if self.policy:
            return parse_policy(self.policy, rounding=self.rounding, lr=self.lr)
        return make_policy(self.fmt, self.rounding, self.master, self.lr)


def policy_case(spec, rounding=None, lr=0.01):
    """The TrainCase of `qgpt train --policy SPEC [--rounding R] [--lr LR]` (PolicyError,
    one line, for a bad one): its TrainConfig normal form (format, rounding, master,
    policy) and label (a preset's name, else the short SPEC)."""
    from qgpt.policy import PRESETS

    fmt, rounding, master, policy, label = train_settings(None, spec, None, rounding, lr)
    case = TrainCase(fmt, rounding, master, policy or spec, lr=lr)
    case.label = label if label in PRESETS else case.resolved.short_spec
    return case



def tensor_at(flat):
    """(name, index) of a flat parameter index, from the parameter table."""
    for s in SLOTS:
        if s.offset <= flat < s.offset + s.size:
            return s.name, tuple(int(i) for i in np.unravel_index(flat - s.offset, s.shape))
    raise IndexError(flat)


def state_hash(params, m, v, *extra):
    """The device's `done ... hash`: CRC32 of params, m, v (and 9.6's block shifts and
    Kahan compensations, when the policy has them) as little-endian int32."""
    import zlib

    crc = 0
    for a in (params, m, v, *extra):
        crc = zlib.crc32(np.asarray(a, dtype="<i4").tobytes(), crc)
    return crc


def model_hash(model):
    """state_hash of an IntModel: its store, then its optimizer's arrays in order."""
    return state_hash(model.store, *model.opt.arrays().values())


def pack_names(names_file, dest):
    """Pack the training split of a names file (qgpt pack); returns the train names."""
    from qgpt import data, pack

    ds = data.load(names_file)
    pack.write(dest, ds.train)
    return ds.train


@dataclass
class DeviceRun:
    """What the device printed, parsed (firmware/README.md)."""

    code: int
    stdout: str
    stderr: str
    start: str = ""
    losses: dict = field(default_factory=dict)  # step (1-based) -> loss_q16
    ckpts: list = field(default_factory=list)
    dumps: dict = field(default_factory=dict)  # step -> path
    samples: list = field(default_factory=list)
    done: dict = field(default_factory=dict)  # step, hash, heap_peak, stalled
    errors: list = field(default_factory=list)

    @property
    def failure(self):
        """Why the run failed, or ''."""
        if self.errors:
            return "; ".join(self.errors)
        if self.code != 0 or not self.done:
            tail = self.stderr.strip().splitlines()[-3:] or self.stdout.strip().splitlines()[-3:]
            return f"exit code {self.code}: " + " | ".join(tail)
        return ""


def parse_device_run(code, stdout, stderr, folder):
    r = DeviceRun(code, stdout, stderr)
    for line in stdout.splitlines():
        tag, _, rest = line.partition(" ")
        f = rest.split()
        if tag == "qgpt" and f[:1] == ["start"]:
            r.start = line
        elif tag == "step" and len(f) >= 3 and f[1] == "loss_q16":
            r.losses[int(f[0])] = int(f[2])
        elif tag == "ckpt":
            r.ckpts.append(int(f[0]))
        elif tag == "dump":
            path = Path(folder) / rest
            r.dumps[int(path.stem.rsplit("-", 1)[1])] = path
        elif tag == "sample":
            r.samples.append(rest)
        elif tag == "done":
            r.done = {"step": int(f[1]), "hash": int(f[3], 16), "heap_peak": int(f[5]),
                      "stalled": int(f[7])}
        elif tag == "error":
            r.errors.append(rest)
    return r


def device_config(case, data, steps=TRAIN_STEPS, seed=TRAIN_SEED, **extra):
    """The qgpt.json of a device run (firmware/README.md)."""
    if case.policy:  # every class, as qgpt device deploy writes them
        from qgpt.policy import device_config as policy_config
        from qgpt.policy import parse_policy

        cfg = policy_config(parse_policy(case.policy, None, None, case.rounding, case.lr))
    else:
        p = make_policy(case.fmt, case.rounding, case.master, case.lr)
        cfg = {"format": case.fmt, "rounding": case.rounding, "master": case.master,
               "lr": p.lr, "lr_q30": p.lr_q30}
    cfg.update({"steps": steps, "seed": seed, "data": str(data), "checkpoint": "ckpt.bin",
                "checkpoint_every": 0, "samples": 0})
    cfg.update(extra)
    return cfg


def device_heap(case, build="mpy"):
    """The heap a training case runs in on the unix port."""
    if build == "py":
        return TRAIN_HEAPSIZE_PY
    return TRAIN_HEAPSIZE_MASTER if case.master or case.policy else TRAIN_HEAPSIZE


def stop(proc):
    """Kill a device process that still runs, and reap it."""
    if proc.poll() is None:
        proc.kill()
    proc.communicate()


def start_training(config, folder, micropython=None, heapsize=TRAIN_HEAPSIZE, target="unix",
                   firmware_dir=None):
    """Write config as folder/qgpt.json and start the device on it (a Popen). The unix
    port finds the firmware through a MICROPYPATH relative to folder: it interns each
    module's path, so a short one keeps the heap nearer a board's, where the firmware
    sits in the current folder (firmware/README.md, "Memory")."""
    folder = Path(folder)
    (folder / "qgpt.json").write_text(json.dumps(config))
    env = device_env(firmware_dir)
    if target != "int32" and firmware_dir is not None:
        env["MICROPYPATH"] = os.path.relpath(firmware_dir, folder)
        if micropython is None:
            # the default port (the PyPI package's) in a fixed environment, the same from
            # every checkout: it runs inside a CPython, whose start-up, steered by the
            # environment (PYTHONPATH, PWD, its size), leaves the stale words that
            # MicroPython's conservative collector scans (firmware/README.md, "Memory")
            env = {"MICROPYPATH": env["MICROPYPATH"], "PATH": os.defpath}
    if target == "int32":
        cmd = [sys.executable, "-c", "import sys; from qgpt.conformance.int32 import "
               "emulate_int32_train; sys.exit(emulate_int32_train(sys.argv[1], sys.argv[2]))",
               "qgpt.json", str(firmware_dir)]
    else:
        cmd = [micropython or default_micropython(), "-X", f"heapsize={heapsize}", "-m",
               "qgpt_train", "qgpt.json"]
    return subprocess.Popen(cmd, cwd=folder, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish_training(proc, folder, timeout=3600):
    """Wait for the device; parse what it printed. A device that outlives timeout is
    killed (and subprocess.TimeoutExpired raised)."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(proc)
        raise
    return parse_device_run(proc.returncode, out, err, folder)


def read_dump(path, extra=None):
    """A device dump: params, grad, adam_m, adam_v, each N_PARAMS int32 LE (then 9.6's
    extra state arrays, which the state hash covers). extra None: those four arrays;
    a count: exactly that many extra values, returned as a fifth array when > 0."""
    raw = np.fromfile(path, dtype="<i4").astype(np.int64)
    want = 4 * N_PARAMS + (extra or 0)
    if raw.size < want or (extra is not None and raw.size != want):
        raise ValueError(f"{path}: {raw.size} values, want {want}")
    arrays = tuple(raw[i * N_PARAMS : (i + 1) * N_PARAMS] for i in range(4))
    return arrays + ((raw[4 * N_PARAMS :],) if extra else ())
