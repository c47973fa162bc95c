//! Units and thresholds shared by the engine, the links and the report: a leaf, so that the
//! report reads its units from here rather than from the engine.

/// Virtual time, integer nanoseconds.
pub type Nanos = u64;

/// Nanoseconds per second.
pub const SECOND: Nanos = 1_000_000_000;

/// Nanoseconds per millisecond.
pub const MILLI: Nanos = 1_000_000;

/// Snapshots larger than this many bytes cannot fit one QUIC datagram at the 1 200-byte
/// initial MTU (RFC 9000 §14), so they always travel in fragments.
pub const FRAGMENTED_ABOVE: usize = 1_200;
