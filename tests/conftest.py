"""Shared pytest setup: the ``slow`` marker (end-to-end runs; CI runs them, ``-m "not slow"`` skips) and the
``load`` marker (>= 5 GB load tests; excluded by default in pytest.ini, run with ``-m load``)."""

import gc
import os
import sys

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: end-to-end or large tests (deselect with -m 'not slow')")
    config.addinivalue_line("markers", "load: load tests on >= 5 GB of generated data; not in CI (run with -m load)")


@pytest.fixture(autouse=True, scope="module")
def _release_tensorflow_memory_after_each_module():
    """Free what a test file's models and graphs held (the suite runs in 2 long-lived pytest-xdist workers,
    each ~6 GB by the end without this)."""
    yield
    keras = sys.modules.get("keras")
    if keras is not None:
        keras.backend.clear_session(free_memory=True)
    gc.collect()
