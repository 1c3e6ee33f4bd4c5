//! One origin fetch shared by every request that wants the same object while it is under way:
//! the body is kept as it arrives, and each waiter streams it from the start at its own pace.

use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;
use futures::Stream;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// The origin's status line and headers, known before the body.
#[derive(Debug, Clone)]
pub struct Head {
    /// The origin's status.
    pub status: StatusCode,
    /// The origin's representation headers (see [`crate::proxy::KEPT_HEADERS`]).
    pub headers: HeaderMap,
    /// `Content-Length`, when the origin sent one.
    pub length: Option<u64>,
}

/// How a fetch ended.
#[derive(Debug, Clone)]
pub enum End {
    /// The whole body arrived.
    Complete,
    /// The origin could not be reached or broke off; the message says why.
    Failed(String),
}

#[derive(Default)]
struct Progress {
    head: Option<Head>,
    /// The body so far, in the origin's chunks (shared with waiters, never copied).
    chunks: Vec<Bytes>,
    received: u64,
    end: Option<End>,
}

/// A fetch in progress (or just finished).
pub struct Flight {
    progress: Mutex<Progress>,
    /// Bumped on every change; waiters sleep on it between chunks.
    changed: watch::Sender<()>,
}

impl Default for Flight {
    fn default() -> Self {
        Self {
            progress: Mutex::new(Progress::default()),
            changed: watch::channel(()).0,
        }
    }
}

impl Flight {
    fn update(&self, f: impl FnOnce(&mut Progress)) {
        f(&mut self.progress.lock().expect("flight lock"));
        self.changed.send_replace(());
    }

    /// The origin answered with `head`.
    pub fn set_head(&self, head: Head) {
        self.update(|p| p.head = Some(head));
    }

    /// Another piece of the body arrived.
    pub fn push(&self, chunk: Bytes) {
        self.update(|p| {
            p.received += chunk.len() as u64;
            p.chunks.push(chunk);
        });
    }

    /// The fetch is over.
    pub fn finish(&self, end: End) {
        self.update(|p| p.end = Some(end));
    }

    /// The body received so far in one piece (the whole body once the origin is done).
    pub fn body(&self) -> Bytes {
        let p = self.progress.lock().expect("flight lock");
        let mut body = bytes::BytesMut::with_capacity(p.received as usize);
        for chunk in &p.chunks {
            body.extend_from_slice(chunk);
        }
        body.freeze()
    }

    /// Waits for the head; `Err` with the reason when the fetch failed before it.
    pub async fn head(&self) -> Result<Head, String> {
        let mut rx = self.changed.subscribe();
        loop {
            {
                let p = self.progress.lock().expect("flight lock");
                if let Some(head) = &p.head {
                    return Ok(head.clone());
                }
                if let Some(End::Failed(why)) = &p.end {
                    return Err(why.clone());
                }
            }
            // The sender lives in `self`, so this only returns once something changed.
            let _ = rx.changed().await;
        }
    }

    /// Waits for the end; returns the total length when the body is complete.
    pub async fn complete_length(&self) -> Result<u64, String> {
        let mut rx = self.changed.subscribe();
        loop {
            {
                let p = self.progress.lock().expect("flight lock");
                match &p.end {
                    Some(End::Complete) => return Ok(p.received),
                    Some(End::Failed(why)) => return Err(why.clone()),
                    None => {}
                }
            }
            let _ = rx.changed().await;
        }
    }

    /// The body bytes `[start, end)` (to the body's end when `end` is `None`) as they arrive.
    /// Ends with an error item when the origin broke off before `end`.
    pub fn stream(
        self: Arc<Self>,
        start: u64,
        end: Option<u64>,
    ) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
        let rx = self.changed.subscribe();
        // (flight, change receiver, next chunk index, offset of that chunk, done)
        let state = (self, rx, 0usize, 0u64, false);
        futures::stream::unfold(
            state,
            move |(flight, mut rx, mut idx, mut at, done)| async move {
                if done {
                    return None;
                }
                loop {
                    let item = {
                        let p = flight.progress.lock().expect("flight lock");
                        let limit = end.unwrap_or(u64::MAX);
                        let mut found = None;
                        while idx < p.chunks.len() && at < limit {
                            let chunk = &p.chunks[idx];
                            let chunk_end = at + chunk.len() as u64;
                            let (from, to) = (start.max(at), limit.min(chunk_end));
                            let slice = (from < to)
                                .then(|| chunk.slice((from - at) as usize..(to - at) as usize));
                            idx += 1;
                            at = chunk_end;
                            if slice.is_some() {
                                found = slice;
                                break;
                            }
                        }
                        match (found, &p.end) {
                            (Some(bytes), _) => Some(Ok(bytes)),
                            (None, _) if at >= limit => return None,
                            (None, Some(End::Complete)) => return None,
                            (None, Some(End::Failed(why))) => {
                                Some(Err(std::io::Error::other(why.clone())))
                            }
                            (None, None) => None,
                        }
                    };
                    match item {
                        Some(Ok(bytes)) => return Some((Ok(bytes), (flight, rx, idx, at, false))),
                        Some(Err(e)) => return Some((Err(e), (flight, rx, idx, at, true))),
                        None => {
                            let _ = rx.changed().await;
                        }
                    }
                }
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;

    #[tokio::test]
    async fn waiters_get_the_bytes_pushed_before_and_after_they_joined() {
        let flight = Arc::new(Flight::default());
        flight.push(Bytes::from_static(b"hello "));
        let whole = tokio::spawn(
            flight
                .clone()
                .stream(0, None)
                .map_ok(|b| b.to_vec())
                .try_concat(),
        );
        let middle = tokio::spawn(
            flight
                .clone()
                .stream(3, Some(8))
                .map_ok(|b| b.to_vec())
                .try_concat(),
        );
        flight.push(Bytes::from_static(b"world"));
        flight.finish(End::Complete);
        assert_eq!(&whole.await.unwrap().unwrap()[..], b"hello world");
        assert_eq!(&middle.await.unwrap().unwrap()[..], b"lo wo");
        assert_eq!(flight.body(), Bytes::from_static(b"hello world"));
    }

    #[tokio::test]
    async fn a_broken_fetch_ends_the_stream_with_an_error() {
        let flight = Arc::new(Flight::default());
        flight.push(Bytes::from_static(b"part"));
        flight.finish(End::Failed("origin reset".into()));
        let got: Vec<_> = futures::StreamExt::collect(flight.clone().stream(0, None)).await;
        assert_eq!(got.len(), 2);
        assert!(got[1].is_err());
    }
}
