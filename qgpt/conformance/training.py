"""Levels "steps" and "run": whole training steps on the device vs the simulator.


--- levels "steps" and "run": whole training steps on the device vs the simulator ---

The device runs firmware/qgpt_train.py (the run protocol of firmware/README.md) on
a packed dataset in a temporary folder; the host runs the same steps with
qgpt.int_model.IntModel (the code `qgpt train` uses). Compared with ==:
  steps  the loss_q16 of every step, and after steps 1, 2, 10 and 100 the weight
         store, the step's gradient, Adam's m and v (the device dumps them: "dump"
         lines), then the final state hash; built-in names (data/names.txt)
  run    a whole 1000-step run on makemore's names: every loss_q16, the final state
         hash (CRC32 of params, m, v as int32 LE), and the 20 samples
"""

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from qgpt import prng
from qgpt.conformance.build import firmware_build
from qgpt.conformance.device_run import (
    STATE_ARRAYS,
    TRAIN_HEAPSIZE,
    TRAIN_HEAPSIZE_MASTER,
    TRAIN_SEED,
    TRAIN_STEPS,
    TrainCase,
    device_config,
    finish_training,
    pack_names,
    read_dump,
    start_training,
    state_hash,
    tensor_at,
)
from qgpt.conformance.report import TrainMismatch, TrainReport, print_report
from qgpt.firmware_build import FIRMWARE_DIR
from qgpt.params import N_PARAMS, SLOTS

STEPS_FORMATS = ("q8.8", "q4.12")
STEPS_ROUNDINGS = ("nearest", "floor", "stochastic")
STEPS_EXTRA = (("q4.12", "stochastic", "q4.20"), ("q6.10", "nearest", ""),
               ("q12.4", "stochastic", ""), ("q2.14", "nearest", ""))  # cheap others
STEPS_DUMPS = (1, 2, 10, 100)
MAKEMORE = FIRMWARE_DIR.parent.parent / "shared" / "data" / "names-makemore.txt"


def simulate(case, names, upto, steps=TRAIN_STEPS, seed=TRAIN_SEED, dump_steps=()):
    """The host's run of the same steps: (IntModel, [loss_q16 per step], {step: state}),
    state = params, grad, adam_m, adam_v after that step. The loop of qgpt/train.py."""
    from qgpt import data
    from qgpt.int_model import IntModel
    from qgpt.train import TrainConfig

    cfg = TrainConfig(steps=steps, seed=seed, format=case.fmt, rounding=case.rounding,
                      master=case.master)
    model = IntModel(cfg)
    seen = {}
    adam_step = model.opt.step

    def capture(store, g, *args):  # the step's gradient, as Adam receives it
        seen["grad"] = g.copy()
        return adam_step(store, g, *args)

    model.opt.step = capture
    losses, states = [], {}
    for step in range(upto):
        name = names[prng.doc_index(step, len(names), seed)]
        _, tele = model.train_step(data.encode(name), step, steps)
        losses.append(int(tele["loss_q16"]))
        if step + 1 in dump_steps:
            states[step + 1] = (model.store.copy(), seen["grad"], model.opt.m.copy(),
                                model.opt.v.copy())
    model.opt.step = adam_step
    return model, losses, states



def compare_state(level, case, step, device, simulator, mismatches, limit=2):
    """Compare (params, grad, m, v) tuples; the first `limit` differing values of each
    tensor of each array are listed. Returns the number of values compared."""
    for what, dev, sim in zip(STATE_ARRAYS, device, simulator, strict=True):
        dev, sim = np.asarray(dev), np.asarray(sim)
        for s in SLOTS:
            part = slice(s.offset, s.offset + s.size)
            for j in np.flatnonzero(dev[part] != sim[part])[:limit] + s.offset:
                name, idx = tensor_at(int(j))
                mismatches.append(TrainMismatch(level, case.fmt, case.name, step, what, name,
                                                idx, int(j), int(dev[j]), int(sim[j])))
    return 4 * N_PARAMS


def compare_losses(level, case, device_losses, host_losses, mismatches, start=0, limit=3):
    """Per-step loss_q16: the first `limit` differences, and missing steps."""
    bad = 0
    for i, want in enumerate(host_losses):
        got = device_losses.get(start + i + 1)
        if got != want:
            mismatches.append(TrainMismatch(level, case.fmt, case.name, start + i + 1,
                                            "loss_q16", device=got, simulator=want))
            bad += 1
            if bad >= limit:
                break
    return len(host_losses)


def _steps_cases(formats, roundings, extra):
    cases = [TrainCase(f, r) for f in formats for r in roundings]
    return cases + [TrainCase(*e) for e in extra if TrainCase(*e) not in cases]


def run_steps(formats=STEPS_FORMATS, roundings=STEPS_ROUNDINGS, extra=STEPS_EXTRA,
              dump_steps=STEPS_DUMPS, micropython=None, target="unix", seed=TRAIN_SEED,
              heapsize=None, firmware_dir=FIRMWARE_DIR, workdir=None):
    """Level "steps": each case trains max(dump_steps) steps on the device and on the
    host (lr schedule of TRAIN_STEPS), compared after every step (loss_q16) and after
    each of dump_steps (params, gradient, m, v); returns a TrainReport."""
    t0 = time.time()
    report = TrainReport("steps")
    cases = _steps_cases(formats, roundings, extra)
    upto = max(dump_steps)
    with tempfile.TemporaryDirectory(prefix="qgpt-steps-", dir=workdir) as tmp:
        tmp = Path(tmp)
        fw = firmware_build(tmp / "firmware", target, source_dir=firmware_dir)
        names = pack_names(None, tmp / "names.bin")
        running = []
        for i, case in enumerate(cases):  # all devices at once, then the host
            folder = tmp / f"case{i}"
            folder.mkdir()
            cfg = device_config(case, tmp / "names.bin", seed=seed, stop_at=upto,
                                dump_steps=list(dump_steps))
            heap = heapsize or (TRAIN_HEAPSIZE_MASTER if case.master else TRAIN_HEAPSIZE)
            running.append((case, folder, start_training(cfg, folder, micropython, heap,
                                                         target, fw)))
        for case, folder, proc in running:
            model, losses, states = simulate(case, names, upto, seed=seed,
                                             dump_steps=dump_steps)
            dev = finish_training(proc, folder)
            bad_before = len(report.mismatches)
            values = 0
            if dev.failure:
                report.mismatches.append(TrainMismatch("steps", case.fmt, case.name, None,
                                                       "device", device=dev.failure))
            else:
                report.device = f"{target} ({dev.start.split('viper=')[1].split()[0]}-bit viper)"
                if dev.done.get("heap_peak"):
                    report.heap_peak = max(report.heap_peak or 0, dev.done["heap_peak"])
                values += compare_losses("steps", case, dev.losses, losses, report.mismatches)
                for step in dump_steps:
                    if step not in dev.dumps:
                        report.mismatches.append(TrainMismatch(
                            "steps", case.fmt, case.name, step, "device",
                            device=f"no dump after step {step}"))
                        continue
                    values += compare_state("steps", case, step, read_dump(dev.dumps[step]),
                                            states[step], report.mismatches)
                want = state_hash(model.store, model.opt.m, model.opt.v)
                values += 1
                if dev.done["hash"] != want:
                    report.mismatches.append(TrainMismatch(
                        "steps", case.fmt, case.name, upto, "hash",
                        device=f"{dev.done['hash']:08x}", simulator=f"{want:08x}"))
            bad = len(report.mismatches) - bad_before
            report.rows.append([case.fmt, case.name, upto, values,
                                "ok" if bad == 0 else f"FAIL ({bad})"])
    report.seconds = time.time() - t0
    return report


def run_run(data=None, fmt="q4.12", rounding="nearest", master="", steps=TRAIN_STEPS,
            seed=TRAIN_SEED, samples=20, micropython=None, target="unix",
            heapsize=None, firmware_dir=FIRMWARE_DIR, workdir=None):
    """Level "run": a whole training run on makemore's names (read in place), device vs
    host: every step's loss_q16, the final state hash (and on a mismatch the tensors
    of the device's checkpoint), the samples. Skipped if the names file is absent."""
    from qgpt import checkpoint
    from qgpt.train import sample as host_sample

    t0 = time.time()
    report = TrainReport("run")
    data = Path(data) if data else MAKEMORE
    if not data.exists():
        report.skipped = f"{data} is absent (makemore's names.txt, read in place)"
        return report
    case = TrainCase(fmt, rounding, master)
    with tempfile.TemporaryDirectory(prefix="qgpt-run-", dir=workdir) as tmp:
        tmp = Path(tmp)
        fw = firmware_build(tmp / "firmware", target, source_dir=firmware_dir)
        names = pack_names(data, tmp / "names.bin")
        cfg = device_config(case, tmp / "names.bin", steps=steps, seed=seed, samples=samples,
                            log_every=1)
        heap = heapsize or (TRAIN_HEAPSIZE_MASTER if master else TRAIN_HEAPSIZE)
        proc = start_training(cfg, tmp, micropython, heap, target, fw)
        model, losses, _ = simulate(case, names, steps, steps=steps, seed=seed)
        host_names = host_sample(model, n=samples, temperature=0.5, seed=seed)
        dev = finish_training(proc, tmp)
        values = 0
        if dev.failure:
            report.mismatches.append(TrainMismatch("run", fmt, case.name, None, "device",
                                                   device=dev.failure))
        else:
            report.device = f"{target} ({dev.start.split('viper=')[1].split()[0]}-bit viper)"
            report.heap_peak = dev.done.get("heap_peak")
            values += compare_losses("run", case, dev.losses, losses, report.mismatches)
            want = state_hash(model.store, model.opt.m, model.opt.v)
            values += 1
            if dev.done["hash"] != want:
                report.mismatches.append(TrainMismatch("run", fmt, case.name, steps, "hash",
                                                       device=f"{dev.done['hash']:08x}",
                                                       simulator=f"{want:08x}"))
                meta, arrays = checkpoint.load(tmp / "ckpt.bin")
                compare_state("run", case, steps, (arrays["params"], np.zeros(N_PARAMS),
                                                   arrays["adam_m"], arrays["adam_v"]),
                              (model.store, np.zeros(N_PARAMS), model.opt.m, model.opt.v),
                              report.mismatches)
            for i, want_name in enumerate(host_names):
                got = dev.samples[i] if i < len(dev.samples) else None
                values += 1
                if got != want_name:
                    report.mismatches.append(TrainMismatch("run", fmt, case.name, None,
                                                           f"sample {i}", device=repr(got),
                                                           simulator=repr(want_name)))
        bad = len(report.mismatches)
        report.rows.append([fmt, case.name, steps, values, "ok" if bad == 0 else f"FAIL ({bad})"])
    report.seconds = time.time() - t0
    return report


def conformance_steps(formats=None, micropython=None, seed=TRAIN_SEED, target="unix",
                      dump_steps=STEPS_DUMPS, out=None, **kw):
    """Level "steps" for the CLI: prints the table and the first mismatches; exit code."""
    report = run_steps(tuple(formats or STEPS_FORMATS), micropython=micropython, seed=seed,
                       target=target, dump_steps=dump_steps, **kw)
    print_report(report, out or sys.stdout)
    return report.exit_code


def conformance_run(data=None, micropython=None, seed=TRAIN_SEED, target="unix", out=None,
                    **kw):
    """Level "run" for the CLI: prints the table (or why it was skipped); exit code."""
    report = run_run(data, micropython=micropython, seed=seed, target=target, **kw)
    print_report(report, out or sys.stdout)
    return report.exit_code
