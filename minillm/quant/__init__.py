"""Quantization for inference (report §6.2): INT8 absmax, FP8 row-wise with a capped scale, and the
policy of which matmuls to quantize.

- ``int8.py``: ``quantize_int8_absmax`` / ``dequantize_int8``, ``int8_matmul`` (``torch._int_mm`` or exact
  emulation), ``Int8Linear`` (weight-only or weight + dynamic per-token activation);
- ``fp8.py``: ``quantize_fp8_rowwise`` (e4m3, one scale per row, activation scale capped at 1200),
  ``fp8_matmul`` (``torch._scaled_mm`` or exact emulation), ``Fp8Linear``;
- ``policy.py``: ``QuantConfig``, ``quantize_model`` (FFN only, first and last blocks skipped), ``QuantReport``.

In torchao's words: ``quantize_model(model, scheme)`` is ``torchao.quantization.quantize_(model, config)``, in place,
with a ``filter_fn`` that encodes the report's policy; ``"int8_weight"`` is ``Int8WeightOnlyConfig()``,
``"int8_dynamic"`` is ``Int8DynamicActivationInt8WeightConfig()`` (per-token activation scales), and
``"fp8_rowwise"`` is ``Float8DynamicActivationFloat8WeightConfig(granularity=PerRow())``. We differ on purpose in
two places: the FP8 activation scale is capped (``SCALE_UB``, report §6.2; torchao has no cap by default), and
``quantize_model`` returns a ``QuantReport`` of what it replaced instead of ``None``.
"""

from minillm.quant.fp8 import (FP8_DTYPE, FP8_MAX, SCALE_UB, Fp8Linear, dequantize_fp8, fp8_matmul,
                               quantize_fp8_rowwise, scaled_mm_supported)
from minillm.quant.int8 import INT8_MAX, Int8Linear, dequantize_int8, int8_matmul, quantize_int8_absmax
from minillm.quant.policy import SCHEMES, QuantConfig, QuantReport, module_bytes, quantize_model

__all__ = [
    "FP8_DTYPE", "FP8_MAX", "SCALE_UB", "Fp8Linear", "dequantize_fp8", "fp8_matmul", "quantize_fp8_rowwise",
    "scaled_mm_supported", "INT8_MAX", "Int8Linear", "dequantize_int8", "int8_matmul", "quantize_int8_absmax",
    "SCHEMES", "QuantConfig", "QuantReport", "module_bytes", "quantize_model",
]
