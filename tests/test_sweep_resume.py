"""`qgpt sweep --resume` in this process (--jobs 1): every finished run is on disk, a resumed
sweep redoes only the missing runs and ends with the same results.csv, and a folder holding
another sweep is refused in one line. Kill-and-resume on Dask is in test_sweep_dask.py.
"""

import argparse
import json

import pytest

from qgpt import sweep
from qgpt.sweep.store import MANIFEST, RUNS

ARGS = ["--formats", "q8.8,q4.12", "--rounding", "nearest,stochastic", "--seeds", "2",
        "--steps", "6", "--jobs", "1"]
N_RUNS = 2 + 2 * 2 * 2


def _run(argv):
    parser = argparse.ArgumentParser(prog="qgpt")
    sweep.add_sweep_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["sweep", *argv])
    return args.func(args)


def _progress_lines(capsys):
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("[")]


@pytest.fixture(scope="module")
def finished(names_file, tmp_path_factory):
    """A whole sweep, run once without interruption."""
    out = tmp_path_factory.mktemp("whole")
    assert _run([*ARGS, "--data", str(names_file), "--out", str(out)]) == 0
    return out


def test_every_run_is_on_disk(finished):
    files = sorted((finished / RUNS).glob("*.json"))
    assert len(files) == N_RUNS
    doc = json.loads(files[0].read_text())
    assert set(doc) == {"record", "losses"} and len(doc["losses"]) == 6
    assert json.loads((finished / MANIFEST).read_text())["sweep"]["grid"]["steps"] == [6]
    assert not list(finished.rglob("*.tmp"))


def test_resume_redoes_only_missing_runs(finished, names_file, tmp_path, capsys):
    out = tmp_path / "out"
    assert _run([*ARGS, "--data", str(names_file), "--out", str(out)]) == 0
    gone = sorted((out / RUNS).glob("q4.12-stochastic*.json"))
    assert len(gone) == 2
    for f in gone:
        f.unlink()
    (out / "results.csv").unlink()
    capsys.readouterr()
    assert _run([*ARGS, "--data", str(names_file), "--out", str(out), "--resume"]) == 0
    err = capsys.readouterr().err
    ran = [line.split("]")[1].split()[:4] for line in err.splitlines() if line.startswith("[")]
    assert ran == [["q4.12", "stochastic", "seed", "42"], ["q4.12", "stochastic", "seed", "43"]]
    assert f"resuming: {N_RUNS - 2} finished already" in err.splitlines()[0]
    assert (out / "results.csv").read_bytes() == (finished / "results.csv").read_bytes()
    for f in gone:  # the redone runs' losses are the uninterrupted sweep's
        assert (json.loads(f.read_text())["losses"]
                == json.loads((finished / RUNS / f.name).read_text())["losses"])


def test_resume_of_a_finished_sweep_runs_nothing(finished, names_file, tmp_path, capsys):
    out = tmp_path / "copy"
    out.mkdir()
    for f in [finished / MANIFEST, *sorted((finished / RUNS).glob("*.json"))]:
        target = out / f.relative_to(finished)
        target.parent.mkdir(exist_ok=True)
        target.write_bytes(f.read_bytes())
    capsys.readouterr()
    assert _run([*ARGS, "--data", str(names_file), "--out", str(out), "--resume"]) == 0
    assert _progress_lines(capsys) == []
    assert (out / "results.csv").read_bytes() == (finished / "results.csv").read_bytes()


def test_a_folder_with_a_sweep_needs_resume(finished, names_file, capsys):
    from qgpt import cli

    rc = cli.main(["sweep", *ARGS, "--data", str(names_file), "--out", str(finished)])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "pass --resume" in err


@pytest.mark.parametrize("change, words", [
    (["--steps", "7"], "steps 6 -> 7"),
    (["--formats", "q8.8"], "format q8.8,q4.12 -> q8.8"),
    (["--seeds", "3"], "seeds 2 -> 3"),
])
def test_changed_arguments_refuse_to_resume(finished, names_file, change, words, capsys):
    from qgpt import cli

    before = sorted(p.name for p in finished.rglob("*"))
    argv = [*ARGS, "--data", str(names_file), "--out", str(finished), "--resume"]
    option = argv.index(change[0])
    argv[option + 1] = change[1]
    rc = cli.main(["sweep", *argv])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1, err
    assert "other arguments" in err and words in err
    assert sorted(p.name for p in finished.rglob("*")) == before  # nothing written


def test_resume_into_an_empty_folder_starts_afresh(names_file, tmp_path):
    out = tmp_path / "new"
    assert _run(["--formats", "q4.12", "--seeds", "1", "--steps", "2", "--jobs", "1",
                 "--data", str(names_file), "--out", str(out), "--resume"]) == 0
    assert len(list((out / RUNS).glob("*.json"))) == 2
