"""`jakcds screen`: a bulk export screened into per-patient results and a summary (issue 15)."""

import datetime
import subprocess

import pytest

from conftest import CASES
from test_cli import JAKCDS
from jakcds.ehr.screen import screen

pytestmark = pytest.mark.slow  # Dask clusters
FIXTURE = CASES / "screening"
AS_OF = datetime.date(2026, 11, 23)
OUTPUTS = ("results.ndjson", "summary.csv", "summary.parquet", "bad_lines.ndjson", "counts.json")


def test_the_shipped_export_gives_the_golden_summary(tmp_path):
    done = subprocess.run([str(JAKCDS), "screen", str(FIXTURE / "export"), "-o", str(tmp_path), "--as-of", "2026-11-23", "--workers", "1"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "7 patients" in done.stdout and "3 bad lines" in done.stdout
    for name in ("summary.csv", "counts.json"):
        assert (tmp_path / name).read_text() == (FIXTURE / "expected" / name).read_text(), name
    summary = (tmp_path / "summary.csv").read_text()
    assert "on_jak_finding,jak-tofa-1,atopic_dermatitis,tofacitinib,,,critical,LABEL-TOF-001" in summary  # lymphocytes 0.4
    assert "on_jak_finding,jak-bari-1,alopecia_areata,baricitinib,,,warning,JAKCDS-005" in summary  # pregnant
    assert "jak-upa-1" not in summary  # on upadacitinib with nothing the label says to act on
    bad = (tmp_path / "bad_lines.ndjson").read_text().splitlines()
    assert [line.split('"why": ')[1][:12] for line in bad] == ['"not JSON"}', '"not a FHIR ', '"about no pa']


def test_a_local_cluster_gives_byte_identical_files(tmp_path):
    distributed = pytest.importorskip("distributed")
    single = screen(FIXTURE / "export", tmp_path / "single", as_of=AS_OF, workers=1)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        clustered = screen(FIXTURE / "export", tmp_path / "cluster", as_of=AS_OF, scheduler=client)
    assert single["patients"] == clustered["patients"] == 7
    for name in OUTPUTS:
        assert (tmp_path / "single" / name).read_bytes() == (tmp_path / "cluster" / name).read_bytes(), name


def test_a_bad_line_never_loses_a_patients_other_data(tmp_path):
    export = tmp_path / "export"
    export.mkdir()
    (export / "Patient.ndjson").write_text('{"resourceType":"Patient","id":"p1","gender":"female","birthDate":"1990-01-01"}\nnot json\n')
    (export / "Condition.ndjson").write_text(
        '{"resourceType":"Condition","id":"c1","subject":{"reference":"Patient/p1"},'
        '"code":{"coding":[{"system":"http://hl7.org/fhir/sid/icd-10-cm","code":"L63.9"}]},"severity":{"text":"Severe"}}\n'
        '{"resourceType":"Condition","id":"c2","code":{"text":"no subject"}}\n[1,2]\n')
    figures = screen(export, tmp_path / "out", as_of=AS_OF, workers=1)
    assert (figures["patients"], figures["bad_lines"]) == (1, 3)
    assert "candidate,p1,alopecia_areata,baricitinib,1,on_label" in (tmp_path / "out" / "summary.csv").read_text()
