-- Token buckets shared by every API worker process: one row per bucket (an API key, or a
-- client address's failed authentications). UNLOGGED: losing them in a crash only resets
-- the limits, and they cost no WAL on every request.
CREATE UNLOGGED TABLE api_rate_buckets (
    bucket      text              PRIMARY KEY,
    tokens      double precision  NOT NULL,
    updated_at  timestamptz       NOT NULL
);

-- Take ``cost`` tokens from ``bucket_name`` (``burst`` at most, refilled at ``rate`` per
-- second): returns 0 when taken, else the seconds until they are there (nothing taken).
-- The row lock makes it atomic across processes.
CREATE FUNCTION shopstream_take_token(bucket_name text, rate double precision,
                                      burst double precision, cost double precision DEFAULT 1)
RETURNS double precision
LANGUAGE plpgsql AS $$
DECLARE
    available double precision;
BEGIN
    INSERT INTO api_rate_buckets (bucket, tokens, updated_at)
    VALUES (bucket_name, burst, clock_timestamp())
    ON CONFLICT (bucket) DO NOTHING;
    SELECT least(burst, tokens + extract(epoch FROM clock_timestamp() - updated_at) * rate)
      INTO available
      FROM api_rate_buckets WHERE bucket = bucket_name FOR UPDATE;
    IF available >= cost THEN
        UPDATE api_rate_buckets SET tokens = available - cost, updated_at = clock_timestamp()
         WHERE bucket = bucket_name;
        RETURN 0;
    END IF;
    UPDATE api_rate_buckets SET tokens = available, updated_at = clock_timestamp()
     WHERE bucket = bucket_name;
    RETURN (cost - available) / rate;
END
$$;

-- Seconds until ``cost`` tokens are in the bucket, without taking any (0: now).
CREATE FUNCTION shopstream_token_wait(bucket_name text, rate double precision,
                                      burst double precision, cost double precision DEFAULT 1)
RETURNS double precision
LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        (SELECT greatest(0.0, (cost - least(burst, tokens
                 + extract(epoch FROM clock_timestamp() - updated_at) * rate)) / rate)
           FROM api_rate_buckets WHERE bucket = bucket_name),
        0.0)
$$;
