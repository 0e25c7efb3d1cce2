-- Times are INTEGER microseconds since the Unix epoch (UTC): they round-trip
-- exactly and sort numerically. Optional values are NULL when absent.

-- +goose Up
CREATE TABLE users (
    id         TEXT NOT NULL PRIMARY KEY,
    name       TEXT NOT NULL DEFAULT '',
    email      TEXT NOT NULL DEFAULT '',
    avatar_url TEXT NOT NULL DEFAULT '',
    updated_at INTEGER NOT NULL
) STRICT;

CREATE TABLE conversations (
    id         TEXT NOT NULL PRIMARY KEY,
    owner_id   TEXT NOT NULL,
    title      TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;

-- A user's conversations, most recently updated first.
CREATE INDEX conversations_owner_updated ON conversations (owner_id, updated_at DESC, id DESC);

CREATE TABLE messages (
    id                TEXT NOT NULL PRIMARY KEY,
    conversation_id   TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    role              TEXT NOT NULL
                      CONSTRAINT messages_role_check CHECK (role IN ('USER', 'ASSISTANT')),
    author_id         TEXT,
    content           TEXT NOT NULL DEFAULT '',
    status            TEXT NOT NULL
                      CONSTRAINT messages_status_check CHECK (status IN ('STREAMING', 'COMPLETE', 'FAILED', 'CANCELLED')),
    model             TEXT,
    created_at        INTEGER NOT NULL,
    completed_at      INTEGER,
    prompt_tokens     INTEGER,
    completion_tokens INTEGER,
    total_tokens      INTEGER,
    error             TEXT
) STRICT;

-- A conversation's messages in chronological order; also serves the
-- foreign key's cascade.
CREATE INDEX messages_conversation_created ON messages (conversation_id, created_at, id);

-- +goose Down
DROP TABLE messages;
DROP TABLE conversations;
DROP TABLE users;
