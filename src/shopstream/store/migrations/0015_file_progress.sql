-- A file too large to parse at once is loaded in pieces, each in a batch of its own.
-- Like a stream partition's offset, its position moves forward only from where the
-- committing piece starts; the ingested_files row appears with the last piece.
CREATE TABLE file_progress (
    path           text        NOT NULL,
    content_hash   text        NOT NULL,
    next_offset    bigint      NOT NULL,  -- decompressed bytes consumed
    next_line      bigint      NOT NULL,  -- line number of the next record
    pieces         integer     NOT NULL,
    rows_read      bigint      NOT NULL,
    pieces_rejected integer    NOT NULL,  -- pieces quarantined as a whole
    batch_id       bigint      NOT NULL REFERENCES batches DEFERRABLE INITIALLY DEFERRED,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (path, content_hash)
);
