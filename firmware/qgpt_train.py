"""Train microgpt on the device: the run protocol of firmware/README.md.

    import qgpt_train; qgpt_train.main("qgpt.json")     (a board, through mpremote)
    micropython -m qgpt_train qgpt.json                  (the unix port; exit code 1 on error)

Reads a JSON config, trains from the seed or resumes from a checkpoint, reads one
record of the packed dataset per step (qgpt/pack.py; never all of it in RAM),
prints one line per event, writes checkpoints, and ends with samples:

    qgpt start format=q4.12 rounding=nearest master=- steps=1000 from=0 to=1000 ...
    step 1 loss_q16 215912 loss 3.2946 rate 150.2
    ckpt 100
    sample kalen
    done step 1000 hash 1a2b3c4d heap_peak 70123 stalled 123456 seconds 6.7
    error MESSAGE                                   (then nothing else)

Plain MicroPython (json, struct, os, gc, time): the same file runs on the unix port,
an ESP32, and under CPython (qgpt/conformance.py's int32 target).
"""

import gc
import sys

try:
    from time import ticks_diff, ticks_ms
except ImportError:  # CPython (the int32 target)
    import time

    def ticks_ms():
        return int(time.time() * 1000)

    def ticks_diff(a, b):
        return a - b


DATA_MAGIC = b"QGPTDATA"  # the packed dataset (qgpt/pack.py)
DATA_VERSION = 1
DATA_HEADER = 20
RECORD = 16  # bytes a record: the length, then at most 15 letters (BLOCK = 16)


class RunError(ValueError):
    """A bad config, dataset or checkpoint, worded for the user."""


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


# --- printing without building strings ---


def _decimal(q, scale_bits):
    """Print q / 2**scale_bits rounded to 4 decimals (q >= 0)."""
    d = (q * 10000 + (1 << (scale_bits - 1))) >> scale_bits
    frac = d % 10000
    pad = "000" if frac < 10 else "00" if frac < 100 else "0" if frac < 1000 else ""
    print(d // 10000, ".", pad, frac, sep="", end="")


def print_step(done, loss_q16, rate_x10):
    print("step", done, "loss_q16", loss_q16, "loss ", end="")
    _decimal(loss_q16, 16)
    print(" rate ", rate_x10 // 10, ".", rate_x10 % 10, sep="")


def heap_used():
    return gc.mem_alloc() if hasattr(gc, "mem_alloc") else 0


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


def setup(config_path):
    """(config, number of records): the cold code runs and is dropped, with the
    policy and the parameter table, whose numbers are in cfg["numbers"]."""
    import runcfg

    try:
        cfg = runcfg.load_config(config_path)
        return cfg, runcfg.check_dataset(cfg["data"])
    finally:
        for name in ("runcfg", "policy", "params"):
            _drop(name)


def resume(cfg, mdl):
    import restore

    try:
        return restore.resume(cfg, mdl)
    finally:
        _drop("restore")


def run(config_path):
    # Memory (firmware/README.md): the setup's code comes and goes first; the training
    # code then fills the holes it left, and the buffers go above, largest first
    cfg, count = setup(config_path)
    gc.collect()
    import ckpt
    import model as MD
    import prng

    _drop("params")  # model took its numbers
    steps, seed = cfg["steps"], cfg["seed"]
    nums = cfg.pop("numbers")
    mdl = MD.Model(nums["wide"])
    mdl.configure(nums, seed)
    nums = None
    ds = Dataset(cfg["data"], count, MD.BOS)
    start, seconds_before = 0, 0.0
    if cfg["resume"] and ckpt.exists(cfg["checkpoint"]):
        meta = resume(cfg, mdl)
        start, seconds_before = meta["step"], meta.get("seconds", 0.0)
    else:
        if cfg["resume"]:
            path = cfg["checkpoint"]
            if ckpt.exists(path + ".tmp"):  # FAT: a save cut short between remove and rename
                raise RunError(f"checkpoint {path} is missing but {path}.tmp is there (a save "
                               f"was cut short): rename it to {path} to resume")
            print("note no checkpoint", path, "to resume: starting from step 0")
        mdl.init_weights()
    end = steps if cfg["stop_at"] is None else min(steps, cfg["stop_at"])
    gc.collect()
    peak = heap_used()
    print(f"qgpt start {cfg['formats']} steps={steps} from={start} to={end} "
          f"records={ds.count} viper={MD.word_bits()} heap={peak}")
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
        used = heap_used()  # the step's live data and garbage: the heap it needs
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
    import sampling  # only now: its code takes no memory during training

    sampling.print_samples(mdl, cfg["samples"], cfg["temperature"], seed)
    crc = mdl.state_crc(ckpt.crc32)
    print(f"done step {end} hash {crc:08x} heap_peak {peak} stalled {mdl.stalled_total} "
          f"seconds {elapsed // 1000}.{elapsed % 1000:03d}")
    return 0


def main(config_path="qgpt.json"):
    """Run the config at config_path; returns 0, or 1 after printing `error MESSAGE`."""
    try:
        return run(config_path)
    except RunError as e:
        print("error", e)
        return 1
    except MemoryError:
        print("error out of memory: the heap is too small for training")
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "qgpt.json"))
