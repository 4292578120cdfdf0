"""Every result this checkout gives, as JSON lines, for comparing two checkouts byte for byte:
the golden cases' patients, every rule example, and N seeded random profiles (scripts/generate.py).
Prints the count and a sha256 of the lines per group; --out writes the lines.

    python scripts/same_results.py --random 3000 --out /tmp/new.ndjson
    (another checkout: run it from that checkout's root with its jakcds first on sys.path)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jakcds  # noqa: E402
from generate import random_profiles  # noqa: E402

CASES = Path(__file__).resolve().parents[1] / "cases"


def groups(ev: jakcds.Evaluator, count: int) -> dict[str, list[dict]]:
    return {
        "golden": [json.loads(p.read_text()) for p in sorted(CASES.glob("*/patient.json"))],
        "examples": [ex.patient for rule in ev.pack.rules for ex in rule.examples],
        "random": random_profiles(ev, count),
    }


def line(ev: jakcds.Evaluator, profile: dict, plain: bool, indent: bool) -> str:
    try:
        if plain:
            return ev.evaluate_json(profile, indent).decode()
        return ev.evaluate(profile).model_dump_json(indent=2 if indent else None)
    except (jakcds.InputError, jakcds.EngineError) as error:
        return json.dumps({"error": type(error).__name__, "message": str(error)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--random", type=int, default=3000, help="random profiles")
    parser.add_argument("--drafts", action="store_true", help="evaluate with the draft rules too")
    parser.add_argument("--plain", action="store_true", help="write with Evaluator.evaluate_json, not the Result's model_dump_json")
    parser.add_argument("--indent", action="store_true", help="indented JSON (as the CLI writes it)")
    parser.add_argument("--out", type=Path, help="write every line here")
    args = parser.parse_args()
    ev = jakcds.evaluator(include_draft=args.drafts)
    out = args.out.open("w") if args.out else None
    for name, profiles in groups(ev, args.random).items():
        digest = hashlib.sha256()
        for profile in profiles:
            text = line(ev, profile, args.plain, args.indent) + "\n"
            digest.update(text.encode())
            if out:
                out.write(text)
        print(f"{name}: {len(profiles)} profiles, sha256 {digest.hexdigest()}")


if __name__ == "__main__":
    main()
