-- An answer served from the answer cache (see internal/answers) rather than
-- generated for its question says so: true for such answers, false for
-- every other message, those stored before this migration included. (A
-- constant default adds the column without rewriting the table.)

-- +goose Up
ALTER TABLE messages ADD COLUMN cached boolean NOT NULL DEFAULT false;

-- +goose Down
ALTER TABLE messages DROP COLUMN cached;
