//! 児童手当 (child allowance) as a system apart from the registry: its own
//! database, its own process (`machi allowance`), and only the registry's
//! linkage interface (the event feed) and JSON API, with its own OAuth2
//! client and scopes (`{system}:events:read`, `{system}:residents:read`),
//! as another vendor's system would use them. It does not depend on the
//! `machi` crate.
//!
//! - [`rules`]: the allowance rules since October 2024, pure, with the
//!   articles of 児童手当法 they come from.
//! - [`store`]: claims, children, work items, the feed cursor, accounts,
//!   payment files (SQLite).
//! - [`accounts`]: named clerk and supervisor accounts (Argon2), sign-in
//!   throttling.
//! - [`audit`]: the hash-chained access log.
//! - [`worker`]: reads the feed and applies each event once.
//! - [`web`]: the clerk's pages and the JSON API.

pub mod accounts;
pub mod audit;
pub mod bank;
pub mod rules;
pub mod store;
pub mod web;
pub mod worker;

/// Today in Japan, in which a day of the allowance (請求日, 支払月, the
/// month of an event) is counted whatever the server's own time zone.
pub fn today_in_japan() -> chrono::NaiveDate {
    chrono::Utc::now()
        .with_timezone(&machi_domain::dates::jst())
        .date_naive()
}

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// How to run the allowance system.
#[derive(Debug, Clone)]
pub struct Config {
    pub database: PathBuf,
    pub link: worker::LinkConfig,
    pub listen: SocketAddr,
    /// Long-poll wait of each feed read, seconds (0–30).
    pub wait: u64,
    /// Stop when standard input closes: a parent that started this process
    /// keeps the pipe open, and when it dies (even by SIGKILL) the pipe
    /// closes and this process ends with it.
    pub exit_on_stdin_eof: bool,
}

/// Runs the worker and the clerk's pages until Ctrl-C (or SIGTERM).
pub async fn run(config: Config) -> anyhow::Result<()> {
    let store = store::Store::open(&config.database)?;
    let client = Arc::new(worker::RegistryClient::new(config.link.clone())?);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let w = worker::Worker {
        store: store.clone(),
        client: worker::RegistryClient::new(config.link.clone())?,
    };
    let feed = tokio::spawn(w.run(stop_rx, config.wait));
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    println!(
        "児童手当 on http://{}/login (feed of tenant {} from {})",
        listener.local_addr()?,
        config.link.tenant,
        config.link.base_url
    );
    let supervisors = store
        .accounts()
        .await?
        .into_iter()
        .filter(|a| a.role.supervises() && !a.disabled)
        .count();
    if supervisors == 0 {
        println!(
            "no allowance supervisor account yet: create one with `machi allowance account add --role supervisor` (MACHI_ALLOWANCE_PASSWORD)"
        );
    }
    let app = web::app(web::WebState::new(store, client))
        .into_make_service_with_connect_info::<SocketAddr>();
    let (eof_tx, mut eof_rx) = tokio::sync::watch::channel(false);
    if config.exit_on_stdin_eof {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
            let _ = eof_tx.send(true);
        });
    }
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let eof = async move {
                if config.exit_on_stdin_eof {
                    let _ = eof_rx.wait_for(|v| *v).await;
                } else {
                    std::future::pending::<()>().await;
                }
            };
            let ctrl_c = tokio::signal::ctrl_c();
            #[cfg(unix)]
            {
                let mut term =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                        .expect("SIGTERM handler");
                tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {}, _ = eof => {} }
            }
            #[cfg(not(unix))]
            tokio::select! { _ = ctrl_c => {}, _ = eof => {} }
        })
        .await?;
    let _ = stop_tx.send(true);
    let _ = feed.await;
    Ok(())
}

/// `machi allowance account add`: creates an account in the allowance
/// database (the first supervisor is made this way; later ones also on the
/// supervisor's page). Logged in the access log as done from the command
/// line.
pub async fn add_account(
    database: &std::path::Path,
    login: &str,
    name: &str,
    role: accounts::Role,
    password: &str,
) -> anyhow::Result<()> {
    let (login, name) = accounts::check_new(login, name, password).map_err(anyhow::Error::msg)?;
    let store = store::Store::open(database)?;
    let hash = accounts::hash_password(password).map_err(anyhow::Error::msg)?;
    let entry = audit::Entry::new(
        "(command line)",
        "",
        audit::Action::AccountCreated,
        format!("account:{login}"),
    )
    .detail(role.code());
    if !store
        .create_account(&login, &name, role, hash, entry)
        .await?
    {
        anyhow::bail!("the login {login} exists already / ログインID {login} はすでにあります");
    }
    println!("{login} ({}, {}) created", name, role.label_ja());
    Ok(())
}

/// `machi allowance log verify`: walks the access log's hash chain.
/// Returns whether it holds.
pub async fn verify_log(database: &std::path::Path) -> anyhow::Result<bool> {
    if !database.exists() {
        anyhow::bail!("{}: no such database", database.display());
    }
    let store = store::Store::open(database)?;
    let v = store.verify_log().await?;
    match &v.broken {
        None => {
            println!(
                "access log verified: {} entries, chain intact; last hash {}",
                v.entries, v.head
            );
            Ok(true)
        }
        Some((seq, why)) => {
            println!(
                "access log BROKEN at entry {seq}: {why} (entries before it verify; last good hash {})",
                v.head
            );
            Ok(false)
        }
    }
}
