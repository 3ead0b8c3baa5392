"""Micro-batched pipeline inference on paper: the schedule of ``pipelined_generate`` with modelled stage times.

Each stage call of ``pipelined_generate`` (stage ``s``, step ``t``, micro-batch ``m``) starts when its stage is free
and its input exists, and lasts ``cost.seconds(tokens)`` (``StageCost``: ``a + b · tokens``):

    start(s, t, m) = max(end of the stage's previous call,                       # calls in order (t, m)
                         end(s − 1, t, m) + hop        if s > 0,                  # activations from the stage before
                         end(K − 1, t − 1, m) + hop    if s = 0 and t > 0,        # the token, round the ring
                         barrier                       if t > 0)                  # every stage finished prefill
    end(s, t, m)   = start(s, t, m) + cost.seconds(B/M × (P if t = 0 else 1))

``hop`` is the time a message takes between stages (0: instant). With ``c`` the cost of one call, the closed forms
this recursion gives: micro-batch ``m``'s first token at ``(m + K) c_prefill``, prefill done at
``(M + K − 1) c_prefill`` (the GPipe fill), and one decode step every ``max(K, M) c_decode`` (a ring of ``K``
stages: with ``M < K`` micro-batches some stages idle, with ``M > K`` each token waits for the other micro-batches).

Micro-batching pays when a call on ``B/M`` sequences costs less than on ``B``: the ``a`` term does not shrink, so
an accelerator whose ``a`` dominates (small-batch decode) gains little, and a CPU (``a ≈ 0``) would gain most, were
its stages not sharing cores. Llama 3 report §6.1, Figure 24 measures this trade-off for 405B on two 8-GPU nodes.
"""

from __future__ import annotations

from minillm.parallel.pipeline_inference import GenerationTiming, PipelineInferenceConfig, StageCost
from minillm.parallel.timeline import StageEvent


def simulate_generation(n_stages: int, cfg: PipelineInferenceConfig, shape: tuple[int, int], cost: StageCost,
                        hop_s: float = 0.0) -> tuple[GenerationTiming, list[StageEvent]]:
    """The timing ``pipelined_generate`` would report with ``K = n_stages`` stages whose calls last exactly
    ``cost.seconds(tokens)`` and messages ``hop_s``: ``(GenerationTiming, events)``, times from the start."""
    K, M, new = n_stages, cfg.n_microbatches, cfg.max_new_tokens
    B, P = shape
    if K < 1:
        raise ValueError(f"n_stages must be >= 1, got {K}")
    if B % M:
        raise ValueError(f"batch of {B} prompts does not split into PipelineInferenceConfig.n_microbatches ({M}) "
                         f"equal micro-batches; use a divisor of {B}")
    if hop_s < 0:
        raise ValueError(f"hop_s must be >= 0 seconds, got {hop_s}")
    mb = B // M
    free = [0.0] * K                                                       # when each stage finishes its last call
    end: dict[tuple[int, int, int], float] = {}                            # (stage, step, micro) -> end time
    events, barrier = [], 0.0
    for t in range(new):
        dur = cost.seconds(mb * (P if t == 0 else 1))
        for m in range(M):
            for s in range(K):
                ready = 0.0 if s == 0 else end[s - 1, t, m] + hop_s
                if s == 0 and t > 0:
                    ready = end[K - 1, t - 1, m] + (hop_s if K > 1 else 0.0)
                start = max(free[s], ready, barrier if t > 0 else 0.0)
                end[s, t, m] = free[s] = start + dur
                events.append(StageEvent(s, "F", m, start, start + dur, t))
        if t == 0:
            barrier = max(free)                                            # every stage waits for the slowest
    token_at = [[end[K - 1, t, m] for t in range(new)] for m in range(M)]
    return GenerationTiming(token_at, barrier, B, P), events
