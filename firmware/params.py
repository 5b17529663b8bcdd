"""The model's shape and its one parameter table, on the device: the same
(name, shape) rows as qgpt/params.py, in the same order (a test compares them).
Tensor j of this table is tensor j of the PRNG's init stream."""

VOCAB = 27  # a..z -> 0..25, BOS = 26
BOS = 26
BLOCK = 16  # T <= BLOCK
N_EMBD = 16  # C
N_HEAD = 4  # NH
HEAD_DIM = 4  # HS
MLP_HIDDEN = 64

PARAMS = (
    ("wte", (VOCAB, N_EMBD)),
    ("wpe", (BLOCK, N_EMBD)),
    ("lm_head", (VOCAB, N_EMBD)),
    ("layer0.attn_wq", (N_EMBD, N_EMBD)),
    ("layer0.attn_wk", (N_EMBD, N_EMBD)),
    ("layer0.attn_wv", (N_EMBD, N_EMBD)),
    ("layer0.attn_wo", (N_EMBD, N_EMBD)),
    ("layer0.mlp_fc1", (MLP_HIDDEN, N_EMBD)),
    ("layer0.mlp_fc2", (N_EMBD, MLP_HIDDEN)),
)


N_PARAMS = 4192
