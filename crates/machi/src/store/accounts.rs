//! Staff accounts, sessions, login failures, API clients and their tokens.
//!
//! Secrets never reach the database in clear: passwords and client secrets
//! as argon2 hashes, session and access tokens as SHA-256 of the token.

use machi_domain::ids::MunicipalityCode;

use super::{Row, StoreError, Tx};

/// A staff account (tenant `None`: a platform operator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub tenant: Option<MunicipalityCode>,
    pub login: String,
    pub display_name: String,
    pub role: String,
    pub password_hash: String,
    pub created_at: i64,
    pub disabled: bool,
    /// SHA-256 of the activation code while the account waits for its
    /// holder to set a password (it cannot sign in until then).
    pub activation_hash: Option<String>,
    pub activation_expires: Option<i64>,
}

impl Account {
    /// Whether the account waits for its holder to activate it.
    pub fn awaiting_activation(&self) -> bool {
        self.activation_hash.is_some()
    }
}

const ACCOUNT_COLUMNS: &str = "login, display_name, role, password_hash, created_at, disabled, activation_hash, activation_expires";

fn account_from(r: &Row, tenant: Option<MunicipalityCode>) -> Result<Account, StoreError> {
    Ok(Account {
        tenant,
        login: r.text(0)?,
        display_name: r.text(1)?,
        role: r.text(2)?,
        password_hash: r.text(3)?,
        created_at: r.int(4)?,
        disabled: r.int(5)? != 0,
        activation_hash: r.opt_text(6)?,
        activation_expires: r.opt_int(7)?,
    })
}

/// Inserts an account; false if the login is taken.
pub fn insert_account(tx: &mut Tx<'_>, a: &Account) -> Result<bool, StoreError> {
    let n = match &a.tenant {
        Some(t) => tx.execute(
            "INSERT INTO accounts (tenant, login, display_name, role, password_hash, created_at, disabled, \
             activation_hash, activation_expires) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (tenant, login) DO NOTHING",
            &[
                t.as_str().into(),
                (&a.login).into(),
                (&a.display_name).into(),
                (&a.role).into(),
                (&a.password_hash).into(),
                a.created_at.into(),
                i64::from(a.disabled).into(),
                a.activation_hash.as_deref().into(),
                a.activation_expires.into(),
            ],
        )?,
        None => tx.execute(
            "INSERT INTO platform_accounts (login, display_name, password_hash, created_at, disabled) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (login) DO NOTHING",
            &[
                (&a.login).into(),
                (&a.display_name).into(),
                (&a.password_hash).into(),
                a.created_at.into(),
                i64::from(a.disabled).into(),
            ],
        )?,
    };
    Ok(n == 1)
}

pub fn get_account(
    tx: &mut Tx<'_>,
    tenant: Option<&MunicipalityCode>,
    login: &str,
) -> Result<Option<Account>, StoreError> {
    match tenant {
        Some(t) => tx
            .query_opt(
                &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE tenant = $1 AND login = $2"),
                &[t.as_str().into(), login.into()],
            )?
            .map(|r| account_from(&r, Some(t.clone())))
            .transpose(),
        None => tx
            .query_opt(
                "SELECT login, display_name, 'platform_operator', password_hash, created_at, disabled, \
                 NULL, NULL FROM platform_accounts WHERE login = $1",
                &[login.into()],
            )?
            .map(|r| account_from(&r, None))
            .transpose(),
    }
}

pub fn list_accounts(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
) -> Result<Vec<Account>, StoreError> {
    tx.query(
        &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE tenant = $1 ORDER BY login"),
        &[tenant.as_str().into()],
    )?
    .iter()
    .map(|r| account_from(r, Some(tenant.clone())))
    .collect()
}

pub fn set_account_disabled(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    login: &str,
    disabled: bool,
) -> Result<bool, StoreError> {
    // Callers cached by any process are checked again (see `CallerCache`).
    tx.mark_auth_changed()?;
    Ok(tx.execute(
        "UPDATE accounts SET disabled = $3 WHERE tenant = $1 AND login = $2",
        &[
            tenant.as_str().into(),
            login.into(),
            i64::from(disabled).into(),
        ],
    )? == 1)
}

/// Changes an account's role (the caller ends its sessions: a session
/// carries the role it was opened with).
pub fn set_account_role(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    login: &str,
    role: &str,
) -> Result<bool, StoreError> {
    // Callers cached by any process are checked again (see `CallerCache`).
    tx.mark_auth_changed()?;
    Ok(tx.execute(
        "UPDATE accounts SET role = $3 WHERE tenant = $1 AND login = $2",
        &[tenant.as_str().into(), login.into(), role.into()],
    )? == 1)
}

/// Puts an account into activation: its password is cleared (nobody who
/// knew it can sign in any more) and only the holder of the code, whose
/// hash is stored, can set a new one before `expires`.
pub fn set_activation(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    login: &str,
    code_hash: &str,
    expires: i64,
) -> Result<bool, StoreError> {
    // Callers cached by any process are checked again (see `CallerCache`).
    tx.mark_auth_changed()?;
    Ok(tx.execute(
        "UPDATE accounts SET password_hash = '', activation_hash = $3, activation_expires = $4 \
         WHERE tenant = $1 AND login = $2",
        &[
            tenant.as_str().into(),
            login.into(),
            code_hash.into(),
            expires.into(),
        ],
    )? == 1)
}

/// Ends an activation with the password its holder chose; false unless the
/// account still waited for exactly this code.
pub fn complete_activation(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    login: &str,
    code_hash: &str,
    password_hash: &str,
) -> Result<bool, StoreError> {
    // Callers cached by any process are checked again (see `CallerCache`).
    tx.mark_auth_changed()?;
    Ok(tx.execute(
        "UPDATE accounts SET password_hash = $4, activation_hash = NULL, activation_expires = NULL \
         WHERE tenant = $1 AND login = $2 AND activation_hash = $3",
        &[
            tenant.as_str().into(),
            login.into(),
            code_hash.into(),
            password_hash.into(),
        ],
    )? == 1)
}

/// A signed-in staff member's session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub tenant: Option<MunicipalityCode>,
    pub login: String,
    pub role: String,
    pub display_name: String,
    pub csrf: String,
    pub terminal: String,
    pub created_at: i64,
    pub expires_at: i64,
}

pub fn insert_session(tx: &mut Tx<'_>, token_hash: &str, s: &Session) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO sessions (token_hash, tenant, login, role, display_name, csrf, terminal, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &[
            token_hash.into(),
            s.tenant.as_ref().map(|t| t.as_str()).into(),
            (&s.login).into(),
            (&s.role).into(),
            (&s.display_name).into(),
            (&s.csrf).into(),
            (&s.terminal).into(),
            s.created_at.into(),
            s.expires_at.into(),
        ],
    )?;
    Ok(())
}

/// The live session with this token hash at `now`.
pub fn get_session(
    tx: &mut Tx<'_>,
    token_hash: &str,
    now: i64,
) -> Result<Option<Session>, StoreError> {
    let Some(r) = tx.query_opt(
        "SELECT tenant, login, role, display_name, csrf, terminal, created_at, expires_at \
         FROM sessions WHERE token_hash = $1 AND expires_at > $2",
        &[token_hash.into(), now.into()],
    )?
    else {
        return Ok(None);
    };
    let tenant = match r.opt_text(0)? {
        Some(t) => Some(
            t.parse()
                .map_err(|_| StoreError::Corrupt(format!("session tenant {t:?}")))?,
        ),
        None => None,
    };
    Ok(Some(Session {
        tenant,
        login: r.text(1)?,
        role: r.text(2)?,
        display_name: r.text(3)?,
        csrf: r.text(4)?,
        terminal: r.text(5)?,
        created_at: r.int(6)?,
        expires_at: r.int(7)?,
    }))
}

pub fn delete_session(tx: &mut Tx<'_>, token_hash: &str) -> Result<(), StoreError> {
    // Callers cached by any process are checked again (see `CallerCache`).
    tx.mark_auth_changed()?;
    tx.execute(
        "DELETE FROM sessions WHERE token_hash = $1",
        &[token_hash.into()],
    )?;
    Ok(())
}

/// Ends every session of an account (e.g. when it is disabled).
pub fn delete_sessions_of(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    login: &str,
) -> Result<(), StoreError> {
    // Callers cached by any process are checked again (see `CallerCache`).
    tx.mark_auth_changed()?;
    tx.execute(
        "DELETE FROM sessions WHERE tenant = $1 AND login = $2",
        &[tenant.as_str().into(), login.into()],
    )?;
    Ok(())
}

/// Removes expired sessions and tokens, and failures older than `failures_before`.
pub fn purge_expired(tx: &mut Tx<'_>, now: i64, failures_before: i64) -> Result<(), StoreError> {
    tx.execute("DELETE FROM sessions WHERE expires_at <= $1", &[now.into()])?;
    tx.execute(
        "DELETE FROM api_tokens WHERE expires_at <= $1",
        &[now.into()],
    )?;
    tx.execute(
        "DELETE FROM login_failures WHERE at < $1",
        &[failures_before.into()],
    )?;
    Ok(())
}

/// Records an attempt (counted as failed until it succeeds) for throttling
/// per account and source (`tenant` "-" for the platform, "client" for API
/// clients; `source` as [`crate::service::throttle::Source::key`]).
pub fn insert_login_failure(
    tx: &mut Tx<'_>,
    tenant: &str,
    login: &str,
    source: &str,
    at: i64,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO login_failures (tenant, login, source, at) VALUES ($1, $2, $3, $4)",
        &[tenant.into(), login.into(), source.into(), at.into()],
    )?;
    Ok(())
}

/// The failures of an account from one source after `since`: how many, and
/// when the oldest was.
pub fn count_login_failures(
    tx: &mut Tx<'_>,
    tenant: &str,
    login: &str,
    source: &str,
    since: i64,
) -> Result<(i64, Option<i64>), StoreError> {
    let r = tx.query_one(
        "SELECT COUNT(*), MIN(at) FROM login_failures \
         WHERE tenant = $1 AND login = $2 AND source = $3 AND at > $4",
        &[tenant.into(), login.into(), source.into(), since.into()],
    )?;
    Ok((r.int(0)?, r.opt_int(1)?))
}

/// Forgets the failures of an account from one source (it proved the secret).
pub fn clear_login_failures(
    tx: &mut Tx<'_>,
    tenant: &str,
    login: &str,
    source: &str,
) -> Result<(), StoreError> {
    tx.execute(
        "DELETE FROM login_failures WHERE tenant = $1 AND login = $2 AND source = $3",
        &[tenant.into(), login.into(), source.into()],
    )?;
    Ok(())
}

/// Another system's API client (OAuth2 client credentials).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiClient {
    pub client_id: String,
    pub tenant: MunicipalityCode,
    pub system: String,
    pub secret_hash: String,
    /// Space-separated scopes.
    pub scopes: String,
    pub created_at: i64,
    pub disabled: bool,
    /// Its changes are committed at once instead of entered provisionally
    /// (set only by an approved proposal).
    pub direct_commit: bool,
    /// The secret sealed with the tenant's key (context
    /// `api-client:{client_id}`), for `client_secret_jwt`; None for a
    /// client registered before secrets were kept so.
    pub secret_sealed: Option<String>,
}

const CLIENT_COLUMNS: &str = "client_id, tenant, system, secret_hash, scopes, created_at, disabled, direct_commit, \
     secret_sealed";

pub fn insert_client(tx: &mut Tx<'_>, c: &ApiClient) -> Result<bool, StoreError> {
    Ok(tx.execute(
        "INSERT INTO api_clients (client_id, tenant, system, secret_hash, scopes, created_at, disabled, \
         direct_commit, secret_sealed) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (client_id) DO NOTHING",
        &[
            (&c.client_id).into(),
            c.tenant.as_str().into(),
            (&c.system).into(),
            (&c.secret_hash).into(),
            (&c.scopes).into(),
            c.created_at.into(),
            i64::from(c.disabled).into(),
            i64::from(c.direct_commit).into(),
            c.secret_sealed.as_deref().into(),
        ],
    )? == 1)
}

/// Updates one of a client's settings: `disabled`, `direct_commit`,
/// `scopes` or `secret_hash` (whatever the change, the caller also ends the
/// client's live tokens when it takes something away).
pub fn update_client(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    client_id: &str,
    change: &ClientUpdate,
) -> Result<bool, StoreError> {
    // Callers cached by any process are checked again (see `CallerCache`).
    tx.mark_auth_changed()?;
    let (column, value): (&str, super::Param) = match change {
        ClientUpdate::Disabled(d) => ("disabled", i64::from(*d).into()),
        ClientUpdate::DirectCommit(d) => ("direct_commit", i64::from(*d).into()),
        ClientUpdate::Scopes(s) => ("scopes", s.as_str().into()),
        ClientUpdate::SecretHash(h) => ("secret_hash", h.as_str().into()),
        ClientUpdate::SecretSealed(h) => ("secret_sealed", h.as_str().into()),
    };
    Ok(tx.execute(
        &format!("UPDATE api_clients SET {column} = $3 WHERE tenant = $1 AND client_id = $2"),
        &[tenant.as_str().into(), client_id.into(), value],
    )? == 1)
}

/// One setting of an API client, for [`update_client`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientUpdate {
    Disabled(bool),
    DirectCommit(bool),
    /// Space-separated scopes.
    Scopes(String),
    SecretHash(String),
    /// The secret sealed with the tenant's key (see [`ApiClient::secret_sealed`]).
    SecretSealed(String),
}

/// Remembers a client assertion's `jti` until `expires_at`; false if it was
/// seen already (a replay). Forgets the expired ones first.
pub fn use_assertion_id(
    tx: &mut Tx<'_>,
    client_id: &str,
    jti: &str,
    expires_at: i64,
    now: i64,
) -> Result<bool, StoreError> {
    tx.execute(
        "DELETE FROM client_assertion_jtis WHERE expires_at < $1",
        &[now.into()],
    )?;
    Ok(tx.execute(
        "INSERT INTO client_assertion_jtis (client_id, jti, expires_at) VALUES ($1, $2, $3) \
         ON CONFLICT (client_id, jti) DO NOTHING",
        &[client_id.into(), jti.into(), expires_at.into()],
    )? == 1)
}

/// Ends every live access token of a client.
pub fn delete_tokens_of_client(tx: &mut Tx<'_>, client_id: &str) -> Result<(), StoreError> {
    // Callers cached by any process are checked again (see `CallerCache`).
    tx.mark_auth_changed()?;
    tx.execute(
        "DELETE FROM api_tokens WHERE client_id = $1",
        &[client_id.into()],
    )?;
    Ok(())
}

fn client_from(r: &Row) -> Result<ApiClient, StoreError> {
    let t = r.text(1)?;
    Ok(ApiClient {
        client_id: r.text(0)?,
        tenant: t
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("client tenant {t:?}")))?,
        system: r.text(2)?,
        secret_hash: r.text(3)?,
        scopes: r.text(4)?,
        created_at: r.int(5)?,
        disabled: r.int(6)? != 0,
        direct_commit: r.int(7)? != 0,
        secret_sealed: r.opt_text(8)?,
    })
}

pub fn get_client(tx: &mut Tx<'_>, client_id: &str) -> Result<Option<ApiClient>, StoreError> {
    tx.query_opt(
        &format!("SELECT {CLIENT_COLUMNS} FROM api_clients WHERE client_id = $1"),
        &[client_id.into()],
    )?
    .map(|r| client_from(&r))
    .transpose()
}

pub fn list_clients(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
) -> Result<Vec<ApiClient>, StoreError> {
    tx.query(
        &format!("SELECT {CLIENT_COLUMNS} FROM api_clients WHERE tenant = $1 ORDER BY client_id"),
        &[tenant.as_str().into()],
    )?
    .iter()
    .map(client_from)
    .collect()
}

/// A live access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    pub client_id: String,
    pub tenant: MunicipalityCode,
    pub scopes: String,
    pub expires_at: i64,
}

/// A live token with what its client holds now (a token never outlives a
/// narrowing), read from the client on every use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveToken {
    pub token: ApiToken,
    /// The client's scopes now, space-separated.
    pub client_scopes: String,
    /// Whether the client may commit changes directly.
    pub direct_commit: bool,
}

pub fn insert_token(tx: &mut Tx<'_>, token_hash: &str, t: &ApiToken) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO api_tokens (token_hash, client_id, tenant, scopes, expires_at) VALUES ($1, $2, $3, $4, $5)",
        &[
            token_hash.into(),
            (&t.client_id).into(),
            t.tenant.as_str().into(),
            (&t.scopes).into(),
            t.expires_at.into(),
        ],
    )?;
    Ok(())
}

pub fn get_token(
    tx: &mut Tx<'_>,
    token_hash: &str,
    now: i64,
) -> Result<Option<LiveToken>, StoreError> {
    let Some(r) = tx.query_opt(
        "SELECT t.client_id, t.tenant, t.scopes, t.expires_at, c.scopes, c.direct_commit FROM api_tokens t \
         JOIN api_clients c ON c.client_id = t.client_id \
         WHERE t.token_hash = $1 AND t.expires_at > $2 AND c.disabled = 0",
        &[token_hash.into(), now.into()],
    )?
    else {
        return Ok(None);
    };
    let tenant = r.text(1)?;
    Ok(Some(LiveToken {
        token: ApiToken {
            client_id: r.text(0)?,
            tenant: tenant
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("token tenant {tenant:?}")))?,
            scopes: r.text(2)?,
            expires_at: r.int(3)?,
        },
        client_scopes: r.text(4)?,
        direct_commit: r.int(5)? != 0,
    }))
}
