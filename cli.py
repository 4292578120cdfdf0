"""The `jakcds` command line (typer). Input problems exit 2 with one line on stderr."""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from jakcds import InputError, PackError, evaluator

app = typer.Typer(add_completion=False, no_args_is_help=True, help="JAK inhibitor clinical decision support.")


class Format(str, Enum):
    text = "text"
    json = "json"


def fail(message: str, code: int = 2) -> None:
    typer.echo(f"jakcds: error: {message}", err=True)
    raise typer.Exit(code)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    duplicate = next((key for key in keys if keys.count(key) > 1), None)
    if duplicate is not None:
        raise ValueError(f"duplicate key {duplicate!r}")
    return dict(pairs)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number")


def read_patient(source: str) -> Any:
    """The JSON document at `source` (a path, or - for stdin); strict: no duplicate keys, no NaN."""
    name = "stdin" if source == "-" else source
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        fail(f"{name}: cannot read: {error}")
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except ValueError as error:
        fail(f"{name}: invalid JSON: {error}")


@app.callback()
def main() -> None:
    """JAK inhibitor clinical decision support on declarative, cited rules."""


@app.command()
def evaluate(
    patient: Annotated[str, typer.Argument(help="patient profile JSON file, or - for stdin")],
    format: Annotated[Optional[Format], typer.Option("--format", "-f", help="default: text on a terminal, else json")] = None,
    rules: Annotated[Optional[Path], typer.Option(help="evaluate with this rule pack directory instead of the shipped one")] = None,
    include_draft: Annotated[bool, typer.Option("--include-draft", help="also run rules with status: draft")] = False,
) -> None:
    """Rank the JAK inhibitors that could be considered for a patient, with cautions and citations."""
    data = read_patient(patient)
    try:
        result = evaluator(rules, include_draft).evaluate(data)
    except InputError as error:
        fail(f"{'stdin' if patient == '-' else patient}: {error}")
    except PackError as error:
        fail(f"rule pack: {error}", code=3)
    if (format or (Format.text if sys.stdout.isatty() else Format.json)) is Format.json:
        sys.stdout.write(result.model_dump_json(indent=2) + "\n")
    else:
        from rich.console import Console

        from jakcds.render import render

        render(result, Console())
