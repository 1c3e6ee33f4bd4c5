//! Videos and their life cycle: awaiting_upload → queued → processing → ready | failed.

use mediahost_core::{MediaInfo, Progress, Rendition, Video, VideoStatus};
use sqlx::Row;
use sqlx::any::AnyRow;
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::{Store, StoreError, corrupt, new_id, now_rfc3339};

/// The edge group of a video the router has not placed (yet).
pub const DEFAULT_EDGE_GROUP: &str = "default";

fn video_key(id: &str) -> String {
    format!("video:{id}")
}

/// What a client gives when creating a video.
#[derive(Debug, Clone, Default)]
pub struct NewVideo {
    /// Title shown to people.
    pub title: String,
    /// File name of the source, if the client declared one (validator plugins check it).
    pub filename: Option<String>,
}

const COLUMNS: &str = "id, tenant_id, title, filename, status, error, size, sha256, source_info, \
                       renditions, metadata, progress, edge_group, created_at, updated_at";

fn video_from_row(row: &AnyRow) -> Result<Video, StoreError> {
    let status: String = row.get("status");
    let source: Option<String> = row.get("source_info");
    let renditions: String = row.get("renditions");
    let metadata: String = row.get("metadata");
    let progress: Option<String> = row.get("progress");
    let size: Option<i64> = row.get("size");
    Ok(Video {
        id: row.get("id"),
        tenant_id: row.get("tenant_id"),
        title: row.get("title"),
        filename: row.get("filename"),
        status: status.parse().map_err(|e| corrupt("status", e))?,
        error: row.get("error"),
        size: size.map(|s| s as u64),
        sha256: row.get("sha256"),
        source: source
            .map(|s| serde_json::from_str::<MediaInfo>(&s))
            .transpose()
            .map_err(|e| corrupt("source_info", e))?,
        renditions: serde_json::from_str::<Vec<Rendition>>(&renditions)
            .map_err(|e| corrupt("renditions", e))?,
        metadata: serde_json::from_str(&metadata).map_err(|e| corrupt("metadata", e))?,
        edge_group: row.get("edge_group"),
        progress: progress
            .map(|p| serde_json::from_str(&p))
            .transpose()
            .map_err(|e| corrupt("progress", e))?,
        created_at: row.get("created_at"),
        updated_at: row.get("updated_at"),
    })
}

impl Store {
    /// Creates a video awaiting its upload.
    pub async fn create_video(&self, tenant_id: &str, new: &NewVideo) -> Result<Video, StoreError> {
        let id = new_id();
        let now = now_rfc3339();
        sqlx::query(
            "INSERT INTO videos (id, tenant_id, title, filename, status, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&id)
        .bind(tenant_id)
        .bind(&new.title)
        .bind(&new.filename)
        .bind(VideoStatus::AwaitingUpload.as_str())
        .bind(&now)
        .bind(&now)
        .execute(&self.pool)
        .await?;
        // A lookup of the id before it existed may have cached its absence.
        self.invalidate_video(&id).await;
        Ok(Video {
            id,
            tenant_id: tenant_id.to_owned(),
            title: new.title.clone(),
            filename: new.filename.clone(),
            status: VideoStatus::AwaitingUpload,
            error: None,
            size: None,
            sha256: None,
            source: None,
            renditions: Vec::new(),
            metadata: BTreeMap::new(),
            edge_group: DEFAULT_EDGE_GROUP.to_owned(),
            progress: None,
            created_at: now.clone(),
            updated_at: now,
        })
    }

    /// A tenant's video; `None` when it does not exist or belongs to another tenant.
    pub async fn video(&self, tenant_id: &str, id: &str) -> Result<Option<Video>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM videos WHERE id = $1 AND tenant_id = $2"
        ))
        .bind(id)
        .bind(tenant_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(video_from_row).transpose()
    }

    /// A video by id alone, for workers acting on a job.
    pub async fn video_by_id(&self, id: &str) -> Result<Option<Video>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM videos WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(video_from_row).transpose()
    }

    /// A video by id through the lookup cache when the store has one (see [`crate::lookup`]):
    /// for hot read paths (playback, the edge's tenant resolution), which may see a change
    /// made by another process late by up to the cache's TTL when the cache is in-process.
    /// Shared (`Arc`): a hot entry is decoded once and handed to every request.
    pub async fn video_by_id_cached(&self, id: &str) -> Result<Option<Arc<Video>>, StoreError> {
        let Some(lookups) = &self.lookups else {
            return Ok(self.video_by_id(id).await?.map(Arc::new));
        };
        let key = video_key(id);
        if let Some(bytes) = lookups.cache.get(&key).await {
            let decode = |bytes: &[u8]| {
                serde_json::from_slice::<Option<Video>>(bytes).map(|video| video.map(Arc::new))
            };
            match lookups.videos.get(&key, bytes, decode) {
                Ok(video) => return Ok(video),
                // Written by another version: read the row and overwrite the entry.
                Err(e) => tracing::debug!(error = %e, %key, "unreadable lookup entry"),
            }
        }
        let video = self.video_by_id(id).await?.map(Arc::new);
        let bytes: Arc<[u8]> = serde_json::to_vec(&video)
            .map_err(|e| corrupt("videos", e))?
            .into();
        lookups.cache.put(&key, bytes.clone(), lookups.ttl).await;
        lookups.videos.remember(&key, bytes, video.clone());
        Ok(video)
    }

    /// A tenant's video through the lookup cache (see [`Store::video_by_id_cached`]).
    pub async fn video_cached(
        &self,
        tenant_id: &str,
        id: &str,
    ) -> Result<Option<Arc<Video>>, StoreError> {
        let video = self.video_by_id_cached(id).await?;
        Ok(video.filter(|v| v.tenant_id == tenant_id))
    }

    /// Drops the video's lookup-cache entry after a change.
    pub(crate) async fn invalidate_video(&self, id: &str) {
        if let Some(lookups) = &self.lookups {
            lookups.cache.invalidate(&video_key(id)).await;
        }
    }

    /// Records the edge group the router chose for the video.
    pub async fn set_edge_group(&self, id: &str, group: &str) -> Result<(), StoreError> {
        self.set_column(id, "edge_group", group.to_owned()).await
    }

    /// Deletes a tenant's video with its upload rows. Returns the video as it was and the ids
    /// of its uploads (whose temp data the caller removes), or `None` when the tenant has no
    /// such video. Its objects in storage are the caller's to delete.
    pub async fn delete_video(
        &self,
        tenant_id: &str,
        id: &str,
    ) -> Result<Option<(Video, Vec<String>)>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM videos WHERE id = $1 AND tenant_id = $2"
        ))
        .bind(id)
        .bind(tenant_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(video) = row.as_ref().map(video_from_row).transpose()? else {
            return Ok(None);
        };
        // Explicitly, not by cascade: SQLite does not enforce foreign keys here.
        let uploads: Vec<String> =
            sqlx::query("DELETE FROM uploads WHERE video_id = $1 RETURNING id")
                .bind(id)
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|row| row.get("id"))
                .collect();
        sqlx::query("DELETE FROM videos WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.invalidate_video(id).await;
        Ok(Some((video, uploads)))
    }

    /// A tenant's videos, newest first.
    pub async fn list_videos(&self, tenant_id: &str, limit: u32) -> Result<Vec<Video>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM videos WHERE tenant_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2"
        ))
        .bind(tenant_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(video_from_row).collect()
    }

    /// Records a finished upload and moves the video from `awaiting_upload` to `queued`.
    /// Returns false when the video was no longer awaiting its upload (a concurrent upload won).
    pub async fn mark_uploaded(
        &self,
        id: &str,
        size: u64,
        sha256: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE videos SET status = 'queued', size = $1, sha256 = $2, error = NULL, updated_at = $3 \
             WHERE id = $4 AND status = 'awaiting_upload'",
        )
        .bind(size as i64)
        .bind(sha256)
        .bind(now_rfc3339())
        .bind(id)
        .execute(&self.pool)
        .await?;
        self.invalidate_video(id).await;
        Ok(done.rows_affected() == 1)
    }

    /// Sets the status and clears any previous error and renditions (used for `processing`,
    /// `queued` when a job goes back to the queue, and `awaiting_upload` when a job could not
    /// be queued): the renditions of a video that is not ready are listed again by the worker
    /// as they become playable ([`Store::set_renditions`]).
    pub async fn set_status(&self, id: &str, status: VideoStatus) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE videos SET status = $1, error = NULL, renditions = '[]', updated_at = $2 WHERE id = $3",
        )
            .bind(status.as_str())
            .bind(now_rfc3339())
            .bind(id)
            .execute(&self.pool)
            .await?;
        self.invalidate_video(id).await;
        Ok(())
    }

    /// Records how far the transcode has come.
    pub async fn set_progress(&self, id: &str, progress: &Progress) -> Result<(), StoreError> {
        self.set_json(id, "progress", serde_json::to_string(progress))
            .await
    }

    /// Records the renditions a video still `processing` can already be played in: their
    /// master playlist is stored and every one has a first segment (progressive playback).
    pub async fn set_renditions(
        &self,
        id: &str,
        renditions: &[Rendition],
    ) -> Result<(), StoreError> {
        self.set_json(id, "renditions", serde_json::to_string(renditions))
            .await
    }

    /// Stores what the prober found out about the source.
    pub async fn set_source_info(&self, id: &str, info: &MediaInfo) -> Result<(), StoreError> {
        self.set_json(id, "source_info", serde_json::to_string(info))
            .await
    }

    /// Stores the metadata extracted by plugins (replacing any earlier extraction).
    pub async fn set_metadata(
        &self,
        id: &str,
        metadata: &BTreeMap<String, String>,
    ) -> Result<(), StoreError> {
        self.set_json(id, "metadata", serde_json::to_string(metadata))
            .await
    }

    /// Replaces the JSON column `column` (a fixed name, never client input) with `json`, the
    /// value as serialized by the caller.
    async fn set_json(
        &self,
        id: &str,
        column: &'static str,
        json: serde_json::Result<String>,
    ) -> Result<(), StoreError> {
        let json = json.map_err(|e| corrupt(column, e))?;
        self.set_column(id, column, json).await
    }

    /// Replaces the text column `column` (a fixed name, never client input) with `value`.
    async fn set_column(
        &self,
        id: &str,
        column: &'static str,
        value: String,
    ) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "UPDATE videos SET {column} = $1, updated_at = $2 WHERE id = $3"
        ))
        .bind(value)
        .bind(now_rfc3339())
        .bind(id)
        .execute(&self.pool)
        .await?;
        self.invalidate_video(id).await;
        Ok(())
    }

    /// Marks the video playable with these renditions.
    pub async fn set_ready(&self, id: &str, renditions: &[Rendition]) -> Result<(), StoreError> {
        let json = serde_json::to_string(renditions).map_err(|e| corrupt("renditions", e))?;
        sqlx::query(
            "UPDATE videos SET status = 'ready', renditions = $1, error = NULL, updated_at = $2 WHERE id = $3",
        )
        .bind(json)
        .bind(now_rfc3339())
        .bind(id)
        .execute(&self.pool)
        .await?;
        self.invalidate_video(id).await;
        Ok(())
    }

    /// Marks the video failed with a reason a person can act on; it has no renditions.
    pub async fn set_failed(&self, id: &str, reason: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE videos SET status = 'failed', error = $1, renditions = '[]', updated_at = $2 WHERE id = $3",
        )
        .bind(reason)
        .bind(now_rfc3339())
        .bind(id)
        .execute(&self.pool)
        .await?;
        self.invalidate_video(id).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::backend_tests! {
        async fn videos_are_scoped_by_tenant(store) {
            let (a, _) = store.create_tenant("a").await.unwrap();
            let (b, _) = store.create_tenant("b").await.unwrap();
            let new = NewVideo {
                title: "t".into(),
                filename: Some("t.mp4".into()),
            };
            let v = store.create_video(&a.id, &new).await.unwrap();
            assert_eq!(store.video(&a.id, &v.id).await.unwrap(), Some(v.clone()));
            assert_eq!(store.video(&b.id, &v.id).await.unwrap(), None);
            assert_eq!(store.list_videos(&b.id, 10).await.unwrap(), vec![]);
            assert_eq!(store.list_videos(&a.id, 10).await.unwrap(), vec![v]);
        }

        async fn upload_is_accepted_once_then_life_cycle_runs(store) {
            let (t, _) = store.create_tenant("a").await.unwrap();
            let v = store
                .create_video(&t.id, &NewVideo::default())
                .await
                .unwrap();
            assert!(store.mark_uploaded(&v.id, 42, "ab").await.unwrap());
            assert!(!store.mark_uploaded(&v.id, 43, "cd").await.unwrap());
            let got = store.video_by_id(&v.id).await.unwrap().unwrap();
            assert_eq!(
                (got.status, got.size, got.sha256.as_deref()),
                (VideoStatus::Queued, Some(42), Some("ab"))
            );

            let metadata = BTreeMap::from([("orientation".to_owned(), "landscape".to_owned())]);
            store.set_metadata(&v.id, &metadata).await.unwrap();
            assert_eq!(
                store.video_by_id(&v.id).await.unwrap().unwrap().metadata,
                metadata
            );

            store.set_failed(&v.id, "bad input").await.unwrap();
            let got = store.video_by_id(&v.id).await.unwrap().unwrap();
            assert_eq!(
                (got.status, got.error.as_deref()),
                (VideoStatus::Failed, Some("bad input"))
            );

            let r = Rendition {
                name: "360p".into(),
                width: 640,
                height: 360,
                bandwidth: 1_000_000,
                codecs: "avc1.64001e,mp4a.40.2".into(),
                playlist: "360p/index.m3u8".into(),
            };
            store
                .set_ready(&v.id, std::slice::from_ref(&r))
                .await
                .unwrap();
            let got = store.video_by_id(&v.id).await.unwrap().unwrap();
            assert_eq!(
                (got.status, got.error, got.renditions),
                (VideoStatus::Ready, None, vec![r])
            );
        }

        async fn renditions_are_listed_while_processing_and_dropped_when_it_stops(store) {
            let (t, _) = store.create_tenant("a").await.unwrap();
            let v = store.create_video(&t.id, &NewVideo::default()).await.unwrap();
            let r = Rendition {
                name: "360p".into(),
                width: 640,
                height: 360,
                bandwidth: 1_000_000,
                codecs: "avc1.64001e".into(),
                playlist: "360p/index.m3u8".into(),
            };
            store.set_status(&v.id, VideoStatus::Processing).await.unwrap();
            store.set_renditions(&v.id, std::slice::from_ref(&r)).await.unwrap();
            let got = store.video_by_id(&v.id).await.unwrap().unwrap();
            assert_eq!((got.status, got.renditions), (VideoStatus::Processing, vec![r.clone()]));
            // Back to the queue (a retry): the next attempt lists them again.
            store.set_status(&v.id, VideoStatus::Queued).await.unwrap();
            assert!(store.video_by_id(&v.id).await.unwrap().unwrap().renditions.is_empty());
            store.set_renditions(&v.id, std::slice::from_ref(&r)).await.unwrap();
            store.set_failed(&v.id, "gave up").await.unwrap();
            assert!(store.video_by_id(&v.id).await.unwrap().unwrap().renditions.is_empty());
        }

        async fn cached_lookups_follow_every_change_and_the_delete(store) {
            let cache = std::sync::Arc::new(crate::lookup::MemoryLookups::new(100));
            let cached = Store::clone(&store)
                .with_lookup_cache(cache, std::time::Duration::from_secs(3600));
            let (t, _) = cached.create_tenant("a").await.unwrap();
            let (other, _) = cached.create_tenant("b").await.unwrap();
            let v = cached.create_video(&t.id, &NewVideo::default()).await.unwrap();
            assert_eq!(cached.video_by_id_cached(&v.id).await.unwrap().as_deref(), Some(&v));
            assert_eq!(cached.video_cached(&other.id, &v.id).await.unwrap(), None);
            // Every change through the store is seen at once despite the hour-long TTL.
            assert!(cached.mark_uploaded(&v.id, 1, "ab").await.unwrap());
            cached.set_edge_group(&v.id, "eu-west").await.unwrap();
            let got = cached.video_cached(&t.id, &v.id).await.unwrap().unwrap();
            assert_eq!((got.status, got.edge_group.as_str()), (VideoStatus::Queued, "eu-west"));
            cached.set_status(&v.id, VideoStatus::Processing).await.unwrap();
            let got = cached.video_by_id_cached(&v.id).await.unwrap().unwrap();
            assert_eq!(got.status, VideoStatus::Processing);

            assert_eq!(cached.delete_video(&other.id, &v.id).await.unwrap(), None, "another tenant's");
            let (deleted, uploads) = cached.delete_video(&t.id, &v.id).await.unwrap().unwrap();
            assert_eq!((deleted.id.as_str(), uploads), (v.id.as_str(), vec![]));
            assert_eq!(cached.video_by_id_cached(&v.id).await.unwrap(), None);
            assert_eq!(cached.video_by_id(&v.id).await.unwrap(), None);
            assert_eq!(cached.delete_video(&t.id, &v.id).await.unwrap(), None);
        }
    }
}
