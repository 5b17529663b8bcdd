"""What lives where: the board's files (its current folder, docs/DEVICE.md), the
host's run folder, and the settings that make a run (a checkpoint belongs to one)."""

from qgpt.firmware_build import FIRMWARE_DIR  # noqa: F401

BOARD_CONFIG = "qgpt.json"
BOARD_DEPLOY = "qgpt-deploy.json"
BOARD_DATA = "names.bin"
BOARD_CKPT = "ckpt.bin"
BOARD_LOG = "log.csv"
BOARD_REQUEST = "conform-req.bin"
BOARD_RUN = "qgpt-run.json"  # the inputs of the run in progress (qgpt/device/inputs.py)
TRAIN_MODULE = "qgpt_train"  # the device's training entry point: main(config_path)
HOST_LOG = "device.log"
DEFAULT_RUN_DIR = "runs/device"

RUN_KEYS = ("format", "rounding", "master", "lr", "seed")  # what makes a checkpoint's run
