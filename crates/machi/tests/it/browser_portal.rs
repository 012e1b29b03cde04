//! The citizen portal in a real browser at a phone's width (390 CSS px):
//! a citizen requests a 住民票の写し and gets a receipt number; axe-core
//! checks every kind of portal page. The portal runs as its own server
//! with its own database (it cannot reach the registry); the test then
//! plays the back office and opens the sealed filing with its private key.

use std::sync::Arc;

use fantoccini::Locator;
use machi_portal::seal::OpeningKey;
use machi_portal::{Config, Portal};

use crate::browser::Harness;
use crate::support::TestDb;

both_backends!(
    browser_portal_citizen_files_on_a_phone,
    browser_portal_enter_in_a_field_continues,
);

/// The portal on a port of its own; returns its base URL, the portal and
/// the back office's key.
async fn start_portal(dir: &std::path::Path) -> (String, Arc<Portal>, OpeningKey) {
    let key = OpeningKey::generate().unwrap();
    let portal = Portal::open(&dir.join("portal.db"), Config::new(key.public())).unwrap();
    portal
        .publish_shipped("132063", "府中市", "Fuchu City")
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = machi_portal::router(portal.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (base, portal, key)
}

async fn next(h: &Harness) {
    h.click(".actions button[value=next]").await;
}

async fn browser_portal_citizen_files_on_a_phone(db: TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let (base, portal, key) = start_portal(dir.path()).await;
    let h = Harness::browser(db, base, Some((390, 844))).await;

    h.go("/").await;
    let width: i64 = h
        .client
        .execute("return window.innerWidth;", vec![])
        .await
        .unwrap()
        .as_i64()
        .unwrap();
    assert_eq!(width, 390, "a phone-width viewport");
    h.shot("portal-01-home").await;
    h.click("a[href='/t/132063']").await;
    h.wait_for("a[href='/t/132063/juminhyo']").await;
    h.shot("portal-02-tenant").await;
    h.click("a[href='/t/132063/juminhyo']").await;
    h.wait_for("button.start").await;
    h.shot("portal-03-start").await;
    h.click("button.start").await;
    h.wait_for("#f-applicant_name").await;

    // Nothing entered: the error summary takes focus and links to each field.
    h.fill("f-applicant_name", "架空 花子").await;
    next(&h).await;
    h.wait_for(".error-summary").await;
    // The browser applies autofocus in a later rendering step: poll, with
    // a generous deadline (the machine is busy).
    let started = std::time::Instant::now();
    let focused = loop {
        let focused = h
            .client
            .execute("return document.activeElement.className;", vec![])
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
    let title = h.client.title().await.unwrap();
    assert!(title.starts_with("エラー："), "{title}");
    let page = h.text().await;
    assert!(page.contains("href=\"#f-applicant_kana\""));
    assert!(
        page.contains("value=\"架空 花子\""),
        "input is never cleared"
    );
    h.shot("portal-04-page-with-errors").await;
    // Following the link in the summary moves to the field.
    h.click(".error-summary a[href='#f-applicant_kana']").await;

    h.fill("f-applicant_kana", "カクウ ハナコ").await;
    h.select("f-applicant_birth_date-era", "昭和").await;
    h.fill("f-applicant_birth_date-year", "55").await;
    h.fill("f-applicant_birth_date-month", "3").await;
    h.fill("f-applicant_birth_date-day", "14").await;
    h.fill("f-phone", "042-000-1234").await;
    next(&h).await;
    h.wait_for("#f-applicant_address-postal").await;
    h.fill("f-applicant_address-postal", "183-0056").await;
    h.fill(
        "f-applicant_address-address",
        "東京都府中市寿町一丁目架空5番",
    )
    .await;
    next(&h).await;
    h.wait_for("#f-scope-1").await;
    h.click("#f-scope-1").await;
    h.fill("f-copies", "1").await;
    h.click("#f-items-0").await;
    h.shot("portal-05-choices").await;
    next(&h).await;
    h.wait_for("#f-purpose-3").await;
    h.click("#f-purpose-3").await;
    h.fill("f-purpose_detail", "架空の手続").await;
    next(&h).await;
    h.wait_for("#f-id_document").await;
    // The identity document: a small PNG file.
    let png = dir.path().join("card.png");
    std::fs::write(
        &png,
        [
            0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 0, b'I', b'E', b'N', b'D',
            0xAE, 0x42, 0x60, 0x82,
        ],
    )
    .unwrap();
    h.client
        .find(Locator::Id("f-id_document"))
        .await
        .unwrap()
        .send_keys(&png.display().to_string())
        .await
        .unwrap();
    h.shot("portal-06-file").await;
    // Save and come back later: the resume code.
    h.click("button[value=save]").await;
    h.wait_for(".code").await;
    h.shot("portal-07-saved").await;
    let code = h
        .client
        .find(Locator::Css(".code strong"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(code.len(), 19, "{code}");
    h.go("/resume").await;
    h.fill("code", "nonsense").await;
    h.click("form[action='/resume'] button").await;
    h.wait_for(".error-summary").await;
    h.shot("portal-08-resume-error").await;
    h.fill("code", &code.to_lowercase()).await;
    h.click("form[action='/resume'] button").await;
    // Every page is answered: the check-your-answers page.
    h.wait_for("form[action='/d/submit']").await;
    let page = h.text().await;
    assert!(page.contains("昭和55年3月14日"), "dates in 和暦");
    assert!(page.contains("card.png"));
    h.shot("portal-09-check-answers").await;
    h.click("form[action='/d/submit'] button").await;
    h.wait_for("#receipt").await;
    let receipt = h
        .client
        .find(Locator::Id("receipt"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(receipt.len(), 14, "{receipt}");
    h.shot("portal-10-receipt").await;

    // The status page by receipt number, in English and やさしい日本語.
    h.go("/status").await;
    h.shot("portal-11-status-form").await;
    h.fill("code", &receipt).await;
    h.click("form[action='/status'] button").await;
    h.wait_for("#status").await;
    h.click("a[lang=en]").await;
    h.wait_for("#status").await;
    assert!(h.text().await.contains("Received"));
    h.shot("portal-12-status-en").await;
    h.go("/lang/easy?back=/t/132063/tenshutsu").await;
    h.wait_for("button.start").await;
    assert!(h.text().await.contains("ひっこし"));
    h.shot("portal-13-start-easy").await;
    // The "add another person" page of the 転出届.
    h.click("button.start").await;
    h.wait_for("#f-applicant_name").await;
    h.go("/d/p/members").await;
    h.wait_for("button[value='add:members']").await;
    h.click("button[value='add:members']").await;
    h.wait_for("#f-members-1-name").await;
    h.shot("portal-14-people").await;
    h.go("/no-such-page").await;
    h.shot("portal-15-not-found").await;

    // The back office's side: one sealed filing, which its key opens.
    let pending = portal.store.pending(10).unwrap();
    assert_eq!(pending.len(), 1);
    let (id, tenant, procedure, version, _, sealed) = &pending[0];
    assert_eq!(
        (tenant.as_str(), procedure.as_str(), *version),
        ("132063", "juminhyo", 1)
    );
    let filing: serde_json::Value = serde_json::from_slice(&key.open(sealed, id).unwrap()).unwrap();
    assert_eq!(filing["receipt"], receipt.as_str());
    assert_eq!(
        filing["signed_content"]["answers"]["applicant_name"],
        "架空 花子"
    );
    assert_eq!(filing["signed_content"]["answers"]["scope"], "household");

    // The office asks for a correction: the status page gives the reason
    // and the way to correct and send again (B3), in Japanese.
    assert!(
        portal
            .store
            .set_status(
                &receipt,
                machi_portal::store::Status::CorrectionRequested,
                Some("本人確認書類の写真が不鮮明です。"),
                &chrono::Utc::now().to_rfc3339(),
            )
            .unwrap()
    );
    h.go("/lang/ja?back=/").await;
    h.go(&format!("/status/{receipt}")).await;
    h.wait_for("#correct").await;
    assert!(h.text().await.contains("本人確認書類の写真が不鮮明です。"));
    h.shot("portal-17-status-correction").await;
    h.click("#correct").await;
    h.wait_for("#f-applicant_name").await;
    h.shot("portal-18-correction-first-page").await;
}

/// Enter in a field of the "add another person" page presses the form's
/// default button, which is "continue" (B4): with two persons on the page
/// (each with its "remove this person" button before "continue"), Enter in
/// person 1's name keeps both persons, keeps what was typed, and answers
/// with the page's errors; once everything is filled, Enter moves on.
async fn browser_portal_enter_in_a_field_continues(db: TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let (base, _portal, _key) = start_portal(dir.path()).await;
    let h = Harness::browser(db, base, Some((390, 844))).await;
    h.go("/t/132063/tenshutsu").await;
    h.wait_for("button.start").await;
    h.click("button.start").await;
    h.wait_for("#f-applicant_name").await;
    h.go("/d/p/members").await;
    h.wait_for("button[value='add:members']").await;
    h.click("button[value='add:members']").await;
    h.wait_for("#f-members-1-name").await;
    h.fill("f-members-0-name", "架空 太郎").await;
    h.fill("f-members-1-name", "架空 次郎").await;
    h.client
        .find(Locator::Id("f-members-0-name"))
        .await
        .unwrap()
        .send_keys("\u{E007}")
        .await
        .unwrap();
    h.wait_for(".error-summary").await;
    let page = h.text().await;
    assert!(page.contains("value=\"架空 太郎\""), "person 1 kept");
    assert!(page.contains("value=\"架空 次郎\""), "person 2 kept");
    assert!(
        page.contains("id=\"f-members-1-name\""),
        "still two persons"
    );
    assert!(page.contains("href=\"#f-members-0-kana\""), "{page}");
    h.shot("portal-16-enter-continues").await;
    // Everything filled: Enter moves on to the next page.
    for (i, kana, year) in [(0, "カクウ タロウ", "60"), (1, "カクウ ジロウ", "62")] {
        h.fill(&format!("f-members-{i}-kana"), kana).await;
        h.select(&format!("f-members-{i}-birth_date-era"), "昭和")
            .await;
        h.fill(&format!("f-members-{i}-birth_date-year"), year)
            .await;
        h.fill(&format!("f-members-{i}-birth_date-month"), "1")
            .await;
        h.fill(&format!("f-members-{i}-birth_date-day"), "2").await;
    }
    h.client
        .find(Locator::Id("f-members-0-birth_date-day"))
        .await
        .unwrap()
        .send_keys("\u{E007}")
        .await
        .unwrap();
    h.wait_for("#f-visit_date-year").await;
    // Both persons were kept.
    h.go("/d/p/members").await;
    h.wait_for("#f-members-1-name").await;
    let page = h.text().await;
    assert!(page.contains("value=\"架空 次郎\""));
}
