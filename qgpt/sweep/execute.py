"""Running the sweep's runs: one run in memory (run_one), and every run on a backend
(run_all), each written to the run store as it finishes.

Every run is an ordinary qgpt training run (train.py's TrainConfig, make_model,
data order and nll), held in memory. Runs are independent and deterministic, so
every result is the same whatever --jobs or --scheduler is; only the timings differ.
"""

import math
import shlex
import time
from concurrent.futures import as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict

import numpy as np

from qgpt import data, qformat
from qgpt.params import N_PARAMS, SLOTS
from qgpt.sweep.backends import RETRIES
from qgpt.sweep.config import SweepError
from qgpt.train import LOSS_BATCH, make_model, nll, nll_batches, training_steps

CURVE_BINS = 40  # points of each run's binned curves in results.json
TIMING_KEY = "timing"  # the only part of a run record that depends on the machine

_DATASETS = {}  # per process: (path, lowercase, skip_long) -> (data.Dataset, nll_batches)


def load_dataset(cfg):
    """The dataset of cfg (a TrainConfig or SweepConfig: its data, lowercase and skip_long)
    and its validation names as nll's batches, made once per process. The sweep makes them
    before its workers start: forked workers inherit them (backends.pool_context)."""
    k = (cfg.data, cfg.lowercase, cfg.skip_long)
    if k not in _DATASETS:
        ds = data.load(*k)
        _DATASETS[k] = ds, nll_batches(ds.val)
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
    """The `qgpt train` command that trains the same run (cfg is in TrainConfig's normal
    form: a policy, when there is one, names every class, the master's too)."""
    if cfg.format == "float":
        kind = "--float"
    elif cfg.policy:
        kind = f"--policy {shlex.quote(cfg.policy)} --rounding {cfg.rounding}"
    else:
        kind = f"--format {cfg.format} --rounding {cfg.rounding}"
        kind += f" --master {cfg.master}" * bool(cfg.master)
    extra = " --lowercase" * cfg.lowercase + " --skip-long" * cfg.skip_long
    return (f"qgpt train {kind} --seed {cfg.seed} --steps {cfg.steps} --lr {cfg.lr:g} "
            f"--data {cfg.data}{extra}")


def _bins(values, steps):
    """Means over CURVE_BINS equal bins of steps, 6 significant digits."""
    width = max(1, math.ceil(steps / CURVE_BINS))
    a = np.asarray(values, dtype=np.float64)
    return width, [float(f"{a[i : i + width].mean():.6g}") for i in range(0, len(a), width)]


def run_one(run):
    """Train run.config (a config.Run) in memory and evaluate it; returns (record,
    per-step losses)."""
    cfg = run.config
    ds, val_batches = load_dataset(cfg)
    model = make_model(cfg)
    start = _weights(model).copy()
    is_int = model.kind == "int"
    losses, sats, stalled = [], [], []
    t0 = time.perf_counter()
    # train.train's loop without a run folder; the loop reads only what a step yields, so
    # the reported losses can be computed LOSS_BATCH steps at a time (the same floats)
    for _, loss, tele in training_steps(model, ds, cfg, loss_batch=LOSS_BATCH):
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
    val = nll(model, ds.val, val_batches)
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
        "label": run.label,
        "point": run.point,
        "command": _train_command(cfg),
        "config": asdict(cfg),
        "policy": model.policy.describe() if is_int else None,
        "summary": summary,
        "curve": curve,
        TIMING_KEY: {"train_seconds": train_seconds, "eval_seconds": eval_seconds,
                     "steps_per_second": cfg.steps / max(train_seconds, 1e-9)},
    }
    return record, losses


class _ProgressLine:
    """A line per finished run: the run, its val_nll and timings, and the sweep's elapsed time
    and ETA (from the runs finished in this session, whichever backend ran them)."""

    def __init__(self, total, already, log):
        self.total, self.done, self.log = total, already, log
        self.done_here, self.t0 = 0, time.perf_counter()
        self.width = len(str(total))

    def _head(self, label):
        return f"[{self.done:>{self.width}}/{self.total}] {label:<28}"

    def _clock(self):
        elapsed = time.perf_counter() - self.t0
        eta = elapsed / max(self.done_here, 1) * (self.total - self.done)
        return f"elapsed {elapsed:4.0f} s, ETA {eta:4.0f} s"

    def finished(self, record):
        self.done += 1
        self.done_here += 1
        t = record[TIMING_KEY]
        self.log(f"{self._head(record['label'])} val_nll {record['summary']['val_nll']:.4f}"
                 f"  train {t['train_seconds']:5.1f} s + val {t['eval_seconds']:4.1f} s"
                 f"  | {self._clock()}")

    def failed(self, label, error):
        self.total -= 1  # the ETA counts only runs that will finish
        self.log(f"[ failed ] {label:<28} {error}  | {self._clock()}")


def _reason(error):
    if type(error).__name__ == "KilledWorker":  # Dask: the run's worker died too often
        return f"KilledWorker: its worker died {error.allowed_failures + 1} times"
    text = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def run_all(runs, backend, store, log, task=run_one, then=()):
    """Every run of runs (config.Run), on backend = (executor, description, retries): those
    already in store are loaded, the others run there and are saved as each finishes.
    Returns (records, losses) in the order of runs. On a backend that retries (Dask), a run
    that fails again is reported and the others carry on; SweepError at the end names it.
    then: functions of no argument submitted after the runs, for workers that have no
    run left (their results are not waited for)."""
    executor, _, retries = backend
    results = [store.load(run) for run in runs]
    todo = [i for i, r in enumerate(results) if r is None]
    progress = _ProgressLine(len(runs), len(runs) - len(todo), log)
    # the slower integer runs go first, so the float runs fill the gaps at the end
    order = sorted(todo, key=lambda i: runs[i].config.format == "float")
    futures = {executor.submit(task, runs[i]): i for i in order}
    for fn in then:
        executor.submit(fn)
    completed = (executor.completed(futures) if hasattr(executor, "completed")
                 else as_completed(futures))
    failures = []
    try:
        for future in completed:
            i = futures[future]
            try:
                record, losses = future.result()
            except BrokenProcessPool:
                raise SweepError("a worker process died (killed, out of memory, or it could "
                                 "not start: spawned workers, outside Linux, re-import the "
                                 "main script, so a script read from stdin needs --jobs 1); "
                                 "the finished runs are kept: rerun with --resume, or with "
                                 "--jobs 1 to see the cause") from None
            except Exception as e:
                if not retries:
                    raise
                failures.append((runs[i].label, _reason(e)))
                progress.failed(runs[i].label, f"failed after {RETRIES} retry: {_reason(e)}")
                continue
            results[i] = store.save(runs[i], record, losses)
            progress.finished(results[i][0])
    except KeyboardInterrupt:
        log(f"sweep: interrupted; {sum(r is not None for r in results)} finished runs are kept "
            f"in {store.runs_dir} (continue with --resume)")
        raise
    if failures:
        label, reason = failures[0]
        raise SweepError(f"{len(failures)} of {len(runs)} runs failed (first: {label}: {reason}); "
                         f"the finished runs are kept in {store.runs_dir}: run the same command "
                         "with --resume to redo only the missing ones")
    return [r[0] for r in results], [r[1] for r in results]
