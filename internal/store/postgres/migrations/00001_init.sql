-- Ids are text in the "C" collation, so that they compare byte by byte, as
-- Go compares strings and as keyset cursors expect. Optional values are NULL
-- when absent.

-- +goose Up
CREATE TABLE users (
    id         text COLLATE "C" PRIMARY KEY,
    name       text NOT NULL DEFAULT '',
    email      text NOT NULL DEFAULT '',
    avatar_url text NOT NULL DEFAULT '',
    updated_at timestamptz NOT NULL
);

CREATE TABLE conversations (
    id         text COLLATE "C" PRIMARY KEY,
    owner_id   text COLLATE "C" NOT NULL,
    title      text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);

-- A user's conversations, most recently updated first.
CREATE INDEX conversations_owner_updated ON conversations (owner_id, updated_at DESC, id DESC);

CREATE TABLE messages (
    id                text COLLATE "C" PRIMARY KEY,
    conversation_id   text COLLATE "C" NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    role              text NOT NULL
                      CONSTRAINT messages_role_check CHECK (role IN ('USER', 'ASSISTANT')),
    author_id         text COLLATE "C",
    content           text NOT NULL DEFAULT '',
    status            text NOT NULL
                      CONSTRAINT messages_status_check CHECK (status IN ('STREAMING', 'COMPLETE', 'FAILED', 'CANCELLED')),
    model             text,
    created_at        timestamptz NOT NULL,
    completed_at      timestamptz,
    prompt_tokens     integer,
    completion_tokens integer,
    total_tokens      integer,
    error             text
);

-- A conversation's messages in chronological order; also serves the
-- foreign key's cascade.
CREATE INDEX messages_conversation_created ON messages (conversation_id, created_at, id);

-- +goose Down
DROP TABLE messages;
DROP TABLE conversations;
DROP TABLE users;
