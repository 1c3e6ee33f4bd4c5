//! tus upload resources: declared length, durable offset, expiry and the write lock.
//!
//! The lock (when the deployment keeps it in the database, the default) is a lease in the row
//! (`lock_token`, `locked_until`), taken with one conditional `UPDATE`, so it holds across every
//! api process sharing the database, and a process that dies mid-write stops renewing it and the
//! lease lapses by itself. Whoever holds the lock (here or in Redis) takes a new *writer
//! generation* with it ([`Upload::writer`], one more than the last), and every write that moves
//! the upload on names it: a writer that lost its lease and was taken over changes nothing.
//!
//! The statements of an upload in progress (taking, renewing and releasing the lease, a new
//! writer generation, moving the durable offset) commit on the store's lazy pool: they return
//! before the disk has the commit. A crash of the process loses none of them. A power loss
//! or an OS crash (or a crash of the PostgreSQL server) may undo the last ones, and that is
//! safe, because those statements only ever record
//! progress whose bytes are already durable, and the database never keeps a later commit
//! while it undoes an earlier one:
//! - an undone offset is an older durable offset: `HEAD` reports it, the client resends from
//!   there (what a tus client does after any interruption), and the bytes beyond it are cut
//!   when the next writer opens the part;
//! - an undone lease or release concerns writers that died with the machine;
//! - an undone writer generation is taken again by the next writer, whose pieces then replace
//!   the dead writer's of the same name (in object storage), while a piece the dead writer
//!   stored elsewhere is beyond the durable offset and never read.
//!
//! Whatever else an upload does (creating it, fixing a deferred length, completing it and
//! queueing its video) commits durably, and with it every lazy commit before.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::tenants::hash_api_key;
use crate::{Store, StoreError, corrupt, new_id};

/// Milliseconds since the Unix epoch: the clock of expiry and lock leases.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// How an upload takes part in the tus concatenation extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Concat {
    /// An ordinary upload: it becomes a video's source.
    None,
    /// `Upload-Concat: partial`: a piece of a later final upload; no video of its own.
    Partial,
    /// `Upload-Concat: final;…`: the concatenation of completed partials.
    Final,
}

impl Concat {
    fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Partial => "partial",
            Self::Final => "final",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "none" => Ok(Self::None),
            "partial" => Ok(Self::Partial),
            "final" => Ok(Self::Final),
            other => Err(corrupt(
                "uploads.concat",
                format!("unknown value {other:?}"),
            )),
        }
    }
}

/// One tus upload resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    /// The id in `/v1/uploads/{id}`; also names the temp file.
    pub id: String,
    /// Owner; other tenants see "not found".
    pub tenant_id: String,
    /// The video this upload fills; `None` for partial uploads.
    pub video_id: Option<String>,
    /// Declared length; `None` while deferred.
    pub length: Option<u64>,
    /// Durable offset (bytes fsynced in the temp file).
    pub offset: u64,
    /// The raw `Upload-Metadata` header.
    pub metadata: String,
    /// Concatenation role.
    pub concat: Concat,
    /// Validators accepted the first bytes.
    pub head_checked: bool,
    /// When it completed (ms since the epoch).
    pub completed_at: Option<i64>,
    /// When an incomplete upload expires (ms since the epoch).
    pub expires_at: i64,
    /// The generation of its writers: bumped by every writer that takes the upload's lock, so
    /// read under a lock it is that writer's own, the fence of its writes.
    pub writer: u64,
}

impl Upload {
    /// All declared bytes are durable.
    pub fn is_full(&self) -> bool {
        self.length == Some(self.offset)
    }

    /// Expired at `now` (only incomplete uploads expire).
    pub fn is_expired(&self, now: i64) -> bool {
        self.completed_at.is_none() && self.expires_at <= now
    }
}

/// What creating an upload records.
#[derive(Debug, Clone)]
pub struct NewUpload {
    /// Owner.
    pub tenant_id: String,
    /// The video it fills (none for partials).
    pub video_id: Option<String>,
    /// Declared length, `None` when deferred.
    pub length: Option<u64>,
    /// The raw `Upload-Metadata` header.
    pub metadata: String,
    /// Concatenation role.
    pub concat: Concat,
    /// Expiry (ms since the epoch).
    pub expires_at: i64,
}

/// `head_checked` is INTEGER 0/1 on SQLite and BOOLEAN on PostgreSQL; the CASE reads both as
/// an integer.
const COLUMNS: &str = "id, tenant_id, video_id, upload_length, upload_offset, metadata, concat, \
                       CASE WHEN head_checked THEN 1 ELSE 0 END AS head_checked, completed_at, \
                       expires_at, writer";

fn upload_from_row(row: &AnyRow) -> Result<Upload, StoreError> {
    let length: Option<i64> = row.get("upload_length");
    let offset: i64 = row.get("upload_offset");
    let concat: String = row.get("concat");
    Ok(Upload {
        id: row.get("id"),
        tenant_id: row.get("tenant_id"),
        video_id: row.get("video_id"),
        length: length.map(|l| l as u64),
        offset: offset as u64,
        metadata: row.get("metadata"),
        concat: Concat::parse(&concat)?,
        head_checked: row.get::<i64, _>("head_checked") != 0,
        completed_at: row.get("completed_at"),
        expires_at: row.get("expires_at"),
        writer: row.get::<i64, _>("writer") as u64,
    })
}

impl Store {
    /// Records a new upload at offset 0.
    pub async fn create_upload(&self, new: &NewUpload) -> Result<Upload, StoreError> {
        let id = new_id();
        sqlx::query(
            "INSERT INTO uploads (id, tenant_id, video_id, upload_length, metadata, concat, \
             expires_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&id)
        .bind(&new.tenant_id)
        .bind(&new.video_id)
        .bind(new.length.map(|l| l as i64))
        .bind(&new.metadata)
        .bind(new.concat.as_str())
        .bind(new.expires_at)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(Upload {
            id,
            tenant_id: new.tenant_id.clone(),
            video_id: new.video_id.clone(),
            length: new.length,
            offset: 0,
            metadata: new.metadata.clone(),
            concat: new.concat,
            head_checked: false,
            completed_at: None,
            expires_at: new.expires_at,
            writer: 0,
        })
    }

    /// A tenant's upload; `None` when missing or another tenant's.
    pub async fn upload(&self, tenant_id: &str, id: &str) -> Result<Option<Upload>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM uploads WHERE id = $1 AND tenant_id = $2"
        ))
        .bind(id)
        .bind(tenant_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(upload_from_row).transpose()
    }

    /// Takes the write lock of `tenant_id`'s upload `id` for `lease_ms` unless another live
    /// lease holds it, with a new writer generation, and returns the lock token with the row as
    /// it stands under the lock, in one statement: the lock, the tenant check and the read a
    /// writer needs cost one round trip. `None` when the upload is locked, another tenant's or
    /// gone ([`Self::upload`] tells which).
    pub async fn lock_upload_of(
        &self,
        tenant_id: &str,
        id: &str,
        lease_ms: i64,
    ) -> Result<Option<(String, Upload)>, StoreError> {
        self.lock_upload_where("tenant_id = $4", tenant_id, id, lease_ms)
            .await
    }

    /// Like [`Self::lock_upload_of`], for the tenant of the API key `key` (not revoked): the
    /// statement checks the key itself, so it needs no tenant looked up before it. `None` also
    /// when the key is unknown or revoked.
    pub async fn lock_upload_by_key(
        &self,
        key: &str,
        id: &str,
        lease_ms: i64,
    ) -> Result<Option<(String, Upload)>, StoreError> {
        self.lock_upload_where(
            "tenant_id = (SELECT tenant_id FROM api_keys WHERE key_hash = $4 AND revoked_at IS NULL)",
            &hash_api_key(key),
            id,
            lease_ms,
        )
        .await
    }

    /// The locking `UPDATE`, for the upload `id` whose tenant `tenant_is` (SQL binding `$4` to
    /// `tenant`) accepts.
    async fn lock_upload_where(
        &self,
        tenant_is: &str,
        tenant: &str,
        id: &str,
        lease_ms: i64,
    ) -> Result<Option<(String, Upload)>, StoreError> {
        let token = new_id();
        let now = now_ms();
        let row = sqlx::query(&format!(
            "UPDATE uploads SET lock_token = $1, locked_until = $2, writer = writer + 1 \
             WHERE id = $3 AND {tenant_is} AND (locked_until IS NULL OR locked_until <= $5) \
             RETURNING {COLUMNS}"
        ))
        .bind(&token)
        .bind(now + lease_ms)
        .bind(id)
        .bind(tenant)
        .bind(now)
        .fetch_optional(&self.progress)
        .await?;
        row.as_ref()
            .map(|row| Ok((token.clone(), upload_from_row(row)?)))
            .transpose()
    }

    /// Takes a new writer generation for `tenant_id`'s upload `id`, whose lock the caller
    /// holds outside the database (Redis), and returns the row as it stands under that lock
    /// ([`Upload::writer`] is the caller's); `None` when the tenant has no such upload.
    pub async fn claim_upload(
        &self,
        tenant_id: &str,
        id: &str,
    ) -> Result<Option<Upload>, StoreError> {
        let row = sqlx::query(&format!(
            "UPDATE uploads SET writer = writer + 1 WHERE id = $1 AND tenant_id = $2 \
             RETURNING {COLUMNS}"
        ))
        .bind(id)
        .bind(tenant_id)
        .fetch_optional(&self.progress)
        .await?;
        row.as_ref().map(upload_from_row).transpose()
    }

    /// Extends the lease; false when the lock was lost (lapsed and taken by another writer).
    pub async fn renew_upload_lock(
        &self,
        id: &str,
        token: &str,
        lease_ms: i64,
    ) -> Result<bool, StoreError> {
        let done =
            sqlx::query("UPDATE uploads SET locked_until = $1 WHERE id = $2 AND lock_token = $3")
                .bind(now_ms() + lease_ms)
                .bind(id)
                .bind(token)
                .execute(&self.progress)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Releases the lock if `token` still holds it.
    pub async fn unlock_upload(&self, id: &str, token: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE uploads SET lock_token = NULL, locked_until = NULL WHERE id = $1 AND lock_token = $2",
        )
        .bind(id)
        .bind(token)
        .execute(&self.progress)
        .await?;
        Ok(())
    }

    /// Moves the durable offset (call only after the bytes are fsynced) and records whether the
    /// head was checked; with `release`, also releases a lock held in the row (the writer's
    /// last move: one write instead of two). False when `writer` is no longer the upload's
    /// writer generation (its lock was lost and taken).
    pub async fn advance_upload(
        &self,
        id: &str,
        writer: u64,
        offset: u64,
        head_checked: bool,
        release: bool,
    ) -> Result<bool, StoreError> {
        let unlock = if release {
            ", lock_token = NULL, locked_until = NULL"
        } else {
            ""
        };
        let sql = format!(
            "UPDATE uploads SET upload_offset = $1, head_checked = (head_checked OR $2){unlock} \
             WHERE id = $3 AND writer = $4"
        );
        let done = sqlx::query(&sql)
            .bind(offset as i64)
            .bind(head_checked)
            .bind(id)
            .bind(writer as i64)
            .execute(&self.progress)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Fixes a deferred length (once). False when the length was already set or `writer` is no
    /// longer the upload's writer generation.
    pub async fn set_upload_length(
        &self,
        id: &str,
        writer: u64,
        length: u64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE uploads SET upload_length = $1 \
             WHERE id = $2 AND upload_length IS NULL AND writer = $3",
        )
        .bind(length as i64)
        .bind(id)
        .bind(writer as i64)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Marks the upload complete (its bytes are in permanent storage or were concatenated).
    pub async fn complete_upload(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE uploads SET completed_at = $1 WHERE id = $2 AND completed_at IS NULL")
            .bind(now_ms())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deletes the upload row, and its video when that never received a source (a video still
    /// `awaiting_upload`); a completed upload's video lives on. Returns whether the video was
    /// deleted.
    pub async fn delete_upload(&self, upload: &Upload) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM uploads WHERE id = $1")
            .bind(&upload.id)
            .execute(&mut *tx)
            .await?;
        let mut video_deleted = false;
        if let Some(video_id) = &upload.video_id {
            let done =
                sqlx::query("DELETE FROM videos WHERE id = $1 AND status = 'awaiting_upload'")
                    .bind(video_id)
                    .execute(&mut *tx)
                    .await?;
            video_deleted = done.rows_affected() == 1;
        }
        tx.commit().await?;
        if let (true, Some(video_id)) = (video_deleted, &upload.video_id) {
            self.invalidate_video(video_id).await;
        }
        Ok(video_deleted)
    }

    /// Uploads whose temp data may be collected at `now`: expired incomplete uploads, and
    /// expired completed partials (their bytes were copied into a final upload). Unlocked only.
    pub async fn expired_uploads(&self, now: i64, limit: u32) -> Result<Vec<Upload>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM uploads WHERE expires_at <= $1 \
             AND (completed_at IS NULL OR concat = 'partial') \
             AND (locked_until IS NULL OR locked_until <= $2) ORDER BY expires_at LIMIT $3"
        ))
        .bind(now)
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(upload_from_row).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NewVideo;

    /// A new upload of `tenant_id` without a video or metadata, expiring in a minute.
    fn live_upload(tenant_id: &str, length: Option<u64>, concat: Concat) -> NewUpload {
        NewUpload {
            tenant_id: tenant_id.to_owned(),
            video_id: None,
            length,
            metadata: String::new(),
            concat,
            expires_at: now_ms() + 60_000,
        }
    }

    crate::backend_tests! {
        async fn lock_offset_expiry_and_delete(store) {
            let (t, _) = store.create_tenant("a").await.unwrap();
            let (other, _) = store.create_tenant("b").await.unwrap();
            let v = store
                .create_video(&t.id, &NewVideo::default())
                .await
                .unwrap();
            let u = store
                .create_upload(&NewUpload {
                    tenant_id: t.id.clone(),
                    video_id: Some(v.id.clone()),
                    length: None,
                    metadata: "filename YS5tcDQ=".into(),
                    concat: Concat::None,
                    expires_at: now_ms() - 1,
                })
                .await
                .unwrap();
            assert_eq!(store.upload(&t.id, &u.id).await.unwrap(), Some(u.clone()));
            assert_eq!(store.upload(&other.id, &u.id).await.unwrap(), None);

            let (token, row) = store.lock_upload_of(&t.id, &u.id, 60_000).await.unwrap().unwrap();
            assert_eq!(store.lock_upload_of(&t.id, &u.id, 60_000).await.unwrap(), None);
            let writer = row.writer;
            assert_eq!(writer, u.writer + 1);
            assert!(store.advance_upload(&u.id, writer, 10, true, false).await.unwrap());
            assert!(!store.advance_upload(&u.id, u.writer, 20, false, false).await.unwrap());
            assert!(store.set_upload_length(&u.id, writer, 30).await.unwrap());
            assert!(!store.set_upload_length(&u.id, writer, 40).await.unwrap());
            let got = store.upload(&t.id, &u.id).await.unwrap().unwrap();
            assert_eq!(
                (got.offset, got.length, got.head_checked),
                (10, Some(30), true)
            );
            // Locked uploads are not swept; a lapsed lease frees them.
            assert!(
                store
                    .expired_uploads(now_ms(), 10)
                    .await
                    .unwrap()
                    .is_empty()
            );
            store.unlock_upload(&u.id, &token).await.unwrap();
            let expired = store.expired_uploads(now_ms(), 10).await.unwrap();
            assert_eq!(expired.len(), 1);
            let (short, _) = store.lock_upload_of(&t.id, &u.id, 0).await.unwrap().unwrap();
            assert!(
                store.lock_upload_of(&t.id, &u.id, 1000).await.unwrap().is_some(),
                "{short} lapsed"
            );

            assert!(store.delete_upload(&got).await.unwrap());
            assert_eq!(store.upload(&t.id, &u.id).await.unwrap(), None);
            assert_eq!(store.video(&t.id, &v.id).await.unwrap(), None);
        }

        /// A writer's lock comes with the row it locked, for its own tenant only, and its
        /// last offset move can hand the lock back.
        async fn lock_with_the_row_and_release_with_the_last_move(store) {
            let (t, _) = store.create_tenant("a").await.unwrap();
            let (other, _) = store.create_tenant("b").await.unwrap();
            let u = store
                .create_upload(&live_upload(&t.id, Some(100), Concat::Partial))
                .await
                .unwrap();
            // Another tenant cannot even take the lock of an upload it does not own.
            assert_eq!(store.lock_upload_of(&other.id, &u.id, 60_000).await.unwrap(), None);
            let (token, row) = store.lock_upload_of(&t.id, &u.id, 60_000).await.unwrap().unwrap();
            assert_eq!(row, Upload { writer: u.writer + 1, ..u.clone() });
            assert_eq!(store.lock_upload_of(&t.id, &u.id, 60_000).await.unwrap(), None);
            // A move that keeps the lock, then the last one, which releases it.
            let writer = row.writer;
            assert!(store.advance_upload(&u.id, writer, 10, false, false).await.unwrap());
            assert_eq!(store.lock_upload_of(&t.id, &u.id, 60_000).await.unwrap(), None);
            assert!(store.advance_upload(&u.id, writer, 40, true, true).await.unwrap());
            assert!(!store.renew_upload_lock(&u.id, &token, 60_000).await.unwrap());
            let (next, row) = store.lock_upload_of(&t.id, &u.id, 60_000).await.unwrap().unwrap();
            assert_ne!(next, token);
            assert_eq!((row.offset, row.head_checked), (40, true));
            // The released holder's generation no longer moves anything.
            assert_eq!(row.writer, writer + 1);
            assert!(!store.advance_upload(&u.id, writer, 50, false, true).await.unwrap());
            assert_eq!(store.lock_upload_of(&t.id, "missing", 60_000).await.unwrap(), None);
        }

        /// A writer whose lock is held outside the database (Redis) claims a generation of its
        /// own; one that lost its lock to a later writer moves nothing, even before that one
        /// moved anything.
        async fn a_claimed_generation_fences_out_the_writer_before(store) {
            let (t, _) = store.create_tenant("a").await.unwrap();
            let (other, _) = store.create_tenant("b").await.unwrap();
            let u = store
                .create_upload(&live_upload(&t.id, None, Concat::Partial))
                .await
                .unwrap();
            assert_eq!(store.claim_upload(&other.id, &u.id).await.unwrap(), None);
            let first = store.claim_upload(&t.id, &u.id).await.unwrap().unwrap();
            assert!(store.advance_upload(&u.id, first.writer, 10, false, false).await.unwrap());
            let second = store.claim_upload(&t.id, &u.id).await.unwrap().unwrap();
            assert_eq!((second.writer, second.offset), (first.writer + 1, 10));
            // The first writer, still holding bytes from 10 on, changes nothing any more.
            assert!(!store.advance_upload(&u.id, first.writer, 20, false, false).await.unwrap());
            assert!(!store.set_upload_length(&u.id, first.writer, 30).await.unwrap());
            assert!(store.set_upload_length(&u.id, second.writer, 30).await.unwrap());
            assert!(store.advance_upload(&u.id, second.writer, 30, true, false).await.unwrap());
            let got = store.upload(&t.id, &u.id).await.unwrap().unwrap();
            assert_eq!((got.offset, got.length, got.head_checked), (30, Some(30), true));
        }

        /// A PATCH's lock can be taken with its API key alone: the key's own tenant gets it,
        /// another tenant's key, a revoked or an unknown one gets nothing, and neither does a
        /// second writer while the lease lives.
        async fn the_lock_is_taken_by_the_owners_key_only(store) {
            let (t, key) = store.create_tenant("a").await.unwrap();
            let (_, other_key) = store.create_tenant("b").await.unwrap();
            let u = store
                .create_upload(&live_upload(&t.id, Some(10), Concat::None))
                .await
                .unwrap();
            assert_eq!(store.lock_upload_by_key(&other_key, &u.id, 60_000).await.unwrap(), None);
            assert_eq!(store.lock_upload_by_key("mh_unknown", &u.id, 60_000).await.unwrap(), None);
            let (token, got) = store.lock_upload_by_key(&key, &u.id, 60_000).await.unwrap().unwrap();
            assert_eq!((got.id.as_str(), got.writer), (u.id.as_str(), u.writer + 1));
            assert_eq!(store.lock_upload_by_key(&key, &u.id, 60_000).await.unwrap(), None);
            store.unlock_upload(&u.id, &token).await.unwrap();
            let spare = store.add_api_key("a").await.unwrap();
            store.revoke_api_key("a", &spare).await.unwrap();
            assert_eq!(store.lock_upload_by_key(&spare, &u.id, 60_000).await.unwrap(), None);
            assert!(store.lock_upload_by_key(&key, &u.id, 60_000).await.unwrap().is_some());
        }

        /// Api processes racing for one upload's write lock: exactly one gets it, on every
        /// backend (on PostgreSQL the losers' UPDATE re-checks the lease after the winner's
        /// commit).
        async fn concurrent_lockers_get_exactly_one_lock(store) {
            let (t, _) = store.create_tenant("a").await.unwrap();
            // Two pools, as two api processes have.
            let stores = [(*store).clone(), store.reopen().await];
            for round in 0..10 {
                let u = store
                    .create_upload(&live_upload(&t.id, Some(1), Concat::Partial))
                    .await
                    .unwrap();
                let start = std::sync::Arc::new(tokio::sync::Barrier::new(4));
                let lockers: Vec<_> = (0..4)
                    .map(|i| {
                        let (s, id, start) = (stores[i % 2].clone(), u.id.clone(), start.clone());
                        let tenant = t.id.clone();
                        tokio::spawn(async move {
                            start.wait().await;
                            s.lock_upload_of(&tenant, &id, 60_000).await.unwrap().map(|(token, _)| token)
                        })
                    })
                    .collect();
                let mut won = Vec::new();
                for locker in lockers {
                    won.extend(locker.await.unwrap());
                }
                assert_eq!(won.len(), 1, "round {round}: {won:?}");
                assert!(store.renew_upload_lock(&u.id, &won[0], 60_000).await.unwrap());
            }
        }
    }
}
