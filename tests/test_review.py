"""The reviewer's workflow (issue 5), as a new user runs it: real `jakcds` processes."""

import datetime
import json
import shutil

import pytest
import yaml

from conftest import CASES, RULES, SEEDS
from jakcds.review.lint import lint
from jakcds.knowledge.pack import write_manifest
from test_cli import run


@pytest.fixture
def pack_dir(tmp_path):
    shutil.copytree(RULES, tmp_path / "rules")
    return tmp_path / "rules"


def edit_rule(pack_dir, file, rule_id, change, approve=True):
    path = pack_dir / file
    doc = yaml.safe_load(path.read_text())
    change(next(r for r in doc["rules"] if r["id"] == rule_id))
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    if approve:
        write_manifest(pack_dir)


def test_rules_list_with_filters():
    rows = json.loads(run("rules", "list", "--format", "json").stdout)
    assert len(rows) >= 22 and {"id", "title", "status", "kind", "drugs", "severity", "sources"} <= set(rows[0])
    rux = json.loads(run("rules", "list", "--drug", "ruxolitinib", "--format", "json").stdout)
    assert {r["id"] for r in rux} >= {"SEED-RUX-001", "SEED-GEN-001"} and all("ruxolitinib" in r["drugs"] for r in rux)
    seed2 = json.loads(run("rules", "list", "--source", "seed-002", "--format", "json").stdout)
    assert all("seed-002" in r["sources"] for r in seed2) and "SEED-RUX-001" not in {r["id"] for r in seed2}
    drafts = json.loads(run("rules", "list", "--status", "draft", "--format", "json").stdout)
    assert drafts and all(r["status"] == "draft" for r in drafts)


def test_rules_show_writes_the_conditions_in_words():
    done = run("rules", "show", "SEED-RUX-001", "--format", "text")
    assert done.returncode == 0, done.stderr
    for expected in ("condition is Chilblain lupus erythematosus",
                     "comorbidities include Myelofibrosis", "evidence: case_report",
                     "Wenzel et al report the case", "example (must not fire)", "next review: 2027-11-23"):
        assert expected in done.stdout, expected
    doc = json.loads(run("rules", "show", "SEED-RUX-003", "--format", "json").stdout)
    assert doc["conditions_in_words"] == ["all of:", "  - platelet count is not recorded"] and doc["file"] == "seed/ruxolitinib.yaml"
    missing = run("rules", "show", "NOPE-001")
    assert missing.returncode == 2 and "no rule 'NOPE-001'" in missing.stderr


def test_lint_is_clean_on_the_shipped_pack():
    done = run("rules", "lint", "--rules", str(RULES), "--seeds", str(SEEDS), "--format", "text")
    assert done.returncode == 0, done.stdout
    assert done.stdout.strip().endswith("0 errors, 0 warnings")


def test_a_broken_quote_fails_lint_with_file_and_rule(pack_dir):
    edit_rule(pack_dir, "seed/ruxolitinib.yaml", "SEED-RUX-001",
              lambda r: r["citations"][3].update(quote="She had a complete remission of her lesions within 3 months"))
    done = run("rules", "lint", "--rules", str(pack_dir), "--seeds", str(SEEDS), "--format", "text")
    assert done.returncode == 1
    assert "ERROR seed/ruxolitinib.yaml SEED-RUX-001: quote not found word for word in 000_a4c9822f7fb53143.txt" in done.stdout


def test_lint_reports_unapproved_changes_missing_examples_contradictions_and_review_dates(pack_dir):
    edit_rule(pack_dir, "seed/tofacitinib.yaml", "SEED-TOF-001", lambda r: r.update(next_review="2020-01-01"), approve=False)
    edit_rule(pack_dir, "seed/tofacitinib.yaml", "SEED-TOF-002",
              lambda r: r["when"]["all"].append({"fact": "condition", "lacks": "alopecia_areata"}), approve=False)
    edit_rule(pack_dir, "seed/upadacitinib.yaml", "SEED-UPA-001", lambda r: r.update(examples=r["examples"][:1]), approve=False)
    findings = {str(f) for f in lint(pack_dir, SEEDS, today=datetime.date(2026, 11, 23))}
    assert "ERROR manifest.json -: seed/tofacitinib.yaml has changed since approval (sha256 differs)" in findings
    assert "WARNING seed/tofacitinib.yaml SEED-TOF-001: past its next review date (2020-01-01)" in findings
    assert "ERROR seed/tofacitinib.yaml SEED-TOF-002: contradictory conditions, can never fire: condition both has and lacks alopecia_areata" in findings
    assert "ERROR seed/upadacitinib.yaml SEED-UPA-001: no example on which the rule must not fire" in findings


def test_lint_flags_a_caution_that_can_never_show(pack_dir):
    """Only SEED-RUX-001 proposes oral ruxolitinib: as a draft, the ruxolitinib cautions can never show."""
    edit_rule(pack_dir, "seed/ruxolitinib.yaml", "SEED-RUX-001", lambda r: r.update(status="draft"))
    assert any("SEED-RUX-004: unreachable for ruxolitinib" in str(f) for f in lint(pack_dir, SEEDS))


def test_jakcds_test_passes_and_a_broken_case_fails_with_a_diff(tmp_path):
    done = run("test", str(CASES))
    assert done.returncode == 0, done.stdout
    assert "PASS case wenzel-chilblain-lupus" in done.stdout and "PASS example SEED-RUX-001#0" in done.stdout
    shutil.copytree(CASES, tmp_path / "cases")
    expected = tmp_path / "cases" / "wenzel-chilblain-lupus" / "expected.yaml"
    doc = yaml.safe_load(expected.read_text())
    doc["candidates"][0]["cautions"]["SEED-RUX-002"] = "critical"
    expected.write_text(yaml.safe_dump(doc, sort_keys=False))
    done = run("test", str(tmp_path / "cases"))
    assert done.returncode == 1
    assert "FAIL case wenzel-chilblain-lupus\n" in done.stdout
    assert "-    SEED-RUX-002: critical" in done.stdout and "+    SEED-RUX-002: info" in done.stdout
    # its FHIR twin is held to the same expectations, so it fails too
    assert "FAIL case wenzel-chilblain-lupus-fhir" in done.stdout
    assert "2 failed" in done.stdout.splitlines()[-1]


def test_update_writes_pending_files_that_fail_until_accepted(tmp_path):
    for name in ("wenzel-chilblain-lupus", "vitiligo-refractory", "bad-unit"):
        shutil.copytree(CASES / name, tmp_path / "cases" / name)
    expected = tmp_path / "cases" / "wenzel-chilblain-lupus" / "expected.yaml"
    doc = yaml.safe_load(expected.read_text())
    doc["candidates"][0]["cautions"]["SEED-RUX-002"] = "critical"
    expected.write_text(yaml.safe_dump(doc, sort_keys=False))
    stale = expected.read_text()
    done = run("test", str(tmp_path / "cases"), "--update")
    assert done.returncode == 0 and "pending wenzel-chilblain-lupus\n" in done.stdout, done.stdout
    assert "1 cases changed" in done.stdout and expected.read_text() == stale  # nothing rewritten in place
    assert sorted(p.parent.name for p in (tmp_path / "cases").glob("*/expected.yaml.new")) == ["wenzel-chilblain-lupus"]
    done = run("test", str(tmp_path / "cases"))
    assert done.returncode == 1
    assert "PENDING case wenzel-chilblain-lupus\n" in done.stdout
    assert "-    SEED-RUX-002: critical" in done.stdout and "+    SEED-RUX-002: info" in done.stdout
    assert done.stdout.splitlines()[-1].endswith("1 failed, 0 todo, 1 pending")
    refused = run("test", str(tmp_path / "cases"), "--accept", "vitiligo-refractory")
    assert refused.returncode == 2 and "vitiligo-refractory has no pending" in refused.stderr
    done = run("test", str(tmp_path / "cases"), "--accept", "wenzel-chilblain-lupus")
    assert done.returncode == 0 and done.stdout == "accepted wenzel-chilblain-lupus\n"
    assert yaml.safe_load(expected.read_text())["candidates"][0]["cautions"]["SEED-RUX-002"] == "info"
    done = run("test", str(tmp_path / "cases"))
    assert done.returncode == 0 and done.stdout.splitlines()[-1].endswith("0 failed, 0 todo, 0 pending"), done.stdout


def test_accept_all_moves_every_pending_file_in(tmp_path):
    for name in ("vitiligo-refractory", "wenzel-chilblain-lupus"):
        shutil.copytree(CASES / name, tmp_path / "cases" / name)
        (tmp_path / "cases" / name / "expected.yaml.new").write_text((tmp_path / "cases" / name / "expected.yaml").read_text())
    done = run("test", str(tmp_path / "cases"), "--accept", "all")
    assert done.stdout == "accepted vitiligo-refractory\naccepted wenzel-chilblain-lupus\n"
    assert list((tmp_path / "cases").glob("*/expected.yaml.new")) == []


def test_no_golden_case_is_pending_review():
    """CI fails while a case's expected.yaml.new awaits review (jakcds test --accept)."""
    assert sorted(p.parent.name for p in CASES.glob("*/expected.yaml.new")) == []


def test_a_todo_case_is_reported_not_failed(tmp_path):
    shutil.copytree(CASES / "vitiligo-refractory", tmp_path / "cases" / "gap")
    expected = tmp_path / "cases" / "gap" / "expected.yaml"
    doc = yaml.safe_load(expected.read_text())
    doc.update(todo="ruxolitinib cream should be proposed once label rules exist", candidates=[])
    expected.write_text(yaml.safe_dump(doc, sort_keys=False))
    done = run("test", str(tmp_path / "cases"))
    assert done.returncode == 0 and "TODO case gap" in done.stdout


def test_coverage_finds_a_rule_no_case_covers(pack_dir):
    new_rule = {
        "id": "SEED-TOF-099", "title": "A new rule no case exercises", "status": "active", "kind": "caution",
        "drugs": ["tofacitinib"], "when": {"all": [{"fact": "age", "gte": 125}]}, "severity": "warning",
        "message": "Age 125 or more: a rule no case reaches.", "evidence": "expert_opinion",
        "citations": [{"source": "seed-000", "locator": "¶4", "quote": "I have no personal experience prescribing"}],
        "examples": [{"fires": False, "patient": {"condition": "vitiligo"}}],
    }
    (pack_dir / "seed" / "new.yaml").write_text(yaml.safe_dump({"rules": [new_rule]}))
    write_manifest(pack_dir)
    report = json.loads(run("coverage", str(CASES), "--rules", str(pack_dir), "--format", "json").stdout)
    assert report["never_fired"] == ["SEED-TOF-099"] and report["covered"] == report["total"] - 1
    shipped = json.loads(run("coverage", str(CASES), "--format", "json").stdout)
    assert shipped["never_fired"] == [] and shipped["percent"] == 100.0


def test_explain_a_why_not():
    not_refractory = str(CASES / "dermatomyositis-not-refractory" / "patient.json")
    report = json.loads(run("explain", not_refractory, "--drug", "tofacitinib", "--format", "json").stdout)
    assert report["status"] == "excluded" and [r["rule"] for r in report["reasons"]] == ["SEED-GEN-001"]
    gen = next(r for r in report["rules"] if r["rule"] == "SEED-GEN-001")
    assert gen["fired"] and gen["tests"][0]["holds"] and gen["tests"][0]["patient"] == []
    text = run("explain", str(CASES / "wenzel-chilblain-lupus" / "patient.json"), "--drug", "ruxolitinib", "--format", "text").stdout
    assert "ruxolitinib: candidate #1" in text and "no   platelet count is not recorded  [patient: 120]" in text
    baricitinib = run("explain", not_refractory, "--drug", "baricitinib", "--format", "text").stdout
    assert "why not: JAKCDS-001" in baricitinib
    assert run("explain", not_refractory, "--drug", "aspirin").returncode == 2


def test_a_tampered_pack_is_refused(pack_dir):
    path = pack_dir / "seed" / "ruxolitinib.yaml"
    path.write_text(path.read_text().replace("severity: warning", "severity: info", 1))
    done = run("evaluate", str(CASES / "wenzel-chilblain-lupus" / "patient.json"), "--rules", str(pack_dir))
    assert done.returncode == 3 and done.stdout == ""
    assert "refused, the pack does not match its manifest.json: seed/ruxolitinib.yaml has changed since approval" in done.stderr
    rebuilt = run("rules", "manifest", "--rules", str(pack_dir))
    assert rebuilt.returncode == 0 and "sha256" in rebuilt.stdout
    accepted = run("evaluate", str(CASES / "wenzel-chilblain-lupus" / "patient.json"), "--rules", str(pack_dir), "--format", "json")
    assert accepted.returncode == 0
    ruleset = json.loads(accepted.stdout)["ruleset"]
    assert ruleset["path"] == str(pack_dir.resolve()) and ruleset["sha256"] == json.loads((pack_dir / "manifest.json").read_text())["sha256"]


def test_a_broken_label_quote_fails_lint(pack_dir):
    edit_rule(pack_dir, "label/ritlecitinib.yaml", "LABEL-RIT-002", lambda r: r["citations"][0].update(quote="platelet count <90,000/mm3"))
    findings = [str(f) for f in lint(pack_dir, SEEDS)]
    assert any("LABEL-RIT-002: quote not found word for word in us-labels.md" in f for f in findings), findings


def test_a_record_cited_as_a_quote_fails_lint(pack_dir):
    """C2: the sheet's record of a label (an openFDA field, a summary) is not label text."""
    edit_rule(pack_dir, "label/ruxolitinib.yaml", "LABEL-RUX-021", lambda r: r["citations"][0].pop("kind"))
    findings = [str(f) for f in lint(pack_dir, SEEDS)]
    assert any("LABEL-RUX-021: cited as a quote but the sheet does not quote it" in f for f in findings), findings


def test_two_starting_doses_that_can_fire_together_fail_lint(pack_dir):
    """Issue 11 point 6: fluconazole's 10 mg band must supersede the 20 mg normal-organ band."""
    edit_rule(pack_dir, "label/ruxolitinib.yaml", "LABEL-RUX-021", lambda r: r.update(supersedes=["LABEL-RUX-003"]))
    findings = [str(f) for f in lint(pack_dir, SEEDS)]
    assert any(f.startswith("ERROR label/ruxolitinib.yaml LABEL-RUX-002: states '20 mg twice daily' and LABEL-RUX-021 states "
                            "'10 mg twice daily' for ruxolitinib, and both fire on") for f in findings), findings


def test_a_dose_change_without_changes_dose_fails_lint(pack_dir):
    """Issue 23 (review E-D2): "reduce the ruxolitinib dose" with no changes_dose would let the
    normal starting-dose band be shown beside it."""
    edit_rule(pack_dir, "label/ruxolitinib.yaml", "LABEL-RUX-010", lambda r: r.pop("changes_dose"))
    findings = [str(f) for f in lint(pack_dir, SEEDS)]
    assert any(f.startswith("ERROR label/ruxolitinib.yaml LABEL-RUX-010: says 'reduce the ruxolitinib'") for f in findings), findings


def test_a_fact_without_a_name_in_words_fails_lint(pack_dir):
    """Issue 23: every fact a rule may test has a name in words (vocabulary/facts.yaml)."""
    path = pack_dir / "vocabulary" / "facts.yaml"
    path.write_text("\n".join(line for line in path.read_text().splitlines() if not line.startswith("tb_status:")) + "\n")
    findings = [str(f) for f in lint(pack_dir, SEEDS)]
    assert "ERROR vocabulary/facts.yaml -: fact 'tb_status' has no name in words" in findings, findings
