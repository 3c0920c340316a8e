"""Engines turn source data into validated, deduplicated micro-batches for the loader."""
