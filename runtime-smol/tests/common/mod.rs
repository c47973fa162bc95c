//! Helpers shared by the smol loopback tests. Real sockets need real time, so every wait is
//! bounded by [`within`].

use std::future::Future;
use std::time::Duration;

use async_io::Timer;
use ed25519_dalek::SigningKey;
use futures_lite::future;
use tickwire_core::Secrets;

/// `fut`, or a test failure naming `what` after 10 s.
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    future::or(fut, async {
        Timer::after(Duration::from_secs(10)).await;
        panic!("timed out waiting for {what}")
    })
    .await
}

/// A fixed Ed25519 identity numbered `seed` (tests only: anyone can recompute it).
pub fn identity(seed: u64) -> SigningKey {
    let mut bytes = [0x5A; 32];
    bytes[..8].copy_from_slice(&seed.to_be_bytes());
    SigningKey::from_bytes(&bytes)
}

/// Secrets numbered `seed` (tests only: `Secrets::insecure_from_seed`).
pub fn secrets(seed: u64) -> Secrets {
    Secrets::insecure_from_seed(seed)
}
