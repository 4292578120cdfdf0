"""The parsed-pack cache: keyed by the files' and the code's sha256, so it never serves another
pack; an unreadable entry is rebuilt; `off` writes nothing; old entries are evicted."""

import os
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
    assert len(list(cache.glob("pack-*.pickle"))) == 1
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
    assert len(list(cache.glob("pack-*.pickle"))) == 2


def test_an_unreadable_entry_is_rebuilt(cache, pack_dir):
    load_pack(pack_dir)
    (entry,) = cache.glob("pack-*.pickle")
    entry.write_bytes(b"not a pickle")
    assert load_pack(pack_dir).sha256 == jakcds.evaluator(RULES).pack.sha256
    assert entry.read_bytes() != b"not a pickle"


def test_off_writes_nothing(tmp_path, monkeypatch, pack_dir):
    monkeypatch.setenv("JAKCDS_CACHE", "off")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "home-cache"))
    load_pack(pack_dir)
    assert not (tmp_path / "home-cache").exists()


def test_only_the_most_recently_used_entries_are_kept(cache, pack_dir):
    load_pack(pack_dir)
    (used,) = cache.glob("pack-*.pickle")
    for i in range(pack_module.CACHE_KEEP + 2):
        stale = cache / f"pack-stale{i:02d}.pickle"
        stale.write_bytes(b"x")
        os.utime(stale, (1_000_000 + i, 1_000_000 + i))
    os.utime(used, (0, 0))
    load_pack(pack_dir)  # a hit marks the entry used
    file = pack_dir / "pack.yaml"
    file.write_text(file.read_text() + "\n")
    write_manifest(pack_dir)
    load_pack(pack_dir)  # a new entry: the oldest beyond CACHE_KEEP go
    kept = {entry.name for entry in cache.glob("pack-*.pickle")}
    assert len(kept) == pack_module.CACHE_KEEP and used.name in kept
    assert "pack-stale00.pickle" not in kept and f"pack-stale{pack_module.CACHE_KEEP + 1:02d}.pickle" in kept


def test_a_read_only_cache_still_serves_its_entry(cache, pack_dir, monkeypatch):
    load_pack(pack_dir)

    def refuse(*args, **kwargs):
        raise PermissionError("read-only file system")

    monkeypatch.setattr(pack_module.os, "utime", refuse)
    monkeypatch.setattr(pack_module, "_build", lambda *args: pytest.fail("the cached pack was rebuilt"))
    assert load_pack(pack_dir).rules
