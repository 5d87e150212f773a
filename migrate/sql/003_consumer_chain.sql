-- Key-order-preserving retries: while an event of key K is in a consumer
-- group's retry chain, later events of K follow it instead of overtaking
-- it. A row here means "the event at this source offset is in the chain";
-- rows are written and deleted in the same transactions as the effects.
CREATE TABLE {{.Schema}}.eventline_consumer_chain (
    group_id      text        NOT NULL,
    topic         text        NOT NULL,
    partition     integer     NOT NULL,
    key           bytea       NOT NULL,
    source_offset bigint      NOT NULL,
    entered_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, topic, key, partition, source_offset)
);
