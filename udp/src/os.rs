//! What a runtime takes from the operating system at start: secret material for the sans-IO
//! state machines (optionally with QUIC token keys kept in a file), fresh Ed25519 keys, and
//! long-term keys kept in PKCS#8 PEM files.

use std::io::{self, Write};
use std::path::Path;

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use tickwire_core::Secrets;

/// 32 bytes from the operating system's CSPRNG (`getrandom(2)` on Linux).
///
/// # Errors
/// The operating system has no randomness to give (never on a booted Linux system).
pub fn os_random() -> io::Result<[u8; 32]> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| io::Error::other(format!("OS randomness: {e}")))?;
    Ok(bytes)
}

/// Fresh [`Secrets`] for one endpoint, verifier or game-server agent, from the operating
/// system's CSPRNG. Call it once per state machine.
///
/// # Errors
/// See [`os_random`].
pub fn os_secrets() -> io::Result<Secrets> {
    os_random().map(Secrets::from_bytes)
}

/// [`Secrets`] whose QUIC token keys survive a restart
/// ([`Secrets::with_kept_token_keys`]): peers still sending to a connection of the process
/// before the restart get a stateless reset they accept in answer to their next packet. The kept key is read from `path` (64 hex digits), or created there from the
/// operating system's CSPRNG, readable by its owner only (mode 0600), if the file does not
/// exist; every other value is fresh from the CSPRNG. Give each endpoint its own file.
///
/// # Errors
/// The file cannot be read or created, or holds anything but 64 hex digits (surrounding
/// whitespace aside); the message names the file. See also [`os_random`].
pub fn os_secrets_with_token_key_file(path: &Path) -> io::Result<Secrets> {
    let kept = token_key_file(path)?;
    Ok(Secrets::with_kept_token_keys(kept, os_random()?))
}

/// Reads the token key at `path`, creating it first if there is no file.
fn token_key_file(path: &Path) -> io::Result<[u8; 32]> {
    let read = |path: &Path| -> io::Result<[u8; 32]> {
        let text = read_text(path)?;
        parse_key_hex(text.trim()).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: not a token key (64 hex digits)", path.display()),
            )
        })
    };
    if path.exists() {
        return read(path);
    }
    let key = os_random()?;
    let text: String = key
        .iter()
        .map(|b| format!("{b:02x}"))
        .chain(["\n".into()])
        .collect();
    match write_new(path, text.as_bytes(), 0o600) {
        Ok(()) => Ok(key),
        // Another process created it meanwhile: theirs is the key.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => read(path),
        Err(e) => Err(e),
    }
}

/// 32 bytes from exactly 64 hex digits (either case).
fn parse_key_hex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut key = [0u8; 32];
    for (byte, pair) in key.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(key)
}

/// A fresh Ed25519 key from the operating system's CSPRNG (an ephemeral identity).
///
/// # Errors
/// See [`os_random`].
pub fn os_signing_key() -> io::Result<SigningKey> {
    os_random().map(|bytes| SigningKey::from_bytes(&bytes))
}

/// Creates a new Ed25519 key: the private key at `path` as PKCS#8 PEM (`BEGIN PRIVATE KEY`,
/// RFC 8410 §7), readable by its owner only (mode 0600), and its public key beside it at
/// `path.pub` (`BEGIN PUBLIC KEY`, SubjectPublicKeyInfo). Refuses to overwrite either file.
///
/// # Errors
/// Either file exists already, or cannot be written.
pub fn generate_key_file(path: &Path) -> io::Result<VerifyingKey> {
    let key = os_signing_key()?;
    let private = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| io::Error::other(format!("PKCS#8 encoding: {e}")))?;
    let public = key
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| io::Error::other(format!("SPKI encoding: {e}")))?;
    let public_path = public_key_path(path);
    if public_path.exists() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists already", public_path.display()),
        ));
    }
    write_new(path, private.as_bytes(), 0o600)?;
    write_new(&public_path, public.as_bytes(), 0o644)?;
    Ok(key.verifying_key())
}

/// Where [`generate_key_file`] puts the public key of `path`: `path` with `.pub` appended.
pub fn public_key_path(path: &Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".pub");
    name.into()
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Loads an Ed25519 private key from a PKCS#8 PEM file (as [`generate_key_file`] writes, or
/// `openssl genpkey -algorithm ed25519`).
///
/// # Errors
/// The file cannot be read or holds no Ed25519 PKCS#8 private key; the message names the file.
pub fn load_signing_key(path: &Path) -> io::Result<SigningKey> {
    let text = read_text(path)?;
    SigningKey::from_pkcs8_pem(&text).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: not an Ed25519 PKCS#8 private key ({e})", path.display()),
        )
    })
}

/// Loads an Ed25519 public key from a PEM file: a `PUBLIC KEY` (SubjectPublicKeyInfo), or a
/// `PRIVATE KEY` whose public half is taken.
///
/// # Errors
/// The file cannot be read or holds neither; the message names the file.
pub fn load_verifying_key(path: &Path) -> io::Result<VerifyingKey> {
    let text = read_text(path)?;
    if let Ok(key) = VerifyingKey::from_public_key_pem(&text) {
        return Ok(key);
    }
    SigningKey::from_pkcs8_pem(&text)
        .map(|key| key.verifying_key())
        .map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: not an Ed25519 public or private key in PEM ({e})",
                    path.display()
                ),
            )
        })
}

fn read_text(path: &Path) -> io::Result<String> {
    std::fs::read_to_string(path).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_secrets_differ_each_time() {
        assert_ne!(os_random().unwrap(), os_random().unwrap());
    }

    /// A fresh directory for one test.
    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("tickwire-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// The permission bits of `path`.
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_token_key_file_is_created_private_then_kept() {
        let dir = scratch("token-key");
        let path = dir.join("token.key");
        let first = token_key_file(&path).unwrap();
        assert_eq!(mode(&path), 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.trim().len(), 64);
        assert_eq!(token_key_file(&path).unwrap(), first, "read back, not replaced");
        os_secrets_with_token_key_file(&path).unwrap();

        std::fs::write(&path, "not hex\n").unwrap();
        let err = token_key_file(&path).unwrap_err();
        assert!(err.to_string().contains("token.key: not a token key"), "{err}");
        std::fs::write(&path, format!("{}\n", "AB".repeat(32))).unwrap();
        assert_eq!(token_key_file(&path).unwrap(), [0xab; 32]);
        let missing_dir = dir.join("absent").join("token.key");
        let err = token_key_file(&missing_dir).unwrap_err();
        assert!(err.to_string().contains("absent"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn key_files_round_trip_and_are_private() {
        let dir = scratch("keys");
        let path = dir.join("issuer.pem");
        let public = generate_key_file(&path).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(load_signing_key(&path).unwrap().verifying_key(), public);
        assert_eq!(load_verifying_key(&path).unwrap(), public);
        assert_eq!(load_verifying_key(&public_key_path(&path)).unwrap(), public);
        assert!(generate_key_file(&path).is_err(), "never overwrites a key");
        assert!(load_signing_key(&public_key_path(&path)).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
