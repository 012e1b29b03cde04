//! The staff UI through the real router: sign-in with throttling, CSRF,
//! a provisional change approved by a supervisor, roles kept apart, the
//! access log, support-measure blocks.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use machi::api::{self, AppState};
use machi::service::Actor;
use machi_domain::access::Role;
use tower::ServiceExt;

use crate::support::{AKISHIMA, FUCHU, TestDb};

both_backends!(
    a_clerk_enters_and_a_supervisor_approves,
    sign_in_is_throttled_and_logged,
    english_switch_and_keyboard_markup,
    certificates_are_issued_verified_and_blocked_for_protected_persons,
    a_disabled_account_loses_its_sessions,
    parallel_guesses_do_not_pass_the_throttle,
    protected_persons_stay_hidden_in_provisional_changes_and_certificates,
    the_login_form_refuses_a_post_from_elsewhere,
);

/// A signed-in browser without a browser: cookies and the CSRF token.
pub struct Session {
    pub router: axum::Router,
    pub cookie: String,
    pub csrf: String,
}

pub const PASSWORD: &str = "test-Password-2026";

pub async fn staff(db: &TestDb, tenant: &str, login: &str, role: Role) {
    db.registry
        .create_account(
            Some(&tenant.parse().unwrap()),
            login,
            &format!("試験 {login}"),
            role,
            PASSWORD,
            &Actor::system("setup"),
        )
        .await
        .unwrap();
}

pub async fn send(
    router: &axum::Router,
    method: &str,
    uri: &str,
    cookie: Option<&str>,
    form: Option<&str>,
) -> (StatusCode, Vec<(String, String)>, String) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(c) = cookie {
        req = req.header(header::COOKIE, c);
    }
    let body = match form {
        Some(f) => {
            req = req.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
            Body::from(f.to_string())
        }
        None => Body::empty(),
    };
    let res = router
        .clone()
        .oneshot(req.body(body).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let headers = res
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

/// Posts the sign-in form as a browser does: the form page first, for its
/// CSRF cookie and field.
pub async fn login_post(
    router: &axum::Router,
    pairs: &[(&str, &str)],
) -> (StatusCode, Vec<(String, String)>, String) {
    let (_, headers, page) = send(router, "GET", "/login", None, None).await;
    let cookie = headers
        .iter()
        .find(|(k, v)| k == "set-cookie" && v.starts_with("machi_login="))
        .map(|(_, v)| v.split(';').next().unwrap().to_string())
        .expect("login cookie");
    let marker = "name=\"login_csrf\" value=\"";
    let i = page.find(marker).expect("login csrf") + marker.len();
    let token = page[i..].split('"').next().unwrap().to_string();
    let mut all: Vec<(&str, &str)> = vec![("login_csrf", &token)];
    all.extend_from_slice(pairs);
    send(router, "POST", "/login", Some(&cookie), Some(&form(&all))).await
}

pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

impl Session {
    pub async fn login(router: &axum::Router, tenant: &str, login: &str) -> Session {
        let (status, headers, body) = login_post(
            router,
            &[
                ("tenant", tenant),
                ("login", login),
                ("password", PASSWORD),
                ("terminal", "T-TEST"),
            ],
        )
        .await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
        let cookie = headers
            .iter()
            .find(|(k, v)| k == "set-cookie" && v.starts_with("machi_session="))
            .map(|(_, v)| v.split(';').next().unwrap().to_string())
            .expect("session cookie");
        let set = headers.iter().find(|(k, _)| k == "set-cookie").unwrap();
        assert!(set.1.contains("HttpOnly") && set.1.contains("SameSite=Strict"));
        let mut s = Session {
            router: router.clone(),
            cookie,
            csrf: String::new(),
        };
        let (_, _, home) = s.get("/ui").await;
        s.csrf = csrf_of(&home);
        s
    }

    /// A page, checked to read as words (`readable::assert_readable`).
    pub async fn get(&self, uri: &str) -> (StatusCode, Vec<(String, String)>, String) {
        let (status, headers, body) =
            send(&self.router, "GET", uri, Some(&self.cookie), None).await;
        if headers
            .iter()
            .any(|(k, v)| k == "content-type" && v.starts_with("text/html"))
        {
            crate::readable::assert_readable(&body, uri);
        }
        (status, headers, body)
    }

    /// Posts a form with the session's CSRF token.
    pub async fn post(
        &self,
        uri: &str,
        pairs: &[(&str, &str)],
    ) -> (StatusCode, Vec<(String, String)>, String) {
        let mut all: Vec<(&str, &str)> = vec![("csrf", &self.csrf)];
        all.extend_from_slice(pairs);
        send(
            &self.router,
            "POST",
            uri,
            Some(&self.cookie),
            Some(&form(&all)),
        )
        .await
    }
}

/// What the clerk records at the counter for a request by the person
/// themself who showed a My Number Card.
pub const AT_COUNTER: [(&str, &str); 2] = [("requester", "self"), ("identity", "my_number_card")];

/// Issues a certificate at the counter as a clerk does: posts the form
/// (with [`AT_COUNTER`] unless `pairs` says who asks), follows the
/// confirmation page to the first copy's PDF. On success the PDF's status
/// and body with the POST's and the PDF's headers; otherwise the POST's
/// answer.
pub async fn issue_pdf(
    s: &Session,
    pairs: &[(&str, &str)],
) -> (StatusCode, Vec<(String, String)>, String) {
    let mut all: Vec<(&str, &str)> = pairs.to_vec();
    if !pairs.iter().any(|(k, _)| *k == "requester") {
        all.extend_from_slice(&AT_COUNTER);
    }
    let (st, mut h, body) = s.post("/ui/certificates", &all).await;
    if st != StatusCode::SEE_OTHER {
        return (st, h, body);
    }
    let page_uri = location(&h);
    assert!(
        page_uri.starts_with("/ui/certificates/issued/"),
        "{page_uri}"
    );
    let (st, _, page) = s.get(&page_uri).await;
    assert_eq!(st, StatusCode::OK, "{page}");
    assert!(page.contains("証明書を発行しました"), "{page}");
    let i = page.find("class=\"pdf\" href=\"").expect("a PDF link") + 18;
    let link = page[i..].split('"').next().unwrap().to_string();
    let (st, h2, pdf) = s.get(&link).await;
    h.extend(h2.into_iter().filter(|(k, _)| k != "x-machi-issue-number"));
    (st, h, pdf)
}

pub fn csrf_of(html: &str) -> String {
    let i = html.find("name=\"csrf\" value=\"").expect("csrf field") + 19;
    html[i..].split('"').next().unwrap().to_string()
}

pub fn location(headers: &[(String, String)]) -> String {
    headers
        .iter()
        .find(|(k, _)| k == "location")
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

pub async fn app(db: &TestDb) -> axum::Router {
    api::app(AppState {
        registry: db.registry.clone(),
    })
}

/// The fields of a 国内転入 of two synthetic persons.
pub fn move_in_fields() -> Vec<(&'static str, &'static str)> {
    vec![
        ("type", "move_in"),
        ("effective_date", "令和6年4月1日"),
        ("input_place", "市民課窓口"),
        ("p0_name", "架空　太郎"),
        ("p0_name_kana", "カクウ　タロウ"),
        ("p0_birth_date", "昭和55年5月5日"),
        ("p0_sex", "male"),
        ("p0_relationship", "世帯主"),
        ("p0_my_number", "123456789018"),
        ("p1_name", "架空　花子"),
        ("p1_name_kana", "カクウ　ハナコ"),
        ("p1_birth_date", "昭和57年7月7日"),
        ("p1_sex", "female"),
        ("p1_relationship", "妻"),
        ("household_mode", "new"),
        ("address", "東京都府中市宮西町二丁目24番地"),
        ("postal_code", "183-0056"),
        ("previous_address", "東京都調布市小島町一丁目1番地"),
    ]
}

async fn a_clerk_enters_and_a_supervisor_approves(db: TestDb) {
    let db = db.with_tenants().await;
    staff(&db, FUCHU, "clerk", Role::Clerk).await;
    staff(&db, FUCHU, "boss", Role::Supervisor).await;
    let router = app(&db).await;
    let clerk = Session::login(&router, FUCHU, "clerk").await;
    // A form with a bad date comes back with the field named and nothing queued.
    let mut bad = move_in_fields();
    bad[1] = ("effective_date", "令和99年99月1日");
    let (s, _, body) = clerk.post("/ui/entry", &bad).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body.contains("form-error"), "{body}");
    // A good one is first shown for confirmation, nothing entered yet ...
    let (s, _, body) = clerk.post("/ui/entry", &move_in_fields()).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert!(body.contains("confirm-enter"), "{body}");
    assert!(body.contains("架空　花子"), "{body}");
    let (_, _, list) = clerk.get("/ui/approvals").await;
    assert!(!list.contains("架空"), "{list}");
    // ... then queued from the confirmation, not committed.
    let mut confirmed = move_in_fields();
    confirmed.push(("step", "enter"));
    let (s, h, body) = clerk.post("/ui/entry", &confirmed).await;
    assert_eq!(s, StatusCode::SEE_OTHER, "{body}");
    assert_eq!(location(&h), "/ui/approvals/1?done=entered");
    assert!(
        db.registry
            .search(
                &FUCHU.parse().unwrap(),
                &machi::service::registry::SearchParams {
                    name: Some("架空".into()),
                    limit: 10,
                    ..Default::default()
                },
                &Actor::system("t"),
            )
            .await
            .unwrap()
            .rows
            .is_empty(),
        "a provisional change is not in the registry"
    );
    // The clerk cannot approve their own entry.
    let (s, _, _) = clerk
        .post("/ui/approvals/1/decide", &[("action", "approve")])
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // Without the CSRF token nothing happens.
    let boss = Session::login(&router, FUCHU, "boss").await;
    let (s, _, _) = send(
        &router,
        "POST",
        "/ui/approvals/1/decide",
        Some(&boss.cookie),
        Some("action=approve&csrf=forged"),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _, page) = boss.get("/ui/approvals").await;
    assert_eq!(s, StatusCode::OK);
    assert!(page.contains("国内転入: 架空　太郎、架空　花子"), "{page}");
    assert!(
        !page.contains("123456789018"),
        "個人番号 never shown in the queue"
    );
    let (_, _, pending) = boss.get("/ui/approvals/1").await;
    // The review shows that a 個人番号 is recorded, never the number; the
    // new persons' 宛名番号 is given on approval.
    assert!(pending.contains("登録あり") && !pending.contains("123456789018"));
    assert!(pending.contains("宛名番号は承認時に付番"), "{pending}");
    let (s, h, _) = boss
        .post("/ui/approvals/1/decide", &[("action", "approve")])
        .await;
    assert_eq!(
        (s, location(&h).as_str()),
        (StatusCode::SEE_OTHER, "/ui/approvals/1?done=approved")
    );
    // Now it is a fact, seen by search and on the resident page.
    let (_, _, found) = clerk
        .get("/ui/search?name=%E3%81%8B%E3%81%8F%E3%81%86")
        .await;
    assert!(found.contains("架空　太郎"), "{found}");
    let a1 = machi_domain::ids::AddresseeNumber::from_serial(1)
        .unwrap()
        .to_string();
    let (s, _, record) = clerk.get(&format!("/ui/residents/{a1}")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(record.contains("国内転入") && record.contains("************"));
    assert!(!record.contains("123456789018"));
    // Approving twice is refused.
    let (s, _, _) = boss
        .post("/ui/approvals/1/decide", &[("action", "approve")])
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    // The supervisor may reveal the number; the reveal is logged as such.
    let (s, _, shown) = boss
        .post(&format!("/ui/residents/{a1}/my-number"), &[])
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(shown.contains("123456789018"));
    let (s, _, _) = clerk
        .post(&format!("/ui/residents/{a1}/my-number"), &[])
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "a clerk may not reveal");
    let (_, _, log) = boss.get("/ui/audit?function=read.my_number").await;
    assert!(
        log.contains("read.my_number") && log.contains("あり"),
        "{log}"
    );
    let (_, _, log) = boss.get("/ui/audit").await;
    for f in [
        "change.provisional",
        "change.approve",
        "change.move_in",
        "read.search",
        "read.resident",
        "login",
    ] {
        assert!(log.contains(f), "{f} missing from the access log");
    }
    // A clerk has no access-log view; the CIO sees counts only.
    let (s, _, _) = clerk.get("/ui/audit").await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    staff(&db, FUCHU, "cio", Role::Cio).await;
    let cio = Session::login(&router, FUCHU, "cio").await;
    let (s, _, stats) = cio.get("/ui/stats").await;
    assert_eq!(s, StatusCode::OK);
    assert!(!stats.contains("架空"));
    let (s, _, _) = cio.get(&format!("/ui/residents/{a1}")).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _, _) = cio.get("/ui/search?name=x").await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // Neither the provisional nor the committed change left the number in clear.
    for (table, rows) in db.raw_dump().await {
        for row in rows {
            for cell in row.into_iter().flatten() {
                assert!(!cell.contains("123456789018"), "plain 個人番号 in {table}");
            }
        }
    }
    // The chain still verifies with all of this in it.
    let verdict = db
        .registry
        .verify_audit(&FUCHU.parse().unwrap())
        .await
        .unwrap();
    assert!(
        verdict.first_bad.is_none() && verdict.entries > 10,
        "{verdict:?}"
    );
}

async fn sign_in_is_throttled_and_logged(db: TestDb) {
    let db = db.with_tenants().await;
    staff(&db, FUCHU, "clerk", Role::Clerk).await;
    let router = app(&db).await;
    for _ in 0..5 {
        let (s, _, body) = login_post(
            &router,
            &[
                ("tenant", FUCHU),
                ("login", "clerk"),
                ("password", "wrong-password-1"),
            ],
        )
        .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        assert!(body.contains("login-error"));
    }
    // The right password no longer helps within the window.
    let (s, h, _) = login_post(
        &router,
        &[
            ("tenant", FUCHU),
            ("login", "clerk"),
            ("password", PASSWORD),
        ],
    )
    .await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        !h.iter()
            .any(|(k, v)| k == "set-cookie" && v.starts_with("machi_session="))
    );
    // Another tenant's account of the same name is not affected; a wrong
    // tenant gives the same answer as a wrong password.
    staff(&db, AKISHIMA, "clerk", Role::Clerk).await;
    Session::login(&router, AKISHIMA, "clerk").await;
    let (s, _, _) = login_post(
        &router,
        &[
            ("tenant", "131016"),
            ("login", "clerk"),
            ("password", PASSWORD),
        ],
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let entries = machi::store::records::audit_entries;
    let fuchu: machi_domain::ids::MunicipalityCode = FUCHU.parse().unwrap();
    let t = fuchu.clone();
    let log = db
        .store
        .read(Some(&fuchu), move |tx| entries(tx, &t, 0, 100))
        .await
        .unwrap();
    let functions: Vec<&str> = log.iter().map(|e| e.entry.function.as_str()).collect();
    assert_eq!(
        functions.iter().filter(|f| **f == "login.failed").count(),
        5,
        "{functions:?}"
    );
    assert!(functions.contains(&"login.throttled"));
    // Pages without a session send the person to the login page.
    let (s, h, _) = send(&router, "GET", "/ui/search", None, None).await;
    assert_eq!(
        (s, location(&h).as_str()),
        (StatusCode::SEE_OTHER, "/login")
    );
}

async fn english_switch_and_keyboard_markup(db: TestDb) {
    let db = db.with_tenants().await;
    staff(&db, FUCHU, "clerk", Role::Clerk).await;
    let router = app(&db).await;
    let clerk = Session::login(&router, FUCHU, "clerk").await;
    let (_, _, ja) = clerk.get("/ui/search").await;
    assert!(ja.contains("住民検索") && ja.contains("lang=\"ja\""));
    assert!(ja.contains("accesskey=\"s\"") && ja.contains("class=\"skip\""));
    assert!(
        ja.contains("<label for=\"name\">"),
        "every field has a label"
    );
    let (s, h, _) = send(&router, "GET", "/lang?to=en", Some(&clerk.cookie), None).await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let lang = h
        .iter()
        .find(|(k, v)| k == "set-cookie" && v.starts_with("machi_lang="))
        .map(|(_, v)| v.split(';').next().unwrap().to_string())
        .unwrap();
    let cookie = format!("{}; {lang}", clerk.cookie);
    let (_, _, en) = send(&router, "GET", "/ui/search", Some(&cookie), None).await;
    assert!(en.contains("Resident search") && en.contains("lang=\"en\""));
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

async fn certificates_are_issued_verified_and_blocked_for_protected_persons(db: TestDb) {
    let db = db.with_tenants().await;
    let fuchu: machi_domain::ids::MunicipalityCode = FUCHU.parse().unwrap();
    staff(&db, FUCHU, "clerk", Role::Clerk).await;
    staff(&db, FUCHU, "officer", Role::SupportOfficer).await;
    db.registry
        .set_issuer(&fuchu, "府中市長", "架空　太一", &Actor::system("setup"))
        .await
        .unwrap();
    let req: machi_domain::change::ChangeRequest =
        serde_json::from_value(crate::contract::takahashi_family()).unwrap();
    let out = db
        .registry
        .submit(&fuchu, &req, &Actor::system("setup"))
        .await
        .unwrap();
    let a1 = out.rows[0].record.addressee_number.to_string();
    let router = app(&db).await;
    let clerk = Session::login(&router, FUCHU, "clerk").await;
    let officer = Session::login(&router, FUCHU, "officer").await;

    let issue = [
        ("person", a1.as_str()),
        ("kind", "resident_copy"),
        ("head_and_relationship", "1"),
    ];
    let (s, h, pdf) = crate::ui::issue_pdf(&clerk, &issue).await;
    assert_eq!(s, StatusCode::OK, "{pdf}");
    assert_eq!(header(&h, "content-type"), "application/pdf");
    assert!(pdf.starts_with("%PDF"));
    let number =
        String::from_utf8(hex::decode(header(&h, "x-machi-issue-number")).unwrap()).unwrap();
    let code = header(&h, "x-machi-verification-code").to_string();
    assert!(number.contains("府中市"), "{number}");
    // The public page confirms it, and only with the right code.
    let check = |code: String| {
        let router = router.clone();
        let number = number.clone();
        async move {
            send(
                &router,
                "POST",
                "/verify",
                None,
                Some(&form(&[
                    ("tenant", FUCHU),
                    ("number", &number),
                    ("code", &code),
                ])),
            )
            .await
        }
    };
    let (s, _, page) = check(code.clone()).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        page.contains("一致します") && page.contains("住民票の写し"),
        "{page}"
    );
    assert!(!page.contains("髙橋"), "the public page names nobody");
    let (_, _, page) = check("WRONGCODE1".into()).await;
    assert!(page.contains("一致する発行記録がありません"));

    // A support measure blocks viewing and issuing.
    let (s, h, body) = officer
        .post(
            "/ui/support/new",
            &[
                ("requester", a1.as_str()),
                ("filed_on", "2026-11-01"),
                ("affair_copy", "1"),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::SEE_OTHER, "{body}");
    let measure = location(&h);
    assert!(measure.starts_with("/ui/support/"), "{measure}");
    let (s, _, body) = clerk.get(&format!("/ui/residents/{a1}")).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(body.contains(&a1) && !body.contains("髙橋"), "{body}");
    // In search results the whole household is restricted alike, so that
    // nobody can tell which member is protected; no address shows (j380,
    // j410, j440).
    let (_, _, found) = clerk
        .get("/ui/search?name=%E3%81%9F%E3%81%8B%E3%81%AF%E3%81%97")
        .await;
    assert!(
        found.contains("支援措置対象：閲覧には解除が必要です"),
        "{found}"
    );
    assert_eq!(found.matches("class=\"restricted\"").count(), 3, "{found}");
    assert_eq!(
        found.matches("宮西町").count(),
        0,
        "no address shows: {found}"
    );
    let (s, _, _) = crate::ui::issue_pdf(&clerk, &issue).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // The officer releases one issue for the clerk: one certificate, then blocked again.
    let id = measure
        .trim_start_matches("/ui/support/")
        .split('?')
        .next()
        .unwrap()
        .to_string();
    let (s, _, body) = officer
        .post(
            &format!("/ui/support/{id}/act"),
            &[
                ("action", "release"),
                ("person", a1.as_str()),
                ("purpose", "issue"),
                ("for_operator", "clerk"),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::SEE_OTHER, "{body}");
    let (s, _, pdf) = crate::ui::issue_pdf(&clerk, &issue).await;
    assert_eq!(s, StatusCode::OK);
    assert!(pdf.starts_with("%PDF"));
    let (s, _, _) = crate::ui::issue_pdf(&clerk, &issue).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "a release serves one request");
    let (s, _, _) = clerk.get(&format!("/ui/residents/{a1}")).await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "an issue release does not open viewing"
    );
    let t = fuchu.clone();
    let log = db
        .store
        .read(Some(&fuchu), move |tx| {
            machi::store::records::audit_entries(tx, &t, 0, 1000)
        })
        .await
        .unwrap();
    let functions: Vec<&str> = log.iter().map(|e| e.entry.function.as_str()).collect();
    for f in [
        "certificate.issue",
        "certificate.verify",
        "support.register",
        "support.release",
        "support.blocked",
    ] {
        assert!(functions.contains(&f), "{f} not in {functions:?}");
    }
    assert_eq!(
        functions
            .iter()
            .filter(|f| **f == "certificate.issue")
            .count(),
        2
    );
}

async fn a_disabled_account_loses_its_sessions(db: TestDb) {
    let db = db.with_tenants().await;
    staff(&db, FUCHU, "clerk", Role::Clerk).await;
    staff(&db, FUCHU, "admin", Role::TenantAdmin).await;
    let router = app(&db).await;
    let clerk = Session::login(&router, FUCHU, "clerk").await;
    let admin = Session::login(&router, FUCHU, "admin").await;
    // The tenant admin sees no personal data.
    let (s, _, _) = admin.get("/ui/search?name=x").await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _, page) = admin
        .post(
            "/ui/admin/accounts/state",
            &[("login", "clerk"), ("action", "disable")],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{page}");
    let (s, h, _) = clerk.get("/ui/search").await;
    assert_eq!(
        (s, location(&h).as_str()),
        (StatusCode::SEE_OTHER, "/login")
    );
    let (s, _, _) = login_post(
        &router,
        &[
            ("tenant", FUCHU),
            ("login", "clerk"),
            ("password", PASSWORD),
        ],
    )
    .await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "a disabled account cannot sign in"
    );
    let (s, _, page) = admin
        .post(
            "/ui/admin/accounts/state",
            &[("login", "admin"), ("action", "disable")],
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{page}");
}

async fn parallel_guesses_do_not_pass_the_throttle(db: TestDb) {
    let db = db.with_tenants().await;
    staff(&db, FUCHU, "clerk", Role::Clerk).await;
    let fuchu: machi_domain::ids::MunicipalityCode = FUCHU.parse().unwrap();
    let mut tasks = vec![];
    for i in 0..20 {
        let r = db.registry.clone();
        let t = fuchu.clone();
        tasks.push(tokio::spawn(async move {
            r.login(Some(&t), "clerk", &format!("wrong-password-{i}"), "T")
                .await
        }));
    }
    let mut checked = 0;
    let mut throttled = 0;
    for t in tasks {
        match t.await.unwrap() {
            Err(machi::service::ServiceError::LoginFailed) => checked += 1,
            Err(machi::service::ServiceError::TooManyAttempts { .. }) => throttled += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        (checked, throttled),
        (5, 15),
        "only five guesses may be checked"
    );
    // Upper case or spaces around the login are the same account.
    assert!(matches!(
        db.registry
            .login(Some(&fuchu), " CLERK ", PASSWORD, "T")
            .await,
        Err(machi::service::ServiceError::TooManyAttempts { .. })
    ));
}

async fn protected_persons_stay_hidden_in_provisional_changes_and_certificates(db: TestDb) {
    let db = db.with_tenants().await;
    let fuchu: machi_domain::ids::MunicipalityCode = FUCHU.parse().unwrap();
    staff(&db, FUCHU, "clerk", Role::Clerk).await;
    staff(&db, FUCHU, "clerk2", Role::Clerk).await;
    staff(&db, FUCHU, "officer", Role::SupportOfficer).await;
    db.registry
        .set_issuer(&fuchu, "府中市長", "架空　太一", &Actor::system("setup"))
        .await
        .unwrap();
    let req: machi_domain::change::ChangeRequest =
        serde_json::from_value(crate::contract::takahashi_family()).unwrap();
    let out = db
        .registry
        .submit(&fuchu, &req, &Actor::system("setup"))
        .await
        .unwrap();
    let persons: Vec<String> = out
        .rows
        .iter()
        .map(|r| r.record.addressee_number.to_string())
        .collect();
    let a1 = persons[0].clone();
    let router = app(&db).await;
    let officer = Session::login(&router, FUCHU, "officer").await;
    let (s, _, _) = officer
        .post(
            "/ui/support/new",
            &[
                ("requester", a1.as_str()),
                ("filed_on", "2026-11-01"),
                ("affair_copy", "1"),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    // A clerk enters the family's 転居 at the counter, to a secret address:
    // a change naming a protected person needs a release of viewing (j410
    // 異動入力の抑止), which the officer grants for this one entry.
    let (s, _, _) = officer
        .post(
            "/ui/support/1/act",
            &[
                ("action", "release"),
                ("person", a1.as_str()),
                ("purpose", "view"),
                ("for_operator", "clerk"),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let clerk = Session::login(&router, FUCHU, "clerk").await;
    let all = persons.join(" ");
    let (s, _, body) = clerk
        .post(
            "/ui/entry",
            &[
                ("type", "move_within"),
                ("step", "enter"),
                ("effective_date", "2026-11-20"),
                ("persons", all.as_str()),
                ("address", "東京都府中市秘密町九丁目9番地"),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::SEE_OTHER, "{body}");
    // Another clerk sees neither the queue entry's names nor its content.
    let clerk2 = Session::login(&router, FUCHU, "clerk2").await;
    let (s, _, list) = clerk2.get("/ui/approvals").await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        list.contains("支援措置対象者を含むため非表示") && !list.contains("髙橋"),
        "{list}"
    );
    let (s, _, page) = clerk2.get("/ui/approvals/1").await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(!page.contains("秘密町"), "{page}");
    // A clerk may not print a 個人番号 on a certificate; a supervisor-level role may.
    let (s, _, _) = clerk2
        .post(
            "/ui/certificates",
            &[
                ("person", persons[1].as_str()),
                ("kind", "resident_copy"),
                ("scope", "person"),
                ("my_number", "1"),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _, form) = clerk2
        .get(&format!("/ui/certificates/new?person={}", persons[1]))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        !form.contains("id=\"my_number\""),
        "the option is not offered to a clerk"
    );
}

async fn the_login_form_refuses_a_post_from_elsewhere(db: TestDb) {
    let db = db.with_tenants().await;
    staff(&db, FUCHU, "clerk", Role::Clerk).await;
    let router = app(&db).await;
    // Right password, but no form token (another site's form): refused.
    let (s, h, _) = send(
        &router,
        "POST",
        "/login",
        None,
        Some(&form(&[
            ("tenant", FUCHU),
            ("login", "clerk"),
            ("password", PASSWORD),
        ])),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(
        !h.iter()
            .any(|(k, v)| k == "set-cookie" && v.starts_with("machi_session="))
    );
}
