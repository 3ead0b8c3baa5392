"""Loading released checkpoints: SmolLM2-135M (GGUF) against Hugging Face transformers, HF-folder round trips,
GGUF files written the way llama.cpp writes them, and clear errors for files we cannot load."""

import json

import pytest
import torch

from minillm import Llama, ModelConfig, RopeScaling
from minillm.generate import generate
from minillm.model.gguf_file import GGUF_NAMES, GGUF_TOP
from minillm.model.hf_checkpoint import hf_tensors
from minillm.model.load import load_pretrained, save_pretrained, smollm2_gguf_path

gguf = pytest.importorskip("gguf", reason="GGUF tests need the package 'gguf' (pip install gguf)")
PROMPTS = ["The capital of France is", "def fibonacci(n):\n    if n < 2:",
           "Llama 3 read 15T tokens: 12345 ünïcödé 🦙."]


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """max|a - b| / max|b|."""
    return float((a - b).abs().max() / b.abs().max())


def transformers_llama():
    pytest.importorskip("transformers", reason="HF parity needs the package 'transformers'")
    from transformers import LlamaForCausalLM
    from transformers.utils import logging
    logging.disable_progress_bar()
    logging.set_verbosity_error()
    return LlamaForCausalLM


@pytest.fixture(scope="module")
def smollm():
    try:
        path = smollm2_gguf_path()
    except ImportError as err:
        pytest.skip(str(err))
    model, tok = load_pretrained(path)
    return path, model, tok


@pytest.fixture(scope="module")
def hf_smollm(smollm):
    """The same GGUF read by transformers' own loader (its own config mapping and q/k un-permutation; it
    dequantizes with the same `gguf` library)."""
    path = smollm[0]
    pytest.importorskip("accelerate", reason="transformers reads GGUF only with 'accelerate' installed")
    return transformers_llama().from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()


def test_smollm2_gguf_config_is_read_from_the_metadata(smollm):
    _, model, tok = smollm
    cfg = model.cfg
    assert (cfg.dim, cfg.n_layers, cfg.n_heads, cfg.n_kv_heads, cfg.ffn_dim) == (576, 30, 9, 3, 1536)
    assert (cfg.vocab_size, cfg.rope_theta, cfg.tie_embeddings, cfg.head_dim) == (49152, 100_000.0, True, 64)
    assert model.output.weight is model.tok_embeddings.weight
    assert abs(cfg.num_params() - 134.5e6) < 0.1e6
    assert tok.vocab_size == 49152 and tok.decode(tok.encode(PROMPTS[2])) == PROMPTS[2]


def test_smollm2_logits_match_transformers_reading_the_same_gguf(smollm, hf_smollm):
    _, model, tok = smollm
    for text in PROMPTS:
        ids = torch.tensor([tok.encode(text)])
        with torch.no_grad():
            ours, theirs = model(ids), hf_smollm(ids).logits
        assert rel_err(ours, theirs) < 1e-4, text


def test_smollm2_greedy_tokens_match_transformers_generate(smollm, hf_smollm):
    _, model, tok = smollm
    ids = tok.encode_chat([{"role": "user", "content": "Write a short poem about the sea."}])
    ours = generate(model, [ids], 16, stop_tokens=tok.stop_ids)[0]
    x = torch.tensor([ids])
    theirs = hf_smollm.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=16, do_sample=False,
                                eos_token_id=tok.stop_ids, pad_token_id=tok.eos_id)[0, len(ids):].tolist()
    assert ours == theirs and len(ours) == 16


def test_smollm2_answers_paris_with_its_chat_template(smollm):
    _, model, tok = smollm
    assert "<|im_start|>" in tok.chat_template
    prompt = tok.encode_chat([{"role": "user", "content": "What is the capital of France?"}])
    answer = tok.decode(generate(model, [prompt], 24, stop_tokens=tok.stop_ids)[0])
    assert "Paris" in answer


# ------------------------------------------------------------------------------------------ round trips
def random_llama(**overrides) -> Llama:
    """A tiny model with every weight random (norm gains too, so a swapped norm would show)."""
    torch.manual_seed(0)
    base = dict(dim=64, n_layers=2, n_heads=4, ffn_dim=96, vocab_size=300, max_seq_len=128)
    model = Llama(ModelConfig.tiny(**{**base, **overrides})).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(1 + 0.1 * torch.randn_like(p) if p.dim() == 1 else 0.2 * torch.randn_like(p))
    return model


CASES = {
    "tied-gqa-llama3-rope": dict(tie_embeddings=True, n_kv_heads=2, rope_theta=500_000.0,
                                 rope_scaling=RopeScaling(factor=8.0, original_max_seq_len=64)),
    "untied-gqa-head_dim": dict(n_kv_heads=2, head_dim=24),
    "untied-mha": dict(n_kv_heads=4),
}


@pytest.mark.parametrize("case", CASES)
def test_save_then_load_gives_identical_logits_and_transformers_agrees(case, tmp_path):
    model = random_llama(**CASES[case])
    tokens = torch.randint(0, 300, (2, 40))
    save_pretrained(model, None, tmp_path)
    loaded, tok = load_pretrained(tmp_path)
    assert tok is None and loaded.cfg == model.cfg
    with torch.no_grad():
        expected = model(tokens)
        assert torch.equal(loaded(tokens), expected)
        hf = transformers_llama().from_pretrained(tmp_path, dtype=torch.float32).eval()
        assert rel_err(expected, hf(tokens).logits) < 1e-4


def test_the_method_forms_round_trip_like_hugging_faces(tmp_path):
    """``model.save_pretrained(folder)`` / ``Llama.from_pretrained(folder)`` as in ``transformers``: the same folder
    as the functions write, a model (not a tuple) back in eval mode, in the asked dtype, and HF reads it too."""
    model = random_llama(n_kv_heads=2, tie_embeddings=True)
    assert model.save_pretrained(tmp_path / "m") == tmp_path / "m"
    save_pretrained(model, None, tmp_path / "f")
    assert {p.name for p in (tmp_path / "m").iterdir()} == {p.name for p in (tmp_path / "f").iterdir()}
    loaded = Llama.from_pretrained(tmp_path / "m")
    assert isinstance(loaded, Llama) and not loaded.training and loaded.cfg == model.cfg
    assert loaded.output.weight is loaded.tok_embeddings.weight          # tied stays tied
    tokens = torch.randint(0, 300, (2, 16))
    with torch.no_grad():
        assert torch.equal(loaded(tokens), model(tokens))
        half = Llama.from_pretrained(tmp_path / "m", dtype=torch.bfloat16)
        assert half.tok_embeddings.weight.dtype == torch.bfloat16 and half.inv_freq.dtype == torch.float32
        hf = transformers_llama().from_pretrained(tmp_path / "m", dtype=torch.float32).eval()
        assert rel_err(model(tokens), hf(tokens).logits) < 1e-4
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Llama.from_pretrained(tmp_path / "nowhere")


def test_a_sharded_checkpoint_loads_like_a_single_file(tmp_path):
    from safetensors.torch import load_file, save_file
    model = random_llama(n_kv_heads=2)
    save_pretrained(model, None, tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    (tmp_path / "model.safetensors").unlink()
    names = sorted(weights)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for file, part in shards.items():
        save_file({n: weights[n] for n in part}, tmp_path / file)
    index = {"weight_map": {n: file for file, part in shards.items() for n in part}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    tokens = torch.randint(0, 300, (1, 20))
    with torch.no_grad():
        assert torch.equal(load_pretrained(tmp_path)[0](tokens), model(tokens))


def test_save_pretrained_writes_a_tokenizer_that_transformers_and_we_read_back(smollm, tmp_path):
    _, _, tok = smollm
    model = random_llama(vocab_size=tok.vocab_size)
    save_pretrained(model, tok, tmp_path)
    _, back = load_pretrained(tmp_path)
    text = "Hello, wörld! 2024 <|im_end|>"
    assert back.encode(text) == tok.encode(text) and back.stop_ids == tok.stop_ids
    chat = [{"role": "user", "content": "Hi"}]
    assert back.encode_chat(chat) == tok.encode_chat(chat)
    AutoTokenizer = pytest.importorskip("transformers").AutoTokenizer
    assert AutoTokenizer.from_pretrained(tmp_path).encode(text) == tok.encode(text, allow_special=True)


def write_gguf(model: Llama, path, arch: str = "llama", drop: str | None = None):
    """Write ``model`` as llama.cpp's convert_hf_to_gguf.py does: metadata keys, F32 tensors with q/k rows
    permuted to Meta's interleaved RoPE layout (its ``LlamaModel.permute``), rope scaling as ``rope_freqs``."""
    from minillm.model.rope import rope_frequencies

    def permute(w, n_head):
        return w.reshape(n_head, 2, w.shape[0] // n_head // 2, w.shape[1]).swapaxes(1, 2).reshape(w.shape)

    cfg = model.cfg
    names = {f"{hf}.weight": f"{g}.weight" for g, hf in GGUF_TOP.items()}
    names.update({f"model.layers.{i}.{hf}.weight": f"blk.{i}.{g}.weight" for i in range(cfg.n_layers)
                  for g, hf in GGUF_NAMES.items()})
    writer = gguf.GGUFWriter(str(path), arch)
    for key, value in (("block_count", cfg.n_layers), ("context_length", cfg.max_seq_len),
                       ("embedding_length", cfg.dim), ("feed_forward_length", cfg.ffn_dim),
                       ("attention.head_count", cfg.n_heads), ("attention.head_count_kv", cfg.n_kv_heads),
                       ("attention.key_length", cfg.head_dim), ("vocab_size", cfg.vocab_size)):
        writer.add_uint32(f"{arch}.{key}", value)
    writer.add_float32(f"{arch}.rope.freq_base", cfg.rope_theta)
    writer.add_float32(f"{arch}.attention.layer_norm_rms_epsilon", cfg.norm_eps)
    if cfg.rope_scaling is not None:
        factors = rope_frequencies(cfg.head_dim, cfg.rope_theta) / model.inv_freq
        writer.add_tensor("rope_freqs.weight", factors.numpy())
    for name, w in hf_tensors(model).items():
        if "q_proj" in name:
            w = permute(w, cfg.n_heads)
        elif "k_proj" in name:
            w = permute(w, cfg.n_kv_heads)
        if names[name] != drop:
            writer.add_tensor(names[name], w.float().numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


GGUF_CASES = {"tied-gqa-llama3.2-rope": dict(tie_embeddings=True, n_kv_heads=2, rope_theta=500_000.0,
                                             rope_scaling=RopeScaling(factor=32.0)),
              "untied-gqa-head_dim": CASES["untied-gqa-head_dim"]}


@pytest.mark.parametrize("case", GGUF_CASES)
def test_a_gguf_written_like_llama_cpp_loads_back_to_the_same_logits(case, tmp_path):
    model = random_llama(**GGUF_CASES[case])
    loaded, tok = load_pretrained(write_gguf(model, tmp_path / "m.gguf"))
    assert tok is None and loaded.cfg.rope_scaling == model.cfg.rope_scaling
    tokens = torch.randint(0, 300, (1, 50))
    with torch.no_grad():
        assert rel_err(loaded(tokens), model(tokens)) < 1e-6


# ------------------------------------------------------------------------------------------ bad inputs
def test_a_file_that_is_not_gguf_or_a_folder_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="neither a GGUF file"):
        load_pretrained(tmp_path / "notes.txt")
    with pytest.raises(ValueError, match="no config.json"):
        load_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError):
        load_pretrained(tmp_path / "missing.gguf")


def test_a_missing_tensor_is_named(tmp_path):
    write_gguf(random_llama(), tmp_path / "m.gguf", drop="blk.1.ffn_up.weight")
    with pytest.raises(ValueError, match=r"missing tensor 'model.layers.1.mlp.up_proj.weight' \(96, 64\)"):
        load_pretrained(tmp_path / "m.gguf")
    from safetensors.torch import load_file, save_file
    save_pretrained(random_llama(), None, tmp_path / "hf")
    weights = load_file(tmp_path / "hf" / "model.safetensors")
    del weights["lm_head.weight"]
    save_file(weights, tmp_path / "hf" / "model.safetensors")
    with pytest.raises(ValueError, match="missing tensor 'lm_head.weight'"):
        load_pretrained(tmp_path / "hf")


def test_an_unsupported_architecture_is_named(tmp_path):
    with pytest.raises(ValueError, match="GGUF architecture 'gpt2' is not supported"):
        load_pretrained(write_gguf(random_llama(), tmp_path / "m.gguf", arch="gpt2"))
    save_pretrained(random_llama(), None, tmp_path / "hf")
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    (tmp_path / "hf" / "config.json").write_text(json.dumps({**config, "model_type": "mistral"}))
    with pytest.raises(ValueError, match="model_type is 'mistral'"):
        load_pretrained(tmp_path / "hf")


def test_shape_mismatches_and_extra_tensors_are_refused(tmp_path):
    save_pretrained(random_llama(), None, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "intermediate_size": 128}))
    with pytest.raises(ValueError, match=r"'model.layers.0.mlp.gate_proj.weight' has shape \(96, 64\), the config"):
        load_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 1}))
    with pytest.raises(ValueError, match="does not use.*model.layers.1"):
        load_pretrained(tmp_path)


def _cut(path, keep: int) -> None:
    """Keep the first ``keep`` bytes of ``path`` (``keep < 0``: drop the last ``-keep``), as an interrupted
    download or save leaves it."""
    data = path.read_bytes()
    path.write_bytes(data[:keep])


@pytest.mark.parametrize("keep", [4096, 200_000])
def test_a_truncated_gguf_is_named_as_truncated(keep, tmp_path):
    try:
        source = smollm2_gguf_path()
    except ImportError as err:
        pytest.skip(str(err))
    with open(source, "rb") as f:                       # the first bytes of a real GGUF: magic, header, metadata
        (tmp_path / "cut.gguf").write_bytes(f.read(keep))
    with pytest.raises(ValueError, match=r"cut\.gguf .*is truncated or corrupt: reading it as GGUF"):
        load_pretrained(tmp_path / "cut.gguf")


def test_a_gguf_cut_inside_its_tensor_data_is_named_as_truncated(tmp_path):
    path = write_gguf(random_llama(), tmp_path / "m.gguf")
    _cut(path, -100)
    with pytest.raises(ValueError, match=r"m\.gguf .*is truncated or corrupt: reading it as GGUF"):
        load_pretrained(path)


@pytest.mark.parametrize("keep", [4, 100, -10])
def test_a_truncated_safetensors_file_is_named_with_its_path(keep, tmp_path):
    save_pretrained(random_llama(), None, tmp_path)
    _cut(tmp_path / "model.safetensors", keep)
    with pytest.raises(ValueError, match=r"model\.safetensors .*is truncated or corrupt: reading it as safetensors"):
        load_pretrained(tmp_path)


@pytest.mark.parametrize("text, problem", [('{"model_type": "llama", ', "not JSON"),
                                           ("\xff\xfe garbage", "not JSON"), ("[1, 2]", "holds a JSON list")])
def test_a_corrupt_config_json_is_named_with_its_path(text, problem, tmp_path):
    save_pretrained(random_llama(), None, tmp_path)
    (tmp_path / "config.json").write_bytes(text.encode("latin-1"))
    with pytest.raises(ValueError, match=f"config\\.json (is corrupt or truncated: )?{problem}") as info:
        load_pretrained(tmp_path)
    assert str(tmp_path / "config.json") in str(info.value)


def test_cached_smollm2_folder_is_the_gguf_model(smollm):
    from minillm.model.load import load_smollm2
    _, model, tok = smollm
    cached, cached_tok = load_smollm2()
    assert cached.cfg == model.cfg and cached.output.weight is cached.tok_embeddings.weight
    x = torch.tensor([tok.encode(PROMPTS[0])])
    with torch.inference_mode():
        assert torch.equal(cached(x), model(x))
    messages = [{"role": "user", "content": "hi"}]
    assert cached_tok.apply_chat_template(messages, tokenize=False) == tok.apply_chat_template(messages, tokenize=False)
    assert (cached_tok.stop_ids, cached_tok.bos_id) == (tok.stop_ids, tok.bos_id)
