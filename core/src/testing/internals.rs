//! Sub-machines and constants private to the crate, re-exported for white-box tests outside it
//! (the fuzz target bodies in `tickwire-fuzz-targets`, the benchmarks in `tickwire-benches`).
//! Feature `testing` only and not part of the API: the endpoint embeds these machines, and an
//! embedder never drives them alone.

pub use crate::compress::{decode_message, encode_message, FLAG_STORED, FLAG_ZSTD, FLAG_ZSTD_DICTIONARY};
pub use crate::fragment::{split, FragmentHeader, Reassembler};
pub use crate::heartbeat::Heartbeat;
pub use crate::limits::{AddressLimiter, PeerLimiter, RateLimited, TokenBucket};
pub use crate::ticket::JOIN_TICKET_CONTEXT;
pub use crate::tls::ExporterBoundVerifier;

pub use super::model::ReassemblerModel;
