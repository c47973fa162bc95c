//! `tickwire-gs --webtransport-cert-json PATH`: a self-signed certificate for browser clients,
//! which pin it through WebTransport's `serverCertificateHashes` (see
//! [`tickwire_core::webtransport`]), and the JSON a lobby hands them, kept at `PATH`.
//!
//! At start the server generates a certificate from fresh OS randomness and writes
//! [`CertificateHashesDocument`] to `PATH` (a temporary file renamed over it, so readers never
//! see half a document). Its loop calls [`CertificateJson::on_time`] with the wall clock: a
//! day before a certificate has three days left, the next one is generated (13 days each, the
//! WebTransport maximum being 14) and the document rewritten to list its hash too, so that
//! copies handed out before the rotation pin it; at three days left the next one takes over,
//! and the document lists the new hash and the old one until the old certificate expires;
//! then once more without it.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use tickwire_core::webtransport::{CertificateHashesDocument, CertificateRotation, RotationPolicy};

/// The certificate rotation and the file its lobby document is kept in.
#[derive(Debug)]
pub struct CertificateJson {
    path: PathBuf,
    rotation: CertificateRotation,
    next_check_unix_ms: u64,
}

impl CertificateJson {
    /// Generates a certificate under the default [`RotationPolicy`] from fresh OS randomness
    /// and writes the document to `path`.
    ///
    /// # Errors
    /// No OS randomness, or the file cannot be written.
    pub fn start(path: &Path, now_unix_ms: u64) -> io::Result<Self> {
        Self::start_with(
            path,
            RotationPolicy::default(),
            now_unix_ms,
            &tickwire_udp::os::os_random()?,
        )
    }

    /// [`CertificateJson::start`] with the policy and the key material given.
    ///
    /// # Errors
    /// The policy is refused, or the file cannot be written.
    pub fn start_with(
        path: &Path,
        policy: RotationPolicy,
        now_unix_ms: u64,
        key: &[u8; 32],
    ) -> io::Result<Self> {
        let rotation = CertificateRotation::new(policy, now_unix_ms, key).map_err(io::Error::other)?;
        let this = Self {
            path: path.to_path_buf(),
            next_check_unix_ms: rotation.next_check_unix_ms(now_unix_ms),
            rotation,
        };
        this.write(now_unix_ms)?;
        Ok(this)
    }

    /// The rotation: the current certificate, the next one once announced, and the previous
    /// hash.
    pub fn rotation(&self) -> &CertificateRotation {
        &self.rotation
    }

    /// Where the document is written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The document as it stands at `now_unix_ms`.
    pub fn document(&self, now_unix_ms: u64) -> CertificateHashesDocument {
        self.rotation.document(now_unix_ms)
    }

    /// Announces the next certificate and rotates to it when due, with key material from
    /// `fresh_key`, and rewrites the document when it changes (an announcement, a rotation, or
    /// the previous hash expiring). Returns whether it rotated: the server must then serve
    /// [`CertificateRotation::current`]. Cheap when nothing is due: call it on every turn or
    /// every second.
    ///
    /// # Errors
    /// No key material, or the file cannot be written; the next call tries again.
    pub fn on_time(
        &mut self,
        now_unix_ms: u64,
        mut fresh_key: impl FnMut() -> io::Result<[u8; 32]>,
    ) -> io::Result<bool> {
        if now_unix_ms < self.next_check_unix_ms {
            return Ok(false);
        }
        if self.rotation.needs_announcement(now_unix_ms) {
            self.rotation
                .announce(now_unix_ms, &fresh_key()?)
                .map_err(io::Error::other)?;
            if let Some(next) = self.rotation.next() {
                tracing::info!(
                    sha256 = %base64_hash(&next.sha256()),
                    takes_over_unix_ms = self.rotation.rotate_at_unix_ms(),
                    path = %self.path.display(),
                    "webtransport certificate announced"
                );
            }
        }
        let rotated = if self.rotation.needs_rotation(now_unix_ms) {
            // The key is used only if the announced certificate cannot serve (a clock jump).
            self.rotation
                .rotate(now_unix_ms, &fresh_key()?)
                .map_err(io::Error::other)?;
            true
        } else {
            false
        };
        self.write(now_unix_ms)?;
        self.next_check_unix_ms = self.rotation.next_check_unix_ms(now_unix_ms);
        if rotated {
            let current = self.rotation.current();
            tracing::info!(
                sha256 = %base64_hash(&current.sha256()),
                not_after_unix_ms = current.not_after_unix_ms(),
                path = %self.path.display(),
                "webtransport certificate rotated"
            );
        }
        Ok(rotated)
    }

    fn write(&self, now_unix_ms: u64) -> io::Result<()> {
        let mut json =
            serde_json::to_vec_pretty(&self.rotation.document(now_unix_ms)).map_err(io::Error::other)?;
        json.push(b'\n');
        write_atomic(&self.path, &json)
    }
}

/// A hash in standard base64, as the document gives it.
pub fn base64_hash(hash: &[u8; 32]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(hash)
}

/// Writes `bytes` to `path` whole or not at all: into a temporary file beside it, flushed to
/// disk, then renamed over `path` (atomic on POSIX file systems).
///
/// # Errors
/// The temporary file cannot be written or renamed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file path"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The system clock in Unix milliseconds (0 before 1970).
pub fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY_MS: u64 = 24 * 60 * 60 * 1000;
    const T0: u64 = 1_750_000_400_000;

    fn read(path: &Path) -> CertificateHashesDocument {
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    #[test]
    fn the_document_follows_rotations_in_virtual_time() {
        let dir = std::env::temp_dir().join(format!("tickwire-wt-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("cert.json");
        let mut file = CertificateJson::start_with(&path, RotationPolicy::default(), T0, &[1; 32]).unwrap();
        let first = read(&path);
        assert_eq!(first, file.document(T0));
        assert_eq!(first.server_certificate_hashes.len(), 1);
        assert!(first.not_after_unix_ms - T0 <= 14 * DAY_MS);

        // Nothing due: no key drawn, no rewrite.
        assert!(!file.on_time(T0 + DAY_MS, || panic!("no key needed")).unwrap());
        // A day before the rotation the next certificate is announced: listed, not served.
        let announce_at = file.rotation().announce_at_unix_ms();
        assert!(!file.on_time(announce_at - 1, || panic!("no key needed")).unwrap());
        assert!(!file.on_time(announce_at, || Ok([2; 32])).unwrap());
        let announced = read(&path);
        assert_eq!(announced.server_certificate_hashes.len(), 2);
        assert_eq!(
            announced.server_certificate_hashes[0],
            first.server_certificate_hashes[0]
        );
        // At the rotation it takes over: the copy handed out before pins what is served now.
        let rotate_at = file.rotation().rotate_at_unix_ms();
        assert!(file.on_time(rotate_at, || Ok([3; 32])).unwrap());
        let served = file.rotation().current().hash();
        assert_eq!(served, announced.server_certificate_hashes[1]);
        let both = read(&path);
        assert_eq!(
            both.server_certificate_hashes,
            vec![served, first.server_certificate_hashes[0]]
        );
        // Once the old certificate has expired, it is dropped from the file.
        assert!(!file
            .on_time(first.not_after_unix_ms + 1, || panic!("no key needed"))
            .unwrap());
        let last = read(&path);
        assert_eq!(
            last.server_certificate_hashes,
            vec![both.server_certificate_hashes[0]]
        );
        // Only the document is in the directory: the temporary file was renamed.
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("cert.json")]);
        assert_eq!(base64_hash(&file.rotation().current().sha256()).len(), 44);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
