-- Batches loaded with rollups deferred (SHOPSTREAM_ROLLUPS=false, `shopstream backfill`)
-- whose events the derived tables do not hold yet; `rebuild` folds them and clears the mark
-- in its own transaction, so a backfill interrupted anywhere knows what is left to do.
ALTER TABLE batches ADD COLUMN derived_pending boolean NOT NULL DEFAULT false;
CREATE INDEX batches_derived_pending ON batches (batch_id) WHERE derived_pending;
