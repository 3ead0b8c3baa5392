"""Build expensive things once, cache them, load them afterwards.

A tokenizer, a curated corpus or a trained tiny model takes seconds to minutes to make. Chapters share them through
this module: each artifact is a folder produced by a ``build(out_dir)`` function from a *recipe*, a small JSON-able dict
holding everything the result depends on (seed, sizes, the keys of the artifacts it was built from, a version number to
bump when the code changes). The folder lives at ``<cache>/<name>/<hash of recipe>/``, so

- the same recipe loads the cached result (any chapter, any process, after a restart);
- a changed recipe builds anew beside the old one (nothing is overwritten);
- a build that fails or is interrupted leaves nothing behind: it writes to ``.tmp-<key>-<pid>``, fsynced and renamed
  when complete (``minillm.durable``); the temporary folders of killed builds are deleted when the next build starts;
- two processes asking at once build it once (a ``filelock`` lock, the builder's pid in a file beside it). A waiter
  logs once which pid it waits for and gives up after ``lock_timeout`` seconds (default 30 minutes,
  ``MINILLM_LOCK_TIMEOUT``) with ``LockTimeout`` naming the lock file and that pid, instead of hanging forever behind
  a stopped process.

The cache root is ``~/.cache/minillm``; set ``MINILLM_CACHE`` or pass ``root=`` to put it elsewhere.
Nothing here is committed to git: every artifact is rebuilt deterministically from its recipe on a fresh machine.

Status lines ("tokenizer: loaded from cache") go to the ``minillm.artifacts`` logger at INFO, with the folder at
DEBUG, so a rendered page never shows a path of the machine that built it. ``only_cached()`` answers "is this
built?" without building: inside it, ``build_or_load`` raises ``NotCached`` instead of calling ``build``.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from filelock import FileLock, Timeout

from minillm.durable import fsync_tree, remove_stale_temporaries, replace_dir

RECIPE_FILE = "recipe.json"
DEFAULT_LOCK_TIMEOUT_S = 30 * 60  # longer than any build of the book; MINILLM_LOCK_TIMEOUT or lock_timeout= changes it
log = logging.getLogger(__name__)
_ONLY_CACHED = contextvars.ContextVar("minillm_only_cached", default=False)


class NotCached(LookupError):
    """Raised by ``build_or_load`` inside ``only_cached()`` for an artifact that is not built yet."""

    def __init__(self, name: str):
        super().__init__(f"artifact {name!r} is not in the cache (it is built on first use)")
        self.name = name


@contextlib.contextmanager
def only_cached() -> Iterator[None]:
    """Within this block ``build_or_load`` loads what is cached and raises ``NotCached`` instead of building."""
    token = _ONLY_CACHED.set(True)
    try:
        yield
    finally:
        _ONLY_CACHED.reset(token)


class LockTimeout(TimeoutError):
    """Raised by ``build_or_load`` when another process held the build lock for longer than ``lock_timeout``."""


def cache_root(root: str | os.PathLike | None = None) -> Path:
    """The cache folder: ``root`` if given, else ``$MINILLM_CACHE``, else ``~/.cache/minillm``."""
    if root is None:
        root = os.environ.get("MINILLM_CACHE") or Path.home() / ".cache" / "minillm"
    return Path(root).expanduser()


def lock_timeout_seconds(seconds: float | None = None) -> float:
    """Seconds to wait for another process's build: ``seconds`` if given, else ``$MINILLM_LOCK_TIMEOUT``, else
    ``DEFAULT_LOCK_TIMEOUT_S``."""
    if seconds is None:
        text = os.environ.get("MINILLM_LOCK_TIMEOUT")
        try:
            seconds = float(text) if text else DEFAULT_LOCK_TIMEOUT_S
        except ValueError:
            raise ValueError(f"MINILLM_LOCK_TIMEOUT must be a number of seconds, got {text!r}") from None
    if seconds < 0:
        raise ValueError(f"lock_timeout must be >= 0 seconds, got {seconds}")
    return float(seconds)


def recipe_key(recipe: Mapping[str, Any]) -> str:
    """A stable hash of a recipe (sorted-key JSON). Raises ``TypeError`` naming a value JSON cannot hold."""
    try:
        text = json.dumps(recipe, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"artifact recipe must hold only JSON values (str, int, float, bool, None, lists, dicts): {err}. "
            f"Put paths as str and artifacts you depend on by their key (the folder name)"
        ) from err
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def artifact_path(name: str, recipe: Mapping[str, Any], root: str | os.PathLike | None = None) -> Path:
    """Where the artifact ``name`` built from ``recipe`` lives (whether or not it exists yet)."""
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"artifact name must be a plain folder name, got {name!r}")
    return cache_root(root) / name / recipe_key(recipe)


def is_built(path: Path) -> bool:
    return (path / RECIPE_FILE).is_file()


def build_or_load(
    name: str,
    recipe: Mapping[str, Any],
    build: Callable[[Path], None],
    root: str | os.PathLike | None = None,
    force: bool = False,
    verbose: bool = True,
    lock_timeout: float | None = None,
) -> Path:
    """Return the folder of artifact ``name`` for ``recipe``, calling ``build(tmp_dir)`` first if it is not cached.

    ``build`` must write everything into the folder it is given and depend only on the recipe (seeded, no clock).
    ``force=True`` rebuilds even when cached. Inside ``only_cached()`` a missing artifact raises ``NotCached``.
    ``lock_timeout`` (seconds; see ``lock_timeout_seconds``) bounds the wait for another process building it.
    """
    final = artifact_path(name, recipe, root)
    if is_built(final) and not force:
        if verbose:
            log.info("%s: loaded from cache", name)
            log.debug("%s: folder %s", name, final)
        return final
    if _ONLY_CACHED.get():
        raise NotCached(name)
    if verbose:
        log.info("%s: not cached, building it (once; later runs load it)", name)
    final.parent.mkdir(parents=True, exist_ok=True)
    with _lock(final.parent / f"{final.name}.lock", lock_timeout_seconds(lock_timeout), name):
        if is_built(final) and not force:  # another process built it while we waited
            return final
        for stale in remove_stale_temporaries(final.parent):
            log.info("%s: removed %s, left by a killed build", name, stale.name)
        tmp = final.parent / f".tmp-{final.name}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        start = time.perf_counter()
        try:
            build(tmp)
            (tmp / RECIPE_FILE).write_text(json.dumps(dict(recipe), sort_keys=True, indent=2))
            fsync_tree(tmp)
            replace_dir(tmp, final)  # the recipe file, written last, marks the folder complete
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        if verbose:
            log.info("%s: built in %.0f s and cached", name, time.perf_counter() - start)
            log.debug("%s: folder %s", name, final)
    return final


def load_recipe(path: str | os.PathLike) -> dict[str, Any]:
    """The recipe an artifact folder was built from."""
    path = Path(path)
    if not is_built(path):
        raise FileNotFoundError(f"{path} is not a built artifact (no {RECIPE_FILE}); build it with build_or_load")
    try:
        return json.loads((path / RECIPE_FILE).read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path / RECIPE_FILE} is not valid JSON ({err}); the artifact is corrupt: delete {path} "
                         f"and it is rebuilt on next use") from err


def list_artifacts(root: str | os.PathLike | None = None) -> list[tuple[str, str, int]]:
    """``(name, key, bytes)`` for every built artifact under the cache root."""
    rows = []
    base = cache_root(root)
    if not base.is_dir():
        return rows
    for folder in sorted(base.glob("*/*")):
        if folder.is_dir() and is_built(folder):
            size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
            rows.append((folder.parent.name, folder.name, size))
    return rows


@contextlib.contextmanager
def _lock(path: Path, timeout: float, name: str) -> Iterator[None]:
    """An exclusive inter-process lock on ``path`` (``filelock``: ``flock`` on POSIX, ``msvcrt`` on Windows), with
    the holder's pid in a sidecar file ``<path>.pid`` (filelock truncates the lock file itself on every attempt).

    Waits at most ``timeout`` seconds, logging once (INFO) which pid it waits for, then raises ``LockTimeout``. The
    operating system drops the lock when its holder dies, so a killed build never blocks the next one.
    """
    lock, pid_file = FileLock(path), Path(f"{path}.pid")
    deadline, logged = time.monotonic() + timeout, False
    while True:
        try:
            lock.acquire(timeout=min(0.2, max(0.0, deadline - time.monotonic())))
            break
        except Timeout:
            holder = _read_pid(pid_file)
            if time.monotonic() >= deadline:
                raise LockTimeout(
                    f"{name}: waited {timeout:.0f} s for lock file {path}, held by pid {holder}. If that "
                    f"process is stopped or hung, end it; else allow longer with lock_timeout= or "
                    f"MINILLM_LOCK_TIMEOUT") from None
            if not logged:
                log.info("%s: waiting for pid %s, which is building it (lock file %s)", name, holder, path.name)
                logged = True
    try:
        tmp = pid_file.with_name(f"{pid_file.name}.{os.getpid()}")
        tmp.write_text(str(os.getpid()))
        os.replace(tmp, pid_file)                                    # a reader sees no pid or a whole one
        yield
    finally:
        pid_file.unlink(missing_ok=True)                             # while still holding the lock
        lock.release()


def _read_pid(pid_file: Path) -> str:
    """The pid the lock's holder wrote ("unknown" before it has written it)."""
    try:
        text = pid_file.read_text().strip()
    except OSError:
        return "unknown"
    return text if text.isdigit() else "unknown"
