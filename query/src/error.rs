//! The engine's error type, with Prometheus's error kinds so the HTTP layer can map them to
//! `errorType` values and status codes.

/// What went wrong, as Prometheus classifies it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The query is malformed (parse errors, bad parameters): `bad_data`, HTTP 400.
    BadData,
    /// Evaluation failed (too many samples, many-to-many matching, …): `execution`, HTTP 422.
    Execution,
    /// The query ran longer than allowed: `timeout`, HTTP 503.
    Timeout,
    /// The query was canceled: `canceled`, HTTP 503.
    Canceled,
    /// Storage failed: `internal`, HTTP 500.
    Internal,
}

impl ErrorKind {
    /// Prometheus's `errorType` string.
    pub fn as_str(&self) -> &'static str {
        match self {
            ErrorKind::BadData => "bad_data",
            ErrorKind::Execution => "execution",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Canceled => "canceled",
            ErrorKind::Internal => "internal",
        }
    }
}

/// A failed query.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{msg}")]
pub struct QueryError {
    /// The kind of failure.
    pub kind: ErrorKind,
    /// Prometheus's message text.
    pub msg: String,
}

impl QueryError {
    /// A `bad_data` error.
    pub fn bad_data(msg: impl Into<String>) -> Self {
        QueryError {
            kind: ErrorKind::BadData,
            msg: msg.into(),
        }
    }
    /// An `execution` error.
    pub fn execution(msg: impl Into<String>) -> Self {
        QueryError {
            kind: ErrorKind::Execution,
            msg: msg.into(),
        }
    }
    /// The error for exceeding the sample limit.
    pub fn too_many_samples() -> Self {
        Self::execution(
            "query processing would load too many samples into memory in query execution",
        )
    }
    /// The error for exceeding the timeout.
    pub fn timeout() -> Self {
        QueryError {
            kind: ErrorKind::Timeout,
            msg: "query timed out in expression evaluation".into(),
        }
    }
    /// The error for a canceled query.
    pub fn canceled() -> Self {
        QueryError {
            kind: ErrorKind::Canceled,
            msg: "query was canceled in expression evaluation".into(),
        }
    }
    /// A storage error.
    pub fn storage(e: tsdb::Error) -> Self {
        QueryError {
            kind: ErrorKind::Internal,
            msg: e.to_string(),
        }
    }
}

/// Result with a [`QueryError`].
pub type QResult<T> = std::result::Result<T, QueryError>;
