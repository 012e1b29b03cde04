//! Versioned schema migrations, run at start (see [`super::Store::connect`]).
//!
//! Every table carries the tenant (団体コード). Facts (changes, history
//! rows, audit entries, outbox events) are append-only; on PostgreSQL the
//! application role may only SELECT and INSERT them, and row-level security
//! scoped by tenant is a second wall behind the storage API's own scoping.

/// One migration: the same version on both backends, each with its own SQL.
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sqlite: &'static str,
    pub postgres: &'static str,
}

const V1_COMMON: &str = r#"
CREATE TABLE tenants (
    municipality_code TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    prefecture TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE tenant_heads (
    tenant TEXT PRIMARY KEY REFERENCES tenants (municipality_code),
    addressee_seq BIGINT NOT NULL,
    household_seq BIGINT NOT NULL,
    change_seq BIGINT NOT NULL,
    event_seq BIGINT NOT NULL,
    audit_seq BIGINT NOT NULL,
    audit_hash TEXT NOT NULL
);
CREATE TABLE changes (
    tenant TEXT NOT NULL REFERENCES tenants (municipality_code),
    change_id BIGINT NOT NULL,
    reason TEXT NOT NULL,
    effective_date TEXT NOT NULL,
    effective_key TEXT,
    processed_on TEXT NOT NULL,
    filed_on TEXT,
    input_place TEXT NOT NULL,
    input_terminal TEXT NOT NULL,
    operator TEXT NOT NULL,
    recorded_at BIGINT NOT NULL,
    cancels BIGINT,
    request TEXT NOT NULL,
    notices TEXT NOT NULL,
    persons TEXT NOT NULL,
    PRIMARY KEY (tenant, change_id)
);
CREATE TABLE resident_history (
    tenant TEXT NOT NULL REFERENCES tenants (municipality_code),
    addressee_number TEXT NOT NULL,
    history_number BIGINT NOT NULL,
    change_id BIGINT NOT NULL,
    household_number TEXT NOT NULL,
    status TEXT NOT NULL,
    name_key TEXT NOT NULL,
    kana_key TEXT NOT NULL,
    address_key TEXT NOT NULL,
    birth_key TEXT,
    record TEXT NOT NULL,
    reason TEXT NOT NULL,
    effective_date TEXT NOT NULL,
    effective_key TEXT,
    processed_on TEXT NOT NULL,
    filed_on TEXT,
    input_place TEXT NOT NULL,
    input_terminal TEXT NOT NULL,
    recorded_at BIGINT NOT NULL,
    cancels BIGINT,
    PRIMARY KEY (tenant, addressee_number, history_number)
);
CREATE INDEX resident_history_household ON resident_history (tenant, household_number);
CREATE TABLE resident_current (
    tenant TEXT NOT NULL REFERENCES tenants (municipality_code),
    addressee_number TEXT NOT NULL,
    history_number BIGINT NOT NULL,
    household_number TEXT NOT NULL,
    status TEXT NOT NULL,
    name_key TEXT NOT NULL,
    kana_key TEXT NOT NULL,
    address_key TEXT NOT NULL,
    birth_key TEXT,
    my_number_key TEXT,
    resident_code TEXT,
    PRIMARY KEY (tenant, addressee_number)
);
CREATE INDEX resident_current_household ON resident_current (tenant, household_number);
CREATE INDEX resident_current_birth ON resident_current (tenant, birth_key);
CREATE INDEX resident_current_my_number ON resident_current (tenant, my_number_key);
CREATE INDEX resident_current_resident_code ON resident_current (tenant, resident_code);
CREATE TABLE audit_log (
    tenant TEXT NOT NULL REFERENCES tenants (municipality_code),
    seq BIGINT NOT NULL,
    at BIGINT NOT NULL,
    operator TEXT NOT NULL,
    terminal TEXT NOT NULL,
    function TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL,
    my_number_shown BIGINT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    PRIMARY KEY (tenant, seq)
);
CREATE TABLE outbox (
    tenant TEXT NOT NULL REFERENCES tenants (municipality_code),
    seq BIGINT NOT NULL,
    event_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    change_id BIGINT,
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, seq)
);
"#;

/// PostgreSQL only: the application role, its append-only grants and the
/// row-level security policies (the second wall).
const V1_POSTGRES_SECURITY: &str = r#"
DO $$ BEGIN
    CREATE ROLE machi_app NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $$;
GRANT USAGE ON SCHEMA public TO machi_app;
GRANT SELECT, INSERT ON tenants, changes, resident_history, audit_log, outbox TO machi_app;
GRANT SELECT, INSERT, UPDATE ON tenant_heads, resident_current TO machi_app;
GRANT SELECT ON schema_migrations TO machi_app;
ALTER TABLE tenant_heads ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_heads FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenant_heads
    USING (tenant = current_setting('machi.tenant', true))
    WITH CHECK (tenant = current_setting('machi.tenant', true));
ALTER TABLE changes ENABLE ROW LEVEL SECURITY;
ALTER TABLE changes FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON changes
    USING (tenant = current_setting('machi.tenant', true))
    WITH CHECK (tenant = current_setting('machi.tenant', true));
ALTER TABLE resident_history ENABLE ROW LEVEL SECURITY;
ALTER TABLE resident_history FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON resident_history
    USING (tenant = current_setting('machi.tenant', true))
    WITH CHECK (tenant = current_setting('machi.tenant', true));
ALTER TABLE resident_current ENABLE ROW LEVEL SECURITY;
ALTER TABLE resident_current FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON resident_current
    USING (tenant = current_setting('machi.tenant', true))
    WITH CHECK (tenant = current_setting('machi.tenant', true));
ALTER TABLE audit_log ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_log FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_log
    USING (tenant = current_setting('machi.tenant', true))
    WITH CHECK (tenant = current_setting('machi.tenant', true));
ALTER TABLE outbox ENABLE ROW LEVEL SECURITY;
ALTER TABLE outbox FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON outbox
    USING (tenant = current_setting('machi.tenant', true))
    WITH CHECK (tenant = current_setting('machi.tenant', true));
"#;

/// Migration support: the identity keys on history rows (so the current
/// projection can be rebuilt from history alone) and the record of imports.
const V3_COMMON: &str = r#"
ALTER TABLE resident_history ADD COLUMN my_number_key TEXT;
ALTER TABLE resident_history ADD COLUMN resident_code TEXT;
CREATE TABLE imports (
    tenant TEXT NOT NULL REFERENCES tenants (municipality_code),
    digest TEXT NOT NULL,
    imported_at BIGINT NOT NULL,
    history_rows BIGINT NOT NULL,
    operator TEXT NOT NULL,
    PRIMARY KEY (tenant, digest)
);
"#;

const V3_POSTGRES_SECURITY: &str = r#"
GRANT SELECT, INSERT ON imports TO machi_app;
ALTER TABLE imports ENABLE ROW LEVEL SECURITY;
ALTER TABLE imports FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON imports
    USING (tenant = current_setting('machi.tenant', true))
    WITH CHECK (tenant = current_setting('machi.tenant', true));
"#;

/// Back office: staff accounts and sessions, API clients and their tokens,
/// provisional changes awaiting approval (審査・決裁, j530), support
/// measures (j160, j380, j440) with their one-request releases, and issued
/// certificates (j1000–j1070).
///
/// Sessions, tokens and login failures are looked up by their own key before
/// a tenant is known, so they carry the tenant but no row-level policy; they
/// hold no personal data.
const V5_COMMON: &str = r#"
CREATE TABLE accounts (
    tenant TEXT NOT NULL REFERENCES tenants (municipality_code),
    login TEXT NOT NULL,
    display_name TEXT NOT NULL,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    disabled BIGINT NOT NULL,
    PRIMARY KEY (tenant, login)
);
CREATE TABLE platform_accounts (
    login TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    disabled BIGINT NOT NULL
);
CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    tenant TEXT,
    login TEXT NOT NULL,
    role TEXT NOT NULL,
    display_name TEXT NOT NULL,
    csrf TEXT NOT NULL,
    terminal TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE TABLE login_failures (
    tenant TEXT NOT NULL,
    login TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX login_failures_key ON login_failures (tenant, login, at);
CREATE TABLE api_clients (
    client_id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL REFERENCES tenants (municipality_code),
    system TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    scopes TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    disabled BIGINT NOT NULL
);
CREATE TABLE api_tokens (
    token_hash TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    tenant TEXT NOT NULL,
    scopes TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE TABLE pending_changes (
    tenant TEXT NOT NULL REFERENCES tenants (municipality_code),
    pending_id BIGINT NOT NULL,
    reason TEXT NOT NULL,
    request TEXT NOT NULL,
    summary TEXT NOT NULL,
    status TEXT NOT NULL,
    entered_by TEXT NOT NULL,
    entered_terminal TEXT NOT NULL,
    entered_at BIGINT NOT NULL,
    decided_by TEXT,
    decided_at BIGINT,
    comment TEXT,
    change_id BIGINT,
    PRIMARY KEY (tenant, pending_id)
);
CREATE INDEX pending_changes_status ON pending_changes (tenant, status, pending_id);
CREATE TABLE support_measures (
    tenant TEXT NOT NULL REFERENCES tenants (municipality_code),
    measure_id BIGINT NOT NULL,
    addressee_number TEXT NOT NULL,
    status TEXT NOT NULL,
    start_date TEXT,
    end_date TEXT,
    detail TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_by TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, measure_id)
);
CREATE INDEX support_measures_person ON support_measures (tenant, addressee_number);
CREATE TABLE support_releases (
    tenant TEXT NOT NULL REFERENCES tenants (municipality_code),
    release_id BIGINT NOT NULL,
    addressee_number TEXT NOT NULL,
    purpose TEXT NOT NULL,
    released_by TEXT NOT NULL,
    released_at BIGINT NOT NULL,
    used_by TEXT,
    used_at BIGINT,
    PRIMARY KEY (tenant, release_id)
);
CREATE TABLE certificates (
    tenant TEXT NOT NULL REFERENCES tenants (municipality_code),
    issue_number TEXT NOT NULL,
    kind TEXT NOT NULL,
    persons TEXT NOT NULL,
    options TEXT NOT NULL,
    verify_hash TEXT NOT NULL,
    pdf_sha256 TEXT NOT NULL,
    pages BIGINT NOT NULL,
    issued_by TEXT NOT NULL,
    issued_terminal TEXT NOT NULL,
    issued_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, issue_number)
);
"#;

const V5_POSTGRES_SECURITY: &str = r#"
GRANT SELECT, INSERT, UPDATE ON accounts, platform_accounts, api_clients TO machi_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON sessions, api_tokens, login_failures TO machi_app;
GRANT SELECT, INSERT, UPDATE ON pending_changes, support_measures, support_releases TO machi_app;
GRANT SELECT, INSERT ON certificates TO machi_app;
ALTER TABLE accounts ENABLE ROW LEVEL SECURITY;
ALTER TABLE accounts FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON accounts
    USING (tenant = current_setting('machi.tenant', true))
    WITH CHECK (tenant = current_setting('machi.tenant', true));
ALTER TABLE pending_changes ENABLE ROW LEVEL SECURITY;
ALTER TABLE pending_changes FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON pending_changes
    USING (tenant = current_setting('machi.tenant', true))
    WITH CHECK (tenant = current_setting('machi.tenant', true));
ALTER TABLE support_measures ENABLE ROW LEVEL SECURITY;
ALTER TABLE support_measures FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON support_measures
    USING (tenant = current_setting('machi.tenant', true))
    WITH CHECK (tenant = current_setting('machi.tenant', true));
ALTER TABLE support_releases ENABLE ROW LEVEL SECURITY;
ALTER TABLE support_releases FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON support_releases
    USING (tenant = current_setting('machi.tenant', true))
    WITH CHECK (tenant = current_setting('machi.tenant', true));
ALTER TABLE certificates ENABLE ROW LEVEL SECURITY;
ALTER TABLE certificates FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON certificates
    USING (tenant = current_setting('machi.tenant', true))
    WITH CHECK (tenant = current_setting('machi.tenant', true));
"#;

/// Support measures (j160, j440): the persons each measure protects (the
/// requester and the persons who ask for support with them, j440: 支援対象者
/// （併せて支援を求める者を含む。）), so a request's persons are checked with
/// one indexed lookup; and, on each release, who it is granted to, until
/// when it is valid (j410: 一時解除 returns to blocking after a set time)
/// and the measure it lifts.
macro_rules! v7_common {
    () => {
        r#"
CREATE TABLE support_measure_persons (
    tenant TEXT NOT NULL REFERENCES tenants (municipality_code),
    measure_id BIGINT NOT NULL,
    addressee_number TEXT NOT NULL,
    role TEXT NOT NULL,
    PRIMARY KEY (tenant, measure_id, addressee_number),
    FOREIGN KEY (tenant, measure_id) REFERENCES support_measures (tenant, measure_id)
);
CREATE INDEX support_measure_persons_person ON support_measure_persons (tenant, addressee_number);
CREATE INDEX support_measures_status ON support_measures (tenant, status, measure_id);
ALTER TABLE support_releases ADD COLUMN granted_to TEXT NOT NULL DEFAULT '';
ALTER TABLE support_releases ADD COLUMN expires_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE support_releases ADD COLUMN measure_id BIGINT;
CREATE INDEX support_releases_person ON support_releases (tenant, addressee_number, purpose, granted_to);
"#
    };
}

const V7_COMMON: &str = v7_common!();

const V7_POSTGRES: &str = concat!(
    v7_common!(),
    r#"
GRANT SELECT, INSERT ON support_measure_persons TO machi_app;
ALTER TABLE support_measure_persons ENABLE ROW LEVEL SECURITY;
ALTER TABLE support_measure_persons FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON support_measure_persons
    USING (tenant = current_setting('machi.tenant', true))
    WITH CHECK (tenant = current_setting('machi.tenant', true));
"#
);

/// Per-tenant settings: the certifying officer printed on certificates (j310).
const V8_COMMON: &str = r#"
CREATE TABLE tenant_settings (
    tenant TEXT PRIMARY KEY REFERENCES tenants (municipality_code),
    issuer_title TEXT NOT NULL,
    issuer_name TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
"#;

const V8_POSTGRES_SECURITY: &str = r#"
GRANT SELECT, INSERT, UPDATE ON tenant_settings TO machi_app;
ALTER TABLE tenant_settings ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_settings FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenant_settings
    USING (tenant = current_setting('machi.tenant', true))
    WITH CHECK (tenant = current_setting('machi.tenant', true));
"#;

/// The persons a provisional change would touch, so that reading it can be
/// logged against them and blocked for protected persons (j380, j1370).
const V10_COMMON: &str = r#"
ALTER TABLE pending_changes ADD COLUMN persons TEXT NOT NULL DEFAULT '[]';
"#;

/// A provisional change entered again after it was sent back (差戻し, j530)
/// names the entry it replaces; the returned one stays as decided.
const V17_COMMON: &str = r#"
ALTER TABLE pending_changes ADD COLUMN resubmits BIGINT;
"#;

/// PostgreSQL: the two registry tables partitioned by tenant (LIST), one
/// partition per tenant, made with the tenant. A full import builds a
/// tenant's partitions aside and swaps them in (see `records::BulkLoad`);
/// each tenant's rows also live in tables of their own. Rows, keys,
/// indexes, grants and row-level security are kept as they were; the
/// foreign key to `tenants` is replaced by the partition bound (a row can
/// only go to an existing tenant's partition). Replaced by migration 24
/// (a fixed number of hash partitions: the cost of a partition per tenant
/// grew with the number of tenants).
const V11_POSTGRES: &str = r#"
ALTER TABLE resident_history RENAME TO resident_history_v10;
ALTER TABLE resident_current RENAME TO resident_current_v10;
ALTER INDEX resident_history_pkey RENAME TO resident_history_v10_pkey;
ALTER INDEX resident_current_pkey RENAME TO resident_current_v10_pkey;
ALTER INDEX resident_history_household RENAME TO resident_history_v10_household;
ALTER INDEX resident_current_household RENAME TO resident_current_v10_household;
ALTER INDEX resident_current_birth RENAME TO resident_current_v10_birth;
ALTER INDEX resident_current_my_number RENAME TO resident_current_v10_my_number;
ALTER INDEX resident_current_resident_code RENAME TO resident_current_v10_resident_code;
CREATE TABLE resident_history (LIKE resident_history_v10) PARTITION BY LIST (tenant);
ALTER TABLE resident_history ADD PRIMARY KEY (tenant, addressee_number, history_number);
CREATE INDEX resident_history_household ON resident_history (tenant, household_number);
CREATE TABLE resident_current (LIKE resident_current_v10) PARTITION BY LIST (tenant);
ALTER TABLE resident_current ADD PRIMARY KEY (tenant, addressee_number);
CREATE INDEX resident_current_household ON resident_current (tenant, household_number);
CREATE INDEX resident_current_birth ON resident_current (tenant, birth_key);
CREATE INDEX resident_current_my_number ON resident_current (tenant, my_number_key);
CREATE INDEX resident_current_resident_code ON resident_current (tenant, resident_code);
DO $$
DECLARE t TEXT;
BEGIN
    FOR t IN SELECT municipality_code FROM tenants LOOP
        EXECUTE format('CREATE TABLE %I PARTITION OF resident_history FOR VALUES IN (%L)', 'resident_history_' || t, t);
        EXECUTE format('CREATE TABLE %I PARTITION OF resident_current FOR VALUES IN (%L)', 'resident_current_' || t, t);
    END LOOP;
END $$;
INSERT INTO resident_history SELECT * FROM resident_history_v10;
INSERT INTO resident_current SELECT * FROM resident_current_v10;
DROP TABLE resident_history_v10;
DROP TABLE resident_current_v10;
GRANT SELECT, INSERT ON resident_history TO machi_app;
GRANT SELECT, INSERT, UPDATE ON resident_current TO machi_app;
ALTER TABLE resident_history ENABLE ROW LEVEL SECURITY;
ALTER TABLE resident_history FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON resident_history
    USING (tenant = current_setting('machi.tenant', true))
    WITH CHECK (tenant = current_setting('machi.tenant', true));
ALTER TABLE resident_current ENABLE ROW LEVEL SECURITY;
ALTER TABLE resident_current FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON resident_current
    USING (tenant = current_setting('machi.tenant', true))
    WITH CHECK (tenant = current_setting('machi.tenant', true));
"#;

/// Failed sign-ins and token requests counted per account AND source, so
/// that a stranger's failures lock only the stranger out (see
/// `service::throttle`). Rows from before have the unknown source "".
const V12_COMMON: &str = r#"
ALTER TABLE login_failures ADD COLUMN source TEXT NOT NULL DEFAULT '';
DROP INDEX login_failures_key;
CREATE INDEX login_failures_key ON login_failures (tenant, login, source, at);
"#;

/// Linkage hub: event types in CloudEvents form (`jp.machi.…v1`, replacing
/// the earlier `resident.changed` and `registry.imported`), webhook
/// subscriptions per API client and every delivery attempt.
///
/// Subscriptions carry the tenant but no row-level policy (like
/// `api_clients`): the delivery worker finds the due ones across tenants
/// before it knows a tenant; they hold no personal data (a callback URL,
/// an event-type filter, the signing secret sealed with the tenant's key).
/// Attempts are the tenant's, under row-level security.
macro_rules! v13_common {
    () => {
        r#"
CREATE TABLE webhook_subscriptions (
    tenant TEXT NOT NULL REFERENCES tenants (municipality_code),
    subscription_id BIGINT NOT NULL,
    client_id TEXT NOT NULL,
    url TEXT NOT NULL,
    types TEXT NOT NULL,
    secret TEXT NOT NULL,
    previous_secret TEXT,
    previous_until BIGINT,
    status TEXT NOT NULL,
    position BIGINT NOT NULL,
    attempt BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    failing_since BIGINT,
    paused_at BIGINT,
    lease_owner TEXT,
    lease_until BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, subscription_id)
);
CREATE INDEX webhook_subscriptions_due ON webhook_subscriptions (status, next_attempt_at);
CREATE TABLE webhook_attempts (
    tenant TEXT NOT NULL REFERENCES tenants (municipality_code),
    subscription_id BIGINT NOT NULL,
    attempt_id BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    webhook_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    status BIGINT,
    latency_ms BIGINT NOT NULL,
    error TEXT,
    PRIMARY KEY (tenant, subscription_id, attempt_id),
    FOREIGN KEY (tenant, subscription_id) REFERENCES webhook_subscriptions (tenant, subscription_id)
);
"#
    };
}

const V13_SQLITE: &str = concat!(
    v13_common!(),
    r#"
UPDATE outbox SET kind = 'jp.machi.registry.change.' || json_extract(payload, '$.reason') || '.v1'
    WHERE kind = 'resident.changed';
UPDATE outbox SET kind = 'jp.machi.registry.import.completed.v1' WHERE kind = 'registry.imported';
"#
);

const V13_POSTGRES: &str = concat!(
    v13_common!(),
    r#"
UPDATE outbox SET kind = 'jp.machi.registry.change.' || (payload::jsonb ->> 'reason') || '.v1'
    WHERE kind = 'resident.changed';
UPDATE outbox SET kind = 'jp.machi.registry.import.completed.v1' WHERE kind = 'registry.imported';
GRANT SELECT, INSERT, UPDATE ON webhook_subscriptions TO machi_app;
GRANT SELECT, INSERT ON webhook_attempts TO machi_app;
ALTER TABLE webhook_attempts ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook_attempts FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON webhook_attempts
    USING (tenant = current_setting('machi.tenant', true))
    WITH CHECK (tenant = current_setting('machi.tenant', true));
"#
);

/// Separation of duties (職務の分離): access to personal data that the
/// tenant administrator proposes (an account of a role that reads personal
/// data or approves, a role change to one, an API client or a wider scope,
/// a client's direct commits) waits in `access_grants` for a second
/// person's approval. An approved account gets an activation code (only its
/// hash is stored, with its expiry); its holder sets the password, so the
/// proposer never holds the credential. A client may commit changes
/// directly only with `direct_commit` set (by an approved proposal).
macro_rules! v14_common {
    () => {
        r#"
ALTER TABLE accounts ADD COLUMN activation_hash TEXT;
ALTER TABLE accounts ADD COLUMN activation_expires BIGINT;
ALTER TABLE api_clients ADD COLUMN direct_commit BIGINT NOT NULL DEFAULT 0;
CREATE TABLE access_grants (
    tenant TEXT NOT NULL REFERENCES tenants (municipality_code),
    grant_id BIGINT NOT NULL,
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL,
    status TEXT NOT NULL,
    proposed_by TEXT NOT NULL,
    proposed_terminal TEXT NOT NULL,
    proposed_at BIGINT NOT NULL,
    decided_by TEXT,
    decided_at BIGINT,
    comment TEXT,
    PRIMARY KEY (tenant, grant_id)
);
CREATE INDEX access_grants_status ON access_grants (tenant, status, grant_id);
"#
    };
}

const V14_COMMON: &str = v14_common!();

const V14_POSTGRES: &str = concat!(
    v14_common!(),
    r#"
GRANT SELECT, INSERT, UPDATE ON access_grants TO machi_app;
ALTER TABLE access_grants ENABLE ROW LEVEL SECURITY;
ALTER TABLE access_grants FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON access_grants
    USING (tenant = current_setting('machi.tenant', true))
    WITH CHECK (tenant = current_setting('machi.tenant', true));
"#
);

/// Certificates as at a counter (issue 13): who asked and how they were
/// identified, the purpose, copies and fee recorded with each issue
/// (j300, j1220); the copies of one request share a `batch`, each with its
/// own 発行番号 (j1040); the PDF kept (base64) so that the confirmation
/// page can hand it out again without a new issue; the fee per copy is a
/// tenant setting.
const V15_COMMON: &str = r#"
ALTER TABLE certificates ADD COLUMN request TEXT NOT NULL DEFAULT '{}';
ALTER TABLE certificates ADD COLUMN batch TEXT NOT NULL DEFAULT '';
ALTER TABLE certificates ADD COLUMN copy_no BIGINT NOT NULL DEFAULT 1;
ALTER TABLE certificates ADD COLUMN fee BIGINT NOT NULL DEFAULT 0;
ALTER TABLE certificates ADD COLUMN pdf TEXT;
CREATE INDEX certificates_batch ON certificates (tenant, batch, copy_no);
ALTER TABLE tenant_settings ADD COLUMN certificate_fee BIGINT NOT NULL DEFAULT 300;
"#;

/// `client_secret_jwt` client authentication (RFC 7523 §2.2): the server
/// needs the client's secret itself to check an HS256 assertion, so a
/// client's secret is also kept sealed with its tenant's key (clients
/// registered before this have none until their secret is rotated). Each
/// assertion's `jti` is remembered until its `exp`, so it is accepted once.
/// Neither table holds personal data; like `api_clients` they are read
/// before the tenant is known (no row-level policy).
macro_rules! v16_common {
    () => {
        r#"
ALTER TABLE api_clients ADD COLUMN secret_sealed TEXT;
CREATE TABLE client_assertion_jtis (
    client_id TEXT NOT NULL,
    jti TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (client_id, jti)
);
CREATE INDEX client_assertion_jtis_expiry ON client_assertion_jtis (expires_at);
"#
    };
}

const V16_COMMON: &str = v16_common!();

const V16_POSTGRES: &str = concat!(
    v16_common!(),
    r#"
GRANT SELECT, INSERT, DELETE ON client_assertion_jtis TO machi_app;
"#
);

/// Filings imported from the citizen portal (issue 11, item 4). The
/// filing itself is sealed with the tenant's key.
macro_rules! v18_common {
    () => {
        r#"
CREATE TABLE portal_filings (
    tenant TEXT NOT NULL REFERENCES tenants (municipality_code),
    filing_id BIGINT NOT NULL,
    portal_id TEXT NOT NULL,
    receipt TEXT NOT NULL,
    procedure TEXT NOT NULL,
    version BIGINT NOT NULL,
    received_at TEXT NOT NULL,
    imported_at BIGINT NOT NULL,
    filing TEXT NOT NULL,
    status TEXT NOT NULL,
    PRIMARY KEY (tenant, filing_id),
    UNIQUE (tenant, portal_id)
);
"#
    };
}

const V18_SQLITE: &str = v18_common!();

const V18_POSTGRES: &str = concat!(
    v18_common!(),
    r#"
GRANT SELECT, INSERT, UPDATE ON portal_filings TO machi_app;
ALTER TABLE portal_filings ENABLE ROW LEVEL SECURITY;
ALTER TABLE portal_filings FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON portal_filings
    USING (tenant = current_setting('machi.tenant', true))
    WITH CHECK (tenant = current_setting('machi.tenant', true));
"#
);

/// Signatures of imported portal filings as the back office checked them
/// (issue 11, items 3 and 8): the result (`valid` or why not), the
/// certificate's items sealed with the tenant's key, and the signing
/// nonce and content hash, each accepted once per tenant: a replayed
/// signature is refused on import.
macro_rules! v20_common {
    () => {
        r#"
CREATE TABLE portal_signatures (
    tenant TEXT NOT NULL REFERENCES tenants (municipality_code),
    filing_id BIGINT NOT NULL,
    nonce TEXT,
    content_sha256 TEXT,
    result TEXT NOT NULL,
    checked_at BIGINT NOT NULL,
    detail TEXT NOT NULL,
    PRIMARY KEY (tenant, filing_id),
    UNIQUE (tenant, nonce),
    UNIQUE (tenant, content_sha256),
    FOREIGN KEY (tenant, filing_id) REFERENCES portal_filings (tenant, filing_id)
);
CREATE TABLE portal_status_pushes (
    tenant TEXT NOT NULL REFERENCES tenants (municipality_code),
    filing_id BIGINT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    queued_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, filing_id),
    FOREIGN KEY (tenant, filing_id) REFERENCES portal_filings (tenant, filing_id)
);
"#
    };
}

/// The inbox of portal filings (申請管理, issue 11, item 5): who handles a
/// filing, whom it was matched to, the decision with its message (sealed
/// with the tenant's key like the filing) and what the approval did, the
/// provisional change awaiting 決裁, and the status still to tell the
/// portal (`notify_seq` > `notified_seq`).
macro_rules! v19_common {
    () => {
        r#"
ALTER TABLE portal_filings ADD COLUMN signed BIGINT NOT NULL DEFAULT 0;
ALTER TABLE portal_filings ADD COLUMN signature TEXT;
ALTER TABLE portal_filings ADD COLUMN assigned_to TEXT;
ALTER TABLE portal_filings ADD COLUMN matches TEXT NOT NULL DEFAULT '{}';
ALTER TABLE portal_filings ADD COLUMN message TEXT;
ALTER TABLE portal_filings ADD COLUMN decided_by TEXT;
ALTER TABLE portal_filings ADD COLUMN decided_at BIGINT;
ALTER TABLE portal_filings ADD COLUMN outcome TEXT NOT NULL DEFAULT '{}';
ALTER TABLE portal_filings ADD COLUMN pending_id BIGINT;
ALTER TABLE portal_filings ADD COLUMN updated_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE portal_filings ADD COLUMN notify_seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE portal_filings ADD COLUMN notified_seq BIGINT NOT NULL DEFAULT 0;
CREATE INDEX portal_filings_status ON portal_filings (tenant, status, filing_id);
CREATE INDEX portal_filings_pending ON portal_filings (tenant, pending_id);
"#
    };
}

const V20_SQLITE: &str = v20_common!();

const V20_POSTGRES: &str = concat!(
    v20_common!(),
    r#"
GRANT SELECT, INSERT ON portal_signatures TO machi_app;
ALTER TABLE portal_signatures ENABLE ROW LEVEL SECURITY;
ALTER TABLE portal_signatures FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON portal_signatures
    USING (tenant = current_setting('machi.tenant', true))
    WITH CHECK (tenant = current_setting('machi.tenant', true));
GRANT SELECT, INSERT, UPDATE, DELETE ON portal_status_pushes TO machi_app;
ALTER TABLE portal_status_pushes ENABLE ROW LEVEL SECURITY;
ALTER TABLE portal_status_pushes FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON portal_status_pushes
    USING (tenant = current_setting('machi.tenant', true))
    WITH CHECK (tenant = current_setting('machi.tenant', true));
"#
);

/// File linkage: a tenant's own extract schedule (a daily time in Japan
/// and full or difference), over the server-wide interval.
macro_rules! v22_common {
    () => {
        r#"
CREATE TABLE extract_schedules (
    tenant TEXT PRIMARY KEY REFERENCES tenants (municipality_code),
    daily_at TEXT NOT NULL,
    kind TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
"#
    };
}

const V22_SQLITE: &str = v22_common!();

const V22_POSTGRES: &str = concat!(
    v22_common!(),
    r#"
GRANT SELECT, INSERT, UPDATE, DELETE ON extract_schedules TO machi_app;
ALTER TABLE extract_schedules ENABLE ROW LEVEL SECURITY;
ALTER TABLE extract_schedules FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON extract_schedules
    USING (tenant = current_setting('machi.tenant', true))
    WITH CHECK (tenant = current_setting('machi.tenant', true));
"#
);
/// File linkage (宛名連携, j1190): whether the tenant's scheduled extracts
/// carry 個人番号 (off by default, and for every schedule from before).
const V32: &str =
    "ALTER TABLE extract_schedules ADD COLUMN include_my_number BIGINT NOT NULL DEFAULT 0;";

/// File linkage: a schedule of several times a day on chosen days of the
/// week (`daily_at` becomes `times`, comma-separated `HH:MM`; `weekdays`
/// a bit set, Monday = 1 … Sunday = 64, every day = 127 for the rows
/// from before), and the last handled slot per tenant, so that a restart
/// neither repeats nor skips a slot.
macro_rules! v27_common {
    () => {
        r#"
ALTER TABLE extract_schedules RENAME COLUMN daily_at TO times;
ALTER TABLE extract_schedules ADD COLUMN weekdays BIGINT NOT NULL DEFAULT 127;
CREATE TABLE extract_slots (
    tenant TEXT PRIMARY KEY REFERENCES tenants (municipality_code),
    slot BIGINT NOT NULL,
    handled_at BIGINT NOT NULL
);
"#
    };
}

const V27_SQLITE: &str = v27_common!();

const V27_POSTGRES: &str = concat!(
    v27_common!(),
    r#"
GRANT SELECT, INSERT, UPDATE ON extract_slots TO machi_app;
ALTER TABLE extract_slots ENABLE ROW LEVEL SECURITY;
ALTER TABLE extract_slots FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON extract_slots
    USING (tenant = current_setting('machi.tenant', true))
    WITH CHECK (tenant = current_setting('machi.tenant', true));
"#
);
/// File linkage: a scheduled slot is claimed by one server before it runs
/// (several servers with `--extract-to` on one database run it once). One
/// row per tenant, the claim of its latest run: the slot (its key), the
/// owner, until when the claim holds (the owner renews it while it runs;
/// a claim not renewed, e.g. of a killed run, is taken over after that),
/// and when it was done. One row per tenant rather than per slot, so no
/// two runs of one tenant (two slots either side of a boundary on servers
/// whose clocks differ) ever write at once. The handled slot
/// (`extract_slots`) now also keeps the server-wide interval's last run.
///
/// Webhooks: each subscription counts its attempts (`last_attempt_id`),
/// so recording attempts no longer looks up the attempts table's maximum
/// (filled from the attempts recorded so far).
///
/// Upgrade: stop every machi process on the database before this
/// migration runs, and start only processes of this version after it (no
/// rolling upgrade across it). A process of an earlier version still
/// delivering webhooks numbers attempts by `MAX(attempt_id) + 1` and never
/// moves the counter, so a new process counting from the counter would
/// reuse its numbers (the insert fails on the primary key, the delivery
/// is retried and may fail again); taking the larger of the two on every
/// insert would bring back the look-up the counter removed. An earlier
/// version's scheduler knows nothing of `extract_claims` either and would
/// run a slot beside a claimed run. Leases in `extract_claims` are wall
/// clock times compared across servers: their clocks must agree to well
/// within the lease (five minutes; see `linkage::CLAIM_LEASE`).
macro_rules! v31_common {
    () => {
        r#"
ALTER TABLE webhook_subscriptions ADD COLUMN last_attempt_id BIGINT NOT NULL DEFAULT 0;
UPDATE webhook_subscriptions SET last_attempt_id = COALESCE((SELECT MAX(a.attempt_id)
    FROM webhook_attempts a WHERE a.tenant = webhook_subscriptions.tenant
    AND a.subscription_id = webhook_subscriptions.subscription_id), 0);
CREATE TABLE extract_claims (
    tenant TEXT PRIMARY KEY REFERENCES tenants (municipality_code),
    slot BIGINT NOT NULL,
    owner TEXT NOT NULL,
    claimed_at BIGINT NOT NULL,
    lease_until BIGINT NOT NULL,
    done_at BIGINT
);
"#
    };
}

const V31_SQLITE: &str = v31_common!();

const V31_POSTGRES: &str = concat!(
    "-- Read and write every tenant's rows, whichever role migrates.\n\
     ALTER TABLE webhook_subscriptions NO FORCE ROW LEVEL SECURITY;\n\
     ALTER TABLE webhook_attempts NO FORCE ROW LEVEL SECURITY;\n",
    v31_common!(),
    "ALTER TABLE webhook_subscriptions FORCE ROW LEVEL SECURITY;\n\
     ALTER TABLE webhook_attempts FORCE ROW LEVEL SECURITY;\n",
    r#"
GRANT SELECT, INSERT, UPDATE ON extract_claims TO machi_app;
ALTER TABLE extract_claims ENABLE ROW LEVEL SECURITY;
ALTER TABLE extract_claims FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON extract_claims
    USING (tenant = current_setting('machi.tenant', true))
    WITH CHECK (tenant = current_setting('machi.tenant', true));
"#
);
/// Index-backed search (j330, j340): ranked exact → prefix → contains over
/// the folded keys of names, furigana and addresses.
///
/// - Exact and prefix matches walk a B-tree per key, tenant first, in key
///   order (so a page stops early however many persons share a prefix).
/// - Contains matches of three characters or more use a trigram index:
///   SQLite FTS5 with the `trigram` tokenizer (external content, kept by
///   triggers in the same transaction as the row), PostgreSQL `pg_trgm`
///   GIN indexes (on the partitions of the registry tables).
const V21_SQLITE: &str = r#"
CREATE INDEX resident_current_name_key ON resident_current (tenant, name_key, addressee_number);
CREATE INDEX resident_current_kana_key ON resident_current (tenant, kana_key, addressee_number);
CREATE INDEX resident_current_address_key ON resident_current (tenant, address_key, addressee_number);
CREATE VIRTUAL TABLE resident_current_fts USING fts5(
    name_key, kana_key, address_key,
    content = 'resident_current', content_rowid = 'rowid', tokenize = 'trigram'
);
CREATE TRIGGER resident_current_fts_insert AFTER INSERT ON resident_current BEGIN
    INSERT INTO resident_current_fts (rowid, name_key, kana_key, address_key)
        VALUES (new.rowid, new.name_key, new.kana_key, new.address_key);
END;
CREATE TRIGGER resident_current_fts_delete AFTER DELETE ON resident_current BEGIN
    INSERT INTO resident_current_fts (resident_current_fts, rowid, name_key, kana_key, address_key)
        VALUES ('delete', old.rowid, old.name_key, old.kana_key, old.address_key);
END;
CREATE TRIGGER resident_current_fts_update AFTER UPDATE ON resident_current
WHEN old.name_key IS NOT new.name_key OR old.kana_key IS NOT new.kana_key
    OR old.address_key IS NOT new.address_key OR old.rowid IS NOT new.rowid
BEGIN
    INSERT INTO resident_current_fts (resident_current_fts, rowid, name_key, kana_key, address_key)
        VALUES ('delete', old.rowid, old.name_key, old.kana_key, old.address_key);
    INSERT INTO resident_current_fts (rowid, name_key, kana_key, address_key)
        VALUES (new.rowid, new.name_key, new.kana_key, new.address_key);
END;
INSERT INTO resident_current_fts (resident_current_fts) VALUES ('rebuild');
CREATE VIRTUAL TABLE resident_history_fts USING fts5(
    name_key, kana_key, address_key,
    content = 'resident_history', content_rowid = 'rowid', tokenize = 'trigram'
);
CREATE TRIGGER resident_history_fts_insert AFTER INSERT ON resident_history BEGIN
    INSERT INTO resident_history_fts (rowid, name_key, kana_key, address_key)
        VALUES (new.rowid, new.name_key, new.kana_key, new.address_key);
END;
CREATE TRIGGER resident_history_fts_delete AFTER DELETE ON resident_history BEGIN
    INSERT INTO resident_history_fts (resident_history_fts, rowid, name_key, kana_key, address_key)
        VALUES ('delete', old.rowid, old.name_key, old.kana_key, old.address_key);
END;
INSERT INTO resident_history_fts (resident_history_fts) VALUES ('rebuild');
"#;

/// PostgreSQL: `pg_trgm` (a trusted contrib extension: the owner of the
/// database may create it) and the search indexes on the partitioned
/// registry tables, which every partition inherits. Prefix
/// B-trees compare in code-point order (`COLLATE "C"`) whatever the
/// database's collation, as SQLite does.
const V21_POSTGRES: &str = r#"
DO $$ BEGIN
    CREATE EXTENSION IF NOT EXISTS pg_trgm;
EXCEPTION WHEN OTHERS THEN
    RAISE EXCEPTION 'machi: search needs the PostgreSQL extension pg_trgm (検索には PostgreSQL の拡張 pg_trgm が必要です): %', SQLERRM
        USING HINT = 'install the server''s contrib modules (Debian: package postgresql) and let the migrating role create extensions, or have a superuser run CREATE EXTENSION pg_trgm in this database first';
END $$;
CREATE INDEX resident_current_name_key ON resident_current (tenant, name_key COLLATE "C", addressee_number);
CREATE INDEX resident_current_kana_key ON resident_current (tenant, kana_key COLLATE "C", addressee_number);
CREATE INDEX resident_current_address_key ON resident_current (tenant, address_key COLLATE "C", addressee_number);
CREATE INDEX resident_current_name_trgm ON resident_current USING gin (name_key gin_trgm_ops);
CREATE INDEX resident_current_kana_trgm ON resident_current USING gin (kana_key gin_trgm_ops);
CREATE INDEX resident_current_address_trgm ON resident_current USING gin (address_key gin_trgm_ops);
CREATE INDEX resident_history_name_trgm ON resident_history USING gin (name_key gin_trgm_ops);
CREATE INDEX resident_history_kana_trgm ON resident_history USING gin (kana_key gin_trgm_ops);
CREATE INDEX resident_history_address_trgm ON resident_history USING gin (address_key gin_trgm_ops);
"#;

/// Search by one or two characters (j340), and the re-fold of old keys.
///
/// `resident_gram`: for every character of a current row's folded name
/// and furigana keys after the first (a match at the first is a prefix
/// match, served by the key B-trees), the character and the one after it
/// in the same name part, or the character alone at a part's end: a
/// posting list per (tenant, key, gram) in 宛名番号 order. A contained
/// match of two characters is the list of that bigram; of one character,
/// the grams that start with it; of three or more characters that the
/// trigram index finds common, the list of its first two characters (all
/// rechecked against the row). Grams are cut at position 512 of a key
/// (`search_gram_positions`, which the bulk fill joins against).
/// `search_refold_progress`: where `machi search refold` stopped, per
/// tenant, so that it resumes. On SQLite, an update trigger keeps the
/// history's FTS5 index when the re-fold rewrites a history row's keys.
macro_rules! v25_common {
    () => {
        r#"
CREATE TABLE search_gram_positions (i INTEGER PRIMARY KEY);
CREATE TABLE search_refold_progress (
    tenant TEXT NOT NULL PRIMARY KEY,
    fold_table TEXT NOT NULL,
    after_person TEXT,
    finished BIGINT NOT NULL,
    updated_rows BIGINT NOT NULL
);
"#
    };
}

const V25_SQLITE: &str = concat!(
    v25_common!(),
    r#"
CREATE TABLE resident_gram (
    tenant TEXT NOT NULL,
    col SMALLINT NOT NULL,
    gram TEXT NOT NULL,
    addressee_number TEXT NOT NULL,
    PRIMARY KEY (tenant, col, gram, addressee_number)
) WITHOUT ROWID;
WITH RECURSIVE p(i) AS (SELECT 2 UNION ALL SELECT i + 1 FROM p WHERE i < 512)
INSERT INTO search_gram_positions (i) SELECT i FROM p;
INSERT OR IGNORE INTO resident_gram (tenant, col, gram, addressee_number) SELECT c.tenant, 1, CASE WHEN substr(c.name_key, p.i + 1, 1) IN ('', char(31)) THEN substr(c.name_key, p.i, 1) ELSE substr(c.name_key, p.i, 2) END, c.addressee_number FROM resident_current c JOIN search_gram_positions p ON p.i <= length(c.name_key) WHERE true AND substr(c.name_key, p.i, 1) <> char(31) UNION ALL SELECT c.tenant, 2, CASE WHEN substr(c.kana_key, p.i + 1, 1) IN ('', char(31)) THEN substr(c.kana_key, p.i, 1) ELSE substr(c.kana_key, p.i, 2) END, c.addressee_number FROM resident_current c JOIN search_gram_positions p ON p.i <= length(c.kana_key) WHERE true AND substr(c.kana_key, p.i, 1) <> char(31) ORDER BY 1, 2, 3, 4;
CREATE TRIGGER resident_history_fts_update AFTER UPDATE ON resident_history
WHEN old.name_key IS NOT new.name_key OR old.kana_key IS NOT new.kana_key
    OR old.address_key IS NOT new.address_key
BEGIN
    INSERT INTO resident_history_fts (resident_history_fts, rowid, name_key, kana_key, address_key)
        VALUES ('delete', old.rowid, old.name_key, old.kana_key, old.address_key);
    INSERT INTO resident_history_fts (rowid, name_key, kana_key, address_key)
        VALUES (new.rowid, new.name_key, new.kana_key, new.address_key);
END;
"#
);

const V25_POSTGRES: &str = concat!(
    v25_common!(),
    r#"
CREATE TABLE resident_gram (
    tenant TEXT NOT NULL,
    col SMALLINT NOT NULL,
    gram TEXT COLLATE "C" NOT NULL,
    addressee_number TEXT NOT NULL,
    PRIMARY KEY (tenant, col, gram, addressee_number)
);
INSERT INTO search_gram_positions (i) SELECT generate_series(2, 512);
-- Read every tenant's rows, whichever role migrates (the policy would show none).
ALTER TABLE resident_current NO FORCE ROW LEVEL SECURITY;
INSERT INTO resident_gram (tenant, col, gram, addressee_number) SELECT c.tenant, 1, CASE WHEN substr(c.name_key, p.i + 1, 1) IN ('', chr(31)) THEN substr(c.name_key, p.i, 1) ELSE substr(c.name_key, p.i, 2) END, c.addressee_number FROM resident_current c JOIN search_gram_positions p ON p.i <= length(c.name_key) WHERE true AND substr(c.name_key, p.i, 1) <> chr(31) UNION ALL SELECT c.tenant, 2, CASE WHEN substr(c.kana_key, p.i + 1, 1) IN ('', chr(31)) THEN substr(c.kana_key, p.i, 1) ELSE substr(c.kana_key, p.i, 2) END, c.addressee_number FROM resident_current c JOIN search_gram_positions p ON p.i <= length(c.kana_key) WHERE true AND substr(c.kana_key, p.i, 1) <> chr(31) ORDER BY 1, 2, 3, 4 ON CONFLICT DO NOTHING;
ALTER TABLE resident_current FORCE ROW LEVEL SECURITY;
GRANT SELECT ON search_gram_positions TO machi_app;
GRANT SELECT, INSERT, DELETE ON resident_gram TO machi_app;
ALTER TABLE resident_gram ENABLE ROW LEVEL SECURITY;
ALTER TABLE resident_gram FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON resident_gram
    USING (tenant = current_setting('machi.tenant', true))
    WITH CHECK (tenant = current_setting('machi.tenant', true));
GRANT SELECT, INSERT, UPDATE ON search_refold_progress TO machi_app;
ALTER TABLE search_refold_progress ENABLE ROW LEVEL SECURITY;
ALTER TABLE search_refold_progress FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON search_refold_progress
    USING (tenant = current_setting('machi.tenant', true))
    WITH CHECK (tenant = current_setting('machi.tenant', true));
"#
);

/// PostgreSQL: the two registry tables partitioned by HASH of the tenant
/// into a fixed [`super::records::REGISTRY_PARTITIONS`] (16) partitions
/// each, instead of one LIST partition per tenant (migration 11). With a
/// partition per tenant every tenant added made the server slower and
/// larger for all of them (18 more relations in the partition tree per
/// tenant; at 1,741 tenants adding one took ~400 ms instead of 50 ms and a
/// generic plan of a tenant-keyed query planned for 318 ms; at 500 tenants
/// a connection that had served 16 tenants held 117 MiB of memory
/// contexts instead of 2.6 MiB: `machi bench-tenants`, see
/// docs/notes/wt-tenants.md). Now the schema is the same whatever the
/// number of tenants, and adding one writes rows only.
///
/// Every row is carried over; keys, indexes (same names), grants and
/// row-level security are made again as they were. The tenant still leads
/// every key. The foreign key to `tenants` comes back (it was the
/// partition bound that kept rows to existing tenants). The partitions are
/// the owner's; machi_app has rights on the parent tables only, where the
/// policies apply.
const V24_POSTGRES: &str = r#"
ALTER TABLE resident_history RENAME TO resident_history_v24;
ALTER TABLE resident_current RENAME TO resident_current_v24;
CREATE TABLE resident_history_v25 (LIKE resident_history_v24) PARTITION BY HASH (tenant);
CREATE TABLE resident_current_v25 (LIKE resident_current_v24) PARTITION BY HASH (tenant);
DO $$
BEGIN
    FOR r IN 0..15 LOOP
        EXECUTE format('CREATE TABLE %I PARTITION OF resident_history_v25 FOR VALUES WITH (MODULUS 16, REMAINDER %s)', 'resident_history_h' || lpad(r::text, 2, '0'), r);
        EXECUTE format('CREATE TABLE %I PARTITION OF resident_current_v25 FOR VALUES WITH (MODULUS 16, REMAINDER %s)', 'resident_current_h' || lpad(r::text, 2, '0'), r);
    END LOOP;
END $$;
INSERT INTO resident_history_v25 SELECT * FROM resident_history_v24;
INSERT INTO resident_current_v25 SELECT * FROM resident_current_v24;
DROP TABLE resident_history_v24;
DROP TABLE resident_current_v24;
ALTER TABLE resident_history_v25 RENAME TO resident_history;
ALTER TABLE resident_current_v25 RENAME TO resident_current;
ALTER TABLE resident_history ADD PRIMARY KEY (tenant, addressee_number, history_number);
ALTER TABLE resident_current ADD PRIMARY KEY (tenant, addressee_number);
ALTER TABLE resident_history ADD FOREIGN KEY (tenant) REFERENCES tenants (municipality_code);
ALTER TABLE resident_current ADD FOREIGN KEY (tenant) REFERENCES tenants (municipality_code);
CREATE INDEX resident_history_household ON resident_history (tenant, household_number);
CREATE INDEX resident_current_household ON resident_current (tenant, household_number);
CREATE INDEX resident_current_birth ON resident_current (tenant, birth_key);
CREATE INDEX resident_current_my_number ON resident_current (tenant, my_number_key);
CREATE INDEX resident_current_resident_code ON resident_current (tenant, resident_code);
CREATE INDEX resident_current_name_key ON resident_current (tenant, name_key COLLATE "C", addressee_number);
CREATE INDEX resident_current_kana_key ON resident_current (tenant, kana_key COLLATE "C", addressee_number);
CREATE INDEX resident_current_address_key ON resident_current (tenant, address_key COLLATE "C", addressee_number);
CREATE INDEX resident_current_name_trgm ON resident_current USING gin (name_key gin_trgm_ops);
CREATE INDEX resident_current_kana_trgm ON resident_current USING gin (kana_key gin_trgm_ops);
CREATE INDEX resident_current_address_trgm ON resident_current USING gin (address_key gin_trgm_ops);
CREATE INDEX resident_history_name_trgm ON resident_history USING gin (name_key gin_trgm_ops);
CREATE INDEX resident_history_kana_trgm ON resident_history USING gin (kana_key gin_trgm_ops);
CREATE INDEX resident_history_address_trgm ON resident_history USING gin (address_key gin_trgm_ops);
GRANT SELECT, INSERT ON resident_history TO machi_app;
GRANT SELECT, INSERT, UPDATE ON resident_current TO machi_app;
ALTER TABLE resident_history ENABLE ROW LEVEL SECURITY;
ALTER TABLE resident_history FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON resident_history
    USING (tenant = current_setting('machi.tenant', true))
    WITH CHECK (tenant = current_setting('machi.tenant', true));
ALTER TABLE resident_current ENABLE ROW LEVEL SECURITY;
ALTER TABLE resident_current FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON resident_current
    USING (tenant = current_setting('machi.tenant', true))
    WITH CHECK (tenant = current_setting('machi.tenant', true));
ANALYZE resident_history;
ANALYZE resident_current;
"#;

const V19_COMMON: &str = v19_common!();

/// Procedure definitions published on the portal, as the back office
/// imported them (issue 11, item 1): the exact text of each published
/// (tenant, procedure, version), validated by `machi-procedures` on
/// import, and its SHA-256. A published version never changes: the
/// primary key keeps one text per version, and a different text for a
/// version already here is refused on import.
macro_rules! v23_common {
    () => {
        r#"
CREATE TABLE procedure_definitions (
    tenant TEXT NOT NULL REFERENCES tenants (municipality_code),
    procedure TEXT NOT NULL,
    version BIGINT NOT NULL,
    source TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    action_kind TEXT NOT NULL,
    imported_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, procedure, version)
);
CREATE INDEX portal_filings_procedure ON portal_filings (tenant, procedure, version);
"#
    };
}

const V23_SQLITE: &str = v23_common!();

const V23_POSTGRES: &str = concat!(
    v23_common!(),
    r#"
GRANT SELECT, INSERT ON procedure_definitions TO machi_app;
ALTER TABLE procedure_definitions ENABLE ROW LEVEL SECURITY;
ALTER TABLE procedure_definitions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON procedure_definitions
    USING (tenant = current_setting('machi.tenant', true))
    WITH CHECK (tenant = current_setting('machi.tenant', true));
"#
);

/// The tenant administrator's acceptance or refusal of a procedure
/// definition version the portal delivered (issue 11): until accepted, no
/// filing made on it is approved; a refused version's filings can only be
/// rejected. One decision per version, final (insert-only, as the
/// definitions are), bound to the SHA-256 of the text decided on. The
/// versions imported before this migration were never reviewed: they
/// await a decision like a new one.
macro_rules! v26_common {
    () => {
        r#"
CREATE TABLE procedure_definition_decisions (
    tenant TEXT NOT NULL,
    procedure TEXT NOT NULL,
    version BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    decision TEXT NOT NULL CHECK (decision IN ('accepted', 'refused')),
    decided_by TEXT NOT NULL,
    decided_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, procedure, version),
    FOREIGN KEY (tenant, procedure, version) REFERENCES procedure_definitions (tenant, procedure, version)
);
"#
    };
}

const V26_SQLITE: &str = v26_common!();

const V26_POSTGRES: &str = concat!(
    v26_common!(),
    r#"
GRANT SELECT, INSERT ON procedure_definition_decisions TO machi_app;
ALTER TABLE procedure_definition_decisions ENABLE ROW LEVEL SECURITY;
ALTER TABLE procedure_definition_decisions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON procedure_definition_decisions
    USING (tenant = current_setting('machi.tenant', true))
    WITH CHECK (tenant = current_setting('machi.tenant', true));
"#
);
/// Issue 11, two changes of the citizen portal's import.
///
/// `portal_refusals`: a filing the back office refused on import (does
/// not open, replayed, its definition refused or unknown, its answers
/// breaking the definition…) is recorded here once, with why, and
/// acknowledged to the portal as refused (the portal drops its sealed
/// copy and tells the citizen), so it is never pulled again and cannot
/// starve the pull. The sealed bytes are kept as pulled (still sealed to
/// the back office's key): nothing is lost. Insert-only.
///
/// `portal_deferrals`: a refusal that may pass later (the filing does not
/// open — a key rotated or misconfigured —, its definition does not
/// validate with this machi-procedures, none is known, its answers fail
/// this version's validators) is not quarantined at once: the first time
/// is recorded here and the portal offers the filing after the others;
/// only when it still fails after a grace period is it quarantined.
/// Insert-only.
///
/// `procedure_definition_decision_log` replaces
/// `procedure_definition_decisions`: the tenant administrator's decisions
/// on a definition version as a history (`seq` 1, 2, …; the newest
/// counts), so an acceptance can be withdrawn (`withdrawn`) and given
/// again. Insert-only, like the table it replaces (its rows are copied as
/// `seq` 1).
macro_rules! v30_common {
    () => {
        r#"
CREATE TABLE portal_refusals (
    tenant TEXT NOT NULL REFERENCES tenants (municipality_code),
    portal_id TEXT NOT NULL,
    receipt TEXT,
    procedure TEXT NOT NULL,
    version BIGINT NOT NULL,
    received_at TEXT NOT NULL,
    code TEXT NOT NULL,
    citizen_reason TEXT NOT NULL,
    message_ja TEXT NOT NULL,
    message_en TEXT NOT NULL,
    sealed TEXT NOT NULL,
    refused_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, portal_id)
);
CREATE INDEX portal_refusals_refused_at ON portal_refusals (tenant, refused_at);
CREATE TABLE portal_deferrals (
    tenant TEXT NOT NULL REFERENCES tenants (municipality_code),
    portal_id TEXT NOT NULL,
    code TEXT NOT NULL,
    message_ja TEXT NOT NULL,
    message_en TEXT NOT NULL,
    first_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, portal_id)
);
CREATE TABLE procedure_definition_decision_log (
    tenant TEXT NOT NULL,
    procedure TEXT NOT NULL,
    version BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    decision TEXT NOT NULL CHECK (decision IN ('accepted', 'refused', 'withdrawn')),
    decided_by TEXT NOT NULL,
    decided_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, procedure, version, seq),
    FOREIGN KEY (tenant, procedure, version) REFERENCES procedure_definitions (tenant, procedure, version)
);
"#
    };
}

const V30_SQLITE: &str = concat!(
    v30_common!(),
    r#"
INSERT INTO procedure_definition_decision_log (tenant, procedure, version, seq, sha256, decision, decided_by, decided_at)
    SELECT tenant, procedure, version, 1, sha256, decision, decided_by, decided_at FROM procedure_definition_decisions;
DROP TABLE procedure_definition_decisions;
"#
);

const V30_POSTGRES: &str = concat!(
    v30_common!(),
    r#"
ALTER TABLE procedure_definition_decisions NO FORCE ROW LEVEL SECURITY;
INSERT INTO procedure_definition_decision_log (tenant, procedure, version, seq, sha256, decision, decided_by, decided_at)
    SELECT tenant, procedure, version, 1, sha256, decision, decided_by, decided_at FROM procedure_definition_decisions;
DROP TABLE procedure_definition_decisions;
GRANT SELECT, INSERT ON portal_refusals TO machi_app;
ALTER TABLE portal_refusals ENABLE ROW LEVEL SECURITY;
ALTER TABLE portal_refusals FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON portal_refusals
    USING (tenant = current_setting('machi.tenant', true))
    WITH CHECK (tenant = current_setting('machi.tenant', true));
GRANT SELECT, INSERT ON portal_deferrals TO machi_app;
ALTER TABLE portal_deferrals ENABLE ROW LEVEL SECURITY;
ALTER TABLE portal_deferrals FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON portal_deferrals
    USING (tenant = current_setting('machi.tenant', true))
    WITH CHECK (tenant = current_setting('machi.tenant', true));
GRANT SELECT, INSERT ON procedure_definition_decision_log TO machi_app;
ALTER TABLE procedure_definition_decision_log ENABLE ROW LEVEL SECURITY;
ALTER TABLE procedure_definition_decision_log FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON procedure_definition_decision_log
    USING (tenant = current_setting('machi.tenant', true))
    WITH CHECK (tenant = current_setting('machi.tenant', true));
"#
);
/// Search by one or two characters in addresses and, with
/// `include_history`, in every history row (j340): `resident_gram` gains
/// the grams of the current rows' address keys (`col` 3, as names and
/// furigana) and the history postings (`col` 4–6: name, furigana,
/// address of any of the person's history rows, with the start and the
/// whole of short keys marked, see [`super::records::history_grams`]).
/// Filled here for the rows already present.
///
/// The fill is written out here, frozen: it is what the bulk fills
/// ([`super::records::gram_fill_sql`],
/// [`super::records::history_gram_fill_sql`]) were when this migration
/// shipped (at 36b8c0b; the whitespace differs). Those functions serve
/// the bulk loads of today and change with them (migration 29 made
/// `gram_fill_sql` fill only one-character grams in `col` 1–3); a
/// migration that ran on some databases must mean the same on the rest,
/// so this text never follows them. In particular it still fills the
/// two-character grams of `col` 1–3 (`grams` of migration 25), which
/// migration 29 deletes: a fresh database and an upgraded one end the
/// same after 29 (`migration::*::an_upgrade_to_29_keeps_every_search`).
/// Do not edit this text; a change of what the grams are is a new
/// migration.
///
/// PostgreSQL: the trigram GIN indexes of the registry partitions lose
/// their pending list (`fastupdate = off`), which is emptied here. With
/// it, every probe read the whole unsorted list (up to
/// `gin_pending_list_limit`, 4 MiB) whatever the text: a text that
/// matches nobody read 270 pages at 100,000 residents (`EXPLAIN
/// (ANALYZE, BUFFERS)`, docs/notes/wt-search10.md). A change now writes
/// its trigrams into the index itself.
const V28_SQLITE: &str = r#"
INSERT OR IGNORE INTO resident_gram (tenant, col, gram, addressee_number)
SELECT c.tenant, 1, CASE WHEN substr(c.name_key, p.i + 1, 1) IN ('', char(31)) THEN substr(c.name_key, p.i, 1) ELSE substr(c.name_key, p.i, 2) END, c.addressee_number
    FROM resident_current c JOIN search_gram_positions p ON p.i <= length(c.name_key)
    WHERE true AND substr(c.name_key, p.i, 1) <> char(31)
UNION ALL
SELECT c.tenant, 2, CASE WHEN substr(c.kana_key, p.i + 1, 1) IN ('', char(31)) THEN substr(c.kana_key, p.i, 1) ELSE substr(c.kana_key, p.i, 2) END, c.addressee_number
    FROM resident_current c JOIN search_gram_positions p ON p.i <= length(c.kana_key)
    WHERE true AND substr(c.kana_key, p.i, 1) <> char(31)
UNION ALL
SELECT c.tenant, 3, CASE WHEN substr(c.address_key, p.i + 1, 1) IN ('', char(31)) THEN substr(c.address_key, p.i, 1) ELSE substr(c.address_key, p.i, 2) END, c.addressee_number
    FROM resident_current c JOIN search_gram_positions p ON p.i <= length(c.address_key)
    WHERE true AND substr(c.address_key, p.i, 1) <> char(31)
ORDER BY 1, 2, 3, 4;
INSERT OR IGNORE INTO resident_gram (tenant, col, gram, addressee_number)
SELECT c.tenant, 4, char(3) || c.name_key, c.addressee_number
    FROM resident_history c
    WHERE true AND length(c.name_key) BETWEEN 1 AND 2
UNION ALL
SELECT c.tenant, 4, char(2) || substr(c.name_key, 1, 1), c.addressee_number
    FROM resident_history c
    WHERE true AND length(c.name_key) >= 1 AND substr(c.name_key, 1, 1) <> char(31)
UNION ALL
SELECT c.tenant, 4, char(2) || substr(c.name_key, 1, 2), c.addressee_number
    FROM resident_history c
    WHERE true AND substr(c.name_key, 1, 1) <> char(31) AND substr(c.name_key, 2, 1) NOT IN ('', char(31))
UNION ALL
SELECT c.tenant, 4, substr(c.name_key, p.i, 1), c.addressee_number
    FROM resident_history c JOIN search_gram_positions p ON p.i <= length(c.name_key)
    WHERE true AND substr(c.name_key, p.i, 1) <> char(31)
UNION ALL
SELECT c.tenant, 4, substr(c.name_key, p.i, 2), c.addressee_number
    FROM resident_history c JOIN search_gram_positions p ON p.i <= length(c.name_key)
    WHERE true AND substr(c.name_key, p.i, 1) <> char(31) AND substr(c.name_key, p.i + 1, 1) NOT IN ('', char(31))
UNION ALL
SELECT c.tenant, 5, char(3) || c.kana_key, c.addressee_number
    FROM resident_history c
    WHERE true AND length(c.kana_key) BETWEEN 1 AND 2
UNION ALL
SELECT c.tenant, 5, char(2) || substr(c.kana_key, 1, 1), c.addressee_number
    FROM resident_history c
    WHERE true AND length(c.kana_key) >= 1 AND substr(c.kana_key, 1, 1) <> char(31)
UNION ALL
SELECT c.tenant, 5, char(2) || substr(c.kana_key, 1, 2), c.addressee_number
    FROM resident_history c
    WHERE true AND substr(c.kana_key, 1, 1) <> char(31) AND substr(c.kana_key, 2, 1) NOT IN ('', char(31))
UNION ALL
SELECT c.tenant, 5, substr(c.kana_key, p.i, 1), c.addressee_number
    FROM resident_history c JOIN search_gram_positions p ON p.i <= length(c.kana_key)
    WHERE true AND substr(c.kana_key, p.i, 1) <> char(31)
UNION ALL
SELECT c.tenant, 5, substr(c.kana_key, p.i, 2), c.addressee_number
    FROM resident_history c JOIN search_gram_positions p ON p.i <= length(c.kana_key)
    WHERE true AND substr(c.kana_key, p.i, 1) <> char(31) AND substr(c.kana_key, p.i + 1, 1) NOT IN ('', char(31))
UNION ALL
SELECT c.tenant, 6, char(3) || c.address_key, c.addressee_number
    FROM resident_history c
    WHERE true AND length(c.address_key) BETWEEN 1 AND 2
UNION ALL
SELECT c.tenant, 6, char(2) || substr(c.address_key, 1, 1), c.addressee_number
    FROM resident_history c
    WHERE true AND length(c.address_key) >= 1 AND substr(c.address_key, 1, 1) <> char(31)
UNION ALL
SELECT c.tenant, 6, char(2) || substr(c.address_key, 1, 2), c.addressee_number
    FROM resident_history c
    WHERE true AND substr(c.address_key, 1, 1) <> char(31) AND substr(c.address_key, 2, 1) NOT IN ('', char(31))
UNION ALL
SELECT c.tenant, 6, substr(c.address_key, p.i, 1), c.addressee_number
    FROM resident_history c JOIN search_gram_positions p ON p.i <= length(c.address_key)
    WHERE true AND substr(c.address_key, p.i, 1) <> char(31)
UNION ALL
SELECT c.tenant, 6, substr(c.address_key, p.i, 2), c.addressee_number
    FROM resident_history c JOIN search_gram_positions p ON p.i <= length(c.address_key)
    WHERE true AND substr(c.address_key, p.i, 1) <> char(31) AND substr(c.address_key, p.i + 1, 1) NOT IN ('', char(31))
ORDER BY 1, 2, 3, 4;
"#;

const V28_POSTGRES: &str = r#"
-- Read and write every tenant's rows, whichever role migrates.
ALTER TABLE resident_current NO FORCE ROW LEVEL SECURITY;
ALTER TABLE resident_history NO FORCE ROW LEVEL SECURITY;
ALTER TABLE resident_gram NO FORCE ROW LEVEL SECURITY;
INSERT INTO resident_gram (tenant, col, gram, addressee_number)
SELECT c.tenant, 1, CASE WHEN substr(c.name_key, p.i + 1, 1) IN ('', chr(31)) THEN substr(c.name_key, p.i, 1) ELSE substr(c.name_key, p.i, 2) END, c.addressee_number
    FROM resident_current c JOIN search_gram_positions p ON p.i <= length(c.name_key)
    WHERE true AND substr(c.name_key, p.i, 1) <> chr(31)
UNION ALL
SELECT c.tenant, 2, CASE WHEN substr(c.kana_key, p.i + 1, 1) IN ('', chr(31)) THEN substr(c.kana_key, p.i, 1) ELSE substr(c.kana_key, p.i, 2) END, c.addressee_number
    FROM resident_current c JOIN search_gram_positions p ON p.i <= length(c.kana_key)
    WHERE true AND substr(c.kana_key, p.i, 1) <> chr(31)
UNION ALL
SELECT c.tenant, 3, CASE WHEN substr(c.address_key, p.i + 1, 1) IN ('', chr(31)) THEN substr(c.address_key, p.i, 1) ELSE substr(c.address_key, p.i, 2) END, c.addressee_number
    FROM resident_current c JOIN search_gram_positions p ON p.i <= length(c.address_key)
    WHERE true AND substr(c.address_key, p.i, 1) <> chr(31)
ORDER BY 1, 2, 3, 4
ON CONFLICT DO NOTHING;
INSERT INTO resident_gram (tenant, col, gram, addressee_number)
SELECT c.tenant, 4, chr(3) || c.name_key, c.addressee_number
    FROM resident_history c
    WHERE true AND length(c.name_key) BETWEEN 1 AND 2
UNION ALL
SELECT c.tenant, 4, chr(2) || substr(c.name_key, 1, 1), c.addressee_number
    FROM resident_history c
    WHERE true AND length(c.name_key) >= 1 AND substr(c.name_key, 1, 1) <> chr(31)
UNION ALL
SELECT c.tenant, 4, chr(2) || substr(c.name_key, 1, 2), c.addressee_number
    FROM resident_history c
    WHERE true AND substr(c.name_key, 1, 1) <> chr(31) AND substr(c.name_key, 2, 1) NOT IN ('', chr(31))
UNION ALL
SELECT c.tenant, 4, substr(c.name_key, p.i, 1), c.addressee_number
    FROM resident_history c JOIN search_gram_positions p ON p.i <= length(c.name_key)
    WHERE true AND substr(c.name_key, p.i, 1) <> chr(31)
UNION ALL
SELECT c.tenant, 4, substr(c.name_key, p.i, 2), c.addressee_number
    FROM resident_history c JOIN search_gram_positions p ON p.i <= length(c.name_key)
    WHERE true AND substr(c.name_key, p.i, 1) <> chr(31) AND substr(c.name_key, p.i + 1, 1) NOT IN ('', chr(31))
UNION ALL
SELECT c.tenant, 5, chr(3) || c.kana_key, c.addressee_number
    FROM resident_history c
    WHERE true AND length(c.kana_key) BETWEEN 1 AND 2
UNION ALL
SELECT c.tenant, 5, chr(2) || substr(c.kana_key, 1, 1), c.addressee_number
    FROM resident_history c
    WHERE true AND length(c.kana_key) >= 1 AND substr(c.kana_key, 1, 1) <> chr(31)
UNION ALL
SELECT c.tenant, 5, chr(2) || substr(c.kana_key, 1, 2), c.addressee_number
    FROM resident_history c
    WHERE true AND substr(c.kana_key, 1, 1) <> chr(31) AND substr(c.kana_key, 2, 1) NOT IN ('', chr(31))
UNION ALL
SELECT c.tenant, 5, substr(c.kana_key, p.i, 1), c.addressee_number
    FROM resident_history c JOIN search_gram_positions p ON p.i <= length(c.kana_key)
    WHERE true AND substr(c.kana_key, p.i, 1) <> chr(31)
UNION ALL
SELECT c.tenant, 5, substr(c.kana_key, p.i, 2), c.addressee_number
    FROM resident_history c JOIN search_gram_positions p ON p.i <= length(c.kana_key)
    WHERE true AND substr(c.kana_key, p.i, 1) <> chr(31) AND substr(c.kana_key, p.i + 1, 1) NOT IN ('', chr(31))
UNION ALL
SELECT c.tenant, 6, chr(3) || c.address_key, c.addressee_number
    FROM resident_history c
    WHERE true AND length(c.address_key) BETWEEN 1 AND 2
UNION ALL
SELECT c.tenant, 6, chr(2) || substr(c.address_key, 1, 1), c.addressee_number
    FROM resident_history c
    WHERE true AND length(c.address_key) >= 1 AND substr(c.address_key, 1, 1) <> chr(31)
UNION ALL
SELECT c.tenant, 6, chr(2) || substr(c.address_key, 1, 2), c.addressee_number
    FROM resident_history c
    WHERE true AND substr(c.address_key, 1, 1) <> chr(31) AND substr(c.address_key, 2, 1) NOT IN ('', chr(31))
UNION ALL
SELECT c.tenant, 6, substr(c.address_key, p.i, 1), c.addressee_number
    FROM resident_history c JOIN search_gram_positions p ON p.i <= length(c.address_key)
    WHERE true AND substr(c.address_key, p.i, 1) <> chr(31)
UNION ALL
SELECT c.tenant, 6, substr(c.address_key, p.i, 2), c.addressee_number
    FROM resident_history c JOIN search_gram_positions p ON p.i <= length(c.address_key)
    WHERE true AND substr(c.address_key, p.i, 1) <> chr(31) AND substr(c.address_key, p.i + 1, 1) NOT IN ('', chr(31))
ORDER BY 1, 2, 3, 4
ON CONFLICT DO NOTHING;
ALTER TABLE resident_current FORCE ROW LEVEL SECURITY;
ALTER TABLE resident_history FORCE ROW LEVEL SECURITY;
ALTER TABLE resident_gram FORCE ROW LEVEL SECURITY;
ANALYZE resident_gram;
DO $$ DECLARE r record; BEGIN
FOR r IN SELECT i.indexrelid::regclass AS idx FROM pg_index i
    JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_am a ON a.oid = ic.relam
    JOIN pg_class t ON t.oid = i.indrelid
    WHERE a.amname = 'gin' AND ic.relkind = 'i' AND t.relkind = 'r'
    AND (t.relname LIKE 'resident\_current\_%' OR t.relname LIKE 'resident\_history\_%')
LOOP
    EXECUTE format('ALTER INDEX %s SET (fastupdate = off)', r.idx);
    PERFORM gin_clean_pending_list(r.idx);
END LOOP; END $$;
"#;

/// Search postings without duplicates (issue 10, item 3): the
/// two-character grams of the current rows' keys (`col` 1–3 of
/// `resident_gram`) go. They are the contained two-character grams of the
/// history postings of the same keys (`col` 4–6, which hold every history
/// row's keys, the current one's included: migration 28), and a contained
/// walk by two characters now reads those, rechecked against the current
/// row ([`super::records::current_grams`]). A 国内転入 of a household of
/// three wrote 234.8 gram rows (`machi bench`), a quarter of them these
/// duplicates. What stays in `col` 1–3 is each part's last character
/// alone, which a one-character walk reads first.
const V29_SQLITE: &str = "DELETE FROM resident_gram WHERE col <= 3 AND length(gram) = 2;\n";

const V29_POSTGRES: &str = "-- Every tenant's rows, whichever role migrates.\n\
ALTER TABLE resident_gram NO FORCE ROW LEVEL SECURITY;\n\
DELETE FROM resident_gram WHERE col <= 3 AND char_length(gram) = 2;\n\
ALTER TABLE resident_gram FORCE ROW LEVEL SECURITY;\n\
ANALYZE resident_gram;\n";

/// Search over the distinct keys (issue 10, item 1): every distinct key
/// of the history rows (the current ones included; name, furigana,
/// address: `col` 1–3) posted once
/// per trigram in `search_key_gram` (tenant, col, trigram, key), and how
/// many keys each trigram has in `search_gram_count`. A contained search
/// of three characters or more reads the keys of its rarest trigram and
/// checks each on the index entry, then joins the keys found to the
/// current rows by the key B-tree (see
/// [`super::records::key_trigrams`]): a full address no longer
/// intersects the trigram bitmaps of the whole town. Filled here for the
/// rows already present; the fill is frozen here like migration 28's.
const V33_SQLITE: &str = r#"
CREATE TABLE search_key_gram (
    tenant TEXT NOT NULL,
    col SMALLINT NOT NULL,
    gram TEXT NOT NULL,
    key TEXT NOT NULL,
    PRIMARY KEY (tenant, col, gram, key)
) WITHOUT ROWID;
CREATE TABLE search_gram_count (
    tenant TEXT NOT NULL,
    col SMALLINT NOT NULL,
    gram TEXT NOT NULL,
    keys BIGINT NOT NULL,
    PRIMARY KEY (tenant, col, gram)
) WITHOUT ROWID;
INSERT OR IGNORE INTO search_key_gram (tenant, col, gram, key)
SELECT c.tenant, 1, substr(c.name_key, p.i - 1, 3), c.name_key
    FROM resident_history c JOIN search_gram_positions p ON p.i + 1 <= length(c.name_key)
UNION
SELECT c.tenant, 2, substr(c.kana_key, p.i - 1, 3), c.kana_key
    FROM resident_history c JOIN search_gram_positions p ON p.i + 1 <= length(c.kana_key)
UNION
SELECT c.tenant, 3, substr(c.address_key, p.i - 1, 3), c.address_key
    FROM resident_history c JOIN search_gram_positions p ON p.i + 1 <= length(c.address_key)
ORDER BY 1, 2, 3, 4;
INSERT INTO search_gram_count (tenant, col, gram, keys)
SELECT tenant, col, gram, count(*) FROM search_key_gram GROUP BY tenant, col, gram;
"#;

const V33_POSTGRES: &str = r#"
CREATE TABLE search_key_gram (
    tenant TEXT NOT NULL,
    col SMALLINT NOT NULL,
    gram TEXT COLLATE "C" NOT NULL,
    key TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (tenant, col, gram, key)
);
CREATE TABLE search_gram_count (
    tenant TEXT NOT NULL,
    col SMALLINT NOT NULL,
    gram TEXT COLLATE "C" NOT NULL,
    keys BIGINT NOT NULL,
    PRIMARY KEY (tenant, col, gram)
);
-- Read every tenant's rows, whichever role migrates.
ALTER TABLE resident_history NO FORCE ROW LEVEL SECURITY;
INSERT INTO search_key_gram (tenant, col, gram, key)
SELECT c.tenant, 1, substr(c.name_key, p.i - 1, 3), c.name_key
    FROM resident_history c JOIN search_gram_positions p ON p.i + 1 <= length(c.name_key)
UNION
SELECT c.tenant, 2, substr(c.kana_key, p.i - 1, 3), c.kana_key
    FROM resident_history c JOIN search_gram_positions p ON p.i + 1 <= length(c.kana_key)
UNION
SELECT c.tenant, 3, substr(c.address_key, p.i - 1, 3), c.address_key
    FROM resident_history c JOIN search_gram_positions p ON p.i + 1 <= length(c.address_key)
ORDER BY 1, 2, 3, 4
ON CONFLICT DO NOTHING;
ALTER TABLE resident_history FORCE ROW LEVEL SECURITY;
INSERT INTO search_gram_count (tenant, col, gram, keys)
SELECT tenant, col, gram, count(*) FROM search_key_gram GROUP BY tenant, col, gram;
GRANT SELECT, INSERT ON search_key_gram TO machi_app;
GRANT SELECT, INSERT, UPDATE ON search_gram_count TO machi_app;
ALTER TABLE search_key_gram ENABLE ROW LEVEL SECURITY;
ALTER TABLE search_key_gram FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON search_key_gram
    USING (tenant = current_setting('machi.tenant', true))
    WITH CHECK (tenant = current_setting('machi.tenant', true));
ALTER TABLE search_gram_count ENABLE ROW LEVEL SECURITY;
ALTER TABLE search_gram_count FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON search_gram_count
    USING (tenant = current_setting('machi.tenant', true))
    WITH CHECK (tenant = current_setting('machi.tenant', true));
ANALYZE search_key_gram;
ANALYZE search_gram_count;
"#;

/// History searches through the distinct keys (migration 33) and a
/// B-tree per key of the history rows, tenant first, instead of trigram
/// indexes, on both backends: one way to search.
///
/// PostgreSQL: under row-level security a `LIKE` never uses a `pg_trgm`
/// index (`textlike` is not leakproof, so it must run after the tenant
/// policy), so the application role scanned the tenant for every history
/// search of three characters or more (536 ms p99 at 200,000 residents,
/// session 16) and never used the six GIN indexes that every change still
/// updated. Equality and ranges on text are leakproof: the B-trees serve
/// exact and prefix matches, and the keys found by their rarest trigram
/// serve contained ones.
///
/// SQLite: the FTS5 tables (shared by every tenant of a file) are dropped
/// with their triggers: the distinct keys answer what they answered, and
/// every change and import wrote every trigram of three keys twice into
/// them. Its B-trees leave out 宛名番号: with it, an index covered the
/// check of one person's history rows (`tenant`, `addressee_number`, a
/// key), and SQLite, without statistics, scanned the tenant's whole index
/// for each person instead of reading their rows by primary key (a
/// history search of one or two characters took 1.2 s instead of 1.5 ms
/// at 200,000 residents).
const V34_SQLITE: &str = r#"
DROP TRIGGER IF EXISTS resident_current_fts_insert;
DROP TRIGGER IF EXISTS resident_current_fts_delete;
DROP TRIGGER IF EXISTS resident_current_fts_update;
DROP TRIGGER IF EXISTS resident_history_fts_insert;
DROP TRIGGER IF EXISTS resident_history_fts_delete;
DROP TRIGGER IF EXISTS resident_history_fts_update;
DROP TABLE IF EXISTS resident_current_fts;
DROP TABLE IF EXISTS resident_history_fts;
CREATE INDEX resident_history_name_key ON resident_history (tenant, name_key);
CREATE INDEX resident_history_kana_key ON resident_history (tenant, kana_key);
CREATE INDEX resident_history_address_key ON resident_history (tenant, address_key);
"#;

const V34_POSTGRES: &str = r#"
DROP INDEX resident_current_name_trgm;
DROP INDEX resident_current_kana_trgm;
DROP INDEX resident_current_address_trgm;
DROP INDEX resident_history_name_trgm;
DROP INDEX resident_history_kana_trgm;
DROP INDEX resident_history_address_trgm;
CREATE INDEX resident_history_name_key ON resident_history (tenant, name_key COLLATE "C", addressee_number);
CREATE INDEX resident_history_kana_key ON resident_history (tenant, kana_key COLLATE "C", addressee_number);
CREATE INDEX resident_history_address_key ON resident_history (tenant, address_key COLLATE "C", addressee_number);
ANALYZE resident_history;
"#;

/// PostgreSQL: the current rows' key B-trees carry `status` (and the
/// address one 世帯番号), so the probe of a contained match through the
/// keys (migration 33, `key_probe` in `store/records.rs`) reads the index
/// alone. It joins the keys found to the current rows with the phase's
/// conditions: 住民 only (`status`), and for an address the shield of
/// support measures (the row's address key and 世帯番号). Without them
/// every person of every key found was a heap page: a text whose few keys
/// many persons share (ムライ in the furigana of 1,000,000 residents: 15
/// keys, more than 2,000 persons) read 2,001 rows, 2,787 pages and 400 ms
/// cold, before giving up for the walk in 宛名番号 order (session 17,
/// `EXPLAIN (ANALYZE, BUFFERS)`). SQLite reads a row by its rowid from the
/// same file's cache and meets the latency target without it: unchanged.
const V35_POSTGRES: &str = r#"
DROP INDEX resident_current_name_key;
DROP INDEX resident_current_kana_key;
DROP INDEX resident_current_address_key;
CREATE INDEX resident_current_name_key ON resident_current (tenant, name_key COLLATE "C", addressee_number) INCLUDE (status);
CREATE INDEX resident_current_kana_key ON resident_current (tenant, kana_key COLLATE "C", addressee_number) INCLUDE (status);
CREATE INDEX resident_current_address_key ON resident_current (tenant, address_key COLLATE "C", addressee_number) INCLUDE (status, household_number);
"#;

pub fn all() -> Vec<Migration> {
    vec![
        Migration {
            version: 1,
            name: "registry foundation",
            sqlite: V1_COMMON,
            postgres: V1_COMMON,
        },
        Migration {
            version: 2,
            name: "postgres application role and row-level security",
            sqlite: "",
            postgres: V1_POSTGRES_SECURITY,
        },
        Migration {
            version: 3,
            name: "migration: identity keys on history rows, imports",
            sqlite: V3_COMMON,
            postgres: V3_COMMON,
        },
        Migration {
            version: 4,
            name: "postgres row-level security for imports",
            sqlite: "",
            postgres: V3_POSTGRES_SECURITY,
        },
        Migration {
            version: 5,
            name: "back office: accounts, sessions, API clients, approvals, support measures, certificates",
            sqlite: V5_COMMON,
            postgres: V5_COMMON,
        },
        Migration {
            version: 6,
            name: "postgres grants and row-level security for the back office",
            sqlite: "",
            postgres: V5_POSTGRES_SECURITY,
        },
        Migration {
            version: 7,
            name: "support measures: protected persons, releases granted to an operator until a time",
            sqlite: V7_COMMON,
            postgres: V7_POSTGRES,
        },
        Migration {
            version: 8,
            name: "tenant settings: the certifying officer",
            sqlite: V8_COMMON,
            postgres: V8_COMMON,
        },
        Migration {
            version: 9,
            name: "postgres grants and row-level security for tenant settings",
            sqlite: "",
            postgres: V8_POSTGRES_SECURITY,
        },
        Migration {
            version: 10,
            name: "provisional changes name their persons",
            sqlite: V10_COMMON,
            postgres: V10_COMMON,
        },
        Migration {
            version: 11,
            name: "postgres: the registry tables partitioned by tenant",
            sqlite: "",
            postgres: V11_POSTGRES,
        },
        Migration {
            version: 12,
            name: "sign-in failures counted per account and source",
            sqlite: V12_COMMON,
            postgres: V12_COMMON,
        },
        Migration {
            version: 13,
            name: "linkage hub: CloudEvents types, webhook subscriptions and attempts",
            sqlite: V13_SQLITE,
            postgres: V13_POSTGRES,
        },
        Migration {
            version: 14,
            name: "separation of duties: access proposals, account activation, direct-commit clients",
            sqlite: V14_COMMON,
            postgres: V14_POSTGRES,
        },
        Migration {
            version: 15,
            name: "certificates at the counter: requester, identity check, purpose, copies, fee, kept PDF",
            sqlite: V15_COMMON,
            postgres: V15_COMMON,
        },
        Migration {
            version: 16,
            name: "client_secret_jwt: sealed client secrets, assertion ids used once",
            sqlite: V16_COMMON,
            postgres: V16_POSTGRES,
        },
        Migration {
            version: 17,
            name: "provisional changes: a resubmission names the entry sent back",
            sqlite: V17_COMMON,
            postgres: V17_COMMON,
        },
        Migration {
            version: 18,
            name: "citizen portal: imported filings",
            sqlite: V18_SQLITE,
            postgres: V18_POSTGRES,
        },
        Migration {
            version: 19,
            name: "citizen portal: the inbox (assignment, matching, decisions, status to the portal)",
            sqlite: V19_COMMON,
            postgres: V19_COMMON,
        },
        Migration {
            version: 20,
            name: "citizen portal: signatures checked on import, nonces accepted once, status pushes queued",
            sqlite: V20_SQLITE,
            postgres: V20_POSTGRES,
        },
        Migration {
            version: 21,
            name: "search: key B-trees and trigram indexes (FTS5 on SQLite, pg_trgm on PostgreSQL)",
            sqlite: V21_SQLITE,
            postgres: V21_POSTGRES,
        },
        Migration {
            version: 22,
            name: "file linkage: a tenant's own extract schedule",
            sqlite: V22_SQLITE,
            postgres: V22_POSTGRES,
        },
        Migration {
            version: 23,
            name: "citizen portal: published procedure definitions, per tenant and version",
            sqlite: V23_SQLITE,
            postgres: V23_POSTGRES,
        },
        Migration {
            version: 24,
            name: "postgres: the registry tables hash-partitioned by tenant (16 partitions, not one per tenant)",
            sqlite: "",
            postgres: V24_POSTGRES,
        },
        Migration {
            version: 25,
            name: "search: one- and two-character postings (resident_gram), re-fold progress",
            sqlite: V25_SQLITE,
            postgres: V25_POSTGRES,
        },
        Migration {
            version: 26,
            name: "citizen portal: the tenant administrator's acceptance of a published procedure definition",
            sqlite: V26_SQLITE,
            postgres: V26_POSTGRES,
        },
        Migration {
            version: 27,
            name: "file linkage: several extract times a day on chosen weekdays, the handled slot kept",
            sqlite: V27_SQLITE,
            postgres: V27_POSTGRES,
        },
        Migration {
            version: 28,
            name: "search: grams of addresses and of every history row (one and two characters)",
            sqlite: V28_SQLITE,
            postgres: V28_POSTGRES,
        },
        Migration {
            version: 29,
            name: "search: the current rows' two-character grams read from the history postings (not stored twice)",
            sqlite: V29_SQLITE,
            postgres: V29_POSTGRES,
        },
        Migration {
            version: 30,
            name: "citizen portal: filings refused on import kept once (quarantine), definition decisions withdrawable",
            sqlite: V30_SQLITE,
            postgres: V30_POSTGRES,
        },
        Migration {
            version: 31,
            name: "file linkage: a scheduled extract slot claimed by one server, the interval's last run kept",
            sqlite: V31_SQLITE,
            postgres: V31_POSTGRES,
        },
        Migration {
            version: 32,
            name: "file linkage: a tenant's schedule may include 個人番号 in its extracts (off by default)",
            sqlite: V32,
            postgres: V32,
        },
        Migration {
            version: 33,
            name: "search: distinct keys posted per trigram, with each trigram's count of keys",
            sqlite: V33_SQLITE,
            postgres: V33_POSTGRES,
        },
        Migration {
            version: 34,
            name: "search: history keys in B-trees instead of trigram indexes (pg_trgm, FTS5)",
            sqlite: V34_SQLITE,
            postgres: V34_POSTGRES,
        },
        Migration {
            version: 35,
            name: "search: the current key B-trees carry status (PostgreSQL), so a contained match's probe reads the index alone",
            sqlite: "",
            postgres: V35_POSTGRES,
        },
    ]
}
