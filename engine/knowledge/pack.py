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
import hashlib
import json
import os
import pickle
import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .catalogue import BOOLS, ENUMS, FactSpec, catalogue
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
    rules: list[Rule]  # every status, sorted by id
    rule_files: dict[str, str]  # rule id -> the file it is in

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
    cached = _cache_file(files)
    try:  # the validated pack of exactly these files (and this code), if an earlier load kept it
        pack = pickle.loads(cached.read_bytes()) if cached else None
    except Exception:  # noqa: BLE001 - any unreadable cache entry is rebuilt
        pack = None
    if cached and pack is not None:
        with contextlib.suppress(OSError):  # used: the eviction in _keep goes by modification time
            os.utime(cached)
    if pack is None:
        pack = _build(root, texts, files, problems)
        _keep(cached, pack)
    pack.path, pack.manifest_problems = root, problems
    return pack


def _build(root: Path, texts: dict[str, bytes], files: dict[str, str], problems: list[str]) -> Pack:
    docs = {name: _yaml(name, text) for name, text in texts.items()}
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


# The parsed, validated pack is cached by the sha256 of its files and of the code that reads them
# (so the cache cannot drift from either): parsing and validating the YAML is most of a CLI start.
CODE_FILES = ("pack.py", "rules.py", "vocabulary.py", "catalogue.py")
CACHE_KEEP = 8  # entries kept (most recently used): each new version of the pack or the code adds one


def _cache_file(files: dict[str, str]) -> Path | None:
    setting = os.environ.get("JAKCDS_CACHE", "")
    if setting == "off":
        return None
    here = Path(__file__).resolve().parent
    code = hashlib.sha256(b"".join((here / name).read_bytes() for name in CODE_FILES)).hexdigest()
    key = hashlib.sha256(f"{pack_sha256(files)} {code} {sys.version}".encode()).hexdigest()
    folder = Path(setting) if setting else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "jakcds"
    return folder / f"pack-{key[:32]}.pickle"


def _keep(cached: Path | None, pack: Pack) -> None:
    """Write the cache entry atomically; a read-only or missing home only costs the next load its parse."""
    if cached is None:
        return
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        temporary = cached.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_bytes(pickle.dumps(pack, protocol=pickle.HIGHEST_PROTOCOL))
        os.replace(temporary, cached)
        entries = sorted(cached.parent.glob("pack-*.pickle"), key=lambda entry: entry.stat().st_mtime, reverse=True)
        for stale in entries[CACHE_KEEP:]:
            stale.unlink(missing_ok=True)
    except OSError:
        pass


def _read(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.yaml"))}


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
    try:
        listed = json.loads(path.read_text(encoding="utf-8"))["files"]
    except FileNotFoundError:
        return [f"{MANIFEST} is missing (run `jakcds rules manifest` after review)"]
    except (ValueError, KeyError, TypeError):
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


def write_manifest(path: Path | str | None = None) -> dict[str, Any]:
    """Record the pack's current files as approved: version, each file's sha256, the pack sha256."""
    root = Path(path) if path else default_path()
    texts = _read(root)
    files = _digests(texts)
    version = (_yaml("pack.yaml", texts["pack.yaml"]) or {}).get("version")
    manifest = {"version": version, "sha256": pack_sha256(files), "files": files}
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
