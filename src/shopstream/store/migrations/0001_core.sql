-- Core pipeline tables: events, the batch record, the file ledger and the quarantine.

CREATE TABLE batches (
    batch_id             bigint PRIMARY KEY,
    engine               text        NOT NULL,
    source               text        NOT NULL,
    source_batch_key     text        UNIQUE,
    started_at           timestamptz NOT NULL,
    committed_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    files                integer     NOT NULL,
    rows_read            bigint      NOT NULL,
    rows_loaded          bigint      NOT NULL,
    duplicates_in_batch  bigint      NOT NULL,
    duplicates_in_store  bigint      NOT NULL,
    rows_quarantined     bigint      NOT NULL,
    quarantined_by_rule  jsonb       NOT NULL DEFAULT '{}',
    ignored_columns      jsonb       NOT NULL DEFAULT '{}',
    parse_ms             double precision,
    load_ms              double precision,
    min_event_time       timestamptz,
    max_event_time       timestamptz,
    CONSTRAINT batches_accounting CHECK (
        rows_read = rows_loaded + duplicates_in_batch + duplicates_in_store + rows_quarantined
    )
);
CREATE SEQUENCE batches_batch_id_seq OWNED BY batches.batch_id;
CREATE INDEX batches_committed_at ON batches USING brin (committed_at);

-- Only the primary key is a btree: it is what deduplication needs. Time ranges use BRIN,
-- which stays tiny and nearly free to maintain for append-mostly event time.
CREATE TABLE events (
    event_id         uuid          PRIMARY KEY,
    event_type       text          NOT NULL,
    user_id          text          NOT NULL,
    product_id       text          NOT NULL,
    event_timestamp  timestamptz   NOT NULL,
    session_id       text,
    category         text,
    brand            text,
    price            numeric(10,2),
    quantity         integer,
    currency         text,
    device           text,
    country          text,
    batch_id         bigint        NOT NULL,
    created_at       timestamptz   NOT NULL DEFAULT now()
);
CREATE INDEX events_event_timestamp_brin ON events USING brin (event_timestamp);

CREATE TABLE ingested_files (
    path             text        NOT NULL,
    content_hash     text        NOT NULL,
    size_bytes       bigint      NOT NULL,
    status           text        NOT NULL
        CHECK (status IN ('loaded', 'quarantined', 'rejected', 'empty')),
    input_format     text,
    rows_read        bigint      NOT NULL,
    ignored_columns  text[]      NOT NULL DEFAULT '{}',
    batch_id         bigint      NOT NULL
        REFERENCES batches DEFERRABLE INITIALLY DEFERRED,
    ingested_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (path, content_hash)
);

CREATE TABLE quarantine (
    quarantine_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    batch_id           bigint      NOT NULL REFERENCES batches DEFERRABLE INITIALLY DEFERRED,
    source             text        NOT NULL,
    line_no            bigint,
    scope              text        NOT NULL CHECK (scope IN ('row', 'file')),
    rules              text[]      NOT NULL,
    raw                text        NOT NULL,
    raw_bytes          bytea,
    format             text,
    header             text,
    status             text        NOT NULL DEFAULT 'quarantined'
        CHECK (status IN ('quarantined', 'replayed')),
    replayed_batch_id  bigint      REFERENCES batches DEFERRABLE INITIALLY DEFERRED,
    created_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX quarantine_batch_id ON quarantine (batch_id);
CREATE INDEX quarantine_open ON quarantine (quarantine_id) WHERE status = 'quarantined';

COMMENT ON COLUMN quarantine.raw IS 'the row as received (invalid bytes shown as \xNN escapes)';
COMMENT ON COLUMN quarantine.raw_bytes IS 'exact bytes, kept only when raw cannot hold them';
