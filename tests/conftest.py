"""Shared pytest setup: the ``slow`` marker (end-to-end runs; CI runs them, ``-m "not slow"`` skips) and the
``load`` marker (>= 5 GB load tests; excluded by default in pytest.ini, run with ``-m load``)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: end-to-end or large tests (deselect with -m 'not slow')")
    config.addinivalue_line("markers", "load: load tests on >= 5 GB of generated data; not in CI (run with -m load)")
