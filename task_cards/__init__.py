"""Shipped task cards (`*.yaml`) and their bundled samples (`samples/`)."""

from pathlib import Path

CARDS_DIR = Path(__file__).resolve().parent
SAMPLES_DIR = CARDS_DIR / "samples"
