"""Mutation testing: does conformance catch a wrong integer in the firmware?

    python -m qgpt.conformance.mutants [--modules kernels,adam] [--jobs 2]
                                       [--out experiments/results/mutants.md]
                                       [--rejudge experiments/results/mutants.json]

--out also writes every verdict as JSON beside the report; --rejudge judges again
only the survivors of such a file (after new golden cases) and keeps the rest.

Each mutant is the firmware with ONE token of its integer code changed: an int
literal +-1 (constants, table entries, rounding halves, clamp bounds, shifts), `<<`
<-> `>>`, binary `+` <-> `-`, `<` <-> `<=`, `>` <-> `>=`, `==` <-> `!=`, `&` -> `|`,
`//` -> `%`, and the augmented forms. Mutants are written into a temporary copy of
firmware/ (never in place) and judged level by level, cheapest first:

    ops    the op level's golden cases of the ops that reach the mutated function
           (a coverage run of conform_ops says which), format by format, then the
           policies' (STEPS_POLICIES and policy_edge_cases.py's), stopping at the first
           mismatch or device failure
    int32  the same ops on the int32 target, extreme formats and the int32 edge
           groups, no exhaustive domains (the x86-64 port cannot show a shift count of
           32 or an int32 overflow)
    steps  training to step 10, every step's loss and the whole state after steps 1, 2
           and 10 (code only training runs: model.py ...): six format cases, then
           MUTANT_STEPS_POLICIES (block-scaled Adam state, master weights) and a large lr,
           then MUTANT_SEED0_POLICY at seed 0
    run    a 40-step run and a 1-step run, their 20 samples (what only sampling uses)
           and the optimizer's counters in their final checkpoints; then runs stopped
           at step 20 and resumed from their checkpoints (restore.py, narrow's checks)
    int32  (last) training on the int32 target: 3 steps of the steps level's large learning
           rate (STEPS_HIGH_LR: the linears' sums past 2**31) and of a block-scaled
           Adam state (INT32_TRAIN_POLICIES: block_encode runs in training alone), and
           one step resumed from the first (model.py's max |W| bound for the fast paths)

A mutant is killed by the first level that reports a difference (a mismatch, a
device error or a hang), invalid if mpy-cross rejects it, and survives otherwise.
Every survivor must be listed in qgpt/conformance/equivalent.py with a one-line
argument why no reachable input tells it apart; the report marks any other as
NOT EQUIVALENT. The report (markdown) gives killed / survived per module.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from qgpt.conformance.build import (
    build_firmware,
    default_micropython,
    default_mpy_cross,
    device_env,
    probe,
)
from qgpt.conformance.cases import build_cases
from qgpt.conformance.coverage import op_coverage
from qgpt.conformance.inputs import FORMATS, NO_FORMAT
from qgpt.conformance.mutant_report import (
    classify,
    load_results,
    load_verdicts,
    render,
    save_results,
)
from qgpt.conformance.mutant_sites import (  # noqa: F401 (NOT_MUTATED, mutants_of: the API)
    NOT_MUTATED,
    Mutant,
    imports_of,
    mutants_of,
    mutated_modules,
    mutated_source,
)
from qgpt.conformance.protocol import parse_reply, write_request
from qgpt.conformance.report import OpsReport
from qgpt.firmware_build import FIRMWARE_DIR, firmware_modules

# Not integer code: the op-level driver, file formats, configuration, the entry point.
GROUP_ORDER = ("q4.12", NO_FORMAT, "q8.8")  # the formats that kill most mutants first
OPS_TIMEOUT = 5  # seconds for one format group (the original takes 0.1 s): a hang kills
TRAIN_TIMEOUT = 30  # seconds for the steps or the run level (the original takes 1 s)




# --- judging a mutant ---


class Judge:
    """Runs mutants against the levels; one instance per worker (its own folders)."""

    def __init__(self, workdir, requests, reach, micropython, arch,
                 firmware_dir=FIRMWARE_DIR):
        self.dir = Path(workdir)
        self.reach = reach  # (module, function) -> ops
        self.arch = arch
        self.subsets = {}  # frozenset of ops -> [(fmt, cases, request path)]
        self.every = frozenset(c.op for _, cases, _ in requests for c in cases)
        self.source = Path(firmware_dir)
        self.requests = requests  # [(fmt, cases, request path)]
        self.micropython = micropython
        self.mpy_cross = default_mpy_cross()
        self.ops_modules = imports_of(firmware_dir, "conform_ops")
        self.src = self.dir / "src"  # the mutated sources (steps and run build from them)
        self.fw = self.dir / "fw"  # the compiled firmware, one module swapped per mutant
        for d in (self.src, self.fw):
            d.mkdir(parents=True)
        for mod in firmware_modules(firmware_dir):
            shutil.copy(self.source / f"{mod}.py", self.src / f"{mod}.py")
        build_firmware(self.fw, "mpy", arch, source_dir=self.src)

    def _compile(self, module):
        r = subprocess.run([self.mpy_cross, f"-march={self.arch}", "-s", f"{module}.py", "-o",
                            str(self.fw / f"{module}.mpy"), str(self.src / f"{module}.py")],
                           capture_output=True, text=True)
        return r.returncode == 0

    def judge(self, m):
        """(verdict, level, detail): killed | survived | invalid."""
        original = (self.source / f"{m.module}.py").read_text()
        (self.src / f"{m.module}.py").write_text(mutated_source(original, m))
        try:
            if not self._compile(m.module):
                return "invalid", "", "mpy-cross rejects it"
            ops = self._ops_reaching(m)
            levels = [("steps", self._steps), ("run", self._run),
                      ("int32", self._int32_training)]
            if ops:
                levels[:0] = [("ops", lambda: self._ops(ops))]
                if ops != self.every:  # a function's ops (all ops in CPython: minutes)
                    levels.insert(1, ("int32", lambda: self._int32(ops)))
            for level, run in levels:
                try:
                    why = run()
                except (ValueError, KeyError, IndexError, EOFError) as e:
                    why = f"the device's output cannot be read: {type(e).__name__}: {e}"
                if why:
                    return "killed", level, why[:200]
            return "survived", "", ""
        finally:
            (self.src / f"{m.module}.py").write_text(original)
            self._compile(m.module)

    def _ops_reaching(self, m):
        """The ops whose cases run the mutated code: those the coverage run saw call
        its function; every op for module-level code of a module conform_ops imports,
        or for code it runs outside an op's handler (the policy's set-up); none for
        code no op reaches (training alone runs it)."""
        if m.module not in self.ops_modules:
            return frozenset()
        ops = self.reach.get((m.module, m.function), set())
        if not m.function or "*" in ops:
            return self.every
        return frozenset(ops)

    def _requests_for(self, ops):
        if ops not in self.subsets:
            subset = []
            for fmt, cases, _ in self.requests:
                part = [c for c in cases if c.op in ops]
                if part:
                    path = self.dir / f"request-{len(self.subsets)}-{len(subset)}.bin"
                    write_request(part, path)
                    subset.append((fmt, part, path))
            self.subsets[ops] = subset
        return self.subsets[ops]

    def _ops(self, ops):
        for fmt, cases, request in self._requests_for(ops):
            why = self._ops_group(fmt, cases, request)
            if why:
                return why
        return ""

    def _ops_group(self, fmt, cases, request):
        """Run one request, comparing each case as its reply arrives; the first
        difference stops the device (most mutants die in the first cases)."""
        import threading

        from qgpt.conformance.ops import compare

        cmd = [self.micropython, "-X", "heapsize=96K", "-m", "conform_ops", str(request)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                text=True, env=device_env(self.fw))
        timer = threading.Timer(OPS_TIMEOUT, proc.kill)
        timer.start()
        why, done, lines = "", set(), []
        try:
            for line in proc.stdout:
                lines.append(line)
                tag = line.split(" ", 2)
                if tag[0] not in ("ok", "error"):
                    continue
                _, results, errors, _ = parse_reply("".join(lines))
                lines = []
                i = int(tag[1])
                done.add(i)
                report = OpsReport(cases=[])
                compare([cases[i]], {0: results[i]} if i in results else {},
                        {0: errors[i]} if i in errors else {}, report, fmt)
                if report.mismatches:
                    why = str(report.mismatches[0])[:200]
                    break
        finally:
            timer.cancel()
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        if why:
            return why
        if len(done) < len(cases):
            return f"{fmt}: the device stopped or hung after {len(done)} of {len(cases)} cases"
        return ""

    def _int32(self, ops):
        """The op level on the int32 target (the firmware in CPython, every viper
        intermediate and shift count checked), on the extreme formats, without the
        exhaustive domains."""
        from qgpt.conformance.ops import run_ops

        cases = {fmt: [c for c in group if c.op in ops and "every " not in c.name]
                 for fmt, group, _ in self.requests
                 if fmt in INT32_FORMATS or fmt.endswith(INT32_EDGE)}
        report = run_ops(cases={f: g for f, g in cases.items() if g}, target="int32",
                         firmware_dir=self.src, workdir=self.dir)
        return str(report.mismatches[0])[:200] if report.mismatches else ""

    def _steps(self):
        from qgpt.conformance.device_run import TRAIN_SEED, policy_case
        from qgpt.conformance.training import _steps_cases, run_steps

        formats = _steps_cases((), (), MUTANT_STEPS_CASES)
        policies = _steps_cases((), (), (), MUTANT_STEPS_POLICIES)
        policies += [policy_case(spec, lr=lr) for spec, lr in MUTANT_STEPS_LR]
        batches = ((formats, TRAIN_SEED), (policies, TRAIN_SEED),
                   ([policy_case(MUTANT_SEED0_POLICY)], 0))
        for cases, seed in batches:  # most mutants die in the first batch
            try:
                report = run_steps(cases=cases, dump_steps=(1, 2, 10), seed=seed,
                                   micropython=self.micropython, firmware_dir=self.src,
                                   workdir=self.dir, timeout=TRAIN_TIMEOUT, built=self.fw)
            except subprocess.TimeoutExpired:
                return "the device hangs"
            if report.mismatches:
                return str(report.mismatches[0])[:200]
        return ""

    def _run(self):
        from qgpt.conformance.training import run_run

        for steps in (40, 1):  # and names of a model barely trained: many reach BLOCK
            try:
                report = run_run(steps=steps, samples=20, micropython=self.micropython,
                                 firmware_dir=self.src, workdir=self.dir,
                                 timeout=TRAIN_TIMEOUT, built=self.fw)
            except subprocess.TimeoutExpired:
                return "the device hangs"
            if report.mismatches:
                return str(report.mismatches[0])[:200]
        from qgpt.conformance.device_run import TrainCase, policy_case
        from qgpt.conformance.training import run_resume

        cases = [TrainCase(*c) if isinstance(c, tuple) else policy_case(c)
                 for c in MUTANT_RESUME_CASES]
        try:
            report = run_resume(cases, micropython=self.micropython, firmware_dir=self.src,
                                workdir=self.dir, timeout=TRAIN_TIMEOUT, built=self.fw)
        except subprocess.TimeoutExpired:
            return "the device hangs"
        return str(report.mismatches[0])[:200] if report.mismatches else ""

    def _int32_training(self):
        """STEPS_HIGH_LR's and INT32_TRAIN_POLICIES' cases on the int32 target:
        INT32_TRAIN_STEPS steps, and stopped after one step and resumed (a resumed Model
        scans max |W| afresh); the linears' sums pass 2**31 where the fast paths' bound
        sends them to the exact path, so a bound that lags max |W| overflows (the x86-64
        port computes the same integers)."""
        from qgpt.conformance.training import STEPS_HIGH_LR, _steps_cases, run_resume, run_steps

        cases = _steps_cases((), (), (), INT32_TRAIN_POLICIES, STEPS_HIGH_LR)
        try:
            report = run_steps(cases=cases, dump_steps=tuple(range(1, INT32_TRAIN_STEPS + 1)),
                               target="int32", firmware_dir=self.src, workdir=self.dir,
                               timeout=INT32_TRAIN_TIMEOUT)
            if not report.mismatches:
                report = run_resume(cases, steps=2, stop=1, firmware_dir=self.src,
                                    workdir=self.dir, timeout=INT32_TRAIN_TIMEOUT,
                                    target="int32")
        except subprocess.TimeoutExpired:
            return "the device hangs"
        return str(report.mismatches[0])[:200] if report.mismatches else ""


INT32_FORMATS = (NO_FORMAT, "q4.12", "q2.14", "q12.0")  # the extremes of F
INT32_EDGE = "int32 edge"  # and policy_edge_cases's sums at the edge of int32
# the int32 target's training (about 1 s a step in CPython): 3 steps of STEPS_HIGH_LR
# let a bound raised too little by Adam's first two moves overflow a linear's sum
INT32_TRAIN_STEPS = 3
INT32_TRAIN_TIMEOUT = 120  # seconds (TRAIN_TIMEOUT is the unix port's)
# and a block-scaled m and v (about 4 s): block_encode's int32 sign extension, which the
# op level never runs, checked on the int32 target
INT32_TRAIN_POLICIES = ("adam_m=b16x256,adam_v=b4x8,rounding=pseudo",)
# block-scaled state (no op of the op driver encodes it): 8-bit mantissas with kahan,
# 16 and 4 bits; a block-scaled m beside a plain 16-bit v and the other way round (widen
# and narrow of 2 bytes, 12-bit roots in 16 bits), partial last blocks (1024, 40); data
# weights of another container than the acts under 16-bit and 8-bit master weights
MUTANT_STEPS_POLICIES = ("int8", "weights=q8.8,acts=q4.12",
                         "adam_m=b16x256,adam_v=b4x8,rounding=pseudo",
                         "weights=q8.8,acts=q8.8,adam_m=b8x1024,adam_v=q2.14,rounding=stochastic",
                         "adam_m=q8.8,adam_v=b12x40,rounding=floor",
                         "adam_m=b8x8,adam_v=b16x32",  # units of 32: most pieces end on one
                         "adam_m=b8x11,adam_v=b16x33",  # units of 33, N = 4192 = 1 mod 33
                         "adam_m=b12x128,adam_v=b8x8,rounding=stochastic",  # 33 m shifts
                         "adam_m=b8x67,adam_v=b16x67",  # 63 shifts: 31 in the last piece
                         "weights=q4.4,acts=q4.12,master=q4.12",
                         "weights=q4.4,acts=q4.12,master=q12.4",  # a master shift of 0
                         "weights=q4.3,acts=q4.12,master=q4.4,rounding=floor")
# a large learning rate: int8 weights reach their limits within 10 steps (Kahan's
# compensation clamped); the two kahan policies (found by a search over formats and
# rates) store a compensation c of 128 or 129 (q2.6) and -129 (q1.7) before its clamp:
# they catch a clamp moved by one on either side
# trained at seed 0 (the others at TRAIN_SEED): Adam units of 433 parameters, so that
# wte's gradient piece (432) ends one short of the first unit's end (blockadam.gather's
# count of a unit's gradient must reach its size exactly then), with master weights (a
# test that reads the model's seed, 0 here, for its master flag refreshes no data weights)
MUTANT_SEED0_POLICY = "weights=q4.4,acts=q4.12,master=q4.12,adam_m=b8x433,adam_v=b8x433"
MUTANT_STEPS_LR = (("int8", 0.5), ("weights=q2.6,acts=q4.12,rounding=kahan", 0.9),
                   ("weights=q1.7,acts=q4.12,rounding=kahan", 0.6),
                   # Adam's largest move (train_step's rise of the max |W| bounds) where
                   # e > u: a rise computed with e lags the weights within 6 steps
                   ("weights=q3.13,acts=q3.13,master=q3.28", 0.9))
# resumed runs (restore.py reads 8-bit, 32-bit and block-scaled state back)
MUTANT_RESUME_CASES = ("int8", ("q4.12", "stochastic", "q4.20"),
                       "weights=q4.3,acts=q4.12,master=q4.4,rounding=floor")
MUTANT_STEPS_CASES = (("q4.12", "nearest", ""), ("q8.8", "floor", ""),
                      ("q4.12", "stochastic", "q4.20"), ("q12.4", "stochastic", ""),
                      ("q1.15", "nearest", ""), ("q13.3", "nearest", "q13.18"))


def ops_requests(workdir, formats=FORMATS, seed=0):
    """The op level's requests, written once: [(group, cases, path)], the formats that
    kill most mutants first, then the policies of the default op level (STEPS_POLICIES
    and the edge policies: 8-bit containers, shifts of both signs, every rounding)."""
    from qgpt.conformance.policy_cases import policy_ops_cases
    from qgpt.conformance.policy_edge_cases import edge_policy_groups
    from qgpt.conformance.training import STEPS_POLICIES

    groups = [g for g in GROUP_ORDER if g == NO_FORMAT or g in formats]
    groups += [f for f in (NO_FORMAT, *formats) if f not in groups]
    cases_of = {fmt: build_cases(fmt, seed) for fmt in groups}
    for spec in STEPS_POLICIES:
        cases = policy_ops_cases(spec, seed)
        cases_of[cases[0].fmt] = cases
    cases_of.update(edge_policy_groups(seed))
    out = []
    for i, (group, cases) in enumerate(cases_of.items()):
        path = Path(workdir) / f"request-{i}.bin"
        write_request(cases, path)
        out.append((group, cases, path))
    return out


def run_mutants(modules=None, jobs=1, micropython=None, formats=FORMATS, limit=None,
                firmware_dir=FIRMWARE_DIR, progress=None, keep=None, every=1):
    """Judge every mutant of the modules; returns [(Mutant, verdict, level, detail)].
    keep: {mutant: (verdict, level, detail)} already judged (not judged again)."""
    micropython = micropython or default_micropython()
    modules = modules or mutated_modules(firmware_dir)
    mutants = []
    for mod in modules:
        mutants += mutants_of(mod, (Path(firmware_dir) / f"{mod}.py").read_text())[::every]
    if limit:
        mutants = mutants[:limit]
    keep = keep or {}
    done = [(m, *keep[m]) for m in mutants if m in keep and keep[m][0] != "earlier"]
    mutants = [m for m in mutants if m not in keep]
    results = [None] * len(mutants)
    with tempfile.TemporaryDirectory(prefix="qgpt-mutants-") as tmp:
        requests = ops_requests(tmp, formats)
        reach = op_coverage(tmp, requests, firmware_dir)
        arch = probe(micropython).arch
        judges = [Judge(Path(tmp) / f"worker{j}", requests, reach, micropython, arch,
                        firmware_dir) for j in range(jobs)]

        def work(j):
            for i in range(j, len(mutants), jobs):
                results[i] = (mutants[i], *judges[j].judge(mutants[i]))
                if progress:
                    progress(results[i])

        with ThreadPoolExecutor(max_workers=jobs) as pool:
            list(pool.map(work, range(jobs)))
    return done + results




def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m qgpt.conformance.mutants",
                                 description="mutation testing of the firmware's integer code")
    ap.add_argument("--modules", default=None,
                    help="comma-separated firmware modules (default: every one but "
                         + ", ".join(NOT_MUTATED) + ")")
    ap.add_argument("--jobs", type=int, default=1, help="mutants judged at once (default 1)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N mutants")
    ap.add_argument("--every", type=int, default=1, metavar="K",
                    help="only every K-th mutant of each module (a deterministic sample)")
    ap.add_argument("--micropython", default=None, help="the unix port (default: the venv's)")
    ap.add_argument("--out", default=None,
                    help="write the markdown report here (and its verdicts as .json beside)")
    ap.add_argument("--merge", default=None, metavar="JSON,JSON",
                    help="judge nothing: the report of saved runs' verdicts (runs of "
                         "different --modules)")
    ap.add_argument("--keep-equivalent", action="store_true",
                    help="with --rejudge: keep the survivors equivalent.py lists too (judge "
                         "again only the others)")
    ap.add_argument("--rejudge", default=None, metavar="FILE",
                    help="judge again only the survivors of a saved run (its .json, or a "
                         "report .md: then the new report has those mutants alone)")
    a = ap.parse_args(argv)
    if a.jobs < 1 or a.every < 1:
        ap.error("--jobs and --every must be at least 1")
    modules = a.modules.split(",") if a.modules else None
    known = set(firmware_modules())
    for mod in modules or ():
        if mod not in known:
            print(f"--modules: {mod} is no firmware module (want one of "
                  f"{', '.join(sorted(known))})", file=sys.stderr)
            return 2
    t0 = time.time()
    done = [0]

    partial = Path(a.out).with_suffix(".partial.jsonl") if a.out and not a.merge else None
    if partial:
        partial.write_text("")

    def progress(r):
        done[0] += 1
        if partial:  # every verdict as it comes: a cut run still has a report
            import json
            from dataclasses import asdict

            with open(partial, "a") as f:
                f.write(json.dumps({**asdict(r[0]), "verdict": r[1], "level": r[2],
                                    "detail": r[3]}) + "\n")
        if r[1] == "survived":
            print(f"survived: {r[0].describe()}", file=sys.stderr, flush=True)
        elif done[0] % 100 == 0:
            print(f"{done[0]} mutants judged", file=sys.stderr, flush=True)

    if a.merge:
        results = [r for path in a.merge.split(",") for r in load_results(path)]
    else:
        keep = load_verdicts(a.rejudge, keep_equivalent=a.keep_equivalent) if a.rejudge \
            else None
        results = run_mutants(modules, a.jobs, a.micropython, limit=a.limit,
                              progress=progress, keep=keep, every=a.every)
    command = "python -m qgpt.conformance.mutants" + "".join(
        f" {x}" for x in (argv if argv is not None else sys.argv[1:]))
    command = f"`{command}` ({(time.time() - t0) / 60:.0f} minutes)"
    if a.merge:
        command = (f"the runs whose verdicts {a.merge} holds, merged by "
                   f"`python -m qgpt.conformance.mutants --merge {a.merge}`")
    text = render(results, command)
    if a.out:
        tmp = Path(a.out).with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, a.out)
        if not a.merge:
            save_results(results, Path(a.out).with_suffix(".json"))
    print(text)
    _, survivors = classify(results)
    return 1 if any(why is None for _, why in survivors) else 0


if __name__ == "__main__":
    sys.exit(main())
