"""cardtune: fine-tune BERT-family encoders on text classification from task cards."""

__version__ = "0.1.0"
