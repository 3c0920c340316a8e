-- Sessions: one row per session, maintained with every batch (see store/sessions.py).

CREATE TABLE user_sessions (
    session_key        text         PRIMARY KEY,  -- session_id, or user_id@start (30-min gaps)
    user_id            text         NOT NULL,
    source_session_id  text,                      -- the input's session_id, when it had one
    session_start      timestamptz  NOT NULL,
    session_end        timestamptz  NOT NULL,
    duration_seconds   numeric      GENERATED ALWAYS AS
        (extract(epoch FROM session_end - session_start)) STORED,
    events             bigint       NOT NULL,
    views              bigint       NOT NULL,
    add_to_cart        bigint       NOT NULL,     -- cart adds
    remove_from_cart   bigint       NOT NULL,
    wishlist           bigint       NOT NULL,
    purchases          bigint       NOT NULL,
    purchased          boolean      GENERATED ALWAYS AS (purchases > 0) STORED,
    revenue_cents      bigint       NOT NULL,
    revenue            numeric(16,2) GENERATED ALWAYS AS (revenue_cents / 100.0) STORED,
    entry_event_id     uuid         NOT NULL,
    entry_product      text,
    entry_category     text,
    updated_at         timestamptz  NOT NULL DEFAULT now()
);
CREATE INDEX user_sessions_user_start ON user_sessions (user_id, session_start);
CREATE INDEX user_sessions_start_brin ON user_sessions USING brin (session_start);

ALTER TABLE customer_metrics ADD COLUMN sessions bigint NOT NULL DEFAULT 0;
