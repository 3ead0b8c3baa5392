"""``EngineConfig``: the KV pool's size and the scheduler's limits (vLLM keeps its engine arguments in ``config.py`` too)."""

from __future__ import annotations

from dataclasses import dataclass

from minillm.infer.scheduler import SchedulerConfig


@dataclass(frozen=True)
class EngineConfig:
    """Pool and scheduling knobs. ``num_blocks=None`` sizes the KV pool from ``gpu_memory_utilization`` of the free
    GPU memory, or from ``cpu_kv_bytes`` on the CPU (capped at ``max_num_seqs`` full-length sequences).
    ``decode_graphs``: pure-decode steps of up to ``min(max_num_seqs, 512)`` sequences replay CUDA graphs
    (``decode_graphs.py``); ``"auto"`` does so on a GPU, ``"static"`` runs the same padded step eagerly (tests).
    ``enable_prefix_caching`` / ``enable_chunked_prefill`` are vLLM's engine arguments (both on by default, as in
    vLLM's V1 engine); ``seed`` seeds the engine's generator, used by requests without their own seed."""

    num_blocks: int | None = None
    block_size: int = 16
    max_num_seqs: int = 128
    max_num_batched_tokens: int = 2048
    enable_chunked_prefill: bool = True
    enable_prefix_caching: bool = True
    gpu_memory_utilization: float = 0.85
    cpu_kv_bytes: int = 1 << 30
    attn_impl: str = "auto"
    decode_graphs: str = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.num_blocks is not None and (not isinstance(self.num_blocks, int) or self.num_blocks < 1):
            raise ValueError(f"EngineConfig.num_blocks must be None or a positive int, got {self.num_blocks!r}")
        if not isinstance(self.block_size, int) or self.block_size < 1:
            raise ValueError(f"EngineConfig.block_size must be a positive int (vLLM uses 16), got {self.block_size!r}")
        if not 0.0 < self.gpu_memory_utilization <= 1.0:
            raise ValueError(f"EngineConfig.gpu_memory_utilization must be in (0, 1], got {self.gpu_memory_utilization}")
        if self.attn_impl not in ("auto", "torch", "triton"):
            raise ValueError(f"EngineConfig.attn_impl must be 'auto', 'torch' or 'triton', got {self.attn_impl!r}")
        if self.decode_graphs not in ("auto", "cuda", "static", "off"):
            raise ValueError(f"EngineConfig.decode_graphs must be 'auto' (CUDA graphs on a GPU), 'cuda', 'static' "
                             f"(the padded graph step run eagerly) or 'off', got {self.decode_graphs!r}")
        for name in ("enable_chunked_prefill", "enable_prefix_caching"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"EngineConfig.{name} must be a bool, got {getattr(self, name)!r}")
        SchedulerConfig(self.max_num_seqs, self.max_num_batched_tokens, self.enable_chunked_prefill)  # validates those
