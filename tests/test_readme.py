"""The README's front door stays true: two commands, and CI runs the same test command."""

import re

from conftest import REPO


def test_readme_opens_with_two_commands_and_ci_runs_the_test_command():
    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)\n```", readme, flags=re.S)
    install_and_run, tests = blocks[0], blocks[1]
    assert readme.index(install_and_run) < 200
    assert "jakcds evaluate cases/" in install_and_run and "pip install ." in install_and_run
    assert "pytest" in tests and "'.[test]'" in tests
    ci = (REPO / ".ci" / "run").read_text()
    assert tests in ci.splitlines()
    example = install_and_run.split("jakcds evaluate ")[1].split()[0]
    assert (REPO / example).is_file()
