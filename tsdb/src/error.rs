//! The storage engine's error type.

use std::path::PathBuf;

/// Result with the storage engine's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything the storage engine can fail with. Messages name the file and place where they can.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O error on a named file or directory.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An I/O error with no single path to blame.
    #[error(transparent)]
    RawIo(#[from] std::io::Error),
    /// Data on disk does not follow its format.
    #[error("corruption in {file} at offset {offset}: {msg}")]
    Corruption {
        /// The damaged file.
        file: PathBuf,
        /// Byte offset of the damage, as far as it is known.
        offset: u64,
        /// What is wrong.
        msg: String,
    },
    /// A damaged or torn write-ahead log segment; `crate::wal::repair` cuts the log back to the
    /// last good record before it.
    #[error(transparent)]
    WalCorruption(#[from] crate::wal::CorruptionError),
    /// A buffer being decoded is shorter or otherwise not what its format says (no file known yet).
    #[error("invalid encoding: {0}")]
    Encoding(String),
    /// Sample older than the newest one of its series (Prometheus: `out of order sample`).
    #[error("out of order sample")]
    OutOfOrderSample,
    /// Sample outside the head's appendable time range (Prometheus: `out of bounds`).
    #[error("out of bounds")]
    OutOfBounds,
    /// Same timestamp as the newest sample of its series with another value.
    #[error("duplicate sample for timestamp")]
    DuplicateSampleForTimestamp,
    /// Sample older than the out-of-order window allows.
    #[error("too old sample")]
    TooOldSample,
    /// Label set that is not valid (empty name, duplicate names, empty set).
    #[error("invalid labels: {0}")]
    InvalidLabels(String),
    /// Invalid argument given by a caller.
    #[error("{0}")]
    InvalidArgument(String),
    /// Operation on a closed database or appender.
    #[error("closed")]
    Closed,
    /// Anything else, with its message.
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// A corruption error for `file` at `offset`.
    pub fn corruption(file: impl Into<PathBuf>, offset: u64, msg: impl Into<String>) -> Self {
        Error::Corruption {
            file: file.into(),
            offset,
            msg: msg.into(),
        }
    }
}
