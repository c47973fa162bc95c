//! Session recordings in the simulator (`PROTOCOL.md` §11): a recorded session verifies
//! against the receipts its game server got from the verification server, and a one-byte
//! edit of a received message fails verification in the range holding that message's tick,
//! and only there.

use std::time::Duration;

use tickwire_core::record::{Coverage, Record, Recording, RecordingDecoder, Verification};
use tickwire_core::vs::{ProtectedReceipt, VsKeys};
use tickwire_sim::engine::{Sim, SimOptions, SimRecording};
use tickwire_sim::scenario::Scenario;

/// `vs-outage` without its faults: two game servers of three clients, recorded for 12 s.
fn recorded_run() -> (Vec<SimRecording>, Vec<ProtectedReceipt>, VsKeys) {
    let mut scenario = Scenario::builtin("vs-outage").expect("built in");
    scenario.topology.clients_per_server = 3;
    scenario.faults.clear();
    let options = SimOptions {
        duration: Some(Duration::from_secs(12)),
        record: true,
        ..SimOptions::default()
    };
    let mut sim = Sim::new(scenario, 6, options).expect("scenario builds");
    sim.run_until(sim.end());
    let keys = sim.vs_keys().expect("the scenario has a VS");
    (sim.recordings().to_vec(), sim.receipts().to_vec(), keys)
}

/// Receipted ranges are covered; only the tail the game server had not digested (or whose
/// receipt was still in flight) is not.
fn assert_covered_but_the_tail(verification: &Verification) {
    let segments = &verification.segments;
    let covered = segments
        .iter()
        .take_while(|s| matches!(s.coverage, Coverage::Covered { .. }))
        .count();
    assert!(covered >= 5, "{verification:#?}");
    for tail in &segments[covered..] {
        assert!(
            matches!(tail.coverage, Coverage::Unreceipted | Coverage::NoReceipt { .. }),
            "{verification:#?}"
        );
    }
    assert!(segments.len() - covered <= 2, "{verification:#?}");
}

#[test]
fn a_recorded_session_verifies_against_its_receipts_and_an_edit_fails_at_its_tick() {
    let (recordings, receipts, keys) = recorded_run();
    assert_eq!(recordings.len(), 6, "one recording per client session");
    assert!(!receipts.is_empty());
    for recording in &recordings {
        let decoded = Recording::decode(&recording.bytes).expect("a valid recording");
        assert_eq!(decoded.header.session_id, recording.session_id);
        assert!(decoded.header.from_start);
        assert!(decoded.records.iter().any(|r| matches!(r, Record::Sent { .. })));
        let verification = decoded.verify(&receipts, &keys);
        assert_eq!(verification.receipts_invalid, 0);
        assert_covered_but_the_tail(&verification);
        let seals = decoded.check_seals(&decoded.header.server_key);
        assert!(seals.seals >= 5 && seals.first_invalid.is_none(), "{seals:?}");
    }

    // Flip the last byte of a received message in the middle of the first recording.
    let recording = &recordings[0];
    let mut decoder = RecordingDecoder::new();
    decoder.handle_bytes(&recording.bytes);
    let mut received = Vec::new();
    while let Some(record) = decoder.poll_record().expect("valid") {
        let end = decoder.position();
        if let Record::Received { tick, payload, .. } = &record {
            if !payload.is_empty() {
                received.push((*tick, end));
            }
        }
    }
    let (tick, end) = received[received.len() / 2];
    let mut edited = recording.bytes.clone();
    edited[end as usize - 1] ^= 0x01;
    let verification = Recording::decode(&edited)
        .expect("an edited payload still decodes")
        .verify(&receipts, &keys);
    let bad = verification.first_mismatch().expect("the edit is detected");
    assert!(
        bad.first_tick <= tick && tick <= bad.last_tick,
        "edit at tick {tick}, mismatch reported for {bad:?}"
    );
    let mismatches = verification
        .segments
        .iter()
        .filter(|s| matches!(s.coverage, Coverage::Mismatch { .. }))
        .count();
    assert_eq!(
        mismatches, 1,
        "later ranges verify from the signed head: {verification:#?}"
    );
}

#[test]
fn an_edited_send_is_outside_the_receipts_but_breaks_the_game_servers_seal() {
    let (recordings, receipts, keys) = recorded_run();
    let recording = &recordings[0];
    let original = Recording::decode(&recording.bytes).expect("valid");
    let server_key = original.header.server_key;
    assert!(original.check_seals(&server_key).first_invalid.is_none());

    // Flip the last byte of a sent message early in the session (before several seals).
    let mut decoder = RecordingDecoder::new();
    decoder.handle_bytes(&recording.bytes);
    let mut sent = None;
    while let Some(record) = decoder.poll_record().expect("valid") {
        if let Record::Sent { tick, payload, .. } = &record {
            if !payload.is_empty() && sent.is_none() {
                sent = Some((*tick, decoder.position()));
            }
        }
    }
    let (tick, end) = sent.expect("a sent message");
    let mut edited = recording.bytes.clone();
    edited[end as usize - 1] ^= 0x01;
    let edited = Recording::decode(&edited).expect("still decodes");
    // The receipts cover received messages only: they cannot see it ...
    assert!(edited.verify(&receipts, &keys).first_mismatch().is_none());
    // ... the seal over those bytes can, in the range that holds the tick.
    let seals = edited.check_seals(&server_key);
    let (first, last) = seals.first_invalid.expect("the edit breaks a seal");
    assert!(
        first <= tick && tick <= last,
        "edit at tick {tick}, reported {first}..={last}"
    );
}
