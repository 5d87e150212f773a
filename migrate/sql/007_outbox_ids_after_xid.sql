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
-- plain column whose default calls pg_current_xact_id() and then nextval:
-- CASE evaluates its condition first, and neither call is folded away
-- (both are volatile). The new sequence continues where the identity's
-- stopped, under a lock that holds off concurrent inserts until commit;
-- CACHE 1 keeps ids in the order they were taken across sessions.
--
-- A default's nextval runs with the inserting role's privileges, where an
-- identity needed none: USAGE goes to PUBLIC, so every role that may
-- insert into the outbox still can, without a grant per service. It lets a
-- role take ids and nothing else (setval needs UPDATE): a taken id that is
-- never inserted is a gap, which rolled-back inserts make anyway. A
-- SECURITY DEFINER function would avoid the grant, but cost each insert
-- 10-15 % more (its search_path setting is saved and restored per call:
-- pgbench, one insert per transaction, on the project's 2-core VM).
LOCK TABLE {{.Schema}}.eventline_outbox IN EXCLUSIVE MODE;
CREATE SEQUENCE {{.Schema}}.eventline_outbox_ids AS bigint CACHE 1;
SELECT setval({{.OutboxIDs}}, s.last_value, s.is_called) FROM {{.Schema}}.eventline_outbox_id_seq s;
GRANT USAGE ON SEQUENCE {{.Schema}}.eventline_outbox_ids TO PUBLIC;
ALTER TABLE {{.Schema}}.eventline_outbox ALTER COLUMN id DROP IDENTITY;
ALTER SEQUENCE {{.Schema}}.eventline_outbox_ids OWNED BY {{.Schema}}.eventline_outbox.id;
ALTER TABLE {{.Schema}}.eventline_outbox ALTER COLUMN id
    SET DEFAULT CASE WHEN pg_catalog.pg_current_xact_id() IS NOT NULL THEN pg_catalog.nextval({{.OutboxIDs}}::pg_catalog.regclass) END;
