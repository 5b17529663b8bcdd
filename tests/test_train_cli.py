"""The command line (qgpt/cli.py) and training runs (qgpt/train.py), end to end but small.

1. train --float / --format q4.12 write the run folder; sample prints names (an integer run
   samples in integers, checked against section 10 of docs/arithmetic.md written here).
2. Resume: a run interrupted after a checkpoint and resumed ends bit-identical to one that
   was never interrupted (float, and q4.12 with stochastic rounding).
3. Every user mistake: exit code 2, one line on stderr starting 'qgpt: error:', no traceback.
4. export / import of JSON state dicts.

Runs use a 300-name file in tmp_path and 20-40 steps, in-process through qgpt.cli.main.
"""

import csv
import json
import math
import re
import subprocess
import sys

import numpy as np
import pytest

from qgpt import checkpoint, cli, data, float_model, prng, statedict
from qgpt import int_ops as ops
from qgpt import train as training
from qgpt.int_model import IntModel, forward
from qgpt.params import BLOCK, BOS, N_PARAMS, PARAMS

SUMMARY_KEYS = {"steps", "seed", "params", "train_loss_last100", "val_nll", "seconds"}
INT_SUMMARY_KEYS = {"format", "rounding", "policy", "saturations", "stalled_update_rate"}
NAME = re.compile(r"[a-z]{0,16}")


def main(capsys, *argv):
    """Run the CLI in-process: (exit code, stdout, stderr)."""
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_user_error(code, err, *fragments):
    assert code == 2, f"exit code {code}, stderr {err!r}"
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("qgpt: error:"), f"stderr: {err!r}"
    assert "Traceback" not in err
    for f in fragments:
        assert f in lines[0], f"{f!r} not in {lines[0]!r}"


def train_args(names_file, out, *extra, steps=30):
    return ["train", "--data", names_file, "--steps", steps, "--out", out, "--quiet",
            "--checkpoint-every", 10, *extra]


@pytest.fixture(scope="module")
def runs(names_file, tmp_path_factory):
    """One finished float run and one q4.12 run, shared by the tests that only read them."""
    base = tmp_path_factory.mktemp("runs")
    out = {}
    for kind, extra in (("float", ["--float"]), ("q4.12", ["--format", "q4.12"])):
        out[kind] = base / kind
        assert cli.main([str(a) for a in train_args(names_file, out[kind], *extra)]) == 0
    return out


# --- 1. the run folder and sampling -------------------------------------------


@pytest.mark.parametrize("kind", ["float", "q4.12"])
def test_train_writes_the_run_folder(runs, names_file, kind):
    run = runs[kind]
    for f in ("config.json", "losses.csv", "checkpoint.bin", "summary.json"):
        assert (run / f).is_file(), f
    summary = json.loads((run / "summary.json").read_text())
    want = SUMMARY_KEYS | (INT_SUMMARY_KEYS if kind != "float" else set())
    assert want <= set(summary), want - set(summary)
    assert summary["steps"] == 30 and summary["seed"] == 42 and summary["params"] == N_PARAMS
    assert summary["seconds"] > 0
    with open(run / "losses.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == list(range(30))
    losses = [float(r["loss"]) for r in rows]
    assert all(0 < x < 10 for x in losses)
    assert summary["train_loss_last100"] == pytest.approx(np.mean(losses), rel=1e-12)
    config = json.loads((run / "config.json").read_text())
    assert config["config"]["steps"] == 30 and config["config"]["format"] == kind
    # val_nll: the final weights' mean per-token NLL over the validation names, recomputed
    # here from the checkpoint with the float reference's cross-entropy of the logits
    model, _ = training.load_run(run)
    ds = data.load(names_file)
    total = count = 0
    for name in ds.val:
        inputs, targets = float_model.split_tokens(data.encode(name))
        loss, _ = float_model.ops.cross_entropy_forward(model.logits(inputs), targets)
        total, count = total + loss * len(targets), count + len(targets)
    assert summary["val_nll"] == pytest.approx(total / count, rel=1e-12)
    if kind == "float":
        assert summary["kind"] == "float"
        return
    assert isinstance(model, IntModel)
    assert summary["format"] == "q4.12" and summary["rounding"] == "nearest"
    assert summary["policy"]["pgrads"] == "q10.22"  # 22 fractional bits, int32
    assert config["policy"] == summary["policy"]
    assert isinstance(summary["saturations"], dict)
    assert all(isinstance(n, int) and n >= 0 for n in summary["saturations"].values())
    assert 0.0 <= summary["stalled_update_rate"] <= 1.0
    assert {"loss_q16", "saturations", "stalled_updates"} <= set(rows[0])
    for r in rows:
        assert abs(int(r["loss_q16"]) / 65536 - float(r["loss"])) < 6e-4  # see test_int_model
        assert 0.0 <= float(r["stalled_updates"]) <= 1.0


def test_train_prints_a_summary_line_and_samples(capsys, names_file, tmp_path):
    code, out, err = main(capsys, "train", "--data", names_file, "--steps", 20,
                          "--out", tmp_path / "r", "--format", "q8.8", "--samples", 5)
    assert code == 0, err
    lines = out.splitlines()
    assert re.fullmatch(r"q8\.8: train_loss_last100 \d+\.\d{4}  val_nll \d+\.\d{4}  .* -> .*",
                        lines[0]), lines[0]
    assert len(lines) == 6 and all(NAME.fullmatch(n) for n in lines[1:]), lines


@pytest.mark.parametrize("kind", ["float", "q4.12"])
def test_sample_prints_n_deterministic_names(capsys, runs, kind):
    code, out, err = main(capsys, "sample", "--checkpoint", runs[kind], "-n", 12, "--seed", 3)
    assert code == 0 and err == ""
    names = out.splitlines()
    assert len(names) == 12 and all(NAME.fullmatch(n) for n in names), names
    assert sum(len(n) for n in names) > 12, "a trained model names more than single letters"
    again = main(capsys, "sample", "--checkpoint", runs[kind] / "checkpoint.bin", "-n", 12,
                 "--seed", 3)[1]
    assert again.splitlines() == names
    other = main(capsys, "sample", "--checkpoint", runs[kind], "-n", 12, "--seed", 4)[1]
    assert other.splitlines() != names
    # the default seed is the run's
    assert main(capsys, "sample", "--checkpoint", runs[kind], "-n", 12)[1] == \
        main(capsys, "sample", "--checkpoint", runs[kind], "-n", 12, "--seed", 42)[1]


def contract_samples(model, n, temperature, seed):
    """Section 10, in plain Python over the model's raw integer logits: z = (l *
    round(256 / T) + 128) >> 8; p = softmax(z, F); the first j with p_0 + .. + p_j >
    u30 >> 15 (the first maximum if none); stop at BOS or after 16 tokens."""
    f = model.policy.data.frac_bits
    inv_t = round(256 / temperature)
    names = []
    for s in range(n):
        k = prng.key(seed, prng.STREAM_SAMPLE, s)
        tokens = [BOS]
        for t in range(BLOCK):
            raw = forward(ops.Ctx(model.policy), model.flat, np.array(tokens))[-1].tolist()
            p = ops.softmax(np.array([(x * inv_t + 128) >> 8 for x in raw]), f).tolist()
            u = prng.hash30((k + t) & prng.M30) >> 15
            acc, token = 0, p.index(max(p))
            for j, pj in enumerate(p):
                acc += pj
                if acc > u:
                    token = j
                    break
            if token == BOS:
                break
            tokens.append(token)
        names.append(data.decode(tokens))
    return names


def test_integer_run_samples_in_integers(capsys, runs, monkeypatch):
    calls = []
    original = IntModel.next_token

    def spy(self, inputs, temperature, u30):
        calls.append(len(inputs))
        return original(self, inputs, temperature, u30)

    def no_float(*args, **kwargs):
        raise AssertionError("an integer run sampled through the float model")

    monkeypatch.setattr(IntModel, "next_token", spy)
    monkeypatch.setattr(training.FloatModel, "next_token", no_float)
    monkeypatch.setattr(training.FloatModel, "logits", no_float)
    code, out, _ = main(capsys, "sample", "--checkpoint", runs["q4.12"], "-n", 6,
                        "--temperature", 0.7, "--seed", 9)
    assert code == 0 and calls
    model, _ = training.load_run(runs["q4.12"])
    assert isinstance(model, IntModel)
    assert out.splitlines() == contract_samples(model, 6, 0.7, 9)


# --- 2. resume ---------------------------------------------------------------------


@pytest.mark.parametrize("extra", [["--float"], ["--format", "q4.12", "--rounding", "stochastic"]],
                         ids=["float", "q4.12-stochastic"])
def test_resume_after_interruption_is_bit_identical(capsys, monkeypatch, names_file, tmp_path,
                                                    extra):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert main(capsys, *train_args(names_file, whole, *extra, steps=40))[0] == 0

    model_cls = training.FloatModel if extra == ["--float"] else IntModel
    original = model_cls.train_step

    def interrupted(self, tokens, step, num_steps):
        if step == 25:
            raise KeyboardInterrupt
        return original(self, tokens, step, num_steps)

    monkeypatch.setattr(model_cls, "train_step", interrupted)
    code, _, err = main(capsys, *train_args(names_file, cut, *extra, steps=40))
    assert code == 130 and "--resume" in err and "Traceback" not in err
    meta, _ = checkpoint.load(cut / "checkpoint.bin")
    assert meta["step"] == 20
    assert len((cut / "losses.csv").read_text().splitlines()) == 1 + 20
    assert not (cut / "summary.json").exists()
    monkeypatch.setattr(model_cls, "train_step", original)

    code, _, err = main(capsys, *train_args(names_file, cut, *extra, "--resume", steps=40))
    assert code == 0, err
    meta_w, arrays_w = checkpoint.load(whole / "checkpoint.bin")
    meta_c, arrays_c = checkpoint.load(cut / "checkpoint.bin")
    assert arrays_w.keys() == arrays_c.keys()
    for name in arrays_w:
        assert arrays_w[name].dtype == arrays_c[name].dtype
        assert np.array_equal(arrays_w[name], arrays_c[name]), f"{name} differs after resume"
    for m in (meta_w, meta_c):
        m.pop("seconds")
    assert meta_w == meta_c
    assert (whole / "losses.csv").read_bytes() == (cut / "losses.csv").read_bytes()
    sw, sc = (json.loads((d / "summary.json").read_text()) for d in (whole, cut))
    for k in ("train_loss_last100", "val_nll", "steps"):
        assert sw[k] == sc[k], k


# --- 3. user errors -------------------------------------------------------------------


@pytest.fixture
def bad_files(tmp_path):
    files = {
        "empty.txt": "\n\n",
        "upper.txt": "emma\nolivia\nNoah\nava\n",
        "long.txt": "emma\nolivia\nmaximilianjonathan\nava\n",
        "digit.txt": "emma\n0livia\n",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return tmp_path


@pytest.mark.parametrize("filename, fragments", [
    ("missing.txt", ["missing.txt", "no such file", "--data"]),
    ("empty.txt", ["empty.txt", "no names"]),
    ("upper.txt", ["upper.txt:3", "'N'", "outside a-z", "--lowercase"]),
    ("digit.txt", ["digit.txt:2", "'0'", "outside a-z"]),
    ("long.txt", ["long.txt:3", "18 characters", "at most 15", "--skip-long"]),
])
def test_bad_data_is_one_line(capsys, bad_files, filename, fragments):
    code, _, err = main(capsys, "train", "--data", bad_files / filename, "--steps", 2,
                        "--out", bad_files / "run", "--quiet")
    assert_user_error(code, err, *fragments)
    assert not (bad_files / "run").exists()


@pytest.mark.parametrize("filename, option", [("upper.txt", "--lowercase"),
                                              ("long.txt", "--skip-long")])
def test_lowercase_and_skip_long_fix_the_data(capsys, bad_files, filename, option):
    out = bad_files / "run"
    code, _, err = main(capsys, "train", "--data", bad_files / filename, "--steps", 3,
                        "--out", out, "--quiet", option)
    assert code == 0, err
    ds = json.loads((out / "config.json").read_text())["dataset"]
    assert ds["train"] + ds["val"] + ds["dropped"] == 4
    assert ds["dropped"] == (1 if option == "--skip-long" else 0)


@pytest.mark.parametrize("fmt", ["q8.x", "q0.0", "8.8", "q9.8", "q4.12.1", "q-1.8"])
def test_malformed_format_is_one_line_naming_what_is_accepted(capsys, names_file, tmp_path, fmt):
    code, _, err = main(capsys, "train", "--data", names_file, "--steps", 2,
                        "--out", tmp_path / "run", "--quiet", "--format", fmt)
    assert_user_error(code, err, repr(fmt), "qI.F", "I >= 1", "I+F <= 16")
    assert not (tmp_path / "run").exists()


def test_format_without_fractional_bits_is_called_too_coarse(capsys, names_file, tmp_path):
    """q16.0 is a valid data-path format (I+F <= 16) but with lr 0.01 its update would
    shift by 34 bits; the policy refuses it (stochastic rounding takes at most 30). The store
    has too few fractional bits: the message must not call it 'too fine'."""
    code, _, err = main(capsys, "train", "--data", names_file, "--steps", 2,
                        "--out", tmp_path / "run", "--quiet", "--format", "q16.0")
    if code == 0:
        return  # accepting it (no stochastic rounding asked for) would be fine too
    assert_user_error(code, err, "q16.0")
    assert "too fine" not in err and "coarse" in err, err


def test_existing_run_and_nothing_to_resume(capsys, runs, names_file, tmp_path):
    before = (runs["float"] / "checkpoint.bin").read_bytes()
    code, _, err = main(capsys, *train_args(names_file, runs["float"], "--float"))
    assert_user_error(code, err, str(runs["float"]), "already holds a run", "--resume")
    assert (runs["float"] / "checkpoint.bin").read_bytes() == before
    code, _, err = main(capsys, *train_args(names_file, tmp_path / "new", "--resume"))
    assert_user_error(code, err, "nothing to resume")
    # resuming with other settings names them
    code, _, err = main(capsys, *train_args(names_file, runs["float"], "--float", "--resume",
                                            steps=31))
    assert_user_error(code, err, "other settings", "steps")


@pytest.mark.parametrize("damage", ["flip", "truncate", "tail"])
def test_damaged_checkpoint_is_one_line(capsys, runs, tmp_path, damage):
    blob = bytearray((runs["q4.12"] / "checkpoint.bin").read_bytes())
    if damage == "flip":
        blob[len(blob) // 2] ^= 0x10
    elif damage == "truncate":
        blob = blob[: len(blob) // 2]
    else:
        blob = blob[:-1]
    path = tmp_path / "checkpoint.bin"
    path.write_bytes(bytes(blob))
    code, _, err = main(capsys, "sample", "--checkpoint", path)
    assert_user_error(code, err, str(path), "corrupted or truncated", "CRC32")
    code, _, err = main(capsys, "export", "--checkpoint", path, "--out", tmp_path / "w.json")
    assert_user_error(code, err, "CRC32")


def test_missing_checkpoint_and_bad_temperature(capsys, runs, tmp_path):
    code, _, err = main(capsys, "sample", "--checkpoint", tmp_path / "none")
    assert_user_error(code, err, "no such checkpoint")
    for t in (0, -1):
        code, _, err = main(capsys, "sample", "--checkpoint", runs["float"], "--temperature", t)
        assert_user_error(code, err, "--temperature", "from 1/256")


def test_python_m_qgpt_error_has_no_traceback(names_file, tmp_path):
    r = subprocess.run([sys.executable, "-m", "qgpt", "train", "--data", str(names_file),
                        "--steps", "2", "--out", str(tmp_path / "run"), "--format", "q8.x"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert r.stdout == ""
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("qgpt: error: --format: format 'q8.x'")
    assert "Traceback" not in r.stderr


# --- 4. export and import -------------------------------------------------------------


@pytest.mark.parametrize("kind", ["float", "q4.12"])
def test_export_import_round_trip(capsys, runs, tmp_path, kind):
    w1, w2, imported = tmp_path / "w1.json", tmp_path / "w2.json", tmp_path / "imported"
    assert main(capsys, "export", "--checkpoint", runs[kind], "--out", w1)[0] == 0
    sd = json.loads(w1.read_text())
    assert list(sd) == [name for name, _ in PARAMS]
    model, _ = training.load_run(runs[kind])
    want = model.float_params()
    flat = np.concatenate([np.asarray(sd[name], dtype=np.float64).ravel() for name, _ in PARAMS])
    assert np.array_equal(flat, want), "export is not exact"
    if kind != "float":  # integer weights are raw / 2**12, exactly
        assert np.array_equal(flat * 2**12, np.round(flat * 2**12))
    got = statedict.import_state_dict(w1)
    assert got.dtype == np.float64 and np.array_equal(got, want)
    assert main(capsys, "import", w1, "--out", imported)[0] == 0
    assert main(capsys, "export", "--checkpoint", imported, "--out", w2)[0] == 0
    assert w2.read_text() == w1.read_text()
    if kind == "float":  # the same float weights sample the same names
        a = main(capsys, "sample", "--checkpoint", runs[kind], "-n", 5)[1]
        b = main(capsys, "sample", "--checkpoint", imported, "-n", 5)[1]
        assert a == b
    code, _, err = main(capsys, "import", w1, "--out", imported)
    assert_user_error(code, err, "already holds a run")


@pytest.mark.parametrize("damage, fragments", [
    ("missing", ["tensor lm_head is missing"]),
    ("shape", ["tensor wte has shape (26, 16)", "want (27, 16)"]),
    ("extra", ["unknown tensors", "bias"]),
    ("json", ["cannot read a JSON state dict"]),
])
def test_import_rejects_a_bad_state_dict(capsys, runs, tmp_path, damage, fragments):
    w = tmp_path / "w.json"
    assert main(capsys, "export", "--checkpoint", runs["float"], "--out", w)[0] == 0
    sd = json.loads(w.read_text())
    if damage == "missing":
        del sd["lm_head"]
    elif damage == "shape":
        sd["wte"] = sd["wte"][:-1]
    elif damage == "extra":
        sd["bias"] = [0.0]
    w.write_text("{not json" if damage == "json" else json.dumps(sd))
    with pytest.raises(training.RunError):
        statedict.import_state_dict(w)
    code, _, err = main(capsys, "import", w, "--out", tmp_path / "imported")
    assert_user_error(code, err, *fragments)
    assert not (tmp_path / "imported").exists()


def test_import_of_float_values_keeps_every_bit(tmp_path):
    """float64 values that need all 17 significant digits survive JSON both ways."""
    rng = np.random.default_rng(6)
    sd = {name: (rng.normal(size=shape) * math.pi).tolist() for name, shape in PARAMS}
    path = tmp_path / "w.json"
    path.write_text(json.dumps(sd))
    flat = statedict.import_state_dict(path)
    want = np.concatenate([np.ravel(sd[name]) for name, _ in PARAMS])
    assert np.array_equal(flat, want)
    model = training.FloatModel(training.TrainConfig(steps=1))
    model.flat = flat
    statedict.export_state_dict(model, tmp_path / "again.json")
    assert json.loads((tmp_path / "again.json").read_text()) == sd
