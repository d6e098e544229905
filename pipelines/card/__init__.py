"""Task cards: the schema, loading and validation, run options, preprocessing steps."""
