-- The claim of a free run (FOR UPDATE SKIP LOCKED) and the fenced
-- statement that finishes it (queue row deleted, head and step rows
-- written), each its own transaction, as hookflow sends them. Needs free
-- queue rows: run.sh fills the queue first.
WITH free AS (
    SELECT run_id FROM hookflow.queue WHERE node IS NULL AND due <= 9000000000000
     ORDER BY due LIMIT 1 FOR UPDATE SKIP LOCKED
)
UPDATE hookflow.queue q SET node = 'node_bench', token = nextval('hookflow.lease_tokens'),
       lease_until = now() + interval '15 seconds'
  FROM free WHERE q.run_id = free.run_id
RETURNING q.run_id AS run_id, q.token AS token
\gset
WITH fence AS (
    DELETE FROM hookflow.queue WHERE run_id = ':run_id' AND token = :token RETURNING run_id
), head AS (
    UPDATE hookflow.runs SET head = repeat('f', 450), status = 'succeeded', bytes = bytes + 900
     WHERE id = ':run_id' AND EXISTS (SELECT 1 FROM fence)
), st AS (
    INSERT INTO hookflow.steps (run_id, idx, record)
    SELECT ':run_id', i, repeat('s', 200) FROM generate_series(0, 1) AS i
     WHERE EXISTS (SELECT 1 FROM fence)
    ON CONFLICT (run_id, idx) DO UPDATE SET record = EXCLUDED.record
)
INSERT INTO hookflow.attempts (run_id, step_idx, n, record)
SELECT ':run_id', 1, 0, repeat('a', 600) WHERE EXISTS (SELECT 1 FROM fence)
ON CONFLICT DO NOTHING;
