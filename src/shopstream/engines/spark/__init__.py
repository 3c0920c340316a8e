"""The Spark Structured Streaming engine: Spark reads, parses (on executors) and validates;
the same loader commits each micro-batch in one PostgreSQL transaction."""
