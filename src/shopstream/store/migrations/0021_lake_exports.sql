-- The lake archive's ledger (see shopstream/lake): which committed batches each lake table
-- holds. An export first records its batches as 'pending' under a new export_id, then
-- commits them to Delta with that export_id as the table's transaction version for
-- ShopStream, then marks them 'committed'. A crash between the two commits is resolved
-- from the Delta log: the lake holds the export if its transaction version has reached it.
CREATE SEQUENCE lake_export_id_seq;

CREATE TABLE lake_exports (
    lake_uri       text        NOT NULL,
    lake_table     text        NOT NULL CHECK (lake_table IN ('events', 'quarantine')),
    batch_id       bigint      NOT NULL REFERENCES batches,
    export_id      bigint      NOT NULL,
    rows           bigint      NOT NULL,
    status         text        NOT NULL CHECK (status IN ('pending', 'committed')),
    delta_version  bigint,
    exported_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (lake_uri, lake_table, batch_id)
);
CREATE INDEX lake_exports_export_id ON lake_exports (export_id);
-- Exports read whole batches through events_batch_id_brin (0003) and quarantine_batch_id.
