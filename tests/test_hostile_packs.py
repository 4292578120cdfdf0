"""A hostile rule pack under review (red team 2026-12, F6/F7/F9): it reads only regular files inside
its own folder, bounded; YAML aliases cannot blow it up; what would hang or fail durable-rules is
refused; and every such pack is "pack refused" (exit 3, one line), never a hang or a traceback."""

import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import jakcds
from conftest import RULES, WENZEL
from jakcds.knowledge.pack import write_manifest
from jakcds.review.lint import lint

BESIDE = Path(sys.executable).with_name("jakcds")
JAKCDS = str(BESIDE) if BESIDE.exists() else shutil.which("jakcds")
CITATION = '[{source: seed-000, locator: "¶1", quote: "Recent articles about tofacitinib for vitiligo"}]'


@pytest.fixture
def pack_dir(tmp_path):
    shutil.copytree(RULES, tmp_path / "rules")
    return tmp_path / "rules"


def rule(rule_id="HOSTILE-TST-001", when="null", message='"A note of at least ten characters."', examples="[]"):
    """A valid note rule (YAML text) with the given condition, message and examples."""
    return (f"- id: {rule_id}\n  title: A hostile rule\n  status: active\n  kind: note\n  evidence: expert_opinion\n"
            f"  citations: {CITATION}\n  when: {when}\n  message: {message}\n  examples: {examples}\n")


def bomb(leaf, levels, group=""):
    """YAML flow text of `levels` nested lists (each a `group` if given: {any: [...]}) of ten
    aliases each over `leaf`: 10**levels leaves from a few hundred bytes."""
    text = f"&a0 {leaf}"
    for level in range(1, levels + 1):
        text = f"[{text}, " + ", ".join([f"*a{level - 1}"] * 9) + "]"
        text = f"{{{group}: {text}}}" if group else text
        text = f"&a{level} {text}" if level < levels else text
    return text


def nested(depth):
    when = "{fact: platelets, lt: 50}"
    for level in range(depth):
        when = f"{{{'all' if level % 2 else 'any'}: [{when}]}}"
    return when


def threshold(value, op="lt"):
    return rule(when=f"{{all: [{{fact: platelets, {op}: {value}}}]}}")


HOSTILE_RULES = {  # name -> (the rule file's rules, what the refusal says)
    "an alias bomb in when (10**6 tests, 1.6 KB)": (rule(when=bomb("{fact: platelets, lt: 50}", 6, "any")), "YAML aliases"),
    "an alias bomb in an example (10**7 values)": (rule(examples="[{fires: true, patient: {labs: " + bomb("1", 7) + "}}]"), "YAML aliases"),
    "a 1 MiB message aliased 100 times": (rule(message="&m " + json.dumps("x" * (1 << 20)))
                                          + "".join(rule(f"HOSTILE-TST-{i:03d}", message="*m") for i in range(2, 101)), "MiB of text"),
    "520 thresholds in one rule": (rule(when="{any: [" + ", ".join(f"{{fact: platelets, lt: {100 + i}}}" for i in range(520)) + "]}"),
                                   "521 distinct tests (probes included)"),
    "when nested 20 deep": (rule(when=nested(20)), "21 nested all/any"),
    "threshold .nan": (threshold(".nan"), "platelets lt nan is outside the range"),
    "threshold .inf": (threshold(".inf"), "platelets lt inf is outside the range"),
    "threshold -.inf": (threshold("-.inf", "gt"), "platelets gt -inf is outside the range"),
    "threshold 1.0e-05": (threshold("1.0e-05"), "platelets lt 1e-05 is outside the range"),
    "threshold 1.0e+300": (threshold("1.0e+300"), "platelets lt 1e+300 is outside the range"),
    "a self-containing alias": (rule(examples="&loop [{fires: true, patient: {labs: *loop}}]"), "contains itself"),
}


def limited():
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))  # a runaway read fails here, not on the machine


def refused(pack_dir, tmp_path, *command):
    """Run the CLI on the pack; it must end in one "rule pack: ..." line and exit 3."""
    patient = tmp_path / "patient.json"
    patient.write_text(json.dumps(WENZEL))
    args = command or ("evaluate", str(patient), "--format", "json")
    done = subprocess.run([JAKCDS, *args, "--rules", str(pack_dir)], capture_output=True, text=True, timeout=120, preexec_fn=limited)
    assert done.returncode == 3 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert len(done.stderr.strip().splitlines()) == 1 and "rule pack: " in done.stderr and not done.stdout
    return done.stderr


@pytest.mark.parametrize("name", HOSTILE_RULES)
def test_a_hostile_rule_is_refused_in_one_line(pack_dir, tmp_path, name):
    text, reason = HOSTILE_RULES[name]
    (pack_dir / "seed" / "hostile.yaml").write_text("rules:\n" + text, encoding="utf-8")
    write_manifest(pack_dir)  # as an author would: the pack is refused for what it is, not for its manifest
    assert reason in refused(pack_dir, tmp_path)


def test_the_hostile_rules_are_valid_but_for_their_attack(pack_dir, tmp_path):
    """The same rule with a plain condition loads and evaluates: each refusal above is the attack's."""
    (pack_dir / "seed" / "hostile.yaml").write_text("rules:\n" + threshold(50), encoding="utf-8")
    write_manifest(pack_dir)
    patient = tmp_path / "patient.json"
    patient.write_text(json.dumps({**WENZEL, "labs": {"platelets": 40}}))
    done = subprocess.run([JAKCDS, "evaluate", str(patient), "--format", "json", "--rules", str(pack_dir)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "HOSTILE-TST-001" in {entry["rule"] for entry in json.loads(done.stdout)["trace"]}


def test_a_hostile_pack_is_refused_by_rules_docs_too(pack_dir, tmp_path):
    (pack_dir / "seed" / "hostile.yaml").write_text("rules:\n" + HOSTILE_RULES["an alias bomb in an example (10**7 values)"][0])
    write_manifest(pack_dir)
    assert "YAML aliases" in refused(pack_dir, tmp_path, "rules", "docs", "-o", str(tmp_path / "site"))


@pytest.mark.parametrize("kind", ["a link to /dev/zero", "a FIFO", "a link to a rule file outside the pack", "a folder"])
def test_only_regular_files_inside_the_pack_are_read(pack_dir, tmp_path, kind):
    target = pack_dir / "seed" / "other.yaml"
    if kind == "a link to /dev/zero":
        target.symlink_to("/dev/zero")
    elif kind == "a FIFO":
        os.mkfifo(target)
    elif kind == "a folder":
        target.mkdir()
        (target / "x.txt").write_text("not yaml")
    else:  # approved as a file of the pack, then moved out and linked: the same bytes
        (pack_dir / "seed" / "tofacitinib.yaml").rename(target)
        write_manifest(pack_dir)
        target.rename(tmp_path / "outside.yaml")
        target.symlink_to(tmp_path / "outside.yaml")
    assert "seed/other.yaml" in refused(pack_dir, tmp_path)


@pytest.mark.parametrize("manifest", ["[" * 100_000, '{"files": ["pack.yaml"]}', "a folder"])
def test_a_malformed_manifest_is_refused(pack_dir, tmp_path, manifest):
    (pack_dir / "manifest.json").unlink()
    if manifest == "a folder":
        (pack_dir / "manifest.json").mkdir()
    else:
        (pack_dir / "manifest.json").write_text(manifest)
    assert "manifest" in refused(pack_dir, tmp_path)


@pytest.mark.parametrize("file", ["../../../../../../../../etc/passwd", "/etc/passwd"])
def test_lint_reads_no_file_outside_the_seeds_and_says_nothing_of_its_contents(pack_dir, file):
    """Findings on a quote that is in the named file and one that is not are the same: no oracle."""
    sources = yaml.safe_load((pack_dir / "sources.yaml").read_text())
    sources["seed-000"]["file"] = file
    (pack_dir / "sources.yaml").write_text(yaml.safe_dump(sources, sort_keys=False))
    rules_file = pack_dir / "seed" / "tofacitinib.yaml"
    findings = []
    for quote in ("root:x:0:0:root:/root", "zz-not-in-the-file-zz"):
        doc = yaml.safe_load(rules_file.read_text())
        doc["rules"][0]["citations"][0]["quote"] = quote
        rules_file.write_text(yaml.safe_dump(doc, sort_keys=False))
        findings.append([str(finding).replace(quote, "QUOTE") for finding in lint(pack_dir)])
    assert findings[0] == findings[1]
    assert any("a file name in the seeds folder, not a path" in str(f) for f in findings[0])


def test_cautions_that_would_fill_durables_stack_are_split_not_failed(pack_dir, tmp_path):
    """48 more cautions that all fire on one patient once made durable-rules fail at evaluation
    (its error 303, a full matching stack); the compiler now splits them into rulesets whose
    walk fits (decision/alpha.py), so the patient is evaluated and every caution is said."""
    cautions = "".join(
        f"- id: HOSTILE-TST-{i:03d}\n  title: A hostile caution\n  status: active\n  kind: caution\n  drugs: [ruxolitinib]\n"
        f"  evidence: expert_opinion\n  citations: {CITATION}\n  when: {{all: [{{fact: platelets, lt: {1000 + i}}}]}}\n"
        f"  message: A caution of ten characters.\n" for i in range(1, 49))
    (pack_dir / "seed" / "hostile.yaml").write_text("rules:\n" + cautions, encoding="utf-8")
    write_manifest(pack_dir)
    patient = tmp_path / "patient.json"
    patient.write_text(json.dumps({"condition": "chilblain_lupus_erythematosus", "comorbidities": ["myelofibrosis"], "labs": {"platelets": 120}}))
    done = subprocess.run([JAKCDS, "evaluate", str(patient), "--rules", str(pack_dir), "--format", "json"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    fired = {t["rule"] for t in json.loads(done.stdout)["trace"] if t["fired"]}
    assert {f"HOSTILE-TST-{i:03d}" for i in range(1, 49)} <= fired


@pytest.mark.parametrize("name", ["520 thresholds in one rule", "when nested 20 deep", "an alias bomb in when (10**6 tests, 1.6 KB)"])
def test_lint_reports_a_hostile_pack_as_a_finding(pack_dir, name):
    text, reason = HOSTILE_RULES[name]
    (pack_dir / "seed" / "hostile.yaml").write_text("rules:\n" + text, encoding="utf-8")
    done = subprocess.run([JAKCDS, "rules", "lint", "--rules", str(pack_dir), "--format", "json"],
                          capture_output=True, text=True, timeout=120, preexec_fn=limited)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert any(reason in finding["message"] for finding in json.loads(done.stdout))


def test_any_ruleset_durable_rules_refuses_is_a_pack_error(monkeypatch, pack):
    """A limit the compiler does not check yet still ends as a refused pack (exit 3), not a traceback."""
    from jakcds.decision import compiler

    monkeypatch.setattr(compiler, "compile_test", lambda test: {"$lt": {test.fact: [1]}})  # durable's error 102
    with pytest.raises(jakcds.PackError, match="durable-rules refused the compiled pack"):
        jakcds.Evaluator(pack)
