"""Serving (report §6.2, vLLM): paged KV blocks, PagedAttention, continuous batching, parallel sampling.

- ``block_manager.py``: blocks, block tables, reference counts, copy-on-write fork, prefix caching;
- ``paged_attention.py`` (PyTorch gather) and ``paged_attention_triton.py`` (Triton decode kernel);
- ``sequence.py`` (``SamplingParams``, ``Sequence``), ``scheduler.py`` (continuous batching, preemption),
  ``paged_forward.py`` (the forward over a ragged batch through the blocks), ``model_runner.py`` (the pool and the
  step's inputs), ``decode_graphs.py`` (CUDA graphs of pure-decode
  steps), ``engine.py`` (``LLMEngine``), ``config.py`` (``EngineConfig``), ``outputs.py`` (``RequestOutput``,
  ``CompletionOutput``, ``StreamEvent``), ``llm.py`` (``LLM``: vLLM's offline entry point, a model by name or path).
"""

from minillm.infer.block_manager import BlockManager, block_hash
from minillm.infer.engine import CompletionOutput, EngineConfig, LLMEngine, RequestOutput, StreamEvent
from minillm.infer.llm import LLM
from minillm.infer.paged_attention import (gather_kv, paged_decode_attention, paged_decode_attention_torch,
                                           paged_prefill_attention_torch, write_kv)
from minillm.infer.scheduler import Scheduler, SchedulerConfig
from minillm.infer.sequence import SamplingParams, Sequence

__all__ = ["BlockManager", "block_hash", "CompletionOutput", "EngineConfig", "LLM", "LLMEngine", "RequestOutput",
           "StreamEvent",
           "gather_kv", "paged_decode_attention", "paged_decode_attention_torch", "paged_prefill_attention_torch",
           "write_kv", "Scheduler", "SchedulerConfig", "SamplingParams", "Sequence"]
