-- tus 1.0 resumable uploads. One row per upload resource (`/v1/uploads/{id}`); its bytes live in
-- a temp file named after the id until the upload completes and is promoted to object storage.
CREATE TABLE uploads (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    -- The video this upload becomes the source of; NULL for `Upload-Concat: partial` uploads.
    video_id      TEXT REFERENCES videos(id) ON DELETE CASCADE,
    -- Declared size in bytes; NULL while deferred (`Upload-Defer-Length: 1`).
    upload_length INTEGER,
    -- Durable offset: bytes [0, upload_offset) of the temp file are fsynced. Never ahead of disk.
    upload_offset INTEGER NOT NULL DEFAULT 0,
    -- The client's `Upload-Metadata` header, echoed verbatim on HEAD.
    metadata      TEXT NOT NULL DEFAULT '',
    concat        TEXT NOT NULL DEFAULT 'none' CHECK (concat IN ('none', 'partial', 'final')),
    -- 1 once validator plugins accepted the first 64 KiB (`check-head`).
    head_checked  INTEGER NOT NULL DEFAULT 0,
    -- Set when the bytes were promoted and the video queued (ms since the epoch).
    completed_at  INTEGER,
    -- Incomplete uploads are garbage-collected after this (ms since the epoch).
    expires_at    INTEGER NOT NULL,
    -- Write lock with a lease: a PATCH holds `lock_token` until `locked_until` (ms since the
    -- epoch) and renews it while it writes, so the lock works across api processes sharing this
    -- database and a crashed process's lock lapses by itself.
    lock_token    TEXT,
    locked_until  INTEGER,
    created_at    INTEGER NOT NULL
);
CREATE INDEX uploads_expiry ON uploads (completed_at, expires_at);
