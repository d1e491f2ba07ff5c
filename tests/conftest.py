"""Shared pytest fixtures and hooks."""

import sys

import pytest
import torch
from recipe_runner import RecipeRunner
from speechbrain.utils.importutils import LazyModule


def settle_lazy_modules():
    """Lets tools that scan ``sys.modules`` skip SpeechBrain's lazy modules.

    SpeechBrain registers lazy proxies of optional integrations (k2, ...) in
    ``sys.modules``; reading any missing attribute of one imports its target,
    and when that dependency is not installed it raises ImportError where
    ``getattr(module, "__file__", None)`` expects AttributeError. Hypothesis
    scans ``sys.modules`` that way at collection and whenever it grows, so a
    not-yet-loaded proxy gets an explicit ``__file__`` of None.
    """
    for module in list(sys.modules.values()):
        if isinstance(module, LazyModule) and module.lazy_module is None:
            module.__dict__.setdefault("__file__", None)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    """Before hypothesis's own hook scans ``sys.modules``."""
    settle_lazy_modules()


def pytest_runtest_setup(item):
    """Tests may import modules that register new lazy proxies."""
    settle_lazy_modules()


def pytest_runtest_teardown(item):
    """Undo the recipe's process-wide flush-to-zero after in-process runs.

    The recipe scripts flush denormal floats to zero for CPU speed; doctests
    and tests that call them in-process must not leave that on for the
    tests that follow (hypothesis refuses to draw floats under it).
    """
    torch.set_flush_denormal(False)


@pytest.fixture(scope="session")
def recipe_runner(tmp_path_factory):
    """One generated corpus and one run per recipe row per test session."""
    return RecipeRunner(tmp_path_factory.mktemp("recipes"))
