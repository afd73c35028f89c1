//! The head chunk files `chunks_head/000001…`: full head chunks written to disk and mmapped (to be written).
