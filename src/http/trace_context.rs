//! W3C Trace Context (`traceparent`, `tracestate`): a request that arrives
//! inside a distributed trace is logged under that trace, and every response
//! says which trace and span it belongs to, so a log line can be found from a
//! client's or a router's trace and back.
//!
//! The incoming `traceparent` is parsed strictly (version `00`, and later
//! versions as far as version `00` goes); a malformed one is ignored, with its `tracestate`, and the request starts a new trace,
//! as the specification asks. This server's span gets its own random id.

use std::fmt;

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// The `sampled` and `random` trace flags, the ones defined so far; other
/// bits are not passed on.
const KNOWN_FLAGS: u8 = 0b11;
/// What this server sets on a trace it starts: it logs every request
/// (sampled), and its trace ids are random.
const NEW_TRACE_FLAGS: u8 = 0b11;
/// The longest `tracestate` the specification allows a vendor to pass on.
const MAX_TRACESTATE: usize = 512;

/// A valid incoming `traceparent`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceParent {
    /// Never zero.
    pub trace_id: u128,
    /// The caller's span; never zero.
    pub parent_id: u64,
    pub flags: u8,
}

impl TraceParent {
    /// Parses version `00`: `00-` 32 lowercase hex digits `-` 16 lowercase hex
    /// digits `-` 2 lowercase hex digits, ids not all zeros. Anything else
    /// (uppercase, a missing or extra field, version `ff`) is `None`. A later
    /// version is read as the specification asks: its first 55 characters in
    /// version `00`'s format, then nothing or a dash and fields this version
    /// does not know.
    pub fn parse(value: &str) -> Option<TraceParent> {
        const VERSION_00_LEN: usize = 55;
        let value = value.trim_matches([' ', '\t']);
        let version = lower_hex(value.get(..2)?, 2)?;
        let fields = match version {
            "00" => value,
            "ff" => return None,
            _ => match value.get(VERSION_00_LEN..)? {
                "" => value,
                rest if rest.starts_with('-') => &value[..VERSION_00_LEN],
                _ => return None,
            },
        };
        let mut parts = fields.split('-');
        let (_version, trace_id, parent_id, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let trace_id = u128::from_str_radix(lower_hex(trace_id, 32)?, 16).ok()?;
        let parent_id = u64::from_str_radix(lower_hex(parent_id, 16)?, 16).ok()?;
        let flags = u8::from_str_radix(lower_hex(flags, 2)?, 16).ok()?;
        (trace_id != 0 && parent_id != 0).then_some(TraceParent {
            trace_id,
            parent_id,
            flags,
        })
    }
}

/// `text` if it is exactly `len` lowercase hex digits (`from_str_radix`
/// alone would accept a sign and uppercase).
fn lower_hex(text: &str, len: usize) -> Option<&str> {
    (text.len() == len && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .then_some(text)
}

/// The trace context of one request: the trace it belongs to, the caller's
/// span (if it came with a valid `traceparent`) and this server's span.
/// Put in the request's extensions for the request span to log.
#[derive(Clone, Debug)]
pub struct TraceContext {
    pub trace_id: u128,
    pub parent_id: Option<u64>,
    pub span_id: u64,
    pub flags: u8,
    /// Passed on only with a valid `traceparent`, as the specification asks.
    pub tracestate: Option<String>,
}

impl TraceContext {
    /// Continues the caller's trace, or starts one.
    pub fn from_headers(headers: &HeaderMap) -> TraceContext {
        let mut values = headers.get_all(TRACEPARENT).iter();
        // Two `traceparent` headers cannot both be right: neither is trusted.
        let parent = match (values.next(), values.next()) {
            (Some(value), None) => value.to_str().ok().and_then(TraceParent::parse),
            _ => None,
        };
        match parent {
            Some(parent) => TraceContext {
                trace_id: parent.trace_id,
                parent_id: Some(parent.parent_id),
                span_id: random_span_id(),
                flags: parent.flags & KNOWN_FLAGS,
                tracestate: tracestate(headers),
            },
            None => TraceContext {
                trace_id: random_trace_id(),
                parent_id: None,
                span_id: random_span_id(),
                flags: NEW_TRACE_FLAGS,
                tracestate: None,
            },
        }
    }

    pub fn trace_id_hex(&self) -> String {
        format!("{:032x}", self.trace_id)
    }

    /// The caller's span id, or nothing.
    pub fn parent_id_hex(&self) -> String {
        self.parent_id
            .map(|id| format!("{id:016x}"))
            .unwrap_or_default()
    }

    pub fn span_id_hex(&self) -> String {
        format!("{:016x}", self.span_id)
    }

    /// The `traceparent` naming this server's span, for the response (and
    /// for any call this server would make on the request's behalf).
    pub fn traceparent(&self) -> TraceParent {
        TraceParent {
            trace_id: self.trace_id,
            parent_id: self.span_id,
            flags: self.flags,
        }
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id, self.parent_id, self.flags
        )
    }
}

/// The incoming `tracestate` (several headers are one list), if it is short
/// and printable enough to pass on; its entries belong to other vendors and
/// are not interpreted here.
fn tracestate(headers: &HeaderMap) -> Option<String> {
    let mut joined = String::new();
    for value in headers.get_all(TRACESTATE) {
        let text = value.to_str().ok()?.trim();
        if text.is_empty() {
            continue;
        }
        if !joined.is_empty() {
            joined.push(',');
        }
        joined.push_str(text);
    }
    (!joined.is_empty() && joined.len() <= MAX_TRACESTATE).then_some(joined)
}

/// A random trace id. A version 4 UUID is never zero (its version bits are
/// set) and its last seven bytes are random, as the `random` flag promises.
fn random_trace_id() -> u128 {
    uuid::Uuid::new_v4().as_u128()
}

/// A random span id: the second half of a version 4 UUID, never zero (its
/// variant bits are set).
fn random_span_id() -> u64 {
    uuid::Uuid::new_v4().as_u64_pair().1
}

/// Middleware: works out the request's trace context before the request span
/// is made (it reads it from the extensions) and answers with this server's
/// `traceparent`.
pub async fn propagate(mut request: Request, next: Next) -> Response {
    let context = TraceContext::from_headers(request.headers());
    let traceparent = context.traceparent().to_string();
    request.extensions_mut().insert(context);
    let mut response = next.run(request).await;
    if let Ok(value) = HeaderValue::from_str(&traceparent) {
        response.headers_mut().insert(TRACEPARENT, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_the_specification_example_and_prints_it_back() {
        let parent = TraceParent::parse(EXAMPLE).unwrap();
        assert_eq!(parent.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_eq!(parent.parent_id, 0x00f067aa0ba902b7);
        assert_eq!(parent.flags, 1);
        assert_eq!(parent.to_string(), EXAMPLE);
        assert_eq!(TraceParent::parse(&format!(" {EXAMPLE}\t")), Some(parent));
    }

    #[test]
    fn refuses_what_version_00_does_not_allow() {
        for bad in [
            "",
            "00",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e47366-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_later_version_is_read_as_far_as_version_00_goes() {
        let expected = TraceParent::parse(EXAMPLE);
        assert!(expected.is_some());
        let later = &EXAMPLE.replacen("00", "cc", 1);
        assert_eq!(TraceParent::parse(later), expected);
        assert_eq!(
            TraceParent::parse(&format!("{later}-what-comes-next")),
            expected
        );
        // The printed answer is always version 00.
        assert!(TraceParent::parse(later)
            .unwrap()
            .to_string()
            .starts_with("00-"));
    }

    fn headers(pairs: &[(&HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn a_valid_parent_is_continued_with_a_new_span() {
        let context = TraceContext::from_headers(&headers(&[
            (&TRACEPARENT, EXAMPLE),
            (&TRACESTATE, "congo=t61rcWkgMzE"),
            (&TRACESTATE, "rojo=00f067aa0ba902b7"),
        ]));
        assert_eq!(context.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(context.parent_id_hex(), "00f067aa0ba902b7");
        assert_ne!(context.span_id, 0x00f067aa0ba902b7);
        assert_eq!(
            context.tracestate.as_deref(),
            Some("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
        );
        let answer = context.traceparent().to_string();
        assert!(answer.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(answer.ends_with(&format!("-{}-01", context.span_id_hex())));
        assert_eq!(TraceParent::parse(&answer), Some(context.traceparent()));
    }

    #[test]
    fn a_malformed_parent_starts_a_new_trace_and_drops_its_state() {
        let context = TraceContext::from_headers(&headers(&[
            (
                &TRACEPARENT,
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            ),
            (&TRACESTATE, "congo=t61rcWkgMzE"),
        ]));
        assert_ne!(context.trace_id, 0);
        assert_eq!(context.parent_id, None);
        assert_eq!(context.tracestate, None);
        let again = TraceContext::from_headers(&HeaderMap::new());
        assert_ne!(context.trace_id, again.trace_id, "trace ids are random");
        assert_ne!(context.span_id, again.span_id);
    }

    #[test]
    fn two_traceparents_are_not_trusted() {
        let context = TraceContext::from_headers(&headers(&[
            (&TRACEPARENT, EXAMPLE),
            (&TRACEPARENT, EXAMPLE),
        ]));
        assert_eq!(context.parent_id, None);
    }

    #[test]
    fn unknown_flags_are_not_passed_on() {
        let context = TraceContext::from_headers(&headers(&[(
            &TRACEPARENT,
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff",
        )]));
        assert_eq!(context.flags, 0b11);
    }

    #[test]
    fn an_oversized_tracestate_is_dropped() {
        let long = format!("vendor={}", "x".repeat(MAX_TRACESTATE));
        let context =
            TraceContext::from_headers(&headers(&[(&TRACEPARENT, EXAMPLE), (&TRACESTATE, &long)]));
        assert_eq!(context.parent_id, Some(0x00f067aa0ba902b7));
        assert_eq!(context.tracestate, None);
    }
}
