//! API errors with Prometheus's error types and HTTP status codes, rendered as
//! `{"status":"error","errorType":"bad_data","error":"…"}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Prometheus's `errorType` values. Some are produced only by particular engines.
#[allow(dead_code)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorType {
    /// Malformed request (400).
    BadData,
    /// The query failed while running (422).
    Execution,
    /// The query ran out of time (503).
    Timeout,
    /// The query was canceled (503).
    Canceled,
    /// Server-side failure (500).
    Internal,
    /// Not ready or shutting down (503).
    Unavailable,
    /// Unknown resource (404).
    NotFound,
    /// Not acceptable (406).
    NotAcceptable,
}

impl ErrorType {
    /// The `errorType` string.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::BadData => "bad_data",
            ErrorType::Execution => "execution",
            ErrorType::Timeout => "timeout",
            ErrorType::Canceled => "canceled",
            ErrorType::Internal => "internal",
            ErrorType::Unavailable => "unavailable",
            ErrorType::NotFound => "not_found",
            ErrorType::NotAcceptable => "not_acceptable",
        }
    }

    /// The HTTP status Prometheus answers with.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorType::BadData => StatusCode::BAD_REQUEST,
            ErrorType::Execution => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorType::Timeout | ErrorType::Canceled | ErrorType::Unavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ErrorType::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorType::NotFound => StatusCode::NOT_FOUND,
            ErrorType::NotAcceptable => StatusCode::NOT_ACCEPTABLE,
        }
    }
}

/// An API error: a type and a message.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    /// What kind of failure.
    pub kind: ErrorType,
    /// The message shown in `error`.
    pub msg: String,
}

impl ApiError {
    /// An error of `kind` with message `msg`.
    pub fn new(kind: ErrorType, msg: impl Into<String>) -> Self {
        ApiError {
            kind,
            msg: msg.into(),
        }
    }
    /// A `bad_data` error.
    pub fn bad_data(msg: impl Into<String>) -> Self {
        Self::new(ErrorType::BadData, msg)
    }
    /// An `internal` error.
    pub fn internal(msg: impl Into<String>) -> Self {
        Self::new(ErrorType::Internal, msg)
    }
    /// `invalid parameter "<name>": <err>`, as Prometheus words a bad parameter.
    pub fn invalid_param(name: &str, err: impl std::fmt::Display) -> Self {
        Self::bad_data(format!("invalid parameter {name:?}: {err}"))
    }

    /// The JSON body.
    pub fn body(&self) -> String {
        let mut out = String::with_capacity(64 + self.msg.len());
        out.push_str("{\"status\":\"error\",\"errorType\":\"");
        out.push_str(self.kind.as_str());
        out.push_str("\",\"error\":");
        super::json::write_str(&mut out, &self.msg);
        out.push('}');
        out
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.msg)
    }
}

impl From<tsdb::Error> for ApiError {
    fn from(e: tsdb::Error) -> Self {
        ApiError::internal(e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.kind.status(),
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            self.body(),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_and_status() {
        let e = ApiError::invalid_param("query", "1:34: parse error: unclosed left parenthesis");
        assert_eq!(e.kind.status(), StatusCode::BAD_REQUEST);
        let v: serde_json::Value = serde_json::from_str(&e.body()).unwrap();
        assert_eq!(v["status"], "error");
        assert_eq!(v["errorType"], "bad_data");
        assert_eq!(
            v["error"],
            "invalid parameter \"query\": 1:34: parse error: unclosed left parenthesis"
        );
        assert_eq!(ErrorType::Execution.status().as_u16(), 422);
        assert_eq!(ErrorType::Timeout.status().as_u16(), 503);
    }
}
