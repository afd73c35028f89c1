//! Index format v2 of a block (to be written).
