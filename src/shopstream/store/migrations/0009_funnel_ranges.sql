-- Funnel counts per day and entry category, maintained with the sessions in every batch
-- transaction: when a batch merges stored sessions, their counts come out and the merged
-- session's go in, so the table always equals a count over user_sessions. Dashboards then
-- read a few rows per day instead of every session of the range.

CREATE TABLE funnel_sessions (
    day                     date    NOT NULL,  -- UTC day the session starts
    category                text    NOT NULL,  -- entry category, 'unknown' when none
    sessions                bigint  NOT NULL,
    sessions_with_view      bigint  NOT NULL,
    sessions_with_cart      bigint  NOT NULL,
    sessions_with_purchase  bigint  NOT NULL,
    view_and_cart           bigint  NOT NULL,  -- sessions holding both steps
    cart_and_purchase       bigint  NOT NULL,
    view_and_purchase       bigint  NOT NULL,
    PRIMARY KEY (day, category)
);

INSERT INTO funnel_sessions
SELECT (session_start AT TIME ZONE 'UTC')::date, coalesce(entry_category, 'unknown'), count(*),
       count(*) FILTER (WHERE views > 0), count(*) FILTER (WHERE add_to_cart > 0),
       count(*) FILTER (WHERE purchases > 0),
       count(*) FILTER (WHERE views > 0 AND add_to_cart > 0),
       count(*) FILTER (WHERE add_to_cart > 0 AND purchases > 0),
       count(*) FILTER (WHERE views > 0 AND purchases > 0)
  FROM user_sessions GROUP BY 1, 2;

-- The any-order funnel for a range of days; funnel_daily keeps its columns and meaning.
CREATE FUNCTION funnel_any_order(day_from date, day_to date)
    RETURNS TABLE (day date, category text, sessions bigint, sessions_with_view bigint,
                   sessions_with_cart bigint, sessions_with_purchase bigint,
                   view_to_cart numeric, cart_to_purchase numeric, view_to_purchase numeric)
    LANGUAGE sql STABLE
AS $$
SELECT day, category, sessions, sessions_with_view, sessions_with_cart, sessions_with_purchase,
       round(view_and_cart::numeric / nullif(sessions_with_view, 0), 4),
       round(cart_and_purchase::numeric / nullif(sessions_with_cart, 0), 4),
       round(view_and_purchase::numeric / nullif(sessions_with_view, 0), 4)
  FROM funnel_sessions
 WHERE day BETWEEN day_from AND day_to AND sessions <> 0
$$;

CREATE OR REPLACE VIEW funnel_daily AS
SELECT * FROM funnel_any_order('-infinity', 'infinity');
