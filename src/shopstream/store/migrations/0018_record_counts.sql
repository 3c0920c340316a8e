-- A file quarantined whole counts every record it held, not one: `batches.rows_quarantined`
-- and `ingested_files.rows_read` say how many input records did not load, and `records`
-- says how many this quarantine row stands for.
ALTER TABLE quarantine ADD COLUMN records bigint NOT NULL DEFAULT 1 CHECK (records >= 1);
COMMENT ON COLUMN quarantine.records IS
    'input records this row stands for: 1, or every record of a file rejected whole';

-- A file loaded in pieces counts the records its mapping ignored across all of them.
ALTER TABLE file_progress ADD COLUMN rows_ignored bigint NOT NULL DEFAULT 0;
