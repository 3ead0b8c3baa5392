"""make test's two lanes of notebooks cover the table of contents exactly once."""

from toc import ROOT, SECOND_LANE, lane_notebooks, toc_notebooks


def test_the_two_lanes_partition_the_chapters():
    one, two = lane_notebooks(1), lane_notebooks(2)
    assert sorted(one + two) == sorted(toc_notebooks()) and not set(one) & set(two)
    assert one == [p for p in toc_notebooks() if p in one]                 # lane 1 in book order
    assert two == [ROOT / f"{f}.ipynb" for f in SECOND_LANE]                # lane 2 in its own order


def test_every_second_lane_entry_is_a_chapter():
    assert {ROOT / f"{f}.ipynb" for f in SECOND_LANE} <= set(toc_notebooks())
