"""Every quote taken from a seed appears in that seed word for word (an ellipsis "…" separates parts)."""

import pytest

from conftest import SEEDS
from jakcds.review.lint import normalise_quote as normalise
from jakcds.review.lint import quote_found


def seed_citations(pack):
    for rule in pack.rules:
        for citation in rule.citations:
            source = pack.sources[citation.source]
            if source.kind == "seed":
                yield rule.id, source.file, citation.quote


def test_seeds_are_beside_the_repo():
    assert SEEDS.is_dir(), f"seed documents not found at {SEEDS} (set JAKCDS_SEEDS)"


def test_every_seed_quote_is_verbatim(pack):
    checked = 0
    for rule_id, file, quote in seed_citations(pack):
        text = normalise((SEEDS / file).read_text(encoding="utf-8"))
        assert quote_found(quote, text), f"{rule_id}: quote not found in {file}: {quote!r}"
        checked += 1
    assert checked >= 20


@pytest.mark.parametrize("altered", ["a complete remission within 3 months", "PML is listed for Xeljanz"])
def test_a_changed_quote_is_caught(pack, altered):
    text = normalise((SEEDS / pack.sources["seed-000"].file).read_text(encoding="utf-8"))
    assert normalise(altered) not in text


def test_every_rule_is_cited_and_seed_sources_are_complete(pack):
    for rule in pack.rules:
        assert rule.citations, rule.id
    assert pack.sources["seed-002"].doi == "10.36849/JDD.7500"
    for source in pack.sources.values():
        if source.kind == "seed":
            assert source.authors and source.title and source.date and (SEEDS / source.file).is_file()
