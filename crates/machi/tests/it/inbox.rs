//! 申請管理 (issue 11, items 5 and 6): filings made on the real portal,
//! pulled and imported by the back office, then listed, matched, sent
//! back, rejected and approved through the API and the staff UI; approval
//! writes the record through the counter's path, issues the certificate or
//! publishes the linkage event, once.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use machi::api::{self, AppState};
use machi::portal::pull_once;
use machi::service::Actor;
use machi::service::inbox::PortalLink;
use machi_domain::access::Role;
use machi_portal::seal::OpeningKey;
use machi_portal::signing::{SignatureFiles, Signing};
use machi_portal::{Config, Portal};
use machi_sign::demo::{CardSpec, DemoCa, DemoCard, SignOptions, generate_key};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tower::ServiceExt;

use crate::support::{FUCHU, TestDb, code};
use crate::ui::{Session, location, staff};

both_backends!(
    a_supervisor_approves_a_tenshutsu_once_through_the_api,
    a_clerks_approval_waits_for_a_supervisors_decision_in_the_ui,
    a_juminhyo_request_by_post_issues_one_certificate,
    a_survey_is_handed_off_and_corrections_and_rejections_reach_the_portal,
    roles_and_bad_input_are_refused_in_both_languages,
    matching_hides_protected_persons_as_search_does,
    a_withdrawn_acceptance_stops_the_decision_too,
    a_card_signs_only_for_its_holders_household,
    a_correction_is_sent_again_linked_both_ways_and_closed,
    a_correction_request_answered_twice_is_approved_once,
);

pub const TOKEN: &str = "portal-pull-token-for-inbox-tests";
const BOUNDARY: &str = "----machi-it-inbox";

/// A synthetic signing CA (DEMO, never a real JPKI anchor), its CRL, and
/// 髙橋 一郎's card.
pub struct Pki {
    pub ca: Vec<u8>,
    pub crl: Vec<u8>,
    pub card: DemoCard,
}

pub fn pki() -> &'static Pki {
    static P: std::sync::OnceLock<Pki> = std::sync::OnceLock::new();
    P.get_or_init(|| {
        let now = chrono::Utc::now();
        let from = now - chrono::Duration::days(365);
        let ca = DemoCa::new(
            generate_key().unwrap(),
            "inbox",
            from,
            from + chrono::Duration::days(3650),
        )
        .unwrap();
        let card = ca
            .issue(
                &CardSpec::new(
                    1,
                    "髙橋　一郎",
                    "1",
                    "319890107",
                    "東京都府中市宮西町二丁目24番地",
                    from,
                ),
                &generate_key().unwrap(),
            )
            .unwrap();
        let crl = ca
            .crl(
                now - chrono::Duration::days(1),
                now + chrono::Duration::days(30),
                &[],
            )
            .unwrap();
        Pki {
            ca: ca.cert_der(),
            crl,
            card,
        }
    })
}

/// The portal's and the back office's signature checks: the same anchor
/// and CRL, each loaded by its side.
pub fn signing() -> Signing {
    Signing::load(
        SignatureFiles::default(),
        vec![pki().ca.clone()],
        vec![pki().crl.clone()],
    )
    .unwrap()
}

pub struct Running {
    pub base: String,
    pub portal: Arc<Portal>,
    pub key: OpeningKey,
    _dir: tempfile::TempDir,
}

pub async fn portal() -> Running {
    let dir = tempfile::tempdir().unwrap();
    let key = OpeningKey::generate().unwrap();
    let mut config = Config::new(key.public());
    config.pull_token_sha256 = Some(hex::encode(Sha256::digest(TOKEN.as_bytes())));
    config.signing = Some(Arc::new(signing()));
    let portal = Portal::open(&dir.path().join("portal.db"), config).unwrap();
    portal
        .publish_shipped(FUCHU, "府中市", "Fuchu City")
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = machi_portal::router(portal.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Running {
        base,
        portal,
        key,
        _dir: dir,
    }
}

pub fn client() -> reqwest::Client {
    machi::service::hooks::http_client(std::time::Duration::from_secs(30)).unwrap()
}

/// One answer posted to a portal page: a text value, or a file.
pub enum Part<'a> {
    Text(&'a str, String),
    File(&'a str, &'a str, &'a str, Vec<u8>),
}

pub(crate) fn t<'a>(k: &'a str, v: impl Into<String>) -> Part<'a> {
    Part::Text(k, v.into())
}

/// Files a procedure on the portal's pages as a browser would; returns
/// the 受付番号.
pub async fn file(base: &str, procedure: &str, pages: Vec<(&str, Vec<Part<'_>>)>) -> String {
    file_as(base, procedure, pages, None).await
}

/// [`file`], signing with `card` before submitting (the portal's signing
/// step: the document to sign, then the detached CMS uploaded).
pub async fn file_as(
    base: &str,
    procedure: &str,
    pages: Vec<(&str, Vec<Part<'_>>)>,
    card: Option<&DemoCard>,
) -> String {
    let c = client();
    let r = c
        .post(format!("{base}/t/{FUCHU}/{procedure}/start"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    send_pages(base, &cookie, pages, card).await
}

/// Posts the pages of the draft named by `cookie`, signs with `card` when
/// given, and submits; returns the 受付番号.
pub async fn send_pages(
    base: &str,
    cookie: &str,
    pages: Vec<(&str, Vec<Part<'_>>)>,
    card: Option<&DemoCard>,
) -> String {
    let c = client();
    for (page, parts) in pages {
        let mut body: Vec<u8> = Vec::new();
        for p in parts {
            match p {
                Part::Text(k, v) => body.extend_from_slice(
                    format!(
                        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"
                    )
                    .as_bytes(),
                ),
                Part::File(k, name, kind, bytes) => {
                    body.extend_from_slice(
                        format!(
                            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{k}\"; filename=\"{name}\"\r\nContent-Type: {kind}\r\n\r\n"
                        )
                        .as_bytes(),
                    );
                    body.extend_from_slice(&bytes);
                    body.extend_from_slice(b"\r\n");
                }
            }
        }
        body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
        let r = c
            .post(format!("{base}/d/p/{page}"))
            .header("cookie", cookie)
            .header(
                "content-type",
                format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303, "{page}: {}", r.text().await.unwrap());
    }
    if let Some(card) = card {
        // Opening the signing page hands out the nonce the document binds.
        let r = c
            .get(format!("{base}/d/sign"))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let doc = c
            .get(format!("{base}/d/sign/document"))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let cms = card
            .sign(
                &doc,
                SignOptions {
                    detached: true,
                    pss: false,
                    signing_time: chrono::Utc::now() - chrono::Duration::minutes(1),
                },
            )
            .unwrap();
        let mut body: Vec<u8> = format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"_action\"\r\n\r\nupload\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"signature\"; filename=\"filing.p7s\"\r\n\r\n"
        )
        .into_bytes();
        body.extend_from_slice(&cms);
        body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
        let r = c
            .post(format!("{base}/d/sign"))
            .header("cookie", cookie)
            .header(
                "content-type",
                format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303, "sign: {}", r.text().await.unwrap());
    }
    let r = c
        .post(format!("{base}/d/submit"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "submit");
    let to = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(to.starts_with("/status/"), "{to}");
    to.trim_start_matches("/status/")
        .split('?')
        .next()
        .unwrap()
        .to_owned()
}

pub(crate) fn date_parts<'a>(key: &'a str, d: chrono::NaiveDate) -> Vec<Part<'a>> {
    use chrono::Datelike;
    // Field names as the portal's date inputs post them.
    let k = |s: &str| -> &'a str { Box::leak(format!("{key}.{s}").into_boxed_str()) };
    vec![
        t(k("era"), "seireki"),
        t(k("year"), d.year().to_string()),
        t(k("month"), d.month().to_string()),
        t(k("day"), d.day().to_string()),
    ]
}

/// The day in Japan.
pub fn today() -> chrono::NaiveDate {
    chrono::Utc::now()
        .with_timezone(&chrono::FixedOffset::east_opt(9 * 3600).unwrap())
        .date_naive()
}

/// The 髙橋 family (see `contract::takahashi_family`) files its 転出 on the
/// portal: all three move on `moving`.
pub async fn file_tenshutsu(base: &str, moving: chrono::NaiveDate) -> String {
    let born = |y, m, d| chrono::NaiveDate::from_ymd_opt(y, m, d).unwrap();
    file_tenshutsu_of(
        base,
        moving,
        &[
            ("髙橋　一郎", "タカハシ　イチロウ", born(1989, 1, 7)),
            ("髙橋　京子", "タカハシ　キョウコ", born(1989, 1, 8)),
            ("髙橋　翔", "タカハシ　ショウ", born(2015, 6, 1)),
        ],
    )
    .await
}

/// A 転出届 signed with 髙橋 一郎's card naming `people` (name, kana,
/// birth date) as the persons moving.
pub async fn file_tenshutsu_of(
    base: &str,
    moving: chrono::NaiveDate,
    people: &[(&str, &str, chrono::NaiveDate)],
) -> String {
    let mut members = vec![t("members.count", people.len().to_string())];
    for (i, &(name, kana, b)) in people.iter().enumerate() {
        let k =
            |s: &str| -> &'static str { Box::leak(format!("members.{i}.{s}").into_boxed_str()) };
        members.push(t(k("name"), name));
        members.push(t(k("kana"), kana));
        members.extend(date_parts(k("birth_date"), b));
    }
    file_as(
        base,
        "tenshutsu",
        vec![
            (
                "applicant",
                vec![
                    t("applicant_name", "髙橋　一郎"),
                    t("applicant_kana", "タカハシ　イチロウ"),
                    t("phone", "042-000-1111"),
                ],
            ),
            ("moving", date_parts("moving_date", moving)),
            (
                "destination",
                vec![
                    t("destination.postal", "100-0001"),
                    t("destination.address", "東京都千代田区千代田一丁目架空1番"),
                ],
            ),
            ("members", members),
            (
                "visit",
                date_parts("visit_date", moving + chrono::Duration::days(3)),
            ),
        ],
        Some(&pki().card),
    )
    .await
}

/// The app, telling the portal each filing's status.
pub fn app(db: &TestDb, portal_base: &str) -> axum::Router {
    api::app(AppState {
        registry: db.registry.clone().with_portal_link(Some(PortalLink {
            url: portal_base.to_string(),
            token: TOKEN.to_string(),
            client: client(),
        })),
    })
}

/// A JSON call with a staff session (cookie and CSRF header).
pub async fn call(
    s: &Session,
    method: &str,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::COOKIE, &s.cookie)
        .header("x-csrf-token", &s.csrf);
    let body = match body {
        Some(b) => {
            req = req.header(header::CONTENT_TYPE, "application/json");
            Body::from(b.to_string())
        }
        None => Body::empty(),
    };
    let res = s
        .router
        .clone()
        .oneshot(req.body(body).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn family(db: &TestDb) -> Vec<String> {
    let req: machi_domain::change::ChangeRequest =
        serde_json::from_value(crate::contract::takahashi_family()).unwrap();
    let out = db
        .registry
        .submit(&code(FUCHU), &req, &Actor::system("setup"))
        .await
        .unwrap();
    out.rows
        .iter()
        .map(|r| r.record.addressee_number.to_string())
        .collect()
}

pub(crate) async fn pull(db: &TestDb, p: &Running) {
    let out = pull_once(
        &client(),
        &p.base,
        TOKEN,
        &db.store,
        &p.key,
        Some(&signing()),
        100,
        chrono::Utc::now().timestamp(),
    )
    .await
    .unwrap();
    assert!(out.refused.is_empty(), "{out:?}");
}

pub async fn status_page(p: &Running, receipt: &str) -> String {
    client()
        .get(format!("{}/status/{receipt}", p.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn count(db: &TestDb, sql: &str) -> i64 {
    let fuchu = code(FUCHU);
    let sql = sql.to_string();
    db.store
        .read(Some(&fuchu), move |tx| {
            tx.query_one(&sql, &[FUCHU.into()])?.int(0)
        })
        .await
        .unwrap()
}

const F: &str = "/api/v1/tenants/132063/filings";

/// Matches every person of filing `id` to the first candidate, via the API.
pub(crate) async fn match_all(s: &Session, id: i64) -> Vec<String> {
    let (st, cands) = call(s, "GET", &format!("{F}/{id}/candidates"), None).await;
    assert_eq!(st, StatusCode::OK, "{cands}");
    let mut chosen = vec![];
    for p in cands.as_array().unwrap() {
        let a = p["candidates"][0]["addressee_number"]
            .as_str()
            .unwrap_or_else(|| panic!("no candidate for {p}"))
            .to_string();
        let (st, body) = call(
            s,
            "POST",
            &format!("{F}/{id}/match"),
            Some(json!({ "party": p["key"], "addressee_number": a })),
        )
        .await;
        assert_eq!(st, StatusCode::OK, "{body}");
        chosen.push(a);
    }
    chosen
}

async fn a_supervisor_approves_a_tenshutsu_once_through_the_api(db: TestDb) {
    let db = db.with_tenants().await;
    let persons = family(&db).await;
    staff(&db, FUCHU, "boss", Role::Supervisor).await;
    let p = portal().await;
    let moving = today() + chrono::Duration::days(7);
    let receipt = file_tenshutsu(&p.base, moving).await;
    pull(&db, &p).await;
    assert!(
        p.portal.store.pending(10).unwrap().is_empty(),
        "acknowledged: the portal keeps no sealed copy"
    );
    let router = app(&db, &p.base);
    let boss = Session::login(&router, FUCHU, "boss").await;

    // Listed with its filters.
    let (st, list) = call(
        &boss,
        "GET",
        &format!("{F}?procedure=tenshutsu&status=received&signed=true"),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{list}");
    assert_eq!(list["filings"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["filings"][0]["receipt"], receipt.as_str());
    assert_eq!(list["filings"][0]["applicant_name"], "髙橋　一郎");
    assert_eq!(list["filings"][0]["procedure_title_ja"], "転出届");
    let (_, none) = call(&boss, "GET", &format!("{F}?signed=false"), None).await;
    assert!(none["filings"].as_array().unwrap().is_empty());
    let (_, none) = call(&boss, "GET", &format!("{F}?procedure=juminhyo"), None).await;
    assert!(none["filings"].as_array().unwrap().is_empty());
    let (_, none) = call(&boss, "GET", &format!("{F}?received_to=2000-01-01"), None).await;
    assert!(none["filings"].as_array().unwrap().is_empty());
    let day = today().format("%Y-%m-%d").to_string();
    let (_, one) = call(
        &boss,
        "GET",
        &format!("{F}?received_from={day}&received_to={day}"),
        None,
    )
    .await;
    assert_eq!(one["filings"].as_array().unwrap().len(), 1, "{one}");

    // The filing as a person reads it, with the signer's certificate items.
    let (st, f) = call(&boss, "GET", &format!("{F}/1"), None).await;
    assert_eq!(st, StatusCode::OK, "{f}");
    assert_eq!(f["signature_ja"], "署名を確認済み");
    assert_eq!(
        f["signature"]["certificate"]["basic_four"]["name"],
        "髙橋　一郎"
    );
    assert_eq!(f["parties"][0]["birth_date_wareki"], "昭和64年1月7日");
    let text = f["answers"].to_string();
    assert!(
        text.contains("〒100-0001 東京都千代田区千代田一丁目架空1番"),
        "{text}"
    );

    // Taken up: the citizen sees it under review.
    let (st, _) = call(
        &boss,
        "POST",
        &format!("{F}/1/assign"),
        Some(json!({ "assigned_to": "boss" })),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert!(status_page(&p, &receipt).await.contains("審査中"));
    let (_, mine) = call(&boss, "GET", &format!("{F}?assigned_to=boss"), None).await;
    assert_eq!(mine["filings"].as_array().unwrap().len(), 1);

    // Not approvable before every person is matched.
    let (st, e) = call(&boss, "POST", &format!("{F}/1/approve"), Some(json!({}))).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{e}");
    assert_eq!(e["code"], "filing_not_matched");
    assert!(e["message_ja"].as_str().unwrap().contains("照合"));
    let chosen = match_all(&boss, 1).await;
    assert_eq!(
        chosen, persons,
        "each member matched to the registry's person"
    );

    let changes_before = count(&db, "SELECT COUNT(*) FROM changes WHERE tenant = $1").await;
    let (st, a) = call(&boss, "POST", &format!("{F}/1/approve"), Some(json!({}))).await;
    assert_eq!(st, StatusCode::OK, "{a}");
    assert_eq!(a["status"], "approved");
    assert_eq!(a["already"], false);
    let change_id = a["outcome"]["change_id"].as_i64().unwrap();
    // Double click, a retry: one effect.
    let (st, again) = call(&boss, "POST", &format!("{F}/1/approve"), Some(json!({}))).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(again["already"], true);
    assert_eq!(again["outcome"]["change_id"], change_id);
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM changes WHERE tenant = $1").await,
        changes_before + 1
    );
    // The record shows the 転出 on the planned date, for all three.
    for a in &persons {
        let (st, r) = call(
            &boss,
            "GET",
            &format!("/api/v1/tenants/132063/residents/{a}"),
            None,
        )
        .await;
        assert_eq!(st, StatusCode::OK, "{r}");
        assert_eq!(r["record"]["status"], "moved_out", "{r}");
    }
    let (_, ch) = call(
        &boss,
        "GET",
        &format!("/api/v1/tenants/132063/changes/{change_id}"),
        None,
    )
    .await;
    assert_eq!(ch["reason"], "move_out", "{ch}");
    assert_eq!(
        ch["effective_date"]["iso"],
        moving.format("%Y-%m-%d").to_string(),
        "{ch}"
    );
    // The citizen sees it done.
    assert!(status_page(&p, &receipt).await.contains("承認されました"));
    // Each step is in the access log, which still verifies.
    for function in [
        "filing.list",
        "filing.view",
        "filing.assign",
        "filing.match",
        "filing.approve",
        "change.move_out",
    ] {
        let n = count(
            &db,
            &format!(
                "SELECT COUNT(*) FROM audit_log WHERE tenant = $1 AND function = '{function}'"
            ),
        )
        .await;
        assert!(n >= 1, "{function} missing from the access log");
    }
    let verdict = db.registry.verify_audit(&code(FUCHU)).await.unwrap();
    assert!(verdict.first_bad.is_none(), "{verdict:?}");
}

async fn a_clerks_approval_waits_for_a_supervisors_decision_in_the_ui(db: TestDb) {
    let db = db.with_tenants().await;
    let persons = family(&db).await;
    staff(&db, FUCHU, "clerk", Role::Clerk).await;
    staff(&db, FUCHU, "boss", Role::Supervisor).await;
    db.registry
        .set_issuer(
            &code(FUCHU),
            "府中市長",
            "架空　太一",
            &Actor::system("setup"),
        )
        .await
        .unwrap();
    let p = portal().await;
    let receipt = file_tenshutsu(&p.base, today() + chrono::Duration::days(5)).await;
    pull(&db, &p).await;
    let router = app(&db, &p.base);
    let clerk = Session::login(&router, FUCHU, "clerk").await;

    // The menu counts the new filing; the inbox lists it in words.
    let (_, _, home) = clerk.get("/ui").await;
    assert!(
        home.contains("申請管理") && home.contains("新着 1"),
        "{home}"
    );
    let (st, _, list) = clerk.get("/ui/inbox?status=open").await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        list.contains("転出届") && list.contains("髙橋　一郎") && list.contains("新着"),
        "{list}"
    );
    let (st, _, list) = clerk
        .get("/ui/inbox?received_from=令和8年1月1日&signed=true")
        .await;
    assert_eq!(st, StatusCode::OK);
    assert!(list.contains("filing-1"), "{list}");
    let (_, _, page) = clerk.get("/ui/inbox/1").await;
    for expected in [
        "転出届",
        "昭和64年1月7日",
        "平成元年1月8日",
        "署名を確認済み",
        "署名用電子証明書の記載事項",
        "東京都府中市宮西町二丁目24番地",
        "この人と照合",
    ] {
        assert!(page.contains(expected), "{expected} missing: {page}");
    }
    let (st, h, _) = clerk
        .post("/ui/inbox/1/act", &[("action", "assign"), ("to", "clerk")])
        .await;
    assert_eq!(
        (st, location(&h).as_str()),
        (StatusCode::SEE_OTHER, "/ui/inbox/1?done=assigned")
    );
    for (i, a) in persons.iter().enumerate() {
        let party = format!("members.{i}");
        let (st, h, body) = clerk
            .post(
                "/ui/inbox/1/act",
                &[
                    ("action", "match"),
                    ("party", &party),
                    ("addressee_number", a),
                ],
            )
            .await;
        assert_eq!(st, StatusCode::SEE_OTHER, "{body}");
        assert_eq!(location(&h), "/ui/inbox/1?done=matched");
    }
    let (_, _, page) = clerk.get("/ui/inbox/1?done=matched").await;
    assert!(
        page.contains("照合済み") && page.contains("仮登録し、決裁者の決裁を待ちます"),
        "{page}"
    );
    // The clerk's approval enters the 転出 provisionally (仮登録, j530).
    let (st, h, _) = clerk
        .post("/ui/inbox/1/act", &[("action", "approve")])
        .await;
    assert_eq!(
        (st, location(&h).as_str()),
        (StatusCode::SEE_OTHER, "/ui/inbox/1?done=approved")
    );
    let (_, _, page) = clerk.get("/ui/inbox/1").await;
    assert!(
        page.contains("決裁待ち") && page.contains("仮登録を開く"),
        "{page}"
    );
    assert!(status_page(&p, &receipt).await.contains("審査中"));
    let (st, h, _) = clerk
        .post("/ui/inbox/1/act", &[("action", "approve")])
        .await;
    assert_eq!(
        (st, location(&h).as_str()),
        (StatusCode::SEE_OTHER, "/ui/inbox/1?done=already")
    );
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM pending_changes WHERE tenant = $1"
        )
        .await,
        1
    );
    // The supervisor decides it at 審査・決裁 as any counter entry.
    let boss = Session::login(&router, FUCHU, "boss").await;
    let (_, _, queue) = boss.get("/ui/approvals").await;
    assert!(
        queue.contains("国内転出") && queue.contains("髙橋　一郎"),
        "{queue}"
    );
    let (st, _, _) = boss
        .post("/ui/approvals/1/decide", &[("action", "approve")])
        .await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    let (_, _, page) = clerk.get("/ui/inbox/1").await;
    assert!(
        page.contains("承認済み") && page.contains("記録した異動を開く"),
        "{page}"
    );
    // The 転出証明書 data for the new town, without the 個人番号.
    assert!(
        page.contains("転出証明書情報") && page.contains("東京都千代田区千代田一丁目架空1番"),
        "{page}"
    );
    assert!(status_page(&p, &receipt).await.contains("承認されました"));
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM changes WHERE tenant = $1 AND reason = 'move_out'"
        )
        .await,
        1
    );
    // The access log says it in words.
    let (_, _, log) = boss.get("/ui/audit").await;
    for words in [
        "申請の承認",
        "申請者と住民の照合",
        "申請の担当設定",
        "申請による異動の決裁",
        "申請の参照",
    ] {
        assert!(log.contains(words), "{words} missing from the log page");
    }
}

async fn a_juminhyo_request_by_post_issues_one_certificate(db: TestDb) {
    let db = db.with_tenants().await;
    let persons = family(&db).await;
    staff(&db, FUCHU, "clerk", Role::Clerk).await;
    db.registry
        .set_issuer(
            &code(FUCHU),
            "府中市長",
            "架空　太一",
            &Actor::system("setup"),
        )
        .await
        .unwrap();
    let p = portal().await;
    let png = vec![
        0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xAE,
        0x42, 0x60, 0x82,
    ];
    let mut applicant = vec![
        t("applicant_name", "髙橋　京子"),
        t("applicant_kana", "タカハシ　キョウコ"),
        t("phone", "042-000-2222"),
    ];
    applicant.extend(date_parts(
        "applicant_birth_date",
        chrono::NaiveDate::from_ymd_opt(1989, 1, 8).unwrap(),
    ));
    let receipt = file(
        &p.base,
        "juminhyo",
        vec![
            ("applicant", applicant),
            (
                "address",
                vec![
                    t("applicant_address.postal", "183-0022"),
                    t(
                        "applicant_address.address",
                        "東京都府中市宮西町二丁目24番地",
                    ),
                ],
            ),
            ("scope", vec![t("scope", "self"), t("copies", "2")]),
            ("purpose", vec![t("purpose", "pension")]),
            (
                "id_document",
                vec![Part::File(
                    "id_document",
                    "card.png",
                    "image/png",
                    png.clone(),
                )],
            ),
        ],
    )
    .await;
    pull(&db, &p).await;
    let router = app(&db, &p.base);
    let clerk = Session::login(&router, FUCHU, "clerk").await;
    let (_, list) = call(
        &clerk,
        "GET",
        &format!("{F}?signed=false&procedure=juminhyo"),
        None,
    )
    .await;
    assert_eq!(list["filings"].as_array().unwrap().len(), 1, "{list}");
    let chosen = match_all(&clerk, 1).await;
    assert_eq!(chosen, vec![persons[1].clone()]);
    // The attachment is there for the clerk to look at.
    let (st, h, body) = crate::ui::send(
        &router,
        "GET",
        "/ui/inbox/1/files/id_document",
        Some(&clerk.cookie),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        h.iter()
            .any(|(k, v)| k == "content-type" && v == "image/png")
    );
    assert_eq!(body, String::from_utf8_lossy(&png));
    // Without saying which identity document was seen: refused, nothing issued.
    let (st, e) = call(&clerk, "POST", &format!("{F}/1/approve"), Some(json!({}))).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{e}");
    assert_eq!(e["code"], "identity_required");
    assert!(e["message_ja"].as_str().unwrap().contains("本人確認書類"));
    assert!(e["message_en"].as_str().unwrap().contains("identity"));
    let (st, e) = call(
        &clerk,
        "POST",
        &format!("{F}/1/approve"),
        Some(json!({ "identity": "library_card" })),
    )
    .await;
    assert_eq!(
        (st, e["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_identity"))
    );
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM certificates WHERE tenant = $1").await,
        0
    );
    let (st, a) = call(
        &clerk,
        "POST",
        &format!("{F}/1/approve"),
        Some(json!({ "identity": "drivers_licence" })),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{a}");
    assert_eq!(
        a["outcome"]["issue_numbers"].as_array().unwrap().len(),
        2,
        "two copies asked for"
    );
    let (_, again) = call(
        &clerk,
        "POST",
        &format!("{F}/1/approve"),
        Some(json!({ "identity": "drivers_licence" })),
    )
    .await;
    assert_eq!(again["already"], true);
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM certificates WHERE tenant = $1").await,
        2
    );
    let (_, _, page) = clerk.get("/ui/inbox/1").await;
    assert!(
        page.contains("郵送用に発行した証明書") && page.contains("発行した証明書（郵送用）を開く"),
        "{page}"
    );
    assert!(status_page(&p, &receipt).await.contains("承認されました"));
}

async fn file_survey(base: &str, comment: &str) -> String {
    file(
        base,
        "survey_internet",
        vec![
            ("age", vec![t("age_group", "a70")]),
            ("use", vec![t("uses_internet", "no")]),
            (
                "learning",
                vec![t("want_class", "maybe"), t("comment", comment)],
            ),
        ],
    )
    .await
}

async fn a_survey_is_handed_off_and_corrections_and_rejections_reach_the_portal(db: TestDb) {
    let db = db.with_tenants().await;
    staff(&db, FUCHU, "clerk", Role::Clerk).await;
    let p = portal().await;
    let _r1 = file_survey(&p.base, "架空の一件目").await;
    let r2 = file_survey(&p.base, "架空の二件目").await;
    let r3 = file_survey(&p.base, "架空の三件目").await;
    pull(&db, &p).await;
    let router = app(&db, &p.base);
    let clerk = Session::login(&router, FUCHU, "clerk").await;
    let kind = machi::service::inbox::FILING_APPROVED;
    let events = format!("SELECT COUNT(*) FROM outbox WHERE tenant = $1 AND kind = '{kind}'");
    // Approved: one thin linkage event, in the same transaction, once.
    let (st, a) = call(&clerk, "POST", &format!("{F}/1/approve"), Some(json!({}))).await;
    assert_eq!(st, StatusCode::OK, "{a}");
    let (_, _) = call(&clerk, "POST", &format!("{F}/1/approve"), Some(json!({}))).await;
    assert_eq!(count(&db, &events).await, 1);
    let payload: String = {
        let fuchu = code(FUCHU);
        db.store
            .read(Some(&fuchu), move |tx| {
                tx.query_one(
                    "SELECT payload FROM outbox WHERE tenant = $1 AND kind = $2",
                    &[FUCHU.into(), kind.into()],
                )?
                .text(0)
            })
            .await
            .unwrap()
    };
    assert!(
        payload.contains("\"filing_id\":1") && !payload.contains("架空"),
        "thin: {payload}"
    );
    // A correction: the citizen reads the message on the portal.
    let (st, e) = call(
        &clerk,
        "POST",
        &format!("{F}/2/correction"),
        Some(json!({ "message": "  " })),
    )
    .await;
    assert_eq!(
        (st, e["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_message"))
    );
    let (st, _) = call(
        &clerk,
        "POST",
        &format!("{F}/2/correction"),
        Some(json!({ "message": "年代の回答をご確認ください。" })),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let page = status_page(&p, &r2).await;
    assert!(
        page.contains("補正をお願いしています") && page.contains("年代の回答をご確認ください。"),
        "{page}"
    );
    // Rejected with a reason.
    let (st, _) = call(
        &clerk,
        "POST",
        &format!("{F}/3/reject"),
        Some(json!({ "message": "同じ方から二重に届いています。" })),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let page = status_page(&p, &r3).await;
    assert!(
        page.contains("受理できませんでした") && page.contains("同じ方から二重に届いています。"),
        "{page}"
    );
    // A rejected filing is not approved afterwards: a clear conflict.
    let (st, e) = call(&clerk, "POST", &format!("{F}/3/approve"), Some(json!({}))).await;
    assert_eq!(st, StatusCode::CONFLICT, "{e}");
    assert_eq!(e["code"], "filing_state");
    assert!(e["message_ja"].as_str().unwrap().contains("却下"), "{e}");
    assert!(
        e["message_en"].as_str().unwrap().contains("rejected"),
        "{e}"
    );
    let (st, _) = call(
        &clerk,
        "POST",
        &format!("{F}/1/correction"),
        Some(json!({ "message": "遅すぎる依頼" })),
    )
    .await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert_eq!(count(&db, &events).await, 1, "nothing more was published");
    // The messages are kept sealed, not in the clear.
    for (table, rows) in db.raw_dump().await {
        for row in rows {
            for cell in row.into_iter().flatten() {
                assert!(
                    !cell.contains("二重に届いて"),
                    "plaintext reason in {table}"
                );
            }
        }
    }
}

async fn roles_and_bad_input_are_refused_in_both_languages(db: TestDb) {
    let db = db.with_tenants().await;
    staff(&db, FUCHU, "clerk", Role::Clerk).await;
    staff(&db, FUCHU, "officer", Role::SupportOfficer).await;
    staff(&db, FUCHU, "cio", Role::Cio).await;
    let p = portal().await;
    file_survey(&p.base, "架空").await;
    pull(&db, &p).await;
    let router = app(&db, &p.base);
    for who in ["officer", "cio"] {
        let s = Session::login(&router, FUCHU, who).await;
        let (st, _) = call(&s, "GET", F, None).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{who} reads no filings");
        let (st, _) = call(&s, "POST", &format!("{F}/1/approve"), Some(json!({}))).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{who} approves nothing");
        let (st, _, _) = s.post("/ui/inbox/1/act", &[("action", "approve")]).await;
        assert_eq!(st, StatusCode::FORBIDDEN);
        let (_, _, home) = s.get("/ui").await;
        assert!(!home.contains("申請管理"), "no inbox in {who}'s menu");
    }
    let clerk = Session::login(&router, FUCHU, "clerk").await;
    // Another tenant's inbox looks like none at all.
    let (st, _) = call(&clerk, "GET", "/api/v1/tenants/132071/filings", None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, e) = call(&clerk, "GET", &format!("{F}/99"), None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(e["code"], "filing_not_found");
    assert!(e["message_ja"].as_str().unwrap().contains("申請 99"));
    assert!(e["message_en"].as_str().unwrap().contains("no filing 99"));
    let (st, e) = call(&clerk, "POST", &format!("{F}/99/approve"), Some(json!({}))).await;
    assert_eq!(
        (st, e["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("filing_not_found"))
    );
    let (st, e) = call(&clerk, "GET", &format!("{F}/abc"), None).await;
    assert_eq!(
        (st, e["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_filing_id"))
    );
    for q in [
        "status=nonsense",
        "signed=maybe",
        "procedure=No%20such",
        "received_from=2026-02-30",
    ] {
        let (st, e) = call(&clerk, "GET", &format!("{F}?{q}"), None).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{q}: {e}");
        assert!(
            !e["message_ja"].as_str().unwrap().is_empty()
                && !e["message_en"].as_str().unwrap().is_empty()
        );
    }
    let (st, e) = call(
        &clerk,
        "POST",
        &format!("{F}/1/match"),
        Some(json!({ "party": "applicant", "addressee_number": "000000000018" })),
    )
    .await;
    assert_eq!(
        (st, e["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("unknown_party")),
        "{e}"
    );
    let (st, e) = call(
        &clerk,
        "POST",
        &format!("{F}/1/assign"),
        Some(json!({ "assigned_to": "cio" })),
    )
    .await;
    assert_eq!(
        (st, e["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("unknown_clerk")),
        "{e}"
    );
    let (st, _) = call(
        &clerk,
        "POST",
        &format!("{F}/1/approve"),
        Some(json!({ "identity": 5 })),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    // In the UI: the error page, in words, nothing changed.
    let (st, _, body) = clerk
        .post("/ui/inbox/99/act", &[("action", "approve")])
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert!(body.contains("申請 99 はありません"), "{body}");
    let (st, _, body) = clerk
        .post("/ui/inbox/1/act", &[("action", "reject"), ("message", "")])
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(body.contains("1〜500文字"), "{body}");
    crate::readable::assert_readable(&body, "inbox reject error");
    let (st, _, _) = crate::ui::send(
        &router,
        "POST",
        "/ui/inbox/1/act",
        Some(&clerk.cookie),
        Some("action=approve&csrf=forged"),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (_, f) = call(&clerk, "GET", &format!("{F}/1"), None).await;
    assert_eq!(f["filing"]["status"], "received", "nothing changed: {f}");
}

async fn matching_hides_protected_persons_as_search_does(db: TestDb) {
    let db = db.with_tenants().await;
    let persons = family(&db).await;
    staff(&db, FUCHU, "boss", Role::Supervisor).await;
    staff(&db, FUCHU, "officer", Role::SupportOfficer).await;
    let p = portal().await;
    file_tenshutsu(&p.base, today() + chrono::Duration::days(2)).await;
    pull(&db, &p).await;
    let router = app(&db, &p.base);
    // 京子 is protected by a support measure (j440).
    let officer = Session::login(&router, FUCHU, "officer").await;
    let (st, _, body) = officer
        .post(
            "/ui/support/new",
            &[
                ("requester", persons[1].as_str()),
                ("filed_on", "2026-11-01"),
                ("affair_copy", "1"),
            ],
        )
        .await;
    assert_eq!(st, StatusCode::SEE_OTHER, "{body}");
    let boss = Session::login(&router, FUCHU, "boss").await;
    let (st, cands) = call(&boss, "GET", &format!("{F}/1/candidates"), None).await;
    assert_eq!(st, StatusCode::OK, "{cands}");
    // Exactly as the search shows them: found by who they are, restricted,
    // no address; the household shares the shield.
    let search = db
        .registry
        .search(
            &code(FUCHU),
            &machi::service::registry::SearchParams {
                name: Some("髙橋　京子".into()),
                birth_date: Some("1989-01-08".into()),
                limit: 20,
                ..Default::default()
            },
            &Actor::system("t"),
        )
        .await
        .unwrap();
    let k = &cands[1]["candidates"][0];
    assert_eq!(k["addressee_number"], persons[1].as_str());
    assert_eq!(k["restricted"], true);
    assert!(k["address"].is_null(), "{k}");
    assert!(search.restricted.contains(&persons[1].parse().unwrap()));
    assert_eq!(
        cands[0]["candidates"][0]["restricted"], true,
        "the household shares the shield"
    );
    let (_, _, page) = boss.get("/ui/inbox/1").await;
    assert_eq!(
        page.matches("支援措置の対象のため表示しません").count(),
        3,
        "every candidate of the protected household without address: {page}"
    );
    // Matched, the 転出 is blocked as at the counter until the officer
    // releases it; nothing is written.
    match_all(&boss, 1).await;
    let (st, e) = call(&boss, "POST", &format!("{F}/1/approve"), Some(json!({}))).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{e}");
    assert_eq!(e["code"], "support_measure_block");
    let (_, f) = call(&boss, "GET", &format!("{F}/1"), None).await;
    assert_eq!(f["filing"]["status"], "under_review");
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM changes WHERE tenant = $1 AND reason = 'move_out'"
        )
        .await,
        0
    );
}

/// A 住民票の写し request of 髙橋 京子 stored as if imported from the
/// portal (with an attached PNG), for tests that walk every route.
pub async fn stored_juminhyo(db: &TestDb) {
    use base64::Engine as _;
    let png = [
        0x89u8, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xAE,
        0x42, 0x60, 0x82,
    ];
    let filing = json!({
        "format": "machi-portal-filing/1",
        "receipt": "ABCD-EFGH-JKMN",
        "submitted_at": "2026-12-01T10:00:00+09:00",
        "signed_content": {
            "tenant": FUCHU, "procedure": "juminhyo", "version": 1,
            "answers": {
                "applicant_name": "髙橋　京子", "applicant_kana": "タカハシ　キョウコ",
                "applicant_birth_date": "1989-01-08", "phone": "042-000-2222",
                "applicant_address": {"postal_code": "1830022", "address": "東京都府中市宮西町二丁目24番地"},
                "scope": "self", "copies": 1, "purpose": "pension",
                "id_document": {"name": "card.png", "type": "image/png", "size": png.len(),
                    "data": base64::engine::general_purpose::STANDARD.encode(png)},
            },
        },
        "signature": null,
    })
    .to_string();
    let fuchu = code(FUCHU);
    let t = fuchu.clone();
    let stored = db
        .store
        .write(Some(&fuchu), move |tx| {
            machi::store::portal_filings::insert_if_new(
                tx,
                &t,
                &machi::store::portal_filings::NewPortalFiling {
                    portal_id: "fixture-1",
                    receipt: "ABCD-EFGH-JKMN",
                    procedure: "juminhyo",
                    version: 1,
                    received_at: "2026-12-01T10:00:00+09:00",
                    imported_at: 0,
                    filing: filing.as_bytes(),
                    signed: false,
                },
            )
        })
        .await
        .unwrap();
    assert!(stored);
}

/// A tenant's own 転出 version: the clerk approves it once accepted (a
/// 仮登録 awaiting 決裁); the administrator then withdraws the acceptance;
/// the supervisor's 決裁 is refused with why, and nothing is committed.
async fn a_withdrawn_acceptance_stops_the_decision_too(db: TestDb) {
    let db = db.with_tenants().await;
    family(&db).await;
    staff(&db, FUCHU, "clerk", Role::Clerk).await;
    staff(&db, FUCHU, "boss", Role::Supervisor).await;
    staff(&db, FUCHU, "admin", Role::TenantAdmin).await;
    let p = portal().await;
    let shipped = machi_procedures::SHIPPED
        .iter()
        .find(|(n, _)| *n == "tenshutsu.toml")
        .unwrap()
        .1;
    assert!(
        p.portal
            .publish(FUCHU, &shipped.replacen("version = 2", "version = 3", 1))
            .unwrap()
    );
    file_tenshutsu(&p.base, today() + chrono::Duration::days(5)).await;
    pull(&db, &p).await;
    let router = app(&db, &p.base);
    let clerk = Session::login(&router, FUCHU, "clerk").await;
    let boss = Session::login(&router, FUCHU, "boss").await;
    let admin = Session::login(&router, FUCHU, "admin").await;
    let (_, d) = call(&clerk, "GET", &format!("{F}/1"), None).await;
    assert_eq!(d["filing"]["version"], 3, "{d}");
    const D: &str = "/api/v1/tenants/132063/procedure-definitions/decision";
    let decide = |w: &str| json!({"procedure": "tenshutsu", "version": 3, "decision": w});
    let (st, e) = call(&admin, "POST", D, Some(decide("accept"))).await;
    assert_eq!(st, StatusCode::OK, "{e}");
    match_all(&clerk, 1).await;
    let (st, a) = call(&clerk, "POST", &format!("{F}/1/approve"), Some(json!({}))).await;
    assert_eq!(st, StatusCode::OK, "{a}");
    assert_eq!(a["status"], "awaiting_decision", "{a}");
    let (st, e) = call(&admin, "POST", D, Some(decide("withdraw"))).await;
    assert_eq!(st, StatusCode::OK, "{e}");
    // The 決裁 (審査・決裁 page) is refused with why; nothing is committed.
    let (st, _, page) = boss
        .post("/ui/approvals/1/decide", &[("action", "approve")])
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{page}");
    assert!(
        page.contains("受入れを取り消した") && page.contains("承認はできません"),
        "{page}"
    );
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM changes WHERE tenant = $1 AND reason = 'move_out'"
        )
        .await,
        0
    );
    let (_, d) = call(&clerk, "GET", &format!("{F}/1"), None).await;
    assert_eq!(d["filing"]["status"], "awaiting_decision", "{d}");
    // Accepted again, the same 決裁 goes through.
    let (st, e) = call(&admin, "POST", D, Some(decide("accept"))).await;
    assert_eq!(st, StatusCode::OK, "{e}");
    let (st, _, _) = boss
        .post("/ui/approvals/1/decide", &[("action", "approve")])
        .await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    let (_, d) = call(&clerk, "GET", &format!("{F}/1"), None).await;
    assert_eq!(d["filing"]["status"], "approved", "{d}");
}

/// 届出人 (住民基本台帳法第24条・第26条): the card of 髙橋 一郎 names 佐藤
/// 花子, who lives in another household, as the person moving. Her
/// candidates come from her own name and birth date (never the signer's),
/// a resident whose name differs is flagged, and the approval is refused:
/// nothing is recorded. The same card filing for its own household passes.
async fn a_card_signs_only_for_its_holders_household(db: TestDb) {
    let db = db.with_tenants().await;
    let takahashi = family(&db).await;
    let req: machi_domain::change::ChangeRequest =
        serde_json::from_value(crate::contract::move_in(
            vec![crate::contract::person(
                "佐藤　花子",
                "サトウ　ハナコ",
                "1990-04-02",
                "female",
                "世帯主",
            )],
            "東京都府中市宮西町二丁目25番地",
        ))
        .unwrap();
    let sato = db
        .registry
        .submit(&code(FUCHU), &req, &Actor::system("setup"))
        .await
        .unwrap()
        .rows[0]
        .record
        .addressee_number
        .to_string();
    staff(&db, FUCHU, "boss", Role::Supervisor).await;
    let p = portal().await;
    let moving = today() + chrono::Duration::days(7);
    let born = |y, m, d| chrono::NaiveDate::from_ymd_opt(y, m, d).unwrap();
    file_tenshutsu_of(
        &p.base,
        moving,
        &[("佐藤　花子", "サトウ　ハナコ", born(1990, 4, 2))],
    )
    .await;
    // The same household's kana with another first name's kanji: found by
    // the furigana, flagged as differing in the name.
    file_tenshutsu_of(
        &p.base,
        moving,
        &[
            ("髙橋　一朗", "タカハシ　イチロウ", born(1989, 1, 7)),
            ("髙橋　京子", "タカハシ　キョウコ", born(1989, 1, 8)),
            ("髙橋　翔", "タカハシ　ショウ", born(2015, 6, 1)),
        ],
    )
    .await;
    // Filing 3: 一郎's birth date mistyped: found by name, flagged.
    file_tenshutsu_of(
        &p.base,
        moving,
        &[("髙橋　一郎", "タカハシ　イチロウ", born(1989, 1, 6))],
    )
    .await;
    pull(&db, &p).await;
    let router = app(&db, &p.base);
    let boss = Session::login(&router, FUCHU, "boss").await;

    let (st, cands) = call(&boss, "GET", &format!("{F}/1/candidates"), None).await;
    assert_eq!(st, StatusCode::OK, "{cands}");
    let first = &cands[0]["candidates"];
    assert_eq!(first.as_array().unwrap().len(), 1, "{cands}");
    assert_eq!(first[0]["addressee_number"], sato.as_str(), "{cands}");
    assert!(
        !cands.to_string().contains(&takahashi[0]),
        "the signer is never offered for another person: {cands}"
    );
    assert_eq!(first[0]["differs_ja"], json!([]), "{cands}");
    match_all(&boss, 1).await;
    let changes_before = count(&db, "SELECT COUNT(*) FROM changes WHERE tenant = $1").await;
    let (st, e) = call(&boss, "POST", &format!("{F}/1/approve"), Some(json!({}))).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{e}");
    assert_eq!(e["code"], "filer_not_related", "{e}");
    assert!(e["message_ja"].as_str().unwrap().contains("委任状"), "{e}");
    assert!(e["message_en"].as_str().unwrap().contains("mandate"), "{e}");
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM changes WHERE tenant = $1").await,
        changes_before,
        "nothing recorded"
    );
    let (_, r) = call(
        &boss,
        "GET",
        &format!("/api/v1/tenants/132063/residents/{sato}"),
        None,
    )
    .await;
    assert_eq!(r["record"]["status"], "resident", "{r}");

    // Filing 2: 髙橋 一朗 is not a resident; 髙橋 一郎 is offered through
    // the furigana and the page says the name differs.
    let (_, cands) = call(&boss, "GET", &format!("{F}/2/candidates"), None).await;
    let c = &cands[0]["candidates"][0];
    assert_eq!(c["addressee_number"], takahashi[0].as_str(), "{cands}");
    assert_eq!(
        c["differs_ja"],
        json!(["氏名が申請と一致しません"]),
        "{cands}"
    );
    assert_eq!(c["differs_en"], json!(["the name differs from the filing"]));
    let res = boss
        .router
        .clone()
        .oneshot(
            Request::builder()
                .uri("/ui/inbox/2")
                .header(header::COOKIE, &boss.cookie)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let page =
        String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert!(page.contains("氏名が申請と一致しません"), "{page}");
    let (_, cands) = call(&boss, "GET", &format!("{F}/3/candidates"), None).await;
    let c = &cands[0]["candidates"][0];
    assert_eq!(c["addressee_number"], takahashi[0].as_str(), "{cands}");
    assert_eq!(
        c["differs_ja"],
        json!(["生年月日が申請と一致しません"]),
        "{cands}"
    );
    // The holder filing for their own household is approved.
    assert_eq!(match_all(&boss, 2).await, takahashi);
    let (st, a) = call(&boss, "POST", &format!("{F}/2/approve"), Some(json!({}))).await;
    assert_eq!(st, StatusCode::OK, "{a}");
    assert_eq!(a["status"], "approved", "{a}");
}

/// Correct and send again (issue 11, item 5; B3): the citizen whose filing
/// was sent back starts, from its status page, a new application that
/// names it; the inbox links the two both ways, and the clerk closes the
/// filing that waited for the correction by rejecting it.
async fn a_correction_is_sent_again_linked_both_ways_and_closed(db: TestDb) {
    let db = db.with_tenants().await;
    staff(&db, FUCHU, "clerk", Role::Clerk).await;
    let p = portal().await;
    let r1 = file_survey(&p.base, "架空の一件目").await;
    pull(&db, &p).await;
    let router = app(&db, &p.base);
    let clerk = Session::login(&router, FUCHU, "clerk").await;
    let (st, _) = call(
        &clerk,
        "POST",
        &format!("{F}/1/correction"),
        Some(json!({ "message": "年代の回答をご確認ください。" })),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    // The status page: the reason, words that do not send the reader
    // "below" to a reason shown above, and the way to send it again.
    let page = status_page(&p, &r1).await;
    assert!(page.contains("年代の回答をご確認ください。"), "{page}");
    assert!(!page.contains("下の理由"), "{page}");
    assert!(
        page.contains(&format!("action=\"/status/{r1}/correct\"")),
        "{page}"
    );
    // Nothing personal of the first filing is on the portal to fill in again.
    let c = client();
    let r = c
        .post(format!("{}/status/{r1}/correct", p.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/d/p/age");
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let first = c
        .get(format!("{}/d/p/age", p.base))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!first.contains("checked"), "nothing prefilled: {first}");
    let r2 = send_pages(
        &p.base,
        &cookie,
        vec![
            ("age", vec![t("age_group", "a80")]),
            ("use", vec![t("uses_internet", "no")]),
            (
                "learning",
                vec![t("want_class", "maybe"), t("comment", "架空の直し")],
            ),
        ],
        None,
    )
    .await;
    assert_ne!(r1, r2);
    // A filing that was not sent back cannot be "corrected".
    let r = c
        .post(format!("{}/status/{r2}/correct", p.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(
        r.headers()["location"].to_str().unwrap(),
        format!("/status/{r2}")
    );
    pull(&db, &p).await;
    // The inbox links the two both ways.
    let (_, _, new) = clerk.get("/ui/inbox/2").await;
    assert!(
        new.contains("id=\"filing-corrects\"")
            && new.contains("href=\"/ui/inbox/1\"")
            && new.contains(&r1),
        "{new}"
    );
    let (_, _, old) = clerk.get("/ui/inbox/1").await;
    assert!(
        old.contains("id=\"filing-corrected-by\"")
            && old.contains("href=\"/ui/inbox/2\"")
            && old.contains(&r2),
        "{old}"
    );
    // Waiting for the correction: no approval, no second request, but the
    // clerk can close it with a reason.
    assert!(old.contains("id=\"reject-form\""), "{old}");
    assert!(old.contains("id=\"awaiting-correction\""), "{old}");
    assert!(!old.contains("id=\"approve-form\""), "{old}");
    assert!(!old.contains("id=\"correction-form\""), "{old}");
    let (st, h, body) = clerk
        .post(
            "/ui/inbox/1/act",
            &[
                ("action", "reject"),
                (
                    "message",
                    "直した申請を受け付けたため、この申請は閉じます。",
                ),
            ],
        )
        .await;
    assert_eq!(st, StatusCode::SEE_OTHER, "{body}");
    assert_eq!(location(&h), "/ui/inbox/1?done=rejected");
    let (_, _, old) = clerk.get("/ui/inbox/1").await;
    assert!(old.contains("却下"), "{old}");
    assert!(!old.contains("id=\"reject-form\""), "closed: {old}");
    let page = status_page(&p, &r1).await;
    assert!(
        page.contains("受理できませんでした") && !page.contains("/correct\""),
        "{page}"
    );
    // The corrected filing is open as usual.
    let (_, _, new) = clerk.get("/ui/inbox/2").await;
    assert!(new.contains("id=\"approve-form\""), "{new}");
}

/// A correction request answered twice (the citizen sent the corrected
/// filing twice before the clerk acted): approving the first correction
/// closes the filing it corrects (the citizen is told, and no further
/// correction is offered), and the second correction cannot be approved.
async fn a_correction_request_answered_twice_is_approved_once(db: TestDb) {
    let db = db.with_tenants().await;
    staff(&db, FUCHU, "boss", Role::Supervisor).await;
    let p = portal().await;
    let r1 = file_survey(&p.base, "架空の一件目").await;
    pull(&db, &p).await;
    let router = app(&db, &p.base);
    let boss = Session::login(&router, FUCHU, "boss").await;
    let (st, _) = call(
        &boss,
        "POST",
        &format!("{F}/1/correction"),
        Some(json!({ "message": "年代の回答をご確認ください。" })),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let c = client();
    let mut sent = vec![];
    for comment in ["架空の直し一", "架空の直し二"] {
        let r = c
            .post(format!("{}/status/{r1}/correct", p.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303);
        let cookie = r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        sent.push(
            send_pages(
                &p.base,
                &cookie,
                vec![
                    ("age", vec![t("age_group", "a80")]),
                    ("use", vec![t("uses_internet", "no")]),
                    (
                        "learning",
                        vec![t("want_class", "maybe"), t("comment", comment)],
                    ),
                ],
                None,
            )
            .await,
        );
    }
    pull(&db, &p).await;
    let (st, a) = call(&boss, "POST", &format!("{F}/2/approve"), Some(json!({}))).await;
    assert_eq!(st, StatusCode::OK, "{a}");
    // The corrected filing is closed, and its citizen is told why.
    let (_, one) = call(&boss, "GET", &format!("{F}/1"), None).await;
    assert_eq!(one["filing"]["status"], "rejected", "{one}");
    assert!(one["message"].as_str().unwrap().contains(&sent[0]), "{one}");
    let page = status_page(&p, &r1).await;
    assert!(
        page.contains("受理できませんでした") && !page.contains("/correct\""),
        "{page}"
    );
    // The second correction of the same filing is not approved.
    let (st, e) = call(&boss, "POST", &format!("{F}/3/approve"), Some(json!({}))).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{e}");
    assert_eq!(e["code"], "correction_already_approved", "{e}");
    assert!(e["message_ja"].as_str().unwrap().contains(&sent[0]), "{e}");
    let (_, three) = call(&boss, "GET", &format!("{F}/3"), None).await;
    assert_ne!(three["filing"]["status"], "approved", "{three}");
}
