//! Separation of duties, by repeating each attack of a black-box test of the
//! demo through the real router: a tenant administrator who makes an API
//! client or a staff account with personal data and uses it before a second
//! person approved it, who approves their own proposal, a support officer
//! who posts the 個人番号 reveal, an API write that commits without the
//! tenant's approval, a disabled client's token, a rotated secret.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use machi::service::grants::{AccountStep, ClientStep, Decision, GrantOutcome};
use machi::service::{Actor, ServiceError};
use machi_domain::access::Role;
use serde_json::Value;
use tower::ServiceExt;

use crate::api::{Api, call};
use crate::contract::{MY_NUMBER, counts, takahashi_family};
use crate::support::{FUCHU, TestDb, code};
use crate::ui::{PASSWORD, Session, app, form, login_post, send, staff};

both_backends!(
    an_admin_cannot_use_a_personal_data_client_before_approval,
    an_admin_cannot_sign_in_as_an_account_they_proposed,
    nobody_decides_their_own_proposal,
    the_support_officer_cannot_reveal_a_my_number,
    an_api_write_is_provisional_unless_direct_commit_was_approved,
    a_disabled_client_is_refused_at_once,
    a_rotated_secret_replaces_the_old_one_at_once,
    a_narrower_scope_is_at_once_a_wider_one_waits,
    an_expired_activation_code_is_refused_and_can_be_reissued,
    a_provisional_entry_never_names_a_predicted_addressee_number,
);

/// Asks the token endpoint for a token: its status and the bearer header.
pub async fn token(router: &axum::Router, id: &str, secret: &str) -> (StatusCode, Option<String>) {
    let res = router
        .clone()
        .oneshot(
            Request::post("/oauth/token")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from(form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", id),
                    ("client_secret", secret),
                ])))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (
        status,
        v["access_token"].as_str().map(|t| format!("Bearer {t}")),
    )
}

fn bearer(router: &axum::Router, token: &str) -> Api {
    Api {
        router: router.clone(),
        headers: vec![("authorization".into(), token.to_string())],
    }
}

/// The text of the element with this id (`<code id="…">text</code>`).
pub fn element(html: &str, id: &str) -> Option<String> {
    let marker = format!("id=\"{id}\">");
    let i = html.find(&marker)? + marker.len();
    Some(html[i..].split('<').next()?.to_string())
}

/// The tenant's access log: (operator, function, target) in order; the
/// chain verified first.
pub async fn log_of(db: &TestDb) -> Vec<(String, String, String)> {
    let fuchu = code(FUCHU);
    let verdict = db.registry.verify_audit(&fuchu).await.unwrap();
    assert_eq!(verdict.first_bad, None, "the access log's chain is whole");
    let t = fuchu.clone();
    db.store
        .read(Some(&fuchu), move |tx| {
            machi::store::records::audit_entries(tx, &t, 0, 100_000)
        })
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.entry.operator, e.entry.function, e.entry.target))
        .collect()
}

/// The tenant's staff: an administrator, a supervisor, a clerk, a support
/// officer, the CIO; and the router.
async fn tenant_with_staff(db: TestDb) -> (TestDb, axum::Router) {
    let db = db.with_tenants().await;
    for (login, role) in [
        ("admin", Role::TenantAdmin),
        ("boss", Role::Supervisor),
        ("clerk", Role::Clerk),
        ("officer", Role::SupportOfficer),
        ("cio", Role::Cio),
    ] {
        staff(&db, FUCHU, login, role).await;
    }
    let router = app(&db).await;
    (db, router)
}

/// The number of the newest pending proposal, as the approvals page lists it.
async fn newest_pending(db: &TestDb) -> i64 {
    db.registry.grants(&code(FUCHU), true, 1).await.unwrap()[0].grant_id
}

/// An approved client of FUCHU with `scopes`: proposed by `admin`,
/// approved by `boss` (service calls, as the UI makes them).
pub async fn approved_client(db: &TestDb, system: &str, scopes: &str) -> (String, String) {
    let fuchu = code(FUCHU);
    let ClientStep::Proposed { grant_id, .. } = db
        .registry
        .propose_client(&fuchu, system, scopes, &Actor::system("admin"))
        .await
        .unwrap()
    else {
        panic!("a client with personal data is a proposal")
    };
    match db
        .registry
        .decide_grant(
            &fuchu,
            grant_id,
            Decision::Approve,
            "",
            &Actor::system("boss"),
        )
        .await
        .unwrap()
    {
        GrantOutcome::ClientSecret { client_id, secret } => (client_id, secret),
        other => panic!("{other:?}"),
    }
}

/// Lets a client commit directly: proposed by `admin`, approved by `boss`.
pub async fn allow_direct_commit(db: &TestDb, tenant: &str, client_id: &str) {
    let t = code(tenant);
    let ClientStep::Proposed { grant_id, .. } = db
        .registry
        .set_client_direct_commit(&t, client_id, true, &Actor::system("setup-admin"))
        .await
        .unwrap()
    else {
        panic!("direct commits are a proposal")
    };
    let out = db
        .registry
        .decide_grant(
            &t,
            grant_id,
            Decision::Approve,
            "",
            &Actor::system("setup-boss"),
        )
        .await
        .unwrap();
    assert_eq!(out, GrantOutcome::Applied);
}

/// A move-in of one synthetic person (n = 2, 3, 4), each at an address of
/// their own.
fn one_person(n: usize) -> Value {
    let (name, kana) = [
        ("架空　二郎", "カクウ　ジロウ"),
        ("架空　三郎", "カクウ　サブロウ"),
        ("架空　四郎", "カクウ　シロウ"),
    ][n - 2];
    crate::contract::move_in(
        vec![serde_json::json!({
            "name": name, "name_kana": kana, "birth_date": "1980-05-05",
            "sex": "male", "relationship": "世帯主",
        })],
        &format!("東京都府中市宮西町一丁目{n}番地"),
    )
}

fn first_person() -> String {
    machi_domain::ids::AddresseeNumber::from_serial(1)
        .unwrap()
        .to_string()
}

async fn an_admin_cannot_use_a_personal_data_client_before_approval(db: TestDb) {
    let (db, router) = tenant_with_staff(db).await;
    db.registry
        .submit(
            &code(FUCHU),
            &serde_json::from_value(takahashi_family()).unwrap(),
            &Actor::system("setup"),
        )
        .await
        .unwrap();
    let admin = Session::login(&router, FUCHU, "admin").await;
    // The attack: a client that reads residents and writes changes.
    let (s, _, page) = admin
        .post(
            "/ui/admin/clients",
            &[
                ("system", "evil"),
                ("scopes", "evil:residents:read evil:changes:write"),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert!(page.contains("申請 1 を受け付けました"), "{page}");
    assert!(
        element(&page, "client-secret").is_none(),
        "no secret for the proposer"
    );
    let grant = db.registry.grants(&code(FUCHU), true, 10).await.unwrap();
    let client_id = grant[0].proposal.target().to_string();
    // The proposed client does not exist yet: no secret gets a token.
    for guess in ["", "evil", "0000", &client_id] {
        let (s, t) = token(&router, &client_id, guess).await;
        assert_eq!((s, t), (StatusCode::UNAUTHORIZED, None), "secret {guess:?}");
    }
    // The administrator cannot approve it: not by the page, not by the service.
    let (s, _, _) = admin
        .post("/ui/grants/1/decide", &[("action", "approve")])
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _, _) = admin
        .post("/ui/grants/rotate", &[("client_id", &client_id)])
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "nor mint a secret by rotating");
    // A supervisor approves and alone sees the secret, once.
    let boss = Session::login(&router, FUCHU, "boss").await;
    let (s, _, page) = boss
        .post("/ui/grants/1/decide", &[("action", "approve")])
        .await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert_eq!(
        element(&page, "client-id").as_deref(),
        Some(client_id.as_str())
    );
    let secret = element(&page, "client-secret").expect("the approver sees the secret");
    let (_, _, again) = boss.get("/ui/grants").await;
    assert!(!again.contains(&secret), "shown once");
    for uri in ["/ui/admin/accounts", "/ui/grants"] {
        let (_, _, p) = admin.get(uri).await;
        assert!(!p.contains(&secret), "{uri} shows the proposer the secret");
    }
    // Now the client works, and reads are logged under its name.
    let (s, t) = token(&router, &client_id, &secret).await;
    assert_eq!(s, StatusCode::OK);
    let api = bearer(&router, &t.unwrap());
    let (s, v) = call(
        &api,
        "GET",
        &format!("/api/v1/tenants/{FUCHU}/residents/{}", first_person()),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let log = log_of(&db).await;
    let steps: Vec<(&str, &str)> = log
        .iter()
        .filter(|(_, f, t)| {
            f.starts_with("grant.") || (f.starts_with("client.") && *t == client_id)
        })
        .map(|(o, f, _)| (o.as_str(), f.as_str()))
        .collect();
    assert_eq!(
        steps,
        [
            ("admin", "grant.propose"),
            ("boss", "grant.approve"),
            ("boss", "client.create"),
        ]
    );
    assert!(
        log.iter()
            .any(|(o, f, _)| *o == format!("client:{client_id}") && f == "read.resident")
    );
    // PostgreSQL: the proposals are walled by tenant like every tenant table.
    if let Some(url) = db.url() {
        let seen = tokio::task::spawn_blocking(move || {
            let mut c = ::postgres::Client::connect(&url, ::postgres::NoTls).unwrap();
            c.batch_execute("SET ROLE machi_app").unwrap();
            let mut count = |tenant: &str| -> i64 {
                let mut tx = c.transaction().unwrap();
                tx.execute("SELECT set_config('machi.tenant', $1, true)", &[&tenant])
                    .unwrap();
                let n: i64 = tx
                    .query_one("SELECT COUNT(*) FROM access_grants", &[])
                    .unwrap()
                    .get(0);
                tx.commit().unwrap();
                n
            };
            (count(FUCHU), count(crate::support::AKISHIMA))
        })
        .await
        .unwrap();
        assert_eq!(seen, (1, 0));
    }
}

async fn an_admin_cannot_sign_in_as_an_account_they_proposed(db: TestDb) {
    let (db, router) = tenant_with_staff(db).await;
    let admin = Session::login(&router, FUCHU, "admin").await;
    // The attack: a supervisor account with a password the admin chose.
    let (s, _, page) = admin
        .post(
            "/ui/admin/accounts",
            &[
                ("login", "boss2"),
                ("display_name", "試験 決裁"),
                ("role", "supervisor"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert!(element(&page, "activation-code").is_none());
    let try_login = |password: &'static str| {
        let router = router.clone();
        async move {
            login_post(
                &router,
                &[
                    ("tenant", FUCHU),
                    ("login", "boss2"),
                    ("password", password),
                ],
            )
            .await
            .0
        }
    };
    assert_eq!(try_login(PASSWORD).await, StatusCode::UNAUTHORIZED);
    // No account exists to activate yet, whatever the code.
    assert_eq!(
        activate(
            &router,
            "boss2",
            "0000-0000-0000-0000-0000",
            "mine-Password-2026"
        )
        .await,
        StatusCode::UNAUTHORIZED
    );
    // A CIO is an approver: making one is a proposal too (else the admin
    // could make one and approve their own proposals with it).
    let step = db
        .registry
        .add_account(
            &code(FUCHU),
            "cio2",
            "試験 CIO",
            Role::Cio,
            &Actor::system("admin"),
        )
        .await
        .unwrap();
    assert!(matches!(step, AccountStep::Proposed(_)), "{step:?}");
    // A supervisor approves; the code is shown to them, not to the admin.
    let boss = Session::login(&router, FUCHU, "boss").await;
    let (s, _, page) = boss
        .post("/ui/grants/1/decide", &[("action", "approve")])
        .await;
    assert_eq!(s, StatusCode::OK, "{page}");
    let code_shown = element(&page, "activation-code").expect("activation code");
    for uri in ["/ui/admin/accounts", "/ui/grants"] {
        let (_, _, p) = admin.get(uri).await;
        assert!(
            !p.contains(&code_shown),
            "{uri} shows the proposer the code"
        );
    }
    // Approved, the account still has no password: the admin's is refused.
    assert_eq!(try_login(PASSWORD).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        activate(
            &router,
            "boss2",
            "1111-2222-3333-4444-5555",
            "mine-Password-2026"
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "a wrong code"
    );
    // Its holder sets a password with the code, once.
    assert_eq!(
        activate(&router, "boss2", &code_shown, "holder-Password-2026").await,
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        activate(&router, "boss2", &code_shown, "other-Password-2026").await,
        StatusCode::UNAUTHORIZED,
        "a code serves once"
    );
    assert_eq!(try_login(PASSWORD).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        try_login("holder-Password-2026").await,
        StatusCode::SEE_OTHER
    );
    // The role-change route: the admin makes a tenant administrator (no
    // personal data, at once), activates it themselves, then proposes it
    // as a supervisor. On approval its password is gone.
    let (_, _, page) = admin
        .post(
            "/ui/admin/accounts",
            &[
                ("login", "admin2"),
                ("display_name", "試験 管理"),
                ("role", "tenant_admin"),
            ],
        )
        .await;
    let own_code = element(&page, "activation-code").expect("a tenant admin is made at once");
    assert_eq!(
        activate(&router, "admin2", &own_code, "admin2-Password-2026").await,
        StatusCode::SEE_OTHER
    );
    let (s, _, page) = admin
        .post(
            "/ui/admin/accounts/role",
            &[("login", "admin2"), ("role", "supervisor")],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{page}");
    let pending = newest_pending(&db).await;
    let (s, _, page) = boss
        .post(
            &format!("/ui/grants/{pending}/decide"),
            &[("action", "approve")],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert!(element(&page, "activation-code").is_some());
    let (s, _, _) = login_post(
        &router,
        &[
            ("tenant", FUCHU),
            ("login", "admin2"),
            ("password", "admin2-Password-2026"),
        ],
    )
    .await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "the old password went with the new role"
    );
    // Every step is in the chained log.
    let log = log_of(&db).await;
    let functions: Vec<&str> = log.iter().map(|(_, f, _)| f.as_str()).collect();
    for f in [
        "grant.propose",
        "grant.approve",
        "account.create",
        "account.activate",
        "account.activate.failed",
        "account.role",
        "login.failed",
    ] {
        assert!(functions.contains(&f), "{f} not in {functions:?}");
    }
}

/// Posts the activation form as a browser does; its status.
async fn activate(router: &axum::Router, login: &str, code: &str, password: &str) -> StatusCode {
    let (_, headers, page) = send(router, "GET", "/activate", None, None).await;
    let cookie = headers
        .iter()
        .find(|(k, v)| k == "set-cookie" && v.starts_with("machi_activate="))
        .map(|(_, v)| v.split(';').next().unwrap().to_string())
        .expect("activation cookie");
    let marker = "name=\"form_csrf\" value=\"";
    let i = page.find(marker).expect("form csrf") + marker.len();
    let csrf = page[i..].split('"').next().unwrap().to_string();
    send(
        router,
        "POST",
        "/activate",
        Some(&cookie),
        Some(&form(&[
            ("form_csrf", &csrf),
            ("tenant", FUCHU),
            ("login", login),
            ("code", code),
            ("password", password),
            ("password_again", password),
        ])),
    )
    .await
    .0
}

async fn nobody_decides_their_own_proposal(db: TestDb) {
    let (db, router) = tenant_with_staff(db).await;
    let fuchu = code(FUCHU);
    let r = &db.registry;
    let admin = Actor::system("admin");
    let AccountStep::Proposed(id) = r
        .add_account(&fuchu, "clerk2", "試験 窓口", Role::Clerk, &admin)
        .await
        .unwrap()
    else {
        panic!("a clerk is a proposal")
    };
    // Whoever proposed it cannot approve or reject it, whatever the page.
    for d in [Decision::Approve, Decision::Reject] {
        assert!(matches!(
            r.decide_grant(&fuchu, id, d, "", &admin).await,
            Err(ServiceError::SelfGrant)
        ));
    }
    let admin_ui = Session::login(&router, FUCHU, "admin").await;
    for action in ["approve", "reject"] {
        let (s, _, _) = admin_ui
            .post(&format!("/ui/grants/{id}/decide"), &[("action", action)])
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{action}");
    }
    // Nobody else withdraws it.
    assert!(matches!(
        r.decide_grant(&fuchu, id, Decision::Withdraw, "", &Actor::system("boss"))
            .await,
        Err(ServiceError::Forbidden)
    ));
    // Nobody approves a proposal about themselves.
    let AccountStep::Proposed(about_boss) = r
        .change_role(&fuchu, "boss", Role::Cio, &admin)
        .await
        .unwrap()
    else {
        panic!("a role change to an approver is a proposal")
    };
    assert!(matches!(
        r.decide_grant(
            &fuchu,
            about_boss,
            Decision::Approve,
            "",
            &Actor::system("boss")
        )
        .await,
        Err(ServiceError::SelfGrant)
    ));
    let boss = Session::login(&router, FUCHU, "boss").await;
    let (s, _, page) = boss
        .post(
            &format!("/ui/grants/{about_boss}/decide"),
            &[("action", "approve")],
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{page}");
    // Nobody changes their own role.
    assert!(
        r.change_role(&fuchu, "admin", Role::Supervisor, &admin)
            .await
            .is_err()
    );
    // Nothing took effect.
    assert!(
        r.accounts(&fuchu)
            .await
            .unwrap()
            .iter()
            .all(|a| a.login != "clerk2")
    );
    assert_eq!(
        r.accounts(&fuchu)
            .await
            .unwrap()
            .iter()
            .find(|a| a.login == "boss")
            .unwrap()
            .role,
        "supervisor"
    );
    // Another approver may decide: the CIO rejects, and a decided proposal
    // stays decided.
    let (s, _, page) = Session::login(&router, FUCHU, "cio")
        .await
        .post(
            &format!("/ui/grants/{id}/decide"),
            &[("action", "reject"), ("comment", "人事の発令がまだです")],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert!(matches!(
        r.decide_grant(&fuchu, id, Decision::Approve, "", &Actor::system("boss"))
            .await,
        Err(ServiceError::GrantDecided(_))
    ));
    assert!(
        r.accounts(&fuchu)
            .await
            .unwrap()
            .iter()
            .all(|a| a.login != "clerk2")
    );
    // The proposer withdraws the other.
    assert_eq!(
        r.decide_grant(&fuchu, about_boss, Decision::Withdraw, "", &admin)
            .await
            .unwrap(),
        GrantOutcome::Closed
    );
    let functions: Vec<String> = log_of(&db).await.into_iter().map(|e| e.1).collect();
    assert!(functions.contains(&"grant.reject".to_string()));
    assert!(functions.contains(&"grant.withdraw".to_string()));
}

async fn the_support_officer_cannot_reveal_a_my_number(db: TestDb) {
    let (db, router) = tenant_with_staff(db).await;
    let mut family = takahashi_family();
    family["command"]["persons"][0]["my_number"] = serde_json::json!(MY_NUMBER);
    db.registry
        .submit(
            &code(FUCHU),
            &serde_json::from_value(family).unwrap(),
            &Actor::system("setup"),
        )
        .await
        .unwrap();
    let a1 = first_person();
    let officer = Session::login(&router, FUCHU, "officer").await;
    let (s, _, page) = officer.get(&format!("/ui/residents/{a1}")).await;
    assert_eq!(s, StatusCode::OK, "the officer reads the record");
    assert!(!page.contains("id=\"reveal\""), "no button");
    // The attack: the reveal posted by hand.
    let (s, _, page) = officer
        .post(&format!("/ui/residents/{a1}/my-number"), &[])
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(!page.contains(MY_NUMBER));
    let shown = |log: &[(String, String, String)]| {
        log.iter().filter(|(_, f, _)| f == "read.my_number").count()
    };
    assert_eq!(shown(&log_of(&db).await), 0, "nothing was revealed");
    // A supervisor's reveal works (and is what the officer was refused).
    let boss = Session::login(&router, FUCHU, "boss").await;
    let (s, _, page) = boss
        .post(&format!("/ui/residents/{a1}/my-number"), &[])
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(page.contains(MY_NUMBER));
    assert_eq!(shown(&log_of(&db).await), 1);
}

async fn an_api_write_is_provisional_unless_direct_commit_was_approved(db: TestDb) {
    let (db, router) = tenant_with_staff(db).await;
    let fuchu = code(FUCHU);
    let (id, secret) = approved_client(&db, "kokuho", "kokuho:changes:write").await;
    let (_, t) = token(&router, &id, &secret).await;
    let api = bearer(&router, &t.unwrap());
    let before = counts(&db.store, FUCHU).await;
    let changes = format!("/api/v1/tenants/{FUCHU}/changes");
    // The attack: a write that should commit at once.
    let (s, v) = call(&api, "POST", &changes, Some(takahashi_family())).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["status"], "pending");
    assert!(v.get("change_id").is_none(), "{v}");
    let pending_id = v["pending_id"].as_i64().unwrap();
    let after = counts(&db.store, FUCHU).await;
    assert_eq!(
        (after.0, after.1, after.3),
        (before.0, before.1, before.3),
        "no history row, no change, no linkage event"
    );
    let status = format!("/api/v1/tenants/{FUCHU}/provisional-changes/{pending_id}");
    let (s, v) = call(&api, "GET", &status, None).await;
    assert_eq!(
        (s, v["status"].as_str()),
        (StatusCode::OK, Some("pending")),
        "{v}"
    );
    // It waits in the supervisors' queue like a clerk's entry.
    let boss = Session::login(&router, FUCHU, "boss").await;
    let (_, _, queue) = boss.get("/ui/approvals").await;
    assert!(queue.contains(&format!("client:{id}")), "{queue}");
    let (s, _, _) = boss
        .post(
            &format!("/ui/approvals/{pending_id}/decide"),
            &[("action", "approve")],
        )
        .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let (_, v) = call(&api, "GET", &status, None).await;
    assert_eq!(v["status"], "approved");
    let change_id = v["change_id"].as_i64().expect("the committed change");
    assert!(change_id > 0);
    assert_eq!(counts(&db.store, FUCHU).await.1, before.1 + 1);
    // Direct commits: proposed, still provisional until approved.
    let ClientStep::Proposed { grant_id, .. } = db
        .registry
        .set_client_direct_commit(&fuchu, &id, true, &Actor::system("admin"))
        .await
        .unwrap()
    else {
        panic!("a proposal")
    };
    let (s, _) = call(&api, "POST", &changes, Some(one_person(2))).await;
    assert_eq!(s, StatusCode::ACCEPTED, "not before approval");
    db.registry
        .decide_grant(
            &fuchu,
            grant_id,
            Decision::Approve,
            "",
            &Actor::system("cio"),
        )
        .await
        .unwrap();
    let (s, v) = call(&api, "POST", &changes, Some(one_person(3))).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert!(v["change_id"].as_i64().is_some());
    // Stopped at once.
    db.registry
        .set_client_direct_commit(&fuchu, &id, false, &Actor::system("admin"))
        .await
        .unwrap();
    let (s, _) = call(&api, "POST", &changes, Some(one_person(4))).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    // Another caller's entry is not the client's to look at.
    let (other_id, other_secret) = approved_client(&db, "juki", "juki:changes:write").await;
    let (_, t) = token(&router, &other_id, &other_secret).await;
    let (s, _) = call(&bearer(&router, &t.unwrap()), "GET", &status, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let functions: Vec<String> = log_of(&db)
        .await
        .into_iter()
        .filter(|(o, _, _)| *o == format!("client:{id}"))
        .map(|e| e.1)
        .collect();
    assert_eq!(
        functions
            .iter()
            .filter(|f| *f == "change.provisional")
            .count(),
        3,
        "{functions:?}"
    );
    assert!(functions.contains(&"change.move_in".to_string()));
}

async fn a_disabled_client_is_refused_at_once(db: TestDb) {
    let (db, router) = tenant_with_staff(db).await;
    let (id, secret) = approved_client(&db, "kokuho", "kokuho:events:read").await;
    let (_, t) = token(&router, &id, &secret).await;
    let api = bearer(&router, &t.unwrap());
    let events = format!("/api/v1/tenants/{FUCHU}/events");
    assert_eq!(call(&api, "GET", &events, None).await.0, StatusCode::OK);
    let admin = Session::login(&router, FUCHU, "admin").await;
    let (s, _, page) = admin
        .post(
            "/ui/admin/clients/state",
            &[("client_id", &id), ("action", "disable")],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{page}");
    // The live token stops at once; no new one is issued.
    assert_eq!(
        call(&api, "GET", &events, None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        token(&router, &id, &secret).await.0,
        StatusCode::UNAUTHORIZED
    );
    admin
        .post(
            "/ui/admin/clients/state",
            &[("client_id", &id), ("action", "enable")],
        )
        .await;
    let (s, t) = token(&router, &id, &secret).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        call(&bearer(&router, &t.unwrap()), "GET", &events, None)
            .await
            .0,
        StatusCode::OK
    );
    let functions: Vec<String> = log_of(&db).await.into_iter().map(|e| e.1).collect();
    assert!(functions.contains(&"client.disable".to_string()));
    assert!(functions.contains(&"client.enable".to_string()));
}

async fn a_rotated_secret_replaces_the_old_one_at_once(db: TestDb) {
    let (db, router) = tenant_with_staff(db).await;
    let (id, old) = approved_client(&db, "kokuho", "kokuho:events:read").await;
    let (_, t) = token(&router, &id, &old).await;
    let api = bearer(&router, &t.unwrap());
    let events = format!("/api/v1/tenants/{FUCHU}/events");
    let boss = Session::login(&router, FUCHU, "boss").await;
    let (s, _, page) = boss.post("/ui/grants/rotate", &[("client_id", &id)]).await;
    assert_eq!(s, StatusCode::OK, "{page}");
    let new = element(&page, "client-secret").expect("the new secret");
    assert_ne!(new, old);
    assert_eq!(token(&router, &id, &old).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        call(&api, "GET", &events, None).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (s, t) = token(&router, &id, &new).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        call(&bearer(&router, &t.unwrap()), "GET", &events, None)
            .await
            .0,
        StatusCode::OK
    );
    // The same through the deployment's command line.
    let location = db.location().await;
    let url = match &location {
        machi::store::DatabaseLocation::Sqlite(p) => format!("sqlite://{}", p.display()),
        machi::store::DatabaseLocation::Postgres(u) => u.clone(),
    };
    let cid = id.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_machi"))
            .args([
                "--database",
                &url,
                "client",
                "rotate",
                "--tenant",
                FUCHU,
                "--client-id",
                &cid,
            ])
            .env("MACHI_LOG", "warn")
            .env("MACHI_MASTER_KEY", crate::support::TEST_MASTER_KEY)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let cli_secret = stdout
        .lines()
        .find_map(|l| l.strip_prefix("client_secret="))
        .expect("the new secret printed")
        .to_string();
    assert_eq!(token(&router, &id, &new).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(token(&router, &id, &cli_secret).await.0, StatusCode::OK);
    // The tenant administrator may not rotate (they would hold the secret).
    let admin = Session::login(&router, FUCHU, "admin").await;
    let (s, _, _) = admin.post("/ui/grants/rotate", &[("client_id", &id)]).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let rotations: Vec<String> = log_of(&db)
        .await
        .into_iter()
        .filter(|(_, f, _)| f == "client.rotate")
        .map(|e| e.0)
        .collect();
    assert_eq!(rotations, ["boss", "cli"]);
}

async fn a_narrower_scope_is_at_once_a_wider_one_waits(db: TestDb) {
    let (db, router) = tenant_with_staff(db).await;
    let (id, secret) =
        approved_client(&db, "kokuho", "kokuho:events:read kokuho:changes:read").await;
    let (_, t) = token(&router, &id, &secret).await;
    let api = bearer(&router, &t.unwrap());
    let events = format!("/api/v1/tenants/{FUCHU}/events");
    let residents = format!("/api/v1/tenants/{FUCHU}/search?name=x");
    let admin = Session::login(&router, FUCHU, "admin").await;
    // Wider: a proposal; the token still cannot read residents.
    let (s, _, page) = admin
        .post(
            "/ui/admin/clients/scopes",
            &[
                ("client_id", &id),
                ("scopes", "kokuho:events:read kokuho:residents:read"),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert!(page.contains("を受け付けました"), "{page}");
    // The refusal names the scope the token lacks, in both languages.
    let (s, v) = call(&api, "GET", &residents, None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(v["code"], "forbidden", "{v}");
    assert!(
        v["message_ja"]
            .as_str()
            .unwrap()
            .contains("スコープ「kokuho:residents:read」（住民記録の参照）が必要"),
        "{v}"
    );
    assert!(
        v["message_en"]
            .as_str()
            .unwrap()
            .contains("needs the scope kokuho:residents:read (read resident records)"),
        "{v}"
    );
    // An operation no scope allows says so (the tenant's own procedure
    // definitions: the administrator's).
    let (s, v) = call(
        &api,
        "GET",
        &format!("/api/v1/tenants/{FUCHU}/procedure-definitions"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(
        v["message_ja"].as_str().unwrap().contains("職員だけ"),
        "{v}"
    );
    // The supervisor's page shows the proposed scopes in words, as the
    // clients table does, not as codes.
    let boss = Session::login(&router, FUCHU, "boss").await;
    let (_, _, grants) = boss.get("/ui/grants").await;
    assert!(
        grants.contains(&format!(
            "連携先 {id} のスコープを「連携イベントの取得、住民記録の参照」に変更"
        )),
        "{grants}"
    );
    assert!(!grants.contains("kokuho:residents:read"), "{grants}");
    let (s, _) = token(&router, &id, &secret).await;
    assert_eq!(s, StatusCode::OK);
    // Narrower: at once, even for a token issued before.
    let (s, _, _) = admin
        .post(
            "/ui/admin/clients/scopes",
            &[("client_id", &id), ("scopes", "kokuho:changes:read")],
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_ne!(call(&api, "GET", &events, None).await.0, StatusCode::OK);
    let (_, t) = token(&router, &id, &secret).await;
    assert_eq!(
        call(&bearer(&router, &t.unwrap()), "GET", &events, None)
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    // Approved, the wider set applies.
    let pending = newest_pending(&db).await;
    db.registry
        .decide_grant(
            &code(FUCHU),
            pending,
            Decision::Approve,
            "",
            &Actor::system("boss"),
        )
        .await
        .unwrap();
    let (_, t) = token(&router, &id, &secret).await;
    assert_eq!(
        call(&bearer(&router, &t.unwrap()), "GET", &residents, None)
            .await
            .0,
        StatusCode::OK
    );
}

async fn an_expired_activation_code_is_refused_and_can_be_reissued(db: TestDb) {
    let (db, router) = tenant_with_staff(db).await;
    let fuchu = code(FUCHU);
    let AccountStep::Proposed(id) = db
        .registry
        .add_account(
            &fuchu,
            "late",
            "試験 遅延",
            Role::Clerk,
            &Actor::system("admin"),
        )
        .await
        .unwrap()
    else {
        panic!("a proposal")
    };
    let GrantOutcome::Activation(first) = db
        .registry
        .decide_grant(&fuchu, id, Decision::Approve, "", &Actor::system("boss"))
        .await
        .unwrap()
    else {
        panic!("an activation code")
    };
    db.raw("UPDATE accounts SET activation_expires = 1 WHERE login = 'late'")
        .await;
    assert_eq!(
        activate(&router, "late", &first.code, "late-Password-2026").await,
        StatusCode::UNAUTHORIZED,
        "expired"
    );
    // Nobody reissues their own; an approver does, and the old code is dead.
    assert!(matches!(
        db.registry
            .reissue_activation(&fuchu, "late", &Actor::system("late"))
            .await,
        Err(ServiceError::SelfGrant)
    ));
    let boss = Session::login(&router, FUCHU, "boss").await;
    let (s, _, page) = boss.post("/ui/grants/reissue", &[("login", "late")]).await;
    assert_eq!(s, StatusCode::OK, "{page}");
    let second = element(&page, "activation-code").expect("a new code");
    assert_ne!(second, first.code);
    assert_eq!(
        activate(&router, "late", &first.code, "late-Password-2026").await,
        StatusCode::UNAUTHORIZED
    );
    // Typed with spaces and capitals, it still works.
    let typed = second.to_uppercase().replace('-', " ");
    assert_eq!(
        activate(&router, "late", &typed, "late-Password-2026").await,
        StatusCode::SEE_OTHER
    );
    let (s, _, _) = login_post(
        &router,
        &[
            ("tenant", FUCHU),
            ("login", "late"),
            ("password", "late-Password-2026"),
        ],
    )
    .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let (s, _, page) = boss.post("/ui/grants/reissue", &[("login", "late")]).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "an active account gets no code");
    assert!(element(&page, "activation-code").is_none());
}

/// 14.5: a provisional 転入 gives its new persons no number until it is
/// approved. Another person registered meanwhile takes the number a dry
/// run would have predicted; reading the entry is neither blocked by that
/// person's support measure nor logged against them.
async fn a_provisional_entry_never_names_a_predicted_addressee_number(db: TestDb) {
    use machi_domain::support::{Affair, AffairRequest, NewSupportMeasure, Requester};
    let (db, router) = tenant_with_staff(db).await;
    let fuchu = code(FUCHU);
    let (id, secret) = approved_client(&db, "kokuho", "kokuho:changes:write").await;
    let (_, t) = token(&router, &id, &secret).await;
    let api = bearer(&router, &t.unwrap());
    let changes = format!("/api/v1/tenants/{FUCHU}/changes");
    let (s, v) = call(&api, "POST", &changes, Some(one_person(2))).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(
        v["persons"],
        serde_json::json!([]),
        "no predicted number: {v}"
    );
    assert_eq!(v["new_persons"], 1, "{v}");
    let pending_id = v["pending_id"].as_i64().unwrap();
    // Meanwhile a counter 転入 commits and takes the next number.
    let req = serde_json::from_value(one_person(3)).unwrap();
    let other = db
        .registry
        .submit(&fuchu, &req, &Actor::system("counter"))
        .await
        .unwrap();
    let taken = other.rows[0].record.addressee_number.clone();
    // …and that person comes under a support measure.
    db.registry
        .support_register(
            &fuchu,
            &NewSupportMeasure {
                filed_on: db.registry.clock().today(),
                provisional_start: None,
                requester: Requester {
                    addressee_number: taken.clone(),
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
            &Actor::system("officer"),
        )
        .await
        .unwrap();
    // The supervisor reads the entry: not blocked by the stranger's measure.
    let boss = Session::login(&router, FUCHU, "boss").await;
    let (s, _, page) = boss.get(&format!("/ui/approvals/{pending_id}")).await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert!(page.contains("架空"), "the entry is shown");
    let log = log_of(&db).await;
    let entered = log
        .iter()
        .find(|(o, f, _)| *o == format!("client:{id}") && f == "change.provisional")
        .expect("the entry is logged");
    assert_eq!(entered.2, format!("pending:{pending_id}"));
    let read = log
        .iter()
        .rev()
        .find(|(_, f, _)| f == "read.provisional")
        .expect("the read is logged");
    assert_eq!(read.2, format!("pending:{pending_id}"));
    assert!(
        !log.iter().any(|(o, _, target)| o != "counter"
            && o != "officer"
            && target.split(',').any(|x| x == taken.as_str())),
        "nobody but the counter and the officer touched {taken}: {log:?}"
    );
    // Approved, the entry names the number it really got.
    let (s, _, _) = boss
        .post(
            &format!("/ui/approvals/{pending_id}/decide"),
            &[("action", "approve")],
        )
        .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let p = db.registry.pending(&fuchu, pending_id).await.unwrap();
    assert_eq!(p.persons.len(), 1);
    assert_ne!(p.persons[0], taken);
    let got = db
        .registry
        .change(&fuchu, p.change_id.unwrap(), &Actor::system("check"))
        .await
        .unwrap();
    assert_eq!(
        got.persons, p.persons,
        "the entry names the committed persons"
    );
}
