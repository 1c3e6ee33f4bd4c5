-- A tenant's own quota; NULL takes the deployment default (`[quotas]` in the config).
ALTER TABLE tenants ADD COLUMN max_upload_bytes BIGINT;
ALTER TABLE tenants ADD COLUMN max_storage_bytes BIGINT;
ALTER TABLE tenants ADD COLUMN max_concurrent_uploads BIGINT;
