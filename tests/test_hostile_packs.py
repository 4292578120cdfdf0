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


def bomb(leaf, levels, anchor="a"):
    """YAML flow text of `levels` nested lists of ten aliases each over `leaf`: 10**levels leaves."""
    text = f"&{anchor}0 {leaf}"
    for level in range(1, levels + 1):
        text = f"[{text}, " + ", ".join([f"*{anchor}{level - 1}"] * 9) + "]"
        text = f"&{anchor}{level} {text}" if level < levels else text
    return text


def nested(depth):
    when = "{fact: platelets, lt: 50}"
    for level in range(depth):
        when = f"{{{'all' if level % 2 else 'any'}: [{when}]}}"
    return when


HOSTILE_RULES = {
    "an alias bomb in when (10**6 tests, 1.6 KB)": rule(when="{any: " + bomb("{fact: platelets, lt: 50}", 6) + "}"),
    "an alias bomb in an example (10**7 values)": rule(examples="[{fires: true, patient: {labs: " + bomb("1", 7) + "}}]"),
    "a 1 MiB message aliased 100 times": rule(message="&m " + json.dumps("x" * (1 << 20)))
    + "".join(rule(f"HOSTILE-TST-{i:03d}", message="*m") for i in range(2, 101)),
    "520 thresholds in one rule": rule(when="{any: [" + ", ".join(f"{{fact: platelets, lt: {100 + i}}}" for i in range(520)) + "]}"),
    "when nested 20 deep": rule(when=nested(20)),
    "threshold .nan": rule(when="{fact: platelets, lt: .nan}"),
    "threshold .inf": rule(when="{fact: platelets, lt: .inf}"),
    "threshold -.inf": rule(when="{fact: platelets, gt: -.inf}"),
    "threshold 1.0e-05": rule(when="{fact: platelets, lt: 1.0e-05}"),
    "threshold 1.0e+300": rule(when="{fact: platelets, lt: 1.0e+300}"),
    "a self-containing alias": rule(examples="&loop [{fires: true, patient: {labs: *loop}}]"),
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
    (pack_dir / "seed" / "hostile.yaml").write_text("rules:\n" + HOSTILE_RULES[name], encoding="utf-8")
    write_manifest(pack_dir)  # as an author would: the pack is refused for what it is, not for its manifest
    refused(pack_dir, tmp_path)


def test_a_hostile_pack_is_refused_by_rules_docs_too(pack_dir, tmp_path):
    (pack_dir / "seed" / "hostile.yaml").write_text("rules:\n" + HOSTILE_RULES["an alias bomb in an example (10**7 values)"])
    refused(pack_dir, tmp_path, "rules", "docs", "-o", str(tmp_path / "site"))


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
    else:
        outside = tmp_path / "outside.yaml"
        shutil.copyfile(pack_dir / "seed" / "tofacitinib.yaml", outside)
        (pack_dir / "seed" / "tofacitinib.yaml").unlink()
        target.symlink_to(outside)
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
