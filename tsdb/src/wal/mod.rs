//! The write-ahead log (to be written).
