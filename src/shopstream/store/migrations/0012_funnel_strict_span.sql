-- funnel_strict read every event: `events` has no index on user or session. It now reads
-- only the events of the sessions' time span (BRIN on event_timestamp), then joins in memory.

CREATE OR REPLACE FUNCTION funnel_strict(day_from date, day_to date)
    RETURNS TABLE (day date, category text, sessions bigint, sessions_with_view bigint,
                   sessions_view_then_cart bigint, sessions_view_cart_purchase bigint,
                   view_to_cart numeric, cart_to_purchase numeric, view_to_purchase numeric)
    LANGUAGE sql STABLE
AS $$
WITH chosen AS (
    SELECT session_key, user_id, source_session_id, session_start, session_end,
           (session_start AT TIME ZONE 'UTC')::date AS day,
           coalesce(entry_category, 'unknown') AS category
      FROM user_sessions
     WHERE session_start >= day_from::timestamp AT TIME ZONE 'UTC'
       AND session_start < (day_to + 1)::timestamp AT TIME ZONE 'UTC'
), span AS (
    SELECT min(session_start) AS lo, max(session_end) AS hi FROM chosen
), candidates AS MATERIALIZED (  -- the range's events only: BRIN on event_timestamp
    SELECT e.session_id, e.user_id, e.event_type, e.event_timestamp
      FROM events e, span
     WHERE e.event_timestamp BETWEEN span.lo AND span.hi
       AND e.event_type IN ('view', 'add_to_cart', 'purchase')
), steps AS (
    SELECT c.session_key, e.event_type, e.event_timestamp
      FROM chosen c JOIN candidates e ON e.session_id = c.source_session_id
    UNION ALL
    SELECT c.session_key, e.event_type, e.event_timestamp
      FROM chosen c
      JOIN candidates e ON e.user_id = c.user_id AND e.session_id IS NULL
                       AND e.event_timestamp BETWEEN c.session_start AND c.session_end
     WHERE c.source_session_id IS NULL
), viewed AS (
    SELECT session_key, min(event_timestamp) AS at FROM steps
     WHERE event_type = 'view' GROUP BY 1
), carted AS (
    SELECT s.session_key, min(s.event_timestamp) AS at
      FROM steps s JOIN viewed v USING (session_key)
     WHERE s.event_type = 'add_to_cart' AND s.event_timestamp > v.at GROUP BY 1
), bought AS (
    SELECT s.session_key
      FROM steps s JOIN carted c USING (session_key)
     WHERE s.event_type = 'purchase' AND s.event_timestamp > c.at GROUP BY 1
)
SELECT c.day, c.category, count(*), count(v.session_key), count(ct.session_key),
       count(b.session_key),
       round(count(ct.session_key)::numeric / nullif(count(v.session_key), 0), 4),
       round(count(b.session_key)::numeric / nullif(count(ct.session_key), 0), 4),
       round(count(b.session_key)::numeric / nullif(count(v.session_key), 0), 4)
  FROM chosen c
  LEFT JOIN viewed v USING (session_key)
  LEFT JOIN carted ct USING (session_key)
  LEFT JOIN bought b USING (session_key)
 GROUP BY 1, 2
$$;
