"""The in-process engine: Polars batches on one machine, both cores busy."""
