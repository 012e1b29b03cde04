//! 取り込み直し (issue 11): a filing the import refused and quarantined is
//! imported again by a supervisor from the staff page or the API, once
//! its cause is fixed, with the server's portal link; the portal learns
//! it was received after all. Filings only deferred so far are listed
//! with the day they would be quarantined.

use std::sync::Arc;

use axum::http::StatusCode;
use machi::api::{self, AppState};
use machi::portal::PortalLink;
use machi_domain::access::Role;
use machi_portal::seal::OpeningKey;

use crate::inbox::{Part, Running, TOKEN, call, client, file, portal, status_page};
use crate::support::{FUCHU, TestDb, code};
use crate::ui::{Session, staff};

both_backends!(a_supervisor_imports_a_quarantined_filing_again_and_the_portal_learns_it,);

const R: &str = "/api/v1/tenants/132063/filings/refused";

fn link(p: &Running, key: &OpeningKey) -> PortalLink {
    PortalLink {
        client: client(),
        url: p.base.clone(),
        token: TOKEN.into(),
        key: OpeningKey::from_hex(&key.to_hex()).unwrap(),
        signing: None,
        batch: 100,
    }
}

/// The app; with `importer`, the server's portal link (as `machi serve`
/// wires it from the environment).
fn app(db: &TestDb, importer: Option<PortalLink>) -> axum::Router {
    api::app(AppState {
        registry: db
            .registry
            .clone()
            .with_portal_importer(importer.map(Arc::new)),
    })
}

async fn file_survey(p: &Running) -> String {
    file(
        &p.base,
        "survey_internet",
        vec![
            ("age", vec![Part::Text("age_group", "a70".into())]),
            ("use", vec![Part::Text("uses_internet", "no".into())]),
            (
                "learning",
                vec![
                    Part::Text("want_class", "maybe".into()),
                    Part::Text("comment", "架空の意見です".into()),
                ],
            ),
        ],
    )
    .await
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

const FILINGS: &str = "SELECT COUNT(*) FROM portal_filings WHERE tenant = $1";
const REIMPORTS: &str =
    "SELECT COUNT(*) FROM audit_log WHERE tenant = $1 AND function = 'filing.reimport'";

async fn a_supervisor_imports_a_quarantined_filing_again_and_the_portal_learns_it(db: TestDb) {
    let db = db.with_tenants().await;
    staff(&db, FUCHU, "clerk", Role::Clerk).await;
    staff(&db, FUCHU, "boss", Role::Supervisor).await;
    let p = portal().await;
    let receipt = file_survey(&p).await;
    // The back office's key is misconfigured: the filing does not open.
    let wrong = OpeningKey::generate().unwrap();
    let t0 = chrono::Utc::now().timestamp() - 10 * 86_400;
    let r = link(&p, &wrong).run_once(&db.store, t0).await.unwrap();
    assert_eq!((r.imported, r.deferred, r.quarantined), (0, 1, 0), "{r:?}");

    // Deferred, not quarantined yet: listed apart, with the day it would
    // be quarantined (和暦, Japan time), on the page and in the API.
    let due = chrono::DateTime::<chrono::Utc>::from_timestamp(t0 + 7 * 86_400, 0)
        .unwrap()
        .with_timezone(&machi::service::clock::jst())
        .date_naive();
    let due = db.registry.eras().format_wareki(due);
    let plain = app(&db, None);
    let clerk = Session::login(&plain, FUCHU, "clerk").await;
    let (st, _, page) = clerk.get("/ui/inbox/refused").await;
    assert_eq!(st, StatusCode::OK, "{page}");
    assert!(page.contains("id=\"no-refused\""), "{page}");
    assert!(page.contains("id=\"deferred-list\""), "{page}");
    assert!(
        page.contains(&due),
        "the day it would be quarantined: {page}"
    );
    assert!(page.contains("開けません"), "why: {page}");
    assert!(!page.contains("does_not_open"), "no internal code: {page}");
    let (st, d) = call(
        &clerk,
        "GET",
        "/api/v1/tenants/132063/filings/deferred",
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{d}");
    let d = d.as_array().unwrap();
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0]["code"], "does_not_open");
    assert_eq!(d[0]["quarantine_from_wareki"], due.as_str());
    assert!(
        d[0]["reason_en"]
            .as_str()
            .unwrap()
            .contains("does not open")
    );

    // A week on, still failing: quarantined; the citizen is told.
    let r = link(&p, &wrong)
        .run_once(&db.store, t0 + 7 * 86_400)
        .await
        .unwrap();
    assert_eq!(r.quarantined, 1, "{r:?}");
    assert!(
        status_page(&p, &receipt)
            .await
            .contains("受け付けられませんでした")
    );
    let (_, d) = call(
        &clerk,
        "GET",
        "/api/v1/tenants/132063/filings/deferred",
        None,
    )
    .await;
    assert_eq!(
        d.as_array().unwrap().len(),
        0,
        "no longer only deferred: {d}"
    );
    let (st, list) = call(&clerk, "GET", R, None).await;
    assert_eq!(st, StatusCode::OK);
    let id = list[0]["id"].as_str().unwrap().to_owned();

    // A clerk sees no button and may not import it again (403, in words).
    let (_, _, page) = clerk.get("/ui/inbox/refused").await;
    assert!(page.contains("id=\"refused-list\""), "{page}");
    assert!(page.contains("id=\"no-deferred\""), "{page}");
    assert!(!page.contains("class=\"reimport\""), "{page}");
    let (st, _, page) = clerk
        .post("/ui/inbox/refused/reimport", &[("portal_id", &id)])
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert!(page.contains("権限がありません"), "{page}");
    let (st, e) = call(&clerk, "POST", &format!("{R}/{id}/reimport"), None).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{e}");
    assert!(
        !e["message_ja"].as_str().unwrap().is_empty()
            && !e["message_en"].as_str().unwrap().is_empty()
    );

    // No portal configured on this server: a clear error, nothing done.
    let boss = Session::login(&plain, FUCHU, "boss").await;
    let (_, _, page) = boss.get("/ui/inbox/refused").await;
    assert!(
        page.contains("class=\"reimport\""),
        "a supervisor's button: {page}"
    );
    let (st, _, page) = boss
        .post("/ui/inbox/refused/reimport", &[("portal_id", &id)])
        .await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{page}");
    assert!(
        page.contains("ポータルとの接続") && page.contains("設定されていない"),
        "{page}"
    );
    let (st, e) = call(&boss, "POST", &format!("{R}/{id}/reimport"), None).await;
    assert_eq!(
        (st, e["code"].as_str()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Some("portal_not_configured")
        ),
        "{e}"
    );
    assert!(
        e["message_en"].as_str().unwrap().contains("no portal link"),
        "{e}"
    );
    assert_eq!(count(&db, REIMPORTS).await, 0, "nothing was attempted");

    // Still the wrong key on the server: refused again, in words.
    let wrong_app = app(&db, Some(link(&p, &wrong)));
    let boss = Session::login(&wrong_app, FUCHU, "boss").await;
    let (st, _, page) = boss
        .post("/ui/inbox/refused/reimport", &[("portal_id", &id)])
        .await;
    assert_eq!(st, StatusCode::OK, "{page}");
    assert!(page.contains("id=\"reimport-refused\""), "{page}");
    assert!(
        page.contains("取り込めませんでした") && page.contains("開けません"),
        "{page}"
    );
    assert!(!page.contains("does_not_open"), "{page}");
    // An id of no quarantined filing: 404.
    let (st, e) = call(&boss, "POST", &format!("{R}/nosuchid/reimport"), None).await;
    assert_eq!(
        (st, e["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("refusal_not_found")),
        "{e}"
    );
    assert_eq!(count(&db, FILINGS).await, 0);
    assert!(
        status_page(&p, &receipt)
            .await
            .contains("受け付けられませんでした")
    );

    // The key fixed: imported, a link to the filing; the portal is told.
    let good = app(&db, Some(link(&p, &p.key)));
    let boss = Session::login(&good, FUCHU, "boss").await;
    let (st, _, page) = boss
        .post("/ui/inbox/refused/reimport", &[("portal_id", &id)])
        .await;
    assert_eq!(st, StatusCode::OK, "{page}");
    assert!(page.contains("id=\"reimport-imported\""), "{page}");
    assert!(page.contains("href=\"/ui/inbox/1\""), "{page}");
    // The refusal stays listed, as history, with the filing it became.
    assert!(page.contains("取り込み直し済み：申請 1"), "{page}");
    assert!(!page.contains("class=\"reimport\""), "{page}");
    let (_, list) = call(&boss, "GET", R, None).await;
    assert_eq!(list[0]["imported_as"].as_i64(), Some(1), "{list}");
    assert_eq!(count(&db, FILINGS).await, 1);
    let row = p.portal.store.filing(&receipt).unwrap().unwrap();
    assert_eq!(
        (row.status, row.refusal),
        (machi_portal::store::Status::Received, None)
    );
    let citizen = status_page(&p, &receipt).await;
    assert!(citizen.contains("受け付けました"), "{citizen}");
    assert!(!citizen.contains("受け付けられませんでした"), "{citizen}");
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM portal_status_pushes WHERE tenant = $1"
        )
        .await,
        0,
        "the push went through"
    );
    // Idempotent: a second attempt (API) does nothing again.
    let (st, a) = call(&boss, "POST", &format!("{R}/{id}/reimport"), None).await;
    assert_eq!(st, StatusCode::OK, "{a}");
    assert_eq!(
        (a["outcome"].as_str(), a["filing_id"].as_i64()),
        (Some("already"), Some(1)),
        "{a}"
    );
    assert_eq!(count(&db, FILINGS).await, 1);
    // The filing is in the inbox as new.
    let (st, f) = call(&boss, "GET", "/api/v1/tenants/132063/filings/1", None).await;
    assert_eq!(
        (st, f["filing"]["status"].as_str()),
        (StatusCode::OK, Some("received")),
        "{f}"
    );

    // Every attempt is in the access log, in words on the audit page.
    assert_eq!(count(&db, REIMPORTS).await, 3, "refused, imported, already");
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM audit_log WHERE tenant = $1 AND function = 'filing.reimport' AND target = 'filing:1'"
        )
        .await,
        2
    );
    let (st, _, audit) = boss.get("/ui/audit?function=filing.reimport").await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        audit.contains("取り込めなかった申請の取り込み直し"),
        "{audit}"
    );
    assert!(
        audit.contains("取り込んだ") && audit.contains("再び取り込めなかった"),
        "{audit}"
    );
    assert!(!audit.contains("does_not_open"), "{audit}");
}
