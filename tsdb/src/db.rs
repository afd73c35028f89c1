//! The database: opening a data directory, cutting and compacting blocks, retention (to be written).
