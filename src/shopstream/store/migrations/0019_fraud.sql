-- Fraud scoring in the batch transaction (see shopstream/fraud). Every purchase and refund
-- the batch inserts is scored once, with the events; alerts open in the same commit.

-- The state the rules look back over: orders, refunds and logins with their context, one
-- narrow row each, indexed per entity (user, IP, device, payment method) and time.
CREATE TABLE fraud_activity (
    event_id         uuid           PRIMARY KEY REFERENCES events ON DELETE CASCADE,
    event_type       text           NOT NULL,   -- purchase | refund | login
    event_timestamp  timestamptz    NOT NULL,
    user_id          text           NOT NULL,
    order_key        text           NOT NULL,   -- order_id, else the event's id
    ip_address       text,
    device           text,                      -- the user agent
    payment_method   text,
    country          text,
    amount           numeric(14,2),             -- price * quantity; NULL for logins
    batch_id         bigint         NOT NULL
);
CREATE INDEX fraud_activity_user ON fraud_activity (user_id, event_timestamp);
CREATE INDEX fraud_activity_ip ON fraud_activity (ip_address, event_timestamp)
    WHERE ip_address IS NOT NULL;
CREATE INDEX fraud_activity_device ON fraud_activity (device, event_timestamp)
    WHERE device IS NOT NULL;
CREATE INDEX fraud_activity_payment ON fraud_activity (payment_method, event_timestamp)
    WHERE payment_method IS NOT NULL;

CREATE TABLE fraud_scores (
    event_id         uuid           PRIMARY KEY REFERENCES events ON DELETE CASCADE,
    order_id         text,
    user_id          text           NOT NULL,
    event_type       text           NOT NULL,
    event_timestamp  timestamptz    NOT NULL,
    amount           numeric(14,2),
    score            numeric(5,4)   NOT NULL CHECK (score BETWEEN 0 AND 1),
    reasons          text[]         NOT NULL,
    model_version    text           NOT NULL,
    features         jsonb          NOT NULL,   -- what the rules and the model saw
    batch_id         bigint         NOT NULL,
    scored_at        timestamptz    NOT NULL DEFAULT now()
);
CREATE INDEX fraud_scores_time ON fraud_scores USING brin (event_timestamp);

CREATE TABLE fraud_alerts (
    alert_id         bigserial      PRIMARY KEY,
    event_id         uuid           NOT NULL UNIQUE REFERENCES fraud_scores ON DELETE CASCADE,
    user_id          text           NOT NULL,
    score            numeric(5,4)   NOT NULL,
    reasons          text[]         NOT NULL,
    status           text           NOT NULL DEFAULT 'open'
                                    CHECK (status IN ('open', 'confirmed', 'dismissed')),
    created_at       timestamptz    NOT NULL DEFAULT now(),
    reviewed_by      text,
    reviewed_at      timestamptz,
    batch_id         bigint         NOT NULL
);
CREATE INDEX fraud_alerts_status ON fraud_alerts (status, alert_id);

-- Anomaly models trained by `shopstream fraud train`; the newest one scores.
CREATE TABLE fraud_models (
    version          text           PRIMARY KEY,
    trained_at       timestamptz    NOT NULL DEFAULT now(),
    orders           bigint         NOT NULL,
    features         text[]         NOT NULL,
    cutoff           double precision NOT NULL,  -- anomaly score at which the model fires
    model            bytea          NOT NULL
);
