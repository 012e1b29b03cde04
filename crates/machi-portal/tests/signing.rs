//! Signed filings at the portal (issue 11, items 3 and 8): the signing
//! step of a procedure needing identity, the upload of a CMS SignedData
//! made over this filing's canonical form, and every refusal — tampered
//! content, wrong signer, expired or revoked card, unknown trust anchor,
//! too large or wrong type, a signature made for another filing — each
//! with nothing stored. Demo cards only when configured, labelled so.

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use http_body_util::BodyExt;
use machi_portal::seal::OpeningKey;
use machi_portal::signing::{DemoCards, DemoPerson, SignatureFiles, Signing};
use machi_portal::{Config, Portal};
use machi_sign::demo::{CardSpec, DemoCa, DemoCard, SignOptions, generate_key};
use proptest::prelude::*;
use sha2::{Digest, Sha256};
use tower::ServiceExt;

const TOKEN: &str = "test-pull-token-0123456789";
const TENANT: &str = "132063";
const BOUNDARY: &str = "----machi-portal-sign";

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-12-06T10:00:00+09:00")
        .unwrap()
        .with_timezone(&Utc)
}

fn days(n: i64) -> chrono::Duration {
    chrono::Duration::days(n)
}

/// The test PKI: a trusted CA with a good, an expired and a revoked card,
/// and a stranger CA nobody trusts. Keys are made once per test binary.
struct Pki {
    ca: DemoCa,
    crl: Vec<u8>,
    good: DemoCard,
    expired: DemoCard,
    revoked: DemoCard,
    stranger: DemoCard,
    wrong_key: DemoCard,
}

fn pki() -> &'static Pki {
    static P: OnceLock<Pki> = OnceLock::new();
    P.get_or_init(|| {
        let from = now() - days(3 * 365);
        let ca = DemoCa::new(generate_key().unwrap(), "test", from, from + days(3650)).unwrap();
        let card_key = generate_key().unwrap();
        let spec = |serial: u64, name: &str| {
            CardSpec::new(
                serial,
                name,
                "1",
                "319850102",
                "東京都府中市宮西町架空1番地",
                from,
            )
        };
        let good = ca.issue(&spec(1, "架空　太郎"), &card_key).unwrap();
        let mut old = spec(2, "架空　次郎");
        old.not_after = now() - days(10);
        let expired = ca.issue(&old, &card_key).unwrap();
        let revoked = ca.issue(&spec(3, "架空　三郎"), &card_key).unwrap();
        let crl = ca
            .crl(now() - days(1), now() + days(1), &[(3, now() - days(5))])
            .unwrap();
        let other =
            DemoCa::new(generate_key().unwrap(), "stranger", from, from + days(3650)).unwrap();
        let stranger = other.issue(&spec(1, "架空　四郎"), &card_key).unwrap();
        Pki {
            ca,
            crl,
            expired,
            revoked,
            stranger,
            wrong_key: good.with_key(generate_key().unwrap()),
            good,
        }
    })
}

fn demo_cards() -> Arc<DemoCards> {
    static D: OnceLock<Arc<DemoCards>> = OnceLock::new();
    D.get_or_init(|| {
        Arc::new(
            DemoCards::issue(
                &[DemoPerson {
                    name: "架空　花子".into(),
                    sex: "2".into(),
                    date_of_birth: "319870315".into(),
                    address: "東京都府中市宮西町架空1番地".into(),
                }],
                now(),
            )
            .unwrap(),
        )
    })
    .clone()
}

struct Env {
    app: Router,
    portal: Arc<Portal>,
    key: OpeningKey,
    _dir: Dir,
}

struct Dir(std::path::PathBuf);
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn env_with(signing: bool, demo: bool) -> Env {
    let n: u64 = u64::from_le_bytes(machi_portal::seal::random::<8>().unwrap());
    let dir = Dir(std::env::temp_dir().join(format!("machi-portal-sign-{n:x}")));
    std::fs::create_dir_all(&dir.0).unwrap();
    let key = OpeningKey::generate().unwrap();
    let mut config = Config::new(key.public());
    config.pull_token_sha256 = Some(hex::encode(Sha256::digest(TOKEN.as_bytes())));
    config.clock = Arc::new(now);
    if signing {
        let p = pki();
        // The CA from a file (PEM), its CRL from a file (DER), as configured.
        let ca = dir.0.join("ca.pem");
        std::fs::write(&ca, machi_sign::der_to_pem("CERTIFICATE", &p.ca.cert_der())).unwrap();
        let crl = dir.0.join("ca.crl");
        std::fs::write(&crl, &p.crl).unwrap();
        let (mut anchors, mut crls) = (vec![], vec![]);
        if demo {
            let d = demo_cards();
            anchors.push(d.ca_der().to_vec());
            crls.push(d.crl_der().to_vec());
            config.demo_cards = Some(d);
        }
        let s = Signing::load(
            SignatureFiles {
                anchors: vec![ca],
                crls: vec![crl],
            },
            anchors,
            crls,
        )
        .unwrap();
        config.signing = Some(Arc::new(s));
    }
    let portal = Portal::open(&dir.0.join("portal.db"), config).unwrap();
    portal
        .publish_shipped(TENANT, "府中市", "Fuchu City")
        .unwrap();
    Env {
        app: machi_portal::router(portal.clone()),
        portal,
        key,
        _dir: dir,
    }
}

struct Resp {
    status: StatusCode,
    location: Option<String>,
    cookie: Option<String>,
    body: Vec<u8>,
}

impl Resp {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
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
    let body = r.into_body().collect().await.unwrap().to_bytes().to_vec();
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

async fn post_multipart(
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
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{file_name}\"\r\nContent-Type: application/pkcs7-signature\r\n\r\n"
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

async fn post_empty(app: &Router, path: &str, cookie: &str) -> Resp {
    send(
        app,
        Request::post(path)
            .header(header::COOKIE, cookie)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::empty())
            .unwrap(),
    )
    .await
}

async fn pending(e: &Env) -> Vec<serde_json::Value> {
    let r = send(
        &e.app,
        Request::get("/backoffice/filings")
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let j: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    j["filings"].as_array().unwrap().clone()
}

/// Starts a 転出届 and answers every page; returns the draft cookie.
async fn fill_tenshutsu(e: &Env) -> String {
    let r = post_empty(&e.app, &format!("/t/{TENANT}/tenshutsu/start"), "").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let cookie = r.cookie.unwrap();
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
        let r = post_multipart(&e.app, &format!("/d/p/{page}"), &cookie, fields, None).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{page}: {}", r.text());
    }
    cookie
}

/// Opens the signing step; returns the document to sign.
async fn document(e: &Env, cookie: &str) -> Vec<u8> {
    let r = get(&e.app, "/d/sign", cookie).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = get(&e.app, "/d/sign/document", cookie).await;
    assert_eq!(r.status, StatusCode::OK);
    r.body
}

fn sign(card: &DemoCard, content: &[u8]) -> Vec<u8> {
    card.sign(
        content,
        SignOptions {
            detached: true,
            pss: false,
            signing_time: now() - chrono::Duration::minutes(1),
        },
    )
    .unwrap()
}

async fn upload(e: &Env, cookie: &str, bytes: &[u8]) -> Resp {
    post_multipart(
        &e.app,
        "/d/sign",
        cookie,
        &[("_action", "upload")],
        Some(("signature", "filing.p7s", bytes)),
    )
    .await
}

#[tokio::test]
async fn a_signed_tenshutsu_is_verified_shown_and_sealed_with_its_signature() {
    let e = env_with(true, false);
    let cookie = fill_tenshutsu(&e).await;
    let r = get(&e.app, "/d/check", &cookie).await;
    assert!(r.text().contains("href=\"/d/sign\""), "{}", r.text());
    // Submitting without a signature leads to the signing step.
    let r = post_empty(&e.app, "/d/submit", &cookie).await;
    assert_eq!(r.location.as_deref(), Some("/d/sign"));
    let r = get(&e.app, "/d/sign", &cookie).await;
    let page = r.text();
    assert!(page.contains("署名番号"));
    assert!(page.contains("東京都昭島市美堀町架空1番"));
    assert!(
        !page.contains("デモ用カード"),
        "no demo cards unless configured"
    );
    let doc = document(&e, &cookie).await;
    let v: serde_json::Value = serde_json::from_slice(&doc).unwrap();
    assert_eq!(v["format"], "machi-filing/1");
    assert_eq!(v["tenant"], TENANT);
    assert_eq!(v["procedure"]["id"], "tenshutsu");
    let nonce = v["nonce"].as_str().unwrap().to_owned();
    assert_eq!(nonce.len(), 32);
    // The document is the canonical form (RFC 8785) of itself.
    assert_eq!(machi_sign::canonicalize(&v).unwrap(), doc);
    // The same document while the draft stands (same nonce).
    assert_eq!(document(&e, &cookie).await, doc);

    // The card software's file, as PEM this time.
    let cms = sign(&pki().good, &doc);
    let pem = machi_sign::der_to_pem("PKCS7", &cms);
    let r = upload(&e, &cookie, pem.as_bytes()).await;
    assert_eq!(r.location.as_deref(), Some("/d/confirm"), "{}", r.text());
    let r = get(&e.app, "/d/confirm", &cookie).await;
    let page = r.text();
    assert!(page.contains("架空　太郎"), "{page}");
    assert!(page.contains("昭和60年1月2日"), "{page}");
    assert!(page.contains("東京都府中市宮西町架空1番地"));
    assert!(page.contains("男"));
    assert!(!page.contains("デモ用カード"));
    let r = post_empty(&e.app, "/d/submit", &cookie).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text());
    assert!(r.location.unwrap().starts_with("/status/"));

    // Sealed with the signature; the nonce is now used.
    let list = pending(&e).await;
    assert_eq!(list.len(), 1);
    let id = list[0]["id"].as_str().unwrap();
    let sealed = base64::engine::general_purpose::STANDARD
        .decode(list[0]["sealed"].as_str().unwrap())
        .unwrap();
    let filing: serde_json::Value =
        serde_json::from_slice(&e.key.open(&sealed, id).unwrap()).unwrap();
    assert_eq!(filing["signed_content"]["nonce"], nonce.as_str());
    assert_eq!(filing["signature"]["demo"], false);
    assert_eq!(filing["signature"]["portal_check"]["result"], "valid");
    let carried = base64::engine::general_purpose::STANDARD
        .decode(filing["signature"]["cms"].as_str().unwrap())
        .unwrap();
    assert_eq!(carried, cms);
    let payload = machi_portal::signing::payload_of(&filing["signed_content"]).unwrap();
    assert_eq!(payload.canonical_bytes().unwrap(), doc);
    assert!(e.portal.store.nonce_used(&nonce).unwrap());
    // A second filing with the same nonce is refused by the store itself.
    let again = e.portal.store.file(&machi_portal::store::NewFiling {
        receipt: "AAAA-BBBB-CCCC",
        tenant: TENANT,
        procedure: "tenshutsu",
        version: 1,
        sealed: b"x",
        now: "2026-12-06T10:00:00+09:00",
        draft_code: "none",
        nonce: Some(&nonce),
    });
    assert!(matches!(
        again,
        Err(machi_portal::store::StoreError::NonceUsed)
    ));
    assert_eq!(pending(&e).await.len(), 1);
}

#[tokio::test]
async fn every_bad_signature_is_refused_with_nothing_stored() {
    let e = env_with(true, false);
    let cookie = fill_tenshutsu(&e).await;
    let doc = document(&e, &cookie).await;
    let p = pki();
    let mut other = doc.clone();
    let at = other.len() / 2;
    other[at] ^= 1;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "tampered",
            sign(&p.good, &other),
            "署名後に改ざんされた可能性があります",
        ),
        (
            "wrong signer",
            sign(&p.wrong_key, &doc),
            "電子証明書の持ち主によるものと確認できません",
        ),
        ("expired", sign(&p.expired, &doc), "有効期限が切れています"),
        ("revoked", sign(&p.revoked, &doc), "失効しています"),
        (
            "unknown anchor",
            sign(&p.stranger, &doc),
            "信頼された認証局から発行されたものではありません",
        ),
        (
            "wrong type",
            b"\x89PNG\r\n\x1a\n0000".to_vec(),
            "署名ファイル（.p7s、CMS形式）ではありません",
        ),
        (
            "wrong PEM",
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_vec(),
            "署名ファイル（.p7s、CMS形式）ではありません",
        ),
        (
            "too large",
            vec![0x30; 70 * 1024],
            "署名ファイルが大きすぎます",
        ),
        ("empty", vec![], "署名ファイル（.p7s）を選んでください"),
        (
            "garbage DER",
            vec![0x30, 0x82, 0xff, 0xff, 1, 2, 3],
            "形式が正しくない",
        ),
    ];
    for (what, bytes, says) in cases {
        let r = upload(&e, &cookie, &bytes).await;
        assert_eq!(r.status, StatusCode::OK, "{what}");
        let page = r.text();
        assert!(page.contains("error-summary"), "{what}");
        assert!(page.contains(says), "{what}: {page}");
        // Nothing signed in the draft: the confirmation sends back.
        let r = get(&e.app, "/d/confirm", &cookie).await;
        assert_eq!(r.location.as_deref(), Some("/d/sign"), "{what}");
        assert!(pending(&e).await.is_empty(), "{what}");
    }
    // English and やさしい日本語 say it too.
    let r = send(
        &e.app,
        Request::post("/d/sign")
            .header(header::COOKIE, format!("{cookie}; portal_lang=en"))
            .header(
                header::CONTENT_TYPE,
                format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .body(Body::from(format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"signature\"; filename=\"a.p7s\"\r\n\r\n{}\r\n--{BOUNDARY}--\r\n",
                "not a signature"
            )))
            .unwrap(),
    )
    .await;
    assert!(
        r.text().contains("This is not a signature file"),
        "{}",
        r.text()
    );

    // A signature made for another filing (its own nonce) does not fit this one.
    let cookie2 = fill_tenshutsu(&e).await;
    let doc2 = document(&e, &cookie2).await;
    assert_ne!(doc, doc2, "every filing has its own nonce");
    let for_first = sign(&p.good, &doc);
    let r = upload(&e, &cookie2, &for_first).await;
    assert!(r.text().contains("署名後に改ざんされた可能性があります"));
    // Changing an answer after signing drops the signature.
    let r = upload(&e, &cookie, &for_first).await;
    assert_eq!(r.location.as_deref(), Some("/d/confirm"));
    let r = post_multipart(
        &e.app,
        "/d/p/destination",
        &cookie,
        &[
            ("destination.postal", "196-0001"),
            ("destination.address", "東京都昭島市美堀町架空2番"),
        ],
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let r = post_empty(&e.app, "/d/submit", &cookie).await;
    assert_eq!(r.location.as_deref(), Some("/d/sign"));
    let r = upload(&e, &cookie, &for_first).await;
    assert!(r.text().contains("署名後に改ざんされた可能性があります"));
    assert!(pending(&e).await.is_empty());
}

#[tokio::test]
async fn without_anchors_a_signed_procedure_cannot_be_sent_and_demo_cards_only_when_configured() {
    let e = env_with(false, false);
    let cookie = fill_tenshutsu(&e).await;
    let r = get(&e.app, "/d/sign", &cookie).await;
    assert!(r.text().contains("電子署名をまだ受け付けていません"));
    let r = post_multipart(
        &e.app,
        "/d/sign",
        &cookie,
        &[("_action", "demo"), ("demo_card", "0")],
        None,
    )
    .await;
    assert!(r.text().contains("電子署名をまだ受け付けていません"));
    assert!(pending(&e).await.is_empty());

    // Anchors but no demo cards: the demo action does not exist.
    let e = env_with(true, false);
    let cookie = fill_tenshutsu(&e).await;
    document(&e, &cookie).await;
    let r = post_multipart(
        &e.app,
        "/d/sign",
        &cookie,
        &[("_action", "demo"), ("demo_card", "0")],
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // Demo mode: offered and labelled 「デモ用カード」 wherever it appears.
    let e = env_with(true, true);
    let cookie = fill_tenshutsu(&e).await;
    let r = get(&e.app, "/d/sign", &cookie).await;
    let page = r.text();
    assert!(page.contains("デモ用カード"), "{page}");
    assert!(page.contains("架空　花子（デモ用カード）"));
    let r = post_multipart(
        &e.app,
        "/d/sign",
        &cookie,
        &[("_action", "demo"), ("demo_card", "0")],
        None,
    )
    .await;
    assert_eq!(r.location.as_deref(), Some("/d/confirm"), "{}", r.text());
    let r = get(&e.app, "/d/confirm", &cookie).await;
    assert!(r.text().contains("デモ用カード"));
    assert!(r.text().contains("架空　花子"));
    assert!(r.text().contains("女"));
    let r = post_empty(&e.app, "/d/submit", &cookie).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let list = pending(&e).await;
    let sealed = base64::engine::general_purpose::STANDARD
        .decode(list[0]["sealed"].as_str().unwrap())
        .unwrap();
    let filing: serde_json::Value = serde_json::from_slice(
        &e.key
            .open(&sealed, list[0]["id"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(filing["signature"]["demo"], true);
    // A card number that does not exist.
    let cookie = fill_tenshutsu(&e).await;
    document(&e, &cookie).await;
    let r = post_multipart(
        &e.app,
        "/d/sign",
        &cookie,
        &[("_action", "demo"), ("demo_card", "9")],
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text().contains("error-summary"));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    /// Arbitrary bytes as an uploaded signature file, as a PEM/DER
    /// configuration file or as a sealed filing's content: an error or a
    /// value, never a panic.
    #[test]
    fn arbitrary_uploads_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        if let Ok(der) = machi_portal::signing::signature_upload(&bytes) {
            let _ = machi_portal::signing::pem_or_der(&der);
        }
        let _ = machi_portal::signing::pem_or_der(&bytes);
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) {
            let _ = machi_portal::signing::payload_of(&v);
        }
    }

    /// PEM-looking text with arbitrary content.
    #[test]
    fn arbitrary_pem_never_panics(body in "[A-Za-z0-9+/=\n-]{0,600}") {
        let text = format!("-----BEGIN PKCS7-----\n{body}\n-----END PKCS7-----\n");
        let _ = machi_portal::signing::signature_upload(text.as_bytes());
    }
}

#[tokio::test]
async fn a_filing_against_an_unpublished_version_is_refused_with_nothing_sent() {
    let e = env_with(true, false);
    let cookie = fill_tenshutsu(&e).await;
    // The version the draft was made on disappears from the portal (a
    // database restored from before it was published).
    let db = rusqlite::Connection::open(e._dir.0.join("portal.db")).unwrap();
    db.execute("DELETE FROM definitions WHERE procedure = 'tenshutsu'", [])
        .unwrap();
    for r in [
        get(&e.app, "/d/sign", &cookie).await,
        post_empty(&e.app, "/d/submit", &cookie).await,
        upload(&e, &cookie, b"0").await,
    ] {
        assert_eq!(r.status, StatusCode::CONFLICT);
        assert!(
            r.text().contains("この手続の版は公開されていません"),
            "{}",
            r.text()
        );
        assert!(r.text().contains("何も送信していません"));
    }
    let r = get(&e.app, "/d/check", &format!("{cookie}; portal_lang=en")).await;
    assert!(
        r.text()
            .contains("This version of the service is not published"),
        "{}",
        r.text()
    );
    assert!(pending(&e).await.is_empty());
}

#[test]
fn a_new_crl_file_takes_effect_on_reload_and_a_bad_one_keeps_the_old() {
    let p = pki();
    let n: u64 = u64::from_le_bytes(machi_portal::seal::random::<8>().unwrap());
    let dir = Dir(std::env::temp_dir().join(format!("machi-portal-crl-{n:x}")));
    std::fs::create_dir_all(&dir.0).unwrap();
    let ca = dir.0.join("ca.der");
    std::fs::write(&ca, p.ca.cert_der()).unwrap();
    let crl = dir.0.join("ca.crl");
    std::fs::write(
        &crl,
        p.ca.crl(now() - days(2), now() + days(1), &[]).unwrap(),
    )
    .unwrap();
    let s = Signing::load(
        SignatureFiles {
            anchors: vec![ca],
            crls: vec![crl.clone()],
        },
        vec![],
        vec![],
    )
    .unwrap();
    let good = p.good.cert_der();
    assert!(s.verifier().check_certificate(&good, now()).is_ok());
    // The CA revokes card 1: the new CRL file is read on reload.
    std::fs::write(
        &crl,
        p.ca.crl(now() - days(1), now() + days(1), &[(1, now() - days(1))])
            .unwrap(),
    )
    .unwrap();
    s.reload().unwrap();
    assert!(matches!(
        s.verifier().check_certificate(&good, now()),
        Err(machi_sign::SignError::Revoked { .. })
    ));
    // A damaged file: an error naming it, and the loaded CRL stays.
    std::fs::write(&crl, b"garbage").unwrap();
    let err = s.reload().unwrap_err();
    assert!(err.message_ja().contains("ca.crl"), "{}", err.message_ja());
    assert!(matches!(
        s.verifier().check_certificate(&good, now()),
        Err(machi_sign::SignError::Revoked { .. })
    ));
    // No anchor at all is a configuration error.
    let err = Signing::load(SignatureFiles::default(), vec![], vec![]).unwrap_err();
    assert!(err.message_ja().contains("トラストアンカー"));
}

/// Served submissions at once (issue 11, item 10): the submit handler
/// goes through the group commit. Every draft is received with its own
/// 受付番号; three more drafts carrying the same signed content and nonce
/// as one of them (a replay of its signature), sent in the same burst,
/// are refused, each naming the filing that was received, and nothing of
/// them is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_submissions_are_each_committed_and_a_replayed_nonce_is_refused() {
    let e = env_with(true, false);
    let mut cookies = Vec::new();
    for _ in 0..12 {
        let cookie = fill_tenshutsu(&e).await;
        let doc = document(&e, &cookie).await;
        let r = upload(&e, &cookie, &sign(&pki().good, &doc)).await;
        assert_eq!(r.location.as_deref(), Some("/d/confirm"), "{}", r.text());
        cookies.push(cookie);
    }
    // The first draft, signed, copied under three more resume codes.
    let code0 = cookies[0].split('=').nth(1).unwrap().to_owned();
    let (plain, _) = e
        .portal
        .store
        .load_draft(&code0, now().timestamp())
        .unwrap()
        .unwrap();
    let mut replays = Vec::new();
    for _ in 0..3 {
        let code = machi_portal::seal::new_code(4).unwrap();
        e.portal
            .store
            .save_draft(&code, &plain, now().timestamp(), now().timestamp() + 3600)
            .unwrap();
        replays.push(format!("portal_draft={code}"));
    }
    let before = e.portal.commits();
    let all: Vec<String> = cookies.iter().chain(&replays).cloned().collect();
    let sends: Vec<_> = all
        .iter()
        .cloned()
        .map(|c| {
            let app = e.app.clone();
            tokio::spawn(async move { post_empty(&app, "/d/submit", &c).await })
        })
        .collect();
    let mut results = Vec::new();
    for s in sends {
        results.push(s.await.unwrap());
    }
    let receipt_of = |r: &Resp| {
        r.location
            .as_deref()
            .and_then(|l| l.strip_prefix("/status/"))
            .map(|l| l.trim_end_matches("?new=1").to_owned())
    };
    // The 11 other drafts: each received.
    let mut receipts: Vec<String> = results[1..12]
        .iter()
        .map(|r| receipt_of(r).unwrap_or_else(|| panic!("{:?} {}", r.status, r.text())))
        .collect();
    // Of the four drafts with draft 0's nonce, exactly one was received…
    let same: Vec<&Resp> = std::iter::once(&results[0]).chain(&results[12..]).collect();
    let won: Vec<String> = same.iter().filter_map(|r| receipt_of(r)).collect();
    assert_eq!(won.len(), 1, "exactly one of the same nonce is received");
    // …and the other three refused, naming it; nothing of them stored.
    for r in same.iter().filter(|r| receipt_of(r).is_none()) {
        assert_eq!(r.status, StatusCode::OK);
        let page = r.text();
        assert!(
            page.contains(&format!(
                "この署名はすでに受付番号 {} の申請に使われています",
                won[0]
            )),
            "{page}"
        );
    }
    receipts.push(won[0].clone());
    let mut distinct = receipts.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 12, "distinct 受付番号: {receipts:?}");
    for r in &receipts {
        let page = get(&e.app, &format!("/status/{r}"), "").await;
        assert_eq!(page.status, StatusCode::OK, "{r}");
    }
    let list = pending(&e).await;
    assert_eq!(list.len(), 12);
    let mut nonces: Vec<String> = list
        .iter()
        .map(|f| {
            let sealed = base64::engine::general_purpose::STANDARD
                .decode(f["sealed"].as_str().unwrap())
                .unwrap();
            let filing: serde_json::Value =
                serde_json::from_slice(&e.key.open(&sealed, f["id"].as_str().unwrap()).unwrap())
                    .unwrap();
            assert_eq!(filing["signature"]["portal_check"]["result"], "valid");
            filing["signed_content"]["nonce"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    nonces.sort();
    nonces.dedup();
    assert_eq!(nonces.len(), 12);
    // At most one commit per request (fewer when requests shared one).
    let commits = e.portal.commits() - before;
    assert!((1..=15).contains(&commits), "{commits} commits");
    // The same draft sent again after all that: its nonce is still used.
    let again = post_empty(&e.app, "/d/submit", &replays[0]).await;
    assert!(
        again.text().contains(&won[0]) || receipt_of(&again).is_none(),
        "{}",
        again.text()
    );
    assert_eq!(pending(&e).await.len(), 12);
}
