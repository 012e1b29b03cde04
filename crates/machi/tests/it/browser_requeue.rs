//! 取り込めなかった申請 in a real browser (issue 11): a supervisor sees a
//! quarantined filing and one only held back (with the day it would be
//! quarantined), imports the quarantined one again with one button, and
//! reads the outcome with a link to the filing. axe-core and
//! `assert_readable` on every screenshot, in Japanese and English.

use std::sync::Arc;

use machi::portal::PortalLink;
use machi_portal::seal::OpeningKey;

use crate::browser::Harness;
use crate::inbox::{Part, Running, TOKEN, client, file, portal, status_page};
use crate::support::TestDb;

both_backends!(browser_requeue_a_supervisor_imports_a_refused_filing_again);

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

async fn file_survey(p: &Running, comment: &str) -> String {
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
                    Part::Text("comment", comment.into()),
                ],
            ),
        ],
    )
    .await
}

async fn browser_requeue_a_supervisor_imports_a_refused_filing_again(db: TestDb) {
    let p = portal().await;
    let good = Arc::new(link(&p, &p.key));
    let h = Harness::start_with(db, move |r| r.with_portal_importer(Some(good))).await;
    // The back office's key is wrong for a week: the first filing is
    // quarantined, the second (filed later) only held back.
    let wrong = OpeningKey::generate().unwrap();
    let t0 = chrono::Utc::now().timestamp() - 8 * 86_400;
    let first = file_survey(&p, "架空の一件目").await;
    let r = link(&p, &wrong).run_once(&h.db.store, t0).await.unwrap();
    assert_eq!(r.deferred, 1, "{r:?}");
    let r = link(&p, &wrong)
        .run_once(&h.db.store, t0 + 7 * 86_400)
        .await
        .unwrap();
    assert_eq!(r.quarantined, 1, "{r:?}");
    file_survey(&p, "架空の二件目").await;
    let r = link(&p, &wrong)
        .run_once(&h.db.store, t0 + 7 * 86_400)
        .await
        .unwrap();
    assert_eq!((r.deferred, r.quarantined), (1, 0), "{r:?}");

    h.login("132063", "supervisor", "supervisor-Demo-2026")
        .await;
    h.go("/ui/inbox/refused").await;
    h.wait_for("#refused-list").await;
    let page = h.text().await;
    assert!(
        page.contains("deferred-list") && page.contains("令和"),
        "{page}"
    );
    h.shot("requeue-01-refused").await;
    h.click("#refused-list button.reimport").await;
    h.wait_for("#reimport-imported, #reimport-refused, #reimport-error")
        .await;
    let page = h.text().await;
    assert!(page.contains("id=\"reimport-imported\""), "{page}");
    h.shot("requeue-02-imported").await;
    // The link opens the filing in the inbox.
    h.click("#reimported-filing").await;
    h.wait_for("#filing-answers").await;
    h.shot("requeue-03-filing").await;
    assert!(status_page(&p, &first).await.contains("受け付けました"));
    // English.
    h.go("/lang?to=en").await;
    h.go("/ui/inbox/refused").await;
    h.wait_for("#deferred-list").await;
    let page = h.text().await;
    assert!(page.contains("Filings held back"), "{page}");
    h.shot("requeue-04-refused-en").await;
}
