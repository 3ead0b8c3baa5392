"""AdamW groups (no decay on norms and embeddings), gradient clipping, CPU autocast (report §3.4)."""

import pytest
import torch

from minillm import Llama, ModelConfig
from minillm.train import OptimConfig, autocast, clip_gradients, make_optimizer, param_groups


def _model(**kw):
    torch.manual_seed(0)
    return Llama(ModelConfig.tiny(dim=32, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=64, vocab_size=64,
                                  max_seq_len=32, **kw))


@pytest.mark.parametrize("tied", [False, True])
def test_decay_group_holds_exactly_the_matmul_weights(tied):
    model = _model(tie_embeddings=tied)
    decay, no_decay = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    decay_names = {names[id(p)] for p in decay["params"]}
    no_decay_names = {names[id(p)] for p in no_decay["params"]}
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(n.endswith(("wqkv.weight", "wo.weight", "w13.weight", "w2.weight", "output.weight"))
               for n in decay_names)
    assert all("norm" in n or n == "tok_embeddings.weight" for n in no_decay_names)
    assert "tok_embeddings.weight" in no_decay_names
    assert ("output.weight" in decay_names) != tied                        # a tied head is the embedding
    assert len(decay_names) + len(no_decay_names) == len(list(model.parameters()))


def test_weight_decay_shrinks_matmul_weights_but_not_norms_or_embeddings():
    model = _model()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = make_optimizer(model, OptimConfig(weight_decay=0.5), lr=0.1)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)                                        # only decay can move a weight
    opt.step()
    for n, p in model.named_parameters():
        if "norm" in n or "embed" in n:
            assert torch.equal(p, before[n]), n
        else:
            torch.testing.assert_close(p, before[n] * (1 - 0.1 * 0.5)), n


def test_clip_gradients_returns_the_global_norm_and_clips_to_max_norm():
    model = _model()
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    norm = torch.sqrt(sum((p.grad.double() ** 2).sum() for p in model.parameters()))
    assert clip_gradients(model, None) == pytest.approx(float(norm), rel=1e-5)
    assert clip_gradients(model, 1.0) == pytest.approx(float(norm), rel=1e-5)
    clipped = torch.sqrt(sum((p.grad.double() ** 2).sum() for p in model.parameters()))
    assert float(clipped) == pytest.approx(1.0, rel=1e-4)


def test_autocast_is_bf16_on_cuda_only():
    x = torch.randn(4, 4)
    with autocast("cpu"):
        assert (x @ x).dtype == torch.float32
    if torch.cuda.is_available():
        with autocast("cuda"):
            assert (x.cuda() @ x.cuda()).dtype == torch.bfloat16


def test_optim_config_errors_name_the_field():
    with pytest.raises(ValueError, match="beta2"):
        OptimConfig(beta2=1.0)
    with pytest.raises(ValueError, match="grad_clip"):
        OptimConfig(grad_clip=0)
