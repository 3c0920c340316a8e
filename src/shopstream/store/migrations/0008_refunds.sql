-- Refunds (event type 'refund', e.g. Online Retail cancellation lines). Units and revenue in
-- every rollup are net: a purchase adds its amount, a refund subtracts it.

ALTER TABLE product_analytics ADD COLUMN refunds bigint NOT NULL DEFAULT 0;
ALTER TABLE customer_metrics ADD COLUMN refunds bigint NOT NULL DEFAULT 0;
ALTER TABLE user_sessions ADD COLUMN refunds bigint NOT NULL DEFAULT 0;

-- An event's signed contribution to net revenue, for SQL that reads `events` directly.
CREATE FUNCTION shopstream_net_amount(event_type text, price numeric, quantity integer)
    RETURNS numeric LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE event_type WHEN 'purchase' THEN price * quantity
                           WHEN 'refund' THEN -(price * quantity)
                           ELSE 0 END;

COMMENT ON COLUMN realtime_metrics.units IS 'net units: purchased minus refunded';
COMMENT ON COLUMN realtime_metrics.revenue IS 'net revenue: purchases minus refunds';
COMMENT ON COLUMN product_analytics.units IS 'net units: purchased minus refunded';
COMMENT ON COLUMN product_analytics.revenue IS 'net revenue: purchases minus refunds';
COMMENT ON COLUMN customer_metrics.units IS 'net units: purchased minus refunded';
COMMENT ON COLUMN customer_metrics.revenue IS 'net revenue: purchases minus refunds';
COMMENT ON COLUMN user_sessions.revenue_cents IS 'net revenue in cents: purchases minus refunds';
COMMENT ON COLUMN daily_aggregations.total_revenue IS
    'purchase rows: price * quantity; refund rows: minus that; other types 0';
