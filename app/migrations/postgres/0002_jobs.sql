-- Background jobs. The row is the truth about a job; a queue (Redis Streams, or this table
-- itself when no Redis is configured) only carries its id to a worker.
--   status: pending (waiting), running (leased by locked_by until locked_until), failed (an
--   attempt failed; retried at run_after), completed, dead (attempts exhausted).
--   enqueued_at: when the id was last handed to the queue; NULL means the reconciler must
--   hand it over (again) once run_after has passed.
CREATE TABLE jobs (
    id           uuid PRIMARY KEY,
    kind         text NOT NULL,
    payload      jsonb NOT NULL,
    status       text NOT NULL DEFAULT 'pending',
    attempts     integer NOT NULL DEFAULT 0,
    max_attempts integer NOT NULL,
    last_error   text,
    result       jsonb,
    run_after    timestamptz NOT NULL,
    enqueued_at  timestamptz,
    locked_by    text,
    locked_until timestamptz,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    finished_at  timestamptz
);
-- Claiming the next due job, and the reconciler's scans.
CREATE INDEX jobs_due ON jobs (status, run_after);
-- Listing jobs by status for the API.
CREATE INDEX jobs_status_id ON jobs (status, id);

ALTER TABLE documents ADD COLUMN analysis jsonb;
ALTER TABLE documents ADD COLUMN analysis_error text;
ALTER TABLE documents ADD COLUMN analyzed_at timestamptz;
ALTER TABLE documents ADD COLUMN job_id uuid;
