//! The head block: in-memory series, postings, appender, and the head chunk files (to be written).

pub mod head_chunks;
