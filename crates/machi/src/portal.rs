//! `machi portal`: the citizen portal as its own process (issue 11).
//!
//! The portal lives in the `machi-portal` crate, which cannot read the
//! registry (it does not depend on this crate); this module only starts it
//! and gives the clerk-administrator's commands: check and publish
//! definitions, make the back office's key pair.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use machi_domain::ids::MunicipalityCode;
use machi_portal::seal::{OpeningKey, RecipientKey};
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
        #[arg(long, default_value_t = 8090, env = "MACHI_PORTAL_PORT")]
        port: u16,
        #[arg(long, default_value = "127.0.0.1", env = "MACHI_PORTAL_BIND")]
        bind: String,
        /// Days a saved draft is kept.
        #[arg(long, default_value_t = 7)]
        draft_days: i64,
    },
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

pub async fn run(args: &PortalArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
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

/// Why one pulled filing was not imported (it stays on the portal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub portal_id: String,
    pub ja: String,
    pub en: String,
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
}

fn refuse(p: &PulledFiling, ja: &str, en: &str) -> Refused {
    Refused {
        portal_id: p.id.clone(),
        ja: ja.to_owned(),
        en: en.to_owned(),
    }
}

/// Opens, checks and stores pulled filings; the back office never trusts
/// the portal: a filing that does not open with the back office's key, or
/// whose sealed content names another tenant, procedure or version than
/// the portal's listing, or a tenant this back office does not serve, is
/// refused (and not acknowledged). Importing the same filing again stores
/// nothing new. Each filing is its own transaction.
pub async fn import(
    store: &crate::store::Store,
    key: &OpeningKey,
    pulled: &[PulledFiling],
    now: i64,
) -> Result<ImportOutcome, crate::store::StoreError> {
    use base64::Engine as _;
    let mut out = ImportOutcome::default();
    for p in pulled {
        let Ok(sealed) = base64::engine::general_purpose::STANDARD.decode(&p.sealed) else {
            out.refused.push(refuse(
                p,
                "封をした申請が読めません（base64）。",
                "the sealed filing is not base64",
            ));
            continue;
        };
        let Ok(plain) = key.open(&sealed, &p.id) else {
            out.refused.push(refuse(
                p,
                "申請を開けません：別の鍵で封をされたか、改ざんされています。",
                "the filing does not open: sealed to another key, or altered",
            ));
            continue;
        };
        let filing: serde_json::Value = match serde_json::from_slice(&plain) {
            Ok(v) => v,
            Err(_) => {
                out.refused.push(refuse(
                    p,
                    "申請の形式が正しくありません。",
                    "the filing is not valid JSON",
                ));
                continue;
            }
        };
        let sc = &filing["signed_content"];
        let receipt = filing["receipt"].as_str().unwrap_or("").to_owned();
        if filing["format"] != "machi-portal-filing/1"
            || sc["tenant"] != p.tenant.as_str()
            || sc["procedure"] != p.procedure.as_str()
            || sc["version"] != p.version
            || receipt.is_empty()
        {
            out.refused.push(refuse(
                p,
                "申請の中身がポータルの一覧（団体・手続・版）と一致しません。",
                "the filing does not match the portal's listing (tenant, procedure, version)",
            ));
            continue;
        }
        let Ok(tenant) = p.tenant.parse::<MunicipalityCode>() else {
            out.refused.push(refuse(
                p,
                "団体コードが正しくありません。",
                "the tenant code is not valid",
            ));
            continue;
        };
        let known = store.get_tenant(&tenant).await?.is_some();
        if !known {
            out.refused.push(refuse(
                p,
                "この団体の申請はこの基幹システムでは受け付けていません。",
                "this back office does not serve the filing's tenant",
            ));
            continue;
        }
        let (id, receipt2, procedure, version, received_at) = (
            p.id.clone(),
            receipt,
            p.procedure.clone(),
            p.version,
            p.received_at.clone(),
        );
        let stored = store
            .write(Some(&tenant), {
                let tenant = tenant.clone();
                move |tx| {
                    crate::store::portal_filings::insert_if_new(
                        tx,
                        &tenant,
                        &crate::store::portal_filings::NewPortalFiling {
                            portal_id: &id,
                            receipt: &receipt2,
                            procedure: &procedure,
                            version,
                            received_at: &received_at,
                            imported_at: now,
                            filing: &plain,
                        },
                    )
                }
            })
            .await?;
        if stored {
            out.imported += 1;
        } else {
            out.already += 1;
        }
        out.acknowledge.push(p.id.clone());
    }
    Ok(out)
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
}

/// One pull: fetch up to `limit` sealed filings from the portal, import
/// them, and acknowledge the ones stored here so the portal deletes its
/// sealed copies.
pub async fn pull_once(
    client: &reqwest::Client,
    portal_url: &str,
    token: &str,
    store: &crate::store::Store,
    key: &OpeningKey,
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
    }
    let list: List = serde_json::from_slice(&body).map_err(|e| PullError::Portal(e.to_string()))?;
    let outcome = import(store, key, &list.filings, now).await?;
    if !outcome.acknowledge.is_empty() {
        let r = client
            .post(format!("{base}/backoffice/ack"))
            .bearer_auth(token)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(serde_json::json!({ "ids": outcome.acknowledge }).to_string())
            .send()
            .await
            .map_err(|e| PullError::Portal(e.to_string()))?;
        if !r.status().is_success() {
            // Stored here already; the next pull imports nothing new and
            // acknowledges again.
            return Err(PullError::Portal(format!(
                "acknowledge: HTTP {}",
                r.status()
            )));
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
