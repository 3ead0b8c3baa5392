"""The Llama 3 decoder (report §3.2): a standard dense transformer with a few choices that matter.

    tokens ─► embedding ─► L × [ x + Attention(RMSNorm(x)) ; x + SwiGLU(RMSNorm(x)) ] ─► RMSNorm ─► lm_head ─► logits

- pre-normalisation with RMSNorm; no biases anywhere;
- SwiGLU feed-forward ``w2(silu(x·w1) ⊙ x·w3)`` (Shazeer, 2020); ``w1`` and ``w3`` are fused into one matrix ``w13``;
- grouped-query attention with RoPE (θ = 500,000) — see ``attention.py`` and ``rope.py``;
- an attention mask that keeps packed documents apart during pre-training (``doc_ids``).

``Llama(cfg)(tokens)`` returns logits ``(B, T, vocab)``; generation passes a ``KVCache`` and explicit positions/masks
(``minillm.generate``).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from minillm.config import ModelConfig
from minillm.model.attention import Attention, causal_mask, document_mask
from minillm.model.hf_checkpoint import read_checkpoint, state_dict_from_hf, write_hf_folder
from minillm.model.kv_cache import KVCache
from minillm.model.linear import Linear
from minillm.model.rmsnorm import RMSNorm
from minillm.model.rope import rope_cos_sin, rope_frequencies


class FeedForward(nn.Module):
    """SwiGLU: ``(B, T, dim) -> (B, T, dim)`` through ``ffn_dim`` hidden units; gate and up projections fused."""

    def __init__(self, dim: int, ffn_dim: int):
        super().__init__()
        self.ffn_dim = ffn_dim
        self.w13 = Linear(dim, 2 * ffn_dim)  # [gate (w1); up (w3)]
        self.w2 = Linear(ffn_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.w13(x).split(self.ffn_dim, dim=-1)  # (B, T, ffn_dim) each
        return self.w2(F.silu(gate) * up)


class Block(nn.Module):
    """One pre-norm transformer block."""

    def __init__(self, cfg: ModelConfig, attn_impl: str = "sdpa"):
        super().__init__()
        self.attention_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.attention = Attention(cfg, attn_impl)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.feed_forward = FeedForward(cfg.dim, cfg.ffn_dim)

    def forward(self, x, cos, sin, mask=None, is_causal=False, cache=None, layer=0, start=0):
        x = x + self.attention(self.attention_norm(x), cos, sin, mask, is_causal, cache, layer, start)
        return x + self.feed_forward(self.ffn_norm(x))


class Llama(nn.Module):
    """A Llama 3 decoder. ``attn_impl`` is ``"sdpa"`` (PyTorch's kernel) or ``"ref"`` (the plain formula)."""

    def __init__(self, cfg: ModelConfig, attn_impl: str = "sdpa"):
        super().__init__()
        self.cfg = cfg
        self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.layers = nn.ModuleList(Block(cfg, attn_impl) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.output = Linear(cfg.dim, cfg.vocab_size)
        if cfg.tie_embeddings:
            self.output.weight = self.tok_embeddings.weight
        self.register_buffer("inv_freq", rope_frequencies(cfg.head_dim, cfg.rope_theta, cfg.rope_scaling),
                             persistent=False)
        self.reset_parameters()

    def reset_parameters(self, std: float = 0.02) -> None:
        """Normal(0, 0.02) weights; the two residual projections scaled by 1/√(2L) (GPT-2) so depth does not
        inflate the residual stream; norm gains 1."""
        for name, p in self.named_parameters():
            if p.is_meta:                                   # built on the meta device to be loaded: nothing to init
                continue
            if p.dim() == 1:
                nn.init.ones_(p)
            elif name.endswith(("wo.weight", "w2.weight")):
                nn.init.normal_(p, std=std / math.sqrt(2 * self.cfg.n_layers))
            else:
                nn.init.normal_(p, std=std)

    def _apply(self, fn, recurse=True):
        # .to(bfloat16) would round the RoPE frequencies too, and position × frequency in bf16 is off by whole
        # radians at a few thousand tokens; recompute them in fp32 on the buffer's (new) device instead.
        super()._apply(fn, recurse)
        if not self.inv_freq.is_meta:
            cfg = self.cfg
            self.inv_freq = rope_frequencies(cfg.head_dim, cfg.rope_theta, cfg.rope_scaling).to(self.inv_freq.device)
        return self

    def forward(self, tokens: torch.Tensor, doc_ids: torch.Tensor | None = None, *,
                positions: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                cache: KVCache | None = None, start=0, last_only: bool = False) -> torch.Tensor:
        """``tokens (B, T)`` -> logits ``(B, T, vocab)`` (``(B, 1, vocab)`` with ``last_only``).

        - ``doc_ids (B, T)``: packed documents; tokens attend only within their document (training).
        - ``cache``/``start``: write keys/values at positions ``start..start+T`` of a ``KVCache`` (generation).
        - ``positions (B, T)``: RoPE positions (default ``start + arange(T)``); ``mask``: a bool mask
          ``(B, 1, T, S)`` replacing the default causal one (left-padded batches).
        """
        B, T = tokens.shape
        if doc_ids is not None:
            if cache is not None or mask is not None:
                raise ValueError("doc_ids builds its own mask for training; do not pass mask or cache with it")
            if doc_ids.shape != tokens.shape:
                raise ValueError(f"doc_ids shape {tuple(doc_ids.shape)} must equal tokens shape {tuple(tokens.shape)}")
            mask = document_mask(doc_ids)
        if positions is None:
            if isinstance(start, torch.Tensor):
                raise ValueError("a tensor start (static cache slots) needs explicit positions and mask")
            if start + T > self.cfg.max_seq_len:
                raise ValueError(f"sequence of {start + T} tokens exceeds cfg.max_seq_len={self.cfg.max_seq_len}")
            positions = torch.arange(start, start + T, device=tokens.device).expand(B, T)
        is_causal = False
        if mask is None and T > 1:
            if isinstance(start, int) and start == 0:
                is_causal = True                                       # the kernel's built-in causal mask
            else:
                mask = causal_mask(T, start + T, tokens.device)        # chunked prefill: offset causal mask

        h = self.tok_embeddings(tokens)                                # (B, T, dim)
        cos, sin = rope_cos_sin(positions, self.inv_freq, h.dtype)     # (B, 1, T, head_dim)
        for i, layer in enumerate(self.layers):
            h = layer(h, cos, sin, mask, is_causal, cache, i, start)
        h = self.norm(h[:, -1:] if last_only else h)
        return self.output(h)                                          # (B, T, vocab)

    def new_cache(self, batch_size: int, max_seq_len: int | None = None) -> KVCache:
        """A KV cache on this model's device and dtype."""
        p = self.tok_embeddings.weight
        return KVCache(self.cfg, batch_size, max_seq_len or self.cfg.max_seq_len, dtype=p.dtype, device=p.device)

    # ------------------------------------------------------------------ Hugging Face's method names
    @classmethod
    def from_pretrained(cls, path: str | Path, dtype: torch.dtype = torch.float32,
                        device: torch.device | str = "cpu") -> "Llama":
        """The model of a Hugging Face folder (``config.json`` + safetensors) or a ``.gguf`` file, in eval mode, as
        ``transformers``' ``LlamaForCausalLM.from_pretrained(path)``. Differences on purpose: ``path`` is local
        only (nothing downloads), and the tokenizer comes from ``minillm.load_pretrained(path)``, which returns both."""
        cfg, tensors, _ = read_checkpoint(path)
        return cls.from_hf_tensors(cfg, tensors, dtype, device)

    @classmethod
    def from_hf_tensors(cls, cfg: ModelConfig, tensors: dict[str, torch.Tensor], dtype: torch.dtype = torch.float32,
                        device: torch.device | str = "cpu") -> "Llama":
        """The model holding checked HF-named ``tensors`` (see ``hf_checkpoint``), built on the meta device first so
        no weight is allocated or initialised twice."""
        with torch.device("meta"):
            model = cls(cfg)
        model.load_state_dict(state_dict_from_hf(cfg, tensors, dtype), strict=True, assign=True)
        if cfg.tie_embeddings:
            model.output.weight = model.tok_embeddings.weight
        model.inv_freq = rope_frequencies(cfg.head_dim, cfg.rope_theta, cfg.rope_scaling)  # the meta buffer, rebuilt
        return model.to(device).eval()

    def save_pretrained(self, folder: str | Path, tokenizer=None) -> Path:
        """Write a Hugging Face folder that ``transformers`` and ``Llama.from_pretrained`` read (``config.json``,
        ``model.safetensors``, and the tokenizer files when ``tokenizer`` is given; HF saves those with the
        tokenizer's own ``save_pretrained``, ours keeps them beside the weights in one call)."""
        return write_hf_folder(self, tokenizer, folder)
