//! The registry service: submits changes (one transaction each: facts,
//! history rows, audit entry, outbox event) and answers reads.

use std::collections::HashSet;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use chrono::NaiveDate;
use machi_domain::change::{
    self, Allocated, AsOf, ChangeCommand, ChangeError, ChangeInfo, ChangeReason, ChangeRequest,
    HistoryRow, Notice, PlanContext, RegistryView,
};
use machi_domain::dates::{DatePolicy, DateValue, EraTable};
use machi_domain::error::Localized;
use machi_domain::ids::{AddresseeNumber, HouseholdNumber, MunicipalityCode};
use machi_domain::names::{is_kana_query, search_key};
use machi_domain::support::SupportPurpose;
use serde::Serialize;

use super::Clock;
use crate::store::records::{self, Advance, AuditEntry, ChangeRecord, SearchFilter};
use crate::store::tenants::Tenant;
use crate::store::{Store, StoreError, Tx};

/// Who is acting, and from where (j230, j1370).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub operator: String,
    pub terminal: String,
}

impl Actor {
    pub fn system(name: &str) -> Self {
        Actor {
            operator: name.to_string(),
            terminal: "-".to_string(),
        }
    }
}

/// Why a service call failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("no tenant with municipality code {0}")]
    TenantNotFound(String),
    #[error("no person with addressee number {0}")]
    PersonNotFound(String),
    #[error("person {0} has no record at the requested time")]
    NotRecordedAsOf(String),
    #[error("no household with number {0}")]
    HouseholdNotFound(String),
    #[error("no change with id {0}")]
    ChangeNotFound(i64),
    #[error("{0}")]
    Change(#[from] ChangeError),
    #[error("{field}: {message_en}")]
    Invalid {
        field: String,
        code: &'static str,
        message_ja: String,
        message_en: String,
    },
    #[error("tenant {0} already exists")]
    TenantExists(String),
    #[error("not signed in")]
    Unauthenticated,
    #[error("the caller's role or scopes do not allow this")]
    Forbidden,
    /// A client's token lacks the scope the operation needs (`scope`, in
    /// full: `{system}:{resource}:{operation}`), or no scope allows it
    /// (None: the operation is for staff).
    #[error("the token lacks the scope {scope:?}")]
    ScopeMissing { scope: Option<String> },
    #[error("login failed")]
    LoginFailed,
    /// Refused by throttling (per source, global, or per account and
    /// source); `retry_after` whole seconds until an attempt may succeed.
    #[error("too many attempts; retry after {retry_after} s")]
    TooManyAttempts { retry_after: u64 },
    #[error("{0} already exists")]
    AccountExists(String),
    #[error("no provisional change {0}")]
    PendingNotFound(i64),
    /// 申請管理: no imported portal filing with this number.
    #[error("no filing {0}")]
    FilingNotFound(i64),
    /// 申請管理: no quarantined (refused on import) filing with this
    /// portal id.
    #[error("no refused filing with this id")]
    RefusalNotFound,
    /// 申請管理: this server has no portal link (`MACHI_PORTAL_URL`,
    /// its pull token and opening key), so it cannot open a quarantined
    /// filing again.
    #[error("no portal is configured on this server")]
    PortalNotConfigured,
    /// 申請管理: the step does not apply to a filing in its present state
    /// (e.g. approving a rejected filing).
    #[error("filing {id} is {status}: {action} is not possible")]
    FilingState {
        id: i64,
        status: String,
        action: &'static str,
    },
    /// 申請管理: the filing's procedure definition is the tenant's own
    /// version, which its administrator has not accepted (`refused`:
    /// refused it); `action` is the step refused.
    #[error(
        "filing {id}: its procedure definition ({title_en}, version {version}) is not accepted"
    )]
    DefinitionNotTrusted {
        id: i64,
        title_ja: String,
        title_en: String,
        version: i64,
        refused: bool,
        /// Accepted once, and the acceptance withdrawn.
        withdrawn: bool,
        action: &'static str,
    },
    /// No own procedure definition version of the tenant by that id and
    /// version (shipped versions need no decision).
    #[error("no procedure definition {procedure} version {version} awaits a decision")]
    DefinitionNotFound { procedure: String, version: i64 },
    /// A version shipped with machi: it needs no decision.
    #[error("procedure definition {title_en} version {version} is shipped with machi")]
    DefinitionShipped {
        title_ja: String,
        title_en: String,
        version: i64,
    },
    /// An acceptance to withdraw, but the version is not accepted (it
    /// awaits a decision, was refused, or was withdrawn already).
    #[error(
        "procedure definition {title_en} version {version} is not accepted: nothing to withdraw"
    )]
    DefinitionNotAccepted {
        title_ja: String,
        title_en: String,
        version: i64,
        trust: crate::store::procedure_definitions::Trust,
    },
    /// The definition version was accepted or refused already (a refusal
    /// is final; an acceptance stands until withdrawn).
    #[error("procedure definition {title_en} version {version} was already decided")]
    DefinitionDecided {
        title_ja: String,
        title_en: String,
        version: i64,
        accepted: bool,
    },
    #[error("provisional change {0} was already decided")]
    PendingDecided(i64),
    #[error("a change must be approved by someone other than who entered it")]
    SelfApproval,
    /// 職務の分離: a proposal decided by whoever proposed it, or by the
    /// person it is about.
    #[error("a proposal must be decided by someone other than who proposed it or whom it is about")]
    SelfGrant,
    #[error("no access proposal {0}")]
    GrantNotFound(i64),
    #[error("access proposal {0} was already decided")]
    GrantDecided(i64),
    #[error("no account {0}")]
    AccountNotFound(String),
    #[error("no API client {0}")]
    ClientNotFound(String),
    /// A wrong, used or expired activation code (which of them is not said).
    #[error("activation failed")]
    ActivationFailed,
    #[error(transparent)]
    Store(#[from] StoreError),
    /// 支援措置 (j440): a transition or an input the rules refuse.
    #[error("{0}")]
    Support(#[from] machi_domain::support::SupportError),
    /// 支援措置 (j440): no measure with this id.
    #[error("no support measure with id {0}")]
    SupportMeasureNotFound(i64),
    /// 支援措置 (j440): the request would show persons a measure in effect
    /// protects, and no release lets it through.
    #[error("blocked by a support measure: {} concerning persons {}", .purpose.label_en(), .persons.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", "))]
    SupportBlocked {
        persons: Vec<AddresseeNumber>,
        purpose: machi_domain::support::SupportPurpose,
    },
}

impl ServiceError {
    pub fn invalid(field: &str, e: &dyn Localized) -> Self {
        ServiceError::Invalid {
            field: field.to_string(),
            code: e.code(),
            message_ja: e.message_ja(),
            message_en: e.message_en(),
        }
    }
}

/// What a committed change produced.
#[derive(Debug, Clone, Serialize)]
pub struct ChangeOutcome {
    pub change_id: i64,
    pub reason: ChangeReason,
    pub rows: Vec<HistoryRow>,
    pub notices: Vec<Notice>,
    pub audit_seq: i64,
    pub event_seq: i64,
}

impl ChangeOutcome {
    /// 宛名番号 of the persons who were registered before this change. A
    /// dry run's new persons hold numbers that were never committed and
    /// may be given to someone else, so a provisional entry never names
    /// them (an exact access log names no predicted number).
    pub fn existing_persons(&self) -> Vec<AddresseeNumber> {
        self.rows
            .iter()
            .filter(|r| r.history_number > 1)
            .map(|r| r.record.addressee_number.clone())
            .collect()
    }

    /// 宛名番号 of every person the change touched.
    pub fn persons(&self) -> Vec<AddresseeNumber> {
        self.rows
            .iter()
            .map(|r| r.record.addressee_number.clone())
            .collect()
    }

    /// How many persons the change enters for the first time.
    pub fn new_persons(&self) -> usize {
        self.rows.iter().filter(|r| r.history_number == 1).count()
    }
}

/// Search parameters as a clerk or a client sends them (j340).
#[derive(Debug, Clone, Default)]
pub struct SearchParams {
    /// 氏名 (kanji, alphabet or 通称) or フリガナ; partial; folded per j330.
    pub name: Option<String>,
    pub birth_date: Option<String>,
    pub address: Option<String>,
    pub addressee_number: Option<String>,
    pub household_number: Option<String>,
    pub include_history: bool,
    pub include_removed: bool,
    pub after: Option<String>,
    pub limit: i64,
}

/// One page of search results.
#[derive(Debug, Clone)]
pub struct SearchPage {
    pub rows: Vec<HistoryRow>,
    /// The persons of the page the shield of a support measure covers
    /// (j380, j410, j440; [`super::support::Shield`]): the protected
    /// persons and everyone living with them. The edges show them only as
    /// restricted (name, reading, birth date, sex, status and a notice),
    /// all alike.
    pub restricted: BTreeSet<AddresseeNumber>,
    /// Where the page ended (rank, key and 宛名番号 of its last row), when
    /// more may follow.
    pub next_after: Option<records::SearchCursor>,
}

/// A change as a list shows it (j440): whole, or withheld because it
/// concerns a person the shield of a support measure covers.
#[derive(Debug, Clone)]
pub enum ListedChange {
    Shown(Box<ChangeRecord>),
    Withheld(i64),
}

impl ListedChange {
    pub fn change_id(&self) -> i64 {
        match self {
            ListedChange::Shown(c) => c.change_id,
            ListedChange::Withheld(id) => *id,
        }
    }

    /// The change, unless withheld.
    pub fn shown(&self) -> Option<&ChangeRecord> {
        match self {
            ListedChange::Shown(c) => Some(c),
            ListedChange::Withheld(_) => None,
        }
    }
}

/// The registry: shared, cheap to clone.
#[derive(Clone)]
pub struct Registry {
    store: Store,
    eras: Arc<EraTable>,
    clock: Clock,
    /// Tenants known to exist (tenants are never removed).
    known_tenants: Arc<RwLock<HashSet<MunicipalityCode>>>,
    /// Per-source and global counters of the public doors (this process).
    throttle: Arc<super::throttle::Throttle>,
    /// Which webhook callback URLs are accepted.
    hook_policy: super::hooks::HookPolicy,
    /// Where file-linkage extracts go (`MACHI_EXTRACT_TO`): a directory or
    /// `s3://BUCKET/PREFIX`; none: extracts only by the CLI.
    extract_target: Option<Arc<str>>,
    /// The server-wide extract interval in seconds (`MACHI_EXTRACT_EVERY`),
    /// for tenants without a schedule of their own.
    extract_every: u64,
    /// Whether the server-wide schedule's extracts carry 個人番号
    /// (`MACHI_EXTRACT_INCLUDE_MY_NUMBER`; off unless set).
    extract_my_number: bool,
    /// Where filing statuses are told to the citizen portal (申請管理).
    pub(crate) portal_link: Option<Arc<super::inbox::PortalLink>>,
    /// The portal link of the pull worker (its key and trust anchors):
    /// staff re-import quarantined filings with it (申請管理).
    pub(crate) portal_importer: Option<Arc<crate::portal::PortalLink>>,
    /// How often a waiting long poll of the feed reads again without
    /// being woken (a lost wake-up's bound: other processes' commits on
    /// PostgreSQL wake it through `LISTEN`/`NOTIFY`).
    feed_poll: std::time::Duration,
    /// Callers behind bearer tokens and sessions, verified recently (see
    /// [`super::auth::CallerCache`]).
    callers: Arc<super::auth::CallerCache>,
}

impl Registry {
    pub fn new(store: Store, eras: EraTable, clock: Clock) -> Self {
        Registry {
            store,
            eras: Arc::new(eras),
            clock,
            known_tenants: Arc::default(),
            throttle: Arc::default(),
            hook_policy: Default::default(),
            extract_target: None,
            extract_every: 3600,
            extract_my_number: false,
            portal_link: None,
            portal_importer: None,
            feed_poll: std::time::Duration::from_millis(500),
            callers: Arc::new(super::auth::CallerCache::new(super::auth::CALLER_CACHE_TTL)),
        }
    }

    /// How long a verified bearer token or session is served from memory
    /// at most (default [`super::auth::CALLER_CACHE_TTL`]; zero: never).
    /// Whatever it is, a revocation ends it at once in this process and,
    /// on PostgreSQL, as soon as other processes are notified.
    pub fn with_caller_cache(mut self, ttl: std::time::Duration) -> Self {
        self.callers = Arc::new(super::auth::CallerCache::new(ttl));
        self
    }

    pub(crate) fn callers(&self) -> &super::auth::CallerCache {
        &self.callers
    }

    /// The feed's fallback poll while a long poll waits (default 500 ms).
    pub fn with_feed_poll(mut self, every: std::time::Duration) -> Self {
        self.feed_poll = every.max(std::time::Duration::from_millis(10));
        self
    }

    pub fn feed_poll(&self) -> std::time::Duration {
        self.feed_poll
    }

    /// The registry writing file-linkage extracts to `target`.
    pub fn with_extract_target(mut self, target: Option<String>) -> Self {
        self.extract_target = target.map(Arc::from);
        self
    }

    pub fn extract_target(&self) -> Option<&str> {
        self.extract_target.as_deref()
    }

    /// The server-wide extract interval (seconds), shown to tenant
    /// administrators as the default.
    pub fn with_extract_every(mut self, seconds: u64) -> Self {
        self.extract_every = seconds;
        self
    }

    pub fn extract_every(&self) -> u64 {
        self.extract_every
    }

    /// Whether the server-wide schedule (tenants without one of their
    /// own) writes 個人番号 into residents.csv; off by default. Each such
    /// extract is logged as `linkage.extract` with `my_number_shown`, like
    /// one asked for on demand or by a tenant's schedule (番号法: only for
    /// receiving systems whose affairs use it).
    pub fn with_extract_my_number(mut self, include: bool) -> Self {
        self.extract_my_number = include;
        self
    }

    pub fn extract_includes_my_number(&self) -> bool {
        self.extract_my_number
    }

    /// The same registry with other throttling budgets (fresh counters).
    pub fn with_limits(mut self, limits: super::throttle::Limits) -> Self {
        self.throttle = Arc::new(super::throttle::Throttle::new(limits));
        self
    }

    /// The same registry, store and throttling counters, reading time from
    /// `clock` (tests move time on without waiting).
    pub fn at(&self, clock: Clock) -> Registry {
        Registry {
            clock,
            ..self.clone()
        }
    }

    pub fn throttle(&self) -> &super::throttle::Throttle {
        &self.throttle
    }

    /// The registry with `policy` for webhook callback URLs.
    pub fn with_hook_policy(mut self, policy: super::hooks::HookPolicy) -> Self {
        self.hook_policy = policy;
        self
    }

    pub fn hook_policy(&self) -> super::hooks::HookPolicy {
        self.hook_policy
    }

    /// Fails with `TenantNotFound` unless the tenant exists.
    pub async fn ensure_tenant(&self, code: &MunicipalityCode) -> Result<(), ServiceError> {
        if self.known_tenants.read().is_ok_and(|k| k.contains(code)) {
            return Ok(());
        }
        self.tenant(code).await?;
        if let Ok(mut k) = self.known_tenants.write() {
            k.insert(code.clone());
        }
        Ok(())
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn eras(&self) -> &EraTable {
        &self.eras
    }

    pub fn clock(&self) -> Clock {
        self.clock
    }

    // ---- tenants ----

    pub async fn create_tenant(
        &self,
        code: MunicipalityCode,
        name: &str,
        prefecture: &str,
    ) -> Result<Tenant, ServiceError> {
        for (field, v) in [("name", name), ("prefecture", prefecture)] {
            if v.trim().is_empty() || v.chars().count() > 64 || v.chars().any(char::is_control) {
                return Err(ServiceError::Invalid {
                    field: field.into(),
                    code: "invalid_tenant",
                    message_ja: format!("{field} は1〜64文字で入力してください。"),
                    message_en: format!("{field} must be 1 to 64 characters"),
                });
            }
        }
        let t = Tenant {
            municipality_code: code,
            name: name.trim().to_string(),
            prefecture: prefecture.trim().to_string(),
            created_at: self.clock.now().timestamp_micros(),
        };
        if !self.store.create_tenant(&t).await? {
            return Err(ServiceError::TenantExists(t.municipality_code.to_string()));
        }
        Ok(t)
    }

    pub async fn tenant(&self, code: &MunicipalityCode) -> Result<Tenant, ServiceError> {
        self.store
            .get_tenant(code)
            .await?
            .ok_or_else(|| ServiceError::TenantNotFound(code.to_string()))
    }

    /// The tenant as the rules of `req` need it: its prefecture and name
    /// for a 転居 (j560, j630) and a 転出 (j650), None for the other changes.
    pub async fn municipality_for(
        &self,
        tenant: &MunicipalityCode,
        req: &ChangeRequest,
    ) -> Result<Option<machi_domain::change::Municipality>, ServiceError> {
        if !matches!(
            req.command,
            machi_domain::change::ChangeCommand::MoveWithin { .. }
                | machi_domain::change::ChangeCommand::MoveOut { .. }
                | machi_domain::change::ChangeCommand::MoveOutAbroad { .. }
        ) {
            return Ok(None);
        }
        let t = self.tenant(tenant).await?;
        Ok(Some(machi_domain::change::Municipality {
            prefecture: t.prefecture,
            name: t.name,
        }))
    }

    pub async fn tenants(&self) -> Result<Vec<Tenant>, ServiceError> {
        Ok(self.store.list_tenants().await?)
    }

    // ---- changes ----

    /// Validates and commits one change: facts, history rows, an audit entry
    /// and an outbox event, in one transaction. On any error nothing is written.
    pub async fn submit(
        &self,
        tenant: &MunicipalityCode,
        req: &ChangeRequest,
        actor: &Actor,
    ) -> Result<ChangeOutcome, ServiceError> {
        self.ensure_tenant(tenant).await?;
        self.guard_change(tenant, req, &[], actor).await?;
        let now = self.clock.now();
        let today = self.clock.today();
        let eras = self.eras.clone();
        let municipality = self.municipality_for(tenant, req).await?;
        let (tenant_c, req, actor) = (tenant.clone(), req.clone(), actor.clone());
        // Group-committed with concurrent changes and reads of the tenant:
        // one commit (one disk flush) serves them all, instead of each
        // holding the tenant's sequences until its own flush.
        self.store
            .append(Some(tenant), move |tx| {
                let ctx = PlanContext {
                    eras: &eras,
                    today,
                    municipality: municipality.as_ref(),
                };
                submit_in(tx, &tenant_c, &req, &actor, &ctx, now.timestamp_micros())
            })
            .await
    }

    pub async fn change(
        &self,
        tenant: &MunicipalityCode,
        change_id: i64,
        actor: &Actor,
    ) -> Result<ChangeRecord, ServiceError> {
        self.ensure_tenant(tenant).await?;
        let t = tenant.clone();
        let c: ChangeRecord = self
            .store
            .read(Some(tenant), move |tx| {
                records::get_change(tx, &t, change_id)?
                    .ok_or(ServiceError::ChangeNotFound(change_id))
            })
            .await?;
        self.log_access(
            tenant,
            actor,
            "read.change",
            &c.persons,
            serde_json::json!({ "change_id": change_id }),
            false,
            Some(SupportPurpose::View),
        )
        .await?;
        Ok(c)
    }

    /// Recorded changes, newest first. A change that concerns a person the
    /// shield of a support measure covers (j440, [`super::support::Shield`])
    /// is listed withheld: its id only, nothing of its reason, dates,
    /// persons or content.
    pub async fn changes(
        &self,
        tenant: &MunicipalityCode,
        before: Option<i64>,
        limit: i64,
        actor: &Actor,
    ) -> Result<(Vec<ListedChange>, bool), ServiceError> {
        self.ensure_tenant(tenant).await?;
        let t = tenant.clone();
        let (list, more): (Vec<ListedChange>, bool) = self
            .store
            .read(Some(tenant), move |tx| {
                let mut list = records::list_changes(tx, &t, before, limit + 1)?;
                // One more than asked, to tell whether a page follows; it
                // is neither returned nor logged (the access log names
                // exactly the changes answered).
                let more = list.len() as i64 > limit;
                list.truncate(limit.max(0) as usize);
                let shield = super::support::Shield::load(tx, &t)?;
                let persons: Vec<AddresseeNumber> = list
                    .iter()
                    .flat_map(|c| c.persons.iter().cloned())
                    .collect();
                let covered = shield.covered(tx, &t, &persons)?;
                Ok::<_, ServiceError>((
                    list.into_iter()
                        .map(|c| {
                            if c.persons.iter().any(|p| covered.contains(p)) {
                                ListedChange::Withheld(c.change_id)
                            } else {
                                ListedChange::Shown(Box::new(c))
                            }
                        })
                        .collect(),
                    more,
                ))
            })
            .await?;
        let persons: Vec<AddresseeNumber> = list
            .iter()
            .filter_map(ListedChange::shown)
            .flat_map(|c| c.persons.iter().cloned())
            .collect();
        let ids: Vec<i64> = list.iter().map(ListedChange::change_id).collect();
        let withheld: Vec<i64> = list
            .iter()
            .filter(|c| c.shown().is_none())
            .map(ListedChange::change_id)
            .collect();
        self.log_read(
            tenant,
            actor,
            "read.changes",
            &persons,
            serde_json::json!({ "change_ids": ids, "withheld": withheld }),
        )
        .await?;
        Ok((list, more))
    }

    /// The persons and households a change request concerns (j440): those
    /// it names, and for a cancellation the persons of the cancelled change.
    /// A request whose names do not parse concerns nobody here; the change
    /// itself then fails on them before reading anything.
    async fn change_concerns(
        &self,
        tenant: &MunicipalityCode,
        req: &ChangeRequest,
    ) -> Result<(Vec<AddresseeNumber>, Vec<HouseholdNumber>), ServiceError> {
        let mut persons = req.referenced_persons().unwrap_or_default();
        let households = req.referenced_households().unwrap_or_default();
        if let ChangeCommand::Cancel { change_id } = &req.command {
            let (t, id) = (tenant.clone(), *change_id);
            let cancelled = self
                .store
                .read(Some(tenant), move |tx| records::get_change(tx, &t, id))
                .await?;
            if let Some(c) = cancelled {
                persons.extend(c.persons);
            }
        }
        Ok((persons, households))
    }

    /// 支援措置 (j410 異動入力の抑止, j440): a change that concerns a person
    /// the shield of a support measure covers, or their household, is
    /// entered only with a release of viewing for the operator: its
    /// validation would otherwise answer questions about the protected
    /// record (is this person in that household, is that household at this
    /// address). The release is used by the attempt, whatever its outcome,
    /// in a transaction of its own; a refusal is logged. `more` are persons
    /// the request is known to touch besides those it names.
    pub(crate) async fn guard_change(
        &self,
        tenant: &MunicipalityCode,
        req: &ChangeRequest,
        more: &[AddresseeNumber],
        actor: &Actor,
    ) -> Result<(), ServiceError> {
        let (mut persons, households) = self.change_concerns(tenant, req).await?;
        persons.extend(more.iter().cloned());
        if persons.is_empty() && households.is_empty() {
            return Ok(());
        }
        // Most changes concern nobody protected: a read decides that
        // without a write transaction.
        let (t, p, h) = (tenant.clone(), persons.clone(), households.clone());
        let concerned = self
            .store
            .read(Some(tenant), move |tx| {
                let shield = super::support::Shield::load(tx, &t)?;
                Ok::<_, ServiceError>(!shield.sources_of(tx, &t, &p, &h)?.is_empty())
            })
            .await?;
        if concerned {
            self.support_guard_concerning(
                tenant,
                &persons,
                &households,
                SupportPurpose::View,
                actor,
            )
            .await?;
        }
        Ok(())
    }

    // ---- reads ----

    /// A person's record as of `as_of`, with the whole history (oldest
    /// first) as recorded by `as_of.recorded_at`.
    pub async fn resident(
        &self,
        tenant: &MunicipalityCode,
        person: &AddresseeNumber,
        as_of: AsOf,
        actor: &Actor,
    ) -> Result<(HistoryRow, Vec<HistoryRow>), ServiceError> {
        let (row, history, _) = self
            .resident_read(tenant, person, as_of, actor, false)
            .await?;
        Ok((row, history))
    }

    /// [`Registry::resident`] with what a support measure protecting the
    /// person shows today (j380, j440; [`super::support::protection`]),
    /// read in the same snapshot as the history: one read transaction
    /// and the access-log entry.
    pub async fn resident_protected(
        &self,
        tenant: &MunicipalityCode,
        person: &AddresseeNumber,
        as_of: AsOf,
        actor: &Actor,
    ) -> Result<
        (
            HistoryRow,
            Vec<HistoryRow>,
            Option<super::support::Protection>,
        ),
        ServiceError,
    > {
        self.resident_read(tenant, person, as_of, actor, true).await
    }

    async fn resident_read(
        &self,
        tenant: &MunicipalityCode,
        person: &AddresseeNumber,
        as_of: AsOf,
        actor: &Actor,
        with_protection: bool,
    ) -> Result<
        (
            HistoryRow,
            Vec<HistoryRow>,
            Option<super::support::Protection>,
        ),
        ServiceError,
    > {
        let (t, p) = (tenant.clone(), person.clone());
        let today = self.clock.today();
        let (rows, mut protection) = self
            .store
            .read_short(Some(tenant), move |tx| {
                let rows = records::history(tx, &t, &p)?;
                let protection = if with_protection && !rows.is_empty() {
                    super::support::protection(tx, &t, std::slice::from_ref(&p), today)?
                } else {
                    BTreeMap::new()
                };
                Ok::<_, ServiceError>((rows, protection))
            })
            .await?;
        if rows.is_empty() {
            self.ensure_tenant(tenant).await?;
            return Err(ServiceError::PersonNotFound(person.to_string()));
        }
        // The guard (j440) before anything is told about the rows: "not
        // recorded on that date" would date a protected person's arrival.
        self.log_access(
            tenant,
            actor,
            "read.resident",
            std::slice::from_ref(person),
            serde_json::json!({ "as_of": as_of.effective, "recorded_as_of": as_of.recorded_at }),
            false,
            Some(SupportPurpose::View),
        )
        .await?;
        let chosen = change::select_as_of(&rows, as_of)
            .cloned()
            .ok_or_else(|| ServiceError::NotRecordedAsOf(person.to_string()))?;
        let visible = rows
            .into_iter()
            .filter(|r| as_of.recorded_at.is_none_or(|t| r.change.recorded_at <= t))
            .collect();
        Ok((chosen, visible, protection.remove(person)))
    }

    /// The resident members of a household as of `as_of`.
    pub async fn household(
        &self,
        tenant: &MunicipalityCode,
        household: &HouseholdNumber,
        as_of: AsOf,
        actor: &Actor,
    ) -> Result<Vec<HistoryRow>, ServiceError> {
        let (t, h) = (tenant.clone(), household.clone());
        let members: Vec<HistoryRow> = if as_of == AsOf::default() {
            // The current members: a few rows by key.
            self.store
                .read_short(Some(tenant), move |tx| {
                    records::household_rows(tx, &t, std::slice::from_ref(&h))
                })
                .await?
        } else {
            // Every history row of everyone ever in the household (a
            // dormitory's may be thousands): on a blocking thread.
            self.store
                .read(Some(tenant), move |tx| {
                    let histories: BTreeMap<_, _> = records::household_histories(tx, &t, &h)?;
                    Ok::<_, ServiceError>(
                        histories
                            .values()
                            .filter_map(|rows| change::select_as_of(rows, as_of).cloned())
                            .filter(|r| {
                                r.record.household_number == h && r.record.status.is_resident()
                            })
                            .collect(),
                    )
                })
                .await?
        };
        if members.is_empty() {
            self.ensure_tenant(tenant).await?;
        }
        let persons: Vec<AddresseeNumber> = members
            .iter()
            .map(|m| m.record.addressee_number.clone())
            .collect();
        // j440: the household itself counts too, so that a household a
        // protected person lives in now is refused on every "as of" date,
        // those it had no members on included (they would date its past).
        let target: Vec<&str> = persons.iter().map(|p| p.as_str()).collect();
        let entry = access_entry(
            actor,
            "read.household",
            target.join(","),
            serde_json::json!({ "household_number": household, "as_of": as_of.effective, "recorded_as_of": as_of.recorded_at }),
            false,
        );
        let guard = Guarded {
            persons: persons.clone(),
            households: vec![household.clone()],
            purpose: SupportPurpose::View,
        };
        if members.is_empty() {
            // Nothing to log as read: only a covered household is refused.
            let (t, h) = (tenant.clone(), household.clone());
            let covered = self
                .store
                .read(Some(tenant), move |tx| {
                    let shield = super::support::Shield::load(tx, &t)?;
                    Ok::<_, ServiceError>(!shield.sources_of(tx, &t, &[], &[h])?.is_empty())
                })
                .await?;
            if covered {
                self.commit_access(tenant, entry, actor, Some(guard))
                    .await?;
            }
            return Err(ServiceError::HouseholdNotFound(household.to_string()));
        }
        self.commit_access(tenant, entry, actor, Some(guard))
            .await?;
        Ok(members)
    }

    /// Linkage events after `after`, in order. The payload of an event
    /// that concerns a person the shield of a support measure covers
    /// (j440, [`super::support::Shield`]) is withheld: `{"change_id": …,
    /// "withheld": "support_measure"}`, so the feed tells nobody the
    /// household or the companions of a protected person; the event keeps
    /// its sequence and id. (j410: a release is not passed on to other
    /// systems, so no caller sees these payloads.)
    pub async fn events(
        &self,
        tenant: &MunicipalityCode,
        after: i64,
        limit: i64,
        actor: &Actor,
    ) -> Result<Vec<records::OutboxEvent>, ServiceError> {
        self.events_of(tenant, after, &[], limit, actor).await
    }

    /// [`Registry::events`] of the given types only (all when empty).
    pub async fn events_of(
        &self,
        tenant: &MunicipalityCode,
        after: i64,
        types: &[String],
        limit: i64,
        actor: &Actor,
    ) -> Result<Vec<records::OutboxEvent>, ServiceError> {
        self.ensure_tenant(tenant).await?;
        let (t, types) = (tenant.clone(), types.to_vec());
        let events: Vec<records::OutboxEvent> = self
            .store
            .read(Some(tenant), move |tx| {
                let events = records::events_after_of(tx, &t, after, &types, limit)?;
                if events.is_empty() && after > 0 {
                    // Zero loss: a cursor past the latest event would skip
                    // every event up to it (the answer's next_after keeps it).
                    let last = records::last_event_seq(tx, &t)?;
                    if after > last {
                        return Err(super::hooks::after_too_far(after, last));
                    }
                }
                withhold_protected(tx, &t, events)
            })
            .await?;
        if let (Some(first), Some(last)) = (events.first(), events.last()) {
            self.log_read(
                tenant,
                actor,
                "read.events",
                &event_persons(&events),
                serde_json::json!({ "from_seq": first.seq, "to_seq": last.seq }),
            )
            .await?;
        }
        Ok(events)
    }

    /// Re-folds the search keys of a tenant's records with today's fold
    /// table (j330: the MJ 縮退マップ), `batch` persons a transaction, until
    /// done or `max_batches` batches have run (then it stops where a later
    /// call resumes). Running it again after it finished changes nothing;
    /// `restart` starts from the first person again. See
    /// [`records::refold_batch`].
    pub async fn refold_search_keys(
        &self,
        tenant: &MunicipalityCode,
        batch: i64,
        max_batches: Option<usize>,
        restart: bool,
    ) -> Result<records::RefoldProgress, ServiceError> {
        self.ensure_tenant(tenant).await?;
        let batch = batch.clamp(1, 10_000);
        let mut first = restart;
        let mut n = 0usize;
        loop {
            let t = tenant.clone();
            let p = self
                .store
                .write(Some(tenant), move |tx| {
                    records::refold_batch(tx, &t, batch, first)
                })
                .await?;
            first = false;
            n += 1;
            if p.finished || max_batches.is_some_and(|m| n >= m) {
                return Ok(p);
            }
        }
    }

    /// Search (j340): by name (kanji, alphabet, 通称 or フリガナ, partial,
    /// folded per j330), birth date (和暦 or 西暦), address, 宛名番号, 世帯番号.
    pub async fn search(
        &self,
        tenant: &MunicipalityCode,
        p: &SearchParams,
        actor: &Actor,
    ) -> Result<SearchPage, ServiceError> {
        let mut f = SearchFilter {
            include_history: p.include_history,
            include_removed: p.include_removed,
            ..Default::default()
        };
        let folded = |s: &str| -> Option<String> {
            let k: String = search_key(s).chars().filter(|c| !c.is_control()).collect();
            (!k.is_empty()).then_some(k)
        };
        if let Some(n) = p.name.as_deref().filter(|s| !s.trim().is_empty()) {
            let key = folded(n);
            if is_kana_query(n) {
                f.kana_key = key;
            } else {
                f.name_key = key;
            }
        }
        if let Some(a) = p.address.as_deref().filter(|s| !s.trim().is_empty()) {
            f.address_key = folded(a);
        }
        if let Some(b) = p.birth_date.as_deref().filter(|s| !s.trim().is_empty()) {
            let d = DateValue::parse(b, &self.eras, DatePolicy::AllowIrregular)
                .map_err(|e| ServiceError::invalid("birth_date", &e))?;
            f.birth_key = records::date_key(&d);
        }
        if let Some(a) = p
            .addressee_number
            .as_deref()
            .filter(|s| !s.trim().is_empty())
        {
            f.addressee_number = Some(
                a.parse()
                    .map_err(|e| ServiceError::invalid("addressee_number", &e))?,
            );
        }
        if let Some(h) = p
            .household_number
            .as_deref()
            .filter(|s| !s.trim().is_empty())
        {
            f.household_number = Some(
                h.parse()
                    .map_err(|e| ServiceError::invalid("household_number", &e))?,
            );
        }
        if f.name_key.is_none()
            && f.kana_key.is_none()
            && f.address_key.is_none()
            && f.birth_key.is_none()
            && f.addressee_number.is_none()
            && f.household_number.is_none()
        {
            return Err(ServiceError::Invalid {
                field: "query".into(),
                code: "empty_search",
                message_ja: "検索条件を1つ以上入力してください。".into(),
                message_en: "give at least one search condition".into(),
            });
        }
        let after = match p.after.as_deref() {
            Some(c) => Some(decode_cursor(c)?),
            None => None,
        };
        let limit = p.limit.clamp(1, 200);
        // j440: a search by where people live never answers with a
        // protected person or anyone living with them, so it cannot confirm
        // an address or a household by probing; by who they are (name,
        // reading, birth date, 宛名番号) it finds them, restricted (j410:
        // 検索結果の表示の際、抑止対象であることが明らかとなること).
        f.exclude_shielded = f.address_key.is_some() || f.household_number.is_some();
        self.ensure_tenant(tenant).await?;
        let t = tenant.clone();
        // The page and its restricted persons in one read.
        let (rows, next_after, restricted) = self
            .store
            .read(Some(tenant), move |tx| {
                let mut hits = records::search(tx, &t, &f, after.as_ref(), limit + 1)?;
                let next_after = if hits.len() as i64 > limit {
                    hits.truncate(limit as usize);
                    hits.last().map(|h| h.cursor.clone())
                } else {
                    None
                };
                let rows: Vec<HistoryRow> = hits.into_iter().map(|h| h.row).collect();
                let persons: Vec<AddresseeNumber> = rows
                    .iter()
                    .map(|r| r.record.addressee_number.clone())
                    .collect();
                let shield = super::support::Shield::load(tx, &t)?;
                let restricted = shield.covered(tx, &t, &persons)?;
                Ok::<_, ServiceError>((rows, next_after, restricted))
            })
            .await?;
        let persons: Vec<AddresseeNumber> = rows
            .iter()
            .map(|r| r.record.addressee_number.clone())
            .collect();
        self.log_read(
            tenant,
            actor,
            "read.search",
            &persons,
            serde_json::json!({
                "name": p.name, "birth_date": p.birth_date, "address": p.address,
                "addressee_number": p.addressee_number, "household_number": p.household_number,
                "include_history": p.include_history, "include_removed": p.include_removed,
                "results": persons.len(),
            }),
        )
        .await?;
        Ok(SearchPage {
            rows,
            next_after,
            restricted,
        })
    }

    /// Parses an "as of" pair given as text: an effective date (和暦 or 西暦)
    /// and a recorded-at instant (RFC 3339).
    pub fn parse_as_of(
        &self,
        effective: Option<&str>,
        recorded_at: Option<&str>,
    ) -> Result<AsOf, ServiceError> {
        let effective = match effective.filter(|s| !s.trim().is_empty()) {
            Some(s) => Some(
                DateValue::parse(s, &self.eras, DatePolicy::CalendarOnly)
                    .map_err(|e| ServiceError::invalid("as_of", &e))?
                    .as_calendar()
                    .ok_or_else(|| ServiceError::Invalid {
                        field: "as_of".into(),
                        code: "invalid_date",
                        message_ja: "基準日は暦上の日付で指定してください。".into(),
                        message_en: "as_of must be a calendar date".into(),
                    })?,
            ),
            None => None,
        };
        let recorded_at = match recorded_at.filter(|s| !s.trim().is_empty()) {
            Some(s) => Some(
                chrono::DateTime::parse_from_rfc3339(s.trim())
                    .map_err(|_| ServiceError::Invalid {
                        field: "recorded_as_of".into(),
                        code: "invalid_timestamp",
                        message_ja: format!("記録時点「{s}」は RFC 3339 形式（例: 2026-11-22T10:00:00+09:00）で指定してください。"),
                        message_en: format!("recorded_as_of {s:?} must be RFC 3339, e.g. 2026-11-22T10:00:00+09:00"),
                    })?
                    .timestamp_micros(),
            ),
            None => None,
        };
        Ok(AsOf {
            effective,
            recorded_at,
        })
    }

    /// [`Registry::parse_as_of`] for the staff UI: the "recorded as of"
    /// time as people type it ([`Registry::parse_recorded_at`]).
    pub fn parse_as_of_typed(
        &self,
        effective: Option<&str>,
        recorded_at: Option<&str>,
    ) -> Result<AsOf, ServiceError> {
        let AsOf { effective, .. } = self.parse_as_of(effective, None)?;
        let recorded_at = match recorded_at.filter(|s| !s.trim().is_empty()) {
            Some(s) => Some(self.parse_recorded_at(s).ok_or_else(|| ServiceError::Invalid {
                field: "recorded_as_of".into(),
                code: "invalid_timestamp",
                message_ja: format!("記録時点「{s}」を読み取れません。日付と時刻で指定してください（例: 令和8年12月6日 13時05分、2026年12月6日 13:05）。日付だけならその日の終わりまでの記録です。"),
                message_en: format!("recorded_as_of {s:?} could not be read; give a date and time, e.g. 令和8年12月6日 13時05分 or 2026年12月6日 13:05 (a date alone means the end of that day)"),
            })?),
            None => None,
        };
        Ok(AsOf {
            effective,
            recorded_at,
        })
    }

    /// A "recorded as of" time as people type it: RFC 3339, or a date in
    /// 和暦 or 西暦 (full-width digits too) with an optional time in Japan
    /// time ("13:05", "13時05分", "13時"). A date alone is the end of that
    /// day: everything recorded on it is included.
    pub fn parse_recorded_at(&self, s: &str) -> Option<i64> {
        let s: String = s
            .trim()
            .chars()
            .map(|c| match c {
                '０'..='９' => char::from_u32(c as u32 - '０' as u32 + '0' as u32).unwrap_or(c),
                '：' => ':',
                '　' => ' ',
                '－' | 'ー' => '-',
                '／' => '/',
                _ => c,
            })
            .collect();
        if let Ok(t) = chrono::DateTime::parse_from_rfc3339(&s) {
            return Some(t.timestamp_micros());
        }
        let (date, time) = if let Some(i) = s.find('日') {
            let end = i + '日'.len_utf8();
            (&s[..end], s[end..].trim())
        } else if let Some((d, t)) = s.split_once([' ', 'T']) {
            (d, t.trim())
        } else {
            (s.as_str(), "")
        };
        let day = DateValue::parse(date.trim(), &self.eras, DatePolicy::CalendarOnly)
            .ok()?
            .as_calendar()?;
        let at = if time.is_empty() {
            day.succ_opt()?.and_hms_opt(0, 0, 0)? - chrono::Duration::microseconds(1)
        } else {
            let t = time
                .trim_end_matches('秒')
                .trim_end_matches('分')
                .replace(['時', '分'], ":");
            let mut parts = t.split(':').map(str::trim);
            let h: u32 = parts.next()?.parse().ok()?;
            let m: u32 = match parts.next() {
                Some(p) if !p.is_empty() => p.parse().ok()?,
                _ => 0,
            };
            let sec: u32 = match parts.next() {
                Some(p) if !p.is_empty() => p.parse().ok()?,
                _ => 0,
            };
            if parts.next().is_some() {
                return None;
            }
            day.and_hms_opt(h, m, sec)?
        };
        Some(
            at.and_local_timezone(super::clock::jst())
                .single()?
                .timestamp_micros(),
        )
    }

    /// Writes one access-log entry (j1370) in its own transaction, e.g. for
    /// an export or an import.
    pub async fn record_access(
        &self,
        tenant: &MunicipalityCode,
        actor: &Actor,
        function: &str,
        target: &str,
        detail: serde_json::Value,
    ) -> Result<i64, ServiceError> {
        let entry = access_entry(actor, function, target.to_string(), detail, false);
        self.commit_access(tenant, entry, actor, None).await
    }

    /// [`Registry::record_access`], marked as showing 個人番号 when
    /// `my_number_shown` (a file-linkage extract that includes it).
    pub async fn record_access_marked(
        &self,
        tenant: &MunicipalityCode,
        actor: &Actor,
        function: &str,
        target: &str,
        detail: serde_json::Value,
        my_number_shown: bool,
    ) -> Result<i64, ServiceError> {
        let entry = access_entry(actor, function, target.to_string(), detail, my_number_shown);
        self.commit_access(tenant, entry, actor, None).await
    }

    /// Writes the access-log entry (j1370) of a read of personal data:
    /// who read which persons, with what function. The data is returned
    /// only once this entry is committed.
    pub async fn log_read(
        &self,
        tenant: &MunicipalityCode,
        actor: &Actor,
        function: &str,
        persons: &[AddresseeNumber],
        detail: serde_json::Value,
    ) -> Result<i64, ServiceError> {
        self.log_access(tenant, actor, function, persons, detail, false, None)
            .await
    }

    /// Like [`Self::log_read`] for a read that shows whole records: a person
    /// under a support measure (j380, j440) blocks it unless an officer
    /// released this one request; the release is used in the same
    /// transaction as the log entry, and a refusal is logged too.
    #[allow(clippy::too_many_arguments)]
    pub async fn log_access(
        &self,
        tenant: &MunicipalityCode,
        actor: &Actor,
        function: &str,
        persons: &[AddresseeNumber],
        detail: serde_json::Value,
        my_number_shown: bool,
        guard: Option<SupportPurpose>,
    ) -> Result<i64, ServiceError> {
        let target: Vec<&str> = persons.iter().map(|p| p.as_str()).collect();
        let entry = access_entry(actor, function, target.join(","), detail, my_number_shown);
        self.commit_persons_access(tenant, entry, actor, persons, guard)
            .await
    }

    /// [`Self::log_access`] for a read whose object is not only persons
    /// (a provisional entry): `object` joins the persons in the target, so
    /// a read of an entry that names no registered person still has one.
    #[allow(clippy::too_many_arguments)]
    pub async fn log_access_of(
        &self,
        tenant: &MunicipalityCode,
        actor: &Actor,
        function: &str,
        object: &str,
        persons: &[AddresseeNumber],
        detail: serde_json::Value,
        guard: Option<SupportPurpose>,
    ) -> Result<i64, ServiceError> {
        let target: Vec<&str> = std::iter::once(object)
            .chain(persons.iter().map(|p| p.as_str()))
            .collect();
        let entry = access_entry(actor, function, target.join(","), detail, false);
        self.commit_persons_access(tenant, entry, actor, persons, guard)
            .await
    }

    /// Commits `entry`, guarded for `persons` when a purpose is given.
    async fn commit_persons_access(
        &self,
        tenant: &MunicipalityCode,
        entry: AuditEntry,
        actor: &Actor,
        persons: &[AddresseeNumber],
        guard: Option<SupportPurpose>,
    ) -> Result<i64, ServiceError> {
        let guard = guard.map(|purpose| Guarded {
            persons: persons.to_vec(),
            households: vec![],
            purpose,
        });
        self.commit_access(tenant, entry, actor, guard).await
    }

    /// Commits one access-log entry, after the support-measure guard when
    /// one is asked for (a refusal is logged in a transaction of its own).
    pub(crate) async fn commit_access(
        &self,
        tenant: &MunicipalityCode,
        entry: AuditEntry,
        actor: &Actor,
        guard: Option<Guarded>,
    ) -> Result<i64, ServiceError> {
        let at = self.clock.now().timestamp_micros();
        let (t, a) = (tenant.clone(), actor.clone());
        // Group-committed with the entries of concurrent reads: readers of
        // one tenant share commits instead of taking turns on its chain head.
        // Quiet: an access-log entry is no linkage event, so long polls and
        // the webhook worker are not woken for it.
        let r = self
            .store
            .append_quiet(Some(tenant), move |tx| {
                if let Some(g) = &guard {
                    super::support::guard_concerning(
                        tx,
                        &t,
                        &g.persons,
                        &g.households,
                        &a,
                        g.purpose,
                        at,
                    )?;
                }
                Ok::<_, ServiceError>(records::append_next_audit(tx, &t, at, &entry)?)
            })
            .await;
        if let Err(ServiceError::SupportBlocked { persons, purpose }) = &r {
            self.support_record_block(tenant, persons, *purpose, actor)
                .await?;
        }
        r
    }

    /// Shows a person's 個人番号 unmasked; the access-log entry says so.
    /// The caller checks the role may see it.
    pub async fn reveal_my_number(
        &self,
        tenant: &MunicipalityCode,
        person: &AddresseeNumber,
        actor: &Actor,
    ) -> Result<Option<String>, ServiceError> {
        let (t, p) = (tenant.clone(), person.clone());
        let rows = self
            .store
            .read(Some(tenant), move |tx| records::history(tx, &t, &p))
            .await?;
        let Some(last) = rows.last() else {
            self.ensure_tenant(tenant).await?;
            return Err(ServiceError::PersonNotFound(person.to_string()));
        };
        let number = last
            .record
            .my_number
            .as_ref()
            .map(|n| n.as_str().to_string());
        self.log_access(
            tenant,
            actor,
            "read.my_number",
            std::slice::from_ref(person),
            serde_json::json!({ "recorded": number.is_some() }),
            number.is_some(),
            Some(SupportPurpose::View),
        )
        .await?;
        Ok(number)
    }

    pub fn today(&self) -> NaiveDate {
        self.clock.today()
    }
}

fn addressee_from_serial(serial: i64) -> Result<AddresseeNumber, ServiceError> {
    AddresseeNumber::from_serial(serial as u64)
        .map_err(|e| ServiceError::invalid("addressee_number", &e))
}

fn household_from_serial(serial: i64) -> Result<HouseholdNumber, ServiceError> {
    HouseholdNumber::from_serial(serial as u64)
        .map_err(|e| ServiceError::invalid("household_number", &e))
}

/// What the support-measure guard (j440) checks before a read is logged.
pub(crate) struct Guarded {
    pub(crate) persons: Vec<AddresseeNumber>,
    pub(crate) households: Vec<HouseholdNumber>,
    pub(crate) purpose: SupportPurpose,
}

/// An access-log entry of `actor`.
pub(crate) fn access_entry(
    actor: &Actor,
    function: &str,
    target: String,
    detail: serde_json::Value,
    my_number_shown: bool,
) -> AuditEntry {
    AuditEntry {
        operator: actor.operator.clone(),
        terminal: actor.terminal.clone(),
        function: function.to_string(),
        target,
        detail: detail.to_string(),
        my_number_shown,
    }
}

/// Cursors are opaque to clients: the hex of where the page ended (rank,
/// key and 宛名番号 of its last row, separated by U+001F). A cursor of
/// the earlier form (the hex of a 宛名番号 alone) continues among the
/// contained matches.
pub fn encode_cursor(c: &records::SearchCursor) -> String {
    hex::encode(format!(
        "{}\u{1F}{}\u{1F}{}",
        c.rank,
        c.key,
        c.after.as_str()
    ))
}

fn decode_cursor(c: &str) -> Result<records::SearchCursor, ServiceError> {
    let bad = || ServiceError::Invalid {
        field: "after".into(),
        code: "invalid_cursor",
        message_ja: "ページ位置（cursor）が正しくありません。".into(),
        message_en: "the page cursor is not valid".into(),
    };
    let bytes = hex::decode(c.trim()).map_err(|_| bad())?;
    let s = String::from_utf8(bytes).map_err(|_| bad())?;
    // The key may itself hold U+001F (a name key joins its parts with it):
    // the rank is before the first, the 宛名番号 after the last.
    let three = s
        .split_once('\u{1F}')
        .and_then(|(rank, rest)| rest.rsplit_once('\u{1F}').map(|(k, a)| (rank, k, a)));
    match three {
        Some((rank, key, after)) => {
            let rank: u8 = rank.parse().map_err(|_| bad())?;
            if rank > records::RANK_CONTAINS {
                return Err(bad());
            }
            Ok(records::SearchCursor {
                rank,
                key: key.to_string(),
                after: after.parse().map_err(|_| bad())?,
            })
        }
        None if !s.contains('\u{1F}') => Ok(records::SearchCursor {
            rank: records::RANK_CONTAINS,
            key: String::new(),
            after: s.parse().map_err(|_| bad())?,
        }),
        None => Err(bad()),
    }
}

/// The whole of one change, inside its transaction.
pub(crate) fn submit_in(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    req: &ChangeRequest,
    actor: &Actor,
    ctx: &PlanContext<'_>,
    recorded_at: i64,
) -> Result<ChangeOutcome, ServiceError> {
    if !records::lock_tenant(tx, tenant)? {
        return Err(ServiceError::TenantNotFound(tenant.to_string()));
    }
    // 履歴番号 so far, per person the change may touch.
    let mut numbers: HashMap<AddresseeNumber, i64> = HashMap::new();
    let mut advance = Advance {
        change: 1,
        event: 1,
        audit: 1,
        ..Default::default()
    };
    let (plan, cancels, heads) = match &req.command {
        ChangeCommand::Cancel { change_id } => {
            let target = records::get_change(tx, tenant, *change_id)?
                .ok_or(ChangeError::ChangeNotFound(*change_id))?;
            if target.cancels.is_some()
                || records::cancellation_of(tx, tenant, *change_id)?.is_some()
            {
                return Err(ChangeError::NotCancellable(*change_id).into());
            }
            let histories = records::histories_of_change(tx, tenant, *change_id)?;
            for (a, h) in &histories {
                if let Some(n) = h.iter().map(|r| r.history_number).max() {
                    numbers.insert(a.clone(), n);
                }
            }
            let mut household_histories = BTreeMap::new();
            for h in change::households_of_change(*change_id, &histories) {
                household_histories.extend(records::household_histories(tx, tenant, &h)?);
            }
            let plan = change::plan_cancellation(*change_id, &histories, &household_histories)?;
            let heads = records::advance(tx, tenant, advance)?;
            (plan, Some(*change_id), heads)
        }
        _ => {
            let mut view = RegistryView::default();
            let persons = req.referenced_persons()?;
            let households = req.referenced_households()?;
            for row in records::change_context(tx, tenant, &persons, &households)? {
                numbers.insert(row.record.addressee_number.clone(), row.history_number);
                view.insert(row.record);
            }
            // j600: a person who was a resident before keeps the addressee number.
            let mut slots: Vec<Option<AddresseeNumber>> = Vec::new();
            for (my_number, resident_code) in req.new_person_identities() {
                let key = my_number
                    .as_ref()
                    .map(|n| records::my_number_key(tx, tenant, n.as_str()))
                    .transpose()?;
                let mut reuse = None;
                if key.is_some() || resident_code.is_some() {
                    let found = records::rows_by_identity(
                        tx,
                        tenant,
                        key.as_deref(),
                        resident_code.as_ref().map(|c| c.as_str()),
                    )?;
                    for row in found {
                        let a = row.record.addressee_number.clone();
                        if row.record.status.is_resident() {
                            let what = if my_number.is_some() && row.record.my_number == my_number {
                                "個人番号 (my number)"
                            } else {
                                "住民票コード (resident code)"
                            };
                            return Err(ChangeError::DuplicateIdentity(what, a).into());
                        }
                        // One former resident per new person, and each
                        // former resident for one new person only.
                        let taken = slots.iter().flatten().any(|s| *s == a);
                        if taken || reuse.as_ref().is_some_and(|r| *r != a) {
                            return Err(ChangeError::DuplicateIdentity(
                                "個人番号・住民票コード (my number / resident code)",
                                a,
                            )
                            .into());
                        }
                        numbers.insert(a.clone(), row.history_number);
                        reuse = Some(a);
                    }
                }
                slots.push(reuse);
            }
            advance.addressee = slots.iter().filter(|s| s.is_none()).count() as i64;
            advance.household = i64::from(req.needs_new_household());
            let heads = records::advance(tx, tenant, advance)?;
            let mut alloc = Allocated::default();
            let mut serial = heads.addressee - advance.addressee;
            for slot in slots {
                alloc.addressees.push(match slot {
                    Some(a) => a,
                    None => {
                        serial += 1;
                        addressee_from_serial(serial)?
                    }
                });
            }
            if advance.household > 0 {
                alloc.household = Some(household_from_serial(heads.household)?);
            }
            (change::plan(req, &view, &alloc, ctx)?, None, heads)
        }
    };
    let change_id = heads.change;
    let info = ChangeInfo {
        change_id,
        reason: plan.reason,
        effective_date: plan.effective_date.clone(),
        processed_on: ctx.today,
        filed_on: plan.filed_on,
        input_place: req.meta.input_place.trim().to_string(),
        input_terminal: req.meta.input_terminal.trim().to_string(),
        recorded_at,
        cancels,
    };
    let mut rows = Vec::with_capacity(plan.rows.len());
    for record in plan.rows {
        let history_number = numbers.get(&record.addressee_number).map_or(1, |n| n + 1);
        let row = HistoryRow {
            history_number,
            record,
            change: info.clone(),
        };
        rows.push(row);
    }
    records::append_histories(tx, tenant, &rows)?;
    let persons: Vec<AddresseeNumber> = rows
        .iter()
        .map(|r| r.record.addressee_number.clone())
        .collect();
    records::insert_change(
        tx,
        tenant,
        &ChangeRecord {
            change_id,
            reason: plan.reason,
            effective_date: plan.effective_date.clone(),
            processed_on: ctx.today,
            filed_on: plan.filed_on,
            input_place: info.input_place.clone(),
            input_terminal: info.input_terminal.clone(),
            operator: actor.operator.clone(),
            recorded_at,
            cancels,
            request: serde_json::to_value(req)
                .map_err(|e| StoreError::Corrupt(format!("request: {e}")))?,
            notices: serde_json::to_value(&plan.notices)
                .map_err(|e| StoreError::Corrupt(format!("notices: {e}")))?,
            persons: persons.clone(),
        },
    )?;
    let target: Vec<&str> = persons.iter().map(|p| p.as_str()).collect();
    records::append_audit(
        tx,
        tenant,
        heads.audit,
        &heads.audit_hash,
        recorded_at,
        &AuditEntry {
            operator: actor.operator.clone(),
            terminal: actor.terminal.clone(),
            function: format!("change.{}", plan.reason.code()),
            target: target.join(","),
            detail: serde_json::json!({ "change_id": change_id }).to_string(),
            my_number_shown: false,
        },
    )?;
    // The event names what changed; a subscriber reads the records it is
    // allowed to see through the API.
    let payload = serde_json::json!({
        "change_id": change_id,
        "reason": plan.reason.code(),
        "effective_date": plan.effective_date,
        "cancels": cancels,
        "persons": rows.iter().map(|r| serde_json::json!({
            "addressee_number": r.record.addressee_number,
            "history_number": r.history_number,
            "household_number": r.record.household_number,
            "status": r.record.status,
        })).collect::<Vec<_>>(),
    });
    records::append_event(
        tx,
        tenant,
        heads.event,
        &super::events::change_type(plan.reason),
        Some(change_id),
        &payload,
        recorded_at,
    )?;
    Ok(ChangeOutcome {
        change_id,
        reason: plan.reason,
        rows,
        notices: plan.notices,
        audit_seq: heads.audit,
        event_seq: heads.event,
    })
}

/// Withholds the data of change events concerning a person a support
/// measure covers (j440): `{change_id, withheld: "support_measure"}`; the
/// event keeps its sequence, id and type. The pull feed and webhooks alike.
pub(crate) fn withhold_protected(
    tx: &mut Tx<'_>,
    t: &MunicipalityCode,
    mut events: Vec<records::OutboxEvent>,
) -> Result<Vec<records::OutboxEvent>, ServiceError> {
    let shield = super::support::Shield::load(tx, t)?;
    if shield.is_empty() {
        return Ok(events);
    }
    let persons_of = |e: &records::OutboxEvent| -> Vec<AddresseeNumber> {
        e.payload["persons"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| p["addressee_number"].as_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    let all: Vec<AddresseeNumber> = events.iter().flat_map(persons_of).collect();
    let covered = shield.covered(tx, t, &all)?;
    for e in &mut events {
        if persons_of(e).iter().any(|p| covered.contains(p)) {
            e.payload = serde_json::json!({
                "change_id": e.change_id,
                "withheld": "support_measure",
            });
        }
    }
    Ok(events)
}

/// The persons an answer of the linkage feed names (every `addressee_number`
/// anywhere in the payloads, once each, in order of appearance): the access
/// log's target of a feed read (j1370), so that it names exactly the persons
/// whose data left the registry.
fn event_persons(events: &[records::OutboxEvent]) -> Vec<AddresseeNumber> {
    fn walk(v: &serde_json::Value, out: &mut Vec<AddresseeNumber>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    if k == "addressee_number"
                        && let Some(a) = v.as_str().and_then(|s| s.parse().ok())
                    {
                        if !out.contains(&a) {
                            out.push(a);
                        }
                    } else {
                        walk(v, out);
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for e in events {
        walk(&e.payload, &mut out);
    }
    out
}
