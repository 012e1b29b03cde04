//! Authentication: staff accounts (argon2), sessions with a CSRF token,
//! login throttling, and OAuth2 client credentials for other systems
//! (short-lived bearer tokens, no refresh tokens). Every login and failed
//! login of a tenant's account is written to that tenant's access log (j1370).

use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use machi_domain::access::{self, Permission, Role, Scope};
use machi_domain::ids::MunicipalityCode;
use sha2::{Digest, Sha256};

use super::registry::{Actor, Registry, ServiceError};
use super::throttle::{Door, Source, Throttle};
use crate::store::accounts::{self, Account, ApiClient, ApiToken, Session};
use crate::store::records::{self, AuditEntry};
use crate::store::{StoreError, Tx};

/// How long a staff session lives: one working day.
pub const SESSION_SECONDS: i64 = 8 * 3600;
/// How long an access token lives.
pub const TOKEN_SECONDS: i64 = 600;
/// Failed logins of one account from one source allowed within
/// [`THROTTLE_WINDOW_SECONDS`] (see [`super::throttle`] for the per-source
/// and global budgets in front of this).
pub const MAX_FAILURES: i64 = 5;
pub const THROTTLE_WINDOW_SECONDS: i64 = 15 * 60;

/// How long a verified caller is served from memory at most: the bound
/// on a revocation that reaches this process by no notification (an
/// operator's SQL, or a PostgreSQL listener whose connection died without
/// a word). Revocations through machi end a cached caller at once.
pub const CALLER_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(2);

/// Most callers cached; a full cache starts again empty.
const CALLER_CACHE_MAX: usize = 10_000;

/// Bearer tokens and sessions verified in the database a moment ago, by
/// the hash of their secret: a request with a cached one asks the
/// database nothing to know its caller.
///
/// Revocation is never weakened: an entry is used only while the store's
/// [`crate::store::Store::auth_epoch`] is the one it was read under, and
/// that moves on when any transaction that takes access away commits —
/// in this process before its caller is answered, in another (PostgreSQL)
/// when its notification arrives — and is `None` (nothing cached) while
/// the PostgreSQL listener is not connected. An entry read before such a
/// commit and stored after it carries the old epoch and is never used.
/// The token's or session's expiry is checked on every use, and an entry
/// lives [`CALLER_CACHE_TTL`] at most. Only live callers are cached: an
/// unknown token is looked up every time.
pub struct CallerCache {
    ttl: std::time::Duration,
    entries: std::sync::Mutex<std::collections::HashMap<String, CachedCaller>>,
}

struct CachedCaller {
    caller: Caller,
    /// The token's or session's own end (µs).
    expires_at: i64,
    epoch: u64,
    stored: std::time::Instant,
}

impl CallerCache {
    pub fn new(ttl: std::time::Duration) -> Self {
        CallerCache {
            ttl,
            entries: Default::default(),
        }
    }

    fn get(&self, key: &str, epoch: Option<u64>, now: i64) -> Option<Caller> {
        let epoch = epoch?;
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let e = entries.get(key)?;
        if e.epoch == epoch && now < e.expires_at && e.stored.elapsed() < self.ttl {
            return Some(e.caller.clone());
        }
        entries.remove(key);
        None
    }

    /// Keeps `caller`, read from the database under `epoch`, unless the
    /// epoch has moved on since.
    fn put(
        &self,
        key: String,
        caller: &Caller,
        expires_at: i64,
        epoch: Option<u64>,
        now_epoch: Option<u64>,
    ) {
        let Some(epoch) = epoch else { return };
        if self.ttl.is_zero() || now_epoch != Some(epoch) {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= CALLER_CACHE_MAX {
            entries.clear();
        }
        entries.insert(
            key,
            CachedCaller {
                caller: caller.clone(),
                expires_at,
                epoch,
                stored: std::time::Instant::now(),
            },
        );
    }
}

/// Who is calling, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A staff member signed in through the UI.
    Staff {
        tenant: Option<MunicipalityCode>,
        login: String,
        display_name: String,
        role: Role,
        terminal: String,
        csrf: String,
    },
    /// Another system with an access token.
    Client {
        tenant: MunicipalityCode,
        client_id: String,
        scopes: Vec<Scope>,
        /// The tenant allowed this client to commit changes directly (an
        /// approved proposal); otherwise its changes are provisional.
        direct_commit: bool,
    },
}

impl Caller {
    /// The tenant the caller belongs to (none for a platform operator).
    pub fn tenant(&self) -> Option<&MunicipalityCode> {
        match self {
            Caller::Staff { tenant, .. } => tenant.as_ref(),
            Caller::Client { tenant, .. } => Some(tenant),
        }
    }

    pub fn allows(&self, p: Permission) -> bool {
        match self {
            Caller::Staff { role, .. } => role.allows(p),
            Caller::Client { scopes, .. } => scopes.iter().any(|s| s.permission() == p),
        }
    }

    /// Whether a change this caller enters is committed at once rather
    /// than entered provisionally (仮登録, j530): staff who may approve, and
    /// a client the tenant allowed to (its flag is itself approved by a
    /// second person).
    pub fn commits_directly(&self) -> bool {
        match self {
            Caller::Staff { role, .. } => role.allows(Permission::ApproveChange),
            Caller::Client { direct_commit, .. } => {
                *direct_commit && self.allows(Permission::EnterChange)
            }
        }
    }

    pub fn role(&self) -> Option<Role> {
        match self {
            Caller::Staff { role, .. } => Some(*role),
            Caller::Client { .. } => None,
        }
    }

    /// The operator and terminal written to the access log.
    pub fn actor(&self) -> Actor {
        match self {
            Caller::Staff {
                login, terminal, ..
            } => Actor {
                operator: login.clone(),
                terminal: terminal.clone(),
            },
            Caller::Client { client_id, .. } => Actor {
                operator: format!("client:{client_id}"),
                terminal: "api".into(),
            },
        }
    }

    /// Ok if the caller belongs to `tenant` and may do `p`; the refusal
    /// otherwise (another tenant's data looks like no data at all).
    pub fn check(&self, tenant: &MunicipalityCode, p: Permission) -> Result<(), ServiceError> {
        if self.tenant() != Some(tenant) {
            return Err(ServiceError::TenantNotFound(tenant.to_string()));
        }
        if !self.allows(p) {
            return Err(match self {
                Caller::Staff { .. } => ServiceError::Forbidden,
                // A client is told which scope it lacks (with the system
                // name its other scopes carry).
                Caller::Client { scopes, .. } => ServiceError::ScopeMissing {
                    scope: scope_granting(p).map(|(r, o)| {
                        let system = scopes.first().map_or("{system}", |s| s.system.as_str());
                        format!("{system}:{r}:{o}")
                    }),
                },
            });
        }
        Ok(())
    }
}

/// What a scope's resource and operation let a client do, in words
/// (ja, en); None for one the server does not know.
pub fn scope_words(resource: &str, operation: &str) -> Option<(&'static str, &'static str)> {
    Some(match (resource, operation) {
        ("residents", "read") => ("住民記録の参照", "read resident records"),
        ("changes", "read") => ("異動の参照", "read changes"),
        ("changes", "write") => ("異動の入力", "enter changes"),
        ("events", "read") => ("連携イベントの取得", "read linkage events"),
        ("subscriptions", "write") => ("通知（Webhook）の購読", "subscribe to webhooks"),
        ("extracts", "write") => ("ファイル連携の抽出の依頼", "request file-linkage extracts"),
        ("my_number", "read") => (
            "抽出への個人番号の記載",
            "have 個人番号 written into extracts",
        ),
        _ => return None,
    })
}

/// A stored scope list (`demo:changes:read demo:events:read`) in words:
/// 「異動の参照、連携イベントの取得」; the text as stored if it does not parse.
pub fn scopes_in_words(stored: &str, en: bool) -> String {
    match machi_domain::access::Scope::parse_list(stored) {
        Ok(list) => list
            .iter()
            .map(|s| match scope_words(&s.resource, &s.operation) {
                Some((ja, e)) => (if en { e } else { ja }).to_string(),
                None => format!("{} {}", s.resource, s.operation),
            })
            .collect::<Vec<_>>()
            .join(if en { ", " } else { "、" }),
        Err(_) => stored.to_string(),
    }
}

/// The scope (resource, operation) that lets a client do `p`; None when
/// no scope does (staff only).
pub fn scope_granting(p: Permission) -> Option<(&'static str, &'static str)> {
    Some(match p {
        Permission::ReadPersonal => ("residents", "read"),
        Permission::ReadChanges => ("changes", "read"),
        Permission::EnterChange => ("changes", "write"),
        Permission::ReadEvents => ("events", "read"),
        Permission::ManageSubscriptions => ("subscriptions", "write"),
        Permission::MakeExtract => ("extracts", "write"),
        Permission::ExtractMyNumber => ("my_number", "read"),
        _ => return None,
    })
}

/// A new session: the token goes to the browser (cookie), only its hash is stored.
#[derive(Debug, Clone)]
pub struct LoginOutcome {
    pub token: String,
    pub session: Session,
}

/// An OAuth2 access token response (RFC 6749 §4.4.3, no refresh token).
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct TokenGrant {
    pub access_token: String,
    #[schema(example = "Bearer")]
    pub token_type: String,
    pub expires_in: i64,
    pub scope: String,
}

/// Random secret as lowercase hex (`bytes` bytes from the OS).
pub fn random_hex(bytes: usize) -> Result<String, ServiceError> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf)
        .map_err(|e| ServiceError::Store(StoreError::Task(format!("random: {e}"))))?;
    Ok(hex::encode(buf))
}

/// SHA-256 of a token, as stored.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

pub fn hash_password(password: &str) -> Result<String, ServiceError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| ServiceError::Store(StoreError::Task(format!("argon2: {e}"))))
}

/// Checks a password against a stored hash; false for a malformed hash.
pub fn verify_password(password: &str, hash: &str) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), hash)
        .is_ok()
}

/// A hash no password matches, verified when the account does not exist so
/// that a missing account takes as long as a wrong password.
fn dummy_hash() -> &'static str {
    static H: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    H.get_or_init(|| hash_password("no account has this password 0").unwrap_or_default())
}

fn clean_terminal(t: &str) -> String {
    let t: String = t
        .chars()
        .filter(|c| !c.is_control())
        .take(32)
        .collect::<String>()
        .trim()
        .to_string();
    if t.is_empty() { "web".into() } else { t }
}

/// Counts one attempt for account `(key, login)` from `source` unless that
/// source has used up its [`MAX_FAILURES`]: `None` if the attempt may go
/// on, else the seconds until it may. Serialised per account and source
/// (an advisory lock on PostgreSQL; SQLite has one writer).
pub(super) fn admit_attempt(
    tx: &mut Tx<'_>,
    key: &str,
    login: &str,
    source: &str,
    now: i64,
    window_start: i64,
) -> Result<Option<u64>, StoreError> {
    if tx.backend() == crate::store::Backend::Postgres {
        let lock = format!("{key}/{login}/{source}");
        // execute, not query: the function returns a `void` column, which
        // no row type can hold.
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext($1))",
            &[lock.as_str().into()],
        )?;
    }
    tx.execute(
        "DELETE FROM login_failures WHERE tenant = $1 AND login = $2 AND at <= $3",
        &[key.into(), login.into(), window_start.into()],
    )?;
    let (failures, oldest) = accounts::count_login_failures(tx, key, login, source, window_start)?;
    if failures >= MAX_FAILURES {
        let left = oldest.unwrap_or(now) + THROTTLE_WINDOW_SECONDS * 1_000_000 - now;
        return Ok(Some((left.max(1) as u64).div_ceil(1_000_000)));
    }
    accounts::insert_login_failure(tx, key, login, source, now)?;
    Ok(None)
}

/// Checks a password against a hash on a blocking thread, when the
/// throttle gives a turn (at most a few checks run at once).
async fn check_password(throttle: &Throttle, password: &str, hash: String) -> bool {
    let _turn = throttle.hashing_turn().await;
    let pw = password.to_string();
    tokio::task::spawn_blocking(move || verify_password(&pw, &hash))
        .await
        .unwrap_or(false)
}

/// A login event in the tenant's access log (platform logins go to the
/// process log: there is no platform chain).
fn log_login(
    tx: &mut Tx<'_>,
    tenant: Option<&MunicipalityCode>,
    login: &str,
    terminal: &str,
    function: &str,
    at: i64,
) -> Result<(), StoreError> {
    match tenant {
        Some(t) => {
            records::append_next_audit(
                tx,
                t,
                at,
                &AuditEntry {
                    operator: login.to_string(),
                    terminal: terminal.to_string(),
                    function: function.into(),
                    target: login.to_string(),
                    detail: "{}".into(),
                    my_number_shown: false,
                },
            )?;
        }
        None => tracing::info!(login, terminal, function, "platform login"),
    }
    Ok(())
}

impl Registry {
    /// Creates a staff account (tenant `None`: a platform operator).
    pub async fn create_account(
        &self,
        tenant: Option<&MunicipalityCode>,
        login: &str,
        display_name: &str,
        role: Role,
        password: &str,
        actor: &Actor,
    ) -> Result<(), ServiceError> {
        access::validate_login(login).map_err(|e| ServiceError::invalid("login", &e))?;
        access::validate_password(password).map_err(|e| ServiceError::invalid("password", &e))?;
        let name = display_name.trim();
        if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
            return Err(ServiceError::Invalid {
                field: "display_name".into(),
                code: "invalid_display_name",
                message_ja: "氏名（表示名）は1〜64文字で入力してください。".into(),
                message_en: "display_name must be 1 to 64 characters".into(),
            });
        }
        if role.is_tenant_role() != tenant.is_some() {
            return Err(ServiceError::Invalid {
                field: "role".into(),
                code: "role_scope",
                message_ja: "基盤運用者は団体に属さず、その他の役割は団体に属します。".into(),
                message_en:
                    "a platform operator belongs to no tenant; every other role belongs to one"
                        .into(),
            });
        }
        if let Some(t) = tenant {
            self.ensure_tenant(t).await?;
        }
        let now = self.clock().now().timestamp_micros();
        let account = Account {
            tenant: tenant.cloned(),
            login: login.to_string(),
            display_name: name.to_string(),
            role: role.as_str().to_string(),
            password_hash: hash_password(password)?,
            created_at: now,
            disabled: false,
            activation_hash: None,
            activation_expires: None,
        };
        let actor = actor.clone();
        self.store()
            .write(tenant, move |tx| {
                if !accounts::insert_account(tx, &account)? {
                    return Err(ServiceError::AccountExists(account.login.clone()));
                }
                if let Some(t) = &account.tenant {
                    records::append_next_audit(
                        tx,
                        t,
                        now,
                        &AuditEntry {
                            operator: actor.operator.clone(),
                            terminal: actor.terminal.clone(),
                            function: "account.create".into(),
                            target: account.login.clone(),
                            detail: serde_json::json!({ "role": account.role }).to_string(),
                            my_number_shown: false,
                        },
                    )?;
                }
                Ok(())
            })
            .await
    }

    /// Disables (or enables again) a staff account; disabling ends its sessions.
    pub async fn set_account_disabled(
        &self,
        tenant: &MunicipalityCode,
        login: &str,
        disabled: bool,
        actor: &Actor,
    ) -> Result<(), ServiceError> {
        if disabled && login == actor.operator {
            return Err(ServiceError::Invalid {
                field: "login".into(),
                code: "self_disable",
                message_ja: "自分のアカウントは停止できません。".into(),
                message_en: "you cannot disable your own account".into(),
            });
        }
        self.ensure_tenant(tenant).await?;
        let now = self.clock().now().timestamp_micros();
        let (t, l, actor) = (tenant.clone(), login.to_string(), actor.clone());
        self.store()
            .write(Some(tenant), move |tx| {
                if !accounts::set_account_disabled(tx, &t, &l, disabled)? {
                    return Err(ServiceError::Invalid {
                        field: "login".into(),
                        code: "no_account",
                        message_ja: format!("アカウント「{l}」はありません。"),
                        message_en: format!("no account {l:?}"),
                    });
                }
                if disabled {
                    accounts::delete_sessions_of(tx, &t, &l)?;
                }
                records::append_next_audit(
                    tx,
                    &t,
                    now,
                    &AuditEntry {
                        operator: actor.operator.clone(),
                        terminal: actor.terminal.clone(),
                        function: if disabled {
                            "account.disable"
                        } else {
                            "account.enable"
                        }
                        .into(),
                        target: l.clone(),
                        detail: "{}".into(),
                        my_number_shown: false,
                    },
                )?;
                Ok(())
            })
            .await
    }

    pub async fn accounts(&self, tenant: &MunicipalityCode) -> Result<Vec<Account>, ServiceError> {
        let t = tenant.clone();
        self.store()
            .read(Some(tenant), move |tx| Ok(accounts::list_accounts(tx, &t)?))
            .await
    }

    /// Signs a staff member in from an unknown source (not over the
    /// network); see [`Registry::login_from`].
    pub async fn login(
        &self,
        tenant: Option<&MunicipalityCode>,
        login: &str,
        password: &str,
        terminal: &str,
    ) -> Result<LoginOutcome, ServiceError> {
        self.login_from(None, tenant, login, password, terminal)
            .await
    }

    /// Signs a staff member in, throttled by source (see
    /// [`super::throttle`]): the address's and the global budget first
    /// (in memory), then per account and source: after [`MAX_FAILURES`]
    /// failures within [`THROTTLE_WINDOW_SECONDS`] that source is refused
    /// for that account, right password or not, until the window passes;
    /// other sources are not. An attempt is counted before its password is
    /// checked, under a lock per account and source, so parallel guesses
    /// cannot slip past; the right password takes the count back. A refused
    /// attempt is logged but not counted per account, so nobody can extend
    /// a lock-out forever.
    pub async fn login_from(
        &self,
        source: Option<std::net::IpAddr>,
        tenant: Option<&MunicipalityCode>,
        login: &str,
        password: &str,
        terminal: &str,
    ) -> Result<LoginOutcome, ServiceError> {
        let login: String = login.trim().to_lowercase().chars().take(64).collect();
        let terminal = clean_terminal(terminal);
        let now = self.clock().now().timestamp_micros();
        let source = Source::of(source);
        // 0. The source's and the global budget (a wrong tenant counts too).
        let ticket = self
            .throttle()
            .admit(Door::SignIn, source, now)
            .map_err(|r| ServiceError::TooManyAttempts {
                retry_after: r.retry_after,
            })?;
        if let Some(t) = tenant
            && self.ensure_tenant(t).await.is_err()
        {
            return Err(ServiceError::LoginFailed);
        }
        let window_start = now - THROTTLE_WINDOW_SECONDS * 1_000_000;
        let throttle_key = tenant.map_or_else(|| "-".to_string(), |t| t.to_string());
        let source_key = source.key();
        // 1. Count the attempt (or refuse it) before any password is checked.
        let (t, l, k, src, term) = (
            tenant.cloned(),
            login.clone(),
            throttle_key.clone(),
            source_key.clone(),
            terminal.clone(),
        );
        let refused = self
            .store()
            .write(tenant, move |tx| {
                let refused = admit_attempt(tx, &k, &l, &src, now, window_start)?;
                if refused.is_some() {
                    log_login(tx, t.as_ref(), &l, &term, "login.throttled", now)?;
                }
                Ok::<_, ServiceError>(refused)
            })
            .await?;
        if let Some(retry_after) = refused {
            return Err(ServiceError::TooManyAttempts { retry_after });
        }
        // 2. Check the password (a missing account against a dummy hash).
        let (t, l) = (tenant.cloned(), login.clone());
        let account = self
            .store()
            .read(tenant, move |tx| {
                Ok::<_, ServiceError>(accounts::get_account(tx, t.as_ref(), &l)?)
            })
            .await?;
        let hash = account
            .as_ref()
            .map_or_else(|| dummy_hash().to_string(), |a| a.password_hash.clone());
        let verified = check_password(self.throttle(), password, hash).await;
        // An account waiting for activation has no password to sign in with.
        let session = account
            .as_ref()
            .filter(|a| !a.disabled && !a.awaiting_activation())
            .and_then(|a| {
                let role: Role = a.role.parse().ok()?;
                Some(Session {
                    tenant: tenant.cloned(),
                    login: a.login.clone(),
                    role: role.as_str().to_string(),
                    display_name: a.display_name.clone(),
                    csrf: random_hex(32).ok()?,
                    terminal: terminal.clone(),
                    created_at: now,
                    expires_at: now + SESSION_SECONDS * 1_000_000,
                })
            });
        let session = session.filter(|_| verified);
        // 3. Record the outcome: a session, or the counted failure stays.
        let token = random_hex(32)?;
        let (t, l, th, s) = (
            tenant.cloned(),
            login.clone(),
            token_hash(&token),
            session.clone(),
        );
        self.store()
            .write(tenant, move |tx| {
                let function = match &s {
                    Some(s) => {
                        accounts::clear_login_failures(tx, &throttle_key, &l, &source_key)?;
                        accounts::purge_expired(tx, now, window_start)?;
                        accounts::insert_session(tx, &th, s)?;
                        "login"
                    }
                    None => "login.failed",
                };
                log_login(tx, t.as_ref(), &l, &terminal, function, now)?;
                Ok::<_, ServiceError>(())
            })
            .await?;
        match session {
            Some(session) => {
                self.throttle().proven(ticket);
                Ok(LoginOutcome { token, session })
            }
            None => Err(ServiceError::LoginFailed),
        }
    }

    /// The caller behind a session token, if the session is live (from
    /// [`CallerCache`] when it was verified a moment ago).
    pub async fn session_caller(&self, token: &str) -> Result<Option<Caller>, ServiceError> {
        let now = self.clock().now().timestamp_micros();
        let th = token_hash(token);
        let key = format!("s{th}");
        let epoch = self.store().auth_epoch();
        if let Some(c) = self.callers().get(&key, epoch, now) {
            return Ok(Some(c));
        }
        let s = self
            .store()
            .read(None, move |tx| accounts::get_session(tx, &th, now))
            .await?;
        let Some(s) = s else { return Ok(None) };
        let expires_at = s.expires_at;
        let caller = s.role.parse().ok().map(|role| Caller::Staff {
            role,
            tenant: s.tenant,
            login: s.login,
            display_name: s.display_name,
            terminal: s.terminal,
            csrf: s.csrf,
        });
        if let Some(c) = &caller {
            self.callers()
                .put(key, c, expires_at, epoch, self.store().auth_epoch());
        }
        Ok(caller)
    }

    pub async fn logout(&self, token: &str, caller: &Caller) -> Result<(), ServiceError> {
        let th = token_hash(token);
        let now = self.clock().now().timestamp_micros();
        let tenant = caller.tenant().cloned();
        let scope = tenant.clone();
        let actor = caller.actor();
        self.store()
            .write(scope.as_ref(), move |tx| {
                accounts::delete_session(tx, &th)?;
                if let Some(t) = &tenant {
                    records::append_next_audit(
                        tx,
                        t,
                        now,
                        &AuditEntry {
                            operator: actor.operator.clone(),
                            terminal: actor.terminal.clone(),
                            function: "logout".into(),
                            target: actor.operator.clone(),
                            detail: "{}".into(),
                            my_number_shown: false,
                        },
                    )?;
                }
                Ok::<_, ServiceError>(())
            })
            .await
    }

    /// Registers another system's API client; returns its id and secret
    /// (shown once, stored only as a hash).
    pub async fn create_client(
        &self,
        tenant: &MunicipalityCode,
        system: &str,
        scopes: &str,
        actor: &Actor,
    ) -> Result<(String, String), ServiceError> {
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
        let client_id = format!("{}-{}-{}", tenant, system, random_hex(4)?);
        let secret = random_hex(24)?;
        if !self
            .register_client(tenant, &client_id, system, &scopes, &secret, actor)
            .await?
        {
            return Err(ServiceError::AccountExists(client_id));
        }
        Ok((client_id, secret))
    }

    /// Registers a client with a given id and secret (the demo's, whose
    /// secret is printed); false if the id exists already.
    pub async fn register_client(
        &self,
        tenant: &MunicipalityCode,
        client_id: &str,
        system: &str,
        scopes: &[Scope],
        secret: &str,
        actor: &Actor,
    ) -> Result<bool, ServiceError> {
        self.ensure_tenant(tenant).await?;
        let client_id = client_id.to_string();
        let now = self.clock().now().timestamp_micros();
        let client = ApiClient {
            client_id: client_id.clone(),
            tenant: tenant.clone(),
            system: system.to_string(),
            secret_hash: hash_password(secret)?,
            scopes: scopes
                .iter()
                .map(Scope::to_string)
                .collect::<Vec<_>>()
                .join(" "),
            created_at: now,
            disabled: false,
            direct_commit: false,
            secret_sealed: Some(
                self.store()
                    .keyring()
                    .tenant(tenant)
                    .and_then(|k| {
                        k.seal(
                            &super::client_jwt::seal_context(client_id.as_str()),
                            secret.as_bytes(),
                        )
                    })
                    .map_err(StoreError::from)?,
            ),
        };
        let (t, actor) = (tenant.clone(), actor.clone());
        self.store()
            .write(Some(tenant), move |tx| {
                if !accounts::insert_client(tx, &client)? {
                    return Ok(false);
                }
                records::append_next_audit(
                    tx,
                    &t,
                    now,
                    &AuditEntry {
                        operator: actor.operator.clone(),
                        terminal: actor.terminal.clone(),
                        function: "client.create".into(),
                        target: client.client_id.clone(),
                        detail: serde_json::json!({ "scopes": client.scopes }).to_string(),
                        my_number_shown: false,
                    },
                )?;
                Ok(true)
            })
            .await
    }

    /// OAuth2 client credentials grant from an unknown source (not over
    /// the network); see [`Registry::issue_token_from`].
    pub async fn issue_token(
        &self,
        client_id: &str,
        secret: &str,
        requested: Option<&str>,
    ) -> Result<TokenGrant, ServiceError> {
        self.issue_token_from(None, client_id, secret, requested)
            .await
    }

    /// OAuth2 client credentials grant: a token for the client's scopes, or
    /// for the requested subset of them. Throttled like
    /// [`Registry::login_from`]: by source and globally, then per client
    /// and source. Only a wrong id or secret counts as a failure: a client
    /// that proved its secret and asked for a scope it was not granted is
    /// told so without being counted.
    pub async fn issue_token_from(
        &self,
        source: Option<std::net::IpAddr>,
        client_id: &str,
        secret: &str,
        requested: Option<&str>,
    ) -> Result<TokenGrant, ServiceError> {
        let id: String = client_id.trim().chars().take(80).collect();
        let now = self.clock().now().timestamp_micros();
        let window_start = now - THROTTLE_WINDOW_SECONDS * 1_000_000;
        let source = Source::of(source);
        let source_key = source.key();
        let ticket = self
            .throttle()
            .admit(Door::Token, source, now)
            .map_err(|r| ServiceError::TooManyAttempts {
                retry_after: r.retry_after,
            })?;
        // Counted before the secret is checked, serialised per client and source.
        let (i, src) = (id.clone(), source_key.clone());
        let refused = self
            .store()
            .write(None, move |tx| {
                Ok::<_, ServiceError>(admit_attempt(tx, "client", &i, &src, now, window_start)?)
            })
            .await?;
        if let Some(retry_after) = refused {
            return Err(ServiceError::TooManyAttempts { retry_after });
        }
        let i = id.clone();
        let client = self
            .store()
            .read(None, move |tx| {
                Ok::<_, ServiceError>(accounts::get_client(tx, &i)?)
            })
            .await?;
        let hash = client
            .as_ref()
            .map_or_else(|| dummy_hash().to_string(), |c| c.secret_hash.clone());
        let verified = check_password(self.throttle(), secret, hash).await;
        let client = match client {
            Some(c) if verified && !c.disabled => c,
            _ => return Err(ServiceError::LoginFailed),
        };
        self.grant_token(client, ticket, requested, source_key, now)
            .await
    }

    /// OAuth2 client credentials grant with `client_secret_jwt` client
    /// authentication (RFC 7523 §2.2; see [`super::client_jwt`]): the client
    /// proves its secret by an HS256 assertion for `audience` (the token
    /// endpoint's URL) instead of sending it. Throttled and counted exactly
    /// like [`Registry::issue_token_from`]: a bad signature, a wrong
    /// algorithm, audience or subject, an expired or replayed assertion are
    /// all failed attempts of the client named by its `iss`.
    pub async fn issue_token_by_assertion(
        &self,
        source: Option<std::net::IpAddr>,
        assertion: &str,
        form_client_id: Option<&str>,
        audience: &str,
        requested: Option<&str>,
    ) -> Result<TokenGrant, ServiceError> {
        use super::client_jwt;
        let now = self.clock().now().timestamp_micros();
        let window_start = now - THROTTLE_WINDOW_SECONDS * 1_000_000;
        let source = Source::of(source);
        let source_key = source.key();
        let ticket = self
            .throttle()
            .admit(Door::Token, source, now)
            .map_err(|r| ServiceError::TooManyAttempts {
                retry_after: r.retry_after,
            })?;
        if assertion.len() > 8 * 1024 {
            return Err(client_jwt::malformed());
        }
        let iss = client_jwt::issuer_of(assertion)?;
        let id: String = iss.trim().chars().take(80).collect();
        if form_client_id.is_some_and(|f| f.trim() != id) {
            return Err(ServiceError::Invalid {
                field: "client_assertion".into(),
                code: "assertion_subject",
                message_ja: "client_id と client_assertion の iss が一致しません。".into(),
                message_en: "client_id and the client_assertion's iss differ".into(),
            });
        }
        let (i, src) = (id.clone(), source_key.clone());
        let refused = self
            .store()
            .write(None, move |tx| {
                Ok::<_, ServiceError>(admit_attempt(tx, "client", &i, &src, now, window_start)?)
            })
            .await?;
        if let Some(retry_after) = refused {
            return Err(ServiceError::TooManyAttempts { retry_after });
        }
        client_jwt::check_algorithm(assertion)?;
        let i = id.clone();
        let client = self
            .store()
            .read(None, move |tx| {
                Ok::<_, ServiceError>(accounts::get_client(tx, &i)?)
            })
            .await?;
        let Some(client) = client.filter(|c| !c.disabled) else {
            // Unknown and wrong secret read the same; the HMAC is checked
            // anyway, so both take as long.
            let _ = client_jwt::verify(assertion, &[0u8; 24], &id, audience, now / 1_000_000);
            return Err(client_jwt::bad_signature());
        };
        let Some(sealed) = client.secret_sealed.clone() else {
            return Err(client_jwt::no_sealed_secret());
        };
        let secret = self
            .store()
            .keyring()
            .tenant(&client.tenant)
            .and_then(|k| k.open(&client_jwt::seal_context(&client.client_id), &sealed))
            .map_err(StoreError::from)?;
        let claims = client_jwt::verify(assertion, &secret, &id, audience, now / 1_000_000)?;
        let (i, jti) = (id.clone(), claims.jti.clone());
        let expires = (claims.exp + client_jwt::LEEWAY_SECONDS) * 1_000_000;
        let fresh = self
            .store()
            .write(None, move |tx| {
                Ok::<_, ServiceError>(accounts::use_assertion_id(tx, &i, &jti, expires, now)?)
            })
            .await?;
        if !fresh {
            return Err(client_jwt::replayed());
        }
        self.grant_token(client, ticket, requested, source_key, now)
            .await
    }

    /// A token for a client that proved its secret (by either method).
    async fn grant_token(
        &self,
        client: ApiClient,
        ticket: super::throttle::Ticket,
        requested: Option<&str>,
        source_key: String,
        now: i64,
    ) -> Result<TokenGrant, ServiceError> {
        // The secret is right: whatever follows is not a failed attempt.
        self.throttle().proven(ticket);
        let granted = Scope::parse_list(&client.scopes)
            .map_err(|e| ServiceError::Store(StoreError::Corrupt(e.to_string())))?;
        let scopes = match requested.filter(|s| !s.trim().is_empty()) {
            None => Ok(granted),
            Some(r) => match Scope::parse_list(r) {
                Err(e) => Err(ServiceError::invalid("scope", &e)),
                Ok(asked) => match asked.iter().find(|s| !granted.contains(s)) {
                    Some(extra) => Err(ServiceError::Invalid {
                        field: "scope".into(),
                        code: "invalid_scope",
                        message_ja: format!(
                            "スコープ「{extra}」はこのクライアントに許可されていません。"
                        ),
                        message_en: format!("scope {extra} is not granted to this client"),
                    }),
                    None => Ok(asked),
                },
            },
        };
        let scopes = match scopes {
            Ok(s) => s,
            Err(refusal) => {
                // Not a failed attempt: take its count back.
                let (i, src) = (client.client_id.clone(), source_key.clone());
                self.store()
                    .write(None, move |tx| {
                        accounts::clear_login_failures(tx, "client", &i, &src)?;
                        Ok::<_, ServiceError>(())
                    })
                    .await?;
                return Err(refusal);
            }
        };
        let scope = scopes
            .iter()
            .map(Scope::to_string)
            .collect::<Vec<_>>()
            .join(" ");
        let token = random_hex(32)?;
        let row = ApiToken {
            client_id: client.client_id.clone(),
            tenant: client.tenant.clone(),
            scopes: scope.clone(),
            expires_at: now + TOKEN_SECONDS * 1_000_000,
        };
        let th = token_hash(&token);
        let tenant = client.tenant.clone();
        self.store()
            .write(Some(&tenant), move |tx| {
                accounts::insert_token(tx, &th, &row)?;
                accounts::clear_login_failures(tx, "client", &row.client_id, &source_key)?;
                records::append_next_audit(
                    tx,
                    &row.tenant,
                    now,
                    &AuditEntry {
                        operator: format!("client:{}", row.client_id),
                        terminal: "api".into(),
                        function: "token.issue".into(),
                        target: row.client_id.clone(),
                        detail: serde_json::json!({ "scope": row.scopes }).to_string(),
                        my_number_shown: false,
                    },
                )?;
                Ok::<_, ServiceError>(())
            })
            .await?;
        Ok(TokenGrant {
            access_token: token,
            token_type: "Bearer".into(),
            expires_in: TOKEN_SECONDS,
            scope,
        })
    }

    /// The caller behind a bearer token, if it is live (from
    /// [`CallerCache`] when it was verified a moment ago).
    pub async fn token_caller(&self, token: &str) -> Result<Option<Caller>, ServiceError> {
        let now = self.clock().now().timestamp_micros();
        let th = token_hash(token);
        let key = format!("t{th}");
        let epoch = self.store().auth_epoch();
        if let Some(c) = self.callers().get(&key, epoch, now) {
            return Ok(Some(c));
        }
        let t = self
            .store()
            .read(None, move |tx| accounts::get_token(tx, &th, now))
            .await?;
        let Some(t) = t else { return Ok(None) };
        // A token never carries more than its client holds now.
        let now_held = Scope::parse_list(&t.client_scopes).unwrap_or_default();
        let expires_at = t.token.expires_at;
        let caller = Caller::Client {
            scopes: Scope::parse_list(&t.token.scopes)
                .unwrap_or_default()
                .into_iter()
                .filter(|s| now_held.contains(s))
                .collect(),
            tenant: t.token.tenant,
            client_id: t.token.client_id,
            direct_commit: t.direct_commit,
        };
        self.callers()
            .put(key, &caller, expires_at, epoch, self.store().auth_epoch());
        Ok(Some(caller))
    }
}
