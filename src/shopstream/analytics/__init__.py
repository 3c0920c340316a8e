"""Batch analytics over the stored events and live rollups."""
