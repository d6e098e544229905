"""What the benchmarks share: where the real corpora are."""

from __future__ import annotations

import argparse
from pathlib import Path

# ../shared/data beside the repository, wherever the benchmark is started from.
DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"


def add_data_dir(parser: argparse.ArgumentParser, reads: str) -> None:
    """The --data-dir option: the folder of the shared corpora, of which the benchmark `reads` one."""
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR,
                        help=f"folder of the shared corpora; reads {reads} (default: ../shared/data beside the repo)")
