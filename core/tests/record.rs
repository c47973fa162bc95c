//! Session recording on a server endpoint (`PROTOCOL.md` §11), in the in-memory harness: what
//! a recording holds, and the bounded buffer's `Gap` record when the runtime does not drain it.

use std::time::Duration;

use tickwire_core::record::{Record, Recording, MAX_GAP_FRAME_BYTES};
use tickwire_core::testing::Net;
use tickwire_core::{ChannelId, Endpoint, Event, RecordedChunk};

fn drain(endpoint: &mut Endpoint) -> Vec<RecordedChunk> {
    std::iter::from_fn(|| endpoint.poll_recorded()).collect()
}

#[test]
fn a_recording_holds_the_session_its_messages_both_ways_and_its_end() {
    let mut net = Net::new(tickwire_core::testing::epoch(), 7);
    let server = net.add_server(Net::config());
    let client = net.add_client(Net::config());
    net.node_mut(server)
        .endpoint
        .server_mut()
        .expect("a server")
        .record_sessions(true);
    let conn = net.connect(client, server);
    assert!(net.run_until(Duration::from_secs(2), |n| n.node(client).connected(conn)));
    let Some(Event::Connected { conn: sconn, session }) = net.node_mut(server).take_events().first().cloned()
    else {
        panic!("no session");
    };
    for input in [&b"left"[..], b"right", b"jump"] {
        net.send(client, conn, ChannelId::GAME, input);
    }
    net.run_for(Duration::from_millis(100));
    net.send(server, sconn, ChannelId::GAME, &b"state"[..]);
    net.run_for(Duration::from_millis(100));
    assert!(net
        .node_mut(server)
        .endpoint
        .server_mut()
        .unwrap()
        .is_recording(sconn));
    net.node_mut(server)
        .endpoint
        .server_mut()
        .unwrap()
        .stop_recording(sconn);

    let chunks = drain(&mut net.node_mut(server).endpoint);
    assert!(chunks.first().is_some_and(|c| c.first) && chunks.last().is_some_and(|c| c.last));
    assert!(chunks
        .iter()
        .all(|c| c.conn == sconn && c.session_id == session.session_id));
    let bytes: Vec<u8> = chunks.iter().flat_map(|c| c.bytes.clone()).collect();
    let stats = net.node(server).endpoint.endpoint_stats();
    assert_eq!(stats.recorded_bytes, bytes.len() as u64);
    assert_eq!(stats.recording_dropped_bytes, 0);

    let recording = Recording::decode(&bytes).expect("a valid recording");
    assert_eq!(recording.header.session_id, session.session_id);
    assert_eq!(recording.header.connection, sconn.index() as u64);
    assert_eq!(recording.header.client_key, session.client_key);
    assert!(recording.header.from_start);
    let received: Vec<&[u8]> = recording
        .records
        .iter()
        .filter_map(|r| match r {
            Record::Received {
                payload, channel: 0, ..
            } => Some(&payload[..]),
            _ => None,
        })
        .collect();
    assert_eq!(received, [&b"left"[..], b"right", b"jump"]);
    assert!(recording
        .records
        .iter()
        .any(|r| matches!(r, Record::Sent { payload, .. } if payload == b"state")));
    // The end, then the game server's seal over the whole file.
    let [.., Record::End { .. }, Record::Seal { .. }] = &recording.records[..] else {
        panic!("no end and seal: {:?}", recording.records);
    };
    let server_key = net.node(server).identity.verifying_key().to_bytes();
    let seals = recording.check_seals(&server_key);
    assert!(seals.intact(), "{seals:?}");
    // One byte edited anywhere breaks the seal after it.
    let mut edited = bytes.clone();
    let at = edited
        .windows(5)
        .position(|w| w == b"state")
        .expect("the sent payload");
    edited[at] ^= 1;
    let seals = Recording::decode(&edited).unwrap().check_seals(&server_key);
    assert!(!seals.intact() && seals.first_invalid.is_some(), "{seals:?}");
    // Another key does not vouch for it.
    let stranger = [9u8; 32];
    let stranger = ed25519_dalek::SigningKey::from_bytes(&stranger)
        .verifying_key()
        .to_bytes();
    assert_eq!(recording.check_seals(&stranger).valid, 0);
    // Stopped: nothing more is recorded.
    net.send(server, sconn, ChannelId::GAME, &b"later"[..]);
    assert!(drain(&mut net.node_mut(server).endpoint).is_empty());
}

#[test]
fn an_undrained_recording_stays_bounded_and_marks_what_it_dropped() {
    let mut net = Net::new(tickwire_core::testing::epoch(), 8);
    let mut config = Net::config();
    config.recording_buffer_bytes = 4096;
    let server = net.add_server(config);
    let client = net.add_client(Net::config());
    net.node_mut(server)
        .endpoint
        .server_mut()
        .unwrap()
        .record_sessions(true);
    let conn = net.connect(client, server);
    assert!(net.run_until(Duration::from_secs(2), |n| n.node(client).connected(conn)));
    let inputs: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; 1000]).collect();
    for input in &inputs {
        net.send(client, conn, ChannelId::GAME, input.clone());
    }
    net.run_for(Duration::from_millis(200));

    let chunks = drain(&mut net.node_mut(server).endpoint);
    assert_eq!(chunks.len(), 1);
    assert!(chunks[0].bytes.len() <= 4096 + MAX_GAP_FRAME_BYTES);
    let stats = net.node(server).endpoint.endpoint_stats();
    assert!(stats.recording_dropped_bytes > 10_000, "{stats:?}");

    // After the drain there is room again: the next message is recorded.
    net.send(client, conn, ChannelId::GAME, &b"after"[..]);
    net.run_for(Duration::from_millis(100));
    let more = drain(&mut net.node_mut(server).endpoint);
    let bytes: Vec<u8> = chunks.iter().chain(&more).flat_map(|c| c.bytes.clone()).collect();
    let recording = Recording::decode(&bytes).expect("a valid, unfinished recording");
    let Some(Record::Gap {
        records,
        inputs: chained,
        ..
    }) = recording.records.iter().find(|r| matches!(r, Record::Gap { .. }))
    else {
        panic!("no gap record: {:?}", recording.records);
    };
    // The gap carries the chain's state over every input, the dropped ones included.
    assert_eq!(*chained, 20);
    assert!(*records >= 16);
    let kept = recording
        .records
        .iter()
        .filter(|r| matches!(r, Record::Received { .. }))
        .count();
    assert_eq!(kept as u64 + records, 21, "every message is kept or counted");
    assert!(matches!(
        recording.records.last(),
        Some(Record::Received { payload, .. }) if payload == b"after"
    ));
    // Nothing sealed it yet (no checkpoint, no end): the records are reported unsealed.
    let seals = recording.check_seals(&net.node(server).identity.verifying_key().to_bytes());
    assert!(!seals.intact() && seals.unsealed_records > 0, "{seals:?}");
}
