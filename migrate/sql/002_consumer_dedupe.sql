-- Idempotent apply: a consumer group inserts (group, event id) in the same
-- transaction as the handler's effects; a conflict means the event was
-- already applied.
CREATE TABLE {{.Schema}}.eventline_consumer_dedupe (
    group_id   text        NOT NULL,
    event_id   uuid        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (group_id, event_id)
);

-- Expiry by retention scans by age.
CREATE INDEX eventline_consumer_dedupe_applied_at ON {{.Schema}}.eventline_consumer_dedupe (applied_at);
