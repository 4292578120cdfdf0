"""`jakcds screen`: a bulk export screened into per-patient results and a summary (issues 15, 21, 24, 25, 27)."""

import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import CASES
from test_cli import JAKCDS
from jakcds.ehr import screen as screening
from jakcds.ehr.screen import MARKER, OUTPUTS, WORK, ScreenError, screen

pytestmark = pytest.mark.slow  # Dask clusters
FIXTURE = CASES / "screening"
AS_OF = datetime.date(2026, 11, 23)
LOINC = "http://loinc.org"


def jak_export(tmp_path, extra=None, name="export"):
    """The fixture's four JAK patients (not its Synthea charts: fast), plus `extra` lines per file."""
    export = tmp_path / name
    export.mkdir()
    for path in sorted((FIXTURE / "export").glob("*.ndjson")):
        kept = [line for line in path.read_text().splitlines() if 'jak-' in line and line.startswith('{"resourceType"')]
        (export / path.name).write_text("".join(line + "\n" for line in kept))
    for file, lines in (extra or {}).items():
        with open(export / file, "a") as out:
            out.writelines(line + "\n" for line in lines)
    return export


def observation(id, patient, loinc, when, **fields):
    return json.dumps({"resourceType": "Observation", "id": id, "status": "final", "subject": {"reference": patient},
                       "effectiveDateTime": when, "code": {"coding": [{"system": LOINC, "code": loinc}]}, **fields})


def read(out, name):
    return (out / name).read_text()


def bad_lines(out):
    return [json.loads(line) for line in read(out, "bad_lines.ndjson").splitlines()]


def cli(*args):
    return subprocess.run([str(JAKCDS), "screen", *map(str, args), "--as-of", "2026-11-23", "--workers", "1"],
                          capture_output=True, text=True, timeout=300)


def test_the_shipped_export_gives_the_golden_summary(tmp_path):
    done = cli(FIXTURE / "export", "-o", tmp_path)
    assert done.returncode == 0, done.stderr
    assert "7 patients" in done.stdout and "3 bad lines" in done.stdout
    for name in ("summary.csv", "counts.json"):
        assert (tmp_path / name).read_text() == (FIXTURE / "expected" / name).read_text(), name
    summary = (tmp_path / "summary.csv").read_text()
    assert "on_jak_finding,jak-tofa-1,atopic_dermatitis,tofacitinib,,,critical,LABEL-TOF-001" in summary  # lymphocytes 0.4
    assert "on_jak_finding,jak-bari-1,alopecia_areata,baricitinib,,,warning,JAKCDS-005" in summary  # pregnant
    assert "jak-upa-1" not in summary  # on upadacitinib with nothing the label says to act on
    assert [line["why"][:12] for line in bad_lines(tmp_path)] == ["not JSON", "not a FHIR r", "about no pat"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*OUTPUTS, MARKER])  # no copy of the export left


def test_the_summary_names_the_rules_behind_the_severity_and_parquet_is_typed(tmp_path):
    screen(jak_export(tmp_path), tmp_path / "out", as_of=AS_OF, workers=1)
    assert "candidate,jak-bari-1,alopecia_areata,deuruxolitinib,2,on_label,critical,LABEL-DEU-001,LABEL-DEU-010" in read(tmp_path / "out", "summary.csv")
    table = pq.read_table(tmp_path / "out" / "summary.parquet")
    assert table.schema.field("rank").type == pa.int32() and table.schema.field("rules").type == pa.list_(pa.string())
    rows = table.to_pylist()
    deu = next(r for r in rows if r["patient"] == "jak-bari-1" and r["drug"] == "deuruxolitinib")
    assert (deu["rank"], deu["severity_rules"]) == (2, ["LABEL-DEU-010"])
    tofa = next(r for r in rows if r["kind"] == "on_jak_finding" and r["drug"] == "tofacitinib")
    assert (tofa["rank"], tofa["label_status"], tofa["rules"]) == (None, None, ["LABEL-TOF-001"])


def test_other_resource_types_and_the_client_log_are_counted_not_bad_lines(tmp_path):
    export = jak_export(tmp_path, {
        "Location.ndjson": ['{"resourceType":"Location","id":"l1","name":"Clinic"}'],
        "Organization.ndjson": ['{"resourceType":"Organization","id":"o1"}', '{"resourceType":"Organization","id":"o2"}'],
        "Practitioner.ndjson": ['{"resourceType":"Practitioner","id":"pr1"}'],
        "log.ndjson": ['{"exportId":"x","timestamp":"2026-11-23T10:00:00Z","eventId":"kickoff","eventDetail":{}}',
                       '{"exportId":"x","timestamp":"2026-11-23T10:01:00Z","eventId":"export_complete","eventDetail":{}}'],
    })
    figures = screen(export, tmp_path / "out", as_of=AS_OF, workers=1)
    assert figures["not_about_a_patient"] == {"Location": 1, "Organization": 2, "Practitioner": 1}
    assert figures["files_not_read"] == {"log.ndjson": 2}
    assert figures["bad_lines"] == 0 and bad_lines(tmp_path / "out") == []
    assert json.loads(read(tmp_path / "out", "counts.json"))["not_about_a_patient"]["Organization"] == 2


def test_a_malformed_observation_is_set_aside_and_the_patient_still_screened(tmp_path):
    broken = observation("tofa-hb", "Patient/jak-tofa-1", "718-7", "2026-11-01", valueQuantity={"value": "1", "unit": "g/dL"})  # a string number
    export = jak_export(tmp_path, {"Observation.ndjson": [broken]})
    figures = screen(export, tmp_path / "out", as_of=AS_OF, workers=1)
    assert (figures["evaluated"], figures["input_errors"], figures["bad_resources"]) == (4, 0, 1)
    assert "on_jak_finding,jak-tofa-1,atopic_dermatitis,tofacitinib,,,critical,LABEL-TOF-001" in read(tmp_path / "out", "summary.csv")
    [listed] = bad_lines(tmp_path / "out")
    lines = (export / "Observation.ndjson").read_text().splitlines()
    assert (listed["resource"], listed["file"], listed["line"]) == ("Observation/tofa-hb", "Observation.ndjson", len(lines))
    assert listed["why"].startswith("set aside: Observation/tofa-hb")
    tofa = next(json.loads(line) for line in read(tmp_path / "out", "results.ndjson").splitlines() if '"jak-tofa-1"' in line)
    [unmapped] = [u for u in tofa["unmapped"] if u["resource"] == "Observation/tofa-hb"]
    assert unmapped["why"].endswith("left unknown: hemoglobin")


def test_what_a_malformed_observation_could_say_is_unknown_never_an_older_value(tmp_path):
    newer = observation("tofa-lym-2", "Patient/jak-tofa-1", "731-0", "2026-11-20", valueQuantity={"value": "2.0", "unit": "10*9/L"})
    screen(jak_export(tmp_path, {"Observation.ndjson": [newer]}), tmp_path / "out", as_of=AS_OF, workers=1)
    assert "LABEL-TOF-001" not in read(tmp_path / "out", "summary.csv")  # the older 0.4 is not used
    tofa = next(json.loads(line) for line in read(tmp_path / "out", "results.ndjson").splitlines() if '"jak-tofa-1"' in line)
    assert "lymphocytes" not in tofa["results"][0]["patient"].get("labs", {})
    assert any(u["resource"] == "Observation/tofa-lym-2" and u["why"].endswith("left unknown: lymphocytes") for u in tofa["unmapped"])


def test_an_observation_whose_code_cannot_be_read_leaves_every_lab_unknown(tmp_path):
    broken = json.dumps({"resourceType": "Observation", "id": "tofa-odd", "status": "final", "subject": {"reference": "Patient/jak-tofa-1"},
                         "code": {"coding": "731-0"}})
    screen(jak_export(tmp_path, {"Observation.ndjson": [broken]}), tmp_path / "out", as_of=AS_OF, workers=1)
    assert "LABEL-TOF-001" not in read(tmp_path / "out", "summary.csv")
    tofa = next(json.loads(line) for line in read(tmp_path / "out", "results.ndjson").splitlines() if '"jak-tofa-1"' in line)
    [unmapped] = [u for u in tofa["unmapped"] if u["resource"] == "Observation/tofa-odd"]
    assert "left unknown: breastfeeding" not in unmapped["why"] and "egfr, hemoglobin, lymphocytes" in unmapped["why"]


def test_a_line_too_deep_for_python_leaves_the_patient_not_assessed(tmp_path):
    deep = '{"resourceType":"Observation","id":"deep","subject":{"reference":"Patient/jak-tofa-1"},"extension":' + "[" * 1010 + "]" * 1010 + "}"
    figures = screen(jak_export(tmp_path, {"Observation.ndjson": [deep]}), tmp_path / "out", as_of=AS_OF, workers=1)
    assert (figures["bad_lines"], figures["input_errors"]) == (0, 1)
    assert "not_assessed,jak-tofa-1" in read(tmp_path / "out", "summary.csv")
    assert bad_lines(tmp_path / "out")[0]["why"] == "patient not assessed: not JSON to Python's parser"


def test_a_malformed_condition_leaves_the_patient_not_assessed_and_named(tmp_path):
    broken = '{"resourceType":"Condition","id":"tofa-bad","subject":{"reference":"Patient/jak-tofa-1"},"code":"C50.9"}'
    figures = screen(jak_export(tmp_path, {"Condition.ndjson": [broken]}), tmp_path / "out", as_of=AS_OF, workers=1)
    assert (figures["evaluated"], figures["input_errors"]) == (3, 1)
    assert "not_assessed,jak-tofa-1,,,,,,," in read(tmp_path / "out", "summary.csv")
    [listed] = bad_lines(tmp_path / "out")
    assert (listed["resource"], listed["file"]) == ("Condition/tofa-bad", "Condition.ndjson")
    assert listed["why"].startswith("patient not assessed: Condition/tofa-bad")


def test_references_to_another_server_stay_apart(tmp_path):
    other = observation("far-plt", "https://other.example/fhir/Patient/jak-aa-1", "777-3", "2026-11-20",
                        valueQuantity={"value": 20, "unit": "10*9/L"})
    here = observation("near-plt", "https://ehr.example/fhir/Patient/jak-aa-1", "777-3", "2026-11-21",
                       valueQuantity={"value": 300, "unit": "10*9/L"})
    versioned = observation("old-plt", "Patient/jak-aa-1/_history/2", "777-3", "2026-01-01", valueQuantity={"value": 250, "unit": "10*9/L"})
    export = jak_export(tmp_path, {"Observation.ndjson": [other, here, versioned]})
    outputs = [{"type": p.stem, "url": f"file://{p}"} for p in sorted(export.glob("*.ndjson"))]
    (export / "manifest.json").write_text(json.dumps({"request": "https://ehr.example/fhir/Patient/$export", "output": outputs}))
    figures = screen(export, tmp_path / "out", as_of=AS_OF, workers=1)
    results = {line["patient"]: line for line in map(json.loads, read(tmp_path / "out", "results.ndjson").splitlines())}
    assert sorted(results) == ["https://other.example/fhir/Patient/jak-aa-1", "jak-aa-1", "jak-bari-1", "jak-tofa-1", "jak-upa-1"]
    assert results["jak-aa-1"]["results"][0]["patient"]["labs"]["platelets"] == 300  # this server's; not the other's 20
    assert "Observation/old-plt" in json.dumps(results["jak-aa-1"]["unmapped"])  # a version of jak-aa-1: with it, listed
    assert figures["patients"] == 5


def test_a_long_line_is_a_bad_line_and_only_the_first_bad_lines_are_listed(tmp_path, monkeypatch):
    monkeypatch.setattr(screening, "BAD_KEPT", 3)
    note = observation("long", "Patient/jak-aa-1", "777-3", "2026-11-20", note=[{"text": "x" * 5000}])
    export = jak_export(tmp_path, {"Observation.ndjson": [note, *["not json"] * 5]})
    figures = screen(export, tmp_path / "out", as_of=AS_OF, workers=1, line_max=4000)
    assert (figures["bad_lines"], figures["bad_listed"]) == (6, 3)
    assert [b["why"] for b in bad_lines(tmp_path / "out")] == ["longer than 4,000 bytes", "not JSON", "not JSON"]
    assert figures["patients"] == 4


def test_lines_skips_an_overlong_line_without_losing_the_next(tmp_path):
    path = tmp_path / "x.ndjson"
    path.write_bytes(b"a" * 10_000 + b"\n" + b"b" * 9 + b"\r\n" + b"c" * 10)
    assert list(screening.lines(path, line_max=10)) == [(1, None), (2, b"b" * 9), (3, b"c" * 10)]
    path.write_bytes(b"\xef\xbb\xbf{}\n{}")  # a byte order mark opening the file is not part of the line
    assert list(screening.lines(path)) == [(1, b"{}"), (2, b"{}")]


def test_an_overlong_line_is_never_held_in_memory(tmp_path):
    path = tmp_path / "Observation.ndjson"
    with open(path, "wb") as out:
        out.write(b'{"resourceType":"Observation","note":"' + b"x" * 40_000_000 + b'"}\n{}\n')
    tracemalloc.start()
    try:
        assert [number for number, line in screening.lines(path, line_max=2**20) if line is None] == [1]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20, peak


def test_a_failed_rerun_leaves_no_earlier_outputs_and_no_partial_files(tmp_path, monkeypatch):
    export, out = jak_export(tmp_path), tmp_path / "out"
    screen(export, out, as_of=AS_OF, workers=1)
    assert (out / MARKER).is_file()

    def broken(source, target):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(screening, "_parquet", broken)  # fails after results and summary were written
    with pytest.raises(OSError):
        screen(export, out, as_of=AS_OF, workers=1)
    assert list(out.iterdir()) == []  # no stale file of the first run, no temporary, no work folder


def test_a_rerun_never_reads_an_earlier_runs_buckets(tmp_path):
    out = tmp_path / "out"
    screen(jak_export(tmp_path), out, as_of=AS_OF, workers=1)
    (out / WORK / "buckets").mkdir(parents=True)  # as a killed run with a larger export leaves it
    shutil.copy(FIXTURE / "export" / "Patient.ndjson", out / WORK / "buckets" / "099.ndjson")
    figures = screen(jak_export(tmp_path, name="again"), out, as_of=AS_OF, workers=1)
    assert figures["patients"] == 4 and not (out / WORK).exists()


def test_a_folder_holding_other_files_is_refused(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    with pytest.raises(ScreenError, match="notes.txt"):
        screen(jak_export(tmp_path), tmp_path / "out", as_of=AS_OF, workers=1)
    assert (tmp_path / "out" / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("manifest", ["{not json", '{"output": 5}', '{"output": [{"url": "file:///gone/Missing.ndjson"}]}'])
def test_a_bad_manifest_is_one_error(tmp_path, manifest):
    export = jak_export(tmp_path)
    (export / "manifest.json").write_text(manifest)
    with pytest.raises(ScreenError, match="manifest.json"):
        screen(export, tmp_path / "out", as_of=AS_OF, workers=1)


def test_cli_errors_are_one_line_with_exit_2(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (tmp_path / "file").write_text("x")
    full = tmp_path / "full"
    full.mkdir()
    os.symlink("/dev/full", full / ".tmp-results.ndjson")  # the disk is full when results are written
    for args, said in [((empty, "-o", tmp_path / "o1"), "no *.ndjson files"),
                       ((FIXTURE / "export", "-o", tmp_path / "file"), "not a folder"),
                       ((jak_export(tmp_path), "-o", full), "No space left on device")]:
        done = cli(*args)
        assert done.returncode == 2 and done.stdout == "", done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and said in done.stderr, done.stderr
    assert not (full / "results.ndjson").exists() and not (full / MARKER).exists()


def test_the_progress_bar_counts_patients(tmp_path, capfd):
    screen(jak_export(tmp_path), tmp_path / "out", as_of=AS_OF, workers=1, progress=True)
    assert "4/4 patients" in capfd.readouterr().err


def test_a_real_dask_cluster_gives_byte_identical_files(tmp_path):
    """A `dask scheduler` and two `dask worker` processes on loopback, on random ports."""
    distributed = pytest.importorskip("distributed")
    dask = str(Path(sys.executable).with_name("dask"))
    address_file = tmp_path / "scheduler.json"
    started = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", "0",
                                 "--no-dashboard", "--scheduler-file", str(address_file)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        while not address_file.exists():
            assert started[0].poll() is None, "the scheduler did not start"
            time.sleep(0.2)
        for _ in range(2):
            started.append(subprocess.Popen([dask, "worker", "--scheduler-file", str(address_file),
                                             "--host", "127.0.0.1", "--nthreads", "1", "--no-dashboard"],
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        with distributed.Client(scheduler_file=str(address_file), timeout=120) as client:
            client.wait_for_workers(2, timeout=180)
            assert all(host.startswith("tcp://127.0.0.1:") for host in client.scheduler_info()["workers"])
            clustered = screen(FIXTURE / "export", tmp_path / "cluster", as_of=AS_OF, scheduler=client.scheduler.address)
    finally:
        for process in reversed(started):
            process.send_signal(signal.SIGTERM)
        for process in started:
            process.wait(timeout=60)
    single = screen(FIXTURE / "export", tmp_path / "single", as_of=AS_OF, workers=1)
    assert single["patients"] == clustered["patients"] == 7
    for name in (*OUTPUTS, MARKER):
        assert (tmp_path / "single" / name).read_bytes() == (tmp_path / "cluster" / name).read_bytes(), name
