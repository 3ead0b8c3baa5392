"""Artifact builds survive crashes: killed builds are cleaned up, a stopped builder does not hang the others forever,
and a finished build is on the disk before its folder gets its name."""

import logging
import multiprocessing as mp
import os
import signal
import time
from pathlib import Path

import pytest

from minillm import artifacts

RECIPE = {"seed": 0}


def _hanging_build(root, ready):
    def build(out):
        (out / "part.bin").write_bytes(b"half")
        Path(ready).write_text("building")
        time.sleep(120)                                                     # until the test stops or kills it
    artifacts.build_or_load("model", RECIPE, build, root=root, verbose=False)


def _start_hanging_builder(tmp_path):
    ready = tmp_path / "ready"
    child = mp.get_context("fork").Process(target=_hanging_build, args=(tmp_path / "cache", ready))
    child.start()
    deadline = time.monotonic() + 60
    while not ready.exists():
        assert child.is_alive() and time.monotonic() < deadline, "the builder never started"
        time.sleep(0.02)
    return child


def _write(out):
    (out / "data.txt").write_text("hello")


def test_a_build_removes_the_temporary_folders_of_killed_builds_only(tmp_path):
    child = _start_hanging_builder(tmp_path)
    os.kill(child.pid, signal.SIGKILL)
    child.join()
    folder = artifacts.artifact_path("model", RECIPE, root=tmp_path / "cache")
    killed = folder.parent / f".tmp-{folder.name}-{child.pid}"
    assert killed.is_dir()                                                  # what the killed build left
    alive = folder.parent / f".tmp-otherkey-{os.getppid()}"                 # a build still running elsewhere
    alive.mkdir()
    artifacts.build_or_load("model", RECIPE, _write, root=tmp_path / "cache", verbose=False)
    assert not killed.exists() and alive.is_dir()
    assert (folder / "data.txt").read_text() == "hello"


def test_waiting_behind_a_stopped_builder_times_out_naming_the_lock_file_and_its_pid(tmp_path, caplog):
    child = _start_hanging_builder(tmp_path)
    try:
        os.kill(child.pid, signal.SIGSTOP)                                  # stopped, holding the lock
        folder = artifacts.artifact_path("model", RECIPE, root=tmp_path / "cache")
        lock = folder.parent / f"{folder.name}.lock"
        with caplog.at_level(logging.INFO, logger="minillm.artifacts"):
            with pytest.raises(artifacts.LockTimeout) as err:
                artifacts.build_or_load("model", RECIPE, _write, root=tmp_path / "cache", lock_timeout=0.6)
        assert str(lock) in str(err.value) and f"pid {child.pid}" in str(err.value)
        waits = [r for r in caplog.records if "waiting for pid" in r.getMessage()]
        assert len(waits) == 1 and str(child.pid) in waits[0].getMessage() and waits[0].levelno == logging.INFO
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.join()
    artifacts.build_or_load("model", RECIPE, _write, root=tmp_path / "cache")   # the lock died with its holder


def test_the_builders_pid_sits_beside_the_lock_while_it_builds_and_is_gone_after_the_next_build(tmp_path):
    child = _start_hanging_builder(tmp_path)
    folder = artifacts.artifact_path("model", RECIPE, root=tmp_path / "cache")
    pid_file = folder.parent / f"{folder.name}.lock.pid"
    try:
        assert pid_file.read_text() == str(child.pid)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.join()
    artifacts.build_or_load("model", RECIPE, _write, root=tmp_path / "cache", lock_timeout=5)
    assert not pid_file.exists() and {p.name for p in folder.parent.iterdir()} == {folder.name, f"{folder.name}.lock"}


def test_lock_timeout_comes_from_the_argument_then_the_environment_then_the_default(monkeypatch):
    monkeypatch.delenv("MINILLM_LOCK_TIMEOUT", raising=False)
    assert artifacts.lock_timeout_seconds() == artifacts.DEFAULT_LOCK_TIMEOUT_S == 30 * 60
    monkeypatch.setenv("MINILLM_LOCK_TIMEOUT", "5")
    assert artifacts.lock_timeout_seconds() == 5 and artifacts.lock_timeout_seconds(2) == 2
    monkeypatch.setenv("MINILLM_LOCK_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="MINILLM_LOCK_TIMEOUT"):
        artifacts.lock_timeout_seconds()


def test_a_build_is_fsynced_before_its_folder_is_renamed_into_place(tmp_path, fsynced_before_rename):
    folder = artifacts.build_or_load("x", RECIPE, _write, root=tmp_path, verbose=False)
    fsynced_before_rename(folder)


def test_a_forced_rebuild_that_cannot_be_renamed_in_keeps_the_cached_version(tmp_path, monkeypatch,
                                                                               fail_renames_of_temporaries):
    folder = artifacts.build_or_load("x", RECIPE, _write, root=tmp_path, verbose=False)
    fail_renames_of_temporaries()
    with pytest.raises(OSError, match="injected"):
        artifacts.build_or_load("x", RECIPE, lambda out: (out / "data.txt").write_text("new"), root=tmp_path,
                                force=True, verbose=False)
    monkeypatch.undo()
    assert (folder / "data.txt").read_text() == "hello" and artifacts.is_built(folder)
    assert [p.name for p in folder.parent.iterdir() if not p.name.endswith(".lock")] == [folder.name]


def test_a_corrupt_recipe_is_named_with_its_path_and_the_fix(tmp_path):
    from minillm.artifacts import RECIPE_FILE, build_or_load, load_recipe

    folder = build_or_load("thing", {"v": 1}, lambda out: (out / "x.txt").write_text("x"), root=tmp_path)
    (folder / RECIPE_FILE).write_text('{"v": ')
    with pytest.raises(ValueError, match=f"{RECIPE_FILE}.*delete"):
        load_recipe(folder)
