-- The loader looks up a user's stored sessions that end at most 30 minutes before a batch's
-- own: indexed by end, that is a short range scan; indexed by start it read the user's whole
-- history, so backfills slowed down as sessions piled up.
CREATE INDEX user_sessions_user_end ON user_sessions (user_id, session_end);
DROP INDEX user_sessions_user_start;
