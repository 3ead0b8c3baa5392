"""Read a GGUF file (llama.cpp's format, https://github.com/ggml-org/ggml/blob/master/docs/gguf.md) as a Hugging
Face-named checkpoint: ``read_gguf(path) -> (ModelConfig, {hf name: tensor}, Tokenizer | None)``.

A GGUF file holds metadata (``llama.embedding_length`` ..., the tokenizer under ``tokenizer.ggml.*``) and tensors
``blk.{i}.attn_q.weight`` ..., usually quantized (Q4_1: blocks of 32 weights sharing a scale and a minimum). Two traps:
GGUF lists dimensions innermost first (``[in, out]``), and llama.cpp's converter (``convert_hf_to_gguf.py``,
``LlamaModel.permute``) reorders each head's q/k rows from rotate_half pairs ``(i, i + d/2)`` to Meta's
``(2i, 2i + 1)``: ``_unpermute`` undoes it. ``minillm.model.hf_checkpoint.read_checkpoint`` checks the result.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import tokenizers
import torch
from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers

from minillm.config import ModelConfig, RopeScaling
from minillm.model.rope import rope_frequencies
from minillm.tokenizer import LLAMA3_PATTERN, Tokenizer

# GGUF tensor names -> Hugging Face names (per block, after "blk.{i}." / "model.layers.{i}.")
GGUF_NAMES = {"attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
              "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj", "ffn_norm": "post_attention_layernorm",
              "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}
GGUF_TOP = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
GGUF_KEYS = {"dim": "embedding_length", "n_layers": "block_count", "n_heads": "attention.head_count",
             "n_kv_heads": "attention.head_count_kv", "ffn_dim": "feed_forward_length", "vocab_size": "vocab_size",
             "max_seq_len": "context_length", "rope_theta": "rope.freq_base",
             "norm_eps": "attention.layer_norm_rms_epsilon", "head_dim": "attention.key_length"}
_REQUIRED = ("dim", "n_layers", "n_heads", "ffn_dim", "vocab_size")   # ModelConfig fields no default can fill
# llama.cpp pre-tokenizer names (tokenizer.ggml.pre) -> the splitting that model's HF tokenizer.json does
_PRE_TOKENIZERS = {"smollm": "digits+gpt2", "starcoder": "digits+gpt2", "gpt2": "gpt2", "default": "gpt2",
                   "llama-bpe": "llama3"}



def corrupt_file_error(path: Path, what: str, err: Exception) -> ValueError:
    """The error for a checkpoint file that its library could not read: the file, its size, what failed, the fix."""
    size = path.stat().st_size if path.is_file() else 0
    return ValueError(f"{path} ({size:,} bytes) is truncated or corrupt: reading it as {what} failed with "
                      f"{type(err).__name__}: {err}; an interrupted download or save leaves such a file, so download "
                      f"or save it again")


def _unpermute(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Undo llama.cpp's ``permute``: each head's rows ``(d/2, 2)`` back to ``(2, d/2)``. ``w (heads*head_dim, dim)``"""
    out, dim = w.shape
    return w.reshape(n_heads, out // n_heads // 2, 2, dim).transpose(1, 2).reshape(out, dim)


def read_gguf(path: Path):
    if importlib.util.find_spec("gguf") is None:
        raise ImportError("reading GGUF files needs the package 'gguf': pip install gguf")
    import gguf
    try:                            # the reader maps every tensor; a file cut short fails anywhere inside gguf/numpy
        reader = gguf.GGUFReader(path)
        meta = {key: field.contents() for key, field in reader.fields.items()}
    except Exception as err:
        raise corrupt_file_error(path, "GGUF", err) from err
    if (arch := meta.get("general.architecture")) != "llama":
        raise ValueError(f"{path}: GGUF architecture {arch!r} is not supported; only 'llama' loads")
    if (kind := meta.get("llama.rope.scaling.type", "none")) != "none":
        raise ValueError(f"{path}: llama.rope.scaling.type={kind!r} is not supported")
    kw = {ours: meta[f"llama.{key}"] for ours, key in GGUF_KEYS.items() if f"llama.{key}" in meta}
    kw.setdefault("vocab_size", len(meta.get("tokenizer.ggml.tokens", [])) or None)
    if missing := [f"llama.{GGUF_KEYS[k]}" for k in _REQUIRED if kw.get(k) is None]:
        raise ValueError(f"{path}: GGUF metadata lacks {missing[0]!r}")
    raw = {}
    for t in reader.tensors:                            # t.shape is innermost first ([in, out]): reverse it
        shape = tuple(int(n) for n in reversed(t.shape.tolist()))
        raw[t.name] = torch.from_numpy(gguf.quants.dequantize(t.data, t.tensor_type).reshape(shape).astype("float32"))
    cfg = ModelConfig(**{"n_kv_heads": kw["n_heads"], "rope_theta": 10_000.0, **kw},
                      tie_embeddings="output.weight" not in raw, name=str(meta.get("general.name", path.stem)))
    if (rot := meta.get("llama.rope.dimension_count", cfg.head_dim)) != cfg.head_dim:
        raise ValueError(f"{path}: llama.rope.dimension_count={rot} != head_dim {cfg.head_dim}: partial RoPE")
    if "rope_freqs.weight" in raw:                      # Llama 3.1 scaling, stored as per-frequency divisors
        cfg = cfg.replace(rope_scaling=_rope_scaling_from_factors(raw.pop("rope_freqs.weight"), cfg, path))
    names = {f"{g}.weight": f"{h}.weight" for g, h in GGUF_TOP.items()}
    names.update({f"blk.{i}.{g}.weight": f"model.layers.{i}.{h}.weight" for i in range(cfg.n_layers)
                  for g, h in GGUF_NAMES.items()})
    tensors = {names.get(n, n): w for n, w in raw.items()}   # unknown names stay: read_checkpoint reports them
    for name in [n for n in tensors if n.endswith(("q_proj.weight", "k_proj.weight"))]:
        tensors[name] = _unpermute(tensors[name], cfg.n_heads if "q_proj" in name else cfg.n_kv_heads)
    return cfg, tensors, _gguf_tokenizer(meta, path)


def _rope_scaling_from_factors(factors: torch.Tensor, cfg: ModelConfig, path: Path) -> RopeScaling:
    """``RopeScaling`` from llama.cpp's ``rope_freqs.weight`` (frequency divisors), Llama 3.x's 1, 4, 8192 assumed."""
    base, scaling = rope_frequencies(cfg.head_dim, cfg.rope_theta), RopeScaling(factor=float(factors.max()))
    expected = base / rope_frequencies(cfg.head_dim, cfg.rope_theta, scaling)
    if factors.shape != expected.shape or not torch.allclose(factors, expected, rtol=1e-3):
        raise ValueError(f"{path}: rope_freqs.weight is not Llama 3.1 RoPE scaling (closest: {scaling}); unsupported")
    return scaling


def _gguf_tokenizer(meta: dict, path: Path):
    """Our ``Tokenizer`` around a byte-level BPE rebuilt from ``tokenizer.ggml.*``; ``None`` if the file has none."""
    if (model := meta.get("tokenizer.ggml.model")) is None:
        return None
    if model != "gpt2":
        raise ValueError(f"{path}: tokenizer.ggml.model={model!r}; only 'gpt2' (byte-level BPE) is supported")
    if (pre := meta.get("tokenizer.ggml.pre", "default")) not in _PRE_TOKENIZERS:
        raise ValueError(f"{path}: tokenizer.ggml.pre={pre!r} is not supported; known: {sorted(_PRE_TOKENIZERS)}")
    style, tokens, kinds = _PRE_TOKENIZERS[pre], meta["tokenizer.ggml.tokens"], meta["tokenizer.ggml.token_type"]
    merges = [tuple(m.split(" ", 1)) for m in meta["tokenizer.ggml.merges"]]
    hf = tokenizers.Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges,
                                         ignore_merges=style == "llama3"))
    split = {"gpt2": [], "digits+gpt2": [pre_tokenizers.Digits(individual_digits=True)],
             "llama3": [pre_tokenizers.Split(Regex(LLAMA3_PATTERN), "isolated")]}[style]
    hf.pre_tokenizer = pre_tokenizers.Sequence([*split, pre_tokenizers.ByteLevel(add_prefix_space=False,
                                                                                 use_regex=style != "llama3")])
    hf.decoder = decoders.ByteLevel()
    # token_type follows llama.cpp's llama_token_type: 3 = control (special), 4 = user-defined
    hf.add_special_tokens([AddedToken(t, special=True, normalized=False) for t, k in zip(tokens, kinds) if k == 3])
    hf.add_tokens([AddedToken(t, normalized=False) for t, k in zip(tokens, kinds) if k == 4])
    eos = int(meta["tokenizer.ggml.eos_token_id"])
    stop = [eos] + [int(meta[k]) for k in ("tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id") if k in meta]
    return Tokenizer.from_hf(hf, bos=int(meta.get("tokenizer.ggml.bos_token_id", eos)), eos=eos, stop=stop,
                             chat_template=meta.get("tokenizer.chat_template"))
