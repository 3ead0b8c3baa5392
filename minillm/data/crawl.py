"""A synthetic web crawl with planted problems and recorded ground truth: the stand-in for CommonCrawl (report §3.1).

``build_crawl(CrawlConfig(...))`` turns the real offline text of ``sources.py`` into HTML pages with URLs, sites and
crawl timestamps, then plants every problem the report's curation stages exist for, recording which page has which
(``CrawlTruth``) so each stage can be scored with precision and recall:

| planted                                            | stage that should catch it      | truth field                 |
|----------------------------------------------------|---------------------------------|-----------------------------|
| the same URL crawled 2-4 times                     | ``url_dedup`` (newest wins)     | ``newest``                  |
| exact copies and near copies at Jaccard 0.8-0.98   | ``minhash_dedup``               | ``duplicate_of``, ``jaccard`` |
| related pages at Jaccard 0.3-0.6 (must survive)    | ``minhash_dedup``               | ``related_to``              |
| nav bars, cookie banners, footers on every page    | ``line_dedup``                  | ``boilerplate``             |
| log spam, dirty-word pages, garbage tokens         | heuristic filters               | ``kind``                    |
| fluent nonsense with SEO phrases                   | quality classifier              | ``kind == "low_quality"``   |
| e-mails, phone numbers, IPs                        | ``redact_pii``                  | ``pii``                     |
| markdown markers                                   | ``extract``                     | ``markdown``                |
| non-UTF-8 bytes, empty pages, a 50 MB page, broken HTML | ``extract_page`` (counted)  | ``bad_input``               |

Deterministic from ``CrawlConfig.seed``. Page ids are positions in ``Crawl.pages``.
"""

from __future__ import annotations

import html
import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

from minillm.data import plants
from minillm.data.minhash import jaccard, minhash_dedup
from minillm.data.sources import available_sources, math_problems, python_docs, SOURCES

DOMAIN_OF_SOURCE = {"wikipedia": "general", "news": "general", "shakespeare": "general",
                    "python_code": "code", "python_docs": "code", "math": "math"}
SHARE = {"wikipedia": 0.22, "news": 0.08, "shakespeare": 0.22, "python_code": 0.2, "math": 0.28}
KINDS = ("clean", "spam", "dirty", "garbage", "low_quality", "bad")
_START = 1_672_531_200  # 2023-01-01 UTC; crawl timestamps are seconds after the epoch
_YEAR = 365 * 86_400


@dataclass(frozen=True)
class CrawlConfig:
    """Size and problem rates of the crawl. Rates are fractions of ``clean_pages``."""

    seed: int = 0
    clean_pages: int = 2000
    python_docs_pages: int = 10
    sources: tuple[str, ...] | None = None  # None: every available source
    sites: int = 20
    words_per_page: tuple[int, int] = (120, 500)
    recrawl: float = 0.05
    exact_dup: float = 0.03
    near_dup: float = 0.08
    related: float = 0.03
    spam: float = 0.03
    dirty: float = 0.03
    garbage: float = 0.03
    low_quality: float = 0.04
    pii: float = 0.08
    markdown: float = 0.08
    bad_inputs: bool = True
    huge_page_mb: float = 50.0

    def __post_init__(self) -> None:
        if self.clean_pages < 10:
            raise ValueError(f"CrawlConfig.clean_pages must be >= 10, got {self.clean_pages}")
        if self.python_docs_pages < 0 or self.sites < 1:
            raise ValueError("CrawlConfig.python_docs_pages must be >= 0 and sites >= 1, "
                             f"got {self.python_docs_pages} and {self.sites}")
        lo, hi = self.words_per_page
        if not 20 <= lo <= hi:
            raise ValueError(f"CrawlConfig.words_per_page must be (low, high) with 20 <= low <= high, got {(lo, hi)}")
        for name in ("recrawl", "exact_dup", "near_dup", "related", "spam", "dirty", "garbage", "low_quality", "pii",
                     "markdown"):
            if not 0.0 <= getattr(self, name) <= 0.5:
                raise ValueError(f"CrawlConfig.{name} is a fraction of clean_pages in [0, 0.5], "
                                 f"got {getattr(self, name)}")
        if self.sources is not None and not set(self.sources) <= set(SOURCES):
            raise ValueError(f"CrawlConfig.sources must be names from {list(SOURCES)}, got {self.sources}")


@dataclass(frozen=True)
class Page:
    """One crawled page: raw ``body`` bytes (normally UTF-8 HTML) fetched from ``url`` at ``timestamp``."""

    id: int
    url: str
    timestamp: int
    body: bytes


@dataclass
class CrawlTruth:
    """What was planted where (keys are page ids). ``kind`` is one of ``KINDS``; ``domain`` general/math/code."""

    kind: dict[int, str] = field(default_factory=dict)
    domain: dict[int, str] = field(default_factory=dict)
    source: dict[int, str] = field(default_factory=dict)
    newest: dict[str, int] = field(default_factory=dict)
    duplicate_of: dict[int, int] = field(default_factory=dict)
    jaccard: dict[int, float] = field(default_factory=dict)
    edit: dict[int, str] = field(default_factory=dict)
    related_to: dict[int, int] = field(default_factory=dict)
    boilerplate: list[str] = field(default_factory=list)
    pii: dict[int, list[str]] = field(default_factory=dict)
    markdown: list[int] = field(default_factory=list)
    bad_input: dict[int, str] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "CrawlTruth":
        raw = json.loads(text)
        ints = lambda d: {int(k): v for k, v in d.items()}  # noqa: E731 - JSON keys are strings
        return cls(**{k: ints(v) if isinstance(v, dict) and k != "newest" else v for k, v in raw.items()})


@dataclass
class Crawl:
    pages: list[Page]
    truth: CrawlTruth


def _chunks(text: str, lo: int, hi: int, rng: random.Random, code: bool) -> list[str]:
    """Split ``text`` into pieces of ``lo``..``hi`` words at paragraph (prose) or line (code) boundaries."""
    units = text.split("\n") if code else text.split("\n\n")
    out, current, count, target = [], [], 0, rng.randint(lo, hi)
    for unit in units:
        current.append(unit)
        count += len(unit.split())
        if count >= target:
            out.append(("\n" if code else "\n\n").join(current).strip("\n"))
            current, count, target = [], 0, rng.randint(lo, hi)
    if count >= lo:
        out.append(("\n" if code else "\n\n").join(current).strip("\n"))
    return [c for c in out if len(c.split()) <= 3 * hi]


def _base_texts(config: CrawlConfig, rng: random.Random, extra: int) -> list[tuple[str, str]]:
    """``(source, text)`` chunks, ``clean_pages + extra`` of them in proportion to ``SHARE``, natural near duplicates
    (Jaccard >= 0.5) removed so that every duplicate in the crawl is a planted one."""
    names = [n for n in (config.sources or available_sources()) if n in SHARE]
    total = sum(SHARE[n] for n in names)
    wanted = {n: int(round((config.clean_pages + extra) * SHARE[n] / total * 1.15)) for n in names}
    lo, hi = config.words_per_page
    pool: list[tuple[str, str]] = []
    for name in names:
        if name == "math":  # worksheets of several problems
            per_page = max(1, lo // 30)
            problems = [d.text for d in math_problems(limit=wanted[name] * per_page, seed=config.seed)]
            pieces = ["\n\n".join(problems[i:i + per_page]) for i in range(0, len(problems), per_page)]
        else:
            pieces = []
            for doc in SOURCES[name](seed=config.seed):
                pieces += _chunks(doc.text, lo, hi, rng, code=name == "python_code")
            rng.shuffle(pieces)
        pool += [(name, p) for p in pieces[:wanted[name]]]
    rng.shuffle(pool)
    keep = minhash_dedup([text for _, text in pool], threshold=0.5)
    return [pool[i] for i in keep][: config.clean_pages + extra]


def to_html(title: str, text: str, boilerplate: list[str], code: bool) -> str:
    """A page around ``text``: boilerplate lines in ``<div>``s (not ``<nav>``: extractors would drop those), code in
    ``<pre>``, prose in ``<p>`` with ``<br>`` line breaks."""
    esc = html.escape
    if code:
        body = f"<pre><code>{esc(text)}</code></pre>"
    else:
        body = "\n".join(f"<p>{'<br>'.join(esc(line) for line in para.split(chr(10)))}</p>"
                         for para in text.split("\n\n"))
    top = "".join(f'<div class="bar">{esc(line)}</div>' for line in boilerplate[:-1])
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{esc(title)}</title>"
            f"<style>body {{ font-family: sans-serif; }}</style><script>var page = {{ts: 1}};</script></head>"
            f"<body>{top}<main>{body}</main><div class='foot'>{esc(boilerplate[-1])}</div></body></html>")


def build_crawl(config: CrawlConfig = CrawlConfig()) -> Crawl:
    """Build the crawl: real text as HTML pages, plus the planted problems, shuffled; ids are list positions."""
    from faker import Faker

    rng = random.Random(config.seed)
    faker = Faker("en_US")
    faker.seed_instance(config.seed)
    n = config.clean_pages
    count = lambda rate: int(round(rate * n))  # noqa: E731
    base = _base_texts(config, rng, extra=count(config.dirty) + 3)
    spare = 3 + count(config.dirty)  # texts used only for dirty and bad pages: they must not duplicate crawl pages
    dirty_bases, donors, base = base[-spare:-3], base[-3:], base[:-spare]
    sites = [f"{rng.choice(['daily', 'open', 'the', 'my', 'pro', 'free'])}{word}{i}.example"
             for i, word in enumerate(rng.choices(["herald", "wiki", "code", "news", "hub", "times", "notes"],
                                                  k=config.sites))]
    boiler = {site: plants.site_boilerplate(site, rng) for site in sites}
    # each entry: dict(text, source, kind, code, site, url, ts, truth extras); ids assigned after the shuffle
    entries = []
    for k, (source, text) in enumerate(base):
        site = rng.choice(sites)
        entries.append(dict(text=text, source=source, kind="clean", code=source == "python_code", site=site,
                             url=f"https://{site}/{source}/{k}", ts=_START + rng.randrange(_YEAR)))
    prose = [e for e in entries if not e["code"] and e["source"] != "math"]
    pii_pages = rng.sample(entries, min(len(entries), count(config.pii)))
    for e in pii_pages:
        e["text"], e["pii"] = plants.insert_pii(e["text"], faker, rng, count=rng.randint(1, 4))
    plain = [e for e in prose if "pii" not in e]
    for e in rng.sample(plain, min(len(plain), count(config.markdown))):
        e["text"], e["markdown"] = plants.add_markdown(e["text"], rng), True
    originals = [e for e in entries if "pii" not in e and "markdown" not in e]
    picks = rng.sample(originals, min(len(originals), count(config.exact_dup) + count(config.near_dup)
                                      + count(config.related) + count(config.recrawl)))
    copies = []
    for i, origin in enumerate(picks):
        if i < count(config.exact_dup) + count(config.near_dup) + count(config.related):
            if i < count(config.exact_dup):
                target, edit = 1.0, "exact"
            elif i < count(config.exact_dup) + count(config.near_dup):
                target, edit = rng.uniform(0.8, 0.98), plants.EDITS[i % 3]
            else:
                target, edit = rng.uniform(0.3, 0.6), "tokens"
            site = origin["site"] if rng.random() < 0.5 else rng.choice(sites)
            page = lambda t, s: "\n".join(boiler[s][:-1] + [t, boiler[s][-1]])  # noqa: E731 - the text as extracted
            measure = lambda copy: jaccard(page(origin["text"], origin["site"]), page(copy, site))  # noqa: E731
            text, achieved = plants.edit_to_jaccard(origin["text"], target, rng, "tokens" if edit == "exact" else edit,
                                                    measure=measure)
            copies.append(dict(origin, text=text, site=site, url=f"https://{site}/copy/{i}",
                               ts=_START + rng.randrange(_YEAR), copy_of=origin, jaccard=achieved, edit=edit,
                               related=target < 0.8))
        else:  # the same URL crawled again earlier, with small edits: only the newest must survive
            for _ in range(rng.randint(1, 3)):
                text, _ = plants.edit_to_jaccard(origin["text"], rng.uniform(0.85, 1.0), rng)
                copies.append(dict(origin, text=text, ts=origin["ts"] - rng.randrange(1, _YEAR // 2), recrawl=True))
    for maker, kind, k in ((lambda: plants.spam_page(rng), "spam", count(config.spam)),
                           (lambda: plants.garbage_page(rng), "garbage", count(config.garbage)),
                           (lambda: plants.low_quality_page(faker, rng), "low_quality", count(config.low_quality))):
        for i in range(k):
            site = rng.choice(sites)
            copies.append(dict(text=maker(), source="web", kind=kind, code=False, site=site,
                               url=f"https://{site}/{kind}/{i}", ts=_START + rng.randrange(_YEAR)))
    for i, (source, text) in enumerate(dirty_bases):
        site = rng.choice(sites)
        copies.append(dict(text=plants.dirty_page(text, rng), source=source, kind="dirty", code=False, site=site,
                           url=f"https://{site}/dirty/{i}", ts=_START + rng.randrange(_YEAR)))
    entries += copies
    for e in entries:
        e["body"] = to_html(" ".join(e["text"].split()[:6]), e["text"], boiler[e["site"]], e["code"]).encode("utf-8")
    for i, doc in enumerate(python_docs(limit=config.python_docs_pages, seed=config.seed)):
        entries.append(dict(text=None, source="python_docs", kind="clean", code=True, url=doc.url,
                            ts=_START + rng.randrange(_YEAR), body=doc.text.encode("utf-8")))
    if config.bad_inputs:
        entries += _bad_inputs(config, rng, donors)
    rng.shuffle(entries)
    return _assemble(entries, sorted({line for lines in boiler.values() for line in lines}))


def _bad_inputs(config: CrawlConfig, rng: random.Random, donors: list[tuple[str, str]]) -> list[dict]:
    """Pages that must be skipped or repaired, and counted: non-UTF-8, empty, huge and broken pages. ``donors``:
    three ``(source, text)`` chunks that are nowhere else in the crawl."""
    donors = [dict(source=source, text=text) for source, text in donors]
    bad = []
    def add(body: bytes, issue: str, kind: str, text: str | None = None, source: str = "web") -> None:
        site = f"broken{len(bad)}.example"
        bad.append(dict(text=text, source=source, kind=kind, code=False, url=f"https://{site}/page",
                        ts=_START + rng.randrange(_YEAR), body=body, bad_input=issue))
    latin = donors[0]["text"] + "\n\nCafé au lait, naïve résumé, smörgåsbord — façade of the Müller pâtisserie."
    add(to_html("cp1252", latin, ["x", "y"], False).encode("cp1252", errors="replace"), "non_utf8", "clean", latin,
        donors[0]["source"])
    add(rng.randbytes(4000), "non_utf8", "garbage")
    add(b"", "empty", "bad")
    add(b"<html><head><title>nothing</title></head><body>   </body></html>", "empty", "bad")
    add(b"<p>" + b"lorem ipsum " * (int(config.huge_page_mb * 1e6 / 12) + 1) + b"</p>", "too_large", "bad")
    for donor in donors[1:]:
        page = to_html("broken", donor["text"], ["x", "y"], False)
        cut = page[: int(len(page) * 0.8)]
        cut = cut[: cut.rfind(">") - 3]  # stop inside a tag
        broken = cut.replace("</p>", "").replace("<p>", "<p><<", 1)
        add(broken.encode("utf-8"), "broken_html", "clean", donor["text"], donor["source"])
    return bad


def _assemble(entries: list[dict], boilerplate: list[str]) -> Crawl:
    truth = CrawlTruth(boilerplate=boilerplate)
    pages, ids = [], {}
    for i, e in enumerate(entries):
        ids[id(e)] = i
        pages.append(Page(i, e["url"], e["ts"], e["body"]))
        truth.kind[i] = e["kind"]
        truth.source[i] = e["source"]
        truth.domain[i] = DOMAIN_OF_SOURCE.get(e["source"], "general")
        if "pii" in e:
            truth.pii[i] = e["pii"]
        if e.get("markdown"):
            truth.markdown.append(i)
        if "bad_input" in e:
            truth.bad_input[i] = e["bad_input"]
        if truth.newest.get(e["url"]) is None or e["ts"] > entries[truth.newest[e["url"]]]["ts"]:
            truth.newest[e["url"]] = i
    for i, e in enumerate(entries):
        if "copy_of" in e:
            origin = ids[id(e["copy_of"])]
            (truth.related_to if e["related"] else truth.duplicate_of)[i] = origin
            truth.jaccard[i], truth.edit[i] = e["jaccard"], e["edit"]
    return Crawl(pages, truth)


def save_crawl(crawl: Crawl, folder: str | Path) -> None:
    """Write ``pages.jsonl`` (body as latin-1 text, so any bytes round-trip) and ``truth.json``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "pages.jsonl", "w", encoding="utf-8") as out:
        for p in crawl.pages:
            out.write(json.dumps({"id": p.id, "url": p.url, "timestamp": p.timestamp,
                                  "body": p.body.decode("latin-1")}) + "\n")
    (folder / "truth.json").write_text(crawl.truth.to_json())
