//! Front to back in one browser session (issue 11, item 9): a citizen on a
//! phone (390 CSS px) files a 転出届 on the real portal (its own server and
//! database) and signs it with a synthetic DEMO card; the back office
//! pulls and imports it, verifying the signature again; on the desktop a
//! supervisor takes it up in the inbox, matches the person and approves;
//! the resident's record shows the 転出; and back on the phone the
//! portal's status page says it is done. Every page type is screenshotted
//! with axe-core (WCAG 2.2 AA) and the readability check. The steps are
//! those of `browser_portal_sign` and `browser_inbox`, through their
//! helpers.

use machi::service::Actor;
use machi::service::registry::SearchParams;
use machi_portal::signing::DemoPerson;

use crate::browser::Harness;
use crate::browser_inbox::{approve_in_inbox, tell_portal};
use crate::browser_portal_sign::{Citizen, demo_portal, fill_tenshutsu, send, sign_with_demo_card};
use crate::inbox::{TOKEN, client};
use crate::support::{FUCHU, TestDb, code};

both_backends!(browser_front_to_back_a_signed_tenshutsu_filed_on_a_phone_is_approved);

const PHONE: (u32, u32) = (390, 844);
const DESTINATION: &str = "東京都昭島市美堀町架空3番";

async fn browser_front_to_back_a_signed_tenshutsu_filed_on_a_phone_is_approved(db: TestDb) {
    // The back office with the demo town and the 髙橋 family; the portal
    // issues a DEMO card to 髙橋 京子 (synthetic), as the registry has her.
    // She moves out alone (her husband, the head, stays with their son).
    let h = Harness::start(db).await;
    let p = demo_portal(vec![DemoPerson {
        name: "髙橋　京子".into(),
        sex: "2".into(),
        date_of_birth: "419890108".into(),
        address: "東京都府中市宮西町二丁目24番地".into(),
    }])
    .await;
    let fuchu = code(FUCHU);
    let kyoko =
        h.db.registry
            .search(
                &fuchu,
                &SearchParams {
                    name: Some("髙橋　京子".into()),
                    birth_date: Some("1989-01-08".into()),
                    limit: 5,
                    ..Default::default()
                },
                &Actor::system("t"),
            )
            .await
            .unwrap()
            .rows
            .first()
            .map(|r| r.record.addressee_number.to_string())
            .expect("髙橋 京子");

    // The citizen, on a phone.
    h.viewport(Some(PHONE)).await;
    fill_tenshutsu(
        &h,
        &p.base,
        &Citizen {
            name: "髙橋 京子",
            kana: "タカハシ キョウコ",
            born: ("平成", "1", "1", "8"),
            postal: "196-0001",
            destination: DESTINATION,
            moving_in: 10,
        },
        "f2b-portal",
    )
    .await;
    sign_with_demo_card(&h, "髙橋　京子", "f2b-portal").await;
    let receipt = send(&h, "f2b-portal").await;
    assert!(!receipt.is_empty());

    // The back office pulls it over the authenticated channel, verifies
    // the signature itself and imports it.
    let out = machi::portal::pull_once(
        &client(),
        &p.base,
        TOKEN,
        &h.db.store,
        &p.key,
        Some(&p.back_office_signing()),
        10,
        chrono::Utc::now().timestamp(),
    )
    .await
    .unwrap();
    assert_eq!((out.imported, out.signatures_valid), (1, 1), "{out:?}");

    // The clerk's side, on the desktop.
    h.viewport(None).await;
    h.go("/login").await;
    let width: i64 = h
        .client
        .execute("return window.innerWidth;", vec![])
        .await
        .unwrap()
        .as_i64()
        .unwrap();
    assert!(width > 1000, "the desk's window again: {width}");
    h.login("132063", "supervisor", "supervisor-Demo-2026")
        .await;
    approve_in_inbox(&h, 1, "平成元年1月8日", DESTINATION, "f2b-inbox").await;
    // The resident's record shows the 転出 (to the destination filed).
    h.go(&format!("/ui/residents/{kyoko}")).await;
    h.wait_for("#timeline").await;
    let record = h.text().await;
    assert!(
        record.contains("国内転出") && record.contains(DESTINATION),
        "the record shows the move-out"
    );
    h.shot("f2b-resident").await;
    h.logout().await;

    // The status reaches the portal; the citizen, on the phone again,
    // reads that it is done.
    assert_eq!(tell_portal(&h, &p.base).await, 1);
    h.viewport(Some(PHONE)).await;
    h.client
        .goto(&format!("{}/status/{receipt}", p.base))
        .await
        .unwrap();
    h.wait_for("#status").await;
    let status = h.text().await;
    assert!(status.contains("承認されました"), "done on the portal");
    let width: i64 = h
        .client
        .execute("return window.innerWidth;", vec![])
        .await
        .unwrap()
        .as_i64()
        .unwrap();
    assert_eq!(width, 390);
    h.shot("f2b-portal-08-status").await;
    // The browser goes with the session (chromedriver alone is stopped
    // when the harness drops).
    h.client.clone().close().await.unwrap();
}
