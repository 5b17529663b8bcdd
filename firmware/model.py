"""microgpt on the device: the forward pass token by token with a KV cache, the
backward pass over all positions, and integer Adam, in preallocated buffers.

The same computation as qgpt/int_model.py (forward, backward, IntAdam.step), op
for op through firmware/kernels.py, so the integers are equal (docs/arithmetic.md;
qgpt/conformance.py, levels "steps" and "run", checks it with ==).

Dimension legend (qgpt/params.py): T positions of a step (<= BLOCK = 16; buffers
hold BLOCK rows), C width 16, NH heads 4, HS head width 4, M MLP width 64,
V vocabulary 27, N = 4,192 parameters. Buffers are row-major.

Memory. Every buffer is allocated once, in Model(); a training step allocates
only a few per-step scalars (Adam's alpha is a big int). What is large:

    weight store   N int16 (8 KB), or N int32 master weights plus the int16 data
                   view the forward pass reads (24 KB)
    Adam m, v      N int32 each (33 KB): the state that must persist
    activations    14 KB in one arena, reused between the passes (ACTIVATIONS)

There is no gradient buffer. Every weight matrix is used by one linear per step, so
its gradient is complete when that linear's backward has run, and the matrix is not
read again in the step: Adam updates it right there (the fused update), a few rows
at a time (linear_backward computes rows o0..o1-1 of dW), from the logits buffer,
dead by then. Adam is element-wise, so the result equals the simulator's update of
the whole flat buffer after the backward pass.
"""

from array import array

import kernels as K
import micropython
import prng
from adam import alpha_at, beta_powers
from loss import ln_q16
from micropython import const
from params import BLOCK, BOS, HEAD_DIM, MLP_HIDDEN, N_EMBD, N_HEAD, N_PARAMS, VOCAB  # noqa: F401

# the table's numbers are copied here, and the policy's into the Model, so that the
# params and policy modules can leave memory once a run is set up (qgpt_train.py)
V = VOCAB
C = N_EMBD
NH = N_HEAD
HS = HEAD_DIM
M = MLP_HIDDEN
N = N_PARAMS
GRAD_MAX = BLOCK * V  # int32 values of the logits buffer: a weight gradient's piece
_G_LO = const(-32768)  # G = q2.14, the activation gradients
_G_HI = const(32767)
CHUNK = 32  # values widened at a time for hashes and checkpoints (N is a multiple)


# --- buffer helpers (viper): no allocation, int32-safe ---


@micropython.viper
def zero32(buf, n: int):
    """buf[0:n] = 0 for an int32 buffer."""
    p = ptr32(buf)
    for i in range(n):
        p[i] = 0


@micropython.viper
def zero16(buf, n: int):
    p = ptr16(buf)
    for i in range(n):
        p[i] = 0


@micropython.viper
def widen16(out, src, off: int, n: int):
    """out[0:n] (int32) = src[off:off+n] (int16), sign-extended."""
    po = ptr32(out)
    ps = ptr16(src)
    for i in range(n):
        po[i] = (ps[off + i] ^ 0x8000) - 0x8000


@micropython.viper
def narrow16(dst, off: int, src, n: int, lo: int, hi: int) -> int:
    """dst[off:off+n] (int16) = src[0:n] (int32); returns how many values lay outside
    [lo, hi] (a checkpoint that does not fit the store's format)."""
    pd = ptr16(dst)
    ps = ptr32(src)
    one = 1
    s32 = one << 31
    bad = 0
    for i in range(n):
        x = (ps[i] ^ s32) - s32
        if x > hi or x < lo:
            bad += 1
        pd[off + i] = x
    return bad


@micropython.viper
def store_to_data(wd, store, off: int, n: int, sh: int, lo: int, hi: int):
    """The weights the forward pass sees (section 3): wd[i] = sat(rnd(store[i], sh), D)
    for i in off .. off+n-1, int32 master weights with sh = Fm - F >= 0 fractional bits
    more. rnd as (x >> sh) + ((x >> (sh - 1)) & 1), which cannot overflow for any int32 x.
    wd (N,) int16 D; store (N,) int32 master."""
    pd = ptr16(wd)
    ps = ptr32(store)
    one = 1
    s32 = one << 31
    for i in range(off, off + n):
        x = (ps[i] ^ s32) - s32
        if sh > 0:
            x = (x >> sh) + ((x >> (sh - 1)) & 1)
        if x > hi:
            x = hi
        elif x < lo:
            x = lo
        pd[i] = x


@micropython.viper
def get32(buf, i: int) -> int:
    """buf[i] of an int32 buffer (a logit: |l| < 2**20)."""
    p = ptr32(buf)
    one = 1
    s32 = one << 31
    return (p[i] ^ s32) - s32


@micropython.viper
def row_max(buf, off: int, n: int) -> int:
    """max(buf[off:off+n]) of an int32 buffer (logits: |l| < 2**20)."""
    p = ptr32(buf)
    one = 1
    s32 = one << 31
    mx = (p[off] ^ s32) - s32
    for j in range(off + 1, off + n):
        x = (p[j] ^ s32) - s32
        if x > mx:
            mx = x
    return mx


# The activation buffers (int16 D unless noted), and what a buffer holds once its
# forward value is dead ("| bwd:"). T = BLOCK rows.
ACTIVATIONS = (
    # (NH, T, T) uint16 Q15 attention probabilities | bwd, after attention_backward:
    # wpe's gradient (BLOCK, C) int32 P
    ("probs", NH * BLOCK * BLOCK * 2),
    # (T, V) int32 logits in L, which become the probabilities (Q15) in place once the
    # loss has read them | bwd: the weight gradients, a piece at a time (int32 P),
    # attention_backward's (T, T) int32 scratch, wte's gradient (V, C)
    ("logits", GRAD_MAX * 4),
    ("h", BLOCK * M * 2),  # (T, M) relu(fc1 x3): relu in place
    ("dh", BLOCK * M * 2),  # (T, M) int16 G: dlogits (T, V), then d relu(h)
    ("x0", BLOCK * C * 2),  # (T, C) rmsnorm(embedding)
    ("x1", BLOCK * C * 2),  # (T, C) rmsnorm(x0), the attention's input
    ("q", BLOCK * C * 2),  # (T, C) queries
    ("k", BLOCK * C * 2),  # (T, C) keys: the KV cache, rows 0..t
    ("vv", BLOCK * C * 2),  # (T, C) values: the KV cache
    ("at", BLOCK * C * 2),  # (T, C) attention output, heads concatenated | bwd: dk
    ("x3", BLOCK * C * 2),  # (T, C) rmsnorm(x2), the MLP's input
    ("x4", BLOCK * C * 2),  # (T, C) x2 + mlp, the lm_head's input | bwd: dv
    # three (T, C) buffers: forward temporaries, then activation gradients (int16 G)
    ("ga", BLOCK * C * 2),  # fwd: embedding sum | bwd: dx4, dx2, dx0
    ("gb", BLOCK * C * 2),  # fwd: x2 = x0 + proj | bwd: dx3, datt, dx1, dx
    ("gc", BLOCK * C * 2),  # fwd: proj, mlp out | bwd: rmsnorm's dx, dq, the q/k/v paths
    ("rs0", BLOCK * 2 * 4),  # (T, 2) int32 (M, sh) of rmsnorm 0
    ("rs1", BLOCK * 2 * 4),  # (T, 2) int32 (M, sh) of rmsnorm 1
    ("rs3", BLOCK * 2 * 4),  # (T, 2) int32 (M, sh) of rmsnorm 3
    ("srow", BLOCK * 4),  # (T,) int32 one head's scores, then probabilities
)
ARENA_BYTES = sum(n for _, n in ACTIVATIONS)  # 13,952: every size is a multiple of 4


@micropython.viper
def word_bits() -> int:
    """32 or 64: the width of a viper int on this port (1 << 31 wraps negative on 32 bits)."""
    one = 1
    return 64 if (one << 31) > 0 else 32


def zeros(tc, n):
    """A zeroed array without a temporary of its size (array(tc, bytes(...)) would
    briefly take twice the memory)."""
    a = array(tc, range(n))  # n <= 32767: the values fit int16 before they are zeroed
    if tc == "h":
        zero16(a, n)
    elif tc == "i":
        zero32(a, n)
    return a


class Model:
    """The weights, Adam's state and every activation buffer of one training run."""

    def __init__(self, wide):
        """Allocate every buffer (int32 master weights if wide), largest first;
        configure() then takes the numbers."""
        self.wide = wide
        # the activation buffers: views into one arena (a bytearray, allocated in one
        # piece), each 4-byte aligned, in the order of ACTIVATIONS
        self.arena = bytearray(ARENA_BYTES)
        arena = memoryview(self.arena)
        at = 0
        for name, nbytes in ACTIVATIONS:
            setattr(self, name, arena[at : at + nbytes])
            at += nbytes
        # the state (what a checkpoint holds)
        self.m = zeros("i", N)  # (N,) Adam m, P fractional bits
        self.v = zeros("i", N)  # (N,) Adam v, Q28
        if wide:
            self.store = zeros("i", N)  # (N,) master weights, int32 qI.Fm
            self.wd = zeros("h", N)  # (N,) data weights the forward pass sees, int16 D
        else:
            self.store = zeros("h", N)  # (N,) data weights, int16 D: the store itself
            self.wd = self.store
        self.p1 = self.p2 = 1 << 30  # beta1^t, beta2^t in Q30 (t = steps taken)
        self.steps_taken = 0
        self.stalled_total = 0
        self.zbuf = zeros("i", V)  # (V,) int32 sampling: tempered logits, then probabilities
        self.chunk = zeros("i", CHUNK)  # (CHUNK,) int32: int16 weights widened for I/O
        self.tok = bytearray(BLOCK + 1)  # (T+1,) tokens: inputs tok[0:T], targets tok[1:T+1]
        self.targets = memoryview(self.tok)[1:]  # (T,) view

    def configure(self, nums, seed):
        """nums: the policy's numbers and the parameter table (runcfg.model_numbers)."""
        self.seed = seed
        # the tensors of the table: offsets, and views into the data weights
        self.layout = nums["layout"]  # ((name, offset, size), ...) in table order
        self.off = {}
        wd = memoryview(self.wd)
        w = {}
        for name, off, size in self.layout:
            self.off[name] = off
            w[name] = wd[off : off + size]
        self.wte, self.wpe, self.lm_head = w["wte"], w["wpe"], w["lm_head"]
        self.wq, self.wk = w["layer0.attn_wq"], w["layer0.attn_wk"]
        self.wv, self.wo = w["layer0.attn_wv"], w["layer0.attn_wo"]
        self.fc1, self.fc2 = w["layer0.mlp_fc1"], w["layer0.mlp_fc2"]
        # the policy's numbers (firmware/policy.py)
        self.F = nums["F"]  # the data format's fractional bits
        self.d_lim = nums["d_lim"]  # (lo, hi) of D
        self.lin_sh = nums["lin_sh"]  # linear_forward's shift into D ...
        self.lin_l_sh = nums["lin_l_sh"]  # ... and into L, the logits
        self.rms = nums["rms"]  # (guard, fm, eps) of rmsnorm_forward
        self.att = nums["att"]  # (score shift, L lo, L hi, out shift) of attention_forward
        self.lin_b = nums["lin_b"]  # (sh, sh_w) of linear_backward
        self.back = nums["back"]  # shifts of rmsnorm, attention and embedding backward
        self.adam_args = nums["adam"]  # (gs, r, u shifts, mode, store lo, hi, wide)
        self.schedule = nums["schedule"]  # (lr_q30, alpha_frac)
        self.stochastic = nums["stochastic"]
        self.store_format = nums["store_format"]  # (name, lo, hi) of the weight store
        self.init_args = nums["init"]  # (sh, lo, hi, wide) of prng.init_tensor
        self.master_shift = nums["master_shift"]  # Fm - F, or 0
        # debug hook (dump.py): on_grad(i0, n, grad) before each Adam update, grad a byte
        # view holding the n int32 gradients of parameters i0 .. i0+n-1
        self.on_grad = None

    # --- weights ---

    def init_weights(self):
        """The initial weights from the seed (section 4, init), tensor j of the table
        from key(seed, INIT, j)."""
        sh, lo, hi, wide = self.init_args
        st = memoryview(self.store)
        for j, (_, off, size) in enumerate(self.layout):
            k = prng.key(self.seed, prng.STREAM_INIT, j)
            prng.init_tensor(st[off : off + size], k, size, sh, lo, hi, wide)
        self.refresh_data(0, N)

    def refresh_data(self, off, n):
        """With master weights: the data weights the forward pass sees (section 3)."""
        if self.wide:
            store_to_data(self.wd, self.store, off, n, self.master_shift, self.d_lim[0],
                          self.d_lim[1])

    # --- forward, one position ---

    def forward_position(self, t, stride):
        """Position t of the forward pass, token tok[t]: rows t of every activation;
        rows 0..t of k and v are the cache. stride: the probabilities' row length
        (T of the step, or BLOCK when sampling). Ends with the logits row t in L."""
        lo, hi = self.d_lim
        sh, shl = self.lin_sh, self.lin_l_sh
        g, fm, eps = self.rms
        sh_s, lo_l, hi_l, sh_o = self.att
        x2, tmp = self.gb, self.gc
        # x = wte[token] + wpe[t]; x0 = rmsnorm(x)
        K.embedding_forward(self.ga, self.wte, self.wpe, self.tok[t], t, C, lo, hi)
        K.rmsnorm_forward(self.x0, self.rs0, self.ga, t, C, g, fm, eps, lo, hi)
        # attention block: x1 = rmsnorm(x0); q, k, v = Wq x1, Wk x1, Wv x1
        K.rmsnorm_forward(self.x1, self.rs1, self.x0, t, C, g, fm, eps, lo, hi)
        K.linear_forward(self.q, self.x1, self.wq, t, C, C, sh, lo, hi, 0)
        K.linear_forward(self.k, self.x1, self.wk, t, C, C, sh, lo, hi, 0)
        K.linear_forward(self.vv, self.x1, self.wv, t, C, C, sh, lo, hi, 0)
        K.attention_forward(self.at, self.probs, self.srow, self.q, self.k, self.vv, t, stride,
                            NH, HS, sh_s, lo_l, hi_l, self.F, sh_o, lo, hi)
        # x2 = Wo att + x0
        K.linear_forward(tmp, self.at, self.wo, t, C, C, sh, lo, hi, 0)
        K.add_forward(x2, tmp, self.x0, t * C, C, lo, hi)
        # MLP block: x4 = fc2 relu(fc1 rmsnorm(x2)) + x2
        K.rmsnorm_forward(self.x3, self.rs3, x2, t, C, g, fm, eps, lo, hi)
        K.linear_forward(self.h, self.x3, self.fc1, t, C, M, sh, lo, hi, 0)
        K.relu_forward(self.h, self.h, t * M, M)
        K.linear_forward(tmp, self.h, self.fc2, t, M, C, sh, lo, hi, 0)
        K.add_forward(self.x4, tmp, x2, t * C, C, lo, hi)
        # logits = lm_head x4, into L (int32)
        K.linear_forward(self.logits, self.x4, self.lm_head, t, C, V, shl, lo_l, hi_l, 1)

    def position_nll(self, t):
        """-log p[target] of position t in Q16 (section 8), then the logits row becomes
        the probabilities (cross_entropy_forward, in place)."""
        F = self.F
        row = t * V
        mx = row_max(self.logits, row, V)
        target = get32(self.logits, row + self.tok[t + 1])
        s = K.cross_entropy_forward(self.logits, self.logits, t, V, F)
        return ((mx - target) << (16 - F)) + ln_q16(s)

    # --- backward over all positions, with the fused Adam update ---

    def adam(self, i0, n, grad, alpha, key):
        """Adam (section 9) on parameters i0 .. i0+n-1, their gradient in grad[0:n]."""
        if self.on_grad is not None:
            self.on_grad(i0, n, grad)
        a = self.adam_args
        self.stalled_total += K.adam_update(self.store, self.m, self.v, grad, n, i0, i0, alpha,
                                            a[0], a[1], a[2], a[3], key, a[4], a[5], a[6])
        self.refresh_data(i0, n)

    def weight_backward(self, name, dx, dy, x, w, T, n_in, n_out, alpha, key):
        """The backward pass of y = W x for the table's tensor `name`: dx, and dW a few
        rows at a time into the logits buffer, each piece updated by Adam at once."""
        lg = self.logits
        sh, sh_w = self.lin_b
        i0 = self.off[name]
        rows = GRAD_MAX // n_in
        for o0 in range(0, n_out, rows):
            o1 = min(o0 + rows, n_out)
            n = (o1 - o0) * n_in
            zero32(lg, n)
            K.linear_backward(dx, lg, dy, x, w, T, n_in, n_out, sh, sh_w, o0, o1,
                              1 if o0 == 0 else 0)
            self.adam(i0 + o0 * n_in, n, lg, alpha, key)

    def backward(self, T, alpha, key):
        """The gradient of the step's mean loss, in the reverse order of the forward
        pass (qgpt/int_model.py backward), each weight updated by Adam as soon as its
        gradient is complete. Buffers are reused as they die (see __init__)."""
        F = self.F
        sh_c, sh_dp, sh_p, sh_qk, sh_e = self.back
        gl, gh = _G_LO, _G_HI
        ga, gb, gc, dh = self.ga, self.gb, self.gc, self.dh
        TC = T * C
        a, k = alpha, key
        # loss = mean_t -log p[t, target]: dlogits = (p - onehot) / T, into dh
        K.cross_entropy_backward(dh, self.logits, self.targets, T, V)
        # logits = lm_head x4: dx4 -> ga (the probabilities in logits are dead)
        self.weight_backward("lm_head", ga, dh, self.x4, self.lm_head, T, C, V, a, k)
        # x4 = fc2 relu(h) + x2: d relu(h) -> dh (dlogits is dead)
        self.weight_backward("layer0.mlp_fc2", dh, ga, self.h, self.fc2, T, M, C, a, k)
        # relu: dh where the forward's h > 0 (self.h holds relu(h): the same test)
        K.relu_backward(dh, dh, self.h, 0, T * M)
        # h = fc1 x3: dx3 -> gb
        self.weight_backward("layer0.mlp_fc1", gb, dh, self.x3, self.fc1, T, C, M, a, k)
        # x3 = rmsnorm(x2), and x2 also reaches x4: dx2 = sat(dx4 + rmsnorm_backward) -> ga
        K.rmsnorm_backward(gc, gb, self.x3, self.rs3, T, C, sh_c, F)
        K.add_forward(ga, ga, gc, 0, TC, gl, gh)
        # x2 = Wo att + x0: datt -> gb; dx0 starts as dx2 (in ga)
        self.weight_backward("layer0.attn_wo", gb, ga, self.at, self.wo, T, C, C, a, k)
        # att = attention(q, k, v): dq -> gc, dk -> at, dv -> x4 (both dead), with the
        # (T, T) scratch in logits
        K.attention_backward(gc, self.at, self.x4, gb, self.q, self.k, self.vv, self.probs,
                             self.logits, T, NH, HS, sh_dp, sh_p, sh_qk)
        # q, k, v = Wq x1, Wk x1, Wv x1: three input-gradient paths, each saturated,
        # added in the order q, k, v: dx1 = sat(sat(dq_path + dk_path) + dv_path) -> gb
        self.weight_backward("layer0.attn_wq", gb, gc, self.x1, self.wq, T, C, C, a, k)
        self.weight_backward("layer0.attn_wk", gc, self.at, self.x1, self.wk, T, C, C, a, k)
        K.add_forward(gb, gb, gc, 0, TC, gl, gh)
        self.weight_backward("layer0.attn_wv", gc, self.x4, self.x1, self.wv, T, C, C, a, k)
        K.add_forward(gb, gb, gc, 0, TC, gl, gh)
        # x1 = rmsnorm(x0): dx0 = sat(dx2 + rmsnorm_backward(dx1)) -> ga
        K.rmsnorm_backward(gc, gb, self.x1, self.rs1, T, C, sh_c, F)
        K.add_forward(ga, ga, gc, 0, TC, gl, gh)
        # x0 = rmsnorm(wte[tok] + wpe[t]): dx -> gb, then both embedding rows: dwte in
        # logits, dwpe in probs (dead since attention_backward)
        K.rmsnorm_backward(gb, ga, self.x0, self.rs0, T, C, sh_c, F)
        zero32(self.logits, V * C)
        zero32(self.probs, BLOCK * C)
        K.embedding_backward(self.logits, self.probs, gb, self.tok, T, C, sh_e)
        self.adam(self.off["wte"], V * C, self.logits, a, k)
        self.adam(self.off["wpe"], BLOCK * C, self.probs, a, k)

    # --- one training step ---

    def train_step(self, T, step, num_steps):
        """One step on tok[0:T+1] (inputs tok[0:T], targets tok[1:T+1]); returns the
        step's loss_q16 (section 8). Adam's scalars are plain Python (section 9)."""
        nll = 0
        for t in range(T):
            self.forward_position(t, T)
            nll += self.position_nll(t)
        loss = (2 * nll + T) // (2 * T)
        self.p1, self.p2 = beta_powers(self.p1, self.p2)
        lr_q30, alpha_frac = self.schedule
        alpha = alpha_at(lr_q30, alpha_frac, step, num_steps, self.p1, self.p2)
        key = prng.key(self.seed, prng.STREAM_ROUND, step) if self.stochastic else 0
        self.backward(T, alpha, key)
        self.steps_taken += 1
        return loss

    # --- the state as bytes: hashes and checkpoints ---

    def param_chunks(self):
        """The weight store as int32 in CHUNK-sized pieces (a memoryview of the one
        chunk buffer each time, or of the store itself when it is int32)."""
        if self.wide:
            yield memoryview(self.store)
            return
        for off in range(0, N, CHUNK):
            widen16(self.chunk, self.store, off, CHUNK)
            yield self.chunk

    def narrow_into_store(self, off, lo, hi):
        """store[off:off+CHUNK] = the int32 values in the chunk buffer (loading a
        checkpoint); returns how many lay outside [lo, hi]."""
        return narrow16(self.store, off, self.chunk, CHUNK, lo, hi)

    def state_crc(self, crc32):
        """CRC32 of params, then m, then v, as little-endian int32 bytes."""
        crc = 0
        for b in self.param_chunks():
            crc = crc32(b, crc)
        crc = crc32(self.m, crc)
        return crc32(self.v, crc) & 0xFFFFFFFF
