"""ONNX's official node conformance suite through ``onnx.backend.test.BackendTest``, on
graphc's cpu target and its reference interpreter: a bounded, deterministic slice of the
included cases (``onnx_suite_config``). ``make onnx-suite`` runs all of them
(``tests/onnx/full_onnx_suite.py``)."""

import warnings

import pytest

onnx = pytest.importorskip("onnx")

import onnx_suite_config as cfg  # noqa: E402

from graphc.onnx import backend as gbackend  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    _INCLUDED, _EXCLUDED = cfg.node_cases()

CPU_EVERY, REFERENCE_EVERY = 40, 8


OnnxNodeSliceCpu = cfg.backend_tests(
    gbackend.GraphcBackend, __name__, cfg.slice_names(_INCLUDED, CPU_EVERY), cfg.CPU_KNOWN_FAILURES
)
OnnxNodeSliceReference = cfg.backend_tests(
    gbackend.ReferenceBackend, __name__, cfg.slice_names(_INCLUDED, REFERENCE_EVERY)
)


def test_exclusions_cover_the_suite_and_are_explained():
    assert len(_INCLUDED) + len(_EXCLUDED) == len(set(_INCLUDED) | set(_EXCLUDED))
    assert len(_INCLUDED) >= 1300
    assert all(isinstance(r, str) and r for r in _EXCLUDED.values())
    assert set(cfg.EXCLUDED_OPS) and all(cfg.EXCLUDED_OPS.values())


def test_slice_is_deterministic_and_bounded():
    one = cfg.slice_names(_INCLUDED, CPU_EVERY)
    assert one == cfg.slice_names(list(_INCLUDED), CPU_EVERY)
    assert 15 < len(one) < 80
    ops = {name.split("_")[1] for name in one}
    assert len(ops) > 10  # spread over many op types
