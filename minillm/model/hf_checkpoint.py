"""The Hugging Face checkpoint format for our ``Llama``: names, shapes, ``config.json``, and reading/writing folders.

A **Hugging Face folder** holds ``config.json`` (``LlamaConfig``), ``model.safetensors`` (or shards listed in its
``.index.json``), tensors ``model.layers.{i}.self_attn.q_proj.weight`` ... with q/k rows in our rotate_half layout,
and the tokenizer files. Every checkpoint we read (a folder, or a GGUF file via ``minillm.model.gguf_file``) becomes
HF-named tensors, checked (``check_tensors``: no partial loads), then stacked into our fused ``wqkv``/``w13``
(``state_dict_from_hf``). Nothing here builds a model: ``Llama.from_pretrained`` does, so this module never imports
``llama.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import tokenizers
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from minillm.config import ModelConfig, RopeScaling
from minillm.model.gguf_file import _REQUIRED, corrupt_file_error, read_gguf
from minillm.tokenizer import Tokenizer

# our parameter (per block after "layers.{i}.") -> the HF tensors stacked along rows into it
_FUSED = {"attention.wqkv": ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"],
          "attention.wo": ["self_attn.o_proj"], "feed_forward.w13": ["mlp.gate_proj", "mlp.up_proj"],
          "feed_forward.w2": ["mlp.down_proj"], "attention_norm": ["input_layernorm"],
          "ffn_norm": ["post_attention_layernorm"]}
HF_KEYS = {"dim": "hidden_size", "n_layers": "num_hidden_layers", "n_heads": "num_attention_heads",
           "n_kv_heads": "num_key_value_heads", "ffn_dim": "intermediate_size", "vocab_size": "vocab_size",
           "max_seq_len": "max_position_embeddings", "rope_theta": "rope_theta", "norm_eps": "rms_norm_eps",
           "head_dim": "head_dim", "tie_embeddings": "tie_word_embeddings"}


def hf_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor of a Hugging Face ``LlamaForCausalLM`` checkpoint and its shape ``(out, in)``."""
    d, q, kv, f = cfg.dim, cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim, cfg.ffn_dim
    shapes = {"model.embed_tokens.weight": (cfg.vocab_size, d), "model.norm.weight": (d,)}
    if not cfg.tie_embeddings:
        shapes["lm_head.weight"] = (cfg.vocab_size, d)
    block = {"input_layernorm": (d,), "self_attn.q_proj": (q, d), "self_attn.k_proj": (kv, d),
             "self_attn.v_proj": (kv, d), "self_attn.o_proj": (d, q), "post_attention_layernorm": (d,),
             "mlp.gate_proj": (f, d), "mlp.up_proj": (f, d), "mlp.down_proj": (d, f)}
    for i in range(cfg.n_layers):
        shapes.update({f"model.layers.{i}.{name}.weight": shape for name, shape in block.items()})
    return shapes


def _fused_names(cfg: ModelConfig) -> dict[str, list[str]]:
    """Our state-dict names -> the HF tensor names stacked (along rows) into each."""
    out = {"tok_embeddings.weight": ["model.embed_tokens.weight"], "norm.weight": ["model.norm.weight"],
           "output.weight": ["model.embed_tokens.weight" if cfg.tie_embeddings else "lm_head.weight"]}
    for i in range(cfg.n_layers):
        out.update({f"layers.{i}.{ours}.weight": [f"model.layers.{i}.{n}.weight" for n in hf]
                    for ours, hf in _FUSED.items()})
    return out


def check_tensors(cfg: ModelConfig, tensors: dict[str, torch.Tensor], source: str) -> None:
    """Raise ``ValueError`` naming the first missing, extra or misshapen tensor."""
    expected = hf_shapes(cfg)
    if missing := [n for n in expected if n not in tensors]:
        raise ValueError(f"{source} is missing tensor {missing[0]!r} {expected[missing[0]]} ({len(missing)} in all)")
    if extra := sorted(set(tensors) - set(expected)):
        raise ValueError(f"{source} has tensors the Llama architecture (as configured: tied embeddings "
                         f"{cfg.tie_embeddings}) does not use: {extra[:5]}; refusing a partial load")
    if bad := [n for n, shape in expected.items() if tuple(tensors[n].shape) != shape]:
        raise ValueError(f"{source}: tensor {bad[0]!r} has shape {tuple(tensors[bad[0]].shape)}, the config "
                         f"implies {expected[bad[0]]}")


def state_dict_from_hf(cfg: ModelConfig, tensors: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Our ``Llama`` state dict from checked HF-named ``tensors``: q/k/v stacked into ``wqkv``, gate/up into ``w13``."""
    return {ours: torch.cat([tensors[n].to(dtype) for n in hf]) if len(hf) > 1 else tensors[hf[0]].to(dtype)
            for ours, hf in _fused_names(cfg).items()}


def hf_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """The inverse of ``state_dict_from_hf``: our weights under HF names, ``wqkv``/``w13`` split apart (copies)."""
    shapes, params, out = hf_shapes(model.cfg), dict(model.named_parameters(remove_duplicate=False)), {}
    for ours, hf in _fused_names(model.cfg).items():    # (tied: output.weight is embed_tokens again)
        out.update(zip(hf, params[ours].detach().split([shapes[n][0] for n in hf])))
    return {n: w.clone() for n, w in out.items()}       # clone: safetensors refuses tensors sharing storage


# ------------------------------------------------------------------------------------------ folders
def hf_config(model: nn.Module) -> dict:
    """The ``config.json`` of ``model`` as a ``LlamaConfig`` dict (the released Llama 3.1 spelling)."""
    cfg = model.cfg
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
              "attention_bias": False, "mlp_bias": False, **{hf: getattr(cfg, ours) for ours, hf in HF_KEYS.items()},
              "torch_dtype": str(model.tok_embeddings.weight.dtype).removeprefix("torch.")}
    if (s := cfg.rope_scaling) is not None:
        config["rope_scaling"] = {"rope_type": "llama3", "factor": s.factor, "low_freq_factor": s.low_freq_factor,
                                  "high_freq_factor": s.high_freq_factor,
                                  "original_max_position_embeddings": s.original_max_seq_len}
    return config


def _json(path: Path) -> dict:
    """The JSON object in ``path``; a missing optional file reads as ``{}``, a corrupt one raises naming the file."""
    if not path.is_file():
        return {}
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is corrupt or truncated: not JSON ({err}); restore it from where the checkpoint "
                         f"came from (download or save_pretrained it again)") from err
    if not isinstance(value, dict):
        raise ValueError(f"{path} holds a JSON {type(value).__name__}, not the object ({{...}}) of a Hugging Face "
                         f"checkpoint file; restore it from where the checkpoint came from")
    return value


def config_from_hf(c: dict, source: str = "config.json") -> ModelConfig:
    """``ModelConfig`` from ``LlamaConfig`` fields (4.x ``rope_theta``/``rope_scaling``, 5.x ``rope_parameters``)."""
    if c.get("model_type") != "llama":
        raise ValueError(f"{source}: model_type is {c.get('model_type')!r}; only 'llama' (LlamaForCausalLM) loads")
    if c.get("hidden_act", "silu") != "silu":   # (biases would show up as extra tensors)
        raise ValueError(f"{source}: hidden_act={c['hidden_act']!r}; the Llama architecture uses 'silu'")
    if missing := [HF_KEYS[k] for k in _REQUIRED if HF_KEYS[k] not in c]:
        raise ValueError(f"{source} lacks the field {missing[0]!r}")
    rope = c.get("rope_parameters") or c.get("rope_scaling") or {}
    if (kind := rope.get("rope_type", rope.get("type", "default"))) not in ("default", "llama3"):
        raise ValueError(f"{source}: rope type {kind!r} is not supported (only 'default' and Llama 3.1's 'llama3')")
    c = {"num_key_value_heads": c["num_attention_heads"], "max_position_embeddings": 2048, "rms_norm_eps": 1e-6,
         "rope_theta": rope.get("rope_theta", 10_000.0), **{k: v for k, v in c.items() if v is not None}}  # HF defaults
    scaling = None if kind == "default" else RopeScaling(
        float(rope["factor"]), float(rope["low_freq_factor"]), float(rope["high_freq_factor"]),
        int(rope["original_max_position_embeddings"]))
    return ModelConfig(**{ours: c[hf] for ours, hf in HF_KEYS.items() if hf in c}, rope_scaling=scaling,
                       name=Path(source).parent.name or "hf")


def read_hf_folder(folder: Path):
    if not (folder / "config.json").is_file():
        raise ValueError(f"{folder} has no config.json: not a Hugging Face checkpoint folder")
    cfg = config_from_hf(_json(folder / "config.json"), str(folder / "config.json"))
    index = folder / "model.safetensors.index.json"
    files = ["model.safetensors"]
    if index.is_file():
        if not isinstance(weight_map := _json(index).get("weight_map"), dict):
            raise ValueError(f"{index} has no 'weight_map' (tensor name -> shard file): restore the file")
        files = sorted(set(weight_map.values()))
    if not (folder / files[0]).is_file():
        raise ValueError(f"{folder} has neither model.safetensors nor model.safetensors.index.json "
                         f"(.bin/.pth checkpoints are not read: convert them to safetensors)")
    tensors: dict[str, torch.Tensor] = {}
    for file in files:
        try:
            shard = load_file(str(folder / file))
        except SafetensorError as err:
            raise corrupt_file_error(folder / file, "safetensors", err) from err
        for name, value in shard.items():
            if not name.endswith("rotary_emb.inv_freq"):   # a buffer old transformers saved; we recompute it
                tensors[name] = value
    if cfg.tie_embeddings and "lm_head.weight" in tensors:
        if not torch.equal(tensors.pop("lm_head.weight"), tensors["model.embed_tokens.weight"]):
            raise ValueError(f"{folder}: tie_word_embeddings is true but lm_head.weight differs from embed_tokens")
    return cfg, tensors, _hf_tokenizer(folder)


def _hf_tokenizer(folder: Path):
    """``tokenizer.json`` + ``tokenizer_config.json`` (bos, eos, chat template) + stop ids; ``None`` if absent."""
    if not (folder / "tokenizer.json").is_file():
        return None
    tc, config, gen = (_json(folder / f) for f in ("tokenizer_config.json", "config.json", "generation_config.json"))
    content = lambda t: t["content"] if isinstance(t, dict) else t          # AddedToken dicts or plain strings
    ids = lambda x: [x] if isinstance(x, int) else list(x or [])            # an id or a list of ids
    bos = content(tc.get("bos_token")) or config.get("bos_token_id")
    eos = content(tc.get("eos_token")) or (ids(config.get("eos_token_id")) or [None])[0]
    if bos is None or eos is None:
        raise ValueError(f"{folder}: no bos/eos token in tokenizer_config.json (bos_token, eos_token) "
                         f"nor in config.json (bos_token_id, eos_token_id)")
    if (template := tc.get("chat_template")) is None and (folder / "chat_template.jinja").is_file():
        template = (folder / "chat_template.jinja").read_text()
    try:
        hf = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
    except Exception as err:                            # tokenizers raises a bare Exception
        raise corrupt_file_error(folder / "tokenizer.json", "a tokenizers Tokenizer", err) from err
    stop = [eos, *ids(gen.get("eos_token_id")), *ids(config.get("eos_token_id"))]
    return Tokenizer.from_hf(hf, bos=bos, eos=eos, stop=stop, chat_template=template)


def write_hf_folder(model: nn.Module, tokenizer: Tokenizer | None, folder: str | Path) -> Path:
    """A Hugging Face folder (``config.json`` as the released Llama 3.1 spells it, ``model.safetensors``, tokenizer
    files with ``generation_config.json`` holding its stop ids) that ``transformers`` and ``load_pretrained`` read."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = hf_config(model)
    if tokenizer is not None:
        config.update(bos_token_id=tokenizer.bos_id, eos_token_id=tokenizer.eos_id)
        tokenizer.hf.save(str(folder / "tokenizer.json"))
        (folder / "tokenizer_config.json").write_text(json.dumps(
            {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": tokenizer.id_to_token(tokenizer.bos_id),
             "eos_token": tokenizer.id_to_token(tokenizer.eos_id),
             "chat_template": tokenizer.exported_chat_template},
            indent=2, ensure_ascii=False))
        (folder / "generation_config.json").write_text(json.dumps(
            {"bos_token_id": tokenizer.bos_id, "eos_token_id": list(tokenizer.stop_ids)}, indent=2))
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    save_file({n: w.cpu() for n, w in hf_tensors(model).items()}, folder / "model.safetensors", {"format": "pt"})
    return folder




def read_checkpoint(path: str | Path) -> tuple[ModelConfig, dict[str, torch.Tensor], Tokenizer | None]:
    """``(cfg, HF-named tensors, tokenizer or None)`` from a Hugging Face folder or a ``.gguf`` file, checked."""
    if not (path := Path(path)).exists():
        raise FileNotFoundError(f"{path} does not exist")
    if path.is_file() and path.open("rb").read(4) != b"GGUF":
        raise ValueError(f"{path} is neither a GGUF file (no 'GGUF' magic bytes) nor a checkpoint folder; for a "
                         f"Hugging Face checkpoint pass the folder holding config.json and the .safetensors files")
    cfg, tensors, tokenizer = read_hf_folder(path) if path.is_dir() else read_gguf(path)
    check_tensors(cfg, tensors, str(path))
    return cfg, tensors, tokenizer
