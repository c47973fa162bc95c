//! `tickwire-gs --record DIR`: session recordings (`PROTOCOL.md` §11) written by a thread of
//! their own, one file per session, so that the tick loop never waits on the disk.
//!
//! The loop hands the endpoint's [`RecordedChunk`]s to the writer through a bounded channel
//! ([`RecordingWriter::drain`]). When the channel is full the loop stops taking chunks; the
//! endpoint then keeps each session's bytes in its own bounded buffer
//! (`Config::recording_buffer_bytes`) and, when that is full too, drops records and marks the
//! loss with a `Gap` record, counted in `tickwire_recording_bytes_total{outcome="dropped"}`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;

use tickwire_core::{Endpoint, RecordedChunk};

/// Chunks in flight between the tick loop and the writer thread at most.
pub const WRITER_CHANNEL_CHUNKS: usize = 256;

/// The file of session `session_id` in `dir`: `session-<id as 16 hex digits>.twrec`.
pub fn recording_path(dir: &Path, session_id: u64) -> PathBuf {
    dir.join(format!("session-{session_id:016x}.twrec"))
}

/// What the writer thread did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct WriterReport {
    /// Files created.
    pub files: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Files completed with their `End` record.
    pub completed: u64,
    /// Write errors (each stops its session's file; logged).
    pub errors: u64,
}

/// The writer thread and the loop's end of its channel.
#[derive(Debug)]
pub struct RecordingWriter {
    tx: Option<SyncSender<RecordedChunk>>,
    /// A chunk the channel had no room for, sent first next time.
    pending: Option<RecordedChunk>,
    thread: Option<JoinHandle<WriterReport>>,
}

impl RecordingWriter {
    /// Creates `dir` if needed and starts the writer thread.
    ///
    /// # Errors
    /// `dir` cannot be created, or is not a directory.
    pub fn start(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        if !dir.is_dir() {
            return Err(io::Error::other(format!("{} is not a directory", dir.display())));
        }
        let (tx, rx) = sync_channel(WRITER_CHANNEL_CHUNKS);
        let dir = dir.to_owned();
        let thread = std::thread::Builder::new()
            .name("recording-writer".into())
            .spawn(move || write_loop(&dir, &rx))?;
        Ok(Self {
            tx: Some(tx),
            pending: None,
            thread: Some(thread),
        })
    }

    /// Moves `endpoint`'s recorded chunks to the writer until none is left or the channel is
    /// full (then the rest wait in the endpoint's bounded buffers).
    pub fn drain(&mut self, endpoint: &mut Endpoint) {
        let Some(tx) = &self.tx else { return };
        loop {
            let chunk = match self.pending.take() {
                Some(chunk) => chunk,
                None => match endpoint.poll_recorded() {
                    Some(chunk) => chunk,
                    None => return,
                },
            };
            match tx.try_send(chunk) {
                Ok(()) => {}
                Err(TrySendError::Full(chunk)) => {
                    self.pending = Some(chunk);
                    return;
                }
                Err(TrySendError::Disconnected(_)) => {
                    tracing::error!("the recording writer stopped; recording ends");
                    self.tx = None;
                    return;
                }
            }
        }
    }

    /// Takes the last chunks from `endpoint`, waiting for room in the channel, closes it and
    /// waits for the writer to finish.
    pub fn finish(mut self, endpoint: &mut Endpoint) -> WriterReport {
        if let Some(tx) = self.tx.take() {
            let chunks = self
                .pending
                .take()
                .into_iter()
                .chain(std::iter::from_fn(|| endpoint.poll_recorded()));
            for chunk in chunks {
                if tx.send(chunk).is_err() {
                    break;
                }
            }
        }
        self.thread
            .take()
            .and_then(|thread| thread.join().ok())
            .unwrap_or_default()
    }
}

fn write_loop(dir: &Path, rx: &Receiver<RecordedChunk>) -> WriterReport {
    let mut report = WriterReport::default();
    let mut files: BTreeMap<u64, Option<File>> = BTreeMap::new();
    while let Ok(chunk) = rx.recv() {
        let path = recording_path(dir, chunk.session_id);
        let slot = files.entry(chunk.session_id).or_insert_with(|| {
            match File::options().create_new(true).write(true).open(&path) {
                Ok(file) => {
                    report.files += 1;
                    Some(file)
                }
                Err(e) => {
                    tracing::error!(path = %path.display(), "cannot create the recording: {e}");
                    report.errors += 1;
                    None
                }
            }
        });
        if let Some(file) = slot {
            if let Err(e) = file.write_all(&chunk.bytes) {
                tracing::error!(path = %path.display(), "recording write failed: {e}");
                report.errors += 1;
                *slot = None;
            } else {
                report.bytes += chunk.bytes.len() as u64;
            }
        }
        if chunk.last {
            if let Some(Some(file)) = files.remove(&chunk.session_id) {
                if let Err(e) = file.sync_all() {
                    tracing::error!(path = %path.display(), "recording sync failed: {e}");
                    report.errors += 1;
                } else {
                    report.completed += 1;
                }
            }
        }
    }
    for file in files.into_values().flatten() {
        let _ = file.sync_all();
    }
    report
}
