//! Every page type in a real browser at a phone's width (390 px) and at a
//! desktop's (1280 px): a screenshot of each for a person to look at,
//! axe-core's WCAG 2.2 AA check of each, and at 390 px no page scrolls
//! sideways (tables reflow into label / value cards, forms stack); the
//! access log fits 1280 px (issue 13, item 6).

use std::time::Duration;

use machi::service::Actor;
use machi::service::certificates::{CertificateRequest, Subject};
use machi_domain::certificate::CertificateKind;
use machi_domain::certificate::counter::{
    CounterRequest, IdentityDocument, Requester as CertRequester, ThirdPartyGround,
};
use machi_domain::support::{Affair, AffairRequest, NewSupportMeasure, Requester};
use serde_json::json;

use crate::browser::Harness;
use crate::contract::{move_in, takahashi_family};
use crate::support::TestDb;

both_backends!(browser_every_page_at_390_and_1280);

const WIDTHS: [u32; 2] = [390, 1280];

/// The page's width against the window's: (scrollWidth, innerWidth).
async fn widths(h: &Harness) -> (i64, i64) {
    let v = h
        .client
        .execute(
            "return [document.documentElement.scrollWidth, window.innerWidth];",
            vec![],
        )
        .await
        .expect("widths");
    (
        v[0].as_i64().unwrap_or(i64::MAX),
        v[1].as_i64().unwrap_or(0),
    )
}

/// Opens `path` at each width: a screenshot, axe-core, and no sideways
/// scrolling at 390 px (at 1280 px too for the pages in `wide_checked`).
async fn each_width(h: &Harness, n: &mut u32, name: &str, path: &str, wide_checked: bool) {
    *n += 1;
    for w in WIDTHS {
        h.client.set_window_size(w, 900).await.expect("window size");
        h.go(path).await;
        let started = std::time::Instant::now();
        while h
            .client
            .find(fantoccini::Locator::Css("main, body"))
            .await
            .is_err()
        {
            assert!(started.elapsed() < Duration::from_secs(10), "{path}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (scroll, inner) = widths(h).await;
        if w == 390 {
            assert!(inner <= 400, "the window is {inner} px wide, not a phone's");
        }
        h.shot(&format!("m{w}-{n:02}-{name}")).await;
        if w == 390 || wide_checked {
            assert!(
                scroll <= inner,
                "{path} at {w} px: the page is {scroll} px wide in a {inner} px window"
            );
        }
    }
}

async fn browser_every_page_at_390_and_1280(db: TestDb) {
    let h = Harness::start(db).await;
    let fuchu: machi_domain::ids::MunicipalityCode = "132063".parse().unwrap();
    let r = h.db.registry.clone();
    let clerk = Actor {
        operator: "clerk".into(),
        terminal: "T-390".into(),
    };
    // What the pages show: the family (Harness), a change, a provisional
    // entry, a certificate issued at the counter, a support measure of a
    // person of their own, and access-log entries with long details.
    let family = r
        .search(
            &fuchu,
            &machi::service::registry::SearchParams {
                name: Some("髙橋　一郎".into()),
                limit: 5,
                ..Default::default()
            },
            &Actor::system("t"),
        )
        .await
        .unwrap()
        .rows;
    let person = family[0].record.addressee_number.to_string();
    let household = family[0].record.household_number.to_string();
    let change = r
        .submit(
            &fuchu,
            &serde_json::from_value(move_in(
                vec![json!({"name": "架空　長名", "name_kana": "カクウ　ナガナ",
                    "birth_date": "1990-01-01", "sex": "female", "relationship": "世帯主"})],
                "東京都府中市宮西町一丁目9番地　府中宮西町グランドレジデンス北棟1203号室",
            ))
            .unwrap(),
            &Actor::system("setup"),
        )
        .await
        .unwrap();
    let protected = change.rows[0].record.addressee_number.clone();
    let mut second = takahashi_family();
    second["command"]["household"]["address"]["address"] = json!("東京都府中市宮西町三丁目3番地");
    second["command"]["persons"] = json!([{"name": "架空　仮", "name_kana": "カクウ　カリ",
        "birth_date": "1991-01-01", "sex": "female", "relationship": "世帯主"}]);
    let (pending, _) = r
        .enter_provisional(&fuchu, &serde_json::from_value(second).unwrap(), &clerk)
        .await
        .unwrap();
    let batch = r
        .issue_certificates(
            &fuchu,
            CertificateRequest {
                kind: CertificateKind::ResidentCopy,
                subject: Subject::HouseholdOf(family[0].record.addressee_number.clone()),
                options: Default::default(),
                verification_url: "http://localhost/verify".into(),
                may_show_my_number: false,
                counter: Some(CounterRequest {
                    requester: Some(CertRequester::ThirdParty),
                    requester_name: "架空法律事務所　弁護士　架空　正義".into(),
                    relationship: "債権者の代理人弁護士".into(),
                    identity: Some(IdentityDocument::DriversLicence),
                    power_of_attorney: false,
                    ground: Some(ThirdPartyGround::OwnRightOrDuty),
                    purpose: "貸金返還請求訴訟の提起にあたり、被告の現住所を裁判所に疎明するため"
                        .into(),
                    copies: 2,
                }),
            },
            &clerk,
        )
        .await
        .unwrap()
        .batch;
    let measure = r
        .support_register(
            &fuchu,
            &NewSupportMeasure {
                filed_on: r.today(),
                provisional_start: None,
                requester: Requester {
                    addressee_number: protected.clone(),
                    municipality_role: Default::default(),
                    contact: Default::default(),
                },
                related_persons: vec![],
                offenders: vec![],
                affairs: vec![AffairRequest {
                    affair: Affair::ResidentRecordCopy,
                    addresses: vec![],
                }],
                forwarding: Default::default(),
            },
            &Actor::system("setup"),
        )
        .await
        .unwrap();

    let mut n = 0;
    // Public pages.
    each_width(&h, &mut n, "login", "/login", true).await;
    each_width(&h, &mut n, "verify", "/verify?tenant=132063", true).await;
    each_width(&h, &mut n, "activate", "/activate", true).await;

    // The clerk's pages.
    h.client.set_window_size(1280, 900).await.unwrap();
    h.login("132063", "clerk", "clerk-Demo-2026").await;
    for (name, path) in [
        ("home-clerk", "/ui".to_string()),
        ("search-form", "/ui/search".to_string()),
        (
            "search-results",
            "/ui/search?name=%E3%81%9F%E3%81%8B%E3%81%AF%E3%81%97".to_string(),
        ),
        (
            "search-many",
            "/ui/search?address=%E5%BA%9C%E4%B8%AD".to_string(),
        ),
        ("resident", format!("/ui/residents/{person}")),
        ("household", format!("/ui/households/{household}")),
        ("change", format!("/ui/changes/{}", change.change_id)),
        ("entry-kinds", "/ui/entry".to_string()),
        ("entry-move-in", "/ui/entry?type=move_in".to_string()),
        (
            "entry-move-within",
            format!("/ui/entry?type=move_within&persons={person}"),
        ),
        ("approvals-clerk", "/ui/approvals".to_string()),
        ("pending", format!("/ui/approvals/{pending}")),
        (
            "certificate-form",
            format!("/ui/certificates/new?person={person}"),
        ),
        (
            "certificate-issued",
            format!("/ui/certificates/issued/{batch}"),
        ),
        ("error-not-found", "/ui/residents/0000099999".to_string()),
        ("error-protected", format!("/ui/residents/{protected}")),
    ] {
        each_width(&h, &mut n, name, &path, false).await;
    }
    h.client.set_window_size(1280, 900).await.unwrap();
    h.logout().await;

    // The supervisor's: the queue, the access log (readable at 1280 px),
    // statistics, proposals.
    h.login("132063", "supervisor", "supervisor-Demo-2026")
        .await;
    each_width(&h, &mut n, "approvals", "/ui/approvals", false).await;
    each_width(&h, &mut n, "audit", "/ui/audit", true).await;
    let page = h.text().await;
    assert!(page.contains("<details>"), "the detail is folded: {page}");
    each_width(&h, &mut n, "stats", "/ui/stats", false).await;
    each_width(&h, &mut n, "grants", "/ui/grants", false).await;
    h.client.set_window_size(1280, 900).await.unwrap();
    h.logout().await;

    // The support officer's.
    h.login("132063", "support", "support-Demo-2026").await;
    each_width(&h, &mut n, "support-list", "/ui/support", false).await;
    each_width(&h, &mut n, "support-new", "/ui/support/new", false).await;
    each_width(
        &h,
        &mut n,
        "support-detail",
        &format!("/ui/support/{}", measure.measure_id()),
        false,
    )
    .await;
    h.client.set_window_size(1280, 900).await.unwrap();
    h.logout().await;

    // The administrator's and the platform operator's.
    h.login("132063", "admin", "admin-Demo-2026").await;
    each_width(&h, &mut n, "accounts", "/ui/admin/accounts", false).await;
    h.client.set_window_size(1280, 900).await.unwrap();
    h.logout().await;
    h.login("", "operator", "operator-Demo-2026").await;
    each_width(&h, &mut n, "tenants", "/ui/platform/tenants", false).await;
}
