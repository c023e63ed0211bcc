"""Corpus format, validation, the synthetic corpus and importers."""
