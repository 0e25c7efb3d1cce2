-- The answers still streaming, oldest first: a gateway instance looks
-- through them for the ones whose generator died (StreamingAnswers), by
-- age, joined to their conversations for the owner. The partial index of
-- 00002 on (id) could only find them all and sort them; on (created_at,
-- id) it reads the first few in order. InterruptAnswers, which wants them
-- by id, sorts the handful itself.

-- +goose Up
DROP INDEX messages_streaming;
CREATE INDEX messages_streaming ON messages (created_at, id) WHERE status = 'STREAMING';

-- +goose Down
DROP INDEX messages_streaming;
CREATE INDEX messages_streaming ON messages (id) WHERE status = 'STREAMING';
