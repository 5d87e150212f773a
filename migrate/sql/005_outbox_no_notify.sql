-- The relay no longer needs a notification per committed transaction: it
-- probes the outbox's primary key index instead (relay/probe.go). NOTIFY
-- took a cluster-wide lock at every commit, so concurrent commits could not
-- share a WAL flush, and the writers' business transactions paid for it
-- (#13: 0.39 of the business-only rate with the trigger, 0.635 without).
DROP TRIGGER eventline_outbox_notify ON {{.Schema}}.eventline_outbox;
DROP FUNCTION {{.Schema}}.eventline_outbox_notify();
