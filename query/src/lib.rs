//! The ignis PromQL engine: evaluates expressions parsed by `promql-parser` over the `tsdb`
//! storage traits with Prometheus 3.x semantics.

pub mod functions;
