"""`jakcds rules impact`: whose decision changes between two packs, exactly (issue 29)."""

import csv
import json
import shutil
import subprocess

import pytest

from conftest import CASES, RULES
from test_cli import JAKCDS, run

DM = {"condition": "dermatomyositis", "failed_therapies": ["methotrexate"]}


def edited_pack(tmp_path):
    """The shipped pack with one lab threshold raised: tofacitinib's lymphocyte floor 500 -> 800 cells/µL."""
    pack = tmp_path / "head"
    shutil.copytree(RULES, pack)
    rules = pack / "label" / "tofacitinib.yaml"
    text = rules.read_text()
    start = text.index("- id: LABEL-TOF-001")
    block = text[start:text.index("- id: ", start + 1)]
    rules.write_text(text.replace(block, block.replace("{fact: lymphocytes, lt: 500}", "{fact: lymphocytes, lt: 800}")))
    return pack


def profiles(tmp_path):
    folder = tmp_path / "profiles"
    folder.mkdir()
    for name, lymphocytes in {"lymph-450": 450, "lymph-650": 650, "lymph-2000": 2000}.items():
        (folder / f"{name}.json").write_text(json.dumps({**DM, "labs": {"lymphocytes": lymphocytes}}))
    (folder / "psoriasis.json").write_text(json.dumps({"condition": "plaque_psoriasis", "labs": {"lymphocytes": 650}}))
    return folder


def test_a_raised_threshold_changes_exactly_the_patients_between_the_two_values(tmp_path):
    done = run("rules", "impact", "--base", str(RULES), "--head", str(edited_pack(tmp_path)), "--on", str(profiles(tmp_path)), "-o", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("2 of 4 patients change")
    lines = {line["patient"]: line["changes"] for line in map(json.loads, (tmp_path / "out" / "impact.ndjson").read_text().splitlines())}
    assert sorted(lines) == ["lymph-650", "psoriasis"]  # the two with lymphocytes between 500 and 800
    removed = [c for c in lines["lymph-650"] if c["kind"] == "candidate_removed"]
    assert [(c["drug"], c["before"], c["after"]) for c in removed] == [("tofacitinib", "#1 (conditional)", "")]
    assert "LABEL-TOF-001" in removed[0]["rules"].split()
    moved = [c for c in lines["lymph-650"] if c["kind"] == "rank_changed"]
    assert [(c["drug"], c["before"], c["after"]) for c in moved] == [("upadacitinib", "2", "1")] and "LABEL-TOF-001" in moved[0]["rules"]
    # already not suggested for psoriasis: the why-not gains the lab exclusion
    assert [(c["kind"], c["drug"], c["item"]) for c in lines["psoriasis"]] == [("reason_added", "tofacitinib", "LABEL-TOF-001")]
    rows = list(csv.DictReader((tmp_path / "out" / "impact.csv").open()))
    assert len(rows) == sum(map(len, lines.values())) and all(row["rules"] for row in rows)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["patients"] == 4 and summary["unchanged"] == 2 and summary["changes_by_kind"]["candidate_removed"] == 1
    assert "lymph-650" in (tmp_path / "out" / "impact.html").read_text()


def test_identical_packs_have_no_impact_on_the_golden_cases(tmp_path):
    done = run("rules", "impact", "--base", str(RULES), "--head", str(RULES), "--on", str(CASES), "-o", str(tmp_path))
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["changed"] == 0 and summary["patients"] == len(list(CASES.glob("*/expected.yaml")))
    assert (tmp_path / "impact.ndjson").read_text() == ""
    assert (tmp_path / "impact.csv").read_text().splitlines() == ["patient,condition,kind,drug,item,before,after,rules"]


def test_identical_packs_have_no_impact_on_a_bulk_export(tmp_path):
    done = run("rules", "impact", "--base", str(RULES), "--head", str(RULES), "--on", str(CASES / "screening" / "export"),
               "-o", str(tmp_path), "--as-of", "2026-11-23", "--workers", "1")
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["patients"] == 7 and summary["changed"] == 0
    assert not (tmp_path / "buckets").exists() and not (tmp_path / "parts").exists()  # no copy of the export left


def test_a_git_revision_is_a_base(tmp_path):
    if subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "rules"], cwd=RULES.parent).returncode != 0:
        pytest.skip("rules/ differs from HEAD in this checkout")
    done = subprocess.run([JAKCDS, "rules", "impact", "--base", "HEAD", "--on", str(profiles(tmp_path)), "-o", str(tmp_path / "out")],
                          cwd=RULES.parent, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("0 of 4 patients change")
    refused = run("rules", "impact", "--base", "no-such-revision", "--on", str(tmp_path / "profiles"), "-o", str(tmp_path / "bad"))
    assert refused.returncode == 3 and "neither a rule-pack folder nor a git revision" in refused.stderr


def test_the_manifest_records_the_impact_of_exactly_its_files(tmp_path):
    head = edited_pack(tmp_path)
    out = tmp_path / "out"
    assert run("rules", "impact", "--base", str(RULES), "--head", str(head), "--on", str(profiles(tmp_path)), "-o", str(out)).returncode == 0
    done = run("rules", "manifest", "--rules", str(head), "--impact", str(out))
    assert done.returncode == 0, done.stderr
    recorded = json.loads((head / "manifest.json").read_text())["impact"]
    assert recorded["changed"] == 2 and recorded["patients"] == 4 and len(recorded["source_sha256"]) == 64
    (head / "label" / "tofacitinib.yaml").write_text((head / "label" / "tofacitinib.yaml").read_text() + "\n")
    stale = run("rules", "manifest", "--rules", str(head), "--impact", str(out))
    assert stale.returncode == 3 and "measured with another head pack" in stale.stderr
