-- FertiVision schema, SQLite flavour. UUIDs are 16-byte BLOBs (uuid v7, so ids sort by
-- creation time); timestamps are RFC 3339 TEXT; JSON is TEXT.

CREATE TABLE patients (
    id            BLOB PRIMARY KEY NOT NULL,
    mrn           TEXT NOT NULL,
    name          TEXT NOT NULL,
    date_of_birth TEXT NOT NULL,
    sex           TEXT NOT NULL,
    email         TEXT,
    phone         TEXT,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
-- GET /patients?mrn= and the uniqueness of a record number within the clinic.
CREATE UNIQUE INDEX patients_mrn ON patients (mrn);

CREATE TABLE analyses (
    id         BLOB PRIMARY KEY NOT NULL,
    patient_id BLOB NOT NULL REFERENCES patients (id) ON DELETE CASCADE,
    kind       TEXT NOT NULL,
    input      TEXT NOT NULL,
    result     TEXT NOT NULL,
    created_at TEXT NOT NULL
);
-- GET /patients/{id}/analyses (newest last) and the evidence for the score.
CREATE INDEX analyses_patient ON analyses (patient_id, id);

CREATE TABLE documents (
    id              BLOB PRIMARY KEY NOT NULL,
    patient_id      BLOB NOT NULL REFERENCES patients (id) ON DELETE CASCADE,
    document_type   TEXT NOT NULL,
    filename        TEXT NOT NULL,
    content_type    TEXT NOT NULL,
    size_bytes      INTEGER NOT NULL,
    sha256          TEXT NOT NULL,
    object_key      TEXT NOT NULL,
    analysis_status TEXT NOT NULL DEFAULT 'pending',
    created_at      TEXT NOT NULL
);
-- GET /patients/{id}/documents, paged by id.
CREATE INDEX documents_patient ON documents (patient_id, id);

-- The latest fertility score per patient, recomputed in the transaction that changes its inputs.
CREATE TABLE fertility_scores (
    patient_id  BLOB PRIMARY KEY NOT NULL REFERENCES patients (id) ON DELETE CASCADE,
    score       REAL NOT NULL,
    band        TEXT NOT NULL,
    computed_at TEXT NOT NULL
);

-- The patient summary. PostgreSQL has a materialized view; here it is a table kept up to date
-- in the same transaction as every write that changes one of its inputs.
CREATE TABLE patient_summaries (
    patient_id         BLOB PRIMARY KEY NOT NULL REFERENCES patients (id) ON DELETE CASCADE,
    document_count     INTEGER NOT NULL,
    completed_analyses INTEGER NOT NULL,
    latest_score       REAL,
    latest_band        TEXT,
    last_document_at   TEXT
);

CREATE TABLE api_tokens (
    id         BLOB PRIMARY KEY NOT NULL,
    token_hash TEXT NOT NULL,
    role       TEXT NOT NULL,
    label      TEXT NOT NULL,
    created_at TEXT NOT NULL
);
-- Every request looks its token up by hash.
CREATE UNIQUE INDEX api_tokens_hash ON api_tokens (token_hash);
