"""The firmware a target runs: the MicroPython and mpy-cross to use, and the build."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from qgpt.firmware_build import FIRMWARE_DIR, firmware_modules


def default_micropython():
    """The unix port next to this Python (the venv's), else the one on PATH."""
    here = Path(sys.executable).parent / "micropython"
    return str(here) if here.exists() else (shutil.which("micropython") or "micropython")


def default_mpy_cross():
    here = Path(sys.executable).parent / "mpy-cross"
    return str(here) if here.exists() else shutil.which("mpy-cross")


def build_firmware(dest, build="mpy", mpy_cross=None, source_dir=FIRMWARE_DIR):
    """Put the device side in dest: .mpy files compiled for the host (as a board gets
    its own arch's, with the same short source names as qgpt/device.py: each is an
    interned string on the device), or the .py sources (build="py", compiled by the
    port itself)."""
    for mod in firmware_modules(source_dir):
        src = Path(source_dir) / f"{mod}.py"
        if build == "py":
            shutil.copy(src, Path(dest) / src.name)
            continue
        cmd = [mpy_cross or default_mpy_cross(), "-march=host", "-s", f"{mod}.py", "-o",
               str(Path(dest) / f"{mod}.mpy"), str(src)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"mpy-cross failed on {src}: {r.stderr.strip()}")


def device_env(firmware_dir):
    """The environment of a device process: MICROPYPATH the firmware (the unix port),
    and this checkout first on PYTHONPATH (the int32 target runs qgpt's emulator)."""
    repo = str(Path(__file__).resolve().parent.parent.parent)
    path = os.environ.get("PYTHONPATH")
    return dict(os.environ, MICROPYPATH=str(firmware_dir),
                PYTHONPATH=repo + (os.pathsep + path if path else ""))


def firmware_build(dest, target="unix", build="mpy", source_dir=FIRMWARE_DIR):
    """The firmware folder a target runs: compiled into dest (unix), or the sources."""
    if target == "int32":
        return Path(source_dir)
    Path(dest).mkdir(parents=True, exist_ok=True)
    build_firmware(dest, build, source_dir=source_dir)
    return Path(dest)
