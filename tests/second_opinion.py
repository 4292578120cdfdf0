"""HealthChain as a lenient second opinion on CDS Hooks 2.0 discovery and card responses.

HealthChain pins fhir.resources<8.2, fastapi<0.138 and httpx<0.28, so it lives in its own
venv under <repo>/.cache/healthchain-venv, built once and reused. Its errors come back minus
the deviations from the spec listed in /work/shared/knowledge/ehr-tooling.md §1.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import subprocess
import sys
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV = REPO / ".cache" / "healthchain-venv"
READY = VENV / ".healthchain-ready"  # written last, so a half-built venv is never trusted
LOCK = REPO / ".cache" / "healthchain-venv.lock"
CHECK_SCRIPT = Path(__file__).resolve().parent / "healthchain_check.py"
REQUIREMENT = "healthchain==0.16.1"

# Known false failures, each from ehr-tooling.md §1, matched as the end of a "loc: msg" string.
# §1 Links: Link.autoLaunchable is required; the spec's field is the OPTIONAL `autolaunchable`.
LINK_AUTOLAUNCHABLE_REQUIRED = ".autoLaunchable: Field required"
# §1 Suggestions: isRecommended is required; the spec makes it OPTIONAL.
SUGGESTION_IS_RECOMMENDED_REQUIRED = ".isRecommended: Field required"

KNOWN_DEVIATIONS = (LINK_AUTOLAUNCHABLE_REQUIRED, SUGGESTION_IS_RECOMMENDED_REQUIRED)

# Not subtracted: §1 Summary: HealthChain's max_length=140 lets a 140-char summary pass (spec: <140).
# That deviation is a false pass, never a false failure, so its error on >=141 chars is real;
# the JSON Schema (maxLength 139) catches the 140-char case.
SUMMARY_MAX_LENGTH_140 = "summary: String should have at most 140 characters"


def healthchain_python() -> Path:
    """The HealthChain venv's python, building the venv once (under a file lock) if needed."""
    python = VENV / "bin" / "python"
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process building waits here, then reuses
        if not READY.exists():
            shutil.rmtree(VENV, ignore_errors=True)
            venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
            done = subprocess.run(
                [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", REQUIREMENT],
                capture_output=True,
                text=True,
            )
            if done.returncode != 0:
                raise RuntimeError(f"could not build the HealthChain venv at {VENV}:\n{done.stderr[-3000:]}")
            READY.write_text(REQUIREMENT + "\n")
    return python


def raw_healthchain_errors(kind: str, document: dict) -> list[str]:
    """Every error HealthChain reports for a 'discovery' or 'response' document."""
    done = subprocess.run(
        [str(healthchain_python()), str(CHECK_SCRIPT)],
        input=json.dumps({"kind": kind, "document": document}),
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        raise RuntimeError(f"healthchain_check.py failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout)


def healthchain_errors(kind: str, document: dict) -> list[str]:
    """HealthChain's errors minus its known deviations from the spec."""
    return [e for e in raw_healthchain_errors(kind, document) if not e.endswith(KNOWN_DEVIATIONS)]


if __name__ == "__main__":
    print(healthchain_python(), file=sys.stderr)
