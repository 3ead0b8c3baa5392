"""Crash-safe folders: what a killed writer leaves behind is cleaned up, or put back when it is the only copy."""

import os
import subprocess
import sys

from minillm.durable import remove_stale_temporaries, replace_dir


def _dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()                                                            # reaped: no zombie left
    return child.pid


def test_a_version_moved_aside_by_a_writer_killed_between_renames_is_put_back(tmp_path):
    pid = _dead_pid()
    (tmp_path / f".old-step_000004-{pid}").mkdir()                          # the previous, complete version
    (tmp_path / f".old-step_000004-{pid}" / "state.json").write_text("{}")
    (tmp_path / f".tmp-step_000004-{pid}").mkdir()                          # the new one, never renamed in
    (tmp_path / f".tmp-step_000002-{os.getppid()}").mkdir()                 # a writer that still runs
    removed = remove_stale_temporaries(tmp_path)
    assert [p.name for p in removed] == [f".tmp-step_000004-{pid}"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".tmp-step_000002-{os.getppid()}", "step_000004"]
    assert (tmp_path / "step_000004" / "state.json").read_text() == "{}"


def test_replace_dir_swaps_a_folder_for_a_complete_one_and_leaves_nothing_else(tmp_path):
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "f").write_text("new")
    (tmp_path / "dst").mkdir()
    (tmp_path / "dst" / "f").write_text("old")
    replace_dir(tmp_path / "new", tmp_path / "dst")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dst"]
    assert (tmp_path / "dst" / "f").read_text() == "new"
