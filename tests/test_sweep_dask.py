"""`qgpt sweep --scheduler` on Dask: the same results.csv and per-run losses with --jobs 1, the
process pool, a LocalCluster and a real `dask scheduler` with two `dask worker` processes on
the loopback address; a sweep killed midway and resumed on a LocalCluster gives the results
of an uninterrupted one; a dying worker costs only its run; an unreachable scheduler is one
line.
"""

import argparse
import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("distributed", reason="Dask is not installed: pip install -e '.[dask]'")

from qgpt import sweep  # noqa: E402
from qgpt.sweep import backends, execute  # noqa: E402
from qgpt.sweep.store import RUNS, RunStore  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
GRID = ["--formats", "q8.8,q4.12", "--rounding", "nearest,stochastic", "--seeds", "2",
        "--steps", "12"]
N_RUNS = 2 + 2 * 2 * 2


def _env():
    """The environment of processes that run qgpt: this checkout first on the path."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}


def _sweep(argv):
    parser = argparse.ArgumentParser(prog="qgpt")
    sweep.add_sweep_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["sweep", *argv])
    return args.func(args)


def _runs(out):
    """Each run's record (timings aside) and losses, by file name."""
    out_runs = {}
    for f in sorted((out / RUNS).glob("*.json")):
        doc = json.loads(f.read_text())
        doc["record"].pop(execute.TIMING_KEY)
        out_runs[f.name] = doc
    return out_runs


@pytest.fixture(scope="module")
def dask_scheduler(tmp_path_factory):
    """The address of a `dask scheduler` with two `dask worker` processes on 127.0.0.1,
    stopped (by their process ids) at the end."""
    d = tmp_path_factory.mktemp("dask")
    address_file = d / "scheduler.json"
    dask = [sys.executable, "-m", "dask"]
    started = []
    log = open(d / "dask.log", "w")
    try:
        started.append(subprocess.Popen(
            [*dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
             "--dashboard-address", "127.0.0.1:0", "--scheduler-file", str(address_file)],
            stdout=log, stderr=subprocess.STDOUT, env=_env(), start_new_session=True))
        deadline = time.monotonic() + 60
        while not address_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        address = json.loads(address_file.read_text())["address"]
        started.append(subprocess.Popen(
            [*dask, "worker", address, "--host", "127.0.0.1", "--nworkers", "2",
             "--nthreads", "1", "--no-dashboard"],
            stdout=log, stderr=subprocess.STDOUT, env=_env(), start_new_session=True))
        from distributed import Client

        with Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        for proc in reversed(started):  # each in its own session: its nanny and workers too
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in reversed(started):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()


@pytest.fixture(scope="module")
def everywhere(names_file, dask_scheduler, tmp_path_factory):
    """The same sweep with --jobs 1, the pool, a LocalCluster and the dask scheduler."""
    outs = {}
    for name, where in [("jobs1", ["--jobs", "1"]), ("pool", ["--jobs", "2"]),
                        ("local", ["--scheduler", "local", "--jobs", "2"]),
                        ("scheduler", ["--scheduler", dask_scheduler])]:
        out = tmp_path_factory.mktemp(name)
        assert _sweep([*GRID, *where, "--data", str(names_file), "--out", str(out)]) == 0
        outs[name] = out
    return outs


@pytest.mark.parametrize("where", ["pool", "local", "scheduler"])
def test_results_do_not_depend_on_where_runs_ran(everywhere, where):
    want, got = everywhere["jobs1"], everywhere[where]
    assert (got / "results.csv").read_bytes() == (want / "results.csv").read_bytes()
    want_runs, got_runs = _runs(want), _runs(got)
    assert len(got_runs) == N_RUNS and got_runs.keys() == want_runs.keys()
    for name, doc in got_runs.items():
        assert doc["losses"] == want_runs[name]["losses"], f"{name}: losses differ on {where}"
        assert doc["record"] == want_runs[name]["record"], f"{name}: record differs on {where}"


def test_results_say_where_runs_ran(everywhere, dask_scheduler):
    ran_on = {k: json.loads((v / "results.json").read_text())["ran_on"]
              for k, v in everywhere.items()}
    assert ran_on == {"jobs1": "1 process", "pool": "2 processes",
                      "local": "a LocalCluster with 2 workers",
                      "scheduler": f"the Dask scheduler {dask_scheduler} with 2 workers"}


def _kill_midway_and_resume(names_file, grid, out, want):
    """Start the sweep on a LocalCluster of 2 workers in a process of its own, kill it
    (SIGKILL to its whole process group) once a run has finished, resume it, and compare
    results.csv with want's."""
    command = [sys.executable, "-m", "qgpt", "sweep", *grid, "--scheduler", "local",
               "--jobs", "2", "--data", str(names_file), "--out", str(out)]
    proc = subprocess.Popen(command, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not list((out / RUNS).glob("*.json")) and time.monotonic() < deadline:
            assert proc.poll() is None, "the sweep ended before a run finished"
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    n_runs = len(list((want / RUNS).glob("*.json")))
    finished = len(list((out / RUNS).glob("*.json")))
    assert 0 < finished < n_runs, f"killed after {finished} of {n_runs} runs: not midway"
    assert not (out / "results.csv").exists()
    resumed = subprocess.run([*command, "--resume"], env=_env(), capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming: {finished} finished already" in resumed.stderr
    assert resumed.stderr.count(" val_nll ") == n_runs - finished  # only the rest ran
    assert (out / "results.csv").read_bytes() == (want / "results.csv").read_bytes()


def test_killed_sweep_resumes_to_the_same_results(everywhere, names_file, tmp_path):
    _kill_midway_and_resume(names_file, GRID, tmp_path / "out", everywhere["pool"])


# --- a worker that dies ---


def dying_run(run, marker_dir, die_always):
    """run_one, but the worker process running `q4.12 nearest seed 43` dies: once (a marker
    file remembers it), or every time."""
    marker = Path(marker_dir) / "died"
    if run.label == "q4.12 nearest seed 43" and (die_always or not marker.exists()):
        marker.touch()
        os._exit(1)
    return execute.run_one(run)


def test_a_dying_worker_costs_only_its_run(names_file, tmp_path, everywhere):
    cfg = sweep.make_config("q8.8,q4.12", "nearest,stochastic", seeds=2, steps=12,
                            data_path=str(names_file))
    runs = cfg.runs()
    for name in ("once", "always"):
        (tmp_path / name).mkdir()
    with backends.open_backend(2, "local", len(runs)) as backend:
        # dies once: run again elsewhere, and the sweep's runs are all there and the same
        once = RunStore(tmp_path / "once")
        records, losses = execute.run_all(
            runs, backend, once, lambda s: None,
            task=functools.partial(dying_run, marker_dir=str(tmp_path), die_always=False))
        assert (tmp_path / "died").exists()
        assert _runs(tmp_path / "once") == _runs(everywhere["jobs1"])
        # dies every time: reported, and every other run is kept for --resume
        always = RunStore(tmp_path / "always")
        lines = []
        with pytest.raises(sweep.SweepError) as e:
            execute.run_all(runs, backend, always, lines.append,
                            task=functools.partial(dying_run, marker_dir=str(tmp_path),
                                                   die_always=True))
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"1 of {N_RUNS} runs failed")
    assert "q4.12 nearest seed 43" in msg and "--resume" in msg
    assert [line for line in lines if "failed" in line][0].split()[3:7] == [
        "q4.12", "nearest", "seed", "43"]
    assert len(list((tmp_path / "always" / RUNS).glob("*.json"))) == N_RUNS - 1


def test_unreachable_scheduler_is_one_line(names_file, tmp_path, capsys, monkeypatch):
    import socket

    from qgpt import cli

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(backends, "CONNECT_TIMEOUT", 2)
    out = tmp_path / "out"
    rc = cli.main(["sweep", "--formats", "q4.12", "--seeds", "1", "--steps", "2",
                   "--scheduler", f"tcp://127.0.0.1:{port}", "--data", str(names_file),
                   "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1, err
    assert err.startswith(f"qgpt: error: --scheduler tcp://127.0.0.1:{port}: cannot reach")
    assert not (out / "sweep.json").exists()  # a rerun needs no --resume


@pytest.mark.slow
def test_hundred_run_sweep_killed_and_resumed(names_file, tmp_path):
    """The issue's acceptance test: 100 runs (2 formats x 2 roundings x 2 lr + float x 2 lr,
    x 10 seeds) on a LocalCluster of 2 workers, killed midway and resumed, give the
    results.csv of an uninterrupted local run."""
    grid = ["--formats", "q8.8,q4.12", "--rounding", "nearest,stochastic", "--lr", "0.01,0.02",
            "--seeds", "10", "--steps", "30"]
    whole = tmp_path / "whole"
    assert _sweep([*grid, "--data", str(names_file), "--out", str(whole)]) == 0
    assert len(list((whole / RUNS).glob("*.json"))) == 100
    _kill_midway_and_resume(names_file, grid, tmp_path / "killed", whole)
