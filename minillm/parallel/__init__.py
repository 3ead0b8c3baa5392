"""Parallelism (report §3.3.2, §6.1): data, tensor and pipeline parallelism on ``torch.distributed``, and the launcher.

- ``communications``: process groups with a byte log; Megatron's ``f``/``g`` operators; point-to-point send/recv;
- ``data_parallel``: batch sharding, a hand-written bucketed gradient all-reduce, and DDP;
- ``tensor_parallel``: column/row-parallel linears, attention heads (and GQA's KV heads) and SwiGLU units split
  Megatron-style, ``shard_llama``;
- ``pipeline_parallel``: layer stages and the GPipe schedule (all forwards, all backwards, one optimizer step);
- ``timeline``: per-stage F/B events, measured bubble vs ``(K − 1)/(M + K − 1)``, Gantt charts;
- ``pipeline_inference``: micro-batched prefill and decode through pipeline stages (the report's 405B serving);
- ``pipeline_model``: the same schedule computed on paper from a modelled stage cost ``a + b · tokens``;
- ``launch``: ``torchrun`` from Python with bounded time and clear errors; multi-node flags;
- ``jobs``: the runs the book and ``benchmarks/pipeline.py`` launch.
"""

from minillm.parallel.communications import CommGroup, CommLog, copy_to_tp, reduce_from_tp
from minillm.parallel.data_parallel import (DataParallelConfig, allreduce_gradients, broadcast_parameters, ddp,
                                            shard_batch)
from minillm.parallel.launch import (DistributedRunError, LaunchConfig, RunResult, init_distributed, pick_backend,
                                     torchrun, worker)
from minillm.parallel.pipeline_inference import (GenerationTiming, PipelineInferenceConfig, StageCost,
                                                 pipelined_generate)
from minillm.parallel.pipeline_model import simulate_generation
from minillm.parallel.pipeline_parallel import (GPipe, LlamaStage, PipelineConfig, build_stage, lm_loss,
                                                split_layers)
from minillm.parallel.tensor_parallel import (ColumnParallelLinear, RowParallelLinear, TensorParallelAttention,
                                              TensorParallelConfig, TensorParallelFeedForward, shard_llama,
                                              tp_allreduce_bytes)
from minillm.parallel.timeline import StageEvent, bubble_fraction, gpipe_bubble, gpipe_schedule, plot_timeline

__all__ = [
    "CommGroup", "CommLog", "copy_to_tp", "reduce_from_tp", "DataParallelConfig", "allreduce_gradients",
    "broadcast_parameters", "ddp", "shard_batch", "DistributedRunError", "LaunchConfig", "RunResult",
    "init_distributed", "pick_backend", "torchrun", "worker", "GenerationTiming", "PipelineInferenceConfig",
    "StageCost", "pipelined_generate", "simulate_generation", "GPipe", "LlamaStage", "PipelineConfig", "build_stage", "lm_loss", "split_layers",
    "ColumnParallelLinear", "RowParallelLinear", "TensorParallelAttention", "TensorParallelConfig",
    "TensorParallelFeedForward", "shard_llama", "tp_allreduce_bytes", "StageEvent", "bubble_fraction",
    "gpipe_bubble", "gpipe_schedule", "plot_timeline",
]
