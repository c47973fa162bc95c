//! [`HardwareTpm`]: a TPM 2.0 behind the TSS2 ESAPI (tss-esapi 7.x).

use std::convert::TryFrom;
use std::str::FromStr;

use tickwire_core::attest::{AkPublic, PcrSelection, Quote, TpmError, TpmProvider};
use tss_esapi::abstraction::{ak, ek, AsymmetricAlgorithmSelection, DefaultKey};
use tss_esapi::handles::{KeyHandle, ObjectHandle, PcrHandle};
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, SignatureSchemeAlgorithm};
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::structures::{
    Data, Digest, DigestValues, HashScheme, PcrSelectSize, PcrSelectionList, PcrSelectionListBuilder,
    PcrSlot, Public, Signature, SignatureScheme,
};
use tss_esapi::tcti_ldr::TctiNameConf;
use tss_esapi::traits::Marshall;
use tss_esapi::Context;

/// PCRs of the SHA-256 bank a PC Client TPM implements (TCG PC Client Platform TPM Profile
/// §4.6.2: 24 PCRs, 0–23).
const PCR_COUNT: u8 = 24;

/// Largest qualifying data `TPM2_Quote` takes: a `TPM2B_DATA` holds at most a `TPMT_HA`,
/// 64 bytes (TPM 2.0 Library Part 2 §10.4.3).
const MAX_EXTRA_DATA_BYTES: usize = 64;

/// A TPM 2.0 reached through tpm2-tss, attesting with an ECC P-256 ECDSA-SHA256 attestation key
/// (AK) created under the TCG default ECC P-256 endorsement key (EK).
///
/// [`open`](Self::open) creates the EK (TCG EK Credential Profile 2.0 §B.3.4, template L-2:
/// ECC NIST P-256, the same key on every call for a given TPM) and an AK as its child: a
/// restricted signing key, `fixedTPM | fixedParent | sensitiveDataOrigin | userWithAuth |
/// restricted | sign`, scheme ECDSA with SHA-256, empty authorisation. It loads the AK, flushes
/// the EK and keeps only the AK loaded for the provider's lifetime; the AK is new (random) on
/// each open, so the verification server learns it from [`TpmProvider::ak_public`] each time.
/// Dropping the provider flushes the AK.
///
/// With a resource manager (`device:/dev/tpmrm0`, `tabrmd`) several processes may share the
/// TPM. Without one (`device:/dev/tpm0`, `swtpm`, `mssim`) this must be the TPM's only client.
///
/// Each method is one or two TPM commands and blocks for their duration (milliseconds on a
/// discrete TPM); run it off the game loop.
///
/// ```no_run
/// use tickwire_core::attest::{PcrSelection, TpmProvider, MEASUREMENT_PCR};
///
/// let mut tpm = tickwire_tpm::HardwareTpm::open("device:/dev/tpmrm0")?;
/// tickwire_tpm::measure(&mut tpm, [1; 32], [2; 32])?;
/// let selection = PcrSelection::sha256(&[MEASUREMENT_PCR]).expect("PCR 23 is a valid selection");
/// let quote = tpm.quote(&[0xaa; 32], &selection)?;
/// let ak = tpm.ak_public()?;
/// # let _ = (quote, ak);
/// # Ok::<(), tickwire_core::attest::TpmError>(())
/// ```
#[derive(Debug)]
pub struct HardwareTpm {
    context: Context,
    ak: KeyHandle,
    ak_public: Public,
}

impl HardwareTpm {
    /// Connects to the TPM named by the TCTI string `tcti` and creates the attestation key.
    ///
    /// `tcti` is a tpm2-tss TCTI name and configuration: `device:/dev/tpmrm0`,
    /// `device:/dev/tpm0`, `tabrmd`, `tabrmd:bus_type=session`,
    /// `swtpm:host=127.0.0.1,port=2321` or `mssim:host=127.0.0.1,port=2321`. The TCTI shared
    /// library (`libtss2-tcti-<name>.so.0`) is loaded at run time.
    ///
    /// # Errors
    /// [`TpmError::Device`] when the string is not a TCTI, the TCTI library is missing, the TPM
    /// cannot be reached, or creating the EK or AK fails (for instance when the endorsement
    /// hierarchy has a non-empty authorisation value).
    pub fn open(tcti: &str) -> Result<Self, TpmError> {
        let name_conf = TctiNameConf::from_str(tcti)
            .map_err(|error| device(&format!("TCTI {tcti:?} not understood"), error))?;
        let mut context =
            Context::new(name_conf).map_err(|error| device(&format!("opening TCTI {tcti:?}"), error))?;
        let (ak, ak_public) = create_ak(&mut context)?;
        tracing::debug!(tcti, "TPM opened, ECC P-256 AK created under the EK");
        Ok(HardwareTpm {
            context,
            ak,
            ak_public,
        })
    }
}

/// Creates the EK, creates and loads the AK under it, flushes the EK; returns the AK's handle and
/// public area.
fn create_ak(context: &mut Context) -> Result<(KeyHandle, Public), TpmError> {
    let p256 = AsymmetricAlgorithmSelection::Ecc(EccCurve::NistP256);
    let ek = ek::create_ek_object_2(context, p256, DefaultKey)
        .map_err(|error| device("creating the EK", error))?;
    let loaded = ak::create_ak_2(
        context,
        ek,
        HashingAlgorithm::Sha256,
        p256,
        SignatureSchemeAlgorithm::EcDsa,
        None,
        DefaultKey,
    )
    .map_err(|error| device("creating the AK", error))
    .and_then(|created| {
        let public = created.out_public.clone();
        ak::load_ak(context, ek, None, created.out_private, created.out_public)
            .map(|handle| (handle, public))
            .map_err(|error| device("loading the AK", error))
    });
    // The AK stays usable without its parent loaded; free the slot (no resource manager on swtpm).
    let flushed = context.flush_context(ObjectHandle::from(ek));
    let (handle, public) = loaded?;
    if let Err(error) = flushed {
        let _ = context.flush_context(ObjectHandle::from(handle));
        return Err(device("flushing the EK", error));
    }
    Ok((handle, public))
}

impl TpmProvider for HardwareTpm {
    fn extend_pcr(&mut self, pcr: u8, digest: [u8; 32]) -> Result<(), TpmError> {
        let handle = pcr_handle(pcr)?;
        let mut values = DigestValues::new();
        values.set(
            HashingAlgorithm::Sha256,
            Digest::try_from(digest.as_slice()).map_err(|error| device("SHA-256 digest", error))?,
        );
        self.context
            .execute_with_nullauth_session(|ctx| ctx.pcr_extend(handle, values))
            .map_err(|error| device(&format!("TPM2_PCR_Extend of PCR {pcr}"), error))
    }

    fn read_pcr(&mut self, pcr: u8) -> Result<[u8; 32], TpmError> {
        let slot = pcr_slot(pcr)?;
        let selection = sha256_selection(&[slot])?;
        let (_, _, digests) = self
            .context
            .pcr_read(selection)
            .map_err(|error| device(&format!("TPM2_PCR_Read of PCR {pcr}"), error))?;
        let value = digests.value().first().ok_or_else(|| {
            TpmError::Device(format!(
                "the TPM has no SHA-256 value for PCR {pcr} (bank not allocated?)"
            ))
        })?;
        <[u8; 32]>::try_from(value.value())
            .map_err(|_| TpmError::Device(format!("PCR {pcr} SHA-256 value is {} bytes", value.len())))
    }

    fn quote(&mut self, extra_data: &[u8], selection: &PcrSelection) -> Result<Quote, TpmError> {
        if extra_data.len() > MAX_EXTRA_DATA_BYTES {
            return Err(TpmError::ExtraDataTooLong(extra_data.len()));
        }
        let slots = selection
            .indices()
            .into_iter()
            .map(pcr_slot)
            .collect::<Result<Vec<_>, _>>()?;
        let selection_list = sha256_selection(&slots)?;
        let qualifying_data = Data::try_from(extra_data).map_err(|error| device("qualifying data", error))?;
        let scheme = SignatureScheme::EcDsa {
            hash_scheme: HashScheme::new(HashingAlgorithm::Sha256),
        };
        let ak = self.ak;
        let (attest, signature) = self
            .context
            .execute_with_nullauth_session(|ctx| ctx.quote(ak, qualifying_data, scheme, selection_list))
            .map_err(|error| device("TPM2_Quote", error))?;
        let attest = attest
            .marshall()
            .map_err(|error| device("marshalling TPMS_ATTEST", error))?;
        let Signature::EcDsa(signature) = signature else {
            return Err(TpmError::Device(format!(
                "TPM2_Quote returned a {:?} signature, not ECDSA",
                signature.algorithm()
            )));
        };
        Ok(Quote {
            attest,
            signature_r: scalar(signature.signature_r().value(), "r")?,
            signature_s: scalar(signature.signature_s().value(), "s")?,
        })
    }

    fn ak_public(&mut self) -> Result<AkPublic, TpmError> {
        self.ak_public
            .marshall()
            .map(AkPublic)
            .map_err(|error| device("marshalling the AK's TPMT_PUBLIC", error))
    }
}

impl Drop for HardwareTpm {
    fn drop(&mut self) {
        if let Err(error) = self.context.flush_context(ObjectHandle::from(self.ak)) {
            tracing::warn!(%error, "could not flush the AK");
        }
    }
}

/// The ESAPI handle of SHA-256 PCR `pcr`, or [`TpmError::BadPcr`] outside 0–23.
fn pcr_handle(pcr: u8) -> Result<PcrHandle, TpmError> {
    if pcr >= PCR_COUNT {
        return Err(TpmError::BadPcr(pcr));
    }
    // ESYS_TR_PCR0..ESYS_TR_PCR31 are 0..31 (tss2_esys.h).
    PcrHandle::try_from(u32::from(pcr)).map_err(|_| TpmError::BadPcr(pcr))
}

/// The selection bit of PCR `pcr`, or [`TpmError::BadPcr`] outside 0–23.
fn pcr_slot(pcr: u8) -> Result<PcrSlot, TpmError> {
    if pcr >= PCR_COUNT {
        return Err(TpmError::BadPcr(pcr));
    }
    PcrSlot::try_from(1u32 << pcr).map_err(|_| TpmError::BadPcr(pcr))
}

/// A `TPML_PCR_SELECTION` of `slots` in the SHA-256 bank, `sizeofSelect` 3 (24 PCRs, the PC
/// Client size, so the TPM echoes the same bytes the verifier expects in `TPMS_QUOTE_INFO`).
fn sha256_selection(slots: &[PcrSlot]) -> Result<PcrSelectionList, TpmError> {
    PcrSelectionListBuilder::new()
        .with_size_of_select(PcrSelectSize::ThreeOctets)
        .with_selection(HashingAlgorithm::Sha256, slots)
        .build()
        .map_err(|error| device("PCR selection", error))
}

/// An ECDSA scalar left-padded to 32 bytes (the TPM strips leading zeros of `TPM2B_ECC_PARAMETER`).
fn scalar(bytes: &[u8], name: &str) -> Result<[u8; 32], TpmError> {
    if bytes.len() > 32 {
        return Err(TpmError::Device(format!(
            "ECDSA {name} is {} bytes, expected at most 32",
            bytes.len()
        )));
    }
    let mut out = [0u8; 32];
    out[32 - bytes.len()..].copy_from_slice(bytes);
    Ok(out)
}

/// A [`TpmError::Device`] naming the step and carrying the TSS's message.
fn device(what: &str, error: tss_esapi::Error) -> TpmError {
    TpmError::Device(format!("{what}: {error}"))
}
