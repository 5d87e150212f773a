-- Outbox ids are taken only after the inserting transaction has an xid.
-- The poll-mode relay may then read above the ids it has already read (a
-- floor) instead of from the lowest id, which after a large backlog walks
-- the index entries of every row deleted since vacuum last ran. A floor is
-- safe once no transaction that could still commit a row below it is
-- running, and with the xid taken first the relay can prove that from
-- snapshots: every id below one it has read was taken by a transaction
-- whose xid is below any xid assigned after that read, and a snapshot whose
-- xmin is above such an xid shows all of those transactions finished
-- (relay/floor.go).
--
-- An identity column cannot take another default, so the id becomes a
-- plain column whose default calls a function: pg_current_xact_id() and
-- then nextval. CASE evaluates its condition first, and neither call is
-- folded away (both are volatile). The new sequence continues where the
-- identity's stopped, under a lock that holds off concurrent inserts until
-- commit; CACHE 1 keeps ids in the order they were taken across sessions.
--
-- The function runs as its owner (SECURITY DEFINER), as the identity did:
-- a role with INSERT on the outbox needs no grant on the sequence. It only
-- ever advances this sequence. Its body is a quoted string, not a
-- dollar-quoted one: the sequence's name in it holds the schema's, which
-- may contain any character.
LOCK TABLE {{.Schema}}.eventline_outbox IN EXCLUSIVE MODE;
CREATE SEQUENCE {{.Schema}}.eventline_outbox_ids AS bigint CACHE 1;
SELECT setval({{.OutboxIDs}}, s.last_value, s.is_called) FROM {{.Schema}}.eventline_outbox_id_seq s;
CREATE FUNCTION {{.Schema}}.eventline_outbox_next_id() RETURNS bigint
    LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS {{.NextIDBody}};
ALTER TABLE {{.Schema}}.eventline_outbox ALTER COLUMN id DROP IDENTITY;
ALTER SEQUENCE {{.Schema}}.eventline_outbox_ids OWNED BY {{.Schema}}.eventline_outbox.id;
ALTER TABLE {{.Schema}}.eventline_outbox ALTER COLUMN id SET DEFAULT {{.Schema}}.eventline_outbox_next_id();
