//! Token-bucket rate limits: handshakes per source address, messages and bytes per connection.
//!
//! A [`TokenBucket`] holds up to `capacity` tokens and gains `refill_per_sec` tokens per second;
//! taking more than it holds is refused with the exact time until enough will be there.
//!
//! Arithmetic is fixed-point, so refill timing is exact and platform-independent: tokens are
//! counted in pico-tokens (10⁻¹² token) in a `u128`, and the refill rate is rounded to the
//! nearest milli-token per second (one pico-token per nanosecond). A `retry_after` is rounded up
//! to the next nanosecond, so retrying at exactly `now + retry_after` always succeeds if nothing
//! else drained the bucket.
//!
//! Time only moves forward: a `now` earlier than one already seen adds no tokens and changes no
//! clock.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Pico-tokens per token.
const UNITS_PER_TOKEN: u128 = 1_000_000_000_000;

/// A request was refused because a bucket holds too few tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("rate limited, retry after {retry_after:?}")]
pub struct RateLimited {
    /// How long until the request would be allowed, if nothing else takes tokens meanwhile.
    /// Drop the request (or queue it until then). [`Duration::MAX`] means never: the request
    /// exceeds the bucket's capacity or the refill rate is zero, so it can never be allowed —
    /// add it to an `Instant` with `checked_add`.
    pub retry_after: Duration,
}

/// A token bucket: starts full, refills continuously, never holds more than its capacity.
///
/// Counts are fixed-point (pico-tokens in a `u128`), so refill timing is exact; a `retry_after`
/// is rounded up to the next nanosecond.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    capacity: u128,
    refill_per_ns: u128,
    tokens: u128,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket of `capacity` whole tokens refilling at `refill_per_sec` tokens per second
    /// (rounded to 0.001 token/s; negative or NaN rates count as zero, i.e. never refill).
    pub fn new(capacity: u64, refill_per_sec: f64, now: Instant) -> Self {
        let capacity = u128::from(capacity) * UNITS_PER_TOKEN;
        Self {
            capacity,
            // Float-to-int `as` saturates and maps NaN to 0.
            refill_per_ns: (refill_per_sec * 1_000.0).round() as u128,
            tokens: capacity,
            last: now,
        }
    }

    /// Takes `amount` tokens if the bucket holds them at `now`.
    ///
    /// # Errors
    /// [`RateLimited`] with the time until `amount` tokens will be available; nothing is taken.
    pub fn try_take(&mut self, now: Instant, amount: u64) -> Result<(), RateLimited> {
        self.refill(now);
        self.shortfall(amount)?;
        self.take(amount);
        Ok(())
    }

    /// Capacity in whole tokens.
    pub fn capacity(&self) -> u64 {
        // Exact: the capacity was built from whole tokens.
        u64::try_from(self.capacity / UNITS_PER_TOKEN).unwrap_or(u64::MAX)
    }

    #[cfg(any(test, feature = "testing"))]
    /// Whole tokens available at `now` (refills first).
    pub fn available(&mut self, now: Instant) -> u64 {
        self.refill(now);
        u64::try_from(self.tokens / UNITS_PER_TOKEN).unwrap_or(u64::MAX)
    }

    fn refill(&mut self, now: Instant) {
        // Many messages arrive at one instant; a full bucket gains nothing either way.
        if now <= self.last {
            return;
        }
        if self.tokens == self.capacity {
            self.last = now;
            return;
        }
        self.gain(now, now.duration_since(self.last));
    }

    /// Moves the clock to `now`, `elapsed` after the last refill, and adds the tokens gained.
    fn gain(&mut self, now: Instant, elapsed: Duration) {
        let gained = elapsed.as_nanos().saturating_mul(self.refill_per_ns);
        self.tokens = self.tokens.saturating_add(gained).min(self.capacity);
        self.last = now;
    }

    /// `Ok` if `amount` tokens are there now, otherwise the wait until they will be.
    fn shortfall(&self, amount: u64) -> Result<(), RateLimited> {
        let needed = u128::from(amount) * UNITS_PER_TOKEN;
        if needed <= self.tokens {
            return Ok(());
        }
        let retry_after = if needed > self.capacity || self.refill_per_ns == 0 {
            Duration::MAX
        } else {
            let nanos = (needed - self.tokens).div_ceil(self.refill_per_ns);
            u64::try_from(nanos).map_or(Duration::MAX, Duration::from_nanos)
        };
        Err(RateLimited { retry_after })
    }

    fn take(&mut self, amount: u64) {
        self.tokens -= u128::from(amount) * UNITS_PER_TOKEN;
    }
}

/// Rate limits. Burst sizes are bucket capacities; rates are sustained refill rates.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Sustained handshakes per second per source IP address. Default 4.0: a client reconnects
    /// rarely, but several players can share one address behind a NAT.
    pub handshakes_per_addr_per_sec: f64,
    /// Handshakes one source address may start back to back. Default 8: a household or LAN party
    /// joining at once.
    pub handshake_burst_per_addr: u64,
    /// Source addresses tracked at once; when full, the address idle longest is forgotten.
    /// Default 4 096 (a few hundred KiB), far above the addresses handshaking in any second.
    pub max_tracked_addrs: usize,
    /// Sustained messages per second per connection. Default 600: ten times a 60 Hz input stream.
    pub messages_per_sec: f64,
    /// Messages a connection may send back to back. Default 120: two seconds of 60 Hz input
    /// flushed at once after a stall.
    pub message_burst: u64,
    /// Sustained bytes per second per connection. Default 1 MiB/s, well above game traffic.
    pub bytes_per_sec: f64,
    /// Bytes a connection may send back to back. Default 256 KiB; a single message larger than
    /// this is always refused.
    pub byte_burst: u64,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            handshakes_per_addr_per_sec: 4.0,
            handshake_burst_per_addr: 8,
            max_tracked_addrs: 4_096,
            messages_per_sec: 600.0,
            message_burst: 120,
            bytes_per_sec: 1_048_576.0,
            byte_burst: 262_144,
        }
    }
}

impl RateLimitConfig {
    /// Checks that every bucket can allow something and the address table can hold an entry.
    ///
    /// # Errors
    /// The first [`RateLimitConfigError`] found; fix that field.
    pub fn validate(&self) -> Result<(), RateLimitConfigError> {
        let rates = [
            ("handshakes_per_addr_per_sec", self.handshakes_per_addr_per_sec),
            ("messages_per_sec", self.messages_per_sec),
            ("bytes_per_sec", self.bytes_per_sec),
        ];
        if let Some((field, _)) = rates
            .into_iter()
            .find(|(_, rate)| !(rate.is_finite() && *rate >= 0.001))
        {
            return Err(RateLimitConfigError::BadRate { field });
        }
        let bursts = [
            ("handshake_burst_per_addr", self.handshake_burst_per_addr),
            ("message_burst", self.message_burst),
            ("byte_burst", self.byte_burst),
        ];
        if let Some((field, _)) = bursts.into_iter().find(|(_, burst)| *burst == 0) {
            return Err(RateLimitConfigError::ZeroBurst { field });
        }
        if self.max_tracked_addrs == 0 {
            return Err(RateLimitConfigError::NoTrackedAddrs);
        }
        Ok(())
    }
}

/// An invalid [`RateLimitConfig`]; the variant names the field to fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RateLimitConfigError {
    /// A rate is below 0.001 per second (the fixed-point resolution), infinite or NaN.
    #[error("{field} must be finite and at least 0.001")]
    BadRate {
        /// The offending field.
        field: &'static str,
    },
    /// A burst is 0, so nothing would ever be allowed.
    #[error("{field} must be at least 1")]
    ZeroBurst {
        /// The offending field.
        field: &'static str,
    },
    /// `max_tracked_addrs` is 0: the table must hold at least one address.
    #[error("max_tracked_addrs must be at least 1")]
    NoTrackedAddrs,
}

/// Counters of a limiter's decisions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct LimiterStats {
    /// Requests allowed.
    pub allowed: u64,
    /// Requests refused with `RateLimited`.
    pub limited: u64,
    /// Tracked entries forgotten because the table was full (always 0 for `PeerLimiter`).
    pub evictions: u64,
}

impl std::ops::AddAssign for LimiterStats {
    /// Sums two limiters' counters (e.g. over connections).
    fn add_assign(&mut self, other: Self) {
        self.allowed += other.allowed;
        self.limited += other.limited;
        self.evictions += other.evictions;
    }
}

impl LimiterStats {
    fn record<T>(&mut self, result: Result<T, RateLimited>) -> Result<T, RateLimited> {
        match result {
            Ok(_) => self.allowed += 1,
            Err(_) => self.limited += 1,
        }
        result
    }
}

#[derive(Debug, Clone)]
struct AddrEntry {
    bucket: TokenBucket,
    last_seen: Instant,
}

/// The source a server charges per-address limits to: an IPv4 address, or an IPv6 address's
/// /64 prefix (one subscriber is usually given a whole /64, RFC 6177, so per-address limits
/// keyed on full IPv6 addresses would give one host 2^64 budgets). IPv4-mapped IPv6 addresses
/// (from dual-stack sockets) count as their IPv4 address.
pub(crate) fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut octets = v6.octets();
                octets[8..].fill(0);
                IpAddr::V6(octets.into())
            }
        },
    }
}

/// Handshake limiter per source IP address, with a bounded table.
///
/// When the table holds `max_tracked_addrs` addresses and a new one arrives, the address idle
/// longest is forgotten (counted in [`LimiterStats::evictions`]) and starts afresh if it returns.
/// An address idle for `burst / rate` seconds has a full bucket anyway, so evicting it loses
/// nothing; under an address-spraying flood, evictions show in the counter.
#[derive(Debug, Clone)]
pub struct AddressLimiter {
    burst: u64,
    per_sec: f64,
    max_tracked: usize,
    entries: BTreeMap<IpAddr, AddrEntry>,
    /// `(last_seen, addr)` of every entry, oldest first.
    idle: BTreeSet<(Instant, IpAddr)>,
    stats: LimiterStats,
}

impl AddressLimiter {
    /// An empty table using the handshake fields of `config`.
    pub fn new(config: &RateLimitConfig) -> Self {
        Self {
            burst: config.handshake_burst_per_addr,
            per_sec: config.handshakes_per_addr_per_sec,
            max_tracked: config.max_tracked_addrs,
            entries: BTreeMap::new(),
            idle: BTreeSet::new(),
            stats: LimiterStats::default(),
        }
    }

    /// Takes one handshake token for `addr` at `now`, tracking the address if it is new.
    ///
    /// # Errors
    /// [`RateLimited`] if `addr` has used its burst; answer with a rejection carrying
    /// `retry_after` (or drop silently under attack).
    pub fn check(&mut self, now: Instant, addr: IpAddr) -> Result<(), RateLimited> {
        if !self.entries.contains_key(&addr) && self.entries.len() >= self.max_tracked {
            if let Some((_, idlest)) = self.idle.pop_first() {
                self.entries.remove(&idlest);
                self.stats.evictions += 1;
            }
        }
        let entry = self.entries.entry(addr).or_insert_with(|| AddrEntry {
            bucket: TokenBucket::new(self.burst, self.per_sec, now),
            last_seen: now,
        });
        self.idle.remove(&(entry.last_seen, addr));
        entry.last_seen = entry.last_seen.max(now);
        self.idle.insert((entry.last_seen, addr));
        let result = entry.bucket.try_take(now, 1);
        self.stats.record(result)
    }

    /// Whether `addr` holds a handshake token at `now`, without taking it or tracking a new
    /// address: an endpoint asks before it decrypts an Initial, and charges with
    /// [`AddressLimiter::check`] only once the Initial proved to be a real QUIC packet, so that
    /// datagrams failing authentication (spoofed garbage from a player's address) never spend
    /// the player's tokens. A refusal is counted in [`LimiterStats::limited`].
    ///
    /// # Errors
    /// [`RateLimited`] if `addr` has used its burst.
    pub fn peek(&mut self, now: Instant, addr: IpAddr) -> Result<(), RateLimited> {
        let Some(entry) = self.entries.get_mut(&addr) else {
            return Ok(());
        };
        entry.bucket.refill(now);
        let result = entry.bucket.shortfall(1);
        if result.is_err() {
            self.stats.record(result)?;
        }
        Ok(())
    }

    /// Number of addresses currently tracked (at most `max_tracked_addrs`, or 1 if that is 0).
    pub fn tracked(&self) -> usize {
        self.entries.len()
    }

    /// Decision counters.
    pub fn stats(&self) -> LimiterStats {
        self.stats
    }
}

/// Message and byte limiter for one connection.
#[derive(Debug, Clone)]
pub struct PeerLimiter {
    messages: TokenBucket,
    bytes: TokenBucket,
    /// The byte bucket's capacity in whole bytes (the most one message is charged).
    byte_capacity: u64,
    stats: LimiterStats,
}

impl PeerLimiter {
    /// Full buckets at `now`, using the per-connection fields of `config`.
    pub fn new(config: &RateLimitConfig, now: Instant) -> Self {
        let bytes = TokenBucket::new(config.byte_burst, config.bytes_per_sec, now);
        Self {
            messages: TokenBucket::new(config.message_burst, config.messages_per_sec, now),
            byte_capacity: bytes.capacity(),
            bytes,
            stats: LimiterStats::default(),
        }
    }

    /// Accounts one message of `bytes` bytes at `now`: takes one message token and `bytes` byte
    /// tokens if both buckets allow, otherwise takes nothing.
    ///
    /// # Errors
    /// [`RateLimited`] with the time until both buckets allow this message; drop it (or stop
    /// reading from the peer until then). A message larger than `byte_burst` is charged
    /// `byte_burst` (it needs a full bucket), so a legitimate large reliable message is
    /// admitted at the sustained rate rather than refused forever; its size is bounded
    /// separately by the frame limit.
    pub fn check(&mut self, now: Instant, bytes: usize) -> Result<(), RateLimited> {
        let bytes = u64::try_from(bytes).unwrap_or(u64::MAX).min(self.byte_capacity);
        // Messages arrive in bursts at one instant: once both buckets were refilled at `now`
        // (they always are together), a message they both cover only takes its tokens.
        if now <= self.messages.last {
            let needed = u128::from(bytes) * UNITS_PER_TOKEN;
            if self.messages.tokens >= UNITS_PER_TOKEN && self.bytes.tokens >= needed {
                self.messages.tokens -= UNITS_PER_TOKEN;
                self.bytes.tokens -= needed;
                self.stats.allowed += 1;
                return Ok(());
            }
        }
        self.check_refilled(now, bytes)
    }

    /// [`PeerLimiter::check`] after refilling both buckets; `bytes` is already capped.
    #[inline(never)]
    fn check_refilled(&mut self, now: Instant, bytes: u64) -> Result<(), RateLimited> {
        // Both buckets are refilled together, so they share one clock and one elapsed time.
        debug_assert_eq!(self.messages.last, self.bytes.last);
        if now > self.messages.last {
            let elapsed = now.duration_since(self.messages.last);
            self.messages.gain(now, elapsed);
            self.bytes.gain(now, elapsed);
        }
        let result = match (self.messages.shortfall(1), self.bytes.shortfall(bytes)) {
            (Ok(()), Ok(())) => {
                self.messages.take(1);
                self.bytes.take(bytes);
                Ok(())
            }
            (Err(limited), Ok(())) | (Ok(()), Err(limited)) => Err(limited),
            (Err(a), Err(b)) => Err(RateLimited {
                retry_after: a.retry_after.max(b.retry_after),
            }),
        };
        self.stats.record(result)
    }

    /// Decision counters.
    pub fn stats(&self) -> LimiterStats {
        self.stats
    }
}

#[cfg(test)]
mod source_tests {
    use super::*;

    #[test]
    fn ipv6_sources_are_their_64_prefix_and_mapped_ipv4_is_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(source_key(a), source_key(b));
        assert_eq!(source_key(a), "2001:db8:1:2::".parse::<IpAddr>().unwrap());
        assert_ne!(source_key(a), source_key(other));
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(source_key(v4), v4);
        assert_eq!(source_key("::ffff:192.0.2.7".parse().unwrap()), v4);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    fn addr(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
    }

    fn retry_after(result: Result<(), RateLimited>) -> Duration {
        result.unwrap_err().retry_after
    }

    #[test]
    fn burst_then_exact_refill() {
        let t0 = crate::testing::epoch();
        let mut bucket = TokenBucket::new(8, 4.0, t0);
        for _ in 0..8 {
            bucket.try_take(t0, 1).unwrap();
        }
        // Empty: one token comes back every 250 ms.
        assert_eq!(retry_after(bucket.try_take(t0, 1)), ms(250));
        assert_eq!(
            retry_after(bucket.try_take(t0 + ms(249), 1)),
            Duration::from_millis(1)
        );
        bucket.try_take(t0 + ms(250), 1).unwrap();
        assert_eq!(retry_after(bucket.try_take(t0 + ms(250), 1)), ms(250));

        // After a long pause the bucket is full again, never fuller.
        assert_eq!(bucket.available(t0 + Duration::from_secs(60)), 8);
    }

    #[test]
    fn retry_after_is_for_the_whole_amount_and_rounds_up() {
        let t0 = crate::testing::epoch();
        let mut bucket = TokenBucket::new(10, 3.0, t0);
        bucket.try_take(t0, 9).unwrap();
        // 1 held, 5 needed: 4 tokens at 3/s = 1.333… s, rounded up to the nanosecond.
        let wait = retry_after(bucket.try_take(t0, 5));
        assert_eq!(wait, Duration::from_nanos(1_333_333_334));
        assert!(bucket.try_take(t0 + wait - Duration::from_nanos(1), 5).is_err());
        bucket.try_take(t0 + wait, 5).unwrap();
    }

    #[test]
    fn fractional_rates_are_exact_to_the_milli_token() {
        let t0 = crate::testing::epoch();
        let mut bucket = TokenBucket::new(1, 0.5, t0);
        bucket.try_take(t0, 1).unwrap();
        assert_eq!(retry_after(bucket.try_take(t0, 1)), ms(2_000));
        bucket.try_take(t0 + ms(2_000), 1).unwrap();
    }

    #[test]
    fn more_than_capacity_or_no_refill_is_never() {
        let t0 = crate::testing::epoch();
        let mut bucket = TokenBucket::new(4, 1.0, t0);
        assert_eq!(retry_after(bucket.try_take(t0, 5)), Duration::MAX);
        assert_eq!(bucket.available(t0), 4, "a refused take takes nothing");

        let mut dry = TokenBucket::new(1, 0.0, t0);
        dry.try_take(t0, 1).unwrap();
        assert_eq!(retry_after(dry.try_take(t0, 1)), Duration::MAX);
        assert_eq!(
            TokenBucket::new(1, f64::NAN, t0).refill_per_ns,
            0,
            "NaN rate never refills"
        );
    }

    #[test]
    fn earlier_time_is_ignored() {
        let t0 = crate::testing::epoch();
        let mut bucket = TokenBucket::new(2, 1.0, t0 + ms(1_000));
        bucket.try_take(t0 + ms(1_000), 2).unwrap();
        // A stale `now` neither refills nor rewinds the clock.
        assert_eq!(retry_after(bucket.try_take(t0, 1)), ms(1_000));
        assert_eq!(retry_after(bucket.try_take(t0 + ms(1_500), 1)), ms(500));
        bucket.try_take(t0 + ms(2_000), 1).unwrap();
    }

    #[test]
    fn address_limiter_limits_each_address_separately() {
        let t0 = crate::testing::epoch();
        let mut limiter = AddressLimiter::new(&RateLimitConfig::default());
        for _ in 0..8 {
            limiter.check(t0, addr(1)).unwrap();
        }
        assert_eq!(retry_after(limiter.check(t0, addr(1))), ms(250));
        limiter.check(t0, addr(2)).unwrap();
        limiter.check(t0 + ms(250), addr(1)).unwrap();
        assert_eq!(
            limiter.stats(),
            LimiterStats {
                allowed: 10,
                limited: 1,
                evictions: 0
            }
        );
    }

    #[test]
    fn address_table_is_bounded_and_evicts_the_idlest() {
        let t0 = crate::testing::epoch();
        let config = RateLimitConfig {
            max_tracked_addrs: 3,
            handshake_burst_per_addr: 1,
            ..RateLimitConfig::default()
        };
        let mut limiter = AddressLimiter::new(&config);
        limiter.check(t0, addr(1)).unwrap();
        limiter.check(t0 + ms(1), addr(2)).unwrap();
        limiter.check(t0 + ms(2), addr(3)).unwrap();
        // Address 1 comes back (and is limited): now address 2 is the idlest.
        assert!(limiter.check(t0 + ms(3), addr(1)).is_err());

        limiter.check(t0 + ms(4), addr(4)).unwrap();
        assert_eq!(limiter.tracked(), 3);
        assert_eq!(limiter.stats().evictions, 1);
        // Address 2 was forgotten, so it starts with a fresh burst; address 1 is still limited.
        limiter.check(t0 + ms(5), addr(2)).unwrap();
        assert!(limiter.check(t0 + ms(5), addr(1)).is_err());
        assert_eq!(limiter.tracked(), 3);
        assert_eq!(limiter.stats().evictions, 2, "address 3 made room for 2");

        for last in 10..=250 {
            let _ = limiter.check(t0 + ms(6), addr(last));
        }
        assert_eq!(limiter.tracked(), 3);
        assert_eq!(limiter.stats().evictions, 2 + 241);
    }

    #[test]
    fn address_limiter_ignores_earlier_time() {
        let t0 = crate::testing::epoch();
        let config = RateLimitConfig {
            handshake_burst_per_addr: 1,
            ..RateLimitConfig::default()
        };
        let mut limiter = AddressLimiter::new(&config);
        limiter.check(t0 + ms(1_000), addr(1)).unwrap();
        assert_eq!(retry_after(limiter.check(t0, addr(1))), ms(250));
        limiter.check(t0 + ms(1_250), addr(1)).unwrap();
    }

    #[test]
    fn peer_limiter_takes_both_or_nothing() {
        let t0 = crate::testing::epoch();
        let config = RateLimitConfig {
            message_burst: 2,
            messages_per_sec: 10.0,
            byte_burst: 1_000,
            bytes_per_sec: 1_000.0,
            ..RateLimitConfig::default()
        };
        let mut peer = PeerLimiter::new(&config, t0);
        peer.check(t0, 900).unwrap();
        // Bytes refuse: 500 needed, 100 held, 400 more take 400 ms. No message token is spent.
        assert_eq!(retry_after(peer.check(t0, 500)), ms(400));
        peer.check(t0, 100).unwrap();
        // Both refuse: the wait is the longer one (message 100 ms, bytes 10 ms).
        assert_eq!(retry_after(peer.check(t0, 10)), ms(100));
        peer.check(t0 + ms(100), 10).unwrap();
        // A message larger than the byte burst is charged a full burst: it waits for a full
        // bucket (910 bytes missing at 1000 B/s) instead of never passing.
        assert_eq!(retry_after(peer.check(t0 + ms(100), 1_001)), ms(910));
        assert_eq!(
            peer.stats(),
            LimiterStats {
                allowed: 3,
                limited: 3,
                evictions: 0
            }
        );
    }

    #[test]
    fn peer_limiter_default_allows_a_60_hz_stream_forever() {
        let t0 = crate::testing::epoch();
        let mut peer = PeerLimiter::new(&RateLimitConfig::default(), t0);
        for tick in 0..6_000u64 {
            let now = t0 + Duration::from_nanos(tick * 1_000_000_000 / 60);
            peer.check(now, 1_200).unwrap();
        }
    }

    #[test]
    fn validate_accepts_defaults_and_names_bad_fields() {
        assert_eq!(RateLimitConfig::default().validate(), Ok(()));
        let config = RateLimitConfig {
            messages_per_sec: f64::INFINITY,
            ..RateLimitConfig::default()
        };
        assert_eq!(
            config.validate(),
            Err(RateLimitConfigError::BadRate {
                field: "messages_per_sec"
            })
        );
        let config = RateLimitConfig {
            byte_burst: 0,
            ..RateLimitConfig::default()
        };
        assert_eq!(
            config.validate(),
            Err(RateLimitConfigError::ZeroBurst { field: "byte_burst" })
        );
        let config = RateLimitConfig {
            max_tracked_addrs: 0,
            ..RateLimitConfig::default()
        };
        assert_eq!(config.validate(), Err(RateLimitConfigError::NoTrackedAddrs));
    }

    #[test]
    fn config_reads_integers_as_rates() {
        let config: RateLimitConfig = toml::from_str("messages_per_sec = 300").unwrap();
        assert_eq!(config.messages_per_sec, 300.0);
        assert_eq!(config.message_burst, 120);
    }
}
