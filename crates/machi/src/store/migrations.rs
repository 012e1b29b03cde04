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
    ]
}
