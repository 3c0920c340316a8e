-- Stream sources: consumed positions commit in the batch transaction, with the lag seen.

CREATE TABLE source_offsets (
    consumer_group   text        NOT NULL,
    topic            text        NOT NULL,
    partition        integer     NOT NULL,
    next_offset      bigint      NOT NULL CHECK (next_offset >= 0),
    high_watermark   bigint      NOT NULL,
    batch_id         bigint      NOT NULL REFERENCES batches DEFERRABLE INITIALLY DEFERRED,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, topic, partition)
);

COMMENT ON COLUMN source_offsets.next_offset IS 'offset of the next message to load';
COMMENT ON COLUMN source_offsets.high_watermark IS 'end of the partition when the batch was read';

-- Per batch, consumer lag by "topic/partition" when the batch was read.
ALTER TABLE batches ADD COLUMN source_lag jsonb;
