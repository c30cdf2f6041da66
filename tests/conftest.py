"""Shared fixtures; the reader oracles and the demo microscope live in their own plugins."""

pytest_plugins = ["tests.readers", "tests.microscope"]
