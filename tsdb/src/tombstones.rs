//! Tombstones file of a block (to be written).
