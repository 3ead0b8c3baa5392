"""The code-aware path (report §3.1.1): structural lines survive line dedup, StarCoder-style code filters."""

import pytest

from minillm.data.code_path import (CodeFilterConfig, code_aware_line_dedup, code_reason, code_stats,
                                    looks_like_code, minify, parses)
from minillm.data.line_dedup import line_dedup

CODE = "def f(x):\n    if x:\n        return 1\n    else:\n        return None\n"
NAV = "Home | About | Contact"


def _bucket():
    prose = [f"{NAV}\nParagraph number {i} about nothing in particular." for i in range(10)]
    code = [f"{NAV}\n" + CODE.replace("f(x)", f"f{i}(x)") for i in range(10)]
    return prose + code, [False] * 10 + [True] * 10


def test_plain_line_dedup_breaks_code_that_the_code_aware_one_keeps():
    texts, is_code = _bucket()
    plain = line_dedup(texts, max_repeats=6)
    aware = code_aware_line_dedup(texts, is_code, max_repeats=6)
    assert not any(parses(t) for t in plain[10:])        # "else:" and "return None" are gone
    assert all(parses(t) for t in aware[10:])
    assert all(NAV not in t for t in aware)              # the boilerplate still goes everywhere
    assert aware[:10] == plain[:10]                      # prose pages are treated as before


def test_looks_like_code_separates_python_from_prose():
    assert looks_like_code(CODE)
    assert not looks_like_code("It was the best of times.\nIt was the worst of times.")


def test_code_filters_flag_minified_data_and_generated_pages():
    assert code_reason(code_stats(CODE)) is None
    assert code_reason(code_stats(minify(CODE * 60))) == "minified"
    assert code_reason(code_stats("(\n" + "'-', '+', '*', '/',\n" * 40 + ")")) == "not_code"   # 12% alnum
    assert code_reason(code_stats("# This file is auto-generated. Do not edit.\n" + CODE)) == "generated"
    assert code_stats("ab\ncd")["mean_line"] == pytest.approx(2.0)
    with pytest.raises(ValueError, match="min_alnum"):
        CodeFilterConfig(min_alnum=2)


def test_parses_accepts_indented_fragments_and_rejects_broken_ones():
    assert parses("    x = 1\n    y = 2\n")
    assert not parses("def f(:\n")


def test_code_lines_survive_even_when_missed_code_pages_count_as_prose():
    texts, is_code = _bucket()
    missed = [f"{NAV}\n" + CODE.replace("f(x)", f"g{i}(x)") for i in range(10)]   # code the detector missed
    aware = code_aware_line_dedup(texts + missed, is_code + [False] * 10, max_repeats=6)
    assert all(parses(t) for t in aware[10:20])          # "else:" is frequent on "prose" pages, but is code
    assert all(NAV not in t for t in aware)
