//! Verification of a signed filing: CMS SignedData (RFC 5652) → signer's
//! certificate → trust anchor → validity → profile → CRL.

use chrono::{DateTime, Duration, Utc};
use cms::cert::CertificateChoices;
use cms::content_info::ContentInfo;
use cms::signed_data::{SignedData, SignerIdentifier};
use const_oid::ObjectIdentifier;
use der::{Decode, Encode, Tagged};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use x509_cert::Certificate;
use x509_cert::time::Time;

use crate::alg::{self, SignatureScheme};
use crate::canonical::FilingPayload;
use crate::cert::{self, Anchor, CertificateInfo, CrlInfo, LoadedCrl};
use crate::error::{DerPart, SignError};
use crate::oids;

/// Input larger than this is refused before parsing (a filing's signature
/// with its certificate is a few kilobytes; encapsulated content adds the
/// filing, whose attachments travel separately).
pub const MAX_CMS_BYTES: usize = 1 << 20;

/// A filing whose signature, certificate and revocation status were checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifiedFiling {
    /// The signed content (the canonical form of the filing).
    pub content: Vec<u8>,
    /// The signer's certificate: the basic four items, serial, issuer, validity.
    pub certificate: CertificateInfo,
    /// The signing-time attribute.
    pub signing_time: DateTime<Utc>,
    /// How the signature value was made.
    pub scheme: SignatureScheme,
    /// The verification time used.
    pub verified_at: DateTime<Utc>,
}

/// Checks signed filings against configured trust anchors and their CRLs.
///
/// Build it once (anchors, CRLs) and share it: `verify` takes `&self` and
/// the type is `Send + Sync`.
pub struct Verifier {
    anchors: Vec<Anchor>,
    crls: Vec<Option<LoadedCrl>>,
    policy: ObjectIdentifier,
    clock_skew: Duration,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("anchors", &self.anchors.len())
            .field("policy", &self.policy)
            .finish()
    }
}

impl Verifier {
    /// A verifier trusting these CA certificates (DER), requiring the JPKI
    /// signing-certificate policy.
    pub fn new<B: AsRef<[u8]>>(anchors: &[B]) -> Result<Verifier, SignError> {
        let anchors = anchors
            .iter()
            .map(|a| Anchor::from_der(a.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        let crls = anchors.iter().map(|_| None).collect();
        Ok(Verifier {
            anchors,
            crls,
            policy: oids::JPKI_SIGNING_POLICY,
            clock_skew: Duration::minutes(5),
        })
    }

    /// Requires another certificate policy instead of the JPKI signing policy.
    pub fn with_policy(mut self, policy: ObjectIdentifier) -> Verifier {
        self.policy = policy;
        self
    }

    /// How far in the future a signing time may lie (clock skew); 5 minutes by default.
    pub fn with_clock_skew(mut self, skew: Duration) -> Verifier {
        self.clock_skew = skew;
        self
    }

    /// Loads a CRL (DER) after checking its signature against the anchors. A
    /// CRL older (by thisUpdate) than the one already loaded for the same
    /// anchor is ignored, so loading out of order never rolls back.
    pub fn add_crl(&mut self, der: &[u8]) -> Result<CrlInfo, SignError> {
        let (i, crl, info) = cert::load_crl(der, &self.anchors)?;
        let newer = match &self.crls[i] {
            Some(old) => crl.this_update >= old.this_update,
            None => true,
        };
        if newer {
            self.crls[i] = Some(crl);
        }
        Ok(info)
    }

    /// Verifies a signed filing against its payload: the signed content must
    /// be exactly the payload's canonical form (detached or encapsulated).
    pub fn verify_filing(
        &self,
        cms_der: &[u8],
        payload: &FilingPayload,
        now: DateTime<Utc>,
    ) -> Result<VerifiedFiling, SignError> {
        let canonical = payload.canonical_bytes()?;
        let v = self.verify(cms_der, Some(&canonical), now)?;
        Ok(v)
    }

    /// Verifies a CMS SignedData (DER ContentInfo). `detached`: the content
    /// when the SignedData does not carry it; when both are present they
    /// must be equal.
    pub fn verify(
        &self,
        cms_der: &[u8],
        detached: Option<&[u8]>,
        now: DateTime<Utc>,
    ) -> Result<VerifiedFiling, SignError> {
        if cms_der.len() > MAX_CMS_BYTES {
            return Err(SignError::der(DerPart::Cms, "too large"));
        }
        let ci = ContentInfo::from_der(cms_der).map_err(|e| SignError::der(DerPart::Cms, e))?;
        if ci.content_type != oids::ID_SIGNED_DATA {
            return Err(SignError::structure("not SignedData"));
        }
        let sd: SignedData = ci
            .content
            .decode_as()
            .map_err(|e| SignError::der(DerPart::Cms, e))?;

        // The shape of a signed filing: one signer, id-data, SHA-256.
        let mut signers = sd.signer_infos.0.iter();
        let si = match (signers.next(), signers.next()) {
            (Some(si), None) => si,
            _ => return Err(SignError::structure("exactly one signer expected")),
        };
        if sd.encap_content_info.econtent_type != oids::ID_DATA {
            return Err(SignError::structure("content type is not id-data"));
        }
        alg::check_sha256(&si.digest_alg)?;
        let scheme = alg::scheme(&si.signature_algorithm, true)?;

        // The content: encapsulated (an OCTET STRING) or detached.
        let content: Vec<u8> = match (&sd.encap_content_info.econtent, detached) {
            (Some(any), d) => {
                if any.tag() != der::Tag::OctetString {
                    return Err(SignError::der(
                        DerPart::Cms,
                        "eContent is not an OCTET STRING",
                    ));
                }
                let c = any.value();
                if let Some(d) = d
                    && d != c
                {
                    return Err(SignError::TamperedContent);
                }
                c.to_vec()
            }
            (None, Some(d)) => d.to_vec(),
            (None, None) => return Err(SignError::structure("no content and none given")),
        };

        // The signer's certificate, from the message.
        let cert = find_signer(&sd, &si.sid)?;
        let key = alg::rsa_key(&cert.tbs_certificate.subject_public_key_info)?;

        // Signed attributes (RFC 5652 §5.3, §11): required here.
        let attrs = si
            .signed_attrs
            .as_ref()
            .ok_or_else(|| SignError::structure("signed attributes missing"))?;
        let mut content_type = None;
        let mut digest = None;
        let mut signing_time = None;
        for a in attrs.iter() {
            let slot = if a.oid == oids::ID_CONTENT_TYPE {
                &mut content_type
            } else if a.oid == oids::ID_MESSAGE_DIGEST {
                &mut digest
            } else if a.oid == oids::ID_SIGNING_TIME {
                &mut signing_time
            } else {
                continue;
            };
            if slot.is_some() || a.values.len() != 1 {
                return Err(SignError::structure(format!(
                    "attribute {} repeated",
                    a.oid
                )));
            }
            *slot = a.values.iter().next().cloned();
        }
        let content_type =
            content_type.ok_or_else(|| SignError::structure("content-type attribute missing"))?;
        let ct = content_type
            .decode_as::<ObjectIdentifier>()
            .map_err(|e| SignError::der(DerPart::Cms, e))?;
        if ct != sd.encap_content_info.econtent_type {
            return Err(SignError::structure(
                "content-type attribute differs from eContentType",
            ));
        }
        let digest =
            digest.ok_or_else(|| SignError::structure("message-digest attribute missing"))?;
        let digest = digest
            .decode_as::<der::asn1::OctetString>()
            .map_err(|e| SignError::der(DerPart::Cms, e))?;
        let signing_time = signing_time
            .ok_or_else(|| SignError::structure("signing-time attribute missing"))?
            .to_der()
            .and_then(|d| Time::from_der(&d))
            .map_err(|e| SignError::der(DerPart::Cms, e))?;
        let signing_time = cert::time(&signing_time);

        if digest.as_bytes() != &Sha256::digest(&content)[..] {
            return Err(SignError::TamperedContent);
        }
        // The signature is over the DER of the signed attributes as a SET OF.
        let signed = attrs
            .to_der()
            .map_err(|e| SignError::der(DerPart::Cms, e))?;
        if !alg::verify(&key, scheme, &signed, si.signature.as_bytes()) {
            return Err(SignError::WrongSigner);
        }

        let info = self.check_parsed_certificate(&cert, now)?;
        if signing_time > now + self.clock_skew {
            return Err(SignError::SigningTimeInFuture { signing_time });
        }
        Ok(VerifiedFiling {
            content,
            certificate: info,
            signing_time,
            scheme,
            verified_at: now,
        })
    }

    /// Checks a signing certificate (DER) on its own: anchor, validity,
    /// profile, revocation.
    pub fn check_certificate(
        &self,
        cert_der: &[u8],
        now: DateTime<Utc>,
    ) -> Result<CertificateInfo, SignError> {
        let cert =
            Certificate::from_der(cert_der).map_err(|e| SignError::der(DerPart::Certificate, e))?;
        alg::rsa_key(&cert.tbs_certificate.subject_public_key_info)?;
        self.check_parsed_certificate(&cert, now)
    }

    fn check_parsed_certificate(
        &self,
        cert: &Certificate,
        now: DateTime<Utc>,
    ) -> Result<CertificateInfo, SignError> {
        let tbs = &cert.tbs_certificate;
        if cert.signature_algorithm != tbs.signature {
            return Err(SignError::der(
                DerPart::Certificate,
                "signature algorithms differ",
            ));
        }
        // Chain: the issuer must be a configured anchor whose key verifies
        // the certificate's signature (JPKI: the signing CA issues cards
        // directly, so the path is anchor → card).
        let issuer_der = tbs
            .issuer
            .to_der()
            .map_err(|e| SignError::der(DerPart::Certificate, e))?;
        let tbs_der = tbs
            .to_der()
            .map_err(|e| SignError::der(DerPart::Certificate, e))?;
        let sig = cert
            .signature
            .as_bytes()
            .ok_or_else(|| SignError::der(DerPart::Certificate, "signature has unused bits"))?;
        let mut anchor = None;
        for (i, a) in self.anchors.iter().enumerate() {
            if a.subject_der == issuer_der && a.signed(&cert.signature_algorithm, &tbs_der, sig)? {
                anchor = Some(i);
                break;
            }
        }
        let anchor = anchor.ok_or(SignError::UnknownTrustAnchor)?;

        // Validity of the certificate, and of the anchor itself.
        for v in [
            &tbs.validity,
            &self.anchors[anchor].cert.tbs_certificate.validity,
        ] {
            let not_before = cert::time(&v.not_before);
            let not_after = cert::time(&v.not_after);
            if now < not_before {
                return Err(SignError::NotYetValid { not_before });
            }
            if now > not_after {
                return Err(SignError::Expired { not_after });
            }
        }

        let basic_four = cert::profile_checks(cert, &self.policy)?;

        // Revocation.
        let crl = self.crls[anchor].as_ref().ok_or(SignError::NoCrl)?;
        if now < crl.this_update || crl.next_update.is_none_or(|n| now > n) {
            return Err(SignError::StaleCrl {
                next_update: crl.next_update,
            });
        }
        if let Some(at) = crl.revoked.get(tbs.serial_number.as_bytes()) {
            return Err(SignError::Revoked { revoked_at: *at });
        }
        let _ = &self.anchors[anchor].ski;
        cert::info(cert, basic_four)
    }
}

fn find_signer(sd: &SignedData, sid: &SignerIdentifier) -> Result<Certificate, SignError> {
    for c in sd.certificates.iter().flat_map(|s| s.0.iter()) {
        let CertificateChoices::Certificate(cert) = c else {
            continue;
        };
        let tbs = &cert.tbs_certificate;
        let matches = match sid {
            SignerIdentifier::IssuerAndSerialNumber(ias) => {
                ias.issuer == tbs.issuer && ias.serial_number == tbs.serial_number
            }
            SignerIdentifier::SubjectKeyIdentifier(ski) => tbs
                .extensions
                .iter()
                .flatten()
                .filter(|e| e.extn_id == oids::EXT_SUBJECT_KEY_ID)
                .any(|e| {
                    x509_cert::ext::pkix::SubjectKeyIdentifier::from_der(e.extn_value.as_bytes())
                        .is_ok_and(|k| k.0 == ski.0)
                }),
        };
        if matches {
            return Ok(cert.clone());
        }
    }
    // The message does not carry the certificate it names.
    Err(SignError::WrongSigner)
}
