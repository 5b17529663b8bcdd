"""Conformance of the firmware with the integer simulator: levels "ops", "steps", "run".

Level "ops": every kernel on golden vectors. Levels "steps" and "run": whole
training steps and a whole run of firmware/qgpt_train.py against
qgpt.int_model.IntModel, compared after each step.

The simulator (qgpt/int_ops.py, int_model.py, prng.py, policy.py) makes golden
vectors for every firmware kernel: random inputs at realistic scale and edge
cases (range limits, saturation, rounding ties, zeros, the largest magnitudes,
all-equal and one-hot softmax rows, T = 1 and T = 16), for each data format.
The firmware computes the same cases, and every output is compared with `==`;
a mismatch names the level, the op, the format, the case, the tensor, the index
and both values, and the run's exit code is 1.

Transport (board-ready: the device side uses only json, array, binascii, sys, gc):
the host writes one request file per format (firmware/conform_ops.py documents
it: a JSON header line per case followed by the raw little-endian input arrays);
the device prints one hex line per output tensor; the host compares. Targets:

    unix   micropython -X heapsize=96K -m conform_ops REQUEST, with the firmware
           compiled by mpy-cross for the host (as a board gets it) on MICROPYPATH
    int32  the same firmware and driver run by CPython, every viper intermediate
           checked against int32 (the x86-64 unix port computes in 64 bits and
           cannot show an overflow; a 32-bit board would)

The modules, in the order of the data flow:

    inputs.py           the Case record, the makers of inputs, FORMATS
    kernel_cases.py     golden cases of the kernels (exp_neg ... cross_entropy)
    optimizer_cases.py  golden cases of Adam, the policy, init, isqrt, the PRNG
    boundary_cases.py   cases constructed on thresholds: exhaustive exp, ties, sampling
    cases.py            build_cases(fmt, seed): every op-level case of a format
    protocol.py         the request file and the device's reply
    build.py            the MicroPython, mpy-cross and firmware build a target runs
    int32.py            the int32 target: viper code rewritten for CPython, checked
    report.py           mismatches and the levels' summary tables
    ops.py              level "ops": run_ops -> OpsReport; conformance_ops -> exit code
    device_run.py       a training run on the device: config, start, parse, state hash
    training.py         levels "steps" and "run": run_steps, run_run -> TrainReport
    cli.py              conformance(level, ...) -> exit code; main(): the options
    mutant_sites.py     the firmware's single-token mutants
    mutants.py          python -m qgpt.conformance.mutants: judging them by the levels
    coverage.py         which ops' cases reach which firmware function
    mutant_report.py    their verdicts saved, merged and reported
    equivalent.py       the equivalent mutants, each with why
    equivalent_fast_paths.py  those of the kernels issue 15's speed work wrote

    python -m qgpt.conformance [--level ops|steps|run|all] [--formats q4.12,q8.8]
                               [--target unix|int32] [--micropython PATH] [--data NAMES]

Every name below is importable from qgpt.conformance itself.
"""

from qgpt.conformance.build import (
    HEAPSIZE_PY,
    SetupError,
    TargetInfo,
    build_firmware,
    check_build,
    default_micropython,
    default_mpy_cross,
    device_env,
    firmware_build,
    probe,
)
from qgpt.conformance.cases import build_cases
from qgpt.conformance.cli import LEVELS, check_setup, conformance, main
from qgpt.conformance.device_run import (
    STATE_ARRAYS,
    TRAIN_HEAPSIZE,
    TRAIN_HEAPSIZE_INT8,
    TRAIN_HEAPSIZE_MASTER,
    TRAIN_HEAPSIZE_PY,
    TRAIN_SEED,
    TRAIN_STEPS,
    DeviceRun,
    TrainCase,
    device_config,
    device_heap,
    finish_training,
    model_hash,
    pack_names,
    parse_device_run,
    policy_case,
    read_dump,
    start_training,
    state_hash,
    stop,
    tensor_at,
)
from qgpt.conformance.inputs import FORMATS, NO_FORMAT, Case, master_for, ops_master, ops_policy
from qgpt.conformance.int32 import Int32Overflow, emulate_int32, emulate_int32_train
from qgpt.conformance.ops import (
    LEVEL,
    TARGETS,
    compare,
    conformance_ops,
    corrupt_one,
    run_ops,
)
from qgpt.conformance.protocol import DTYPES, REQUEST_END, REQUEST_MAGIC, parse_reply, write_request
from qgpt.conformance.report import (
    HEAPSIZE,
    MAX_LISTED,
    Mismatch,
    OpsReport,
    TrainMismatch,
    TrainReport,
    print_report,
)
from qgpt.conformance.training import (
    RUN_CASES,
    STEPS_DUMPS,
    STEPS_EXTRA,
    STEPS_FORMATS,
    STEPS_HIGH_LR,
    STEPS_POLICIES,
    STEPS_ROUNDINGS,
    compare_losses,
    compare_state,
    conformance_run,
    conformance_steps,
    first_divergence,
    run_run,
    run_steps,
    simulate,
)
from qgpt.firmware_build import FIRMWARE_DIR, firmware_modules

__all__ = [
    "DTYPES", "FIRMWARE_DIR", "FORMATS", "HEAPSIZE", "HEAPSIZE_PY", "LEVEL", "LEVELS",
    "MAX_LISTED", "NO_FORMAT", "REQUEST_END", "REQUEST_MAGIC", "RUN_CASES", "STATE_ARRAYS",
    "STEPS_DUMPS", "STEPS_EXTRA", "STEPS_FORMATS", "STEPS_HIGH_LR", "STEPS_POLICIES",
    "STEPS_ROUNDINGS",
    "TARGETS", "TRAIN_HEAPSIZE", "TRAIN_HEAPSIZE_INT8", "TRAIN_HEAPSIZE_MASTER",
    "TRAIN_HEAPSIZE_PY", "TRAIN_SEED", "TRAIN_STEPS", "Case", "DeviceRun", "Int32Overflow",
    "Mismatch", "OpsReport", "SetupError",
    "TargetInfo", "TrainCase", "TrainMismatch", "TrainReport", "build_cases", "build_firmware",
    "check_build", "check_setup", "compare", "compare_losses", "compare_state", "conformance",
    "conformance_ops", "conformance_run", "conformance_steps", "corrupt_one",
    "default_micropython", "default_mpy_cross", "device_config", "device_env", "device_heap",
    "emulate_int32", "emulate_int32_train", "finish_training", "firmware_build",
    "firmware_modules", "first_divergence", "main", "master_for", "model_hash", "ops_master",
    "ops_policy", "pack_names", "parse_device_run", "parse_reply", "policy_case",
    "print_report", "probe", "read_dump", "run_ops", "run_run", "run_steps", "simulate",
    "start_training", "state_hash", "stop", "tensor_at", "write_request", "STEPS_POLICIES",
]
