"""Supervised fine-tuning: next-token loss on the assistant's tokens only, chats packed with document masks (§4.1.3).

The report: "we fine-tune the pre-trained language model using a standard cross entropy loss on the target tokens
(while masking loss on prompt tokens)". In a chat the *targets* are the assistant turns' content and the token that
ends each turn (``<|eot_id|>``: the model must learn to stop); the system and user turns, ``<|begin_of_text|>`` and
every ``<|start_header_id|>assistant<|end_header_id|>\\n\\n`` header are prompt. ``chat_example`` finds the target
spans with the tokenizer's own chat format, by encoding growing prefixes of the chat:

    prompt_i = encode_chat(messages[:i], add_generation_prompt=True)     # ... <|start_header_id|>assistant<|end_header_id|>\\n\\n
    full_i   = encode_chat(messages[:i + 1])                              # ... content <|eot_id|>
    targets  = full_i[len(prompt_i):]                                     # content <|eot_id|>

which holds for any template whose prefixes are prefixes (checked). ``last_turn_only`` learns only the last
assistant turn (earlier turns become context, as in rejection-sampled dialogues); ``train_on_special=False`` also
drops special tokens from the targets (DPO, §4.1.4, masks the formatting tokens).

Training packs several chats into one row of ``seq_len`` tokens (``pack_examples``) with document ids, so a chat never
attends to its neighbours (``minillm.Llama(tokens, doc_ids=...)``, as in pre-training: ``minillm.train.packing``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
from tqdm.auto import tqdm
from torch import nn

from minillm.tokenizer import validate_messages
from minillm.train.evaluate import token_losses
from minillm.train.optim import OptimConfig, clip_gradients, make_optimizer
from minillm.train.packing import IGNORE
from minillm.train.schedules import LRSchedule


@dataclass(frozen=True)
class ChatExample:
    """Token ids of a whole chat ``(T,)`` and ``loss_mask (T,)``: True where the token is a target."""

    input_ids: list[int]
    loss_mask: list[bool]

    @property
    def labels(self) -> list[int]:
        """Hugging Face style labels aligned with ``input_ids``: the id where it is a target, else ``IGNORE``."""
        return [t if m else IGNORE for t, m in zip(self.input_ids, self.loss_mask)]

    @property
    def prompt_len(self) -> int:
        """Tokens before the first target (the prompt of a single-turn chat)."""
        return self.loss_mask.index(True) if any(self.loss_mask) else len(self.input_ids)


def chat_example(tokenizer, messages: Sequence[dict], last_turn_only: bool = False,
                 train_on_special: bool = True) -> ChatExample:
    """``(input_ids, loss_mask)`` of a chat ending with an assistant turn (see the module docstring)."""
    messages = validate_messages(messages)
    if not messages or messages[-1]["role"] != "assistant":
        raise ValueError("chat_example needs a chat that ends with an assistant message (the target)")
    full = tokenizer.encode_chat(messages, add_generation_prompt=False)
    mask = [False] * len(full)
    turns = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    special = set(tokenizer.special_ids)
    for i in turns[-1:] if last_turn_only else turns:
        prompt = tokenizer.encode_chat(messages[:i], add_generation_prompt=True)
        upto = tokenizer.encode_chat(messages[:i + 1], add_generation_prompt=False)
        if full[:len(prompt)] != prompt or full[:len(upto)] != upto:
            raise ValueError("the chat template does not encode a chat's prefixes as prefixes of the chat, so target "
                             "spans cannot be found; use the Llama 3 format (Tokenizer without chat_template)")
        for t in range(len(prompt), len(upto)):
            mask[t] = train_on_special or full[t] not in special
    return ChatExample(full, mask)


def response_example(tokenizer, prompt: Sequence[dict], response: str, train_on_special: bool = True) -> ChatExample:
    """The example of ``prompt`` answered by ``response``, targets on that answer only."""
    chat = [*prompt, {"role": "assistant", "content": response}]
    return chat_example(tokenizer, chat, last_turn_only=True, train_on_special=train_on_special)


@dataclass(frozen=True)
class SFTBatch:
    """Packed rows: ``tokens``, next-token ``targets`` (``IGNORE`` off target) and ``doc_ids``, each ``(R, T)``."""

    tokens: torch.Tensor
    targets: torch.Tensor
    doc_ids: torch.Tensor

    @property
    def n_targets(self) -> int:
        return int((self.targets != IGNORE).sum())

    def to(self, device) -> "SFTBatch":
        return SFTBatch(self.tokens.to(device), self.targets.to(device), self.doc_ids.to(device))


def pack_examples(examples: Sequence[ChatExample], seq_len: int, pad_id: int) -> SFTBatch:
    """First-fit packing of whole chats into rows of ``seq_len`` tokens (a chat is never cut); the rest of a row is
    ``pad_id`` in a document of its own, without targets. Target ``t`` is token ``t + 1`` where that is a target of
    the same chat."""
    rows: list[list[int]] = []                                         # example indices per row
    space: list[int] = []
    for i, ex in enumerate(examples):
        n = len(ex.input_ids)
        if n > seq_len:
            raise ValueError(f"a chat of {n} tokens does not fit seq_len={seq_len}; raise seq_len or shorten it")
        row = next((r for r, free in enumerate(space) if free >= n), None)
        if row is None:
            rows.append([])
            space.append(seq_len)
            row = len(rows) - 1
        rows[row].append(i)
        space[row] -= n
    R = len(rows)
    tokens = torch.full((R, seq_len), pad_id, dtype=torch.long)
    labels = torch.full((R, seq_len), IGNORE, dtype=torch.long)       # (R, T): aligned with tokens
    doc_ids = torch.empty((R, seq_len), dtype=torch.long)
    for r, members in enumerate(rows):
        at = 0
        for d, i in enumerate(members):
            ex = examples[i]
            n = len(ex.input_ids)
            tokens[r, at:at + n] = torch.tensor(ex.input_ids)
            labels[r, at:at + n] = torch.tensor(ex.labels)
            doc_ids[r, at:at + n] = d
            at += n
        doc_ids[r, at:] = len(members)                                 # padding: a document of its own
    targets = torch.full_like(labels, IGNORE)
    targets[:, :-1] = labels[:, 1:]                                    # (R, T): predict the next token
    targets[:, :-1][doc_ids[:, 1:] != doc_ids[:, :-1]] = IGNORE       # never across chats
    return SFTBatch(tokens, targets, doc_ids)


def sft_loss(model: nn.Module, batch: SFTBatch, use_doc_mask: bool = True) -> torch.Tensor:
    """Mean cross-entropy over the batch's target tokens (a scalar)."""
    losses = token_losses(model, batch.tokens, batch.targets, batch.doc_ids if use_doc_mask else None)  # (R, T)
    return losses.sum() / max(batch.n_targets, 1)


def optimizer_and_schedule(model: nn.Module, steps: int, lr: float, warmup_steps: int, final_lr: float,
                           weight_decay: float = 0.0) -> tuple[torch.optim.Optimizer, LRSchedule]:
    """AdamW (``minillm.train.optim``) and a warm-up + cosine schedule: what every post-training stage steps with."""
    return make_optimizer(model, OptimConfig(weight_decay=weight_decay)), LRSchedule(lr, warmup_steps, steps, final_lr)


def check_per_pair(**tensors: torch.Tensor) -> None:
    """The one check of the tensors going into a pairwise loss (DPO, Bradley-Terry): each a floating tensor of shape
    ``(N,)``, one value per pair, all with the same ``N``; a ``ValueError`` naming every shape otherwise. Without it
    a ``(N, 1)`` beside a ``(N,)`` broadcasts silently into an ``(N, N)`` loss."""
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor of shape (N,), got {type(t).__name__}")
    shapes = ", ".join(f"{name} {tuple(t.shape)}" for name, t in tensors.items())
    if any(t.ndim != 1 for t in tensors.values()) or len({t.shape for t in tensors.values()}) > 1:
        raise ValueError(f"expected one value per pair, every tensor of the same shape (N,); got {shapes}: "
                         f"squeeze a trailing dimension of size 1 (t.squeeze(-1)) or align the batches")
    for name, t in tensors.items():
        if not t.is_floating_point():
            raise ValueError(f"{name} must be floating point (log-probabilities or rewards), got {t.dtype}")


def check_run_config(cfg, counts: Sequence[str]) -> None:
    """Validate a post-training run config: the fields ``counts`` are positive ints, and ``lr``, ``warmup_steps``,
    ``steps`` and ``final_lr`` make a valid ``LRSchedule`` (its own checks, reported under the config's name)."""
    name = type(cfg).__name__
    for field in counts:
        value = getattr(cfg, field)
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}.{field} must be a positive int, got {value!r}")
    try:
        LRSchedule(cfg.lr, cfg.warmup_steps, cfg.steps, cfg.final_lr)
    except ValueError as e:
        raise ValueError(f"{name}'s schedule (lr={cfg.lr}, warmup_steps={cfg.warmup_steps}, steps={cfg.steps}, "
                         f"final_lr={cfg.final_lr}; LRSchedule calls them peak_lr, warmup_steps, total_steps, "
                         f"final_lr) is invalid: {e}") from None


def shuffled_cycle(n: int, generator: torch.Generator) -> Iterator[int]:
    """Indices ``0 … n-1`` forever, each pass in a fresh order drawn from ``generator`` (drawn when the last pass is
    used up, so runs with the same seed take the same examples in the same order)."""
    while True:
        order = torch.randperm(n, generator=generator).tolist()
        while order:
            yield order.pop()


def optimizer_step(model: nn.Module, optimizer: torch.optim.Optimizer, lr: float, grad_clip: float | None) -> float:
    """Clip the gradient norm, set the learning rate, step, clear the gradients; return the norm before clipping."""
    grad_norm = clip_gradients(model, grad_clip)
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return grad_norm


@dataclass(frozen=True)
class SFTConfig:
    """Fine-tuning run. The report (§4.1.3) uses lr 1e-5 for 8.5K-9K steps on the 405B model; a tiny model from
    scratch-like weights wants a larger rate."""

    steps: int = 100
    examples_per_step: int = 16
    seq_len: int = 256
    lr: float = 1e-3
    warmup_steps: int = 5
    final_lr: float = 1e-4
    weight_decay: float = 0.0
    grad_clip: float | None = 1.0
    last_turn_only: bool = False
    use_doc_mask: bool = True
    seed: int = 0
    progress: bool = True                  # a tqdm bar over the steps

    def __post_init__(self) -> None:
        check_run_config(self, ("steps", "examples_per_step", "seq_len"))



def train_sft(model: nn.Module, tokenizer, chats: Sequence[Sequence[dict]], cfg: SFTConfig = SFTConfig()) -> list[dict]:
    """Fine-tune ``model`` in place on ``chats`` (each ending with an assistant turn): ``cfg.examples_per_step``
    chats a step, cycled in a seeded shuffled order. Returns one history row per step."""
    if not chats:
        raise ValueError("train_sft got no chats")
    examples = [chat_example(tokenizer, c, cfg.last_turn_only) for c in chats]
    device = next(model.parameters()).device
    optimizer, schedule = optimizer_and_schedule(model, cfg.steps, cfg.lr, cfg.warmup_steps, cfg.final_lr,
                                                 cfg.weight_decay)
    sampler = shuffled_cycle(len(examples), torch.Generator().manual_seed(cfg.seed))
    history = []
    model.train()
    for step in tqdm(range(cfg.steps), desc="SFT", disable=not cfg.progress):
        picked = [examples[next(sampler)] for _ in range(cfg.examples_per_step)]
        batch = pack_examples(picked, cfg.seq_len, tokenizer.eos_id).to(device)
        loss = sft_loss(model, batch, cfg.use_doc_mask)
        loss.backward()
        grad_norm = optimizer_step(model, optimizer, schedule.lr(step), cfg.grad_clip)
        history.append({"step": step + 1, "loss": loss.item(), "grad_norm": grad_norm, "lr": schedule.lr(step),
                        "rows": batch.tokens.shape[0], "targets": batch.n_targets})
    model.eval()
    return history
