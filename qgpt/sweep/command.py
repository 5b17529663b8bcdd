"""The sweep from start to end (check, run, aggregate, write) and its command line."""

import sys
import time
from concurrent.futures import ProcessPoolExecutor

from qgpt import argtypes
from qgpt.sweep.aggregate import format_table, summarize
from qgpt.sweep.axes import AXES, AXIS_BY_NAME
from qgpt.sweep.backends import check_scheduler, default_jobs, open_backend
from qgpt.sweep.config import KWARG_OF_AXIS, SweepError, check_out_dir, make_config, read_grid
from qgpt.sweep.execute import run_all
from qgpt.sweep.plots import can_plot, preload_pyplot
from qgpt.sweep.report import dataset_info, write_results
from qgpt.sweep.store import RunStore


def describe_grid(cfg):
    """e.g. "2 formats x 2 roundings x 3 seeds + float x 3 seeds": the axes with more than one
    value (format and rounding always)."""
    def part(name, n):
        if n == 1 or name.endswith("s"):
            return f"{n} {name}"
        return f"{n} {name[:-1]}ies" if name.endswith("y") else f"{n} {name}s"

    shown = [a for a in AXES if a.name in ("format", "rounding") or len(cfg.values(a.name)) > 1]
    shared = [part(a.name, len(cfg.values(a.name))) for a in shown if not a.integer_only]
    ints = " x ".join([part(a.name, len(cfg.values(a.name))) for a in shown]
                      + [part("seed", cfg.seeds)])
    return f"{ints} + float x {' x '.join([*shared, part('seed', cfg.seeds)])}"


def sweep(cfg, out, jobs=None, command=None, log=None, scheduler=None, resume=False,
          group_by="format", connect_timeout=None):
    """Train every run of cfg (those already finished in out too, unless resume), write the
    results into out; returns (rows, records).

    jobs: processes (default every core), or LocalCluster workers with scheduler "local";
    scheduler: None (this machine, no Dask), "local" or a Dask scheduler's address, reached
    within connect_timeout seconds (default backends.CONNECT_TIMEOUT).
    Every check (grid, data, out folder, resume, scheduler) happens before training.
    """
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    jobs = default_jobs() if jobs is None else jobs
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise SweepError(f"--jobs {jobs}: want at least 1 process")
    if group_by not in AXIS_BY_NAME:
        raise SweepError(f"--group-by {group_by}: want one of {', '.join(AXIS_BY_NAME)}")
    check_scheduler(scheduler)
    info = dataset_info(cfg)  # a DataError (a ValueError) for a bad --data
    if not info["val"]:  # a sweep compares validation NLLs: it needs some
        raise SweepError(f"--data {cfg.data}: no name fell in the validation split (about one "
                         "in ten does); give more names")
    out = check_out_dir(out)
    store = RunStore(out)
    resumed = store.check(cfg, info["sha256"], resume)
    runs = cfg.runs()
    finished = sum(store.load(run) is not None for run in runs) if resumed else 0
    if finished == len(runs):  # nothing left to run: no pool, no cluster
        jobs, scheduler = 1, None
    with open_backend(jobs, scheduler, len(runs) - finished, connect_timeout) as backend:
        store.begin(cfg, info["sha256"])
        log(f"sweep: {len(runs)} runs ({describe_grid(cfg)}), steps "
            f"{','.join(map(str, cfg.values('steps')))}, on {backend[1]}; data {info['path']} "
            f"({info['train']} train / {info['val']} val)"
            + (f"; resuming: {finished} finished already" if resumed else ""))
        # a process pool of this machine draws the figures too: a worker with no run left
        # imports matplotlib while the others finish theirs
        pool = backend[0] if isinstance(backend[0], ProcessPoolExecutor) else None
        warm_up = [preload_pyplot] * jobs if pool and can_plot() else []
        t0 = time.perf_counter()
        records, losses = run_all(runs, backend, store, log, then=warm_up)
        seconds = time.perf_counter() - t0
        rows = summarize(cfg, records)
        t1 = time.perf_counter()
        write_results(out, cfg, records, losses, rows, command or cfg.command(), info,
                      backend[1], seconds, len(runs) - finished, group_by, pool)
        writing = time.perf_counter() - t1
    log(f"sweep: {len(runs) - finished} runs in {seconds:.1f} s, results and figures in "
        f"{writing:.1f} s -> {out}/results.md")
    return rows, records


# --- the command line ---


def cmd_sweep(args):
    given = read_grid(args.grid) if args.grid else {}
    for axis in AXES:
        if getattr(args, axis.name) is not None:
            given[KWARG_OF_AXIS.get(axis.name, axis.name)] = getattr(args, axis.name)
    for option, key in (("seeds", "seeds"), ("seed", "seed"), ("data", "data_path"),
                        ("lowercase", "lowercase"), ("skip_long", "skip_long")):
        if getattr(args, option) is not None:
            given[key] = getattr(args, option)
    cfg = make_config(**given)
    cmd = cfg.command() + f" --out {args.out}"
    rows, _ = sweep(cfg, args.out, jobs=args.jobs, command=cmd, scheduler=args.scheduler,
                    resume=args.resume, group_by=args.group_by)
    print(format_table(rows, group_by=args.group_by))
    return 0


def add_sweep_parser(sub):
    """Register `qgpt sweep` on an argparse subparsers object: an option per axis of the grid
    (axes.AXES), the seeds and data, and where the runs run."""
    p = sub.add_parser("sweep", help="train float and every grid point (format x rounding x lr "
                                     "x steps ...) x seed; table, CSV, JSON, markdown and plots")
    for axis in AXES:
        if axis.repeatable:
            p.add_argument(axis.option, dest=axis.name, action="append", default=None,
                           metavar=axis.name.upper(), help=axis.help)
        else:
            p.add_argument(axis.option, dest=axis.name, default=None, metavar="LIST",
                           help=axis.help)
    p.add_argument("--grid", default=None, metavar="FILE",
                   help="the grid in a TOML or JSON file (keys: formats, rounding, lr, steps, "
                        "seeds, ...); options given as well override it")
    p.add_argument("--seeds", type=int, default=None,
                   help="runs per grid point, seeds SEED..SEED+N-1 (default 3)")
    p.add_argument("--seed", type=argtypes.seed, default=None,
                   help="the first seed, 0 .. 2**30-1 (default 42)")
    p.add_argument("--data", default=None, help="names file (default: data/names.txt)")
    p.add_argument("--lowercase", action="store_true", default=None,
                   help="lowercase names and drop those with characters outside a-z")
    p.add_argument("--skip-long", action="store_true", default=None,
                   help="skip names longer than 15 letters")
    p.add_argument("--jobs", type=int, default=None,
                   help="worker processes, or LocalCluster workers with --scheduler local "
                        "(default: every core; a scheduler's address brings its own workers); "
                        "results do not depend on it")
    p.add_argument("--scheduler", default=None, metavar="local|tcp://HOST:PORT",
                   help="run on Dask: 'local' starts a LocalCluster, an address uses a running "
                        "scheduler (docs/CLUSTER.md); default: this machine, without Dask")
    p.add_argument("--resume", action="store_true",
                   help="continue the sweep in --out: keep its finished runs, run the rest")
    p.add_argument("--group-by", default="format", choices=[a.name for a in AXES],
                   help="the axis the tables and plots are grouped by (default format)")
    p.add_argument("--out", default="runs/sweep", help="results folder (default runs/sweep)")
    p.set_defaults(func=cmd_sweep)
    return p
