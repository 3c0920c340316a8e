-- Funnels over sessions, by the UTC day a session starts and its entry category.
--
-- Any order (view funnel_daily): a session reaches a step when it holds at least one event
-- of that type, wherever it falls. Real exports skip steps (a purchase with no cart event):
-- such a session counts in sessions_with_purchase but not in sessions_with_cart, and the
-- step rates only count sessions that hold both ends (view_to_cart = sessions with a view
-- and a cart / sessions with a view), so a skipped step never makes a rate exceed 1.
--
-- Strict order (function funnel_strict): view, then add_to_cart after that view, then
-- purchase after that cart; a session that skips or reverses a step stops at the last step
-- it reached in order.

CREATE VIEW funnel_daily AS
SELECT (session_start AT TIME ZONE 'UTC')::date AS day,
       coalesce(entry_category, 'unknown') AS category,
       count(*) AS sessions,
       count(*) FILTER (WHERE views > 0) AS sessions_with_view,
       count(*) FILTER (WHERE add_to_cart > 0) AS sessions_with_cart,
       count(*) FILTER (WHERE purchases > 0) AS sessions_with_purchase,
       round(count(*) FILTER (WHERE views > 0 AND add_to_cart > 0)::numeric
             / nullif(count(*) FILTER (WHERE views > 0), 0), 4) AS view_to_cart,
       round(count(*) FILTER (WHERE add_to_cart > 0 AND purchases > 0)::numeric
             / nullif(count(*) FILTER (WHERE add_to_cart > 0), 0), 4) AS cart_to_purchase,
       round(count(*) FILTER (WHERE views > 0 AND purchases > 0)::numeric
             / nullif(count(*) FILTER (WHERE views > 0), 0), 4) AS view_to_purchase
  FROM user_sessions
 GROUP BY 1, 2;

CREATE FUNCTION funnel_strict(day_from date, day_to date)
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
), steps AS (
    SELECT c.session_key, e.event_type, e.event_timestamp
      FROM chosen c JOIN events e ON e.session_id = c.source_session_id
     WHERE e.event_type IN ('view', 'add_to_cart', 'purchase')
    UNION ALL
    SELECT c.session_key, e.event_type, e.event_timestamp
      FROM chosen c
      JOIN events e ON e.user_id = c.user_id AND e.session_id IS NULL
                   AND e.event_timestamp BETWEEN c.session_start AND c.session_end
     WHERE c.source_session_id IS NULL AND e.event_type IN ('view', 'add_to_cart', 'purchase')
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
