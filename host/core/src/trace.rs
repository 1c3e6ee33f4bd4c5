//! The request id: a W3C trace context (`traceparent`) that follows one piece of work from the
//! HTTP request that started it through the job queue and gRPC calls into every log line.
//!
//! The api accepts a caller's `traceparent` (or starts a new trace), runs the request inside
//! [`TraceParent::scope`], and answers with its own `traceparent`; a job enqueued meanwhile
//! carries [`current`] in its message; the worker runs the job in the same trace; gRPC clients send
//! [`current`] as `traceparent` metadata. Log lines show the trace id through the span each of
//! those places opens (`trace_id=…`), so one grep finds everything one upload caused.

use std::fmt;
use std::future::Future;

tokio::task_local! {
    static CURRENT: TraceParent;
}

/// One W3C `traceparent` value (version `00`): a 16-byte trace id shared by everything the
/// request caused, the 8-byte id of this hop's span, and the trace flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    flags: u8,
}

impl TraceParent {
    /// A new trace (nothing upstream gave one), sampled.
    pub fn new_root() -> Self {
        Self {
            trace_id: nonzero_random(),
            span_id: nonzero_random(),
            flags: 0x01,
        }
    }

    /// Reads a `traceparent` header value. Follows the spec's rules for a receiver: an unknown
    /// future version is read by its version-00 prefix, version `ff`, bad hex, uppercase hex or
    /// all-zero ids are invalid (`None`: the caller starts a new trace instead).
    pub fn parse(value: &str) -> Option<Self> {
        let value = value.trim();
        let bytes = value.as_bytes();
        if bytes.len() < 55 {
            return None;
        }
        let version = hex_bytes::<1>(&value[0..2])?[0];
        let exact = bytes.len() == 55;
        // Version 00 is exactly 55 characters; a later version may append `-`-separated fields.
        if version == 0xff || (version == 0 && !exact) || (!exact && bytes[55] != b'-') {
            return None;
        }
        if bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
            return None;
        }
        let trace_id = hex_bytes::<16>(&value[3..35])?;
        let span_id = hex_bytes::<8>(&value[36..52])?;
        let flags = hex_bytes::<1>(&value[53..55])?[0];
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(Self {
            trace_id,
            span_id,
            flags,
        })
    }

    /// The caller's trace if its header is valid, else a new one; either way a fresh span id
    /// for this hop.
    pub fn continue_from(header: Option<&str>) -> Self {
        header
            .and_then(Self::parse)
            .map_or_else(Self::new_root, |parent| parent.child())
    }

    /// The next hop in the same trace: same trace id and flags, a new span id.
    pub fn child(&self) -> Self {
        Self {
            span_id: nonzero_random(),
            ..*self
        }
    }

    /// The trace id as 32 lowercase hex digits: the request id log lines carry.
    pub fn trace_id(&self) -> String {
        hex::encode(self.trace_id)
    }

    /// Runs `work` with this as the [`current`] trace context.
    pub fn scope<F: Future>(self, work: F) -> impl Future<Output = F::Output> {
        CURRENT.scope(self, work)
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            hex::encode(self.trace_id),
            hex::encode(self.span_id),
            self.flags
        )
    }
}

/// The trace context of the task running now, if it runs inside [`TraceParent::scope`].
pub fn current() -> Option<TraceParent> {
    CURRENT.try_with(|t| *t).ok()
}

/// Decodes exactly `N` bytes of lowercase hex (the spec forbids uppercase).
fn hex_bytes<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

fn nonzero_random<const N: usize>() -> [u8; N] {
    loop {
        let bytes: [u8; N] = rand::random();
        if bytes != [0; N] {
            return bytes;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_header_round_trips_and_continues_the_same_trace() {
        let parent = TraceParent::parse(SAMPLE).unwrap();
        assert_eq!(parent.to_string(), SAMPLE);
        assert_eq!(parent.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        let hop = TraceParent::continue_from(Some(SAMPLE));
        assert_eq!(hop.trace_id(), parent.trace_id());
        assert_ne!(hop.to_string(), SAMPLE, "a hop has its own span id");
        assert!(hop.to_string().ends_with("-01"));
    }

    #[test]
    fn invalid_headers_start_a_new_trace() {
        let zero_trace = "00-00000000000000000000000000000000-00f067aa0ba902b7-01";
        let zero_span = "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01";
        let upper = "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01";
        let version_ff = "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let v00_with_more = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x";
        for bad in [
            "",
            "garbage",
            zero_trace,
            zero_span,
            upper,
            version_ff,
            v00_with_more,
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad}");
            let fresh = TraceParent::continue_from(Some(bad));
            assert_ne!(fresh.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
            assert!(TraceParent::parse(&fresh.to_string()).is_some());
        }
    }

    #[test]
    fn a_later_version_is_read_by_its_version_00_prefix() {
        let future = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra";
        let parsed = TraceParent::parse(future).unwrap();
        assert_eq!(parsed.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
    }

    #[tokio::test]
    async fn current_is_the_scope_s_context_and_none_outside() {
        assert_eq!(current(), None);
        let trace = TraceParent::new_root();
        let inside = trace.scope(async { current() }).await;
        assert_eq!(inside, Some(trace));
    }
}
