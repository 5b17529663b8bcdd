"""The qgpt command line: main(argv) -> exit code, one subcommand per function.

Every user mistake (bad data, bad format, missing run) ends in one line on
stderr and exit code 2, never a traceback.
"""

import argparse
import sys
from pathlib import Path

from qgpt import train as training
from qgpt.argtypes import positive as _positive
from qgpt.checkpoint import CheckpointError
from qgpt.data import DataError


class UsageError(ValueError):
    """A bad option value, worded for the user."""


def _add_train_options(p):
    p.add_argument("--data", default=None,
                   help="names file, one per line (default: data/names.txt)")
    p.add_argument("--steps", type=_positive, default=1000, help="training steps (default 1000)")
    p.add_argument("--seed", type=int, default=42,
                   help="fixes init, data order, rounding, sampling")
    p.add_argument("--lr", type=float, default=0.01, help="peak learning rate (default 0.01)")
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


def cmd_train(args):
    kind = args.format or "float"
    if args.float and (args.format or args.policy):
        raise UsageError("--float and --format/--policy exclude each other: pick one")
    # the precision policy (docs/arithmetic.md, section 3): a bad SPEC fails here
    rounding, master, policy, label = args.rounding or "nearest", args.master or "", "", kind
    if args.format or args.policy:
        from qgpt.policy import train_settings

        kind, rounding, master, policy, label = train_settings(
            args.format, args.policy, args.master, args.rounding, args.lr)
    cfg = training.TrainConfig(
        data=str(Path(args.data).resolve()) if args.data else training.TrainConfig.data,
        steps=args.steps, seed=args.seed, lr=args.lr, format=kind,
        rounding=rounding, master=master, policy=policy,
        lowercase=args.lowercase, skip_long=args.skip_long,
        checkpoint_every=args.checkpoint_every, strict=args.strict,
    )
    base = f"runs/{label}-seed{args.seed}"
    if args.out:
        out = Path(args.out)
    else:  # a new folder, or with --resume the default one
        out = Path(base) if args.resume else _fresh_run_dir(base)
    summary = training.train(cfg, out, resume=args.resume, progress=not args.quiet)
    print(f"{label}: train_loss_last100 {summary['train_loss_last100']:.4f}  "
          f"val_nll {summary['val_nll']:.4f}  {summary['seconds']:.1f} s  -> {out}")
    if not args.quiet:
        model, _ = training.load_run(out)
        for name in training.sample(model, n=args.samples, seed=args.seed):
            print(name)
    return 0


def cmd_sample(args):
    if args.temperature <= 0:
        raise UsageError(f"--temperature {args.temperature}: must be above 0")
    model, cfg = training.load_run(args.checkpoint)
    seed = cfg.seed if args.seed is None else args.seed
    for name in training.sample(model, n=args.n, temperature=args.temperature, seed=seed):
        print(name)
    return 0


def cmd_export(args):
    model, _ = training.load_run(args.checkpoint)
    training.export_state_dict(model, args.out)
    print(f"wrote {args.out}")
    return 0


def cmd_import(args):
    flat = training.import_state_dict(args.state_dict)
    cfg = training.TrainConfig(steps=1, checkpoint_every=1)
    model = training.FloatModel(cfg)
    model.flat = flat
    out = Path(args.out)
    if (out / "checkpoint.bin").exists():
        raise training.RunError(f"{out}: already holds a run; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    training._save(out, model, cfg, 0, 0.0)
    print(f"wrote {out / 'checkpoint.bin'} (sample it with: qgpt sample --checkpoint {out})")
    return 0


def cmd_pack(args):
    from qgpt import data, pack

    ds = data.load(args.data, args.lowercase, args.skip_long)
    pack.write(args.out, ds.train)
    print(f"wrote {len(ds.train)} training names ({ds.path}) to {args.out}")
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
    from qgpt.qformat import parse

    formats = args.formats.split(",") if args.formats else None
    for f in formats or ():
        parse(f)
    return conformance.conformance(args.level, formats, args.micropython, args.seed,
                                   args.heapsize, args.build, args.target, args.data)


def build_parser():
    parser = argparse.ArgumentParser(prog="qgpt", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train microgpt in float64 or a Q format")
    _add_train_options(p)
    p.add_argument("--float", action="store_true", help="the float64 reference (the default)")
    p.add_argument("--format", default=None, help="integer training in this Q format, e.g. q4.12")
    p.add_argument("--policy", default=None, metavar="SPEC",
                   help="a Q format per tensor class: CLASS=FORMAT pairs (classes weights, "
                        "acts, logits, grads, pgrads, adam_m, adam_v, master), a preset "
                        "(int16, int8), or a JSON file; e.g. weights=q2.6,acts=q4.4")
    p.add_argument("--rounding", default=None,
                   choices=["nearest", "floor", "stochastic", "pseudo", "kahan"],
                   help="how weight updates are rounded (default nearest, or the preset's)")
    p.add_argument("--master", default=None,
                   help="master-weight format for integer runs, e.g. q4.20, or 'none'")
    p.add_argument("--strict", action="store_true",
                   help="check every kernel intermediate the device forms against its bound "
                        "(int32, or the tighter one docs/arithmetic.md gives it)")
    p.add_argument("--out", default=None,
                   help="run folder (default: a new runs/FORMAT-seedS[-N])")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--checkpoint-every", type=_positive, default=100, metavar="N")
    p.add_argument("--samples", type=int, default=20, help="names to print at the end")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no samples")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sample", help="print names sampled from a trained run")
    p.add_argument("--checkpoint", required=True, help="a run folder or its checkpoint.bin")
    p.add_argument("-n", type=_positive, default=20, help="how many names (default 20)")
    p.add_argument("--temperature", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=None, help="default: the run's seed")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("export", help="write a run's float weights as a JSON state dict")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("import", help="make a run folder from a JSON state dict")
    p.add_argument("state_dict")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("bench", help="training speed and accuracy, float vs integer, side by side")
    p.add_argument("--formats", default="q4.12,q8.8")
    p.add_argument("--rounding", default="nearest", help="comma-separated rounding modes")
    p.add_argument("--steps", type=_positive, default=1000)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--repeats", type=_positive, default=3)
    p.add_argument("--data", default=None,
                   help="names file (default: ../shared/data/names-makemore.txt if present)")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("pack", help="write the training names as the firmware's packed dataset")
    p.add_argument("--data", default=None, help="names file (default: data/names.txt)")
    p.add_argument("--out", required=True, help="the packed file, e.g. names.bin")
    p.add_argument("--lowercase", action="store_true")
    p.add_argument("--skip-long", action="store_true")
    p.set_defaults(func=cmd_pack)

    p = sub.add_parser("conformance",
                       help="check the firmware's integers equal the simulator's, with ==")
    p.add_argument("--level", choices=["ops", "steps", "run", "all"], default="all",
                   help="ops: every op on golden vectors; steps: parameters, gradients and Adam "
                        "state after steps 1, 2, 10, 100; run: a whole 1000-step training "
                        "(makemore's names); all (default): the three")
    p.add_argument("--target", choices=["unix", "int32"], default="unix",
                   help="unix: the MicroPython unix port; int32: the firmware run by CPython "
                        "with every viper intermediate checked against int32")
    p.add_argument("--micropython", default=None,
                   help="a MicroPython unix binary (default: the one installed beside qgpt)")
    p.add_argument("--formats", default=None, help="comma-separated (default: the test set)")
    p.add_argument("--seed", type=int, default=None,
                   help="default: 0 for the op vectors, 42 for training")
    p.add_argument("--data", default=None,
                   help="names for the run level (default: ../shared/data/names-makemore.txt)")
    p.add_argument("--heapsize", default=None, help="the device heap, e.g. 96K")
    p.add_argument("--build", choices=["mpy", "py"], default="mpy",
                   help="mpy: firmware compiled with mpy-cross (default); py: from source")
    p.set_defaults(func=cmd_conformance)

    from qgpt.device import add_device_parser
    from qgpt.sweep import add_sweep_parser

    add_sweep_parser(sub)
    add_device_parser(sub)

    p = sub.add_parser("formats", help="list useful Q formats with width, range and step")
    p.set_defaults(func=cmd_formats)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (DataError, CheckpointError, training.RunError, UsageError, ValueError) as e:
        print(f"qgpt: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = {"train": "; the last checkpoint is kept (continue with --resume)"}
        print(f"qgpt: interrupted{hint.get(args.command, '')}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
