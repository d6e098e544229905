"""What every entry point does the same way: logging, offline mode, one-line errors."""

from __future__ import annotations

import logging
import os
import re
import sys

log = logging.getLogger("cardtune")


def configure_logging(level: int = logging.INFO) -> None:
    """Our INFO lines on stderr; the HF libraries only above WARNING. Handlers an embedding
    application (or pytest) already installed are kept."""
    logging.getLogger().setLevel(level)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactTokens) for f in handler.filters):
            handler.addFilter(RedactTokens())
    if not sys.stderr.isatty():  # progress bars turn into thousands of lines in a log file
        import transformers

        # datasets reads it when imported (it is not, in a prediction run by ONNX Runtime alone)
        os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"
        if "datasets" in sys.modules:
            sys.modules["datasets"].disable_progress_bars()
        transformers.utils.logging.disable_progress_bar()
    # httpx2 is huggingface_hub's HTTP client: one INFO line per request otherwise.
    noisy = ("transformers", "datasets", "huggingface_hub", "accelerate", "urllib3", "httpx", "httpx2", "filelock")
    for name in noisy:
        logging.getLogger(name).setLevel(logging.WARNING)


def set_offline(offline: bool, upload: bool = False) -> None:
    """Nothing downloads unless asked: set the HF offline switches before those libraries load.

    `upload`: the process will push to the Hub, so huggingface_hub (which reads HF_HUB_OFFLINE once,
    at import) must stay online; downloads stay off anyway, as models load with local_files_only
    and datasets stay offline. An explicit HF_HUB_OFFLINE / HF_DATASETS_OFFLINE in the environment
    is left as the user set it.
    """
    if offline:
        if not upload:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


TOKEN_FLAGS = ("--hub-token", "--hub_token", "--token")


def token_flag(argv: list[str]) -> str | None:
    """The token flag on a command line, if any (abbreviations included): tokens there end up in shell
    history and process lists, so the scripts refuse them. Only the flag is returned, never a value."""
    for arg in argv:
        name = arg.split("=", 1)[0]
        if len(name) >= len("--hub-t") and any(flag.startswith(name) for flag in TOKEN_FLAGS):
            return name
    return None


def token_flag_error(flag: str) -> str:
    return (f"{flag} is not accepted (a token on the command line leaks into shell history): "
            "run `hf auth login` or set HF_TOKEN")


# Hugging Face user and organization tokens; whatever flag they were given to, they are never echoed.
TOKEN_SHAPE = re.compile(r"\b(hf|api_org)_[A-Za-z0-9]{20,}")


def redact(text: str) -> str:
    """`text` with every token-shaped string masked."""
    return TOKEN_SHAPE.sub(lambda m: f"{m.group(1)}_***", text)


class RedactTokens(logging.Filter):
    """Mask token-shaped strings in log records (a token given to the wrong flag ends up in paths)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if TOKEN_SHAPE.search(message):
            record.msg, record.args = redact(message), None
        return True


def fail(err: Exception | str) -> int:
    """Print a user error as one line on stderr and return exit code 2."""
    print(f"error: {redact(str(err))}", file=sys.stderr)
    return 2
