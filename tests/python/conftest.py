"""Fixtures for the Python module's tests: small generated checkpoints (tests/e2e/lib)."""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e", "lib"))

import models  # noqa: E402
import st  # noqa: E402


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory):
    """A bf16 base and two fine-tunes: {"base": path, "a": path, "b": path, "values": {...}}."""
    root = tmp_path_factory.mktemp("models")
    base = models.make_llama(str(root / "base"), "bf16", seed=40)
    a = models.make_llama(str(root / "a"), "bf16", seed=41, base=base)
    b = models.make_llama(str(root / "b"), "bf16", seed=42, base=base)
    return {"base": str(root / "base"), "a": str(root / "a"), "b": str(root / "b"),
            "values": {"base": base, "a": a, "b": b}}


@pytest.fixture(autouse=True)
def kernel_cache(tmp_path_factory, monkeypatch):
    """Kernels cached in the test's temporary tree, never in ~/.cache."""
    monkeypatch.setenv("MERGEC_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "kernel-cache"))
