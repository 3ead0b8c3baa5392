"""GPU-only checks (they skip without CUDA; `benchmarks/gpu.sh` runs them on the device machine)."""

import pytest
import torch

from minillm import Llama, ModelConfig, generate
from minillm.model.static_decode import static_greedy

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@cuda
@pytest.mark.parametrize("compile", [False, True])
def test_cuda_graph_decoding_gives_the_eager_greedy_tokens(compile):
    torch.manual_seed(0)
    cfg = ModelConfig.tiny(dim=128, n_layers=2, n_heads=8, n_kv_heads=2, ffn_dim=256, vocab_size=211,
                           max_seq_len=128)
    m = Llama(cfg).cuda().eval()
    prompts = torch.randint(0, cfg.vocab_size, (3, 9)).tolist()
    assert static_greedy(m, prompts, 20, compile=compile) == generate(m, prompts, 20)


@cuda
def test_bf16_model_keeps_fp32_rope_frequencies_and_matches_fp32_logits():
    torch.manual_seed(0)
    cfg = ModelConfig.tiny(max_seq_len=4096)
    m32 = Llama(cfg).cuda().eval()
    m16 = Llama(cfg).cuda().eval()
    m16.load_state_dict(m32.state_dict())
    m16 = m16.to(torch.bfloat16)
    assert m16.inv_freq.dtype == torch.float32
    tokens = torch.randint(0, cfg.vocab_size, (1, 3000), device="cuda")
    with torch.inference_mode():
        a, b = m32(tokens, last_only=True).float(), m16(tokens, last_only=True).float()
    assert torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0) > 0.99
