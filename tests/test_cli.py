"""The `jakcds` command as a user runs it: real processes, stdout, stderr and exit codes."""

import json
import shutil
import subprocess
import sys

import pytest

from conftest import CASES, REPO, WENZEL
from jakcds.knowledge.pack import write_manifest

from pathlib import Path

BESIDE = Path(sys.executable).with_name("jakcds")  # the venv running the tests, even if not on PATH
JAKCDS = str(BESIDE) if BESIDE.exists() else shutil.which("jakcds")
if JAKCDS is None:
    pytest.fail("the jakcds command is not installed (pip install .)", pytrace=False)


def run(*args, stdin=None):
    return subprocess.run([JAKCDS, *args], input=stdin, capture_output=True, text=True, timeout=60)


def test_evaluate_json_matches_the_library():
    import jakcds

    done = run("evaluate", str(CASES / "wenzel-chilblain-lupus" / "patient.json"), "--format", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == jakcds.evaluate(WENZEL).model_dump(mode="json")
    assert done.stdout.endswith("}\n") and done.stderr == ""


def test_default_format_off_a_terminal_is_json_and_stdin_works():
    done = run("evaluate", "-", stdin=json.dumps(WENZEL))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["candidates"][0]["drug"] == "ruxolitinib"


def test_the_first_screen_fits_80_by_24_in_words_and_points_to_the_details():
    """Issue 23: patient line, one line per candidate, what to find out in words, how to see the rest."""
    done = run("evaluate", str(CASES / "atopic-dermatitis-refractory-after-dupilumab-35y" / "patient.json"), "--format", "text")  # not a terminal: rich's 80 columns
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) <= 24 and all(len(line.rstrip()) <= 80 for line in lines), done.stdout
    assert lines[0].startswith("Atopic dermatitis — 35 y, female") and "--details" in lines[-1]
    assert "Also reported off-label: tofacitinib, expert opinion — see details." in done.stdout
    assert "LABEL-" not in done.stdout and "SEED-" not in done.stdout and "_" not in done.stdout
    assert "whether immunizations are up to date" in done.stdout


def test_text_format_for_a_clinician():
    done = run("evaluate", str(CASES / "wenzel-chilblain-lupus" / "patient.json"), "--format", "text", "--details")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for expected in ("Ruxolitinib (oral)", "off-label", "case report (low-level evidence)", "WARNING", "SEED-RUX-002",
                     "Not suggested (why not)", "Baricitinib", "SEED-GEN-004: Low-level evidence", "jakcds-core 0.2.0", "[seed-000]"):
        assert expected in out, expected
    assert out.index("1. Ruxolitinib (oral)") < out.index("2. Tofacitinib")


@pytest.mark.parametrize(
    "stdin, expected",
    [
        ("{not json", "stdin: invalid JSON: Expecting property name enclosed in double quotes"),
        ('{"condition": "vitiligo", "age": NaN}', "stdin: invalid JSON: NaN is not a number"),
        ('{"condition": "vitiligo", "condition": "psoriasis"}', "stdin: invalid JSON: duplicate key 'condition'"),
        ('{"condition": "vitiligo", "age": -1}', "stdin: age: Input should be greater than or equal to 0 (got -1)"),
        ('{"condition": "vitiligo", "colour": "red"}', "stdin: colour: Extra inputs are not permitted (got 'red')"),
        ('{"condition": "dermatomyosistis"}', "did you mean 'dermatomyositis'?"),
    ],
)
def test_bad_input_is_one_line_on_stderr_and_nothing_on_stdout(stdin, expected):
    done = run("evaluate", "-", stdin=stdin)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("jakcds: error: ") and expected in done.stderr, done.stderr


def test_missing_file():
    done = run("evaluate", "no-such-patient.json")
    assert done.returncode == 2 and done.stdout == "" and "no-such-patient.json: cannot read" in done.stderr


def test_bad_rule_pack_is_refused(tmp_path):
    (tmp_path / "pack.yaml").write_text("name: x\n")
    assert "manifest.json is missing" in run("evaluate", "-", "--rules", str(tmp_path), stdin="{}").stderr
    write_manifest(tmp_path)
    done = run("evaluate", str(CASES / "wenzel-chilblain-lupus" / "patient.json"), "--rules", str(tmp_path))
    assert done.returncode == 3 and done.stdout == "" and "pack.yaml" in done.stderr and "version" in done.stderr


def test_no_generic_top_level_modules_are_installed():
    from importlib.metadata import distribution

    site = Path(distribution("jakcds").locate_file(""))
    assert not (site / "engine").exists() and not (site / "cli.py").exists() and not (site / "rules").exists()
    assert (site / "jakcds" / "rules" / "pack.yaml").is_file()
    assert sys.modules["jakcds"].evaluator().info.path == "(built-in)"


def test_the_code_under_test_is_the_checkout():
    """An edited engine/*.py or cli.py is tested without reinstalling: here and in subprocesses."""
    import jakcds

    assert Path(jakcds.__file__).resolve() == REPO / "engine" / "__init__.py"
    assert jakcds.evaluator().pack.path.resolve() == REPO / "rules"
    code = "import jakcds.cli, os; print(os.path.realpath(jakcds.cli.__file__))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == str(REPO / "cli.py")
    shebang = Path(JAKCDS).read_text().splitlines()[0]  # the console script honours PYTHONPATH (no -I, no -E)
    assert shebang.startswith("#!") and " -I" not in shebang and " -E" not in shebang


def test_evaluate_reads_a_fhir_bundle_and_lists_what_it_did_not_use():
    bundle = str(CASES / "wenzel-chilblain-lupus-fhir" / "bundle.json")
    done = run("evaluate", bundle, "--condition", "chilblain lupus", "--as-of", "2016-03-01", "--format", "json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["as_of"] == "2016-03-01" and result["patient"]["age"] == 69
    assert result["candidates"][0]["drug"] == "ruxolitinib"
    assert {u["resource"] for u in result["unmapped"]} >= {"Condition/chilblain", "Observation/plt-error"}
    text = run("evaluate", bundle, "--condition", "chilblain lupus", "--as-of", "2016-03-01", "--format", "text", "--details").stdout
    assert "From FHIR (ages as of 2016-03-01); not used (5):" in text and "Observation/neut-pct" in text
    text = run("evaluate", bundle, "--condition", "chilblain lupus", "--as-of", "2016-03-01", "--format", "text").stdout
    assert "From FHIR (ages as of 2016-03-01): 5 chart items not used." in text


def test_fhir_input_errors_are_one_line_and_fhir_options_need_fhir_input():
    done = run("evaluate", str(CASES / "wenzel-chilblain-lupus-fhir" / "bundle.json"))
    assert done.returncode == 2 and done.stdout == ""
    assert "one active skin condition is needed" in done.stderr and len(done.stderr.splitlines()) == 1
    done = run("evaluate", str(CASES / "wenzel-chilblain-lupus" / "patient.json"), "--as-of", "2016-03-01")
    assert done.returncode == 2 and "apply to FHIR input only" in done.stderr


def test_explain_reads_fhir_input_too():
    bundle = str(CASES / "dermatomyositis-refractory-fhir" / "bundle.json")
    done = run("explain", bundle, "--drug", "tofacitinib", "--as-of", "2026-11-23", "--format", "text")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("tofacitinib: candidate #1") and "SEED-TOF-009 (propose) FIRED" in done.stdout


def test_version_names_the_package_and_the_pack():
    import jakcds

    done = run("--version")
    pack = jakcds.load_pack()
    assert done.returncode == 0 and done.stdout.startswith("jakcds ")
    assert f"rule pack {pack.meta.name} {pack.meta.version} (sha256 {pack.sha256})" in done.stdout


@pytest.mark.parametrize("which", ["input", "output"])
def test_schema_prints_the_contract_a_golden_case_follows(which):
    import jsonschema

    done = run("schema", which)
    assert done.returncode == 0, done.stderr
    patient = json.loads((CASES / "wenzel-chilblain-lupus" / "patient.json").read_text())
    document = patient if which == "input" else json.loads(run("evaluate", str(CASES / "wenzel-chilblain-lupus" / "patient.json"), "--format", "json").stdout)
    jsonschema.validate(document, json.loads(done.stdout))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**document, "no_such_field": 1} if which == "input" else {"candidates": []}, json.loads(done.stdout))


def test_the_report_names_the_patient_facts_in_words(tmp_path):
    """Issue 23: the HTML report's patient table and prompts read names with units, not field names."""
    page = tmp_path / "report.html"
    done = run("report", str(CASES / "wenzel-chilblain-lupus" / "patient.json"), "-o", str(page))
    assert done.returncode == 0, done.stderr
    facts = page.read_text().split('<table id="facts">', 1)[1].split("</table>", 1)[0]
    assert "<th>platelet count (×10⁹/L)</th><td>120</td>" in facts and "<th>failed therapies</th><td>Systemic corticosteroids</td>" in facts
    assert "_" not in facts
