-- The logical-mode relay's record of its replication slot: when it was
-- created and how far the relay confirmed it. A slot that disappears (a
-- failover to a standby without it, a DROP) is told apart from one never
-- created, so the relay does not silently create a new slot and skip the
-- events in between (migrate.SetupLogical). Poll mode never writes here.
CREATE TABLE {{.Schema}}.eventline_relay_state (
    slot          text        PRIMARY KEY,
    created_lsn   pg_lsn      NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    confirmed_lsn pg_lsn,
    confirmed_at  timestamptz
);
