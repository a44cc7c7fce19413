"""Shared pytest setup: the ``slow`` marker (end-to-end runs; CI runs them, ``-m "not slow"`` skips)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: end-to-end or large tests (deselect with -m 'not slow')")
