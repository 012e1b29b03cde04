//! 児童手当 (child allowance) as a system apart from the registry: its own
//! database, its own process (`machi allowance`), and only the registry's
//! linkage interface (the event feed) and JSON API, with its own OAuth2
//! client and scopes (`{system}:events:read`, `{system}:residents:read`),
//! as another vendor's system would use them. It does not depend on the
//! `machi` crate.
//!
//! - [`rules`]: the allowance rules since October 2024, pure, with the
//!   articles of 児童手当法 they come from.
//! - [`store`]: claims, children, work items, the feed cursor (SQLite).
//! - [`worker`]: reads the feed and applies each event once.
//! - [`web`]: the clerk's pages and the JSON API.

pub mod rules;
pub mod store;
pub mod web;
pub mod worker;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// How to run the allowance system.
#[derive(Debug, Clone)]
pub struct Config {
    pub database: PathBuf,
    pub link: worker::LinkConfig,
    pub clerk_password: String,
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
    let app = web::app(web::WebState::new(store, client, &config.clerk_password));
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
