"""Shared fixtures; the reader oracles and the demo microscope live in their own plugins."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from mmtiffsink.tiff import _pool

pytest_plugins = ["tests.readers", "tests.microscope"]


def pytest_configure(config: pytest.Config) -> None:
    """Give child processes the SIGINT a terminal gives them.

    A script's background job (``cmd &``) starts with SIGINT ignored, and an ignored signal stays
    ignored across ``exec``: the commands the tests start would then ignore the Ctrl-C the tests
    send them (``test_run.py``'s Ctrl-C test failed that way). A handler, unlike SIG_IGN, is
    reset to the default in a child.
    """
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def tiny_budget(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A process budget of one byte: one frame in flight at a time (a frame always fits alone).

    Every byte taken must be given back by the end of the test.
    """
    monkeypatch.setattr(_pool, "_budget", _pool.Budget(1))
    yield
    assert _pool.budget().used == 0, "budget bytes leaked"
