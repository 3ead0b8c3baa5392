"""Device choice and run modes."""

import pytest
import torch

from minillm import RunMode, pick_device, seed_everything


def _expected_device() -> tuple[str, torch.dtype]:
    """What pick_device() must choose on this machine, spelled out from the hardware it has."""
    if torch.cuda.is_available():
        return "cuda", torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps", torch.float16
    return "cpu", torch.float32


def test_pick_device_chooses_the_best_device_of_this_machine_and_its_dtype():
    choice = pick_device()
    assert (choice.device.type, choice.dtype) == _expected_device()


@pytest.mark.parametrize("cuda, bf16, mps, expected", [
    (True, True, True, ("cuda", torch.bfloat16)),             # CUDA first, bf16 where the GPU has it
    (True, False, False, ("cuda", torch.float32)),            # an older GPU: fp32, not bf16
    (False, False, True, ("mps", torch.float16)),
    (False, False, False, ("cpu", torch.float32)),
])
def test_pick_device_prefers_cuda_then_mps_then_cpu_on_any_machine(monkeypatch, cuda, bf16, mps, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    choice = pick_device()
    assert (choice.device.type, choice.dtype) == expected


def test_pick_device_on_the_cpu_when_asked_uses_fp32_even_with_a_gpu():
    choice = pick_device("cpu")
    assert (choice.device, choice.dtype) == (torch.device("cpu"), torch.float32)


def test_pick_device_refuses_cuda_when_absent(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)          # a CPU machine, on any machine
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
