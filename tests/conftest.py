"""Shared fixtures; the reader oracles and the demo microscope live in their own plugins."""

from __future__ import annotations

import signal

import pytest

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
