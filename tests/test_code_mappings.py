"""Only codes shared/knowledge/us-labels.md verifies are mapped: every ICD-10-CM, LOINC and RxNorm
code on the pack's vocabularies is found verified in the sheet (§12, §13, §14), and the codes
the sheet leaves unverified are found not to be."""

import re

import pytest

from conftest import SEEDS

SHEET = SEEDS.parent / "knowledge" / "us-labels.md"
SECTIONS = {"icd10": 12, "loinc": 13, "rxcui": 14}


def section(number: int) -> str:
    text = SHEET.read_text(encoding="utf-8")
    start = text.index(f"\n## {number}. ")
    return text[start : text.index("\n## ", start + 5)]


def occurrences(code: str, text: str) -> list[re.Match]:
    # M33.1 is not M33.10, but "M32.-" (a category) is M32
    return list(re.finditer(rf"(?<![\w.]){re.escape(code)}(?!\w|\.\w)", text))


def verified(code: str, system: str) -> bool:
    """In the code cell of a table row graded VERIFIED (the source and quote cell does not count),
    not flagged there as unverified (a trailing *, or an UNVERIFIED note in its own phrase or in
    the parenthesis around it). §14's product table has no grade column: the sheet grades all
    its product RxCUIs VERIFIED (openFDA NDC records)."""
    text = section(SECTIONS[system])
    if system == "rxcui":
        text = text[text.index("Product-level RxCUIs") :]
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")] if line.startswith("|") else []
        if len(cells) < 3 or (system != "rxcui" and not cells[2].strip("*").startswith("VERIFIED")):
            continue
        if any(not _flagged(cells[1], match) for match in occurrences(code, cells[1])):
            return True
    return False


def _flagged(cell: str, match: re.Match) -> bool:
    phrase = re.split(r"[,;]|\. ", cell[match.end() :].replace("**", ""), maxsplit=1)[0].strip()
    opened, closed = cell.rfind("(", 0, match.start()), cell.rfind(")", 0, match.start())
    parenthesis = cell[opened : cell.find(")", match.end())] if opened > closed else ""
    return phrase.endswith("*") or "UNVERIFIED" in phrase or "UNVERIFIED" in parenthesis


def mapped_codes(pack) -> list[tuple[str, str]]:
    codes = [("icd10", c) for entry in pack.diagnoses.entries.values() for c in entry.icd10]
    codes += [("rxcui", c) for entry in pack.treatments.entries.values() for c in entry.rxcui]
    codes += [("loinc", c) for lab in pack.labs.values() for c in lab.loinc]
    return codes


def test_the_pack_maps_codes_of_all_three_systems(pack):
    assert {system for system, _ in mapped_codes(pack)} == set(SECTIONS)


def test_every_mapped_code_is_verified_in_the_sheet(pack):
    unverified = [f"{system} {code}" for system, code in mapped_codes(pack) if not verified(code, system)]
    assert unverified == []


@pytest.mark.parametrize("system, code", [
    ("loinc", "62238-1"),   # eGFR CKD-EPI 2009: title UNVERIFIED
    ("loinc", "48643-1"),   # only in the sheet's "rule tip", UNVERIFIED
    ("loinc", "770-8"),     # the neutrophil percentage, named only in the source cell, as a warning
    ("icd10", "L63.2"),     # ophiasis*
    ("icd10", "M33.11"),    # respiratory*
    ("icd10", "L20.82"),    # (L20.82, L20.84, L20.89 UNVERIFIED)
    ("icd10", "L40.9"),     # unspecified (UNVERIFIED)
    ("rxcui", "1357536"),   # tofacitinib ingredient RxCUI: UNVERIFIED
])
def test_codes_the_sheet_leaves_unverified_are_caught(system, code):
    assert not verified(code, system)
