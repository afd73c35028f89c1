//! Persistent blocks: `meta.json`, opening a block directory, block queriers (to be written).
