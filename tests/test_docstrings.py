"""Every public function and class documents itself with an Example.

The examples themselves run as doctests (``--doctest-modules``); this test
makes a missing one fail, for the plugin and the recipe's modules alike.
Methods that override a SpeechBrain ``Brain`` hook are documented by the
class example, which runs a whole fit.
"""

import importlib
import inspect
import pkgutil
import sys

import pytest
import speechbrain as sb
from recipe_runner import REPO

import speechbrain_trkd

RECIPE_DIR = REPO / "recipes" / "VoxCeleb" / "TRKD"
BRAIN_HOOKS = {
    name for name, _ in inspect.getmembers(sb.Brain, inspect.isfunction)
}


def public_modules():
    """The plugin's modules and the recipe's scripts, imported."""
    names = [
        f"speechbrain_trkd.{m.name}"
        for m in pkgutil.iter_modules(speechbrain_trkd.__path__)
    ]
    sys.path.insert(0, str(RECIPE_DIR))
    names += sorted(p.stem for p in RECIPE_DIR.glob("*.py"))
    return [importlib.import_module(name) for name in names]


def public_objects(module):
    """(qualified name, object) of the public API defined in ``module``."""
    for name, obj in vars(module).items():
        if name.startswith("_") or getattr(obj, "__module__", None) != (
            module.__name__
        ):
            continue
        if inspect.isfunction(obj) and name != "main":
            yield f"{module.__name__}.{name}", obj
        elif inspect.isclass(obj):
            yield f"{module.__name__}.{name}", obj
            for attr, member in vars(obj).items():
                if (
                    attr.startswith("_")
                    or not inspect.isfunction(member)
                    or (issubclass(obj, sb.Brain) and attr in BRAIN_HOOKS)
                ):
                    continue
                yield f"{module.__name__}.{name}.{attr}", member


@pytest.mark.parametrize("module", public_modules(), ids=lambda m: m.__name__)
def test_public_docstrings_have_examples(module):
    """NumPy docstring with an ``Example`` section for each public object."""
    missing = [
        name
        for name, obj in public_objects(module)
        if "Example" not in (inspect.getdoc(obj) or "")
    ]
    assert not missing, f"no Example in the docstring of {missing}"
