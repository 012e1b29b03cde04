//! Signed portal filings at the back office (issue 11, items 3, 4 and 8):
//! the back office verifies every signature again with its own anchors
//! and CRL on import and stores the result with the filing; a replayed
//! signature (nonce or signed content already imported) is refused with
//! nothing written; the pull worker survives an unreachable portal, and
//! status changes reach the portal through a queue that loses nothing.

use std::sync::{Arc, OnceLock};

use base64::Engine as _;
use chrono::{DateTime, Utc};
use machi::portal::{PortalLink, PulledFiling, import, pull_once};
use machi::store::portal_signatures::{self, SignatureCheck};
use machi_portal::seal::{self, OpeningKey};
use machi_portal::signing::{SignatureFiles, Signing};
use machi_portal::{Config, Portal};
use machi_sign::demo::{CardSpec, DemoCa, DemoCard, SignOptions, generate_key};
use sha2::{Digest, Sha256};

use crate::support::{FUCHU, TEST_MASTER_KEY, TestDb, code};

both_backends!(
    signed_filings_are_verified_again_on_import_and_replays_refused,
    a_signature_failing_at_the_back_office_is_stored_with_the_reason,
    the_pull_survives_an_unreachable_portal_and_status_changes_reach_it,
    machi_portal_pull_imports_once_for_cron,
    answers_breaking_the_definition_are_refused_though_signed_and_sealed,
);

const TOKEN: &str = "portal-pull-token-for-sign-tests";
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn now() -> DateTime<Utc> {
    Utc::now()
}

fn days(n: i64) -> chrono::Duration {
    chrono::Duration::days(n)
}

/// A trusted CA with a good card and a card the back office's CRL lists
/// (but the portal's does not), and a stranger CA.
struct Pki {
    ca: Vec<u8>,
    crl: Vec<u8>,
    crl_revoking_2: Vec<u8>,
    good: DemoCard,
    second: DemoCard,
    stranger_ca: Vec<u8>,
    stranger_crl: Vec<u8>,
}

fn pki() -> &'static Pki {
    static P: OnceLock<Pki> = OnceLock::new();
    P.get_or_init(|| {
        let from = now() - days(365);
        let ca = DemoCa::new(generate_key().unwrap(), "it", from, from + days(3650)).unwrap();
        let key = generate_key().unwrap();
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
        let good = ca.issue(&spec(1, "架空　太郎"), &key).unwrap();
        let second = ca.issue(&spec(2, "架空　次郎"), &key).unwrap();
        let crl = ca.crl(now() - days(1), now() + days(30), &[]).unwrap();
        let crl_revoking_2 = ca
            .crl(
                now() - days(1) + chrono::Duration::hours(1),
                now() + days(30),
                &[(2, now() - days(1))],
            )
            .unwrap();
        let stranger =
            DemoCa::new(generate_key().unwrap(), "stranger", from, from + days(3650)).unwrap();
        let stranger_crl = stranger
            .crl(now() - days(1), now() + days(30), &[])
            .unwrap();
        Pki {
            ca: ca.cert_der(),
            crl,
            crl_revoking_2,
            good,
            second,
            stranger_ca: stranger.cert_der(),
            stranger_crl,
        }
    })
}

fn signing(ca: &[u8], crl: &[u8]) -> Signing {
    Signing::load(
        SignatureFiles::default(),
        vec![ca.to_vec()],
        vec![crl.to_vec()],
    )
    .unwrap()
}

struct Running {
    base: String,
    key: OpeningKey,
    _dir: tempfile::TempDir,
    _server: tokio::task::JoinHandle<()>,
}

async fn portal() -> Running {
    let dir = tempfile::tempdir().unwrap();
    let key = OpeningKey::generate().unwrap();
    let mut config = Config::new(key.public());
    config.pull_token_sha256 = Some(hex::encode(Sha256::digest(TOKEN.as_bytes())));
    config.signing = Some(Arc::new(signing(&pki().ca, &pki().crl)));
    let portal = Portal::open(&dir.path().join("portal.db"), config).unwrap();
    portal
        .publish_shipped(FUCHU, "府中市", "Fuchu City")
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = machi_portal::router(portal.clone());
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Running {
        base,
        key,
        _dir: dir,
        _server: server,
    }
}

fn client() -> reqwest::Client {
    machi::service::hooks::http_client(std::time::Duration::from_secs(30)).unwrap()
}

const BOUNDARY: &str = "----machi-it-portal-sign";

fn multipart(fields: &[(&str, &str)], file: Option<&[u8]>) -> Vec<u8> {
    let mut body = Vec::new();
    for (k, v) in fields {
        body.extend_from_slice(
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    if let Some(bytes) = file {
        body.extend_from_slice(
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"signature\"; filename=\"filing.p7s\"\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

fn sign(card: &DemoCard, doc: &[u8]) -> Vec<u8> {
    card.sign(
        doc,
        SignOptions {
            detached: true,
            pss: false,
            signing_time: now() - chrono::Duration::minutes(1),
        },
    )
    .unwrap()
}

/// A citizen files a 転出届 through the portal's pages, signed with `card`.
async fn file_signed_tenshutsu(base: &str, card: &DemoCard) -> String {
    let c = client();
    let r = c
        .post(format!("{base}/t/{FUCHU}/tenshutsu/start"))
        .send()
        .await
        .unwrap();
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let moving = (now() + days(10)).date_naive();
    let visit = (now() + days(12)).date_naive();
    let (my, mm, md) = (
        moving.format("%Y").to_string(),
        moving.format("%-m").to_string(),
        moving.format("%-d").to_string(),
    );
    let (vy, vm, vd) = (
        visit.format("%Y").to_string(),
        visit.format("%-m").to_string(),
        visit.format("%-d").to_string(),
    );
    let pages: Vec<(&str, Vec<(&str, &str)>)> = vec![
        (
            "applicant",
            vec![
                ("applicant_name", "架空 太郎"),
                ("applicant_kana", "カクウ タロウ"),
                ("phone", "042-000-0000"),
            ],
        ),
        (
            "moving",
            vec![
                ("moving_date.era", "seireki"),
                ("moving_date.year", &my),
                ("moving_date.month", &mm),
                ("moving_date.day", &md),
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
                ("visit_date.era", "seireki"),
                ("visit_date.year", &vy),
                ("visit_date.month", &vm),
                ("visit_date.day", &vd),
            ],
        ),
    ];
    for (page, fields) in &pages {
        let r = c
            .post(format!("{base}/d/p/{page}"))
            .header("cookie", &cookie)
            .header(
                "content-type",
                format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .body(multipart(fields, None))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303, "{page}: {}", r.text().await.unwrap());
    }
    let r = c
        .get(format!("{base}/d/sign"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let doc = c
        .get(format!("{base}/d/sign/document"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let cms = sign(card, &doc);
    let r = c
        .post(format!("{base}/d/sign"))
        .header("cookie", &cookie)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(multipart(&[("_action", "upload")], Some(&cms)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    let r = c
        .post(format!("{base}/d/submit"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    loc.trim_start_matches("/status/")
        .trim_end_matches("?new=1")
        .to_owned()
}

async fn listed(base: &str) -> Vec<PulledFiling> {
    let r = client()
        .get(format!("{base}/backoffice/filings"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    serde_json::from_value(v["filings"].clone()).unwrap()
}

fn open(key: &OpeningKey, f: &PulledFiling) -> serde_json::Value {
    serde_json::from_slice(&key.open(&B64.decode(&f.sealed).unwrap(), &f.id).unwrap()).unwrap()
}

/// The filing resealed as another portal row (what a compromised portal
/// replaying a signature would send).
fn reseal(p: &Running, f: &PulledFiling, filing: &serde_json::Value) -> PulledFiling {
    let id = hex::encode(seal::random::<32>().unwrap());
    let sealed = seal::seal_filing(
        &p.key.public(),
        &machi_procedures::canonical_json(filing),
        &id,
    )
    .unwrap();
    PulledFiling {
        id,
        sealed: B64.encode(sealed),
        ..f.clone()
    }
}

async fn checks(db: &TestDb) -> Vec<(String, Option<SignatureCheck>)> {
    let fuchu = code(FUCHU);
    let f2 = fuchu.clone();
    db.store
        .read(Some(&f2), move |tx| {
            let rows = machi::store::portal_filings::list(tx, &fuchu, 100)?;
            rows.into_iter()
                .map(|r| Ok((r.receipt, portal_signatures::get(tx, &fuchu, r.filing_id)?)))
                .collect::<Result<Vec<_>, machi::store::StoreError>>()
        })
        .await
        .unwrap()
}

async fn signed_filings_are_verified_again_on_import_and_replays_refused(db: TestDb) {
    let db = db.with_tenants().await;
    let p = portal().await;
    let receipt = file_signed_tenshutsu(&p.base, &pki().good).await;
    let pulled = listed(&p.base).await;
    assert_eq!(pulled.len(), 1);
    let original = pulled[0].clone();
    let back_office = signing(&pki().ca, &pki().crl);
    let t = now().timestamp();
    let out = pull_once(
        &client(),
        &p.base,
        TOKEN,
        &db.store,
        &p.key,
        Some(&back_office),
        100,
        t,
    )
    .await
    .unwrap();
    assert_eq!(
        (out.imported, out.signatures_valid, out.signatures_failed),
        (1, 1, 0),
        "{out:?}"
    );
    let c = checks(&db).await;
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].0, receipt);
    let check = c[0].1.clone().expect("a signature check is stored");
    assert!(check.is_valid(), "{check:?}");
    let cert = check.certificate.unwrap();
    assert_eq!(cert.basic_four.name, "架空　太郎");
    assert_eq!(cert.basic_four.address, "東京都府中市宮西町架空1番地");
    assert!(!check.demo);
    // The certificate's items are not in any cell in the clear.
    for (table, rows) in db.raw_dump().await {
        for row in rows {
            for cell in row.into_iter().flatten() {
                assert!(
                    !cell.contains("宮西町架空"),
                    "plaintext certificate item in {table}"
                );
            }
        }
    }

    // The same filing again (a lost acknowledgement): stored once, no replay.
    let again = import(
        &db.store,
        &p.key,
        Some(&back_office),
        std::slice::from_ref(&original),
        t,
    )
    .await
    .unwrap();
    assert_eq!(
        (again.imported, again.already, again.refused.len()),
        (0, 1, 0)
    );

    // A replay: the same signed content and signature under another
    // receipt and portal row. Refused, nothing written.
    let mut filing = open(&p.key, &original);
    filing["receipt"] = "ZZZZ-ZZZZ-ZZZZ".into();
    let replay = reseal(&p, &original, &filing);
    let out = import(&db.store, &p.key, Some(&back_office), &[replay], t)
        .await
        .unwrap();
    assert_eq!(out.imported, 0);
    assert_eq!(out.refused.len(), 1, "{out:?}");
    assert_eq!(out.refused[0].code, "replayed");
    assert!(
        out.refused[0].ja.contains(&receipt),
        "{}",
        out.refused[0].ja
    );
    assert!(out.refused[0].ja.contains("再送"));
    assert!(out.refused[0].en.contains("replayed"));
    assert!(out.acknowledge.is_empty(), "a replay is not acknowledged");
    assert_eq!(checks(&db).await.len(), 1, "nothing half-written");

    // Replayed nonce with other answers (content differs, nonce the same):
    // refused too, before any signature check matters.
    let mut filing = open(&p.key, &original);
    filing["receipt"] = "YYYY-YYYY-YYYY".into();
    filing["signed_content"]["answers"]["phone"] = "042-999-9999".into();
    let replay = reseal(&p, &original, &filing);
    let out = import(&db.store, &p.key, Some(&back_office), &[replay], t)
        .await
        .unwrap();
    assert_eq!(out.refused.len(), 1);
    assert_eq!(out.refused[0].code, "replayed");
    assert_eq!(checks(&db).await.len(), 1);

    // A filing and its replay in the same pull (one transaction): the
    // first is stored, the second refused.
    file_signed_tenshutsu(&p.base, &pki().good).await;
    let fresh = listed(&p.base)
        .await
        .into_iter()
        .find(|f| f.id != original.id)
        .unwrap();
    let mut filing = open(&p.key, &fresh);
    filing["receipt"] = "XXXX-XXXX-XXXX".into();
    let copy = reseal(&p, &fresh, &filing);
    let out = import(
        &db.store,
        &p.key,
        Some(&back_office),
        &[fresh.clone(), copy],
        t,
    )
    .await
    .unwrap();
    assert_eq!((out.imported, out.refused.len()), (1, 1), "{out:?}");
    assert_eq!(out.refused[0].code, "replayed");
    assert_eq!(out.acknowledge, vec![fresh.id.clone()]);
    assert_eq!(checks(&db).await.len(), 2);
}

async fn a_signature_failing_at_the_back_office_is_stored_with_the_reason(db: TestDb) {
    let db = db.with_tenants().await;
    let p = portal().await;
    // Three signed filings the portal accepted.
    file_signed_tenshutsu(&p.base, &pki().good).await;
    file_signed_tenshutsu(&p.base, &pki().second).await;
    file_signed_tenshutsu(&p.base, &pki().good).await;
    let mut pulled = listed(&p.base).await;
    assert_eq!(pulled.len(), 3);
    let t = now().timestamp();

    // 1. Answers altered after signing (a portal that changed them).
    let mut filing = open(&p.key, &pulled[0]);
    filing["signed_content"]["answers"]["destination"]["address"] =
        "東京都昭島市美堀町架空9番".into();
    let tampered = reseal(&p, &pulled[0], &filing);
    // 2. Revoked since: the back office's CRL is newer than the portal's.
    let revoked_since = pulled.remove(1);
    // 3. Signature stripped from a procedure that needs one.
    let mut filing = open(&p.key, &pulled[1]);
    filing["signature"] = serde_json::Value::Null;
    let stripped = reseal(&p, &pulled[1], &filing);

    let back_office = Signing::load(
        SignatureFiles::default(),
        vec![pki().ca.clone()],
        vec![pki().crl.clone(), pki().crl_revoking_2.clone()],
    )
    .unwrap();
    let out = import(
        &db.store,
        &p.key,
        Some(&back_office),
        &[tampered, revoked_since, stripped],
        t,
    )
    .await
    .unwrap();
    assert_eq!(
        (out.imported, out.signatures_valid, out.signatures_failed),
        (3, 0, 3),
        "{out:?}"
    );
    let mut results: Vec<String> = checks(&db)
        .await
        .into_iter()
        .map(|(_, c)| c.unwrap().result)
        .collect();
    results.sort();
    assert_eq!(
        results,
        [
            "certificate_revoked",
            "missing",
            "signature_tampered_content"
        ]
    );
    for (_, c) in checks(&db).await {
        let c = c.unwrap();
        assert!(
            !c.message_ja.is_empty() && !c.message_en.is_empty(),
            "{c:?}"
        );
    }

    // A back office trusting another CA only: the portal's filing is
    // stored as not issued by a trusted authority; with no anchors at
    // all, as not checked.
    let p2 = portal().await;
    file_signed_tenshutsu(&p2.base, &pki().good).await;
    file_signed_tenshutsu(&p2.base, &pki().good).await;
    let l2 = listed(&p2.base).await;
    let other = signing(&pki().stranger_ca, &pki().stranger_crl);
    let out = import(&db.store, &p2.key, Some(&other), &l2[..1], t)
        .await
        .unwrap();
    assert_eq!((out.imported, out.signatures_failed), (1, 1));
    let out = import(&db.store, &p2.key, None, &l2[1..], t).await.unwrap();
    assert_eq!(out.imported, 1);
    let mut results: Vec<String> = checks(&db)
        .await
        .into_iter()
        .map(|(_, c)| c.unwrap().result)
        .collect();
    results.sort();
    assert!(
        results.contains(&"certificate_unknown_trust_anchor".to_owned()),
        "{results:?}"
    );
    assert!(results.contains(&"not_checked".to_owned()), "{results:?}");
}

async fn the_pull_survives_an_unreachable_portal_and_status_changes_reach_it(db: TestDb) {
    let db = db.with_tenants().await;
    let p = portal().await;
    let receipt = file_signed_tenshutsu(&p.base, &pki().good).await;
    let link = |url: &str, key: &OpeningKey| PortalLink {
        client: client(),
        url: url.to_owned(),
        token: TOKEN.to_owned(),
        key: OpeningKey::from_hex(&key.to_hex()).unwrap(),
        signing: Some(Arc::new(signing(&pki().ca, &pki().crl))),
        batch: 100,
    };
    let t = now().timestamp();

    // The portal unreachable: a clear error in both languages; the
    // filing stays on the portal.
    let down = link("http://127.0.0.1:9", &p.key);
    let err = down.run_once(&db.store, t).await.unwrap_err();
    assert!(
        err.message_ja().contains("何も失われていません"),
        "{}",
        err.message_ja()
    );
    assert!(
        err.message_en().contains("Nothing is lost"),
        "{}",
        err.message_en()
    );
    assert_eq!(listed(&p.base).await.len(), 1);

    // The worker keeps going past failures (and counts them).
    let before = machi::portal::counters().pull_failures.get();
    let worker = machi::portal::spawn_pull_worker(
        Arc::new(link("http://127.0.0.1:9", &p.key)),
        db.store.clone(),
        std::time::Duration::from_secs(3600),
    );
    for _ in 0..200 {
        if machi::portal::counters().pull_failures.get() > before {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    worker.abort();
    assert!(machi::portal::counters().pull_failures.get() > before);
    // On /metrics, without labels.
    let exposition = machi::api::metrics::Metrics::new(db.store.clone(), None).render();
    assert!(
        exposition.contains("machi_portal_pull_failures_total "),
        "{exposition}"
    );
    assert!(exposition.contains("machi_portal_filings_imported_total "));
    assert_eq!(
        machi::portal::backoff(std::time::Duration::from_secs(30), 1),
        std::time::Duration::from_secs(60)
    );
    assert_eq!(
        machi::portal::backoff(std::time::Duration::from_secs(30), 10),
        std::time::Duration::from_secs(960)
    );

    // Reachable: imported, acknowledged.
    let up = link(&p.base, &p.key);
    let r = up.run_once(&db.store, t).await.unwrap();
    assert_eq!((r.imported, r.signatures_valid), (1, 1), "{r:?}");
    assert!(listed(&p.base).await.is_empty());

    // A status change queued in the changing transaction, pushed while the
    // portal is down: kept; pushed when it is back.
    let fuchu = code(FUCHU);
    db.store
        .write(Some(&fuchu), {
            let fuchu = fuchu.clone();
            move |tx| -> Result<(), machi::store::StoreError> {
                let rows = machi::store::portal_filings::list(tx, &fuchu, 1)?;
                machi::portal::status_changed(
                    tx,
                    &fuchu,
                    rows[0].filing_id,
                    "rejected",
                    Some("転出予定日を確かめてください（架空の理由）。"),
                    t,
                )
            }
        })
        .await
        .unwrap();
    let (pushed, left) = down.flush_statuses(&db.store).await.unwrap();
    assert_eq!((pushed, left), (0, 1));
    let queued = db
        .store
        .read(Some(&fuchu), {
            let f = fuchu.clone();
            move |tx| machi::store::portal_pushes::pending(tx, &f, 10)
        })
        .await
        .unwrap();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].attempts, 1);
    assert_eq!(queued[0].receipt, receipt);
    // The reason is sealed while queued.
    for (table, rows) in db.raw_dump().await {
        for row in rows {
            for cell in row.into_iter().flatten() {
                assert!(!cell.contains("架空の理由"), "plaintext reason in {table}");
            }
        }
    }
    let r = up.run_once(&db.store, t).await.unwrap();
    assert_eq!((r.statuses_pushed, r.statuses_left), (1, 0));
    let page = client()
        .get(format!("{}/status/{receipt}", p.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("受理できませんでした"), "{page}");
    assert!(page.contains("架空の理由"));
    // An unknown status is refused before anything is queued.
    let err = db
        .store
        .write(Some(&fuchu), {
            let fuchu = fuchu.clone();
            move |tx| machi::portal::status_changed(tx, &fuchu, 1, "done", None, t)
        })
        .await;
    assert!(err.is_err());
}

/// Runs `machi portal pull` on the test database: (success, stdout, stderr).
async fn portal_pull(db: &TestDb, env: &[(&str, String)]) -> (bool, String, String) {
    let database = match db.location().await {
        machi::store::DatabaseLocation::Postgres(url) => url,
        machi::store::DatabaseLocation::Sqlite(path) => path.display().to_string(),
    };
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_machi"));
    cmd.arg("--database")
        .arg(database)
        .args(["portal", "pull"])
        .env_remove("MACHI_LOG")
        .env_remove("MACHI_SIGN_ANCHORS")
        .env_remove("MACHI_SIGN_CRLS")
        .env("MACHI_MASTER_KEY", TEST_MASTER_KEY);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

async fn machi_portal_pull_imports_once_for_cron(db: TestDb) {
    let db = db.with_tenants().await;
    let p = portal().await;
    file_signed_tenshutsu(&p.base, &pki().good).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, machi_sign::der_to_pem("CERTIFICATE", &pki().ca)).unwrap();
    let crl = dir.path().join("ca.crl");
    std::fs::write(&crl, &pki().crl).unwrap();
    let env = |url: &str| {
        vec![
            ("MACHI_PORTAL_URL", url.to_owned()),
            ("MACHI_PORTAL_PULL_TOKEN", TOKEN.to_owned()),
            ("MACHI_PORTAL_OPENING_KEY", p.key.to_hex().to_string()),
            ("MACHI_SIGN_ANCHORS", ca.display().to_string()),
            ("MACHI_SIGN_CRLS", crl.display().to_string()),
        ]
    };
    // The portal unreachable: exit status 1, a clear message in both
    // languages, the filing still on the portal.
    let (ok, _, err) = portal_pull(&db, &env("http://127.0.0.1:9")).await;
    assert!(!ok);
    assert!(err.contains("何も失われていません"), "{err}");
    assert!(err.contains("Nothing is lost"), "{err}");
    assert_eq!(listed(&p.base).await.len(), 1);
    // Reachable: imported with its signature checked, acknowledged.
    let (ok, out, err) = portal_pull(&db, &env(&p.base)).await;
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("取込み 1 件"), "{out}");
    assert!(out.contains("imported 1"), "{out}");
    assert!(listed(&p.base).await.is_empty());
    let c = checks(&db).await;
    assert_eq!(c.len(), 1);
    assert!(c[0].1.as_ref().unwrap().is_valid());
    // Nothing new: nothing imported twice.
    let (ok, out, _) = portal_pull(&db, &env(&p.base)).await;
    assert!(ok);
    assert!(out.contains("取込み 0 件"), "{out}");
    // No portal configured: a clear error.
    let (ok, _, err) = portal_pull(&db, &[]).await;
    assert!(!ok);
    assert!(err.contains("MACHI_PORTAL_URL"), "{err}");
}

/// A compromised portal (or one with a bug) lets through answers its
/// definition forbids: a 転出 dated 40 days ago. The citizen's card signs
/// exactly that content and the filing is sealed correctly, so only the
/// back office's own check of the answers against the published
/// definition refuses it (`answers_invalid`), once, with the reason.
async fn answers_breaking_the_definition_are_refused_though_signed_and_sealed(db: TestDb) {
    let db = db.with_tenants().await;
    let p = portal().await;
    file_signed_tenshutsu(&p.base, &pki().good).await;
    let original = listed(&p.base).await.remove(0);
    let mut filing = open(&p.key, &original);
    let long_ago = (now() - days(40))
        .date_naive()
        .format("%Y-%m-%d")
        .to_string();
    filing["signed_content"]["answers"]["moving_date"] = long_ago.clone().into();
    filing["receipt"] = "WWWW-WWWW-WWWW".into();
    let payload = machi_portal::signing::payload_of(&filing["signed_content"]).unwrap();
    let doc = payload.canonical_bytes().unwrap();
    let cms = sign(&pki().good, &doc);
    let back_office = signing(&pki().ca, &pki().crl);
    // Correctly signed: the signature alone would pass.
    back_office
        .verifier()
        .verify(&cms, Some(&doc), now())
        .expect("the tampered content is correctly signed");
    filing["signature"]["cms"] = B64.encode(&cms).into();
    let tampered = reseal(&p, &original, &filing);
    let out = import(
        &db.store,
        &p.key,
        Some(&back_office),
        std::slice::from_ref(&tampered),
        now().timestamp(),
    )
    .await
    .unwrap();
    assert_eq!(out.imported, 0, "{out:?}");
    assert_eq!(out.refused.len(), 1);
    let r = &out.refused[0];
    assert_eq!(r.code, "answers_invalid");
    assert_eq!(r.receipt.as_deref(), Some("WWWW-WWWW-WWWW"));
    assert!(r.ja.contains("転出"), "{}", r.ja);
    assert!(r.ja.contains("令和"), "the window in 和暦: {}", r.ja);
    assert!(r.en.contains("do not satisfy"), "{}", r.en);
    // Answers failing may be this version's validators (an older
    // machi-procedures than the portal's): deferred first, not dropped.
    assert!(out.quarantine.is_empty(), "{out:?}");
    assert_eq!(out.defer, vec![tampered.id.clone()]);
    assert_eq!(out.deferrals_recorded, 1);
    assert!(checks(&db).await.is_empty(), "nothing stored");
    let again = import(
        &db.store,
        &p.key,
        Some(&back_office),
        std::slice::from_ref(&tampered),
        now().timestamp() + 3600,
    )
    .await
    .unwrap();
    assert_eq!(
        (
            again.deferrals_recorded,
            again.quarantine.len(),
            again.defer.len()
        ),
        (0, 0, 1)
    );
    // Still refused a week on: quarantined, recorded once; a second
    // import records nothing new.
    let week = now().timestamp() + 7 * 86_400;
    let out = import(
        &db.store,
        &p.key,
        Some(&back_office),
        std::slice::from_ref(&tampered),
        week,
    )
    .await
    .unwrap();
    assert_eq!(
        out.quarantine,
        vec![machi::portal::Quarantined {
            id: tampered.id.clone(),
            reason: "answers"
        }]
    );
    assert_eq!(out.refusals_recorded, 1);
    let again = import(
        &db.store,
        &p.key,
        Some(&back_office),
        std::slice::from_ref(&tampered),
        week + 60,
    )
    .await
    .unwrap();
    assert_eq!((again.refusals_recorded, again.quarantine.len()), (0, 1));
    let fuchu = code(FUCHU);
    let f2 = fuchu.clone();
    let rows = db
        .store
        .read(Some(&f2), move |tx| {
            machi::store::portal_refusals::list(tx, &fuchu, 10)
        })
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].code, "answers_invalid");
    assert_eq!(rows[0].citizen_reason, "answers");
    // The untouched filing still imports.
    let out = import(
        &db.store,
        &p.key,
        Some(&back_office),
        std::slice::from_ref(&original),
        now().timestamp(),
    )
    .await
    .unwrap();
    assert_eq!((out.imported, out.signatures_valid), (1, 1), "{out:?}");
}
