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


CODES = SEEDS.parent / "knowledge" / "codes.md"
CODE = re.compile(r"(?<![\w.-])(LA\d+-\d|\d{3,6}-\d|\d{5,18}|UNK)(?![\w-])")


def graded_codes() -> dict[str, set[str]]:
    """codes.md: each code in a table row's cells before its grade cell -> the grades it is given
    (a "do not map" grade counts as none)."""
    grades: dict[str, set[str]] = {}
    text = CODES.read_text(encoding="utf-8")
    for line in text[: text.index("## Known wrong codes")].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else []
        at = next((i for i, c in enumerate(cells) if re.search(r"\b(UN)?VERIFIED\b|VERIFIED-[PS]", c)), None)
        if at is None:
            continue
        grade = "none" if "do not map" in cells[at] else re.search(r"UNVERIFIED|VERIFIED-[PS]", cells[at]).group(0)
        for cell in cells[:at]:
            for code in CODE.findall(cell.replace("**", "")):
                grades.setdefault(code, set()).add(grade)
    return grades


def wrong_codes() -> list[str]:
    """The codes of codes.md's known wrong uses, except SNOMED rows: those are right codes with a
    wrong meaning attached, checked by meaning below."""
    text = CODES.read_text(encoding="utf-8")
    table = text[text.index("## Known wrong codes") : text.index("## Not found")]
    rows = [line.split("|")[1] for line in table.splitlines() if line.startswith("| ") and not line.startswith("| Wrong")]
    any_code = re.compile(r"(?<![\w.-])([A-Z]\d{2}\.\d+|\d{3,6}-\d|\d{4,18})(?![\w-])")
    return [code for row in rows if "SNOMED" not in row for code in any_code.findall(row)]


def fhir_codes(pack) -> list[tuple[str, str]]:
    """(code, where) of every code the FHIR reader maps actively beyond us-labels.md's systems."""
    codes = [(c, f"snomed {name}") for name, entry in pack.diagnoses.entries.items() for c in entry.snomed]
    for fact, mapping in pack.fhir.observations.items():
        codes += [(c, f"{fact} loinc") for c in mapping.loinc] + [(key.split("|")[1], f"{fact} answer") for key in mapping.answers]
    return codes


def test_every_fhir_code_is_verified_p_and_every_draft_code_is_graded_s():
    import jakcds

    pack, grades = jakcds.load_pack(), graded_codes()
    assert [f"{where} {c}" for c, where in fhir_codes(pack) if "VERIFIED-P" not in grades.get(c, set())] == []
    drafted = list(pack.fhir.draft.snomed) + [c for m in pack.fhir.draft.observations.values() for c in m.loinc]
    drafted += [key.split("|")[1] for m in pack.fhir.draft.observations.values() for key in m.answers]
    assert [c for c in drafted if not grades.get(c, set()) & {"VERIFIED-S", "VERIFIED-P"}] == []
    assert len(fhir_codes(pack)) >= 16 and len(drafted) >= 12


def test_no_known_wrong_code_appears_in_the_pack():
    import jakcds

    pack = jakcds.load_pack()
    mapped = {code for _, code in mapped_codes(pack)} | {code for code, _ in fhir_codes(pack)} | set(pack.fhir.draft.snomed)
    mapped |= {c for m in pack.fhir.draft.observations.values() for c in m.loinc} | set(pack.fhir.not_systemic)
    codes = wrong_codes()
    assert {"71774-4", "770-8", "6387", "L20.84"} <= set(codes)
    assert sorted(set(codes) & mapped) == []
    snomed = pack.fhir.draft.snomed  # right codes that public code mislabels
    assert (snomed["200936003"], snomed["68225006"], snomed["56727007"]) == ("lupus_erythematosus", "alopecia_areata", "vitiligo")


def test_codes_md_grades_are_read():
    grades = graded_codes()
    assert grades["72166-2"] == {"VERIFIED-P"} and grades["71773-6"] == {"VERIFIED-S"} and grades["47358-7"] == {"none"}
    assert "VERIFIED-P" in grades["197853"] and grades["16933-4"] == {"UNVERIFIED"}


def test_the_pack_maps_codes_of_all_three_systems(pack):
    assert {system for system, _ in mapped_codes(pack)} == set(SECTIONS)


def test_every_mapped_code_is_verified_in_the_sheet(pack):
    """In us-labels.md; a product RxCUI may instead be VERIFIED-P in codes.md §8."""
    grades = graded_codes()
    unverified = [f"{system} {code}" for system, code in mapped_codes(pack)
                  if not verified(code, system) and not (system == "rxcui" and "VERIFIED-P" in grades.get(code, set()))]
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
