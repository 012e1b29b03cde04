//! `machi portal`: the citizen portal as its own process (issue 11).
//!
//! The portal lives in the `machi-portal` crate, which cannot read the
//! registry (it does not depend on this crate); this module only starts it
//! and gives the clerk-administrator's commands: check and publish
//! definitions, make the back office's key pair.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Subcommand};
use machi_domain::ids::MunicipalityCode;
use machi_portal::seal::{OpeningKey, RecipientKey};
use machi_portal::signing::{SignatureFiles, Signing};
use machi_portal::{Config, Portal};
use machi_procedures::Definition;
use sha2::{Digest, Sha256};

/// The environment variable holding the back office's public key (hex).
pub const BACKOFFICE_KEY_ENV: &str = "MACHI_PORTAL_BACKOFFICE_KEY";
/// The environment variable holding the token the back office pulls with.
pub const PULL_TOKEN_ENV: &str = "MACHI_PORTAL_PULL_TOKEN";

#[derive(Args, Debug)]
pub struct PortalArgs {
    #[command(subcommand)]
    command: PortalCommand,
}

#[derive(Subcommand, Debug)]
enum PortalCommand {
    /// Serve the citizen portal. MACHI_PORTAL_BACKOFFICE_KEY: the back
    /// office's public key (from `machi portal keygen`); MACHI_PORTAL_PULL_TOKEN:
    /// the bearer token the back office pulls with (without it the pull
    /// endpoints are off).
    Serve {
        /// The portal's own database (SQLite).
        #[arg(long, default_value = "machi-portal.db", env = "MACHI_PORTAL_DB")]
        db: PathBuf,
        #[arg(long, default_value_t = 8070, env = "MACHI_PORTAL_PORT")]
        port: u16,
        #[arg(long, default_value = "127.0.0.1", env = "MACHI_PORTAL_BIND")]
        bind: String,
        /// Days a saved draft is kept.
        #[arg(long, default_value_t = 7)]
        draft_days: i64,
        /// Trust anchors for signed filings (the JPKI signing CA
        /// certificates, DER or PEM), comma-separated. Without one, a
        /// procedure needing a signature cannot be submitted here.
        #[arg(long, env = "MACHI_SIGN_ANCHORS", value_delimiter = ',')]
        sign_anchor: Vec<PathBuf>,
        /// The anchors' CRLs (DER or PEM), comma-separated; read again every
        /// --crl-reload-minutes, so a new CRL takes effect without a restart.
        #[arg(long, env = "MACHI_SIGN_CRLS", value_delimiter = ',')]
        sign_crl: Vec<PathBuf>,
        #[arg(long, default_value_t = 10)]
        crl_reload_minutes: u64,
        /// DEMO ONLY: issue synthetic "DEMO" cards to a few synthetic
        /// residents and let citizens sign with them (every page offering
        /// them says 「デモ用カード」). Never for a real portal.
        #[arg(long)]
        demo_cards: bool,
    },
    /// Pull sealed filings from the portal once, import them (signatures
    /// checked again here), acknowledge them, and push queued status
    /// updates: for cron. MACHI_PORTAL_URL, MACHI_PORTAL_PULL_TOKEN,
    /// MACHI_PORTAL_OPENING_KEY (the back office's private key),
    /// MACHI_SIGN_ANCHORS and MACHI_SIGN_CRLS. Exit status 1 when the
    /// portal cannot be reached (nothing is lost), 2 when a filing was
    /// refused.
    Pull,
    /// Check procedure definitions (TOML) without publishing them.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Validate and publish procedure definitions for a tenant. A published
    /// version never changes: publish a changed text as a new version.
    Publish {
        #[arg(long, default_value = "machi-portal.db", env = "MACHI_PORTAL_DB")]
        db: PathBuf,
        /// 団体コード (six digits).
        #[arg(long)]
        tenant: String,
        /// The tenant's name as the portal shows it.
        #[arg(long)]
        name_ja: String,
        #[arg(long)]
        name_en: String,
        /// Publish the five procedures shipped with machi.
        #[arg(long)]
        shipped: bool,
        files: Vec<PathBuf>,
    },
    /// Make the back office's key pair: the private key stays with the back
    /// office, the public key goes to the portal.
    Keygen,
}

fn report(ja: &str, en: &str) {
    eprintln!("{ja}");
    eprintln!("{en}");
}

impl PortalArgs {
    /// `machi portal pull` needs the back office's database.
    pub fn is_pull(&self) -> bool {
        matches!(self.command, PortalCommand::Pull)
    }
}

/// `machi portal pull`: one round, for cron.
pub async fn pull_command(store: &crate::store::Store) -> anyhow::Result<ExitCode> {
    let Some(link) = PortalLink::from_env()? else {
        anyhow::bail!("{PORTAL_URL_ENV} is not set: where is the portal?");
    };
    match link.run_once(store, chrono::Utc::now().timestamp()).await {
        Ok(r) => {
            println!(
                "取込み {} 件（既取込み {} 件、署名検証失敗 {} 件）、取込み拒否 {} 件、状況通知 {} 件（未送 {} 件） / imported {}, already {}, signature failures {}, refused {}, statuses pushed {} (left {})",
                r.imported,
                r.already,
                r.signatures_failed,
                r.refused.len(),
                r.statuses_pushed,
                r.statuses_left,
                r.imported,
                r.already,
                r.signatures_failed,
                r.refused.len(),
                r.statuses_pushed,
                r.statuses_left,
            );
            if r.definitions_imported > 0 {
                println!(
                    "手続定義の取込み {} 件 / procedure definitions imported {}",
                    r.definitions_imported, r.definitions_imported
                );
            }
            for d in &r.definitions_refused {
                eprintln!("{} {} v{}:", d.tenant, d.procedure, d.version);
                report(&d.ja, &d.en);
            }
            for f in &r.refused {
                eprintln!("{}:", f.portal_id);
                report(&f.ja, &f.en);
            }
            Ok(
                if r.refused.is_empty() && r.definitions_refused.is_empty() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(2)
                },
            )
        }
        Err(e) => {
            report(&e.message_ja(), &e.message_en());
            Ok(ExitCode::FAILURE)
        }
    }
}

pub async fn run(args: &PortalArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        PortalCommand::Pull => {
            anyhow::bail!("machi portal pull needs the database (run through the CLI)")
        }
        PortalCommand::Keygen => {
            let key = OpeningKey::generate()?;
            println!("back office private key (keep secret): {}", &*key.to_hex());
            println!("portal {BACKOFFICE_KEY_ENV}: {}", key.public().to_hex());
            Ok(ExitCode::SUCCESS)
        }
        PortalCommand::Check { files } => {
            let mut ok = true;
            for f in files {
                let src = std::fs::read_to_string(f)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
                match Definition::parse(&src) {
                    Ok(d) => println!(
                        "{}: {} 版{} — 問題ありません / valid",
                        f.display(),
                        d.procedure.title.ja,
                        d.version()
                    ),
                    Err(r) => {
                        ok = false;
                        eprintln!("{}:", f.display());
                        report(&r.message_ja(), &r.message_en());
                    }
                }
            }
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        PortalCommand::Publish {
            db,
            tenant,
            name_ja,
            name_en,
            shipped,
            files,
        } => {
            let code: MunicipalityCode = tenant
                .parse()
                .map_err(|e: machi_domain::ids::IdError| anyhow::anyhow!("--tenant: {e}"))?;
            // Publishing needs no key: a throwaway recipient opens nothing.
            let portal = Portal::open(db, Config::new(OpeningKey::generate()?.public()))?;
            portal.store.put_tenant(code.as_str(), name_ja, name_en)?;
            let mut sources: Vec<(String, String)> = Vec::new();
            if *shipped {
                for (name, src) in machi_procedures::SHIPPED {
                    sources.push((name.to_owned(), src.to_owned()));
                }
            }
            for f in files {
                let src = std::fs::read_to_string(f)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
                sources.push((f.display().to_string(), src));
            }
            let mut ok = true;
            for (name, src) in sources {
                match portal.publish(code.as_str(), &src) {
                    Ok(true) => println!("{name}: 公開しました / published"),
                    Ok(false) => println!("{name}: 公開済み（変更なし） / already published"),
                    Err(e) => {
                        ok = false;
                        eprintln!("{name}:");
                        report(&e.message_ja(), &e.message_en());
                    }
                }
            }
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        PortalCommand::Serve {
            db,
            port,
            bind,
            draft_days,
            sign_anchor,
            sign_crl,
            crl_reload_minutes,
            demo_cards,
        } => {
            let key = std::env::var(BACKOFFICE_KEY_ENV).map_err(|_| {
                anyhow::anyhow!(
                    "{BACKOFFICE_KEY_ENV} is not set: the portal seals every filing to the back office's public key (make one with `machi portal keygen`)"
                )
            })?;
            let recipient = RecipientKey::from_hex(&key)
                .map_err(|e| anyhow::anyhow!("{BACKOFFICE_KEY_ENV}: {e}"))?;
            let mut config = Config::new(recipient);
            config.draft_days = (*draft_days).clamp(1, 90);
            config.pull_token_sha256 = match std::env::var(PULL_TOKEN_ENV) {
                Ok(t) if t.trim().len() >= 16 => {
                    Some(hex::encode(Sha256::digest(t.trim().as_bytes())))
                }
                Ok(_) => anyhow::bail!("{PULL_TOKEN_ENV} must be at least 16 characters"),
                Err(_) => None,
            };
            if *demo_cards {
                let people = machi_portal::signing::demo_people();
                let cards = tokio::task::spawn_blocking(move || {
                    machi_portal::signing::DemoCards::issue(&people, chrono::Utc::now())
                })
                .await?
                .map_err(|e| anyhow::anyhow!("demo cards: {e}"))?;
                println!("デモ用カード (DEMO cards, synthetic; never for a real portal):");
                for p in cards.people() {
                    println!("  {} ({})", p.name, p.address);
                }
                config.demo_cards = Some(Arc::new(cards));
            }
            let files = SignatureFiles {
                anchors: sign_anchor.clone(),
                crls: sign_crl.clone(),
            };
            if !files.anchors.is_empty() || config.demo_cards.is_some() {
                let (extra_anchors, extra_crls) = match &config.demo_cards {
                    Some(d) => (vec![d.ca_der().to_vec()], vec![d.crl_der().to_vec()]),
                    None => (vec![], vec![]),
                };
                let signing = Signing::load(files, extra_anchors, extra_crls)
                    .map_err(|e| anyhow::anyhow!("{}\n{}", e.message_ja(), e.message_en()))?;
                config.signing = Some(Arc::new(signing));
            } else if !files.crls.is_empty() {
                anyhow::bail!("--sign-crl is given but no --sign-anchor");
            }
            if let Some(signing) = config.signing.clone() {
                let every = std::time::Duration::from_secs(crl_reload_minutes.max(&1) * 60);
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(every).await;
                        if let Err(e) = signing.reload() {
                            tracing::warn!(error = %e.message_en(), "portal: anchors or CRLs not reloaded; the loaded ones stay");
                        }
                    }
                });
            }
            let portal = Portal::open(db, config)?;
            let addr: SocketAddr = format!("{bind}:{port}")
                .parse()
                .map_err(|e| anyhow::anyhow!("--bind {bind}: {e}"))?;
            let listener = tokio::net::TcpListener::bind(addr).await?;
            println!("machi portal on http://{addr}/ (database {})", db.display());
            axum::serve(listener, machi_portal::router(portal))
                .with_graceful_shutdown(async {
                    let _ = tokio::signal::ctrl_c().await;
                })
                .await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

// ------------------------------------------------------------ back office side

/// One sealed filing as the portal's `/backoffice/filings` lists it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct PulledFiling {
    pub id: String,
    pub tenant: String,
    pub procedure: String,
    pub version: i64,
    pub received_at: String,
    /// Base64 of the HPKE-sealed filing.
    pub sealed: String,
}

/// One published definition, as the portal's `/backoffice/filings` sends
/// it beside the filings made on it (issue 11, item 1): the exact text the
/// tenant published for (procedure, version).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct PulledDefinition {
    pub tenant: String,
    pub procedure: String,
    pub version: i64,
    pub source: String,
}

/// Why a published definition was not imported (nothing of it is stored;
/// the filings made on it are refused: `definition_invalid` deferred,
/// as a newer machi-procedures may read it, the others quarantined).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedDefinition {
    pub tenant: String,
    pub procedure: String,
    pub version: i64,
    /// `definition_invalid` (does not validate), `definition_mismatch`
    /// (its text names another procedure or version than the listing),
    /// `definition_conflict` (another text is already known for this
    /// version: a published version never changes).
    pub code: &'static str,
    pub ja: String,
    pub en: String,
}

/// Why one pulled filing was not imported. What becomes of it depends on
/// whether it can ever become acceptable ([`Refused::disposition`]): one
/// that cannot, of a tenant this back office serves, is recorded once
/// ([`crate::store::portal_refusals`]) and acknowledged to the portal as
/// refused (quarantined: the portal drops its sealed copy and tells the
/// citizen, and never offers it again); one that may pass once something
/// is fixed here is deferred (offered after newer filings,
/// [`ImportOutcome::defer`]) and quarantined only when it still fails
/// [`QUARANTINE_AFTER_SECS`] after the first time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub portal_id: String,
    /// A stable code: `not_base64`, `does_not_open`, `not_json`,
    /// `unknown_format`, `listing_mismatch`, `reserved_id`, `bad_tenant`,
    /// `unknown_tenant`, `replayed`, `definition_refused`,
    /// `definition_invalid`, `unknown_definition`, `answers_invalid`,
    /// `internal`.
    pub code: &'static str,
    pub ja: String,
    pub en: String,
    /// The 受付番号, when the filing opened.
    pub receipt: Option<String>,
}

/// A refused filing still failing this long after it was first deferred
/// is quarantined (7 days: long enough to notice and fix a key or an
/// upgrade; the citizen is not kept waiting for weeks).
pub const QUARANTINE_AFTER_SECS: i64 = 7 * 86_400;

/// What becomes of a refused filing ([`Refused::disposition`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// It can never become acceptable (it names another tenant, procedure
    /// or version than the listing, uses the counter's reserved id, its
    /// signature was used before, its definition's text conflicts with
    /// the published one): quarantined at once.
    Quarantine,
    /// It may pass once something is fixed here: the back office's key
    /// (`does_not_open` cannot tell a rotated or misconfigured key from
    /// tampering), an older machi-procedures or portal format
    /// (`not_base64`, `not_json`, `unknown_format`, `definition_invalid`,
    /// `answers_invalid`), a definition not known here
    /// (`unknown_definition`). Deferred; quarantined only after
    /// [`QUARANTINE_AFTER_SECS`].
    Grace,
    /// Not for this back office to decide (a tenant it does not serve, an
    /// internal error): deferred, never quarantined.
    Defer,
}

impl Refused {
    /// What becomes of it ([`Disposition`]).
    pub fn disposition(&self) -> Disposition {
        match self.code {
            "listing_mismatch" | "reserved_id" | "replayed" | "definition_refused" => {
                Disposition::Quarantine
            }
            "not_base64" | "does_not_open" | "not_json" | "unknown_format"
            | "definition_invalid" | "unknown_definition" | "answers_invalid" => Disposition::Grace,
            _ => Disposition::Defer,
        }
    }

    /// The reason the citizen is told when it is quarantined, as the
    /// portal's word (`unreadable`, `replayed`, `procedure`, `answers`).
    pub fn citizen_reason(&self) -> &'static str {
        match self.code {
            "replayed" => "replayed",
            "definition_refused" | "definition_invalid" | "unknown_definition" => "procedure",
            "answers_invalid" => "answers",
            _ => "unreadable",
        }
    }
}

/// An import refusal's code ([`Refused::code`]) in words, for staff
/// pages (the access log); None for a code it does not know.
pub fn refusal_words(code: &str) -> Option<(&'static str, &'static str)> {
    Some(match code {
        "not_base64" | "not_json" | "does_not_open" => {
            ("申請のデータを開けない", "the filing does not open")
        }
        "unknown_format" => (
            "この基幹システムが読めない形式",
            "a format this back office cannot read",
        ),
        "listing_mismatch" => (
            "ポータルの一覧と申請の内容が合わない",
            "the filing does not match the portal's listing",
        ),
        "reserved_id" => (
            "窓口の申請のための番号を使っている",
            "it uses the counter's reserved id",
        ),
        "bad_tenant" | "unknown_tenant" => (
            "この基幹システムが扱わない団体の申請",
            "a tenant this back office does not serve",
        ),
        "replayed" => (
            "電子署名が別の申請で使用済み",
            "the signature was used for another filing",
        ),
        "definition_refused" | "definition_invalid" => (
            "手続定義を取り込めなかった",
            "its procedure definition was refused",
        ),
        "unknown_definition" => (
            "この基幹システムが知らない手続定義",
            "a procedure definition this back office does not know",
        ),
        "answers_invalid" => (
            "回答が手続の決まりに合わない",
            "the answers break the procedure's rules",
        ),
        "internal" => ("内部エラー", "an internal error"),
        _ => return None,
    })
}

/// A refused filing the portal is told about (the quarantine
/// acknowledgement): `reason` is the citizen's reason word.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Quarantined {
    pub id: String,
    pub reason: &'static str,
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportOutcome {
    /// Stored now.
    pub imported: usize,
    /// Already stored by an earlier import (nothing written again).
    pub already: usize,
    pub refused: Vec<Refused>,
    /// Portal ids safely stored here: the portal may delete these.
    pub acknowledge: Vec<String>,
    /// Of those stored now: signatures that verified here, and signed
    /// filings whose signature did not (stored with the reason).
    pub signatures_valid: usize,
    pub signatures_failed: usize,
    /// Published definitions stored now (a version already here with the
    /// same text is not counted).
    pub definitions_imported: usize,
    /// Published definitions refused (their filings are refused too).
    pub definitions_refused: Vec<RefusedDefinition>,
    /// Refused filings recorded here (now or by an earlier pull): the
    /// portal may drop them and tell the citizen.
    pub quarantine: Vec<Quarantined>,
    /// Of those, recorded now.
    pub refusals_recorded: usize,
    /// Refused filings that may pass later deferred for the first time
    /// now (`portal_deferrals`).
    pub deferrals_recorded: usize,
    /// What the portal said it dropped (stored or refused filings) in its
    /// answer to the acknowledgement; None when it did not say (an older
    /// portal, or nothing was acknowledged).
    pub portal_dropped: Option<usize>,
    /// Refused filings that may pass later: the portal keeps them and
    /// offers them after the others.
    pub defer: Vec<String>,
    /// Filings in the pull.
    pub pulled: usize,
}

fn refuse(p: &PulledFiling, code: &'static str, ja: &str, en: &str) -> Refused {
    Refused {
        portal_id: p.id.clone(),
        code,
        ja: ja.to_owned(),
        en: en.to_owned(),
        receipt: None,
    }
}

/// The definition a pulled filing is checked against.
#[derive(Clone)]
enum DefFor {
    /// Known (delivered with this pull, stored before, or shipped).
    Check(Arc<Definition>),
    /// Neither delivered, stored nor shipped (or a stored text no longer
    /// parses): the answers cannot be checked, so the filing is refused.
    /// The procedure's title (ja, en) from another version, when one is
    /// known (staff read it instead of the procedure id).
    Unknown(Option<Arc<(String, String)>>),
    /// Not looked at here: the tenant is unknown, or the definition was
    /// refused (the filing is refused for that).
    Skip,
}

/// Whether a shipped definition with this id and version asks for a
/// signature (the back office's own copy; a tenant's own procedure's
/// definition comes with the pull, [`import_with_definitions`]).
fn shipped_needs_signature(procedure: &str, version: i64) -> bool {
    use crate::store::procedure_definitions as defs;
    defs::shipped_source(procedure, version)
        .and_then(|src| defs::parsed(src).ok())
        .is_some_and(|d| d.identity() == machi_procedures::Identity::Signature)
}

/// A signature check to store beside a filing, with its replay keys.
struct SigRecord {
    nonce: Option<String>,
    content_sha256: Option<String>,
    check: crate::store::portal_signatures::SignatureCheck,
}

/// Checks a filing's signature again, here, with the back office's own
/// trust anchors and CRLs (issue 11, item 3: the back office never trusts
/// the portal's check). None: the filing needs no signature and has none.
fn check_signature(
    signing: Option<&Signing>,
    filing: &serde_json::Value,
    needs_signature: bool,
    now: i64,
) -> Option<SigRecord> {
    use crate::store::portal_signatures::{SignatureCheck, result};
    use base64::Engine as _;
    use machi_domain::error::Localized;
    let sig = &filing["signature"];
    let demo = sig["demo"].as_bool().unwrap_or(false);
    let failed = |code: &str, ja: String, en: String| SignatureCheck {
        result: code.to_owned(),
        message_ja: ja,
        message_en: en,
        certificate: None,
        signing_time: None,
        demo,
        checked_at: now,
    };
    if sig.is_null() {
        return needs_signature.then(|| SigRecord {
            nonce: None,
            content_sha256: None,
            check: failed(
                result::MISSING,
                "この手続には電子署名が必要ですが、申請に署名がありません。".into(),
                "This procedure needs a signature, and the filing carries none.".into(),
            ),
        });
    }
    let sc = &filing["signed_content"];
    let nonce = sc["nonce"].as_str().map(str::to_owned);
    let payload = machi_portal::signing::payload_of(sc);
    let cms = sig["cms"]
        .as_str()
        .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok());
    let (Some(payload), Some(cms)) = (payload, cms) else {
        return Some(SigRecord {
            nonce,
            content_sha256: None,
            check: failed(
                "signature_bad_structure",
                "署名付きの申請の形式が正しくありません（署名番号か署名データがありません）。"
                    .into(),
                "The signed filing is malformed (no signing nonce or no signature data).".into(),
            ),
        });
    };
    let canonical = match payload.canonical_bytes() {
        Ok(c) => c,
        Err(e) => {
            return Some(SigRecord {
                nonce,
                content_sha256: None,
                check: failed(e.code(), e.message_ja(), e.message_en()),
            });
        }
    };
    let content_sha256 = Some(hex::encode(Sha256::digest(&canonical)));
    let Some(signing) = signing else {
        return Some(SigRecord {
            nonce,
            content_sha256,
            check: failed(
                result::NOT_CHECKED,
                "基幹側に信頼する認証局が設定されていないため、署名を検証していません。".into(),
                "No trust anchor is configured in the back office: the signature was not checked."
                    .into(),
            ),
        });
    };
    let at = chrono::DateTime::<chrono::Utc>::from_timestamp(now, 0).unwrap_or_default();
    let check = match signing.verifier().verify(&cms, Some(&canonical), at) {
        Ok(v) => SignatureCheck {
            result: result::VALID.to_owned(),
            message_ja: String::new(),
            message_en: String::new(),
            certificate: Some(v.certificate),
            signing_time: Some(v.signing_time.to_rfc3339()),
            demo,
            checked_at: now,
        },
        Err(e) => failed(e.code(), e.message_ja(), e.message_en()),
    };
    Some(SigRecord {
        nonce,
        content_sha256,
        check,
    })
}

enum Stored {
    New { signature_valid: Option<bool> },
    Already,
    Replay { earlier_receipt: String },
}

/// Opens, checks and stores pulled filings; the back office never trusts
/// the portal: a filing that does not open with the back office's key, or
/// whose sealed content names another tenant, procedure or version than
/// the portal's listing, or a tenant this back office does not serve, is
/// refused (and not acknowledged). A signed filing's signature is verified
/// again here against `signing` (the back office's own anchors and CRLs)
/// and the result stored with it (valid, or why not: a filing with a
/// failed signature is kept, flagged, for the clerk to reject); a signing
/// nonce or signed content already imported with another filing is a
/// replay, refused with nothing written. Importing the same filing again
/// stores nothing new. The accepted filings of one call are stored in one
/// transaction per tenant (all or none), then listed for acknowledgement.
/// `now`: Unix seconds (also the verification time).
pub async fn import(
    store: &crate::store::Store,
    key: &OpeningKey,
    signing: Option<&Signing>,
    pulled: &[PulledFiling],
    now: i64,
) -> Result<ImportOutcome, crate::store::StoreError> {
    import_with_definitions(store, key, signing, pulled, &[], now).await
}

type DefKey = (String, String, i64);
/// A procedure's title (ja, en), when some version of it is known.
type TitleOf = Option<Arc<(String, String)>>;

/// Validates and stores the published definitions of a pull (issue 11,
/// item 1), one transaction per tenant. Returns the definitions that
/// passed (by tenant, procedure, version) and the keys refused with why.
async fn import_definitions(
    store: &crate::store::Store,
    definitions: &[PulledDefinition],
    known_tenants: &mut std::collections::HashMap<MunicipalityCode, bool>,
    now: i64,
    out: &mut ImportOutcome,
) -> Result<
    (
        std::collections::HashMap<DefKey, Arc<Definition>>,
        std::collections::HashMap<DefKey, RefusedDefinition>,
    ),
    crate::store::StoreError,
> {
    use crate::store::procedure_definitions::{self as defs, Stored as DefStored};
    let mut good: std::collections::HashMap<DefKey, Arc<Definition>> = Default::default();
    let mut bad: std::collections::HashMap<DefKey, RefusedDefinition> = Default::default();
    let mut by_tenant: std::collections::BTreeMap<
        MunicipalityCode,
        Vec<(DefKey, Arc<Definition>, String)>,
    > = Default::default();
    for d in definitions {
        let k = (d.tenant.clone(), d.procedure.clone(), d.version);
        if good.contains_key(&k) || bad.contains_key(&k) {
            continue;
        }
        let refused = |code: &'static str, ja: String, en: String| RefusedDefinition {
            tenant: d.tenant.clone(),
            procedure: d.procedure.clone(),
            version: d.version,
            code,
            ja,
            en,
        };
        let Ok(tenant) = d.tenant.parse::<MunicipalityCode>() else {
            // Its filings are refused as `bad_tenant`.
            continue;
        };
        let known = match known_tenants.get(&tenant) {
            Some(k) => *k,
            None => {
                let k = store.get_tenant(&tenant).await?.is_some();
                known_tenants.insert(tenant.clone(), k);
                k
            }
        };
        if !known {
            // Its filings are refused as `unknown_tenant`; nothing stored.
            continue;
        }
        let def = match defs::parsed(&d.source) {
            Ok(def) => def,
            Err(r) => {
                bad.insert(
                    k,
                    refused(
                        "definition_invalid",
                        format!(
                            "手続定義「{}」版{}が検証を通りません：{}",
                            d.procedure,
                            d.version,
                            r.message_ja()
                        ),
                        format!(
                            "procedure definition {} version {} does not validate: {}",
                            d.procedure,
                            d.version,
                            r.message_en()
                        ),
                    ),
                );
                continue;
            }
        };
        if def.id() != d.procedure || i64::from(def.version()) != d.version {
            bad.insert(
                k,
                refused(
                    "definition_mismatch",
                    format!(
                        "手続定義の本文（{} 版{}）がポータルの一覧（{} 版{}）と一致しません。",
                        def.id(),
                        def.version(),
                        d.procedure,
                        d.version
                    ),
                    format!(
                        "the definition's text ({} version {}) does not match the portal's listing ({} version {})",
                        def.id(),
                        def.version(),
                        d.procedure,
                        d.version
                    ),
                ),
            );
            continue;
        }
        by_tenant
            .entry(tenant)
            .or_default()
            .push((k, def, d.source.clone()));
    }
    for (tenant, list) in by_tenant {
        let results = store
            .write(Some(&tenant), {
                let tenant = tenant.clone();
                let list = list.clone();
                move |tx| -> Result<Vec<DefStored>, crate::store::StoreError> {
                    list.iter()
                        .map(|(_, def, src)| defs::store(tx, &tenant, def, src, now))
                        .collect()
                }
            })
            .await?;
        for ((k, def, _), r) in list.into_iter().zip(results) {
            match r {
                DefStored::New => {
                    out.definitions_imported += 1;
                    good.insert(k, def);
                }
                DefStored::Same => {
                    good.insert(k, def);
                }
                DefStored::Conflict => {
                    let title = def.procedure.title.ja.clone();
                    bad.insert(
                        k.clone(),
                        RefusedDefinition {
                            tenant: k.0.clone(),
                            procedure: k.1.clone(),
                            version: k.2,
                            code: "definition_conflict",
                            ja: format!(
                                "団体{}の手続「{title}」の第{}版は、すでに別の内容で取り込まれています。公開済みの版は変えられないため、この定義とこの版の申請は取り込みませんでした（申請は受付できなかった申請として記録し、ポータルが申請者に知らせます）。",
                                k.0, k.2
                            ),
                            en: format!(
                                "tenant {} procedure {} version {} is already known with a different text; a published version never changes, so this definition and the filings made on it were not imported (the filings are recorded as refused, and the portal tells the applicants)",
                                k.0, k.1, k.2
                            ),
                        },
                    );
                }
            }
        }
    }
    for r in bad.values() {
        tracing::warn!(tenant = %r.tenant, procedure = %r.procedure, version = r.version, code = r.code, reason = %r.en, "portal import: a procedure definition was refused");
    }
    let mut refused: Vec<RefusedDefinition> = bad.values().cloned().collect();
    refused.sort_by(|a, b| {
        (&a.tenant, &a.procedure, a.version).cmp(&(&b.tenant, &b.procedure, b.version))
    });
    out.definitions_refused.extend(refused);
    Ok((good, bad))
}

/// [`import`], with the published definitions the portal sent beside the
/// filings (issue 11, item 1): each is validated by `machi-procedures`
/// and stored per tenant and version first; a filing whose definition
/// was refused is refused too ([`Refused::disposition`]), so nothing is
/// imported that the back office cannot read with its labels.
pub async fn import_with_definitions(
    store: &crate::store::Store,
    key: &OpeningKey,
    signing: Option<&Signing>,
    pulled: &[PulledFiling],
    definitions: &[PulledDefinition],
    now: i64,
) -> Result<ImportOutcome, crate::store::StoreError> {
    import_inner(store, key, signing, pulled, definitions, now, Mode::Pull).await
}

/// What an import is for.
#[derive(Clone, Copy)]
enum Mode<'a> {
    /// A pull: refusals are deferred or quarantined ([`quarantine`]).
    Pull,
    /// A quarantined filing imported again ([`reimport_refused`]):
    /// refusals are not recorded again; with a log, a filing stored now
    /// gets its access-log entry and its status push (`received`) in the
    /// same transaction ([`reimport_refused_logged`]).
    Reimport(Option<&'a ReimportLog>),
}

/// The access-log entry of a staff re-import ([`reimport_refused_logged`]):
/// who, from where, and when (microseconds, as the log keeps time). Its
/// target and detail are filled with the filing stored.
#[derive(Debug, Clone)]
pub struct ReimportLog {
    pub entry: crate::store::records::AuditEntry,
    pub at_micros: i64,
}

/// [`import_with_definitions`]; `mode`: whether refusals are deferred or
/// quarantined ([`quarantine`]); not when a quarantined filing is
/// imported again ([`reimport_refused`]).
async fn import_inner(
    store: &crate::store::Store,
    key: &OpeningKey,
    signing: Option<&Signing>,
    pulled: &[PulledFiling],
    definitions: &[PulledDefinition],
    now: i64,
    mode: Mode<'_>,
) -> Result<ImportOutcome, crate::store::StoreError> {
    let mut out = ImportOutcome::default();
    let mut known_tenants = std::collections::HashMap::new();
    let (good_defs, bad_defs) =
        import_definitions(store, definitions, &mut known_tenants, now, &mut out).await?;
    // The definition each filing names: the one that arrived with it,
    // else one stored by an earlier pull, else a shipped one (issue 11:
    // the answers are checked against it, and whether a signature is
    // needed comes from it).
    let mut def_for: std::collections::HashMap<DefKey, Result<Arc<Definition>, TitleOf>> =
        Default::default();
    for p in pulled {
        let k = (p.tenant.clone(), p.procedure.clone(), p.version);
        if def_for.contains_key(&k) || bad_defs.contains_key(&k) {
            continue;
        }
        if let Some(d) = good_defs.get(&k) {
            def_for.insert(k, Ok(d.clone()));
            continue;
        }
        let Ok(tenant) = p.tenant.parse::<MunicipalityCode>() else {
            continue;
        };
        if !tenant_known(store, &mut known_tenants, &tenant).await? {
            continue;
        }
        let d = store
            .read(Some(&tenant), {
                let (t, proc_id, version) = (tenant.clone(), p.procedure.clone(), p.version);
                move |tx| -> Result<Result<Arc<Definition>, TitleOf>, crate::store::StoreError> {
                    use crate::store::procedure_definitions as defs;
                    if let Some(d) = defs::lookup(tx, &t, &proc_id, version)? {
                        return Ok(Ok(d));
                    }
                    // Another version's title, for the staff's message.
                    Ok(Err(defs::all(tx, &t)?
                        .into_iter()
                        .find(|d| d.id() == proc_id)
                        .map(|d| {
                            Arc::new((
                                d.procedure.title.ja.clone(),
                                d.procedure
                                    .title
                                    .get(machi_procedures::Lang::En)
                                    .to_string(),
                            ))
                        })))
                }
            })
            .await?;
        def_for.insert(k, d);
    }
    let def_of = |p: &PulledFiling| -> DefFor {
        match def_for.get(&(p.tenant.clone(), p.procedure.clone(), p.version)) {
            Some(Ok(d)) => DefFor::Check(d.clone()),
            Some(Err(title)) => DefFor::Unknown(title.clone()),
            None => DefFor::Skip,
        }
    };
    let needs = |d: &DefFor, p: &PulledFiling| match d {
        DefFor::Check(d) => d.identity() == machi_procedures::Identity::Signature,
        _ => shipped_needs_signature(&p.procedure, p.version),
    };
    let (needs, def_of) = (&needs, &def_of);
    // Opening and verifying are CPU work with no shared state: spread
    // over the cores (each filing's signature check is most of an
    // import's cost), in order.
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8)
        .min(pulled.len().div_ceil(16).max(1));
    let per = pulled.len().div_ceil(threads).max(1);
    let prechecked: Vec<Result<(MunicipalityCode, Checked), Refused>> = if threads == 1 {
        pulled
            .iter()
            .map(|p| {
                let d = def_of(p);
                precheck(key, signing, p, needs(&d, p), &d, now)
            })
            .collect()
    } else {
        std::thread::scope(|sc| {
            let parts: Vec<_> = pulled
                .chunks(per)
                .map(|part| {
                    sc.spawn(move || {
                        part.iter()
                            .map(|p| {
                                let d = def_of(p);
                                precheck(key, signing, p, needs(&d, p), &d, now)
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            parts
                .into_iter()
                .zip(pulled.chunks(per))
                .flat_map(|(h, part)| {
                    h.join().unwrap_or_else(|_| {
                        part.iter()
                            .map(|p| {
                                Err(refuse(
                                    p,
                                    "internal",
                                    "申請の確認中に内部エラーが起きました。",
                                    "an internal error occurred while checking the filing",
                                ))
                            })
                            .collect()
                    })
                })
                .collect()
        })
    };
    let mut checked: std::collections::BTreeMap<MunicipalityCode, Vec<Checked>> =
        std::collections::BTreeMap::new();
    for (p, r) in pulled.iter().zip(prechecked) {
        let (tenant, c) = match r {
            Ok(x) => x,
            Err(refused) => {
                out.refused.push(refused);
                continue;
            }
        };
        if !tenant_known(store, &mut known_tenants, &tenant).await? {
            out.refused.push(refuse(
                p,
                "unknown_tenant",
                "この団体の申請はこの基幹システムでは受け付けていません。",
                "this back office does not serve the filing's tenant",
            ));
            continue;
        }
        let dk = (p.tenant.clone(), p.procedure.clone(), p.version);
        if let Some(d) = bad_defs.get(&dk) {
            out.refused.push(Refused {
                portal_id: p.id.clone(),
                // A text that does not validate may with a newer
                // machi-procedures here; a conflicting or mismatched one
                // never will.
                code: if d.code == "definition_invalid" {
                    "definition_invalid"
                } else {
                    "definition_refused"
                },
                ja: format!(
                    "この申請の手続定義を取り込めなかったため、申請も取り込みませんでした。{}",
                    d.ja
                ),
                en: format!(
                    "the filing's procedure definition was refused, so the filing was not imported: {}",
                    d.en
                ),
                receipt: Some(c.receipt.clone()),
            });
            continue;
        }
        checked.entry(tenant).or_default().push(c);
    }
    let log = match mode {
        Mode::Reimport(log) => log.cloned(),
        Mode::Pull => None,
    };
    store_checked(store, checked, now, log, &mut out).await?;
    if matches!(mode, Mode::Pull) {
        quarantine(store, pulled, &mut known_tenants, now, &mut out).await?;
    }
    out.pulled = pulled.len();
    Ok(out)
}

/// Imports a quarantined filing again from the sealed bytes kept in
/// `portal_refusals`, once its cause is fixed (the back office's key, its
/// machi-procedures, a definition): the same checks as a pull, with the
/// key and trust anchors given, and the definitions stored here. Imported:
/// `imported` 1 (the refusal row stays, as history). Refused again: the
/// refusal in `refused`, nothing written (it stays quarantined). None:
/// no such quarantined filing. The portal is not told here.
pub async fn reimport_refused(
    store: &crate::store::Store,
    key: &OpeningKey,
    signing: Option<&Signing>,
    tenant: &MunicipalityCode,
    portal_id: &str,
    now: i64,
) -> Result<Option<ImportOutcome>, crate::store::StoreError> {
    reimport_inner(store, key, signing, tenant, portal_id, now, None).await
}

/// [`reimport_refused`] for a staff member (issue 11): when the filing is
/// stored now, the same transaction writes the access-log entry
/// (`filing.reimport`, `log`, with the filing's number) and queues the
/// status `received` for the portal ([`status_changed`]), so the portal
/// stops telling the citizen it was not accepted once the push reaches
/// it. Refused again or imported before: nothing is written here (the
/// caller logs the attempt).
pub async fn reimport_refused_logged(
    store: &crate::store::Store,
    key: &OpeningKey,
    signing: Option<&Signing>,
    tenant: &MunicipalityCode,
    portal_id: &str,
    now: i64,
    log: &ReimportLog,
) -> Result<Option<ImportOutcome>, crate::store::StoreError> {
    reimport_inner(store, key, signing, tenant, portal_id, now, Some(log)).await
}

async fn reimport_inner(
    store: &crate::store::Store,
    key: &OpeningKey,
    signing: Option<&Signing>,
    tenant: &MunicipalityCode,
    portal_id: &str,
    now: i64,
    log: Option<&ReimportLog>,
) -> Result<Option<ImportOutcome>, crate::store::StoreError> {
    let row = store
        .read(Some(tenant), {
            let (t, id) = (tenant.clone(), portal_id.to_owned());
            move |tx| crate::store::portal_refusals::sealed(tx, &t, &id)
        })
        .await?;
    let Some((procedure, version, received_at, sealed)) = row else {
        return Ok(None);
    };
    let pulled = PulledFiling {
        id: portal_id.to_owned(),
        tenant: tenant.as_str().to_owned(),
        procedure,
        version,
        received_at,
        sealed,
    };
    import_inner(
        store,
        key,
        signing,
        std::slice::from_ref(&pulled),
        &[],
        now,
        Mode::Reimport(log),
    )
    .await
    .map(Some)
}

async fn tenant_known(
    store: &crate::store::Store,
    known: &mut std::collections::HashMap<MunicipalityCode, bool>,
    tenant: &MunicipalityCode,
) -> Result<bool, crate::store::StoreError> {
    if let Some(k) = known.get(tenant) {
        return Ok(*k);
    }
    let k = store.get_tenant(tenant).await?.is_some();
    known.insert(tenant.clone(), k);
    Ok(k)
}

/// Sorts the refused filings of a pull ([`Refused::disposition`]): each
/// one that can never pass, of a tenant served here, is recorded once
/// (one transaction per tenant, under the tenant's write lock) and listed
/// for the quarantine acknowledgement; one that may pass later is
/// deferred, its first deferral recorded, and quarantined the same way
/// once it still fails [`QUARANTINE_AFTER_SECS`] after that; the others
/// are deferred (issue 11: a refused filing must not be pulled again and
/// again, starving the good ones, and a good filing must not be dropped
/// for a fault of the back office).
async fn quarantine(
    store: &crate::store::Store,
    pulled: &[PulledFiling],
    known_tenants: &mut std::collections::HashMap<MunicipalityCode, bool>,
    now: i64,
    out: &mut ImportOutcome,
) -> Result<(), crate::store::StoreError> {
    use crate::store::portal_refusals::{self as refusals, NewDeferral, NewRefusal, Recorded};
    if out.refused.is_empty() {
        return Ok(());
    }
    let mut by_id: std::collections::HashMap<&str, &PulledFiling> = Default::default();
    for p in pulled {
        by_id.entry(p.id.as_str()).or_insert(p);
    }
    let mut by_tenant: std::collections::BTreeMap<MunicipalityCode, Vec<(Refused, PulledFiling)>> =
        Default::default();
    let defer = |out: &mut ImportOutcome, id: &str| {
        if !out.defer.iter().any(|d| d == id) {
            out.defer.push(id.to_owned());
        }
    };
    let refused = out.refused.clone();
    for r in &refused {
        let p = by_id.get(r.portal_id.as_str());
        let tenant = p.and_then(|p| p.tenant.parse::<MunicipalityCode>().ok());
        match (r.disposition(), p, tenant) {
            (Disposition::Quarantine | Disposition::Grace, Some(p), Some(t))
                if tenant_known(store, known_tenants, &t).await? =>
            {
                by_tenant
                    .entry(t)
                    .or_default()
                    .push((r.clone(), (*p).clone()));
            }
            _ => defer(out, &r.portal_id),
        }
    }
    /// What became of one refusal.
    enum Done {
        Recorded(Recorded),
        /// Deferred (first deferred now?).
        Deferred(bool),
    }
    for (tenant, list) in by_tenant {
        let results = store
            .write(Some(&tenant), {
                let tenant = tenant.clone();
                let list = list.clone();
                move |tx| -> Result<Vec<Done>, crate::store::StoreError> {
                    // `record` asks whether the filing was imported
                    // meanwhile: under the lock an import cannot race it.
                    crate::store::records::lock_tenant(tx, &tenant)?;
                    let mut done = Vec::with_capacity(list.len());
                    for (r, p) in &list {
                        let mut ja = r.ja.clone();
                        let mut en = r.en.clone();
                        if r.disposition() == Disposition::Grace {
                            let (first, new) = refusals::defer(
                                tx,
                                &tenant,
                                &NewDeferral {
                                    portal_id: &p.id,
                                    code: r.code,
                                    message_ja: &r.ja,
                                    message_en: &r.en,
                                    at: now,
                                },
                            )?;
                            if now - first < QUARANTINE_AFTER_SECS {
                                done.push(Done::Deferred(new));
                                continue;
                            }
                            let days = (now - first) / 86_400;
                            ja.push_str(&format!(
                                "（{days}日のあいだ取り込めなかったため、受付できなかった申請として記録しました。）"
                            ));
                            en.push_str(&format!(
                                " (still refused after {days} days, so recorded as not accepted)"
                            ));
                        }
                        done.push(Done::Recorded(refusals::record(
                            tx,
                            &tenant,
                            &NewRefusal {
                                portal_id: &p.id,
                                receipt: r.receipt.as_deref(),
                                procedure: &p.procedure,
                                version: p.version,
                                received_at: &p.received_at,
                                code: r.code,
                                citizen_reason: r.citizen_reason(),
                                message_ja: &ja,
                                message_en: &en,
                                sealed: &p.sealed,
                                refused_at: now,
                            },
                        )?));
                    }
                    Ok(done)
                }
            })
            .await?;
        for ((r, _), d) in list.into_iter().zip(results) {
            match d {
                Done::Deferred(new) => {
                    if new {
                        out.deferrals_recorded += 1;
                    }
                    defer(out, &r.portal_id);
                }
                Done::Recorded(rec @ (Recorded::New | Recorded::Already)) => {
                    if rec == Recorded::New {
                        out.refusals_recorded += 1;
                    }
                    if !out.quarantine.iter().any(|q| q.id == r.portal_id) {
                        out.quarantine.push(Quarantined {
                            id: r.portal_id.clone(),
                            reason: r.citizen_reason(),
                        });
                    }
                }
                // Stored as imported under this id: the portal keeps it
                // as acknowledged; nothing to tell.
                Done::Recorded(Recorded::Imported) => {}
            }
        }
    }
    Ok(())
}

/// Opens one pulled filing, checks it against the portal's listing and
/// verifies its signature (no database: run on several threads).
fn precheck(
    key: &OpeningKey,
    signing: Option<&Signing>,
    p: &PulledFiling,
    needs_signature: bool,
    def: &DefFor,
    now: i64,
) -> Result<(MunicipalityCode, Checked), Refused> {
    use base64::Engine as _;
    let Ok(sealed) = base64::engine::general_purpose::STANDARD.decode(&p.sealed) else {
        return Err(refuse(
            p,
            "not_base64",
            "封をした申請が読めません（base64）。",
            "the sealed filing is not base64",
        ));
    };
    // The counter's own filings carry this prefix and need no
    // signature (identity seen in person): a portal may never use it.
    if crate::store::portal_filings::filed_at_counter(&p.id) {
        return Err(refuse(
            p,
            "reserved_id",
            "ポータルの申請番号に窓口申請用の番号が使われています。",
            "the portal used an id reserved for filings made at the counter",
        ));
    }
    let Ok(plain) = key.open(&sealed, &p.id) else {
        return Err(refuse(
            p,
            "does_not_open",
            "申請を開けません：別の鍵で封をされたか、改ざんされています。",
            "the filing does not open: sealed to another key, or altered",
        ));
    };
    let Ok(filing) = serde_json::from_slice::<serde_json::Value>(&plain) else {
        return Err(refuse(
            p,
            "not_json",
            "申請の形式が正しくありません。",
            "the filing is not valid JSON",
        ));
    };
    let sc = &filing["signed_content"];
    let receipt = filing["receipt"].as_str().unwrap_or("").to_owned();
    if filing["format"] != "machi-portal-filing/1" {
        return Err(refuse(
            p,
            "unknown_format",
            "申請の形式（版）がこの基幹システムの知らないものです。ポータルが新しい版なら、基幹システムを更新すると取り込めます。",
            "the filing's format (version) is not one this back office knows; if the portal is newer, updating the back office lets it be imported",
        ));
    }
    if sc["tenant"] != p.tenant.as_str()
        || sc["procedure"] != p.procedure.as_str()
        || sc["version"] != p.version
        || receipt.is_empty()
    {
        return Err(refuse(
            p,
            "listing_mismatch",
            "申請の中身がポータルの一覧（団体・手続・版）と一致しません。",
            "the filing does not match the portal's listing (tenant, procedure, version)",
        ));
    }
    let Ok(tenant) = p.tenant.parse::<MunicipalityCode>() else {
        return Err(refuse(
            p,
            "bad_tenant",
            "団体コードが正しくありません。",
            "the tenant code is not valid",
        ));
    };
    let with_receipt = |code: &'static str, ja: String, en: String| Refused {
        portal_id: p.id.clone(),
        code,
        ja,
        en,
        receipt: Some(receipt.clone()),
    };
    match def {
        DefFor::Skip => {}
        DefFor::Unknown(title) => {
            let (ja, en) = match title.as_deref() {
                Some((ja, en)) => (format!("手続「{ja}」"), format!("procedure \"{en}\"")),
                None => (
                    "この基幹システムの知らない手続".to_owned(),
                    "a procedure this back office does not know".to_owned(),
                ),
            };
            return Err(with_receipt(
                "unknown_definition",
                format!(
                    "この申請の手続定義（{ja} 第{}版）が基幹側になく、ポータルからも届いていないため、回答を確かめられません。まだ取り込んでいません（ポータルから定義が届くか、基幹システムを更新すると取り込めます）。",
                    p.version
                ),
                format!(
                    "the filing's procedure definition ({en}, version {}) is neither known here nor delivered by the portal, so its answers cannot be checked; not imported yet (it can be once the portal delivers the definition or the back office is updated)",
                    p.version
                ),
            ));
        }
        DefFor::Check(d) => check_answers(d, &filing, p)
            .map_err(|(ja, en)| with_receipt("answers_invalid", ja, en))?,
    }
    let sig = check_signature(signing, &filing, needs_signature, now);
    Ok((
        tenant,
        Checked {
            portal_id: p.id.clone(),
            receipt,
            procedure: p.procedure.clone(),
            version: p.version,
            received_at: p.received_at.clone(),
            signed: !filing["signature"].is_null(),
            plain,
            sig,
        },
    ))
}

/// Checks a filing's answers again against the published definition
/// version it names (issue 11: the back office never trusts the portal),
/// with the validators of `machi-procedures`, date windows counted from
/// the day the portal received it (Japan time). (ja, en) of the first
/// problem.
fn check_answers(
    def: &Definition,
    filing: &serde_json::Value,
    p: &PulledFiling,
) -> Result<(), (String, String)> {
    let day = filing["submitted_at"]
        .as_str()
        .or(Some(p.received_at.as_str()))
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&crate::service::clock::jst()).date_naive());
    let Some(day) = day else {
        return Err((
            "申請の受付日時が読めないため、回答を確かめられません。取り込みませんでした。".into(),
            "the filing's time of receipt cannot be read, so its answers cannot be checked; not imported".into(),
        ));
    };
    let ctx = machi_procedures::CheckContext::new(day);
    def.check_filed(&filing["signed_content"]["answers"], &ctx)
        .map_err(|e| {
            (
                format!(
                    "申請の回答が手続「{}」第{}版の決まりに合いません：{} 取り込みませんでした。",
                    def.procedure.title.ja,
                    def.version(),
                    e.message.ja
                ),
                format!(
                    "the filing's answers do not satisfy procedure {} version {}: {}; not imported",
                    def.procedure.title.get(machi_procedures::Lang::En),
                    def.version(),
                    e.message.en.as_deref().unwrap_or(&e.message.ja)
                ),
            )
        })
}

/// A pulled filing that opened and passed the checks, ready to store.
struct Checked {
    portal_id: String,
    receipt: String,
    procedure: String,
    version: i64,
    received_at: String,
    plain: Vec<u8>,
    sig: Option<SigRecord>,
    /// The filing carries a signature (申請管理 filters on it).
    signed: bool,
}

/// Stores checked filings of one tenant, in order, as [`store_one`] would
/// one by one, but in a handful of statements for the whole batch (issue
/// 11, item 10: on PostgreSQL every statement is a round trip, and three
/// per filing bounded the import): the portal ids already here, the
/// stored signatures holding any of the batch's nonces or signed-content
/// digests, the next filing number, then one multi-row INSERT of the new
/// filings and one of their signature checks. A filing whose nonce or
/// signed content was imported with another filing — before, or earlier
/// in this batch — is a replay (nothing written); one already here is
/// stored once.
fn store_batch(
    tx: &mut crate::store::Tx<'_>,
    tenant: &MunicipalityCode,
    filings: &[Checked],
    now: i64,
) -> Result<Vec<(String, String, Stored)>, crate::store::StoreError> {
    use crate::store::{portal_filings, portal_signatures, records};
    use std::collections::HashMap;
    // The tenant's write lock first (PostgreSQL: a row lock held to the
    // commit): the next filing number is MAX + 1 and the INSERT has no
    // ON CONFLICT, so a counter filing or another server's pull of the
    // same tenant waits instead of failing this batch.
    records::lock_tenant(tx, tenant)?;
    let ids: Vec<&str> = filings.iter().map(|c| c.portal_id.as_str()).collect();
    let mut here = portal_filings::existing_portal_ids(tx, tenant, &ids)?;
    let nonces: Vec<&str> = filings
        .iter()
        .filter_map(|c| c.sig.as_ref()?.nonce.as_deref())
        .collect();
    let digests: Vec<&str> = filings
        .iter()
        .filter_map(|c| c.sig.as_ref()?.content_sha256.as_deref())
        .collect();
    // key (`nonce`, or `sha:` + digest) → [(receipt, portal id)] of the
    // filings holding it: stored ones, then this batch's new ones.
    let mut holders: HashMap<String, Vec<(String, String)>> = HashMap::new();
    if !nonces.is_empty() || !digests.is_empty() {
        for (k, receipt, portal_id) in
            portal_signatures::replay_candidates(tx, tenant, &nonces, &digests)?
        {
            holders.entry(k).or_default().push((receipt, portal_id));
        }
    }
    let mut out = Vec::with_capacity(filings.len());
    let mut new_rows: Vec<&Checked> = Vec::new();
    for c in filings {
        let keys: Vec<String> = match &c.sig {
            Some(s) => s
                .nonce
                .iter()
                .cloned()
                .chain(s.content_sha256.iter().map(|d| format!("sha:{d}")))
                .collect(),
            None => Vec::new(),
        };
        // The first holder that is another filing, as `replay_of` finds it.
        let earlier = keys.iter().find_map(|k| {
            holders
                .get(k)?
                .iter()
                .find(|(_, pid)| *pid != c.portal_id)
                .map(|(r, _)| r.clone())
        });
        let stored = if let Some(earlier_receipt) = earlier {
            Stored::Replay { earlier_receipt }
        } else if here.contains(&c.portal_id) {
            Stored::Already
        } else {
            here.insert(c.portal_id.clone());
            for k in keys {
                holders
                    .entry(k)
                    .or_default()
                    .push((c.receipt.clone(), c.portal_id.clone()));
            }
            new_rows.push(c);
            Stored::New {
                signature_valid: c.sig.as_ref().map(|s| s.check.is_valid()),
            }
        };
        out.push((c.portal_id.clone(), c.receipt.clone(), stored));
    }
    if new_rows.is_empty() {
        return Ok(out);
    }
    let first = portal_filings::next_filing_id(tx, tenant)?;
    let rows: Vec<portal_filings::NewPortalFiling<'_>> = new_rows
        .iter()
        .map(|c| portal_filings::NewPortalFiling {
            portal_id: &c.portal_id,
            receipt: &c.receipt,
            procedure: &c.procedure,
            version: c.version,
            received_at: &c.received_at,
            imported_at: now,
            filing: &c.plain,
            signed: c.signed,
        })
        .collect();
    portal_filings::insert_many(tx, tenant, &rows, first)?;
    let sigs: Vec<(i64, portal_signatures::NewSignature<'_>)> = new_rows
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            let s = c.sig.as_ref()?;
            Some((
                first + i as i64,
                portal_signatures::NewSignature {
                    nonce: s.nonce.as_deref(),
                    content_sha256: s.content_sha256.as_deref(),
                    check: &s.check,
                },
            ))
        })
        .collect();
    if !sigs.is_empty() {
        portal_signatures::insert_many(tx, tenant, &sigs)?;
    }
    Ok(out)
}

/// Stores checked filings, one transaction per tenant for the whole pull
/// (a commit is a disk sync; all or none), and lists them for
/// acknowledgement only once committed.
async fn store_checked(
    store: &crate::store::Store,
    checked: std::collections::BTreeMap<MunicipalityCode, Vec<Checked>>,
    now: i64,
    log: Option<ReimportLog>,
    out: &mut ImportOutcome,
) -> Result<(), crate::store::StoreError> {
    for (tenant, filings) in checked {
        let results = store
            .write(Some(&tenant), {
                let tenant = tenant.clone();
                let log = log.clone();
                move |tx| {
                    let results = store_batch(tx, &tenant, &filings, now)?;
                    if let Some(log) = &log {
                        reimported(tx, &tenant, &results, now, log)?;
                    }
                    Ok::<_, crate::store::StoreError>(results)
                }
            })
            .await?;
        for (portal_id, receipt, stored) in results {
            match stored {
                Stored::New { signature_valid } => {
                    out.imported += 1;
                    match signature_valid {
                        Some(true) => out.signatures_valid += 1,
                        Some(false) => out.signatures_failed += 1,
                        None => {}
                    }
                    out.acknowledge.push(portal_id);
                }
                Stored::Already => {
                    out.already += 1;
                    out.acknowledge.push(portal_id);
                }
                Stored::Replay { earlier_receipt } => {
                    tracing::warn!(
                        portal_id = %portal_id,
                        "portal import: a replayed signature was refused"
                    );
                    out.refused.push(Refused {
                        portal_id,
                        receipt: Some(receipt),
                        code: "replayed",
                        ja: format!(
                            "この申請の署名（署名番号）は、受付番号{earlier_receipt}の申請ですでに取り込まれています。同じ署名の再送として取り込みませんでした。"
                        ),
                        en: format!(
                            "replayed: this filing's signature (signing nonce) was already imported with filing {earlier_receipt}; not imported"
                        ),
                    });
                }
            }
        }
    }
    Ok(())
}

/// In the transaction of a staff re-import: each filing stored now gets
/// its access-log entry and the status `received` queued for the portal.
fn reimported(
    tx: &mut crate::store::Tx<'_>,
    tenant: &MunicipalityCode,
    results: &[(String, String, Stored)],
    now: i64,
    log: &ReimportLog,
) -> Result<(), crate::store::StoreError> {
    for (portal_id, receipt, stored) in results {
        if !matches!(stored, Stored::New { .. }) {
            continue;
        }
        let filing_id = crate::store::portal_filings::id_by_portal(tx, tenant, portal_id)?
            .ok_or_else(|| {
                crate::store::StoreError::Corrupt(format!(
                    "re-imported filing {portal_id} not found after its insert"
                ))
            })?;
        status_changed(tx, tenant, filing_id, "received", None, now)?;
        let mut entry = log.entry.clone();
        entry.target = format!("filing:{filing_id}");
        entry.detail = serde_json::json!({
            "outcome": "imported",
            "filing_id": filing_id,
            "receipt": receipt,
        })
        .to_string();
        crate::store::records::append_next_audit(tx, tenant, log.at_micros, &entry)?;
    }
    Ok(())
}

/// Why a pull did not complete (nothing is acknowledged then; the portal
/// keeps every sealed filing, and the next pull tries again).
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("the portal cannot be reached or answered badly: {0}")]
    Portal(String),
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
}

impl PullError {
    pub fn message_ja(&self) -> String {
        match self {
            PullError::Portal(e) => format!(
                "ポータルに接続できないか、応答が正しくありません（{e}）。何も失われていません。次の取込みで再試行します。"
            ),
            PullError::Store(e) => {
                format!("基幹側のデータベースに書けません（{e}）。ポータルの申請は残っています。")
            }
        }
    }
    pub fn message_en(&self) -> String {
        match self {
            PullError::Portal(e) => format!(
                "The portal cannot be reached or answered badly ({e}). Nothing is lost: the next pull tries again."
            ),
            PullError::Store(e) => format!(
                "The back office database cannot be written ({e}). The filings stay on the portal."
            ),
        }
    }
}

/// One pull: fetch up to `limit` sealed filings from the portal, import
/// them, and acknowledge the ones stored here so the portal deletes its
/// sealed copies.
#[allow(clippy::too_many_arguments)]
pub async fn pull_once(
    client: &reqwest::Client,
    portal_url: &str,
    token: &str,
    store: &crate::store::Store,
    key: &OpeningKey,
    signing: Option<&Signing>,
    limit: usize,
    now: i64,
) -> Result<ImportOutcome, PullError> {
    let base = portal_url.trim_end_matches('/');
    let r = client
        .get(format!("{base}/backoffice/filings?limit={limit}"))
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| PullError::Portal(e.to_string()))?;
    if !r.status().is_success() {
        return Err(PullError::Portal(format!("HTTP {}", r.status())));
    }
    let body = r
        .bytes()
        .await
        .map_err(|e| PullError::Portal(e.to_string()))?;
    #[derive(serde::Deserialize)]
    struct List {
        filings: Vec<PulledFiling>,
        /// Absent from a portal older than migration 23's back office.
        #[serde(default)]
        definitions: Vec<PulledDefinition>,
    }
    let list: List = serde_json::from_slice(&body).map_err(|e| PullError::Portal(e.to_string()))?;
    let mut outcome =
        import_with_definitions(store, key, signing, &list.filings, &list.definitions, now).await?;
    if !outcome.acknowledge.is_empty()
        || !outcome.quarantine.is_empty()
        || !outcome.defer.is_empty()
    {
        // Stored filings (the portal drops its sealed copies), refused
        // ones recorded here (the portal drops them too and tells the
        // citizen why), and refused ones that may pass later (offered
        // after the others). An older portal reads `ids` only.
        let r = client
            .post(format!("{base}/backoffice/ack"))
            .bearer_auth(token)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(
                serde_json::json!({
                    "ids": outcome.acknowledge,
                    "refused": outcome.quarantine,
                    "deferred": outcome.defer,
                })
                .to_string(),
            )
            .send()
            .await
            .map_err(|e| PullError::Portal(e.to_string()))?;
        if !r.status().is_success() {
            // Stored (and refusals recorded) here already; the next pull
            // imports nothing new and acknowledges again.
            return Err(PullError::Portal(format!(
                "acknowledge: HTTP {}",
                r.status()
            )));
        }
        // `{"deleted": n, "refused": m, …}`: what the portal dropped (an
        // older portal says `deleted` only: it ignored `refused`).
        if let Ok(body) = r.bytes().await
            && let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body)
            && let Some(deleted) = v["deleted"].as_u64()
        {
            let refused = v["refused"].as_u64().unwrap_or(0);
            outcome.portal_dropped = Some((deleted + refused) as usize);
        }
    }
    Ok(outcome)
}

/// Tells the portal where a filing stands (received, under_review,
/// correction_requested, approved, rejected), with the reason the citizen
/// reads on the status page. The portal keeps the reason encrypted under
/// the receipt number.
pub async fn push_status(
    client: &reqwest::Client,
    portal_url: &str,
    token: &str,
    receipt: &str,
    status: &str,
    reason: Option<&str>,
) -> Result<(), PullError> {
    let r = client
        .post(format!(
            "{}/backoffice/status",
            portal_url.trim_end_matches('/')
        ))
        .bearer_auth(token)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(
            serde_json::json!({ "receipt": receipt, "status": status, "reason": reason })
                .to_string(),
        )
        .send()
        .await
        .map_err(|e| PullError::Portal(e.to_string()))?;
    if r.status().is_success() {
        Ok(())
    } else {
        Err(PullError::Portal(format!("status: HTTP {}", r.status())))
    }
}

// ------------------------------------------------------------ status changes

/// Call this in the transaction that changes a portal filing's status
/// (the inbox: under review, correction requested, approved, rejected):
/// the update for the portal is queued in the same transaction, so it is
/// pushed exactly when the change commits, and kept until the portal has
/// it (the portal being down loses nothing). Then call [`wake`] after the
/// commit to push it now rather than at the next pull.
pub fn status_changed(
    tx: &mut crate::store::Tx<'_>,
    tenant: &MunicipalityCode,
    filing_id: i64,
    status: &str,
    reason: Option<&str>,
    now: i64,
) -> Result<(), crate::store::StoreError> {
    crate::store::portal_pushes::queue(tx, tenant, filing_id, status, reason, now)
}

fn wake_signal() -> &'static tokio::sync::Notify {
    static N: std::sync::OnceLock<tokio::sync::Notify> = std::sync::OnceLock::new();
    N.get_or_init(tokio::sync::Notify::new)
}

/// Asks the pull worker (if one runs in this process) to push queued
/// status updates now.
pub fn wake() {
    wake_signal().notify_one();
}

/// The pull worker's figures, on `/metrics`. No labels: nothing about a
/// tenant or a filing.
pub struct PullCounters {
    /// Pulls that completed.
    pub pulls: prometheus_client::metrics::counter::Counter,
    /// Pulls that failed (the portal unreachable or answering badly, or
    /// the database not writable); retried with backoff.
    pub pull_failures: prometheus_client::metrics::counter::Counter,
    /// Filings stored by an import.
    pub imported: prometheus_client::metrics::counter::Counter,
    /// Filings refused by an import (recorded and quarantined, or left on
    /// the portal when they may pass later).
    pub refused: prometheus_client::metrics::counter::Counter,
    /// Status updates the portal accepted.
    pub statuses_pushed: prometheus_client::metrics::counter::Counter,
    /// Status pushes that failed (kept for later).
    pub status_push_failures: prometheus_client::metrics::counter::Counter,
}

/// This process's [`PullCounters`].
pub fn counters() -> &'static PullCounters {
    static C: std::sync::OnceLock<PullCounters> = std::sync::OnceLock::new();
    C.get_or_init(|| PullCounters {
        pulls: Default::default(),
        pull_failures: Default::default(),
        imported: Default::default(),
        refused: Default::default(),
        statuses_pushed: Default::default(),
        status_push_failures: Default::default(),
    })
}

/// Pushes the status updates queued for `tenant` ([`status_changed`]);
/// each accepted one is removed, each failed one kept (and counted).
/// Returns (pushed, left).
pub async fn push_queued(
    store: &crate::store::Store,
    tenant: &MunicipalityCode,
    client: &reqwest::Client,
    url: &str,
    token: &str,
) -> Result<(usize, usize), PullError> {
    let (mut pushed, mut left) = (0, 0);
    let queued = store
        .read(Some(tenant), {
            let tenant = tenant.clone();
            move |tx| crate::store::portal_pushes::pending(tx, &tenant, 1000)
        })
        .await?;
    for q in queued {
        let r = push_status(
            client,
            url,
            token,
            &q.receipt,
            &q.status,
            q.reason.as_deref(),
        )
        .await;
        let ok = r.is_ok();
        if let Err(e) = r {
            tracing::warn!(error = %e, "portal: a status update was not accepted; kept for later");
            counters().status_push_failures.inc();
            left += 1;
        } else {
            counters().statuses_pushed.inc();
            pushed += 1;
        }
        let (fid, at) = (q.filing_id, q.queued_at);
        store
            .write_quiet(Some(tenant), {
                let tenant = tenant.clone();
                move |tx| -> Result<(), crate::store::StoreError> {
                    if ok {
                        crate::store::portal_pushes::done(tx, &tenant, fid, at)
                    } else {
                        crate::store::portal_pushes::failed(tx, &tenant, fid)
                    }
                }
            })
            .await?;
    }
    Ok((pushed, left))
}

/// The back office's link to the portal: where it is, the pull token, the
/// key that opens sealed filings, and the anchors and CRLs signatures are
/// checked against.
pub struct PortalLink {
    pub client: reqwest::Client,
    pub url: String,
    pub token: String,
    pub key: OpeningKey,
    pub signing: Option<Arc<Signing>>,
    /// Filings per request.
    pub batch: usize,
}

impl std::fmt::Debug for PortalLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortalLink")
            .field("url", &self.url)
            .finish()
    }
}

/// What one [`PortalLink::run_once`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullReport {
    pub imported: usize,
    pub already: usize,
    pub refused: Vec<Refused>,
    pub signatures_valid: usize,
    pub signatures_failed: usize,
    pub statuses_pushed: usize,
    /// Status updates still queued (the portal refused or was unreachable).
    pub statuses_left: usize,
    pub definitions_imported: usize,
    pub definitions_refused: Vec<RefusedDefinition>,
    /// Refused filings recorded here and acknowledged to the portal as
    /// refused (never offered again).
    pub quarantined: usize,
    /// Refused filings left on the portal (they may pass later).
    pub deferred: usize,
    /// Pull requests made.
    pub batches: usize,
}

/// The environment variable with the portal's address (`http://…`).
pub const PORTAL_URL_ENV: &str = "MACHI_PORTAL_URL";
/// The environment variable with the back office's private key (hex, from
/// `machi portal keygen`).
pub const OPENING_KEY_ENV: &str = "MACHI_PORTAL_OPENING_KEY";
/// Trust anchors for signed filings: files (DER or PEM), comma-separated.
pub const SIGN_ANCHORS_ENV: &str = "MACHI_SIGN_ANCHORS";
/// CRLs of those anchors: files (DER or PEM), comma-separated.
pub const SIGN_CRLS_ENV: &str = "MACHI_SIGN_CRLS";

fn paths(list: &str) -> Vec<PathBuf> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .collect()
}

/// Anchors and CRLs from [`SIGN_ANCHORS_ENV`] / [`SIGN_CRLS_ENV`] (None
/// when no anchor is configured).
pub fn signing_from_env() -> anyhow::Result<Option<Arc<Signing>>> {
    let anchors = paths(&std::env::var(SIGN_ANCHORS_ENV).unwrap_or_default());
    let crls = paths(&std::env::var(SIGN_CRLS_ENV).unwrap_or_default());
    if anchors.is_empty() {
        if !crls.is_empty() {
            anyhow::bail!("{SIGN_CRLS_ENV} is set but {SIGN_ANCHORS_ENV} is not");
        }
        return Ok(None);
    }
    let s = Signing::load(SignatureFiles { anchors, crls }, vec![], vec![])
        .map_err(|e| anyhow::anyhow!("{}\n{}", e.message_ja(), e.message_en()))?;
    Ok(Some(Arc::new(s)))
}

impl PortalLink {
    /// From the environment: [`PORTAL_URL_ENV`], [`PULL_TOKEN_ENV`],
    /// [`OPENING_KEY_ENV`] and the signature set-up. None when the portal
    /// URL is not set; an error when it is set and something else is
    /// missing or wrong.
    pub fn from_env() -> anyhow::Result<Option<PortalLink>> {
        let Ok(url) = std::env::var(PORTAL_URL_ENV) else {
            return Ok(None);
        };
        let token = std::env::var(PULL_TOKEN_ENV)
            .map_err(|_| anyhow::anyhow!("{PORTAL_URL_ENV} is set but {PULL_TOKEN_ENV} is not"))?;
        let key = std::env::var(OPENING_KEY_ENV)
            .map_err(|_| anyhow::anyhow!("{PORTAL_URL_ENV} is set but {OPENING_KEY_ENV} is not"))?;
        let key = OpeningKey::from_hex(key.trim())
            .map_err(|e| anyhow::anyhow!("{OPENING_KEY_ENV}: {e}"))?;
        let signing = signing_from_env()?;
        if signing.is_none() {
            tracing::warn!(
                "{SIGN_ANCHORS_ENV} is not set: signed filings are imported as not checked"
            );
        }
        Ok(Some(PortalLink {
            client: crate::service::hooks::http_client(std::time::Duration::from_secs(30))
                .map_err(|e| anyhow::anyhow!("HTTP client: {e}"))?,
            url: url.trim().to_owned(),
            token: token.trim().to_owned(),
            key,
            signing,
            batch: 100,
        }))
    }

    /// Pushes every queued status update of every tenant; each accepted
    /// one is removed, each failed one kept (and counted).
    pub async fn flush_statuses(
        &self,
        store: &crate::store::Store,
    ) -> Result<(usize, usize), PullError> {
        let (mut pushed, mut left) = (0, 0);
        for t in store.list_tenants().await? {
            let (p, l) = push_queued(
                store,
                &t.municipality_code,
                &self.client,
                &self.url,
                &self.token,
            )
            .await?;
            pushed += p;
            left += l;
        }
        Ok((pushed, left))
    }

    /// One scheduled round: pull until the portal has no more filings
    /// (or a batch brings nothing new), then push queued status updates.
    pub async fn run_once(
        &self,
        store: &crate::store::Store,
        now: i64,
    ) -> Result<PullReport, PullError> {
        let mut report = PullReport::default();
        // The anchors' CRLs are read again each round (a new CRL takes
        // effect without a restart; a damaged file keeps the loaded one).
        if let Some(s) = &self.signing
            && let Err(e) = s.reload()
        {
            tracing::warn!(error = %e.message_en(), "portal pull: anchors or CRLs not reloaded; the loaded ones stay");
        }
        // At most 100 batches a round, so a round always ends.
        for _ in 0..100 {
            let o = pull_once(
                &self.client,
                &self.url,
                &self.token,
                store,
                &self.key,
                self.signing.as_deref(),
                self.batch,
                now,
            )
            .await?;
            counters().imported.inc_by(o.imported as u64);
            counters().refused.inc_by(o.refused.len() as u64);
            for r in &o.refused {
                tracing::warn!(portal_id = %r.portal_id, code = r.code, reason = %r.en, "portal: a filing was refused");
            }
            report.imported += o.imported;
            report.already += o.already;
            report.signatures_valid += o.signatures_valid;
            report.signatures_failed += o.signatures_failed;
            report.definitions_imported += o.definitions_imported;
            report.quarantined += o.quarantine.len();
            report.deferred += o.defer.len();
            for d in o.definitions_refused {
                if !report.definitions_refused.contains(&d) {
                    report.definitions_refused.push(d);
                }
            }
            // A full batch that moved something on: the portal may have
            // more. Only what is new counts: filings the portal dropped
            // (stored or quarantined), else — a portal that does not say
            // — filings stored or refusals recorded now, and refusals
            // deferred for the first time (the portal offers them after
            // the others). The same refusals coming back (an older portal
            // ignores `refused`; deferred ones when nothing else is left)
            // end the round instead of pulling a hundred times.
            let progress =
                o.portal_dropped.unwrap_or(o.imported + o.refusals_recorded) + o.deferrals_recorded;
            report.batches += 1;
            let more = o.pulled == self.batch && progress > 0;
            report.refused.extend(o.refused);
            if !more {
                break;
            }
        }
        let (pushed, left) = self.flush_statuses(store).await?;
        report.statuses_pushed = pushed;
        report.statuses_left = left;
        counters().pulls.inc();
        Ok(report)
    }
}

/// The delay before retry `n` (1, 2, …) after failed pulls: doubling from
/// `base`, at most 32 × `base` and at most an hour.
pub fn backoff(base: std::time::Duration, failures: u32) -> std::time::Duration {
    let factor = 1u32 << failures.min(5);
    (base * factor).min(std::time::Duration::from_secs(3600))
}

/// The pull worker beside `machi serve`: a round every `every`; a failed
/// round (portal unreachable, database busy) is logged and retried after
/// a doubling delay, and nothing is lost (the portal keeps what was not
/// acknowledged; queued status updates stay queued). [`wake`] starts a
/// round at once.
pub fn spawn_pull_worker(
    link: Arc<PortalLink>,
    store: crate::store::Store,
    every: std::time::Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut failures: u32 = 0;
        loop {
            let now = chrono::Utc::now().timestamp();
            match link.run_once(&store, now).await {
                Ok(r) => {
                    failures = 0;
                    if r.imported > 0 || !r.refused.is_empty() || r.statuses_pushed > 0 {
                        tracing::info!(
                            imported = r.imported,
                            refused = r.refused.len(),
                            signatures_failed = r.signatures_failed,
                            statuses_pushed = r.statuses_pushed,
                            "portal pull"
                        );
                    }
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    counters().pull_failures.inc();
                    tracing::warn!(error = %e, failures, "portal pull failed; retrying with backoff");
                }
            }
            let wait = if failures == 0 {
                every
            } else {
                backoff(every.min(std::time::Duration::from_secs(30)), failures)
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = wake_signal().notified() => {}
            }
        }
    })
}
