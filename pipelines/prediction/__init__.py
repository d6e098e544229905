"""Batch prediction over files: streaming, crash-safe partial output, progress."""
