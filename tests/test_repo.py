"""The README's commands are the ones CI runs."""

import re

from conftest import ROOT


def _readme_commands():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    commands = [line for block in blocks[:2] for line in block.splitlines() if line and not line.startswith("#")]
    return commands


def test_readme_opens_with_setup_and_test_commands():
    setup, tests = _readme_commands()
    assert "pip install torch==2.13.0" in setup and 'pip install -e ".[dev]"' in setup
    assert "scripts/run.py --task cola" in setup
    assert "pytest" in tests


def test_ci_runs_the_readme_test_command():
    _, tests = _readme_commands()
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    test_command = tests.split("&&")[-1].strip()
    assert test_command in ci.splitlines()
    assert ci.index("pip install --quiet torch==2.13.0") < ci.index('pip install --quiet -e ".[dev]"')
