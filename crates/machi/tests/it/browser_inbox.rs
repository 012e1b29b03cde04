//! 申請管理 in a real browser: a 転出届 filed through the real portal (its
//! own server and database) is pulled and imported by the back office; a
//! supervisor opens the inbox, matches each person to a resident and
//! approves; the record shows the 転出 and the portal shows it done.
//! axe-core and `assert_readable` on every screenshot.

use fantoccini::Locator;
use machi::service::inbox::PortalLink;

use crate::browser::Harness;
use crate::inbox::{TOKEN, client, file_tenshutsu, portal, signing, today};
use crate::support::{FUCHU, TestDb, code};

both_backends!(browser_inbox_a_supervisor_matches_and_approves_a_tenshutsu);

/// A signed-in supervisor opens the inbox from the menu (one new
/// filing), takes the filing up (its first person born on `born`, in
/// 和暦), matches each of its `persons` to the
/// candidate the registry's search found, and approves: the filing shows
/// the 転出証明書 data (moving to `destination`) and the recorded change
/// shows the 国内転出. Screenshots (with axe) `{prefix}-01-list`,
/// `-02-filing`, `-03-matched`, `-04-approved`, `-05-change`.
pub(crate) async fn approve_in_inbox(
    h: &Harness,
    persons: usize,
    born: &str,
    destination: &str,
    prefix: &str,
) {
    h.wait_for("#menu-inbox").await;
    let menu = h
        .client
        .find(Locator::Id("menu-inbox"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(menu.contains("新着 1"), "{menu}");
    h.click("#menu-inbox").await;
    h.wait_for("#filing-list").await;
    h.shot(&format!("{prefix}-01-list")).await;
    h.click("#filing-list a[id^='filing-']").await;
    h.wait_for("#filing-answers").await;
    let page = h.text().await;
    assert!(page.contains("署名を確認済み") && page.contains(born));
    h.shot(&format!("{prefix}-02-filing")).await;
    h.click("#assign-me").await;
    h.wait_for(".flash").await;
    // Each person: the candidate the registry's search found.
    for i in 1..=persons {
        h.click(&format!(
            "section[aria-labelledby='party-{i}'] button.match"
        ))
        .await;
        h.wait_for(&format!("#matched-{i}")).await;
    }
    h.shot(&format!("{prefix}-03-matched")).await;
    h.click("#approve").await;
    h.wait_for("#filing-outcome, #filing-error").await;
    let page = h.text().await;
    assert!(
        !page.contains("id=\"filing-error\""),
        "approval refused: {}",
        page.split("id=\"filing-error\">")
            .nth(1)
            .and_then(|s| s.split('<').next())
            .unwrap_or_default()
    );
    assert!(page.contains("承認済み"), "approved");
    assert!(
        page.contains("転出証明書情報") && page.contains(destination),
        "the 転出証明書 data"
    );
    h.shot(&format!("{prefix}-04-approved")).await;
    // The record shows the 転出.
    h.click("#outcome-change").await;
    h.wait_for("main h1").await;
    assert!(h.text().await.contains("国内転出"));
    h.shot(&format!("{prefix}-05-change")).await;
}

/// The back office tells the portal at `portal` every status it has not
/// heard yet; returns how many.
pub(crate) async fn tell_portal(h: &Harness, portal: &str) -> usize {
    h.db.registry
        .clone()
        .with_portal_link(Some(PortalLink {
            url: portal.to_string(),
            token: TOKEN.to_string(),
            client: client(),
        }))
        .push_portal_statuses(&code(FUCHU))
        .await
}

async fn browser_inbox_a_supervisor_matches_and_approves_a_tenshutsu(db: TestDb) {
    let h = Harness::start(db).await;
    // The citizen files on the portal; the back office pulls it.
    let p = portal().await;
    let receipt = file_tenshutsu(&p.base, today() + chrono::Duration::days(7)).await;
    let out = machi::portal::pull_once(
        &client(),
        &p.base,
        TOKEN,
        &h.db.store,
        &p.key,
        Some(&signing()),
        10,
        chrono::Utc::now().timestamp(),
    )
    .await
    .unwrap();
    assert_eq!(out.imported, 1, "{out:?}");

    h.login("132063", "supervisor", "supervisor-Demo-2026")
        .await;
    approve_in_inbox(
        &h,
        3,
        "昭和64年1月7日",
        "東京都千代田区千代田一丁目架空1番",
        "inbox",
    )
    .await;
    // The access log in words.
    h.go("/ui/audit").await;
    h.wait_for("main h1").await;
    let log = h.text().await;
    assert!(log.contains("申請の承認") && log.contains("申請者と住民の照合"));
    h.shot("inbox-06-log").await;
    // English.
    h.go("/lang?to=en").await;
    h.go("/ui/inbox").await;
    h.wait_for("#filing-list").await;
    h.shot("inbox-07-list-en").await;

    // The status reaches the citizen.
    assert_eq!(tell_portal(&h, &p.base).await, 1);
    let status = client()
        .get(format!("{}/status/{receipt}", p.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(status.contains("承認されました"));
    h.client.clone().close().await.unwrap();
}
