"""Application-layer parsers: per-flow protocol state fed with reassembled stream bytes."""
