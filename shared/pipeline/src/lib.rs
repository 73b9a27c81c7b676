//! The LogQL log pipeline: what happens to one entry after its stream was selected.
