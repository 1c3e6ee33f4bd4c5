-- Plugins installed through the admin API (`PUT /v1/plugins/{name}`): the catalog every process
-- of a deployment installs from. The component's bytes live in object storage at `blob_key`
-- (`plugins/<name>/<sha256>.wasm`); the manifest is small and kept here as uploaded.
CREATE TABLE plugin_catalog (
    name       TEXT PRIMARY KEY,
    version    TEXT NOT NULL,
    world      TEXT NOT NULL,
    sha256     TEXT NOT NULL,
    manifest   TEXT NOT NULL,
    blob_key   TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
