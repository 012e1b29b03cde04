//! Certificates: trust anchors, the signer's JPKI-shaped certificate (policy,
//! key usage, the basic four items in subjectAltName) and CRLs.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use der::asn1::{PrintableStringRef, Utf8StringRef};
use der::{Decode, Encode, Tagged};
use rsa::RsaPublicKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use x509_cert::Certificate;
use x509_cert::crl::CertificateList;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{
    BasicConstraints, CertificatePolicies, KeyUsage, SubjectAltName, SubjectKeyIdentifier,
};
use x509_cert::time::Time;

use crate::alg;
use crate::error::{CertItem, DerPart, SignError};
use crate::oids;

pub(crate) fn time(t: &Time) -> DateTime<Utc> {
    let d = t.to_unix_duration();
    DateTime::<Utc>::from_timestamp(d.as_secs() as i64, 0).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02X}");
    }
    s
}

/// 性別 as the certificate states it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sex {
    /// `1`: 男.
    Male,
    /// `2`: 女.
    Female,
    /// Any other value, kept as written (shown to the clerk, never guessed).
    Other(String),
}

impl Sex {
    fn parse(raw: &str) -> Sex {
        match raw {
            "1" => Sex::Male,
            "2" => Sex::Female,
            other => Sex::Other(other.to_string()),
        }
    }
    /// Japanese label for a page.
    pub fn label_ja(&self) -> &str {
        match self {
            Sex::Male => "男",
            Sex::Female => "女",
            Sex::Other(_) => "その他・不明",
        }
    }
}

/// 生年月日 as the certificate states it: `EYYYYMMDD`, an era digit
/// (1 明治, 2 大正, 3 昭和, 4 平成, 5 令和) then the Gregorian date.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BirthDate {
    /// The value as written in the certificate.
    pub raw: String,
    /// The era digit, when present.
    pub era_code: Option<u8>,
    /// The Gregorian date, `None` when the certificate states a partial
    /// date (unknown month or day, as for some foreign residents).
    pub date: Option<NaiveDate>,
}

impl BirthDate {
    fn parse(raw: &str) -> Option<BirthDate> {
        if !raw.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let (era_code, ymd) = match raw.len() {
            9 => (Some(raw.as_bytes()[0] - b'0'), &raw[1..]),
            8 => (None, raw),
            _ => return None,
        };
        let date = NaiveDate::parse_from_str(ymd, "%Y%m%d").ok();
        Some(BirthDate {
            raw: raw.to_string(),
            era_code,
            date,
        })
    }
}

/// 基本4情報 of a JPKI-shaped signing certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BasicFour {
    /// 氏名, exactly as in the certificate (never normalised).
    pub name: String,
    /// 生年月日.
    pub date_of_birth: BirthDate,
    /// 性別.
    pub sex: Sex,
    /// 住所, exactly as in the certificate.
    pub address: String,
    /// 氏名の代替文字の使用位置情報, when present.
    pub name_substitute: Option<String>,
    /// 住所の代替文字の使用位置情報, when present.
    pub address_substitute: Option<String>,
}

/// What a verified signing certificate says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateInfo {
    /// The basic four items from subjectAltName.
    pub basic_four: BasicFour,
    /// Serial number, upper-case hex of the DER integer's content.
    pub serial_hex: String,
    /// Issuer distinguished name (RFC 4514).
    pub issuer: String,
    /// Subject distinguished name (RFC 4514).
    pub subject: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    /// SHA-256 of the certificate's DER, upper-case hex.
    pub sha256_fingerprint: String,
}

/// A configured trust anchor (the JPKI-like signing CA).
pub(crate) struct Anchor {
    pub cert: Certificate,
    pub subject_der: Vec<u8>,
    pub key: RsaPublicKey,
    pub ski: Option<Vec<u8>>,
}

impl Anchor {
    pub fn from_der(der: &[u8]) -> Result<Anchor, SignError> {
        let cert =
            Certificate::from_der(der).map_err(|e| SignError::der(DerPart::Certificate, e))?;
        let key = alg::rsa_key(&cert.tbs_certificate.subject_public_key_info)?;
        let subject_der = cert
            .tbs_certificate
            .subject
            .to_der()
            .map_err(|e| SignError::der(DerPart::Certificate, e))?;
        let mut ski = None;
        for ext in cert.tbs_certificate.extensions.iter().flatten() {
            if ext.extn_id == oids::EXT_SUBJECT_KEY_ID {
                let v = SubjectKeyIdentifier::from_der(ext.extn_value.as_bytes())
                    .map_err(|e| SignError::der(DerPart::Certificate, e))?;
                ski = Some(v.0.as_bytes().to_vec());
            }
        }
        Ok(Anchor {
            cert,
            subject_der,
            key,
            ski,
        })
    }

    /// Verifies that `tbs_der` / `sig` was signed by this anchor.
    pub fn signed(
        &self,
        alg_id: &spki::AlgorithmIdentifierOwned,
        tbs_der: &[u8],
        sig: &[u8],
    ) -> Result<bool, SignError> {
        let scheme = alg::scheme(alg_id, false)?;
        Ok(alg::verify(&self.key, scheme, tbs_der, sig))
    }
}

/// A CRL whose signature has been checked against its anchor.
pub(crate) struct LoadedCrl {
    pub this_update: DateTime<Utc>,
    pub next_update: Option<DateTime<Utc>>,
    pub revoked: HashMap<Vec<u8>, DateTime<Utc>>,
}

/// What a loaded CRL says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrlInfo {
    pub issuer: String,
    pub this_update: DateTime<Utc>,
    pub next_update: Option<DateTime<Utc>>,
    pub revoked_count: usize,
}

/// Parses a CRL and finds the anchor that signed it.
pub(crate) fn load_crl(
    der: &[u8],
    anchors: &[Anchor],
) -> Result<(usize, LoadedCrl, CrlInfo), SignError> {
    let crl = CertificateList::from_der(der).map_err(|e| SignError::der(DerPart::Crl, e))?;
    if crl.signature_algorithm != crl.tbs_cert_list.signature {
        return Err(SignError::der(DerPart::Crl, "signature algorithms differ"));
    }
    let tbs = crl
        .tbs_cert_list
        .to_der()
        .map_err(|e| SignError::der(DerPart::Crl, e))?;
    let issuer_der = crl
        .tbs_cert_list
        .issuer
        .to_der()
        .map_err(|e| SignError::der(DerPart::Crl, e))?;
    let sig = crl
        .signature
        .as_bytes()
        .ok_or_else(|| SignError::der(DerPart::Crl, "signature has unused bits"))?;
    let mut found = None;
    for (i, a) in anchors.iter().enumerate() {
        if a.subject_der == issuer_der && a.signed(&crl.signature_algorithm, &tbs, sig)? {
            found = Some(i);
            break;
        }
    }
    let index = found.ok_or(SignError::UntrustedCrl)?;
    for ext in crl.tbs_cert_list.crl_extensions.iter().flatten() {
        // RFC 5280 §5.2: a CRL with an unknown critical extension is not usable.
        if ext.critical
            && ext.extn_id != oids::EXT_CRL_NUMBER
            && ext.extn_id != oids::EXT_AUTHORITY_KEY_ID
        {
            return Err(SignError::UnsupportedCriticalExtension {
                oid: ext.extn_id.to_string(),
            });
        }
    }
    let mut revoked = HashMap::new();
    for r in crl.tbs_cert_list.revoked_certificates.iter().flatten() {
        revoked.insert(
            r.serial_number.as_bytes().to_vec(),
            time(&r.revocation_date),
        );
    }
    let loaded = LoadedCrl {
        this_update: time(&crl.tbs_cert_list.this_update),
        next_update: crl.tbs_cert_list.next_update.as_ref().map(time),
        revoked,
    };
    let info = CrlInfo {
        issuer: crl.tbs_cert_list.issuer.to_string(),
        this_update: loaded.this_update,
        next_update: loaded.next_update,
        revoked_count: loaded.revoked.len(),
    };
    Ok((index, loaded, info))
}

fn read_string(v: &der::Any) -> Option<String> {
    match v.tag() {
        der::Tag::Utf8String => Utf8StringRef::try_from(v)
            .ok()
            .map(|s| s.as_str().to_string()),
        der::Tag::PrintableString => PrintableStringRef::try_from(v)
            .ok()
            .map(|s| s.as_str().to_string()),
        _ => None,
    }
}

/// Reads the basic four items from the subjectAltName extension value.
pub(crate) fn basic_four(san_der: &[u8]) -> Result<BasicFour, SignError> {
    let san =
        SubjectAltName::from_der(san_der).map_err(|e| SignError::der(DerPart::Certificate, e))?;
    let mut slots: [Option<String>; 6] = Default::default();
    let wanted = [
        (oids::JPKI_NAME, CertItem::Name),
        (oids::JPKI_NAME_SUBSTITUTE, CertItem::NameSubstitute),
        (oids::JPKI_SEX, CertItem::Sex),
        (oids::JPKI_DATE_OF_BIRTH, CertItem::DateOfBirth),
        (oids::JPKI_ADDRESS, CertItem::Address),
        (oids::JPKI_ADDRESS_SUBSTITUTE, CertItem::AddressSubstitute),
    ];
    for gn in &san.0 {
        let GeneralName::OtherName(on) = gn else {
            continue;
        };
        let Some(i) = wanted.iter().position(|(oid, _)| *oid == on.type_id) else {
            continue;
        };
        let item = wanted[i].1;
        if slots[i].is_some() {
            return Err(SignError::BasicFourItems { item });
        }
        let s = read_string(&on.value).ok_or(SignError::BasicFourItems { item })?;
        slots[i] = Some(s);
    }
    let [name, name_sub, sex, dob, address, address_sub] = slots;
    let required = |v: Option<String>, item: CertItem| {
        v.filter(|s| !s.trim().is_empty())
            .ok_or(SignError::BasicFourItems { item })
    };
    let name = required(name, CertItem::Name)?;
    let sex = Sex::parse(&required(sex, CertItem::Sex)?);
    let date_of_birth = BirthDate::parse(&required(dob, CertItem::DateOfBirth)?).ok_or(
        SignError::BasicFourItems {
            item: CertItem::DateOfBirth,
        },
    )?;
    let address = required(address, CertItem::Address)?;
    Ok(BasicFour {
        name,
        date_of_birth,
        sex,
        address,
        name_substitute: name_sub,
        address_substitute: address_sub,
    })
}

/// The checks on the signer's certificate that need no trust anchor:
/// critical extensions, key usage, not a CA, the policy, the basic four items.
pub(crate) fn profile_checks(
    cert: &Certificate,
    policy: &const_oid::ObjectIdentifier,
) -> Result<BasicFour, SignError> {
    let mut key_usage_ok = false;
    let mut policy_ok = false;
    let mut san = None;
    let mut seen: Vec<&const_oid::ObjectIdentifier> = Vec::new();
    for ext in cert.tbs_certificate.extensions.iter().flatten() {
        if seen.contains(&&ext.extn_id) {
            // RFC 5280 §4.2: a certificate MUST NOT include an extension twice.
            return Err(SignError::der(DerPart::Certificate, "extension repeated"));
        }
        seen.push(&ext.extn_id);
        let v = ext.extn_value.as_bytes();
        let bad = |e: der::Error| SignError::der(DerPart::Certificate, e);
        match ext.extn_id {
            id if id == oids::EXT_KEY_USAGE => {
                let ku = KeyUsage::from_der(v).map_err(bad)?;
                key_usage_ok = ku.digital_signature() && ku.non_repudiation();
            }
            id if id == oids::EXT_BASIC_CONSTRAINTS => {
                if BasicConstraints::from_der(v).map_err(bad)?.ca {
                    return Err(SignError::WrongKeyUsage);
                }
            }
            id if id == oids::EXT_CERTIFICATE_POLICIES => {
                let cp = CertificatePolicies::from_der(v).map_err(bad)?;
                policy_ok = cp.0.iter().any(|p| p.policy_identifier == *policy);
            }
            id if id == oids::EXT_SUBJECT_ALT_NAME => san = Some(v),
            id if [
                oids::EXT_SUBJECT_KEY_ID,
                oids::EXT_AUTHORITY_KEY_ID,
                oids::EXT_ISSUER_ALT_NAME,
                oids::EXT_CRL_DISTRIBUTION_POINTS,
                oids::EXT_AUTHORITY_INFO_ACCESS,
                oids::EXT_EXT_KEY_USAGE,
            ]
            .contains(&id) => {}
            other => {
                if ext.critical {
                    return Err(SignError::UnsupportedCriticalExtension {
                        oid: other.to_string(),
                    });
                }
            }
        }
    }
    if !key_usage_ok {
        return Err(SignError::WrongKeyUsage);
    }
    if !policy_ok {
        return Err(SignError::WrongPolicy);
    }
    basic_four(san.ok_or(SignError::BasicFourItems {
        item: CertItem::SubjectAltName,
    })?)
}

/// The public description of a certificate once its items are read.
pub(crate) fn info(
    cert: &Certificate,
    basic_four: BasicFour,
) -> Result<CertificateInfo, SignError> {
    let der = cert
        .to_der()
        .map_err(|e| SignError::der(DerPart::Certificate, e))?;
    let tbs = &cert.tbs_certificate;
    Ok(CertificateInfo {
        basic_four,
        serial_hex: hex(tbs.serial_number.as_bytes()),
        issuer: tbs.issuer.to_string(),
        subject: tbs.subject.to_string(),
        not_before: time(&tbs.validity.not_before),
        not_after: time(&tbs.validity.not_after),
        sha256_fingerprint: hex(&Sha256::digest(&der)),
    })
}

/// Reads a PEM `CERTIFICATE` or `X509 CRL` block (as configuration files
/// hold them) into DER.
pub fn pem_to_der(pem: &str) -> Result<Vec<u8>, SignError> {
    let (label, der) = der::pem::decode_vec(pem.trim().as_bytes())
        .map_err(|e| SignError::der(DerPart::Certificate, e))?;
    match label {
        "CERTIFICATE" => Ok(der),
        "X509 CRL" => Ok(der),
        other => Err(SignError::der(
            DerPart::Certificate,
            format!("PEM label {other} is neither CERTIFICATE nor X509 CRL"),
        )),
    }
}

/// Reads one PEM block of any label: (label, DER). For a signature file
/// (`PKCS7`, `CMS`) whose label the caller checks.
pub fn pem_block(pem: &str) -> Result<(String, Vec<u8>), SignError> {
    let (label, der) =
        der::pem::decode_vec(pem.trim().as_bytes()).map_err(|e| SignError::der(DerPart::Cms, e))?;
    Ok((label.to_owned(), der))
}

/// Writes DER as a PEM block with the given label (`CERTIFICATE`, `X509 CRL`).
pub fn der_to_pem(label: &str, der: &[u8]) -> String {
    der::pem::encode_string(label, der::pem::LineEnding::LF, der).unwrap_or_default()
}
