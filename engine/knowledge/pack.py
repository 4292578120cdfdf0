"""The rule pack: pack.yaml, sources.yaml, vocabulary/ and the rule files, loaded and validated.

Layout of a pack directory:
  pack.yaml                name, version
  sources.yaml             the registry of sources citations may name
  vocabulary/*.yaml        diagnoses, treatments, labs, drugs, fhir (how FHIR input is read)
  <anything else>/*.yaml   rule files: {defaults: {author, created, ...}, rules: [...]}
  manifest.json            the approved state: version, each file's sha256, the pack sha256
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import logging
import os
import stat
import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .catalogue import BOOLS, ENUMS, FactName, FactSpec, catalogue
from .rules import Rule
from .vocabulary import Drug, Lab, Vocabulary

VOCABULARY = "vocabulary"
MANIFEST = "manifest.json"
SINGULAR = {"diagnoses": "diagnosis", "treatments": "treatment"}
METADATA = {"author", "reviewed_by", "created", "modified", "next_review"}  # what a file's defaults may set


class PackError(Exception):
    """A rule pack that cannot be loaded; the message names the file, the rule and the field."""


class Policy(BaseModel):
    """Site settings of the pack: policy, shown as policy in results, never a label fact."""

    model_config = ConfigDict(extra="forbid", defer_build=True)
    # A female whose reproductive potential is not given is taken to have it in this age band
    # (no US label defines the term: us-labels.md §16.4).
    reproductive_age: tuple[int, int] = (12, 50)


class PackMeta(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)
    name: str
    version: str
    description: str = ""
    policy: Policy = Policy()


class Source(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)
    kind: Literal["seed", "label"]
    title: str
    file: str = ""  # seeds: the file name in shared/seeds
    product: str = ""  # labels: the drug id (vocabulary/drugs.yaml) whose US label this is
    read_on: str = ""  # labels: when the stored copies were read (shared/knowledge/us-labels.md)
    authors: list[str] = []
    container: str = ""
    date: str = ""
    doi: str = ""
    url: str = ""
    note: str = ""

    @field_validator("file")
    @classmethod
    def _file_name(cls, file: str) -> str:
        # a name in the seeds folder, never a path: a pack under review reads nothing else
        if any(c in file for c in "/\\\0") or file in (".", ".."):
            raise ValueError(f"file {file[:80]!r}: a file name in the seeds folder, not a path")
        return file

    @model_validator(mode="after")
    def _label_fields(self) -> Source:
        if self.kind == "label" and not (self.product and self.read_on):
            raise ValueError("a label source names its product and read_on (the date its copies were read)")
        if self.kind != "label" and (self.product or self.read_on):
            raise ValueError("product and read_on apply to label sources only")
        return self


class Answered(BaseModel):
    """An Observation read into one profile fact: its LOINC codes and its coded answers."""

    model_config = ConfigDict(extra="forbid", defer_build=True)
    loinc: list[str] = Field(min_length=1)
    answers: dict[str, bool | str | None]  # "system|code" -> the fact's value; None: read as unknown

    @model_validator(mode="after")
    def _systems(self) -> Answered:
        for key in self.answers:
            if "|" not in key:
                raise ValueError(f"answer {key!r}: write it system|code")
        return self


class DraftMappings(BaseModel):
    """Codes graded only VERIFIED-S (shared/knowledge/codes.md): read only when drafts are included."""

    model_config = ConfigDict(extra="forbid", defer_build=True)
    observations: dict[str, Answered] = {}
    snomed: dict[str, str] = {}  # SNOMED CT concept -> diagnosis code
    sex: dict[str, Literal["female", "male"]] = {}  # "system|code" of US Core's individual-sex extension -> sex


class FhirReading(BaseModel):
    """vocabulary/fhir.yaml: what FHIR input needs beyond the codes on the vocabulary entries."""

    model_config = ConfigDict(extra="forbid", defer_build=True)
    failure_reasons: list[str]  # a stopped medicine whose status reason contains one of these failed
    observations: dict[str, Answered] = {}  # profile fact -> the Observation that says it
    # RxNorm products that name an ingredient the pack maps but are not what its rules mean
    # (a topical form of a systemic interacting medicine): listed, never mapped, with why
    not_systemic: dict[str, str] = {}
    draft: DraftMappings = DraftMappings()

    @model_validator(mode="after")
    def _facts(self) -> FhirReading:
        specs = dict(ENUMS) | dict.fromkeys(BOOLS, (True, False))
        for name, mapping in {**self.observations, **self.draft.observations}.items():
            if name not in specs:
                raise ValueError(f"observations: {name!r} is not a profile fact an Observation can give ({', '.join(specs)})")
            wrong = [v for v in mapping.answers.values() if v is not None and v not in specs[name]]
            if wrong:
                raise ValueError(f"observations.{name}: {wrong[0]!r} is not a value of {name}")
        return self

    @model_validator(mode="after")
    def _lower(self) -> FhirReading:
        self.failure_reasons = [phrase.lower() for phrase in self.failure_reasons]
        return self


@dataclass
class Pack:
    path: Path
    meta: PackMeta
    sha256: str
    files: dict[str, str]  # relative path -> sha256 of the file
    manifest_problems: list[str]  # empty when the files match manifest.json
    sources: dict[str, Source]
    diagnoses: Vocabulary
    treatments: Vocabulary
    labs: dict[str, Lab]
    drugs: dict[str, Drug]
    fhir: FhirReading
    fact_names: dict[str, FactName]  # vocabulary/facts.yaml: each fact in words (lint: every fact has one)
    rules: list[Rule]  # every status, sorted by id
    rule_files: dict[str, str]  # rule id -> the file it is in

    def fact_words(self, fact: str, unit: bool = True) -> str:
        """A fact by its name in words, with its unit unless unit=False (the field name only
        where the pack's table lacks it, which `jakcds rules lint` reports)."""
        named = self.fact_names.get(fact)
        if named is None:
            return fact.replace("_", " ")
        return named.words if unit else named.name

    @cached_property
    def catalogue(self) -> dict[str, FactSpec]:
        """Every fact a rule may test (knowledge/catalogue.py), built once."""
        return catalogue(self)

    def active(self, include_draft: bool = False) -> list[Rule]:
        wanted = {"active", "draft"} if include_draft else {"active"}
        return [rule for rule in self.rules if rule.status in wanted]


def default_path() -> Path:
    """The shipped pack: jakcds/rules in an installed wheel, rules/ beside engine/ in a checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "rules", here.parent.parent / "rules"):
        if (candidate / "pack.yaml").is_file():
            return candidate
    raise PackError(f"no rule pack found beside {here}")


def load_pack(path: Path | str | None = None, verify: bool = True) -> Pack:
    """Load and validate a pack. With verify (the default) a pack whose files do not match
    its manifest.json is refused; `jakcds rules lint` loads without it and reports instead."""
    root = Path(path) if path else default_path()
    if not (root / "pack.yaml").is_file():
        raise PackError(f"{root}: not a rule pack (no pack.yaml)")
    texts = _read(root)
    files = _digests(texts)
    problems = manifest_problems(root, files)
    if verify and problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise PackError(f"{root}: refused, the pack does not match its {MANIFEST}: {problems[0]}{more}")
    entry = _entry(files)
    docs = _cached_docs(entry, files) if entry else None
    if docs is not None:
        return _build(root, docs, files, problems)
    docs = _parse(texts)
    pack = _build(root, docs, files, problems)
    if entry:
        _keep(entry, files, docs, pack)
    return pack


def _build(root: Path, docs: dict[str, Any], files: dict[str, str], problems: list[str]) -> Pack:
    pack = Pack(
        path=root,
        meta=_model(PackMeta, docs, "pack.yaml"),
        sha256=pack_sha256(files),
        files=files,
        manifest_problems=problems,
        sources={key: _model(Source, docs, "sources.yaml", key) for key in docs.get("sources.yaml") or {}},
        diagnoses=_vocabulary(docs, "diagnoses"),
        treatments=_vocabulary(docs, "treatments"),
        labs={key: _model(Lab, docs, f"{VOCABULARY}/labs.yaml", key) for key in _entries(docs, "labs")},
        drugs={key: _model(Drug, docs, f"{VOCABULARY}/drugs.yaml", key) for key in _entries(docs, "drugs")},
        fhir=_model(FhirReading, docs, f"{VOCABULARY}/fhir.yaml"),
        fact_names={key: _model(FactName, docs, f"{VOCABULARY}/facts.yaml", key) for key in docs.get(f"{VOCABULARY}/facts.yaml") or {}},
        rules=[],
        rule_files={},
    )
    for key, source in pack.sources.items():
        if source.kind == "label" and source.product not in pack.drugs:
            raise PackError(f"sources.yaml: {key}: product: unknown drug {source.product!r}")
    for concept, code in pack.fhir.draft.snomed.items():
        if code not in pack.diagnoses.entries:
            raise PackError(f"{VOCABULARY}/fhir.yaml: draft.snomed.{concept}: unknown diagnosis {code!r}")
    found = _rules(pack, docs)
    pack.rules = [rule for rule, _ in found]
    pack.rule_files = {rule.id: name for rule, name in found}
    by_id = {rule.id: rule for rule in pack.rules}
    for rule, name in found:
        for other in rule.supersedes:
            target = by_id.get(other)
            if target is None or set(target.drugs) - set(rule.drugs) or target.kind != rule.kind:
                raise PackError(f"{name}: {rule.id}: supersedes {other!r}, which is not a {rule.kind} rule of its drugs")
    return pack


# The parsed YAML of a pack is cached as JSON, keyed by the sha256 of its files and of the code
# that reads them: parsing the YAML is most of a CLI start. The cache holds data only (never
# code), is validated again on every load, and is used only in a folder that no one else can write.
CODE_FILES = ("pack.py", "rules.py", "vocabulary.py", "catalogue.py")
CACHE_KEEP = 8  # entries kept (most recently used): each new version of the pack or the code adds one
CACHE_MAX_BYTES = 64 << 20  # an entry larger than this is not read


def _code_sha256() -> str:
    here = Path(__file__).resolve().parent
    return hashlib.sha256(b"".join((here / name).read_bytes() for name in CODE_FILES)).hexdigest()


def _cache_folder() -> Path | None:
    setting = os.environ.get("JAKCDS_CACHE", "")
    if setting == "off":
        return None
    return Path(setting) if setting else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "jakcds"


def _entry(files: dict[str, str]) -> tuple[Path, str] | None:
    """The cache entry of these files, with the code's sha256; None when the cache is off or its
    folder is not safe to use."""
    folder = _cache_folder()
    if folder is None or not _usable_folder(folder):
        return None
    code = _code_sha256()
    key = hashlib.sha256(f"{pack_sha256(files)} {code} {sys.version}".encode()).hexdigest()
    return folder / f"pack-{key[:32]}.json", code


def _private(info: os.stat_result, kind: int) -> bool:
    """Owned by this user, of the given kind, and writable by no one else."""
    return stat.S_IFMT(info.st_mode) == kind and info.st_uid == os.geteuid() and not info.st_mode & 0o022


def _usable_folder(folder: Path) -> bool:
    """A folder another user owns or can write could hold anything: it is not used (one warning)."""
    try:
        info = os.lstat(folder)
    except FileNotFoundError:
        return True  # made by _keep, private
    except OSError:
        return False
    if not _private(info, stat.S_IFDIR):
        logging.getLogger("jakcds").warning("jakcds: pack cache %s not used: it must be a folder of this user that no one else can write", folder)
        return False
    return True


def _cached_docs(entry: tuple[Path, str], files: dict[str, str]) -> dict[str, Any] | None:
    """The parsed YAML of exactly these files (and this code), if an earlier load kept it."""
    path, code = entry
    try:
        found = _regular(path, CACHE_MAX_BYTES, os.O_NOFOLLOW)
        if found is None or not _private(found[0], stat.S_IFREG) or len(found[1]) > CACHE_MAX_BYTES:
            return None
        kept = json.loads(found[1])
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(kept, dict) or kept.get("files") != files or kept.get("code") != code or not isinstance(kept.get("docs"), dict):
        return None  # another pack's or another code's entry under this name: never served
    with contextlib.suppress(OSError):  # used: the eviction in _keep goes by modification time
        os.utime(path)
    return kept["docs"]


def _as_json(docs: dict[str, Any]) -> str | None:
    """The docs as JSON, or None if JSON cannot hold them as they are (YAML's dates become text)."""

    def dates(value: Any) -> str:
        if isinstance(value, datetime.date):
            return value.isoformat()
        raise TypeError(type(value).__name__)

    try:
        return json.dumps(docs, default=dates, ensure_ascii=False)
    except (TypeError, ValueError):
        return None


def _keep(entry: tuple[Path, str], files: dict[str, str], docs: dict[str, Any], pack: Pack) -> None:
    """Keep the parsed pack for the next load, written atomically in a private folder, only if
    its JSON builds exactly this pack; a read-only or missing home only costs the next load its parse."""
    path, code = entry
    text = _as_json(docs)
    if text is None or _build(pack.path, json.loads(text), files, pack.manifest_problems) != pack:
        return
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with open(fd, "w", encoding="utf-8") as file:
            file.write(f'{{"files": {json.dumps(files)}, "code": "{code}", "docs": {text}}}')
        os.replace(temporary, path)
        entries = sorted(path.parent.glob("pack-*.json"), key=lambda stale: stale.lstat().st_mtime, reverse=True)
        for stale in entries[CACHE_KEEP:]:
            stale.unlink(missing_ok=True)
    except OSError:
        pass


# Bounds of a pack (the shipped one is about 0.3 MB): a hostile pack under review must not
# exhaust the reviewer's machine, through its files or through YAML aliases that expand them.
MAX_PACK_BYTES = 16 << 20  # all its files together
MAX_NODES = 1_000_000  # YAML nodes, aliases expanded (each rule file's rules, tests, examples)
MAX_TEXT = 32 << 20  # characters of text, aliases expanded


def _read(root: Path) -> dict[str, bytes]:
    """Every *.yaml file of the pack: regular files inside its folder only (no link out, no
    device, no FIFO), together at most MAX_PACK_BYTES."""
    inside, texts, left = root.resolve(), {}, MAX_PACK_BYTES
    for path in sorted(root.rglob("*.yaml")):
        name = path.relative_to(root).as_posix()
        if not path.resolve().is_relative_to(inside):
            raise PackError(f"{name}: refused, a link to a file outside the pack")
        texts[name] = read_file(path, name, left)
        left -= len(texts[name])
    return texts


def read_file(path: Path, name: str, limit: int) -> bytes:
    """A regular file of at most `limit` bytes, else PackError."""
    try:
        found = _regular(path, limit)
    except OSError as error:
        raise PackError(f"{name}: cannot be read ({error.strerror})") from None
    if found is None:
        raise PackError(f"{name}: refused, not a regular file")
    if len(found[1]) > limit:
        raise PackError(f"{name}: refused, more than {limit:,} bytes (a pack's files take {MAX_PACK_BYTES >> 20} MiB at most)")
    return found[1]


def _regular(path: Path, limit: int, flags: int = 0) -> tuple[os.stat_result, bytes] | None:
    """The status and at most limit + 1 bytes of a regular file; None if it is not one. Opened
    without blocking, so a FIFO does not hang; a device or folder is never read."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | flags)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None
        with open(fd, "rb", closefd=False) as file:
            return info, file.read(limit + 1)
    finally:
        os.close(fd)


def _digests(texts: dict[str, bytes]) -> dict[str, str]:
    return {name: hashlib.sha256(text).hexdigest() for name, text in texts.items()}


def pack_sha256(files: dict[str, str]) -> str:
    """The pack's sha256: over each file's relative path and sha256, in path order."""
    digest = hashlib.sha256()
    for name, sha in sorted(files.items()):
        digest.update(f"{name}\0{sha}\n".encode())
    return digest.hexdigest()


def manifest_problems(root: Path, files: dict[str, str]) -> list[str]:
    """How the pack's files differ from manifest.json (the state a reviewer approved)."""
    path = root / MANIFEST
    if not path.exists():
        return [f"{MANIFEST} is missing (run `jakcds rules manifest` after review)"]
    try:
        listed = json.loads(read_file(path, MANIFEST, MAX_PACK_BYTES))["files"]
    except (PackError, ValueError, KeyError, TypeError, RecursionError):
        listed = None
    if not isinstance(listed, dict):
        return [f"{MANIFEST} is not a valid manifest"]
    problems = []
    for name in sorted(set(files) | set(listed)):
        if name not in listed:
            problems.append(f"{name} is not in the manifest (added after approval)")
        elif name not in files:
            problems.append(f"{name} is in the manifest but missing")
        elif listed[name] != files[name]:
            problems.append(f"{name} has changed since approval (sha256 differs)")
    return problems


def _parse(texts: dict[str, bytes]) -> dict[str, Any]:
    """Each file's YAML, refused when its aliases expand the pack past MAX_NODES or MAX_TEXT."""
    docs, nodes, text = {}, 0, 0
    for name, data in texts.items():
        docs[name] = _yaml(name, data)
        more_nodes, more_text = _expanded(name, docs[name])
        nodes, text = nodes + more_nodes, text + more_text
        if nodes > MAX_NODES or text > MAX_TEXT:
            raise PackError(f"{name}: refused, the pack expands (YAML aliases included) past {MAX_NODES:,} values or {MAX_TEXT >> 20} MiB of text")
    return docs


def _expanded(name: str, doc: Any) -> tuple[int, int]:
    """(values, characters) of a parsed document with its aliases expanded, as validating and
    rendering it would walk it; each distinct node is counted once, without recursion."""
    sizes: dict[int, tuple[int, int]] = {}
    visiting: set[int] = set()
    stack: list[tuple[Any, bool]] = [(doc, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        children = [*node.keys(), *node.values()] if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            sizes[key] = (1, len(node) if isinstance(node, str) else 0)
        elif children_done:
            visiting.discard(key)
            sizes[key] = (1 + sum(sizes[id(c)][0] for c in children), sum(sizes[id(c)][1] for c in children))
        elif key in visiting:
            raise PackError(f"{name}: refused, a YAML alias contains itself")
        elif key not in sizes:
            visiting.add(key)
            stack.append((node, True))
            stack.extend((child, False) for child in children)
    return sizes[id(doc)]


def write_manifest(path: Path | str | None = None, impact: dict[str, Any] | None = None) -> dict[str, Any]:
    """Record the pack's current files as approved: version, each file's sha256, the pack sha256,
    and, if given, the summary of `jakcds rules impact` measured with exactly these files as head."""
    root = Path(path) if path else default_path()
    texts = _read(root)
    files = _digests(texts)
    version = (_parse({"pack.yaml": texts["pack.yaml"]})["pack.yaml"] or {}).get("version")
    manifest: dict[str, Any] = {"version": version, "sha256": pack_sha256(files), "files": files}
    if impact is not None:
        measured = (impact.get("head") or {}).get("sha256")
        if measured != manifest["sha256"]:
            raise PackError(f"the impact was measured with another head pack (sha256 {str(measured)[:12]}…), not these files ({manifest['sha256'][:12]}…): run rules impact again")
        keep = ("base", "head", "source", "source_sha256", "patients", "changed", "unchanged", "changes_by_kind")
        manifest["impact"] = {key: impact[key] for key in keep}
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def _yaml(name: str, text: bytes) -> Any:
    import yaml  # only when the pack is parsed (not when it comes from the cache)

    try:
        return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as error:
        raise PackError(f"{name}: invalid YAML: {error}".replace("\n", " ")) from None


def _entries(docs: dict[str, Any], vocabulary: str) -> dict[str, Any]:
    name = f"{VOCABULARY}/{vocabulary}.yaml"
    if not isinstance(docs.get(name), dict):
        raise PackError(f"{name}: missing, or not a mapping of code -> entry")
    return docs[name]


def _model(model: type[BaseModel], docs: dict[str, Any], name: str, key: str | None = None) -> Any:
    data = docs.get(name) if key is None else docs[name][key]
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise PackError(f"{name}: {key or ''}: {_first_error(error)}") from None


def _vocabulary(docs: dict[str, Any], kind: str) -> Vocabulary:
    name = f"{VOCABULARY}/{kind}.yaml"
    try:
        return Vocabulary.model_validate({"kind": SINGULAR[kind], "entries": _entries(docs, kind)})
    except ValidationError as error:
        raise PackError(f"{name}: {_first_error(error)}") from None


def _rules(pack: Pack, docs: dict[str, Any]) -> list[tuple[Rule, str]]:
    context = {"pack": pack, "catalogue": catalogue(pack)}
    found: dict[str, tuple[Rule, str]] = {}
    for name, doc in docs.items():
        if name in ("pack.yaml", "sources.yaml") or name.startswith(f"{VOCABULARY}/"):
            continue
        if not isinstance(doc, dict) or not isinstance(doc.get("rules"), list) or set(doc) - {"defaults", "rules"}:
            raise PackError(f"{name}: a rule file is a mapping with `rules` (a list) and optional `defaults`")
        defaults = doc.get("defaults") or {}
        if not isinstance(defaults, dict) or set(defaults) - METADATA:
            raise PackError(f"{name}: defaults may only set {', '.join(sorted(METADATA))}")
        for index, data in enumerate(doc["rules"]):
            if isinstance(data, dict):
                data = {**defaults, **data}
            rule_id = data.get("id", f"rule #{index + 1}") if isinstance(data, dict) else f"rule #{index + 1}"
            try:
                rule = Rule.model_validate(data, context=context)
            except ValidationError as error:
                raise PackError(f"{name}: {rule_id}: {_first_error(error)}") from None
            if rule.id in found:
                raise PackError(f"{name}: {rule.id}: duplicate rule id (also in {found[rule.id][1]})")
            found[rule.id] = (rule, name)
    return [found[rule_id] for rule_id in sorted(found)]


def _first_error(error: ValidationError) -> str:
    """One line: the field path (without pydantic's union tags) and the message."""
    first = error.errors()[0]
    loc = ".".join(str(part) for part in first["loc"] if part not in ("test", "group"))
    message = first["msg"].removeprefix("Value error, ")
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"{loc or '(top)'}: {message}{more}"
