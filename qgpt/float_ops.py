"""The float64 reference: microgpt's ops as forward/backward pairs.

Each op has the same name in the integer simulator (int_ops.py) and the
firmware (firmware/kernels.py). Forward functions return their output and what
their backward needs; backward functions return input gradients and add
parameter gradients into the buffers they are given (gradients are prefixed d).
Shapes use the legend in params.py; forward ops also take leading batch axes
(...,T,C), to evaluate many names of one length at once.
"""

import numpy as np

from qgpt.params import HEAD_DIM, N_HEAD, RMS_EPS

# --- embedding: x[t] = wte[token[t]] + wpe[t] ---


def embedding_forward(wte, wpe, tokens):
    # wte (V,C), wpe (BLOCK,C), tokens (...,T) -> x (...,T,C)
    return wte[tokens] + wpe[: tokens.shape[-1]]


def embedding_backward(dx, tokens, dwte, dwpe):
    # forward was x[t] = wte[tokens[t]] + wpe[t]: both rows receive dx[t]
    np.add.at(dwte, tokens, dx)
    dwpe[: len(tokens)] += dx


# --- rmsnorm: y = x / sqrt(mean(x^2) + eps), no gain ---


def rmsnorm_forward(x):
    # x (...,T,C) -> y (...,T,C), rstd (...,T)
    rstd = (np.mean(x * x, axis=-1) + RMS_EPS) ** -0.5
    return x * rstd[..., None], rstd


def rmsnorm_backward(dy, y, rstd):
    # y = x * rstd with rstd = (mean(x^2) + eps)^-1/2, so
    # dx = rstd * (dy - y * mean(dy * y))
    return rstd[:, None] * (dy - y * np.mean(dy * y, axis=-1, keepdims=True))


# --- linear: y[o] = sum_i W[o][i] x[i], no bias ---


def linear_forward(x, w):
    # x (...,T,in), w (out,in) -> y (...,T,out)
    return x @ w.T


def linear_backward(dy, x, w, dw):
    # forward was y = x @ w.T: dx = dy @ w, dw += dy.T @ x
    dw += dy.T @ x
    return dy @ w


# --- add: the residual connection ---


def add_forward(a, b):
    return a + b


def add_backward(dy):
    return dy, dy


# --- attention: causal multi-head softmax(q k^T / sqrt(D)) v ---


def attention_forward(q, k, v):
    # q, k, v (...,T,C) -> out (...,T,C), probs (...,H,T,T)
    lead, t = q.shape[:-2], q.shape[-2]
    qh, kh, vh = (a.reshape(*lead, t, N_HEAD, HEAD_DIM).swapaxes(-3, -2) for a in (q, k, v))
    scores = qh @ kh.swapaxes(-1, -2) / np.sqrt(HEAD_DIM)  # (...,H,T,T)
    future = np.triu(np.ones((t, t), dtype=bool), 1)
    scores = np.where(future, -np.inf, scores)
    probs = softmax(scores)
    out = (probs @ vh).swapaxes(-3, -2).reshape(*lead, t, N_HEAD * HEAD_DIM)
    return out, probs


def attention_backward(dout, q, k, v, probs):
    # forward: scores = q k^T / sqrt(D); probs = softmax(scores); out = probs v
    t = q.shape[0]
    qh, kh, vh = (a.reshape(t, N_HEAD, HEAD_DIM).transpose(1, 0, 2) for a in (q, k, v))
    douth = dout.reshape(t, N_HEAD, HEAD_DIM).transpose(1, 0, 2)
    dprobs = douth @ vh.transpose(0, 2, 1)  # out = probs v
    dvh = probs.transpose(0, 2, 1) @ douth
    dscores = softmax_backward(dprobs, probs) / np.sqrt(HEAD_DIM)
    dqh = dscores @ kh
    dkh = dscores.transpose(0, 2, 1) @ qh

    def merge(a):
        return a.transpose(1, 0, 2).reshape(t, N_HEAD * HEAD_DIM)

    return merge(dqh), merge(dkh), merge(dvh)


# --- relu ---


def relu_forward(x):
    return np.maximum(x, 0.0)


def relu_backward(dy, x):
    return dy * (x > 0)


# --- softmax and cross-entropy over the vocabulary ---


def softmax(z):
    # subtract the row max first, as microgpt does
    e = np.exp(z - np.max(z, axis=-1, keepdims=True))
    return e / np.sum(e, axis=-1, keepdims=True)


def softmax_backward(dp, p):
    # p = softmax(z): dz = p * (dp - sum(dp * p))
    return p * (dp - np.sum(dp * p, axis=-1, keepdims=True))


def cross_entropy_forward(logits, targets):
    # logits (T,V), targets (T,) -> mean loss, probs (T,V)
    # loss per position by log-sum-exp: ln sum_j e^(l_j - max) - (l_target - max)
    m = np.max(logits, axis=-1, keepdims=True)
    lse = np.log(np.sum(np.exp(logits - m), axis=-1)) + m[:, 0]
    losses = lse - logits[np.arange(len(targets)), targets]
    return float(np.mean(losses)), softmax(logits)


def cross_entropy_backward(probs, targets):
    # loss = mean_t -log p[t, target]: dlogits = (p - onehot) / T
    dlogits = probs.copy()
    dlogits[np.arange(len(targets)), targets] -= 1.0
    return dlogits / len(targets)
