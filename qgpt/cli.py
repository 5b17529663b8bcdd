"""The qgpt command line: main(argv) -> exit code, one subcommand per function.

Every user mistake (bad data, format, number, path, file or run) ends in one line on
stderr, 'qgpt: error: ...', and exit code 2, never a traceback (docs/ERRORS.md).
Only argparse, sys and pathlib load at start-up; everything else is imported inside
main's error handling, so even Ctrl-C during start-up is one line (exit 130).
"""

import argparse
import os
import sys
from pathlib import Path

from qgpt import argtypes

DESCRIPTION = ("Train Karpathy's microgpt in fixed-point integer arithmetic: a float64 "
               "reference, an integer simulator and a MicroPython firmware that agree bit for bit.")
EPILOG = "Start with: qgpt train --format q4.12   (qgpt COMMAND --help for each command)"
MESSAGE_CHARS = 300  # an error line longer than this is cut in the middle


class UsageError(ValueError):
    """A bad option value, worded for the user."""


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors raised as one UsageError line (not usage + error + exit)."""

    def error(self, message):
        raise UsageError(f"{message} (see {self.prog} --help)")


def _format_name(text, option):
    """The canonical name of a Q format option ('Q4.12', ' q4.12' -> 'q4.12')."""
    from qgpt import qformat

    if not text.strip():
        raise UsageError(f"{option} is empty: want a format qI.F, e.g. q4.12")
    try:
        return qformat.parse(text).name
    except qformat.FormatError as e:
        raise UsageError(f"{option}: {e}") from None


def _add_train_options(p):
    p.add_argument("--data", default=None,
                   help="names file, one per line (default: data/names.txt)")
    p.add_argument("--steps", type=argtypes.steps, default=1000,
                   help="training steps (default 1000)")
    p.add_argument("--seed", type=argtypes.seed, default=42,
                   help="0 .. 2**30-1: fixes init, data order, rounding, sampling (default 42)")
    p.add_argument("--lr", type=argtypes.learning_rate, default=0.01,
                   help="peak learning rate, 0 < lr < 1 (default 0.01)")
    p.add_argument("--lowercase", action="store_true",
                   help="lowercase names and drop those with characters outside a-z")
    p.add_argument("--skip-long", action="store_true", help="skip names longer than 15 letters")


def _fresh_run_dir(base):
    """base, or base-2, base-3, ... : the first that does not exist yet (never overwrite)."""
    out, n = Path(base), 1
    while out.exists():
        n += 1
        out = Path(f"{base}-{n}")
    return out


# --- the subcommands ---


def cmd_train(args):
    from qgpt import train as training

    if args.float and (args.format is not None or args.policy is not None):
        raise UsageError("--float and --format/--policy exclude each other: pick one")
    integer = args.format is not None or args.policy is not None
    integer_only = [name for name, given in (("--rounding", args.rounding is not None),
                                             ("--master", args.master is not None),
                                             ("--strict", args.strict)) if given]
    if not integer and integer_only:
        raise UsageError(f"{' and '.join(integer_only)}: only integer runs use "
                         f"{'them' if len(integer_only) > 1 else 'it'}; give --format qI.F "
                         "or --policy SPEC, or drop it for a float run")
    if args.master is not None:
        _not_empty(args.master, "--master", "format qI.F, or 'none'")
    if args.policy is not None:
        _not_empty(args.policy, "--policy", "SPEC such as weights=q4.12,acts=q6.10")
    kind, rounding, master, policy, label = "float", "nearest", "", "", "float"
    if integer:  # the precision policy (docs/arithmetic.md, section 3): a bad SPEC fails here
        from qgpt.policy import train_settings

        fmt = None if args.format is None else _format_name(args.format, "--format")
        if args.master is not None and not args.master.strip():
            raise UsageError("--master is empty: want a format qI.F, e.g. q4.20, or 'none'")
        kind, rounding, master, policy, label = train_settings(
            fmt, args.policy, args.master, args.rounding, args.lr)
    cfg = training.TrainConfig(
        data=str(Path(args.data).resolve()) if args.data else training.TrainConfig.data,
        steps=args.steps, seed=args.seed, lr=args.lr, format=kind,
        rounding=rounding, master=master, policy=policy,
        lowercase=args.lowercase, skip_long=args.skip_long,
        checkpoint_every=args.checkpoint_every, strict=args.strict,
    )
    base = f"runs/{label}-seed{args.seed}"
    if args.out is not None:
        _not_empty(args.out, "--out", "folder")
        out = Path(args.out)
    else:  # a new folder, or with --resume the default one
        out = Path(base) if args.resume else _fresh_run_dir(base)
    args.run_dir = out  # for the Ctrl-C message
    summary = training.train(cfg, out, resume=args.resume, progress=not args.quiet)
    val = summary["val_nll"]
    val_text = (f"val_nll {val:.4f}" if val is not None
                else "val_nll none (no name fell in the validation split)")
    print(f"{label}: train_loss_last100 {summary['train_loss_last100']:.4f}  {val_text}  "
          f"{summary['seconds']:.1f} s  -> {out}")
    if not args.quiet:
        model, _ = training.load_run(out)
        for name in training.sample(model, n=args.samples, seed=args.seed):
            print(name)
    return 0


def _not_empty(text, option, what):
    if not str(text).strip():
        raise UsageError(f"{option} is empty: give a {what}")


def cmd_sample(args):
    from qgpt import train as training

    model, cfg = training.load_run(args.checkpoint)
    seed = cfg.seed if args.seed is None else args.seed
    for name in training.sample(model, n=args.n, temperature=args.temperature, seed=seed):
        print(name)
    return 0


def cmd_export(args):
    from qgpt import checkpoint, statedict
    from qgpt import train as training

    model, _ = training.load_run(args.checkpoint)
    out = checkpoint.prepare_output(args.out, "--out")
    statedict.export_state_dict(model, out)
    print(f"wrote {out}")
    return 0


def cmd_import(args):
    from qgpt import checkpoint, statedict

    flat = statedict.import_state_dict(args.state_dict)
    _not_empty(args.out, "--out", "folder")
    out = Path(args.out)
    if (out / "checkpoint.bin").exists():
        raise UsageError(f"{out}: already holds a run; choose another --out")
    checkpoint.prepare_output(out, "--out", folder=True)
    statedict.write_imported_run(out, flat)
    print(f"wrote {out / 'checkpoint.bin'} (sample it with: qgpt sample --checkpoint {out})")
    return 0


def cmd_pack(args):
    from qgpt import checkpoint, data, pack

    ds = data.load(args.data, args.lowercase, args.skip_long)
    out = checkpoint.prepare_output(args.out, "--out")
    pack.write(out, ds.train)
    print(f"wrote {len(ds.train)} training names ({ds.path}) to {out}")
    return 0


def cmd_formats(args):
    from qgpt.qformat import describe_formats

    print(describe_formats())
    return 0


def cmd_bench(args):
    from qgpt import bench

    return bench.main(args)


def cmd_conformance(args):
    from qgpt import conformance

    formats = None
    if args.formats is not None:  # normalised like --format: ' Q4.12' -> q4.12; '' refused
        _not_empty(args.formats, "--formats", "comma-separated list of formats")
        formats = [_format_name(f, "--formats") for f in args.formats.split(",")]
    for spec in args.policy or ():
        _not_empty(spec, "--policy", "SPEC such as weights=q4.12,acts=q6.10")
    return conformance.conformance(args.level, formats, args.micropython, args.seed,
                                   args.heapsize, args.build, args.target, args.data,
                                   policies=args.policy)


def build_parser():
    parser = _Parser(prog="qgpt", description=DESCRIPTION, epilog=EPILOG)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train microgpt in float64 or a Q format")
    _add_train_options(p)
    p.add_argument("--float", action="store_true", help="the float64 reference (the default)")
    p.add_argument("--format", default=None,
                   help="integer training in this Q format, e.g. q4.12 (qgpt formats lists some)")
    p.add_argument("--policy", default=None, metavar="SPEC",
                   help="a Q format per tensor class: CLASS=FORMAT pairs (classes weights, "
                        "acts, logits, grads, pgrads, adam_m, adam_v, master), a preset "
                        "(int16, int8), or a JSON file; e.g. weights=q2.6,acts=q4.4")
    p.add_argument("--rounding", default=None,
                   choices=["nearest", "floor", "stochastic", "pseudo", "kahan"],
                   help="integer runs: how weight updates are rounded (default nearest, or the "
                        "preset's)")
    p.add_argument("--master", default=None,
                   help="integer runs: master weights in this format, e.g. q4.20, or 'none'")
    p.add_argument("--strict", action="store_true",
                   help="integer runs: check every kernel intermediate the device forms against "
                        "its bound (int32, or the tighter one docs/arithmetic.md gives it)")
    p.add_argument("--out", default=None,
                   help="run folder (default: a new runs/FORMAT-seedS[-N])")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out (same options, same names)")
    p.add_argument("--checkpoint-every", type=argtypes.positive, default=100, metavar="N",
                   help="write checkpoint.bin and losses.csv every N steps and at the end "
                        "(default 100)")
    p.add_argument("--samples", type=argtypes.count, default=20,
                   help="names to print at the end (default 20)")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no samples")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sample", help="print names sampled from a trained run")
    p.add_argument("--checkpoint", required=True, help="a run folder or its checkpoint.bin")
    p.add_argument("-n", type=argtypes.positive, default=20, help="how many names (default 20)")
    p.add_argument("--temperature", type=argtypes.temperature, default=0.5,
                   help="1/256 .. 256; lower is more conservative (default 0.5)")
    p.add_argument("--seed", type=argtypes.seed, default=None,
                   help="0 .. 2**30-1 (default: the run's seed)")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("export", help="write a run's float weights as a JSON state dict")
    p.add_argument("--checkpoint", required=True, help="a run folder or its checkpoint.bin")
    p.add_argument("--out", required=True,
                   help="the JSON file to write, e.g. w.json (replaced if it exists)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("import", help="make a run folder from a JSON state dict")
    p.add_argument("state_dict", help="a JSON file {tensor name: nested lists}, as export writes")
    p.add_argument("--out", required=True,
                   help="the run folder to make (then: qgpt sample --checkpoint OUT)")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("bench", help="training speed and accuracy, float vs integer, side by side")
    p.add_argument("--formats", default="q4.12,q8.8",
                   help="comma-separated Q formats (default q4.12,q8.8)")
    p.add_argument("--rounding", default="nearest",
                   help="comma-separated rounding modes: nearest, floor, stochastic "
                        "(default nearest)")
    p.add_argument("--steps", type=argtypes.steps, default=1000,
                   help="training steps per run (default 1000)")
    p.add_argument("--seed", type=argtypes.seed, default=42, help="0 .. 2**30-1 (default 42)")
    p.add_argument("--repeats", type=argtypes.positive, default=3,
                   help="timed runs of each configuration; the median is shown (default 3)")
    p.add_argument("--data", default=None, help="names file (default: data/names.txt)")
    p.add_argument("--breakdown", action="store_true",
                   help="instead: microseconds per step by op (forward/backward, Adam, ...)")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("pack", help="write the training names as the firmware's packed dataset")
    p.add_argument("--data", default=None, help="names file (default: data/names.txt)")
    p.add_argument("--out", required=True,
                   help="the packed file, e.g. names.bin (replaced if it exists)")
    p.add_argument("--lowercase", action="store_true",
                   help="lowercase names and drop those with characters outside a-z")
    p.add_argument("--skip-long", action="store_true", help="skip names longer than 15 letters")
    p.set_defaults(func=cmd_pack)

    p = sub.add_parser("conformance",
                       help="check the firmware's integers equal the simulator's, with ==")
    p.add_argument("--level", choices=["ops", "steps", "run", "all"], default="all",
                   help="ops: every op on golden vectors; steps: parameters, gradients and Adam "
                        "state after steps 1, 2, 10, 100; run: whole 1000-step trainings "
                        "(nearest, stochastic, master weights); all (default): the three")
    p.add_argument("--target", choices=["unix", "int32"], default="unix",
                   help="unix: the MicroPython unix port; int32: the firmware run by CPython "
                        "with every viper intermediate checked against int32")
    p.add_argument("--micropython", default=None,
                   help="a MicroPython unix binary (default: the one installed beside qgpt); "
                        "the firmware is compiled for the architecture it reports")
    p.add_argument("--formats", default=None,
                   help="comma-separated, for ops and steps (default: every format `qgpt "
                        "formats` lists and the edges the host accepts)")
    p.add_argument("--seed", type=argtypes.seed, default=None,
                   help="0 .. 2**30-1 (default: 0 for the op vectors, 42 for training)")
    p.add_argument("--data", default=None,
                   help="names for the run level (default: the built-in data/names.txt)")
    p.add_argument("--heapsize", type=argtypes.heap_size, default=None,
                   help="the device heap, e.g. 96K (steps and run too)")
    p.add_argument("--build", choices=["mpy", "py"], default="mpy",
                   help="mpy: firmware compiled with mpy-cross (default); py: from source")
    p.add_argument("--policy", action="append", default=None, metavar="SPEC",
                   help="a precision policy as in qgpt train --policy (repeatable): every "
                        "level runs only these; by default ops and steps add mixed "
                        "policies, int8 among them")
    p.set_defaults(func=cmd_conformance)

    from qgpt.device import add_device_parser
    from qgpt.sweep import add_sweep_parser

    add_sweep_parser(sub)
    add_device_parser(sub)

    p = sub.add_parser("formats", help="list useful Q formats with width, range and step")
    p.set_defaults(func=cmd_formats)
    return parser


def main(argv=None):
    args = None
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except KeyboardInterrupt:
        print(f"qgpt: interrupted{_interrupted_hint(args)}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. qgpt sample | head -1: the reader has gone, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except (ValueError, OSError) as e:  # every user error is a ValueError; OSError: a path
        print(f"qgpt: error: {_one_line(e)}", file=sys.stderr)
        return 2


def _one_line(error):
    """The error as one line of at most MESSAGE_CHARS characters."""
    if isinstance(error, FileExistsError) and error.filename is not None:
        kind = "folder" if Path(error.filename).is_dir() else "file"
        text = f"{error.filename}: already exists (as a {kind})"
    elif isinstance(error, OSError) and error.filename is not None:
        text = f"{error.filename}: {error.strerror or error}"
    else:
        text = str(error)
    text = text.replace("\r", "\\r").replace("\n", "\\n")
    if len(text) > MESSAGE_CHARS:  # keep the start (what) and the end (how to fix it)
        keep = MESSAGE_CHARS // 2 - 15
        text = f"{text[:keep]} [... {len(text) - 2 * keep} characters ...] {text[-keep:]}"
    return text


def _interrupted_hint(args):
    """What Ctrl-C left behind: for a training run, the checkpoint to resume if there is one."""
    if getattr(args, "command", None) == "device" and args.device_command == "train":
        return "; the board's last checkpoint is kept (continue with --resume)"
    run_dir = getattr(args, "run_dir", None)
    if run_dir is None:
        return ""
    if (run_dir / "checkpoint.bin").is_file():
        return (f"; the last checkpoint is kept (continue with --resume --out {run_dir})"
                [:MESSAGE_CHARS])
    return "; no checkpoint was written yet"


if __name__ == "__main__":
    sys.exit(main())
