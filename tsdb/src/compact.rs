//! Compaction: writing blocks, merging blocks, leveled planning (to be written).
