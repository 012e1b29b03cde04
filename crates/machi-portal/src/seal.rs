//! The cryptography of the portal, all from maintained crates:
//!
//! - **Filings** are sealed to the back office's public key with HPKE
//!   (RFC 9180, `hpke` crate: X25519-HKDF-SHA256, HKDF-SHA256,
//!   ChaCha20-Poly1305, base mode). The portal holds only the public key, so
//!   once sealed not even the portal can read a filing (三層分離, issue 11
//!   item 4). The filing's row id is the associated data: sealed bytes
//!   moved to another row do not open.
//! - **Drafts** are encrypted with AES-256-GCM under a key derived (HKDF-SHA256)
//!   from the citizen's resume code, which the portal never stores: the
//!   database holds `HMAC(portal secret, code)` as the draft's id and the
//!   ciphertext. Without the code a draft cannot be read, by anyone.
//! - **Status reasons** (what the back office tells the citizen) are
//!   encrypted the same way under a key derived from the receipt number,
//!   which the portal keeps only as an HMAC.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem as _, OpModeR, OpModeS, Serializable};
use sha2::Sha256;
use zeroize::Zeroizing;

type Kem = X25519HkdfSha256;

/// HPKE `info`: names the scheme and its version.
const HPKE_INFO: &[u8] = b"machi-portal/filing/v1";
/// Bytes of the encapsulated key that starts a sealed filing.
const ENC_LEN: usize = 32;

/// Why something cannot be sealed or opened. Never contains the content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("the back office key must be 64 hexadecimal characters (32 bytes)")]
    BadKey,
    #[error("no random numbers from the operating system")]
    Random,
    #[error("cannot be opened: a different key, or the sealed bytes were altered")]
    Open,
}

/// The back office's public key, the only key the portal needs for filings.
#[derive(Clone)]
pub struct RecipientKey(<Kem as hpke::Kem>::PublicKey);

impl RecipientKey {
    pub fn from_hex(s: &str) -> Result<RecipientKey, SealError> {
        let bytes = hex::decode(s.trim()).map_err(|_| SealError::BadKey)?;
        <Kem as hpke::Kem>::PublicKey::from_bytes(&bytes)
            .map(RecipientKey)
            .map_err(|_| SealError::BadKey)
    }
    pub fn to_hex(&self) -> String {
        hex::encode(self.0.to_bytes())
    }
}

/// The back office's private key (kept by the back office only).
pub struct OpeningKey(<Kem as hpke::Kem>::PrivateKey);

impl OpeningKey {
    pub fn from_hex(s: &str) -> Result<OpeningKey, SealError> {
        let bytes = Zeroizing::new(hex::decode(s.trim()).map_err(|_| SealError::BadKey)?);
        <Kem as hpke::Kem>::PrivateKey::from_bytes(&bytes)
            .map(OpeningKey)
            .map_err(|_| SealError::BadKey)
    }
    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(self.0.to_bytes()))
    }
    pub fn public(&self) -> RecipientKey {
        RecipientKey(<Kem as hpke::Kem>::sk_to_pk(&self.0))
    }
    /// A new key pair from the operating system's randomness.
    pub fn generate() -> Result<OpeningKey, SealError> {
        let ikm = Zeroizing::new(random::<32>()?);
        let (sk, _) = Kem::derive_keypair(&*ikm);
        Ok(OpeningKey(sk))
    }
    /// Opens a sealed filing bound to `bound_to` (its row id).
    pub fn open(&self, sealed: &[u8], bound_to: &str) -> Result<Vec<u8>, SealError> {
        if sealed.len() < ENC_LEN {
            return Err(SealError::Open);
        }
        let (enc, ct) = sealed.split_at(ENC_LEN);
        let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(enc).map_err(|_| SealError::Open)?;
        hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, Kem>(
            &OpModeR::Base,
            &self.0,
            &enc,
            HPKE_INFO,
            ct,
            bound_to.as_bytes(),
        )
        .map_err(|_| SealError::Open)
    }
}

/// Seals a filing for the back office: encapsulated key ‖ ciphertext.
pub fn seal_filing(
    to: &RecipientKey,
    plaintext: &[u8],
    bound_to: &str,
) -> Result<Vec<u8>, SealError> {
    let mut rng = rand_core::UnwrapErr(rand_core::OsRng);
    let (enc, ct) = hpke::single_shot_seal::<ChaCha20Poly1305, HkdfSha256, Kem, _>(
        &OpModeS::Base,
        &to.0,
        HPKE_INFO,
        plaintext,
        bound_to.as_bytes(),
        &mut rng,
    )
    .map_err(|_| SealError::Random)?;
    let mut out = enc.to_bytes().to_vec();
    out.extend_from_slice(&ct);
    Ok(out)
}

/// `N` random bytes from the operating system.
pub fn random<const N: usize>() -> Result<[u8; N], SealError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|_| SealError::Random)?;
    Ok(b)
}

/// Keyed hash used as a database key for a secret (resume code, receipt).
pub fn lookup_id(secret: &[u8], purpose: &str, value: &str) -> String {
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(purpose.as_bytes());
    mac.update(b"\0");
    mac.update(value.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

fn derive_key(secret: &[u8], purpose: &str, value: &str) -> Zeroizing<[u8; 32]> {
    let hk = Hkdf::<Sha256>::new(Some(secret), value.as_bytes());
    let mut key = Zeroizing::new([0u8; 32]);
    // 32 bytes is always a valid HKDF-SHA256 output length.
    let _ = hk.expand(purpose.as_bytes(), &mut *key);
    key
}

/// Encrypts `plain` under a key derived from `value` (a resume code or a
/// receipt number) and the portal secret: nonce ‖ ciphertext ‖ tag.
pub fn encrypt_with(
    secret: &[u8],
    purpose: &str,
    value: &str,
    plain: &[u8],
) -> Result<Vec<u8>, SealError> {
    let key = derive_key(secret, purpose, value);
    let cipher = Aes256Gcm::new_from_slice(&*key).map_err(|_| SealError::BadKey)?;
    let nonce = random::<12>()?;
    let ct = cipher
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: plain,
                aad: purpose.as_bytes(),
            },
        )
        .map_err(|_| SealError::Random)?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Opens what [`encrypt_with`] made.
pub fn decrypt_with(
    secret: &[u8],
    purpose: &str,
    value: &str,
    sealed: &[u8],
) -> Result<Vec<u8>, SealError> {
    if sealed.len() < 12 + 16 {
        return Err(SealError::Open);
    }
    let key = derive_key(secret, purpose, value);
    let cipher = Aes256Gcm::new_from_slice(&*key).map_err(|_| SealError::BadKey)?;
    let (nonce, ct) = sealed.split_at(12);
    let nonce: [u8; 12] = nonce.try_into().map_err(|_| SealError::Open)?;
    cipher
        .decrypt(
            &Nonce::from(nonce),
            Payload {
                msg: ct,
                aad: purpose.as_bytes(),
            },
        )
        .map_err(|_| SealError::Open)
}

/// Crockford's base32 without I, L, O, U: easy to read aloud and type.
const CODE_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A random code of `groups` groups of four characters (20 bits each),
/// e.g. `7KQ2-M9XD-3TPA-R8VN`.
pub fn new_code(groups: usize) -> Result<String, SealError> {
    let bytes = random::<32>()?;
    let chars: Vec<char> = bytes
        .iter()
        .take(groups * 4)
        .map(|b| CODE_ALPHABET[(*b & 31) as usize] as char)
        .collect();
    Ok(chars
        .chunks(4)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join("-"))
}

/// A code as typed (any case, spaces or hyphens, O for 0, I/L for 1) in
/// its canonical form, or None when it cannot be one.
pub fn normalize_code(input: &str, groups: usize) -> Option<String> {
    let chars: Vec<char> = input
        .chars()
        .filter(|c| !c.is_whitespace() && !matches!(c, '-' | '－' | 'ー' | '‐'))
        .map(|c| match c.to_ascii_uppercase() {
            'O' => '0',
            'I' | 'L' => '1',
            c => c,
        })
        .map(|c| {
            // Full-width letters and digits.
            if ('Ａ'..='Ｚ').contains(&c)
                || ('０'..='９').contains(&c)
                || ('ａ'..='ｚ').contains(&c)
            {
                char::from_u32(c as u32 - 0xFEE0)
                    .map(|c| c.to_ascii_uppercase())
                    .unwrap_or(c)
            } else {
                c
            }
        })
        .collect();
    if chars.len() != groups * 4
        || !chars
            .iter()
            .all(|c| CODE_ALPHABET.contains(&(*c as u8)) && c.is_ascii())
    {
        return None;
    }
    Some(
        chars
            .chunks(4)
            .map(|c| c.iter().collect::<String>())
            .collect::<Vec<_>>()
            .join("-"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_filing_opens_only_with_the_key_and_its_receipt() {
        let key = OpeningKey::generate().unwrap();
        let public = RecipientKey::from_hex(&key.public().to_hex()).unwrap();
        let sealed = seal_filing(&public, "架空 太郎".as_bytes(), "AAAA-BBBB-CCCC").unwrap();
        assert!(!sealed.windows(3).any(|w| w == "架".as_bytes()));
        let reopened = OpeningKey::from_hex(&key.to_hex()).unwrap();
        assert_eq!(
            reopened.open(&sealed, "AAAA-BBBB-CCCC").unwrap(),
            "架空 太郎".as_bytes()
        );
        assert_eq!(key.open(&sealed, "AAAA-BBBB-CCCD"), Err(SealError::Open));
        let other = OpeningKey::generate().unwrap();
        assert_eq!(other.open(&sealed, "AAAA-BBBB-CCCC"), Err(SealError::Open));
        let mut tampered = sealed.clone();
        tampered[40] ^= 1;
        assert_eq!(key.open(&tampered, "AAAA-BBBB-CCCC"), Err(SealError::Open));
        assert_eq!(key.open(&[1, 2, 3], "x"), Err(SealError::Open));
    }

    #[test]
    fn drafts_open_only_with_their_code() {
        let secret = [7u8; 32];
        let s = encrypt_with(&secret, "draft", "7KQ2-M9XD-3TPA-R8VN", b"{}").unwrap();
        assert_eq!(
            decrypt_with(&secret, "draft", "7KQ2-M9XD-3TPA-R8VN", &s).unwrap(),
            b"{}"
        );
        assert!(decrypt_with(&secret, "draft", "7KQ2-M9XD-3TPA-R8VM", &s).is_err());
        assert!(decrypt_with(&[8u8; 32], "draft", "7KQ2-M9XD-3TPA-R8VN", &s).is_err());
    }

    #[test]
    fn codes_are_read_back_as_typed() {
        let c = new_code(4).unwrap();
        assert_eq!(c.len(), 19);
        assert_eq!(
            normalize_code(&c.to_lowercase().replace('-', " "), 4),
            Some(c.clone())
        );
        assert_eq!(
            normalize_code("7kq2-m9xd-3tpa-r8vo", 4).as_deref(),
            Some("7KQ2-M9XD-3TPA-R8V0")
        );
        assert_eq!(
            normalize_code("７ＫＱ２Ｍ９ＸＤ３ＴＰＡＲ８ＶＮ", 4).as_deref(),
            Some("7KQ2-M9XD-3TPA-R8VN")
        );
        assert_eq!(normalize_code("7KQ2", 4), None);
        assert_eq!(normalize_code("7KQ2-M9XD-3TPA-R8V!", 4), None);
    }
}
