"""Training runs: the loop, the run folder, checkpoints, resume, sampling and evaluation.

A model here is a FloatModel or an IntModel (int_model.py): both take a
training step on a token list and return the loss in float64 computed from
their own logits, so float and integer runs compare on equal terms.

The run folder holds:
    config.json    the resolved TrainConfig (and, for integer runs, the policy)
    losses.csv     step, loss (and integer telemetry), one row per step
    checkpoint.bin the latest state (checkpoint.py), written atomically
    summary.json   steps, seed, params, train_loss_last100, val_nll, seconds, ...
"""

import csv
import io
import json
import math
import time
from dataclasses import fields
from pathlib import Path

import numpy as np

from qgpt import checkpoint, data, float_model, prng
from qgpt.optim import AdamConfig, FloatAdam
from qgpt.params import BLOCK, BOS, N_PARAMS
from qgpt.progress import Progress
from qgpt.runconfig import (
    INTEGER_ONLY,
    RECORDED_FIELDS,
    ConfigError,
    TrainConfig,
    check_seed,
    check_temperature,
)


class RunError(ValueError):
    """A problem with a run folder or a run's input, worded for the user."""


# --- the float model behind the common interface ---


class FloatModel:
    kind = "float"

    def __init__(self, cfg):
        self.cfg = cfg
        self.flat = float_model.init_params(cfg.seed)
        self.opt = FloatAdam(AdamConfig(lr=cfg.lr), N_PARAMS)

    def train_step(self, tokens, step, num_steps):
        loss, grad = float_model.loss_and_grad(self.flat, tokens)
        self.opt.step(self.flat, grad, step, num_steps)
        return loss, {}

    def logits(self, inputs):
        return float_model.forward(self.flat, np.asarray(inputs))

    def next_token(self, inputs, temperature, u30):
        """Sample the token after inputs from softmax(logits / temperature) with a
        30-bit uniform u30: the first token whose cumulative probability exceeds it."""
        z = self.logits(inputs)[-1] / temperature
        p = np.exp(z - z.max())
        cum = np.cumsum(p / p.sum())
        return int(min(np.searchsorted(cum, u30 / 2.0**30, side="right"), len(p) - 1))

    def float_params(self):
        return self.flat.copy()

    def state(self):
        return {"kind": "float"}, {"params": self.flat, "adam_m": self.opt.m, "adam_v": self.opt.v}

    def load_state(self, meta, arrays):
        self.flat = arrays["params"].astype(np.float64)
        self.opt.m, self.opt.v = arrays["adam_m"], arrays["adam_v"]


def make_model(cfg):
    if cfg.format == "float":
        return FloatModel(cfg)
    from qgpt.int_model import IntModel  # the integer simulator (issue: Q formats)

    return IntModel(cfg)


# --- the training loop, shared by train(), qgpt bench and qgpt sweep ---


LOSS_BATCH = 50  # an integer run's reported losses are computed this many steps at a time


def training_steps(model, ds, cfg, start=0, stop=None, loss_batch=1):
    """Train model on ds for steps start..stop-1 (stop: cfg.steps); yields (step, loss,
    telemetry). A loss that is not finite ends the run with a RunError.

    loss_batch > 1: an integer model's reported losses are computed that many steps at a
    time (IntModel.deferred_results: the same floats and integers, fewer numpy calls), and
    those steps are yielded after the last of them. The model is then in a yielded step's
    state only after the last step of a batch: at every multiple of loss_batch, every
    checkpoint step (cfg.checkpoint_every) and stop, the steps train() saves at. A caller
    that stops early or reads the model between steps keeps loss_batch = 1."""
    stop = cfg.steps if stop is None else stop
    batch = loss_batch if hasattr(model, "deferred_results") else 1
    every = cfg.checkpoint_every
    if batch > 1:
        model.defer_losses = True
    try:
        for step in range(start, stop):
            name = ds.train[prng.doc_index(step, len(ds.train), cfg.seed)]
            result = model.train_step(data.encode(name), step, cfg.steps)
            if batch == 1:
                results = [result]
            else:
                done = step + 1
                if done % batch and done != stop and not (every and done % every == 0):
                    continue
                results = model.deferred_results()
            for s, (loss, tele) in enumerate(results, step + 1 - len(results)):
                if not math.isfinite(loss):
                    raise RunError(f"training diverged at step {s}: the loss is {loss} "
                                   "(try a smaller --lr)")
                yield s, loss, tele
    finally:
        if batch > 1:  # (and the steps of a loop left mid-batch are dropped)
            model.defer_losses = False
            model.deferred_results()


# --- evaluation and sampling ---


NLL_BATCH = 512  # names per forward pass in nll: bounds its memory (a few MB)


def nll_batches(names):
    """names as nll evaluates them: those of one length stacked, at most NLL_BATCH a batch,
    [(indices in names (B,), inputs (B,T), targets (B,T))]. A caller that evaluates the
    same names many times (qgpt sweep) makes them once."""
    by_length = {}  # T -> [(index in names, inputs, targets)]
    for i, name in enumerate(names):
        inputs, targets = float_model.split_tokens(data.encode(name))
        by_length.setdefault(len(inputs), []).append((i, inputs, targets))
    batches = []
    for group in by_length.values():
        for start in range(0, len(group), NLL_BATCH):
            chunk = group[start : start + NLL_BATCH]
            batches.append((np.array([i for i, _, _ in chunk], dtype=np.intp),
                            np.stack([inp for _, inp, _ in chunk]),
                            np.stack([tgt for _, _, tgt in chunk])))
    return batches


def nll(model, names, batches=None):
    """Mean per-token negative log-likelihood (nats) over names, in float64; None when
    there are no names (a tiny dataset has no validation split: no figure, not 0.0).
    batches: nll_batches(names), if the caller keeps them.

    Names of one length go through the model together, a batch axis in front of the
    positions: every number is the one a name alone gives (the integer logits exactly;
    float64's element-wise functions and per-row sums alike), and the per-name sums are
    added in the order of names, so the result is the same to the bit, several times
    faster."""
    batches = nll_batches(names) if batches is None else batches
    per_name, count = np.zeros(len(names)), 0
    for indices, inputs, targets in batches:
        z = model.logits(inputs).astype(np.float64, copy=False)  # (B,T,V)
        m = z.max(axis=-1, keepdims=True)
        lse = np.log(np.exp(z - m).sum(axis=-1)) + m[..., 0]
        picked = np.take_along_axis(z, targets[..., None], axis=-1)[..., 0]
        per_name[indices] = (lse - picked).sum(axis=-1)
        count += targets.size
    total = 0.0
    for s in per_name.tolist():  # in the order of names, as one name at a time added them
        total += s
    return total / count if count else None


def sample(model, n=20, temperature=0.5, seed=42):
    """n names, each drawn token by token from BOS until BOS or BLOCK tokens."""
    temperature, seed = check_temperature(temperature), check_seed(seed)
    names = []
    for s in range(n):
        k = prng.key(seed, prng.STREAM_SAMPLE, s)
        tokens = [BOS]
        for t in range(BLOCK):
            nxt = model.next_token(tokens, temperature, int(prng.hash30((k + t) & prng.M30)))
            if nxt == BOS:
                break
            tokens.append(nxt)
        names.append(data.decode(tokens))
    return names


# --- the run folder ---


def _write_losses(path, rows, fields):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(fields)
    w.writerows(rows)
    checkpoint.write_atomic(path, buf.getvalue().encode())


def _json(path, obj):
    checkpoint.write_atomic(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def _dataset_identity(ds):
    """What a run records of its dataset: a resume compares sha256, never the path."""
    return {"path": ds.path, "sha256": ds.sha256, "train": len(ds.train), "val": len(ds.val),
            "dropped": ds.dropped}


def save_state(out, model, cfg, step, seconds, ds=None):
    meta, arrays = model.state()
    meta.update(step=step, seconds=seconds, config=cfg.recorded())
    if ds is not None:
        meta["dataset"] = _dataset_identity(ds)
    checkpoint.save(out / "checkpoint.bin", meta, arrays)


def train(cfg, out, resume=False, progress=True, log=print):
    """Run cfg into the folder out; returns the summary dict."""
    out = Path(out)
    ds = data.load(cfg.data, cfg.lowercase, cfg.skip_long)
    model = make_model(cfg)
    fields = ["step", "loss", *getattr(model, "telemetry_fields", ())]
    rows, start, seconds_before = [], 0, 0.0
    if resume:
        model, meta = _resumed_model(out, cfg, ds)
        start, seconds_before = meta["step"], meta["seconds"]
        rows = _earlier_rows(out, cfg, ds, fields, meta, model, log)
    elif out.is_dir() and ((out / "checkpoint.bin").exists() or (out / "summary.json").exists()):
        raise RunError(f"{out}: already holds a run; pass --resume to continue it or "
                       "choose another --out")
    checkpoint.prepare_output(out, "--out", folder=True)
    resolved = {"config": cfg.recorded(), "dataset": _dataset_identity(ds)}
    if hasattr(model, "policy"):
        resolved["policy"] = model.policy.describe()
    _json(out / "config.json", resolved)

    bar = Progress(cfg.steps, start=start) if progress else None
    t0 = time.perf_counter()
    for step, loss, tele in training_steps(model, ds, cfg, start, loss_batch=LOSS_BATCH):
        rows.append([step, loss, *(tele.get(f) for f in fields[2:])])
        done = step + 1
        if bar:
            bar.update(done, loss=float(np.mean([r[1] for r in rows[-100:]])))
        if done == cfg.steps or (cfg.checkpoint_every and done % cfg.checkpoint_every == 0):
            _write_losses(out / "losses.csv", rows, fields)
            save_state(out, model, cfg, done, seconds_before + time.perf_counter() - t0, ds)
    elapsed = time.perf_counter() - t0
    seconds = seconds_before + elapsed
    losses = [r[1] for r in rows]
    # the training telemetry, before evaluation runs the model's counters further
    extra = model.summary_extra() if hasattr(model, "summary_extra") else {}
    summary = {
        "kind": model.kind,
        "format": cfg.format,
        "steps": cfg.steps,
        "seed": cfg.seed,
        "params": N_PARAMS,
        "train_loss_first100": float(np.mean(losses[:100])),
        "train_loss_last100": float(np.mean(losses[-100:])),
        "val_names": len(ds.val),
        "val_nll": nll(model, ds.val),  # None (null) when there are no validation names
        "seconds": seconds,
        "steps_per_second": (cfg.steps - start) / max(elapsed, 1e-9),
    }
    summary.update(extra)
    _json(out / "summary.json", summary)
    return summary


# --- resume: the same settings, the same names, every earlier loss ---


def _resumed_model(out, cfg, ds):
    """The model of the checkpoint in out, and its meta; RunError unless it was made with
    cfg's settings (the data path aside) on a dataset with the same names."""
    ckpt = out / "checkpoint.bin"
    if not ckpt.is_file():
        raise RunError(f"{out}: nothing to resume (no checkpoint.bin); drop --resume")
    meta, arrays = checkpoint.load(ckpt)
    model, saved = restore(meta, arrays, str(ckpt))
    diff = [f.name for f in fields(cfg)
            if f.name != "data" and getattr(cfg, f.name) != getattr(saved, f.name)]
    if diff:
        raise RunError(f"{out}: the checkpoint was made with other settings ({', '.join(diff)})"
                       "; resume with the same options or choose another --out")
    made_on = meta.get("dataset")
    if not isinstance(made_on, dict) or not isinstance(made_on.get("sha256"), str):
        raise RunError(f"{out}: the checkpoint does not record the names it was trained on "
                       "(made by an import, a board or an older qgpt), so it cannot be resumed "
                       "here; start a new run")
    if made_on["sha256"] != ds.sha256:
        was = made_on.get("train", 0) + made_on.get("val", 0)
        raise RunError(f"{ds.path}: the names changed since the run's checkpoint (now "
                       f"{len(ds.train) + len(ds.val)}, sha256 {ds.sha256[:12]}; the run was "
                       f"trained on {was}, sha256 {made_on['sha256'][:12]}): resume with those "
                       "names or choose another --out")
    if meta["step"] > cfg.steps:
        raise RunError(f"{out}: the checkpoint is at step {meta['step']}, past --steps "
                       f"{cfg.steps}")
    return model, meta


def _earlier_rows(out, cfg, ds, fields, meta, model, log):
    """The losses.csv rows of steps 0 .. step-1 of the checkpoint. A missing, truncated or
    damaged losses.csv is rebuilt by replaying those steps from the start, if the replay
    reproduces the checkpoint exactly; otherwise RunError. Never a gap."""
    start = meta["step"]
    rows, problem = _read_losses(out / "losses.csv", start, fields)
    if problem is None:
        return rows
    log(f"{out}/losses.csv {problem}: replaying steps 0..{start - 1} to rebuild it")
    replay = make_model(cfg)
    rows = [[step, loss, *(tele.get(f) for f in fields[2:])]
            for step, loss, tele in training_steps(replay, ds, cfg, 0, stop=start)]
    replay_meta, replay_arrays = replay.state()
    _, arrays = model.state()
    same = all(np.array_equal(replay_arrays[k], arrays[k]) for k in arrays) and all(
        json.loads(json.dumps(v)) == meta.get(k) for k, v in replay_meta.items())
    if not same:
        raise RunError(f"{out}/losses.csv {problem}, and replaying steps 0..{start - 1} does "
                       "not reproduce the checkpoint: start a new run (drop --resume or choose "
                       "another --out)")
    _write_losses(out / "losses.csv", rows, fields)
    log(f"{out}/losses.csv: rebuilt steps 0..{start - 1} (the replay reproduces the "
        "checkpoint exactly)")
    return rows


def _read_losses(path, start, fields):
    """(rows of steps 0..start-1, None), or (None, what is wrong with the file)."""
    try:
        table = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))
    except FileNotFoundError:
        return None, "is missing"
    except (OSError, UnicodeDecodeError, csv.Error):
        return None, "cannot be read"
    if not table or table[0] != fields:
        return None, "has another header"
    rows = []
    for i, r in enumerate(table[1 : start + 1]):
        try:
            ok = len(r) == len(fields) and int(r[0]) == i
            numbers = [float(x) for x in r[1:]]
        except ValueError:
            ok = False
        if not ok or not all(math.isfinite(x) for x in numbers):
            return None, f"is damaged at line {i + 2}"
        rows.append([i, numbers[0], *r[2:]])
    if len(rows) < start:
        return None, f"holds {len(rows)} of the {start} steps the checkpoint has done"
    return rows, None


# --- loading a checkpoint: every field checked ---


def restore(meta, arrays, source):
    """(model, TrainConfig) of a decoded checkpoint; CheckpointError naming what is wrong
    unless every field is one a run of its config writes (checkpoint.check_run_state)."""
    from qgpt.qformat import FormatError

    def refuse(what):
        raise checkpoint.CheckpointError(f"{source}: {what}; this is not a usable qgpt "
                                         "checkpoint")

    config = meta.get("config")
    if not isinstance(config, dict):
        refuse("it records no config")
    kind = "float" if config.get("format") == "float" else "int"
    if meta.get("kind") != kind:
        refuse(f"kind {str(meta.get('kind'))[:20]!r} disagrees with its config's format "
               f"{str(config.get('format'))[:20]!r}")
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(config) - known)
    if unknown:
        refuse(f"its config has unknown fields {unknown[:5]}")
    optional = INTEGER_ONLY if config.get("format") == "float" else ()
    missing = [k for k in RECORDED_FIELDS if k not in config and k not in optional]
    if missing:
        refuse(f"its config lacks {', '.join(missing)}")
    try:
        cfg = TrainConfig(**config)
        model = make_model(cfg)
    except (ConfigError, FormatError) as e:
        refuse(f"its config is not valid ({e})")
    policy = getattr(model, "policy", None)  # None for a float run
    checkpoint.check_run_state(meta, arrays, model.kind, source,
                               policy and (policy.weight_store.lo, policy.weight_store.hi),
                               policy and policy.m_limit,
                               {name: a.size for name, a in model.state()[1].items()})
    if meta["step"] > cfg.steps:
        refuse(f"step {meta['step']} is past its config's {cfg.steps} steps")
    if "policy" in meta and meta["policy"] != model.policy.describe():
        refuse(f"its policy label disagrees with its config's format {cfg.format}")
    model.load_state(meta, arrays)
    return model, cfg


def load_run(run_dir):
    """The model of a finished or checkpointed run folder, and its config."""
    run_dir = Path(run_dir)
    ckpt = run_dir / "checkpoint.bin" if run_dir.is_dir() else run_dir
    meta, arrays = checkpoint.load(ckpt)
    return restore(meta, arrays, str(ckpt))
