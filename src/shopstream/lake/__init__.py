"""The lake archive: committed events and quarantine exported exactly once to Delta Lake
tables (a local folder or S3), queried with DuckDB, and retention that deletes from
PostgreSQL only what the lake verifiably holds."""
