//! Review in a real browser (審査・決裁, j530): a clerk enters a 転居 of a
//! whole household; the supervisor opens it and sees each person's record
//! before and after, the address marked as changed; after approval the
//! change page shows the same. Screenshots and axe-core on every step
//! (`Harness::shot`), which also checks that the page reads as words.

use fantoccini::Locator;
use machi::service::Actor;
use machi::service::registry::SearchParams;

use crate::browser::Harness;
use crate::support::TestDb;

both_backends!(browser_a_supervisor_sees_what_a_move_changes);

async fn browser_a_supervisor_sees_what_a_move_changes(db: TestDb) {
    let h = Harness::start(db).await;
    let fuchu: machi_domain::ids::MunicipalityCode = "132063".parse().unwrap();
    // The 髙橋 family the harness registered.
    let family: Vec<String> =
        h.db.registry
            .search(
                &fuchu,
                &SearchParams {
                    name: Some("タカハシ".into()),
                    limit: 10,
                    ..Default::default()
                },
                &Actor::system("t"),
            )
            .await
            .unwrap()
            .rows
            .iter()
            .filter(|r| r.record.address.address == "東京都府中市宮西町二丁目24番地")
            .map(|r| r.record.addressee_number.to_string())
            .collect();
    assert_eq!(family.len(), 3, "{family:?}");
    let day = h.db.registry.today() - chrono::Duration::days(3);
    let effective = machi_domain::dates::EraTable::standard().format_wareki(day);

    // The clerk enters the 転居 of the whole household.
    h.login("132063", "clerk", "clerk-Demo-2026").await;
    h.go(&format!(
        "/ui/entry?type=move_within&persons={}",
        family.join("+")
    ))
    .await;
    h.fill("effective_date", &effective).await;
    h.fill("address", "東京都府中市寿町一丁目5番地").await;
    h.click("#entry-submit").await;
    // The clerk's confirmation step, then 仮登録.
    h.wait_for("#confirm-enter").await;
    h.click("#confirm-enter").await;
    h.wait_for("#pending-id").await;
    let url = h.client.current_url().await.unwrap();
    let pending = url.path().trim_start_matches("/ui/approvals/").to_string();
    // The clerk's own view already shows before and after.
    h.wait_for("table.diff").await;
    h.shot("r01-move-within-entered").await;
    h.logout().await;

    // The supervisor opens it from the queue.
    h.login("132063", "supervisor", "supervisor-Demo-2026")
        .await;
    h.go("/ui/approvals").await;
    h.wait_for("#pending-list").await;
    h.click(&format!("#pending-list a[href='/ui/approvals/{pending}']"))
        .await;
    h.wait_for("table.diff").await;
    let reason = h
        .client
        .find(Locator::Id("review-reason"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(reason, "転居");
    // One section per person, each naming them.
    let persons = h
        .client
        .find_all(Locator::Css("section.review-person"))
        .await
        .unwrap();
    assert_eq!(persons.len(), 3);
    let page = h.text().await;
    for name in ["髙橋　一郎", "髙橋　京子", "髙橋　翔"] {
        assert!(page.contains(name), "{name} missing");
    }
    // The changed rows: the address (and the day it was taken up), before
    // → after; the name, birth date and household stay unmarked.
    let mut changed = vec![];
    for row in h
        .client
        .find_all(Locator::Css("table.diff tr.changed"))
        .await
        .unwrap()
    {
        changed.push(row.text().await.unwrap());
    }
    let address_rows: Vec<&String> = changed.iter().filter(|r| r.starts_with("住所")).collect();
    assert_eq!(address_rows.len(), 3, "{changed:?}");
    for r in &address_rows {
        assert!(
            r.contains("東京都府中市宮西町二丁目24番地")
                && r.contains("→ 東京都府中市寿町一丁目5番地"),
            "{r}"
        );
        assert!(r.contains("変更"), "the change is marked in words: {r}");
    }
    assert!(
        !changed.iter().any(|r| r.starts_with("氏名")
            || r.starts_with("生年月日")
            || r.starts_with("世帯番号")),
        "{changed:?}"
    );
    assert!(
        h.client.find(Locator::Id("review-warnings")).await.is_err(),
        "a 転居 within the city raises no warning"
    );
    h.shot("r02-review-before-after").await;

    // Approved: the committed change shows the same comparison.
    h.click("#approve").await;
    h.wait_for("#committed-change").await;
    h.click("#committed-change").await;
    h.wait_for("table.diff").await;
    let committed = h.text().await;
    assert!(committed.contains("→ 東京都府中市寿町一丁目5番地"));
    h.shot("r03-change-before-after").await;
    h.logout().await;
}
