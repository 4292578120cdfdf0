"""The compiled pack is built once and shared; 8 threads with distinct patients see no cross-talk."""

from concurrent.futures import ThreadPoolExecutor

import jakcds
from conftest import CASES
from jakcds.review.cases import case_dirs

import json

# every golden patient but those that must be refused (their expected.yaml names the error)
PATIENTS = [
    json.loads((d / "patient.json").read_text())
    for d in case_dirs(CASES)
    if (d / "patient.json").is_file() and "\nerror:" not in (d / "expected.yaml").read_text()
]


def test_eight_threads_no_cross_talk():
    assert jakcds.evaluator() is jakcds.evaluator()
    expected = [jakcds.evaluate(p).model_dump_json() for p in PATIENTS]
    jobs = [i % len(PATIENTS) for i in range(8 * 60)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(lambda i: (i, jakcds.evaluate(PATIENTS[i]).model_dump_json()), jobs))
    assert all(out == expected[i] for i, out in got)


def test_eight_threads_share_the_live_sessions_and_the_json_cache():
    """One live durable-rules session per ruleset and the Plan's JSON memo, used by 8 threads."""
    evaluator = jakcds.evaluator()
    expected = [evaluator.evaluate(p).model_dump_json().encode() for p in PATIENTS]
    jobs = [i % len(PATIENTS) for i in range(8 * 60)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(lambda i: (i, evaluator.evaluate_json(PATIENTS[i])), jobs))
    assert all(out == expected[i] for i, out in got)
