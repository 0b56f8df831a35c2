"""Shared fixtures: every test gets a fresh default graph; the default on-disk compile cache
and graphc's config directory (the cache key) are private temporary directories per test
process (never the user's ~/.cache or ~/.config)."""

import atexit
import os
import shutil
import tempfile

import numpy as np
import pytest

import graphc as gc

# Read by graphc.config when CompileOptions() is created; set before any test runs.
os.environ["GRAPHC_CACHE_DIR"] = tempfile.mkdtemp(prefix="graphc-test-cache-")
atexit.register(shutil.rmtree, os.environ["GRAPHC_CACHE_DIR"], ignore_errors=True)
# ... and the cache's secret key (graphc.config.cache_key_file) lives in a private one too
os.environ["GRAPHC_CONFIG_DIR"] = tempfile.mkdtemp(prefix="graphc-test-config-")
atexit.register(shutil.rmtree, os.environ["GRAPHC_CONFIG_DIR"], ignore_errors=True)


@pytest.fixture(autouse=True)
def fresh_graph():
    gc.reset_default_graph()
    yield
    gc.reset_default_graph()


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def pytest_collection_modifyitems(config, items):
    """Skip cuda-marked tests when no GPU/pycuda is usable."""
    from graphc.backends.cuda import availability

    problem = availability()
    if problem:
        skip = pytest.mark.skip(reason=f"cuda unavailable: {problem}")
        for item in items:
            if "cuda" in item.keywords:
                item.add_marker(skip)
