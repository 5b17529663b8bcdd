"""End to end: every format x rounding x seed trained in integers and compared with float.

    python experiments/end_to_end.py [--datasets names,makemore] [--jobs N]

For each dataset, one `qgpt sweep` (qgpt/sweep/) of the grid below, 1000 steps per
run, written to experiments/results/<dataset>/: results.md (the table, saturations and
frozen parameters by tensor, every run with its `qgpt train` command), results.csv,
runs.csv, results.json (the command, the dataset's sha256, every run's resolved config,
policy, summary and binned curves) and the figures val_nll.png, loss_curves.png and
loss_gap.png. Results do not depend on --jobs; only the timings do. About 2 minutes per
dataset on 2 cores.

Datasets, read in place (never copied into the project):
    names     data/names.txt, qgpt's default (data/README.md)
    makemore  ../shared/data/names-makemore.txt, Karpathy's makemore names
"""

import argparse
import os
import sys
from pathlib import Path

from qgpt import sweep

ROOT = Path(__file__).resolve().parent.parent
DATASETS = {
    "names": "data/names.txt",
    "makemore": "../shared/data/names-makemore.txt",
}
FORMATS = ("q3.13", "q4.12", "q5.11", "q6.10", "q8.8", "q10.6", "q12.4")
ROUNDINGS = ("nearest", "floor", "stochastic")
SEEDS = 3  # seeds 42, 43, 44
STEPS = 1000


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(DATASETS),
                        help=f"comma-separated, from {', '.join(DATASETS)} (default: all)")
    parser.add_argument("--jobs", type=int, default=None, help="processes (default: every core)")
    args = parser.parse_args(argv)
    names = [d.strip() for d in args.datasets.split(",") if d.strip()]
    unknown = [d for d in names if d not in DATASETS]
    if unknown or not names:
        parser.error(f"--datasets: want names from {', '.join(DATASETS)}, not {args.datasets!r}")
    os.chdir(ROOT)  # the data paths, and those recorded in the results, are relative to it
    for name in names:
        cfg = sweep.make_config(FORMATS, ROUNDINGS, seeds=SEEDS, steps=STEPS,
                                data_path=DATASETS[name])
        command = f"python experiments/end_to_end.py --datasets {name}"
        rows, _ = sweep.sweep(cfg, Path("experiments/results") / name, jobs=args.jobs,
                              command=command)
        print(f"\n{name}: {DATASETS[name]}")
        print(sweep.format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
