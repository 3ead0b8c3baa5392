"""Device choice and run modes."""

import pytest
import torch

from minillm import RunMode, pick_device, seed_everything


def test_pick_device_on_a_cpu_machine_uses_fp32():
    choice = pick_device()
    if not torch.cuda.is_available():
        assert choice.device.type in ("cpu", "mps")
    if choice.device.type == "cpu":
        assert choice.dtype == torch.float32


def test_pick_device_refuses_cuda_when_absent():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match="CUDA is not available"):
        pick_device("cuda")


@pytest.mark.parametrize(
    "env, expected",
    [({}, "book"), ({"MINILLM_MODE": "fast"}, "fast"), ({"MINILLM_FAST": "1"}, "fast"), ({"MINILLM_MODE": "FULL"}, "full")],
)
def test_run_mode_reads_the_environment(env, expected):
    assert RunMode.from_env(env).name == expected


def test_run_mode_rejects_unknown_and_contradictory_settings():
    with pytest.raises(ValueError, match="MINILLM_MODE"):
        RunMode.from_env({"MINILLM_MODE": "quick"})
    with pytest.raises(ValueError, match="contradicts"):
        RunMode.from_env({"MINILLM_FAST": "1", "MINILLM_MODE": "full"})


def test_pick_returns_the_setting_of_the_mode_and_full_falls_back_to_book():
    assert RunMode("fast").pick(1, 2, 3) == 1
    assert RunMode("book").pick(1, 2, 3) == 2
    assert RunMode("full").pick(1, 2, 3) == 3
    assert RunMode("full").pick(1, 2) == 2


def test_seed_everything_makes_torch_repeatable():
    seed_everything(7)
    a = torch.randn(4)
    gen = seed_everything(7)
    assert torch.equal(a, torch.randn(4))
    assert torch.equal(torch.randn(4, generator=gen), torch.randn(4, generator=torch.Generator().manual_seed(7)))
