"""Where the firmware is and what it consists of: shared by `qgpt conformance` and
`qgpt device`, which both build it for a MicroPython.

    FIRMWARE_DIR            the repository's firmware/ folder
    firmware_modules(dir)   the names of its modules: every *.py in the folder, sorted
"""

from pathlib import Path

FIRMWARE_DIR = Path(__file__).resolve().parent.parent / "firmware"


class FirmwareBuildError(ValueError):
    """The firmware cannot be built for a target (one line, worded for the user)."""


def firmware_modules(firmware_dir=None):
    """The firmware's module names: every *.py file of firmware_dir, sorted, so that a
    module added to or split in firmware/ is built without an edit here."""
    firmware_dir = Path(firmware_dir or FIRMWARE_DIR)
    mods = sorted(p.stem for p in firmware_dir.glob("*.py"))
    if not mods:
        raise FirmwareBuildError(f"{firmware_dir}: no firmware modules (*.py)")
    return mods
