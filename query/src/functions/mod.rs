//! PromQL function implementations (to be written).
