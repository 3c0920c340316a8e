"""Sources deliver input to an engine and learn when it has been committed."""
