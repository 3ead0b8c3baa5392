"""``LLMEngine``: continuous batching over a paged KV cache, with parallel sampling and prefix caching (vLLM §4).

    engine = LLMEngine(model, tokenizer=tok)                       # num_blocks=None: size the pool from memory
    engine = LLMEngine("smollm2")                                  # or a name / a Hugging Face folder / a GGUF file
    outs = engine.generate(["The capital of France is"], SamplingParams(n=4, temperature=0.8, max_tokens=32))
    outs[0].outputs[2].text
    for event in engine.stream(prompts, sampling_params): ...      # tokens as they are sampled
    rid = engine.add_request(ids, params); engine.step(); engine.abort_request(rid); engine.pop_request(rid)

Each ``step()``: the scheduler picks the batch (``scheduler.py``), the engine does the copy-on-write copies, the
runner computes the batch's new tokens through the paged cache (``model_runner.py``), and the sequences whose last
token was computed sample one token each. When a prompt with ``n > 1`` finishes its prefill, it forks ``n − 1``
children sharing its blocks (vLLM §4.4) that sample from the same logits: the prompt is computed and stored once —
the rejection-sampling setting in which the Llama 3 report (§6.2) credits PagedAttention with over 2×.

Names follow vLLM (``SamplingParams``, ``RequestOutput.outputs``, ``enable_prefix_caching``); ``LLM`` in
``llm.py`` is the offline entry point.

Requests are checked once, when added (``minillm.generate.check_prompt``, ``SamplingParams``); a step that still
raises for a request aborts it (``finish_reason="abort"``, its ``error`` kept) and frees its blocks, so one bad
request never blocks the queue behind it.
"""

from __future__ import annotations

import itertools
import time
from typing import Iterator, Sequence as Seq

import torch

from minillm.generate import check_prompt, sample_next
from minillm.infer.block_manager import BlockManager
from minillm.infer.config import EngineConfig
from minillm.infer.model_runner import ModelRunner
from minillm.detokenizer import IncrementalDecoder
from minillm.infer.outputs import CompletionOutput, RequestOutput, StreamEvent
from minillm.infer.scheduler import Scheduler, SchedulerConfig
from minillm.infer.sequence import SamplingParams, Sequence, Status
from minillm.model.llama import Llama

__all__ = ["LLMEngine", "EngineConfig", "CompletionOutput", "RequestOutput", "StreamEvent"]  # the last 4 re-exported
RENAMED = {"prefix_caching": "enable_prefix_caching", "chunked_prefill": "enable_chunked_prefill"}


class LLMEngine:
    """Serve a ``minillm.Llama``: ``generate(prompts, sampling_params)`` or ``stream(...)``; ``step()`` for finer
    control. ``model`` is a ``Llama``, or what ``minillm.model.load.load_model`` takes: a name (``"smollm2"``), a
    Hugging Face folder or a GGUF file, whose tokenizer is then used unless ``tokenizer`` is given. vLLM builds its
    engine from ``EngineArgs``; here the keyword arguments are ``EngineConfig``'s fields."""

    def __init__(self, model: Llama | str, num_blocks: int | None = None, block_size: int = 16, tokenizer=None,
                 **config):
        for old, new in RENAMED.items():
            if old in config:
                raise TypeError(f"LLMEngine({old}=...) is now {new}=... (vLLM's name)")
        self.config = cfg = EngineConfig(num_blocks=num_blocks, block_size=block_size, **config)
        if not isinstance(model, Llama):
            from minillm.model.load import load_model

            model, loaded_tokenizer = load_model(model)
            tokenizer = loaded_tokenizer if tokenizer is None else tokenizer
        self.model, self.tokenizer = model.eval(), tokenizer
        self.num_blocks = cfg.num_blocks or self._default_num_blocks()
        self.block_manager = BlockManager(self.num_blocks, cfg.block_size, cfg.enable_prefix_caching)
        self.scheduler = Scheduler(SchedulerConfig(cfg.max_num_seqs, cfg.max_num_batched_tokens,
                                                   cfg.enable_chunked_prefill), self.block_manager)
        device = model.tok_embeddings.weight.device
        graphs = cfg.decode_graphs if cfg.decode_graphs != "auto" else "cuda" if device.type == "cuda" else "off"
        self.runner = ModelRunner(model, self.num_blocks, cfg.block_size, cfg.attn_impl, graphs,
                                  min(cfg.max_num_seqs, 512))
        self.generator = torch.Generator(device=device).manual_seed(cfg.seed)
        self._seq_ids = itertools.count()
        self._request_ids = itertools.count()
        self.requests: dict[int, list[Sequence]] = {}
        self.prompts: dict[int, str | None] = {}      # a request's prompt text (None: given as token ids)
        self.num_steps = 0
        self.peak_used_blocks = 0
        # wall seconds per phase of step(): "host" (scheduling, block tables, inputs: the GPU waits through it,
        # since each step ends by reading its sampled tokens), "model" (the forward pass: on a GPU only its
        # launches) and "sample" (bookkeeping, sampling and the wait for the GPU)
        self.phase_seconds = {"host": 0.0, "model": 0.0, "sample": 0.0}

    def _default_num_blocks(self) -> int:
        cfg, mcfg = self.config, self.model.cfg
        per_block = ModelRunner.bytes_per_block(self.model, cfg.block_size)
        if self.model.tok_embeddings.weight.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info()
            return max(1, int(free * cfg.gpu_memory_utilization) // per_block)
        full = cfg.max_num_seqs * -(-mcfg.max_seq_len // cfg.block_size)
        return max(1, min(full, cfg.cpu_kv_bytes // per_block))

    # ---------------------------------------------------------------- requests
    def _check(self, prompt, params, index: int = 0) -> tuple[list[int], SamplingParams]:
        """The one check of a request at the engine's edge: ``prompts[index]`` (text or token ids, see
        ``minillm.generate.check_prompt``) and its ``SamplingParams`` (validated when built); everything after trusts
        them."""
        params = SamplingParams() if params is None else params
        if not isinstance(params, SamplingParams):
            raise TypeError(f"sampling_params of prompts[{index}] must be a SamplingParams (or None for the "
                            f"defaults), got {type(params).__name__}")
        if params.stop and self.tokenizer is None:
            raise ValueError(f"SamplingParams(stop={list(params.stop)!r}) needs LLMEngine(..., tokenizer=...) to "
                             f"read the text; or stop at token ids with stop_token_ids=[...]")
        if isinstance(prompt, str):
            if self.tokenizer is None:
                raise ValueError("a text prompt needs LLMEngine(..., tokenizer=...); or pass token ids")
            prompt = self.tokenizer.encode(prompt)
        ids = check_prompt(prompt, self.model.cfg.vocab_size, self.model.cfg.max_seq_len, params.max_tokens, index)
        need = self.block_manager.num_blocks_for(len(ids) + params.max_tokens)
        if need > self.num_blocks:
            raise ValueError(f"the KV pool ({self.num_blocks} blocks of {self.config.block_size} tokens) is too small "
                             f"for one sequence of {len(ids)} + {params.max_tokens} tokens ({need} blocks): raise "
                             f"num_blocks or lower max_tokens")
        return ids, params

    def add_request(self, prompt: Seq[int] | str, params: SamplingParams | None = None) -> int:
        """Queue one prompt (token ids, or text with a tokenizer); returns its request id (vLLM's ``add_request``
        takes the id from the caller instead). Its sequences stay in ``requests`` until ``pop_request``
        (``generate`` and ``stream`` pop theirs)."""
        return self._queue(*self._check(prompt, params), prompt if isinstance(prompt, str) else None)

    def _queue(self, ids: list[int], params: SamplingParams, text: str | None = None) -> int:
        stop = set(params.stop_token_ids)
        if self.tokenizer is not None and not params.ignore_eos:
            stop |= set(getattr(self.tokenizer, "stop_ids", []))
        rid = next(self._request_ids)
        seq = Sequence(next(self._seq_ids), rid, 0, list(ids), len(ids), params, frozenset(stop),
                       pending_forks=params.n - 1)
        self._start_output(seq)
        self.requests[rid], self.prompts[rid] = [seq], text
        self.scheduler.add(seq)
        return rid

    def _start_output(self, seq: Sequence) -> None:
        """A seeded completion's own generator (``seed + index``, vLLM's rule) and its incremental decoder."""
        if seq.params.seed is not None:
            device = self.model.tok_embeddings.weight.device
            seq.generator = torch.Generator(device=device).manual_seed(seq.params.seed + seq.sample_index)
        if self.tokenizer is not None:
            seq.decoder = IncrementalDecoder(self.tokenizer)

    def has_unfinished(self) -> bool:
        return self.scheduler.has_unfinished()

    def is_finished(self, request_id: int) -> bool:
        """Every completion of the request has ended (children not forked yet count as unfinished)."""
        seqs = self.requests[request_id]
        return seqs[0].pending_forks == 0 and all(s.status is Status.FINISHED for s in seqs)

    def abort_request(self, request_id: int, error: Exception | None = None) -> list[StreamEvent]:
        """Stop a request wherever its sequences are (queued or running: their blocks are freed); ``error`` records
        why. Returns an ``"abort"`` event per completion that was still going. The request stays in ``requests``
        (with its error) until ``pop_request``."""
        events = []
        for seq in self.requests.get(request_id, []):
            if seq.status is not Status.FINISHED:
                self.scheduler.abort(seq)
                seq.error = error
                events.append(StreamEvent(seq.request_id, seq.sample_index, None, "", "abort", error))
        if request_id in self.requests:
            self.requests[request_id][0].pending_forks = 0                   # its children will never be forked
        return events

    def pop_request(self, request_id: int) -> RequestOutput:
        """Remove a request from the engine (aborting what is left of it) and return its output."""
        finished = request_id in self.requests and self.is_finished(request_id) and all(
            s.finish_reason in ("stop", "length") for s in self.requests[request_id])
        self.abort_request(request_id)
        seqs = sorted(self.requests.pop(request_id), key=lambda s: s.sample_index)
        error = next((s.error for s in seqs if s.error is not None), None)
        outputs = [CompletionOutput(s.sample_index, s.text if self.tokenizer is not None else None, s.output_ids,
                                    s.finish_reason, s.stop_reason) for s in seqs]
        return RequestOutput(request_id, self.prompts.pop(request_id, None), seqs[0].token_ids[:seqs[0].prompt_len],
                             outputs, finished, error)

    # ---------------------------------------------------------------- one step
    @torch.inference_mode()
    def step(self) -> list[StreamEvent]:
        """Schedule, run the model once, sample; returns the tokens sampled in this step.

        An exception in the model step aborts the requests of the batch (it cannot tell whose fault it was), one in
        sampling or decoding aborts the requests of that sampling group; either way with the exception as their
        ``error``, so the engine stays consistent and serves the other requests."""
        t0 = time.perf_counter()
        batch = self.scheduler.schedule()
        if not batch.seqs:
            if self.scheduler.waiting and not self.scheduler.running:
                raise RuntimeError("no sequence can be scheduled although the pool is empty (a bug)")
            return []
        self.runner.copy_blocks(batch.copies)
        work = []
        for seq, n in zip(batch.seqs, batch.num_new):
            done = seq.num_computed + n == seq.num_tokens
            work.append((seq.token_ids, seq.num_computed, n, self.block_manager.table(seq.seq_id), done))
        try:
            step_input, sampled = self.runner.prepare(work)
            t1 = time.perf_counter()
            logits = self.runner.forward(step_input)                              # (len(sampled), vocab)
        except Exception as err:
            return self._abort_all({seq.request_id for seq in batch.seqs}, err)
        t2 = time.perf_counter()
        for seq, n in zip(batch.seqs, batch.num_new):
            seq.num_computed += n
            self.block_manager.mark_computed(seq.seq_id, seq.token_ids, seq.num_computed)
        self.num_steps += 1
        self.peak_used_blocks = max(self.peak_used_blocks, self.num_blocks - self.block_manager.num_free)
        # sample: one call per distinct (temperature, top_k, top_p), not per sequence (one device sync each);
        # a seeded sequence samples alone, from its own generator, so what else is in the batch cannot change it
        groups: dict[tuple, tuple[list[int], list[Sequence]]] = {}
        for row, i in enumerate(sampled):
            for seq in [batch.seqs[i]] + self._fork(batch.seqs[i]):       # n - 1 children after the prompt
                p = seq.params
                key = (p.temperature, p.top_k, p.top_p) + ((seq.seq_id,) if seq.generator is not None else ())
                rows, members = groups.setdefault(key, ([], []))
                rows.append(row)
                members.append(seq)
        events = []
        for key, (rows, members) in groups.items():
            generator = members[0].generator if len(key) == 4 else self.generator
            try:
                picked = logits[torch.tensor(rows, device=logits.device)]     # (len(rows), vocab)
                tokens = sample_next(picked, *key[:3], generator).tolist()
                for seq, token in zip(members, tokens):
                    events.append(self._append(seq, token))
            except Exception as err:                                        # e.g. NaN logits in multinomial
                events += self._abort_all({seq.request_id for seq in members}, err)
        t3 = time.perf_counter()
        for phase, seconds in (("host", t1 - t0), ("model", t2 - t1), ("sample", t3 - t2)):
            self.phase_seconds[phase] += seconds
        return events

    def _abort_all(self, request_ids: set[int], error: Exception) -> list[StreamEvent]:
        return [event for rid in sorted(request_ids) for event in self.abort_request(rid, error)]

    def _fork(self, parent: Sequence) -> list[Sequence]:
        """After the prompt's prefill: ``n − 1`` children sharing the parent's blocks (copy-on-write later)."""
        children = []
        for k in range(parent.pending_forks):
            child = Sequence(next(self._seq_ids), parent.request_id, k + 1, list(parent.token_ids), parent.prompt_len,
                             parent.params, parent.stop_ids, num_computed=parent.num_computed, status=parent.status)
            self._start_output(child)
            self.block_manager.fork(parent.seq_id, child.seq_id)
            self.scheduler.running.append(child)
            self.requests[parent.request_id].append(child)
            children.append(child)
        parent.pending_forks = 0
        return children

    def _append(self, seq: Sequence, token: int) -> StreamEvent:
        """Add a sampled token to ``seq`` and check the stop conditions; the event carries the text that is now
        certain: while a completion runs, its last ``len(longest stop string) - 1`` characters are held back, since
        they could be the start of a stop string (vLLM's detokenizer does the same)."""
        if token in seq.stop_ids:
            self._finish(seq, "stop", token)
            return StreamEvent(seq.request_id, seq.sample_index, None, seq.take_new_text(), "stop")
        seq.token_ids.append(token)
        if seq.decoder is not None:
            old = len(seq.text)
            seq.text += seq.decoder.step(token)
            if seq.params.stop and len(seq.text) > old and (found := seq.cut_at_stop_string(old)) is not None:
                self._finish(seq, "stop", found)
        if seq.finish_reason is None and len(seq.output_ids) >= seq.params.max_tokens:
            self._finish(seq, "length")
        return StreamEvent(seq.request_id, seq.sample_index, token, seq.take_new_text(), seq.finish_reason)

    def _finish(self, seq: Sequence, reason: str, stop_reason: str | int | None = None) -> None:
        self.scheduler.finish(seq, reason)
        seq.stop_reason = stop_reason
        if seq.decoder is not None and not isinstance(stop_reason, str):
            seq.text += seq.decoder.flush()              # an unfinished character, as decode() writes it

    # ---------------------------------------------------------------- batch API
    def _add_all(self, prompts, params) -> list[int]:
        if isinstance(prompts, (str, bytes)) or not isinstance(prompts, (list, tuple)):
            raise ValueError(f"prompts must be a list of prompts (token-id lists or strings), got "
                             f"{type(prompts).__name__}")
        params_list = list(params) if isinstance(params, (list, tuple)) else [params] * len(prompts)
        if len(params_list) != len(prompts):
            raise ValueError(f"got {len(params_list)} SamplingParams for {len(prompts)} prompts")
        checked = [self._check(prompt, p, i) for i, (prompt, p) in enumerate(zip(prompts, params_list))]
        texts = [prompt if isinstance(prompt, str) else None for prompt in prompts]
        return [self._queue(ids, p, text) for (ids, p), text in zip(checked, texts)]   # all valid before queueing

    def _run(self, max_steps: int | None) -> Iterator[StreamEvent]:
        steps = 0
        while self.has_unfinished():
            if max_steps is not None and steps >= max_steps:
                raise RuntimeError(f"requests not finished after max_steps={max_steps} engine steps")
            yield from self.step()
            steps += 1

    def stream(self, prompts: Seq[Seq[int] | str],
               sampling_params: SamplingParams | Seq[SamplingParams] | None = None,
               max_steps: int | None = None) -> Iterator[StreamEvent]:
        """Queue ``prompts`` and yield every sampled token until all are done; an event's ``request_id`` is its
        prompt's index in ``prompts``. ``max_steps`` bounds the loop (``RuntimeError`` past it). A request leaves the
        engine as soon as it finishes; closing the stream early aborts and removes the rest."""
        index = {rid: i for i, rid in enumerate(self._add_all(prompts, sampling_params))}
        try:
            for event in self._run(max_steps):
                rid = event.request_id
                if rid in index:
                    event.request_id = index[rid]
                    if event.finish_reason is not None and self.is_finished(rid):
                        self.requests.pop(rid)                           # free it now: no reference kept
                        self.prompts.pop(rid, None)
                        del index[rid]
                    yield event
        finally:
            for rid in index:
                self.pop_request(rid)

    def generate(self, prompts: Seq[Seq[int] | str],
                 sampling_params: SamplingParams | Seq[SamplingParams] | None = None,
                 max_steps: int | None = None) -> list[RequestOutput]:
        """Per prompt, a ``RequestOutput`` with its ``n`` completions in ``outputs`` (in sample order); one
        ``SamplingParams`` for all prompts or one per prompt, as in vLLM. ``max_steps`` as in ``stream``. If a step
        failed for a request, the others still finish, then a ``RuntimeError`` naming that prompt is raised from its
        error; nothing of this call is left in the engine either way."""
        rids = self._add_all(prompts, sampling_params)
        try:
            for _ in self._run(max_steps):
                pass
        finally:
            outs = [self.pop_request(rid) for rid in rids]
        for i, out in enumerate(outs):
            if out.error is not None:
                raise RuntimeError(f"prompts[{i}] was aborted: a step failed for it with "
                                   f"{type(out.error).__name__}: {out.error}") from out.error
        return outs

    # ---------------------------------------------------------------- statistics
    def kv_usage(self) -> dict:
        """Blocks in use and the fraction of their slots that hold a computed token (shared blocks counted once)."""
        bs, filled = self.config.block_size, {}
        for seq in self.scheduler.running:
            for i, block_id in enumerate(self.block_manager.table(seq.seq_id)):
                filled[block_id] = max(filled.get(block_id, 0), min(bs, max(0, seq.num_computed - i * bs)))
        used = len(filled)
        return {"used_blocks": used, "filled_slots": sum(filled.values()), "reserved_slots": used * bs,
                "utilisation": sum(filled.values()) / (used * bs) if used else 1.0,
                "free_blocks": self.block_manager.num_free}
