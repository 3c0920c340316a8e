-- Running itself: scheduled batch jobs, data-quality results and alerts (see shopstream/jobs,
-- shopstream/quality and shopstream/alerting).

-- One row per attempt of a job: the scheduler, `jobs run`, Airflow and the demo all log here.
CREATE TABLE pipeline_execution_logs (
    run_id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job             text        NOT NULL,
    scheduled_for   timestamptz,                -- the fire time (manual runs: the start)
    target_date     date,                       -- the day a daily or quality run covers
    trigger         text        NOT NULL
                    CHECK (trigger IN ('schedule', 'catch-up', 'manual', 'airflow')),
    attempt         integer     NOT NULL DEFAULT 1 CHECK (attempt >= 1),
    status          text        NOT NULL DEFAULT 'running'
                    CHECK (status IN ('running', 'success', 'failed', 'skipped')),
    started_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at     timestamptz,
    rows_affected   bigint,
    error           text,
    details         jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX pipeline_execution_logs_job ON pipeline_execution_logs (job, started_at DESC);

-- One row per expectation of a quality run (Great Expectations' result, flattened).
CREATE TABLE data_quality_logs (
    check_id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id          bigint      REFERENCES pipeline_execution_logs ON DELETE SET NULL,
    suite           text        NOT NULL,
    expectation     text        NOT NULL,       -- e.g. expect_column_values_to_be_unique
    column_name     text,
    target_date     date,
    success         boolean     NOT NULL,
    observed        jsonb       NOT NULL DEFAULT '{}',
    severity        text        NOT NULL DEFAULT 'warning'
                    CHECK (severity IN ('info', 'warning', 'critical')),
    checked_at      timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX data_quality_logs_time ON data_quality_logs (checked_at DESC);

-- Data alerts raised by ShopStream itself; one row per firing of a condition (fingerprint).
CREATE TABLE alerts (
    alert_id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    fingerprint     text        NOT NULL,
    rule            text        NOT NULL,
    severity        text        NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    labels          jsonb       NOT NULL DEFAULT '{}',
    summary         text        NOT NULL,
    value           double precision,
    started_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    last_seen_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    resolved_at     timestamptz,
    notified_firing_at    timestamptz,          -- webhook / e-mail sent for the firing
    notified_resolved_at  timestamptz,          -- ... and for its resolution
    delivery_error  text
);
-- While firing, a condition has exactly one row: raising it again only refreshes it.
CREATE UNIQUE INDEX alerts_firing ON alerts (fingerprint) WHERE resolved_at IS NULL;
CREATE INDEX alerts_time ON alerts (started_at DESC);
