"""The README and docs/ stay walkable: links resolve, headings stay findable, commands name real things.

Static checks only (nothing trains here): the README's commands are checked for the scripts, console
commands and task cards they name; the commands that run are exercised by the rest of the suite.
"""

import configparser
import re
import shlex

import pytest
import yaml
from conftest import ROOT

from pipelines.card.cards import load_card

README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
NEEDS_DATA = "# needs ../shared/data"

# Every section heading of the README before it became a front door (issue 23): each must stay findable,
# with the same text, in README.md, RELIABILITY.md or a page of docs/ (a contract for links and bookmarks).
MOVED_HEADINGS = [
    "What a run does",
    "Tasks",
    "Results on the shared corpora",
    "Models and the network",
    "Settings and precedence",
    "Writing a card",
    "Recipes",
    "Tracking and search",
    "Experiment tracking",
    "Hyperparameter search",
    "Progress in logs",
    "Speed",
    "Several processes, GPUs and machines",
    "Publishing to the Hub",
    "Batch prediction",
    "Precision, ONNX and several processes",
    "Threads on a shared machine",
    "Benchmark",
    "Reliability",
    "Errors",
    "Layout",
]


def _without_fences(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def _headings(path) -> list[str]:
    text = _without_fences(path.read_text("utf-8"))
    return [m.group(2).strip() for m in re.finditer(r"^(#{1,6})\s+(.+)$", text, re.M)]


def _slug(heading: str) -> str:
    # GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens.
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def _links(path) -> list[str]:
    text = _without_fences(path.read_text("utf-8"))
    return [t for t in re.findall(r"\]\(([^)\s]+)\)", text) if not re.match(r"[a-z]+:", t)]


def _bash_blocks(path) -> list[str]:
    return re.findall(r"^```bash\n(.*?)^```", path.read_text("utf-8"), flags=re.S | re.M)


def _commands(block: str) -> list[str]:
    """Each command of a block: continuation lines joined, `&&` chains split, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", block)
    lines = [line.split(" #", 1)[0].strip() for line in joined.splitlines() if not line.lstrip().startswith("#")]
    return [part.strip() for line in lines for part in line.split("&&") if part.strip()]


def _console_commands() -> set[str]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg", encoding="utf-8")
    entries = cfg["options.entry_points"]["console_scripts"]
    return {line.split("=")[0].strip() for line in entries.splitlines() if "=" in line}


def _readme_cards() -> dict[str, str]:
    """Cards the README itself shows: a yaml block whose first line is `# <name>.yaml`."""
    cards = {}
    for block in re.findall(r"^```yaml\n(.*?)^```", README.read_text("utf-8"), flags=re.S | re.M):
        first = block.splitlines()[0]
        if re.fullmatch(r"# [\w\-]+\.yaml", first):
            cards[first[2:]] = block
    return cards


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_point_to_existing_files_and_headings(page):
    broken = []
    for link in _links(page):
        target, _, anchor = link.partition("#")
        path = (page.parent / target).resolve() if target else page
        if not path.exists():
            broken.append(f"{link} (no file {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path})")
        elif anchor and path.suffix == ".md" and anchor not in {_slug(h) for h in _headings(path)}:
            broken.append(f"{link} (no heading with anchor #{anchor} in {path.name})")
    assert not broken, f"{page.name}: broken links: {broken}"


def test_every_old_readme_heading_is_still_findable():
    found = set()
    for page in [*PAGES, ROOT / "RELIABILITY.md"]:
        found.update(_headings(page))
    missing = [h for h in MOVED_HEADINGS if h not in found]
    assert not missing, f"headings of the old README found nowhere in README.md or docs/: {missing}"


def test_readme_is_a_front_door():
    lines = README.read_text("utf-8").splitlines()
    assert len(lines) <= 220, f"README.md has {len(lines)} lines; move reference material to docs/ (at most 220)"
    linked = {link.partition("#")[0] for link in _links(README)}
    pages = {p.relative_to(ROOT).as_posix() for p in PAGES[1:]}
    assert not pages - linked, f"docs pages the README does not link: {sorted(pages - linked)}"


def test_readme_commands_name_real_scripts_commands_and_cards():
    shipped = {p.stem for p in (ROOT / "task_cards").glob("*.yaml")}
    shown = set(_readme_cards())
    console = _console_commands()
    problems, checked = [], 0
    for block in _bash_blocks(README):
        if "../shared" in block and NEEDS_DATA not in block:
            problems.append(f"a block reads ../shared without the line `{NEEDS_DATA}`: {block.strip()[:80]}")
        for command in _commands(block):
            words = shlex.split(command)
            while words and words[0] in {"accelerate", "launch"} or (words and words[0].startswith("--")):
                words = words[1:]  # `accelerate launch [--flags] scripts/run.py ...`
            if words[:1] == ["python"] and len(words) > 1 and words[1].startswith("scripts/"):
                checked += 1
                if not (ROOT / words[1]).is_file():
                    problems.append(f"no script {words[1]}: {command}")
            elif words and words[0].startswith("cardtune-"):
                checked += 1
                if words[0] not in console:
                    problems.append(f"no console command {words[0]} in setup.cfg: {command}")
            else:
                continue
            if "--task" in words:
                task = words[words.index("--task") + 1]
                if task not in shipped and task not in shown:
                    problems.append(f"--task {task} is neither a shipped card nor one the README shows: {command}")
    assert checked >= 5, "the README's command blocks were not found (fenced ```bash blocks)"
    assert not problems, "\n".join(problems)


def test_readme_card_is_a_valid_card(tmp_path):
    cards = _readme_cards()
    assert cards, "the README shows no card (a ```yaml block starting with `# <name>.yaml`)"
    for name, text in cards.items():
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        card = load_card(path)
        assert list(card.labels) == yaml.safe_load(text)["labels"]
