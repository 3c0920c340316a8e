"""Data-quality suites over the stored tables, run by Great Expectations."""
