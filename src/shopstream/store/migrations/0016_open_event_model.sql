-- The open event model: events without a product (page views, searches, logins, custom
-- types), the context fields clients send, and every unmapped field kept in properties.
ALTER TABLE events
    ALTER COLUMN product_id DROP NOT NULL,
    ADD COLUMN order_id        text,
    ADD COLUMN page_url        text,
    ADD COLUMN referrer        text,
    ADD COLUMN user_agent      text,
    ADD COLUMN ip_address      text,
    ADD COLUMN utm_source      text,
    ADD COLUMN utm_medium      text,
    ADD COLUMN utm_campaign    text,
    ADD COLUMN search_query    text,
    ADD COLUMN payment_method  text,
    ADD COLUMN properties      jsonb;
COMMENT ON COLUMN events.properties IS
    'every field of the record its mapping names no canonical field for';

-- Records of a type the mapping ignores are counted, neither loaded nor quarantined.
ALTER TABLE batches ADD COLUMN rows_ignored bigint NOT NULL DEFAULT 0;
ALTER TABLE batches DROP CONSTRAINT batches_accounting;
ALTER TABLE batches ADD CONSTRAINT batches_accounting CHECK (
    rows_read = rows_loaded + duplicates_in_batch + duplicates_in_store + rows_quarantined
                + rows_ignored
);
ALTER TABLE ingested_files ADD COLUMN rows_ignored bigint NOT NULL DEFAULT 0;
COMMENT ON COLUMN ingested_files.ignored_columns IS
    'source fields no canonical field took: kept in events.properties';

-- Which fields the broken rules found at fault (required_fields names the missing ones).
ALTER TABLE quarantine ADD COLUMN fields text[];
