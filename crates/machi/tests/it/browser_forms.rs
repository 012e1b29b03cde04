//! The counter's forms in a real browser (issue 13.2, 13.3): a household's
//! move opened from its page with the members ticked and confirmed before
//! 仮登録, a 転居 to another city refused, and an entry sent back found on
//! the clerk's home, edited and entered again. Every page is screenshot
//! and checked by axe-core ([`Harness::shot`]).

use fantoccini::Locator;

use crate::browser::Harness;
use crate::support::TestDb;

both_backends!(browser_forms_prefilled_confirmed_returned_and_resubmitted);

const CLERK: (&str, &str) = ("clerk", "clerk-Demo-2026");
const SUPERVISOR: (&str, &str) = ("supervisor", "supervisor-Demo-2026");

async fn browser_forms_prefilled_confirmed_returned_and_resubmitted(db: TestDb) {
    let h = Harness::start(db).await;
    h.login("132063", CLERK.0, CLERK.1).await;
    // From the resident to the household, and its "whole household moves".
    h.go("/ui/search").await;
    h.fill("name", "たかはし　いちろう").await;
    h.click("#search-submit").await;
    h.wait_for("#results a").await;
    h.click("#results a").await;
    h.wait_for("#timeline").await;
    h.click("#record a[href^='/ui/households/']").await;
    h.wait_for("#members").await;
    h.click("a[href*='type=move_within']").await;
    h.wait_for("#entry-form").await;
    let page = h.text().await;
    for name in ["髙橋　一郎", "髙橋　京子", "髙橋　翔"] {
        assert!(page.contains(name), "{name} listed: {page}");
    }
    let ticked = h
        .client
        .find_all(Locator::Css("input[name='persons']:checked"))
        .await
        .unwrap()
        .len();
    assert_eq!(ticked, 3, "every member ticked");
    assert!(!page.contains("j490"), "{page}");
    // An address of the tenant, from the offered list.
    let offered = h
        .client
        .find(Locator::Css(
            "#address-book option:not([value*='宮西町二丁目24番地'])",
        ))
        .await
        .expect("the tenant's addresses are offered")
        .attr("value")
        .await
        .unwrap()
        .expect("an address");
    h.fill("effective_date", "令和6年10月1日").await;
    h.fill("address", &offered).await;
    h.fill("annex", "別棟201号室").await;
    h.shot("f01-household-move-form").await;
    h.click("#entry-submit").await;
    h.wait_for("#confirm-enter").await;
    let page = h.text().await;
    assert!(
        page.contains(&offered) && page.contains("別棟201号室"),
        "{page}"
    );
    assert!(page.contains("class=\"changed\""), "{page}");
    h.shot("f02-move-confirm").await;
    h.click("#confirm-enter").await;
    h.wait_for("#pending-id").await;
    let pending_id = h
        .client
        .find(Locator::Id("pending-id"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    // A 転居 to another city is refused, naming 転出.
    h.go("/ui/search").await;
    h.fill("name", "たかはし　いちろう").await;
    h.click("#search-submit").await;
    h.wait_for("#results a").await;
    h.click("#results a").await;
    h.wait_for("#timeline").await;
    h.click("a[href*='type=move_within']").await;
    h.wait_for("#entry-form").await;
    h.fill("effective_date", "令和6年10月1日").await;
    h.fill("address", "東京都調布市小島町一丁目1番地").await;
    h.click("#entry-submit").await;
    h.wait_for("#form-error").await;
    let page = h.text().await;
    assert!(
        page.contains("府中市の住所ではありません") && page.contains("転出"),
        "{page}"
    );
    h.shot("f03-move-to-another-city-refused").await;
    h.logout().await;

    // The supervisor's home: the queue with its age; the entry sent back.
    h.login("132063", SUPERVISOR.0, SUPERVISOR.1).await;
    h.wait_for("#queue").await;
    let page = h.text().await;
    assert!(page.contains("id=\"menu-approvals\""), "{page}");
    assert!(page.contains("class=\"age\""), "{page}");
    h.shot("f04-home-supervisor-queue").await;
    h.go(&format!("/ui/approvals/{pending_id}")).await;
    h.wait_for("#return").await;
    h.fill("comment", "転居先の方書を確認してください").await;
    h.click("#return").await;
    h.wait_for("#pending-status").await;
    h.logout().await;

    // The clerk's home: the entry sent back with the reason; edited and
    // entered again.
    h.login("132063", CLERK.0, CLERK.1).await;
    h.wait_for("#returned-list").await;
    assert!(h.text().await.contains("転居先の方書を確認してください"));
    h.shot("f05-home-clerk-returned").await;
    h.click(&format!("#resubmit-{pending_id}")).await;
    h.wait_for("#returned-reason").await;
    let ticked = h
        .client
        .find_all(Locator::Css("input[name='persons']:checked"))
        .await
        .unwrap()
        .len();
    assert_eq!(ticked, 3, "the entry as it was entered");
    h.fill("annex", "別棟202号室").await;
    h.shot("f06-resubmit-form").await;
    h.click("#entry-submit").await;
    h.wait_for("#confirm-enter").await;
    assert!(h.text().await.contains("別棟202号室"));
    h.click("#confirm-enter").await;
    h.wait_for("#pending-id").await;
    let again = h
        .client
        .find(Locator::Id("pending-id"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_ne!(again, pending_id);
    h.go("/ui").await;
    h.wait_for("#me").await;
    assert!(!h.text().await.contains("returned-list"));
}
