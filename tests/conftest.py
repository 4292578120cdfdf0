import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings

REPO = Path(__file__).resolve().parents[1]


def _checkout_package() -> Path:
    """A folder holding `jakcds` laid out as the wheel lays it out (engine/* + cli.py + rules/),
    made of links into this checkout: the code under test is the checkout, never a stale install."""
    root = Path(tempfile.mkdtemp(prefix="jakcds-checkout-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    package = root / "jakcds"
    package.mkdir()
    for entry in (REPO / "engine").iterdir():
        if entry.name != "__pycache__":
            (package / entry.name).symlink_to(entry)
    (package / "cli.py").symlink_to(REPO / "cli.py")
    (package / "rules").symlink_to(REPO / "rules")
    return root


assert "jakcds" not in sys.modules, "jakcds was imported before tests/conftest.py could point it at the checkout"
CHECKOUT = _checkout_package()
sys.path.insert(0, str(CHECKOUT))
# subprocesses (the jakcds console script, serve, screen workers) import the checkout too
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(CHECKOUT), os.environ.get("PYTHONPATH")]))

import jakcds  # noqa: E402 - after the checkout is first on the path

# Hypothesis: HYPOTHESIS_PROFILE=dev runs each property on a few examples (the edit-test loop);
# ci, the default, runs each property's own count (examples(n)) and prints how to reproduce a failure.
DEV_EXAMPLES = 10
settings.register_profile("ci", print_blob=True)
settings.register_profile("dev", max_examples=DEV_EXAMPLES)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
settings.load_profile(PROFILE)


def examples(count: int) -> int:
    """A property's example count: its own, or at most DEV_EXAMPLES under the dev profile (a
    test's own max_examples would override the profile's)."""
    return min(count, DEV_EXAMPLES) if PROFILE == "dev" else count


RULES = REPO / "rules"
CASES = REPO / "cases"
SEEDS = Path(os.environ.get("JAKCDS_SEEDS", REPO.parent / "shared" / "seeds"))

WENZEL = {
    "age": 69,
    "sex": "female",
    "condition": "chilblain_lupus_erythematosus",
    "failed_therapies": ["systemic_corticosteroids"],
    "contraindicated_therapies": [],
    "comorbidities": ["myelofibrosis", "thrombocytopenia"],
    "labs": {"platelets": 120},
    "medications": [],
    "pregnant": False,
    "breastfeeding": False,
    "smoking": "never",
}


@pytest.fixture(scope="session")
def evaluator() -> jakcds.Evaluator:
    """The repository's rule pack (so an edited rule is tested without reinstalling)."""
    return jakcds.evaluator(RULES)


@pytest.fixture(scope="session")
def pack(evaluator: jakcds.Evaluator) -> jakcds.Pack:
    return evaluator.pack


def fired(result: jakcds.Result) -> set[str]:
    return {entry.rule for entry in result.trace if entry.fired}
