-- What streaming answers need: idempotency keys for asks, and a cheap way
-- to find the answers still streaming.

-- +goose Up

-- An owner's idempotency key names the question and answer its first ask
-- stored. The primary key lets only one ask of an owner take a key; the
-- key goes with its messages, and so with their conversation. The unique
-- constraints on the message ids also serve the foreign keys' cascades.
CREATE TABLE idempotency_keys (
    owner_id    TEXT NOT NULL,
    key         TEXT NOT NULL,
    question_id TEXT NOT NULL UNIQUE REFERENCES messages (id) ON DELETE CASCADE,
    answer_id   TEXT NOT NULL UNIQUE REFERENCES messages (id) ON DELETE CASCADE,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (owner_id, key)
) STRICT, WITHOUT ROWID;

-- The answers still streaming: a handful at any time, which a process
-- starting up ends.
CREATE INDEX messages_streaming ON messages (id) WHERE status = 'STREAMING';

-- +goose Down
DROP INDEX messages_streaming;
DROP TABLE idempotency_keys;
