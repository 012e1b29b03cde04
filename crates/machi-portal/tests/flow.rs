//! The portal end to end over HTTP (no browser): a citizen files, the back
//! office pulls, opens, acknowledges and sets a status; then every cell of
//! the portal's database is searched for the personal data that was filed.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use http_body_util::BodyExt;
use machi_portal::seal::OpeningKey;
use machi_portal::{Config, Portal};
use sha2::{Digest, Sha256};
use tower::ServiceExt;

const TOKEN: &str = "test-pull-token-0123456789";
const TENANT: &str = "132063";

struct Env {
    app: Router,
    portal: Arc<Portal>,
    key: OpeningKey,
    clock: Arc<AtomicI64>,
    _dir: tempdir::Dir,
}

mod tempdir {
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    pub fn new() -> Dir {
        let n: u64 = u64::from_le_bytes(machi_portal::seal::random::<8>().unwrap());
        let p = std::env::temp_dir().join(format!("machi-portal-test-{n:x}"));
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }
}

fn env() -> Env {
    let dir = tempdir::new();
    let key = OpeningKey::generate().unwrap();
    let clock = Arc::new(AtomicI64::new(
        DateTime::parse_from_rfc3339("2026-12-06T10:00:00+09:00")
            .unwrap()
            .timestamp(),
    ));
    let c2 = clock.clone();
    let mut config = Config::new(key.public());
    config.pull_token_sha256 = Some(hex::encode(Sha256::digest(TOKEN.as_bytes())));
    config.clock =
        Arc::new(move || DateTime::<Utc>::from_timestamp(c2.load(Ordering::SeqCst), 0).unwrap());
    let portal = Portal::open(&dir.0.join("portal.db"), config).unwrap();
    portal
        .publish_shipped(TENANT, "府中市", "Fuchu City")
        .unwrap();
    Env {
        app: machi_portal::router(portal.clone()),
        portal,
        key,
        clock,
        _dir: dir,
    }
}

struct Resp {
    status: StatusCode,
    location: Option<String>,
    cookie: Option<String>,
    body: String,
}

async fn send(app: &Router, req: Request<Body>) -> Resp {
    let r = app.clone().oneshot(req).await.unwrap();
    let status = r.status();
    let location = r
        .headers()
        .get(header::LOCATION)
        .map(|v| v.to_str().unwrap().to_owned());
    let cookie = r
        .headers()
        .get(header::SET_COOKIE)
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned());
    let body =
        String::from_utf8_lossy(&r.into_body().collect().await.unwrap().to_bytes()).into_owned();
    Resp {
        status,
        location,
        cookie,
        body,
    }
}

async fn get(app: &Router, path: &str, cookie: &str) -> Resp {
    send(
        app,
        Request::get(path)
            .header(header::COOKIE, cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await
}

const BOUNDARY: &str = "----machi-portal-test";

/// Posts a page as the browser does (multipart/form-data).
async fn post_page(
    app: &Router,
    path: &str,
    cookie: &str,
    fields: &[(&str, &str)],
    file: Option<(&str, &str, &[u8])>,
) -> Resp {
    let mut body = Vec::new();
    for (k, v) in fields {
        body.extend_from_slice(
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    if let Some((name, file_name, bytes)) = file {
        body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{file_name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    send(
        app,
        Request::post(path)
            .header(header::COOKIE, cookie)
            .header(
                header::CONTENT_TYPE,
                format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .body(Body::from(body))
            .unwrap(),
    )
    .await
}

async fn post_form(app: &Router, path: &str, cookie: &str, body: &str) -> Resp {
    send(
        app,
        Request::post(path)
            .header(header::COOKIE, cookie)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body.to_owned()))
            .unwrap(),
    )
    .await
}

async fn backoffice(
    app: &Router,
    method: &str,
    path: &str,
    token: &str,
    json: Option<serde_json::Value>,
) -> (StatusCode, serde_json::Value) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(
            json.map(|j| Body::from(j.to_string()))
                .unwrap_or_else(Body::empty),
        )
        .unwrap();
    let r = send(app, req).await;
    (
        r.status,
        serde_json::from_str(&r.body).unwrap_or(serde_json::Value::Null),
    )
}

/// A tiny PNG (header and an empty chunk are enough for the type check).
const PNG: &[u8] = &[
    0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xAE, 0x42,
    0x60, 0x82,
];

/// Starts 住民票の写し and fills every page; returns the draft cookie.
async fn fill_juminhyo(e: &Env) -> String {
    let r = post_form(&e.app, &format!("/t/{TENANT}/juminhyo/start"), "", "").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location.as_deref(), Some("/d/p/applicant"));
    let cookie = r.cookie.unwrap();
    let r = post_page(
        &e.app,
        "/d/p/applicant",
        &cookie,
        &[
            ("applicant_name", "架空 花子"),
            ("applicant_kana", "カクウ ハナコ"),
            ("applicant_birth_date.era", "昭和"),
            ("applicant_birth_date.year", "55"),
            ("applicant_birth_date.month", "3"),
            ("applicant_birth_date.day", "14"),
            ("phone", "042-000-1234"),
        ],
        None,
    )
    .await;
    assert_eq!(r.location.as_deref(), Some("/d/p/address"), "{}", r.body);
    let r = post_page(
        &e.app,
        "/d/p/address",
        &cookie,
        &[
            ("applicant_address.postal", "183-0056"),
            ("applicant_address.address", "東京都府中市寿町一丁目架空5番"),
        ],
        None,
    )
    .await;
    assert_eq!(r.location.as_deref(), Some("/d/p/scope"));
    let r = post_page(
        &e.app,
        "/d/p/scope",
        &cookie,
        &[
            ("scope", "household"),
            ("copies", "２"),
            ("items", "household_head"),
            ("items", "honseki"),
        ],
        None,
    )
    .await;
    assert_eq!(r.location.as_deref(), Some("/d/p/purpose"));
    let r = post_page(
        &e.app,
        "/d/p/purpose",
        &cookie,
        &[("purpose", "other"), ("purpose_detail", "架空の手続に使用")],
        None,
    )
    .await;
    assert_eq!(r.location.as_deref(), Some("/d/p/id_document"));
    let r = post_page(
        &e.app,
        "/d/p/id_document",
        &cookie,
        &[],
        Some(("id_document", "card.png", PNG)),
    )
    .await;
    assert_eq!(r.location.as_deref(), Some("/d/check"), "{}", r.body);
    cookie
}

#[tokio::test]
async fn a_citizen_files_and_the_back_office_pulls_opens_and_acknowledges() {
    let e = env();
    // The lists.
    let r = get(&e.app, "/", "").await;
    assert!(r.body.contains("府中市"));
    let r = get(&e.app, &format!("/t/{TENANT}"), "").await;
    for title in [
        "転出届",
        "住民票の写しの交付請求",
        "学童クラブ入会申請",
        "児童手当認定請求",
        "インターネットの利用についてのアンケート",
    ] {
        assert!(r.body.contains(title), "{title}");
    }
    let cookie = fill_juminhyo(&e).await;
    // Check your answers: 和暦, labels, change links.
    let r = get(&e.app, "/d/check", &cookie).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("昭和55年3月14日"), "{}", r.body);
    assert!(r.body.contains("〒183-0056 東京都府中市寿町一丁目架空5番"));
    assert!(r.body.contains("世帯全員"));
    assert!(r.body.contains("card.png"));
    assert!(r.body.contains("/d/p/scope?from=check#f-scope"));
    // Submit.
    let r = post_form(&e.app, "/d/submit", &cookie, "").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let loc = r.location.unwrap();
    assert!(
        loc.starts_with("/status/") && loc.ends_with("?new=1"),
        "{loc}"
    );
    let receipt = loc
        .trim_start_matches("/status/")
        .trim_end_matches("?new=1")
        .to_owned();
    assert_eq!(receipt.len(), 14);
    let r = get(&e.app, &loc, "").await;
    assert!(r.body.contains(&receipt));
    assert!(r.body.contains("受け付けました"));
    // The draft is gone: the code no longer resumes.
    let r = get(&e.app, "/d/check", &cookie).await;
    assert!(r.body.contains("申請中の手続がありません"));

    // The back office pulls with its token only.
    let (s, _) = backoffice(&e.app, "GET", "/backoffice/filings", "wrong", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, j) = backoffice(&e.app, "GET", "/backoffice/filings", TOKEN, None).await;
    assert_eq!(s, StatusCode::OK);
    let f = &j["filings"][0];
    assert_eq!(f["procedure"], "juminhyo");
    assert_eq!(f["version"], 1);
    let id = f["id"].as_str().unwrap().to_owned();
    let sealed = base64::engine::general_purpose::STANDARD
        .decode(f["sealed"].as_str().unwrap())
        .unwrap();
    let plain = e.key.open(&sealed, &id).unwrap();
    let filing: serde_json::Value = serde_json::from_slice(&plain).unwrap();
    assert_eq!(filing["receipt"], receipt.as_str());
    let answers = &filing["signed_content"]["answers"];
    assert_eq!(answers["applicant_name"], "架空 花子");
    assert_eq!(answers["applicant_birth_date"], "1980-03-14");
    assert_eq!(answers["applicant_address"]["postal_code"], "1830056");
    assert_eq!(answers["copies"], 2);
    assert_eq!(
        answers["items"],
        serde_json::json!(["household_head", "honseki"])
    );
    assert_eq!(answers["id_document"]["type"], "image/png");
    assert_eq!(filing["signed_content"]["version"], 1);
    // A sealed filing moved to another row does not open.
    assert!(e.key.open(&sealed, "another-row").is_err());

    // Status flows back; the reason is shown to the citizen.
    let (s, _) = backoffice(
        &e.app,
        "POST",
        "/backoffice/status",
        TOKEN,
        Some(serde_json::json!({"receipt": receipt, "status": "correction_requested", "reason": "本人確認書類の写真が不鮮明です。架空 花子様"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let r = get(&e.app, &format!("/status/{}", receipt.to_lowercase()), "").await;
    assert!(r.body.contains("補正をお願いしています"), "{}", r.body);
    assert!(r.body.contains("本人確認書類の写真が不鮮明です。"));

    // Acknowledge: the sealed copy is deleted, receipt and status stay.
    let (s, j) = backoffice(
        &e.app,
        "POST",
        "/backoffice/ack",
        TOKEN,
        Some(serde_json::json!({"ids": [id]})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(j["deleted"], 1);
    let (_, j) = backoffice(&e.app, "GET", "/backoffice/filings", TOKEN, None).await;
    assert_eq!(j["filings"].as_array().unwrap().len(), 0);
    let r = get(&e.app, &format!("/status/{receipt}"), "").await;
    assert!(r.body.contains("補正をお願いしています"));

    // No cell of the portal's database holds what the citizen typed.
    let cells = e.portal.store.dump_cells().unwrap();
    assert!(cells.len() > 20);
    for needle in [
        "架空",
        "花子",
        "カクウ",
        "ハナコ",
        "183-0056",
        "1830056",
        "寿町",
        "042-000-1234",
        "0420001234",
        "1980-03-14",
        "不鮮明",
        &receipt,
    ] {
        for (table, cell) in &cells {
            assert!(
                !cell.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{needle:?} found in plaintext in table {table}"
            );
        }
    }
}

#[tokio::test]
async fn errors_are_summarised_linked_and_input_is_kept() {
    let e = env();
    let r = post_form(&e.app, &format!("/t/{TENANT}/tenshutsu/start"), "", "").await;
    let cookie = r.cookie.unwrap();
    let r = post_page(
        &e.app,
        "/d/p/applicant",
        &cookie,
        &[
            ("applicant_name", "架空 太郎"),
            ("applicant_kana", "kakuu taro"),
            ("phone", ""),
        ],
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("<title>エラー：届け出る人"), "{}", r.body);
    assert!(r.body.contains("class=\"error-summary\""));
    assert!(r.body.contains("autofocus"));
    assert!(r.body.contains("href=\"#f-applicant_kana\""));
    assert!(r.body.contains("href=\"#f-phone\""));
    assert!(r.body.contains("value=\"架空 太郎\""), "input kept");
    assert!(
        r.body.contains("value=\"kakuu taro\""),
        "wrong input kept too"
    );
    assert!(r.body.contains("aria-invalid=\"true\""));
    // English and やさしい日本語.
    let r2 = post_page(
        &e.app,
        "/d/p/applicant",
        &format!("{cookie}; portal_lang=en"),
        &[("applicant_name", "架空 太郎")],
        None,
    )
    .await;
    assert!(r2.body.contains("<title>Error: About you"), "{}", r2.body);
    assert!(r2.body.contains("Enter daytime phone number"));
    let r3 = post_page(
        &e.app,
        "/d/p/applicant",
        &format!("{cookie}; portal_lang=easy"),
        &[("applicant_name", "架空 太郎")],
        None,
    )
    .await;
    assert!(
        r3.body.contains("でんわばんごうを かいて ください"),
        "{}",
        r3.body
    );

    // The move date window: 30 days before to 10 days after the move.
    let r = post_page(
        &e.app,
        "/d/p/moving",
        &cookie,
        &[
            ("moving_date.era", "令和"),
            ("moving_date.year", "9"),
            ("moving_date.month", "2"),
            ("moving_date.day", "1"),
        ],
        None,
    )
    .await;
    assert!(
        r.body.contains("令和8年11月26日から令和9年1月5日まで"),
        "{}",
        r.body
    );
    assert!(r.body.contains("value=\"9\""));
}

#[tokio::test]
async fn add_another_person_remove_and_validate_each() {
    let e = env();
    let cookie = post_form(&e.app, &format!("/t/{TENANT}/tenshutsu/start"), "", "")
        .await
        .cookie
        .unwrap();
    let base = [
        ("members.count", "1"),
        ("members.0.name", "架空 太郎"),
        ("members.0.kana", "カクウ タロウ"),
        ("members.0.birth_date.era", "昭和"),
        ("members.0.birth_date.year", "60"),
        ("members.0.birth_date.month", "1"),
        ("members.0.birth_date.day", "2"),
    ];
    let mut with_add = base.to_vec();
    with_add.push(("_action", "add:members"));
    let r = post_page(&e.app, "/d/p/members", &cookie, &with_add, None).await;
    assert_eq!(r.location.as_deref(), Some("/d/p/members#f-members-1"));
    let r = get(&e.app, "/d/p/members", &cookie).await;
    assert!(r.body.contains("2人目"));
    assert!(r.body.contains("value=\"架空 太郎\""), "first person kept");
    let mut two = base.to_vec();
    two[0] = ("members.count", "2");
    two.push(("members.1.name", "架空 次郎"));
    let r = post_page(&e.app, "/d/p/members", &cookie, &two, None).await;
    assert!(
        r.body.contains("2人目：フリガナを入力してください"),
        "{}",
        r.body
    );
    assert!(r.body.contains("href=\"#f-members-1-kana\""));
    // Remove the second person.
    let mut rm = two.clone();
    rm.push(("_action", "remove:members:1"));
    let r = post_page(&e.app, "/d/p/members", &cookie, &rm, None).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let r = get(&e.app, "/d/p/members", &cookie).await;
    assert!(!r.body.contains("2人目"));
    assert!(r.body.contains("架空 太郎"));
}

#[tokio::test]
async fn save_resume_and_expiry() {
    let e = env();
    let cookie = post_form(&e.app, &format!("/t/{TENANT}/gakudo/start"), "", "")
        .await
        .cookie
        .unwrap();
    let r = post_page(
        &e.app,
        "/d/p/guardian",
        &cookie,
        &[("guardian_name", "架空 一郎"), ("_action", "save")],
        None,
    )
    .await;
    assert_eq!(r.location.as_deref(), Some("/d/saved"));
    let r = get(&e.app, "/d/saved", &cookie).await;
    let code = cookie.trim_start_matches("portal_draft=").to_owned();
    assert!(r.body.contains(&code), "{}", r.body);
    assert!(
        r.body.contains("令和8年12月13日"),
        "expiry in 和暦: {}",
        r.body
    );
    // From another device: the code, typed in lower case with spaces.
    let r = post_form(
        &e.app,
        "/resume",
        "",
        &format!("code={}", code.to_lowercase().replace('-', "+")),
    )
    .await;
    assert_eq!(r.location.as_deref(), Some("/d/p/guardian"));
    let other = r.cookie.unwrap();
    let r = get(&e.app, "/d/p/guardian", &other).await;
    assert!(r.body.contains("value=\"架空 一郎\""));
    // A wrong code: an error, the typed code kept.
    let r = post_form(&e.app, "/resume", "", "code=AAAA-BBBB-CCCC-DDDD").await;
    assert!(r.body.contains("<title>エラー："));
    assert!(r.body.contains("value=\"AAAA-BBBB-CCCC-DDDD\""));
    // Eight days later the draft has expired.
    e.clock.fetch_add(8 * 86_400, Ordering::SeqCst);
    let r = post_form(&e.app, "/resume", "", &format!("code={code}")).await;
    assert!(r.body.contains("見つかりません"));
}

#[tokio::test]
async fn wrong_attachment_type_and_signature_needed() {
    let e = env();
    let cookie = fill_juminhyo(&e).await;
    let r = post_page(
        &e.app,
        "/d/p/id_document",
        &cookie,
        &[],
        Some(("id_document", "card.png", b"GIF89a fake")),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.body.contains("JPEG・PNG・PDFのファイルにしてください"),
        "{}",
        r.body
    );
    // 転出届 needs a signature: without a verifier nothing is filed.
    let cookie = post_form(&e.app, &format!("/t/{TENANT}/tenshutsu/start"), "", "")
        .await
        .cookie
        .unwrap();
    let pages: &[(&str, &[(&str, &str)])] = &[
        (
            "applicant",
            &[
                ("applicant_name", "架空 太郎"),
                ("applicant_kana", "カクウ タロウ"),
                ("phone", "042-000-0000"),
            ],
        ),
        (
            "moving",
            &[
                ("moving_date.era", "令和"),
                ("moving_date.year", "8"),
                ("moving_date.month", "12"),
                ("moving_date.day", "20"),
            ],
        ),
        (
            "destination",
            &[
                ("destination.postal", "196-0001"),
                ("destination.address", "東京都昭島市美堀町架空1番"),
            ],
        ),
        (
            "members",
            &[
                ("members.count", "1"),
                ("members.0.name", "架空 太郎"),
                ("members.0.kana", "カクウ タロウ"),
                ("members.0.birth_date.era", "昭和"),
                ("members.0.birth_date.year", "60"),
                ("members.0.birth_date.month", "1"),
                ("members.0.birth_date.day", "2"),
            ],
        ),
        (
            "visit",
            &[
                ("visit_date.era", "令和"),
                ("visit_date.year", "8"),
                ("visit_date.month", "12"),
                ("visit_date.day", "25"),
            ],
        ),
    ];
    for (page, fields) in pages {
        let r = post_page(&e.app, &format!("/d/p/{page}"), &cookie, fields, None).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{page}: {}", r.body);
    }
    let r = post_form(&e.app, "/d/submit", &cookie, "").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.body.contains("電子署名をまだ受け付けていません"),
        "{}",
        r.body
    );
    let (_, j) = backoffice(&e.app, "GET", "/backoffice/filings", TOKEN, None).await;
    assert_eq!(j["filings"].as_array().unwrap().len(), 0);
    // The draft is still there.
    let r = get(&e.app, "/d/check", &cookie).await;
    assert!(r.body.contains("架空 太郎"));
}

#[tokio::test]
async fn a_published_version_never_changes() {
    let e = env();
    let (_, src) = machi_procedures::SHIPPED[1];
    assert!(
        !e.portal.publish(TENANT, src).unwrap(),
        "same text: nothing new"
    );
    let changed = src.replace("max = 10", "max = 5");
    let err = e.portal.publish(TENANT, &changed).unwrap_err();
    assert!(
        err.message_ja().contains("公開済みの版は変えられません"),
        "{}",
        err.message_ja()
    );
    let v2 = changed.replace("version = 1", "version = 2");
    assert!(e.portal.publish(TENANT, &v2).unwrap());
    let bad = src.replace("kind = \"number\"", "kind = \"numeric\"");
    let err = e.portal.publish(TENANT, &bad).unwrap_err();
    assert!(err.message_ja().contains("行目"), "{}", err.message_ja());
    assert!(err.message_en().contains("numeric"));
}

/// Starts a 転出届 and answers its first page; returns the draft cookie.
async fn start_tenshutsu(e: &Env, kana: &str) -> String {
    let cookie = post_form(&e.app, &format!("/t/{TENANT}/tenshutsu/start"), "", "")
        .await
        .cookie
        .unwrap();
    let r = post_page(
        &e.app,
        "/d/p/applicant",
        &cookie,
        &[
            ("applicant_name", "架空 太郎"),
            ("applicant_kana", kana),
            ("phone", "042-000-0000"),
        ],
        None,
    )
    .await;
    assert_eq!(r.location.as_deref(), Some("/d/p/moving"), "{}", r.body);
    cookie
}

/// The error messages of a page, as its error summary lists them.
fn error_texts(body: &str) -> Vec<String> {
    let mut out = Vec::new();
    for part in body.split("<li><a href=\"#").skip(1) {
        let text = part.split_once("\">").map(|x| x.1).unwrap_or("");
        out.push(text.split("</a>").next().unwrap_or("").to_owned());
    }
    out
}

#[tokio::test]
async fn hiragana_kana_is_kept_in_katakana_and_person_one_is_the_applicant() {
    let e = env();
    // フリガナ typed in hiragana is taken, kept and shown in katakana (B10).
    let cookie = start_tenshutsu(&e, "かくう　たろう").await;
    let r = get(&e.app, "/d/p/applicant", &cookie).await;
    assert!(r.body.contains("value=\"カクウ　タロウ\""), "{}", r.body);
    // The members page starts with the applicant as person 1 (editable).
    let r = get(&e.app, "/d/p/members", &cookie).await;
    assert!(
        r.body
            .contains("id=\"f-members-0-name\" name=\"members.0.name\" value=\"架空 太郎\""),
        "{}",
        r.body
    );
    assert!(r.body.contains("value=\"カクウ　タロウ\""), "{}", r.body);
    // Once person 1 is posted (here changed), what was posted stays.
    let r = post_page(
        &e.app,
        "/d/p/members",
        &cookie,
        &[
            ("members.count", "1"),
            ("members.0.name", "架空 花子"),
            ("members.0.kana", "ｶｸｳ ﾊﾅｺ"),
            ("_action", "save"),
        ],
        None,
    )
    .await;
    assert_eq!(r.location.as_deref(), Some("/d/saved"));
    let r = get(&e.app, "/d/p/members", &cookie).await;
    assert!(r.body.contains("value=\"架空 花子\""), "{}", r.body);
    assert!(r.body.contains("value=\"カクウ ハナコ\""), "{}", r.body);
    assert!(!r.body.contains("value=\"架空 太郎\""), "{}", r.body);
    // Latin letters are still refused, in the citizen's words, without
    // the input echoed back.
    let r = post_page(
        &e.app,
        "/d/p/applicant",
        &cookie,
        &[
            ("applicant_name", "架空 太郎"),
            ("applicant_kana", "kakuu taro"),
            ("phone", "042-000-0000"),
        ],
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let errs = error_texts(&r.body);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].contains("カタカナで入力してください"), "{errs:?}");
    assert!(!errs[0].contains("kakuu"), "no echo: {errs:?}");
    // Other procedures' people (a claimant's children) are not prefilled.
    let cookie = post_form(&e.app, &format!("/t/{TENANT}/jidoteate/start"), "", "")
        .await
        .cookie
        .unwrap();
    let r = get(&e.app, "/d/p/children", &cookie).await;
    assert!(
        r.body.contains("name=\"children.0.name\" value=\"\""),
        "{}",
        r.body
    );
}

#[tokio::test]
async fn field_errors_are_the_citizens_words_in_each_language() {
    let e = env();
    let cookie = start_tenshutsu(&e, "カクウ タロウ").await;
    let bad = [("destination.postal", "12"), ("destination.address", "")];
    let r = post_page(&e.app, "/d/p/destination", &cookie, &bad, None).await;
    let errs = error_texts(&r.body);
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(
        errs.iter()
            .any(|m| m == "引っ越し先の住所の郵便番号は7桁の数字で入力してください（例：183-0056）"),
        "{errs:?}"
    );
    assert!(
        errs.iter()
            .any(|m| m == "引っ越し先の住所を、都道府県から入力してください"),
        "{errs:?}"
    );
    for m in &errs {
        assert!(!m.contains(": 12") && !m.contains("\"12\""), "{m}");
    }
    // English: no Japanese text, no echo; a date that does not exist.
    let en = format!("{cookie}; portal_lang=en");
    let r = post_page(&e.app, "/d/p/destination", &en, &bad, None).await;
    let errs = error_texts(&r.body);
    assert!(
        errs.iter()
            .any(|m| m == "Enter the new address, starting with the prefecture"),
        "{errs:?}"
    );
    assert!(
        errs.iter()
            .any(|m| m == "Enter the postcode of the new address as 7 digits, like 183-0056"),
        "{errs:?}"
    );
    let r = post_page(
        &e.app,
        "/d/p/moving",
        &en,
        &[
            ("moving_date.era", "令和"),
            ("moving_date.year", "8"),
            ("moving_date.month", "2"),
            ("moving_date.day", "30"),
        ],
        None,
    )
    .await;
    let errs = error_texts(&r.body);
    assert_eq!(
        errs,
        vec!["Moving date must be a real date, for example 1 April 2026".to_owned()]
    );
    for m in errs {
        assert!(m.is_ascii(), "English without Japanese text: {m}");
    }
    // やさしい日本語 too.
    let easy = format!("{cookie}; portal_lang=easy");
    let r = post_page(&e.app, "/d/p/destination", &easy, &bad, None).await;
    let errs = error_texts(&r.body);
    assert!(
        errs.iter()
            .any(|m| m == "あたらしい じゅうしょを けんから かいて ください"),
        "{errs:?}"
    );
}

#[tokio::test]
async fn a_refused_upload_does_not_replace_the_kept_file() {
    let e = env();
    let cookie = fill_juminhyo(&e).await;
    let r = post_page(
        &e.app,
        "/d/p/id_document",
        &cookie,
        &[],
        Some(("id_document", "wrong.gif", b"GIF89a fake")),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.body.contains("JPEG・PNG・PDFのファイルにしてください"),
        "{}",
        r.body
    );
    assert!(
        r.body.contains("card.png"),
        "the kept file is still the current one"
    );
    assert!(!r.body.contains("wrong.gif"), "{}", r.body);
    let r = get(&e.app, "/d/check", &cookie).await;
    assert!(r.body.contains("card.png") && !r.body.contains("wrong.gif"));
    // Too large: refused before it is kept too.
    let mut big = PNG.to_vec();
    big.resize(5 * 1024 * 1024 + 10, 0);
    let r = post_page(
        &e.app,
        "/d/p/id_document",
        &cookie,
        &[("_action", "save")],
        Some(("id_document", "huge.png", &big)),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "an error, not saved: {:?}",
        r.location
    );
    assert!(r.body.contains("MB以下にしてください"), "{}", r.body);
    assert!(r.body.contains("card.png") && !r.body.contains("huge.png"));
    // A first upload that is refused leaves no file at all.
    let cookie = post_form(&e.app, &format!("/t/{TENANT}/juminhyo/start"), "", "")
        .await
        .cookie
        .unwrap();
    let r = post_page(
        &e.app,
        "/d/p/id_document",
        &cookie,
        &[],
        Some(("id_document", "wrong.gif", b"GIF89a fake")),
    )
    .await;
    assert!(r.body.contains("JPEG・PNG・PDFのファイルにしてください"));
    assert!(!r.body.contains("class=\"uploaded\""), "{}", r.body);
}

#[tokio::test]
async fn every_change_link_lands_on_an_element_of_its_page() {
    let e = env();
    let juminhyo = fill_juminhyo(&e).await;
    let tenshutsu = start_tenshutsu(&e, "カクウ タロウ").await;
    for (page, fields) in [
        (
            "moving",
            vec![
                ("moving_date.era", "令和"),
                ("moving_date.year", "8"),
                ("moving_date.month", "12"),
                ("moving_date.day", "20"),
            ],
        ),
        (
            "destination",
            vec![
                ("destination.postal", "196-0001"),
                ("destination.address", "東京都昭島市美堀町架空1番"),
            ],
        ),
        (
            "members",
            vec![
                ("members.count", "1"),
                ("members.0.name", "架空 太郎"),
                ("members.0.kana", "カクウ タロウ"),
                ("members.0.birth_date.era", "昭和"),
                ("members.0.birth_date.year", "60"),
                ("members.0.birth_date.month", "1"),
                ("members.0.birth_date.day", "2"),
            ],
        ),
        (
            "visit",
            vec![
                ("visit_date.era", "令和"),
                ("visit_date.year", "8"),
                ("visit_date.month", "12"),
                ("visit_date.day", "25"),
            ],
        ),
    ] {
        let r = post_page(&e.app, &format!("/d/p/{page}"), &tenshutsu, &fields, None).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{page}: {}", r.body);
    }
    for cookie in [juminhyo, tenshutsu] {
        let check = get(&e.app, "/d/check", &cookie).await;
        let links: Vec<&str> = check
            .body
            .split("href=\"/d/p/")
            .skip(1)
            .map(|s| s.split('"').next().unwrap())
            .collect();
        assert!(links.len() >= 5, "{}", check.body);
        for link in links {
            let (path, anchor) = link.split_once('#').expect("an anchor");
            let page = get(&e.app, &format!("/d/p/{path}"), &cookie).await;
            assert!(
                page.body.contains(&format!("id=\"{anchor}\"")),
                "#{anchor} is not on /d/p/{path}"
            );
        }
    }
}

#[tokio::test]
async fn english_pages_use_english_punctuation() {
    let e = env();
    let en = "portal_lang=en";
    let r = get(&e.app, &format!("/t/{TENANT}/tenshutsu"), en).await;
    assert!(
        r.body.contains("Handled by: Residents Division"),
        "{}",
        r.body
    );
    let cookie = fill_juminhyo(&e).await;
    let r = post_form(&e.app, "/d/submit", &cookie, "").await;
    let loc = r.location.unwrap();
    let receipt = loc
        .trim_start_matches("/status/")
        .trim_end_matches("?new=1");
    let r = get(&e.app, &format!("/status/{receipt}"), en).await;
    assert!(r.body.contains("Reference number: <strong"), "{}", r.body);
    assert!(r.body.contains(" (Fuchu City)"), "{}", r.body);
    let main = r.body.split("<main").nth(1).unwrap();
    for c in ['：', '（', '）'] {
        assert!(!main.contains(c), "{c} in English: {main}");
    }
    // "(optional)" is apart from its label.
    let cookie = format!("{}; {en}", start_tenshutsu(&e, "カクウ タロウ").await);
    let r = get(&e.app, "/d/p/destination", &cookie).await;
    assert!(
        r.body.contains("household at the new address (optional)"),
        "{}",
        r.body
    );
}

#[tokio::test]
async fn a_correction_request_offers_to_send_again_naming_the_filing() {
    let e = env();
    let cookie = fill_juminhyo(&e).await;
    let r = post_form(&e.app, "/d/submit", &cookie, "").await;
    let loc = r.location.unwrap();
    let receipt = loc
        .trim_start_matches("/status/")
        .trim_end_matches("?new=1")
        .to_owned();
    // Not sent back: no way to "correct" it.
    let r = get(&e.app, &format!("/status/{receipt}"), "").await;
    assert!(!r.body.contains("/correct\""), "{}", r.body);
    let r = post_form(&e.app, &format!("/status/{receipt}/correct"), "", "").await;
    assert_eq!(
        r.location.as_deref(),
        Some(format!("/status/{receipt}").as_str())
    );
    let (s, _) = backoffice(
        &e.app,
        "POST",
        "/backoffice/status",
        TOKEN,
        Some(serde_json::json!({"receipt": receipt, "status": "correction_requested", "reason": "写真が不鮮明です。"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let r = get(&e.app, &format!("/status/{receipt}"), "").await;
    assert!(r.body.contains("写真が不鮮明です。"));
    assert!(!r.body.contains("下の理由"), "{}", r.body);
    assert!(
        r.body
            .contains(&format!("action=\"/status/{receipt}/correct\"")),
        "{}",
        r.body
    );
    let r = post_form(&e.app, &format!("/status/{receipt}/correct"), "", "").await;
    assert_eq!(r.location.as_deref(), Some("/d/p/applicant"));
    let again = r.cookie.unwrap();
    // Nothing of the first filing is filled in (the portal keeps none of it).
    let r = get(&e.app, "/d/p/applicant", &again).await;
    assert!(
        r.body.contains("name=\"applicant_name\" value=\"\""),
        "{}",
        r.body
    );
    // Fill it again with the same cookie and send: the filing names the
    // one it corrects.
    let pages: &[(&str, &[(&str, &str)])] = &[
        (
            "applicant",
            &[
                ("applicant_name", "架空 花子"),
                ("applicant_kana", "カクウ ハナコ"),
                ("applicant_birth_date.era", "昭和"),
                ("applicant_birth_date.year", "55"),
                ("applicant_birth_date.month", "3"),
                ("applicant_birth_date.day", "14"),
                ("phone", "042-000-1234"),
            ],
        ),
        (
            "address",
            &[
                ("applicant_address.postal", "183-0056"),
                ("applicant_address.address", "東京都府中市寿町一丁目架空5番"),
            ],
        ),
        (
            "scope",
            &[
                ("scope", "household"),
                ("copies", "1"),
                ("items", "household_head"),
            ],
        ),
        (
            "purpose",
            &[("purpose", "other"), ("purpose_detail", "架空の手続")],
        ),
    ];
    for (page, fields) in pages {
        let r = post_page(&e.app, &format!("/d/p/{page}"), &again, fields, None).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{page}: {}", r.body);
    }
    let r = post_page(
        &e.app,
        "/d/p/id_document",
        &again,
        &[],
        Some(("id_document", "card.png", PNG)),
    )
    .await;
    assert_eq!(r.location.as_deref(), Some("/d/check"), "{}", r.body);
    let r = get(&e.app, "/d/check", &again).await;
    assert!(r.body.contains("id=\"corrects\""), "{}", r.body);
    assert!(r.body.contains(&receipt));
    let r = post_form(&e.app, "/d/submit", &again, "").await;
    let second = r
        .location
        .unwrap()
        .trim_start_matches("/status/")
        .trim_end_matches("?new=1")
        .to_owned();
    let (_, j) = backoffice(&e.app, "GET", "/backoffice/filings", TOKEN, None).await;
    let mut found = false;
    for f in j["filings"].as_array().unwrap() {
        let id = f["id"].as_str().unwrap();
        let sealed = base64::engine::general_purpose::STANDARD
            .decode(f["sealed"].as_str().unwrap())
            .unwrap();
        let filing: serde_json::Value =
            serde_json::from_slice(&e.key.open(&sealed, id).unwrap()).unwrap();
        if filing["receipt"] == second.as_str() {
            assert_eq!(filing["corrects"], receipt.as_str());
            found = true;
        } else {
            assert!(filing.get("corrects").is_none());
        }
    }
    assert!(found);
    // The receipt of the corrected filing is not kept in the clear.
    for (table, cell) in e.portal.store.dump_cells().unwrap() {
        assert!(
            !cell.windows(receipt.len()).any(|w| w == receipt.as_bytes()),
            "receipt in plaintext in {table}"
        );
    }
}
