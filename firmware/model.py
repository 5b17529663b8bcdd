"""microgpt on the device: the forward pass token by token with a KV cache, the
backward pass over all positions, and integer Adam, in preallocated buffers.

The same computation as qgpt/int_model.py (forward, backward, IntAdam.step), op
for op through firmware/kernels.py, so the integers are equal (docs/arithmetic.md;
qgpt/conformance/training.py, levels "steps" and "run", checks it with ==).

Dimension legend (qgpt/params.py): T positions of a step (<= BLOCK = 16; buffers
hold BLOCK rows), C width 16, NH heads 4, HS head width 4, M MLP width 64,
V vocabulary 27, N = 4,192 parameters. Buffers are row-major.

Memory (firmware/README.md, "Memory"). Every large buffer lives in one bytearray,
the state block, allocated once in Model() before anything else of the run can
fragment the heap; a training step allocates only a few per-step scalars (Adam's
alpha is a big int). In the block:

    Adam m, v      N int32 each (33 KB): the state that must persist
    data weights   N int16 (8 KB): the weight store itself, or, with int32 master
                   weights (16 KB more, outside the block), the data view of them
                   that the forward pass reads
    activations    14 KB, reused between the passes (Model.act)

The buffers are the addresses of their first bytes in the block (layout.views;
the kernels' ptr8/ptr16/ptr32 take an address as they take a buffer). Names cost
memory on a board (each distinct name is interned for good), so the shape and the
offsets are consts with a leading underscore, which the compiler inlines and which
leave no name behind, and the buffers and the policy's numbers are tuples that the
methods unpack into locals.

There is no gradient buffer. Every weight matrix is used by one linear per step, so
its gradient is complete when that linear's backward has run, and the matrix is not
read again in the step: Adam updates it right there (the fused update), a few rows
at a time (linear_backward computes rows o0..o1-1 of dW), from the logits buffer,
dead by then. Adam is element-wise, so the result equals the simulator's update of
the whole flat buffer after the backward pass.
"""

import kernels as K
import loss
import micropython
import prng
from adam import alpha_at, beta_powers
from micropython import const

# The shape: firmware/params.py's table, whose module leaves memory once a run is set
# up (tests/test_firmware_train.py checks that these agree with qgpt/params.py)
BLOCK = const(16)  # T <= BLOCK
BOS = const(26)
VOCAB = const(27)
N_PARAMS = const(4192)
_T = const(16)  # BLOCK: the rows of every activation buffer
_V = const(27)
_C = const(16)
_NH = const(4)
_HS = const(4)
_M = const(64)
_N = const(4192)
_GRAD_MAX = const(432)  # T * V: int32 values of the logits buffer, a weight gradient's piece
_CHUNK = const(32)  # values widened at a time for hashes and checkpoints (N is a multiple)

# tensor j of the parameter table (firmware/params.py), in table order
_WTE = const(0)
_WPE = const(1)
_LM_HEAD = const(2)
_WQ = const(3)
_WK = const(4)
_WV = const(5)
_WO = const(6)
_FC1 = const(7)
_FC2 = const(8)

# The state block (byte sizes follow the policy's containers, 3.3 of the contract;
# every piece a multiple of 4 bytes, so int32 views stay aligned): Adam m (N values
# of the adam_m container), Adam v (adam_v), the data weights W, the activations,
# an I/O chunk of CHUNK int32, 9.6's shifts, compensations and Adam's unit scratch,
# the master weights (with master weights only): layout.block_bytes and
# layout.adam_layout give the sizes, at setup (qgpt_train allocates the block).

# The activations (Model.act), int16 D unless noted, T = BLOCK rows, and what a buffer
# holds once its forward value is dead ("| bwd:"):
#   probs   (NH, T, T) uint16 Q15 attention probabilities | bwd, after attention_backward:
#           wpe's gradient (BLOCK, C) int32 P
#   logits  (T, V) int32 logits in L, which become the probabilities (Q15) in place once
#           the loss has read them | bwd: the weight gradients, a piece at a time (int32
#           P), attention_backward's (T, T) int32 scratch, wte's gradient (V, C)
#   h       (T, M) relu(fc1 x3): relu in place
#   dh      (T, M) int16 G: dlogits (T, V), then d relu(h)
#   x0      (T, C) rmsnorm(embedding)
#   x1      (T, C) rmsnorm(x0), the attention's input
#   q       (T, C) queries
#   k       (T, C) keys: the KV cache, rows 0..t
#   vv      (T, C) values: the KV cache
#   at      (T, C) attention output, heads concatenated | bwd: dk
#   x3      (T, C) rmsnorm(x2), the MLP's input
#   x4      (T, C) x2 + mlp, the lm_head's input | bwd: dv
#   ga      (T, C) fwd: embedding sum | bwd: dx4, dx2, dx0      (three temporaries, then
#   gb      (T, C) fwd: x2 = x0 + proj | bwd: dx3, datt, dx1, dx     activation
#   gc      (T, C) fwd: proj, mlp out | bwd: rmsnorm's dx, dq, the q/k/v paths    gradients, G)
#   rs0     (T, 2) int32 (M, sh) of rmsnorm 0
#   rs1     (T, 2) int32 (M, sh) of rmsnorm 1
#   rs3     (T, 2) int32 (M, sh) of rmsnorm 3
#   srow    (T,) int32 one head's scores, then probabilities
_LOGITS = const(1)  # its index in Model.act
_RESCAN = const(16)  # training steps between two scans of max |W| (forward_position)

# debug hook (dump.py sets it): on_grad(off, n, grad) before each Adam update, grad a byte
# view holding the n int32 gradients of parameters off .. off+n-1; a module global, not
# an attribute of the Model (firmware/README.md, "Memory": the Model's attributes are few)
on_grad = None


# --- buffer helpers (viper): no allocation, int32-safe ---


@micropython.viper
def zero32(buf, n: int):
    """buf[0:n] = 0 for an int32 buffer, n a multiple of 4 (the embeddings' gradients):
    four words a round at a stepped address (an indexed store costs about 11 instructions
    on x86-64, and 688 words are zeroed a step)."""
    p32 = ptr32(buf)
    at = int(p32)
    end = at + 4 * n
    while at < end:
        p = ptr32(at)
        p[0] = 0
        p[1] = 0
        p[2] = 0
        p[3] = 0
        at += 16


@micropython.viper
def store_to_data(wd, store, off: int, n: int, sh: int, lo: int, hi: int, bw: int, bs: int):
    """The weights the forward pass sees (3.6): wd[i] = req(store[i], sh, W) for i in
    off .. off+n-1, master weights (bs bytes) with sh = F_master - Fw >= 0 fractional bits
    more, into W (bw bytes). rnd as (x >> sh) + ((x >> (sh - 1)) & 1), which cannot
    overflow for any int32 x."""
    pd8 = ptr8(wd)
    pd16 = ptr16(int(pd8))
    p8 = ptr8(store)
    p16 = ptr16(int(p8))
    ps = ptr32(int(p8))
    one = 1
    s32 = one << 31
    for i in range(off, off + n):
        if bs == 4:
            x = (ps[i] ^ s32) - s32
        elif bs == 2:
            x = (p16[i] ^ 0x8000) - 0x8000
        else:
            x = (p8[i] ^ 0x80) - 0x80
        if sh > 0:
            x = (x >> sh) + ((x >> (sh - 1)) & 1)
        if x > hi:
            x = hi
        elif x < lo:
            x = lo
        if bw == 2:
            pd16[i] = x
        else:
            pd8[i] = x


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



@micropython.viper
def word_bits() -> int:
    """32 or 64: the width of a viper int on this port (1 << 31 wraps negative on 32 bits)."""
    one = 1
    return 64 if (one << 31) > 0 else 32


class Model:
    """The weights, Adam's state and every activation buffer of one training run."""

    def __init__(self, views, nums, seed):
        """views: layout.views of the state block, a zeroed bytearray that the run
        allocated before the training code; nums from runpolicy.setup and layout.setup (the
        policy's and the parameter table's)."""
        # the numbers (runpolicy.setup, layout.setup):
        #   nb        (bw, ba, bg, bm, bv, bs): container bytes of weights, acts, grads,
        #             adam_m, adam_v and the weight store (3.3)
        #   fwd       (Fl, lo, hi, sh, sh_l, g, fm, eps, sh_s, lo_l, hi_l, sh_o, sh_emb):
        #             the logits' fractional bits, A's limits, linear_forward's shifts
        #             into A and into L, rmsnorm_forward's (guard, fm, eps),
        #             attention_forward's (score shift, L's limits, output shift), the
        #             embedding's shift Fw - Fa
        #   bwd       (sh_c, sh_dp, sh_p, sh_qk, sh_e, sh, sh_w, glo, ghi, plo, phi, sh_ce,
        #             fa): rmsnorm, attention and embedding backward's shifts,
        #             linear_backward's (sh, sh_w), G's and P's limits, cross-entropy's
        #             shift 15 - Fg, Fa
        #   opt       (sh_m, sh_s, e, u, mode, lo, hi, hm, hv, sh_view, lo_w, hi_w):
        #             adam_update's shifts and rounding mode, the store's limits, m's and
        #             v's bounds; with master weights the forward view's shift and W's limits
        #   schedule  (lr_q30, alpha_frac, stochastic)
        #   wide      1 with master weights
        #   blocks    (Bm, Nm, Bv, Nv): block-scaled adam_m, adam_v (9.6), 0 for plain ones
        # and, appended by layout.setup, the layout of layout.block_bytes. The Model's
        # attributes are few (12: a table of 12 entries, 192 bytes, where 16 took 17 and
        # 26 took 29), those of the other modules (blockadam, sampling, ckpt, dump), two
        # tuples (bufs, nums) and the counters' list
        self.nb, off, self.fwd, bwd, self.opt, schedule, wide, \
            blocks = nums[:8]  # off: the table's offsets, in table order, then N
        # the views into the state block (layout.views, which documents them); the state
        # arrays of checkpoints, dumps and the hash are statebytes.state's, made when asked
        self.m, self.v, wd, act, chunk, self.store, w, adam = views
        self.logits = act[_LOGITS]
        # 9.6's block-scaled state, in one tuple (a name costs memory for good): the shifts
        # of m and v, the unit's wide m and v, its gradient slots, the unit a slot gathers
        # (-1: free) and how many of its gradients it holds, U (0: no blocks), blocks, and
        # Kahan's compensations
        mk, vk, mw, vw, slots, u, comp = adam
        self.blk = (mk, vk, mw, vw, slots, [-1] * len(slots), [0] * len(slots), u, blocks,
                    comp)
        # the optimizer's counters, in the checkpoint's order: p1, p2 (beta1^t, beta2^t in
        # Q30, t = steps taken), stalled_total, steps_taken (one list: a name less)
        self.counts = [1 << 30, 1 << 30, 0, 0]
        self.tok = bytearray(_T + 1)  # (T+1,) tokens: inputs tok[0:T], targets tok[1:T+1]
        # the buffers of the passes: the activations (Model.act's table above), the weight
        # matrices, the data weights, the I/O chunk, the targets (T,) as a view of tok, and
        # wmax: max |W| of each tensor, the linear kernels' bound for their fast paths
        # (kernels.py, "linear"), set at position 0 of every forward pass, valid until
        # Adam's update
        self.bufs = (act, w, wd, chunk, memoryview(self.tok)[1:], [0] * (_FC2 + 1))
        # the numbers the methods use besides nb, fwd and opt, and the run's seed
        self.nums = (off, bwd, schedule, wide, seed)

    def refresh_data(self, off, n):
        """With master weights: the data weights the forward pass sees (3.6)."""
        if self.nums[3]:
            o = self.opt
            store_to_data(self.bufs[2], self.store, off, n, o[9], o[10], o[11], self.nb[0],
                          self.nb[5])

    # --- forward, one position ---

    def forward_position(self, start, T):
        """Position t = start of the forward pass, token tok[t]: rows t of every
        activation; rows 0..t of k and v are the cache. T: the probabilities' row length
        (the step's T, or BLOCK when sampling). Ends with the logits row t in L (int32).
        With start = T: positions 0 .. T-1, a training step's forward pass in one call (a
        method this size allocates its frame on the heap at each call, and the search for
        the free blocks costs thousands of instructions), op by op over the positions
        (attention at t reads rows 0..t only): each linear is one kernel call for all of
        them, which loads each W word once for two positions."""
        Fl, lo, hi, sh, shl, g, fm, eps, sh_s, lo_l, hi_l, sh_o, sh_emb = self.fwd
        act, ws, _, _, _, wm = self.bufs
        probs, logits, h, _, x0, x1, q, k, vv, at, x3, x4, ga, x2, tmp, rs0, rs1, rs3, srow = \
            act
        wte, wpe, lm_head, wq, wk, wv, wo, fc1, fc2 = ws
        bw, ba = self.nb[0], self.nb[1]
        t0 = 0 if start == T else start
        # max |W| of 16-bit weights (the fast paths' width; 0 for others: no fast path),
        # scanned when sampling begins and every _RESCAN steps of training, when wm[_WTE]
        # (no linear's) counts down to 0; train_step raises the bounds between the scans
        if t0 == 0 and bw == 2 and (start < T or wm[_WTE] == 0):
            wm[_WTE] = _RESCAN
            off = self.nums[0]
            for j in range(_LM_HEAD, _FC2 + 1):
                wm[j] = K.abs_max(0, 0, ws[j], off[j + 1] - off[j], bw)
        # the kernels in locals (a module's attribute costs two dictionary lookups a call)
        lin, rms, add = K.linear_forward, K.rmsnorm_forward, K.add_forward
        emb, att, tok = K.embedding_forward, K.attention_forward, self.tok
        t1 = T if start == T else t0 + 1
        for t in range(t0, t1):
            # x = wte[token] + wpe[t]; x0 = rmsnorm(x)
            emb(0, 0, ga, wte, wpe, tok[t], t, _C, sh_emb, lo, hi, ba, bw)
            rms(0, 0, x0, rs0, ga, t, _C, g, fm, eps, lo, hi, ba)
            # attention block: x1 = rmsnorm(x0); q, k, v = Wq x1, Wk x1, Wv x1
            rms(0, 0, x1, rs1, x0, t, _C, g, fm, eps, lo, hi, ba)
        lin(0, 0, q, x1, wq, t0, t1, _C, _C, sh, lo, hi, ba, ba, bw, wm[_WQ])
        lin(0, 0, k, x1, wk, t0, t1, _C, _C, sh, lo, hi, ba, ba, bw, wm[_WK])
        lin(0, 0, vv, x1, wv, t0, t1, _C, _C, sh, lo, hi, ba, ba, bw, wm[_WV])
        for t in range(t0, t1):
            att(0, 0, at, probs, srow, q, k, vv, t, T, _NH, sh_s, lo_l, hi_l, Fl, sh_o, lo, hi, ba)
        # x2 = Wo att + x0 (x2 in gb, the projection in gc)
        lin(0, 0, tmp, at, wo, t0, t1, _C, _C, sh, lo, hi, ba, ba, bw, wm[_WO])
        add(0, 0, x2, tmp, x0, t0 * _C, (t1 - t0) * _C, lo, hi, ba)
        # MLP block: x4 = fc2 relu(fc1 rmsnorm(x2)) + x2, the relu as fc1's saturation:
        # relu(sat(y, lo, hi)) = sat(y, 0, hi), as lo < 0 < hi
        for t in range(t0, t1):
            rms(0, 0, x3, rs3, x2, t, _C, g, fm, eps, lo, hi, ba)
        lin(0, 0, h, x3, fc1, t0, t1, _C, _M, sh, 0, hi, ba, ba, bw, wm[_FC1])
        lin(0, 0, tmp, h, fc2, t0, t1, _M, _C, sh, lo, hi, ba, ba, bw, wm[_FC2])
        add(0, 0, x4, tmp, x2, t0 * _C, (t1 - t0) * _C, lo, hi, ba)
        # logits = lm_head x4, into L (held as int32)
        lin(0, 0, logits, x4, lm_head, t0, t1, _C, _V, shl, lo_l, hi_l, 4, ba, bw, wm[_LM_HEAD])

    # --- backward over all positions, with the fused Adam update ---

    @micropython.native
    def weight_backward(self, j, dx, dy, x, T, n_in, n_out, alpha, key):
        """The backward pass of y = W x for tensor j of the table: dx, and dW a few rows
        at a time into the logits buffer, each piece updated by Adam (section 9) at once.
        An embedding (dx None) has its whole gradient in dy already (n_out rows of n_in,
        one piece): Adam only. With block-scaled state (9.6) Adam runs on whole units, as
        their gradient is complete, and 8/16-bit m or v are widened to int32 for it
        (blockadam.gather). The update is inline, not a method
        of its own, and the method is native code (nine calls a step), whose locals live
        on the C stack: a bytecode method this size would allocate its frame on the heap
        at each call (thousands of instructions each in gc_alloc's search for free blocks;
        about 1.6 KB of xtensawin code instead)."""
        lg = self.logits
        i0 = self.nums[0][j]
        b = self.nums[1]
        bw, ba, bg, _, _, bs = self.nb
        sh_m, sh_s, e, u, mode, lo, hi, hm, hv, _, _, _ = self.opt
        # what each piece reads, in locals (C stack slots: an attribute is a dictionary
        # lookup a read), at most three a statement (more build a tuple on the heap)
        store, m, v = self.store, self.m, self.v
        blk, c, adam = self.blk, self.counts, K.adam_update
        hook, wide = on_grad, self.nums[3]
        rows = _GRAD_MAX // n_in
        o1 = 0
        while o1 < n_out:  # (a range with a variable step would allocate)
            o0 = o1
            o1 = o0 + rows  # min(o0 + rows, n_out), without the builtin's call
            if o1 > n_out:
                o1 = n_out
            n = (o1 - o0) * n_in
            i = i0 + o0 * n_in
            g = dy
            if dx is not None:
                g = lg
                # dW stored, not added (lg is not zeroed)
                K.linear_backward(0, 0, dx, lg, dy, x, self.bufs[1][j], T, n_in, n_out, b[5],
                                  b[6], o0, o1, o0 == 0, 0, b[7], b[8], b[9], b[10], bg, ba, bw,
                                  self.bufs[5][j])
            if hook is not None:
                hook(i, n, g)
            if blk[7]:
                # block-scaled, or 8/16-bit m or v (adam_update takes int32 m and v only)
                import blockadam  # its code is in memory only then

                blockadam.gather(self, i, n, g, alpha, key)
            else:
                c[2] += adam(0, 0, store, m, v, g, blk[9], n, i, i, i, alpha, sh_m, sh_s, e, u,
                             mode, key, lo, hi, hm, hv, bs, 4)
                if wide:  # master weights: the data weights the forward pass sees
                    self.refresh_data(i, n)

    def backward(self, T, a, r):
        """The gradient of the step's mean loss, in the reverse order of the forward
        pass (qgpt/int_model.py backward), each weight updated by Adam as soon as its
        gradient is complete. Buffers are reused as they die (the table of Model.act)."""
        sh_c, sh_dp, sh_p, sh_qk, sh_e, _, _, gl, gh, pl, ph, sh_ce, fa = self.nums[1]
        probs, logits, h, dh, x0, x1, q, k, vv, at, x3, x4, ga, gb, gc, rs0, rs1, rs3, _ = \
            self.bufs[0]
        ba, bg = self.nb[1], self.nb[2]
        TC = T * _C
        # loss = mean_t -log p[t, target]: dlogits = (p - onehot) / T, into dh
        K.cross_entropy_backward(0, 0, dh, logits, self.bufs[4], T, _V, sh_ce, gl, gh, bg)
        # logits = lm_head x4: dx4 -> ga (the probabilities in logits are dead)
        self.weight_backward(_LM_HEAD, ga, dh, x4, T, _C, _V, a, r)
        # x4 = fc2 relu(h) + x2: d relu(h) -> dh (dlogits is dead)
        self.weight_backward(_FC2, dh, ga, h, T, _M, _C, a, r)
        # relu: dh where the forward's h > 0 (h holds relu(h): the same test)
        K.relu_backward(0, 0, dh, h, 0, T * _M, bg, ba)
        # h = fc1 x3: dx3 -> gb
        self.weight_backward(_FC1, gb, dh, x3, T, _C, _M, a, r)
        # x3 = rmsnorm(x2), and x2 also reaches x4: dx2 = sat(dx4 + rmsnorm_backward) -> ga
        K.rmsnorm_backward(0, 0, gc, gb, x3, rs3, T, _C, sh_c, fa, gl, gh, bg, ba)
        K.add_forward(0, 0, ga, ga, gc, 0, TC, gl, gh, bg)
        # x2 = Wo att + x0: datt -> gb; dx0 starts as dx2 (in ga)
        self.weight_backward(_WO, gb, ga, at, T, _C, _C, a, r)
        # att = attention(q, k, v): dq -> gc, dk -> at, dv -> x4 (both dead), with the
        # (T, T) scratch in logits
        K.attention_backward(0, 0, gc, at, x4, gb, q, k, vv, probs, logits, T, _NH, sh_dp, sh_p,
                             sh_qk, gl, gh, bg, ba)
        # q, k, v = Wq x1, Wk x1, Wv x1: three input-gradient paths, each saturated,
        # added in the order q, k, v: dx1 = sat(sat(dq_path + dk_path) + dv_path) -> gb
        self.weight_backward(_WQ, gb, gc, x1, T, _C, _C, a, r)
        self.weight_backward(_WK, gc, at, x1, T, _C, _C, a, r)
        K.add_forward(0, 0, gb, gb, gc, 0, TC, gl, gh, bg)
        self.weight_backward(_WV, gc, x4, x1, T, _C, _C, a, r)
        K.add_forward(0, 0, gb, gb, gc, 0, TC, gl, gh, bg)
        # x1 = rmsnorm(x0): dx0 = sat(dx2 + rmsnorm_backward(dx1)) -> ga
        K.rmsnorm_backward(0, 0, gc, gb, x1, rs1, T, _C, sh_c, fa, gl, gh, bg, ba)
        K.add_forward(0, 0, ga, ga, gc, 0, TC, gl, gh, bg)
        # x0 = rmsnorm(wte[tok] + wpe[t]): dx -> gb, then both embedding rows: dwte in
        # logits, dwpe in probs (dead since attention_backward)
        K.rmsnorm_backward(0, 0, gb, ga, x0, rs0, T, _C, sh_c, fa, gl, gh, bg, ba)
        zero32(logits, _V * _C)
        zero32(probs, _T * _C)
        K.embedding_backward(0, 0, logits, probs, gb, self.tok, T, _C, sh_e, pl, ph, bg)
        self.weight_backward(_WTE, None, logits, None, T, _C, _V, a, r)
        self.weight_backward(_WPE, None, probs, None, T, _C, _T, a, r)

    # --- one training step ---

    def train_step(self, T, step, num_steps):
        """One step on tok[0:T+1] (inputs tok[0:T], targets tok[1:T+1]); returns the
        step's loss_q16 (section 8). Adam's scalars are plain Python (section 9)."""
        Fl = self.fwd[0]
        lg = self.logits
        nll = 0
        self.forward_position(T, T)
        # (the functions in locals: a global costs a dictionary lookup a call)
        tok, rmax, g32 = self.tok, row_max, get32
        ce, nll_q16 = K.cross_entropy_forward, loss.nll_q16
        for t in range(T):
            # -log p[target] of position t in Q16, from the row's largest logit and the
            # target's, read (arguments left to right) before the row becomes the
            # probabilities (in place)
            row = t * _V
            nll += nll_q16(rmax(lg, row, _V), g32(lg, row + tok[t + 1]),
                           ce(0, 0, lg, lg, t, _V, Fl), Fl)
        c = self.counts
        c[0], c[1] = beta_powers(c[0], c[1])
        _, _, schedule, _, seed = self.nums  # schedule: (lr_q30, alpha_frac, stochastic)
        alpha = alpha_at(schedule, step, num_steps, c[0], c[1])
        key = prng.key(seed, prng.STREAM_ROUND, step) if schedule[2] else 0
        self.backward(T, alpha, key)
        # wmax stays a bound of max |W| until the next scan (forward_position): Adam moved
        # every weight by at most (alpha 2**15) >> u (9.5: |ratio| <= 2**15), plus 1 (the
        # rounding) or 3 (Kahan's compensation); master weights by that, so the data
        # weights by that >> sh_view plus 2 (their requantization; sh_view is 0 without).
        # A bound of 0 (no fast path) stays 0.
        wm = self.bufs[5]
        if wm[_WTE]:
            wm[_WTE] -= 1
            for j in range(_LM_HEAD, _FC2 + 1):
                if wm[j]:
                    wm[j] += ((alpha << 15) >> (self.opt[3] + self.opt[9])) + 3
        c[3] += 1  # steps_taken
        return loss.loss_q16(nll, T)
