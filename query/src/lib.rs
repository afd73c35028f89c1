//! The ignis PromQL engine: evaluates expressions parsed by `promql-parser` over the `tsdb`
//! storage traits with Prometheus 3.x semantics.
//!
//! [`Engine`] runs instant and range queries and returns a [`QueryResult`] (value,
//! annotations, statistics) or a [`QueryError`] carrying Prometheus's error kind.
//! [`promqltest`] interprets Prometheus's PromQL test scripts against the engine.

pub mod annotations;
pub mod engine;
pub mod error;
mod eval;
pub mod functions;
pub mod promqltest;
pub mod rewrite;
pub mod value;

pub use annotations::Annotations;
pub use engine::{Engine, EngineOptions, QueryOptions, QueryResult, QueryStats};
pub use error::{ErrorKind, QueryError};
pub use value::{Sample, Series, Value};
