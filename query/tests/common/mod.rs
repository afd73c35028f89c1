//! Helpers shared by the query crate's integration tests.

use std::path::PathBuf;

/// The shared folder beside the checkout (`$IGNIS_SHARED`, else `<checkout>/../shared`).
pub fn shared() -> PathBuf {
    std::env::var("IGNIS_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared")))
}
