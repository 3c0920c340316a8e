-- RFM segments and customer value, rebuilt by `shopstream batch customers`.

CREATE TABLE customer_segments (
    user_id                  text           PRIMARY KEY,
    reference_date           date           NOT NULL,
    recency_days             integer        NOT NULL,  -- reference date - last purchase day
    frequency                bigint         NOT NULL,  -- purchases
    monetary                 numeric(16,2)  NOT NULL,  -- revenue
    r_score                  smallint       NOT NULL CHECK (r_score BETWEEN 1 AND 5),
    f_score                  smallint       NOT NULL CHECK (f_score BETWEEN 1 AND 5),
    m_score                  smallint       NOT NULL CHECK (m_score BETWEEN 1 AND 5),
    rfm_score                text           NOT NULL,
    segment                  text           NOT NULL,
    historical_clv           numeric(16,2)  NOT NULL,  -- revenue to date
    repeat_purchase_days     integer        NOT NULL,  -- BG/NBD x
    p_alive                  numeric(8,6),
    churn_probability        numeric(8,6),
    expected_purchases_365d  numeric(12,4),
    expected_order_value     numeric(12,2),
    predicted_clv_365d       numeric(16,2),
    computed_at              timestamptz    NOT NULL DEFAULT now()
);

CREATE TABLE clv_models (
    fitted_at       timestamptz  PRIMARY KEY DEFAULT clock_timestamp(),
    reference_date  date         NOT NULL,
    customers       integer      NOT NULL,
    bgnbd_r         double precision, bgnbd_alpha double precision,
    bgnbd_a         double precision, bgnbd_b     double precision,
    gg_p            double precision, gg_q        double precision, gg_gamma double precision
);
