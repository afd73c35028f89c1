//! Block compaction planning, downsampling and retention (later issue).
