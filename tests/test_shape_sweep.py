"""Shape against size (Kaplan et al. 2020, §3.1): the non-embedding count is the blocks' weights, the widths picked
for each depth hit the target size as closely as the ladder allows, the plan has the shapes, the contrast sizes and
the second seed, per-batch held-out losses average to ``evaluate``'s loss, and the spec says what to fix."""

import pytest
import torch

from minillm import Llama
from minillm.train.evaluate import evaluate
from minillm.train.isoflop import SweepSpec
from minillm.train.packing import pack_documents
from minillm.train.shape_sweep import (ShapeSpec, batch_losses, nonembedding_params, shape_config, shape_plan,
                                       shape_spec, width_for)

SWEEP = SweepSpec(grid=((1e10, (4, 6, 8)), (3e10, (4, 6, 8))), vocab_size=1024, seq_len=64)


def test_nonembedding_params_are_the_blocks_without_the_tied_table_or_final_norm():
    cfg = shape_config(3, 32, 1024, 64)                     # 2 heads of 16, 1 KV head, SwiGLU 80
    per_block = 32 * 32 + 2 * 32 * 16 + 32 * 32 + 3 * 32 * 80 + 2 * 32
    assert nonembedding_params(cfg) == 3 * per_block
    assert cfg.num_params() == 3 * per_block + 32 + 1024 * 32
    assert cfg.n_layers == 3 and cfg.dim == 32


@pytest.mark.parametrize("depth", [1, 2, 4, 8])
def test_width_for_a_depth_is_the_closest_valid_width_to_the_target(depth):
    w = width_for(depth, 16_000, 1024, 64)
    got = abs(nonembedding_params(shape_config(depth, w, 1024, 64)) - 16_000)
    for other in range(2, 200, 2):
        try:
            cfg = shape_config(depth, other, 1024, 64)
        except ValueError:
            continue
        assert got <= abs(nonembedding_params(cfg) - 16_000)
    assert got / 16_000 < 0.15


def test_the_plan_has_equal_sizes_of_every_depth_the_contrast_sizes_and_a_second_seed():
    spec = ShapeSpec(depths=(1, 2, 4, 8), target_params=16_000, contrast_params=(4_000, 64_000), seed_depth=2)
    plan = shape_plan(spec, SWEEP)
    shapes = [r for r in plan if r["kind"] == "shape"]
    assert [r["n_layers"] for r in shapes] == [1, 2, 4, 8]
    sizes = [nonembedding_params(shape_config(r["n_layers"], r["width"], 1024, 64)) for r in shapes]
    assert max(sizes) / min(sizes) < 1.2
    widths = [r["width"] for r in shapes]
    assert widths == sorted(widths, reverse=True)                     # deeper means narrower at equal size
    contrast = [nonembedding_params(shape_config(r["n_layers"], r["width"], 1024, 64)) for r in plan
                if r["kind"] == "size"]
    assert contrast[0] < 6_000 and contrast[1] > 48_000
    seed = [r for r in plan if r["kind"] == "seed"]
    assert len(seed) == 1 and seed[0]["seed"] == SWEEP.seed + 1 and seed[0]["width"] == shapes[1]["width"]


def test_batch_losses_average_to_evaluates_loss_on_full_batches():
    g = torch.Generator().manual_seed(0)
    data = pack_documents([torch.randint(1, 50, (300,), generator=g).tolist() for _ in range(8)], bos_id=0)
    cfg = shape_config(2, 16, 64, 16)
    torch.manual_seed(0)
    model = Llama(cfg)
    losses = batch_losses(model, data, 16, batch_size=4, max_batches=6)
    assert len(losses) == 6
    assert sum(losses) / 6 == pytest.approx(evaluate(model, data, 16, 4, 6, amp=False)["loss"], rel=1e-4)


def test_shape_spec_says_what_to_fix():
    with pytest.raises(ValueError, match="ShapeSpec.depths"):
        ShapeSpec(depths=(1, 2))
    with pytest.raises(ValueError, match="by at least 2x"):
        ShapeSpec(contrast_params=(20_000,))
    with pytest.raises(ValueError, match="seed_depth"):
        ShapeSpec(seed_depth=3)
    assert shape_spec("fast").seed_depth is None and shape_spec("book").seed_depth == 2
