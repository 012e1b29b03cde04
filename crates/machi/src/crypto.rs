//! Encryption at rest: the master key, the keys each tenant derives from it,
//! sealed values and the keyed lookup of 個人番号.
//!
//! - The master key is 32 random bytes from configuration (see
//!   [`crate::config::master_key`]); nothing else is secret.
//! - Each tenant has two keys of its own, derived with HKDF-SHA256 from the
//!   master key, the tenant's 団体コード in the `info`: one encrypts
//!   (AES-256-GCM), the other keys an HMAC-SHA256 that finds equal numbers
//!   without revealing them. One tenant's keys open nothing of another's.
//! - A sealed value is `v1:` followed by unpadded URL-safe base64 of
//!   nonce (12 random bytes) ‖ ciphertext ‖ tag (16 bytes). The prefix names
//!   the scheme and the key generation, so a later key can be added as `v2:`
//!   while `v1:` values stay readable. The caller binds each value to where
//!   it is stored (the `context`, authenticated with it), so a sealed value
//!   copied to another person's row does not open.
//!
//! Opening fails with a [`SealError`], never a panic: a wrong master key and
//! an altered value are indistinguishable (both fail authentication).

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use machi_domain::ids::MunicipalityCode;
use sha2::Sha256;
use zeroize::Zeroizing;

/// Bytes of the master key.
pub const MASTER_KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// The prefix of a value sealed by this scheme with key generation 1.
pub const SEALED_V1: &str = "v1:";
/// HKDF's salt: fixed, so the same master key always gives the same tenant keys.
const HKDF_SALT: &[u8] = b"machi/master-key/v1";
/// What each derived key is for (the `info` of HKDF, with the tenant code).
const INFO_SEAL: &[u8] = b"machi/v1/seal/";
const INFO_INDEX: &[u8] = b"machi/v1/my-number-index/";

/// Why a master key cannot be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error(
        "the master key must be 64 hexadecimal characters ({MASTER_KEY_LEN} bytes), found {0} characters"
    )]
    Length(usize),
    #[error("the master key must be hexadecimal (0-9, a-f)")]
    NotHex,
    #[error("no random numbers from the operating system: {0}")]
    Random(String),
    #[error("master key file {}: {message}", path.display())]
    File { path: PathBuf, message: String },
}

/// Why a value cannot be sealed or opened. Messages never contain the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("not a sealed value (expected `v1:` and base64 of nonce, ciphertext and tag)")]
    Malformed,
    #[error("sealed with key generation {0}, which is not configured")]
    UnknownVersion(String),
    #[error("cannot be decrypted: a different master key, or the stored value was altered")]
    Authentication,
    #[error(
        "stored unencrypted (written before encryption at rest, or altered); export it with the machi version that wrote it and import it again"
    )]
    Unsealed,
    #[error(
        "does not agree with its lookup key (my_number_key): the number or the key was removed or altered"
    )]
    Inconsistent,
    #[error("no random numbers from the operating system: {0}")]
    Random(String),
    #[error("cannot derive the tenant's keys")]
    KeyDerivation,
}

/// The master key (マスター鍵): 32 bytes, wiped from memory when dropped,
/// never printed.
pub struct MasterKey(Zeroizing<[u8; MASTER_KEY_LEN]>);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// From 64 hexadecimal characters (surrounding whitespace ignored).
    pub fn from_hex(s: &str) -> Result<MasterKey, KeyError> {
        let s = s.trim();
        if s.len() != MASTER_KEY_LEN * 2 {
            return Err(KeyError::Length(s.chars().count()));
        }
        let mut key = Zeroizing::new([0u8; MASTER_KEY_LEN]);
        hex::decode_to_slice(s, &mut key[..]).map_err(|_| KeyError::NotHex)?;
        Ok(MasterKey(key))
    }

    /// A new random key from the operating system.
    pub fn generate() -> Result<MasterKey, KeyError> {
        let mut key = Zeroizing::new([0u8; MASTER_KEY_LEN]);
        getrandom::fill(&mut key[..]).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(MasterKey(key))
    }

    /// The key as 64 lowercase hexadecimal characters.
    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(&self.0[..]))
    }

    /// Reads a key file: 64 hexadecimal characters, optionally followed by a
    /// line break. Warns (in the log) if others than the owner may read it.
    pub fn read_file(path: &Path) -> Result<MasterKey, KeyError> {
        let file_error = |message: String| KeyError::File {
            path: path.to_path_buf(),
            message,
        };
        let text =
            Zeroizing::new(std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?);
        warn_if_readable_by_others(path);
        MasterKey::from_hex(&text).map_err(|e| file_error(e.to_string()))
    }

    /// Creates a key file holding a new random key, readable and writable by
    /// its owner only (mode 0600 on Unix). Fails if the file exists.
    pub fn create_file(path: &Path) -> Result<MasterKey, KeyError> {
        let file_error = |message: String| KeyError::File {
            path: path.to_path_buf(),
            message,
        };
        let key = MasterKey::generate()?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| file_error(e.to_string()))?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(|e| file_error(e.to_string()))?;
        let mut text = key.to_hex();
        text.push('\n');
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| file_error(e.to_string()))?;
        Ok(key)
    }
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{:o}", meta.permissions().mode() & 0o777),
            "the master key file may be read by other users; chmod 600 it"
        );
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_: &Path) {}

/// The keyring (鍵束): derives each tenant's keys from the master key, once
/// per tenant (kept for the life of the keyring). Cheap to share (`Arc`).
pub struct Keyring {
    hkdf: Hkdf<Sha256>,
    tenants: RwLock<HashMap<String, Arc<TenantKeys>>>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Keyring(..)")
    }
}

impl Keyring {
    pub fn new(master: &MasterKey) -> Keyring {
        Keyring {
            hkdf: Hkdf::<Sha256>::new(Some(HKDF_SALT), &master.0[..]),
            tenants: RwLock::new(HashMap::new()),
        }
    }

    /// A keyring with a new random master key that is never stored: for
    /// scratch databases (benchmarks, rehearsals) dropped after the run.
    pub fn ephemeral() -> Result<Keyring, KeyError> {
        Ok(Keyring::new(&MasterKey::generate()?))
    }

    /// The keys of one tenant.
    pub fn tenant(&self, tenant: &MunicipalityCode) -> Result<Arc<TenantKeys>, SealError> {
        if let Ok(map) = self.tenants.read()
            && let Some(keys) = map.get(tenant.as_str())
        {
            return Ok(keys.clone());
        }
        let keys = Arc::new(self.derive(tenant)?);
        if let Ok(mut map) = self.tenants.write() {
            map.entry(tenant.as_str().to_string())
                .or_insert_with(|| keys.clone());
        }
        Ok(keys)
    }

    fn derive(&self, tenant: &MunicipalityCode) -> Result<TenantKeys, SealError> {
        let mut seal = Zeroizing::new([0u8; 32]);
        let mut index = Zeroizing::new([0u8; 32]);
        for (info, out) in [(INFO_SEAL, &mut seal), (INFO_INDEX, &mut index)] {
            self.hkdf
                .expand_multi_info(&[info, tenant.as_str().as_bytes()], &mut out[..])
                .map_err(|_| SealError::KeyDerivation)?;
        }
        Ok(TenantKeys {
            tenant: tenant.clone(),
            cipher: Aes256Gcm::new_from_slice(&seal[..]).map_err(|_| SealError::KeyDerivation)?,
            index: <Hmac<Sha256> as Mac>::new_from_slice(&index[..])
                .map_err(|_| SealError::KeyDerivation)?,
        })
    }
}

/// Random nonces read from the operating system a few hundred at a time,
/// each handed out once: sealing many values (a bulk load) costs one system
/// call per batch rather than one per value. The bytes are the same random
/// numbers [`TenantKeys::seal`] reads one nonce at a time; a used nonce is
/// never handed out again.
pub struct NoncePool {
    random: Box<[u8; NONCE_POOL_BYTES]>,
    next: usize,
}

const NONCE_POOL_BYTES: usize = NONCE_LEN * 341;

impl Default for NoncePool {
    fn default() -> Self {
        NoncePool {
            random: Box::new([0u8; NONCE_POOL_BYTES]),
            // Empty: the first nonce fills it.
            next: NONCE_POOL_BYTES,
        }
    }
}

impl NoncePool {
    fn next(&mut self) -> Result<[u8; NONCE_LEN], SealError> {
        if self.next + NONCE_LEN > NONCE_POOL_BYTES {
            getrandom::fill(&mut self.random[..]).map_err(|e| SealError::Random(e.to_string()))?;
            self.next = 0;
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&self.random[self.next..self.next + NONCE_LEN]);
        self.next += NONCE_LEN;
        Ok(nonce)
    }
}

/// One tenant's keys: sealing, and the keyed lookup of 個人番号.
pub struct TenantKeys {
    tenant: MunicipalityCode,
    cipher: Aes256Gcm,
    index: Hmac<Sha256>,
}

impl fmt::Debug for TenantKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TenantKeys({})", self.tenant)
    }
}

/// The authenticated data of a value: scheme, tenant and where it is stored.
fn aad(tenant: &MunicipalityCode, context: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(SEALED_V1.len() + 8 + context.len());
    out.extend_from_slice(SEALED_V1.as_bytes());
    out.extend_from_slice(tenant.as_str().as_bytes());
    out.push(0);
    out.extend_from_slice(context.as_bytes());
    out
}

impl TenantKeys {
    pub fn tenant(&self) -> &MunicipalityCode {
        &self.tenant
    }

    /// Encrypts `plain` with a fresh random nonce, bound to `context` (where
    /// the value is stored, e.g. the person's 宛名番号): `v1:…`.
    pub fn seal(&self, context: &str, plain: &[u8]) -> Result<String, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| SealError::Random(e.to_string()))?;
        self.seal_with(nonce, context, plain)
    }

    /// [`TenantKeys::seal`] with a nonce from `pool` (many values in a row,
    /// e.g. a bulk load, without one system call each).
    pub fn seal_str_pooled(
        &self,
        pool: &mut NoncePool,
        context: &str,
        plain: &str,
    ) -> Result<String, SealError> {
        self.seal_with(pool.next()?, context, plain.as_bytes())
    }

    fn seal_with(
        &self,
        nonce: [u8; NONCE_LEN],
        context: &str,
        plain: &[u8],
    ) -> Result<String, SealError> {
        let aad = aad(&self.tenant, context);
        let ciphertext = self
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plain,
                    aad: &aad,
                },
            )
            // Only fails for messages of gigabytes.
            .map_err(|_| SealError::Malformed)?;
        let mut raw = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        raw.extend_from_slice(&nonce);
        raw.extend_from_slice(&ciphertext);
        let mut out = String::with_capacity(SEALED_V1.len() + raw.len().div_ceil(3) * 4);
        out.push_str(SEALED_V1);
        URL_SAFE_NO_PAD.encode_string(&raw, &mut out);
        Ok(out)
    }

    /// Decrypts a value made by [`TenantKeys::seal`] with the same `context`.
    pub fn open(&self, context: &str, sealed: &str) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let Some(body) = sealed.strip_prefix(SEALED_V1) else {
            return Err(match sealed.split_once(':') {
                Some((v, _))
                    if v.len() > 1
                        && v.len() <= 4
                        && v.starts_with('v')
                        && v[1..].bytes().all(|b| b.is_ascii_digit()) =>
                {
                    SealError::UnknownVersion(v.to_string())
                }
                _ => SealError::Malformed,
            });
        };
        let raw = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| SealError::Malformed)?;
        if raw.len() < NONCE_LEN + TAG_LEN {
            return Err(SealError::Malformed);
        }
        let (nonce, ciphertext) = raw.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| SealError::Malformed)?;
        let aad = aad(&self.tenant, context);
        self.cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| SealError::Authentication)
    }

    /// Seals a text value.
    pub fn seal_str(&self, context: &str, plain: &str) -> Result<String, SealError> {
        self.seal(context, plain.as_bytes())
    }

    /// Opens a sealed text value.
    pub fn open_str(&self, context: &str, sealed: &str) -> Result<Zeroizing<String>, SealError> {
        let bytes = self.open(context, sealed)?;
        std::str::from_utf8(&bytes)
            .map(|s| Zeroizing::new(s.to_string()))
            .map_err(|_| SealError::Malformed)
    }

    /// The key a 個人番号 is looked up by (j600): HMAC-SHA256 with the
    /// tenant's index key, hex. Equal numbers give equal keys within a
    /// tenant; without the key, the column reveals nothing.
    pub fn my_number_key(&self, number: &str) -> String {
        let mut mac = self.index.clone();
        mac.update(number.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const KEY_B: &str = "1f1e1d1c1b1a191817161514131211100f0e0d0c0b0a09080706050403020100";
    const NUMBER: &str = "123456789018";

    fn ring(hex: &str) -> Keyring {
        Keyring::new(&MasterKey::from_hex(hex).unwrap())
    }

    fn code(s: &str) -> MunicipalityCode {
        s.parse().unwrap()
    }

    #[test]
    fn a_sealed_value_opens_with_the_same_key_and_context() {
        let keys = ring(KEY_A).tenant(&code("132063")).unwrap();
        let sealed = keys.seal_str("000000000019", NUMBER).unwrap();
        assert!(sealed.starts_with("v1:"), "{sealed}");
        assert!(!sealed.contains(NUMBER));
        assert_eq!(
            keys.open_str("000000000019", &sealed).unwrap().as_str(),
            NUMBER
        );
        // nonce 12 + ciphertext 12 + tag 16 bytes, base64 without padding
        assert_eq!(sealed.len(), 3 + (12 + 12 + 16usize).div_ceil(3) * 4 - 2);
        // The empty value round-trips too.
        let empty = keys.seal_str("x", "").unwrap();
        assert_eq!(keys.open_str("x", &empty).unwrap().as_str(), "");
    }

    #[test]
    fn pooled_nonces_are_fresh_and_open() {
        let keys = ring(KEY_A).tenant(&code("132063")).unwrap();
        let mut pool = NoncePool::default();
        let mut nonces = std::collections::HashSet::new();
        // More than one refill of the pool.
        for i in 0..1000 {
            let sealed = keys.seal_str_pooled(&mut pool, "c", NUMBER).unwrap();
            assert_eq!(keys.open_str("c", &sealed).unwrap().as_str(), NUMBER, "{i}");
            let raw = URL_SAFE_NO_PAD.decode(&sealed[3..]).unwrap();
            assert!(
                nonces.insert(raw[..NONCE_LEN].to_vec()),
                "nonce reused at {i}"
            );
        }
    }

    #[test]
    fn each_seal_uses_a_fresh_nonce() {
        let keys = ring(KEY_A).tenant(&code("132063")).unwrap();
        let a = keys.seal_str("c", NUMBER).unwrap();
        let b = keys.seal_str("c", NUMBER).unwrap();
        assert_ne!(a, b);
        assert_eq!(keys.open_str("c", &b).unwrap().as_str(), NUMBER);
    }

    #[test]
    fn tenants_have_keys_of_their_own() {
        let ring = ring(KEY_A);
        let fuchu = ring.tenant(&code("132063")).unwrap();
        let akishima = ring.tenant(&code("132071")).unwrap();
        let sealed = fuchu.seal_str("c", NUMBER).unwrap();
        assert_eq!(
            akishima.open_str("c", &sealed).unwrap_err(),
            SealError::Authentication
        );
        assert_ne!(fuchu.my_number_key(NUMBER), akishima.my_number_key(NUMBER));
        // Within a tenant the lookup key is stable and differs per number.
        assert_eq!(fuchu.my_number_key(NUMBER), fuchu.my_number_key(NUMBER));
        assert_ne!(
            fuchu.my_number_key(NUMBER),
            fuchu.my_number_key("987654321093")
        );
        assert_eq!(fuchu.my_number_key(NUMBER).len(), 64);
        // The same keyring gives the same (cached) keys.
        assert_eq!(
            ring.tenant(&code("132063")).unwrap().my_number_key(NUMBER),
            fuchu.my_number_key(NUMBER)
        );
    }

    #[test]
    fn the_index_key_differs_from_an_unkeyed_hash_and_between_master_keys() {
        use sha2::Digest;
        let a = ring(KEY_A)
            .tenant(&code("132063"))
            .unwrap()
            .my_number_key(NUMBER);
        let b = ring(KEY_B)
            .tenant(&code("132063"))
            .unwrap()
            .my_number_key(NUMBER);
        assert_ne!(a, b);
        let unkeyed = hex::encode(Sha256::digest(format!("132063:{NUMBER}")));
        assert_ne!(a, unkeyed);
    }

    #[test]
    fn a_wrong_master_key_is_an_error() {
        let sealed = ring(KEY_A)
            .tenant(&code("132063"))
            .unwrap()
            .seal_str("c", NUMBER)
            .unwrap();
        let other = ring(KEY_B).tenant(&code("132063")).unwrap();
        assert_eq!(
            other.open_str("c", &sealed).unwrap_err(),
            SealError::Authentication
        );
    }

    #[test]
    fn a_tampered_value_is_an_error() {
        let keys = ring(KEY_A).tenant(&code("132063")).unwrap();
        let sealed = keys.seal_str("000000000019", NUMBER).unwrap();
        // Any changed character of the body fails authentication (or decoding).
        for i in 3..sealed.len() {
            let mut bytes = sealed.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let tampered = String::from_utf8(bytes).unwrap();
            let err = keys.open_str("000000000019", &tampered).unwrap_err();
            assert!(
                matches!(err, SealError::Authentication | SealError::Malformed),
                "{i}: {err:?}"
            );
        }
        // Moved to another context (another person's row).
        assert_eq!(
            keys.open_str("000000000027", &sealed).unwrap_err(),
            SealError::Authentication
        );
        // Truncated, garbage, plain text, unknown generations.
        for (bad, want) in [
            ("v1:", SealError::Malformed),
            ("v1:AAAA", SealError::Malformed),
            ("v1:!!!!", SealError::Malformed),
            (NUMBER, SealError::Malformed),
            ("", SealError::Malformed),
            ("v2:AAAA", SealError::UnknownVersion("v2".into())),
            ("v10:AAAA", SealError::UnknownVersion("v10".into())),
            ("vx:AAAA", SealError::Malformed),
        ] {
            assert_eq!(keys.open_str("c", bad).unwrap_err(), want, "{bad:?}");
        }
        assert!(keys.open_str("c", &sealed[..sealed.len() - 2]).is_err());
    }

    #[test]
    fn errors_and_debug_output_never_show_keys_or_values() {
        let master = MasterKey::from_hex(KEY_A).unwrap();
        assert_eq!(format!("{master:?}"), "MasterKey(..)");
        let ring = Keyring::new(&master);
        assert_eq!(format!("{ring:?}"), "Keyring(..)");
        let keys = ring.tenant(&code("132063")).unwrap();
        assert_eq!(format!("{keys:?}"), "TenantKeys(132063)");
        let err = keys.open_str("c", NUMBER).unwrap_err().to_string();
        assert!(!err.contains(NUMBER), "{err}");
    }

    #[test]
    fn master_keys_parse_from_hex_only() {
        assert_eq!(MasterKey::from_hex(KEY_A).unwrap().to_hex().as_str(), KEY_A);
        assert_eq!(
            MasterKey::from_hex(&format!("  {}\n", KEY_A.to_uppercase()))
                .unwrap()
                .to_hex()
                .as_str(),
            KEY_A
        );
        assert_eq!(MasterKey::from_hex("abc").unwrap_err(), KeyError::Length(3));
        assert_eq!(
            MasterKey::from_hex(&"g".repeat(64)).unwrap_err(),
            KeyError::NotHex
        );
        // Multi-byte input of 64 bytes is a length error, not a panic.
        assert!(MasterKey::from_hex(&"鍵".repeat(21)).is_err());
        assert_ne!(
            MasterKey::generate().unwrap().to_hex(),
            MasterKey::generate().unwrap().to_hex()
        );
    }

    #[test]
    fn key_files_are_created_once_with_owner_only_access() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("master.key");
        let created = MasterKey::create_file(&path).unwrap();
        let read = MasterKey::read_file(&path).unwrap();
        assert_eq!(created.to_hex(), read.to_hex());
        assert!(MasterKey::create_file(&path).is_err(), "never overwritten");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let missing = MasterKey::read_file(&dir.path().join("none.key")).unwrap_err();
        assert!(matches!(missing, KeyError::File { .. }));
        std::fs::write(dir.path().join("bad.key"), "xyz\n").unwrap();
        let bad = MasterKey::read_file(&dir.path().join("bad.key")).unwrap_err();
        assert!(bad.to_string().contains("64 hexadecimal"), "{bad}");
    }
}
