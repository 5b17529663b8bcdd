"""Levels "steps" and "run": whole training steps on the device vs the simulator.

The device runs firmware/qgpt_train.py (the run protocol of firmware/README.md) on
a packed dataset in a temporary folder; the host runs the same steps with
qgpt.int_model.IntModel (the code `qgpt train` uses). Compared with ==:
  steps  every format of the op level with each rounding, master-weight cases (31-bit
         masters included) and q3.13 at lr 0.9 (the linears' sums past 2**31): the
         loss_q16 of every step, and after steps 1, 2, 10 and 100 the weight store, the
         step's gradient, Adam's m and v (the device dumps them: "dump" lines), then the
         final state hash; built-in names
  run    whole 1000-step runs (nearest, stochastic, master weights) on the built-in
         names (or --data): every loss_q16, the final state hash (CRC32 of params, m,
         v as int32 LE) and 20 samples. On a hash mismatch the first divergence is
         searched: dumps every 100 steps, then every step of the first window that
         differs, and the first differing values of that step are listed.
Every differing value is counted (rows and totals); the first few are listed.
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
    TRAIN_SEED,
    TRAIN_STEPS,
    TrainCase,
    device_config,
    device_heap,
    finish_training,
    model_hash,
    pack_names,
    policy_case,
    read_dump,
    start_training,
    stop,
    tensor_at,
)
from qgpt.conformance.inputs import FORMATS, ops_master
from qgpt.conformance.report import TrainMismatch, TrainReport, print_report
from qgpt.firmware_build import FIRMWARE_DIR
from qgpt.params import N_PARAMS, SLOTS

STEPS_FORMATS = FORMATS
STEPS_ROUNDINGS = ("nearest", "floor", "stochastic")
STEPS_EXTRA = (("q4.12", "stochastic", "q4.20"), ("q4.12", "nearest", "q4.27"),
               ("q8.8", "floor", "q8.23"), ("q1.15", "stochastic", "q1.30"))  # masters
# precision policies (docs/arithmetic.md 3.2): 8-bit containers, Fw != Fa, block-scaled
# Adam state, the pseudo-stochastic and Kahan updates, narrow grads and 32-bit pgrads
STEPS_POLICIES = ("int8", "weights=q8.8,acts=q4.12", "weights=q2.6,acts=q4.4",
                  "adam_m=b16x256,adam_v=b4x8,rounding=pseudo",
                  "weights=q2.6,acts=q4.4,rounding=stochastic",
                  "weights=q8.8,acts=q4.12,grads=q3.13,pgrads=q12.20,rounding=floor")
# a learning rate of 0.9 on q3.13 (format, rounding, lr): from the second step on, weights
# near the format's limits drive the linears' sums past 2**31, where the fast paths'
# bound (L1 of x times max |W| below 2**30) sends them to the exact path. A max |W| bound
# that lags the weights (model.py's train_step raises it too little) takes a fast path
# there, which overflows a 32-bit board's int: the int32 target fails within 3 steps
STEPS_HIGH_LR = (("q3.13", "nearest", 0.9),)
STEPS_DUMPS = (1, 2, 10, 100)
RUN_CASES = (("q4.12", "nearest", ""), ("q4.12", "stochastic", ""),
             ("q4.12", "stochastic", "q4.20"))
DIVERGENCE_WINDOW = 100  # the run level's first search: a dump every this many steps
LISTED_PER_TENSOR = 2  # differing values listed per tensor and array (all are counted)
# the packed dataset as the device's config names it: relative to the run's folder
# (tmp/caseN), as a board's "names.bin" is, so that the heap does not hold a long path
# (its text and its interned name count against the heap: firmware/README.md, "Memory")
DEVICE_DATA = "../names.bin"


def simulate(case, names, upto, steps=TRAIN_STEPS, seed=TRAIN_SEED, dump_steps=()):
    """The host's run of the same steps: (IntModel, [loss_q16 per step], {step: state}),
    state = params, grad, adam_m, adam_v after that step. The loop of qgpt/train.py."""
    from qgpt import data
    from qgpt.int_model import IntModel
    from qgpt.train import TrainConfig

    policy = ""
    if case.policy:  # TrainConfig's normal form of the SPEC, as qgpt train records it
        from qgpt.policy import train_settings

        policy = train_settings(None, case.policy, None, case.rounding, case.lr)[3]
    cfg = TrainConfig(steps=steps, seed=seed, format=case.fmt, rounding=case.rounding,
                      master=case.master, policy=policy, lr=case.lr)
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
                                model.opt.v.copy()) + _extra_state(model)
    model.opt.step = adam_step
    return model, losses, states


def _extra_state(model):
    """9.6's arrays (block shifts, kahan_comp) of the host's optimizer, concatenated as
    a device dump holds them: a 1-tuple, or () when the policy has none."""
    extra = [a for k, a in model.opt.arrays().items() if k not in ("adam_m", "adam_v")]
    return (np.concatenate(extra).astype(np.int64),) if extra else ()


def compare_state(report, case, step, device, simulator, limit=LISTED_PER_TENSOR):
    """Compare (params, grad, m, v[, 9.6's arrays]) tuples: every differing value is
    counted in report.total, the first `limit` of each tensor of each array listed.
    Returns the number of values compared."""
    if len(device) != len(simulator):
        _device_failed(report, case, f"a dump of {len(device)} arrays, the host has "
                       f"{len(simulator)}")
        return 0
    if len(simulator) > 4:  # block shifts and kahan_comp, as one array
        dev, sim = np.asarray(device[4]), np.asarray(simulator[4])
        bad = np.flatnonzero(dev != sim)
        report.total += len(bad)
        for j in bad[:limit]:
            report.mismatches.append(TrainMismatch(report.level, case.fmt, case.name, step,
                                                   "9.6 arrays", flat=int(j),
                                                   device=int(dev[j]), simulator=int(sim[j])))
    for what, dev, sim in zip(STATE_ARRAYS, device[:4], simulator[:4], strict=True):
        dev, sim = np.asarray(dev), np.asarray(sim)
        for s in SLOTS:
            part = slice(s.offset, s.offset + s.size)
            bad = np.flatnonzero(dev[part] != sim[part]) + s.offset
            report.total += len(bad)
            for j in bad[:limit]:
                name, idx = tensor_at(int(j))
                report.mismatches.append(TrainMismatch(report.level, case.fmt, case.name, step,
                                                       what, name, idx, int(j), int(dev[j]),
                                                       int(sim[j])))
    return 4 * N_PARAMS + sum(np.size(a) for a in simulator[4:])


def compare_losses(report, case, device_losses, host_losses, start=0, limit=3):
    """Per-step loss_q16: every difference (and missing step) counted, the first
    `limit` listed. Returns the number of values compared."""
    bad = 0
    for i, want in enumerate(host_losses):
        got = device_losses.get(start + i + 1)
        if got != want:
            bad += 1
            if bad <= limit:
                report.mismatches.append(TrainMismatch(report.level, case.fmt, case.name,
                                                       start + i + 1, "loss_q16", device=got,
                                                       simulator=want))
    report.total += bad
    return len(host_losses)


def compare_stalled(report, case, step, dev, model):
    """The count of stalled updates (Adam's telemetry: delta != 0 rounded to 0)."""
    got, want = dev.done.get("stalled"), model.stalled_total
    if got != want:
        report.total += 1
        report.mismatches.append(TrainMismatch(report.level, case.fmt, case.name, step,
                                               "stalled", device=got, simulator=want))
    return 1


CHECKPOINT_META = ("p1", "p2", "stalled_total", "steps_taken")  # the optimizer's counters


def compare_checkpoint(report, case, step, folder, model):
    """The optimizer's counters in the device's final checkpoint (a resume reads them)
    against the simulator's; returns how many values were compared."""
    from qgpt import checkpoint

    try:
        meta, _ = checkpoint.load(Path(folder) / "ckpt.bin")
    except checkpoint.CheckpointError as e:
        meta = {"error": str(e)}
    want = model.state()[0]
    for field in CHECKPOINT_META:
        if meta.get(field) != want[field]:
            report.total += 1
            report.mismatches.append(TrainMismatch(report.level, case.fmt, case.name, step,
                                                   f"checkpoint {field}",
                                                   device=meta.get(field, meta.get("error")),
                                                   simulator=want[field]))
    return len(CHECKPOINT_META)


def compare_hash(report, case, step, dev, model):
    """The device's `done` hash against the simulator's state hash; True if they agree."""
    want = model_hash(model)
    if dev.done["hash"] == want:
        return True
    report.total += 1
    report.mismatches.append(TrainMismatch(report.level, case.fmt, case.name, step, "hash",
                                           device=f"{dev.done['hash']:08x}",
                                           simulator=f"{want:08x}"))
    return False


def _device_failed(report, case, why):
    report.total += 1
    report.mismatches.append(TrainMismatch(report.level, case.fmt, case.name, None, "device",
                                           device=why))


def _note_device(report, target, dev):
    bits = dev.start.split("viper=")[1].split()[0] if "viper=" in dev.start else "?"
    report.device = f"{target} ({bits}-bit viper)"
    if dev.done.get("heap_peak"):
        report.heap_peak = max(report.heap_peak or 0, dev.done["heap_peak"])


def _steps_cases(formats, roundings, extra, policies=(), high_lr=()):
    cases = [TrainCase(f, r, ops_master(f, r)) for f in formats for r in roundings]
    cases += [TrainCase(*e) for e in extra if TrainCase(*e) not in cases]
    cases += [TrainCase(f, r, ops_master(f, r), lr=lr) for f, r, lr in high_lr]
    return cases + [policy_case(spec) for spec in policies]


def run_steps(formats=STEPS_FORMATS, roundings=STEPS_ROUNDINGS, extra=STEPS_EXTRA,
              dump_steps=STEPS_DUMPS, micropython=None, target="unix", seed=TRAIN_SEED,
              heapsize=None, firmware_dir=FIRMWARE_DIR, workdir=None, timeout=3600,
              build="mpy", policies=(), cases=None, built=None, high_lr=()):
    """Level "steps": each case trains max(dump_steps) steps on the device and on the
    host (lr schedule of TRAIN_STEPS), compared after every step (loss_q16) and after
    each of dump_steps (params, gradient, m, v); returns a TrainReport. A format that
    needs master weights (too few fractional bits for the update) gets master_for's.
    policies: SPECs trained too (the device config's `policy` key, the simulator's
    TrainConfig.policy); high_lr: (format, rounding, lr) cases (the CLI: STEPS_HIGH_LR);
    cases: [TrainCase] instead of all these (tests); built: a firmware folder already
    built for the target (else built from firmware_dir)."""
    t0 = time.time()
    report = TrainReport("steps")
    if cases is None:
        cases = _steps_cases(formats, roundings, extra, policies, high_lr)
    upto = max(dump_steps)
    with tempfile.TemporaryDirectory(prefix="qgpt-steps-", dir=workdir) as tmp:
        tmp = Path(tmp)
        fw = built or firmware_build(tmp / "firmware", target, build, firmware_dir,
                                     micropython)
        names = pack_names(None, tmp / "names.bin")
        running = []
        try:
            for i, case in enumerate(cases):  # all devices at once, then the host
                folder = tmp / f"case{i}"
                folder.mkdir()
                cfg = device_config(case, DEVICE_DATA, seed=seed, stop_at=upto,
                                    dump_steps=list(dump_steps))
                heap = heapsize or device_heap(case, build)
                running.append((case, folder, start_training(cfg, folder, micropython, heap,
                                                             target, fw)))
            for case, folder, proc in running:
                model, losses, states = simulate(case, names, upto, seed=seed,
                                                 dump_steps=dump_steps)
                dev = finish_training(proc, folder, timeout)
                before, values = report.total, 0
                if dev.failure:
                    _device_failed(report, case, dev.failure)
                else:
                    _note_device(report, target, dev)
                    values += compare_losses(report, case, dev.losses, losses)
                    for step in dump_steps:
                        if step not in dev.dumps:
                            _device_failed(report, case, f"no dump after step {step}")
                            continue
                        dump = read_dump(dev.dumps[step], sum(np.size(a) for a in
                                                              states[step][4:]))
                        values += compare_state(report, case, step, dump, states[step])
                    values += compare_stalled(report, case, upto, dev, model)
                    values += 1
                    compare_hash(report, case, upto, dev, model)
                bad = report.total - before
                report.rows.append([case.fmt, case.name, upto, values,
                                    "ok" if bad == 0 else f"FAIL ({bad})"])
        finally:
            for _, _, proc in running:
                stop(proc)
    report.seconds = time.time() - t0
    return report


def _state_dumps(case, data, names, seed, steps, dump_steps, fw, run):
    """Device and host states after each of dump_steps: ({step: device state}, {step:
    host state}); the device stops after the last of them."""
    folder = run["tmp"] / f"divergence-{dump_steps[0]}-{dump_steps[-1]}"
    folder.mkdir()
    cfg = device_config(case, data, steps=steps, seed=seed, stop_at=dump_steps[-1],
                        dump_steps=list(dump_steps))
    proc = start_training(cfg, folder, run["micropython"], run["heap"], run["target"], fw)
    _, _, host = simulate(case, names, dump_steps[-1], steps=steps, seed=seed,
                          dump_steps=dump_steps)
    dev = finish_training(proc, folder, run["timeout"])
    if dev.failure:
        raise RuntimeError(dev.failure)
    extra = sum(np.size(a) for a in host[dump_steps[-1]][4:])
    return {s: read_dump(p, extra) for s, p in dev.dumps.items()}, host


def _differs(device, host):
    return any(not np.array_equal(np.asarray(d), np.asarray(h))
               for d, h in zip(device, host, strict=True))


def first_divergence(report, case, data, names, seed, steps, fw, run):
    """The first step after which the device's state (params, grad, m, v) differs from
    the host's: dumps every DIVERGENCE_WINDOW steps, then every step of the first
    window that differs; its differing values go into report (step, array, tensor,
    index, both values). Returns the step, or None if no dump differs."""
    coarse = list(range(DIVERGENCE_WINDOW, steps + 1, DIVERGENCE_WINDOW))
    if not coarse or coarse[-1] != steps:
        coarse.append(steps)
    device, host = _state_dumps(case, data, names, seed, steps, coarse, fw, run)
    hit = next((s for s in coarse if s not in device or _differs(device[s], host[s])), None)
    if hit is None:
        return None
    start = max([0] + [s for s in coarse if s < hit])
    fine = list(range(start + 1, hit + 1))
    device, host = _state_dumps(case, data, names, seed, steps, fine, fw, run)
    first = next(s for s in fine if s not in device or _differs(device[s], host[s]))
    if first not in device:
        _device_failed(report, case, f"no dump after step {first}")
        return first
    report.mismatches.append(TrainMismatch(report.level, case.fmt, case.name, first,
                                           "first divergence"))
    compare_state(report, case, first, device[first], host[first])
    return first



def run_run(data=None, cases=RUN_CASES, steps=TRAIN_STEPS, seed=TRAIN_SEED, samples=20,
            micropython=None, target="unix", heapsize=None, firmware_dir=FIRMWARE_DIR,
            workdir=None, timeout=3600, build="mpy", built=None):
    """Level "run": whole training runs on the names file `data` (default the built-in
    data/names.txt), device vs host: every step's loss_q16, the final state hash (on a
    mismatch, the first divergence), the samples. cases: (format, rounding, master)
    tuples or TrainCases (a --policy SPEC's: device_run.policy_case)."""
    from qgpt.train import sample as host_sample

    t0 = time.time()
    report = TrainReport("run")
    cases = [c if isinstance(c, TrainCase) else TrainCase(*c) for c in cases]
    with tempfile.TemporaryDirectory(prefix="qgpt-run-", dir=workdir) as tmp:
        tmp = Path(tmp)
        fw = built or firmware_build(tmp / "firmware", target, build, firmware_dir,
                                     micropython)
        names = pack_names(data, tmp / "names.bin")
        running = []
        try:
            for i, case in enumerate(cases):
                folder = tmp / f"run{i}"
                folder.mkdir()
                cfg = device_config(case, DEVICE_DATA, steps=steps, seed=seed,
                                    samples=samples, log_every=1)
                heap = heapsize or device_heap(case, build)
                running.append((case, folder, heap, start_training(cfg, folder, micropython,
                                                                   heap, target, fw)))
            for case, folder, heap, proc in running:
                model, losses, _ = simulate(case, names, steps, steps=steps, seed=seed)
                host_names = host_sample(model, n=samples, temperature=0.5, seed=seed)
                dev = finish_training(proc, folder, timeout)
                before, values = report.total, 0
                if dev.failure:
                    _device_failed(report, case, f"{dev.failure} (heapsize {heap})")
                else:
                    _note_device(report, target, dev)
                    values += compare_losses(report, case, dev.losses, losses)
                    values += compare_stalled(report, case, steps, dev, model)
                    values += compare_checkpoint(report, case, steps, folder, model)
                    values += 1
                    if not compare_hash(report, case, steps, dev, model):
                        run = {"tmp": folder, "micropython": micropython, "heap": heap,
                               "target": target, "timeout": timeout}
                        try:
                            first_divergence(report, case, tmp / "names.bin", names, seed,
                                             steps, fw, run)
                        except RuntimeError as e:
                            _device_failed(report, case, f"searching the divergence: {e}")
                    for i, want_name in enumerate(host_names):
                        got = dev.samples[i] if i < len(dev.samples) else None
                        values += 1
                        if got != want_name:
                            report.total += 1
                            report.mismatches.append(TrainMismatch(
                                "run", case.fmt, case.name, None, f"sample {i}",
                                device=repr(got), simulator=repr(want_name)))
                bad = report.total - before
                report.rows.append([case.fmt, case.name, steps, values,
                                    "ok" if bad == 0 else f"FAIL ({bad})"])
        finally:
            for *_, proc in running:
                stop(proc)
    report.seconds = time.time() - t0
    return report


def conformance_steps(formats=None, micropython=None, seed=TRAIN_SEED, target="unix",
                      dump_steps=STEPS_DUMPS, out=None, **kw):
    """Level "steps" for the CLI: prints the table and the first mismatches; exit code.
    formats: each with every rounding, and the master-weight cases of those formats."""
    kw.setdefault("policies", STEPS_POLICIES if not formats else ())
    formats = tuple(STEPS_FORMATS if formats is None else formats)  # (): policies alone
    kw.setdefault("extra", tuple(e for e in STEPS_EXTRA if e[0] in formats))
    kw.setdefault("high_lr", tuple(e for e in STEPS_HIGH_LR if e[0] in formats))
    report = run_steps(formats, micropython=micropython, seed=seed, target=target,
                       dump_steps=dump_steps, **kw)
    print_report(report, out or sys.stdout)
    return report.exit_code


def run_resume(cases, steps=40, stop=20, seed=TRAIN_SEED, micropython=None,
               firmware_dir=FIRMWARE_DIR, workdir=None, timeout=3600, built=None,
               target="unix"):
    """Each case stopped after `stop` steps and resumed from its checkpoint to `steps`
    (firmware/restore.py reads the state back into its containers, checking each
    range), against the simulator's run without a break: the losses after the resume,
    the optimizer's counters and the final hash; target: unix or int32. Returns a
    TrainReport."""
    report = TrainReport("resume")
    with tempfile.TemporaryDirectory(prefix="qgpt-resume-", dir=workdir) as tmp:
        tmp = Path(tmp)
        fw = built or firmware_build(tmp / "firmware", target, "mpy", firmware_dir,
                                     micropython)
        names = pack_names(None, tmp / "names.bin")
        for i, case in enumerate(cases):
            folder = tmp / f"case{i}"
            folder.mkdir()
            heap = device_heap(case)
            dev = None
            for extra in ({"stop_at": stop}, {"resume": True}):
                cfg = device_config(case, DEVICE_DATA, steps=steps, seed=seed, **extra)
                dev = finish_training(start_training(cfg, folder, micropython, heap, target,
                                                     fw), folder, timeout)
                if dev.failure:
                    break
            model, losses, _ = simulate(case, names, steps, steps=steps, seed=seed)
            if dev.failure:
                _device_failed(report, case, dev.failure)
                continue
            compare_losses(report, case, dev.losses, losses[stop:], start=stop)
            compare_checkpoint(report, case, steps, folder, model)
            compare_hash(report, case, steps, dev, model)
    return report


def conformance_run(data=None, micropython=None, seed=TRAIN_SEED, target="unix", out=None,
                    **kw):
    """Level "run" for the CLI: prints the table and the first mismatches; exit code."""
    report = run_run(data, micropython=micropython, seed=seed, target=target, **kw)
    print_report(report, out or sys.stdout)
    return report.exit_code
