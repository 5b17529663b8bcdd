"""The sweep from start to end (check, run, aggregate, write) and its command line."""

import sys
import time

from qgpt.sweep.aggregate import format_table, summarize
from qgpt.sweep.config import SweepError, check_out_dir, make_config
from qgpt.sweep.execute import default_jobs, run_all
from qgpt.sweep.report import dataset_info, write_results


def sweep(cfg, out, jobs=None, command=None, log=None):
    """Train every run of cfg, write the results into out; returns (rows, records).

    Every check (formats, roundings, seeds, data, out folder) happens before training.
    """
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    jobs = default_jobs() if jobs is None else jobs
    if not isinstance(jobs, int) or jobs < 1:
        raise SweepError(f"--jobs {jobs}: want at least 1 process")
    info = dataset_info(cfg)  # a DataError (a ValueError) for a bad --data
    out = check_out_dir(out)
    configs = cfg.run_configs()
    log(f"sweep: {len(configs)} runs ({len(cfg.formats)} formats x {len(cfg.roundings)} "
        f"roundings x {cfg.seeds} seeds + float x {cfg.seeds}), {cfg.steps} steps each, "
        f"{jobs} processes; data {info['path']} ({info['train']} train / {info['val']} val)")
    t0 = time.perf_counter()
    records, losses = run_all(configs, jobs, log)
    seconds = time.perf_counter() - t0
    rows = summarize(cfg, records)
    write_results(out, cfg, records, losses, rows, command or cfg.command(), info, seconds, jobs)
    log(f"sweep: {len(configs)} runs in {seconds:.1f} s -> {out}/results.md")
    return rows, records


# --- the command line ---


def cmd_sweep(args):
    cfg = make_config(args.formats, args.rounding, args.seeds, args.seed, args.steps, args.lr,
                      args.data, args.lowercase, args.skip_long)
    cmd = cfg.command() + f" --out {args.out}"
    rows, _ = sweep(cfg, args.out, jobs=args.jobs, command=cmd)
    print(format_table(rows))
    return 0


def add_sweep_parser(sub):
    """Register `qgpt sweep` on an argparse subparsers object."""
    p = sub.add_parser("sweep", help="train float and every format x rounding x seed; "
                                     "table, CSV, JSON, markdown and plots")
    p.add_argument("--formats", required=True, help="comma-separated Q formats, e.g. q8.8,q4.12")
    p.add_argument("--rounding", default="nearest",
                   help="comma-separated weight-update roundings: nearest,floor,stochastic "
                        "(default nearest)")
    p.add_argument("--seeds", type=int, default=3,
                   help="runs per format and rounding, seeds SEED..SEED+N-1 (default 3)")
    p.add_argument("--seed", type=int, default=42, help="the first seed (default 42)")
    p.add_argument("--steps", type=int, default=1000, help="training steps per run (default 1000)")
    p.add_argument("--lr", type=float, default=0.01, help="peak learning rate (default 0.01)")
    p.add_argument("--data", default=None, help="names file (default: data/names.txt)")
    p.add_argument("--lowercase", action="store_true",
                   help="lowercase names and drop those with characters outside a-z")
    p.add_argument("--skip-long", action="store_true", help="skip names longer than 15 letters")
    p.add_argument("--jobs", type=int, default=None,
                   help="worker processes (default: every core); results do not depend on it")
    p.add_argument("--out", default="runs/sweep", help="results folder (default runs/sweep)")
    p.set_defaults(func=cmd_sweep)
    return p
