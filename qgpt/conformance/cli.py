"""`qgpt conformance` and `python -m qgpt.conformance`: the levels' dispatcher and
its options. A target that cannot run, a names file that cannot be read or a format
the host refuses is one line and exit code 2, before any level runs."""

import argparse
import sys

from qgpt.conformance.build import HEAPSIZE_PY, check_build, probe
from qgpt.conformance.device_run import TRAIN_HEAPSIZE, TRAIN_SEED, policy_case
from qgpt.conformance.inputs import FORMATS, ops_policy
from qgpt.conformance.ops import HEAPSIZE, TARGETS, conformance_ops
from qgpt.conformance.training import (
    STEPS_DUMPS,
    STEPS_POLICIES,
    conformance_run,
    conformance_steps,
)

LEVELS = ("ops", "steps", "run", "all")


def check_setup(level, formats, micropython, build, target, data, policies=()):
    """Raise a one-line ValueError (SetupError, DataError, FormatError, PolicyError) if
    a level could not run: the target, the build for it, the formats, the policies,
    the run's names file."""
    if level not in LEVELS:
        raise ValueError(f"level {level!r} is unknown: want one of {', '.join(LEVELS)}")
    if target not in TARGETS:
        raise ValueError(f"target {target!r} is unknown: want one of {', '.join(TARGETS)}")
    for fmt in formats or ():
        ops_policy(fmt)
    for spec in policies or ():
        policy_case(spec)  # the one-line errors of qgpt train --policy
    if target == "unix":
        check_build(probe(micropython), build)
    if level in ("run", "all") and target == "unix":
        from qgpt import data as datasets

        datasets.load(data)


def conformance(level="ops", formats=None, micropython=None, seed=None, heapsize=None,
                build="mpy", target="unix", data=None, out=None, policies=None):
    """The CLI's dispatcher (qgpt conformance --level ops|steps|run|all): runs the
    level(s), prints each report; exit code 0 if all equal, 1 on any mismatch or
    device failure; a setup that cannot run raises a one-line ValueError first.
    seed: the golden cases' seed for ops (default 0), the training seed for steps and
    run (default 42); formats: ops and steps; data: the run level's names file
    (default: the built-in data/names.txt); policies: --policy SPECs, the only cases
    of every level (beside the formats' at ops and steps when both are given); None:
    the ops and steps defaults add STEPS_POLICIES, and ops policy_edge_cases's
    EDGE_POLICIES."""
    check_setup(level, formats, micropython, build, target, data, policies)
    out = out or sys.stdout
    code = 0
    if level in ("ops", "all"):
        if formats or not policies:
            code |= conformance_ops(formats, micropython, 0 if seed is None else seed,
                                    heapsize, build, target, out=out)
        ops_policies = STEPS_POLICIES if policies is None and not formats else policies
        if ops_policies:
            from qgpt.conformance.policy_edge_cases import conformance_policy_ops

            code |= conformance_policy_ops(ops_policies, micropython,
                                           0 if seed is None else seed, heapsize, build,
                                           target, out=out, edges=policies is None)
    train_seed = TRAIN_SEED if seed is None else seed
    if level in ("steps", "all"):
        step_formats = formats if level == "steps" else None
        if policies and not formats:
            step_formats = ()  # --policy alone: only its cases
        step_policies = STEPS_POLICIES if policies is None and not formats else policies
        code |= conformance_steps(step_formats, micropython, train_seed, target,
                                  policies=tuple(step_policies or ()),
                                  dump_steps=STEPS_DUMPS if target == "unix" else (1, 2),
                                  out=out, build=build,
                                  **({"heapsize": heapsize} if heapsize else {}))
    if level == "all" and target == "int32":  # about 1 s a step in CPython: ask for it alone
        print("level run: SKIPPED (the int32 target takes about 20 minutes for 1000 steps: "
              "run --level run --target int32 alone)", file=out)
    elif level in ("run", "all"):
        code |= conformance_run(data, micropython, train_seed, target, out=out, build=build,
                                **({"heapsize": heapsize} if heapsize else {}),
                                **({"cases": [policy_case(p) for p in policies]}
                                   if policies else {}))
    return code


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m qgpt.conformance",
                                 description="conformance of the firmware with the simulator")
    ap.add_argument("--level", choices=LEVELS, default="ops",
                    help="ops: every kernel on golden vectors (default); steps: training steps "
                         "(params, gradients, Adam state); run: whole 1000-step runs "
                         "(nearest, stochastic, master weights); all: the three")
    ap.add_argument("--formats", default=None,
                    help=f"ops and steps (default {','.join(FORMATS)})")
    ap.add_argument("--target", choices=TARGETS, default="unix",
                    help="unix: the MicroPython unix port (default); int32: the firmware run by "
                         "CPython with every viper intermediate checked against int32")
    ap.add_argument("--micropython", default=None, help="the unix port (default: the venv's)")
    ap.add_argument("--seed", type=int, default=None,
                    help="ops: the golden cases' seed (default 0); steps, run: the training "
                         "seed (default 42)")
    ap.add_argument("--heapsize", default=None,
                    help=f"the device heap (ops default {HEAPSIZE}, {HEAPSIZE_PY} with --build "
                         f"py; steps and run default {TRAIN_HEAPSIZE})")
    ap.add_argument("--build", choices=["mpy", "py"], default="mpy",
                    help="mpy: firmware compiled by mpy-cross (default); py: the port compiles")
    ap.add_argument("--data", default=None,
                    help="run: the names file (default: the built-in data/names.txt)")
    ap.add_argument("--policy", action="append", default=None, metavar="SPEC",
                    help="a precision policy (as qgpt train --policy; repeatable): every "
                         "level runs only these (with --formats, ops and steps run both); "
                         f"the ops and steps defaults add {len(STEPS_POLICIES)} mixed "
                         "policies, int8 among them")
    ap.add_argument("--corrupt", default=None, metavar="OP",
                    help="self-test (ops): alter one golden value of OP; the run must fail")
    a = ap.parse_args(argv)
    formats = a.formats.split(",") if a.formats else None
    try:
        if a.corrupt:
            check_setup("ops", formats, a.micropython, a.build, a.target, None)
            return conformance_ops(formats, a.micropython, a.seed or 0, a.heapsize, a.build,
                                   a.target, corrupt=a.corrupt)
        return conformance(a.level, formats, a.micropython, a.seed, a.heapsize, a.build,
                           a.target, a.data, policies=a.policy)
    except ValueError as e:  # SetupError, DataError, FormatError: one line
        print(f"qgpt conformance: error: {e}", file=sys.stderr)
        return 2
