"""Pipeline parallelism with the GPipe schedule (Huang et al., 2019, §2.2), over point-to-point send/recv.

The model's layers are cut into ``K`` consecutive **stages**, one per rank; the mini-batch into ``M`` equal
**micro-batches**. One training step on stage ``s``:

    for m in 0..M-1:   x = tokens[m] (s = 0) or recv(s-1);  y = stage(x);  send(y, s+1)  or  loss_m = ℓ(y)/M (s = K-1)
    for m in 0..M-1:   g = recv(s+1) (or 1 for loss_m on the last stage);  backward(y, g);  send(x.grad, s-1)
    optimizer.step()   # once, on gradients accumulated over the M micro-batches

All forwards, then all backwards: a stage keeps the activations of all ``M`` micro-batches until their backward
(GPipe recomputes them to save memory; we keep them). While micro-batch ``m`` is on stage ``s``, micro-batch
``m + 1`` can be on stage ``s − 1``: that is where the speed-up comes from, and the ``K − 1`` slots at each end of a
phase in which some stages have nothing to do are the *bubble* (``timeline.gpipe_bubble``). Dividing each
micro-batch's loss by ``M`` makes the accumulated gradient that of the mean loss over the mini-batch, so the step
equals one process's step on the whole mini-batch (``tests/test_parallel_pipeline.py``).

Activations travel forward and their gradients backward as ``(B/M, T, dim)`` tensors; sends are asynchronous so a
stage goes on with the next micro-batch while its output is in flight. The same split runs under PyTorch's
``torch.distributed.pipelining`` (``PipelineStage`` + ``ScheduleGPipe``) in the tests, for comparison.

Llama 3 405B trained with 16 pipeline ranks (report §3.3.2, Table 4) and a modified schedule in which each rank
holds several non-consecutive stages and the number of micro-batches is tunable, to fight this bubble and balance
memory (§3.3.2, Figure 6); its inference used 2 stages, one per node (§6.1, ``pipeline_inference.py``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from minillm.model.attention import causal_mask
from minillm.model.llama import Llama
from minillm.model.rope import rope_cos_sin, rope_frequencies
from minillm.parallel.communications import CommGroup
from minillm.parallel.timeline import StageEvent


@dataclass(frozen=True)
class PipelineConfig:
    """``n_stages`` ranks hold consecutive layers; each mini-batch is cut into ``n_microbatches`` micro-batches."""

    n_stages: int
    n_microbatches: int = 1

    def __post_init__(self) -> None:
        for name in ("n_stages", "n_microbatches"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"PipelineConfig.{name} must be a positive integer, got {value!r}")

    def check_layers(self, n_layers: int) -> None:
        """Raise ``ValueError`` unless every stage gets at least one layer."""
        if self.n_stages > n_layers:
            raise ValueError(f"PipelineConfig.n_stages ({self.n_stages}) exceeds the model's n_layers ({n_layers}): "
                             f"each stage needs at least one layer; use at most {n_layers} stages")

    def check_batch(self, batch_size: int) -> None:
        """Raise ``ValueError`` unless the batch splits into equal micro-batches."""
        if batch_size % self.n_microbatches:
            raise ValueError(f"batch of {batch_size} sequences does not split into PipelineConfig.n_microbatches "
                             f"({self.n_microbatches}) equal micro-batches; use a divisor of {batch_size}")


def split_layers(n_layers: int, n_stages: int) -> list[range]:
    """Consecutive layer ranges, one per stage, sizes differing by at most one (the first stages take the extra)."""
    PipelineConfig(n_stages).check_layers(n_layers)
    base, extra = divmod(n_layers, n_stages)
    out, start = [], 0
    for s in range(n_stages):
        end = start + base + (s < extra)
        out.append(range(start, end))
        start = end
    return out


class LlamaStage(nn.Module):
    """Layers ``layers`` of a ``Llama`` (sharing its parameters); stage 0 also embeds the tokens and the last stage
    applies the final norm and the output head.

    forward: ``tokens (B, T)`` (first stage) or ``h (B, T, dim)`` -> ``h (B, T, dim)`` or ``logits (B, T, vocab)``
    (last stage). With a ``KVCache`` of ``len(layers)`` layers and ``start``, it runs prefill/decode like
    ``Llama.forward`` (prompts of equal length: no padding masks)."""

    def __init__(self, model: Llama, layers: range, first: bool, last: bool):
        super().__init__()
        if model.cfg.tie_embeddings and not (first and last):
            raise ValueError("a pipeline split of a model with tie_embeddings=True would need the shared embedding on "
                             "both the first and the last stage; untie it (ModelConfig.tie_embeddings=False)")
        self.cfg, self.first, self.last, self.layer_ids = model.cfg, first, last, layers
        self.tok_embeddings = model.tok_embeddings if first else None
        self.layers = nn.ModuleList(model.layers[i] for i in layers)
        self.norm = model.norm if last else None
        self.output = model.output if last else None
        self.inv_freq = rope_frequencies(model.cfg.head_dim, model.cfg.rope_theta, model.cfg.rope_scaling)  # fp32

    def forward(self, x: torch.Tensor, cache=None, start: int = 0, last_only: bool = False) -> torch.Tensor:
        h = self.tok_embeddings(x) if self.first else x                    # (B, T, dim)
        B, T = h.shape[:2]
        positions = torch.arange(start, start + T, device=h.device).expand(B, T)
        cos, sin = rope_cos_sin(positions, self.inv_freq.to(h.device), h.dtype)   # (B, 1, T, head_dim)
        is_causal, mask = T > 1 and start == 0, None
        if T > 1 and start > 0:
            mask = causal_mask(T, start + T, h.device)                      # chunked prefill
        for i, layer in enumerate(self.layers):
            h = layer(h, cos, sin, mask, is_causal, cache, i, start)
        if self.last:
            h = self.output(self.norm(h[:, -1:] if last_only else h))      # (B, T or 1, vocab)
        return h


def build_stage(model: Llama, stage: int, n_stages: int) -> LlamaStage:
    """Stage ``stage`` of ``n_stages`` of ``model``, layers split by ``split_layers``."""
    layers = split_layers(model.cfg.n_layers, n_stages)[stage]
    return LlamaStage(model, layers, first=stage == 0, last=stage == n_stages - 1)


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy. ``logits (B, T, vocab)``, ``targets (B, T)`` -> scalar."""
    return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())


class GPipe:
    """The GPipe schedule for this rank's ``stage``. ``run`` does all forwards then all backwards of one mini-batch
    and leaves the accumulated gradients in the stage's parameters; ``train_step`` adds the optimizer step.

    ``events`` collects a ``StageEvent`` per F and B. ``min_op_s`` makes every F last at least that long and every B
    twice that (sleeping the rest): a stand-in for one accelerator per stage when stages share CPU cores, so that the
    timeline shows the schedule rather than the contention. 0 (default) times the real computation."""

    def __init__(self, stage: nn.Module, cfg: PipelineConfig, pp: CommGroup, dim: int,
                 loss_fn=lm_loss, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                 min_op_s: float = 0.0):
        if cfg.n_stages != pp.size:
            raise ValueError(f"PipelineConfig.n_stages ({cfg.n_stages}) must equal the pipeline group's size "
                             f"({pp.size}): one stage per rank")
        if min_op_s < 0:
            raise ValueError(f"min_op_s must be >= 0 seconds, got {min_op_s}")
        self.stage, self.cfg, self.pp, self.dim = stage, cfg, pp, dim
        self.loss_fn, self.device, self.dtype, self.min_op_s = loss_fn, torch.device(device), dtype, min_op_s
        self.s, self.K, self.M = pp.rank, pp.size, cfg.n_microbatches
        self.events: list[StageEvent] = []

    def _record(self, kind: str, micro: int, start: float) -> None:
        floor = self.min_op_s * (2 if kind == "B" else 1)
        if floor:
            time.sleep(max(0.0, start + floor - time.perf_counter()))
        self.events.append(StageEvent(self.s, kind, micro, start, time.perf_counter()))

    def run(self, tokens: torch.Tensor | None = None, targets: torch.Tensor | None = None,
            shape: tuple[int, int] | None = None) -> float | None:
        """One mini-batch. Stage 0 passes ``tokens (B, T)``, the last stage ``targets (B, T)``, other stages the
        ``shape (B, T)``. Returns the mini-batch's mean loss on the last stage, ``None`` elsewhere."""
        first, last = self.s == 0, self.s == self.K - 1
        for name, value, needed in (("tokens", tokens, first), ("targets", targets, last)):
            if needed and value is None:
                raise ValueError(f"pipeline stage {self.s} of {self.K} needs {name}")
        B, T = shape if shape is not None else (tokens if tokens is not None else targets).shape
        self.cfg.check_batch(B)
        mb, M = B // self.M, self.M
        act = (mb, T, self.dim)                                             # what travels between stages
        inputs, outputs, pending, loss = [], [], [], torch.zeros(())
        for m in range(M):                                                  # ---- all forwards
            if first:
                x = tokens[m * mb:(m + 1) * mb].to(self.device)             # (mb, T)
            else:
                x = self.pp.recv(act, self.dtype, self.device, self.s - 1, f"activations of micro-batch {m}")
                x.requires_grad_()
            t = time.perf_counter()
            y = self.stage(x)                                               # (mb, T, dim) or logits (mb, T, vocab)
            if last:
                y = self.loss_fn(y, targets[m * mb:(m + 1) * mb].to(self.device)) / M
                loss = loss + y.detach().cpu()
            self._record("F", m, t)
            if not last:
                pending.append(self.pp.send(y, self.s + 1))                # (mb, T, dim), on its way while we go on
            inputs.append(x)
            outputs.append(y)
        for p in pending:
            p.wait()
        pending = []
        for m in range(M):                                                  # ---- all backwards
            grad = None if last else self.pp.recv(act, self.dtype, self.device, self.s + 1,
                                                   f"the gradient of micro-batch {m}")
            t = time.perf_counter()
            torch.autograd.backward(outputs[m], grad)                       # accumulates into .grad
            self._record("B", m, t)
            if not first:
                pending.append(self.pp.send(inputs[m].grad, self.s - 1))   # (mb, T, dim)
            outputs[m] = inputs[m] = None                                   # free this micro-batch's activations
        for p in pending:
            p.wait()
        return float(loss) if last else None

    def train_step(self, optimizer: torch.optim.Optimizer, tokens=None, targets=None, shape=None) -> float | None:
        """``zero_grad``, ``run``, one ``optimizer.step()``."""
        optimizer.zero_grad(set_to_none=True)
        loss = self.run(tokens, targets, shape)
        optimizer.step()
        return loss
