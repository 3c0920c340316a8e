-- Live rollups, folded in by the loader inside each batch's transaction, from exactly the
-- rows that batch inserted. All measures are additive (sums, or unions of user sets), so a
-- late event simply updates its own window and a replayed batch changes nothing.

-- Exact distinct users without keeping a row per (window, user): each window keeps the set
-- of its users' 64-bit hashes (BLAKE2b of user_id) as a sorted bigint array. Sets merge by
-- union; counts are exact up to a 64-bit hash collision (~1e-9 for a million users).
CREATE FUNCTION shopstream_union_hashes(a bigint[], b bigint[]) RETURNS bigint[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN (SELECT coalesce(array_agg(DISTINCT h ORDER BY h), '{}') FROM unnest(a || b) AS h);

CREATE TABLE realtime_metrics (
    window_start     timestamptz    NOT NULL,   -- 1-minute tumbling window, UTC
    category         text           NOT NULL,   -- 'unknown' when the event had none
    event_type       text           NOT NULL,
    events           bigint         NOT NULL,
    units            bigint         NOT NULL,   -- quantity of purchases
    revenue          numeric(16,2)  NOT NULL,   -- price * quantity of purchases
    purchases        bigint         NOT NULL,
    user_hashes      bigint[]       NOT NULL,
    distinct_users   integer        GENERATED ALWAYS AS (cardinality(user_hashes)) STORED,
    updated_at       timestamptz    NOT NULL DEFAULT now(),
    PRIMARY KEY (window_start, category, event_type)
);

-- Coarser windows are derived from the 1-minute rows; their user sets are unions.
CREATE FUNCTION realtime_metrics_window(width interval)
    RETURNS TABLE (window_start timestamptz, category text, event_type text, events numeric,
                   units numeric, revenue numeric, purchases numeric, distinct_users bigint)
    LANGUAGE sql STABLE
AS $$
SELECT w.window_start, w.category, w.event_type, w.events, w.units, w.revenue, w.purchases,
       (SELECT count(DISTINCT h)
          FROM realtime_metrics m, unnest(m.user_hashes) AS h
         WHERE m.window_start >= w.window_start AND m.window_start < w.window_start + width
           AND m.category = w.category AND m.event_type = w.event_type)
  FROM (SELECT date_bin(width, window_start, timestamptz '2000-01-01 00:00+00') AS window_start,
               category, event_type, sum(events) AS events, sum(units) AS units,
               sum(revenue) AS revenue, sum(purchases) AS purchases
          FROM realtime_metrics GROUP BY 1, 2, 3) AS w
$$;

CREATE VIEW realtime_metrics_5m AS SELECT * FROM realtime_metrics_window('5 minutes');
CREATE VIEW realtime_metrics_hourly AS SELECT * FROM realtime_metrics_window('1 hour');

CREATE TABLE product_analytics (
    day               date           NOT NULL,  -- UTC day of the event
    product_id        text           NOT NULL,
    views             bigint         NOT NULL,
    add_to_cart       bigint         NOT NULL,
    remove_from_cart  bigint         NOT NULL,
    wishlist          bigint         NOT NULL,
    purchases         bigint         NOT NULL,
    units             bigint         NOT NULL,
    revenue           numeric(16,2)  NOT NULL,
    view_to_purchase  numeric        GENERATED ALWAYS AS
        (CASE WHEN views > 0 THEN round(purchases::numeric / views, 4) END) STORED,
    updated_at        timestamptz    NOT NULL DEFAULT now(),
    PRIMARY KEY (day, product_id)
);

CREATE TABLE customer_metrics (
    user_id        text           PRIMARY KEY,
    first_seen     timestamptz    NOT NULL,
    last_seen      timestamptz    NOT NULL,
    events         bigint         NOT NULL,
    orders         bigint         NOT NULL,   -- purchase events
    units          bigint         NOT NULL,
    revenue        numeric(16,2)  NOT NULL,
    last_purchase  timestamptz,
    updated_at     timestamptz    NOT NULL DEFAULT now()
);

-- Late arrivals: stored and aggregated like any event, but flagged and counted.
ALTER TABLE events ADD COLUMN arrived_late boolean NOT NULL DEFAULT false;
ALTER TABLE batches ADD COLUMN late_events bigint NOT NULL DEFAULT 0;
-- The batch's own rows, for audits and re-derivations; BRIN suits the append order.
CREATE INDEX events_batch_id_brin ON events USING brin (batch_id);
