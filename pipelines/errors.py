"""User-facing errors: each carries one line that names the file/key/column and the fix."""


class CardtuneError(Exception):
    """Base class; scripts print `str(err)` on one line and exit with code 2."""

    def __str__(self) -> str:
        # Keep it to one line even if a library message we wrapped had newlines.
        return " ".join(super().__str__().split())


class CardError(CardtuneError):
    """A task card is missing, unreadable or invalid."""


class DataError(CardtuneError):
    """A data file or dataset cannot be read or does not match its card."""


class ModelError(CardtuneError):
    """A model or tokenizer cannot be loaded or used."""


class HubError(CardtuneError):
    """Publishing to the Hugging Face Hub failed, or the output directory cannot be published."""
