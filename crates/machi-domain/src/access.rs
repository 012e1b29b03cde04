//! Who may do what: staff roles, API scopes and the permissions they grant
//! (操作者の権限, j1370 for what is logged about it).
//!
//! Pure rules: the edges authenticate a caller, then ask here whether the
//! caller's role or scopes allow the function it calls.

use serde::{Deserialize, Serialize};

use crate::error::Localized;

/// A staff role within one tenant, or the platform operator's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Role {
    /// 窓口担当: searches, reads records, enters changes provisionally,
    /// issues certificates.
    Clerk,
    /// 決裁者: everything a clerk does, approves or returns provisional
    /// changes (j530), reads the access log, approves access proposals.
    Supervisor,
    /// 支援措置担当: registers support measures and releases single
    /// requests (j160, j380, j440). Never sees a 個人番号: the support
    /// measure's database (j160) holds none, and the officer's work (j440:
    /// check the protected person's details, lift one block) needs none; a
    /// 個人番号 is shown only to roles whose work needs it (j1390).
    SupportOfficer,
    /// 団体管理者: the tenant's staff accounts and API clients; no personal
    /// data. Access to personal data it proposes takes effect only when a
    /// second person approves it ([`Permission::ApproveGrant`]).
    TenantAdmin,
    /// CIO: aggregates only, no personal data; approves access proposals.
    Cio,
    /// Runs the platform: tenants, no tenant's personal data.
    PlatformOperator,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::Clerk,
        Role::Supervisor,
        Role::SupportOfficer,
        Role::TenantAdmin,
        Role::Cio,
        Role::PlatformOperator,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Clerk => "clerk",
            Role::Supervisor => "supervisor",
            Role::SupportOfficer => "support_officer",
            Role::TenantAdmin => "tenant_admin",
            Role::Cio => "cio",
            Role::PlatformOperator => "platform_operator",
        }
    }

    pub fn label_ja(self) -> &'static str {
        match self {
            Role::Clerk => "窓口担当",
            Role::Supervisor => "決裁者",
            Role::SupportOfficer => "支援措置担当",
            Role::TenantAdmin => "団体管理者",
            Role::Cio => "CIO",
            Role::PlatformOperator => "基盤運用者",
        }
    }

    pub fn label_en(self) -> &'static str {
        match self {
            Role::Clerk => "Clerk",
            Role::Supervisor => "Supervisor",
            Role::SupportOfficer => "Support-measures officer",
            Role::TenantAdmin => "Tenant administrator",
            Role::Cio => "CIO",
            Role::PlatformOperator => "Platform operator",
        }
    }

    /// Whether the role belongs to a tenant (every role but the platform operator's).
    pub fn is_tenant_role(self) -> bool {
        self != Role::PlatformOperator
    }

    /// Whether giving an account this role needs a second person's approval
    /// (職務の分離): the role reads personal data, or approves access
    /// proposals (else an administrator could make an approver and approve
    /// their own proposals with it).
    pub fn needs_second_approval(self) -> bool {
        self.allows(Permission::ReadPersonal) || self.allows(Permission::ApproveGrant)
    }

    /// The role's permissions.
    pub fn allows(self, p: Permission) -> bool {
        use Permission::*;
        match self {
            Role::Clerk => matches!(
                p,
                ReadPersonal | ReadChanges | EnterChange | IssueCertificate | ReadEvents
            ),
            Role::Supervisor => matches!(
                p,
                ReadPersonal
                    | ReadChanges
                    | EnterChange
                    | ApproveChange
                    | IssueCertificate
                    | RevealMyNumber
                    | ReadAuditLog
                    | ReadEvents
                    | ReadAggregates
                    | ApproveGrant
            ),
            Role::SupportOfficer => matches!(
                p,
                ReadPersonal | ReadChanges | ManageSupportMeasures | ReleaseSupportMeasure
            ),
            Role::TenantAdmin => matches!(
                p,
                ManageAccounts | ReadAggregates | MakeExtract | ExtractMyNumber
            ),
            Role::Cio => matches!(p, ReadAggregates | ApproveGrant),
            Role::PlatformOperator => matches!(p, ManageTenants),
        }
    }
}

impl std::str::FromStr for Role {
    type Err = AccessError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s.trim())
            .ok_or_else(|| AccessError::UnknownRole(s.chars().take(40).collect()))
    }
}

/// What a caller may be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// Read residents, households, history, search.
    ReadPersonal,
    /// Read recorded changes (what was entered, for whom).
    ReadChanges,
    /// Enter a change (provisional until approved: 仮登録, j530).
    EnterChange,
    /// Approve or return a provisional change (審査・決裁, j530), or commit
    /// a change directly.
    ApproveChange,
    /// See a 個人番号 unmasked (each reveal logged).
    RevealMyNumber,
    IssueCertificate,
    ManageSupportMeasures,
    /// Release one request concerning a protected person.
    ReleaseSupportMeasure,
    ReadAuditLog,
    /// The linkage feed.
    ReadEvents,
    /// Webhook subscriptions of the calling client (`{system}:subscriptions:write`).
    ManageSubscriptions,
    /// Ask for a file-linkage extract (宛名連携, j1190) at the server's
    /// target: the tenant administrator, or a client holding
    /// `{system}:extracts:write`.
    MakeExtract,
    /// Have 個人番号 written into a file-linkage extract (番号法 第9条:
    /// only for the affairs that use it): the tenant administrator, or a
    /// client holding `{system}:my_number:read` besides
    /// `{system}:extracts:write`. Reveals nothing in the API or the UI.
    ExtractMyNumber,
    /// Counts and rates, no personal data.
    ReadAggregates,
    /// Propose accounts and API clients, disable them; what gives personal
    /// data takes effect only on a second person's approval.
    ManageAccounts,
    /// Approve or reject a proposal that gives an account or an API client
    /// access to personal data (never one's own proposal, never about
    /// oneself); rotate an API client's secret (the new secret is shown to
    /// the approver, never to the proposer).
    ApproveGrant,
    ManageTenants,
}

/// An API scope `{system}:{resource}:{operation}`, e.g.
/// `jidou_teate:residents:read`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope {
    pub system: String,
    pub resource: String,
    pub operation: String,
}

/// The resources and operations a scope may name.
pub const SCOPE_RESOURCES: [(&str, &[&str]); 6] = [
    ("residents", &["read"]),
    ("changes", &["read", "write"]),
    ("events", &["read"]),
    ("subscriptions", &["write"]),
    ("extracts", &["write"]),
    ("my_number", &["read"]),
];

/// Scope resources that hold no personal data (none yet).
pub const NON_PERSONAL_RESOURCES: [&str; 0] = [];

impl Scope {
    /// The permission this scope grants. Writing changes is entering them:
    /// provisional (仮登録, j530) unless the tenant has allowed the client to
    /// commit directly.
    pub fn permission(&self) -> Permission {
        match (self.resource.as_str(), self.operation.as_str()) {
            ("changes", "write") => Permission::EnterChange,
            ("changes", _) => Permission::ReadChanges,
            ("events", _) => Permission::ReadEvents,
            ("subscriptions", _) => Permission::ManageSubscriptions,
            ("extracts", _) => Permission::MakeExtract,
            ("my_number", _) => Permission::ExtractMyNumber,
            _ => Permission::ReadPersonal,
        }
    }

    /// Whether the scope reads or writes personal data. Every resource so
    /// far does: residents and changes are records of persons, each linkage
    /// event names the persons a change touched (宛名番号, 世帯番号,
    /// 異動事由), which identifies them, and a subscription has those
    /// events pushed to an address of the client's choosing. A resource is personal unless listed
    /// in [`NON_PERSONAL_RESOURCES`] (fail-safe: a new resource needs
    /// approval until someone decides otherwise).
    pub fn touches_personal_data(&self) -> bool {
        !NON_PERSONAL_RESOURCES.contains(&self.resource.as_str())
    }

    /// Whether moving a client from scopes `from` to `to` gives it personal
    /// data it did not have, and so needs a second person's approval.
    pub fn widens_personal_data(from: &[Scope], to: &[Scope]) -> bool {
        to.iter()
            .any(|s| s.touches_personal_data() && !from.contains(s))
    }

    pub fn parse_list(s: &str) -> Result<Vec<Scope>, AccessError> {
        let mut out: Vec<Scope> = s
            .split([' ', ','])
            .filter(|p| !p.is_empty())
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        out.sort();
        out.dedup();
        Ok(out)
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.system, self.resource, self.operation)
    }
}

impl std::str::FromStr for Scope {
    type Err = AccessError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || AccessError::InvalidScope(s.chars().take(80).collect());
        let parts: Vec<&str> = s.split(':').collect();
        let [system, resource, operation] = parts.as_slice() else {
            return Err(bad());
        };
        let word = |w: &str| {
            !w.is_empty()
                && w.len() <= 40
                && w.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        };
        if !word(system) {
            return Err(bad());
        }
        let known = SCOPE_RESOURCES
            .iter()
            .any(|(r, ops)| r == resource && ops.contains(operation));
        if !known {
            return Err(bad());
        }
        Ok(Scope {
            system: system.to_string(),
            resource: resource.to_string(),
            operation: operation.to_string(),
        })
    }
}

/// A staff login name: 3–32 of `a-z 0-9 . _ -`.
pub fn validate_login(s: &str) -> Result<(), AccessError> {
    let ok = (3..=32).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(AccessError::InvalidLogin)
    }
}

/// Passwords: at least 12 characters, at most 128, not all the same class.
pub fn validate_password(s: &str) -> Result<(), AccessError> {
    let n = s.chars().count();
    if !(12..=128).contains(&n) {
        return Err(AccessError::WeakPassword);
    }
    let classes = [
        s.chars().any(|c| c.is_ascii_lowercase()),
        s.chars().any(|c| c.is_ascii_uppercase()),
        s.chars().any(|c| c.is_ascii_digit()),
        s.chars().any(|c| !c.is_ascii_alphanumeric()),
    ];
    if classes.iter().filter(|c| **c).count() < 2 {
        return Err(AccessError::WeakPassword);
    }
    Ok(())
}

/// Why an access rule refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    #[error("unknown role {0:?}")]
    UnknownRole(String),
    #[error("invalid scope {0:?}")]
    InvalidScope(String),
    #[error("invalid login name")]
    InvalidLogin,
    #[error("password too weak")]
    WeakPassword,
}

impl Localized for AccessError {
    fn code(&self) -> &'static str {
        match self {
            AccessError::UnknownRole(_) => "unknown_role",
            AccessError::InvalidScope(_) => "invalid_scope",
            AccessError::InvalidLogin => "invalid_login",
            AccessError::WeakPassword => "weak_password",
        }
    }
    fn message_ja(&self) -> String {
        match self {
            AccessError::UnknownRole(r) => format!("役割「{r}」はありません。"),
            AccessError::InvalidScope(s) => format!(
                "スコープ「{s}」が正しくありません（{{システム}}:{{資源}}:{{操作}}、例: jidou_teate:residents:read）。"
            ),
            AccessError::InvalidLogin => {
                "ログインIDは英小文字・数字・「._-」の3〜32文字で指定してください。".into()
            }
            AccessError::WeakPassword => {
                "パスワードは12〜128文字で、英大文字・英小文字・数字・記号のうち2種類以上を含めてください。"
                    .into()
            }
        }
    }
    fn message_en(&self) -> String {
        match self {
            AccessError::UnknownRole(r) => format!("no role {r:?}"),
            AccessError::InvalidScope(s) => format!(
                "invalid scope {s:?}: use {{system}}:{{resource}}:{{operation}}, e.g. jidou_teate:residents:read"
            ),
            AccessError::InvalidLogin => {
                "a login name is 3 to 32 of a-z, 0-9 and '._-'".into()
            }
            AccessError::WeakPassword => {
                "a password has 12 to 128 characters of at least two kinds (lower, upper, digits, symbols)".into()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_and_separate_personal_data() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
        }
        for r in [Role::Cio, Role::TenantAdmin, Role::PlatformOperator] {
            assert!(!r.allows(Permission::ReadPersonal), "{r:?}");
            assert!(!r.allows(Permission::RevealMyNumber), "{r:?}");
        }
        assert!(!Role::Clerk.allows(Permission::ApproveChange));
        assert!(Role::Supervisor.allows(Permission::ApproveChange));
        assert!(!Role::Clerk.allows(Permission::RevealMyNumber));
        // j160/j440: the support officer's work needs no 個人番号 (j1390).
        assert!(!Role::SupportOfficer.allows(Permission::RevealMyNumber));
        assert!(Role::SupportOfficer.allows(Permission::ReleaseSupportMeasure));
        assert!(!Role::Supervisor.allows(Permission::ReleaseSupportMeasure));
        assert!(Role::PlatformOperator.allows(Permission::ManageTenants));
        assert!(!Role::TenantAdmin.allows(Permission::ManageTenants));
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn access_to_personal_data_needs_a_second_person() {
        // The administrator proposes, never approves; approvers exist.
        assert!(Role::TenantAdmin.allows(Permission::ManageAccounts));
        assert!(!Role::TenantAdmin.allows(Permission::ApproveGrant));
        assert!(Role::Supervisor.allows(Permission::ApproveGrant));
        assert!(Role::Cio.allows(Permission::ApproveGrant));
        for r in [Role::Clerk, Role::SupportOfficer, Role::PlatformOperator] {
            assert!(!r.allows(Permission::ApproveGrant), "{r:?}");
        }
        // Every role that reads personal data or approves needs approval;
        // only the administrator's own role does not.
        let needs: Vec<Role> = Role::ALL
            .into_iter()
            .filter(|r| r.is_tenant_role() && r.needs_second_approval())
            .collect();
        assert_eq!(
            needs,
            [
                Role::Clerk,
                Role::Supervisor,
                Role::SupportOfficer,
                Role::Cio
            ]
        );
        assert!(!Role::TenantAdmin.needs_second_approval());
        // Widening a client's personal data needs approval, narrowing not.
        let read = Scope::parse_list("a:events:read").unwrap();
        let both = Scope::parse_list("a:events:read a:residents:read").unwrap();
        assert!(Scope::widens_personal_data(&read, &both));
        assert!(!Scope::widens_personal_data(&both, &read));
        assert!(!Scope::widens_personal_data(&both, &both));
        assert!(Scope::widens_personal_data(&[], &read));
    }

    #[test]
    fn scopes_have_three_known_parts() {
        let s: Scope = "jidou_teate:residents:read".parse().unwrap();
        assert_eq!(s.permission(), Permission::ReadPersonal);
        assert_eq!(s.to_string(), "jidou_teate:residents:read");
        // Writing is entering (provisional), never approving.
        let w: Scope = "kokuho:changes:write".parse().unwrap();
        assert_eq!(w.permission(), Permission::EnterChange);
        // Each resource its own permission: reading changes is not reading residents.
        let c: Scope = "kokuho:changes:read".parse().unwrap();
        assert_eq!(c.permission(), Permission::ReadChanges);
        for bad in [
            "",
            "residents:read",
            "a:residents:read:x",
            "Jidou:residents:read",
            "x:residents:write",
            "x:accounts:read",
            "x:certificates:read",
            "x::read",
        ] {
            assert!(bad.parse::<Scope>().is_err(), "{bad}");
        }
        let list = Scope::parse_list("a:events:read a:residents:read,a:events:read").unwrap();
        assert_eq!(list.len(), 2);
    }

    #[test]
    fn logins_and_passwords() {
        assert!(validate_login("tanaka.k").is_ok());
        assert!(validate_login("ab").is_err());
        assert!(validate_login("Tanaka").is_err());
        assert!(validate_login("田中").is_err());
        assert!(validate_password("short1A").is_err());
        assert!(validate_password("aaaaaaaaaaaaaaaa").is_err());
        assert!(validate_password("correct-horse-battery").is_ok());
    }
}
