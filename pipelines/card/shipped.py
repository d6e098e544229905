"""Where the shipped cards are: the package data `pipelines.task_cards`.

The repository keeps the cards in its top-level `task_cards/`. A wheel installs that folder inside the
package (setup.cfg's package_dir maps it there), and in a checkout or an editable install
`pipelines/task_cards` is a symlink to it, so `importlib.resources.files("pipelines") / "task_cards"` is the
one way to reach the cards however cardtune was installed, and nothing but `pipelines` lands in
site-packages.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

CARDS_DIR = Path(str(files("pipelines") / "task_cards"))
SAMPLES_DIR = CARDS_DIR / "samples"
