"""The docs site: it builds strictly, its reference pages are what the code generates, and every
shell example in it and in the README runs (a doc example that fails is a failing test)."""

import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
import docs_reference  # noqa: E402

BIN = Path(sys.executable).parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
# the README's first two blocks are the install commands CI itself runs (test_readme.py)
BLOCKS = [
    (page, index, block)
    for page in PAGES
    for index, block in enumerate(re.findall(r"```sh\n(.*?)\n```", page.read_text(), flags=re.S))
    if not (page.name == "README.md" and index < 2)
]


def test_the_site_builds_strictly(tmp_path):
    done = subprocess.run([str(BIN / "mkdocs"), "build", "--strict", "-q", "-d", str(tmp_path / "site")],
                          cwd=REPO, capture_output=True, text=True, timeout=300, env={"NO_MKDOCS_2_WARNING": "1", "PATH": str(BIN)})
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "site" / "reference" / "output" / "index.html").is_file()


@pytest.mark.parametrize("name", docs_reference.pages().keys())
def test_reference_pages_are_generated_from_the_code(name):
    committed = (docs_reference.FOLDER / name).read_text()
    assert committed == docs_reference.GENERATED + docs_reference.pages()[name], f"run: python scripts/docs_reference.py ({name} is stale)"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize(("page", "index", "block"), BLOCKS, ids=[f"{p.relative_to(REPO)}#{i}" for p, i, _ in BLOCKS])
def test_shell_example_runs(page, index, block, tmp_path):
    """Run as written from the repository root, with three substitutions: this venv for `.venv/bin/`,
    a private folder for `/tmp/`, and a free port for the service's 8000."""
    port = str(_free_port())
    swap = {".venv/bin/": f"{BIN}/", "/tmp/": f"{tmp_path}/", "8000": port}  # in one pass: BIN may be under /tmp
    script = re.sub(r"\.venv/bin/|/tmp/|\b8000\b", lambda found: swap[found.group()], block)
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{page.name} block {index}:\n{block}\n--- stderr:\n{done.stderr[-2000:]}"
