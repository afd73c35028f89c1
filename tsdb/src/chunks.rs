//! Chunk segment files `chunks/000001…` of a block (to be written).
