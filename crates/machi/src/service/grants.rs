//! Separation of duties (職務の分離, j1380: 操作権限 per person, set by the
//! system administrator): the tenant administrator manages accounts and API
//! clients, but whatever gives an account or a client personal data is only
//! a proposal until a second person approves it (a supervisor or the CIO;
//! never whoever proposed it, never the person it is about).
//!
//! - A new account of a role that reads personal data or approves
//!   ([`Role::needs_second_approval`]), or a role change to one, is a
//!   proposal. On approval the account gets an activation code, shown once
//!   to the approver; its holder sets the password at `/activate`. The
//!   proposer never knows a password of it, and a role change clears the
//!   old password, so nobody who knew it keeps access.
//! - A new API client, a wider scope, or letting a client commit changes
//!   directly is a proposal. The client's secret is made on approval and
//!   shown once to the approver; the approver may also rotate it.
//! - Taking access away (disabling, narrowing, a role without personal
//!   data, no more direct commits) takes effect at once.
//!
//! Every step writes the tenant's hash-chained access log (j1370).

use machi_domain::access::{self, Role, Scope};
use machi_domain::ids::MunicipalityCode;
use serde::{Deserialize, Serialize};

use super::auth::{hash_password, random_hex, token_hash};
use super::registry::{Actor, Registry, ServiceError};
use super::throttle::{Door, Source};
use crate::store::StoreError;
use crate::store::accounts::{self, Account, ApiClient, ClientUpdate};
use crate::store::grants::{self, GrantStatus, StoredGrant};
use crate::store::records::{self, AuditEntry};

/// How long an activation code stays valid.
pub const ACTIVATION_SECONDS: i64 = 7 * 86_400;

/// What the tenant administrator proposes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum Proposal {
    /// A new staff account of a role that needs approval.
    #[serde(rename = "account.create")]
    AccountCreate {
        login: String,
        display_name: String,
        role: Role,
    },
    /// An existing account moved to a role that needs approval.
    #[serde(rename = "account.role")]
    AccountRole { login: String, role: Role },
    /// A new API client (its id is fixed now, its secret made on approval).
    #[serde(rename = "client.create")]
    ClientCreate {
        client_id: String,
        system: String,
        /// Space-separated.
        scopes: String,
    },
    /// A client's scopes widened.
    #[serde(rename = "client.scopes")]
    ClientScopes { client_id: String, scopes: String },
    /// A client's changes committed at once instead of entered provisionally.
    #[serde(rename = "client.direct_commit")]
    ClientDirectCommit { client_id: String },
}

impl Proposal {
    pub fn kind(&self) -> &'static str {
        match self {
            Proposal::AccountCreate { .. } => "account.create",
            Proposal::AccountRole { .. } => "account.role",
            Proposal::ClientCreate { .. } => "client.create",
            Proposal::ClientScopes { .. } => "client.scopes",
            Proposal::ClientDirectCommit { .. } => "client.direct_commit",
        }
    }

    /// The account's login or the client's id.
    pub fn target(&self) -> &str {
        match self {
            Proposal::AccountCreate { login, .. } | Proposal::AccountRole { login, .. } => login,
            Proposal::ClientCreate { client_id, .. }
            | Proposal::ClientScopes { client_id, .. }
            | Proposal::ClientDirectCommit { client_id } => client_id,
        }
    }

    /// Whether the proposal is about a staff account (whose holder may not
    /// approve it).
    pub fn is_about_account(&self) -> bool {
        matches!(
            self,
            Proposal::AccountCreate { .. } | Proposal::AccountRole { .. }
        )
    }

    /// One line for people: what would change.
    pub fn describe(&self, en: bool) -> String {
        let role = |r: &Role| if en { r.label_en() } else { r.label_ja() };
        match (self, en) {
            (
                Proposal::AccountCreate {
                    login,
                    display_name,
                    role: r,
                },
                false,
            ) => format!(
                "職員アカウント {login}（{display_name}）を{}として追加",
                role(r)
            ),
            (
                Proposal::AccountCreate {
                    login,
                    display_name,
                    role: r,
                },
                true,
            ) => format!("Add staff account {login} ({display_name}) as {}", role(r)),
            (Proposal::AccountRole { login, role: r }, false) => {
                format!("{login} の役割を{}に変更", role(r))
            }
            (Proposal::AccountRole { login, role: r }, true) => {
                format!("Change the role of {login} to {}", role(r))
            }
            (
                Proposal::ClientCreate {
                    client_id, scopes, ..
                },
                false,
            ) => format!(
                "連携先 {client_id} を登録（スコープ: {}）",
                super::auth::scopes_in_words(scopes, false)
            ),
            (
                Proposal::ClientCreate {
                    client_id, scopes, ..
                },
                true,
            ) => format!(
                "Register client {client_id} (scopes: {})",
                super::auth::scopes_in_words(scopes, true)
            ),
            (Proposal::ClientScopes { client_id, scopes }, false) => {
                format!(
                    "連携先 {client_id} のスコープを「{}」に変更",
                    super::auth::scopes_in_words(scopes, false)
                )
            }
            (Proposal::ClientScopes { client_id, scopes }, true) => {
                format!(
                    "Set the scopes of client {client_id} to {}",
                    super::auth::scopes_in_words(scopes, true)
                )
            }
            (Proposal::ClientDirectCommit { client_id }, false) => {
                format!("連携先 {client_id} の異動を仮登録・決裁なしで直接確定できるようにする")
            }
            (Proposal::ClientDirectCommit { client_id }, true) => format!(
                "Let client {client_id} commit changes directly, without provisional entry and approval"
            ),
        }
    }
}

/// A proposal with where it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessGrant {
    pub grant_id: i64,
    pub proposal: Proposal,
    pub status: GrantStatus,
    pub proposed_by: String,
    pub proposed_terminal: String,
    pub proposed_at: i64,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    pub comment: Option<String>,
}

fn grant_from(g: StoredGrant) -> Result<AccessGrant, StoreError> {
    let proposal: Proposal = serde_json::from_str(&g.detail)
        .map_err(|e| StoreError::Corrupt(format!("access grant {}: {e}", g.grant_id)))?;
    Ok(AccessGrant {
        grant_id: g.grant_id,
        proposal,
        status: g.status,
        proposed_by: g.proposed_by,
        proposed_terminal: g.proposed_terminal,
        proposed_at: g.proposed_at,
        decided_by: g.decided_by,
        decided_at: g.decided_at,
        comment: g.comment,
    })
}

/// An activation code for an account, to hand to its holder (shown once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivationCode {
    pub login: String,
    pub code: String,
    pub expires_at: i64,
}

/// What a step of account management did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountStep {
    /// Waits for a second person: proposal number.
    Proposed(i64),
    /// Took effect; the account's holder activates it with this code.
    Activation(ActivationCode),
    /// Took effect.
    Done,
}

/// What a step of API client management did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientStep {
    /// Waits for a second person: proposal number and the client's id.
    Proposed { grant_id: i64, client_id: String },
    /// Took effect.
    Done,
}

/// A decision on a proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Reject,
    /// By whoever proposed it.
    Withdraw,
}

/// What a decision produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantOutcome {
    /// An account approved: the code for its holder.
    Activation(ActivationCode),
    /// A client approved: its id and secret.
    ClientSecret { client_id: String, secret: String },
    /// Approved, nothing to hand over.
    Applied,
    /// Rejected or withdrawn.
    Closed,
}

/// A fresh activation code `xxxx-xxxx-xxxx-xxxx-xxxx` (80 random bits).
fn new_activation_code() -> Result<String, ServiceError> {
    let hex = random_hex(10)?;
    Ok(hex
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("-"))
}

/// A code as typed: spaces and hyphens dropped, lower case.
fn normalise_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .take(64)
        .collect()
}

fn entry(actor: &Actor, function: &str, target: &str, detail: serde_json::Value) -> AuditEntry {
    AuditEntry {
        operator: actor.operator.clone(),
        terminal: actor.terminal.clone(),
        function: function.into(),
        target: target.to_string(),
        detail: detail.to_string(),
        my_number_shown: false,
    }
}

fn no_account(login: &str) -> ServiceError {
    ServiceError::AccountNotFound(login.chars().take(40).collect())
}

fn no_client(id: &str) -> ServiceError {
    ServiceError::ClientNotFound(id.chars().take(80).collect())
}

fn own_account() -> ServiceError {
    ServiceError::Invalid {
        field: "login".into(),
        code: "own_account",
        message_ja: "自分のアカウントの役割は変更できません。".into(),
        message_en: "you cannot change the role of your own account".into(),
    }
}

fn validate_new_account(login: &str, display_name: &str, role: Role) -> Result<(), ServiceError> {
    access::validate_login(login).map_err(|e| ServiceError::invalid("login", &e))?;
    let name = display_name.trim();
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err(ServiceError::Invalid {
            field: "display_name".into(),
            code: "invalid_display_name",
            message_ja: "氏名（表示名）は1〜64文字で入力してください。".into(),
            message_en: "display_name must be 1 to 64 characters".into(),
        });
    }
    tenant_role(role)
}

fn tenant_role(role: Role) -> Result<(), ServiceError> {
    if role.is_tenant_role() {
        Ok(())
    } else {
        Err(ServiceError::Invalid {
            field: "role".into(),
            code: "role_scope",
            message_ja: "基盤運用者は団体のアカウントにできません。".into(),
            message_en: "a tenant account cannot be a platform operator".into(),
        })
    }
}

/// Scopes for `system`: one or more, each naming the system.
pub fn parse_client_scopes(system: &str, scopes: &str) -> Result<Vec<Scope>, ServiceError> {
    let scopes = Scope::parse_list(scopes).map_err(|e| ServiceError::invalid("scopes", &e))?;
    if scopes.is_empty() || scopes.iter().any(|s| s.system != system) {
        return Err(ServiceError::Invalid {
            field: "scopes".into(),
            code: "invalid_scope",
            message_ja: format!(
                "スコープは1つ以上、システム名「{system}」で始まるものを指定してください。"
            ),
            message_en: format!(
                "give one or more scopes, each starting with the system name {system:?}"
            ),
        });
    }
    Ok(scopes)
}

fn join_scopes(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(Scope::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

fn client_of(
    tx: &mut crate::store::Tx<'_>,
    tenant: &MunicipalityCode,
    client_id: &str,
) -> Result<ApiClient, ServiceError> {
    accounts::get_client(tx, client_id)?
        .filter(|c| &c.tenant == tenant)
        .ok_or_else(|| no_client(client_id))
}

fn account_of(
    tx: &mut crate::store::Tx<'_>,
    tenant: &MunicipalityCode,
    login: &str,
) -> Result<Account, ServiceError> {
    accounts::get_account(tx, Some(tenant), login)?.ok_or_else(|| no_account(login))
}

/// Records a proposal (the caller checked it) and logs it.
fn insert_proposal(
    tx: &mut crate::store::Tx<'_>,
    tenant: &MunicipalityCode,
    p: &Proposal,
    actor: &Actor,
    now: i64,
) -> Result<i64, ServiceError> {
    records::lock_tenant(tx, tenant)?;
    if grants::pending_exists(tx, tenant, p.kind(), p.target())? {
        return Err(ServiceError::Invalid {
            field: "target".into(),
            code: "proposal_pending",
            message_ja: format!("「{}」についての同じ申請がすでに承認待ちです。", p.target()),
            message_en: format!(
                "the same proposal about {} is already awaiting approval",
                p.target()
            ),
        });
    }
    let detail =
        serde_json::to_string(p).map_err(|e| StoreError::Corrupt(format!("proposal: {e}")))?;
    let id = grants::insert(
        tx,
        tenant,
        &StoredGrant {
            grant_id: 0,
            kind: p.kind().into(),
            target: p.target().into(),
            detail: detail.clone(),
            status: GrantStatus::Pending,
            proposed_by: actor.operator.clone(),
            proposed_terminal: actor.terminal.clone(),
            proposed_at: now,
            decided_by: None,
            decided_at: None,
            comment: None,
        },
    )?;
    records::append_next_audit(
        tx,
        tenant,
        now,
        &entry(
            actor,
            "grant.propose",
            p.target(),
            serde_json::json!({ "grant_id": id, "proposal": p }),
        ),
    )?;
    Ok(id)
}

/// Puts an account into activation with a fresh code, ending its sessions.
fn start_activation(
    tx: &mut crate::store::Tx<'_>,
    tenant: &MunicipalityCode,
    login: &str,
    code: &str,
    now: i64,
) -> Result<ActivationCode, ServiceError> {
    let expires_at = now + ACTIVATION_SECONDS * 1_000_000;
    if !accounts::set_activation(
        tx,
        tenant,
        login,
        &token_hash(&normalise_code(code)),
        expires_at,
    )? {
        return Err(no_account(login));
    }
    accounts::delete_sessions_of(tx, tenant, login)?;
    Ok(ActivationCode {
        login: login.to_string(),
        code: code.to_string(),
        expires_at,
    })
}

impl Registry {
    /// Adds a staff account as the tenant administrator does: a role that
    /// needs approval becomes a proposal; a tenant administrator is created
    /// at once, with an activation code for its holder (no password is
    /// chosen by whoever creates it).
    pub async fn add_account(
        &self,
        tenant: &MunicipalityCode,
        login: &str,
        display_name: &str,
        role: Role,
        actor: &Actor,
    ) -> Result<AccountStep, ServiceError> {
        validate_new_account(login, display_name, role)?;
        self.ensure_tenant(tenant).await?;
        let now = self.clock().now().timestamp_micros();
        let (t, actor) = (tenant.clone(), actor.clone());
        let (login, name) = (login.to_string(), display_name.trim().to_string());
        let code = new_activation_code()?;
        self.store()
            .write(Some(tenant), move |tx| {
                if accounts::get_account(tx, Some(&t), &login)?.is_some()
                    || grants::pending_exists(tx, &t, "account.create", &login)?
                {
                    return Err(ServiceError::AccountExists(login));
                }
                if role.needs_second_approval() {
                    let p = Proposal::AccountCreate {
                        login,
                        display_name: name,
                        role,
                    };
                    return Ok(AccountStep::Proposed(insert_proposal(
                        tx, &t, &p, &actor, now,
                    )?));
                }
                let code = create_account_row(tx, &t, &login, &name, role, &code, now)?;
                records::append_next_audit(
                    tx,
                    &t,
                    now,
                    &entry(
                        &actor,
                        "account.create",
                        &login,
                        serde_json::json!({ "role": role.as_str() }),
                    ),
                )?;
                Ok(AccountStep::Activation(code))
            })
            .await
    }

    /// Changes an account's role. To a role that needs approval it is a
    /// proposal; otherwise it takes effect at once and ends the account's
    /// sessions. Nobody changes their own role.
    pub async fn change_role(
        &self,
        tenant: &MunicipalityCode,
        login: &str,
        role: Role,
        actor: &Actor,
    ) -> Result<AccountStep, ServiceError> {
        tenant_role(role)?;
        if login == actor.operator {
            return Err(own_account());
        }
        self.ensure_tenant(tenant).await?;
        let now = self.clock().now().timestamp_micros();
        let (t, l, actor) = (tenant.clone(), login.to_string(), actor.clone());
        self.store()
            .write(Some(tenant), move |tx| {
                let a = account_of(tx, &t, &l)?;
                if a.role == role.as_str() {
                    return Err(ServiceError::Invalid {
                        field: "role".into(),
                        code: "same_role",
                        message_ja: format!("{l} はすでにその役割です。"),
                        message_en: format!("{l} already has that role"),
                    });
                }
                if role.needs_second_approval() {
                    let p = Proposal::AccountRole { login: l, role };
                    return Ok(AccountStep::Proposed(insert_proposal(
                        tx, &t, &p, &actor, now,
                    )?));
                }
                accounts::set_account_role(tx, &t, &l, role.as_str())?;
                accounts::delete_sessions_of(tx, &t, &l)?;
                records::append_next_audit(
                    tx,
                    &t,
                    now,
                    &entry(
                        &actor,
                        "account.role",
                        &l,
                        serde_json::json!({ "from": a.role, "to": role.as_str() }),
                    ),
                )?;
                Ok(AccountStep::Done)
            })
            .await
    }

    /// Proposes a new API client for `system` with `scopes`: every scope
    /// reads or writes personal data, so it waits for a second person; its
    /// secret is made on approval and shown to the approver.
    pub async fn propose_client(
        &self,
        tenant: &MunicipalityCode,
        system: &str,
        scopes: &str,
        actor: &Actor,
    ) -> Result<ClientStep, ServiceError> {
        let scopes = parse_client_scopes(system, scopes)?;
        self.ensure_tenant(tenant).await?;
        let client_id = format!("{}-{}-{}", tenant, system, random_hex(4)?);
        let now = self.clock().now().timestamp_micros();
        let p = Proposal::ClientCreate {
            client_id: client_id.clone(),
            system: system.to_string(),
            scopes: join_scopes(&scopes),
        };
        let (t, actor) = (tenant.clone(), actor.clone());
        let grant_id = self
            .store()
            .write(Some(tenant), move |tx| {
                if accounts::get_client(tx, p.target())?.is_some() {
                    return Err(ServiceError::AccountExists(p.target().to_string()));
                }
                insert_proposal(tx, &t, &p, &actor, now)
            })
            .await?;
        Ok(ClientStep::Proposed {
            grant_id,
            client_id,
        })
    }

    /// Sets a client's scopes: narrower takes effect at once (its live
    /// tokens end); anything that adds personal data is a proposal.
    pub async fn change_client_scopes(
        &self,
        tenant: &MunicipalityCode,
        client_id: &str,
        scopes: &str,
        actor: &Actor,
    ) -> Result<ClientStep, ServiceError> {
        self.ensure_tenant(tenant).await?;
        let now = self.clock().now().timestamp_micros();
        let (t, id, scopes, actor) = (
            tenant.clone(),
            client_id.to_string(),
            scopes.to_string(),
            actor.clone(),
        );
        self.store()
            .write(Some(tenant), move |tx| {
                let c = client_of(tx, &t, &id)?;
                let new = parse_client_scopes(&c.system, &scopes)?;
                let old = Scope::parse_list(&c.scopes)
                    .map_err(|e| StoreError::Corrupt(format!("client scopes: {e}")))?;
                let joined = join_scopes(&new);
                if Scope::widens_personal_data(&old, &new) {
                    let p = Proposal::ClientScopes {
                        client_id: id.clone(),
                        scopes: joined,
                    };
                    let grant_id = insert_proposal(tx, &t, &p, &actor, now)?;
                    return Ok(ClientStep::Proposed {
                        grant_id,
                        client_id: id,
                    });
                }
                accounts::update_client(tx, &t, &id, &ClientUpdate::Scopes(joined.clone()))?;
                accounts::delete_tokens_of_client(tx, &id)?;
                records::append_next_audit(
                    tx,
                    &t,
                    now,
                    &entry(
                        &actor,
                        "client.scopes",
                        &id,
                        serde_json::json!({ "from": c.scopes, "to": joined }),
                    ),
                )?;
                Ok(ClientStep::Done)
            })
            .await
    }

    /// Lets a client commit changes directly (a proposal), or stops it
    /// (at once).
    pub async fn set_client_direct_commit(
        &self,
        tenant: &MunicipalityCode,
        client_id: &str,
        on: bool,
        actor: &Actor,
    ) -> Result<ClientStep, ServiceError> {
        self.ensure_tenant(tenant).await?;
        let now = self.clock().now().timestamp_micros();
        let (t, id, actor) = (tenant.clone(), client_id.to_string(), actor.clone());
        self.store()
            .write(Some(tenant), move |tx| {
                let c = client_of(tx, &t, &id)?;
                if on {
                    let writes = Scope::parse_list(&c.scopes)
                        .map_err(|e| StoreError::Corrupt(format!("client scopes: {e}")))?
                        .iter()
                        .any(|s| s.permission() == access::Permission::EnterChange);
                    if !writes {
                        return Err(ServiceError::Invalid {
                            field: "client_id".into(),
                            code: "no_write_scope",
                            message_ja: format!(
                                "連携先 {id} には異動を書き込むスコープ（changes:write）がありません。"
                            ),
                            message_en: format!(
                                "client {id} has no scope to write changes (changes:write)"
                            ),
                        });
                    }
                    if c.direct_commit {
                        return Ok(ClientStep::Done);
                    }
                    let p = Proposal::ClientDirectCommit { client_id: id.clone() };
                    let grant_id = insert_proposal(tx, &t, &p, &actor, now)?;
                    return Ok(ClientStep::Proposed {
                        grant_id,
                        client_id: id,
                    });
                }
                accounts::update_client(tx, &t, &id, &ClientUpdate::DirectCommit(false))?;
                records::append_next_audit(
                    tx,
                    &t,
                    now,
                    &entry(
                        &actor,
                        "client.direct_commit",
                        &id,
                        serde_json::json!({ "direct_commit": false }),
                    ),
                )?;
                Ok(ClientStep::Done)
            })
            .await
    }

    /// Disables a client (its live tokens end at once and it gets no new
    /// ones) or enables it again.
    pub async fn set_client_disabled(
        &self,
        tenant: &MunicipalityCode,
        client_id: &str,
        disabled: bool,
        actor: &Actor,
    ) -> Result<(), ServiceError> {
        self.ensure_tenant(tenant).await?;
        let now = self.clock().now().timestamp_micros();
        let (t, id, actor) = (tenant.clone(), client_id.to_string(), actor.clone());
        self.store()
            .write(Some(tenant), move |tx| {
                client_of(tx, &t, &id)?;
                accounts::update_client(tx, &t, &id, &ClientUpdate::Disabled(disabled))?;
                if disabled {
                    accounts::delete_tokens_of_client(tx, &id)?;
                }
                let function = if disabled {
                    "client.disable"
                } else {
                    "client.enable"
                };
                records::append_next_audit(
                    tx,
                    &t,
                    now,
                    &entry(&actor, function, &id, serde_json::json!({})),
                )?;
                Ok(())
            })
            .await
    }

    /// Gives a client a new secret (shown once, to whoever rotates it: an
    /// approver, or the deployment's CLI); the old secret and every live
    /// token stop working at once.
    pub async fn rotate_client_secret(
        &self,
        tenant: &MunicipalityCode,
        client_id: &str,
        actor: &Actor,
    ) -> Result<String, ServiceError> {
        self.ensure_tenant(tenant).await?;
        let secret = random_hex(24)?;
        let hash = hash_password(&secret)?;
        let now = self.clock().now().timestamp_micros();
        let (t, id, actor) = (tenant.clone(), client_id.to_string(), actor.clone());
        let plain = zeroize::Zeroizing::new(secret.clone());
        self.store()
            .write(Some(tenant), move |tx| {
                client_of(tx, &t, &id)?;
                let sealed = tx
                    .tenant_keys(&t)?
                    .seal(&super::client_jwt::seal_context(&id), plain.as_bytes())
                    .map_err(crate::store::StoreError::from)?;
                accounts::update_client(tx, &t, &id, &ClientUpdate::SecretHash(hash))?;
                accounts::update_client(tx, &t, &id, &ClientUpdate::SecretSealed(sealed))?;
                accounts::delete_tokens_of_client(tx, &id)?;
                records::append_next_audit(
                    tx,
                    &t,
                    now,
                    &entry(&actor, "client.rotate", &id, serde_json::json!({})),
                )?;
                Ok::<_, ServiceError>(())
            })
            .await?;
        Ok(secret)
    }

    /// The tenant's proposals, newest first: pending ones, or decided ones.
    pub async fn grants(
        &self,
        tenant: &MunicipalityCode,
        pending: bool,
        limit: i64,
    ) -> Result<Vec<AccessGrant>, ServiceError> {
        self.ensure_tenant(tenant).await?;
        let t = tenant.clone();
        self.store()
            .read(Some(tenant), move |tx| {
                grants::list(tx, &t, pending, limit)?
                    .into_iter()
                    .map(grant_from)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(ServiceError::from)
            })
            .await
    }

    /// Decides a proposal. Approving or rejecting: never by whoever
    /// proposed it, never by the person it is about; withdrawing: only by
    /// whoever proposed it. Approval applies it in the same transaction.
    pub async fn decide_grant(
        &self,
        tenant: &MunicipalityCode,
        grant_id: i64,
        decision: Decision,
        comment: &str,
        actor: &Actor,
    ) -> Result<GrantOutcome, ServiceError> {
        self.ensure_tenant(tenant).await?;
        let comment: String = comment
            .chars()
            .filter(|c| !c.is_control() || *c == '\n')
            .take(500)
            .collect::<String>()
            .trim()
            .to_string();
        let now = self.clock().now().timestamp_micros();
        // Made before the transaction (hashing a secret takes a while);
        // used only if the approved proposal turns out to be a client's.
        let secret = match decision {
            Decision::Approve => {
                let s = random_hex(24)?;
                let h = hash_password(&s)?;
                Some((s, h))
            }
            _ => None,
        };
        let code = new_activation_code()?;
        let (t, actor) = (tenant.clone(), actor.clone());
        self.store()
            .write(Some(tenant), move |tx| {
                records::lock_tenant(tx, &t)?;
                let g =
                    grants::get(tx, &t, grant_id)?.ok_or(ServiceError::GrantNotFound(grant_id))?;
                if g.status != GrantStatus::Pending {
                    return Err(ServiceError::GrantDecided(grant_id));
                }
                let g = grant_from(g)?;
                let mine = g.proposed_by == actor.operator;
                let about_me =
                    g.proposal.is_about_account() && g.proposal.target() == actor.operator;
                let status = match decision {
                    Decision::Withdraw if !mine => return Err(ServiceError::Forbidden),
                    Decision::Withdraw => GrantStatus::Withdrawn,
                    _ if mine || about_me => return Err(ServiceError::SelfGrant),
                    Decision::Approve => GrantStatus::Approved,
                    Decision::Reject => GrantStatus::Rejected,
                };
                let comment = (!comment.is_empty()).then_some(comment.as_str());
                if !grants::decide(tx, &t, grant_id, status, &actor.operator, now, comment)? {
                    return Err(ServiceError::GrantDecided(grant_id));
                }
                let function = match status {
                    GrantStatus::Approved => "grant.approve",
                    GrantStatus::Rejected => "grant.reject",
                    _ => "grant.withdraw",
                };
                records::append_next_audit(
                    tx,
                    &t,
                    now,
                    &entry(
                        &actor,
                        function,
                        g.proposal.target(),
                        serde_json::json!({
                            "grant_id": grant_id, "kind": g.proposal.kind(),
                            "proposed_by": g.proposed_by, "comment": comment,
                        }),
                    ),
                )?;
                match secret {
                    Some(secret) if status == GrantStatus::Approved => {
                        apply(tx, &t, grant_id, &g.proposal, &actor, now, &code, secret)
                    }
                    _ => Ok(GrantOutcome::Closed),
                }
            })
            .await
    }

    /// A new activation code for an account still waiting for its holder
    /// (a lost or expired code); the old code stops working. By an
    /// approver, never for their own account.
    pub async fn reissue_activation(
        &self,
        tenant: &MunicipalityCode,
        login: &str,
        actor: &Actor,
    ) -> Result<ActivationCode, ServiceError> {
        if login == actor.operator {
            return Err(ServiceError::SelfGrant);
        }
        self.ensure_tenant(tenant).await?;
        let now = self.clock().now().timestamp_micros();
        let code = new_activation_code()?;
        let (t, l, actor) = (tenant.clone(), login.to_string(), actor.clone());
        self.store()
            .write(Some(tenant), move |tx| {
                let a = account_of(tx, &t, &l)?;
                if !a.awaiting_activation() {
                    return Err(ServiceError::Invalid {
                        field: "login".into(),
                        code: "already_active",
                        message_ja: format!("{l} はすでに有効化されています。"),
                        message_en: format!("{l} has been activated already"),
                    });
                }
                let out = start_activation(tx, &t, &l, &code, now)?;
                records::append_next_audit(
                    tx,
                    &t,
                    now,
                    &entry(
                        &actor,
                        "account.activation_reissue",
                        &l,
                        serde_json::json!({}),
                    ),
                )?;
                Ok(out)
            })
            .await
    }

    /// The holder of an activation code sets the account's password.
    /// Throttled like a sign-in (by source, then per account and source,
    /// see [`super::throttle`]) and logged; a wrong, used or expired code
    /// changes nothing.
    #[allow(clippy::too_many_arguments)]
    pub async fn activate_account(
        &self,
        source: Option<std::net::IpAddr>,
        tenant: &MunicipalityCode,
        login: &str,
        code: &str,
        password: &str,
        terminal: &str,
    ) -> Result<(), ServiceError> {
        access::validate_password(password).map_err(|e| ServiceError::invalid("password", &e))?;
        let login: String = login.trim().to_lowercase().chars().take(64).collect();
        let terminal: String = terminal
            .chars()
            .filter(|c| !c.is_control())
            .take(32)
            .collect::<String>()
            .trim()
            .to_string();
        let terminal = if terminal.is_empty() {
            "web".to_string()
        } else {
            terminal
        };
        let now = self.clock().now().timestamp_micros();
        let source = Source::of(source);
        let ticket = self
            .throttle()
            .admit(Door::SignIn, source, now)
            .map_err(|r| ServiceError::TooManyAttempts {
                retry_after: r.retry_after,
            })?;
        if self.ensure_tenant(tenant).await.is_err() {
            return Err(ServiceError::ActivationFailed);
        }
        let window_start = now - super::auth::THROTTLE_WINDOW_SECONDS * 1_000_000;
        let hash = {
            let _turn = self.throttle().hashing_turn().await;
            let pw = password.to_string();
            tokio::task::spawn_blocking(move || hash_password(&pw))
                .await
                .map_err(|e| StoreError::Task(format!("hashing: {e}")))??
        };
        let code_hash = token_hash(&normalise_code(code));
        let (t, l) = (tenant.clone(), login.clone());
        let (key, source_key) = (tenant.to_string(), source.key());
        let actor = Actor {
            operator: login.clone(),
            terminal,
        };
        let done = self
            .store()
            .write(Some(tenant), move |tx| {
                let refused =
                    super::auth::admit_attempt(tx, &key, &l, &source_key, now, window_start)?;
                if let Some(retry_after) = refused {
                    records::append_next_audit(
                        tx,
                        &t,
                        now,
                        &entry(
                            &actor,
                            "account.activate.throttled",
                            &l,
                            serde_json::json!({}),
                        ),
                    )?;
                    return Ok::<_, ServiceError>(Err(ServiceError::TooManyAttempts {
                        retry_after,
                    }));
                }
                // Hashes of an 80-bit code are compared: how long a
                // comparison takes tells nothing about the code itself.
                let ok = accounts::get_account(tx, Some(&t), &l)?.is_some_and(|a| {
                    !a.disabled
                        && a.activation_expires.is_some_and(|e| e > now)
                        && a.activation_hash.as_deref() == Some(code_hash.as_str())
                });
                if ok && accounts::complete_activation(tx, &t, &l, &code_hash, &hash)? {
                    accounts::clear_login_failures(tx, &key, &l, &source_key)?;
                    records::append_next_audit(
                        tx,
                        &t,
                        now,
                        &entry(&actor, "account.activate", &l, serde_json::json!({})),
                    )?;
                    return Ok(Ok(()));
                }
                records::append_next_audit(
                    tx,
                    &t,
                    now,
                    &entry(&actor, "account.activate.failed", &l, serde_json::json!({})),
                )?;
                Ok(Err(ServiceError::ActivationFailed))
            })
            .await?;
        if done.is_ok() {
            self.throttle().proven(ticket);
        }
        done
    }
}

/// Inserts an account that waits for its holder's activation.
fn create_account_row(
    tx: &mut crate::store::Tx<'_>,
    tenant: &MunicipalityCode,
    login: &str,
    display_name: &str,
    role: Role,
    code: &str,
    now: i64,
) -> Result<ActivationCode, ServiceError> {
    let expires_at = now + ACTIVATION_SECONDS * 1_000_000;
    let inserted = accounts::insert_account(
        tx,
        &Account {
            tenant: Some(tenant.clone()),
            login: login.to_string(),
            display_name: display_name.to_string(),
            role: role.as_str().to_string(),
            password_hash: String::new(),
            created_at: now,
            disabled: false,
            activation_hash: Some(token_hash(&normalise_code(code))),
            activation_expires: Some(expires_at),
        },
    )?;
    if !inserted {
        return Err(ServiceError::AccountExists(login.to_string()));
    }
    Ok(ActivationCode {
        login: login.to_string(),
        code: code.to_string(),
        expires_at,
    })
}

/// Applies an approved proposal and logs what it did.
#[allow(clippy::too_many_arguments)]
fn apply(
    tx: &mut crate::store::Tx<'_>,
    t: &MunicipalityCode,
    grant_id: i64,
    p: &Proposal,
    actor: &Actor,
    now: i64,
    code: &str,
    (secret, secret_hash): (String, String),
) -> Result<GrantOutcome, ServiceError> {
    let log = |tx: &mut crate::store::Tx<'_>, function: &str, detail: serde_json::Value| {
        records::append_next_audit(tx, t, now, &entry(actor, function, p.target(), detail))
    };
    match p {
        Proposal::AccountCreate {
            login,
            display_name,
            role,
        } => {
            let out = create_account_row(tx, t, login, display_name, *role, code, now)?;
            log(
                tx,
                "account.create",
                serde_json::json!({ "role": role.as_str(), "grant_id": grant_id }),
            )?;
            Ok(GrantOutcome::Activation(out))
        }
        Proposal::AccountRole { login, role } => {
            let a = account_of(tx, t, login)?;
            accounts::set_account_role(tx, t, login, role.as_str())?;
            // Whoever knew the old password does not keep the new role.
            let out = start_activation(tx, t, login, code, now)?;
            log(
                tx,
                "account.role",
                serde_json::json!({ "from": a.role, "to": role.as_str(), "grant_id": grant_id }),
            )?;
            Ok(GrantOutcome::Activation(out))
        }
        Proposal::ClientCreate {
            client_id,
            system,
            scopes,
        } => {
            let inserted = accounts::insert_client(
                tx,
                &ApiClient {
                    client_id: client_id.clone(),
                    tenant: t.clone(),
                    system: system.clone(),
                    secret_hash,
                    scopes: scopes.clone(),
                    created_at: now,
                    disabled: false,
                    direct_commit: false,
                    secret_sealed: Some(
                        tx.tenant_keys(t)?
                            .seal(
                                &super::client_jwt::seal_context(client_id),
                                secret.as_bytes(),
                            )
                            .map_err(crate::store::StoreError::from)?,
                    ),
                },
            )?;
            if !inserted {
                return Err(ServiceError::AccountExists(client_id.clone()));
            }
            log(
                tx,
                "client.create",
                serde_json::json!({ "scopes": scopes, "grant_id": grant_id }),
            )?;
            Ok(GrantOutcome::ClientSecret {
                client_id: client_id.clone(),
                secret,
            })
        }
        Proposal::ClientScopes { client_id, scopes } => {
            let c = client_of(tx, t, client_id)?;
            accounts::update_client(tx, t, client_id, &ClientUpdate::Scopes(scopes.clone()))?;
            accounts::delete_tokens_of_client(tx, client_id)?;
            log(
                tx,
                "client.scopes",
                serde_json::json!({ "from": c.scopes, "to": scopes, "grant_id": grant_id }),
            )?;
            Ok(GrantOutcome::Applied)
        }
        Proposal::ClientDirectCommit { client_id } => {
            client_of(tx, t, client_id)?;
            accounts::update_client(tx, t, client_id, &ClientUpdate::DirectCommit(true))?;
            log(
                tx,
                "client.direct_commit",
                serde_json::json!({ "direct_commit": true, "grant_id": grant_id }),
            )?;
            Ok(GrantOutcome::Applied)
        }
    }
}
