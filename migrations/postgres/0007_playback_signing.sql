-- Per-tenant secret that signs playback URLs (`?exp=&sig=`, HMAC-SHA256). Created on first use;
-- rotating it replaces the row, which invalidates every URL signed with the old secret.
CREATE TABLE playback_signing (
    tenant_id TEXT PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
    secret TEXT NOT NULL,
    created_at TEXT NOT NULL
);
