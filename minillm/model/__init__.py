"""The Llama 3 architecture (report §3.2): RMSNorm, RoPE, GQA attention with document masks, SwiGLU, KV cache."""

from minillm.model.attention import Attention, attention_ref, causal_mask, document_mask, sdpa_attention
from minillm.model.kv_cache import KVCache
from minillm.model.llama import Block, FeedForward, Llama
from minillm.model.rmsnorm import RMSNorm, rms_norm_ref
from minillm.model.rope import apply_llama31_scaling, apply_rope, rope_cos_sin, rope_frequencies

__all__ = [
    "Attention", "attention_ref", "causal_mask", "document_mask", "sdpa_attention", "KVCache", "Block",
    "FeedForward", "Llama", "RMSNorm", "rms_norm_ref", "apply_llama31_scaling", "apply_rope", "rope_cos_sin",
    "rope_frequencies",
]
