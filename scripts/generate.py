"""Random inputs for the engine's checks: valid patient profiles drawn from a pack's
vocabularies, and "varied" packs (the pack's active rules copied with their test values redrawn),
which exercise durable-rules' limits the way a large real pack would. Seeded: same seed, same data.
Used by scripts/bench.py, scripts/same_results.py and tests/test_engine_limits.py."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import jakcds
from jakcds.knowledge.catalogue import BOOLS, ENUMS, NUMBERS, catalogue
from jakcds.knowledge.pack import Pack
from jakcds.knowledge.rules import Group, Rule, Test

NUMBER_RANGES = {"age": (0, 100), "weight_kg": (3, 150), "bsa_percent": (0, 100), "cardiovascular_risk_factors": (0, 6)}


def random_profile(pack: Pack, rng: random.Random) -> dict[str, Any]:
    """A profile in the input contract: every optional field present about two times in three
    (so profiles range from sparse to dense), lists of up to 6 codes, labs in plausible ranges."""
    diagnoses, treatments = sorted(pack.diagnoses.entries), sorted(pack.treatments.entries)
    profile: dict[str, Any] = {"condition": rng.choice(diagnoses)}
    present = lambda: rng.random() < 0.65  # noqa: E731
    for name, (low, high) in NUMBER_RANGES.items():
        if present():
            profile[name] = rng.randint(low, high) if name in ("age", "cardiovascular_risk_factors") else round(rng.uniform(low or 1, high), 1)
    for name, values in ENUMS.items():
        if present():
            profile[name] = rng.choice(values)
    for name in BOOLS:
        if present():
            profile[name] = rng.random() < 0.3
    if profile.get("sex") == "male":
        for name in ("pregnant", "breastfeeding", "reproductive_potential"):
            profile.pop(name, None)
    for name, vocabulary in (("comorbidities", diagnoses), ("failed_therapies", treatments),
                             ("contraindicated_therapies", treatments), ("medications", treatments)):
        if present():
            profile[name] = rng.sample(vocabulary, rng.randint(0, 6))
    scale = _thresholds(pack)
    profile["labs"] = {name: round(rng.uniform(0, 2) * scale.get(name, 100), 1) for name in sorted(pack.labs) if present()}
    return profile


def _thresholds(pack: Pack) -> dict[str, float]:
    """Each lab's largest threshold in the pack's rules: random values span 0 to twice it."""
    found: dict[str, float] = {}
    for rule in pack.rules:
        for test in rule.when.tests() if rule.when else ():
            if test.fact in pack.labs and isinstance(test.value, (int, float)):
                found[test.fact] = max(found.get(test.fact, 0), test.value)
    return found


def random_profiles(ev: jakcds.Evaluator, count: int, seed: int = 2026) -> list[dict[str, Any]]:
    """`count` random profiles the evaluator accepts (those it refuses are drawn again)."""
    rng, found = random.Random(seed), []
    while len(found) < count:
        profile = random_profile(ev.pack, rng)
        try:
            ev.parse(profile)
        except jakcds.InputError:
            continue
        found.append(profile)
    return found


def varied_pack(pack: Pack, size: int, seed: int = 7) -> Pack:
    """The pack with its active rules copied (new ids) up to `size` rules, each copy's test
    values redrawn: codes from the same vocabulary, thresholds x0.5-1.5, enums redrawn."""
    rng, specs = random.Random(seed), catalogue(pack)
    active = pack.active()
    copies = [_varied(rule, f"VARY{chr(65 + i // 1000)}-{i % 1000:03d}", pack, specs, rng)
              for i, rule in zip(range(size - len(active)), (active[i % len(active)] for i in range(size)))]
    return dataclasses.replace(pack, rules=sorted([*pack.rules, *copies], key=lambda r: r.id))


def _varied(rule: Rule, new_id: str, pack: Pack, specs: dict, rng: random.Random) -> Rule:
    return rule.model_copy(update={"id": new_id, "when": _redrawn(rule.when, pack, specs, rng) if rule.when else None, "supersedes": []})


def _redrawn(node: Test | Group, pack: Pack, specs: dict, rng: random.Random) -> Test | Group:
    if isinstance(node, Group):
        items = [_redrawn(item, pack, specs, rng) for item in node.items]
        return node.model_copy(update={"all_" if node.all_ is not None else "any_": items})
    spec, op, value = specs[node.fact], node.op, node.value
    if spec.type == "codes" and op in ("has", "lacks"):
        value = rng.choice(sorted(getattr(pack, spec.vocabulary).entries))
    elif spec.type == "number" and op in ("lt", "lte", "gt", "gte", "eq"):
        value = round(value * rng.uniform(0.5, 1.5), 1)
    elif spec.type == "enum" and op == "eq":
        value = rng.choice(spec.values)
    elif spec.type == "enum" and op == "in":
        value = rng.sample(spec.values, len(value))
    else:
        return node
    return node.model_copy(update={"in_" if op == "in" else op: value})
