//! Session recordings (`PROTOCOL.md` §11): the incremental decoder and verification.

use tickwire_core::record::{Record, Recording, RecordingDecoder, RecordingError};
use tickwire_core::vs::{ProtectedReceipt, ReceiptClaims};

use crate::fixtures::{signing_key, vs_keys, GS_ID, KEY_ID, NOW_MS};
use crate::input::Input;

/// Recordings: [`RecordingDecoder`] fed the input in pieces, compared with
/// [`Recording::decode`] of the whole; a decoded recording is verified against receipts
/// signed with the fixed key for each of its checkpoints.
///
/// Input: `step: u8` (piece length, 0 = 1; `step & 0x80` signs the checkpoints' digests as
/// given instead of a fixed digest), then the file.
///
/// Asserts: piecewise and whole decoding agree (same records, same error); a decoded
/// recording round-trips through [`Recording::encode`]; verification reports ranges in
/// order, with `first_tick <= last_tick`, and uses every valid receipt given; seal checks
/// count at most the seals there are, and a seal only after a good one is reported broken.
pub fn recording(data: &[u8]) {
    let mut input = Input::new(data);
    let mode = input.u8();
    let step = usize::from(mode & 0x7f).max(1);
    let bytes = input.rest();

    let mut decoder = RecordingDecoder::new();
    let mut records = Vec::new();
    let mut failed: Option<RecordingError> = None;
    'feed: for piece in bytes.chunks(step) {
        decoder.handle_bytes(piece);
        loop {
            match decoder.poll_record() {
                Ok(Some(record)) => records.push(record),
                Ok(None) => break,
                Err(error) => {
                    failed = Some(error);
                    break 'feed;
                }
            }
        }
    }
    let piecewise = match failed {
        Some(error) => Err(error),
        None => decoder.finish(),
    };
    let whole = Recording::decode(bytes);
    match (&whole, &piecewise) {
        (Ok(recording), Ok(())) => {
            assert_eq!(
                records.len(),
                recording.records.len() + 1,
                "the header and the records"
            );
            assert!(matches!(records[0], Record::Header(_)));
            assert_eq!(&records[1..], &recording.records[..]);
            let again = Recording::decode(&recording.encode()).expect("a re-encoding decodes");
            assert_eq!(
                (&again.header, &again.records),
                (&recording.header, &recording.records)
            );
            verify(recording, mode & 0x80 != 0);
            seals(recording);
        }
        (Err(a), Err(b)) => assert_eq!(a, b, "piecewise and whole decoding fail alike"),
        _ => panic!("whole {whole:?} but piecewise {piecewise:?}"),
    }
}

fn verify(recording: &Recording, as_given: bool) {
    let receipts: Vec<ProtectedReceipt> = recording
        .records
        .iter()
        .filter_map(|record| match record {
            Record::Checkpoint {
                sequence,
                tick,
                digest,
                ..
            } => Some(ProtectedReceipt::issue(
                KEY_ID,
                &signing_key(),
                &ReceiptClaims {
                    gs_id: GS_ID,
                    session_id: recording.header.session_id,
                    sequence: *sequence,
                    tick: *tick,
                    digest: if as_given { *digest } else { [0xD1; 32] },
                    received_at_ms: NOW_MS,
                },
            )),
            _ => None,
        })
        .collect();
    let verification = recording.verify(&receipts, &vs_keys());
    assert_eq!(verification.session_id, recording.header.session_id);
    assert_eq!(verification.receipts_invalid, 0);
    assert!(verification.receipts_used <= receipts.len());
    for segment in &verification.segments {
        assert!(segment.first_tick <= segment.last_tick, "{segment:?}");
    }
}

fn seals(recording: &Recording) {
    let report = recording.check_seals(&recording.header.server_key);
    let seals = recording
        .records
        .iter()
        .filter(|r| matches!(r, Record::Seal { .. }))
        .count() as u64;
    assert_eq!(report.seals, seals);
    assert!(report.valid <= report.seals);
    assert_eq!(
        report.first_invalid.is_some(),
        report.valid < report.seals,
        "{report:?}"
    );
    if let Some((first, last)) = report.first_invalid {
        assert!(first <= last, "{report:?}");
    }
}
