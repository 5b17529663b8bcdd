"""`qgpt bench`: training speed and accuracy of float and integer runs, side by side.

Runs are timed in one process, one after another, several times (repeats),
and the median is reported together with the ratio to the float reference,
since absolute times on shared machines are noisy.
"""

import statistics
import time
from dataclasses import replace
from pathlib import Path

from tabulate import tabulate

from qgpt import data
from qgpt.train import TrainConfig, make_model, nll, training_steps

MAKEMORE = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "names-makemore.txt"


def default_data():
    """makemore's names when ../shared is beside the project, else the built-in names."""
    return str(MAKEMORE) if MAKEMORE.exists() else str(data.DEFAULT_DATA)


def time_training(cfg, ds):
    """Train cfg on ds in memory; returns (seconds of the training loop, model, losses)."""
    model = make_model(cfg)
    t0 = time.perf_counter()
    losses = [loss for _, loss, _ in training_steps(model, ds, cfg)]
    return time.perf_counter() - t0, model, losses


def bench(formats=("q4.12", "q8.8"), roundings=("nearest",), steps=1000, seed=42,
          repeats=3, data_path=None, log=print):
    data_path = data_path or default_data()
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
        rows.append([label, f"{steps / s:.0f}", f"{s:.2f}", f"{s / float_s:.2f}",
                     f"{results[c][0]:.4f}", f"{results[c][1]:.4f}"])
    table = tabulate(rows, headers=["run", "steps/s", "seconds", "x float", "train_loss_last100",
                                    "val_nll"], tablefmt="github")
    log(f"data: {data_path} ({len(ds.train)} train / {len(ds.val)} val names), {steps} steps, "
        f"seed {seed}, median of {repeats}")
    log(table)
    return rows


def main(args):
    bench(formats=args.formats.split(","), roundings=args.rounding.split(","),
          steps=args.steps, seed=args.seed, repeats=args.repeats, data_path=args.data)
    return 0
