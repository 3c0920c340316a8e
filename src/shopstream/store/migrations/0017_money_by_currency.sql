-- Money is never added across currencies. Every rollup that sums money keeps one row per
-- currency; 'XXX' (ISO 4217: "no currency involved") holds events that named none.
-- Rows folded before this migration are given the store's currency when the stored
-- events use one; a store that already mixed currencies keeps them under 'XXX'.
CREATE FUNCTION shopstream_currency(currency text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN coalesce(currency, 'XXX');

CREATE TEMP TABLE store_currency ON COMMIT DROP AS
SELECT min(shopstream_currency(currency)) AS currency FROM events
HAVING count(DISTINCT shopstream_currency(currency)) = 1;

DROP VIEW realtime_metrics_5m, realtime_metrics_hourly;
DROP FUNCTION realtime_metrics_window(interval);

ALTER TABLE realtime_metrics ADD COLUMN currency text NOT NULL DEFAULT 'XXX';
UPDATE realtime_metrics SET currency = s.currency FROM store_currency s;
ALTER TABLE realtime_metrics
    DROP CONSTRAINT realtime_metrics_pkey,
    ADD PRIMARY KEY (window_start, category, event_type, currency);

CREATE FUNCTION realtime_metrics_window(width interval)
    RETURNS TABLE (window_start timestamptz, category text, event_type text, currency text,
                   events numeric, units numeric, revenue numeric, purchases numeric,
                   distinct_users bigint)
    LANGUAGE sql STABLE
AS $$
SELECT w.window_start, w.category, w.event_type, w.currency, w.events, w.units, w.revenue,
       w.purchases,
       (SELECT count(DISTINCT h)
          FROM realtime_metrics m, unnest(m.user_hashes) AS h
         WHERE m.window_start >= w.window_start AND m.window_start < w.window_start + width
           AND m.category = w.category AND m.event_type = w.event_type
           AND m.currency = w.currency)
  FROM (SELECT date_bin(width, window_start, timestamptz '2000-01-01 00:00+00') AS window_start,
               category, event_type, currency, sum(events) AS events, sum(units) AS units,
               sum(revenue) AS revenue, sum(purchases) AS purchases
          FROM realtime_metrics GROUP BY 1, 2, 3, 4) AS w
$$;
CREATE VIEW realtime_metrics_5m AS SELECT * FROM realtime_metrics_window('5 minutes');
CREATE VIEW realtime_metrics_hourly AS SELECT * FROM realtime_metrics_window('1 hour');

ALTER TABLE product_analytics ADD COLUMN currency text NOT NULL DEFAULT 'XXX';
UPDATE product_analytics SET currency = s.currency FROM store_currency s;
ALTER TABLE product_analytics
    DROP CONSTRAINT product_analytics_pkey,
    ADD PRIMARY KEY (day, product_id, currency);

ALTER TABLE daily_aggregations ADD COLUMN currency text NOT NULL DEFAULT 'XXX';
UPDATE daily_aggregations SET currency = s.currency FROM store_currency s;
ALTER TABLE daily_aggregations
    DROP CONSTRAINT daily_aggregations_pkey,
    ADD PRIMARY KEY (date, category, event_type, currency);

-- A customer may pay in several currencies: their money is kept per currency, and the
-- single `revenue` figure only while there is one (NULL once there are several).
CREATE FUNCTION shopstream_add_money(a jsonb, b jsonb) RETURNS jsonb
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN (SELECT coalesce(jsonb_object_agg(currency, total), '{}')
              FROM (SELECT currency, sum(amount::numeric) AS total
                      FROM (SELECT * FROM jsonb_each_text(a)
                            UNION ALL SELECT * FROM jsonb_each_text(b)) AS m(currency, amount)
                     GROUP BY currency) AS t);
ALTER TABLE customer_metrics
    ADD COLUMN revenue_by_currency jsonb NOT NULL DEFAULT '{}',
    ALTER COLUMN revenue DROP NOT NULL;
UPDATE customer_metrics
   SET revenue_by_currency = jsonb_build_object(coalesce(s.currency, 'XXX'), revenue)
  FROM (SELECT (SELECT currency FROM store_currency) AS currency) AS s
 WHERE revenue <> 0;
COMMENT ON COLUMN customer_metrics.revenue IS
    'net revenue while the customer paid in one currency; NULL once in several';
COMMENT ON COLUMN customer_metrics.revenue_by_currency IS
    'net revenue per currency code, e.g. {"EUR": 120.50, "USD": 19.99}';

-- Exchange rates loaded by `shopstream fx load`: one unit of `currency` is worth `rate`
-- units of `quote` (the reporting currency) on `day`.
CREATE TABLE fx_rates (
    day        date           NOT NULL,
    currency   text           NOT NULL,
    quote      text           NOT NULL,
    rate       numeric        NOT NULL CHECK (rate > 0),
    loaded_at  timestamptz    NOT NULL DEFAULT now(),
    PRIMARY KEY (quote, currency, day)
);

-- The rate of `day`, or the latest before it (no rates are published on holidays); 1 for
-- the quote currency itself; NULL when none is known.
CREATE FUNCTION shopstream_fx_rate(currency text, quote text, day date) RETURNS numeric
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN CASE WHEN currency = quote THEN 1
                ELSE (SELECT r.rate FROM fx_rates r
                       WHERE r.quote = shopstream_fx_rate.quote
                         AND r.currency = shopstream_fx_rate.currency
                         AND r.day <= shopstream_fx_rate.day
                       ORDER BY r.day DESC LIMIT 1) END;
