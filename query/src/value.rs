//! Query result values: scalars, strings, instant vectors and range vectors (matrices), in the
//! shapes Prometheus's HTTP API returns.

use tsdb::Labels;

/// One sample of an instant vector.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The series labels.
    pub metric: Labels,
    /// Timestamp (ms).
    pub t: i64,
    /// Value.
    pub v: f64,
}

/// One series of a range vector.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// The series labels.
    pub metric: Labels,
    /// Points `(timestamp ms, value)` in time order.
    pub floats: Vec<(i64, f64)>,
}

/// The value a query evaluates to.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A scalar at a timestamp.
    Scalar {
        /// Timestamp (ms).
        t: i64,
        /// Value.
        v: f64,
    },
    /// A string at a timestamp.
    String {
        /// Timestamp (ms).
        t: i64,
        /// Value.
        v: String,
    },
    /// An instant vector.
    Vector(Vec<Sample>),
    /// A range vector; series sorted by labels.
    Matrix(Vec<Series>),
}

impl Value {
    /// Prometheus's name of the value type (`scalar`, `string`, `vector`, `matrix`).
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Scalar { .. } => "scalar",
            Value::String { .. } => "string",
            Value::Vector(_) => "vector",
            Value::Matrix(_) => "matrix",
        }
    }
}
