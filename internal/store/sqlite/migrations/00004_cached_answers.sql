-- An answer served from the answer cache (see internal/answers) rather than
-- generated for its question says so: 1 for such answers, 0 for every other
-- message, those stored before this migration included.

-- +goose Up
ALTER TABLE messages ADD COLUMN cached INTEGER NOT NULL DEFAULT 0
    CONSTRAINT messages_cached_check CHECK (cached IN (0, 1));

-- +goose Down
ALTER TABLE messages DROP COLUMN cached;
