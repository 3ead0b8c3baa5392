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
