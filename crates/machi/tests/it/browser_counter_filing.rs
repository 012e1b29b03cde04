//! Counter-assisted filing in a real browser (書かない窓口, issue 11 item
//! 7): from the 髙橋 family's page a clerk opens the 転出届 in counter
//! mode, finds the registry's data filled in, asks the rest, the applicant
//! checks a large-text view and agrees, and the filing is stored as filed
//! at the counter. Screenshots and axe-core on every step
//! (`Harness::shot`, which also checks the page reads as words).

use chrono::Datelike;
use machi::service::Actor;
use machi::service::registry::SearchParams;
use machi_domain::ids::MunicipalityCode;

use crate::browser::Harness;
use crate::support::TestDb;

both_backends!(browser_a_clerk_files_a_move_out_for_the_applicant_at_the_counter);

async fn browser_a_clerk_files_a_move_out_for_the_applicant_at_the_counter(db: TestDb) {
    let h = Harness::start(db).await;
    let fuchu: MunicipalityCode = "132063".parse().unwrap();
    let me =
        h.db.registry
            .search(
                &fuchu,
                &SearchParams {
                    name: Some("タカハシ　イチロウ".into()),
                    limit: 10,
                    ..Default::default()
                },
                &Actor::system("t"),
            )
            .await
            .unwrap()
            .rows
            .iter()
            .find(|r| r.record.address.address == "東京都府中市宮西町二丁目24番地")
            .map(|r| r.record.addressee_number.to_string())
            .expect("髙橋 一郎");

    h.login("132063", "clerk", "clerk-Demo-2026").await;
    h.go(&format!("/ui/residents/{me}")).await;
    h.click("#counter-filing").await;
    h.wait_for("#procedures").await;
    h.shot("cf01-procedures").await;
    h.click("#procedures a[href$='/counter/tenshutsu']").await;
    h.wait_for("#counter-form").await;
    let page = h.text().await;
    assert!(page.contains("value=\"髙橋　一郎\""), "prefilled");
    assert!(page.contains("value=\"髙橋　京子\""), "members prefilled");
    h.shot("cf02-prefilled").await;

    // Sent as it is: the problems, linked, nothing lost.
    h.click("#counter-check").await;
    h.wait_for("#error-summary").await;
    // The error summary takes focus, as the portal's does (the browser
    // applies autofocus in a later rendering step: poll).
    let started = std::time::Instant::now();
    let focused = loop {
        let focused = h
            .client
            .execute("return document.activeElement.id;", vec![])
            .await
            .unwrap()
            .as_str()
            .unwrap_or("")
            .to_owned();
        if focused == "error-summary" || started.elapsed() > std::time::Duration::from_secs(15) {
            break focused;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(focused, "error-summary", "the error summary takes focus");
    let page = h.text().await;
    assert!(page.contains("value=\"髙橋　一郎\""));
    assert!(
        page.contains("href=\"#id-document\"")
            && page.contains("確認した本人確認書類を選んでください"),
        "the identity check is asked for"
    );
    h.shot("cf03-problems").await;

    // The clerk records the identity check: the applicant came with a
    // driving licence.
    h.click("#id-document-drivers-licence").await;
    h.click("#id-appeared-self").await;

    // The clerk asks the rest; the child stays.
    let today = h.db.registry.today();
    h.fill("f-phone", "042-111-2222").await;
    for (key, d) in [
        ("moving-date", today + chrono::Duration::days(10)),
        ("visit-date", today + chrono::Duration::days(15)),
    ] {
        h.select(&format!("f-{key}-era"), "seireki").await;
        h.fill(&format!("f-{key}-year"), &d.year().to_string())
            .await;
        h.fill(&format!("f-{key}-month"), &d.month().to_string())
            .await;
        h.fill(&format!("f-{key}-day"), &d.day().to_string()).await;
    }
    h.fill("f-destination-postal", "196-0015").await;
    h.fill("f-destination-address", "東京都昭島市昭和町二丁目1番地")
        .await;
    h.click("#f-members-2--include").await;
    h.click("#counter-check").await;

    // The applicant's view: large text, what will be filed, nothing staff-only.
    h.wait_for("#confirm-file").await;
    let view = h.text().await;
    assert!(view.contains("class=\"applicant-view\""));
    assert!(!view.contains("id=\"me\""), "no staff menu");
    assert!(view.contains("東京都昭島市昭和町二丁目1番地"));
    assert!(view.contains("運転免許証"), "the applicant sees the check");
    h.shot("cf04-applicant-checks").await;
    h.click("#confirm-file").await;
    h.wait_for("#receipt").await;
    h.shot("cf05-filed").await;

    let t2 = fuchu.clone();
    let stored =
        h.db.store
            .read(Some(&fuchu), move |tx| {
                machi::store::portal_filings::list(tx, &t2, 10)
            })
            .await
            .unwrap();
    assert_eq!(stored.len(), 1);
    assert!(machi::store::portal_filings::filed_at_counter(
        &stored[0].portal_id
    ));
    assert_eq!(stored[0].filing["counter"]["clerk"], "clerk");
    assert_eq!(
        stored[0].filing["counter"]["identity"]["document"],
        "drivers_licence"
    );
    assert_eq!(stored[0].filing["counter"]["identity"]["appeared"], "self");
    assert_eq!(
        stored[0].filing["signed_content"]["answers"]["members"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    h.logout().await;
    h.client.clone().close().await.unwrap();
}
