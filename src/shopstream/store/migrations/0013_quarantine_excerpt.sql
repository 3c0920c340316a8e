-- Quarantine keeps a bounded excerpt of each record (SHOPSTREAM_QUARANTINE_EXCERPT_BYTES)
-- plus the whole record's size and SHA-256, so one 300 MB line cannot fill the table or
-- an API response. Rows written before this migration stored the whole record.
ALTER TABLE quarantine
    ADD COLUMN raw_size   bigint,
    ADD COLUMN raw_sha256 text;
UPDATE quarantine
   SET raw_size = octet_length(coalesce(raw_bytes, convert_to(raw, 'UTF8')))
 WHERE scope = 'row';

COMMENT ON COLUMN quarantine.raw IS 'an excerpt of the record as received (invalid bytes shown as \xNN escapes)';
COMMENT ON COLUMN quarantine.raw_bytes IS 'exact bytes of the excerpt, kept only when raw cannot hold them (and for whole files)';
COMMENT ON COLUMN quarantine.raw_size IS 'size in bytes of the whole record or file';
COMMENT ON COLUMN quarantine.raw_sha256 IS 'SHA-256 of the whole record or file when raw holds only an excerpt (NULL: the hash of what raw_bytes, else raw, holds)';
