"""The firmware's cost per training step, counted deterministically, and the size of
its native code.

    python -m qgpt.fwprofile [--format q4.12 | --policy SPEC] [--steps 20,100] [--data NAMES_FILE]
                             [--arches xtensawin,...] [--no-phases] [--no-sizes]
                             [--quick] [--source COPY_OF_FIRMWARE] [--keep DIR]

Instructions: firmware/qgpt_train.py (the entry point of qgpt/fwbench.py and the
tests) trains on the built-in names under `valgrind --tool=cachegrind --cache-sim=no`
on the MicroPython unix port, for two run lengths; the difference of the two counts
over the difference of the lengths is the instructions per training step, free of
the start-up, the set-up and the end of a run. The phase split runs the same entry
point with parts of the step replaced (Model methods patched by a small driver in the
build folder, firmware/ unchanged) and takes differences again:

    variant     what a step does                         gives
    step        the firmware as it is                    the total
    loop        nothing (data read, collections, lines)  gc/other = loop
    forward     the forward pass and the loss            forward = forward - loop
    backward    forward + backward, Adam a no-op         backward = backward - forward
                                                         Adam = step - backward

The variants that skip Adam never change the weights, so their data-dependent
branches (saturation, exp's cut-off, isqrt) differ a little from the real run's:
the split is exact to within that. What the loop's collections and heap measurements
cost (within gc/other) is the step variant's count in the garbage collector's marking,
sweeping and walking functions (GC_WORK), which no other code calls. Multiply-accumulates
per step are counted from the token counts of the steps in the difference (macs()).
Native code: every firmware module compiled by mpy-cross for each architecture and its
.mpy parsed (qgpt.mpyfile.mpy_code_bytes): the machine code a board copies into
executable RAM.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ARCHES = ("xtensawin", "armv7emsp", "armv6m", "rv32imc", "x64")  # ESP32 first; x64: the host
VALGRIND = "/usr/bin/valgrind"
DRIVER = "qgpt_phases"  # the generated driver module, in the build folder
VARIANTS = ("step", "loop", "forward", "backward")
PHASES = ("forward", "backward", "Adam", "gc/other")
# the functions of gc.collect() and gc.mem_alloc() (MicroPython's py/gc.c, py/modgc.c and the
# unix port's root scan), by valgrind's function name
GC_WORK = ("gc_collect_start", "gc_collect_root", "gc_mark_subtree", "gc_collect_end", "gc_info",
           "gc_collect", "gc_helper_collect_regs_and_stack", "mp_thread_gc_others",
           "py_gc_collect", "gc_mem_alloc")

# The model's shape (qgpt/params.py) for the multiply-accumulate count
C, M, V, NH, HS = 16, 64, 27, 4, 4
LINEAR_MACS = 4 * C * C + 2 * C * M + C * V  # q, k, v, o; fc1, fc2; lm_head: one position


def macs(T):
    """Multiply-accumulates of one training step on T positions: the linears three times
    (forward; backward's dx and dW), causal attention's dot products (forward: scores and
    p v, 2 HS per head and pair s <= t; backward: dp, dv, dq, dk, 4 HS, and p dp, 1)."""
    pairs = T * (T + 1) // 2
    return 3 * LINEAR_MACS * T + NH * pairs * (2 * HS) + NH * pairs * (4 * HS + 1)


# --- building and running (every use of qgpt.conformance is in this section) ---


def build_firmware(dest, source_dir=None):
    """The unix-port firmware (.mpy for the host) in dest, as fwbench and the tests run it;
    source_dir: another copy of firmware/ (a prototype), else the repository's."""
    from qgpt import conformance as cf

    if source_dir is None:
        return cf.firmware_build(dest)
    return cf.firmware_build(dest, source_dir=Path(source_dir))


def build_driver(fw, work):
    """The phase driver, compiled like the firmware (a .py would be compiled on the
    device, in its heap), into the firmware folder fw."""
    from qgpt import conformance as cf

    src = Path(work) / f"{DRIVER}.py"
    src.write_text(DRIVER_SOURCE)
    cmd = [cf.default_mpy_cross(), "-march=host", "-s", src.name, "-o",
           str(Path(fw) / f"{DRIVER}.mpy"), str(src)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"mpy-cross failed on the driver: {r.stderr.strip()}")


def train_case(fmt, policy=None):
    """The conformance TrainCase of a run: format fmt with nearest rounding, or a policy
    SPEC as `qgpt train --policy` takes it (its own rounding)."""
    from qgpt import conformance as cf

    if policy:
        return cf.policy_case(policy)
    return cf.TrainCase(fmt, "nearest")


def run_config(case, data, stop_at):
    from qgpt import conformance as cf

    return cf.device_config(case, data, stop_at=stop_at, log_every=1 << 20)


def default_micropython():
    from qgpt import conformance as cf

    return cf.default_micropython()


def pack_data(names_file, dest):
    """The packed dataset (qgpt pack) of a names file's training split; None: the built-in."""
    from qgpt import conformance as cf

    cf.pack_names(names_file, dest)


def train_heapsize(case):
    """The heap the tests and the conformance levels train a case in (96K; policies and
    master weights more)."""
    from qgpt import conformance as cf

    return cf.device_heap(case)


# --- the phase driver (MicroPython, written into the build folder) ---

DRIVER_SOURCE = '''"""Generated by qgpt/fwprofile.py: firmware/qgpt_train.py with parts of a step
replaced, for the phase split. micropython -m qgpt_phases VARIANT CONFIG"""
import sys


def _none(*args):
    return None


def _forward_only(self, T, step, num_steps):
    import kernels
    import loss
    from model import get32, row_max

    Fl = self.fwd[0]
    lg = self.logits
    nll = 0
    self.forward_position(T, T)  # every position in one call, as train_step does
    tok, ce, nll_q16 = self.tok, kernels.cross_entropy_forward, loss.nll_q16  # (as train_step)
    for t in range(T):
        row = t * 27
        nll += nll_q16(row_max(lg, row, 27), get32(lg, row + tok[t + 1]),
                       ce(0, 0, lg, lg, t, 27, Fl), Fl)
    return loss.loss_q16(nll, T)


def _no_update(*args):
    return 0  # kernels.adam_update: no parameter stalled


def _keep_powers(p1, p2):
    return p1, p2


def _alpha_one(*args):
    return 1


def _patch(model, variant):
    if variant == "loop":
        model.Model.train_step = _alpha_one
    elif variant == "forward":
        model.Model.train_step = _forward_only
    elif variant == "backward":
        model.K.adam_update = _no_update  # Model.weight_backward's update
        if "blockadam" in sys.modules:  # block-scaled state (9.6)
            sys.modules["blockadam"].gather = _none
        model.beta_powers = _keep_powers
        model.alpha_at = _alpha_one


variant, path = sys.argv[1], sys.argv[2]
if variant not in ("step", "loop", "forward", "backward"):
    raise SystemExit("unknown variant " + variant)
import qgpt_train

_begin = qgpt_train.begin


def _patched_begin(cfg, mdl, numbers):
    # the run imported model after allocating its state block (the heap's layout
    # stays the run's): patch it now, before the first step
    _patch(sys.modules["model"], variant)
    return _begin(cfg, mdl, numbers)


qgpt_train.begin = _patched_begin
sys.exit(qgpt_train.main(path))
'''


# --- cachegrind ---


@dataclass
class Count:
    """One cachegrind run: total instructions, and per function (file:function)."""

    total: int
    by_function: dict = field(default_factory=dict)


def parse_cachegrind(text):
    """Count from a cachegrind.out file's text (events: Ir): the `summary:` total and the
    sum of each fn= block's counts (a line `LINE COUNT`). The JIT-emitted viper and
    native code has no symbols: valgrind files it under ???."""
    total = None
    by_fn = {}
    fl = fn = "???"
    for line in text.splitlines():
        if line.startswith("fl="):
            fl = line[3:]
        elif line.startswith("fn="):
            fn = line[3:]
        elif line.startswith("summary:"):
            total = int(line.split()[1])
        elif line[:1].isdigit():
            parts = line.split()
            if len(parts) >= 2:
                key = f"{'/'.join(fl.split('/')[-2:])}:{fn}" if fl != "???" else fn
                by_fn[key] = by_fn.get(key, 0) + int(parts[1])
    if total is None:
        raise ValueError("not a cachegrind output file: no summary line")
    return Count(total, by_fn)


def run_counted(cmd, cwd, env, out_file, valgrind=VALGRIND):
    """(Count, stdout) of cmd under cachegrind without cache simulation."""
    full = [valgrind, "--tool=cachegrind", "--cache-sim=no", f"--cachegrind-out-file={out_file}",
            *cmd]
    r = subprocess.run(full, cwd=cwd, env=env, capture_output=True, text=True, timeout=1800)
    if r.returncode != 0 or "\ndone step" not in "\n" + r.stdout:
        tail = " | ".join((r.stdout + r.stderr).strip().splitlines()[-3:])
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {r.returncode}): {tail}")
    return parse_cachegrind(Path(out_file).read_text()), r.stdout


# --- the arithmetic of the split ---


def per_step(counts, lengths):
    """{variant: instructions per step}: (count at the longer run - the shorter) / steps.
    counts: {(variant, length): total}."""
    a, b = lengths
    variants = sorted({v for v, _ in counts}, key=lambda v: VARIANTS.index(v))
    return {v: (counts[(v, b)] - counts[(v, a)]) / (b - a) for v in variants}


def phases(rate):
    """{phase: instructions per step} from per_step()'s rates of the variants (the table
    of the module docstring); they add up to the `step` variant's rate."""
    return {"forward": rate["forward"] - rate["loop"],
            "backward": rate["backward"] - rate["forward"],
            "Adam": rate["step"] - rate["backward"],
            "gc/other": rate["loop"]}


def collection_rate(first, second, steps):
    """Instructions per step in GC_WORK's functions between two Counts: the collections and
    heap measurements (a part of gc/other)."""
    return sum(v for name, v in function_rates(first, second, steps, top=len(first.by_function)
                                               + len(second.by_function))
               if name.rsplit(":", 1)[-1] in GC_WORK)


def function_rates(first, second, steps, top=8):
    """[(function, instructions per step)] of the functions whose count grew most between
    two Counts (the per-step work), largest first; the rest summed as `(the rest)`."""
    names = set(first.by_function) | set(second.by_function)
    diff = {n: (second.by_function.get(n, 0) - first.by_function.get(n, 0)) / steps
            for n in names}
    ranked = sorted(diff.items(), key=lambda kv: -kv[1])
    rest = sum(v for _, v in ranked[top:])
    return ranked[:top] + [("(the rest)", rest)]


# --- the steps' token counts ---


def step_lengths(data_path, first, last, seed):
    """T (positions) of the training steps first .. last-1: the data order of the device
    (prng.doc_index) over the packed file."""
    from qgpt import pack, prng

    docs = pack.unpack(Path(data_path).read_bytes())
    return [len(docs[prng.doc_index(s, len(docs), seed)]) - 1 for s in range(first, last)]


def native_sizes(arches, firmware_dir=None):
    """{module: {arch: native+viper bytes}}, and {arch: .mpy file bytes}, for every
    firmware module."""
    from qgpt import device
    from qgpt.mpyfile import mpy_code_bytes

    table, files = {}, {}
    for arch in arches:
        mpys = device.compile_firmware(arch, firmware_dir)
        files[arch] = sum(len(b) for b in mpys.values())
        for mod, blob in mpys.items():
            s = mpy_code_bytes(blob)
            table.setdefault(mod, {})[arch] = s.get("native", 0) + s.get("viper", 0)
    return table, files


# --- the benchmark ---


def profile(fmt="q4.12", lengths=(20, 100), micropython=None, valgrind=VALGRIND, keep=None,
            source_dir=None, variants=VARIANTS, names_file=None, policy=None):
    """(rates {variant: instructions/step}, runtime [(function, instr/step)], token counts
    of the steps in the difference, the `done` line of the step variant's longer run, the
    collections' and heap measurements' instructions/step)."""
    micropython = micropython or default_micropython()
    with tempfile.TemporaryDirectory(prefix="qgpt-fwprofile-") as tmp:
        tmp = Path(keep or tmp)
        fw = build_firmware(tmp / "fw", source_dir)
        build_driver(fw, tmp)
        run = tmp / "run"
        run.mkdir(parents=True, exist_ok=True)
        pack_data(names_file, run / "names.bin")
        env = dict(os.environ, MICROPYPATH=str(fw), PYTHONHASHSEED="0")
        case = train_case(fmt, policy)
        counts, full = {}, {}
        seed = None
        done = ""
        for variant in variants:
            for n in lengths:
                config = run_config(case, "names.bin", n)
                seed = config["seed"]
                (run / f"{variant}-{n}.json").write_text(json.dumps(config))
                module = ["-m", "qgpt_train"] if variant == "step" else ["-m", DRIVER, variant]
                cmd = [micropython, "-X", f"heapsize={train_heapsize(case)}", *module,
                       f"{variant}-{n}.json"]
                count, out = run_counted(cmd, run, env, run / f"cg-{variant}-{n}.out", valgrind)
                counts[(variant, n)] = count.total
                if variant == "step":
                    full[n] = count
                    done = out.strip().splitlines()[-1]
        tokens = step_lengths(run / "names.bin", lengths[0], lengths[1], seed)
    a, b = lengths
    return (per_step(counts, lengths), function_rates(full[a], full[b], b - a), tokens, done,
            collection_rate(full[a], full[b], b - a))


def print_profile(fmt, lengths, rate, runtime, tokens, done, collect, data=None,
                  policy=None):
    from tabulate import tabulate

    steps = lengths[1] - lengths[0]
    mac = sum(macs(T) for T in tokens) / steps
    total = rate["step"]
    if len(rate) == len(VARIANTS):
        split = phases(rate)
        rows = [[p, round(split[p]), f"{100 * split[p] / total:.1f}%"] for p in PHASES]
        rows.append(["total", round(total), "100.0%"])
        print(tabulate(rows, headers=["phase", "instructions/step", "share"], tablefmt="github"))
        print()
    else:
        split = None
        print(f"total {round(total)} instructions/step")
    what = f"policy {policy}" if policy else f"{fmt}, nearest rounding"
    print(f"{what}, {data or 'the built-in names'}, MicroPython unix port "
          f"({os.uname().machine}); steps {lengths[0]}..{lengths[1]} ({sum(tokens) / steps:.2f} "
          f"positions a step): {mac:,.0f} multiply-accumulates a step, {total / mac:.0f} "
          f"instructions per MAC")
    if split:
        print(f"Adam {split['Adam'] / 4192:.0f} instructions per parameter")
    print(f"the training loop's collections and heap measurements: {collect:,.0f} a step "
          "(gc/other's part)")
    f = done.split()
    print(f"the longer run ends at step {f[2]} with state hash {f[4]}, heap peak {f[6]} "
          f"(the firmware's `done` line)\n")
    rows = [[name, round(v), f"{100 * v / total:.1f}%"] for name, v in runtime]
    print(tabulate(rows, headers=["where (valgrind's function)", "instructions/step", "share"],
                   tablefmt="github"))
    print("\n??? is the machine code emitted for viper functions (no symbols)\n")


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m qgpt.fwprofile",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--format", default="q4.12")
    ap.add_argument("--policy", default=None,
                    help="a precision policy SPEC or preset (e.g. int8) instead of --format")
    ap.add_argument("--steps", default="20,100", help="the two run lengths, e.g. 20,100")
    ap.add_argument("--arches", default=",".join(ARCHES), help="mpy-cross -march values")
    ap.add_argument("--no-phases", action="store_true", help="skip the instruction counts")
    ap.add_argument("--no-sizes", action="store_true", help="skip the native code sizes")
    ap.add_argument("--micropython", default=None, help="the unix port (default: the venv's)")
    ap.add_argument("--valgrind", default=VALGRIND)
    ap.add_argument("--keep", default=None, help="keep the build, runs and cachegrind files here")
    ap.add_argument("--source", default=None,
                    help="profile this copy of firmware/ instead (a prototype)")
    ap.add_argument("--data", default=None,
                    help="a names file, one name a line (default: the built-in names)")
    ap.add_argument("--quick", action="store_true",
                    help="only the total (the firmware as it is), no phase split")
    a = ap.parse_args(argv)
    try:
        lengths = tuple(int(x) for x in a.steps.split(","))
        if len(lengths) != 2 or not 0 < lengths[0] < lengths[1]:
            raise ValueError
    except ValueError:
        print(f"--steps {a.steps}: give two run lengths, shorter first, e.g. --steps 20,100",
              file=sys.stderr)
        return 2
    if a.policy:
        from qgpt.policy import PolicyError

        try:
            train_case(a.format, a.policy)
        except PolicyError as e:
            print(f"--policy {a.policy}: {e}", file=sys.stderr)
            return 2
    from tabulate import tabulate

    if not a.no_phases:
        if not shutil.which(a.valgrind):
            print(f"skipped the instruction counts: no valgrind at {a.valgrind} (Debian: apt-get "
                  "install valgrind; or --valgrind PATH)")
        else:
            variants = ("step",) if a.quick else VARIANTS
            rate, runtime, tokens, done, collect = profile(
                a.format, lengths, a.micropython, a.valgrind, a.keep, a.source, variants, a.data,
                a.policy)
            print_profile(a.format, lengths, rate, runtime, tokens, done, collect, a.data,
                          a.policy)
    if not a.no_sizes:
        arches = [x for x in a.arches.split(",") if x]
        table, files = native_sizes(arches, a.source)
        native = sorted((m for m in table if any(table[m].values())),
                        key=lambda m: -table[m][arches[0]])
        rows = [[mod, *(table[mod][x] for x in arches)] for mod in native]
        rows.append(["total", *(sum(table[m][x] for m in table) for x in arches)])
        rows.append([".mpy files", *(files[x] for x in arches)])
        print(tabulate(rows, headers=["module", *arches], tablefmt="github"))
        others = sorted(m for m in table if m not in native)
        print("\nbytes of machine code (viper and native functions) per module, from the .mpy "
              f"that mpy-cross writes; without any: {', '.join(others)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
