-- API keys: only a SHA-256 digest of each key is stored (keys are 256-bit random tokens, so
-- a fast digest is as safe as a slow one and keeps every request's check cheap).
CREATE TABLE api_keys (
    key_id      bigint       GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text         NOT NULL,
    role        text         NOT NULL CHECK (role IN ('viewer', 'analyst', 'admin')),
    key_digest  bytea        NOT NULL UNIQUE,
    key_prefix  text         NOT NULL,  -- the key's first characters, to tell keys apart
    created_at  timestamptz  NOT NULL DEFAULT now(),
    expires_at  timestamptz,
    revoked_at  timestamptz
);
