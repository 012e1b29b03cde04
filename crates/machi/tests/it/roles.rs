//! Roles enforced on the server for every action: every route of the UI
//! (`ui::routes()`) and of the JSON API (its OpenAPI document), each method,
//! tried by every staff role and by an API client with each scope, and the
//! outcome (let through, or refused with 401/403/404 or sent to the sign-in
//! page) compared with [`TABLE`], the one role table of this test. A route
//! missing from the table, or a row without a route, fails the test too.
//!
//! The table is the README's role table ("The staff UI") route by route;
//! the README's text for it is in docs/notes/wt-duties.md.

use std::collections::BTreeSet;

use axum::http::StatusCode;
use machi::service::Actor;
use machi::service::grants::{AccountStep, ClientStep};
use machi_domain::access::Role;
use machi_domain::support::{Affair, AffairRequest, NewSupportMeasure, Requester};
use serde_json::{Value, json};

use crate::api::{Api, call};
use crate::contract::{move_in, takahashi_family};
use crate::duties::{approved_client, token};
use crate::support::{FUCHU, TestDb, code};
use crate::ui::{PASSWORD, Session, app, location, send, staff};

both_backends!(every_route_answers_each_role_as_the_table_says);

/// Who calls: a staff role (by its login in the fixture) or an API client
/// with one scope.
const STAFF: [&str; 6] = ["clerk", "boss", "officer", "admin", "cio", "operator"];
const CLIENTS: [&str; 7] = [
    "residents:read",
    "changes:read",
    "changes:write",
    "events:read",
    "subscriptions:write",
    "extracts:write",
    "my_number:read",
];

/// Everyone signed in (staff), for rows every role may use.
const ALL_STAFF: &str = "clerk boss officer admin cio operator";
/// Every caller of the API: every role and every scope.
const EVERYONE: &str = "clerk boss officer admin cio operator \
     residents:read changes:read changes:write events:read subscriptions:write \
     extracts:write my_number:read";
/// A public route: needs no credentials (checked as such, not walked).
const PUBLIC: &str = "public";

/// The role table: method, route, the form or JSON body sent (`{…}` filled
/// from the fixture), and who may use it. clerk = 窓口担当, boss = 決裁者,
/// officer = 支援措置担当, admin = 団体管理者, cio = CIO, operator = 基盤運用者;
/// `residents:read` … = an API client holding only that scope.
const TABLE: &[(&str, &str, &str, &str)] = &[
    // ---- public
    ("GET", "/", "", PUBLIC),
    ("GET", "/login", "", PUBLIC),
    ("POST", "/login", "", PUBLIC),
    ("GET", "/lang", "", PUBLIC),
    ("GET", "/static/machi.css", "", PUBLIC),
    ("GET", "/verify", "", PUBLIC),
    ("POST", "/verify", "", PUBLIC),
    ("GET", "/activate", "", PUBLIC),
    ("POST", "/activate", "", PUBLIC),
    ("GET", "/healthz", "", PUBLIC),
    ("GET", "/readyz", "", PUBLIC),
    // Open unless MACHI_METRICS_TOKEN is set (then that token, no role).
    ("GET", "/metrics", "", PUBLIC),
    ("POST", "/oauth/token", "", PUBLIC),
    // ---- every signed-in member of staff
    ("GET", "/ui", "", ALL_STAFF),
    ("POST", "/logout", "", ALL_STAFF),
    // ---- personal data: search, records, households, changes
    ("GET", "/ui/search", "", "clerk boss officer"),
    (
        "GET",
        "/ui/residents/{addressee_number}",
        "",
        "clerk boss officer",
    ),
    (
        "GET",
        "/ui/households/{household_number}",
        "",
        "clerk boss officer",
    ),
    ("GET", "/ui/changes/{change_id}", "", "clerk boss officer"),
    // 個人番号: supervisors only; the support officer's work needs none
    // (j160, j440; shown per role, j1390).
    (
        "POST",
        "/ui/residents/{addressee_number}/my-number",
        "",
        "boss",
    ),
    // ---- counter-assisted filing (書かない窓口): whoever enters changes
    (
        "GET",
        "/ui/residents/{addressee_number}/counter",
        "",
        "clerk boss",
    ),
    (
        "GET",
        "/ui/residents/{addressee_number}/counter/{procedure}",
        "",
        "clerk boss",
    ),
    (
        "POST",
        "/ui/residents/{addressee_number}/counter/{procedure}",
        "step=edit",
        "clerk boss",
    ),
    // ---- entering and approving changes (j530)
    ("GET", "/ui/entry", "", "clerk boss"),
    ("POST", "/ui/entry", "type=death", "clerk boss"),
    ("GET", "/ui/approvals", "", "clerk boss"),
    ("GET", "/ui/approvals/{pending_id}", "", "clerk boss"),
    // Withdrawn only by whoever entered it (the clerk, in the fixture).
    (
        "POST",
        "/ui/approvals/{pending_id}/decide",
        "action=withdraw",
        "clerk",
    ),
    (
        "POST",
        "/ui/approvals/{pending_id}/decide",
        "action=return",
        "boss",
    ),
    ("POST", "/ui/approvals/bulk", "", "boss"),
    // ---- certificates
    ("GET", "/ui/certificates/new", "", "clerk boss"),
    ("POST", "/ui/certificates", "", "clerk boss"),
    ("GET", "/ui/certificates/issued/{batch}", "", "clerk boss"),
    (
        "GET",
        "/ui/certificates/issued/{batch}/{copy}",
        "",
        "clerk boss",
    ),
    // ---- support measures (j160, j380, j440)
    ("GET", "/ui/support", "", "officer"),
    ("GET", "/ui/support/new", "", "officer"),
    ("POST", "/ui/support/new", "", "officer"),
    ("GET", "/ui/support/{measure_id}", "", "officer"),
    (
        "POST",
        "/ui/support/{measure_id}/act",
        "action=extend",
        "officer",
    ),
    // ---- oversight
    ("GET", "/ui/audit", "", "boss"),
    ("GET", "/ui/stats", "", "boss admin cio"),
    // ---- the tenant administrator: accounts, clients, the certifying
    // officer; what gives personal data is a proposal
    ("GET", "/ui/admin/accounts", "", "admin"),
    (
        "POST",
        "/ui/admin/accounts",
        "login=new2&display_name=x&role=clerk",
        "admin",
    ),
    (
        "POST",
        "/ui/admin/accounts/state",
        "login=newbie&action=disable",
        "admin",
    ),
    (
        "POST",
        "/ui/admin/accounts/role",
        "login=newbie&role=clerk",
        "admin",
    ),
    (
        "POST",
        "/ui/admin/clients",
        "system=probe&scopes=probe:events:read",
        "admin",
    ),
    (
        "POST",
        "/ui/admin/clients/state",
        "client_id={spare}&action=disable",
        "admin",
    ),
    (
        "POST",
        "/ui/admin/clients/scopes",
        "client_id={spare}&scopes=spare:events:read",
        "admin",
    ),
    (
        "POST",
        "/ui/admin/clients/direct",
        "client_id={spare}&action=off",
        "admin",
    ),
    // 手続定義の受入れ: the tenant administrator decides on definitions the
    // portal delivered (a shipped version answers 409: nothing to decide).
    ("GET", "/ui/admin/procedures", "", "admin"),
    (
        "POST",
        "/ui/admin/procedures",
        "procedure=tenshutsu&version=1&decision=accept",
        "admin",
    ),
    (
        "GET",
        "/api/v1/tenants/{municipality_code}/procedure-definitions",
        "",
        "admin",
    ),
    (
        "POST",
        "/api/v1/tenants/{municipality_code}/procedure-definitions/decision",
        r#"{"procedure":"tenshutsu","version":1,"decision":"accept"}"#,
        "admin",
    ),
    // Webhook subscriptions of the tenant's clients (通知先).
    ("GET", "/ui/admin/subscriptions", "", "admin"),
    ("POST", "/ui/admin/subscriptions", "", "admin"),
    (
        "GET",
        "/ui/admin/subscriptions/{subscription_id}",
        "",
        "admin",
    ),
    (
        "POST",
        "/ui/admin/subscriptions/{subscription_id}/act",
        "action=rotate",
        "admin",
    ),
    (
        "POST",
        "/ui/admin/extract-schedule",
        "mode=daily&times=02:00&kind=diff",
        "admin",
    ),
    ("POST", "/ui/admin/extract", "kind=full", "admin"),
    ("POST", "/ui/admin/issuer", "", "admin"),
    (
        "POST",
        "/ui/admin/certificate-fee",
        "certificate_fee=300",
        "admin",
    ),
    // ---- access proposals: the administrator proposes and withdraws; a
    // supervisor or the CIO approves, rejects, rotates secrets, reissues
    // activation codes
    ("GET", "/ui/grants", "", "admin boss cio"),
    (
        "POST",
        "/ui/grants/{grant_id}/decide",
        "action=withdraw",
        "admin",
    ),
    (
        "POST",
        "/ui/grants/{grant_id}/decide",
        "action=approve",
        "boss cio",
    ),
    ("POST", "/ui/grants/rotate", "client_id={spare}", "boss cio"),
    ("POST", "/ui/grants/reissue", "login=newbie", "boss cio"),
    // ---- the platform operator
    ("GET", "/ui/platform/tenants", "", "operator"),
    ("POST", "/ui/platform/tenants", "", "operator"),
    // ---- JSON API
    ("GET", "/api/v1/tenants", "", EVERYONE),
    ("POST", "/api/v1/tenants", "{}", "operator"),
    ("GET", "/api/v1/tenants/{municipality_code}", "", EVERYONE),
    (
        "GET",
        "/api/v1/tenants/{municipality_code}/residents/{addressee_number}",
        "",
        "clerk boss officer residents:read",
    ),
    (
        "GET",
        "/api/v1/tenants/{municipality_code}/residents/{addressee_number}/history",
        "",
        "clerk boss officer residents:read",
    ),
    (
        "GET",
        "/api/v1/tenants/{municipality_code}/households/{household_number}",
        "",
        "clerk boss officer residents:read",
    ),
    (
        "GET",
        "/api/v1/tenants/{municipality_code}/search",
        "",
        "clerk boss officer residents:read",
    ),
    (
        "GET",
        "/api/v1/tenants/{municipality_code}/changes",
        "",
        "clerk boss officer changes:read",
    ),
    (
        "GET",
        "/api/v1/tenants/{municipality_code}/changes/{change_id}",
        "",
        "clerk boss officer changes:read",
    ),
    // Entering: provisional unless the caller may commit directly.
    (
        "POST",
        "/api/v1/tenants/{municipality_code}/changes",
        "{}",
        "clerk boss changes:write",
    ),
    // Whoever may approve, or whoever entered it (the clerk, here).
    (
        "GET",
        "/api/v1/tenants/{municipality_code}/provisional-changes/{pending_id}",
        "",
        "clerk boss",
    ),
    (
        "GET",
        "/api/v1/tenants/{municipality_code}/events",
        "",
        "clerk boss events:read",
    ),
    // Webhook subscriptions: a client's own, with the subscriptions scope
    // (the subscription in the fixture is that client's).
    (
        "POST",
        "/api/v1/tenants/{municipality_code}/subscriptions",
        "{}",
        "subscriptions:write",
    ),
    (
        "GET",
        "/api/v1/tenants/{municipality_code}/subscriptions",
        "",
        "subscriptions:write",
    ),
    (
        "GET",
        "/api/v1/tenants/{municipality_code}/subscriptions/{subscription_id}",
        "",
        "subscriptions:write",
    ),
    (
        "POST",
        "/api/v1/tenants/{municipality_code}/subscriptions/{subscription_id}/replay",
        "{}",
        "subscriptions:write",
    ),
    (
        "POST",
        "/api/v1/tenants/{municipality_code}/subscriptions/{subscription_id}/rotate-secret",
        "",
        "subscriptions:write",
    ),
    (
        "POST",
        "/api/v1/tenants/{municipality_code}/subscriptions/{subscription_id}/pause",
        "",
        "subscriptions:write",
    ),
    (
        "POST",
        "/api/v1/tenants/{municipality_code}/subscriptions/{subscription_id}/resume",
        "",
        "subscriptions:write",
    ),
    (
        "DELETE",
        "/api/v1/tenants/{municipality_code}/subscriptions/{subscription_id}",
        "",
        "subscriptions:write",
    ),
    // ---- 申請管理 (the inbox of portal filings): the roles that enter
    // changes; a clerk's approval of a registry change is provisional.
    ("GET", "/ui/inbox", "", "clerk boss"),
    ("GET", "/ui/inbox/refused", "", "clerk boss"),
    // Importing a quarantined filing again: supervisors (this fixture's
    // server has no portal link: 503, let through).
    ("POST", "/ui/inbox/refused/reimport", "portal_id=x", "boss"),
    ("GET", "/ui/inbox/{filing_id}", "", "clerk boss"),
    (
        "POST",
        "/ui/inbox/{filing_id}/act",
        "action=approve",
        "clerk boss",
    ),
    (
        "GET",
        "/ui/inbox/{filing_id}/files/{field}",
        "",
        "clerk boss",
    ),
    // アンケート集計: the same readers as the inbox (counts only).
    ("GET", "/ui/surveys", "", "clerk boss"),
    ("GET", "/ui/surveys/{survey}", "", "clerk boss"),
    (
        "GET",
        "/api/v1/tenants/{municipality_code}/surveys/{survey}/results",
        "",
        "clerk boss residents:read",
    ),
    // Another system reading personal data may read filings, never act.
    (
        "GET",
        "/api/v1/tenants/{municipality_code}/filings",
        "",
        "clerk boss residents:read",
    ),
    (
        "GET",
        "/api/v1/tenants/{municipality_code}/filings/refused",
        "",
        "clerk boss residents:read",
    ),
    (
        "GET",
        "/api/v1/tenants/{municipality_code}/filings/deferred",
        "",
        "clerk boss residents:read",
    ),
    (
        "POST",
        "/api/v1/tenants/{municipality_code}/filings/refused/{portal_id}/reimport",
        "",
        "boss",
    ),
    (
        "GET",
        "/api/v1/tenants/{municipality_code}/filings/{filing_id}",
        "",
        "clerk boss residents:read",
    ),
    (
        "GET",
        "/api/v1/tenants/{municipality_code}/filings/{filing_id}/candidates",
        "",
        "clerk boss residents:read",
    ),
    (
        "POST",
        "/api/v1/tenants/{municipality_code}/filings/{filing_id}/assign",
        "{}",
        "clerk boss",
    ),
    (
        "POST",
        "/api/v1/tenants/{municipality_code}/filings/{filing_id}/match",
        r#"{"party":"applicant","addressee_number":"x"}"#,
        "clerk boss",
    ),
    (
        "POST",
        "/api/v1/tenants/{municipality_code}/filings/{filing_id}/approve",
        "{}",
        "clerk boss",
    ),
    (
        "POST",
        "/api/v1/tenants/{municipality_code}/filings/{filing_id}/correction",
        r#"{"message":"添付の写真が読めません。"}"#,
        "clerk boss",
    ),
    (
        "POST",
        "/api/v1/tenants/{municipality_code}/filings/{filing_id}/reject",
        r#"{"message":"二重の申請です。"}"#,
        "clerk boss",
    ),
    // File linkage on demand: the tenant administrator, or a receiving
    // system's client with the extract scope.
    (
        "POST",
        "/api/v1/tenants/{municipality_code}/extracts",
        "{}",
        "admin extracts:write",
    ),
];

/// The fixture's ids and names for `{…}` in paths and forms.
struct Ids(Vec<(&'static str, String)>);

impl Ids {
    fn fill(&self, s: &str) -> String {
        let mut out = s.to_string();
        for (name, value) in &self.0 {
            out = out.replace(&format!("{{{name}}}"), value);
        }
        assert!(!out.contains('{') || out == "{}", "{s}: unknown parameter");
        out
    }
}

/// A caller's answer: let through, or refused.
fn refused(status: StatusCode, headers: &[(String, String)]) -> bool {
    matches!(
        status,
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::NOT_FOUND
    ) || (status == StatusCode::SEE_OTHER && location(headers) == "/login")
}

/// The same, for the JSON API.
fn refused_api(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::NOT_FOUND
    )
}

async fn fixture(db: &TestDb) -> Ids {
    let fuchu = code(FUCHU);
    let r = &db.registry;
    for (login, role) in [
        ("clerk", Role::Clerk),
        ("boss", Role::Supervisor),
        ("officer", Role::SupportOfficer),
        ("admin", Role::TenantAdmin),
        ("cio", Role::Cio),
    ] {
        staff(db, FUCHU, login, role).await;
    }
    r.create_account(
        None,
        "operator",
        "基盤 運用",
        Role::PlatformOperator,
        PASSWORD,
        &Actor::system("setup"),
    )
    .await
    .unwrap();
    let family = r
        .submit(
            &fuchu,
            &serde_json::from_value(takahashi_family()).unwrap(),
            &Actor::system("setup"),
        )
        .await
        .unwrap();
    let person = family.rows[0].record.addressee_number.to_string();
    let household = family.rows[0].record.household_number.to_string();
    // A certificate the clerk issued at the counter (its confirmation page
    // and PDF are routes of their own).
    r.set_issuer(&fuchu, "府中市長", "架空　一郎", &Actor::system("setup"))
        .await
        .unwrap();
    let batch = r
        .issue_certificates(
            &fuchu,
            machi::service::certificates::CertificateRequest {
                kind: machi_domain::certificate::CertificateKind::ResidentCopy,
                subject: machi::service::certificates::Subject::HouseholdOf(
                    family.rows[0].record.addressee_number.clone(),
                ),
                options: Default::default(),
                verification_url: "http://localhost/verify".into(),
                may_show_my_number: false,
                counter: Some(machi_domain::certificate::counter::CounterRequest {
                    requester: Some(machi_domain::certificate::counter::Requester::Themselves),
                    identity: Some(
                        machi_domain::certificate::counter::IdentityDocument::MyNumberCard,
                    ),
                    copies: 1,
                    ..Default::default()
                }),
            },
            &Actor {
                operator: "clerk".into(),
                terminal: "T".into(),
            },
        )
        .await
        .unwrap()
        .batch;
    // A protected person of their own household (the walk reads the family).
    let protected = r
        .submit(
            &fuchu,
            &serde_json::from_value(move_in(
                vec![json!({"name": "架空　守", "name_kana": "カクウ　マモル",
                    "birth_date": "1990-01-01", "sex": "male", "relationship": "世帯主"})],
                "東京都府中市宮西町一丁目9番地",
            ))
            .unwrap(),
            &Actor::system("setup"),
        )
        .await
        .unwrap()
        .rows[0]
        .record
        .addressee_number
        .clone();
    let measure = r
        .support_register(
            &fuchu,
            &NewSupportMeasure {
                filed_on: r.today(),
                provisional_start: None,
                requester: Requester {
                    addressee_number: protected,
                    municipality_role: Default::default(),
                    contact: Default::default(),
                },
                related_persons: vec![],
                offenders: vec![],
                affairs: vec![AffairRequest {
                    affair: Affair::ResidentRecordCopy,
                    addresses: vec![],
                }],
                forwarding: Default::default(),
            },
            &Actor::system("setup"),
        )
        .await
        .unwrap();
    // A provisional change the clerk entered.
    let mut second = takahashi_family();
    second["command"]["household"]["address"]["address"] = json!("東京都府中市宮西町三丁目3番地");
    second["command"]["persons"] = json!([{"name": "架空　仮", "name_kana": "カクウ　カリ",
        "birth_date": "1991-01-01", "sex": "female", "relationship": "世帯主"}]);
    let (pending, _) = r
        .enter_provisional(
            &fuchu,
            &serde_json::from_value(second).unwrap(),
            &Actor {
                operator: "clerk".into(),
                terminal: "T".into(),
            },
        )
        .await
        .unwrap();
    // A client the administrator proposed, not yet approved.
    let ClientStep::Proposed { grant_id, .. } = r
        .propose_client(
            &fuchu,
            "juki",
            "juki:residents:read",
            &Actor::system("admin"),
        )
        .await
        .unwrap()
    else {
        panic!("a proposal")
    };
    // An approved spare client to disable and rotate, and a tenant
    // administrator's account waiting for activation.
    let (spare, _) = approved_client(db, "spare", "spare:events:read").await;
    let step = r
        .add_account(
            &fuchu,
            "newbie",
            "試験 新任",
            Role::TenantAdmin,
            &Actor::system("admin"),
        )
        .await
        .unwrap();
    assert!(matches!(step, AccountStep::Activation(_)));
    // A filing from the portal in the inbox.
    crate::inbox::stored_juminhyo(db).await;
    Ids(vec![
        ("filing_id", "1".to_string()),
        ("field", "id_document".to_string()),
        ("municipality_code", FUCHU.to_string()),
        ("addressee_number", person),
        ("household_number", household),
        ("change_id", family.change_id.to_string()),
        ("pending_id", pending.to_string()),
        ("procedure", "tenshutsu".to_string()),
        ("survey", "survey_internet".to_string()),
        ("measure_id", measure.measure_id().to_string()),
        ("batch", batch),
        ("copy", "1.pdf".to_string()),
        ("grant_id", grant_id.to_string()),
        ("spare", spare),
        ("portal_id", "x".to_string()),
    ])
}

fn allowed_by_table(who: &str) -> BTreeSet<String> {
    who.split_whitespace().map(str::to_string).collect()
}

async fn every_route_answers_each_role_as_the_table_says(db: TestDb) {
    let db = db.with_tenants().await;
    let mut ids = fixture(&db).await;
    let router = app(&db).await;

    // The table and the routers list the same routes.
    let mut routed: BTreeSet<(String, String)> = BTreeSet::new();
    for r in machi::ui::routes() {
        for m in r.methods {
            routed.insert((m.to_string(), r.path.to_string()));
        }
    }
    let (_, doc) = machi::api::routes().split_for_parts();
    for (path, item) in &doc.paths.paths {
        for (m, present) in [
            ("GET", item.get.is_some()),
            ("POST", item.post.is_some()),
            ("PUT", item.put.is_some()),
            ("DELETE", item.delete.is_some()),
            ("PATCH", item.patch.is_some()),
        ] {
            if present {
                routed.insert((m.to_string(), path.clone()));
            }
        }
    }
    let tabled: BTreeSet<(String, String)> = TABLE
        .iter()
        .map(|(m, p, _, _)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(
        routed.difference(&tabled).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "routes missing from the role table"
    );
    assert_eq!(
        tabled.difference(&routed).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "rows of the role table without a route"
    );
    // Public rows are the UI's public routes (and the API's two).
    for r in machi::ui::routes() {
        for m in r.methods {
            let row = TABLE
                .iter()
                .find(|(tm, tp, _, _)| tm == m && *tp == r.path)
                .unwrap();
            assert_eq!(row.3 == PUBLIC, r.public, "{m} {}", r.path);
        }
    }

    // Credentials: a UI session and API headers per role, a token per scope.
    let mut sessions = Vec::new();
    let mut api_as = Vec::new();
    for login in STAFF {
        let tenant = if login == "operator" { "" } else { FUCHU };
        let s = Session::login(&router, tenant, login).await;
        api_as.push((
            login.to_string(),
            Api {
                router: router.clone(),
                headers: vec![
                    ("cookie".into(), s.cookie.clone()),
                    ("x-csrf-token".into(), s.csrf.clone()),
                ],
            },
        ));
        sessions.push((login, s));
    }
    let mut subscriber: Option<String> = None;
    for scope in CLIENTS {
        let system = format!("s{}", api_as.len());
        let (id, secret) = approved_client(&db, &system, &format!("{system}:{scope}")).await;
        let (status, t) = token(&router, &id, &secret).await;
        assert_eq!(status, StatusCode::OK);
        if scope == "subscriptions:write" {
            subscriber = Some(id.clone());
            // A subscription of this client, for the rows that name one.
            let sub = db
                .registry
                .create_subscription(
                    &code(FUCHU),
                    &id,
                    machi::service::hooks::NewSubscription {
                        url: "https://example.org/hook".into(),
                        types: vec![],
                        after: None,
                    },
                    &Actor::system("setup"),
                )
                .await
                .unwrap();
            ids.0
                .push(("subscription_id", sub.subscription_id.to_string()));
        }
        api_as.push((
            scope.to_string(),
            Api {
                router: router.clone(),
                headers: vec![("authorization".into(), t.unwrap())],
            },
        ));
    }

    let mut wrong = Vec::new();
    let mut tried = 0;
    // The API first (the UI walk rotates and disables a spare client only).
    for (method, path, body, who) in TABLE.iter().filter(|r| !r.1.starts_with("/ui")) {
        if *who == PUBLIC || !(path.starts_with("/api/")) {
            continue;
        }
        let allowed = allowed_by_table(who);
        let uri = ids.fill(path);
        for (name, api) in &api_as {
            let body: Option<Value> =
                (!body.is_empty()).then(|| serde_json::from_str(body).unwrap());
            let (status, v) = call(api, method, &uri, body).await;
            tried += 1;
            let let_through = !refused_api(status);
            if let_through != allowed.contains(name) {
                wrong.push(format!(
                    "{method} {path}: {name} {} but got {status} {}",
                    if allowed.contains(name) {
                        "may"
                    } else {
                        "may not"
                    },
                    v.to_string().chars().take(160).collect::<String>()
                ));
            }
        }
    }
    // The API walk deleted the fixture's subscription: another for the
    // administrator's subscription pages.
    let sub = db
        .registry
        .create_subscription(
            &code(FUCHU),
            subscriber.as_deref().unwrap(),
            machi::service::hooks::NewSubscription {
                url: "https://example.org/hook".into(),
                types: vec![],
                after: None,
            },
            &Actor::system("setup"),
        )
        .await
        .unwrap();
    ids.0.retain(|(name, _)| *name != "subscription_id");
    ids.0
        .push(("subscription_id", sub.subscription_id.to_string()));
    // The UI: staff sessions, and every client's bearer token (the UI takes
    // none: each is sent to sign in).
    for (method, path, form, who) in TABLE
        .iter()
        .filter(|r| r.1 == "/ui" || r.1.starts_with("/ui/") || r.1 == "/logout")
    {
        let allowed = allowed_by_table(who);
        let uri = ids.fill(path);
        let form = ids.fill(form);
        for (login, session) in &sessions {
            // Signing out ends the session: a fresh one for it.
            let fresh;
            let s = if *path == "/logout" {
                let tenant = if *login == "operator" { "" } else { FUCHU };
                fresh = Session::login(&router, tenant, login).await;
                &fresh
            } else {
                session
            };
            let (status, headers, body) = if *method == "GET" {
                s.get(&uri).await
            } else {
                let pairs: Vec<(&str, &str)> = form
                    .split('&')
                    .filter(|p| !p.is_empty())
                    .map(|p| p.split_once('=').unwrap())
                    .collect();
                s.post(&uri, &pairs).await
            };
            tried += 1;
            // Signing out answers with the sign-in page either way: it let
            // the caller through if it ended the session.
            let let_through = if *path == "/logout" {
                headers
                    .iter()
                    .any(|(k, v)| k == "set-cookie" && v.starts_with("machi_session=;"))
                    && refused(s.get("/ui").await.0, &s.get("/ui").await.1)
            } else {
                !refused(status, &headers)
            };
            if let_through != allowed.contains(*login) {
                wrong.push(format!(
                    "{method} {path} [{form}]: {login} {} but got {status} {}",
                    if allowed.contains(*login) {
                        "may"
                    } else {
                        "may not"
                    },
                    body.chars().take(160).collect::<String>()
                ));
            }
        }
        for (name, api) in api_as.iter().filter(|(n, _)| CLIENTS.contains(&n.as_str())) {
            let bearer = &api.headers[0].1;
            let (status, headers, _) = {
                let mut req = axum::http::Request::builder().method(*method).uri(&uri);
                req = req.header("authorization", bearer);
                if *method == "POST" {
                    req = req.header("content-type", "application/x-www-form-urlencoded");
                }
                let res = tower::ServiceExt::oneshot(
                    router.clone(),
                    req.body(axum::body::Body::from(form.clone())).unwrap(),
                )
                .await
                .unwrap();
                let headers: Vec<(String, String)> = res
                    .headers()
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                    .collect();
                (res.status(), headers, ())
            };
            tried += 1;
            if !refused(status, &headers) {
                wrong.push(format!(
                    "{method} {path}: client {name} let through ({status})"
                ));
            }
        }
    }
    // Public routes answer without credentials (never sent to sign in).
    for (method, path, _, who) in TABLE.iter().filter(|r| r.3 == PUBLIC) {
        let (status, headers, _) = send(&router, method, path, None, Some("x=1")).await;
        tried += 1;
        if refused(status, &headers) && status != StatusCode::FORBIDDEN {
            wrong.push(format!("{method} {path} is {who} but answered {status}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {tried} answers differ from the role table:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert!(tried > 500, "only {tried} answers compared");
    println!(
        "{tried} answers compared with the role table ({} rows)",
        TABLE.len()
    );
}
