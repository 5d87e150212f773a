-- When the retry copy of each chain entry becomes due. A later event of
-- the same key is deferred until its predecessors' copies are due (plus a
-- small gap) instead of for a whole retry delay of its own, so a key's
-- events leave the chain together right after the event that failed.
-- NULL for rows written before this column existed: their followers wait
-- a full retry delay, as they used to.
ALTER TABLE {{.Schema}}.eventline_consumer_chain ADD COLUMN due_at timestamptz;
