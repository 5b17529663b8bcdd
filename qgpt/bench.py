"""`qgpt bench`: training speed and accuracy of float and integer runs, side by side.

Runs are timed in one process, one after another, several times (repeats),
and the median is reported together with the ratio to the float reference,
since absolute times on shared machines are noisy.
"""

import statistics
import time
from dataclasses import replace

from tabulate import tabulate

from qgpt import data, qformat
from qgpt.policy import UPDATE_ROUNDINGS
from qgpt.train import TrainConfig, make_model, nll, training_steps


def time_training(cfg, ds):
    """Train cfg on ds in memory; returns (seconds of the training loop, model, losses)."""
    model = make_model(cfg)
    t0 = time.perf_counter()
    losses = [loss for _, loss, _ in training_steps(model, ds, cfg)]
    return time.perf_counter() - t0, model, losses


def check_runs(formats, roundings):
    """The canonical format names and the rounding modes; BenchError if one is not valid."""
    names = []
    for f in formats:
        try:
            names.append(qformat.parse(f).name)
        except qformat.FormatError as e:
            raise BenchError(f"--formats: {e}") from None
    for r in roundings:
        if r not in UPDATE_ROUNDINGS:
            raise BenchError(f"--rounding: {r[:40]!r} is unknown: want one or more of "
                             f"{', '.join(UPDATE_ROUNDINGS)}, comma-separated")
    if not names or not roundings:
        raise BenchError("--formats and --rounding each need at least one value")
    return names, list(roundings)


class BenchError(ValueError):
    """A bad bench option, worded for the user."""


def bench(formats=("q4.12", "q8.8"), roundings=("nearest",), steps=1000, seed=42,
          repeats=3, data_path=None, log=print):
    formats, roundings = check_runs(formats, roundings)
    data_path = str(data_path or data.DEFAULT_DATA)
    ds = data.load(data_path)
    base = TrainConfig(data=data_path, steps=steps, seed=seed)
    configs = [base] + [replace(base, format=f, rounding=r) for f in formats for r in roundings]
    times = {c: [] for c in configs}
    results = {}
    for rep in range(repeats):
        for c in configs:  # interleaved, so slow phases of the machine hit every config
            seconds, model, losses = time_training(c, ds)
            times[c].append(seconds)
            if rep == 0:
                tail = losses[-100:]
                results[c] = (sum(tail) / len(tail), nll(model, ds.val))
    float_s = statistics.median(times[base])
    rows = []
    for c in configs:
        s = statistics.median(times[c])
        label = "float64" if c.format == "float" else f"{c.format} {c.rounding}"
        val = results[c][1]
        rows.append([label, f"{steps / s:.0f}", f"{s:.2f}", f"{s / float_s:.2f}",
                     f"{results[c][0]:.4f}", "none" if val is None else f"{val:.4f}"])
    table = tabulate(rows, headers=["run", "steps/s", "seconds", "x float", "train_loss_last100",
                                    "val_nll"], tablefmt="github")
    log(f"data: {data_path} ({len(ds.train)} train / {len(ds.val)} val names), {steps} steps, "
        f"seed {seed}, median of {repeats}")
    if not ds.val:
        log("val_nll: none (no name fell in the validation split)")
    log(table)
    return rows


def main(args):
    bench(formats=[f.strip() for f in args.formats.split(",") if f.strip()],
          roundings=[r.strip() for r in args.rounding.split(",") if r.strip()],
          steps=args.steps, seed=args.seed, repeats=args.repeats, data_path=args.data)
    return 0
