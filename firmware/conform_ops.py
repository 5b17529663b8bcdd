"""Op-level conformance, the device side: run the kernels on the host's golden inputs.

    micropython, option "-m conform_ops", then REQUEST   (the unix port; firmware on MICROPYPATH)
    import conform_ops; conform_ops.main(PATH)  (a board, through mpremote)

REQUEST (written by qgpt/conformance/protocol.py) is a binary file: the line
"QGPT-OPS 1", then per case one JSON header line

    {"id": 3, "op": "linear_forward", "policy": {"fmt": "q4.12", ...},
     "p": {"T": 16, ...}, "in": [["x", "h", 256], ...], "out": [["y", "h", 256], ...]}

followed by the raw little-endian bytes of each input, and finally "END". For
each case this prints, on stdout, text only (safe through a raw REPL):

    case ID
    t NAME TYPECODE COUNT HEX       one line per output tensor (its raw bytes)
    s NAME VALUE                    one line per output scalar
    ok ID HEAP_FREE                 or: error ID MESSAGE

and "done N" at the end. Outputs named like an input are updated in place
(parameter gradients, Adam state). One case is in memory at a time, so this runs
in a small heap (96 KB on the unix port).
"""

import gc
import json
import sys
from array import array
from binascii import hexlify

import adam
import kernels as K
import loss
import micropython
import params
import policy
import prng

MAGIC = b"QGPT-OPS 1\n"
END = b"END\n"
ITEM_SIZE = {"h": 2, "H": 2, "i": 4, "B": 1, "b": 1}
HEX_CHUNK = 256  # bytes of an output tensor hexlified at a time

_policies = {}


def get_policy(spec):
    """The firmware Policy of a case's policy spec, built once per distinct spec."""
    master, classes = spec.get("master"), spec.get("policy")  # classes: as a run's config
    key = (spec["fmt"], spec.get("rounding", "nearest"), tuple(master) if master else None,
           spec.get("lr_q30", 10737418), tuple(sorted(classes.items())) if classes else None)
    p = _policies.get(key)
    if p is None:
        p = policy.Policy(spec["fmt"], key[1], master, key[3], classes)
        _policies[key] = p
    return p


# --- one handler per op: (policy, params, arrays) -> dict of output scalars or None ---


def run_exp_neg(P, p, A):
    # exp_neg lives inlined in softmax (the device computes it nowhere else): of the row
    # [0, z] (z <= 0, its max 0) softmax returns S = exp_neg(0) + exp_neg(z) = 2**15 + exp_neg(z)
    z, e = A["z"], A["e"]
    row, probs = array("i", [0, 0]), array("i", [0, 0])
    for i in range(len(z)):
        row[1] = z[i]
        e[i] = K.softmax(0, 0, probs, row, 0, 2, p["frac"]) - K.PROB_ONE


def run_softmax(P, p, A):
    n = p["n"]
    for r in range(p["rows"]):
        A["S"][r] = K.softmax(0, 0, A["p"], A["z"], r, n, p["frac"])


def run_isqrt(P, p, A):
    # the device's isqrt of any n >= 0 is adam.isqrt (the bias correction's); rmsnorm_forward
    # and adam_update inline their own (rsqrt's and Adam's cases check those)
    x, s = A["n"], A["s"]
    for i in range(len(x)):
        s[i] = adam.isqrt(x[i])


def run_rsqrt(P, p, A):
    # rsqrt lives inlined in rmsnorm_forward (the device computes it nowhere else): of a zero
    # row its rnd(dot(x, x), g) is 0, so with eps = ms it computes rsqrt(ms, fm) into rs[0..1]
    ms, out = A["ms"], A["rs"]
    x, y, rs = bytearray(2 * params.N_EMBD), bytearray(2 * params.N_EMBD), array("i", [0, 0])
    for i in range(len(ms)):
        K.rmsnorm_forward(0, 0, y, rs, x, 0, params.N_EMBD, 0, p["fm"], ms[i], -32768, 32767, 2)
        out[2 * i] = rs[0]
        out[2 * i + 1] = rs[1]


def numbers(P):
    """P.numbers() once per policy: (nb, fwd, bwd, opt, ...), the tuples model.py takes
    (firmware/policy.py Policy.numbers lists them)."""
    key = id(P)
    if key not in _numbers:
        _numbers[key] = P.numbers()
    return _numbers[key]


_numbers = {}


def run_embedding_forward(P, p, A):
    nb, fwd = numbers(P)[:2]
    tokens = A["tokens"]
    for t in range(p["T"]):
        K.embedding_forward(0, 0, A["x"], A["wte"], A["wpe"], tokens[t], t, params.N_EMBD, fwd[12],
                            fwd[1], fwd[2], nb[1], nb[0])


def run_embedding_backward(P, p, A):
    nb, _, bwd = numbers(P)[:3]
    K.embedding_backward(0, 0, A["dwte"], A["dwpe"], A["dx"], A["tokens"], p["T"], params.N_EMBD,
                         bwd[4], bwd[9], bwd[10], nb[2])


def run_rmsnorm_forward(P, p, A):
    nb, fwd = numbers(P)[:2]
    for t in range(p["T"]):
        K.rmsnorm_forward(0, 0, A["y"], A["rs"], A["x"], t, params.N_EMBD, fwd[5], fwd[6], fwd[7],
                          fwd[1], fwd[2], nb[1])


def run_rmsnorm_backward(P, p, A):
    nb, _, bwd = numbers(P)[:3]
    K.rmsnorm_backward(0, 0, A["dx"], A["dy"], A["y"], A["rs"], p["T"], params.N_EMBD, bwd[0],
                       bwd[12], bwd[7], bwd[8], nb[2], nb[1])


def run_linear_forward(P, p, A):
    nb, fwd = numbers(P)[:2]
    n_in, n_out, wide = p["n_in"], p["n_out"], p["wide"]
    if wide:  # into L (the logits), int32
        sh, lo, hi, by = fwd[4], fwd[9], fwd[10], 4
    else:
        sh, lo, hi, by = fwd[3], fwd[1], fwd[2], nb[1]
    wmax = K.abs_max(0, 0, A["w"], n_in * n_out, nb[0])  # the model's bound of the fast path
    K.linear_forward(0, 0, A["y"], A["x"], A["w"], 0, p["T"], n_in, n_out, sh, lo, hi, by,
                     nb[1], nb[0], wmax)


def run_linear_backward(P, p, A):
    nb, _, b = numbers(P)[:3]
    wmax = K.abs_max(0, 0, A["w"], p["n_in"] * p["n_out"], nb[0])  # the model's fast-path bound
    K.linear_backward(0, 0, A["dx"], A["dw"], A["dy"], A["x"], A["w"], p["T"], p["n_in"],
                      p["n_out"], b[5], b[6], p.get("o0", 0), p.get("o1", p["n_out"]),
                      p.get("with_dx", 1), 1, b[7], b[8], b[9], b[10], nb[2], nb[1], nb[0],
                      wmax)


def run_add_forward(P, p, A):
    nb, fwd, bwd = numbers(P)[:3]
    if p["fmt"] == "G":
        lo, hi, bx = bwd[7], bwd[8], nb[2]
    else:
        lo, hi, bx = fwd[1], fwd[2], nb[1]
    K.add_forward(0, 0, A["y"], A["a"], A["b"], 0, len(A["y"]), lo, hi, bx)


def run_relu_forward(P, p, A):
    # the device's relu is a saturation into [0, hi] (model.py: fc1's); here that of
    # add_forward with b = 0 and hi the container's largest value: sat(x + 0, 0, hi) = max(x, 0)
    ba, x = numbers(P)[0][1], A["x"]
    K.add_forward(0, 0, A["y"], x, bytearray(len(x) * ba), 0, len(A["y"]), 0,
                  (1 << (8 * ba - 1)) - 1, ba)


def run_relu_backward(P, p, A):
    nb = numbers(P)[0]
    A["dx"] = dx = A["dy"]  # in place, as model.py calls it
    K.relu_backward(0, 0, dx, A["x"], 0, len(dx), nb[2], nb[1])


def run_attention_forward(P, p, A):
    nb, f = numbers(P)[:2]
    T = p["T"]
    srow = array("i", bytes(4 * T))
    for t in range(T):  # token by token: rows 0..t of k and v are the cache
        K.attention_forward(0, 0, A["out"], A["probs"], srow, A["q"], A["k"], A["v"], t, T,
                            params.N_HEAD, f[8], f[9], f[10], f[0], f[11],
                            f[1], f[2], nb[1])


def run_attention_backward(P, p, A):
    nb, _, b = numbers(P)[:3]
    T = p["T"]
    scratch = array("i", bytes(4 * T * T))
    K.attention_backward(0, 0, A["dq"], A["dk"], A["dv"], A["dout"], A["q"], A["k"], A["v"],
                         A["probs"], scratch, T, params.N_HEAD,
                         b[1], b[2], b[3], b[7], b[8], nb[2], nb[1])


def run_cross_entropy_forward(P, p, A):
    V, S = params.VOCAB, A["S"]
    for t in range(p["T"]):
        S[t] = K.cross_entropy_forward(0, 0, A["probs"], A["logits"], t, V, numbers(P)[1][0])


def run_cross_entropy_backward(P, p, A):
    nb, _, b = numbers(P)[:3]
    K.cross_entropy_backward(0, 0, A["dlogits"], A["probs"], A["targets"], p["T"], params.VOCAB,
                             b[11], b[7], b[8], nb[2])


def run_loss_q16(P, p, A):
    T, V, F = p["T"], params.VOCAB, numbers(P)[1][0]
    logits, targets = A["logits"], A["targets"]
    probs = array("i", bytes(4 * T * V))
    total = 0
    for t in range(T):
        s = K.cross_entropy_forward(0, 0, probs, logits, t, V, F)
        row = logits[t * V : (t + 1) * V]
        total += loss.nll_q16(max(row), row[targets[t]], s, F)
    return {"loss_q16": loss.loss_q16(total, T)}


def run_adam_update(P, p, A):
    step = p["step"]
    p1, p2 = adam.beta_powers(p["p1"], p["p2"])
    alpha = adam.alpha_at((P.lr_q30, P.alpha_frac), step, p["num_steps"], p1, p2)
    k = prng.key(p["seed"], prng.STREAM_ROUND, step)
    nb, _, _, o = numbers(P)[:4]
    n = len(A["m"])
    m, v = A["m"], A["v"]
    if nb[3] < 4 or nb[4] < 4:  # 8/16-bit m or v: widened to int32 and back (blockadam.gather)
        m, v = array("i", bytes(4 * n)), array("i", bytes(4 * n))
        K.widen(0, 0, m, A["m"], 0, n, nb[3])
        K.widen(0, 0, v, A["v"], 0, n, nb[4])
    stalled = K.adam_update(0, 0, A["store"], m, v, A["g"], bytearray(n), n, p["i0"], 0, 0,
                            alpha, o[0], o[1], o[2], o[3], o[4], k, o[5], o[6], o[7], o[8],
                            nb[5], 4)
    if m is not A["m"]:
        K.narrow(0, 0, A["m"], 0, m, n, 0 - o[7], o[7], nb[3])
        K.narrow(0, 0, A["v"], 0, v, n, 0, o[8], nb[4])
    return {"alpha": alpha, "p1": p1, "p2": p2, "stalled": stalled}


def run_adam_scalars(P, p, A):
    p1 = p2 = adam.ONE_Q30
    a_p1, a_p2, a_alpha = A["p1"], A["p2"], A["alpha"]
    for i, step in enumerate(p["steps"]):
        p1, p2 = adam.beta_powers(p1, p2)
        a_p1[i], a_p2[i] = p1, p2
        a_alpha[i] = adam.alpha_at((P.lr_q30, P.alpha_frac), step, p["num_steps"], p1, p2)


def describe(P):
    """The policy's derived numbers (Policy.numbers), for the check against
    qgpt/policy.py, under the names of the simulator's policy."""
    nb, f, b, o = numbers(P)[:4]
    fp = P.formats[4].frac_bits
    return {"pgrad_guard": b[6], "pgrad_frac": fp, "m_frac": P.formats[8].frac_bits,
            "alpha_frac": P.alpha_frac, "update_shift": o[3], "rms_guard": f[5],
            "rms_fm": f[6], "rms_eps": f[7], "rms_back_shift": b[0], "score_shift": f[8],
            "attn_out_shift": f[11], "dp_shift": b[1], "pv_shift": b[2], "dqk_shift": b[3],
            "embed_back_shift": b[4], "gs_shift": o[1], "r_shift": o[2], "data_lo": f[1],
            "data_hi": f[2], "logits_lo": f[9], "logits_hi": f[10], "store_lo": o[5],
            "store_hi": o[6]}


def run_policy(P, p, A):
    d = describe(P)
    for n in p["guards"]:  # guard(n, ba, bb) for a few triples
        d[f"guard_{n[0]}_{n[1]}_{n[2]}"] = policy.guard(n[0], n[1], n[2])
    return d


def run_hash30(P, p, A):
    x, h = A["x"], A["h"]
    for i in range(len(x)):
        h[i] = prng.hash30(x[i])


def run_key(P, p, A):
    out = A["k"]
    for i, args in enumerate(p["args"]):
        out[i] = prng.key(*args)


def run_init(P, p, A):
    sh, lo, hi, nb = P.init_args()
    k = prng.key(p["seed"], prng.STREAM_INIT, p["tensor"])
    prng.init_tensor(A["w"], k, len(A["w"]), sh, lo, hi, nb)


def run_permute(P, p, A):
    n, k, out = p["n"], p["k"], A["perm"]
    for j, i in enumerate(p["i"]):
        out[j] = prng.permute(i, n, k)


def run_doc_index(P, p, A):
    out = A["doc"]
    for j, step in enumerate(p["steps"]):
        out[j] = prng.doc_index(step, p["n_docs"], p["seed"])


class _Logits:
    """What sampling.next_token reads of a model: the logits rows and fwd[0] = F."""

    def __init__(self, logits, frac):
        self.logits = logits
        self.fwd = (frac,)


def run_next_token(P, p, A):
    gc.collect()
    import sampling  # imports model: only for this op

    m = _Logits(A["logits"], p["frac"])
    z = array("i", bytes(4 * p["n"]))
    inv_t, u30, tok = A["inv_t"], A["u30"], A["tok"]
    for r in range(p["rows"]):
        tok[r] = sampling.next_token(m, z, r, inv_t[r], u30[r])
    for name in ("sampling", "model"):  # their code leaves the heap for the other ops
        sys.modules.pop(name, None)
    gc.collect()


HANDLERS = {
    "exp_neg": run_exp_neg,
    "softmax": run_softmax,
    "isqrt": run_isqrt,
    "rsqrt": run_rsqrt,
    "embedding_forward": run_embedding_forward,
    "embedding_backward": run_embedding_backward,
    "rmsnorm_forward": run_rmsnorm_forward,
    "rmsnorm_backward": run_rmsnorm_backward,
    "linear_forward": run_linear_forward,
    "linear_backward": run_linear_backward,
    "add_forward": run_add_forward,
    "relu_forward": run_relu_forward,
    "relu_backward": run_relu_backward,
    "attention_forward": run_attention_forward,
    "attention_backward": run_attention_backward,
    "cross_entropy_forward": run_cross_entropy_forward,
    "cross_entropy_backward": run_cross_entropy_backward,
    "loss_q16": run_loss_q16,
    "adam_update": run_adam_update,
    "adam_scalars": run_adam_scalars,
    "policy": run_policy,
    "hash30": run_hash30,
    "key": run_key,
    "init": run_init,
    "permute": run_permute,
    "doc_index": run_doc_index,
    "next_token": run_next_token,
}


# --- the request loop ---


def write_array(name, tc, a):
    sys.stdout.write(f"t {name} {tc} {len(a)} ")
    mv = memoryview(a)
    step = HEX_CHUNK // ITEM_SIZE[tc]
    for i in range(0, len(a), step):
        sys.stdout.write(hexlify(mv[i : i + step]).decode())
    sys.stdout.write("\n")


def run_case(f, header):
    """Read one case's inputs, run it, print its outputs."""
    A = {}
    for name, tc, n in header["in"]:
        a = array(tc, bytes(n * ITEM_SIZE[tc]))
        if n and f.readinto(a) != n * ITEM_SIZE[tc]:
            raise EOFError("the request ends inside input " + name)
        A[name] = a
    for name, tc, n in header["out"]:
        if name not in A:
            A[name] = array(tc, bytes(n * ITEM_SIZE[tc]))
    spec = header.get("policy")
    P = get_policy(spec) if spec else None
    scalars = HANDLERS[header["op"]](P, header.get("p", {}), A)
    print("case", header["id"])
    for name, tc, _ in header["out"]:
        write_array(name, tc, A[name])
    if scalars:
        for name in scalars:
            print("s", name, scalars[name])


@micropython.viper
def viper_word_bits() -> int:
    """32 or 64: the width of a viper int on this port (1 << 31 wraps negative on 32 bits)."""
    one = 1
    return 64 if (one << 31) > 0 else 32


def heap_free():
    return gc.mem_free() if hasattr(gc, "mem_free") else -1


def main(path):
    print("QGPT-OPS 1", sys.platform, sys.implementation.name, f"{viper_word_bits()}-bit viper")
    if sys.byteorder != "little":
        print("error - the request's arrays are little-endian, this device is not")
        return
    done = 0
    with open(path, "rb") as f:
        if f.readline() != MAGIC:
            print(f"error - {path} is not a QGPT-OPS 1 request: regenerate it with"
                  " qgpt conformance")
            return
        while True:
            line = f.readline()
            if not line or line == END:
                break
            header = json.loads(line)
            start = f.tell()
            size = 0
            for _, tc, n in header["in"]:
                size += n * ITEM_SIZE[tc]
            try:
                run_case(f, header)
                gc.collect()
                print("ok", header["id"], heap_free())
            except Exception as e:  # report it, skip the rest of its inputs, go on
                print("\nerror", header["id"], f"{type(e).__name__}: {e}")
                if isinstance(e, EOFError):
                    break
                f.seek(start + size)
            done += 1
    print("done", done)


if __name__ == "__main__":
    main(sys.argv[1])
