"""Which matmuls to quantize: the report's policy, every choice configurable (report §6.2).

The report quantizes "most parameters and activations in the feedforward network layers", which account for about
half of inference compute, and keeps the rest in bf16:
- **not attention**: its projections (and the attention itself) stay bf16 (``include_attention=False``);
- **not the first and last Transformer blocks** (after Zhang et al., 2021), which are the most sensitive
  (``skip_first_last=True``);
- the embedding and the output head are never quantized here either.

``quantize_model(model, "fp8_rowwise")`` swaps the chosen ``nn.Linear`` modules of a ``minillm.Llama`` in place for
``Fp8Linear`` / ``Int8Linear`` and returns a ``QuantReport`` naming what was replaced, what was skipped and why, and the
weight bytes before and after. Quantize after moving the model to its device and dtype.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from minillm.quant.fp8 import SCALE_UB, Fp8Linear
from minillm.quant.int8 import Int8Linear

SCHEMES = ("fp8_rowwise", "int8_weight", "int8_dynamic")
FFN_LINEARS = ("feed_forward.w13", "feed_forward.w2")
ATTENTION_LINEARS = ("attention.wqkv", "attention.wo")


@dataclass(frozen=True)
class QuantConfig:
    """How to quantize a model.

    - ``scheme``: ``"fp8_rowwise"`` (report §6.2: fp8 weights and dynamic fp8 activations, row-wise scales),
      ``"int8_weight"`` (int8 weights, bf16/fp32 matmul) or ``"int8_dynamic"`` (int8 weights and activations);
    - ``skip_first_last``: keep the first and last blocks in high precision (the report does);
    - ``include_ffn`` / ``include_attention``: which linears of each block (the report: FFN only);
    - ``scale_ub``: cap on the fp8 activation row absmax (the report's 1200), ``None`` for none;
    - ``impl``: ``"auto"`` (GPU kernels where they run, exact emulation elsewhere), ``"kernel"`` or ``"emulate"``;
    - ``fast_accum``: fp8 kernel's fast accumulation; ``check_activations``: raise on NaN/inf activations at each call
      (a host sync per layer on GPUs: turn it off to measure speed).
    """

    scheme: str = "fp8_rowwise"
    skip_first_last: bool = True
    include_ffn: bool = True
    include_attention: bool = False
    scale_ub: float | None = SCALE_UB
    impl: str = "auto"
    fast_accum: bool = False
    check_activations: bool = True

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise ValueError(f"QuantConfig.scheme must be one of {SCHEMES}, got {self.scheme!r}")
        if self.impl not in ("auto", "kernel", "emulate"):
            raise ValueError(f"QuantConfig.impl must be 'auto', 'kernel' or 'emulate', got {self.impl!r}")
        if self.scale_ub is not None and not self.scale_ub > 0:
            raise ValueError(f"QuantConfig.scale_ub must be positive (the report uses 1200) or None, "
                             f"got {self.scale_ub}")
        if not (self.include_ffn or self.include_attention):
            raise ValueError("QuantConfig: set include_ffn and/or include_attention, otherwise nothing is quantized")

    def targets(self) -> tuple[str, ...]:
        """The linears of one block this config quantizes (names relative to the block)."""
        return (FFN_LINEARS if self.include_ffn else ()) + (ATTENTION_LINEARS if self.include_attention else ())

    def make(self, linear: nn.Linear) -> nn.Module:
        """The quantized replacement of one ``nn.Linear``."""
        if self.scheme == "fp8_rowwise":
            return Fp8Linear.from_linear(linear, scale_ub=self.scale_ub, impl=self.impl, fast_accum=self.fast_accum,
                                         check_activations=self.check_activations)
        activations = "dynamic" if self.scheme == "int8_dynamic" else "none"
        return Int8Linear.from_linear(linear, activations, impl=self.impl, check_activations=self.check_activations)


@dataclass
class QuantReport:
    """What ``quantize_model`` did: module names replaced, names skipped with the reason, weight bytes of the
    replaced modules before and after."""

    config: QuantConfig
    replaced: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    bytes_before: int = 0
    bytes_after: int = 0

    def __str__(self) -> str:
        ratio = self.bytes_after / self.bytes_before if self.bytes_before else float("nan")
        return (f"{self.config.scheme}: replaced {len(self.replaced)} linears, skipped {len(self.skipped)}; "
                f"their weights {self.bytes_before / 2**20:.1f} MiB -> {self.bytes_after / 2**20:.1f} MiB "
                f"({ratio:.2f}x)")


def module_bytes(module: nn.Module) -> int:
    """Bytes of a module's parameters and buffers (shared tensors counted once)."""
    seen, total = set(), 0
    for t in list(module.parameters()) + list(module.buffers()):
        if t.data_ptr() not in seen:
            seen.add(t.data_ptr())
            total += t.numel() * t.element_size()
    return total


def quantize_model(model: nn.Module, scheme: str | QuantConfig = "fp8_rowwise", skip_first_last: bool = True,
                   include_attention: bool = False, **options) -> QuantReport:
    """Replace the chosen linears of ``model`` (a ``minillm.Llama``: ``model.layers[i].feed_forward.w13`` ...) in
    place by quantized ones; return a ``QuantReport``. Report §6.2's policy by default: FFN matmuls only, the first
    and last blocks skipped. ``scheme`` is a scheme name (with the other arguments and ``options`` forming a
    ``QuantConfig``) or a whole ``QuantConfig``. Linears already quantized are left alone, so policies can be applied
    one after the other.
    """
    cfg = scheme if isinstance(scheme, QuantConfig) else QuantConfig(
        scheme=scheme, skip_first_last=skip_first_last, include_attention=include_attention, **options)
    layers = getattr(model, "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise ValueError(f"quantize_model expects a minillm.Llama (with .layers), got {type(model).__name__}")
    report = QuantReport(cfg)
    n = len(layers)
    for i, block in enumerate(layers):
        for name in FFN_LINEARS + ATTENTION_LINEARS:
            full = f"layers.{i}.{name}"
            parent_name, attr = name.rsplit(".", 1)
            parent = block.get_submodule(parent_name)
            linear = getattr(parent, attr)
            if name not in cfg.targets():
                report.skipped[full] = "attention (include_attention=False)" if name in ATTENTION_LINEARS \
                    else "FFN (include_ffn=False)"
            elif cfg.skip_first_last and i in (0, n - 1):
                report.skipped[full] = "first/last block (skip_first_last=True)"
            elif isinstance(linear, (Fp8Linear, Int8Linear)):
                report.skipped[full] = f"already {type(linear).__name__}"
            elif not isinstance(linear, nn.Linear):
                report.skipped[full] = f"not an nn.Linear ({type(linear).__name__})"
            else:
                with torch.no_grad():
                    new = cfg.make(linear)
                report.bytes_before += module_bytes(linear)
                report.bytes_after += module_bytes(new)
                setattr(parent, attr, new)
                report.replaced.append(full)
    return report
