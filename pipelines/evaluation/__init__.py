"""Metrics and diagnostics of a classifier's predictions."""
