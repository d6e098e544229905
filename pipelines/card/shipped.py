"""Where the shipped cards are.

The repository keeps them in its top-level `task_cards/`; a wheel installs that folder as the package
data `pipelines/task_cards/` (setup.cfg maps it there), so nothing but `pipelines` lands in
site-packages. An editable install or a checkout on PYTHONPATH reads the repository's folder.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parents[1]
# Installed from a wheel: inside the package. From a checkout: beside it.
CARDS_DIR = next((d for d in (_PACKAGE / "task_cards", _PACKAGE.parent / "task_cards") if d.is_dir()),
                 _PACKAGE / "task_cards")
SAMPLES_DIR = CARDS_DIR / "samples"
