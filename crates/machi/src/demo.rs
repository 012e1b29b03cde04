//! `machi demo`: six real municipalities as tenants, a few thousand synthetic
//! residents in households, with some history (births, moves, deaths).

use chrono::Duration;
use machi_domain::access::Role;
use machi_domain::change::{
    AddressInput, ChangeCommand, ChangeMeta, ChangeRequest, HouseholdTarget,
};
use machi_domain::ids::{AddresseeNumber, HouseholdNumber, MunicipalityCode};

use crate::service::{Actor, Registry};
use crate::synth::{Synth, TOWNS};

/// The first household and addressee numbers a tenant allocates.
pub fn first_household() -> String {
    HouseholdNumber::from_serial(1)
        .map(|h| h.to_string())
        .unwrap_or_default()
}

pub fn first_addressee() -> String {
    AddresseeNumber::from_serial(1)
        .map(|a| a.to_string())
        .unwrap_or_default()
}

fn meta(date: chrono::NaiveDate, place: &str) -> ChangeMeta {
    ChangeMeta {
        effective_date: date.format("%Y-%m-%d").to_string(),
        filed_on: Some(date.format("%Y-%m-%d").to_string()),
        input_place: place.to_string(),
        input_terminal: "DEMO-01".to_string(),
        allow_headless_household: false,
    }
}

/// Seeds the demo tenants unless they already exist. Returns a summary.
pub async fn seed(registry: &Registry, residents_per_tenant: usize) -> anyhow::Result<String> {
    let existing = registry.tenants().await?;
    if !existing.is_empty() {
        return Ok(format!(
            "demo data already present ({} municipalities); reusing it",
            existing.len()
        ));
    }
    let today = registry.today();
    let actor = Actor::system("demo");
    let mut synth = Synth::new(20_261_122);
    let mut total_people = 0usize;
    let mut total_changes = 0usize;
    for town in TOWNS {
        let code: MunicipalityCode = town
            .code
            .parse()
            .map_err(|e| anyhow::anyhow!("demo town code {}: {e:?}", town.code))?;
        registry
            .create_tenant(code.clone(), town.name, town.prefecture)
            .await?;
        let mut people = 0usize;
        while people < residents_per_tenant {
            let plan = synth.household(town, today);
            let command = if plan.abroad {
                ChangeCommand::MoveInFromAbroad {
                    persons: plan.persons.clone(),
                    household: HouseholdTarget::New {
                        address: plan.address.clone(),
                    },
                    previous_address: plan.previous_address.clone(),
                }
            } else {
                ChangeCommand::MoveIn {
                    persons: plan.persons.clone(),
                    household: HouseholdTarget::New {
                        address: plan.address.clone(),
                    },
                    previous_address: plan.previous_address.clone(),
                }
            };
            let out = registry
                .submit(
                    &code,
                    &ChangeRequest {
                        meta: meta(plan.moved_in, "市民課窓口"),
                        command,
                    },
                    &actor,
                )
                .await?;
            total_changes += 1;
            people += out.rows.len();
            let members: Vec<String> = out
                .rows
                .iter()
                .map(|r| r.record.addressee_number.to_string())
                .collect();
            let household = out.rows[0].record.household_number.to_string();
            let head = &out.rows[0].record;
            // Some history after moving in, in date order.
            let mut date = plan.moved_in;
            let days_left = (today - date).num_days();
            if days_left < 60 {
                continue;
            }
            let roll = synth.rng.u8(..100);
            if roll < 12 {
                // 転居 of the whole household.
                date = synth.day_between(date + Duration::days(30), today - Duration::days(1));
                // j630: a 転居 goes somewhere else.
                let mut address = synth.address(town);
                while (&address.address, &address.annex)
                    == (&plan.address.address, &plan.address.annex)
                {
                    address = synth.address(town);
                }
                registry
                    .submit(
                        &code,
                        &ChangeRequest {
                            meta: meta(date, "市民課窓口"),
                            command: ChangeCommand::MoveWithin {
                                persons: members.clone(),
                                address,
                                household: None,
                            },
                        },
                        &actor,
                    )
                    .await?;
                total_changes += 1;
            }
            let has_spouse = out
                .rows
                .iter()
                .any(|r| r.record.relationship.as_str() == "妻");
            let young = head
                .birth_date
                .as_calendar()
                .is_some_and(|b| (today - b).num_days() < 42 * 365);
            if (12..22).contains(&roll) && has_spouse && young && (today - date).num_days() > 30 {
                // 出生
                let born = synth.day_between(date + Duration::days(1), today - Duration::days(1));
                let (surname, kana) = head
                    .name
                    .as_str()
                    .split_once('　')
                    .zip(
                        head.name_kana
                            .as_ref()
                            .and_then(|k| k.as_str().split_once('　')),
                    )
                    .map(|((s, _), (k, _))| (s.to_string(), k.to_string()))
                    .unwrap_or_else(|| ("山田".into(), "ヤマダ".into()));
                // The child enters the parents' family register (本籍,
                // 筆頭者 as the head's record has them, j120).
                let register = head
                    .registered_domicile
                    .as_ref()
                    .map(|d| (d.domicile.clone(), d.head.clone()));
                let child = synth.newborn(&surname, &kana, born, register);
                registry
                    .submit(
                        &code,
                        &ChangeRequest {
                            meta: meta(born, "市民課窓口"),
                            command: ChangeCommand::Birth {
                                person: child,
                                household_number: household.clone(),
                            },
                        },
                        &actor,
                    )
                    .await?;
                total_changes += 1;
                people += 1;
            } else if (22..26).contains(&roll) && members.len() <= 2 {
                // 死亡 of the head; a single remaining member becomes head (j490).
                let died = synth.day_between(date + Duration::days(1), today - Duration::days(1));
                registry
                    .submit(
                        &code,
                        &ChangeRequest {
                            meta: meta(died, "市民課窓口"),
                            command: ChangeCommand::Death {
                                person: members[0].clone(),
                            },
                        },
                        &actor,
                    )
                    .await?;
                total_changes += 1;
            } else if (26..30).contains(&roll) {
                // 国内転出 of the whole household.
                let left = synth.day_between(date + Duration::days(1), today - Duration::days(1));
                let dest = synth.elsewhere();
                registry
                    .submit(
                        &code,
                        &ChangeRequest {
                            meta: meta(left, "市民課窓口"),
                            command: ChangeCommand::MoveOut {
                                persons: members.clone(),
                                destination: AddressInput {
                                    address: dest,
                                    annex: None,
                                    postal_code: None,
                                },
                            },
                        },
                        &actor,
                    )
                    .await?;
                total_changes += 1;
            }
        }
        total_people += people;
    }
    Ok(format!(
        "demo data: {} municipalities, {} synthetic persons, {} changes",
        TOWNS.len(),
        total_people,
        total_changes
    ))
}

/// Demo logins: (tenant code or "" for the platform, login, role, password).
/// Synthetic staff; the passwords are for the local demo only.
pub const DEMO_LOGINS: [(&str, &str, Role, &str, &str); 11] = [
    (
        "132063",
        "clerk",
        Role::Clerk,
        "窓口 一子",
        "clerk-Demo-2026",
    ),
    (
        "132063",
        "supervisor",
        Role::Supervisor,
        "決裁 二郎",
        "supervisor-Demo-2026",
    ),
    (
        "132063",
        "support",
        Role::SupportOfficer,
        "支援 三子",
        "support-Demo-2026",
    ),
    (
        "132063",
        "admin",
        Role::TenantAdmin,
        "管理 四郎",
        "admin-Demo-2026",
    ),
    ("132063", "cio", Role::Cio, "情報 五子", "cio-Demo-2026"),
    (
        "132071",
        "clerk",
        Role::Clerk,
        "窓口 六郎",
        "clerk-Demo-2026",
    ),
    (
        "132071",
        "supervisor",
        Role::Supervisor,
        "決裁 七子",
        "supervisor-Demo-2026",
    ),
    (
        "132071",
        "support",
        Role::SupportOfficer,
        "支援 八郎",
        "support-Demo-2026",
    ),
    (
        "132071",
        "admin",
        Role::TenantAdmin,
        "管理 九子",
        "admin-Demo-2026",
    ),
    ("132071", "cio", Role::Cio, "情報 十郎", "cio-Demo-2026"),
    (
        "",
        "operator",
        Role::PlatformOperator,
        "基盤 運用",
        "operator-Demo-2026",
    ),
];

/// The demo's API client of 府中市 (its secret is printed; demo only): a
/// vendor system that reads and is pushed events, so the administrator's
/// 通知先 page has a client to subscribe (`subscriptions:write`), and that
/// may ask for file-linkage extracts (`extracts:write`, without 個人番号).
pub const DEMO_CLIENT: (&str, &str, &str) = (
    "132063-demo",
    "demo-Client-Secret-2026",
    "demo:residents:read demo:changes:read demo:events:read demo:subscriptions:write demo:extracts:write",
);

/// The 児童手当 system's API client of 府中市 in the demo: a system of its
/// own (`jidou`), reading the feed and residents only.
pub const ALLOWANCE_CLIENT: (&str, &str, &str) = (
    "132063-jidou",
    "jidou-Client-Secret-2026",
    "jidou:events:read jidou:residents:read",
);

/// The demo accounts of the 児童手当 system (its own, not the registry's):
/// login, name, role; all with [`ALLOWANCE_DEMO_PASSWORD`].
pub const ALLOWANCE_LOGINS: [(&str, &str, machi_allowance::accounts::Role); 2] = [
    (
        "teate",
        "手当　担当",
        machi_allowance::accounts::Role::Clerk,
    ),
    (
        "teate-kan",
        "手当　監督",
        machi_allowance::accounts::Role::Supervisor,
    ),
];

/// The demo password of the 児童手当 accounts.
pub const ALLOWANCE_DEMO_PASSWORD: &str = "allowance-Demo-2026";

/// The 児童手当 system, started by the demo as a child process (this same
/// executable, `machi allowance`), killed when the value is dropped.
pub struct AllowanceProcess(std::process::Child);

impl Drop for AllowanceProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `machi allowance` against the demo registry on `registry_port`,
/// its database in `data_dir` (with the demo accounts made if missing),
/// its pages on `port`.
pub async fn start_allowance(
    data_dir: &std::path::Path,
    registry_port: u16,
    port: u16,
) -> anyhow::Result<AllowanceProcess> {
    let database = data_dir.join("allowance.sqlite");
    {
        let store = machi_allowance::store::Store::open(&database)?;
        for (login, name, role) in ALLOWANCE_LOGINS {
            if store.account(login).await?.is_some() {
                continue;
            }
            let hash = machi_allowance::accounts::hash_password(ALLOWANCE_DEMO_PASSWORD)
                .map_err(anyhow::Error::msg)?;
            let entry = machi_allowance::audit::Entry::new(
                "(command line)",
                "",
                machi_allowance::audit::Action::AccountCreated,
                format!("account:{login}"),
            )
            .detail(role.label_ja());
            store.create_account(login, name, role, hash, entry).await?;
        }
    }
    let exe = std::env::current_exe()?;
    let (id, secret, _) = ALLOWANCE_CLIENT;
    let child = std::process::Command::new(exe)
        .arg("allowance")
        .arg("--allowance-database")
        .arg(&database)
        .args([
            "--registry-url",
            &format!("http://127.0.0.1:{registry_port}"),
            "--tenant",
            "132063",
            "--client-id",
            id,
            "--port",
            &port.to_string(),
            "--exit-on-stdin-eof",
        ])
        // The pipe closes when the demo ends, however it ends.
        .stdin(std::process::Stdio::piped())
        .env("MACHI_ALLOWANCE_CLIENT_SECRET", secret)
        .env_remove("MACHI_DATABASE")
        .spawn()?;
    println!(
        "児童手当 (a separate process, fed by the event feed): http://127.0.0.1:{port}/login  ログインID: teate（担当） / teate-kan（監督者）, パスワード: {ALLOWANCE_DEMO_PASSWORD}"
    );
    Ok(AllowanceProcess(child))
}

/// Creates the demo staff accounts that do not exist yet, and sets a
/// synthetic certifying officer for every demo municipality.
pub async fn seed_accounts(registry: &Registry) -> anyhow::Result<()> {
    let actor = Actor::system("demo");
    for t in registry.tenants().await? {
        registry
            .set_issuer(
                &t.municipality_code,
                &format!("{}長", t.name),
                "架空　太一",
                &actor,
            )
            .await?;
    }
    let (id, secret, scopes) = DEMO_CLIENT;
    let scopes = machi_domain::access::Scope::parse_list(scopes)
        .map_err(|e| anyhow::anyhow!("demo scopes: {e}"))?;
    let fuchu: MunicipalityCode = "132063"
        .parse()
        .map_err(|e| anyhow::anyhow!("demo tenant: {e:?}"))?;
    registry
        .register_client(&fuchu, id, "demo", &scopes, secret, &actor)
        .await?;
    let (id, secret, scopes) = ALLOWANCE_CLIENT;
    let scopes = machi_domain::access::Scope::parse_list(scopes)
        .map_err(|e| anyhow::anyhow!("allowance scopes: {e}"))?;
    registry
        .register_client(&fuchu, id, "jidou", &scopes, secret, &actor)
        .await?;
    for (tenant, login, role, name, password) in DEMO_LOGINS {
        let tenant: Option<MunicipalityCode> = if tenant.is_empty() {
            None
        } else {
            Some(
                tenant
                    .parse()
                    .map_err(|e| anyhow::anyhow!("demo tenant {tenant}: {e:?}"))?,
            )
        };
        match registry
            .create_account(tenant.as_ref(), login, name, role, password, &actor)
            .await
        {
            Ok(()) | Err(crate::service::ServiceError::AccountExists(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
