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

from runbase import DATA_HEADER, RECORD, RunError


class Dataset:
    """The packed file of qgpt/pack.py (checked by runcfg.check_dataset), open for the
    run: one 16-byte record read per step, never the whole file."""

    def __init__(self, path, count, bos):
        self.f = open(path, "rb")
        self.path, self.count, self.bos = path, count, bos
        self.rec = bytearray(RECORD)  # (RECORD,) the record read last

    def read(self, i, tok):
        """Record i into tok as [BOS] + letters + [BOS]; returns the number of letters."""
        self.f.seek(DATA_HEADER + i * RECORD)
        self.f.readinto(self.rec)
        n = self.rec[0]
        if not 1 <= n < RECORD:
            raise RunError(f"data {self.path}: record {i} has length {n}")
        tok[0] = self.bos
        for j in range(n):
            tok[1 + j] = self.rec[1 + j]
        tok[n + 1] = self.bos
        return n


# --- output ---


def print_step(done, loss_q16, rate):
    """The `step` line: the loss also in decimal from integers (loss_q16 / 2**16 to 4
    places, half up), rate in tenths of steps/s."""
    d = (loss_q16 * 10000 + (1 << 15)) >> 16
    print(f"step {done} loss_q16 {loss_q16} loss {d // 10000}.{d % 10000:04d} rate "
          f"{rate // 10}.{rate % 10}")


# --- the run ---


def save(cfg, mdl, step, seconds):
    meta = {"kind": "int", "step": step, "config": cfg["train_config"], "p1": mdl.p1,
            "p2": mdl.p2, "stalled_total": mdl.stalled_total, "steps_taken": mdl.steps_taken,
            "saturations": {}, "seconds": seconds, "firmware": 1}
    import ckpt

    ckpt.save(cfg["checkpoint"], meta, mdl)
    print("ckpt", step)


def _drop(name):
    """Forget a module used once, so that the garbage collector frees its code."""
    if name in sys.modules:
        del sys.modules[name]


def _reserve(path):
    """(a bytearray of the state block's size, at the bottom of the heap, and the first
    look it comes from: layout.first_look); layout leaves memory first."""
    import layout

    look = layout.first_look(path)
    _drop("layout")
    layout = None
    gc.collect()
    return bytearray(look[1][0]), look


def setup(path):
    """The config, with the number of records of the dataset ("count") and the Model's
    numbers with the state block's layout (cfg["numbers"][0]): the cold code runs and is
    dropped, with the policy and the parameter table. Meanwhile the bottom of the heap
    is kept for the state block by a reservation of its size, so that the setup's code
    comes and goes above it. Nothing is allocated after the reservation is let go, so
    the block takes its place (run)."""
    block, look = _reserve(path)
    import runcfg

    try:
        cfg = runcfg.load_config(path)
        cfg["count"] = runcfg.check_dataset(cfg["data"])
    finally:
        for name in ("runcfg", "policy", "params"):
            _drop(name)
    nums = cfg["numbers"][0]
    key = (nums[0], nums[6], nums[7], nums[4][4] == 4)  # mode 4: kahan
    lay = look[1]
    if look[0] != key:  # the first look missed (it cannot for a good config): again
        import layout

        lay = layout.block_bytes(*key)
    cfg["numbers"] = (nums + (lay,),) + cfg["numbers"][1:]  # the Model's numbers, and lay
    del block
    return cfg


def begin(cfg, mdl, numbers):
    """(first step, seconds before): the initial weights, or a resume (restore.py,
    dropped after use)."""
    import restore

    try:
        return restore.begin(cfg, mdl, numbers)
    finally:
        _drop("restore")


def run(path):
    # Memory (firmware/README.md): the bottom of the heap is kept for the state block
    # while the setup's code comes and goes above it; then the block (its size follows
    # the policy's containers; the master weights are its last piece) takes the bottom,
    # layout's views into it are made, layout leaves, and the training code fills the
    # holes
    cfg = setup(path)
    gc.collect()
    block = bytearray(cfg["numbers"][0][8][0])
    import layout  # still in memory from setup

    views = layout.views(block, cfg["numbers"][0])
    _drop("layout")
    layout = block = None
    gc.collect()
    import ckpt
    import model as MD
    import prng

    steps, seed = cfg["steps"], cfg["seed"]
    numbers = cfg.pop("numbers")
    mdl = MD.Model(views, numbers[0], seed)
    views = None
    ds = Dataset(cfg["data"], cfg["count"], MD.BOS)
    gc.collect()
    start, seconds_before = begin(cfg, mdl, numbers)
    numbers = None
    end = steps if cfg["stop_at"] is None else min(steps, cfg["stop_at"])
    gc.collect()
    peak = gc.mem_alloc()
    print(f"qgpt start {cfg.pop('formats')} steps={steps} from={start} to={end} "
          f"records={ds.count} viper={MD.word_bits()} heap={peak}")  # formats: once
    dumps = cfg["dump_steps"]
    log_every, every = cfg["log_every"], cfg["checkpoint_every"]
    saved = start
    t0 = ticks_ms()
    elapsed = 0
    for step in range(start, end):
        n = ds.read(prng.doc_index(step, ds.count, seed), mdl.tok)
        done = step + 1
        dumper = None
        if done in dumps:  # debug (conformance): the state after this step, to a file
            from dump import Dump

            dumper = Dump(f"{cfg['dump_prefix']}-{done}.bin", mdl)
        loss_q16 = mdl.train_step(n + 1, step, steps)
        used = gc.mem_alloc()  # the step's live data and garbage: the heap it needs
        if used > peak:
            peak = used
        gc.collect()
        if done % log_every == 0 or done == end:
            elapsed = ticks_diff(ticks_ms(), t0)
            print_step(done, loss_q16, (done - start) * 10000 // max(1, elapsed))
        if dumper is not None:
            dumper.close()
        if (every and done % every == 0) or done == steps:
            save(cfg, mdl, done, seconds_before + ticks_diff(ticks_ms(), t0) / 1000)
            saved = done
    elapsed = ticks_diff(ticks_ms(), t0)
    if end > saved:  # stopped early (stop_at): keep the state so that a resume continues
        save(cfg, mdl, end, seconds_before + elapsed / 1000)
    crc = mdl.state_crc(ckpt.crc32)
    # the samples: the dataset and the checkpoint writer leave memory, sampling comes
    ds.f.close()
    ds = ckpt = None
    _drop("ckpt")
    gc.collect()
    import sampling

    sampling.print_samples(mdl, cfg["samples"], cfg["temperature"], seed)
    print(f"done step {end} hash {crc:08x} heap_peak {peak} stalled {mdl.stalled_total} "
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
