"""A malformed rule pack is a clear load error naming the file, the rule id and the field."""

import shutil

import pytest
import yaml

import jakcds
from jakcds.knowledge.pack import write_manifest
from conftest import RULES


@pytest.fixture
def pack_dir(tmp_path):
    shutil.copytree(RULES, tmp_path / "rules")
    return tmp_path / "rules"


def edit(pack_dir, rule_id, change):
    file = pack_dir / "seed" / "tofacitinib.yaml"
    doc = yaml.safe_load(file.read_text())
    rule = next(r for r in doc["rules"] if r["id"] == rule_id)
    change(rule)
    file.write_text(yaml.safe_dump(doc, sort_keys=False))
    write_manifest(file.parent.parent)  # as a reviewer would after approving the change


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda r: r.update(kind="suggest"), "kind: Input should be 'propose', 'caution', 'exclude' or 'note'"),
        (lambda r: r.update(evidence="anecdote"), "evidence: Input should be"),
        (lambda r: r.update(citations=[]), "citations: List should have at least 1 item"),
        (lambda r: r["citations"][0].update(source="seed-999"), "citations.0: unknown source 'seed-999'"),
        (lambda r: r.update(drugs=["tofacitnib"]), "unknown drug 'tofacitnib'"),
        (lambda r: r.update(label_status=None), "label_status is required for propose rules"),
        (lambda r: r["when"]["all"][0].update(has="vitiligio"), "when.all.0: unknown diagnosis code 'vitiligio'; did you mean 'vitiligo'?"),
        (lambda r: r["when"]["all"][0].update(fact="diagnosis"), "when.all.0: unknown fact 'diagnosis'"),
        (lambda r: r["when"]["all"].append({"fact": "age", "has": "old"}), "when.all.1: operator 'has' does not apply to number fact 'age'"),
        (lambda r: r["when"]["all"].append({"fact": "smoking", "eq": "sometimes"}), "smoking takes never, former, current"),
        (lambda r: r.update(id="tof-1"), "id: String should match pattern"),
        (lambda r: r.update(asks=["age"]), "asks applies to caution rules only"),
        (lambda r: r.update(only_with_off_label=True), "only_with_off_label applies to note rules only"),
    ],
)
def test_malformed_rule(pack_dir, change, expected):
    edit(pack_dir, "SEED-TOF-001", change)
    with pytest.raises(jakcds.PackError) as info:
        jakcds.load_pack(pack_dir)
    message = str(info.value)
    assert message.startswith("seed/tofacitinib.yaml: ") and expected in message, message
    assert "\n" not in message


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda r: r.update(asks=["age"]), "a rule asks only for facts it tests as unknown"),
        (lambda r: r.update(supersedes=["SEED-RUX-002"]), "supersedes 'SEED-RUX-002', which is not a caution rule of its drugs"),
    ],
)
def test_malformed_caution(pack_dir, change, expected):
    edit(pack_dir, "SEED-TOF-003", change)
    with pytest.raises(jakcds.PackError) as info:
        jakcds.load_pack(pack_dir)
    assert expected in str(info.value), str(info.value)


def test_duplicate_rule_id(pack_dir):
    edit(pack_dir, "SEED-TOF-001", lambda r: r.update(id="SEED-RUX-001"))
    with pytest.raises(jakcds.PackError, match="SEED-RUX-001: duplicate rule id"):
        jakcds.load_pack(pack_dir)


def test_invalid_yaml_and_vocabulary(pack_dir):
    (pack_dir / "seed" / "broken.yaml").write_text("rules: [\n")
    with pytest.raises(jakcds.PackError, match="seed/broken.yaml: invalid YAML"):
        jakcds.load_pack(pack_dir, verify=False)
    (pack_dir / "seed" / "broken.yaml").unlink()
    vocab = pack_dir / "vocabulary" / "diagnoses.yaml"
    vocab.write_text(vocab.read_text() + "orphan:\n  name: Orphan\n  is_a: [nothing]\n")
    with pytest.raises(jakcds.PackError, match="orphan: is_a names unknown code 'nothing'"):
        jakcds.load_pack(pack_dir, verify=False)


def test_sha256_changes_with_any_file(pack_dir):
    before = jakcds.load_pack(pack_dir).sha256
    (pack_dir / "sources.yaml").write_text((pack_dir / "sources.yaml").read_text() + "\n# reviewed\n")
    assert jakcds.load_pack(pack_dir, verify=False).sha256 != before


def test_vocabulary_codes_are_snake_case(pack_dir):
    """Codes become durable-rules field paths: a dot would silently split the path."""
    vocab = pack_dir / "vocabulary" / "treatments.yaml"
    vocab.write_text(vocab.read_text() + "Vitamin.D:\n  name: Vitamin D\n")
    with pytest.raises(jakcds.PackError, match="'Vitamin.D': codes are lower-case snake_case"):
        jakcds.load_pack(pack_dir, verify=False)
