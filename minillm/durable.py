"""Crash-safe folders: write to a temporary folder, fsync, rename into place.

Checkpoints (``minillm.train.checkpoint``) and cached artifacts (``minillm.artifacts``) are folders that must either
be complete or not be there at all, even when the process is killed or the machine loses power mid-write. The recipe:

1. write every file into ``.tmp-<name>-<pid>`` beside the destination;
2. ``fsync`` every file and folder in it: a rename is only ordered after the data if the data reached the disk first
   (without it, a power cut after the rename can leave the new name pointing at empty or zeroed files);
3. rename it into place (``replace_dir``): a rename within one file system is atomic, and the previous version stays
   in place until the new one is complete;
4. ``fsync`` the parent folder, which makes the rename itself durable.

A process killed during 1–2 leaves its ``.tmp-…-<pid>`` folder behind; ``remove_stale_temporaries`` deletes those of
processes that no longer run (call it when a new write starts). Pids are those of this machine: do not share one
such folder between machines that write at the same time.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def fsync_file(path: str | os.PathLike) -> None:
    """Flush one file's data to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str | os.PathLike) -> None:
    """Flush a folder's entries (names created, renamed or deleted in it) to the disk; a no-op on Windows."""
    if os.name == "nt":  # folders cannot be opened there; NTFS journals renames itself
        return
    fsync_file(path)


def fsync_tree(folder: str | os.PathLike) -> None:
    """``fsync`` every file under ``folder``, then every folder bottom-up, ``folder`` itself last."""
    folder = Path(folder)
    for dirpath, _, filenames in os.walk(folder, topdown=False):
        for name in filenames:
            fsync_file(Path(dirpath) / name)
        fsync_dir(dirpath)


def replace_dir(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Move the complete folder ``src`` to ``dst``, replacing any folder there; ``dst`` never goes missing on an error.

    A folder cannot be renamed over a non-empty one, so an existing ``dst`` is first renamed aside to
    ``.old-<name>-<pid>``, ``src`` renamed in, and the old one deleted; if the second rename fails the old one is
    put back. (A kill exactly between the two renames leaves both versions complete under their hidden names.)
    """
    src, dst = Path(src), Path(dst)
    aside = None
    if dst.exists():
        aside = dst.with_name(f".old-{dst.name}-{os.getpid()}")
        shutil.rmtree(aside, ignore_errors=True)
        os.replace(dst, aside)
    try:
        os.replace(src, dst)
    except BaseException:
        if aside is not None:
            os.replace(aside, dst)
        raise
    fsync_dir(dst.parent)
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (a zombie counts as alive; always True on Windows)."""
    if os.name == "nt":  # os.kill(pid, 0) would send CTRL_C_EVENT there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the ``.tmp-*-<pid>`` folders in ``folder`` whose process no longer runs; return them.

    An ``.old-<name>-<pid>`` folder of a dead process is a previous version ``replace_dir`` had moved aside when it
    was killed: it is put back as ``<name>`` if nothing took that name, else deleted.
    """
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    for path in sorted(folder.iterdir()):
        if not path.name.startswith((".tmp-", ".old-")) or not path.is_dir():
            continue
        name, _, pid = path.name[len(".tmp-"):].rpartition("-")
        if not pid.isdigit() or int(pid) == os.getpid() or pid_alive(int(pid)):
            continue
        if path.name.startswith(".old-") and name and not (folder / name).exists():
            os.replace(path, folder / name)
            fsync_dir(folder)
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed
