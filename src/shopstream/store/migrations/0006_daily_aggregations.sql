-- The seed's daily_aggregations, filled by `shopstream batch daily` (idempotent per date).

CREATE TABLE daily_aggregations (
    date              date           NOT NULL,
    category          text           NOT NULL,  -- 'unknown' when events had none
    event_type        text           NOT NULL,
    total_events      bigint         NOT NULL,
    total_revenue     numeric(16,2)  NOT NULL,  -- purchases: price * quantity
    unique_users      bigint         NOT NULL,
    unique_sessions   bigint         NOT NULL,
    conversion_rate   numeric(8,4),             -- category's purchasing users / viewing users
    avg_order_value   numeric(12,2),            -- category's revenue / purchases
    top_products      jsonb          NOT NULL,  -- top 5 by events (revenue for purchases)
    created_at        timestamptz    NOT NULL DEFAULT now(),
    updated_at        timestamptz    NOT NULL DEFAULT now(),
    PRIMARY KEY (date, category, event_type)
);
