"""qgpt device: train on a MicroPython board over USB, with esptool and mpremote.

The argparse wiring of `qgpt device` (add_device_parser) and `python -m qgpt.device`
(main); each cmd_NAME calls the module of that name."""

import argparse
import re
import sys

from qgpt import argtypes
from qgpt.argtypes import positive
from qgpt.device.conformance import conformance
from qgpt.device.deploy import deploy
from qgpt.device.errors import DeviceError
from qgpt.device.flash import flash
from qgpt.device.layout import DEFAULT_RUN_DIR, HOST_LOG
from qgpt.device.paths import folder_to_write, link_to_make, make_folder, remove_if_empty
from qgpt.device.pull import pull
from qgpt.device.session import CONNECT_TIMEOUT, IDLE_TIMEOUT
from qgpt.device.train import train
from qgpt.policy import UPDATE_ROUNDINGS


def cmd_flash(args):
    flash(args.port, args.firmware, args.chip, args.baud)
    return 0


def cmd_deploy(args):
    if args.policy is not None and not args.policy.strip():
        raise DeviceError("--policy is empty: want a SPEC such as weights=q4.12,acts=q6.10")
    deploy(args.port, args.data, args.format, args.rounding, args.master or "", args.lr,
           args.seed, args.steps, args.checkpoint_every, args.lowercase, args.skip_long,
           args.discard_checkpoint, args.timeout, policy=args.policy or "")
    return 0


def cmd_train(args):
    train(args.port, args.steps, args.checkpoint_every, args.resume, args.discard_checkpoint,
          args.stop_at, args.out, args.timeout, args.idle_timeout, progress=not args.quiet)
    return 0


def cmd_pull(args):
    pull(args.port, args.out, args.log, args.timeout)
    return 0


def cmd_conformance(args):
    from qgpt.qformat import parse

    formats = args.formats.split(",") if args.formats else None
    for f in formats or ():
        parse(f)
    return conformance(args.port, formats, args.seed, args.timeout).exit_code


def cmd_emulate(args):
    from qgpt import fakeboard

    heapsize = args.heapsize or fakeboard.HEAPSIZE
    if not re.fullmatch(r"\d+[KkMm]?", heapsize):
        raise DeviceError(f"--heapsize {heapsize}: want a size like 128K or 4M")
    folder = folder_to_write(args.dir, "--dir")
    link = link_to_make(args.link, "--link") if args.link is not None else None
    created = make_folder(folder, "--dir")
    try:
        return fakeboard.emulate(folder, heapsize, args.micropython, link)
    finally:  # a board that did not start leaves no empty folders behind
        remove_if_empty(created)


def add_device_parser(subparsers):
    """Register `qgpt device` and its subcommands on the CLI's subparsers."""
    parser = subparsers.add_parser(
        "device", help="train on a MicroPython board over USB (flash, deploy, train, pull, ...)",
        description=__doc__.splitlines()[0])
    _add_subcommands(parser)
    return parser


def _add_subcommands(parser):
    sub = parser.add_subparsers(dest="device_command", required=True)

    def command(name, text):
        return sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")

    def with_port(p):
        p.add_argument("--port", required=True, help="the board's serial port, e.g. /dev/ttyUSB0")
        p.add_argument("--timeout", type=argtypes.seconds, default=CONNECT_TIMEOUT,
                       help=f"seconds to wait for the raw REPL (default {CONNECT_TIMEOUT:g})")
        return p

    p = command("flash", "check the image and chip, erase, write MicroPython (esptool)")
    p.add_argument("--port", required=True, help="the board's serial port, e.g. /dev/ttyUSB0")
    p.add_argument("--firmware", required=True, help="the MicroPython .bin, e.g. ESP32_GENERIC-"
                   "v1.25.0.bin from micropython.org/download")
    p.add_argument("--chip", default="esp32", help="esptool's chip name (default esp32)")
    p.add_argument("--baud", type=positive, default=460800,
                   help="flashing speed in bits/s (default 460800)")
    p.set_defaults(func=cmd_flash)

    p = with_port(command("deploy", "compile the firmware for the board and copy it, the "
                          "packed dataset and qgpt.json"))
    p.add_argument("--format", default=None,
                   help="the data format: weights and acts (default q4.12)")
    p.add_argument("--policy", default=None, metavar="SPEC",
                   help="the precision policy, as qgpt train --policy: CLASS=FORMAT pairs, a "
                        "preset (int8, int16) or a JSON file; resolved and checked here")
    p.add_argument("--rounding", default=None, choices=list(UPDATE_ROUNDINGS),
                   help="how weight updates are rounded (default: the policy's, else nearest)")
    p.add_argument("--master", default=None,
                   help="master-weight format, e.g. q4.20, or 'none' (default: the policy's)")
    p.add_argument("--lr", type=argtypes.learning_rate, default=0.01,
                   help="peak learning rate, 0 < lr < 1 (default 0.01)")
    p.add_argument("--seed", type=argtypes.seed, default=42,
                   help="fixes init, data order, rounding, sampling (default 42)")
    p.add_argument("--steps", type=argtypes.steps, default=1000,
                   help="training steps (default 1000)")
    p.add_argument("--checkpoint-every", type=positive, default=100, metavar="N",
                   help="the board saves a checkpoint every N steps (default 100)")
    p.add_argument("--data", default=None, help="names file (default data/names.txt)")
    p.add_argument("--lowercase", action="store_true",
                   help="lowercase names and drop those with characters outside a-z")
    p.add_argument("--skip-long", action="store_true", help="skip names longer than 15 letters")
    p.add_argument("--discard-checkpoint", action="store_true",
                   help="delete a checkpoint of another run on the board")
    p.set_defaults(func=cmd_deploy)

    p = with_port(command("train", "train on the board, streaming its progress"))
    p.add_argument("--steps", type=argtypes.steps, default=None, help="default: the deployed value")
    p.add_argument("--checkpoint-every", type=positive, default=None, metavar="N",
                   help="a checkpoint every N steps (default: the deployed value)")
    p.add_argument("--resume", action="store_true", help="continue from the board's checkpoint")
    p.add_argument("--discard-checkpoint", action="store_true",
                   help="start over, deleting the board's checkpoint")
    p.add_argument("--stop-at", type=positive, default=None, metavar="STEP",
                   help="stop after this step, as an interrupted run (then --resume)")
    p.add_argument("--out", default=DEFAULT_RUN_DIR,
                   help=f"host folder for the streamed log (default {DEFAULT_RUN_DIR})")
    p.add_argument("--idle-timeout", type=argtypes.seconds, default=IDLE_TIMEOUT,
                   help=f"seconds of silence after which the board counts as lost (default "
                   f"{IDLE_TIMEOUT:g})")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = with_port(command("pull", "bring the checkpoint and log back as a run folder"))
    p.add_argument("--out", required=True, help="the run folder (qgpt sample --checkpoint it)")
    p.add_argument("--log", default=None,
                   help=f"the log train streamed (default OUT/{HOST_LOG}, else "
                   f"{DEFAULT_RUN_DIR}/{HOST_LOG})")
    p.set_defaults(func=cmd_pull)

    p = with_port(command("conformance", "the op-level conformance on the board"))
    p.add_argument("--formats", default=None,
                   help="comma-separated (default: the deployed format)")
    p.add_argument("--seed", type=argtypes.seed, default=0,
                   help="the seed of the golden vectors (default 0)")
    p.set_defaults(func=cmd_conformance)

    p = command("emulate", "a board without hardware: the MicroPython unix port behind a "
                "pseudo-terminal; prints its port")
    p.add_argument("--dir", required=True, help="the board's filesystem (created if missing)")
    p.add_argument("--heapsize", default=None,
                   help="the board's heap (default 96K: an ESP32 has about 100 KB; the 64-bit "
                   "unix port trains from 90K, with master weights from 112K)")
    p.add_argument("--micropython", default=None, help="the unix port (default: the venv's)")
    p.add_argument("--link", default=None, help="also make this symlink to the port")
    p.set_defaults(func=cmd_emulate)


def main(argv=None):
    """`python -m qgpt.device flash|deploy|...`: `qgpt device` alone, with qgpt's error
    handling (one line 'qgpt: error: ...', exit code 2)."""
    parser = argparse.ArgumentParser(prog="qgpt device", description=__doc__.splitlines()[0])
    _add_subcommands(parser)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ValueError as e:
        print(f"qgpt: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = {"train": "; the board's last checkpoint is kept (continue with --resume)"}
        print(f"qgpt: interrupted{hint.get(args.device_command, '')}", file=sys.stderr)
        return 130



