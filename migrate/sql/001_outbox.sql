-- The transactional outbox: one row per event appended by producer.Append in
-- the caller's transaction, drained by the relay in id order.
CREATE TABLE {{.Schema}}.eventline_outbox (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic             text        NOT NULL,
    record_key        bytea       NOT NULL,            -- the aggregate id: Kafka key, so one aggregate maps to one partition
    record_value      bytea       NOT NULL,            -- Confluent wire format: 0, 4-byte schema id, Avro body
    event_id          uuid        NOT NULL,
    event_type        text        NOT NULL,            -- Avro full name
    aggregate_type    text        NOT NULL,
    aggregate_id      text        NOT NULL,
    aggregate_version bigint,
    headers           jsonb       NOT NULL DEFAULT '[]'::jsonb, -- [[key, value], ...]: traceparent, tracestate, correlation id
    created_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    published_at      timestamptz                      -- set instead of deleting in retention mode
);

-- Retention mode reads only unpublished rows.
CREATE INDEX eventline_outbox_unpublished ON {{.Schema}}.eventline_outbox (id) WHERE published_at IS NULL;

-- Rows the relay could not publish for a permanent reason, with the error.
CREATE TABLE {{.Schema}}.eventline_outbox_parked (
    id                bigint      PRIMARY KEY,         -- the outbox id it had
    topic             text        NOT NULL,
    record_key        bytea       NOT NULL,
    record_value      bytea       NOT NULL,
    event_id          uuid        NOT NULL,
    event_type        text        NOT NULL,
    aggregate_type    text        NOT NULL,
    aggregate_id      text        NOT NULL,
    aggregate_version bigint,
    headers           jsonb       NOT NULL,
    created_at        timestamptz NOT NULL,
    parked_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    error             text        NOT NULL
);

-- Wake the relay on commit: NOTIFY is delivered when the inserting
-- transaction commits, never before, and duplicates within one transaction
-- collapse into one notification.
-- The channel comes as the trigger's argument: the function body holds no
-- text derived from the schema name (a name containing $$ would end it).
CREATE FUNCTION {{.Schema}}.eventline_outbox_notify() RETURNS trigger
LANGUAGE plpgsql AS $eventline$
BEGIN
    PERFORM pg_notify(TG_ARGV[0], '');
    RETURN NULL;
END;
$eventline$;

CREATE TRIGGER eventline_outbox_notify
    AFTER INSERT ON {{.Schema}}.eventline_outbox
    FOR EACH STATEMENT EXECUTE FUNCTION {{.Schema}}.eventline_outbox_notify({{.Channel}});
