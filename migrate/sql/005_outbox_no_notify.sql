-- The relay no longer needs a notification per committed transaction: it
-- probes the outbox's primary key index instead (relay/probe.go). NOTIFY
-- took a cluster-wide lock at every commit, so concurrent commits could not
-- share a WAL flush, and the writers' business transactions paid for it
-- (#13: 0.39 of the business-only rate with the trigger, 0.635 without).
-- IF EXISTS: an operator may have dropped them by hand already.
-- A relay of an older version, still waiting for notifications, falls back
-- to its poll (every PollInterval, 2 s by default) until it is upgraded.
DROP TRIGGER IF EXISTS eventline_outbox_notify ON {{.Schema}}.eventline_outbox;
DROP FUNCTION IF EXISTS {{.Schema}}.eventline_outbox_notify();
