//! The back office pulls sealed filings from the citizen portal over its
//! authenticated endpoints, imports them once, and acknowledges them so the
//! portal deletes its sealed copies (issue 11, item 4).

use std::sync::Arc;

use base64::Engine as _;
use machi::portal::{PulledFiling, import, pull_once, push_status};
use machi_portal::seal::OpeningKey;
use machi_portal::{Config, Portal};
use sha2::{Digest, Sha256};

use crate::support::{FUCHU, TestDb, code};

both_backends!(
    portal_filings_are_pulled_imported_once_and_acknowledged,
    portal_import_refuses_what_does_not_open_or_match,
    refused_filings_are_quarantined_once_and_do_not_starve_good_ones,
    an_old_portal_that_ignores_refusals_ends_the_round,
    a_quarantined_filing_imports_again_once_the_key_is_fixed,
);

const TOKEN: &str = "portal-pull-token-for-tests";
const BOUNDARY: &str = "----machi-it-portal";

struct Running {
    base: String,
    portal: Arc<Portal>,
    key: OpeningKey,
    _dir: tempfile::TempDir,
}

async fn portal() -> Running {
    let dir = tempfile::tempdir().unwrap();
    let key = OpeningKey::generate().unwrap();
    let mut config = Config::new(key.public());
    config.pull_token_sha256 = Some(hex::encode(Sha256::digest(TOKEN.as_bytes())));
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

fn client() -> reqwest::Client {
    machi::service::hooks::http_client(std::time::Duration::from_secs(30)).unwrap()
}

/// Answers the survey through the portal's pages, as a browser would.
async fn file_survey(base: &str, comment: &str) {
    let c = client();
    let r = c
        .post(format!("{base}/t/{FUCHU}/survey_internet/start"))
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
    for (page, fields) in [
        ("age", vec![("age_group", "a70")]),
        ("use", vec![("uses_internet", "no")]),
        (
            "learning",
            vec![("want_class", "maybe"), ("comment", comment)],
        ),
    ] {
        let mut body = String::new();
        for (k, v) in fields {
            body.push_str(&format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"
            ));
        }
        body.push_str(&format!("--{BOUNDARY}--\r\n"));
        let r = c
            .post(format!("{base}/d/p/{page}"))
            .header("cookie", &cookie)
            .header(
                "content-type",
                format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303, "{page}");
    }
    let r = c
        .post(format!("{base}/d/submit"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/status/")
    );
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

async fn portal_filings_are_pulled_imported_once_and_acknowledged(db: TestDb) {
    let db = db.with_tenants().await;
    let p = portal().await;
    file_survey(&p.base, "架空の意見です").await;
    file_survey(&p.base, "架空の二件目").await;
    let before = listed(&p.base).await;
    assert_eq!(before.len(), 2);

    let out = pull_once(
        &client(),
        &p.base,
        TOKEN,
        &db.store,
        &p.key,
        None,
        100,
        1_000,
    )
    .await
    .unwrap();
    assert_eq!(
        (out.imported, out.already, out.refused.len()),
        (2, 0, 0),
        "{out:?}"
    );
    // Acknowledged: the portal keeps no sealed copy.
    assert!(p.portal.store.pending(10).unwrap().is_empty());
    assert!(listed(&p.base).await.is_empty());
    // The same filings again (a retry after a lost acknowledgement): stored once.
    let again = import(&db.store, &p.key, None, &before, 2_000)
        .await
        .unwrap();
    assert_eq!((again.imported, again.already), (0, 2));
    assert_eq!(again.acknowledge.len(), 2);

    let fuchu = code(FUCHU);
    let rows = db
        .store
        .read(Some(&fuchu), {
            let fuchu = fuchu.clone();
            move |tx| machi::store::portal_filings::list(tx, &fuchu, 10)
        })
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].procedure, "survey_internet");
    assert_eq!(rows[0].version, 1);
    assert_eq!(rows[0].imported_at, 1_000);
    let comments: Vec<&str> = rows
        .iter()
        .map(|r| {
            r.filing["signed_content"]["answers"]["comment"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert!(comments.contains(&"架空の意見です"));
    // Stored encrypted with the tenant's key: not in any cell in the clear.
    for (table, rows) in db.raw_dump().await {
        for row in rows {
            for cell in row.into_iter().flatten() {
                assert!(!cell.contains("架空の意見"), "plaintext filing in {table}");
            }
        }
    }
    // The back office tells the citizen: the status page shows it.
    let receipt = rows[0].receipt.clone();
    push_status(
        &client(),
        &p.base,
        TOKEN,
        &receipt,
        "approved",
        Some("集計に使わせていただきます。"),
    )
    .await
    .unwrap();
    let page = client()
        .get(format!("{}/status/{receipt}", p.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("承認されました"), "{page}");
    assert!(page.contains("集計に使わせていただきます。"));
    let err = push_status(
        &client(),
        &p.base,
        TOKEN,
        "AAAA-BBBB-CCCC",
        "approved",
        None,
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("404"), "{err}");
    // Another tenant sees none of them.
    let akishima = code(crate::support::AKISHIMA);
    let other = db
        .store
        .read(Some(&akishima), {
            let a = akishima.clone();
            move |tx| machi::store::portal_filings::list(tx, &a, 10)
        })
        .await
        .unwrap();
    assert!(other.is_empty());
}

async fn portal_import_refuses_what_does_not_open_or_match(db: TestDb) {
    let db = db.with_tenants().await;
    let p = portal().await;
    file_survey(&p.base, "架空").await;
    let good = listed(&p.base).await.remove(0);

    // Sealed to another key.
    let stranger = OpeningKey::generate().unwrap();
    let out = import(&db.store, &stranger, None, std::slice::from_ref(&good), 1)
        .await
        .unwrap();
    assert_eq!(out.refused.len(), 1);
    assert!(
        out.refused[0].ja.contains("開けません"),
        "{:?}",
        out.refused
    );
    assert!(out.acknowledge.is_empty());
    // Tampered bytes.
    let mut bytes = base64::engine::general_purpose::STANDARD
        .decode(&good.sealed)
        .unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let tampered = PulledFiling {
        sealed: base64::engine::general_purpose::STANDARD.encode(&bytes),
        ..good.clone()
    };
    // Listed under another procedure, or moved to another row.
    let relabelled = PulledFiling {
        procedure: "juminhyo".into(),
        ..good.clone()
    };
    let moved = PulledFiling {
        id: "0".repeat(64),
        ..good.clone()
    };
    let out = import(&db.store, &p.key, None, &[tampered, relabelled, moved], 1)
        .await
        .unwrap();
    assert_eq!(out.refused.len(), 3, "{out:?}");
    assert!(
        out.refused[1].en.contains("does not match"),
        "{:?}",
        out.refused[1]
    );
    assert_eq!(out.imported, 0);
    // Nothing was written.
    let fuchu = code(FUCHU);
    let rows = db
        .store
        .read(Some(&fuchu), {
            let f = fuchu.clone();
            move |tx| machi::store::portal_filings::list(tx, &f, 10)
        })
        .await
        .unwrap();
    assert!(rows.is_empty());
    // An unreachable portal: a clear error, nothing lost on either side.
    let err = pull_once(
        &client(),
        "http://127.0.0.1:9",
        TOKEN,
        &db.store,
        &p.key,
        None,
        10,
        1,
    )
    .await
    .unwrap_err();
    assert!(
        err.message_ja().contains("何も失われていません"),
        "{}",
        err.message_ja()
    );
    // A wrong token.
    let err = pull_once(
        &client(),
        &p.base,
        "wrong-token-000000",
        &db.store,
        &p.key,
        None,
        10,
        1,
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
    assert_eq!(
        p.portal.store.pending(10).unwrap().len(),
        1,
        "still on the portal"
    );
}

/// 150 filings the back office cannot open, all older than the good ones
/// (so every pull batch of 100 is full of them). Not opening may be the
/// back office's fault (a rotated or misconfigured key), so they are
/// first deferred: offered after the good ones, which the same round
/// imports, and the round ends once only the same deferred ones come
/// back. Still failing a week later, each is recorded once and
/// acknowledged to the portal as refused (dropped there; the citizen's
/// status page says it could not be accepted and why, in 和暦), never
/// pulled again.
async fn refused_filings_are_quarantined_once_and_do_not_starve_good_ones(db: TestDb) {
    use machi_portal::seal;
    use machi_portal::store::SealedFiling;
    let db = db.with_tenants().await;
    let p = portal().await;
    let stranger = OpeningKey::generate().unwrap();
    let mut bad = Vec::new();
    for i in 0..150 {
        let receipt = seal::new_code(3).unwrap();
        let id = seal::lookup_id(p.portal.store.secret(), "receipt", &receipt);
        let sealed = seal::seal_filing(&stranger.public(), b"{}", &id).unwrap();
        bad.push((
            receipt.clone(),
            SealedFiling {
                id,
                receipt,
                tenant: FUCHU.into(),
                procedure: "survey_internet".into(),
                version: 1,
                sealed,
                received_at: format!("2026-12-01T09:{:02}:{:02}+09:00", i / 60, i % 60),
                nonce: None,
                draft_code: None,
            },
        ));
    }
    let rows: Vec<SealedFiling> = bad.iter().map(|(_, r)| r.clone()).collect();
    assert!(
        p.portal
            .store
            .file_many(&rows)
            .unwrap()
            .iter()
            .all(|r| r.is_ok())
    );
    for i in 0..3 {
        file_survey(&p.base, &format!("架空{i}")).await;
    }
    assert_eq!(p.portal.store.pending(1000).unwrap().len(), 153);
    let link = machi::portal::PortalLink {
        client: client(),
        url: p.base.clone(),
        token: TOKEN.into(),
        key: OpeningKey::from_hex(&p.key.to_hex()).unwrap(),
        signing: None,
        batch: 100,
    };
    let t0 = 1_765_000_000;
    let r = link.run_once(&db.store, t0).await.unwrap();
    assert_eq!(r.imported, 3, "the good filings are not starved: {r:?}");
    assert_eq!(r.quarantined, 0, "not quarantined at once: {r:?}");
    assert!(r.refused.iter().all(|f| f.code == "does_not_open"));
    assert_eq!(
        r.batches, 3,
        "100 new deferrals, 50 new and the good ones, then only old deferrals: the round ends"
    );
    assert_eq!(p.portal.store.pending(1000).unwrap().len(), 150, "kept");
    let fuchu = code(FUCHU);
    let clerk = machi::service::Actor {
        operator: "clerk".into(),
        terminal: "t1".into(),
    };
    assert!(
        db.registry
            .inbox_refusals(&fuchu, 500, &clerk)
            .await
            .unwrap()
            .is_empty()
    );
    // Six days on: still deferred.
    let r = link.run_once(&db.store, t0 + 6 * 86_400).await.unwrap();
    assert_eq!((r.imported, r.quarantined), (0, 0), "{r:?}");
    assert_eq!(r.batches, 1, "nothing new: one pull");
    // A week on, still refused: quarantined.
    let r = link.run_once(&db.store, t0 + 7 * 86_400).await.unwrap();
    assert_eq!(r.quarantined, 150, "{r:?}");
    assert_eq!(r.refused.len(), 150);
    assert!(p.portal.store.pending(1000).unwrap().is_empty());

    // Recorded once each, visible to staff with the reason.
    let list = db
        .registry
        .inbox_refusals(&fuchu, 500, &clerk)
        .await
        .unwrap();
    assert_eq!(list.len(), 150);
    let one = &list[0].refusal;
    assert_eq!(one.code, "does_not_open");
    assert_eq!(one.citizen_reason, "unreadable");
    assert!(
        one.message_ja.contains("開けません") && one.message_ja.contains("7日のあいだ"),
        "{}",
        one.message_ja
    );
    assert!(
        one.message_en.contains("does not open"),
        "{}",
        one.message_en
    );
    assert_eq!(one.receipt, None, "it did not open: no receipt known");
    assert!(
        list[0].title_ja.is_some(),
        "the procedure it names is known"
    );

    // Never pulled again: the next round finds nothing, records nothing.
    let again = link.run_once(&db.store, t0 + 8 * 86_400).await.unwrap();
    assert_eq!(
        (again.imported, again.quarantined, again.refused.len()),
        (0, 0, 0)
    );
    let list = db
        .registry
        .inbox_refusals(&fuchu, 500, &clerk)
        .await
        .unwrap();
    assert_eq!(list.len(), 150);

    // The citizen reads why, in plain words, with the dates in 和暦.
    let (receipt, _) = &bad[7];
    let row = p.portal.store.filing(receipt).unwrap().unwrap();
    assert_eq!(row.status, machi_portal::store::Status::NotAccepted);
    assert!(row.sealed.is_none());
    let page = client()
        .get(format!("{}/status/{receipt}", p.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("受け付けられませんでした"), "{page}");
    assert!(page.contains("申請のデータを開けませんでした"), "{page}");
    assert!(
        page.contains("もう一度はじめから申請してください"),
        "{page}"
    );
    assert!(page.contains("令和"), "{page}");
    assert!(!page.contains("2026-12-01T"), "no ISO timestamp: {page}");
    assert!(!page.contains("does_not_open"), "no internal code: {page}");
    let en = client()
        .get(format!("{}/status/{receipt}", p.base))
        .header("cookie", "portal_lang=en")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(en.contains("Could not be accepted"), "{en}");
    assert!(en.contains("could not open the application data"), "{en}");
}

/// A portal older than the quarantine acknowledgement ignores `refused`
/// and lists the same refused filings again: the round ends after one
/// pull instead of pulling them a hundred times (nothing new was stored
/// or recorded, and the portal dropped nothing).
async fn an_old_portal_that_ignores_refusals_ends_the_round(db: TestDb) {
    use axum::routing::{get, post};
    let db = db.with_tenants().await;
    let filings: Vec<serde_json::Value> = (0..2)
        .map(|i| {
            serde_json::json!({
                "id": format!("{}old{i}", machi::store::portal_filings::COUNTER_PREFIX),
                "tenant": FUCHU,
                "procedure": "survey_internet",
                "version": 1,
                "received_at": "2026-12-01T09:00:00+09:00",
                "sealed": base64::engine::general_purpose::STANDARD.encode(b"x"),
            })
        })
        .collect();
    let pulls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let app = axum::Router::new()
        .route(
            "/backoffice/filings",
            get({
                let pulls = pulls.clone();
                move || {
                    pulls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let body = serde_json::json!({ "filings": filings });
                    async move { axum::Json(body) }
                }
            }),
        )
        .route(
            "/backoffice/ack",
            post(|| async { axum::Json(serde_json::json!({ "deleted": 0 })) }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let link = machi::portal::PortalLink {
        client: client(),
        url: base,
        token: TOKEN.into(),
        key: OpeningKey::generate().unwrap(),
        signing: None,
        batch: 2,
    };
    let r = link.run_once(&db.store, 1_765_000_000).await.unwrap();
    assert_eq!((r.batches, r.quarantined), (1, 2), "{r:?}");
    assert!(r.refused.iter().all(|f| f.code == "reserved_id"), "{r:?}");
    let r = link.run_once(&db.store, 1_765_000_100).await.unwrap();
    assert_eq!(r.batches, 1, "{r:?}");
    assert_eq!(pulls.load(std::sync::atomic::Ordering::SeqCst), 2);
}

/// A filing that does not open with the back office's (misconfigured)
/// key: deferred, quarantined a week on; once the right key is back, it
/// is imported again from the sealed bytes kept with the refusal; once.
async fn a_quarantined_filing_imports_again_once_the_key_is_fixed(db: TestDb) {
    let db = db.with_tenants().await;
    let p = portal().await;
    file_survey(&p.base, "架空の意見です").await;
    let list = listed(&p.base).await;
    assert_eq!(list.len(), 1);
    let id = list[0].id.clone();
    let wrong = OpeningKey::generate().unwrap();
    let t0 = 1_765_000_000;
    let out = import(&db.store, &wrong, None, &list, t0).await.unwrap();
    assert_eq!((out.defer.len(), out.quarantine.len()), (1, 0), "{out:?}");
    let out = import(&db.store, &wrong, None, &list, t0 + 7 * 86_400)
        .await
        .unwrap();
    assert_eq!(out.quarantine.len(), 1, "{out:?}");
    let fuchu = code(FUCHU);
    // Still the wrong key: refused again, nothing written.
    let again =
        machi::portal::reimport_refused(&db.store, &wrong, None, &fuchu, &id, t0 + 8 * 86_400)
            .await
            .unwrap()
            .unwrap();
    assert_eq!(again.imported, 0);
    assert_eq!(again.refused[0].code, "does_not_open");
    assert_eq!(stored_filings(&db).await, 0);
    // The right key: imported, once.
    let out =
        machi::portal::reimport_refused(&db.store, &p.key, None, &fuchu, &id, t0 + 9 * 86_400)
            .await
            .unwrap()
            .unwrap();
    assert_eq!(out.imported, 1, "{out:?}");
    let out =
        machi::portal::reimport_refused(&db.store, &p.key, None, &fuchu, &id, t0 + 9 * 86_400)
            .await
            .unwrap()
            .unwrap();
    assert_eq!((out.imported, out.already), (0, 1), "{out:?}");
    assert_eq!(stored_filings(&db).await, 1);
    assert!(
        machi::portal::reimport_refused(&db.store, &p.key, None, &fuchu, "no-such-id", t0)
            .await
            .unwrap()
            .is_none()
    );
}

async fn stored_filings(db: &TestDb) -> i64 {
    let f = code(FUCHU);
    db.store
        .read(Some(&f.clone()), move |tx| {
            tx.query_one(
                "SELECT COUNT(*) FROM portal_filings WHERE tenant = $1",
                &[f.as_str().into()],
            )?
            .int(0)
        })
        .await
        .unwrap()
}
