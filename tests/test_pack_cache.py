"""The parsed-pack cache: data only (JSON, never a pickle), keyed by the files' and the code's
sha256 and checked against them, so it never serves another pack; used only in a folder of this
user that no one else can write; an unreadable entry is rebuilt; `off` writes nothing; old
entries are evicted."""

import json
import os
import pickle
import shutil

import pytest
import yaml

import jakcds
from jakcds.knowledge import pack as pack_module
from jakcds.knowledge.pack import load_pack, write_manifest
from conftest import RULES


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("JAKCDS_CACHE", str(folder))
    return folder


@pytest.fixture
def pack_dir(tmp_path):
    shutil.copytree(RULES, tmp_path / "rules")
    return tmp_path / "rules"


def test_a_cached_load_gives_the_same_pack(cache, pack_dir):
    fresh = load_pack(pack_dir)
    assert len(list(cache.glob("pack-*.json"))) == 1
    cached = load_pack(pack_dir)
    assert cached.sha256 == fresh.sha256 and cached.path == pack_dir
    assert [r.model_dump() for r in cached.rules] == [r.model_dump() for r in fresh.rules]


def test_an_edited_rule_is_read_again_not_served_from_the_cache(cache, pack_dir):
    load_pack(pack_dir)
    file = pack_dir / "seed" / "tofacitinib.yaml"
    doc = yaml.safe_load(file.read_text())
    doc["rules"][0]["title"] = "An edited title"
    file.write_text(yaml.safe_dump(doc, sort_keys=False))
    write_manifest(pack_dir)
    edited = load_pack(pack_dir)
    assert next(r for r in edited.rules if r.id == doc["rules"][0]["id"]).title == "An edited title"
    assert len(list(cache.glob("pack-*.json"))) == 2


def test_an_unreadable_entry_is_rebuilt(cache, pack_dir):
    load_pack(pack_dir)
    (entry,) = cache.glob("pack-*.json")
    entry.write_bytes(b"not JSON")
    assert load_pack(pack_dir).sha256 == jakcds.evaluator(RULES).pack.sha256
    assert entry.read_bytes() != b"not JSON"


def test_off_writes_nothing(tmp_path, monkeypatch, pack_dir):
    monkeypatch.setenv("JAKCDS_CACHE", "off")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "home-cache"))
    load_pack(pack_dir)
    assert not (tmp_path / "home-cache").exists()


def test_only_the_most_recently_used_entries_are_kept(cache, pack_dir):
    load_pack(pack_dir)
    (used,) = cache.glob("pack-*.json")
    for i in range(pack_module.CACHE_KEEP + 2):
        stale = cache / f"pack-stale{i:02d}.json"
        stale.write_bytes(b"x")
        os.utime(stale, (1_000_000 + i, 1_000_000 + i))
    os.utime(used, (0, 0))
    load_pack(pack_dir)  # a hit marks the entry used
    file = pack_dir / "pack.yaml"
    file.write_text(file.read_text() + "\n")
    write_manifest(pack_dir)
    load_pack(pack_dir)  # a new entry: the oldest beyond CACHE_KEEP go
    kept = {entry.name for entry in cache.glob("pack-*.json")}
    assert len(kept) == pack_module.CACHE_KEEP and used.name in kept
    assert "pack-stale00.json" not in kept and f"pack-stale{pack_module.CACHE_KEEP + 1:02d}.json" in kept


def test_a_read_only_cache_still_serves_its_entry(cache, pack_dir, monkeypatch):
    load_pack(pack_dir)

    def refuse(*args, **kwargs):
        raise PermissionError("read-only file system")

    monkeypatch.setattr(pack_module.os, "utime", refuse)
    monkeypatch.setattr(pack_module, "_parse", lambda *args: pytest.fail("the cached pack was parsed again"))
    assert load_pack(pack_dir).rules


class Planted:
    """A pickle that, when unpickled, makes a folder: the proof that the cache ran code."""

    def __init__(self, proof):
        self.proof = str(proof)

    def __reduce__(self):
        return os.mkdir, (self.proof,)


def test_a_planted_pickle_is_never_unpickled(cache, pack_dir, tmp_path):
    load_pack(pack_dir)
    proof = tmp_path / "code-ran"
    for entry in cache.iterdir():  # every entry, under its own name and as a .pickle beside it
        for path in (entry, entry.with_suffix(".pickle")):
            path.write_bytes(pickle.dumps(Planted(proof)))
    pack = load_pack(pack_dir)
    assert not proof.exists()
    assert pack.sha256 == jakcds.evaluator(RULES).pack.sha256


def platelets_40(pack):
    """The platelets-40 myelofibrosis case: ruxolitinib must carry its critical LABEL-RUX-001."""
    result = jakcds.Evaluator(pack).evaluate(json.loads((RULES.parent / "cases/platelets-40-myelofibrosis/patient.json").read_text()))
    ruxolitinib = next(c for c in result.candidates if c.drug == "ruxolitinib")
    return {c.rule for c in ruxolitinib.cautions}


def test_a_valid_entry_of_another_pack_is_not_served(cache, pack_dir, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(pack_dir, other)
    file = other / "label" / "ruxolitinib.yaml"
    file.write_text(file.read_text().replace("{fact: platelets, lt: 50}", "{fact: platelets, lt: 5}", 1))
    write_manifest(other)
    assert "LABEL-RUX-001" not in platelets_40(load_pack(other))
    (edited,) = cache.iterdir()
    load_pack(pack_dir)
    (shipped,) = set(cache.iterdir()) - {edited}
    shutil.copyfile(edited, shipped)  # the other pack's valid entry under this pack's name
    assert "LABEL-RUX-001" in platelets_40(load_pack(pack_dir))


def test_a_folder_others_can_write_is_not_used(cache, pack_dir, monkeypatch, caplog):
    cache.mkdir()
    cache.chmod(0o777)
    load_pack(pack_dir)
    assert not list(cache.iterdir())
    assert [r.getMessage() for r in caplog.records] == [f"jakcds: pack cache {cache} not used: it must be a folder of this user that no one else can write"]
    cache.chmod(0o700)
    load_pack(pack_dir)
    (entry,) = cache.iterdir()
    cache.chmod(0o775)
    monkeypatch.setattr(pack_module, "_cached_docs", lambda *args: pytest.fail("an entry was read"))
    assert load_pack(pack_dir).rules and len(caplog.records) == 2


@pytest.mark.parametrize("change", ["writable by others", "a link"])
def test_an_entry_others_could_have_written_is_not_used(cache, pack_dir, monkeypatch, change):
    load_pack(pack_dir)
    (entry,) = cache.iterdir()
    if change == "a link":
        target = entry.with_name("elsewhere")
        entry.rename(target)
        entry.symlink_to(target)
    else:
        entry.chmod(0o666)
    parsed = []
    monkeypatch.setattr(pack_module, "_parse", lambda texts, parse=pack_module._parse: parsed.append(1) or parse(texts))
    assert load_pack(pack_dir).rules and parsed
