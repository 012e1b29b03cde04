//! アンケート集計 in a real browser: survey answers filed on the real
//! portal are pulled; a supervisor opens the surveys from the inbox, then
//! one survey's results (counts per question and option, all versions and
//! per version) in Japanese and in English. axe-core and
//! `assert_readable` on every screenshot. Also the tenant
//! administrator's page of procedure definitions from the portal
//! (手続定義の受入れ): read, accepted, with axe.

use crate::browser::Harness;
use crate::inbox::{Part, TOKEN, client, file, portal, signing};
use crate::support::TestDb;

both_backends!(
    browser_surveys_a_supervisor_reads_a_surveys_results,
    browser_procedures_the_administrator_accepts_a_definition,
);

fn t<'a>(k: &'a str, v: &str) -> Part<'a> {
    Part::Text(k, v.to_owned())
}

async fn browser_surveys_a_supervisor_reads_a_surveys_results(db: TestDb) {
    let h = Harness::start(db).await;
    // Three answers on the portal: two want a class, one uses a phone.
    let p = portal().await;
    for (age, devices, class) in [
        ("a65", vec!["smartphone"], "yes"),
        ("a75", vec![], "yes"),
        ("a75", vec![], "no"),
    ] {
        let mut pages = vec![("age", vec![t("age_group", age)])];
        if devices.is_empty() {
            pages.push(("use", vec![t("uses_internet", "no")]));
        } else {
            pages.push(("use", vec![t("uses_internet", "yes")]));
            pages.push(("devices", devices.iter().map(|d| t("devices", d)).collect()));
        }
        pages.push(("learning", vec![t("want_class", class)]));
        file(&p.base, "survey_internet", pages).await;
    }
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
    assert_eq!(out.imported, 3, "{out:?}");

    h.login("132063", "supervisor", "supervisor-Demo-2026")
        .await;
    h.go("/ui/surveys").await;
    h.wait_for("#survey-list").await;
    h.shot("surveys-01-list").await;
    h.click("#survey-survey_internet").await;
    h.wait_for("#survey-title").await;
    let page = h.text().await;
    assert!(
        page.contains("インターネットの利用についてのアンケート"),
        "the survey's title"
    );
    assert!(page.contains("集計した回答：3件"), "three answers counted");
    assert!(
        page.contains("回答者は特定しません"),
        "the counting rule in words"
    );
    h.shot("surveys-02-results").await;
    // English.
    h.go("/lang?to=en").await;
    h.go("/ui/surveys/survey_internet").await;
    h.wait_for("#survey-title").await;
    let page = h.text().await;
    assert!(page.contains("Answers counted"), "in English");
    h.shot("surveys-03-results-en").await;
    // An unknown survey: an error page in words, accessible too.
    h.go("/ui/surveys/kaigo_survey").await;
    h.wait_for("main h1").await;
    h.shot("surveys-04-unknown-en").await;
    h.client.clone().close().await.unwrap();
}

async fn browser_procedures_the_administrator_accepts_a_definition(db: TestDb) {
    let h = Harness::start(db).await;
    // 府中市's own procedure, published and filed on the portal, pulled.
    let p = portal().await;
    assert!(
        p.portal
            .publish("132063", crate::procdefs::SODAIGOMI_V1)
            .unwrap()
    );
    file(
        &p.base,
        "sodaigomi",
        vec![(
            "who",
            vec![t("applicant_name", "架空　花子"), t("item", "sofa")],
        )],
    )
    .await;
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
    assert_eq!((out.imported, out.definitions_imported), (1, 1), "{out:?}");

    h.login("132063", "admin", "admin-Demo-2026").await;
    h.click("a[href='/ui/admin/procedures']").await;
    h.wait_for("#definition-sodaigomi-1").await;
    let page = h.text().await;
    assert!(
        page.contains("粗大ごみ収集の申込み") && page.contains("業務システム「waste」"),
        "the definition and what approval does"
    );
    h.shot("procedures-01-pending").await;
    h.click("#accept-sodaigomi-1").await;
    h.wait_for("#decided-sodaigomi-1").await;
    let page = h.text().await;
    assert!(page.contains("受け入れました"), "accepted");
    h.shot("procedures-02-accepted").await;
    h.go("/lang?to=en").await;
    h.go("/ui/admin/procedures").await;
    h.wait_for("#decided-sodaigomi-1").await;
    h.shot("procedures-03-decided-en").await;
    h.client.clone().close().await.unwrap();
}
