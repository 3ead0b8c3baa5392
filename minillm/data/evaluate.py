"""Score each curation stage against the crawl's planted ground truth: precision and recall per stage.

``evaluate(result, truth)`` → a JSON-able dict, one entry per stage:

- ``url_dedup``: removed pages vs the older crawls of each URL (``exact``: the two sets are equal);
- ``extract``: every planted bad input counted under its issue; markdown markers left in marked-up pages;
- ``minhash``: recall over planted pairs whose exact Jaccard (on the texts the stage saw) is ``>= threshold``;
  precision over removed pages (correct when a page of its planted duplicate group shares its cluster); the share of
  related pairs (Jaccard 0.3-0.6) wrongly merged; ``pairs`` lists ``(jaccard, merged)`` for the S-curve plot;
- ``line_dedup``: planted boilerplate lines left, and the share of other lines removed (the collateral);
- ``heuristics`` and ``quality``: recall per planted kind (removed by that stage or earlier), clean pages removed;
- ``pii``: planted strings gone after redaction (recall), redactions in pages where nothing was planted;
- ``domain``: accuracy of the domain classifier on the curated pages.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from minillm.data.crawl import CrawlTruth
from minillm.data.extract import MARKDOWN_RESIDUE
from minillm.data.line_dedup import normalize_line
from minillm.data.minhash import jaccard
from minillm.data.pii import redact_pii
from minillm.data.pipeline import CurationResult

STAGE_ORDER = ("url_dedup", "extract", "minhash", "heuristic", "quality")


def _pr(removed: set, positives: set) -> dict:
    tp = len(removed & positives)
    return dict(removed=len(removed), positives=len(positives), true_positives=tp,
                precision=tp / len(removed) if removed else 1.0, recall=tp / len(positives) if positives else 1.0)


def _stage(reason: str) -> str:
    return reason.split(":")[0]


def _removed_by(result: CurationResult, stages: tuple[str, ...]) -> set[int]:
    return {i for i, reason in result.removed.items() if _stage(reason) in stages}


def _minhash(result: CurationResult, truth: CrawlTruth, threshold: float, ngram: int) -> dict:
    seen = result.snapshots["minhash"]
    group = {}  # page -> the origin of its planted duplicate group
    for copy, origin in truth.duplicate_of.items():
        group[copy] = group[origin] = origin
    pairs, recall_hits, recall_total, related_merged, related_total = [], 0, 0, 0, 0
    for planted, merged_key in ((truth.duplicate_of, "dup"), (truth.related_to, "related")):
        for copy, origin in planted.items():
            if copy not in seen or origin not in seen:
                continue
            j = jaccard(seen[copy], seen[origin], ngram)
            merged = result.clusters[copy] == result.clusters[origin]
            pairs.append((round(j, 4), merged, merged_key))
            if merged_key == "dup" and j >= threshold:
                recall_total += 1
                recall_hits += merged
            if merged_key == "related":
                related_total += 1
                related_merged += merged
    members = defaultdict(set)
    for page, label in result.clusters.items():
        members[label].add(page)
    removed = _removed_by(result, ("minhash",))
    correct = {i for i in removed if i in group
               and any(group.get(k) == group[i] for k in members[result.clusters[i]] - {i})}
    return dict(precision=len(correct) / len(removed) if removed else 1.0,
                recall=recall_hits / recall_total if recall_total else 1.0, pairs_at_threshold=recall_total,
                removed=len(removed), unplanted_removed=sorted(removed - correct)[:20],
                related_merged=related_merged / related_total if related_total else 0.0, pairs=pairs)


def _lines(result: CurationResult, truth: CrawlTruth) -> dict:
    boiler = {normalize_line(line) for line in truth.boilerplate}
    before = result.snapshots["line_dedup"]
    after = {d["id"]: d["text"] for d in result.docs}
    planted_before = sum(normalize_line(line) in boiler for t in before.values() for line in t.split("\n"))
    planted_left = sum(normalize_line(line) in boiler for t in after.values() for line in t.split("\n"))
    # collateral: other lines of the pages that reached the end, before vs after line dedup
    other_before = sum(1 for i in after for line in before[i].split("\n")
                       if normalize_line(line) and normalize_line(line) not in boiler)
    other_after = sum(1 for t in after.values() for line in t.split("\n")
                      if normalize_line(line) and normalize_line(line) not in boiler)
    return dict(boilerplate_lines_in=planted_before, boilerplate_lines_left=planted_left,
                recall=1 - planted_left / planted_before if planted_before else 1.0,
                other_lines_removed=1 - other_after / other_before if other_before else 0.0)


def _filters(result: CurationResult, truth: CrawlTruth, stage: str, kinds: tuple[str, ...]) -> dict:
    """Recall per planted kind (removed at ``stage`` or earlier) and clean pages removed *at* ``stage``."""
    earlier = STAGE_ORDER[: STAGE_ORDER.index(stage) + 1]
    gone = _removed_by(result, earlier)
    reached = {i for i in truth.kind if _stage(result.removed.get(i, "end")) not in earlier[:-1]}
    out = {}
    for kind in kinds:
        planted = {i for i, k in truth.kind.items() if k == kind}
        out[f"{kind}_recall"] = len(planted & gone) / len(planted) if planted else 1.0
    clean = {i for i, k in truth.kind.items() if k == "clean"} & reached
    removed_here = _removed_by(result, (stage,))
    out["clean_removed"] = len(clean & removed_here) / len(clean) if clean else 0.0
    out["removed"] = len(removed_here)
    out["precision"] = len(removed_here - clean) / len(removed_here) if removed_here else 1.0
    return out


def _pii(result: CurationResult, truth: CrawlTruth) -> dict:
    final = {d["id"]: d["text"] for d in result.docs}
    seen = result.snapshots["pii"]
    planted = [(i, s) for i, strings in truth.pii.items() if i in final and i in seen for s in strings
               if s in seen[i]]
    found = sum(s not in final[i] for i, s in planted)
    false_redactions = Counter()
    for i, text in seen.items():
        if i not in truth.pii:
            false_redactions.update(redact_pii(text)[1])
    return dict(planted=len(planted), recall=found / len(planted) if planted else 1.0,
                redactions_in_pages_without_planted_pii=dict(false_redactions))


def evaluate(result: CurationResult, truth: CrawlTruth, threshold: float = 0.8, ngram: int = 5) -> dict:
    """Per-stage precision/recall of ``result`` against ``truth`` (see the module docstring)."""
    older = set(truth.kind) - set(truth.newest.values())  # every crawl of a URL but its newest
    url = _pr(_removed_by(result, ("url_dedup",)), older)
    url["exact"] = _removed_by(result, ("url_dedup",)) == older
    bad = {i: result.issues.get(i) for i in truth.bad_input}
    marked = [i for i in truth.markdown if i in result.snapshots["minhash"]]
    extract = dict(bad_planted=dict(Counter(truth.bad_input.values())),
                   bad_counted=sum(bad[i] == issue for i, issue in truth.bad_input.items()),
                   bad_missed={i: (truth.bad_input[i], bad[i]) for i in bad if bad[i] != truth.bad_input[i]},
                   markdown_pages=len(marked),
                   markdown_left=sum(bool(MARKDOWN_RESIDUE.search(result.snapshots["minhash"][i])) for i in marked))
    final = {d["id"]: d["domain"] for d in result.docs}
    correct = sum(final[i] == truth.domain[i] for i in final)
    per_domain = {}
    for d in sorted(set(truth.domain.values())):
        predicted = {i for i in final if final[i] == d}
        actual = {i for i in final if truth.domain[i] == d}
        per_domain[d] = dict(precision=len(predicted & actual) / len(predicted) if predicted else 1.0,
                             recall=len(predicted & actual) / len(actual) if actual else 1.0)
    return dict(url_dedup=url, extract=extract, minhash=_minhash(result, truth, threshold, ngram),
                line_dedup=_lines(result, truth),
                heuristics=_filters(result, truth, "heuristic", ("spam", "dirty", "garbage")),
                quality=_filters(result, truth, "quality", ("spam", "dirty", "garbage", "low_quality")),
                pii=_pii(result, truth),
                domain=dict(accuracy=correct / len(final) if final else 1.0, per_domain=per_domain))
