//! Helpers shared by the smol loopback tests. Real sockets need real time, so every wait is
//! bounded by [`within`].

use std::future::Future;
use std::time::Duration;

use async_io::Timer;
use ed25519_dalek::SigningKey;
use futures_lite::future;
use tickwire_core::tls::derive_seed;
use tickwire_core::Config;

/// `fut`, or a test failure naming `what` after 10 s.
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    future::or(fut, async {
        Timer::after(Duration::from_secs(10)).await;
        panic!("timed out waiting for {what}")
    })
    .await
}

/// The Ed25519 identity derived from `seed`.
pub fn identity(seed: u64) -> SigningKey {
    SigningKey::from_bytes(&derive_seed(seed, "identity"))
}

/// The default configuration with `seed`.
pub fn config(seed: u64) -> Config {
    Config {
        seed,
        ..Config::default()
    }
}
