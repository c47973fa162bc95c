//! The swtpm harness itself (no `tpm` feature needed, only the `swtpm` binary).

use std::io::{Read, Write};
use std::net::TcpStream;

use tickwire_tpm::swtpm::Swtpm;

#[test]
fn swtpm_starts_answers_and_cleans_up() {
    let swtpm = Swtpm::start().expect("start swtpm (install it: scripts/test does)");
    assert!(swtpm.tcti().starts_with("swtpm:host=127.0.0.1,port="));
    assert_ne!(swtpm.server_port(), swtpm.ctrl_port());
    let dir = swtpm.state_dir().to_owned();
    assert!(dir.is_dir());

    // TPM2_GetRandom(8) in the TPM 2.0 command format (Part 3 §16.1): tag TPM_ST_NO_SESSIONS,
    // size 12, TPM_CC_GetRandom, bytesRequested 8. The TPM is already started by swtpm.
    let mut stream = TcpStream::connect(("127.0.0.1", swtpm.server_port())).unwrap();
    stream
        .write_all(&[0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x7b, 0, 8])
        .unwrap();
    let mut header = [0u8; 10];
    stream.read_exact(&mut header).unwrap();
    assert_eq!(&header[..2], &[0x80, 0x01], "response tag");
    assert_eq!(&header[6..10], &[0, 0, 0, 0], "TPM_RC_SUCCESS");
    drop(stream);

    let other = Swtpm::start().unwrap();
    assert_ne!(other.server_port(), swtpm.server_port());
    drop(other);

    drop(swtpm);
    assert!(!dir.exists(), "state directory removed on drop");
}
