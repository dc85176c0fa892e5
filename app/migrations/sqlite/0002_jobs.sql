-- Background jobs. The row is the truth about a job; a queue (Redis Streams, or this table
-- itself in the embedded default) only carries its id to a worker.
--   status: pending (waiting), running (leased by locked_by until locked_until), failed (an
--   attempt failed; retried at run_after), completed, dead (attempts exhausted).
--   enqueued_at: when the id was last handed to the queue; NULL means the reconciler must
--   hand it over (again) once run_after has passed.
CREATE TABLE jobs (
    id           BLOB PRIMARY KEY NOT NULL,
    kind         TEXT NOT NULL,
    payload      TEXT NOT NULL,
    status       TEXT NOT NULL DEFAULT 'pending',
    attempts     INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    last_error   TEXT,
    result       TEXT,
    run_after    TEXT NOT NULL,
    enqueued_at  TEXT,
    locked_by    TEXT,
    locked_until TEXT,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    finished_at  TEXT
);
-- Claiming the next due job, and the reconciler's scans.
CREATE INDEX jobs_due ON jobs (status, run_after);
-- Listing jobs by status for the API.
CREATE INDEX jobs_status_id ON jobs (status, id);

ALTER TABLE documents ADD COLUMN analysis TEXT;
ALTER TABLE documents ADD COLUMN analysis_error TEXT;
ALTER TABLE documents ADD COLUMN analyzed_at TEXT;
ALTER TABLE documents ADD COLUMN job_id BLOB;
