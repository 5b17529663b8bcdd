"""Train microgpt on the device: the run protocol of firmware/README.md.

    import qgpt_train; qgpt_train.main("qgpt.json")     (a board, through mpremote)
    micropython, option "-m qgpt_train", then qgpt.json  (the unix port; exit code 1 on error)

Reads a JSON config, trains from the seed or resumes from a checkpoint, reads one
record of the packed dataset per step (qgpt/pack.py; never all of it in RAM),
prints one line per event, writes checkpoints, and ends with samples:

    qgpt start format=q4.12 rounding=nearest master=- policy=... steps=1000 from=0 ...
    step 1 loss_q16 215912 loss 3.2946 rate 150.2
    ckpt 100
    sample kalen
    done step 1000 hash 1a2b3c4d heap_peak 70123 stalled 123456 seconds 6.7
    error MESSAGE                                   (then nothing else)

Plain MicroPython (json, struct, os, gc, time): the same file runs on the unix port,
an ESP32, and under CPython with the shims of qgpt/conformance/int32.py's int32 target.
"""

import gc
import sys
from time import ticks_diff, ticks_ms

from micropython import const
from runbase import DATA_HEADER, RECORD, RunError

_BOS = const(26)  # the BOS token (qgpt/params.py; tests/test_firmware_train.py checks it)
# run collects the garbage, and measures the heap in use, every _COLLECT_EVERY steps: a
# collection marks the state block word by word and sweeps the heap, gc.mem_alloc() walks
# the heap (about 170 K and 105 K instructions on the unix port: as much as a step's
# whole Python-level work), and a step leaves 32 bytes of garbage on a 64-bit port
_COLLECT_EVERY = const(16)

# Memory (firmware/README.md): this module stays in memory for the whole run (under
# `-m` its module body too), so the run loop is one function, the record reader and
# the step line inside it; what runs once is in the setup's stages (dropped)


def _drop(name):
    """Forget a module used once, so that the garbage collector frees its code."""
    if name in sys.modules:
        del sys.modules[name]


def save(cfg, mdl, step, seconds):
    """A checkpoint after `step` steps: ckpt.py comes for the save and leaves after it.
    Block-scaled Adam's code (model.Model.weight_backward's) makes room for it meanwhile: a save is
    the run's fullest moment; it comes back at once into the hole ckpt.py leaves (later,
    the step's allocations would have cut that hole into pieces too small for it)."""
    blocks = "blockadam" in sys.modules
    _drop("blockadam")
    gc.collect()
    import ckpt

    try:
        ckpt.save(cfg, mdl, step, seconds)
    finally:
        ckpt = None
        _drop("ckpt")
        gc.collect()
        if blocks:
            __import__("blockadam")
    print("ckpt", step)


def begin(got, mdl, numbers):
    """(first step, seconds before): the state setup found (the initial weights, or a
    checkpoint's) is in the block already; a resume also gives the Model's counters
    (got: restore.setup's (first step, seconds before, counters or None)). With master
    weights, the data weights follow from them (numbers[1]: the parameter table's
    offsets, then N). A function of its own: qgpt/fwprofile.py's driver patches the
    model here, once it is imported."""
    if got[2] is not None:
        c = mdl.counts
        c[0], c[1], c[2], c[3] = got[2]
    mdl.refresh_data(0, numbers[1][-1])
    return got[0], got[1]


def _start(path):
    """The setup (runbase.start: its stages, one module at a time, each dropped after use;
    firmware/README.md, "Memory"), then runbase leaves memory with the setup's code (only
    RunError stays); returns (the config, the Model, its module, begin's first step and
    seconds before). A function of its own: what its frame held is out of the garbage
    collector's sight once it returns."""
    import runbase

    cfg, mdl, MD, numbers, got = runbase.start(path)
    runbase = None
    _drop("runbase")
    return (cfg, mdl, MD) + begin(got, mdl, numbers)


def run(path):
    cfg, mdl, MD, start, seconds_before = _start(path)
    steps, seed, data, count = cfg["steps"], cfg["seed"], cfg["data"], cfg["count"]
    import prng

    end = steps if cfg["stop_at"] is None else min(steps, cfg["stop_at"])
    # the packed dataset (qgpt/pack.py, checked by runcfg): one record read per step
    f = open(data, "rb")
    rec = bytearray(RECORD)
    tok = mdl.tok
    gc.collect()
    peak = gc.mem_alloc()
    # (print's pieces: no line-long string is made)
    print("qgpt start", cfg.pop("formats"), f"steps={steps} from={start} to={end} "
          f"records={count} viper={MD.word_bits()} heap={peak}")  # formats: once
    dumps = cfg["dump_steps"]
    log_every, every = cfg["log_every"], cfg["checkpoint_every"]
    saved = start
    t0 = ticks_ms()
    elapsed = 0
    for step in range(start, end):
        # the step's record into tok as [BOS] + letters + [BOS]
        i = prng.doc_index(step, count, seed)
        f.seek(DATA_HEADER + i * RECORD)
        f.readinto(rec)
        n = rec[0]
        if not 1 <= n < RECORD:
            raise RunError(f"data {data}: record {i} has length {n}")
        tok[0] = tok[n + 1] = _BOS
        for i in range(n):
            tok[1 + i] = rec[1 + i]
        done = step + 1
        dumper = None
        if done in dumps:  # debug (conformance): the state after this step, to a file
            from dump import Dump

            dumper = Dump(f"{cfg['dump_prefix']}-{done}.bin", mdl)
        loss_q16 = mdl.train_step(n + 1, step, steps)
        collect = (done % _COLLECT_EVERY == 0 or done % log_every == 0 or done == end
                   or dumper is not None or (every and done % every == 0))
        if collect:
            # every few steps, and at a step that prints, dumps or saves: the heap in use
            # holds the live data and the garbage of every step since the last collection,
            # at least what each of them left at its end (firmware/README.md, the `done`
            # line); measured before the step line and the debug dump, collected after them
            used = gc.mem_alloc()
            if used > peak:
                peak = used
        if done % log_every == 0 or done == end:
            # the loss also in decimal from integers (loss_q16 / 2**16 to 4 places, half
            # up), the rate in tenths of steps/s
            elapsed = ticks_diff(ticks_ms(), t0)
            d = (loss_q16 * 10000 + (1 << 15)) >> 16
            i = (done - start) * 10000 // max(1, elapsed)
            print(f"step {done} loss_q16 {loss_q16} loss {d // 10000}.{d % 10000:04d} rate "
                  f"{i // 10}.{i % 10}")
        if dumper is not None:
            dumper.close()
        if collect:
            gc.collect()
        if (every and done % every == 0) or done == steps:
            save(cfg, mdl, done, seconds_before + ticks_diff(ticks_ms(), t0) / 1000)
            saved = done
    elapsed = ticks_diff(ticks_ms(), t0)
    if end > saved:  # stopped early (stop_at): keep the state so that a resume continues
        save(cfg, mdl, end, seconds_before + elapsed / 1000)
    # the end: the dataset and block-scaled Adam's code leave memory, sampling comes (the
    # state's CRC32, then the samples)
    f.close()
    f = None
    _drop("blockadam")
    gc.collect()
    import sampling

    crc = sampling.finish(mdl, cfg, seed)
    print(f"done step {end} hash {crc:08x} heap_peak {peak} stalled {mdl.counts[2]} "
          f"seconds {elapsed // 1000}.{elapsed % 1000:03d}")
    return 0


def main(path="qgpt.json"):
    """Run the config at path; returns 0, or 1 after printing `error MESSAGE`."""
    try:
        return run(path)
    except RunError as e:
        print("error", e)
        return 1
    except MemoryError:
        print("error out of memory: the heap is too small for training")
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "qgpt.json"))
