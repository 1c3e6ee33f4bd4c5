//! Progressive publication: what a running transcode hands its caller to store, in an order
//! that keeps every published playlist valid.
//!
//! The transcode stays synchronous and knows nothing of storage; it calls the caller's
//! `FnMut(Publish)` (the worker forwards each one to an async uploader over a channel, so
//! encoding never waits on storage). The order of the calls is the contract:
//!
//! 1. As a rendition's muxer closes a segment: [`Publish::File`] for it (preceded, the first
//!    time, by the rendition's init segment), then [`Publish::Manifest`] with the rendition's
//!    `EVENT` media playlist listing every segment announced so far.
//! 2. Once every rendition has a segment: [`Publish::Manifest`] with the master playlist, then
//!    [`Publish::Playable`] with the renditions it lists. Playback can start.
//! 3. At the end: the last segments and the thumbnails as files, then each rendition's `VOD`
//!    playlist, the final master playlist and the DASH manifest, and [`Publish::Playable`] if
//!    it was not sent before (a source shorter than one segment).
//!
//! A manifest names only files announced before it, so a caller that stores announcements in
//! order (or stores every file before any manifest announced after it) never publishes a
//! playlist with a dangling URI.

use std::path::Path;

use mediahost_core::Rendition;

use crate::TranscodeError;
use crate::package::{self, INIT_SEGMENT, MASTER_PLAYLIST, PlaylistType, Segment, Variant};

/// One thing of a transcode's output that is ready to store.
#[derive(Debug, Clone, PartialEq)]
pub enum Publish {
    /// A complete file under the output folder (`720p/seg_00003.m4s`, `720p/init.mp4`,
    /// `poster.jpg`, …), given by its path relative to that folder. It never changes once
    /// announced.
    File(String),
    /// The current text of a playlist or manifest at `path` (relative to the output folder).
    /// Later announcements of the same path replace it.
    Manifest {
        /// `master.m3u8`, `720p/index.m3u8` or `manifest.mpd`.
        path: String,
        /// Its full text.
        text: String,
    },
    /// The master playlist just announced lists these renditions: a player can start.
    Playable(Vec<Rendition>),
}

/// Keeps track of what has been announced and announces the rest.
pub(crate) struct Publisher<'a> {
    /// The caller's receiver of announcements.
    sink: &'a mut dyn FnMut(Publish),
    /// Segment length the playlists' target duration starts from.
    segment_seconds: u32,
    /// Per rendition, how many of its segments have been announced.
    announced: Vec<usize>,
    /// Whether [`Publish::Playable`] has been sent.
    playable: bool,
}

impl<'a> Publisher<'a> {
    /// A publisher for `renditions` renditions.
    pub fn new(sink: &'a mut dyn FnMut(Publish), renditions: usize, segment_seconds: u32) -> Self {
        Self {
            sink,
            segment_seconds,
            announced: vec![0; renditions],
            playable: false,
        }
    }

    /// Announces the segments of rendition `index` (named `name`) not announced yet, the init
    /// segment before the first, and the rendition's `EVENT` playlist after them.
    pub fn segments(&mut self, index: usize, name: &str, segments: &[Segment]) {
        if self.announce_files(index, name, segments) {
            self.manifest(
                format!("{name}/{}", package::MEDIA_PLAYLIST),
                package::media_playlist(segments, self.segment_seconds, PlaylistType::Event),
            );
        }
    }

    /// Whether every rendition has a segment announced and the master playlist has not been:
    /// time to call [`Publisher::playable`].
    pub fn wants_master(&self) -> bool {
        !self.playable && self.announced.iter().all(|&n| n > 0)
    }

    /// Announces the master playlist over `variants` and that playback can start.
    pub fn playable(&mut self, variants: &[Variant]) {
        self.manifest(MASTER_PLAYLIST.into(), package::master_playlist(variants));
        self.send_playable(variants);
    }

    /// Announces the end: the remaining segments of every rendition and `files` (thumbnails),
    /// then the final manifests, each also written under `out_dir` so the folder holds the
    /// complete output.
    pub fn finish(
        &mut self,
        out_dir: &Path,
        variants: &[Variant],
        files: &[&str],
        dash_manifest: (&str, String),
    ) -> Result<(), TranscodeError> {
        for (index, v) in variants.iter().enumerate() {
            self.announce_files(index, &v.rendition.name, &v.segments);
        }
        for file in files {
            (self.sink)(Publish::File((*file).to_owned()));
        }
        let mut manifests: Vec<(String, String)> = variants
            .iter()
            .map(|v| {
                let text =
                    package::media_playlist(&v.segments, self.segment_seconds, PlaylistType::Vod);
                (v.rendition.playlist.clone(), text)
            })
            .collect();
        manifests.push((MASTER_PLAYLIST.into(), package::master_playlist(variants)));
        manifests.push((dash_manifest.0.to_owned(), dash_manifest.1));
        for (path, text) in manifests {
            let local = out_dir.join(&path);
            std::fs::write(&local, &text).map_err(TranscodeError::io(&local))?;
            self.manifest(path, text);
        }
        if !self.playable {
            self.send_playable(variants);
        }
        Ok(())
    }

    /// Announces the files of segments of rendition `index` beyond those already announced;
    /// returns whether there were any.
    fn announce_files(&mut self, index: usize, name: &str, segments: &[Segment]) -> bool {
        let done = self.announced[index];
        if segments.len() <= done {
            return false;
        }
        if done == 0 {
            (self.sink)(Publish::File(format!("{name}/{INIT_SEGMENT}")));
        }
        for s in &segments[done..] {
            (self.sink)(Publish::File(format!("{name}/{}", s.uri)));
        }
        self.announced[index] = segments.len();
        true
    }

    fn manifest(&mut self, path: String, text: String) {
        (self.sink)(Publish::Manifest { path, text });
    }

    fn send_playable(&mut self, variants: &[Variant]) {
        self.playable = true;
        (self.sink)(Publish::Playable(
            variants.iter().map(|v| v.rendition.clone()).collect(),
        ));
    }
}
