-- The operator registry of persisted documents (trusted documents). `id` is
-- what clients send (a manifest's id: Apollo's SHA-256 of the body, or any
-- id Relay's compiler chose); `sha256` is the body's own hash, so a client
-- sending the APQ extension or the full body finds the same row. `client`
-- scopes a document to one `apollographql-client-name` ('' = every client).
-- `cost` is the worst case (every page at its maximum), computed once at
-- registration.
CREATE TABLE persisted_documents (
    id             TEXT   COLLATE "C" NOT NULL,
    client         TEXT   COLLATE "C" NOT NULL DEFAULT '',
    sha256         TEXT   NOT NULL,
    name           TEXT,
    operation_type TEXT   NOT NULL,
    body           TEXT   NOT NULL,
    cost           BIGINT NOT NULL,
    registered_at  TEXT   NOT NULL,
    PRIMARY KEY (id, client)
);

CREATE INDEX persisted_documents_sha256 ON persisted_documents (sha256);
