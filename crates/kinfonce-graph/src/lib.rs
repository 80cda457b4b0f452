//! The theory lab (being written).
