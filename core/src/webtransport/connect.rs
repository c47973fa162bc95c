//! The extended CONNECT that opens a WebTransport session (RFC 9220 §3; draft-ietf-webtrans-
//! http3-02 §3.2), and the server's rules for accepting one (`PROTOCOL.md` §12.3).
//!
//! Header blocks are QPACK (RFC 9204) with the static table and literals only, encoded and
//! decoded by `wtransport-proto`; a block that refers to the dynamic table (which tickwire never
//! advertises) is refused with [`ConnectError::Qpack`].

use std::collections::HashMap;

use super::h3::{encode_frame_header, error_code, FrameType};

/// The path a server accepts sessions on unless configured otherwise.
pub const DEFAULT_PATH: &str = "/tickwire";
/// The largest HEADERS frame payload read on a CONNECT stream, in bytes.
pub const MAX_HEADERS_BYTES: u64 = 4096;
/// `QPACK_DECOMPRESSION_FAILED` (RFC 9204 §6).
pub const QPACK_DECOMPRESSION_FAILED: u64 = 0x200;
/// `H3_REQUEST_REJECTED` (RFC 9114 §8.1): a request refused before any processing.
pub const H3_REQUEST_REJECTED: u64 = 0x10b;
/// The response header that names the WebTransport draft the server speaks.
pub const DRAFT_HEADER: &str = "sec-webtransport-http3-draft";
/// Its value.
pub const DRAFT_02: &str = "draft02";

/// A server's WebTransport options (`PROTOCOL.md` §12.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebTransportConfig {
    /// The `:path` sessions are accepted on, compared without its query string. Default
    /// [`DEFAULT_PATH`].
    pub path: String,
    /// The `origin` values accepted, compared exactly (e.g. `https://game.example`); `None`
    /// accepts any origin, and requests without one.
    pub allowed_origins: Option<Vec<String>>,
}

impl Default for WebTransportConfig {
    fn default() -> Self {
        Self {
            path: DEFAULT_PATH.to_owned(),
            allowed_origins: None,
        }
    }
}

/// Why a header block could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// The QPACK block does not decode (or refers to the dynamic table): a connection error
    /// [`QPACK_DECOMPRESSION_FAILED`].
    #[error("QPACK header block does not decode: {0}")]
    Qpack(String),
    /// A response without a valid `:status`.
    #[error("response has no valid :status")]
    NoStatus,
}

impl ConnectError {
    /// The HTTP/3 error code to close the connection with.
    pub const fn h3_code(&self) -> u64 {
        match self {
            Self::Qpack(_) => QPACK_DECOMPRESSION_FAILED,
            Self::NoStatus => error_code::H3_MESSAGE_ERROR,
        }
    }
}

/// The fields of an extended CONNECT request tickwire looks at; absent ones are `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectRequest {
    /// `:method`.
    pub method: Option<String>,
    /// `:protocol`.
    pub protocol: Option<String>,
    /// `:scheme`.
    pub scheme: Option<String>,
    /// `:authority`.
    pub authority: Option<String>,
    /// `:path`.
    pub path: Option<String>,
    /// `origin`.
    pub origin: Option<String>,
}

/// An HTTP status a server answers a CONNECT with.
pub type Status = u16;

impl ConnectRequest {
    /// A WebTransport CONNECT to `https://{authority}{path}` from `origin`.
    pub fn new(authority: &str, path: &str, origin: Option<&str>) -> Self {
        Self {
            method: Some("CONNECT".into()),
            protocol: Some("webtransport".into()),
            scheme: Some("https".into()),
            authority: Some(authority.into()),
            path: Some(path.into()),
            origin: origin.map(Into::into),
        }
    }

    /// Reads a HEADERS frame's payload.
    ///
    /// # Errors
    /// [`ConnectError::Qpack`].
    pub fn decode(block: &[u8]) -> Result<Self, ConnectError> {
        let mut fields = decode_block(block)?;
        Ok(Self {
            method: fields.remove(":method"),
            protocol: fields.remove(":protocol"),
            scheme: fields.remove(":scheme"),
            authority: fields.remove(":authority"),
            path: fields.remove(":path"),
            origin: fields.remove("origin"),
        })
    }

    /// The request as a HEADERS frame (header and QPACK payload).
    pub fn encode_frame(&self) -> Vec<u8> {
        let fields = [
            (":method", &self.method),
            (":protocol", &self.protocol),
            (":scheme", &self.scheme),
            (":authority", &self.authority),
            (":path", &self.path),
            ("origin", &self.origin),
        ];
        headers_frame(
            fields
                .iter()
                .filter_map(|(name, value)| Some((*name, value.as_deref()?))),
        )
    }

    /// The server's verdict (`PROTOCOL.md` §12.3): `Ok` to answer 200, or the status to refuse
    /// with — 400 (not a WebTransport CONNECT), 404 (another path), 403 (origin not allowed).
    ///
    /// # Errors
    /// The refusal status.
    pub fn check(&self, config: &WebTransportConfig) -> Result<(), Status> {
        let is = |field: &Option<String>, value: &str| field.as_deref() == Some(value);
        let protocol_ok = is(&self.protocol, "webtransport") || is(&self.protocol, "webtransport-h3");
        let authority_ok = self.authority.as_deref().is_some_and(|a| !a.is_empty());
        if !is(&self.method, "CONNECT") || !protocol_ok || !is(&self.scheme, "https") || !authority_ok {
            return Err(400);
        }
        let path = self.path.as_deref().unwrap_or("");
        let path = path.split_once('?').map_or(path, |(p, _)| p);
        if path != config.path {
            return Err(404);
        }
        if let Some(allowed) = &config.allowed_origins {
            if !self.origin.as_ref().is_some_and(|o| allowed.contains(o)) {
                return Err(403);
            }
        }
        Ok(())
    }
}

/// The response to a CONNECT as a HEADERS frame: `:status`, and on 200 the draft header.
pub fn response_frame(status: Status) -> Vec<u8> {
    let status = status.to_string();
    let mut fields = vec![(":status", status.as_str())];
    if status == "200" {
        fields.push((DRAFT_HEADER, DRAFT_02));
    }
    headers_frame(fields)
}

/// The `:status` of a response's HEADERS payload.
///
/// # Errors
/// [`ConnectError`] for a block that does not decode or has no numeric `:status`.
pub fn decode_response(block: &[u8]) -> Result<Status, ConnectError> {
    decode_block(block)?
        .get(":status")
        .and_then(|s| s.parse().ok())
        .ok_or(ConnectError::NoStatus)
}

fn decode_block(block: &[u8]) -> Result<HashMap<String, String>, ConnectError> {
    check_prefix_integers(block)?;
    wtransport_proto::qpack::Decoder::decode(block).map_err(|e| ConnectError::Qpack(e.to_string()))
}

/// The most continuation bytes a QPACK prefix integer may have here (RFC 9204 §4.1.1; RFC 7541
/// §5.1): four carry 28 bits, more than any static index or string length in a HEADERS frame
/// this endpoint accepts.
const MAX_INTEGER_CONTINUATIONS: usize = 4;

/// Walks a field section (RFC 9204 §4.5) and refuses one whose prefix integers run past
/// [`MAX_INTEGER_CONTINUATIONS`], or whose string lengths run past its end, before
/// `wtransport-proto`'s decoder reads it: that decoder (0.7.2) shifts by 7 more bits for every
/// continuation byte without a bound, which overflows on the eleventh. Field lines that need
/// the dynamic table are left for the decoder to refuse.
fn check_prefix_integers(block: &[u8]) -> Result<(), ConnectError> {
    let overflow = || ConnectError::Qpack("prefix integer too long".into());
    let truncated = || ConnectError::Qpack("field section truncated".into());
    let mut rest = block;
    // Reads a prefix integer whose first byte keeps `prefix` low bits.
    let integer = |rest: &mut &[u8], prefix: u32| -> Result<usize, ConnectError> {
        let (&first, tail) = rest.split_first().ok_or_else(truncated)?;
        *rest = tail;
        let mask = (1usize << prefix) - 1;
        let mut value = usize::from(first) & mask;
        if value < mask {
            return Ok(value);
        }
        for shift in (0..MAX_INTEGER_CONTINUATIONS).map(|i| 7 * i) {
            let (&byte, tail) = rest.split_first().ok_or_else(truncated)?;
            *rest = tail;
            value += usize::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(overflow())
    };
    let skip_string = |rest: &mut &[u8], prefix: u32| -> Result<(), ConnectError> {
        let len = integer(rest, prefix)?;
        *rest = rest.get(len..).ok_or_else(truncated)?;
        Ok(())
    };
    integer(&mut rest, 8)?; // Required Insert Count
    integer(&mut rest, 7)?; // sign bit and Delta Base
    while let Some(&first) = rest.first() {
        match first {
            // Indexed field line: 1Txxxxxx.
            0x80.. => {
                integer(&mut rest, 6)?;
            }
            // Literal with name reference: 01NTxxxx, then the value.
            0x40..=0x7f => {
                integer(&mut rest, 4)?;
                skip_string(&mut rest, 7)?;
            }
            // Literal with literal name: 001NHxxx, then the value.
            0x20..=0x3f => {
                skip_string(&mut rest, 3)?;
                skip_string(&mut rest, 7)?;
            }
            // Post-base forms need the dynamic table, which the decoder refuses.
            _ => return Ok(()),
        }
    }
    Ok(())
}

fn headers_frame<'a>(fields: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<u8> {
    let block = wtransport_proto::qpack::Encoder::encode(fields);
    let mut out = Vec::with_capacity(block.len() + 4);
    // A header block of a few hundred bytes always has a valid length.
    let _ = encode_frame_header(FrameType::Headers, block.len() as u64, &mut out);
    out.extend_from_slice(&block);
    out
}

#[cfg(test)]
mod tests {
    use super::super::h3::{FrameRead, FrameReader};
    use super::*;

    fn payload(frame: &[u8]) -> Vec<u8> {
        match FrameReader::new(MAX_HEADERS_BYTES).read(frame).unwrap() {
            FrameRead::Frame {
                ty: FrameType::Headers,
                payload,
                ..
            } => payload.to_vec(),
            other => panic!("not a HEADERS frame: {other:?}"),
        }
    }

    #[test]
    fn a_request_round_trips_and_is_checked_in_order() {
        let config = WebTransportConfig {
            path: "/tickwire".into(),
            allowed_origins: Some(vec!["https://game.example".into()]),
        };
        let request = ConnectRequest::new("127.0.0.1:4433", "/tickwire?room=3", Some("https://game.example"));
        let decoded = ConnectRequest::decode(&payload(&request.encode_frame())).unwrap();
        assert_eq!(decoded, request);
        assert_eq!(decoded.check(&config), Ok(()));

        let mut get = request.clone();
        get.method = Some("GET".into());
        assert_eq!(get.check(&config), Err(400));
        let mut h3 = request.clone();
        h3.protocol = Some("webtransport-h3".into());
        assert_eq!(h3.check(&config), Ok(()));
        let mut other = request.clone();
        other.path = Some("/other".into());
        assert_eq!(other.check(&config), Err(404));
        let foreign = ConnectRequest::new("127.0.0.1:4433", "/tickwire", Some("https://evil.example"));
        assert_eq!(foreign.check(&config), Err(403));
        let none = ConnectRequest::new("127.0.0.1:4433", "/tickwire", None);
        assert_eq!(none.check(&config), Err(403));
        assert_eq!(none.check(&WebTransportConfig::default()), Ok(()));
    }

    #[test]
    fn responses_carry_the_status_and_dynamic_references_are_refused() {
        for status in [200, 400, 403, 404] {
            assert_eq!(decode_response(&payload(&response_frame(status))), Ok(status));
        }
        // Required Insert Count 1: a reference to a dynamic table entry.
        let dynamic = [0x02, 0x00, 0x80];
        assert!(matches!(
            ConnectRequest::decode(&dynamic),
            Err(ConnectError::Qpack(_))
        ));
        assert_eq!(decode_response(&[0, 0]), Err(ConnectError::NoStatus));
    }

    #[test]
    fn prefix_integers_past_four_continuation_bytes_are_refused_before_decoding() {
        // The fuzzer's input: a Delta Base with 38 continuation bytes.
        let mut long = vec![0x00, 0xff];
        long.extend([0xff; 38]);
        long.push(0x00);
        assert_eq!(
            ConnectRequest::decode(&long),
            Err(ConnectError::Qpack("prefix integer too long".into()))
        );
        // A string length that runs past the block, and an indexed line that ends mid-integer.
        for truncated in [
            &[0x00, 0x00, 0x5f, 0x10, 0x05, b'a'][..],
            &[0x00, 0x00, 0xff, 0x80],
        ] {
            assert_eq!(
                ConnectRequest::decode(truncated),
                Err(ConnectError::Qpack("field section truncated".into()))
            );
        }
        // Four continuation bytes are still read: index 63 + 2^21 is not in the static table.
        let four = [0x00, 0x00, 0xff, 0x80, 0x80, 0x80, 0x01];
        assert!(matches!(ConnectRequest::decode(&four), Err(ConnectError::Qpack(e)) if e.contains("static")));
    }
}
