//! The tenant administrator's acceptance of procedure definitions the
//! portal delivered (issue 11). A new version of a tenant's own procedure
//! (or of a shipped one) arrives with the filings made on it; the back
//! office stores it ([`crate::store::procedure_definitions::store`]) but
//! does not act on it: an approved filing runs its definition's
//! `[action]`, and a compromised portal could deliver a version whose
//! action does something else. So no filing made on it is approved until
//! the tenant's administrator has read what it asks and what approval
//! would do, and accepted it here; a refused version's filings can only be
//! rejected. Each decision is recorded once, in the same transaction as
//! its entry in the hash-chained access log (j1370). An acceptance can be
//! withdrawn ([`DefinitionDecision::Withdraw`]): the version's filings
//! cannot be approved again until it is accepted again.

use std::sync::Arc;

use machi_domain::ids::MunicipalityCode;
use machi_procedures::{ActionKind, Definition, Identity, Lang};
use serde_json::json;

use super::registry::{Actor, Registry, ServiceError};
use crate::store::procedure_definitions::{self as defs, Decided, OwnDefinition, Trust};
use crate::store::records::{self, AuditEntry};

/// What the administrator decides on a definition version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefinitionDecision {
    /// Accept a version awaiting a decision (new, or withdrawn).
    Accept,
    /// Refuse a version awaiting a decision: final.
    Refuse,
    /// Withdraw an acceptance: no approval until accepted again.
    Withdraw,
}

impl DefinitionDecision {
    /// From the API's and the form's word.
    pub fn parse(s: &str) -> Option<DefinitionDecision> {
        match s {
            "accept" => Some(DefinitionDecision::Accept),
            "refuse" => Some(DefinitionDecision::Refuse),
            "withdraw" => Some(DefinitionDecision::Withdraw),
            _ => None,
        }
    }
    fn function(self) -> &'static str {
        match self {
            DefinitionDecision::Accept => "procedure_definition.accept",
            DefinitionDecision::Refuse => "procedure_definition.refuse",
            DefinitionDecision::Withdraw => "procedure_definition.withdraw",
        }
    }
    fn stored(self) -> &'static str {
        match self {
            DefinitionDecision::Accept => "accepted",
            DefinitionDecision::Refuse => "refused",
            DefinitionDecision::Withdraw => "withdrawn",
        }
    }
}

/// A tenant's own definition version and how many filings were made on it.
#[derive(Debug, Clone)]
pub struct OwnVersion {
    pub own: OwnDefinition,
    /// Filings imported on this version (every status).
    pub filings: i64,
}

/// What approving a filing made on `def` does, in words (Japanese,
/// English): the administrator reads it before accepting the definition.
pub fn action_words(def: &Definition) -> (String, String) {
    let a = &def.action;
    match def.action_kind() {
        ActionKind::RegistryChange => {
            let (ja, en) = match a.change.as_deref() {
                Some("move_out") => ("転出", "a move-out"),
                _ => ("住民記録の異動", "a change of the registry"),
            };
            (
                format!(
                    "承認すると、申請に書かれた方について{ja}を住民記録に登録します（職員の役割により仮登録となり、決裁者の決裁の後に本登録）。"
                ),
                format!(
                    "Approving a filing records {en} in the resident registry for the persons it names (entered provisionally for a supervisor's decision when the clerk's role requires it)."
                ),
            )
        }
        ActionKind::Certificate => (
            "承認すると、申請に書かれた方の住民票の写しなどの証明書を作成して交付（郵送）します。".into(),
            "Approving a filing issues a certificate (such as a copy of the resident record) for the persons it names, for mailing.".into(),
        ),
        ActionKind::Handoff => {
            let system = a.system.clone().unwrap_or_default();
            (
                format!(
                    "承認すると、申請があったことを業務システム「{system}」へ知らせます（連携イベントを送り、業務システムが申請の内容を読みます）。住民記録は変わりません。"
                ),
                format!(
                    "Approving a filing tells the business system \"{system}\" about it (a linkage event; that system reads the filing). The registry does not change."
                ),
            )
        }
        ActionKind::Survey => (
            "アンケートです。回答は受け付けた時点で集計され、承認しても住民記録は変わりません（業務システムへ知らせるだけです）。".into(),
            "A survey: answers are counted as they arrive; approving one changes nothing in the registry (it only tells the business system).".into(),
        ),
    }
}

/// Who may file, in words.
pub fn identity_words(def: &Definition) -> (&'static str, &'static str) {
    match def.identity() {
        Identity::Signature => (
            "電子署名（マイナンバーカード）が必要",
            "an electronic signature (My Number Card) is required",
        ),
        Identity::None => (
            "本人確認なし（だれでも申請できる）",
            "no identity check (anyone may file)",
        ),
    }
}

/// A definition's pages and their fields, in the page's language: (page
/// title, [field label]).
pub fn pages_words(def: &Definition, en: bool) -> Vec<(String, Vec<String>)> {
    let lang = if en { Lang::En } else { Lang::Ja };
    def.pages
        .iter()
        .map(|p| {
            (
                p.title.get(lang).to_string(),
                p.fields
                    .iter()
                    .map(|f| f.label.get(lang).to_string())
                    .collect(),
            )
        })
        .collect()
}

/// The title of a definition (Japanese, English).
pub fn title(def: &Definition) -> (String, String) {
    (
        def.procedure.title.ja.clone(),
        def.procedure.title.get(Lang::En).to_string(),
    )
}

impl Registry {
    /// The tenant's own definition versions the portal delivered, each
    /// with the administrator's decision and its number of filings;
    /// awaiting a decision first, then the newest import.
    pub async fn own_definitions(
        &self,
        tenant: &MunicipalityCode,
    ) -> Result<Vec<OwnVersion>, ServiceError> {
        self.ensure_tenant(tenant).await?;
        let t = tenant.clone();
        let mut out = self
            .store()
            .read(Some(tenant), move |tx| {
                let own = defs::own(tx, &t)?;
                let mut out = Vec::with_capacity(own.len());
                for o in own {
                    let filings = tx
                        .query_one(
                            "SELECT COUNT(*) FROM portal_filings WHERE tenant = $1 AND procedure = $2 AND version = $3",
                            &[
                                t.as_str().into(),
                                o.definition.id().into(),
                                i64::from(o.definition.version()).into(),
                            ],
                        )?
                        .int(0)?;
                    out.push(OwnVersion { own: o, filings });
                }
                Ok::<_, ServiceError>(out)
            })
            .await?;
        out.sort_by_key(|v| (!v.own.trust.awaits_decision(), -v.own.imported_at));
        Ok(out)
    }

    /// The administrator accepts or refuses a definition version the
    /// portal delivered that awaits a decision, or withdraws an
    /// acceptance. A refusal is final and an acceptance stands until
    /// withdrawn ([`ServiceError::DefinitionDecided`]); only an
    /// acceptance can be withdrawn ([`ServiceError::DefinitionNotAccepted`]).
    /// Recorded with its access-log entry (`procedure_definition.accept`,
    /// `.refuse` or `.withdraw`, the SHA-256 of the text) in one
    /// transaction. The caller checked the role (the tenant's
    /// administrator).
    pub async fn decide_definition(
        &self,
        tenant: &MunicipalityCode,
        procedure: &str,
        version: i64,
        decision: DefinitionDecision,
        actor: &Actor,
    ) -> Result<Arc<Definition>, ServiceError> {
        self.ensure_tenant(tenant).await?;
        let not_found = || ServiceError::DefinitionNotFound {
            procedure: procedure.to_string(),
            version,
        };
        if !crate::api::inbox::is_procedure_id(procedure) || version < 1 {
            return Err(not_found());
        }
        let now = self.clock().now().timestamp_micros();
        let (t, a, p) = (tenant.clone(), actor.clone(), procedure.to_string());
        let r = self
            .store()
            .write(Some(tenant), move |tx| {
                records::lock_tenant(tx, &t)?;
                let Some(def) = defs::lookup(tx, &t, &p, version)? else {
                    return Ok(None);
                };
                let decided = match decision {
                    DefinitionDecision::Accept => {
                        defs::decide(tx, &t, &p, version, true, &a.operator, now)?
                    }
                    DefinitionDecision::Refuse => {
                        defs::decide(tx, &t, &p, version, false, &a.operator, now)?
                    }
                    DefinitionDecision::Withdraw => {
                        defs::withdraw(tx, &t, &p, version, &a.operator, now)?
                    }
                };
                if let Decided::Done { sha256 } = &decided {
                    records::append_next_audit(
                        tx,
                        &t,
                        now,
                        &AuditEntry {
                            operator: a.operator.clone(),
                            terminal: a.terminal.clone(),
                            function: decision.function().to_string(),
                            target: format!("procedure:{p}:{version}"),
                            detail: json!({
                                "procedure": p,
                                "version": version,
                                "decision": decision.stored(),
                                "sha256": sha256,
                            })
                            .to_string(),
                            my_number_shown: false,
                        },
                    )?;
                }
                Ok::<_, ServiceError>(Some((def, decided)))
            })
            .await?;
        let Some((def, decided)) = r else {
            return Err(not_found());
        };
        match decided {
            Decided::Done { .. } => Ok(def),
            Decided::NotFound => Err(not_found()),
            Decided::Shipped => {
                let (title_ja, title_en) = title(&def);
                Err(ServiceError::DefinitionShipped {
                    title_ja,
                    title_en,
                    version,
                })
            }
            Decided::Already(t) if decision == DefinitionDecision::Withdraw => {
                let (title_ja, title_en) = title(&def);
                Err(ServiceError::DefinitionNotAccepted {
                    title_ja,
                    title_en,
                    version,
                    trust: t,
                })
            }
            Decided::Already(t) => {
                let (title_ja, title_en) = title(&def);
                Err(ServiceError::DefinitionDecided {
                    title_ja,
                    title_en,
                    version,
                    accepted: t == Trust::Accepted,
                })
            }
        }
    }
}
