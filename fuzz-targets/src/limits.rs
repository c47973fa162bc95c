//! Rate limiting: the token bucket and the per-address and per-peer limiters.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};
use tickwire_core::config::RateLimitConfig;
use tickwire_core::testing::internals::{AddressLimiter, PeerLimiter, TokenBucket};

use crate::input::{base_instant, each_op, ms, take, MAX_OPS};

#[derive(Debug, Default, Arbitrary)]
struct LimiterSettings {
    /// XORed into 4 tokens (the bucket) and 8 (per address).
    burst: u8,
    /// Refill in 1/16 token per second, XORed into 4/s; `flags & 1` negates it, `& 2` makes
    /// it NaN.
    rate: u16,
    flags: u8,
    /// XORed into 3 addresses.
    max_tracked: u8,
    /// XORed into 120 messages, and 4 096 bytes, per burst; rates as `rate` scaled.
    message_burst: u8,
    byte_burst: u16,
}

#[derive(Debug, Arbitrary)]
enum LimiterOp {
    /// `TokenBucket::try_take(amount)`.
    Take { amount: u8 },
    /// `AddressLimiter::check` for one of six addresses.
    Addr { addr: u8 },
    /// `PeerLimiter::check` for a message of `bytes` bytes.
    Peer { bytes: u16 },
    /// Time passes: `nanos` nanoseconds.
    Nanos { nanos: u32 },
    /// Time passes: `ms` milliseconds.
    Millis { ms: u16 },
    /// `TokenBucket::try_take(amount)` `ms` before the latest `now` (which then stays).
    Back { ms: u16, amount: u8 },
}

/// Admissions of one bucket: `(now, latest now so far, tokens)` for each admitted request.
type Admissions = Vec<(Instant, Instant, u64)>;

/// Asserts the token-bucket bound over every window of `admitted`: the tokens admitted between
/// requests `i` and `j` are at most the capacity plus the refill over the time between them
/// (`refill_per_ns` pico-tokens per nanosecond, the documented fixed point).
fn assert_bucket_bound(admitted: &[(Instant, Instant, u64)], capacity: u64, refill_per_ns: u128, what: &str) {
    let Some(&(_, latest_j, _)) = admitted.last() else {
        return;
    };
    let mut sum = 0u128;
    for &(now_i, _, amount) in admitted.iter().rev() {
        sum += u128::from(amount);
        let elapsed = latest_j.saturating_duration_since(now_i).as_nanos();
        let allowed = (u128::from(capacity) * UNITS).saturating_add(elapsed.saturating_mul(refill_per_ns));
        assert!(
            sum * UNITS <= allowed,
            "{what}: {sum} tokens admitted over {elapsed} ns, capacity {capacity}, {refill_per_ns} pico-tokens/ns"
        );
    }
}

/// Pico-tokens per token (the limiter's documented fixed point).
const UNITS: u128 = 1_000_000_000_000;

/// The documented rate representation: tokens per second rounded to 0.001, i.e. pico-tokens
/// per nanosecond; negative or NaN rates refill nothing.
fn refill_per_ns(per_sec: f64) -> u128 {
    (per_sec * 1_000.0).round() as u128
}

/// Token buckets and the limiters built on them ([`TokenBucket`], [`AddressLimiter`],
/// [`PeerLimiter`]), against the token-bucket bound.
///
/// Input (`arbitrary`): `LimiterSettings`, then up to [`MAX_OPS`] requests and time steps
/// (including `now`s earlier than the latest).
///
/// Asserts: over every window of requests, a bucket never admits more than its burst plus its
/// rate × elapsed (per address, over windows without an eviction; per connection for messages
/// and for bytes, a message charged at most the byte burst); a refusal happens only when fewer
/// tokens are available, and its `retry_after` is exact (the same request succeeds at
/// `now + retry_after` and, for a positive wait, fails a nanosecond earlier) or `Duration::MAX`
/// exactly when the request can never succeed; the address table stays within
/// `max_tracked_addrs`; the counters add up.
pub fn rate_limiter(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let s: LimiterSettings = take(&mut u);
    let mut rate = f64::from(64 ^ s.rate) / 16.0;
    if s.flags & 1 != 0 {
        rate = -rate;
    }
    if s.flags & 2 != 0 {
        rate = f64::NAN;
    }
    let capacity = u64::from(4 ^ s.burst);
    let config = RateLimitConfig {
        handshakes_per_addr_per_sec: rate,
        handshake_burst_per_addr: u64::from(8 ^ s.burst),
        max_tracked_addrs: usize::from(3 ^ (s.max_tracked % 8)),
        messages_per_sec: rate * 30.0,
        message_burst: u64::from(120 ^ s.message_burst),
        bytes_per_sec: rate * 4096.0,
        byte_burst: u64::from(4096 ^ s.byte_burst),
    };
    let start = base_instant() + Duration::from_secs(3600);
    let mut now = start;
    let mut bucket = TokenBucket::new(capacity, rate, now);
    let mut addresses = AddressLimiter::new(&config);
    let mut peer = PeerLimiter::new(&config, now);
    let addrs: [IpAddr; 6] = [
        IpAddr::from([10, 0, 0, 1]),
        IpAddr::from([10, 0, 0, 2]),
        IpAddr::from([192, 168, 1, 1]),
        IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]),
        IpAddr::from([0x2001u16, 0xdb8, 0, 0, 0, 0, 0, 1]),
        IpAddr::from([255, 255, 255, 255]),
    ];
    let mut latest = now;
    let mut bucket_latest = now;
    let mut bucket_admitted: Admissions = Vec::new();
    // Per address: admissions since the last eviction anywhere.
    let mut addr_admitted: Vec<Admissions> = vec![Vec::new(); addrs.len()];
    let mut addr_evictions = 0u64;
    let (mut messages_admitted, mut bytes_admitted): (Admissions, Admissions) = (Vec::new(), Vec::new());
    let (mut addr_checks, mut peer_checks) = (0u64, 0u64);
    let byte_burst = config.byte_burst;

    each_op(&mut u, MAX_OPS, |op: LimiterOp| {
        let mut at = now;
        match op {
            LimiterOp::Nanos { nanos } => {
                now += Duration::from_nanos(u64::from(nanos));
                return;
            }
            LimiterOp::Millis { ms: step } => {
                now += ms(u64::from(step));
                return;
            }
            LimiterOp::Back { ms: back, .. } => at = now - ms(u64::from(back)),
            _ => {}
        }
        latest = latest.max(at);
        match op {
            LimiterOp::Take { amount } | LimiterOp::Back { amount, .. } => {
                let amount = u64::from(amount);
                bucket_latest = bucket_latest.max(at);
                let available = bucket.available(at);
                let before = bucket.clone();
                match bucket.try_take(at, amount) {
                    Ok(()) => {
                        assert!(available >= amount, "took {amount} of {available} tokens");
                        bucket_admitted.push((at, latest, amount));
                        assert_bucket_bound(&bucket_admitted, capacity, refill_per_ns(rate), "bucket");
                    }
                    Err(limited) => {
                        assert!(available < amount, "refused {amount} with {available} available");
                        let never = amount > capacity || refill_per_ns(rate) == 0;
                        assert_eq!(limited.retry_after == Duration::MAX, never, "{limited:?}");
                        if !never {
                            let retry = bucket_latest + limited.retry_after;
                            assert!(
                                before.clone().try_take(retry, amount).is_ok(),
                                "retry_after too short"
                            );
                            if !limited.retry_after.is_zero() {
                                let early = retry - Duration::from_nanos(1);
                                assert!(
                                    before.clone().try_take(early, amount).is_err(),
                                    "retry_after too long"
                                );
                            }
                        }
                    }
                }
            }
            LimiterOp::Addr { addr } => {
                let i = usize::from(addr) % addrs.len();
                addr_checks += 1;
                let result = addresses.check(at, addrs[i]);
                let stats = addresses.stats();
                if stats.evictions != addr_evictions {
                    addr_evictions = stats.evictions;
                    addr_admitted.iter_mut().for_each(Vec::clear);
                }
                if result.is_ok() {
                    addr_admitted[i].push((at, latest, 1));
                    assert_bucket_bound(
                        &addr_admitted[i],
                        config.handshake_burst_per_addr,
                        refill_per_ns(config.handshakes_per_addr_per_sec),
                        "address",
                    );
                }
                assert!(
                    addresses.tracked() <= config.max_tracked_addrs.max(1),
                    "address table over its cap"
                );
                assert_eq!(stats.allowed + stats.limited, addr_checks);
            }
            LimiterOp::Peer { bytes } => {
                peer_checks += 1;
                let charged = u64::from(bytes).min(byte_burst);
                let before = peer.clone();
                match peer.check(at, usize::from(bytes)) {
                    Ok(()) => {
                        messages_admitted.push((at, latest, 1));
                        bytes_admitted.push((at, latest, charged));
                        assert_bucket_bound(
                            &messages_admitted,
                            config.message_burst,
                            refill_per_ns(config.messages_per_sec),
                            "messages",
                        );
                        assert_bucket_bound(
                            &bytes_admitted,
                            byte_burst,
                            refill_per_ns(config.bytes_per_sec),
                            "bytes",
                        );
                    }
                    Err(limited) => {
                        if let Some(retry) = latest.checked_add(limited.retry_after) {
                            if limited.retry_after < Duration::from_secs(1 << 40) {
                                assert!(
                                    before.clone().check(retry, usize::from(bytes)).is_ok(),
                                    "peer retry_after too short"
                                );
                            }
                        }
                    }
                }
                let stats = peer.stats();
                assert_eq!(stats.allowed + stats.limited, peer_checks);
                assert_eq!(stats.evictions, 0);
            }
            LimiterOp::Nanos { .. } | LimiterOp::Millis { .. } => {}
        }
    });
}
