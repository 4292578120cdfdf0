"""Mutation run of the decision core: prints numbers (no assertions).

Run from the repository root (with ../shared beside it):
    python scripts/mutation.py [--sample 60] [--budget 900] [--seed 26] [--jobs 1]

A small AST mutator (mutmut cannot run this layout: the wheel maps engine/ to jakcds). Each mutant
changes one operator or constant in one module of engine/decision/: a comparison (< <=, == !=,
in / not in, is / is not), and / or, a `not` dropped, + -, True / False, an integer plus one, a
short string changed (prose with spaces is left alone: a message wrapped in XX proves nothing).
A uniform sample (fixed seed) runs one mutant at a time, in a copy of the checkout laid out as
`jakcds`, through `jakcds test cases` (the golden cases and every rule example, the checks that
killed 113 of 124 mutants in the December 2026 review); a mutant is killed when it fails or times
out. Stops when the time budget is spent; prints the score and every survivor.
"""

from __future__ import annotations

import argparse
import ast
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODULES = sorted((REPO / "engine" / "decision").glob("*.py"))
SWAPS: dict[type, type] = {
    ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq,
    ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is,
    ast.And: ast.Or, ast.Or: ast.And, ast.Add: ast.Sub, ast.Sub: ast.Add,
}


@dataclass(frozen=True)
class Mutant:
    module: Path
    index: int  # the index-th mutable node of the module, in ast.walk order
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.module.relative_to(REPO)}:{self.line} {self.what}"


def _docstrings(tree: ast.AST) -> set[int]:
    return {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)
    }


def _mutable(tree: ast.AST) -> Iterator[tuple[ast.AST, str]]:
    """Each node a mutant can change, with what the change does."""
    skip = _docstrings(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and type(node.ops[0]) in SWAPS:
            yield node, f"{type(node.ops[0]).__name__} -> {SWAPS[type(node.ops[0])].__name__}"
        elif isinstance(node, ast.BoolOp | ast.BinOp) and type(node.op) in SWAPS:
            yield node, f"{type(node.op).__name__} -> {SWAPS[type(node.op)].__name__}"
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            yield node, "not dropped"
        elif isinstance(node, ast.Constant) and id(node) not in skip:
            value = node.value
            if isinstance(value, bool):
                yield node, f"{value} -> {not value}"
            elif isinstance(value, int):
                yield node, f"{value} -> {value + 1}"
            elif isinstance(value, str) and value and " " not in value:
                yield node, f"{value!r} -> 'XX{value}XX'"


def mutants() -> list[Mutant]:
    found = []
    for module in MODULES:
        tree = ast.parse(module.read_text(encoding="utf-8"))
        found += [Mutant(module, i, node.lineno, what) for i, (node, what) in enumerate(_mutable(tree))]
    return found


class _Apply(ast.NodeTransformer):
    def __init__(self, target: ast.AST):
        self.target = target

    def visit(self, node: ast.AST) -> ast.AST:
        if node is not self.target:
            return self.generic_visit(node)
        if isinstance(node, ast.Compare):
            node.ops[0] = SWAPS[type(node.ops[0])]()
        elif isinstance(node, ast.BoolOp | ast.BinOp):
            node.op = SWAPS[type(node.op)]()
        elif isinstance(node, ast.UnaryOp):
            return node.operand
        elif isinstance(node.value, bool):
            node.value = not node.value
        elif isinstance(node.value, int):
            node.value += 1
        else:
            node.value = f"XX{node.value}XX"
        return node


def mutated_source(mutant: Mutant) -> str:
    tree = ast.parse(mutant.module.read_text(encoding="utf-8"))
    target = [node for node, _ in _mutable(tree)][mutant.index]
    return ast.unparse(ast.fix_missing_locations(_Apply(target).visit(tree)))


def checkout_copy(root: Path) -> Path:
    """The checkout laid out as the wheel lays it out (as tests/conftest.py does), but copied: a
    mutant is written into the copy, never into the repository."""
    package = root / "jakcds"
    shutil.copytree(REPO / "engine", package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "cli.py", package / "cli.py")
    (package / "rules").symlink_to(REPO / "rules")
    return root


def fails(root: Path, timeout: float) -> bool:
    """Whether `jakcds test cases` fails (or hangs) on the checkout copy at root."""
    env = {**os.environ, "PYTHONPATH": str(root), "JAKCDS_CACHE": str(root.parent / "cache")}
    command = [sys.executable, "-c", "from jakcds.cli import run; run()", "test", "cases", "--rules", "rules"]
    try:
        return subprocess.run(command, cwd=REPO, env=env, capture_output=True, timeout=timeout).returncode != 0
    except subprocess.TimeoutExpired:
        return True


def killed(mutant: Mutant, root: Path, timeout: float) -> bool:
    target = root / "jakcds" / "decision" / mutant.module.name
    target.write_text(mutated_source(mutant), encoding="utf-8")
    try:
        return fails(root, timeout)
    finally:
        shutil.copy(mutant.module, target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=int, default=60, help="mutants drawn (uniformly, fixed seed)")
    parser.add_argument("--budget", type=float, default=900, help="seconds; no new mutant starts after them")
    parser.add_argument("--seed", type=int, default=26)
    parser.add_argument("--jobs", type=int, default=1, help="mutants run at once (one checkout copy each)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds for one mutant's run (then: killed)")
    args = parser.parse_args()

    every = mutants()
    sample = random.Random(args.seed).sample(every, min(args.sample, len(every)))
    print(f"{len(every)} mutants in {len(MODULES)} modules of engine/decision/; {len(sample)} drawn (seed {args.seed})")
    deadline = time.monotonic() + args.budget
    with tempfile.TemporaryDirectory(prefix="jakcds-mutants-") as tmp:
        roots = [checkout_copy(Path(tmp) / f"worker{i}") for i in range(args.jobs)]
        if fails(roots[0], args.timeout):
            sys.exit("jakcds test cases fails without a mutant: fix the checkout first")
        free = list(roots)

        def run(mutant: Mutant) -> tuple[Mutant, bool | None]:
            if time.monotonic() > deadline:
                return mutant, None
            root = free.pop()
            try:
                return mutant, killed(mutant, root, args.timeout)
            finally:
                free.append(root)

        with ThreadPoolExecutor(args.jobs) as pool:
            results = list(pool.map(run, sample))
    ran = [(m, k) for m, k in results if k is not None]
    survivors = sorted((m for m, k in ran if not k), key=str)
    score = 100 * (len(ran) - len(survivors)) / len(ran) if ran else 0.0
    print(f"ran {len(ran)} of {len(sample)} in the budget; killed {len(ran) - len(survivors)}: score {score:.1f}%")
    print(f"{len(survivors)} survivors (each: pin it with a case or a test, or say why it is equivalent):")
    for mutant in survivors:
        print(f"  {mutant}")


if __name__ == "__main__":
    main()
