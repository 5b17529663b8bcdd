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
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from qgpt import checkpoint, data, float_model, prng
from qgpt.optim import AdamConfig, FloatAdam
from qgpt.params import BLOCK, BOS, N_PARAMS
from qgpt.progress import Progress


@dataclass(frozen=True)
class TrainConfig:
    data: str = str(data.DEFAULT_DATA)  # names file, one name per line
    steps: int = 1000  # training steps, one name each
    seed: int = 42  # fixes init, data order, stochastic rounding and sampling
    lr: float = 0.01  # peak Adam learning rate, decayed linearly to 0
    format: str = "float"  # "float" for the float64 reference, or a Q format like "q4.12"
    rounding: str = "nearest"  # integer runs: nearest | floor | stochastic
    master: str = ""  # integer runs: master-weight format ("" = the policy's default)
    policy: str = ""  # integer runs: "" (the defaults of format) or the canonical policy SPEC
    lowercase: bool = False  # lowercase names and drop those with other characters
    skip_long: bool = False  # skip names longer than the block size
    checkpoint_every: int = 100  # steps between checkpoints (and at the end)
    strict: bool = False  # integer runs: check every intermediate fits int32


class RunError(RuntimeError):
    """A problem with a run folder, worded for the user."""


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


def training_steps(model, ds, cfg, start=0):
    """Train model on ds for steps start..cfg.steps-1; yields (step, loss, telemetry)."""
    for step in range(start, cfg.steps):
        name = ds.train[prng.doc_index(step, len(ds.train), cfg.seed)]
        loss, tele = model.train_step(data.encode(name), step, cfg.steps)
        yield step, loss, tele


# --- evaluation and sampling ---


def nll(model, names):
    """Mean per-token negative log-likelihood (nats) over names, in float64."""
    total, count = 0.0, 0
    for name in names:
        inputs, targets = float_model.split_tokens(data.encode(name))
        z = model.logits(inputs).astype(np.float64)
        m = z.max(axis=-1, keepdims=True)
        lse = np.log(np.exp(z - m).sum(axis=-1)) + m[:, 0]
        total += float(np.sum(lse - z[np.arange(len(targets)), targets]))
        count += len(targets)
    return total / max(count, 1)


def sample(model, n=20, temperature=0.5, seed=42):
    """n names, each drawn token by token from BOS until BOS or BLOCK tokens."""
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


def _save(out, model, cfg, step, seconds):
    meta, arrays = model.state()
    meta.update(step=step, seconds=seconds, config=asdict(cfg))
    checkpoint.save(out / "checkpoint.bin", meta, arrays)


def train(cfg, out, resume=False, progress=True, log=print):
    """Run cfg into the folder out; returns the summary dict."""
    out = Path(out)
    ds = data.load(cfg.data, cfg.lowercase, cfg.skip_long)
    model = make_model(cfg)
    fields = ["step", "loss", *getattr(model, "telemetry_fields", ())]
    rows, start, seconds_before = [], 0, 0.0
    ckpt = out / "checkpoint.bin"
    if resume:
        if not ckpt.exists():
            raise RunError(f"{out}: nothing to resume (no checkpoint.bin); drop --resume")
        meta, arrays = checkpoint.load(ckpt)
        saved = TrainConfig(**meta["config"])
        if saved != cfg:
            diff = [k for k in asdict(cfg) if getattr(cfg, k) != getattr(saved, k)]
            raise RunError(f"{out}: the checkpoint was made with other settings ({', '.join(diff)})"
                           "; resume with the same options or choose another --out")
        model.load_state(meta, arrays)
        start, seconds_before = meta["step"], meta["seconds"]
        prev = list(csv.reader(open(out / "losses.csv")))[1:]
        rows = [[int(r[0]), float(r[1]), *r[2:]] for r in prev[:start]]
    elif ckpt.exists() or (out / "summary.json").exists():
        raise RunError(f"{out}: already holds a run; pass --resume to continue it or "
                       "choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    resolved = {"config": asdict(cfg), "dataset": {"path": ds.path, "train": len(ds.train),
                "val": len(ds.val), "dropped": ds.dropped}}
    if hasattr(model, "policy"):
        resolved["policy"] = model.policy.describe()
    _json(out / "config.json", resolved)

    bar = Progress(cfg.steps, start=start) if progress else None
    t0 = time.perf_counter()
    for step, loss, tele in training_steps(model, ds, cfg, start):
        rows.append([step, loss, *(tele.get(f) for f in fields[2:])])
        done = step + 1
        if bar:
            bar.update(done, loss=float(np.mean([r[1] for r in rows[-100:]])))
        if done % cfg.checkpoint_every == 0 or done == cfg.steps:
            _write_losses(out / "losses.csv", rows, fields)
            _save(out, model, cfg, done, seconds_before + time.perf_counter() - t0)
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
        "val_nll": nll(model, ds.val),
        "seconds": seconds,
        "steps_per_second": (cfg.steps - start) / max(elapsed, 1e-9),
    }
    summary.update(extra)
    _json(out / "summary.json", summary)
    return summary


def load_run(run_dir):
    """The model of a finished or checkpointed run folder, and its config."""
    run_dir = Path(run_dir)
    ckpt = run_dir / "checkpoint.bin" if run_dir.is_dir() else run_dir
    meta, arrays = checkpoint.load(ckpt)
    cfg = TrainConfig(**meta["config"])
    model = make_model(cfg)
    model.load_state(meta, arrays)
    return model, cfg


# --- float state dicts as JSON: {name: nested lists}, microgpt's names ---


def export_state_dict(model, path):
    from qgpt.params import views

    sd = {k: v.tolist() for k, v in views(model.float_params()).items()}
    checkpoint.write_atomic(path, json.dumps(sd).encode())


def import_state_dict(path):
    """A flat float64 parameter buffer from a JSON state dict; checks names and shapes."""
    from qgpt.params import SLOTS

    try:
        sd = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise RunError(f"{path}: cannot read a JSON state dict ({e})") from None
    flat = np.empty(N_PARAMS)
    for s in SLOTS:
        if s.name not in sd:
            raise RunError(f"{path}: tensor {s.name} is missing")
        a = np.asarray(sd[s.name], dtype=np.float64)
        if a.shape != s.shape:
            raise RunError(f"{path}: tensor {s.name} has shape {a.shape}, want {s.shape}")
        flat[s.offset : s.offset + s.size] = a.ravel()
    extra = set(sd) - {s.name for s in SLOTS}
    if extra:
        raise RunError(f"{path}: unknown tensors {sorted(extra)}")
    return flat
