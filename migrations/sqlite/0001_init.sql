-- Tenants own videos; API keys authenticate as a tenant and are stored only as sha256 hashes.
CREATE TABLE tenants (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL
);

CREATE TABLE api_keys (
    id         TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    key_hash   TEXT NOT NULL UNIQUE,
    -- First characters of the key, so an operator can tell keys apart without the secret.
    prefix     TEXT NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);

CREATE TABLE videos (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    title       TEXT NOT NULL,
    filename    TEXT,
    status      TEXT NOT NULL CHECK (status IN ('awaiting_upload', 'queued', 'processing', 'ready', 'failed')),
    error       TEXT,
    size        INTEGER,
    sha256      TEXT,
    -- Probed MediaInfo as JSON.
    source_info TEXT,
    -- Rendition list as JSON.
    renditions  TEXT NOT NULL DEFAULT '[]',
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE INDEX videos_by_tenant ON videos (tenant_id, created_at);

-- The embedded durable job queue. A job is `ready` until a worker leases it; a lease expires at
-- `leased_until` (ms since the epoch) so a dead worker's job becomes visible again.
CREATE TABLE jobs (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    payload      TEXT NOT NULL,
    priority     INTEGER NOT NULL DEFAULT 0,
    state        TEXT NOT NULL CHECK (state IN ('ready', 'leased', 'done', 'dead')),
    attempts     INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    available_at INTEGER NOT NULL,
    lease_token  TEXT,
    leased_until INTEGER,
    last_error   TEXT,
    created_at   INTEGER NOT NULL,
    finished_at  INTEGER
);
CREATE INDEX jobs_pending ON jobs (state, priority DESC, available_at, id);
