//! 支援措置 (j380, j440) through the real router, on SQLite and PostgreSQL:
//! a support officer registers a measure and releases single requests
//! through the staff UI; an API client and a clerk then read residents,
//! histories, households and changes through the JSON API, and the clerk
//! issues certificates. Each read or issue showing the protected person is
//! blocked without a release and passes exactly once with one; search
//! shows neither the protected person's address nor their household.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use machi::api::{self, AppState};
use machi::service::Actor;
use machi_domain::access::Role;
use machi_domain::ids::{AddresseeNumber, HouseholdNumber, MunicipalityCode};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::api::{Api, call};
use crate::contract::{move_in, takahashi_family};
use crate::support::{FUCHU, TestDb};
use crate::ui::{Session, location, staff};

both_backends!(
    reads_of_a_protected_person_pass_once_per_release,
    certificates_of_a_protected_household_pass_once_per_release,
    the_change_list_withholds_what_was_entered_for_a_protected_person,
    search_withholds_the_address_of_a_protected_person,
    search_shows_no_household_of_a_protected_person,
);

/// The protected person's name and address: never in a refused answer.
const NAME: &str = "髙橋　京子";
const ADDRESS: &str = "宮西町二丁目24番地";
/// Everyone living with her (j440 lets a block cover the household).
const FAMILY: [&str; 3] = ["髙橋　一郎", NAME, "髙橋　翔"];
/// The neighbour, at another address: nobody protects her.
const NEIGHBOUR_ADDRESS: &str = "寿町一丁目1番地";

fn a(n: u64) -> String {
    AddresseeNumber::from_serial(n).unwrap().to_string()
}

fn h(n: u64) -> String {
    HouseholdNumber::from_serial(n).unwrap().to_string()
}

fn fuchu() -> MunicipalityCode {
    FUCHU.parse().unwrap()
}

/// 府中市 with the 髙橋 family (a1 head, a2 wife, a3 child: household 1)
/// and a neighbour (a4, household 2); a clerk, a support officer, an API
/// client; a measure protecting the wife (a2), registered through the UI.
struct World {
    db: TestDb,
    router: axum::Router,
    clerk: Session,
    officer: Session,
    /// The measure's page, `/ui/support/{id}`.
    measure: String,
    /// The API client: its operator id in the access log, and its token.
    client: (String, Api),
}

async fn world(db: TestDb) -> World {
    let db = db.with_tenants().await;
    let setup = Actor::system("setup");
    for request in [
        takahashi_family(),
        move_in(
            vec![
                json!({"name": "佐藤　花子", "name_kana": "サトウ　ハナコ", "birth_date": "1980-05-05",
                "sex": "female", "relationship": "世帯主"}),
            ],
            "東京都府中市寿町一丁目1番地",
        ),
    ] {
        db.registry
            .submit(&fuchu(), &serde_json::from_value(request).unwrap(), &setup)
            .await
            .unwrap();
    }
    db.registry
        .set_issuer(&fuchu(), "府中市長", "架空　太一", &setup)
        .await
        .unwrap();
    staff(&db, FUCHU, "clerk", Role::Clerk).await;
    staff(&db, FUCHU, "officer", Role::SupportOfficer).await;
    let router = api::app(AppState {
        registry: db.registry.clone(),
    });
    let clerk = Session::login(&router, FUCHU, "clerk").await;
    let officer = Session::login(&router, FUCHU, "officer").await;
    let client = client(&db, &router).await;
    let today = db.registry.today().to_string();
    let (s, headers, body) = officer
        .post(
            "/ui/support/new",
            &[
                ("requester", a(2).as_str()),
                ("filed_on", today.as_str()),
                ("affair_copy", "1"),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::SEE_OTHER, "{body}");
    let measure = location(&headers).split('?').next().unwrap().to_string();
    assert!(measure.starts_with("/ui/support/"), "{measure}");
    World {
        db,
        router,
        clerk,
        officer,
        measure,
        client,
    }
}

/// An API client of 府中市 with every scope, and its token from the real
/// token endpoint: (its operator id, the API with its token).
async fn client(db: &TestDb, router: &axum::Router) -> (String, Api) {
    let scopes = "test:residents:read test:changes:read test:changes:write test:events:read";
    let (id, secret) = db
        .registry
        .create_client(&fuchu(), "test", scopes, &Actor::system("setup"))
        .await
        .unwrap();
    let form = format!("grant_type=client_credentials&client_id={id}&client_secret={secret}");
    let res = router
        .clone()
        .oneshot(
            Request::post("/oauth/token")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from(form))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    let token = format!("Bearer {}", v["access_token"].as_str().unwrap());
    (
        format!("client:{id}"),
        Api {
            router: router.clone(),
            headers: vec![("authorization".into(), token)],
        },
    )
}

impl World {
    /// The clerk's session as a caller of the JSON API.
    fn clerk_api(&self) -> Api {
        Api {
            router: self.router.clone(),
            headers: vec![("cookie".into(), self.clerk.cookie.clone())],
        }
    }

    /// The officer releases ONE request of `purpose` ("view" or "issue")
    /// concerning a2 for `operator`, through the UI.
    async fn release(&self, purpose: &str, operator: &str) {
        let (s, _, body) = self
            .officer
            .post(
                &format!("{}/act", self.measure),
                &[
                    ("action", "release"),
                    ("person", a(2).as_str()),
                    ("purpose", purpose),
                    ("for_operator", operator),
                ],
            )
            .await;
        assert_eq!(s, StatusCode::SEE_OTHER, "{body}");
    }

    /// The access log of 府中市: (function, target, operator), oldest first.
    async fn log(&self) -> Vec<(String, String, String)> {
        let t = fuchu();
        self.db
            .store
            .read(Some(&fuchu()), move |tx| {
                machi::store::records::audit_entries(tx, &t, 0, 10_000)
            })
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.entry.function, e.entry.target, e.entry.operator))
            .collect()
    }
}

/// What in an answer shows that the protected person was read.
type Shows = fn(&Value) -> bool;

/// A refusal by the support-measure guard, showing nothing of the family.
fn assert_blocked(what: &str, s: StatusCode, v: &Value) {
    assert_eq!(s, StatusCode::FORBIDDEN, "{what}: {v}");
    assert_eq!(v["code"], "support_measure_block", "{what}: {v}");
    assert_nothing_of_the_family(what, v);
}

/// The family's names and address: none in `v`.
fn assert_nothing_of_the_family(what: &str, v: &Value) {
    let text = v.to_string();
    for shown in FAMILY.iter().chain([&ADDRESS]) {
        assert!(!text.contains(shown), "{what}: {shown} in {v}");
    }
}

async fn reads_of_a_protected_person_pass_once_per_release(db: TestDb) {
    let w = world(db).await;
    let base = format!("/api/v1/tenants/{FUCHU}");
    let (client_op, client) = (w.client.0.as_str(), &w.client.1);
    let clerk = w.clerk_api();
    // Each read that shows a2, and what in its answer shows she was read.
    let reads: Vec<(String, Shows)> = vec![
        (format!("{base}/residents/{}", a(2)), |v| {
            v["record"]["name"] == NAME && v["record"]["support_measure"].is_string()
        }),
        (format!("{base}/residents/{}/history", a(2)), |v| {
            v["history"][0]["name"] == NAME
        }),
        (format!("{base}/households/{}", h(1)), |v| {
            v["members"]
                .as_array()
                .is_some_and(|m| m.iter().any(|p| p["name"] == NAME))
        }),
        (format!("{base}/changes/1"), |v| {
            v["persons"].as_array().is_some_and(|p| p.len() == 3)
                && v["request"].to_string().contains(NAME)
        }),
    ];
    let mut passed = 0;
    for (who, operator, api) in [("client", client_op, client), ("clerk", "clerk", &clerk)] {
        for (uri, shows) in &reads {
            let what = format!("{who} GET {uri}");
            let (s, v) = call(api, "GET", uri, None).await;
            assert_blocked(&what, s, &v);
            w.release("view", operator).await;
            let (s, v) = call(api, "GET", uri, None).await;
            assert_eq!(s, StatusCode::OK, "{what} with a release: {v}");
            assert!(shows(&v), "{what} with a release: {v}");
            passed += 1;
            let (s, v) = call(api, "GET", uri, None).await;
            assert_blocked(&format!("{what}, the release used"), s, &v);
        }
    }
    // A release is for its operator and purpose only: one for the clerk
    // does not open the client's read, nor a certificate; the clerk's read
    // then uses it.
    let resident = &reads[0].0;
    w.release("view", "clerk").await;
    let (s, v) = call(client, "GET", resident, None).await;
    assert_blocked("client with the clerk's release", s, &v);
    let (s, _, _) = w
        .clerk
        .post(
            "/ui/certificates",
            &[("person", a(1).as_str()), ("kind", "resident_copy")],
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "a view release issues nothing");
    let (s, v) = call(&clerk, "GET", resident, None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    passed += 1;
    // The neighbour, whom nobody protects and who lives elsewhere, is read
    // without any release.
    for uri in [
        format!("{base}/residents/{}", a(4)),
        format!("{base}/households/{}", h(2)),
        format!("{base}/changes/2"),
    ] {
        let (s, v) = call(client, "GET", &uri, None).await;
        assert_eq!(s, StatusCode::OK, "{uri}: {v}");
    }

    // The access log: each release used once, by the read right after it
    // in the same transaction; each refusal logged, with no read entry.
    let log = w.log().await;
    let used: Vec<usize> = (0..log.len())
        .filter(|i| log[*i].0 == "support.release_used")
        .collect();
    assert_eq!(used.len(), passed, "{log:?}");
    for i in used {
        let (function, target, operator) = &log[i + 1];
        assert!(function.starts_with("read."), "{:?}", &log[i..=i + 1]);
        assert_eq!(operator, &log[i].2);
        assert!(target.contains(&a(2)), "{:?}", &log[i..=i + 1]);
    }
    let blocked = log
        .iter()
        .filter(|e| e.0 == "support.blocked" && e.1 == a(2))
        .count();
    // Two refusals per read and caller, one for the client with the
    // clerk's release, one certificate.
    assert_eq!(blocked, 2 * reads.len() * 2 + 2, "{log:?}");
    assert_eq!(
        log.iter().filter(|e| e.0 == "support.release").count(),
        passed
    );
}

async fn certificates_of_a_protected_household_pass_once_per_release(db: TestDb) {
    let w = world(db).await;
    // The head's household includes a2: no certificate of it.
    let household = [("person", a(1)), ("kind", "resident_copy".to_string())];
    let household: Vec<(&str, &str)> = household.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (s, _, body) = crate::ui::issue_pdf(&w.clerk, &household).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert!(!body.contains(NAME) && !body.contains(ADDRESS), "{body}");
    // Nor of her alone, nor of her household by its number.
    let (s, _, _) = w
        .clerk
        .post(
            "/ui/certificates",
            &[
                ("person", a(2).as_str()),
                ("kind", "resident_copy"),
                ("scope", "person"),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _, _) = w
        .clerk
        .post(
            "/ui/certificates",
            &[("household", h(1).as_str()), ("kind", "resident_copy")],
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // The neighbour's certificate is issued without any release.
    let (s, _, pdf) = crate::ui::issue_pdf(
        &w.clerk,
        &[("person", a(4).as_str()), ("kind", "resident_copy")],
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{pdf}");
    assert!(pdf.starts_with("%PDF"));
    // A view release issues nothing; an issue release issues one.
    w.release("view", "clerk").await;
    let (s, _, _) = crate::ui::issue_pdf(&w.clerk, &household).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    w.release("issue", "clerk").await;
    let (s, _, pdf) = crate::ui::issue_pdf(&w.clerk, &household).await;
    assert_eq!(s, StatusCode::OK, "{pdf}");
    assert!(pdf.starts_with("%PDF"));
    let (s, _, _) = crate::ui::issue_pdf(&w.clerk, &household).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "a release serves one certificate");

    let log = w.log().await;
    let issued: Vec<&(String, String, String)> =
        log.iter().filter(|e| e.0 == "certificate.issue").collect();
    assert_eq!(issued.len(), 2, "{log:?}");
    assert_eq!(issued[0].1, a(4));
    assert!(issued[1].1.contains(&a(2)), "{:?}", issued[1]);
    let i = log
        .iter()
        .position(|e| e.0 == "support.release_used")
        .unwrap();
    assert_eq!(log[i + 1].0, "certificate.issue");
    assert_eq!(
        log.iter().filter(|e| e.0 == "support.release_used").count(),
        1
    );
    assert_eq!(
        log.iter()
            .filter(|e| e.0 == "support.blocked" && e.1 == a(2))
            .count(),
        5
    );
}

async fn the_change_list_withholds_what_was_entered_for_a_protected_person(db: TestDb) {
    let w = world(db).await;
    let base = format!("/api/v1/tenants/{FUCHU}");
    for api in [&w.client.1, &w.clerk_api()] {
        let (s, v) = call(api, "GET", &format!("{base}/changes"), None).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        // The family's move-in is withheld (or left out); the neighbour's shows.
        assert_nothing_of_the_family("the change list", &v);
        let changes = v["changes"].as_array().unwrap();
        let neighbour = changes.iter().find(|c| c["change_id"] == 2).unwrap();
        assert!(
            neighbour["request"].to_string().contains("佐藤　花子"),
            "{v}"
        );
    }
}

/// Searches that find a2 (by name, number, household, address), by the
/// client and the clerk: each answer and a2's row in it, if any.
async fn searches(w: &World) -> Vec<(String, Value, Option<Value>)> {
    let base = format!("/api/v1/tenants/{FUCHU}");
    let uris = [
        format!("{base}/search?name=%E3%82%BF%E3%82%AB%E3%83%8F%E3%82%B7"), // タカハシ
        format!("{base}/search?addressee_number={}", a(2)),
        format!("{base}/search?household_number={}", h(1)),
        format!("{base}/search?address=%E5%AE%AE%E8%A5%BF%E7%94%BA"), // 宮西町
    ];
    let mut out = Vec::new();
    for api in [&w.client.1, &w.clerk_api()] {
        for uri in &uris {
            let (s, v) = call(api, "GET", uri, None).await;
            assert_eq!(s, StatusCode::OK, "{uri}: {v}");
            let row = v["results"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["addressee_number"] == a(2))
                .cloned();
            out.push((uri.clone(), v, row));
        }
    }
    out
}

async fn search_withholds_the_address_of_a_protected_person(db: TestDb) {
    let w = world(db).await;
    // The search works: the neighbour is found by name, with her address.
    let (s, v) = call(
        &w.client.1,
        "GET",
        &format!("/api/v1/tenants/{FUCHU}/search?name=%E3%82%B5%E3%83%88%E3%82%A6"), // サトウ
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let neighbour = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["addressee_number"] == a(4))
        .unwrap_or_else(|| panic!("the neighbour is found: {v}"));
    assert!(
        neighbour["address"]
            .as_str()
            .unwrap()
            .contains(NEIGHBOUR_ADDRESS)
    );
    for (uri, _, row) in searches(&w).await {
        // She may be listed (marked), or left out; never with her address.
        let Some(row) = row else { continue };
        assert!(
            !row.to_string().contains(ADDRESS),
            "{uri}: address shown: {row}"
        );
        for field in ["address_annex", "postal_code", "previous_address"] {
            assert!(row[field].is_null(), "{uri}: {field} shown: {row}");
        }
    }
}

/// Her household would lead to her address through its other members.
async fn search_shows_no_household_of_a_protected_person(db: TestDb) {
    let w = world(db).await;
    for (uri, _, row) in searches(&w).await {
        let Some(row) = row else { continue };
        assert!(
            row["head_name"].is_null(),
            "{uri}: head's name shown: {row}"
        );
        assert_ne!(
            row["household_number"],
            h(1),
            "{uri}: the household of a protected person shown: {row}"
        );
    }
}
