"""Fixtures shared by the test modules."""

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """Run a module's tiny models on one thread: for models this small a second thread only adds synchronisation,
    and on a loaded machine it can make every op wait for a descheduled worker."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def fail_renames_of_temporaries(monkeypatch):
    """A function that, once called, makes ``os.replace``/``os.rename`` of a ``.tmp-*`` folder raise: a crash while
    renaming a new build or checkpoint into place (``minillm.durable``). ``monkeypatch.undo()`` restores them."""
    import os
    from pathlib import Path

    def failing(real):
        def rename(a, b):
            if Path(a).name.startswith(".tmp-"):
                raise OSError("injected: crash while renaming the new folder into place")
            return real(a, b)
        return rename

    def inject() -> None:
        monkeypatch.setattr(os, "replace", failing(os.replace))
        monkeypatch.setattr(os, "rename", failing(os.rename))
    return inject


@pytest.fixture
def fsynced_before_rename(monkeypatch):
    """Records every ``os.fsync`` and rename; returns a check that every file of a folder renamed into place (and the
    folder itself) was fsynced before the ``.tmp-*`` rename (``minillm.durable``). Inodes survive the rename."""
    import os
    from pathlib import Path

    events = []
    real_fsync, real_replace, real_rename = os.fsync, os.replace, os.rename
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append(("fsync", os.fstat(fd).st_ino)), real_fsync(fd)))
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append(("rename", Path(a).name)), real_replace(a, b)))
    monkeypatch.setattr(os, "rename", lambda a, b: (events.append(("rename", Path(a).name)), real_rename(a, b)))

    def check(folder: Path) -> None:
        into_place = next(i for i, e in enumerate(events) if e[0] == "rename" and e[1].startswith(".tmp-"))
        synced = {ino for kind, ino in events[:into_place] if kind == "fsync"}
        for f in [folder, *folder.iterdir()]:
            assert f.stat().st_ino in synced, f"{f.name} was not fsynced before the rename"
    return check
