//! PPS placeholder.
