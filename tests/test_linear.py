"""The CPU inference kernel choice in ``minillm.model.linear`` must not change results."""

import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import minillm.model.linear as linear_module
from minillm.model.linear import Linear, linear, use_onednn


@pytest.mark.parametrize("shape", [(1, 64), (3, 5, 64), (8, 1, 64)])
def test_linear_equals_f_linear_in_inference(shape):
    g = torch.Generator().manual_seed(0)
    w, x = torch.randn(96, 64, generator=g), torch.randn(*shape, generator=g)
    with torch.inference_mode():
        torch.testing.assert_close(linear(x, w), F.linear(x, w), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(linear(x.transpose(0, -2) if x.dim() == 3 else x, w),
                                   F.linear(x.transpose(0, -2) if x.dim() == 3 else x, w), rtol=1e-5, atol=1e-5)


def test_training_other_dtypes_and_long_prefills_use_f_linear(monkeypatch):
    w, x = torch.randn(8, 4, requires_grad=True), torch.randn(2, 4)
    assert not use_onednn(x, w)                      # grad enabled: autograd needs aten's kernel
    with torch.no_grad():
        assert use_onednn(x, w)
        assert not use_onednn(torch.randn(1, 65, 4), w)   # compute-bound: no per-length kernel builds
        assert not use_onednn(x.bfloat16(), w.bfloat16())
        monkeypatch.setattr(linear_module, "FORCE_ATEN", True)   # what MINILLM_CPU_LINEAR=aten sets at import
        assert not use_onednn(x, w)


def test_linear_layer_trains_like_nn_linear():
    torch.manual_seed(0)
    ours, ref = Linear(4, 3), torch.nn.Linear(4, 3, bias=False)
    ref.weight.data.copy_(ours.weight.data)
    x = torch.randn(5, 4)
    ours(x).square().sum().backward()
    ref(x).square().sum().backward()
    torch.testing.assert_close(ours.weight.grad, ref.weight.grad)


def test_a_bad_kernel_choice_is_refused_at_import():
    env = {**os.environ, "MINILLM_CPU_LINEAR": "mkl"}
    run = subprocess.run([sys.executable, "-c", "import minillm.model.linear"], env=env, capture_output=True, text=True)
    assert run.returncode != 0 and "MINILLM_CPU_LINEAR must be 'onednn'" in run.stderr
