"""The raw-REPL session with a board: mpremote's SerialTransport on the port, a soft
reset on connecting (as `mpremote connect P exec ...` does), then short programs whose
output is read line by line as it comes. A reset the board prints, a broken port or a
silent board become BoardReset / BoardLost; a program's traceback a DeviceError."""

import ast
import contextlib
import io
import re
import time

from qgpt.device.errors import (
    BoardLost,
    BoardOutOfMemory,
    BoardReset,
    DeviceError,
    NotMicroPython,
    PortError,
)
from qgpt.device.port import BAUD, check_port_exists, diagnose_port

CONNECT_TIMEOUT = 10.0  # seconds for the raw REPL to answer
READ_TIMEOUT = 2.0  # one blocking serial read
IDLE_TIMEOUT = 120.0  # the longest silence of a running program

# What a board prints when it resets: a soft reboot, a MicroPython banner, the ESP32's
# ROM boot and panic messages, the emulator's hard reset.
RESET_LINE = re.compile(
    r"^(MPY: soft reboot|MicroPython \S+ on \d{4}-\d\d-\d\d;|rst:0x|ets \w{3} |"
    r"Guru Meditation Error|Brownout detector|fakeboard: hard reset)")


def py_str(text):
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



class Session:
    """The raw REPL of a MicroPython board on a serial port, through mpremote's
    SerialTransport: with Session(port) as s: s.run(code, on_line), s.exec(code),
    s.eval(expression); opening soft-resets the board and enters its raw REPL.
    transfer.Board adds files and the board's identity."""

    def __init__(self, port, timeout=CONNECT_TIMEOUT, soft_reset=True):
        self.port = port
        self.timeout = timeout
        self.soft_reset = soft_reset
        self.transport = None
        self.serial = None
        self._helpers = False  # board-side helpers (transfer.HELPERS) defined

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

