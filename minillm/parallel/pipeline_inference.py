"""Micro-batched pipeline inference: greedy generation through ``K`` stages, ``M`` micro-batches in flight.

The report serves Llama 3 405B in BF16 on two machines of 8 H100s (it does not fit in one machine's 640 GB):
tensor parallelism inside each machine, where NVLink is fast, and pipeline parallelism across the two, where the
network is slower (report §6.1). Inference has no backward pass, so there is no pipeline flush at the end of a
step; but with one batch in flight only one stage works at a time. Splitting the local batch into micro-batches
lets stage 0 start micro-batch ``m + 1`` while stage 1 runs micro-batch ``m``. The report measured two
micro-batches on 4,096 input and 256 output tokens: better throughput at the same local batch size, some extra
latency from the added synchronisation points (§6.1, Figure 24).

One generation on stage ``s`` of ``K`` (``B`` sequences of ``P`` prompt tokens, ``M`` micro-batches of ``B/M``):

    step 0 (prefill):   for m: x = prompt[m] (s = 0) or recv(s-1)  (B/M, P, dim);  y = stage(x, cache[m])
                        s < K-1: send(y, s+1);   s = K-1: token = argmax(y[:, -1]) -> send to stage 0
    step t ≥ 1 (decode): the same with one token per sequence; stage 0 receives micro-batch m's token from the last
                        stage, so the pipeline is a ring, full when M ≥ K

Each stage keeps a ``KVCache`` per micro-batch for its own layers. Prompts have equal lengths (no padding).
A barrier separates prefill from decode so each phase can be timed on its own, as the report's Figure 24 plots them.

``cost`` (a ``StageCost``) simulates one device per stage: each stage call lasts at least ``a + b · tokens`` seconds
(it sleeps the rest), whatever the CPU does. ``pipeline_model.simulate_generation`` computes the same schedule on
paper, without processes or messages.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.distributed as dist

from minillm.model.kv_cache import KVCache
from minillm.parallel.communications import CommGroup
from minillm.parallel.pipeline_parallel import LlamaStage
from minillm.parallel.timeline import StageEvent


@dataclass(frozen=True)
class PipelineInferenceConfig:
    """``n_microbatches`` micro-batches in flight, ``max_new_tokens`` greedy tokens per sequence."""

    n_microbatches: int = 1
    max_new_tokens: int = 16

    def __post_init__(self) -> None:
        for name in ("n_microbatches", "max_new_tokens"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"PipelineInferenceConfig.{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class StageCost:
    """A modelled time for one stage call on ``tokens`` tokens: ``fixed_s + per_token_s · tokens`` seconds.

    The affine form is the roofline of an accelerator in two numbers: ``fixed_s`` is what a call costs whatever its
    size (reading the stage's weights from memory, kernel launches), ``per_token_s`` the compute each token adds.
    Below ``knee = fixed_s / per_token_s`` tokens a bigger batch costs little more than a small one (a GPU's decode);
    above it the cost grows with the batch (prefill). A CPU is close to ``fixed_s = 0``."""

    fixed_s: float
    per_token_s: float = 0.0

    def __post_init__(self) -> None:
        for name in ("fixed_s", "per_token_s"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"StageCost.{name} must be a number of seconds >= 0, got {value!r}")
        if self.fixed_s == self.per_token_s == 0:
            raise ValueError("StageCost with fixed_s = per_token_s = 0 models nothing; pass cost=None instead")

    def seconds(self, tokens: int) -> float:
        return self.fixed_s + self.per_token_s * tokens

    @property
    def knee(self) -> float:
        """Tokens per call at which the per-token work equals the fixed cost."""
        return self.fixed_s / self.per_token_s if self.per_token_s else float("inf")


@dataclass
class GenerationTiming:
    """Seconds since the start of generation (last stage): ``token_at[m][i]`` when micro-batch ``m`` got its token
    ``i``; ``prefill_end`` when every stage had finished prefill (the barrier)."""

    token_at: list[list[float]]
    prefill_end: float
    batch_size: int
    prompt_len: int

    def summary(self) -> dict:
        """Prefill: throughput = B·P / time to the last first token; latency = mean time to first token.
        Decode: throughput = generated tokens / decode time; latency = mean time between a sequence's tokens."""
        M = len(self.token_at)
        first = [t[0] for t in self.token_at]
        new = len(self.token_at[0])
        out = {"prefill_tok_s": self.batch_size * self.prompt_len / max(first),
               "prefill_latency_s": sum(first) / M}
        if new > 1:
            decode_s = max(t[-1] for t in self.token_at) - self.prefill_end
            out["decode_tok_s"] = self.batch_size * (new - 1) / decode_s
            out["decode_latency_s"] = sum((t[-1] - t[0]) / (new - 1) for t in self.token_at) / M
        return out


@torch.no_grad()
def pipelined_generate(stage: LlamaStage, pp: CommGroup, cfg: PipelineInferenceConfig,
                       prompts: torch.Tensor | None, shape: tuple[int, int],
                       device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                       cost: StageCost | None = None,
                       ) -> tuple[torch.Tensor | None, GenerationTiming | None, list[StageEvent]]:
    """Greedy generation of ``cfg.max_new_tokens`` tokens for ``shape = (B, P)`` prompts through the pipeline ``pp``
    (this rank runs ``stage``). Stage 0 passes ``prompts (B, P)``. Returns ``(tokens (B, new), timing, events)`` on
    the last stage and ``(None, None, events)`` elsewhere; ``events`` has one ``"F"`` per micro-batch and step.
    With ``cost``, each stage call lasts at least ``cost.seconds(micro-batch tokens)`` (one simulated device)."""
    s, K, M = pp.rank, pp.size, cfg.n_microbatches
    first, last = s == 0, s == K - 1
    B, P = shape
    if B % M:
        raise ValueError(f"batch of {B} prompts does not split into PipelineInferenceConfig.n_microbatches ({M}) "
                         f"equal micro-batches; use a divisor of {B}")
    if first and (prompts is None or tuple(prompts.shape) != (B, P)):
        raise ValueError(f"stage 0 needs prompts of shape {(B, P)}")
    mb, new, dim = B // M, cfg.max_new_tokens, stage.cfg.dim
    stage_cfg = stage.cfg.replace(n_layers=len(stage.layers))
    caches = [KVCache(stage_cfg, mb, P + new, dtype=dtype, device=device) for _ in range(M)]
    tokens = [[None] * new for _ in range(M)]                             # last stage: (mb,) per step
    token_at = [[0.0] * new for _ in range(M)]
    events, pending = [], []
    if K > 1:
        dist.barrier(group=pp.group)
    t0 = time.perf_counter()
    prefill_end = 0.0
    for step in range(new):
        T, start = (P, 0) if step == 0 else (1, P + step - 1)
        for m in range(M):
            if first and step == 0:
                x = prompts[m * mb:(m + 1) * mb].to(device)                 # (mb, P)
            elif first:
                x = (tokens[m][step - 1][:, None] if K == 1 else           # (mb, 1): last step's token
                     pp.recv((mb, 1), torch.long, device, K - 1, f"the tokens of micro-batch {m}, step {step - 1}"))
            else:
                x = pp.recv((mb, T, dim), dtype, device, s - 1, f"activations of micro-batch {m}, step {step}")
            t = time.perf_counter()
            y = stage(x, caches[m], start, last_only=last)                 # (mb, T, dim) or logits (mb, 1, vocab)
            if cost is not None:                                           # the simulated device's time
                time.sleep(max(0.0, t + cost.seconds(mb * T) - time.perf_counter()))
            if last:
                tokens[m][step] = y[:, -1].argmax(dim=-1)                  # (mb,)
                token_at[m][step] = time.perf_counter() - t0
                if step < new - 1 and K > 1:
                    pending.append(pp.send(tokens[m][step][:, None], 0))
            else:
                pending.append(pp.send(y, s + 1))
            events.append(StageEvent(s, "F", m, t, time.perf_counter(), step))
        if step == 0:
            if K > 1:
                dist.barrier(group=pp.group)
            prefill_end = time.perf_counter() - t0
        if len(pending) > 4 * M:                                          # keep the number of sends in flight bounded
            for p in pending[:-2 * M]:
                p.wait()
            pending = pending[-2 * M:]
    for p in pending:
        p.wait()
    if not last:
        return None, None, events
    out = torch.cat([torch.stack(tokens[m], dim=1) for m in range(M)])    # (B, new)
    return out, GenerationTiming(token_at, prefill_end, B, P), events
