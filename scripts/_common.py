"""What every entry point does the same way: logging, offline mode, one-line errors."""

from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger("cardtune")


def configure_logging(level: int = logging.INFO) -> None:
    """Our INFO lines on stderr; the HF libraries only above WARNING. Handlers an embedding
    application (or pytest) already installed are kept."""
    logging.getLogger().setLevel(level)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not sys.stderr.isatty():  # progress bars turn into thousands of lines in a log file
        import datasets
        import transformers

        datasets.disable_progress_bars()
        transformers.utils.logging.disable_progress_bar()
    for noisy in ("transformers", "datasets", "huggingface_hub", "accelerate", "urllib3", "httpx", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def set_offline(offline: bool) -> None:
    """Nothing downloads unless asked: set the HF offline switches before those libraries load.

    An explicit HF_HUB_OFFLINE / HF_DATASETS_OFFLINE in the environment is left as the user set it.
    """
    if offline:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def fail(err: Exception) -> int:
    """Print a user error as one line on stderr and return exit code 2."""
    print(f"error: {err}", file=sys.stderr)
    return 2
