-- Staging for engines whose workers load their own rows (Spark executors COPY their
-- partitions here; the batch's commit moves the rows into events and quarantine and drops
-- the tables). UNLOGGED tables, one per task: nothing here survives a crash or matters
-- after one.
CREATE SCHEMA IF NOT EXISTS shopstream_staging;
COMMENT ON SCHEMA shopstream_staging IS
    'per-batch UNLOGGED tables Spark executors COPY into; the batch commit drops them';
