"""Training on the device: the firmware's steps, runs, checkpoints and memory equal
the host simulator's, value for value (qgpt/conformance/training.py, levels "steps",
"run").

The device is the MicroPython unix port running firmware/qgpt_train.py (the run
protocol of firmware/README.md), or the same firmware in CPython with every viper
intermediate checked against int32 (target "int32").
"""

import ast
import json
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

from qgpt import checkpoint, train
from qgpt import conformance as cf
from qgpt.params import N_PARAMS

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE = ROOT / "firmware"


def _text(report):
    return report.summary() + "\n" + "\n".join(str(m) for m in report.mismatches[:20])


@pytest.fixture(scope="module")
def device(tmp_path_factory):
    """A compiled firmware and the packed built-in names, shared by the module."""
    tmp = tmp_path_factory.mktemp("device")
    fw = cf.firmware_build(tmp / "firmware")
    names = cf.pack_names(None, tmp / "names.bin")
    return {"fw": fw, "data": tmp / "names.bin", "names": names}


def _train(device, folder, case, heapsize=cf.TRAIN_HEAPSIZE, **cfg):
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = cf.device_config(case, cfg.pop("data", device["data"]), **cfg)
    proc = cf.start_training(config, folder, heapsize=heapsize, firmware_dir=device["fw"])
    return cf.finish_training(proc, folder)


# --- level "steps": params, gradients and Adam state after steps 1, 2, 10 (and 100) ---


def test_steps_q412_q88_nearest_and_stochastic():
    report = cf.run_steps(("q4.12", "q8.8"), ("nearest", "stochastic"), extra=(),
                          dump_steps=(1, 2, 10))
    assert report.ok, _text(report)
    assert [r[:3] for r in report.rows] == [["q4.12", "nearest", 10], ["q4.12", "stochastic", 10],
                                            ["q8.8", "nearest", 10], ["q8.8", "stochastic", 10]]
    # per case: 10 losses, 3 dumps of params, grad, m, v, the stalled count, the final hash
    assert all(r[3] == 10 + 3 * 4 * N_PARAMS + 2 for r in report.rows)


def test_steps_every_format_rounding_and_master_to_step_100():
    report = cf.run_steps()  # every format x nearest, floor, stochastic; masters
    assert report.ok, _text(report)
    assert len(report.rows) == 3 * len(cf.FORMATS) + len(cf.STEPS_EXTRA)
    assert all(r[2] == 100 for r in report.rows)
    assert {f for f, *_ in report.rows} == set(cf.FORMATS)
    for master in ("q4.20", "q4.27", "q1.30"):  # 31-bit masters included
        assert any(f"master {master}" in r[1] for r in report.rows)


def test_steps_under_precision_policies():
    # 8-bit containers, Fw != Fa (the embedding's shift), block-scaled Adam state, the
    # pseudo-stochastic and Kahan updates: what `qgpt train --policy SPEC` trains
    report = cf.run_steps((), (), extra=(), policies=cf.STEPS_POLICIES, dump_steps=(1, 2, 10))
    assert report.ok, _text(report)
    assert [r[1].split(", policy ")[1] for r in report.rows] == [
        cf.policy_case(s).label for s in cf.STEPS_POLICIES]  # a preset's name, or the short SPEC
    assert {r[1].split(",")[0] for r in report.rows} >= {"kahan", "nearest", "pseudo"}


def test_steps_on_the_int32_target_in_every_format():
    # every viper intermediate of whole training steps checked against int32, as a
    # 32-bit board computes them (the x86-64 unix port cannot show an overflow)
    report = cf.run_steps(cf.FORMATS, ("nearest",), extra=(("q4.12", "stochastic", "q4.27"),),
                          dump_steps=(1, 2), target="int32")
    assert report.ok, _text(report)
    assert "32-bit viper" in report.device and len(report.rows) == len(cf.FORMATS) + 1


@pytest.mark.slow
def test_steps_on_the_int32_target_every_case_to_step_10():
    report = cf.run_steps(dump_steps=(1, 2, 10), target="int32")
    assert report.ok, _text(report)


def test_a_wrong_firmware_is_named_by_step_tensor_and_index(tmp_path):
    # a firmware whose relu backward skips position 0: from step 1 on, mlp_fc1's
    # gradient differs (and what flows back from it), not lm_head's or mlp_fc2's
    fw = tmp_path / "firmware"
    shutil.copytree(FIRMWARE, fw)
    src = (fw / "model.py").read_text()
    good = "K.relu_backward(0, 0, dh, h, 0, T * _M, bg, ba)"
    assert good in src
    bad = "K.relu_backward(0, 0, dh, h, _M, T * _M - _M, bg, ba)"
    (fw / "model.py").write_text(src.replace(good, bad))
    report = cf.run_steps(("q4.12",), ("nearest",), extra=(), dump_steps=(1, 2),
                          firmware_dir=fw)
    assert report.exit_code == 1 and "FAIL" in report.summary()
    grads = {m.tensor: m for m in report.mismatches if m.what == "grad" and m.step == 1}
    assert "layer0.mlp_fc1" in grads
    assert "lm_head" not in grads and "layer0.mlp_fc2" not in grads
    assert report.total > len(report.mismatches)  # every differing value is counted
    assert f"{report.total} mismatches ({len(report.mismatches)} listed)" in report.summary()
    m = grads["layer0.mlp_fc1"]
    assert (m.level, m.fmt, m.case) == ("steps", "q4.12", "nearest")
    row, col = m.index
    assert m.flat == 2144 + 16 * row + col  # mlp_fc1 starts at 2144 in the table
    assert str(m) == (f"steps q4.12 nearest, step 1: grad layer0.mlp_fc1[{row}][{col}] "
                      f"(flat index {m.flat}) device {m.device} != simulator {m.simulator}")


def test_the_command_exits_non_zero_on_a_device_failure(tmp_path):
    fw = tmp_path / "firmware"
    shutil.copytree(FIRMWARE, fw)
    (fw / "model.py").write_text((fw / "model.py").read_text().replace(
        "def train_step(self, T, step, num_steps):",
        "def train_step(self, T, step, num_steps):\n        raise ValueError('broken')"))
    out = tmp_path / "out.txt"
    with open(out, "w") as f:
        code = cf.conformance_steps(("q4.12",), dump_steps=(1,), roundings=("nearest",),
                                    extra=(), firmware_dir=fw, out=f)
    assert code == 1
    assert "steps q4.12 nearest: the device failed" in out.read_text()


# --- resume, checkpoints, samples ---


def test_resume_continues_bit_exactly(device, tmp_path):
    case = cf.TrainCase("q8.8", "stochastic")
    whole = _train(device, tmp_path / "whole", case, stop_at=30, samples=3)
    assert not whole.failure, whole.failure
    part = tmp_path / "parts"
    first = _train(device, part, case, stop_at=12, checkpoint_every=5)
    assert first.ckpts == [5, 10, 12] and first.done["step"] == 12
    second = _train(device, part, case, stop_at=30, samples=3, resume=True)
    assert not second.failure, second.failure
    assert "from=12 to=30" in second.start
    assert second.done["hash"] == whole.done["hash"]
    assert second.samples == whole.samples and len(whole.samples) == 3
    assert {**first.losses, **second.losses} == whole.losses
    # and the simulator agrees
    model, losses, _ = cf.simulate(case, device["names"], 30)
    assert whole.done["hash"] == cf.state_hash(model.store, model.opt.m, model.opt.v)
    assert [whole.losses[i + 1] for i in range(30)] == losses


def test_the_host_loads_a_device_checkpoint_and_samples_the_same_names(device, tmp_path):
    case = cf.TrainCase("q4.12", "nearest")
    run = _train(device, tmp_path, case, stop_at=40, samples=6, temperature=0.5)
    assert not run.failure, run.failure
    model, cfg = train.load_run(tmp_path / "ckpt.bin")
    assert (cfg.format, cfg.rounding, cfg.seed, cfg.steps) == ("q4.12", "nearest", 42, 1000)
    assert train.sample(model, n=6, temperature=0.5, seed=cfg.seed) == run.samples
    meta, arrays = checkpoint.load(tmp_path / "ckpt.bin")
    assert meta["step"] == 40 and meta["steps_taken"] == 40 and meta["saturations"] == {}
    assert cf.state_hash(arrays["params"], arrays["adam_m"], arrays["adam_v"]) == run.done["hash"]
    host, _, _ = cf.simulate(case, device["names"], 40)
    assert np.array_equal(model.store, host.store)
    assert (meta["p1"], meta["p2"]) == (host.opt.p1, host.opt.p2)


def test_master_weights_checkpoint_and_resume(device, tmp_path):
    case = cf.TrainCase("q4.12", "stochastic", "q4.20")
    heap = cf.TRAIN_HEAPSIZE_MASTER
    whole = _train(device, tmp_path / "whole", case, heapsize=heap, stop_at=8, samples=2)
    _train(device, tmp_path / "parts", case, heapsize=heap, stop_at=3)
    second = _train(device, tmp_path / "parts", case, heapsize=heap, stop_at=8, samples=2,
                    resume=True)
    assert not second.failure, second.failure
    assert second.done["hash"] == whole.done["hash"] and second.samples == whole.samples
    model, _ = train.load_run(tmp_path / "whole" / "ckpt.bin")
    assert train.sample(model, n=2, seed=42) == whole.samples


def _flip(path, offset):
    b = bytearray(Path(path).read_bytes())
    b[offset] ^= 0x10
    Path(path).write_bytes(bytes(b))


def test_a_damaged_checkpoint_is_refused_with_a_clear_message(device, tmp_path):
    case = cf.TrainCase("q4.12", "nearest")
    assert not _train(device, tmp_path, case, stop_at=3).failure
    ckpt = tmp_path / "ckpt.bin"
    good = ckpt.read_bytes()
    for damage, want in (
        (lambda: _flip(ckpt, len(good) // 2), "ckpt.bin: corrupted or truncated (CRC32 mismatch)"),
        (lambda: ckpt.write_bytes(good[:-100]), "ckpt.bin: corrupted or truncated"),
        (lambda: ckpt.write_bytes(b"NOPE" + good[4:]), "ckpt.bin: not a qgpt checkpoint"),
    ):
        ckpt.write_bytes(good)
        damage()
        run = _train(device, tmp_path, case, stop_at=6, resume=True)
        assert run.code == 1 and run.errors and want in run.errors[0], run.stdout
        assert not run.losses and not run.done
    # a save cut short between remove and rename (FAT): only ckpt.bin.tmp is left
    ckpt.write_bytes(good)
    ckpt.rename(tmp_path / "ckpt.bin.tmp")
    run = _train(device, tmp_path, case, stop_at=6, resume=True)
    assert run.code == 1 and "rename it to ckpt.bin to resume" in run.errors[0]
    (tmp_path / "ckpt.bin.tmp").unlink()
    # other settings: refused, saying which
    ckpt.write_bytes(good)
    run = _train(device, tmp_path, cf.TrainCase("q4.12", "floor"), stop_at=6, resume=True)
    assert run.code == 1 and "other settings (rounding)" in run.errors[0]


def test_bad_configs_and_datasets_are_refused(device, tmp_path):
    fw = device["fw"]

    def run_with(config, folder):
        folder.mkdir()
        proc = cf.start_training(config, folder, firmware_dir=fw)
        return cf.finish_training(proc, folder)

    base = cf.device_config(cf.TrainCase("q4.12", "nearest"), device["data"], stop_at=1)
    r = run_with({**base, "stpes": 3}, tmp_path / "a")
    assert r.code == 1 and "unknown key 'stpes'" in r.errors[0]
    r = run_with({**base, "format": "q9.9"}, tmp_path / "b")
    assert r.code == 1 and "format q9.9" in r.errors[0]
    r = run_with({**base, "data": "missing.bin"}, tmp_path / "c")
    assert r.code == 1 and "data missing.bin: no such file" in r.errors[0]
    damaged = tmp_path / "damaged.bin"
    shutil.copy(device["data"], damaged)
    _flip(damaged, 1000)
    r = run_with({**base, "data": str(damaged)}, tmp_path / "d")
    assert r.code == 1 and "corrupted or truncated" in r.errors[0]


# --- the linear kernels' max |W| bound (model.Model.train_step) ---


_WMAX_CHECK = """
        if self.nb[0] == 2:  # (test) the bound against a scan, after every step
            off = self.nums[0]
            print("WMAX", min(self.bufs[5][j]
                              - K.abs_max(0, 0, self.bufs[1][j], off[j + 1] - off[j], 2)
                              for j in range(_LM_HEAD, _FC2 + 1)))
"""


def test_the_max_w_bound_holds_between_scans(device, tmp_path):
    # The fast paths are exact only while wmax >= max |W|; between its scans (every 16
    # steps) train_step raises wmax by Adam's largest move. A copy of the firmware prints
    # wmax - max |W| after every step: q8.8 at lr 0.05 comes within a few steps of the
    # bound (its smallest slack over 200 steps is 12: experiments/fwperf/wmax_bound.py),
    # and master weights move the data weights through their requantization.
    src = tmp_path / "src"
    src.mkdir()
    for path in FIRMWARE.glob("*.py"):
        text = path.read_text()
        if path.name == "model.py":
            anchor = "        c[3] += 1  # steps_taken\n"
            assert anchor in text
            text = text.replace(anchor, anchor + _WMAX_CHECK)
        (src / path.name).write_text(text)
    fw = cf.firmware_build(tmp_path / "fw", source_dir=src)
    # (a smaller lr keeps q8.8's slack at 3: a bound raised by 3 less than Adam's largest
    # move, train_step's `+ 3` as `- 3`, falls 47 below max |W| there)
    for i, (spec, rounding, lr) in enumerate((("weights=q8.8", "nearest", 0.05),
                                              ("weights=q8.8", "nearest", 0.002),
                                              ("int16,master=q4.20", "stochastic", 0.05))):
        case = cf.policy_case(spec, rounding, lr)
        folder = tmp_path / f"run{i}"
        folder.mkdir()
        config = cf.device_config(case, device["data"], stop_at=40)
        run = cf.finish_training(cf.start_training(config, folder, heapsize=cf.device_heap(case),
                                                   firmware_dir=fw), folder)
        assert not run.failure, run.failure
        slack = [int(line.split()[1]) for line in run.stdout.splitlines()
                 if line.startswith("WMAX ")]
        assert len(slack) == 40 and min(slack) >= 0, (spec, slack)


# --- memory ---


def test_training_fits_a_96k_heap_and_reports_its_peak(device, tmp_path):
    # issue 4: exactly -X heapsize=96K (firmware/README.md, "Memory": the 64-bit unix
    # port trains from about 90K), with checkpoints, debug dumps, samples, and a
    # resume; the step loop allocates nothing that survives a step
    case = cf.TrainCase("q4.12", "nearest")
    run = _train(device, tmp_path, case, heapsize="96K", stop_at=20, checkpoint_every=10,
                 samples=2, dump_steps=[3])
    assert not run.failure, run.failure
    start_heap = int(run.start.split("heap=")[1])
    assert start_heap <= run.done["heap_peak"] < 88 * 1024  # about 83.2 KB and 85.3 KB
    assert run.done["heap_peak"] - start_heap < 4096
    again = _train(device, tmp_path, case, heapsize="96K", stop_at=25, samples=2, resume=True)
    assert not again.failure, again.failure
    assert "from=20 to=25" in again.start and again.done["heap_peak"] < 88 * 1024


def _train_resume_int8(device, folder, heapsize):
    """One session of 6 steps, and 3 steps then a resume to 6 (--policy int8: 8-bit
    containers, block-scaled Adam state, Kahan updates), at heapsize."""
    case = cf.policy_case("int8")
    # the sessions' folders beside the firmware and the dataset, as the conformance levels
    # place them (MICROPYPATH "../firmware", the dataset "../names.bin"): the port builds
    # its module paths from MICROPYPATH on the device's heap, so a longer one (pytest's
    # "../../device0/firmware") moves the heap, and at 56K that ran out of memory
    home = device["fw"].parent
    assert device["data"].parent == home
    whole_dir, parts_dir = home / f"{folder.name}-whole", home / f"{folder.name}-parts"
    data = "../" + device["data"].name
    whole = _train(device, whole_dir, case, heapsize=heapsize, stop_at=6, samples=2,
                   data=data)
    first = _train(device, parts_dir, case, heapsize=heapsize, stop_at=3,
                   checkpoint_every=2, data=data)
    second = _train(device, parts_dir, case, heapsize=heapsize, stop_at=6, samples=2,
                    resume=True, data=data)
    return case, whole, first, second


def test_int8_trains_and_resumes_in_its_heap(device, tmp_path):
    # issue 13 (firmware/README.md, "Memory"): the int8 preset from TRAIN_HEAPSIZE_INT8
    # on the 64-bit unix port, through the setup's stages, a checkpoint, a resume and
    # the samples; bit-exact with one session and with the simulator
    case, whole, first, second = _train_resume_int8(device, tmp_path, cf.TRAIN_HEAPSIZE_INT8)
    for run in (whole, first, second):
        assert not run.failure, run.failure
    assert first.ckpts == [2, 3] and "from=3 to=6" in second.start
    assert second.done["hash"] == whole.done["hash"] and second.samples == whole.samples
    assert {**first.losses, **second.losses} == whole.losses
    model, losses, _ = cf.simulate(case, device["names"], 6)
    assert whole.done["hash"] == cf.model_hash(model)
    assert [whole.losses[i + 1] for i in range(6)] == losses
    assert int(whole.start.split("heap=")[1]) < 55 * 1024  # about 53.5 KB after setup


def test_int8_in_the_issues_56k(device, tmp_path):
    # issue 13's target: --policy int8 under -X heapsize=56K on the 64-bit unix port (the
    # smallest heap of firmware/tools/heap_by_policy.py), one session, and a checkpoint
    # then a resume, bit-exact with each other
    _, whole, first, second = _train_resume_int8(device, tmp_path, "56K")
    for run in (whole, first, second):
        assert not run.failure, run.failure
    assert second.done["hash"] == whole.done["hash"] and second.samples == whole.samples


def test_the_plain_python_crc32_of_ports_without_binascii_is_zlibs():
    # firmware/crcpy.py (ckpt.py imports it only where binascii.crc32 is missing): plain
    # Python, so CPython runs it; zlib's CRC32 is the oracle, whole and chained
    import importlib.util
    import zlib

    spec = importlib.util.spec_from_file_location("crcpy", FIRMWARE / "crcpy.py")
    crcpy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(crcpy)
    data = bytes(range(256)) * 3 + b"QGPT"
    for n in (0, 1, 5, 257, len(data)):
        assert crcpy.crc32(data[:n]) == zlib.crc32(data[:n]), n
        assert crcpy.crc32(data[n:], crcpy.crc32(data[:n])) == zlib.crc32(data), n


def test_the_names_stay_below_the_qstr_pools_threshold(device, tmp_path):
    # every distinct name the firmware loads is interned for good; past 300 MicroPython
    # allocates a 320-entry pool in one 3.5 KB piece (1.8 KB on a 32-bit board), so a
    # run that resumes, dumps and samples (every module) stays well below it
    first = _train(device, tmp_path, cf.TrainCase("q4.12", "nearest"), stop_at=2)
    assert not first.failure, first.failure
    config = cf.device_config(cf.TrainCase("q4.12", "nearest"), device["data"], stop_at=4,
                              resume=True, dump_steps=[3], samples=2)
    (tmp_path / "qgpt.json").write_text(json.dumps(config))
    r = subprocess.run([cf.default_micropython(), "-X", f"heapsize={cf.TRAIN_HEAPSIZE}", "-c",
                        "import micropython, qgpt_train\nqgpt_train.main('qgpt.json')\n"
                        "micropython.qstr_info()"], cwd=tmp_path, capture_output=True,
                       text=True, env={**os.environ, "MICROPYPATH": str(device["fw"])})
    assert "from=2 to=4" in r.stdout and "done step 4" in r.stdout, r.stdout + r.stderr
    n_qstr = int(r.stdout.split("n_qstr=")[1].split(",")[0])
    assert n_qstr <= 285, f"{n_qstr} interned names: near the pool of 300 (see the comment)"


def _module_values_of(name):
    """Module-level NAME = literal of a firmware file."""
    values = {}
    for node in ast.parse((FIRMWARE / name).read_text()).body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            values[node.targets[0].id] = node.value.value
    return values


def test_the_firmwares_copies_of_the_shape_agree_with_the_table():
    # model.py, sampling.py, layout.py, runbase.py and qgpt_train.py carry the shape as
    # consts, so that the params module stays out of memory (firmware/README.md, "Memory")
    from qgpt import params

    def consts(name):
        values = {"const": lambda x: x}
        for node in ast.parse((FIRMWARE / name).read_text()).body:
            if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
                    and getattr(node.value.func, "id", "") == "const"):
                values[node.targets[0].id] = eval(compile(ast.Expression(node.value), name,
                                                          "eval"), {"__builtins__": {}}, values)
        return values

    m, smp = consts("model.py"), consts("sampling.py")
    shape = (params.BLOCK, params.BOS, params.VOCAB, params.N_PARAMS)
    assert (m["BLOCK"], m["BOS"], m["VOCAB"], m["N_PARAMS"]) == shape
    assert (m["_T"], m["_V"], m["_C"], m["_NH"], m["_HS"], m["_M"], m["_N"]) == (
        params.BLOCK, params.VOCAB, params.N_EMBD, params.N_HEAD, params.HEAD_DIM,
        params.MLP_HIDDEN, params.N_PARAMS)
    assert m["_GRAD_MAX"] == params.BLOCK * params.VOCAB and smp["_V"] == params.VOCAB
    names = [name for name, _ in params.PARAMS]
    assert [m[k] for k in ("_WTE", "_WPE", "_LM_HEAD", "_WQ", "_WK", "_WV", "_WO", "_FC1",
                           "_FC2")] == [names.index(n) for n in (
        "wte", "wpe", "lm_head", "layer0.attn_wq", "layer0.attn_wk", "layer0.attn_wv",
        "layer0.attn_wo", "layer0.mlp_fc1", "layer0.mlp_fc2")]
    T, V, C, M, NH = params.BLOCK, params.VOCAB, params.N_EMBD, params.MLP_HIDDEN, params.N_HEAD
    # the largest state block (model.block_bytes): int32 Adam m and v, 16-bit weights,
    # activations and gradients, the I/O chunk
    act = 2 * NH * T * T + 4 * T * V + 2 * 2 * T * M + 11 * 2 * T * C + 3 * 8 * T + 4 * T
    lay, cfg = consts("layout.py"), consts("runcfg.py")
    assert cfg["_LARGEST_BLOCK"] == 10 * params.N_PARAMS + act + 4 * m["_CHUNK"]
    assert cfg["_N"] == params.N_PARAMS
    assert consts("statebytes.py")["_CHUNK"] == m["_CHUNK"] == consts("ckpt.py")["_CHUNK"]
    assert consts("restore.py")["_CHUNK"] == consts("resume.py")["_CHUNK"] == m["_CHUNK"]
    assert consts("ckpt.py")["_N"] == consts("statebytes.py")["_N"] == params.N_PARAMS
    assert [lay[k] for k in ("_N", "_T", "_C", "_NH", "_M", "_V", "_CHUNK", "_PIECE")] == [
        m[k] for k in ("_N", "_T", "_C", "_NH", "_M", "_V", "_CHUNK", "_GRAD_MAX")]
    assert consts("runbase.py")["RECORD"] == params.BLOCK
    # resume.py checks checkpoints without ckpt.py (firmware/README.md, "Memory"): its
    # copies of the container's magic and version, and of the Kahan rounding mode
    from qgpt import checkpoint

    rsm, ck = consts("resume.py"), _module_values_of("ckpt.py")
    assert (rsm["_MAGIC"], rsm["_VERSION"]) == (ck["MAGIC"], ck["VERSION"]) == (
        checkpoint.MAGIC, checkpoint.VERSION)
    assert lay["_KAHAN"] == consts("statebytes.py")["_KAHAN"] == consts("ckpt.py")[
        "_KAHAN"] == consts("kernels.py")["_ROUND_KAHAN"]
    assert consts("qgpt_train.py")["_BOS"] == params.BOS
    # the parameter table's offsets, which layout.py gives the Model (firmware/params.py
    # stays off the device's heap during a run)
    shim = types.ModuleType("micropython")
    shim.const = lambda x: x
    with mock.patch.dict(sys.modules, {"micropython": shim}):
        ns = {}
        exec(compile((FIRMWARE / "layout.py").read_text(), "layout.py", "exec"), ns)
    assert ns["offsets"]() == tuple(s.offset for s in params.SLOTS) + (params.N_PARAMS,)


def test_too_small_a_heap_says_so(device, tmp_path):
    run = _train(device, tmp_path, cf.TrainCase("q4.12", "nearest"), heapsize="48K", stop_at=2)
    assert run.code == 1 and "out of memory" in run.errors[0]


# --- level "run": 1000 steps on makemore's names ---


MAKEMORE = ROOT.parent / "shared" / "data" / "names-makemore.txt"  # not part of the product


@pytest.mark.slow
def test_run_level_on_makemore_names():
    if not MAKEMORE.exists():
        pytest.skip(f"{MAKEMORE} is absent")
    report = cf.run_run(MAKEMORE)
    assert report.ok, _text(report)
    assert [r[3] for r in report.rows] == [1000 + 2 + 20] * len(cf.RUN_CASES)


def test_the_run_level_refuses_a_missing_dataset(tmp_path):
    from qgpt.data import DataError

    with pytest.raises(DataError, match="absent.txt: no such file"):
        cf.run_run(tmp_path / "absent.txt")


def test_the_dispatcher_runs_a_level_and_the_cli_exits_zero():
    r = subprocess.run([sys.executable, "-m", "qgpt.conformance", "--level", "steps",
                        "--formats", "q6.6"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and "level steps: 3 runs" in r.stdout, r.stdout + r.stderr
    r = subprocess.run([sys.executable, "-m", "qgpt.conformance", "--level", "run", "--data",
                        "no-such-names.txt"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "no-such-names.txt: no such file" in r.stderr
    with pytest.raises(ValueError, match="level 'nope'"):
        cf.conformance("nope")


def test_the_device_config_has_the_hosts_train_config_fields(device, tmp_path):
    # a device checkpoint's config is a qgpt.train.TrainConfig (load_run builds one)
    from dataclasses import fields

    assert not _train(device, tmp_path, cf.TrainCase("q8.8", "floor"), stop_at=1).failure
    meta, _ = checkpoint.load(tmp_path / "ckpt.bin")
    assert set(meta["config"]) == {f.name for f in fields(train.TrainConfig)}
    assert json.loads((tmp_path / "qgpt.json").read_text())["format"] == "q8.8"


def test_the_benchmarks_bytecode_build_trains_the_same_integers():
    # qgpt/fwbench.py's baseline: the firmware without viper (uctypes views for ptr16 ...)
    from qgpt import fwbench

    rows, agree = fwbench.bench(steps=3, repeats=1)
    assert agree, rows
    assert rows[0][0].startswith("viper") and rows[1][3] == 1.0
