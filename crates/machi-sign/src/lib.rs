//! machi-sign: signed filings for machi's online procedures (issue 11).
//!
//! - [`canonical`]: the canonical form of a filing, the bytes a citizen signs
//!   (RFC 8785 JSON canonicalisation, integers only).
//! - [`Verifier`]: checks a CMS SignedData (RFC 5652; RSA-2048+, SHA-256,
//!   PKCS #1 v1.5 or PSS; detached or encapsulated; content-type,
//!   message-digest and signing-time attributes) made with a certificate
//!   shaped like the マイナンバーカード signing certificate (署名用電子証明書):
//!   issued by a configured trust anchor, within its validity, keyUsage
//!   digitalSignature + nonRepudiation, the JPKI signing policy, the basic
//!   four items (基本4情報) in subjectAltName, not on the anchor's CRL.
//!   Every refusal is a typed [`SignError`] with Japanese and English messages.
//! - `demo` (feature `demo-signer`): a synthetic CA, synthetic cards and a
//!   CMS signer, for tests and the demo only: certificates it makes say
//!   "DEMO" in every name and can never chain to a real JPKI anchor.
//!
//! The crate does no I/O and depends on nothing of machi but the domain's
//! error shape; the portal verifies on receipt and the back office again on
//! import with the same code.

pub mod alg;
pub mod canonical;
pub mod cert;
pub mod error;
pub mod oids;
pub mod verify;

#[cfg(feature = "demo-signer")]
pub mod bench;
#[cfg(feature = "demo-signer")]
pub mod demo;

pub use alg::SignatureScheme;
pub use canonical::{FilingPayload, canonicalize};
pub use cert::{
    BasicFour, BirthDate, CertificateInfo, CrlInfo, Sex, der_to_pem, pem_block, pem_to_der,
};
pub use error::{CertItem, DerPart, SignError};
pub use verify::{VerifiedFiling, Verifier};
