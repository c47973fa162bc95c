//! Determinism: one seed, one story. Every tickwire-level event (what, where, when) repeats
//! exactly; another seed draws other session ids. (TLS randomness is not seeded yet, so packet
//! bytes may differ between runs; packet sizes and timing do not.)

use std::time::Duration;

use tickwire_core::testing::{LinkModel, Net, Traced};
use tickwire_core::{ChannelId, Event, ReasonCode};

/// Two clients join a server over a lossy, jittery, duplicating link, talk on every channel,
/// one leaves, the other stays until the server shuts down.
fn scripted_session(seed: u64) -> Vec<Traced> {
    let mut net = Net::new(tickwire_core::testing::epoch(), seed);
    net.link = LinkModel {
        latency: Duration::from_millis(15),
        jitter: Duration::from_millis(10),
        loss: 0.05,
        duplicate: 0.05,
    };
    let server = net.add_server(Net::config());
    let alice = net.add_client(Net::config());
    let bob = net.add_client(Net::config());
    let (alice_conn, alice_at_server) = net.join(alice, server);
    let (bob_conn, _) = net.join(bob, server);

    for round in 0..20u8 {
        net.send(alice, alice_conn, ChannelId::LATEST, vec![round; 40]);
        net.send(bob, bob_conn, ChannelId::GAME, vec![round; 10]);
        net.send(server, alice_at_server, ChannelId::UNRELIABLE, vec![round; 3_000]);
        net.run_for(Duration::from_millis(50));
    }
    let now = net.now;
    net.node_mut(alice)
        .endpoint
        .close(now, alice_conn, ReasonCode::NORMAL, "bye");
    net.drain(alice);
    net.run_for(Duration::from_secs(1));
    let now = net.now;
    net.node_mut(server)
        .endpoint
        .server_mut()
        .expect("a server endpoint")
        .shutdown(now, "maintenance", None);
    net.drain(server);
    net.run_for(Duration::from_secs(2));
    net.trace
}

/// `(virtual time, node, event as printed)` for every event of a run.
fn printed(trace: &[Traced]) -> Vec<(Duration, usize, String)> {
    trace
        .iter()
        .map(|t| (t.at, t.node, format!("{:?}", t.event)))
        .collect()
}

fn session_ids(trace: &[Traced]) -> Vec<u64> {
    trace
        .iter()
        .filter_map(|t| match &t.event {
            Event::Connected { session, .. } => Some(session.session_id),
            _ => None,
        })
        .collect()
}

#[test]
fn the_same_seed_replays_the_same_session() {
    let first = printed(&scripted_session(11));
    let second = printed(&scripted_session(11));
    assert_eq!(first, second);

    // The story really happened: joins on both sides, messages, both kinds of ending.
    let count = |what: &str| first.iter().filter(|(.., e)| e.starts_with(what)).count();
    assert_eq!(count("Connected"), 4);
    assert!(count("Message") > 40, "{first:#?}");
    assert_eq!(count("Disconnected"), 4);
}

#[test]
fn another_seed_draws_other_session_ids() {
    let ids = session_ids(&scripted_session(11));
    let other = session_ids(&scripted_session(12));
    assert_eq!(ids.len(), 4, "each session id is seen by both sides");
    assert_eq!(ids[0], ids[1]);
    assert!(other.iter().all(|id| !ids.contains(id)), "{ids:?} vs {other:?}");
}
