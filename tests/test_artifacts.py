"""Artifacts are built once per recipe, rebuilt when the recipe changes, and never left half-built."""

import json
import multiprocessing as mp

import pytest

from minillm import artifacts


def _writer(calls):
    def build(out):
        calls.append(out)
        (out / "data.txt").write_text("hello")
    return build


def test_second_request_loads_from_cache_without_building(tmp_path):
    calls = []
    first = artifacts.build_or_load("tok", {"seed": 0, "vocab": 8}, _writer(calls), root=tmp_path)
    second = artifacts.build_or_load("tok", {"vocab": 8, "seed": 0}, _writer(calls), root=tmp_path)
    assert first == second and len(calls) == 1
    assert (first / "data.txt").read_text() == "hello"
    assert artifacts.load_recipe(first) == {"seed": 0, "vocab": 8}


def test_changed_recipe_builds_beside_the_old_one(tmp_path):
    calls = []
    a = artifacts.build_or_load("tok", {"seed": 0}, _writer(calls), root=tmp_path)
    b = artifacts.build_or_load("tok", {"seed": 1}, _writer(calls), root=tmp_path)
    assert a != b and len(calls) == 2 and a.exists() and b.exists()
    assert [row[:1] for row in artifacts.list_artifacts(tmp_path)] == [("tok",), ("tok",)]


def test_failed_build_leaves_nothing_and_can_be_retried(tmp_path):
    def broken(out):
        (out / "partial.bin").write_bytes(b"x")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        artifacts.build_or_load("model", {"seed": 0}, broken, root=tmp_path)
    folder = artifacts.artifact_path("model", {"seed": 0}, root=tmp_path)
    assert not folder.exists()
    assert [p.name for p in folder.parent.iterdir() if not p.name.endswith(".lock")] == []
    calls = []
    artifacts.build_or_load("model", {"seed": 0}, _writer(calls), root=tmp_path)
    assert len(calls) == 1


def test_force_rebuilds(tmp_path):
    calls = []
    artifacts.build_or_load("x", {"v": 1}, _writer(calls), root=tmp_path)
    artifacts.build_or_load("x", {"v": 1}, _writer(calls), root=tmp_path, force=True)
    assert len(calls) == 2


def test_recipe_must_be_json_and_name_a_plain_folder(tmp_path):
    with pytest.raises(TypeError, match="JSON"):
        artifacts.build_or_load("x", {"path": tmp_path}, _writer([]), root=tmp_path)
    with pytest.raises(ValueError, match="plain folder name"):
        artifacts.build_or_load("../x", {}, _writer([]), root=tmp_path)
    with pytest.raises(FileNotFoundError, match="not a built artifact"):
        artifacts.load_recipe(tmp_path)


def test_cache_root_honours_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MINILLM_CACHE", str(tmp_path / "c"))
    assert artifacts.cache_root() == tmp_path / "c"


def _build_in_child(root, counter_file):
    def build(out):
        with open(counter_file, "a") as f:
            f.write("built\n")
        (out / "ok").write_text("1")
    artifacts.build_or_load("shared", {"seed": 3}, build, root=root, verbose=False)


def test_two_processes_asking_at_once_build_once(tmp_path):
    counter = tmp_path / "count.txt"
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_build_in_child, args=(tmp_path, counter)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert counter.read_text().count("built") == 1
    folder = artifacts.artifact_path("shared", {"seed": 3}, root=tmp_path)
    assert json.loads((folder / "recipe.json").read_text()) == {"seed": 3}
