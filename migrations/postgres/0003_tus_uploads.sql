-- tus 1.0 resumable uploads. One row per upload resource (`/v1/uploads/{id}`); its bytes live in
-- a temp file named after the id until the upload completes and is promoted to object storage.
CREATE TABLE uploads (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    -- The video this upload becomes the source of; NULL for `Upload-Concat: partial` uploads.
    video_id      TEXT REFERENCES videos(id) ON DELETE CASCADE,
    -- Declared size in bytes; NULL while deferred (`Upload-Defer-Length: 1`).
    upload_length BIGINT,
    -- Durable offset: bytes [0, upload_offset) of the temp file are fsynced. Never ahead of disk.
    upload_offset BIGINT NOT NULL DEFAULT 0,
    -- The client's `Upload-Metadata` header, echoed verbatim on HEAD.
    metadata      TEXT NOT NULL DEFAULT '',
    concat        TEXT NOT NULL DEFAULT 'none' CHECK (concat IN ('none', 'partial', 'final')),
    -- True once validator plugins accepted the first 64 KiB (`check-head`).
    head_checked  BOOLEAN NOT NULL DEFAULT FALSE,
    -- Set when the bytes were promoted and the video queued (ms since the epoch).
    completed_at  BIGINT,
    -- Incomplete uploads are garbage-collected after this (ms since the epoch).
    expires_at    BIGINT NOT NULL,
    -- Write lock with a lease: a PATCH holds `lock_token` until `locked_until` (ms since the
    -- epoch) and renews it while it writes. It is taken with one conditional UPDATE; under
    -- concurrent PATCHes from several api processes PostgreSQL's row lock makes the second
    -- UPDATE re-check the condition after the first commits, so exactly one wins.
    lock_token    TEXT,
    locked_until  BIGINT,
    created_at    BIGINT NOT NULL
);
CREATE INDEX uploads_expiry ON uploads (completed_at, expires_at);
