//! What can go wrong verifying a signed filing, as typed errors a person can
//! read in Japanese or English ([`machi_domain::error::Localized`]).

use chrono::{DateTime, Utc};
use machi_domain::error::Localized;

/// Which DER structure could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DerPart {
    /// The CMS ContentInfo / SignedData.
    Cms,
    /// A certificate (the signer's or a trust anchor).
    Certificate,
    /// A certificate revocation list.
    Crl,
}

impl DerPart {
    fn ja(self) -> &'static str {
        match self {
            DerPart::Cms => "署名データ",
            DerPart::Certificate => "電子証明書",
            DerPart::Crl => "失効リスト",
        }
    }
    fn en(self) -> &'static str {
        match self {
            DerPart::Cms => "signature data",
            DerPart::Certificate => "certificate",
            DerPart::Crl => "revocation list",
        }
    }
}

/// One of the basic four items (基本4情報) or their companions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertItem {
    /// 氏名.
    Name,
    /// 氏名の代替文字の使用位置情報.
    NameSubstitute,
    /// 性別.
    Sex,
    /// 生年月日.
    DateOfBirth,
    /// 住所.
    Address,
    /// 住所の代替文字の使用位置情報.
    AddressSubstitute,
    /// The subjectAltName extension itself.
    SubjectAltName,
}

impl CertItem {
    pub fn ja(self) -> &'static str {
        match self {
            CertItem::Name => "氏名",
            CertItem::NameSubstitute => "氏名の代替文字情報",
            CertItem::Sex => "性別",
            CertItem::DateOfBirth => "生年月日",
            CertItem::Address => "住所",
            CertItem::AddressSubstitute => "住所の代替文字情報",
            CertItem::SubjectAltName => "主体者別名",
        }
    }
    pub fn en(self) -> &'static str {
        match self {
            CertItem::Name => "name",
            CertItem::NameSubstitute => "name substitute-character information",
            CertItem::Sex => "sex",
            CertItem::DateOfBirth => "date of birth",
            CertItem::Address => "address",
            CertItem::AddressSubstitute => "address substitute-character information",
            CertItem::SubjectAltName => "subjectAltName",
        }
    }
}

/// A signed filing or its certificate is not acceptable.
///
/// Every variant is a refusal: nothing about the filing may be trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// The bytes are not the DER structure they claim to be.
    #[error("malformed {part:?}: {detail}")]
    MalformedDer { part: DerPart, detail: String },
    /// An algorithm other than SHA-256 with RSA (PKCS #1 v1.5 or PSS), or an
    /// RSA key shorter than 2048 bits.
    #[error("unsupported algorithm: {what}")]
    UnsupportedAlgorithm { what: String },
    /// The CMS structure is well formed but not the shape a filing needs
    /// (not exactly one signer, not id-data, signed attributes missing or doubled).
    #[error("signature structure not accepted: {detail}")]
    BadStructure { detail: String },
    /// The signed content is not the filing: the message digest does not
    /// match, or the content differs from the filing's canonical form.
    #[error("content does not match its signature")]
    TamperedContent,
    /// The signature does not verify under the certificate it names, or the
    /// certificate it names is not in the message.
    #[error("signature not made by the named certificate")]
    WrongSigner,
    /// The signer's certificate was not issued by a configured trust anchor.
    #[error("certificate not issued by a trusted authority")]
    UnknownTrustAnchor,
    /// The certificate's validity ended before the verification time.
    #[error("certificate expired at {not_after}")]
    Expired { not_after: DateTime<Utc> },
    /// The certificate's validity starts after the verification time.
    #[error("certificate not valid before {not_before}")]
    NotYetValid { not_before: DateTime<Utc> },
    /// The certificate's serial number is on the issuer's CRL.
    #[error("certificate revoked at {revoked_at}")]
    Revoked { revoked_at: DateTime<Utc> },
    /// No CRL of the issuer is loaded: revocation status unknown.
    #[error("no revocation list for the issuer")]
    NoCrl,
    /// The issuer's CRL is past its nextUpdate (or not yet in force).
    #[error("revocation list out of date (next update {next_update:?})")]
    StaleCrl { next_update: Option<DateTime<Utc>> },
    /// A CRL whose signature does not verify under any trust anchor.
    #[error("revocation list not signed by a trusted authority")]
    UntrustedCrl,
    /// The certificate does not name the JPKI signing-certificate policy.
    #[error("certificate policy is not the signing-certificate policy")]
    WrongPolicy,
    /// keyUsage lacks digitalSignature or nonRepudiation, or the
    /// certificate is a CA certificate.
    #[error("certificate not made for signing")]
    WrongKeyUsage,
    /// A critical extension this verifier does not understand (RFC 5280 §4.2).
    #[error("unsupported critical extension {oid}")]
    UnsupportedCriticalExtension { oid: String },
    /// subjectAltName lacks one of the basic four items, or holds one twice
    /// or in an unreadable form.
    #[error("basic four items missing or unreadable: {item:?}")]
    BasicFourItems { item: CertItem },
    /// The signing-time attribute lies in the future of the verification time.
    #[error("signing time {signing_time} is in the future")]
    SigningTimeInFuture { signing_time: DateTime<Utc> },
    /// The filing cannot be put in canonical form (a non-integer number).
    #[error("filing cannot be canonicalised: {detail}")]
    NotCanonical { detail: String },
}

impl SignError {
    pub(crate) fn der(part: DerPart, e: impl std::fmt::Display) -> Self {
        SignError::MalformedDer {
            part,
            detail: e.to_string(),
        }
    }
    pub(crate) fn structure(detail: impl Into<String>) -> Self {
        SignError::BadStructure {
            detail: detail.into(),
        }
    }
    pub(crate) fn unsupported(what: impl Into<String>) -> Self {
        SignError::UnsupportedAlgorithm { what: what.into() }
    }
}

fn japan_time(t: &DateTime<Utc>) -> DateTime<chrono::FixedOffset> {
    t.with_timezone(&chrono::FixedOffset::east_opt(9 * 3600).expect("a valid offset"))
}

/// A time as the Japanese pages show it: Japan time, the date in 和暦 (j90).
fn ymd(t: &DateTime<Utc>) -> String {
    use chrono::Timelike;
    let t = japan_time(t);
    format!(
        "{} {}時{:02}分",
        machi_domain::dates::EraTable::standard().format_wareki(t.date_naive()),
        t.hour(),
        t.minute()
    )
}

/// The same time for the English messages: "6 December 2026, 18:00 JST".
fn ymd_en(t: &DateTime<Utc>) -> String {
    japan_time(t).format("%-d %B %Y, %H:%M JST").to_string()
}

impl Localized for SignError {
    fn code(&self) -> &'static str {
        match self {
            SignError::MalformedDer { .. } => "signature_malformed",
            SignError::UnsupportedAlgorithm { .. } => "signature_unsupported_algorithm",
            SignError::BadStructure { .. } => "signature_bad_structure",
            SignError::TamperedContent => "signature_tampered_content",
            SignError::WrongSigner => "signature_wrong_signer",
            SignError::UnknownTrustAnchor => "certificate_unknown_trust_anchor",
            SignError::Expired { .. } => "certificate_expired",
            SignError::NotYetValid { .. } => "certificate_not_yet_valid",
            SignError::Revoked { .. } => "certificate_revoked",
            SignError::NoCrl => "crl_missing",
            SignError::StaleCrl { .. } => "crl_stale",
            SignError::UntrustedCrl => "crl_untrusted",
            SignError::WrongPolicy => "certificate_wrong_policy",
            SignError::WrongKeyUsage => "certificate_wrong_key_usage",
            SignError::UnsupportedCriticalExtension { .. } => {
                "certificate_unsupported_critical_extension"
            }
            SignError::BasicFourItems { .. } => "certificate_basic_four_items",
            SignError::SigningTimeInFuture { .. } => "signature_time_in_future",
            SignError::NotCanonical { .. } => "filing_not_canonical",
        }
    }

    fn message_ja(&self) -> String {
        match self {
            SignError::MalformedDer { part, .. } => {
                format!("{}の形式が正しくないため、読み取れません。", part.ja())
            }
            SignError::UnsupportedAlgorithm { .. } => {
                "対応していない署名方式です（RSA 2048ビット以上・SHA-256のみ受け付けます）。".into()
            }
            SignError::BadStructure { .. } => {
                "署名データの構成が申請の署名として受け付けられる形ではありません。".into()
            }
            SignError::TamperedContent => {
                "署名された内容と申請の内容が一致しません。署名後に改ざんされた可能性があります。"
                    .into()
            }
            SignError::WrongSigner => "署名が電子証明書の持ち主によるものと確認できません。".into(),
            SignError::UnknownTrustAnchor => {
                "電子証明書が信頼された認証局から発行されたものではありません。".into()
            }
            SignError::Expired { not_after } => {
                format!(
                    "電子証明書の有効期限が切れています（{}まで）。",
                    ymd(not_after)
                )
            }
            SignError::NotYetValid { not_before } => {
                format!(
                    "電子証明書の有効期間が始まっていません（{}から）。",
                    ymd(not_before)
                )
            }
            SignError::Revoked { revoked_at } => {
                format!("電子証明書は失効しています（{}に失効）。", ymd(revoked_at))
            }
            SignError::NoCrl => {
                "発行元の失効リストがないため、電子証明書が有効か確認できません。".into()
            }
            SignError::StaleCrl { .. } => {
                "失効リストが更新期限を過ぎているため、電子証明書が有効か確認できません。".into()
            }
            SignError::UntrustedCrl => {
                "失効リストが信頼された認証局の署名を持っていません。".into()
            }
            SignError::WrongPolicy => {
                "署名用電子証明書ではありません（証明書ポリシーが異なります）。".into()
            }
            SignError::WrongKeyUsage => "この電子証明書は署名に使えません。".into(),
            SignError::UnsupportedCriticalExtension { .. } => {
                "電子証明書に解釈できない重要な拡張があります。".into()
            }
            SignError::BasicFourItems { item } => {
                format!("電子証明書の基本4情報（{}）が読み取れません。", item.ja())
            }
            SignError::SigningTimeInFuture { signing_time } => {
                format!("署名日時（{}）が未来の日時です。", ymd(signing_time))
            }
            SignError::NotCanonical { .. } => {
                "申請の内容を署名用の正規形にできません（小数は使えません）。".into()
            }
        }
    }

    fn message_en(&self) -> String {
        match self {
            SignError::MalformedDer { part, .. } => {
                format!("The {} is malformed and cannot be read.", part.en())
            }
            SignError::UnsupportedAlgorithm { what } => format!(
                "Unsupported signature algorithm ({what}); only RSA of 2048 bits or more with SHA-256 is accepted."
            ),
            SignError::BadStructure { detail } => {
                format!("The signature data is not shaped as a signed filing: {detail}.")
            }
            SignError::TamperedContent => {
                "The signed content does not match the filing: it may have been altered after signing."
                    .into()
            }
            SignError::WrongSigner => {
                "The signature was not made with the key of the certificate it names.".into()
            }
            SignError::UnknownTrustAnchor => {
                "The certificate was not issued by a trusted certification authority.".into()
            }
            SignError::Expired { not_after } => {
                format!("The certificate expired ({}).", ymd_en(not_after))
            }
            SignError::NotYetValid { not_before } => {
                format!("The certificate is not valid yet (from {}).", ymd_en(not_before))
            }
            SignError::Revoked { revoked_at } => {
                format!("The certificate has been revoked ({}).", ymd_en(revoked_at))
            }
            SignError::NoCrl => {
                "No revocation list of the issuer is loaded, so the certificate cannot be checked."
                    .into()
            }
            SignError::StaleCrl { .. } => {
                "The revocation list is out of date, so the certificate cannot be checked.".into()
            }
            SignError::UntrustedCrl => {
                "The revocation list is not signed by a trusted certification authority.".into()
            }
            SignError::WrongPolicy => {
                "This is not a signing certificate (its certificate policy differs).".into()
            }
            SignError::WrongKeyUsage => "This certificate may not be used for signing.".into(),
            SignError::UnsupportedCriticalExtension { oid } => {
                format!("The certificate has a critical extension that cannot be interpreted ({oid}).")
            }
            SignError::BasicFourItems { item } => {
                format!("The certificate's basic four items cannot be read ({}).", item.en())
            }
            SignError::SigningTimeInFuture { signing_time } => {
                format!("The signing time ({}) is in the future.", ymd_en(signing_time))
            }
            SignError::NotCanonical { detail } => {
                format!("The filing cannot be put in canonical form: {detail}.")
            }
        }
    }
}
