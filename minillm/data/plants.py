"""The problems planted into the synthetic crawl (report §3.1.1 names each one a curation stage must handle).

Each function takes a seeded ``random.Random`` (and a seeded ``faker.Faker`` where it needs fake people) and returns
text, so the crawl in ``crawl.py`` is a pure function of its seed:

- ``edit_to_jaccard``: a near-duplicate of a text at a controlled word-5-gram Jaccard similarity, by token edits,
  reordered paragraphs or added boilerplate sentences (binary search on the amount of editing);
- ``spam_page``: log-like pages, long error messages repeated with changing numbers;
- ``dirty_page``: real text with adult/spam words sprinkled in;
- ``garbage_page``: base64 blobs, hex dumps, keyboard mash: tokens the corpus never uses;
- ``low_quality_page``: ``faker`` word salad and SEO phrases (fluent-looking, meaningless: for the quality model);
- ``insert_pii``: e-mails, phone numbers and IPv4 addresses written into sentences (returned so recall can be scored);
- ``add_markdown``: headings, bold, links, bullets and inline code markers around real text;
- ``site_boilerplate``: the navigation bar, cookie banner and footer lines a site repeats on every page.
"""

from __future__ import annotations

import base64
import random
import string
from typing import Callable

from minillm.data.filters import DIRTY_WORDS
from minillm.data.minhash import jaccard

EDITS = ("tokens", "reorder", "boilerplate")
_FILLER = ("Please note that this page was updated recently.", "Share this article with your friends.",
           "Related stories appear below.", "Subscribe to our newsletter for weekly updates.",
           "Comments are closed for this post.", "Read more in our archive.", "This text may be reused freely.")


def _token_edit(text: str, rate: float, rng: random.Random) -> str:
    """Replace about ``rate`` of the words (spread evenly, seeded) by other words of the text, keeping line breaks."""
    lines = [line.split(" ") for line in text.split("\n")]
    pool = [w for line in lines for w in line if w] or ["word"]
    positions = [(i, j) for i, line in enumerate(lines) for j, w in enumerate(line) if w]
    for i, j in rng.sample(positions, int(round(rate * len(positions)))):
        lines[i][j] = rng.choice(pool) + rng.choice(("", "s", "ed", "ly"))
    return "\n".join(" ".join(line) for line in lines)


def _reorder(text: str, rate: float, rng: random.Random) -> str:
    """Shuffle the paragraphs (or lines), then token-edit ``rate`` of the words."""
    parts = text.split("\n\n") if text.count("\n\n") >= 2 else text.split("\n")
    rng.shuffle(parts)
    return _token_edit(("\n\n" if text.count("\n\n") >= 2 else "\n").join(parts), rate, rng)


def _add_boilerplate(text: str, rate: float, rng: random.Random) -> str:
    """Add filler sentences before and after ``text``: about ``rate`` × its word count."""
    n_words = max(1, len(text.split()))
    added, head, tail = 0, [], []
    while added < rate * n_words:
        sentence = f"{rng.choice(_FILLER)} ({rng.randrange(10_000)})"
        (head if rng.random() < 0.5 else tail).append(sentence)
        added += len(sentence.split())
    return "\n".join(head + [text] + tail)


def edit_to_jaccard(text: str, target: float, rng: random.Random, edit: str = "tokens", ngram: int = 5,
                    measure: Callable[[str], float] | None = None) -> tuple[str, float]:
    """A copy of ``text`` whose exact ``ngram``-shingle Jaccard with ``text`` is close to ``target``.

    Returns ``(copy, achieved Jaccard)``. ``edit`` is one of ``EDITS``. The edit amount is found by bisection
    (each step re-runs the seeded edit), so the achieved value is usually within ±0.02 of the target.
    ``measure(copy)``: the similarity to aim at, when it is not ``jaccard(text, copy)`` (e.g. the two pages'
    texts with their sites' boilerplate lines).
    """
    measure = measure or (lambda copy: jaccard(text, copy, ngram))
    if edit not in EDITS:
        raise ValueError(f"edit must be one of {EDITS}, got {edit!r}")
    if target >= 1.0:
        return text, measure(text)
    apply = {"tokens": _token_edit, "reorder": _reorder, "boilerplate": _add_boilerplate}[edit]
    low, high = 0.0, 1.0 if edit != "boilerplate" else 4.0
    state = rng.getstate()
    best = (text, measure(text))  # the unedited copy (below 1 when measure adds differing boilerplate)
    for _ in range(12):
        rate = (low + high) / 2
        rng.setstate(state)
        copy = apply(text, rate, rng)
        j = measure(copy)
        if abs(j - target) < abs(best[1] - target):
            best = (copy, j)
        if abs(j - target) < 0.01:
            break
        low, high = (rate, high) if j > target else (low, rate)
    rng.setstate(state)
    rng.random()  # advance the stream so that later draws differ from this function's
    return best


_LOG_MESSAGES = (
    "ERROR upstream connection refused while reading response header from upstream, retrying request in {n} seconds",
    "WARN cache miss for key user session token {n}, falling back to database lookup on primary replica",
    "ERROR failed to acquire lock on resource queue worker {n} after timeout, the job will be rescheduled later",
    "INFO health check passed for service instance {n} in region eu west with status code 200 and latency {n} ms",
    "DEBUG opening new connection to backend pool member {n} using keepalive with idle timeout of {n} seconds",
)


def spam_page(rng: random.Random) -> str:
    """Log-like spam: 40-150 lines of a few long messages with changing numbers and timestamps."""
    messages = rng.sample(_LOG_MESSAGES, rng.randint(1, 3))
    lines = []
    for i in range(rng.randint(40, 150)):
        day = f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        stamp = f"{day} {rng.randint(0, 23):02d}:{i % 60:02d}:{rng.randint(0, 59):02d}"
        lines.append(f"{stamp} [pid {rng.randint(1000, 9999)}] " + rng.choice(messages).format(n=rng.randint(1, 999)))
    return "\n".join(lines)


def dirty_page(text: str, rng: random.Random, density: tuple[float, float] = (0.05, 0.15)) -> str:
    """``text`` with a ``density`` fraction of adult/spam words inserted between its words."""
    out_lines, dirty = [], sorted(DIRTY_WORDS)
    rate = rng.uniform(*density)
    for line in text.split("\n"):
        ws = []
        for w in line.split(" "):
            ws.append(w)
            if w and rng.random() < rate / (1 - rate):
                ws.append(rng.choice(dirty))
        out_lines.append(" ".join(ws))
    return "\n".join(out_lines)


def garbage_page(rng: random.Random) -> str:
    """Tokens far from any corpus distribution: base64, hex dumps, random mash."""
    kind = rng.choice(("base64", "hex", "mash"))
    lines = []
    for _ in range(rng.randint(30, 80)):
        if kind == "base64":
            lines.append(base64.b64encode(rng.randbytes(48)).decode())
        elif kind == "hex":
            words = " ".join(f"{rng.randrange(1 << 16):04x}" for _ in range(8))
            lines.append(f"{rng.randrange(1 << 32):08x}: {words}")
        else:
            alphabet = string.ascii_letters + string.digits + "#$%&*+=<>?@^~|"
            lines.append(" ".join("".join(rng.choices(alphabet, k=rng.randint(3, 12))) for _ in range(8)))
    return "\n".join(lines)


_SEO = ("best cheap {w} online", "buy {w} now free shipping", "top 10 {w} deals today", "{w} discount code 2024",
        "click here for {w} offers", "{w} near me open now")


def low_quality_page(faker, rng: random.Random) -> str:
    """Fluent-looking nonsense: ``faker`` sentences (random common English words) mixed with SEO phrases."""
    paragraphs = []
    for _ in range(rng.randint(3, 8)):
        sentences = [faker.sentence(nb_words=rng.randint(6, 14)) for _ in range(rng.randint(3, 6))]
        if rng.random() < 0.6:
            seo = rng.choice(_SEO).format(w=faker.word()).capitalize() + "."
            sentences.insert(rng.randrange(len(sentences) + 1), seo)
        paragraphs.append(" ".join(sentences))
    return "\n\n".join(paragraphs)


def insert_pii(text: str, faker, rng: random.Random, count: int = 3) -> tuple[str, list[str]]:
    """``text`` with ``count`` sentences carrying an e-mail, a phone number or an IP, at random line breaks.
    Returns ``(text, planted strings)``."""
    lines = text.split("\n")
    planted = []
    for _ in range(count):
        kind = rng.choice(("email", "phone", "ip"))
        value = {"email": faker.email, "phone": faker.phone_number, "ip": faker.ipv4_public}[kind]()
        sentence = {"email": f"For questions write to {faker.name()} at {value} any time.",
                    "phone": f"Call our office on {value} during business hours.",
                    "ip": f"The request came from {value} according to the server logs."}[kind]
        lines.insert(rng.randrange(len(lines) + 1), sentence)
        planted.append(value)
    return "\n".join(lines), planted


def add_markdown(text: str, rng: random.Random) -> str:
    """Markdown markers around real prose: a heading, bold and italic words, links, bullets, inline code, quotes."""
    out = [f"# {' '.join(text.split()[:4])}"]
    for line in text.split("\n"):
        ws = line.split(" ")
        for k in range(len(ws)):
            if ws[k].isalpha() and rng.random() < 0.06:
                ws[k] = rng.choice((f"**{ws[k]}**", f"*{ws[k]}*", f"`{ws[k]}`",
                                    f"[{ws[k]}](https://example.com/{ws[k].lower()})"))
        line = " ".join(ws)
        r = rng.random()
        if line.strip() and r < 0.15:
            line = "- " + line
        elif line.strip() and r < 0.2:
            line = "> " + line
        elif line.strip() and r < 0.25:
            line = "## " + line
        out.append(line)
    return "\n".join(out)


def site_boilerplate(site: str, rng: random.Random) -> list[str]:
    """The lines a site puts on every page: navigation, cookie banner, footer (3 to 4 lines)."""
    name = site.split(".")[0].capitalize()
    sections = rng.sample(["Home", "News", "Sport", "Culture", "Docs", "Blog", "About", "Contact", "Shop", "Login"], 5)
    lines = [" | ".join(sections),
             rng.choice([f"We use cookies to improve your experience on {name}. By continuing you accept our "
                         "cookie policy.",
                         f"{name} uses cookies and similar technologies. Accept all cookies or manage your "
                         "preferences.",
                         "This website uses cookies to ensure you get the best experience. Accept Reject Settings"]),
             f"© 2024 {name} Media Group. All rights reserved. Privacy Policy | Terms of Use"]
    if rng.random() < 0.5:
        lines.insert(1, "Skip to main content")
    return lines
