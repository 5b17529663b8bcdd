"""Running the sweep's runs: one run in memory, and every run in a pool of processes.

Every run is an ordinary qgpt training run (train.py's TrainConfig, make_model,
data order and nll), held in memory. Runs are independent and deterministic, so
they go to a pool of worker processes and every result is the same whatever
--jobs is; only the timings differ.
"""

import math
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict

import numpy as np

from qgpt import data, qformat
from qgpt.params import N_PARAMS, SLOTS
from qgpt.sweep.config import SweepError
from qgpt.train import make_model, nll, training_steps

CURVE_BINS = 40  # points of each run's binned curves in results.json
TIMING_KEY = "timing"  # the only part of a run record that depends on the machine

_DATASETS = {}  # per process: (path, lowercase, skip_long) -> data.Dataset


def _dataset(cfg):
    k = (cfg.data, cfg.lowercase, cfg.skip_long)
    if k not in _DATASETS:
        _DATASETS[k] = data.load(*k)
    return _DATASETS[k]


def _weights(model):
    """What the optimizer updates: float64 params, or the integer weight store (raw)."""
    return model.store if model.kind == "int" else model.flat


def _real(model, weights):
    """Weights from _weights() as real numbers."""
    if model.kind == "int":
        return qformat.to_float(weights, model.policy.weight_store.frac_bits)
    return weights


def _train_command(cfg):
    if cfg.format == "float":
        kind = "--float"
    else:
        kind = f"--format {cfg.format} --rounding {cfg.rounding}"
    extra = " --lowercase" * cfg.lowercase + " --skip-long" * cfg.skip_long
    return (f"qgpt train {kind} --seed {cfg.seed} --steps {cfg.steps} --lr {cfg.lr:g} "
            f"--data {cfg.data}{extra}")


def _bins(values, steps):
    """Means over CURVE_BINS equal bins of steps, 6 significant digits."""
    width = max(1, math.ceil(steps / CURVE_BINS))
    a = np.asarray(values, dtype=np.float64)
    return width, [float(f"{a[i : i + width].mean():.6g}") for i in range(0, len(a), width)]


def run_one(cfg):
    """Train cfg in memory and evaluate it; returns (record, per-step losses)."""
    ds = _dataset(cfg)
    model = make_model(cfg)
    start = _weights(model).copy()
    is_int = model.kind == "int"
    losses, sats, stalled = [], [], []
    t0 = time.perf_counter()
    for _, loss, tele in training_steps(model, ds, cfg):  # train.train's loop, no run folder
        losses.append(loss)
        sats.append(tele.get("saturations", 0))
        stalled.append(tele.get("stalled_updates", 0.0))
    train_seconds = time.perf_counter() - t0
    # snapshot the training telemetry: evaluation runs the forward pass through the same
    # saturation counters
    by_tensor = dict(sorted(model.ctx.saturations.items())) if is_int else {}
    unchanged = _weights(model) == start  # (N_PARAMS,) bool
    change = _real(model, _weights(model)) - _real(model, start)  # (N_PARAMS,) real units
    t1 = time.perf_counter()
    val = nll(model, ds.val)
    eval_seconds = time.perf_counter() - t1
    sat_eval = sum(model.ctx.saturations.values()) - sum(by_tensor.values()) if is_int else 0

    summary = {
        "kind": model.kind,
        "format": cfg.format,
        "rounding": cfg.rounding if is_int else None,
        "seed": cfg.seed,
        "steps": cfg.steps,
        "params": N_PARAMS,
        "train_loss_first100": float(np.mean(losses[:100])),
        "train_loss_last100": float(np.mean(losses[-100:])),
        "val_nll": val,
        "frozen_fraction": float(np.mean(unchanged)),
        "frozen_by_tensor": {s.name: int(unchanged[s.offset : s.offset + s.size].sum())
                             for s in SLOTS},
        "weight_mean_change": float(change.mean()),
    }
    if is_int:
        summary.update({
            "saturations": by_tensor,
            "saturations_total": int(sum(by_tensor.values())),
            "saturations_per_step": sum(by_tensor.values()) / cfg.steps,
            "saturations_eval": int(sat_eval),
            "stalled_update_rate": model.stalled_total / (cfg.steps * N_PARAMS),
        })
    width, loss_curve = _bins(losses, cfg.steps)
    curve = {"bin_steps": width, "loss": loss_curve}
    if is_int:
        curve["saturations_per_step"] = _bins(sats, cfg.steps)[1]
        curve["stalled_update_rate"] = _bins(stalled, cfg.steps)[1]
    record = {
        "label": run_label(cfg),
        "command": _train_command(cfg),
        "config": asdict(cfg),
        "policy": model.policy.describe() if is_int else None,
        "summary": summary,
        "curve": curve,
        TIMING_KEY: {"train_seconds": train_seconds, "eval_seconds": eval_seconds,
                     "steps_per_second": cfg.steps / max(train_seconds, 1e-9)},
    }
    return record, losses


def run_label(cfg):
    if cfg.format == "float":
        return f"float64 seed {cfg.seed}"
    return f"{cfg.format} {cfg.rounding} seed {cfg.seed}"


def default_jobs():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def run_all(configs, jobs, log):
    """Every run, in a pool of jobs spawned processes (or in this one for jobs 1);
    a line per finished run. Returns (records, losses) in the order of configs."""
    results = [None] * len(configs)
    total, t0 = len(configs), time.perf_counter()
    width = len(str(total))

    def report(done, i):
        rec = results[i][0]
        t = rec[TIMING_KEY]
        elapsed = time.perf_counter() - t0
        eta = elapsed / done * (total - done)
        log(f"[{done:>{width}}/{total}] {rec['label']:<28} val_nll {rec['summary']['val_nll']:.4f}"
            f"  train {t['train_seconds']:5.1f} s + val {t['eval_seconds']:4.1f} s"
            f"  | elapsed {elapsed:4.0f} s, ETA {eta:4.0f} s")

    if jobs == 1:
        for i, cfg in enumerate(configs):
            results[i] = run_one(cfg)
            report(i + 1, i)
    else:
        # spawn: a fresh interpreter per worker, the same on every platform. The slower
        # integer runs go first, so the float runs fill the gaps at the end.
        order = sorted(range(total), key=lambda i: configs[i].format == "float")
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(min(jobs, total), mp_context=ctx) as pool:
            futures = {pool.submit(run_one, configs[i]): i for i in order}
            try:
                for done, fut in enumerate(as_completed(futures), 1):
                    i = futures[fut]
                    results[i] = fut.result()
                    report(done, i)
            except BrokenProcessPool:
                raise SweepError("a worker process died (killed, out of memory, or it could "
                                 "not start: workers re-import the main script, so a script "
                                 "read from stdin needs --jobs 1); rerun with --jobs 1 to see "
                                 "the cause") from None
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
    return [r[0] for r in results], [r[1] for r in results]
