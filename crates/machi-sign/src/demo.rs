//! DEMO ONLY: a synthetic JPKI-like CA, synthetic signing cards and a CMS
//! signer (feature `demo-signer`).
//!
//! For tests and for `machi demo`, which issues cards to synthetic residents
//! (架空 太郎 …) and lets the portal sign with one, labelled as a demo. Every
//! name it writes starts with "DEMO"; its CA key is made at run time and is
//! never a real JPKI anchor, so nothing it signs verifies against one.
//!
//! Certificates are assembled field by field (x509-cert's types) and signed
//! with the `rsa` crate; SignedData is made with the `cms` crate's
//! SignerInfoBuilder. The card profile follows the JPKI signing certificate:
//! keyUsage digitalSignature + nonRepudiation (critical), certificatePolicies
//! 1.2.392.200149.8.5.1.1, subjectAltName otherName UTF8String values for the
//! basic four items under 1.2.392.200149.8.5.5.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use cms::builder::SignerInfoBuilder;
use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{
    CertificateSet, EncapsulatedContentInfo, SignedData, SignerIdentifier, SignerInfo, SignerInfos,
};
use const_oid::ObjectIdentifier;
use der::asn1::{BitString, GeneralizedTime, OctetString, SetOfVec, UtcTime, Utf8StringRef};
use der::{Any, Encode, Tag};
use rand_core::OsRng;
use rsa::pkcs1v15;
use rsa::pss;
use rsa::signature::{SignatureEncoding, Signer};
use rsa::{RsaPrivateKey, RsaPublicKey};
use sha2::{Digest, Sha256};
use spki::{AlgorithmIdentifierOwned, EncodePublicKey, SubjectPublicKeyInfoOwned};
use x509_cert::Certificate;
use x509_cert::attr::Attribute;
use x509_cert::builder::Builder;
use x509_cert::crl::{CertificateList, RevokedCert, TbsCertList};
use x509_cert::ext::pkix::certpolicy::PolicyInformation;
use x509_cert::ext::pkix::name::{GeneralName, OtherName};
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, CertificatePolicies, KeyUsage, KeyUsages,
    SubjectAltName, SubjectKeyIdentifier,
};
use x509_cert::ext::{AsExtension, Extension};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};
use x509_cert::{TbsCertificate, Version};

use crate::alg::SignatureScheme;
use crate::canonical::FilingPayload;
use crate::oids;

/// Errors of the demo signer (all are programming or key errors: the demo
/// signer only ever gets well-formed input from machi itself).
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("DER: {0}")]
    Der(#[from] der::Error),
    #[error("RSA: {0}")]
    Rsa(#[from] rsa::Error),
    #[error("name: {0}")]
    Name(String),
    #[error("builder: {0}")]
    Builder(String),
    #[error(transparent)]
    Sign(#[from] crate::error::SignError),
}

type Result<T> = std::result::Result<T, DemoError>;

/// A fresh RSA-2048 key (slow: ~0.1–1 s in an optimised build).
pub fn generate_key() -> Result<RsaPrivateKey> {
    Ok(RsaPrivateKey::new(&mut OsRng, 2048)?)
}

fn x509_time(t: DateTime<Utc>) -> Result<Time> {
    let secs =
        u64::try_from(t.timestamp()).map_err(|_| DemoError::Name("time before 1970".into()))?;
    let d = std::time::Duration::from_secs(secs);
    // RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime after.
    Ok(if t.timestamp() < 2_524_608_000 {
        Time::UtcTime(UtcTime::from_unix_duration(d)?)
    } else {
        Time::GeneralTime(GeneralizedTime::from_unix_duration(d)?)
    })
}

fn sha256_rsa() -> AlgorithmIdentifierOwned {
    AlgorithmIdentifierOwned {
        oid: oids::SHA256_WITH_RSA,
        parameters: Some(Any::null()),
    }
}

fn ext<E: AsExtension>(subject: &Name, e: &E) -> Result<Extension> {
    e.to_extension(subject, &[])
        .map_err(|err| DemoError::Builder(err.to_string()))
}

fn raw_ext(oid: ObjectIdentifier, critical: bool, value: &impl Encode) -> Result<Extension> {
    Ok(Extension {
        extn_id: oid,
        critical,
        extn_value: OctetString::new(value.to_der()?)?,
    })
}

fn key_id(key: &RsaPublicKey) -> Result<OctetString> {
    let spki = key
        .to_public_key_der()
        .map_err(|e| DemoError::Builder(e.to_string()))?;
    Ok(OctetString::new(&Sha256::digest(spki.as_bytes())[..20])?)
}

fn spki_of(key: &RsaPublicKey) -> Result<SubjectPublicKeyInfoOwned> {
    let der = key
        .to_public_key_der()
        .map_err(|e| DemoError::Builder(e.to_string()))?;
    SubjectPublicKeyInfoOwned::try_from(der.as_bytes())
        .map_err(|e| DemoError::Builder(e.to_string()))
}

fn cms_err<E: std::fmt::Display>(e: E) -> DemoError {
    DemoError::Builder(e.to_string())
}

fn sign_pkcs1(key: &RsaPrivateKey, msg: &[u8]) -> Result<BitString> {
    let signer = pkcs1v15::SigningKey::<Sha256>::new(key.clone());
    let sig = signer
        .try_sign(msg)
        .map_err(|e| DemoError::Builder(e.to_string()))?;
    Ok(BitString::from_bytes(&sig.to_bytes())?)
}

/// A synthetic signing CA ("DEMO").
pub struct DemoCa {
    key: RsaPrivateKey,
    cert: Certificate,
    ski: OctetString,
}

/// What to put in a synthetic card's signing certificate.
#[derive(Debug, Clone)]
pub struct CardSpec {
    /// Serial number (unique per CA).
    pub serial: u64,
    /// 氏名 (synthetic people only).
    pub name: String,
    /// 性別: `1` 男, `2` 女.
    pub sex: String,
    /// 生年月日 as `EYYYYMMDD` (era digit 1 明治 … 5 令和, then the Gregorian date).
    pub date_of_birth: String,
    /// 住所.
    pub address: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    /// The certificate policy (the JPKI signing policy unless testing a wrong one).
    pub policy: ObjectIdentifier,
    /// Whether keyUsage includes nonRepudiation (JPKI's signing cert does).
    pub non_repudiation: bool,
    /// Leave out 住所 (to test a certificate missing one of the four items).
    pub omit_address: bool,
    /// Add a critical extension no verifier knows (to test RFC 5280 §4.2).
    pub unknown_critical_extension: bool,
}

impl CardSpec {
    /// A JPKI-shaped card valid from `not_before` for five years.
    pub fn new(
        serial: u64,
        name: &str,
        sex: &str,
        date_of_birth: &str,
        address: &str,
        not_before: DateTime<Utc>,
    ) -> CardSpec {
        CardSpec {
            serial,
            name: name.into(),
            sex: sex.into(),
            date_of_birth: date_of_birth.into(),
            address: address.into(),
            not_before,
            not_after: not_before + chrono::Duration::days(5 * 365),
            policy: oids::JPKI_SIGNING_POLICY,
            non_repudiation: true,
            omit_address: false,
            unknown_critical_extension: false,
        }
    }
}

impl DemoCa {
    /// A CA named `DEMO <label>` with this key, valid over the given period.
    pub fn new(
        key: RsaPrivateKey,
        label: &str,
        not_before: DateTime<Utc>,
        not_after: DateTime<Utc>,
    ) -> Result<DemoCa> {
        let clean: String = label
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == ' ' || *c == '-')
            .collect();
        let name = Name::from_str(&format!(
            "CN=DEMO {clean} signing CA (synthetic; not JPKI),OU=DEMO ONLY,O=machi demo,C=JP"
        ))
        .map_err(|e| DemoError::Name(e.to_string()))?;
        let public = key.to_public_key();
        let ski = key_id(&public)?;
        let exts = vec![
            ext(&name, &SubjectKeyIdentifier(ski.clone()))?,
            ext(
                &name,
                &BasicConstraints {
                    ca: true,
                    path_len_constraint: Some(0),
                },
            )?,
            ext(
                &name,
                &KeyUsage(KeyUsages::KeyCertSign | KeyUsages::CRLSign),
            )?,
        ];
        let tbs = TbsCertificate {
            version: Version::V3,
            serial_number: SerialNumber::from(1u32),
            signature: sha256_rsa(),
            issuer: name.clone(),
            validity: Validity {
                not_before: x509_time(not_before)?,
                not_after: x509_time(not_after)?,
            },
            subject: name,
            subject_public_key_info: spki_of(&public)?,
            issuer_unique_id: None,
            subject_unique_id: None,
            extensions: Some(exts),
        };
        let signature = sign_pkcs1(&key, &tbs.to_der()?)?;
        let cert = Certificate {
            tbs_certificate: tbs,
            signature_algorithm: sha256_rsa(),
            signature,
        };
        Ok(DemoCa { key, cert, ski })
    }

    /// The CA certificate (DER): what a verifier is configured to trust.
    pub fn cert_der(&self) -> Vec<u8> {
        self.cert.to_der().unwrap_or_default()
    }

    /// Issues a JPKI-shaped signing certificate for `card_key`.
    pub fn issue(&self, spec: &CardSpec, card_key: &RsaPrivateKey) -> Result<DemoCard> {
        let subject = Name::from_str(&format!(
            "CN=DEMO card {:08},OU=DEMO ONLY,O=machi demo,C=JP",
            spec.serial
        ))
        .map_err(|e| DemoError::Name(e.to_string()))?;
        let public = card_key.to_public_key();
        let other = |oid: ObjectIdentifier, v: &str| -> Result<GeneralName> {
            Ok(GeneralName::OtherName(OtherName {
                type_id: oid,
                value: Any::encode_from(&Utf8StringRef::new(v)?)?,
            }))
        };
        let mut names = vec![
            other(oids::JPKI_NAME, &spec.name)?,
            other(oids::JPKI_SEX, &spec.sex)?,
            other(oids::JPKI_DATE_OF_BIRTH, &spec.date_of_birth)?,
        ];
        if !spec.omit_address {
            names.push(other(oids::JPKI_ADDRESS, &spec.address)?);
        }
        let mut usage = KeyUsages::DigitalSignature.into();
        if spec.non_repudiation {
            usage |= KeyUsages::NonRepudiation;
        }
        let mut exts = vec![
            ext(&subject, &KeyUsage(usage))?,
            raw_ext(
                oids::EXT_CERTIFICATE_POLICIES,
                false,
                &CertificatePolicies(vec![PolicyInformation {
                    policy_identifier: spec.policy,
                    policy_qualifiers: None,
                }]),
            )?,
            raw_ext(oids::EXT_SUBJECT_ALT_NAME, false, &SubjectAltName(names))?,
            ext(&subject, &SubjectKeyIdentifier(key_id(&public)?))?,
            ext(
                &subject,
                &AuthorityKeyIdentifier {
                    key_identifier: Some(self.ski.clone()),
                    authority_cert_issuer: None,
                    authority_cert_serial_number: None,
                },
            )?,
        ];
        if spec.unknown_critical_extension {
            exts.push(raw_ext(
                ObjectIdentifier::new_unwrap("1.3.6.1.4.1.99999.1"),
                true,
                &der::asn1::Null,
            )?);
        }
        let tbs = TbsCertificate {
            version: Version::V3,
            serial_number: SerialNumber::from(spec.serial),
            signature: sha256_rsa(),
            issuer: self.cert.tbs_certificate.subject.clone(),
            validity: Validity {
                not_before: x509_time(spec.not_before)?,
                not_after: x509_time(spec.not_after)?,
            },
            subject,
            subject_public_key_info: spki_of(&public)?,
            issuer_unique_id: None,
            subject_unique_id: None,
            extensions: Some(exts),
        };
        let signature = sign_pkcs1(&self.key, &tbs.to_der()?)?;
        let cert = Certificate {
            tbs_certificate: tbs,
            signature_algorithm: sha256_rsa(),
            signature,
        };
        Ok(DemoCard {
            key: card_key.clone(),
            cert,
        })
    }

    /// A CRL (DER) listing `revoked` (serial, revocation time).
    pub fn crl(
        &self,
        this_update: DateTime<Utc>,
        next_update: DateTime<Utc>,
        revoked: &[(u64, DateTime<Utc>)],
    ) -> Result<Vec<u8>> {
        let revoked = revoked
            .iter()
            .map(|(serial, at)| {
                Ok(RevokedCert {
                    serial_number: SerialNumber::from(*serial),
                    revocation_date: x509_time(*at)?,
                    crl_entry_extensions: None,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let tbs = TbsCertList {
            version: Version::V2,
            signature: sha256_rsa(),
            issuer: self.cert.tbs_certificate.subject.clone(),
            this_update: x509_time(this_update)?,
            next_update: Some(x509_time(next_update)?),
            revoked_certificates: if revoked.is_empty() {
                None
            } else {
                Some(revoked)
            },
            crl_extensions: None,
        };
        let signature = sign_pkcs1(&self.key, &tbs.to_der()?)?;
        Ok(CertificateList {
            tbs_cert_list: tbs,
            signature_algorithm: sha256_rsa(),
            signature,
        }
        .to_der()?)
    }
}

/// A synthetic card: a signing certificate and its private key ("DEMO").
#[derive(Clone)]
pub struct DemoCard {
    key: RsaPrivateKey,
    cert: Certificate,
}

/// How to sign.
#[derive(Debug, Clone, Copy)]
pub struct SignOptions {
    /// Leave the content out of the SignedData (the verifier gets it separately).
    pub detached: bool,
    /// PKCS #1 v1.5 (JPKI cards) or PSS.
    pub pss: bool,
    /// The signing-time attribute.
    pub signing_time: DateTime<Utc>,
}

fn signing_time_attribute(t: DateTime<Utc>) -> Result<Attribute> {
    let mut values = SetOfVec::new();
    values.insert(Any::encode_from(&x509_time(t)?)?)?;
    Ok(Attribute {
        oid: oids::ID_SIGNING_TIME,
        values,
    })
}

impl DemoCard {
    /// The card's certificate (DER).
    pub fn cert_der(&self) -> Vec<u8> {
        self.cert.to_der().unwrap_or_default()
    }

    /// The same certificate with another private key (a signature that does
    /// not match its certificate: for tests of a wrong signer).
    pub fn with_key(&self, key: RsaPrivateKey) -> DemoCard {
        DemoCard {
            key,
            cert: self.cert.clone(),
        }
    }

    /// A CMS SignedData (DER ContentInfo) over `content`.
    pub fn sign(&self, content: &[u8], o: SignOptions) -> Result<Vec<u8>> {
        let econtent = if o.detached {
            None
        } else {
            Some(Any::new(Tag::OctetString, content)?)
        };
        let eci = EncapsulatedContentInfo {
            econtent_type: oids::ID_DATA,
            econtent,
        };
        let digest = Sha256::digest(content);
        let sid = SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
            issuer: self.cert.tbs_certificate.issuer.clone(),
            serial_number: self.cert.tbs_certificate.serial_number.clone(),
        });
        let digest_alg = AlgorithmIdentifierOwned {
            oid: oids::SHA256,
            parameters: None,
        };
        let external = if o.detached { Some(&digest[..]) } else { None };
        let builder_err = |e: x509_cert::builder::Error| DemoError::Builder(e.to_string());
        let si: SignerInfo = if o.pss {
            let signer = pss::SigningKey::<Sha256>::new(self.key.clone());
            let mut b = SignerInfoBuilder::new(&signer, sid, digest_alg.clone(), &eci, external)
                .map_err(cms_err)?;
            b.add_signed_attribute(signing_time_attribute(o.signing_time)?)
                .map_err(cms_err)?;
            b.build_with_rng::<pss::Signature>(&mut OsRng)
                .map_err(builder_err)?
        } else {
            let signer = pkcs1v15::SigningKey::<Sha256>::new(self.key.clone());
            let mut b = SignerInfoBuilder::new(&signer, sid, digest_alg.clone(), &eci, external)
                .map_err(cms_err)?;
            b.add_signed_attribute(signing_time_attribute(o.signing_time)?)
                .map_err(cms_err)?;
            b.build::<pkcs1v15::Signature>().map_err(builder_err)?
        };
        let mut digest_algorithms = SetOfVec::new();
        digest_algorithms.insert(digest_alg)?;
        let mut certs = SetOfVec::new();
        certs.insert(CertificateChoices::Certificate(self.cert.clone()))?;
        let mut signers = SetOfVec::new();
        signers.insert(si)?;
        let sd = SignedData {
            version: CmsVersion::V1,
            digest_algorithms,
            encap_content_info: eci,
            certificates: Some(CertificateSet(certs)),
            crls: None,
            signer_infos: SignerInfos(signers),
        };
        Ok(ContentInfo {
            content_type: oids::ID_SIGNED_DATA,
            content: Any::encode_from(&sd)?,
        }
        .to_der()?)
    }

    /// Signs a filing's canonical form, detached, PKCS #1 v1.5 (as a
    /// JPKI card does).
    pub fn sign_filing(
        &self,
        payload: &FilingPayload,
        signing_time: DateTime<Utc>,
    ) -> Result<Vec<u8>> {
        let content = payload.canonical_bytes()?;
        self.sign(
            &content,
            SignOptions {
                detached: true,
                pss: false,
                signing_time,
            },
        )
    }

    /// The scheme [`Self::sign_filing`] uses.
    pub fn scheme(&self) -> SignatureScheme {
        SignatureScheme::RsaPkcs1v15Sha256
    }
}
