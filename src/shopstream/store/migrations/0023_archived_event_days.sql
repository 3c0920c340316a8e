-- Days whose events retention moved out of PostgreSQL (they live in the lake at lake_root).
-- A rebuild folds those days from the lake, so rollups, sessions and customer history keep
-- them; without the lake it refuses rather than drop them.
CREATE TABLE archived_event_days (
    day         date        PRIMARY KEY,
    events      bigint      NOT NULL,
    lake_root   text        NOT NULL,
    removed_at  timestamptz NOT NULL DEFAULT now()
);
