//! Tenant quotas and what each tenant uses of them.
//!
//! Usage is computed from the rows that hold it (stored sources, open uploads) rather than kept
//! as counters, so it cannot drift from what is really stored, whichever process stored it.

use mediahost_core::{Quota, Usage};
use sqlx::Row;

use crate::{Store, StoreError};

fn to_db(limit: Option<u64>) -> Option<i64> {
    limit.map(|v| i64::try_from(v).unwrap_or(i64::MAX))
}

fn from_db(value: Option<i64>) -> Option<u64> {
    value.map(|v| v.max(0) as u64)
}

impl Store {
    /// The tenant's own quota (unset limits fall back to the deployment's defaults).
    pub async fn tenant_quota(&self, tenant_id: &str) -> Result<Quota, StoreError> {
        let row = sqlx::query(
            "SELECT max_upload_bytes, max_storage_bytes, max_concurrent_uploads \
             FROM tenants WHERE id = $1",
        )
        .bind(tenant_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(Quota {
            max_upload_bytes: from_db(row.get(0)),
            max_storage_bytes: from_db(row.get(1)),
            max_concurrent_uploads: from_db(row.get(2)).map(|v| v.min(u32::MAX as u64) as u32),
        })
    }

    /// Replaces the tenant's own quota.
    pub async fn set_tenant_quota(&self, tenant_id: &str, quota: &Quota) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE tenants SET max_upload_bytes = $1, max_storage_bytes = $2, \
             max_concurrent_uploads = $3 WHERE id = $4",
        )
        .bind(to_db(quota.max_upload_bytes))
        .bind(to_db(quota.max_storage_bytes))
        .bind(quota.max_concurrent_uploads.map(i64::from))
        .bind(tenant_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// What the tenant stores and has open at `now_ms`: stored source bytes, the bytes open
    /// uploads declared (their offset while the length is deferred), and how many are open.
    /// Completed partial uploads are not counted: their bytes end up in a final upload.
    pub async fn tenant_usage(&self, tenant_id: &str, now_ms: i64) -> Result<Usage, StoreError> {
        let stored: i64 = sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM videos WHERE tenant_id = $1",
        )
        .bind(tenant_id)
        .fetch_one(&self.pool)
        .await?;
        let open = sqlx::query(
            "SELECT COUNT(*), CAST(COALESCE(SUM(COALESCE(upload_length, upload_offset)), 0) AS BIGINT) \
             FROM uploads WHERE tenant_id = $1 AND completed_at IS NULL AND expires_at > $2",
        )
        .bind(tenant_id)
        .bind(now_ms)
        .fetch_one(&self.pool)
        .await?;
        let count: i64 = open.get(0);
        let reserved: i64 = open.get(1);
        Ok(Usage {
            stored_bytes: stored.max(0) as u64,
            reserved_bytes: reserved.max(0) as u64,
            open_uploads: count.clamp(0, u32::MAX as i64) as u32,
        })
    }
}

#[cfg(test)]
mod tests {
    use mediahost_core::{Quota, Usage};

    use crate::uploads::{Concat, NewUpload};
    use crate::videos::NewVideo;

    crate::backend_tests! {
        async fn a_quota_round_trips_and_unset_limits_stay_unset(store) {
            let (tenant, _) = store.create_tenant("acme").await.unwrap();
            assert_eq!(store.tenant_quota(&tenant.id).await.unwrap(), Quota::default());
            let quota = Quota {
                max_upload_bytes: Some(5 << 30),
                max_storage_bytes: None,
                max_concurrent_uploads: Some(3),
            };
            store.set_tenant_quota(&tenant.id, &quota).await.unwrap();
            assert_eq!(store.tenant_quota(&tenant.id).await.unwrap(), quota);
        }

        async fn usage_counts_stored_sources_and_open_uploads_of_that_tenant_only(store) {
            let (acme, _) = store.create_tenant("acme").await.unwrap();
            let (other, _) = store.create_tenant("other").await.unwrap();
            let new_video = NewVideo {
                title: "t".into(),
                filename: None,
            };
            let stored = store.create_video(&acme.id, &new_video).await.unwrap();
            store.mark_uploaded(&stored.id, 1000, "00").await.unwrap();
            let now = 1_000_000;
            let upload = |tenant_id: &str, length, expires_at| NewUpload {
                tenant_id: tenant_id.to_owned(),
                video_id: None,
                length,
                metadata: String::new(),
                concat: Concat::None,
                expires_at,
            };
            for (tenant, length, expires_at) in [
                (&acme.id, Some(300), now + 1),
                (&acme.id, None, now + 1),
                // Expired, and another tenant's: neither counts.
                (&acme.id, Some(7), now),
                (&other.id, Some(9), now + 1),
            ] {
                store.create_upload(&upload(tenant, length, expires_at)).await.unwrap();
            }
            assert_eq!(
                store.tenant_usage(&acme.id, now).await.unwrap(),
                Usage {
                    stored_bytes: 1000,
                    reserved_bytes: 300,
                    open_uploads: 2,
                }
            );
        }
    }
}
