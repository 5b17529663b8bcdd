"""Every kind of bad input gets one line and exit code 2; nothing a run writes, reads or
resumes goes silently wrong (issue 9; the table in docs/ERRORS.md).

1. Resume refuses a dataset whose names changed (identified by their hash, not the path).
2. Every numeric option of every command is checked (learning rate, steps, seeds,
   temperature, timeouts, counts), in float runs as in integer runs.
3. Output paths: a file where a folder is wanted and the reverse, a file in the way of a
   parent, an unwritable folder, an empty name: one line, and nothing half-written.
4. A dataset too small for a validation split reports val_nll as absent, never 0.0.
5. Resume with a missing, truncated or damaged losses.csv rebuilds it exactly, or refuses.
6. Every field of every file read: checkpoints with a valid CRC but wrong content, JSON
   state dicts with NaN, booleans, strings, ragged lists or binary, packed datasets.
7. Options are normalised (' Q4.12' -> q4.12) or refused (--format '', --rounding with
   --float); a run records no option that had no effect.
8. Polish: Ctrl-C during start-up, --help, help texts, long values, --out ''.

Everything runs in-process through qgpt.cli.main on a 300-name file and 10-30 steps.
"""

import argparse
import json
import subprocess
import sys

import numpy as np
import pytest

from qgpt import bench, checkpoint, cli, data, pack, prng, statedict
from qgpt import train as training
from qgpt.params import N_PARAMS

ONE_LINE_LIMIT = cli.MESSAGE_CHARS + len("qgpt: error: ")


def main(capsys, *argv):
    """Run the CLI in-process: (exit code, stdout, stderr)."""
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_user_error(code, err, *fragments):
    """Exit code 2, exactly one short line 'qgpt: error: ...' holding every fragment."""
    assert code == 2, f"exit code {code}, stderr {err!r}"
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("qgpt: error:"), f"stderr: {err!r}"
    assert len(lines[0]) <= ONE_LINE_LIMIT, f"{len(lines[0])} characters: {lines[0][:200]}"
    for f in fragments:
        assert f in lines[0], f"{f!r} not in {lines[0]!r}"


def train_args(names_file, out, *extra, steps=20):
    return ["train", "--data", names_file, "--steps", steps, "--out", out, "--quiet",
            "--checkpoint-every", 10, *extra]


@pytest.fixture(scope="module")
def runs(names_file, tmp_path_factory):
    """A finished float run and a q4.12 run, for the tests that only read them."""
    base = tmp_path_factory.mktemp("runs")
    out = {}
    for kind, extra in (("float", ["--float"]), ("q4.12", ["--format", "q4.12"])):
        out[kind] = base / kind
        assert cli.main([str(a) for a in train_args(names_file, out[kind], *extra)]) == 0
    return out


def listing(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


# --- 1. resume identifies the dataset by its names ---------------------------------


def interrupted_run(capsys, monkeypatch, names_file, out, *extra, steps=20, stop=10):
    """A run of `steps` steps stopped by Ctrl-C right after its checkpoint at step `stop`."""
    save_state = training.save_state

    def save_then_stop(out_, model, cfg, step, seconds, ds=None):
        save_state(out_, model, cfg, step, seconds, ds)
        if step == stop:
            raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(training, "save_state", save_then_stop)
        code, _, err = main(capsys, *train_args(names_file, out, *extra, steps=steps))
    assert code == 130 and "--resume" in err, err
    meta, arrays = checkpoint.load(out / "checkpoint.bin")
    assert meta["step"] == stop and not (out / "summary.json").exists()
    return meta, arrays


def test_resume_refuses_a_dataset_whose_names_changed(capsys, monkeypatch, names_file, tmp_path):
    data_file = tmp_path / "names.txt"
    data_file.write_text(names_file.read_text())
    out = tmp_path / "run"
    interrupted_run(capsys, monkeypatch, data_file, out, "--float")
    before = (out / "checkpoint.bin").read_bytes()
    names = names_file.read_text().split()
    data_file.write_text("\n".join(names[:-1] + ["zzyzx"]) + "\n")  # same path, one name new
    code, _, err = main(capsys, *train_args(data_file, out, "--float", "--resume"))
    assert_user_error(code, err, str(data_file), "names changed", "sha256")
    assert (out / "checkpoint.bin").read_bytes() == before
    assert not (out / "summary.json").exists()


def test_resume_accepts_the_same_names_under_another_path(capsys, monkeypatch, names_file,
                                                          tmp_path):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert main(capsys, *train_args(names_file, whole, "--format", "q8.8"))[0] == 0
    interrupted_run(capsys, monkeypatch, names_file, cut, "--format", "q8.8")
    moved = tmp_path / "moved.txt"
    moved.write_text(names_file.read_text())
    code, _, err = main(capsys, *train_args(moved, cut, "--format", "q8.8", "--resume"))
    assert code == 0, err
    for name in checkpoint.RUN_ARRAYS:
        a = checkpoint.load(whole / "checkpoint.bin")[1][name]
        b = checkpoint.load(cut / "checkpoint.bin")[1][name]
        assert np.array_equal(a, b), f"{name} differs after a resume on the moved file"


def test_resume_refuses_a_checkpoint_without_a_dataset_identity(capsys, monkeypatch, names_file,
                                                               tmp_path):
    out = tmp_path / "run"
    meta, arrays = interrupted_run(capsys, monkeypatch, names_file, out, "--float")
    del meta["dataset"]
    checkpoint.save(out / "checkpoint.bin", meta, arrays)
    code, _, err = main(capsys, *train_args(names_file, out, "--float", "--resume"))
    assert_user_error(code, err, "does not record the names")


def test_dataset_identity_is_a_hash_of_the_names(tmp_path):
    a, b, c = tmp_path / "a.txt", tmp_path / "b.txt", tmp_path / "c.txt"
    a.write_text("emma\nolivia\nava\n")
    b.write_text("  emma\r\n\nolivia\nava")  # other bytes, the same names
    c.write_text("emma\nolivia\neva\n")
    assert data.load(a).sha256 == data.load(b).sha256 != data.load(c).sha256
    assert data.load(a).sha256 == data.names_sha256(["emma", "olivia", "ava"])


# --- 2. every number is checked ----------------------------------------------------

BAD_NUMBERS = [
    (["train", "--float"], "--lr", ["nan", "-1", "0", "1", "1e300", "inf", "x"]),
    (["train", "--format", "q4.12"], "--lr", ["nan", "-1", "0", "1e300"]),
    (["train", "--float"], "--steps", ["0", "-3", str(2**30 + 1), "1.5", "1e3"]),
    (["train", "--float"], "--seed", [str(2**32 + 42), str(2**30), "-1", "4.2"]),
    (["train", "--float"], "--checkpoint-every", ["0", "-1"]),
    (["train", "--float"], "--samples", ["-1"]),
    (["sample", "--checkpoint", "RUN"], "--temperature",
     ["1e-18", "1e-15", "0", "-1", "nan", "inf", "300", "0.003"]),
    (["sample", "--checkpoint", "RUN"], "--seed", [str(2**30 + 42), "-2"]),
    (["sample", "--checkpoint", "RUN"], "-n", ["0"]),
    (["bench"], "--steps", ["0"]),
    (["bench"], "--seed", ["-1", str(2**30)]),
    (["bench"], "--repeats", ["0"]),
    (["conformance"], "--seed", ["-1", str(2**31)]),
    (["conformance"], "--heapsize", ["abc", "0", "-5K", "96KB", "1.5M"]),
    (["sweep", "--formats", "q8.8"], "--lr", ["nan", "-1"]),
    (["sweep", "--formats", "q8.8"], "--seed", ["-5", str(2**30)]),
    (["device", "train", "--port", "P"], "--timeout", ["nan", "0", "-1", "inf"]),
    (["device", "train", "--port", "P"], "--idle-timeout", ["nan", "-5"]),
    (["device", "deploy", "--port", "P"], "--seed", [str(2**30 + 1)]),
    (["device", "deploy", "--port", "P"], "--lr", ["nan", "2"]),
]


SWEEP_WORDS = {"--lr": "learning rate", "--seed": "seed"}


@pytest.mark.parametrize("command, option, values", BAD_NUMBERS,
                         ids=[f"{c[0]}{o}" for c, o, _ in BAD_NUMBERS])
def test_every_numeric_option_is_checked(capsys, runs, names_file, tmp_path, command, option,
                                         values):
    command = [str(runs["q4.12"]) if a == "RUN" else a for a in command]
    for value in values:
        out = tmp_path / f"out{value}"
        extra = []
        if command[0] in ("train", "sweep"):
            extra = ["--data", names_file, "--steps", 2, "--out", out]
            if command[0] == "train":
                extra.append("--quiet")
        code, stdout, err = main(capsys, *command, *extra, option, value)
        # sweep checks its numbers as it builds each run's TrainConfig
        assert_user_error(code, err, SWEEP_WORDS[option] if command[0] == "sweep" else option)
        assert not out.exists(), f"{option} {value}: {out} was created"


def test_a_seed_is_refused_beyond_the_prngs_bits_never_aliased():
    assert prng.key(2**30 + 42, 1) == prng.key(42, 1)  # why: key() keeps 30 bits
    assert training.check_seed(2**30 - 1) == 2**30 - 1
    for bad in (2**30 + 42, -1, True, 4.0):
        with pytest.raises(ValueError, match="not a seed"):
            training.check_seed(bad)
    with pytest.raises(ValueError, match="seed"):
        training.TrainConfig(seed=2**30 + 42)


@pytest.mark.parametrize("field, value", [("lr", float("nan")), ("lr", 0.0), ("lr", 1e300),
                                          ("steps", 0), ("steps", True), ("seed", -1),
                                          ("checkpoint_every", -1), ("format", "q4.12.1"),
                                          ("rounding", "stochastic"), ("strict", 1)])
def test_train_config_checks_every_field(field, value):
    """The library refuses what the CLI refuses (bench, sweep and checkpoints build
    TrainConfigs too); a float run takes no integer-only option."""
    with pytest.raises(training.ConfigError, match=field):
        training.TrainConfig(**{field: value})


@pytest.mark.parametrize("kind", ["float", "q4.12"])
def test_temperature_range_ends_sample_and_outside_is_refused(capsys, runs, kind):
    for t in (1 / 256, 256):
        code, out, err = main(capsys, "sample", "--checkpoint", runs[kind], "-n", 3,
                              "--temperature", t)
        assert code == 0 and len(out.splitlines()) == 3, err
    model, _ = training.load_run(runs[kind])
    for t in (1e-18, 1 / 257, 257.0, float("nan")):
        with pytest.raises(ValueError, match="sampling range"):
            training.sample(model, n=1, temperature=t)


# --- 3. output paths ----------------------------------------------------------------


def test_output_paths_are_one_line_and_leave_nothing(capsys, runs, names_file, tmp_path):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    folder = tmp_path / "folder"
    folder.mkdir()
    w = tmp_path / "w.json"
    assert main(capsys, "export", "--checkpoint", runs["float"], "--out", w)[0] == 0
    before = listing(tmp_path)
    cases = [
        (train_args(names_file, a_file, "--float"), [str(a_file), "is a file, not a folder"]),
        (train_args(names_file, a_file / "run", "--float"), ["file.txt is a file, not a folder"]),
        (["import", w, "--out", a_file], ["is a file, not a folder"]),
        (["import", w, "--out", a_file / "run"], ["file.txt is a file, not a folder"]),
        (["export", "--checkpoint", runs["float"], "--out", folder], ["is a folder"]),
        (["export", "--checkpoint", runs["float"], "--out", a_file / "w.json"],
         ["file.txt is a file, not a folder"]),
        (["pack", "--data", names_file, "--out", folder], ["is a folder"]),
        (["pack", "--data", names_file, "--out", a_file / "n.bin"], ["is a file, not a folder"]),
        (["pack", "--data", names_file, "--out", ""], ["--out is empty"]),
        (["export", "--checkpoint", runs["float"], "--out", " "], ["--out is empty"]),
        (["import", w, "--out", ""], ["--out is empty"]),
        (train_args(names_file, "", "--float"), ["--out is empty"]),
        (["device", "emulate", "--dir", a_file], [str(a_file)]),
    ]
    for argv, fragments in cases:
        code, _, err = main(capsys, *argv)
        assert_user_error(code, err, *fragments)
        assert listing(tmp_path) == before, f"{argv} left {set(listing(tmp_path)) - set(before)}"
    assert a_file.read_text() == "x"


def test_an_unwritable_folder_is_one_line(capsys, names_file, tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint.os, "access", lambda path, mode: False)
    for argv in (["pack", "--data", names_file, "--out", tmp_path / "n.bin"],
                 train_args(names_file, tmp_path / "run", "--float")):
        code, _, err = main(capsys, *argv)
        assert_user_error(code, err, "is not writable")
    assert listing(tmp_path) == []


def test_a_failed_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    target = tmp_path / "names.bin"
    target.write_bytes(b"old")

    def fail(src, dst):
        raise OSError(28, "No space left on device", str(dst))

    monkeypatch.setattr(checkpoint.os, "replace", fail)
    with pytest.raises(OSError):
        pack.write(target, ["emma", "ava"])
    assert listing(tmp_path) == ["names.bin"] and target.read_bytes() == b"old"


def test_an_os_error_is_one_line(capsys, tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "x"))

    monkeypatch.setattr(cli, "build_parser", _parser_with(cli.build_parser, "formats", fail))
    code, _, err = main(capsys, "formats")
    assert_user_error(code, err, str(tmp_path / "x"), "Permission denied")


def _parser_with(build, command, func):
    def patched():
        parser = build()
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        sub.choices[command].set_defaults(func=func)
        return parser
    return patched


# --- 4. no validation split: val_nll is absent, not 0.0 ----------------------------


def test_tiny_dataset_reports_val_nll_as_absent(capsys, tmp_path):
    tiny = tmp_path / "tiny.txt"
    tiny.write_text("emma\nolivia\nava\n")  # none of the three falls in validation
    assert not data.load(tiny).val
    out = tmp_path / "run"
    code, stdout, err = main(capsys, "train", "--data", tiny, "--steps", 5, "--out", out,
                             "--quiet")
    assert code == 0, err
    assert "val_nll none" in stdout and "0.0000" not in stdout.split("val_nll")[1][:12]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["val_nll"] is None and summary["val_names"] == 0
    model, _ = training.load_run(out)
    assert training.nll(model, []) is None
    lines = []
    bench.bench(formats=["q8.8"], steps=3, repeats=1, data_path=tiny, log=lines.append)
    assert "none" in lines[-1] and "0.0000" not in lines[-1]


# --- 5. resume with a damaged losses.csv ------------------------------------------

DAMAGES = ["deleted", "truncated", "garbled", "header", "empty", "non-finite"]


@pytest.mark.parametrize("damage", DAMAGES)
@pytest.mark.parametrize("extra", [["--float"], ["--format", "q4.12", "--rounding", "stochastic"]],
                         ids=["float", "q4.12-stochastic"])
def test_resume_rebuilds_a_damaged_losses_csv_without_a_gap(capsys, monkeypatch, names_file,
                                                            tmp_path, damage, extra):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert main(capsys, *train_args(names_file, whole, *extra, steps=30))[0] == 0
    interrupted_run(capsys, monkeypatch, names_file, cut, *extra, steps=30, stop=20)
    losses = cut / "losses.csv"
    lines = losses.read_text().splitlines(keepends=True)
    if damage == "deleted":
        losses.unlink()
    elif damage == "truncated":
        losses.write_text("".join(lines[:8]))
    elif damage == "garbled":
        lines[5] = "4,not-a-number\n"
        losses.write_text("".join(lines))
    elif damage == "header":
        losses.write_text("".join(["step,loss,other\n", *lines[1:]]))
    elif damage == "empty":
        losses.write_text("")
    else:
        fields = lines[3].rstrip("\n").split(",")
        lines[3] = ",".join([fields[0], "nan", *fields[2:]]) + "\n"
        losses.write_text("".join(lines))
    code, stdout, err = main(capsys, *train_args(names_file, cut, *extra, "--resume", steps=30))
    assert code == 0, err
    assert "rebuilt steps 0..19" in stdout
    assert (cut / "losses.csv").read_bytes() == (whole / "losses.csv").read_bytes()


def test_resume_refuses_when_the_replay_does_not_reproduce_the_checkpoint(capsys, monkeypatch,
                                                                          names_file, tmp_path):
    out = tmp_path / "run"
    meta, arrays = interrupted_run(capsys, monkeypatch, names_file, out, "--float")
    arrays["params"][7] += 1e-3  # a checkpoint no replay of this config reaches
    checkpoint.save(out / "checkpoint.bin", meta, arrays)
    (out / "losses.csv").unlink()
    code, _, err = main(capsys, *train_args(names_file, out, "--float", "--resume"))
    assert_user_error(code, err, "losses.csv is missing", "does not reproduce the checkpoint")


# --- 6. every field of every file read ----------------------------------------------


def damaged_checkpoint(run, damage):
    """The run's checkpoint with one field wrong and a valid CRC."""
    meta, arrays = checkpoint.load(run / "checkpoint.bin")
    kind, _, what = damage.partition(":")
    if kind == "del-meta":
        del meta[what]
    elif kind == "del-config":
        del meta["config"][what]
    elif kind == "del-array":
        del arrays[what]
    elif kind == "short":
        arrays[what] = arrays[what][:-5]
    elif kind == "dtype-f8":
        arrays = {k: a.astype(np.float64) for k, a in arrays.items()}
    elif kind == "dtype-i4":
        arrays = {k: a.astype(np.int32) for k, a in arrays.items()}
    elif kind == "label":
        meta["config"]["format"] = what
    elif kind == "policy":
        meta["policy"]["data"] = "q8.8"
    elif kind == "nan":
        arrays["params"][3] = np.nan
    elif kind == "range":
        arrays["params"][3] = 2**20
    elif kind == "config":
        field, value = what.split("=")
        meta["config"][field] = json.loads(value)
    elif kind == "meta":
        field, value = what.split("=")
        meta[field] = json.loads(value)
    elif kind == "extra-array":
        arrays["bias"] = np.zeros(3)
    return checkpoint.encode(meta, arrays)


CHECKPOINT_DAMAGES = [
    ("float", "del-meta:config", "no config"),
    ("float", "del-config:lr", "lacks lr"),
    ("float", "del-meta:step", "meta step"),
    ("float", "del-array:adam_v", "adam_v"),
    ("float", "short:params", "params holds 4187 values"),
    ("float", "dtype-i4", "float64"),
    ("float", "label:q4.12", "kind 'float'"),
    ("float", "nan", "params[3] is nan"),
    ("float", "config:lr=1e300", "not a learning rate"),
    ("float", "config:format=\" Q4.12\"", "format"),
    ("float", "config:colour=\"red\"", "unknown fields"),
    ("float", "config:rounding=\"floor\"", "integer runs only"),
    ("float", "meta:step=99", "past its config's 20 steps"),
    ("float", "meta:seconds=\"soon\"", "seconds"),
    ("float", "extra-array", "unknown arrays"),
    ("q4.12", "del-meta:p1", "p1"),
    ("q4.12", "del-meta:saturations", "saturations"),
    ("q4.12", "dtype-f8", "int32"),
    ("q4.12", "label:float", "kind 'int'"),
    ("q4.12", "label:q8.8", "policy label"),
    ("q4.12", "policy", "policy label"),
    ("q4.12", "range", "outside"),
    ("q4.12", "meta:p2=-4", "p2"),
    ("q4.12", "meta:steps_taken=true", "steps_taken"),
]


@pytest.mark.parametrize("kind, damage, fragment", CHECKPOINT_DAMAGES,
                         ids=[f"{k}-{d}" for k, d, _ in CHECKPOINT_DAMAGES])
def test_a_checkpoint_with_a_valid_crc_and_a_bad_field_is_refused(capsys, runs, tmp_path,
                                                                  kind, damage, fragment):
    path = tmp_path / "checkpoint.bin"
    path.write_bytes(damaged_checkpoint(runs[kind], damage))
    checkpoint.decode(path.read_bytes())  # the container itself is sound
    for argv in (["sample", "--checkpoint", path, "-n", 2],
                 ["export", "--checkpoint", path, "--out", tmp_path / "w.json"]):
        code, _, err = main(capsys, *argv)
        assert_user_error(code, err, str(path), fragment)
    assert not (tmp_path / "w.json").exists()


@pytest.mark.parametrize("header", [b"not json", b"[1, 2]", b'{"meta": {}, "arrays": [["a"]]}',
                                    b'{"meta": {}, "arrays": [["a", "f4", 1]]}',
                                    b'{"meta": {}, "arrays": [["a", "f8", 999]]}',
                                    b'{"meta": {}, "arrays": [["a", "f8", -1]]}', b"\xff\xfe",
                                    b"[" * 100_000])
def test_a_checkpoint_header_is_checked(header):
    import struct
    import zlib

    body = checkpoint.MAGIC + struct.pack("<HI", checkpoint.VERSION, len(header)) + header
    blob = body + struct.pack("<I", zlib.crc32(body))
    with pytest.raises(checkpoint.CheckpointError, match="header|file length"):
        checkpoint.decode(blob, "x.bin")


STATE_DICT_DAMAGES = [
    ("NaN", "tensor wte[0][1] is NaN"),
    ("Infinity", "tensor wte[0][1] is Infinity"),
    ("-Infinity", "tensor wte[0][1] is -Infinity"),
    ("true", "tensor wte[0][1] is the boolean true"),
    ('"0.5"', "tensor wte[0][1] is a string"),
    ("null", "tensor wte[0][1] is null"),
    ("1e999", "tensor wte[0][1] is"),
    ("1" + "0" * 400, "want a finite number"),
    ("[0.5]", "tensor wte[0][1] is a list"),
    ("ragged", "tensor wte[2] has 15 entries, want 16"),
    ("row-string", "tensor wte[2] is a string: want a list of 16"),
    ("top-list", "want a JSON object"),
]


@pytest.mark.parametrize("damage, fragment", STATE_DICT_DAMAGES,
                         ids=[d[:12] for d, _ in STATE_DICT_DAMAGES])
def test_import_names_the_file_and_tensor_of_a_bad_value(capsys, runs, tmp_path, damage,
                                                          fragment):
    w = tmp_path / "w.json"
    assert main(capsys, "export", "--checkpoint", runs["float"], "--out", w)[0] == 0
    sd = json.loads(w.read_text())
    if damage == "ragged":
        sd["wte"][2] = sd["wte"][2][:-1]
    elif damage == "row-string":
        sd["wte"][2] = "oops"
    elif damage == "top-list":
        sd = list(sd.values())
    else:
        sd["wte"][0][1] = "MARK"
    text = json.dumps(sd)
    if damage not in ("ragged", "row-string", "top-list"):
        text = text.replace('"MARK"', damage)
    w.write_text(text)
    code, _, err = main(capsys, "import", w, "--out", tmp_path / "imported")
    assert_user_error(code, err, str(w), fragment)
    assert not (tmp_path / "imported").exists()


def test_import_of_binary_and_folders_is_one_line(capsys, tmp_path):
    binary = tmp_path / "w.json"
    binary.write_bytes(bytes(range(256)))
    code, _, err = main(capsys, "import", binary, "--out", tmp_path / "r")
    assert_user_error(code, err, str(binary), "not UTF-8")
    code, _, err = main(capsys, "import", tmp_path, "--out", tmp_path / "r")
    assert_user_error(code, err, "is a folder")
    deep = tmp_path / "deep.json"
    deep.write_text('{"wte": ' + "[" * 100_000 + "]" * 100_000 + "}")
    code, _, err = main(capsys, "import", deep, "--out", tmp_path / "r")
    assert_user_error(code, err, str(deep), "nested too deeply")
    assert not (tmp_path / "r").exists()


def test_export_writes_standard_json_and_never_nan(runs, tmp_path):
    def strict(text):
        raise AssertionError(f"non-standard JSON constant {text}")

    model, _ = training.load_run(runs["q4.12"])
    statedict.export_state_dict(model, tmp_path / "w.json")
    json.loads((tmp_path / "w.json").read_text(), parse_constant=strict)
    broken = training.FloatModel(training.TrainConfig(steps=1))
    broken.flat[5] = np.nan
    with pytest.raises(training.RunError, match="not finite"):
        statedict.export_state_dict(broken, tmp_path / "nan.json")
    assert not (tmp_path / "nan.json").exists()


@pytest.mark.parametrize("record", [bytes([0] * 16), bytes([16] + [0] * 15),
                                    bytes([2, 0, 27] + [0] * 13), bytes([1, 0, 5] + [0] * 13)])
def test_a_packed_dataset_record_is_checked(record):
    import zlib

    blob = bytearray(pack.pack(["emma", "ava"]))
    body = bytes(blob[pack.HEADER.size + 16 :]) + record
    header = pack.HEADER.pack(pack.MAGIC, pack.VERSION, pack.RECORD, 2, zlib.crc32(body))
    with pytest.raises(pack.PackError, match="record 1 is not a name"):
        pack.unpack(header + body, "n.bin")


# --- 7. options normalised or refused; nothing recorded without effect ---------------


@pytest.mark.parametrize("given", [" q4.12", "Q4.12", "q4.12 ", "q04.12"])
def test_format_spellings_are_normalised(capsys, names_file, tmp_path, monkeypatch, given):
    monkeypatch.chdir(tmp_path)
    code, _, err = main(capsys, "train", "--data", names_file, "--steps", 2, "--quiet",
                        "--format", given, "--master", given.replace("12", "20"))
    assert code == 0, err
    assert listing(tmp_path / "runs") == ["q4.12-seed42"] + [f"q4.12-seed42/{f}" for f in (
        "checkpoint.bin", "config.json", "losses.csv", "summary.json")]
    config = json.loads((tmp_path / "runs/q4.12-seed42/config.json").read_text())["config"]
    assert config["format"] == "q4.12" and config["master"] == "q4.20"


@pytest.mark.parametrize("argv, fragments", [
    (["--format", ""], ["--format is empty"]),
    (["--format", "  "], ["--format is empty"]),
    (["--format", "q4.12", "--master", ""], ["--master is empty"]),
    (["--policy", ""], ["--policy is empty"]),
    (["--format", "q4.12", "--policy", " "], ["--policy is empty"]),
    (["--format", "q4.12", "--master", "q4.x"], ["q4.x"]),
    (["--float", "--rounding", "stochastic"], ["--rounding", "only integer runs"]),
    (["--rounding", "floor"], ["--rounding", "only integer runs"]),
    (["--master", "q8.24"], ["--master", "only integer runs"]),
    (["--float", "--strict"], ["--strict", "only integer runs"]),
    (["--float", "--format", "q4.12"], ["exclude each other"]),
])
def test_options_without_effect_are_refused(capsys, names_file, tmp_path, argv, fragments):
    code, _, err = main(capsys, "train", "--data", names_file, "--steps", 2, "--quiet",
                        "--out", tmp_path / "run", *argv)
    assert_user_error(code, err, *fragments)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("formats, fragment", [("", "--formats is empty"),
                                                ("q4.12,", "--formats is empty"),
                                                ("q4.x", "--formats: format 'q4.x'")])
def test_conformance_formats_are_checked_before_any_run(capsys, monkeypatch, formats, fragment):
    from qgpt import conformance

    monkeypatch.setattr(conformance, "conformance", lambda *a: pytest.fail("it ran"))
    code, _, err = main(capsys, "conformance", "--formats", formats)
    assert_user_error(code, err, fragment)


def test_conformance_formats_are_normalised(capsys, monkeypatch):
    from qgpt import conformance

    seen = []
    monkeypatch.setattr(conformance, "conformance", lambda *a, **kw: seen.append(a) or 0)
    assert main(capsys, "conformance", "--formats", " Q4.12,q8.8", "--heapsize", "96k")[0] == 0
    assert seen[0][1] == ["q4.12", "q8.8"] and seen[0][4] == "96K"


def test_a_float_run_records_no_integer_option(runs):
    for name in ("config.json",):
        config = json.loads((runs["float"] / name).read_text())["config"]
        assert not set(training.INTEGER_ONLY) & set(config), config
    meta, _ = checkpoint.load(runs["float"] / "checkpoint.bin")
    assert not set(training.INTEGER_ONLY) & set(meta["config"])
    int_config = json.loads((runs["q4.12"] / "config.json").read_text())["config"]
    assert set(training.INTEGER_ONLY) <= set(int_config)


def test_bench_normalises_and_checks_its_lists(capsys, names_file):
    code, out, err = main(capsys, "bench", "--formats", " Q8.8", "--steps", 2, "--repeats", 1,
                          "--data", names_file)
    assert code == 0, err
    assert "q8.8 nearest" in out
    for argv, fragment in ((["--formats", "q8.x"], "--formats"), (["--formats", ","], "--formats"),
                           (["--rounding", "up"], "--rounding")):
        code, _, err = main(capsys, "bench", "--steps", 2, *argv)
        assert_user_error(code, err, fragment)


def test_bench_defaults_to_the_built_in_names(capsys, monkeypatch, names_file):
    """Even where makemore's names lie beside the project, as on the development machines."""
    def load(path):
        raise data.DataError(f"loaded {path}")

    monkeypatch.setattr(bench.data, "load", load)
    with pytest.raises(data.DataError) as e:
        bench.bench(steps=2, repeats=1)
    assert str(e.value) == f"loaded {data.DEFAULT_DATA}"
    assert cli.build_parser().parse_args(["bench"]).data is None


# --- 8. polish ----------------------------------------------------------------------


def test_ctrl_c_during_start_up_is_one_line(capsys, monkeypatch):
    def interrupt():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupt)
    code, _, err = main(capsys, "train")
    assert code == 130 and err == "qgpt: interrupted\n"


def test_ctrl_c_before_the_first_checkpoint_says_so(capsys, names_file, tmp_path, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(training.data, "load", interrupt)
    code, _, err = main(capsys, *train_args(names_file, tmp_path / "run", "--float"))
    assert code == 130 and err.strip() == "qgpt: interrupted; no checkpoint was written yet"


def test_ctrl_c_during_device_training_names_the_boards_checkpoint(capsys, monkeypatch):
    from qgpt.device import commands

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(commands, "train", interrupt)
    code, _, err = main(capsys, "device", "train", "--port", "P", "--quiet")
    assert code == 130
    assert err.strip() == ("qgpt: interrupted; the board's last checkpoint is kept "
                           "(continue with --resume)")


def test_the_cli_loads_nothing_heavy_before_main():
    """Ctrl-C can only be caught inside main: importing qgpt.cli must stay tiny."""
    r = subprocess.run([sys.executable, "-c", "import sys, qgpt.cli; print(sorted(m for m in "
                        "sys.modules if m.startswith(('numpy', 'qgpt.'))))"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "['qgpt.argtypes', 'qgpt.cli']", r.stdout


def test_help_is_for_users_and_every_option_has_a_help_text(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert "Train Karpathy's microgpt" in out and "main(argv)" not in out
    missing = []

    def walk(parser, prefix):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{prefix} {name}")
            elif action.help is None:
                missing.append(f"{prefix} {'/'.join(action.option_strings) or action.dest}")

    walk(cli.build_parser(), "qgpt")
    assert not missing, f"options without help text: {missing}"


def test_a_long_value_gives_a_short_line(capsys, tmp_path):
    long_name = "a" * 5000
    names = tmp_path / "names.txt"
    names.write_text(f"emma\n{long_name}\n")
    code, _, err = main(capsys, "train", "--data", names, "--steps", 2, "--out", tmp_path / "r")
    assert_user_error(code, err, "names.txt:2", "5000 characters", "--skip-long")
    names.write_text(f"emma\n{long_name}X\n")
    code, _, err = main(capsys, "train", "--data", names, "--skip-long", "--out", tmp_path / "r")
    assert_user_error(code, err, "names.txt:2", "'X'")
    code, _, err = main(capsys, "train", "--format", "q" * 5000, "--out", tmp_path / "r")
    assert_user_error(code, err, "--format", "I+F <= 16")
    code, _, err = main(capsys, "sample", "--checkpoint", tmp_path / ("d" * 5000))
    assert_user_error(code, err)
    code, _, err = main(capsys, "train", "--data", "x\ny", "--out", tmp_path / "r")
    assert_user_error(code, err, "x\\ny")


def test_argparse_errors_are_one_line(capsys):
    for argv in ([], ["trian"], ["train", "--rounding", "up"], ["sample"], ["train", "--steps"],
                 ["device"], ["formats", "--bogus"]):
        code, _, err = main(capsys, *argv)
        assert_user_error(code, err, "--help")


def test_a_run_of_params_shape_round_trips_through_every_check(runs, tmp_path):
    """The checks accept what qgpt itself writes: both kinds load, export and import."""
    for kind in runs:
        model, cfg = training.load_run(runs[kind])
        statedict.export_state_dict(model, tmp_path / f"{kind}.json")
        flat = statedict.import_state_dict(tmp_path / f"{kind}.json")
        assert flat.shape == (N_PARAMS,)
        assert np.array_equal(flat, model.float_params())
