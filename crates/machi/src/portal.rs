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
                let src = std::fs::read_to_string(&f)
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
                let src = std::fs::read_to_string(&f)
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
