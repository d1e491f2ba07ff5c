"""Shared pytest fixtures."""

import pytest
from recipe_runner import RecipeRunner


@pytest.fixture(scope="session")
def recipe_runner(tmp_path_factory):
    """One generated corpus and one run per recipe row per test session."""
    return RecipeRunner(tmp_path_factory.mktemp("recipes"))
