"""The layout's one-way dependencies: knowledge <- decision <- (review, ehr, views)."""

import ast
from pathlib import Path

import pytest

ENGINE = Path(__file__).resolve().parent.parent / "engine"
# what each group may import, of the engine's groups and of the outside world it must not reach
ALLOWED = {"knowledge": {"knowledge"}, "decision": {"knowledge", "decision"}}
FORBIDDEN_OUTSIDE = {"fastapi", "httpx", "uvicorn", "jwt", "fhir", "rich", "typer"}


def imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = (node.module or "").split(".")
            if node.level == 2:  # from ..group.module
                names.add(f"engine.{base[0]}")
            elif node.level == 1:  # from .module: same group
                names.add(f"engine.{path.parent.name}")
            else:
                names.add(base[0])
        elif isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
    return names


@pytest.mark.parametrize("group", sorted(ALLOWED))
def test_core_groups_import_only_inward(group: str):
    for path in sorted((ENGINE / group).glob("*.py")):
        found = imports(path)
        engine_groups = {name.split(".")[1] for name in found if name.startswith("engine.")}
        assert engine_groups <= ALLOWED[group], f"{path.name} imports {engine_groups - ALLOWED[group]}"
        assert not found & FORBIDDEN_OUTSIDE, f"{path.name} imports {found & FORBIDDEN_OUTSIDE}"


def test_the_imports_check_sees_a_violation(tmp_path: Path):
    module = tmp_path / "decision" / "bad.py"
    module.parent.mkdir()
    module.write_text("from ..ehr.fhir import Reader\nimport rich\n")
    assert imports(module) == {"engine.ehr", "rich"}
