//! Go-compatible float formatting: the one implementation lives in the query crate.

pub use query::functions::gofmt::*;
