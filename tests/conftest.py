"""Shared test scaffolding: the import of the reference packages.

Cross-check tests compare reid_nb with FastReID 1.4 and torchreid 0.2.5 when they are installed. FastReID predates
Python 3.10 (`from collections import Mapping`), so each test module is imported inside
`reid_nb.test_utils.fastreid_compat()`: `collections` has the old names while the module (and what it imports at the
top, FastReID included) loads, and loses them afterwards, so no test runs on a patched standard library. A test module
just imports FastReID at its top (`pytest.importorskip('fastreid.evaluation.rank')`, or a try/except).
"""
import pytest
from reid_nb.test_utils import fastreid_compat

@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector):
    "Collecting a test module imports it: under the FastReID shim."
    if not isinstance(collector, pytest.Module): return (yield)
    with fastreid_compat(): return (yield)
