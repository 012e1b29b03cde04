//! Signature algorithms accepted: SHA-256 with RSA, PKCS #1 v1.5 or PSS
//! (RFC 4055, MGF1 with SHA-256). Verification itself is the `rsa` crate's.

use der::{Decode, Encode, Tagged};
use rsa::pkcs1::RsaPssParams;
use rsa::traits::PublicKeyParts;
use rsa::{Pkcs1v15Sign, Pss, RsaPublicKey};
use sha2::{Digest, Sha256};
use spki::AlgorithmIdentifierOwned;

use crate::error::SignError;
use crate::oids;

/// Minimum and maximum RSA modulus sizes accepted (JPKI uses 2048).
pub const MIN_RSA_BITS: usize = 2048;
pub const MAX_RSA_BITS: usize = 4096;

/// How a signature value was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SignatureScheme {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RsaPkcs1v15Sha256,
    /// RSASSA-PSS with SHA-256, MGF1-SHA-256 and the given salt length.
    RsaPssSha256 { salt_len: u8 },
}

fn params_absent_or_null(alg: &AlgorithmIdentifierOwned) -> bool {
    match &alg.parameters {
        None => true,
        Some(p) => p.tag() == der::Tag::Null && p.value().is_empty(),
    }
}

/// The digest algorithm must be SHA-256 (parameters absent or NULL).
pub fn check_sha256(alg: &AlgorithmIdentifierOwned) -> Result<(), SignError> {
    if alg.oid == oids::SHA256 && params_absent_or_null(alg) {
        Ok(())
    } else {
        Err(SignError::unsupported(format!("digest {}", alg.oid)))
    }
}

/// Reads a signature AlgorithmIdentifier. `rsa_encryption_ok`: CMS signers
/// may name plain rsaEncryption in SignerInfo.signatureAlgorithm (RFC 5754
/// §3.2 prefers sha256WithRSAEncryption; both are met in practice).
pub fn scheme(
    alg: &AlgorithmIdentifierOwned,
    rsa_encryption_ok: bool,
) -> Result<SignatureScheme, SignError> {
    if alg.oid == oids::SHA256_WITH_RSA || (rsa_encryption_ok && alg.oid == oids::RSA_ENCRYPTION) {
        if !params_absent_or_null(alg) {
            return Err(SignError::unsupported("PKCS #1 v1.5 with parameters"));
        }
        return Ok(SignatureScheme::RsaPkcs1v15Sha256);
    }
    if alg.oid == oids::RSASSA_PSS {
        let params = alg
            .parameters
            .as_ref()
            .ok_or_else(|| SignError::unsupported("RSASSA-PSS without parameters (SHA-1)"))?;
        let der = params
            .to_der()
            .map_err(|e| SignError::unsupported(format!("RSASSA-PSS parameters: {e}")))?;
        let p = RsaPssParams::from_der(&der)
            .map_err(|e| SignError::unsupported(format!("RSASSA-PSS parameters: {e}")))?;
        let hash_ok = p.hash.oid == oids::SHA256;
        let mgf_ok = p.mask_gen.oid == oids::MGF1
            && p.mask_gen
                .parameters
                .as_ref()
                .is_some_and(|h| h.oid == oids::SHA256);
        if !hash_ok || !mgf_ok {
            return Err(SignError::unsupported(
                "RSASSA-PSS other than SHA-256/MGF1-SHA-256",
            ));
        }
        return Ok(SignatureScheme::RsaPssSha256 {
            salt_len: p.salt_len,
        });
    }
    Err(SignError::unsupported(format!("signature {}", alg.oid)))
}

/// Checks the key size of an RSA public key.
pub fn check_key_size(key: &RsaPublicKey) -> Result<(), SignError> {
    let bits = key.n().bits();
    if (MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
        Ok(())
    } else {
        Err(SignError::unsupported(format!("RSA key of {bits} bits")))
    }
}

/// Reads an RSA public key from a SubjectPublicKeyInfo.
pub fn rsa_key(spki: &spki::SubjectPublicKeyInfoOwned) -> Result<RsaPublicKey, SignError> {
    if spki.algorithm.oid != oids::RSA_ENCRYPTION {
        return Err(SignError::unsupported(format!(
            "key {}",
            spki.algorithm.oid
        )));
    }
    let der = spki
        .to_der()
        .map_err(|e| SignError::der(crate::error::DerPart::Certificate, e))?;
    let r = spki::SubjectPublicKeyInfoRef::from_der(&der)
        .map_err(|e| SignError::der(crate::error::DerPart::Certificate, e))?;
    let key =
        RsaPublicKey::try_from(r).map_err(|e| SignError::unsupported(format!("RSA key: {e}")))?;
    check_key_size(&key)?;
    Ok(key)
}

/// Verifies `sig` over `msg` (hashed here with SHA-256): true when it holds.
pub fn verify(key: &RsaPublicKey, scheme: SignatureScheme, msg: &[u8], sig: &[u8]) -> bool {
    let hashed = Sha256::digest(msg);
    let r = match scheme {
        SignatureScheme::RsaPkcs1v15Sha256 => {
            key.verify(Pkcs1v15Sign::new::<Sha256>(), &hashed, sig)
        }
        SignatureScheme::RsaPssSha256 { salt_len } => key.verify(
            Pss::new_with_salt::<Sha256>(salt_len as usize),
            &hashed,
            sig,
        ),
    };
    r.is_ok()
}
