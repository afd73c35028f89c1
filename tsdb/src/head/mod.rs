//! The head block: in-memory series, postings, appender, head chunk files (to be written).
