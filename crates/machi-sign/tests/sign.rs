//! machi-sign end to end: a synthetic JPKI-like CA issues cards to synthetic
//! people, cards sign filings, the verifier accepts the good ones and refuses
//! each kind of bad one with its typed error; no input makes a parser panic.

use std::sync::OnceLock;

use chrono::{DateTime, Duration, TimeZone, Utc};
use der::{Decode, Encode};
use machi_domain::error::Localized;
use machi_sign::demo::{CardSpec, DemoCa, DemoCard, SignOptions, generate_key};
use machi_sign::{
    CertItem, DerPart, FilingPayload, Sex, SignError, SignatureScheme, Verifier, oids,
};
use proptest::prelude::*;
use rsa::RsaPrivateKey;
use serde_json::json;

struct Keys {
    ca: RsaPrivateKey,
    card: RsaPrivateKey,
    other: RsaPrivateKey,
    rogue: RsaPrivateKey,
}

fn keys() -> &'static Keys {
    static K: OnceLock<Keys> = OnceLock::new();
    K.get_or_init(|| Keys {
        ca: generate_key().unwrap(),
        card: generate_key().unwrap(),
        other: generate_key().unwrap(),
        rogue: generate_key().unwrap(),
    })
}

fn t(y: i32, m: u32, d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap()
}

/// The verification time of these tests.
fn now() -> DateTime<Utc> {
    t(2027, 1, 15)
}

fn ca() -> &'static DemoCa {
    static CA: OnceLock<DemoCa> = OnceLock::new();
    CA.get_or_init(|| DemoCa::new(keys().ca.clone(), "Test", t(2025, 1, 1), t(2035, 1, 1)).unwrap())
}

fn spec(serial: u64) -> CardSpec {
    CardSpec::new(
        serial,
        "架空 太郎",
        "1",
        "419900102",
        "東京都府中市宮西町二丁目24番地",
        t(2026, 1, 1),
    )
}

fn card(s: &CardSpec) -> DemoCard {
    ca().issue(s, &keys().card).unwrap()
}

fn taro() -> &'static DemoCard {
    static C: OnceLock<DemoCard> = OnceLock::new();
    C.get_or_init(|| card(&spec(1001)))
}

fn verifier_with_crl(revoked: &[(u64, DateTime<Utc>)]) -> Verifier {
    let mut v = Verifier::new(&[ca().cert_der()]).unwrap();
    v.add_crl(&ca().crl(t(2027, 1, 14), t(2027, 1, 16), revoked).unwrap())
        .unwrap();
    v
}

fn verifier() -> &'static Verifier {
    static V: OnceLock<Verifier> = OnceLock::new();
    V.get_or_init(|| verifier_with_crl(&[(9999, t(2026, 6, 1))]))
}

fn payload() -> FilingPayload {
    FilingPayload {
        tenant: "132063".into(),
        procedure_id: "tenshutsu".into(),
        procedure_version: 1,
        nonce: "3q2+7w-nonce".into(),
        fields: json!({
            "planned_date": "2027-02-01",
            "destination": {"postal_code": "1960015", "address": "東京都昭島市昭和町"},
            "members": ["架空 太郎", "架空 花子"],
            "count": 2
        }),
    }
}

fn opts(detached: bool, pss: bool) -> SignOptions {
    SignOptions {
        detached,
        pss,
        signing_time: now() - Duration::minutes(3),
    }
}

/// A filing signed with card 9999, which the CRL lists.
fn revoked_signed() -> &'static Vec<u8> {
    static S: OnceLock<Vec<u8>> = OnceLock::new();
    S.get_or_init(|| card(&spec(9999)).sign_filing(&payload(), now()).unwrap())
}

fn signed() -> &'static Vec<u8> {
    static S: OnceLock<Vec<u8>> = OnceLock::new();
    S.get_or_init(|| {
        taro()
            .sign_filing(&payload(), now() - Duration::minutes(3))
            .unwrap()
    })
}

#[test]
fn a_good_detached_filing_verifies_with_its_basic_four_items() {
    let v = verifier()
        .verify_filing(signed(), &payload(), now())
        .unwrap();
    let b = &v.certificate.basic_four;
    assert_eq!(b.name, "架空 太郎");
    assert_eq!(b.sex, Sex::Male);
    assert_eq!(b.date_of_birth.raw, "419900102");
    assert_eq!(b.date_of_birth.era_code, Some(4));
    assert_eq!(
        b.date_of_birth.date,
        chrono::NaiveDate::from_ymd_opt(1990, 1, 2)
    );
    assert_eq!(b.address, "東京都府中市宮西町二丁目24番地");
    assert_eq!(v.certificate.serial_hex, "03E9");
    assert!(
        v.certificate.issuer.contains("DEMO"),
        "{}",
        v.certificate.issuer
    );
    assert_eq!(v.certificate.not_before, t(2026, 1, 1));
    assert_eq!(v.scheme, SignatureScheme::RsaPkcs1v15Sha256);
    assert_eq!(v.signing_time, now() - Duration::minutes(3));
    assert_eq!(v.content, payload().canonical_bytes().unwrap());
}

#[test]
fn encapsulated_and_pss_filings_verify() {
    let content = payload().canonical_bytes().unwrap();
    for (detached, pss) in [(false, false), (false, true), (true, true)] {
        let der = taro().sign(&content, opts(detached, pss)).unwrap();
        let v = verifier().verify_filing(&der, &payload(), now()).unwrap();
        assert_eq!(v.content, content);
        if pss {
            assert_eq!(v.scheme, SignatureScheme::RsaPssSha256 { salt_len: 32 });
        }
        if !detached {
            // The content travels inside: no need to pass it.
            let v = verifier().verify(&der, None, now()).unwrap();
            assert_eq!(v.content, content);
        }
    }
}

#[test]
fn a_changed_answer_is_tampered_content() {
    let mut p = payload();
    p.fields["destination"]["address"] = json!("東京都昭島市つつじが丘");
    assert_eq!(
        verifier().verify_filing(signed(), &p, now()),
        Err(SignError::TamperedContent)
    );
    let mut p = payload();
    p.nonce = "another".into();
    assert_eq!(
        verifier().verify_filing(signed(), &p, now()),
        Err(SignError::TamperedContent)
    );
    // Encapsulated content altered in transit.
    let content = payload().canonical_bytes().unwrap();
    let mut der = taro().sign(&content, opts(false, false)).unwrap();
    let at = find(&der, "昭島市".as_bytes()).unwrap();
    der[at] ^= 0x01;
    assert_eq!(
        verifier().verify(&der, None, now()),
        Err(SignError::TamperedContent)
    );
    // Encapsulated content and a different filing passed beside it.
    let der = taro().sign(&content, opts(false, false)).unwrap();
    assert_eq!(
        verifier().verify(&der, Some(b"{}"), now()),
        Err(SignError::TamperedContent)
    );
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[test]
fn a_signature_by_another_key_is_a_wrong_signer() {
    let forged = taro().with_key(keys().other.clone());
    let der = forged.sign_filing(&payload(), now()).unwrap();
    assert_eq!(
        verifier().verify_filing(&der, &payload(), now()),
        Err(SignError::WrongSigner)
    );
}

#[test]
fn a_card_from_another_ca_is_an_unknown_trust_anchor() {
    // A CA with the very same name but another key, and one with another name.
    for label in ["Test", "Rogue"] {
        let rogue = DemoCa::new(keys().rogue.clone(), label, t(2025, 1, 1), t(2035, 1, 1)).unwrap();
        let c = rogue.issue(&spec(1001), &keys().card).unwrap();
        let der = c.sign_filing(&payload(), now()).unwrap();
        assert_eq!(
            verifier().verify_filing(&der, &payload(), now()),
            Err(SignError::UnknownTrustAnchor),
            "{label}"
        );
        // Its CRL is refused too.
        let mut v = Verifier::new(&[ca().cert_der()]).unwrap();
        let crl = rogue.crl(t(2027, 1, 14), t(2027, 1, 16), &[]).unwrap();
        assert_eq!(v.add_crl(&crl), Err(SignError::UntrustedCrl));
    }
}

#[test]
fn validity_period_is_checked() {
    let late = t(2031, 6, 1);
    let mut v = Verifier::new(&[ca().cert_der()]).unwrap();
    v.add_crl(
        &ca()
            .crl(late - Duration::days(1), late + Duration::days(1), &[])
            .unwrap(),
    )
    .unwrap();
    let der = taro().sign_filing(&payload(), late).unwrap();
    assert!(matches!(
        v.verify_filing(&der, &payload(), late),
        Err(SignError::Expired { not_after }) if not_after == t(2026, 1, 1) + Duration::days(5 * 365)
    ));
    let early = t(2025, 6, 1);
    let mut v = Verifier::new(&[ca().cert_der()]).unwrap();
    v.add_crl(
        &ca()
            .crl(early - Duration::days(1), early + Duration::days(1), &[])
            .unwrap(),
    )
    .unwrap();
    let der = taro().sign_filing(&payload(), early).unwrap();
    assert!(matches!(
        v.verify_filing(&der, &payload(), early),
        Err(SignError::NotYetValid { not_before }) if not_before == t(2026, 1, 1)
    ));
}

#[test]
fn revocation_is_checked_against_a_fresh_crl() {
    let v = verifier_with_crl(&[(1001, t(2027, 1, 10))]);
    assert_eq!(
        v.verify_filing(signed(), &payload(), now()),
        Err(SignError::Revoked {
            revoked_at: t(2027, 1, 10)
        })
    );
    // Stale: past nextUpdate.
    assert!(matches!(
        verifier().verify_filing(signed(), &payload(), t(2027, 1, 17)),
        Err(SignError::StaleCrl { .. })
    ));
    // No CRL loaded at all.
    let bare = Verifier::new(&[ca().cert_der()]).unwrap();
    assert_eq!(
        bare.verify_filing(signed(), &payload(), now()),
        Err(SignError::NoCrl)
    );
    // An older CRL loaded after a newer one does not roll the list back.
    let mut v = verifier_with_crl(&[(1001, t(2027, 1, 10))]);
    v.add_crl(&ca().crl(t(2027, 1, 1), t(2027, 1, 20), &[]).unwrap())
        .unwrap();
    assert!(matches!(
        v.verify_filing(signed(), &payload(), now()),
        Err(SignError::Revoked { .. })
    ));
}

#[test]
fn the_certificate_profile_is_checked() {
    let check = |s: CardSpec| {
        let c = card(&s);
        let der = c.sign_filing(&payload(), now()).unwrap();
        let r = verifier().verify_filing(&der, &payload(), now());
        // The same verdict on the certificate alone.
        assert_eq!(
            r.as_ref()
                .map(|v| v.certificate.clone())
                .map_err(Clone::clone),
            verifier().check_certificate(&c.cert_der(), now())
        );
        r
    };
    let mut s = spec(1002);
    s.policy = oids::JPKI_AUTH_POLICY;
    assert_eq!(check(s), Err(SignError::WrongPolicy));
    let mut s = spec(1003);
    s.non_repudiation = false;
    assert_eq!(check(s), Err(SignError::WrongKeyUsage));
    let mut s = spec(1004);
    s.omit_address = true;
    assert_eq!(
        check(s),
        Err(SignError::BasicFourItems {
            item: CertItem::Address
        })
    );
    let mut s = spec(1005);
    s.unknown_critical_extension = true;
    assert!(matches!(
        check(s),
        Err(SignError::UnsupportedCriticalExtension { .. })
    ));
    let mut s = spec(1006);
    s.name = "架空 花子".into();
    s.sex = "2".into();
    s.date_of_birth = "520200229".into();
    let v = check(s).unwrap();
    assert_eq!(v.certificate.basic_four.sex, Sex::Female);
    assert_eq!(
        v.certificate.basic_four.date_of_birth.date,
        chrono::NaiveDate::from_ymd_opt(2020, 2, 29)
    );
}

#[test]
fn a_signing_time_in_the_future_is_refused() {
    let der = taro()
        .sign_filing(&payload(), now() + Duration::hours(2))
        .unwrap();
    assert!(matches!(
        verifier().verify_filing(&der, &payload(), now()),
        Err(SignError::SigningTimeInFuture { .. })
    ));
}

/// Re-encodes the SignedData inside `der` after `f` changed it.
fn mutate_signed_data(der: &[u8], f: impl FnOnce(&mut cms::signed_data::SignedData)) -> Vec<u8> {
    let mut ci = cms::content_info::ContentInfo::from_der(der).unwrap();
    let mut sd: cms::signed_data::SignedData = ci.content.decode_as().unwrap();
    f(&mut sd);
    ci.content = der::Any::encode_from(&sd).unwrap();
    ci.to_der().unwrap()
}

#[test]
fn other_algorithms_and_shapes_are_refused() {
    let sha384 = const_oid::db::rfc5912::ID_SHA_384;
    let der = mutate_signed_data(signed(), |sd| {
        let mut si = sd.signer_infos.0.iter().next().unwrap().clone();
        si.digest_alg.oid = sha384;
        let mut set = der::asn1::SetOfVec::new();
        set.insert(si).unwrap();
        sd.signer_infos.0 = set;
    });
    assert!(matches!(
        verifier().verify_filing(&der, &payload(), now()),
        Err(SignError::UnsupportedAlgorithm { .. })
    ));
    let der = mutate_signed_data(signed(), |sd| {
        let mut si = sd.signer_infos.0.iter().next().unwrap().clone();
        si.signature_algorithm.oid = const_oid::db::rfc5912::ECDSA_WITH_SHA_256;
        let mut set = der::asn1::SetOfVec::new();
        set.insert(si).unwrap();
        sd.signer_infos.0 = set;
    });
    assert!(matches!(
        verifier().verify_filing(&der, &payload(), now()),
        Err(SignError::UnsupportedAlgorithm { .. })
    ));
    // Without the signer's certificate in the message.
    let der = mutate_signed_data(signed(), |sd| sd.certificates = None);
    assert_eq!(
        verifier().verify_filing(&der, &payload(), now()),
        Err(SignError::WrongSigner)
    );
    // Without signed attributes.
    let der = mutate_signed_data(signed(), |sd| {
        let mut si = sd.signer_infos.0.iter().next().unwrap().clone();
        si.signed_attrs = None;
        let mut set = der::asn1::SetOfVec::new();
        set.insert(si).unwrap();
        sd.signer_infos.0 = set;
    });
    assert!(matches!(
        verifier().verify_filing(&der, &payload(), now()),
        Err(SignError::BadStructure { .. })
    ));
    // Detached without the content.
    assert!(matches!(
        verifier().verify(signed(), None, now()),
        Err(SignError::BadStructure { .. })
    ));
}

#[test]
fn malformed_der_is_a_typed_error() {
    assert!(matches!(
        verifier().verify(b"not der at all", None, now()),
        Err(SignError::MalformedDer {
            part: DerPart::Cms,
            ..
        })
    ));
    let s = signed();
    assert!(matches!(
        verifier().verify(&s[..s.len() - 10], None, now()),
        Err(SignError::MalformedDer {
            part: DerPart::Cms,
            ..
        })
    ));
    assert!(matches!(
        verifier().check_certificate(&[0x30, 0x03, 0x02, 0x01, 0x01], now()),
        Err(SignError::MalformedDer {
            part: DerPart::Certificate,
            ..
        })
    ));
    let mut v = Verifier::new(&[ca().cert_der()]).unwrap();
    assert!(matches!(
        v.add_crl(&[0x30, 0x80]),
        Err(SignError::MalformedDer {
            part: DerPart::Crl,
            ..
        })
    ));
    assert!(matches!(
        Verifier::new(&[b"junk".to_vec()]),
        Err(SignError::MalformedDer {
            part: DerPart::Certificate,
            ..
        })
    ));
}

#[test]
fn anchors_and_crls_travel_as_pem() {
    let pem = machi_sign::der_to_pem("CERTIFICATE", &ca().cert_der());
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
    let mut v = Verifier::new(&[machi_sign::pem_to_der(&pem).unwrap()]).unwrap();
    let crl = ca().crl(t(2027, 1, 14), t(2027, 1, 16), &[]).unwrap();
    let crl_pem = machi_sign::der_to_pem("X509 CRL", &crl);
    v.add_crl(&machi_sign::pem_to_der(&crl_pem).unwrap())
        .unwrap();
    assert!(v.verify_filing(signed(), &payload(), now()).is_ok());
    assert!(matches!(
        machi_sign::pem_to_der("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"),
        Err(SignError::MalformedDer { .. })
    ));
}

#[test]
fn every_error_speaks_japanese_and_english_with_a_stable_code() {
    let all = vec![
        SignError::MalformedDer {
            part: DerPart::Cms,
            detail: "x".into(),
        },
        SignError::UnsupportedAlgorithm { what: "x".into() },
        SignError::BadStructure { detail: "x".into() },
        SignError::TamperedContent,
        SignError::WrongSigner,
        SignError::UnknownTrustAnchor,
        SignError::Expired { not_after: now() },
        SignError::NotYetValid { not_before: now() },
        SignError::Revoked { revoked_at: now() },
        SignError::NoCrl,
        SignError::StaleCrl { next_update: None },
        SignError::UntrustedCrl,
        SignError::WrongPolicy,
        SignError::WrongKeyUsage,
        SignError::UnsupportedCriticalExtension { oid: "1.2".into() },
        SignError::BasicFourItems {
            item: CertItem::Address,
        },
        SignError::SigningTimeInFuture {
            signing_time: now(),
        },
        SignError::NotCanonical { detail: "x".into() },
    ];
    let mut codes = std::collections::HashSet::new();
    for e in &all {
        assert!(codes.insert(e.code()), "duplicate code {}", e.code());
        assert!(!e.message_ja().is_empty() && !e.message_en().is_empty());
        assert!(
            e.message_ja().chars().any(|c| c as u32 > 0x3000),
            "{}",
            e.message_ja()
        );
        assert!(e.message_en().is_ascii(), "{}", e.message_en());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    /// Random bytes into every parser: an error, never a panic.
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = verifier().verify(&bytes, Some(b"x"), now());
        let _ = verifier().check_certificate(&bytes, now());
        let mut v = Verifier::new(&[ca().cert_der()]).unwrap();
        let _ = v.add_crl(&bytes);
        let _ = Verifier::new(std::slice::from_ref(&bytes));
    }

    /// Valid structures with bytes flipped, cut or inserted: never a panic,
    /// and never a success that reports other content or another person.
    #[test]
    fn mutated_der_never_panics_nor_lies(
        which in 0usize..3,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..4),
    ) {
        let original: Vec<u8> = match which {
            0 => signed().clone(),
            1 => taro().cert_der(),
            _ => ca().crl(t(2027, 1, 14), t(2027, 1, 16), &[(9999, t(2026, 6, 1))]).unwrap(),
        };
        let mut bytes = original;
        for (at, b, kind) in edits {
            if bytes.is_empty() { break; }
            let i = at.index(bytes.len());
            match kind {
                0 => bytes[i] ^= b | 1,
                1 => bytes.truncate(i),
                _ => bytes.insert(i, b),
            }
        }
        match which {
            0 => {
                if let Ok(v) = verifier().verify_filing(&bytes, &payload(), now()) {
                    prop_assert_eq!(v.content, payload().canonical_bytes().unwrap());
                    prop_assert_eq!(v.certificate.basic_four.name, "架空 太郎");
                }
            }
            1 => {
                if let Ok(c) = verifier().check_certificate(&bytes, now()) {
                    prop_assert_eq!(c.basic_four.name, "架空 太郎");
                }
            }
            _ => {
                let mut v = Verifier::new(&[ca().cert_der()]).unwrap();
                if v.add_crl(&bytes).is_ok() {
                    // A CRL that still verifies still lists serial 9999, and only it.
                    prop_assert!(v.verify_filing(signed(), &payload(), now()).is_ok());
                    let r = v.verify_filing(revoked_signed(), &payload(), now());
                    prop_assert!(matches!(r, Err(SignError::Revoked { .. })), "{:?}", r);
                }
            }
        }
    }
}
