"""Data: reading local tables, loading a card's splits, tokenization, the feature cache."""
