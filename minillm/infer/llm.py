"""``LLM``: vLLM's offline entry point — a model by name or path, prompts in, ``RequestOutput``s out.

    from minillm.infer import LLM, SamplingParams
    llm = LLM(model="smollm2")                       # or a Hugging Face folder, or a .gguf file
    outs = llm.generate(["The capital of France is"], SamplingParams(temperature=0.0, max_tokens=8, stop=["."]))
    outs[0].outputs[0].text

It is a thin layer over ``LLMEngine`` (``engine.py``): load the model and its tokenizer
(``minillm.model.load.load_model``), build the engine, run every request to the end.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence as Seq

import torch

from minillm.infer.engine import LLMEngine
from minillm.infer.outputs import RequestOutput
from minillm.infer.sequence import SamplingParams


class LLM:
    """``LLM(model, dtype=..., device=..., **engine_args).generate(prompts, sampling_params)``.

    ``model``: a name of ``minillm.model.load.MODEL_NAMES`` or a path (Hugging Face folder, GGUF file); an unknown
    name is a ``ValueError`` listing the valid ones. ``engine_args`` are ``EngineConfig``'s fields
    (``enable_prefix_caching``, ``max_num_seqs``, ``seed``, ...). Differences from vLLM, on purpose: ``dtype`` is a
    ``torch.dtype`` (default float32: the CPU path is the reference) and ``device`` is explicit (vLLM always serves
    on GPUs), and no progress bar is drawn (``generate`` here is short; stream with ``llm.engine.stream``)."""

    def __init__(self, model: str | Path, tokenizer=None, dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu", **engine_args):
        from minillm.model.load import load_model

        llm, loaded_tokenizer = load_model(model, dtype, device)
        self.tokenizer = loaded_tokenizer if tokenizer is None else tokenizer
        if self.tokenizer is None:
            raise ValueError(f"{model} has no tokenizer (tokenizer.json or GGUF tokenizer metadata): pass "
                             f"LLM(..., tokenizer=...)")
        self.engine = LLMEngine(llm, tokenizer=self.tokenizer, **engine_args)

    def get_tokenizer(self):
        return self.tokenizer

    def generate(self, prompts: str | Seq[str] | Seq[Seq[int]],
                 sampling_params: SamplingParams | Seq[SamplingParams] | None = None) -> list[RequestOutput]:
        """One ``RequestOutput`` per prompt (a single string counts as a list of one, as in vLLM), in order."""
        if isinstance(prompts, str):
            prompts = [prompts]
        return self.engine.generate(list(prompts), sampling_params)
