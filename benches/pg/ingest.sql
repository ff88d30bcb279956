-- The ingest statement hookflow sends per flush window, here with one
-- event and its run per transaction (no group commit): the database's
-- ceiling for durable acks when every ack waits for its own commit.
-- Ids are time-ordered, as hookflow's are, so rows land in today's
-- partition.
\set n random(1, 1000000000)
BEGIN;
WITH ids AS (
    SELECT lpad(to_hex((extract(epoch FROM clock_timestamp()) * 1000)::bigint << 16), 16, '0')
           || lpad(to_hex(:n), 16, '0') AS hex
), e AS (
    INSERT INTO hookflow.events (id, received_at, outcome, workflows, runs, bytes, record)
    SELECT 'evt_' || hex, 0, 'accepted', ',w,', ARRAY['run_' || hex], 1500, repeat('x', 1500) FROM ids
), r AS (
    INSERT INTO hookflow.runs (id, event_id, workflow, status, created_at, bytes, plan, head)
    SELECT 'run_' || hex, 'evt_' || hex, 'w', 'queued', 0, 500, '[["a","transform"],["b","http"]]', repeat('h', 400) FROM ids
)
INSERT INTO hookflow.queue (run_id, due, node, token, lease_until)
SELECT 'run_' || hex, 0, 'node_bench', :n, now() + interval '15 seconds' FROM ids;
COMMIT;
