//! Signed filings at the portal and at the back office (issue 11, items 3
//! and 8): which trust anchors and CRLs a verifier uses, the exact bytes a
//! citizen signs for a filing, and — in demo mode only — synthetic cards
//! ("DEMO") that the portal can sign with.
//!
//! The bytes signed are [`machi_sign::FilingPayload::canonical_bytes`] of
//! the filing: tenant, procedure id and published version, a per-filing
//! nonce (署名番号) handed out when the signing step starts, and the
//! answers. Both the portal (on receipt) and the back office (on import)
//! rebuild them from the sealed filing's `signed_content` with
//! [`payload_of`] and verify the CMS SignedData against them, so a
//! signature made for one filing can never be attached to another.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use machi_domain::error::Localized;
use machi_procedures::Lang;
use machi_sign::{FilingPayload, SignError, Verifier};
use serde_json::Value;

/// The largest signature file a citizen may upload (a CMS SignedData with
/// its certificate is a few kilobytes; the content travels detached).
pub const MAX_SIGNATURE_UPLOAD: usize = 64 * 1024;

/// Where the trust anchors and CRLs come from: files (DER or PEM), read
/// again by [`Signing::reload`], plus certificates given in memory (the
/// demo CA).
#[derive(Debug, Clone, Default)]
pub struct SignatureFiles {
    /// CA certificates a signing certificate must be issued by.
    pub anchors: Vec<PathBuf>,
    /// Their CRLs (each must verify under one of the anchors).
    pub crls: Vec<PathBuf>,
}

/// Why the signature set-up could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{path}: {error}")]
    Read { path: String, error: String },
    #[error("{path}: {error}")]
    Invalid { path: String, error: SignError },
    #[error("no trust anchor is configured")]
    NoAnchor,
}

impl SetupError {
    pub fn message_ja(&self) -> String {
        match self {
            SetupError::Read { path, error } => format!("{path} を読めません（{error}）。"),
            SetupError::Invalid { path, error } => format!("{path}：{}", error.message_ja()),
            SetupError::NoAnchor => {
                "信頼する認証局の証明書（トラストアンカー）が設定されていません。".into()
            }
        }
    }
    pub fn message_en(&self) -> String {
        match self {
            SetupError::Invalid { path, error } => format!("{path}: {}", error.message_en()),
            e => e.to_string(),
        }
    }
}

/// Reads a DER file, or a PEM file (any label) converted to DER.
fn read_der(path: &Path) -> Result<Vec<u8>, SetupError> {
    let bytes = std::fs::read(path).map_err(|e| SetupError::Read {
        path: path.display().to_string(),
        error: e.to_string(),
    })?;
    pem_or_der(&bytes).map_err(|error| SetupError::Invalid {
        path: path.display().to_string(),
        error,
    })
}

/// DER as given, or the DER inside a PEM text.
pub fn pem_or_der(bytes: &[u8]) -> Result<Vec<u8>, SignError> {
    let text = std::str::from_utf8(bytes).ok();
    match text {
        Some(t) if t.trim_start().starts_with("-----BEGIN") => machi_sign::pem_to_der(t),
        _ => Ok(bytes.to_vec()),
    }
}

/// A verifier built from [`SignatureFiles`] (and certificates in memory),
/// swapped whole when the files are read again: a new CRL takes effect
/// without a restart, and a verification never sees half a reload.
pub struct Signing {
    files: SignatureFiles,
    extra_anchors: Vec<Vec<u8>>,
    extra_crls: Vec<Vec<u8>>,
    current: RwLock<Arc<Verifier>>,
}

impl std::fmt::Debug for Signing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signing")
            .field("files", &self.files)
            .finish()
    }
}

impl Signing {
    /// Loads the anchors and CRLs; at least one anchor is required.
    pub fn load(
        files: SignatureFiles,
        extra_anchors: Vec<Vec<u8>>,
        extra_crls: Vec<Vec<u8>>,
    ) -> Result<Signing, SetupError> {
        let v = build(&files, &extra_anchors, &extra_crls)?;
        Ok(Signing {
            files,
            extra_anchors,
            extra_crls,
            current: RwLock::new(Arc::new(v)),
        })
    }

    /// The verifier in force now.
    pub fn verifier(&self) -> Arc<Verifier> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Reads the files again (a CRL is replaced by its successor); on an
    /// error the verifier in force stays.
    pub fn reload(&self) -> Result<(), SetupError> {
        let v = build(&self.files, &self.extra_anchors, &self.extra_crls)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(v);
        Ok(())
    }
}

fn build(
    files: &SignatureFiles,
    extra_anchors: &[Vec<u8>],
    extra_crls: &[Vec<u8>],
) -> Result<Verifier, SetupError> {
    let mut anchors = extra_anchors.to_vec();
    for p in &files.anchors {
        anchors.push(read_der(p)?);
    }
    if anchors.is_empty() {
        return Err(SetupError::NoAnchor);
    }
    let mut v = Verifier::new(&anchors).map_err(|error| SetupError::Invalid {
        path: "trust anchor".into(),
        error,
    })?;
    for c in extra_crls {
        v.add_crl(c).map_err(|error| SetupError::Invalid {
            path: "CRL".into(),
            error,
        })?;
    }
    for p in &files.crls {
        let der = read_der(p)?;
        v.add_crl(&der).map_err(|error| SetupError::Invalid {
            path: p.display().to_string(),
            error,
        })?;
    }
    Ok(v)
}

/// The payload a filing's signature is over, from the sealed filing's
/// `signed_content` (`tenant`, `procedure`, `version`, `nonce`,
/// `answers`). None when one of them is missing or of the wrong type.
pub fn payload_of(signed_content: &Value) -> Option<FilingPayload> {
    Some(FilingPayload {
        tenant: signed_content["tenant"].as_str()?.to_owned(),
        procedure_id: signed_content["procedure"].as_str()?.to_owned(),
        procedure_version: u32::try_from(signed_content["version"].as_u64()?).ok()?,
        nonce: signed_content["nonce"].as_str()?.to_owned(),
        fields: signed_content.get("answers")?.clone(),
    })
}

/// A new signing nonce (署名番号): 128 random bits, as 32 hex digits.
pub fn new_nonce() -> Result<String, crate::seal::SealError> {
    Ok(hex::encode(crate::seal::random::<16>()?))
}

/// What the upload is: a CMS SignedData in DER, or in PEM
/// (`-----BEGIN PKCS7-----` / `-----BEGIN CMS-----`). Anything else — a
/// picture, a PDF, text — is refused before the CMS parser sees it.
pub fn signature_upload(bytes: &[u8]) -> Result<Vec<u8>, UploadError> {
    if bytes.is_empty() {
        return Err(UploadError::Empty);
    }
    if bytes.len() > MAX_SIGNATURE_UPLOAD {
        return Err(UploadError::TooLarge);
    }
    let der = if let Ok(t) = std::str::from_utf8(bytes)
        && t.trim_start().starts_with("-----BEGIN")
    {
        match machi_sign::pem_block(t) {
            Ok((label, der)) if label == "PKCS7" || label == "CMS" => der,
            _ => return Err(UploadError::WrongType),
        }
    } else {
        bytes.to_vec()
    };
    // A DER SEQUENCE (ContentInfo) starts with 0x30.
    if der.first() != Some(&0x30) {
        return Err(UploadError::WrongType);
    }
    Ok(der)
}

/// Why an uploaded signature file is not even looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadError {
    Empty,
    TooLarge,
    WrongType,
}

impl UploadError {
    pub fn message(self, l: Lang) -> &'static str {
        match self {
            UploadError::Empty => l.t(
                "署名ファイル（.p7s）を選んでください",
                "しょめいの ファイル（.p7s）を えらんで ください",
                "Choose the signature file (.p7s)",
            ),
            UploadError::TooLarge => l.t(
                "署名ファイルが大きすぎます（64KBまで）。カードのソフトが作った .p7s ファイルを選んでください",
                "ファイルが おおきすぎます（64KBまで）。カードの ソフトが つくった .p7s ファイルを えらんで ください",
                "The signature file is too large (up to 64 KB). Choose the .p7s file your card software made",
            ),
            UploadError::WrongType => l.t(
                "署名ファイル（.p7s、CMS形式）ではありません。カードのソフトが作った .p7s ファイルを選んでください",
                "しょめいの ファイル（.p7s）では ありません。カードの ソフトが つくった .p7s ファイルを えらんで ください",
                "This is not a signature file (.p7s, CMS). Choose the .p7s file your card software made",
            ),
        }
    }
}

/// A signature refusal for the citizen: Japanese and English from
/// [`machi_sign::SignError`], and a plain version in やさしい日本語.
pub fn refusal(e: &SignError, l: Lang) -> String {
    match l {
        Lang::Ja => e.message_ja(),
        Lang::En => e.message_en(),
        Lang::Easy => match e {
            SignError::TamperedContent => {
                "しょめいした ないようと もうしこみの ないようが ちがいます。もう いちど しょめい して ください。"
            }
            SignError::WrongSigner => {
                "この しょめいは カードの もちぬしの ものと たしかめられません。"
            }
            SignError::UnknownTrustAnchor => "この カードは つかえません（しんらい できる ところが だした カードでは ありません）。",
            SignError::Expired { .. } | SignError::NotYetValid { .. } => {
                "カードの でんし しょうめいしょの きげんが きれて います。やくしょで こうしん して ください。"
            }
            SignError::Revoked { .. } => {
                "カードの でんし しょうめいしょは つかえなく なって います（しっこう）。"
            }
            SignError::NoCrl | SignError::StaleCrl { .. } | SignError::UntrustedCrl => {
                "いま カードを たしかめられません。あとで もう いちど ためして ください。"
            }
            SignError::MalformedDer { .. } | SignError::BadStructure { .. } => {
                "しょめいの ファイルが よめません。カードの ソフトで もう いちど つくって ください。"
            }
            _ => "この しょめいは うけつけられません。",
        }
        .to_owned(),
    }
}

// ------------------------------------------------------------------ demo

/// A synthetic person a demo card is issued to (synthetic data only).
#[derive(Debug, Clone)]
pub struct DemoPerson {
    /// 氏名.
    pub name: String,
    /// 性別 as JPKI writes it: `1` 男, `2` 女.
    pub sex: String,
    /// 生年月日 as JPKI writes it: era digit then YYYYMMDD.
    pub date_of_birth: String,
    /// 住所.
    pub address: String,
}

/// The synthetic residents the demo issues cards to (架空 = fictitious).
pub fn demo_people() -> Vec<DemoPerson> {
    [
        (
            "架空　太郎",
            "1",
            "319850102",
            "東京都府中市宮西町架空1番地",
        ),
        (
            "架空　花子",
            "2",
            "319870315",
            "東京都府中市宮西町架空1番地",
        ),
        (
            "試験　一郎",
            "1",
            "419920720",
            "東京都昭島市田中町架空2番地",
        ),
    ]
    .into_iter()
    .map(|(name, sex, dob, address)| DemoPerson {
        name: name.into(),
        sex: sex.into(),
        date_of_birth: dob.into(),
        address: address.into(),
    })
    .collect()
}

/// DEMO ONLY: a synthetic CA ("DEMO … not JPKI"), its CRL and cards for
/// synthetic people. The portal offers them only when its configuration
/// says so ([`crate::Config::demo_cards`]), and every page that offers
/// them says 「デモ用カード」.
pub struct DemoCards {
    ca_der: Vec<u8>,
    crl_der: Vec<u8>,
    cards: Vec<(DemoPerson, machi_sign::demo::DemoCard)>,
}

impl std::fmt::Debug for DemoCards {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoCards")
            .field("cards", &self.cards.len())
            .finish()
    }
}

impl DemoCards {
    /// Makes a DEMO CA valid from `now` − 1 day for 10 years, and a card
    /// (one RSA-2048 key each) for every person; the CRL lists none and is
    /// good for a year. Slow: one key generation per card and the CA.
    pub fn issue(people: &[DemoPerson], now: DateTime<Utc>) -> Result<DemoCards, String> {
        use machi_sign::demo::{CardSpec, DemoCa, generate_key};
        let err = |e: machi_sign::demo::DemoError| e.to_string();
        let from = now - chrono::Duration::days(1);
        let ca = DemoCa::new(
            generate_key().map_err(err)?,
            "portal",
            from,
            from + chrono::Duration::days(3650),
        )
        .map_err(err)?;
        let mut cards = Vec::new();
        for (i, p) in people.iter().enumerate() {
            let spec = CardSpec::new(
                1000 + i as u64,
                &p.name,
                &p.sex,
                &p.date_of_birth,
                &p.address,
                from,
            );
            let card = ca
                .issue(&spec, &generate_key().map_err(err)?)
                .map_err(err)?;
            cards.push((p.clone(), card));
        }
        let crl_der = ca
            .crl(from, now + chrono::Duration::days(365), &[])
            .map_err(err)?;
        Ok(DemoCards {
            ca_der: ca.cert_der(),
            crl_der,
            cards,
        })
    }

    /// The DEMO CA certificate (DER): add it to the verifier's anchors.
    pub fn ca_der(&self) -> &[u8] {
        &self.ca_der
    }

    /// The DEMO CA's CRL (DER).
    pub fn crl_der(&self) -> &[u8] {
        &self.crl_der
    }

    /// The people holding a card, in order.
    pub fn people(&self) -> impl Iterator<Item = &DemoPerson> {
        self.cards.iter().map(|(p, _)| p)
    }

    /// Signs a filing with card number `index` (detached, PKCS #1 v1.5, as
    /// a JPKI card does).
    pub fn sign(
        &self,
        index: usize,
        payload: &FilingPayload,
        now: DateTime<Utc>,
    ) -> Option<Vec<u8>> {
        let (_, card) = self.cards.get(index)?;
        card.sign_filing(payload, now).ok()
    }
}
