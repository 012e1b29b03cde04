//! machi's citizen portal (issue 11, item 2): online procedures on the
//! internet side.
//!
//! The portal is its own process (`machi portal`) with its own small SQLite
//! database holding published definitions, encrypted drafts, sealed filings
//! and statuses, nothing else. It does not depend on the `machi` crate, so
//! the type system proves it cannot read or write the resident registry:
//! what a citizen files is sealed to the back office's public key on
//! receipt (see [`seal`]) and reaches the back office only when the back
//! office pulls it over the authenticated `/backoffice/*` endpoints.
//!
//! Pages are server-rendered (askama), work without JavaScript, are mobile
//! first and follow the GOV.UK form patterns: one question or a small group
//! per page, a check-your-answers page with change links, an error summary
//! that takes focus and links to each field, validation on the server, and
//! what was typed never cleared. Japanese, やさしい日本語 and English.

pub mod accept;
pub mod seal;
pub mod signing;
pub mod store;
mod web;

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, FixedOffset, Utc};
use machi_procedures::{Definition, Report};

pub use web::router;

/// How a portal runs.
pub struct Config {
    /// The back office's public key: every filing is sealed to it.
    pub recipient: seal::RecipientKey,
    /// Days a draft is kept after its last save.
    pub draft_days: i64,
    /// SHA-256 (hex) of the bearer token the back office pulls with; None
    /// turns the `/backoffice/*` endpoints off.
    pub pull_token_sha256: Option<String>,
    /// Trust anchors and CRLs for signed filings (issue 11, item 3);
    /// without them a procedure whose definition says
    /// `identity = "signature"` cannot be filed here and the citizen is
    /// told so (nothing is stored).
    pub signing: Option<Arc<signing::Signing>>,
    /// DEMO ONLY: synthetic cards the citizen may sign with, offered under
    /// the label 「デモ用カード」. None in production.
    pub demo_cards: Option<Arc<signing::DemoCards>>,
    /// The clock (tests move it).
    pub clock: Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>,
}

impl Config {
    pub fn new(recipient: seal::RecipientKey) -> Config {
        Config {
            recipient,
            draft_days: 7,
            pull_token_sha256: None,
            signing: None,
            demo_cards: None,
            clock: Arc::new(Utc::now),
        }
    }
}

/// Why a definition was not published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("{0}")]
    Invalid(Report),
    #[error("{0}")]
    Store(#[from] store::StoreError),
}

impl PublishError {
    pub fn message_ja(&self) -> String {
        match self {
            PublishError::Invalid(r) => r.message_ja(),
            PublishError::Store(store::StoreError::VersionChanged { procedure, version }) => {
                format!(
                    "手続「{procedure}」の版{version}はすでに別の内容で公開されています。公開済みの版は変えられません。version を上げて公開してください。"
                )
            }
            PublishError::Store(store::StoreError::UnknownTenant(t)) => {
                format!("団体コード{t}はポータルに登録されていません。")
            }
            PublishError::Store(e) => format!("ポータルのデータベースに書けません：{e}"),
        }
    }
    pub fn message_en(&self) -> String {
        match self {
            PublishError::Invalid(r) => r.message_en(),
            e => e.to_string(),
        }
    }
}

/// A running portal's state.
pub struct Portal {
    pub store: store::Store,
    pub config: Config,
    /// Published definitions, parsed once (see [`accept`]).
    defs: accept::Definitions,
    /// The queue of filings waiting for the next commit (see [`accept`]).
    group: accept::GroupCommit,
}

/// Japan Standard Time.
pub use machi_domain::dates::jst;

impl Portal {
    pub fn open(db: &Path, config: Config) -> Result<Arc<Portal>, store::StoreError> {
        Ok(Arc::new(Portal {
            store: store::Store::open(db)?,
            config,
            defs: Default::default(),
            group: Default::default(),
        }))
    }

    pub fn now(&self) -> DateTime<FixedOffset> {
        (self.config.clock)().with_timezone(&jst())
    }

    /// Validates and publishes a definition for a tenant. Returns false when
    /// exactly this text was already published.
    pub fn publish(&self, tenant: &str, source: &str) -> Result<bool, PublishError> {
        let def = Definition::parse(source).map_err(PublishError::Invalid)?;
        Ok(self
            .store
            .publish(tenant, &def, source, &self.now().to_rfc3339())?)
    }

    /// Registers a tenant and publishes the five procedures shipped with machi.
    pub fn publish_shipped(
        &self,
        tenant: &str,
        name_ja: &str,
        name_en: &str,
    ) -> Result<(), PublishError> {
        self.store.put_tenant(tenant, name_ja, name_en)?;
        for (_, src) in machi_procedures::SHIPPED {
            self.publish(tenant, src)?;
        }
        Ok(())
    }
}
