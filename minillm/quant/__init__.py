"""Quantization for inference (report §6.2): INT8 absmax, FP8 row-wise with a capped scale, and the
policy of which matmuls to quantize.

- ``int8.py``: ``quantize_int8_absmax`` / ``dequantize_int8``, ``int8_matmul`` (``torch._int_mm`` or exact
  emulation), ``Int8Linear`` (weight-only or weight + dynamic per-token activation);
- ``fp8.py``: ``quantize_fp8_rowwise`` (e4m3, one scale per row, activation scale capped at 1200),
  ``fp8_matmul`` (``torch._scaled_mm`` or exact emulation), ``Fp8Linear``;
- ``policy.py``: ``QuantConfig``, ``quantize_model`` (FFN only, first and last blocks skipped), ``QuantReport``.
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
