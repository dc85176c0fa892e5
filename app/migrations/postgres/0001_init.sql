-- FertiVision schema, PostgreSQL flavour. Ids are uuid v7, so they sort by creation time.

CREATE TABLE patients (
    id            uuid PRIMARY KEY,
    mrn           text NOT NULL,
    name          text NOT NULL,
    date_of_birth date NOT NULL,
    sex           text NOT NULL,
    email         text,
    phone         text,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);
-- GET /patients?mrn= and the uniqueness of a record number within the clinic.
CREATE UNIQUE INDEX patients_mrn ON patients (mrn);

CREATE TABLE analyses (
    id         uuid PRIMARY KEY,
    patient_id uuid NOT NULL REFERENCES patients (id) ON DELETE CASCADE,
    kind       text NOT NULL,
    input      jsonb NOT NULL,
    result     jsonb NOT NULL,
    created_at timestamptz NOT NULL
);
-- GET /patients/{id}/analyses and the evidence for the score.
CREATE INDEX analyses_patient ON analyses (patient_id, id);

CREATE TABLE documents (
    id              uuid PRIMARY KEY,
    patient_id      uuid NOT NULL REFERENCES patients (id) ON DELETE CASCADE,
    document_type   text NOT NULL,
    filename        text NOT NULL,
    content_type    text NOT NULL,
    size_bytes      bigint NOT NULL,
    sha256          text NOT NULL,
    object_key      text NOT NULL,
    analysis_status text NOT NULL DEFAULT 'pending',
    created_at      timestamptz NOT NULL
);
-- GET /patients/{id}/documents, paged by id.
CREATE INDEX documents_patient ON documents (patient_id, id);

-- The latest fertility score per patient, recomputed in the transaction that changes its inputs.
CREATE TABLE fertility_scores (
    patient_id  uuid PRIMARY KEY REFERENCES patients (id) ON DELETE CASCADE,
    score       double precision NOT NULL,
    band        text NOT NULL,
    computed_at timestamptz NOT NULL
);

-- The patient summary, pre-computed for clinic dashboards that list thousands of patients.
-- Refreshed CONCURRENTLY (readers are never blocked) after every write that changes an input;
-- the unique index is what CONCURRENTLY requires.
CREATE MATERIALIZED VIEW patient_summaries AS
SELECT
    p.id AS patient_id,
    coalesce(d.document_count, 0)::bigint AS document_count,
    (coalesce(a.analysis_count, 0) + coalesce(d.completed_documents, 0))::bigint AS completed_analyses,
    s.score AS latest_score,
    s.band AS latest_band,
    d.last_document_at
FROM patients p
LEFT JOIN (
    SELECT patient_id,
           count(*) AS document_count,
           count(*) FILTER (WHERE analysis_status = 'completed') AS completed_documents,
           max(created_at) AS last_document_at
    FROM documents GROUP BY patient_id
) d ON d.patient_id = p.id
LEFT JOIN (
    SELECT patient_id, count(*) AS analysis_count FROM analyses GROUP BY patient_id
) a ON a.patient_id = p.id
LEFT JOIN fertility_scores s ON s.patient_id = p.id;

CREATE UNIQUE INDEX patient_summaries_patient ON patient_summaries (patient_id);

CREATE TABLE api_tokens (
    id         uuid PRIMARY KEY,
    token_hash text NOT NULL,
    role       text NOT NULL,
    label      text NOT NULL,
    created_at timestamptz NOT NULL
);
-- Every request looks its token up by hash.
CREATE UNIQUE INDEX api_tokens_hash ON api_tokens (token_hash);
