"""The whole ONNX node conformance suite (every included case, ``onnx_suite_config``) on
graphc's cpu target and reference interpreter: ``make onnx-suite``. Not collected by
``make test`` (which runs the slice of ``test_onnx_node_suite.py``)."""

import warnings

import pytest

onnx = pytest.importorskip("onnx")

import onnx_suite_config as cfg  # noqa: E402

from graphc.onnx import backend as gbackend  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    _INCLUDED, _EXCLUDED = cfg.node_cases()

OnnxNodeSuiteCpu = cfg.backend_tests(
    gbackend.GraphcBackend, __name__, _INCLUDED, cfg.CPU_KNOWN_FAILURES
)
OnnxNodeSuiteReference = cfg.backend_tests(gbackend.ReferenceBackend, __name__, _INCLUDED)


def test_report_exclusions():
    """Prints how many cases run and how many are excluded (and why, grouped)."""
    reasons = {}
    for why in _EXCLUDED.values():
        reasons[why] = reasons.get(why, 0) + 1
    total = len(_INCLUDED) + len(_EXCLUDED)
    print(f"\nONNX node suite: {total} cases, {len(_INCLUDED)} included, {len(_EXCLUDED)} "
          "excluded:")  # fmt: skip
    for why, n in sorted(reasons.items(), key=lambda kv: -kv[1]):
        print(f"  {n:4d}  {why}")
