"""qgpt device: train on a MicroPython board over USB, with esptool and mpremote.

    qgpt device flash --port P --firmware FILE.bin [--chip esp32]
    qgpt device deploy --port P [--format q4.12] [--data PATH] ...
    qgpt device train --port P [--steps N] [--checkpoint-every N] [--resume]
    qgpt device pull --port P --out RUN_DIR
    qgpt device conformance --port P [--formats q4.12]
    qgpt device emulate --dir DIR [--heapsize 96K]     a board without hardware

flash checks the image and the chip, then erases and writes MicroPython with
esptool (its `esptool.main`, as its own command line would). The other commands
talk to MicroPython's raw REPL through mpremote's SerialTransport (mpremote as a
library): a soft reset on connecting, as `mpremote connect P exec ...` does, then
short programs whose output is read line by line. Files move as base64 chunks and
land through a temporary file and a rename; each is checked by its CRC32.

The board's current folder holds (docs/DEVICE.md):

    *.mpy             the firmware (firmware/*.py compiled for the board's arch)
    names.bin         the packed training names (qgpt/pack.py)
    qgpt.json         the training configuration the firmware reads
    qgpt-deploy.json  what deploy put there, written last (a deploy is complete)
    ckpt.bin          the checkpoint (qgpt/checkpoint.py), written atomically by the board
    log.csv           per-step losses, if the firmware keeps them

On the host, train appends every line the board prints to RUN_DIR/device.log
(default runs/device), so pull can rebuild losses.csv when the board keeps none.

Every user-facing failure is a DeviceError (a ValueError): one line, which
`qgpt` prints as 'qgpt: error: ...' with exit code 2.

The package, one job per module, in the order a command uses them:

    errors.py       DeviceError and its kinds
    layout.py       the board's file names, the host's run folder, what makes a run
    port.py         the serial port: exists, busy, permission
    identity.py     BoardInfo (sys.implementation) and the boards qgpt supports
    session.py      the raw-REPL session (mpremote's SerialTransport), reading output
    transfer.py     Board: a session plus files with CRC32 checks and the board's info
    build.py        mpy-cross: the firmware compiled for the board's arch
    deploy.py, train.py, pull.py, conformance.py, flash.py: the commands
    stream.py       the trainer's output lines, live and from device.log
    commands.py     the argparse wiring (add_device_parser) and main
"""

from qgpt.device.build import compile_firmware, firmware_modules, mpy_cross_version
from qgpt.device.commands import add_device_parser, main
from qgpt.device.conformance import conformance
from qgpt.device.deploy import deploy
from qgpt.device.errors import (
    BoardLost,
    BoardOutOfMemory,
    BoardReset,
    DeviceError,
    NotMicroPython,
    PortError,
    UnsupportedBoard,
)
from qgpt.device.flash import check_image, flash
from qgpt.device.identity import MIN_VERSION, NATIVE_ARCHS, BoardInfo, check_supported, decode_mpy
from qgpt.device.layout import (
    BOARD_CKPT,
    BOARD_CONFIG,
    BOARD_DATA,
    BOARD_DEPLOY,
    BOARD_LOG,
    BOARD_REQUEST,
    DEFAULT_RUN_DIR,
    FIRMWARE_DIR,
    HOST_LOG,
    TRAIN_MODULE,
)
from qgpt.device.pull import pull, state_hash
from qgpt.device.stream import TrainStream, parse_line, read_sessions
from qgpt.device.train import train
from qgpt.device.transfer import Board

__all__ = [
    "BOARD_CKPT", "BOARD_CONFIG", "BOARD_DATA", "BOARD_DEPLOY", "BOARD_LOG", "BOARD_REQUEST",
    "DEFAULT_RUN_DIR", "FIRMWARE_DIR", "HOST_LOG", "MIN_VERSION", "NATIVE_ARCHS", "TRAIN_MODULE",
    "Board", "BoardInfo", "BoardLost", "BoardOutOfMemory", "BoardReset", "DeviceError",
    "NotMicroPython", "PortError", "TrainStream", "UnsupportedBoard", "add_device_parser",
    "check_image", "check_supported", "compile_firmware", "conformance", "decode_mpy", "deploy",
    "firmware_modules", "flash", "main", "mpy_cross_version", "parse_line", "pull",
    "read_sessions", "state_hash", "train",
]
