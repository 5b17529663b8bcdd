"""Conformance against the right target, or one clear line: builds for the architecture
the target reports (sys.implementation._mpy), setup errors before any level runs, the
built-in dataset by default, and the first divergence of a run named by step, array,
tensor and index (qgpt/conformance/build.py, cli.py, training.py)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from firmware_edit import edited_firmware

from qgpt import conformance as cf
from qgpt.firmware_build import NATIVE_ARCHS, mpy_arch

ROOT = Path(__file__).resolve().parent.parent

# A MicroPython that reports another architecture: it answers the probe with the
# real port's _mpy but its own arch bits, refuses (like a real port) any .mpy with
# native code for another arch (0: no native code, loads anywhere), and then runs
# the same firmware compiled for the host.
FAKE = '''#!{python}
import os, subprocess, sys
REAL, ARCH = {real!r}, {arch}
args = sys.argv[1:]
if "-c" in args and "qgpt-probe" in args[args.index("-c") + 1]:
    words = subprocess.run([REAL] + args, capture_output=True, text=True).stdout.split()
    print("qgpt-probe", words[1], (int(words[2]) & 0x3FF) | (ARCH << 10))
    sys.exit(0)
path = os.environ["MICROPYPATH"]
mpys = [n for n in os.listdir(path) if n.endswith(".mpy")]
for name in mpys:
    with open(os.path.join(path, name), "rb") as f:
        if f.read(4)[2] >> 2 not in (0, ARCH):
            print("ValueError: incompatible .mpy arch", file=sys.stderr)
            sys.exit(1)
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(f"{{len(mpys)}} {{args}}\\n")
env = dict(os.environ, MICROPYPATH=os.environ["FAKE_HOST_FIRMWARE"])
sys.exit(subprocess.run([REAL] + args, env=env).returncode)
'''


@pytest.fixture
def fake_target(tmp_path, monkeypatch):
    """make(arch name) -> the path of a fake MicroPython reporting that architecture."""
    real = cf.default_micropython()
    host = tmp_path / "host-firmware"
    host.mkdir()
    cf.build_firmware(host, "mpy", cf.probe(real).arch)
    monkeypatch.setenv("FAKE_HOST_FIRMWARE", str(host))
    monkeypatch.setenv("FAKE_LOG", str(tmp_path / "fake.log"))

    def make(arch):
        path = tmp_path / f"micropython-{arch}"
        path.write_text(FAKE.format(python=sys.executable, real=real,
                                    arch=NATIVE_ARCHS.index(arch)))
        path.chmod(0o755)
        return str(path)

    return make


def _log(tmp_path):
    return (tmp_path / "fake.log").read_text().splitlines()


def test_every_level_builds_for_the_architecture_the_target_reports(fake_target, tmp_path):
    fake = fake_target("armv7m")
    assert cf.probe(fake).arch == "armv7m" and cf.probe().arch != "armv7m"
    ops = cf.run_ops(("q4.12",), micropython=fake)
    assert ops.ok, ops.summary()
    steps = cf.run_steps(("q8.8",), ("stochastic",), extra=(), dump_steps=(1, 2),
                         micropython=fake)
    assert steps.ok, steps.summary()
    run = cf.run_run(cases=(("q4.12", "nearest", ""),), steps=30, samples=3,
                     micropython=fake)
    assert run.ok and run.rows[0][3] == 30 + 2 + 3 + 4, run.summary()  # + stalled, hash, ckpt
    log = _log(tmp_path)  # every device process saw armv7m .mpy files only
    n_modules = len(cf.firmware_modules())
    assert len(log) == 2 + 1 + 1 and all(line.startswith(f"{n_modules} ") for line in log)
    assert sum("conform_ops" in line for line in log) == 2
    assert sum("qgpt_train" in line for line in log) == 2


def test_the_host_build_is_refused_by_a_target_of_another_architecture(fake_target, tmp_path):
    # what conformance did before it read the target's architecture: -march=host
    fake = fake_target("x86")
    fw = tmp_path / "fw"
    fw.mkdir()
    cf.build_firmware(fw, "mpy", cf.probe().arch)
    assert mpy_arch((fw / "kernels.mpy").read_bytes()) == cf.probe().arch
    r = subprocess.run([fake, "-m", "conform_ops", "x"], capture_output=True, text=True,
                       env=dict(os.environ, MICROPYPATH=str(fw)))
    assert r.returncode == 1 and "incompatible .mpy arch" in r.stderr


@pytest.mark.parametrize("arch, words", [("rv64imc", "64-bit RISC-V"),
                                         ("xtensa", "ESP8266")])
def test_a_target_mpy_cross_cannot_serve_is_one_line(fake_target, arch, words):
    fake = fake_target(arch)
    r = subprocess.run([sys.executable, "-m", "qgpt", "conformance", "--level", "ops",
                        "--micropython", fake], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and r.stdout == "", r.stdout
    line = r.stderr.strip()
    assert "\n" not in line and fake in line and arch in line and words in line
    assert "Traceback" not in r.stderr


def _conformance(*args):
    return subprocess.run([sys.executable, "-m", "qgpt", "conformance", *args],
                          capture_output=True, text=True, cwd=ROOT)


@pytest.mark.parametrize("target, says", [
    ("/nonexistent/micropython", "cannot run it"),
    ("FOLDER", "cannot run it"),
    ("PYTHON", "not MicroPython"),
])
def test_a_target_that_cannot_run_is_one_setup_error(tmp_path, target, says):
    target = {"FOLDER": str(tmp_path), "PYTHON": sys.executable}.get(target, target)
    for level in ("ops", "all"):
        r = _conformance("--level", level, "--micropython", target)
        assert r.returncode == 2, r.stdout + r.stderr
        assert r.stdout == ""  # no "ok" rows, no mismatch count
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and target in lines[0] and says in lines[0], r.stderr
        assert "the device failed" not in r.stderr


def test_a_missing_names_file_is_an_error_not_a_skip(tmp_path):
    r = _conformance("--level", "run", "--data", str(tmp_path / "absent.txt"))
    assert r.returncode == 2 and r.stdout == "" and "SKIPPED" not in r.stderr
    assert r.stderr.count("\n") == 1 and "absent.txt: no such file" in r.stderr
    r = _conformance("--level", "run", "--data", str(tmp_path))  # a folder
    assert r.returncode == 2 and "is a folder" in r.stderr


def test_no_default_points_outside_the_repository():
    from qgpt.cli import build_parser

    sub = build_parser()._subparsers._group_actions[0].choices["conformance"]
    text = sub.format_help()
    assert "shared" not in text and "makemore" not in text and "data/names.txt" in text
    defaults = {a.dest: a.default for a in sub._actions}
    assert defaults["data"] is None and defaults["level"] == "all"
    src = "".join(p.read_text() for p in (ROOT / "qgpt" / "conformance").glob("*.py"))
    assert "../shared" not in src and '"shared"' not in src and "makemore.txt" not in src


def test_the_run_level_runs_on_the_built_in_names_by_default():
    report = cf.run_run(steps=60, samples=5)
    assert report.ok, report.summary()
    assert [r[:2] for r in report.rows] == [["q4.12", "nearest"], ["q4.12", "stochastic"],
                                            ["q4.12", "stochastic, master q4.20"]]


def test_a_hash_mismatch_names_the_first_step_array_tensor_and_index(tmp_path):
    # a firmware that flips the lowest bit of weight 100 after step 37 and trains on:
    # the state first differs after step 37, in params[100] alone
    hook = "        self.backward(T, alpha, key)\n"
    fw = edited_firmware(tmp_path, hook, hook + "        if step == 36:\n"
                         "            import uctypes\n"
                         "            uctypes.bytearray_at(self.bufs[2], 201)[200] ^= 1\n",
                         module="model.py")  # (self.bufs[2]: an address)
    report = cf.run_run(cases=(("q4.12", "nearest", ""),), steps=150, samples=0,
                        firmware_dir=fw)
    assert report.exit_code == 1
    text = "\n".join(str(m) for m in report.mismatches)
    assert "hash" in text
    first = [m for m in report.mismatches if m.what == "first divergence"]
    assert len(first) == 1 and first[0].step == 37, text
    at37 = [m for m in report.mismatches if m.step == 37 and m.what != "first divergence"]
    assert len(at37) == 1, text
    m = at37[0]
    assert m.flat == 100 and m.tensor == cf.tensor_at(100)[0] and m.device == m.simulator ^ 1
    assert m.what == "params" and f"step 37: params {m.tensor}" in str(m)
    assert "(flat index 100)" in str(m)
    assert not [m for m in report.mismatches if m.step is not None and m.step < 37
                and m.what != "loss_q16"]
    assert report.total >= 2 and f"{report.total} mismatches" in report.summary()
