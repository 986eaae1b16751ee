//! Errors refused at the HTTP level, before GraphQL runs, as GraphQL-shaped
//! bodies (`{"errors":[{"message","extensions":{"code","requestId"}}]}`) so
//! clients parse one format whatever went wrong.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// The stable codes of errors raised by the HTTP layer.
pub mod codes {
    pub const BAD_REQUEST: &str = "BAD_REQUEST";
    pub const PAYLOAD_TOO_LARGE: &str = "PAYLOAD_TOO_LARGE";
    pub const UNSUPPORTED_MEDIA_TYPE: &str = "UNSUPPORTED_MEDIA_TYPE";
    pub const NOT_ACCEPTABLE: &str = "NOT_ACCEPTABLE";
    pub const METHOD_NOT_ALLOWED: &str = "METHOD_NOT_ALLOWED";
    pub const BATCHING_NOT_SUPPORTED: &str = "BATCHING_NOT_SUPPORTED";
    pub const UNAUTHENTICATED: &str = "UNAUTHENTICATED";
    pub const CSRF_PREVENTED: &str = "CSRF_PREVENTED";
    /// An event stream refused at the bound on open connections.
    pub const TOO_MANY_CONNECTIONS: &str = "TOO_MANY_CONNECTIONS";
}

/// `Retry-After` of a 503 while the database is unavailable, in seconds.
pub const RETRY_AFTER_SECONDS: &str = "5";

/// The code of a request refused at the HTTP level, left in the response's
/// extensions for the metrics.
#[derive(Clone, Copy, Debug)]
pub struct Refused(pub &'static str);

pub struct Problem {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Extra response headers (`Allow`, `WWW-Authenticate`, `Cache-Control`).
    pub headers: Vec<(header::HeaderName, &'static str)>,
    /// A GraphQL request error (the document cannot run): 200 under
    /// `application/json`, `status` under `application/graphql-response+json`.
    pub request_error: bool,
    /// Extra `extensions` entries: a limit and the measured value.
    pub details: Vec<(&'static str, serde_json::Value)>,
}

impl Problem {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Problem {
        Problem {
            status,
            code,
            message: message.into(),
            headers: Vec::new(),
            request_error: false,
            details: Vec::new(),
        }
    }

    /// A request error (see [`Problem::request_error`]), 400 under the
    /// GraphQL response media type.
    pub fn request_error(code: &'static str, message: impl Into<String>) -> Problem {
        Problem {
            request_error: true,
            ..Problem::new(StatusCode::BAD_REQUEST, code, message)
        }
    }

    /// A limit the request went past: a request error with
    /// `extensions.limit` and `extensions.measured`, like the query limits.
    pub fn exceeded(exceeded: &crate::limits::Exceeded) -> Problem {
        Problem {
            details: vec![
                ("limit", exceeded.limit.into()),
                ("measured", exceeded.measured.into()),
            ],
            ..Problem::request_error(exceeded.code, exceeded.message())
        }
    }

    pub fn with_header(mut self, name: header::HeaderName, value: &'static str) -> Problem {
        self.headers.push((name, value));
        self
    }

    /// The database is unavailable: 503, never cached, with a hint of when
    /// to retry (what the health probe needs to see it back).
    pub fn unavailable() -> Problem {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            crate::graph::code::SERVICE_UNAVAILABLE,
            crate::graph::UNAVAILABLE_MESSAGE,
        )
        .with_header(header::RETRY_AFTER, RETRY_AFTER_SECONDS)
        .no_store()
    }

    /// Neither browsers nor CDNs may keep the answer.
    pub fn no_store(self) -> Problem {
        self.with_header(header::CACHE_CONTROL, "no-store")
    }

    pub fn into_response(self, request_id: &str, content_type: &'static str) -> Response {
        let mut extensions = serde_json::Map::new();
        extensions.insert("code".into(), self.code.into());
        extensions.insert("requestId".into(), request_id.into());
        for (key, value) in self.details {
            extensions.insert(key.into(), value);
        }
        let body = serde_json::json!({
            "errors": [{ "message": self.message, "extensions": extensions }]
        });
        let status = if self.request_error
            && !content_type.starts_with("application/graphql-response+json")
        {
            StatusCode::OK
        } else {
            self.status
        };
        let mut response = (
            status,
            [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
            body.to_string(),
        )
            .into_response();
        for (name, value) in self.headers {
            response
                .headers_mut()
                .insert(name, HeaderValue::from_static(value));
        }
        response.extensions_mut().insert(Refused(self.code));
        response
    }
}
