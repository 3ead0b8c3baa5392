"""Change the number of key/value heads of a trained model (Ainslie et al., 2023, "GQA", §2.1).

- **Expanding** (e.g. GQA → MHA): copy each KV head to every query head of its group. The model computes exactly the
  same function; only the KV cache grows. This shows that GQA's saving is free at inference *for a model trained
  with it*.
- **Pooling** (e.g. GQA → MQA, or MHA → GQA): average the key and value projections of the heads being merged. The
  GQA paper converts MHA checkpoints this way and then *uptrains* for ~5% of the pre-training compute; without
  uptraining the loss rises, which the book measures.
"""

from __future__ import annotations


import torch

from minillm.model.llama import Llama


@torch.no_grad()
def regroup_kv_heads(model: Llama, n_kv_heads: int) -> Llama:
    """A copy of ``model`` with ``n_kv_heads`` key/value heads, by expanding or mean-pooling its K/V projections.

    ``n_kv_heads`` must divide ``n_heads``, and either divide or be a multiple of the current ``n_kv_heads``.
    """
    cfg = model.cfg
    old = cfg.n_kv_heads
    if n_kv_heads <= 0 or cfg.n_heads % n_kv_heads:
        raise ValueError(f"n_kv_heads ({n_kv_heads}) must be a positive divisor of n_heads ({cfg.n_heads})")
    if n_kv_heads % old and old % n_kv_heads:
        raise ValueError(f"n_kv_heads ({n_kv_heads}) must divide or be a multiple of the current {old}")
    new = Llama(cfg.replace(n_kv_heads=n_kv_heads)).to(model.tok_embeddings.weight)
    state = model.state_dict()
    q_size, kv_size, hd = cfg.n_heads * cfg.head_dim, old * cfg.head_dim, cfg.head_dim
    for i in range(cfg.n_layers):
        key = f"layers.{i}.attention.wqkv.weight"
        q, k, v = state[key].split([q_size, kv_size, kv_size])           # k, v: (old * hd, dim)

        def regroup(w: torch.Tensor) -> torch.Tensor:
            w = w.view(old, hd, -1)                                          # (old, hd, dim)
            if n_kv_heads >= old:
                w = w.repeat_interleave(n_kv_heads // old, dim=0)            # copy each head to its group
            else:
                w = w.view(n_kv_heads, old // n_kv_heads, hd, -1).mean(1)    # average neighbouring heads
            return w.reshape(n_kv_heads * hd, -1)

        state[key] = torch.cat([q, regroup(k), regroup(v)])
    new.load_state_dict(state)
    return new.eval()
