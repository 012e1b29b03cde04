//! Tenant isolation, proved by walking the routers' own route lists (the
//! OpenAPI document of the API router and `ui::routes()`), not a hand-picked
//! list: every route that takes ids is tried with another tenant's ids, by
//! a signed-in user and an API client of the other tenant, and with no
//! credentials. Nothing of the first tenant may come back, and nothing of
//! it may change.

use axum::http::StatusCode;
use machi::service::Actor;
use machi_domain::access::Role;
use machi_domain::support::{Affair, AffairRequest, NewSupportMeasure, Requester};

use crate::api::{Api, call, client_token};
use crate::contract::{counts, takahashi_family};
use crate::support::{AKISHIMA, FUCHU, TestDb};
use crate::ui::{Session, send, staff};

both_backends!(no_route_crosses_tenants,);

/// Values for each path parameter: FUCHU's real ids.
fn fill(path: &str, ids: &[(&str, String)]) -> String {
    let mut out = path.to_string();
    for (name, value) in ids {
        out = out.replace(&format!("{{{name}}}"), value);
    }
    assert!(
        !out.contains('{'),
        "route {path} takes a parameter this test does not know: add it to the id list"
    );
    out
}

/// What FUCHU's data looks like in any answer: names and the tenant's name.
const FUCHU_MARKERS: [&str; 3] = ["髙橋", "タカハシ", "府中市"];

async fn no_route_crosses_tenants(db: TestDb) {
    let db = db.with_tenants().await;
    let r = &db.registry;
    let fuchu = FUCHU.parse().unwrap();
    // FUCHU: a family, a provisional change, a support measure.
    let req: machi_domain::change::ChangeRequest =
        serde_json::from_value(takahashi_family()).unwrap();
    let out = r
        .submit(&fuchu, &req, &Actor::system("setup"))
        .await
        .unwrap();
    let person = out.rows[0].record.addressee_number.clone();
    let household = out.rows[0].record.household_number.to_string();
    // FUCHU: a certificate issued at its counter (its confirmation page).
    r.set_issuer(&fuchu, "府中市長", "架空　太一", &Actor::system("setup"))
        .await
        .unwrap();
    staff(&db, FUCHU, "fclerk", Role::Clerk).await;
    let fclerk = Session::login(&crate::ui::app(&db).await, FUCHU, "fclerk").await;
    let (s, h, body) = fclerk
        .post(
            "/ui/certificates",
            &[
                ("person", person.as_str()),
                ("scope", "person"),
                ("kind", "resident_copy"),
                ("requester", "self"),
                ("identity", "my_number_card"),
            ],
        )
        .await;
    assert_eq!(s, axum::http::StatusCode::SEE_OTHER, "{body}");
    let batch = crate::ui::location(&h)
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    r.enter_provisional(&fuchu, &req, &Actor::system("someone"))
        .await
        .unwrap();
    let measure = r
        .support_register(
            &fuchu,
            &NewSupportMeasure {
                filed_on: r.today(),
                provisional_start: None,
                requester: Requester {
                    addressee_number: person.clone(),
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
    // FUCHU: an approved API client and a pending access proposal.
    let (fuchu_client, fuchu_secret) =
        crate::duties::approved_client(&db, "kokuho", "kokuho:events:read").await;
    r.propose_client(
        &fuchu,
        "juki",
        "juki:residents:read",
        &Actor::system("admin"),
    )
    .await
    .unwrap();
    // AKISHIMA: its own staff of every tenant role, and an API client.
    for (login, role) in [
        ("clerk", Role::Clerk),
        ("boss", Role::Supervisor),
        ("support", Role::SupportOfficer),
        ("admin", Role::TenantAdmin),
        ("cio", Role::Cio),
    ] {
        staff(&db, AKISHIMA, login, role).await;
    }
    // FUCHU: a webhook subscription of one of its clients.
    let subscription = r
        .create_subscription(
            &fuchu,
            "fuchu-client",
            machi::service::hooks::NewSubscription {
                url: "https://example.org/hook".into(),
                types: vec![],
                after: None,
            },
            &Actor::system("setup"),
        )
        .await
        .unwrap();
    // FUCHU: a filing from the portal in its inbox.
    crate::inbox::stored_juminhyo(&db).await;
    // FUCHU: its own procedure definition from the portal, awaiting its
    // administrator (its title names 府中市).
    let own = crate::procdefs::SODAIGOMI_V1
        .replace("粗大ごみ収集の申込み", "府中市の粗大ごみ収集の申込み");
    let t = fuchu.clone();
    db.store
        .write(Some(&fuchu), move |tx| {
            let def = machi::store::procedure_definitions::parsed(&own).unwrap();
            machi::store::procedure_definitions::store(tx, &t, &def, &own, 1)
        })
        .await
        .unwrap();
    let router = crate::ui::app(&db).await;
    let token = client_token(&db, &router, AKISHIMA).await;
    let before = (
        counts(&db.store, FUCHU).await,
        r.pending(&fuchu, 1).await.unwrap().status,
        r.support_measure(&fuchu, measure.measure_id(), &Actor::system("t"))
            .await
            .unwrap()
            .stored
            .measure
            .status,
    );
    let ids = vec![
        ("batch", batch),
        ("copy", "1".to_string()),
        ("municipality_code", FUCHU.to_string()),
        ("addressee_number", person.to_string()),
        ("household_number", household),
        ("change_id", out.change_id.to_string()),
        ("pending_id", "1".to_string()),
        ("procedure", "tenshutsu".to_string()),
        ("measure_id", measure.measure_id().to_string()),
        ("subscription_id", subscription.subscription_id.to_string()),
        ("grant_id", "2".to_string()),
        ("filing_id", "1".to_string()),
        // A quarantined filing's portal id (none is quarantined here: the
        // other tenant must be refused before the id is looked up).
        ("portal_id", "p-0000000000000001".to_string()),
        ("field", "id_document".to_string()),
        ("survey", "survey_internet".to_string()),
    ];

    // The API, from its OpenAPI document.
    let (_, doc) = machi::api::routes().split_for_parts();
    let other = Api {
        router: router.clone(),
        headers: vec![("authorization".into(), token)],
    };
    let anonymous = other.with_headers(vec![]);
    let mut api_routes = 0;
    for (path, item) in &doc.paths.paths {
        let methods: Vec<&str> = [
            ("GET", item.get.is_some()),
            ("POST", item.post.is_some()),
            ("PUT", item.put.is_some()),
            ("DELETE", item.delete.is_some()),
            ("PATCH", item.patch.is_some()),
        ]
        .into_iter()
        .filter(|m| m.1)
        .map(|m| m.0)
        .collect();
        let uri = fill(path, &ids);
        for method in methods {
            api_routes += 1;
            let body = (method != "GET").then(takahashi_family);
            let (s, v) = call(&other, method, &uri, body.clone()).await;
            let text = v.to_string();
            if path.contains('{') {
                assert!(
                    !s.is_success(),
                    "{method} {uri} answered {s} to another tenant: {text}"
                );
            }
            for m in FUCHU_MARKERS {
                assert!(!text.contains(m), "{method} {uri} leaked {m}: {text}");
            }
            let (s, v) = call(&anonymous, method, &uri, body).await;
            // /metrics is open unless MACHI_METRICS_TOKEN is set (not here).
            let public = matches!(
                path.as_str(),
                "/healthz" | "/readyz" | "/oauth/token" | "/metrics"
            );
            if !public {
                assert!(
                    s == StatusCode::UNAUTHORIZED || s == StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "{method} {uri} without credentials answered {s}: {v}"
                );
            }
            for m in FUCHU_MARKERS {
                assert!(!v.to_string().contains(m), "{method} {uri} leaked {m}");
            }
        }
    }
    assert!(api_routes >= 10, "the API router lists {api_routes} routes");

    // The UI, from its route list, by every role of the other tenant.
    let mut ui_routes = 0;
    for login in ["clerk", "boss", "support", "admin", "cio"] {
        let s = Session::login(&router, AKISHIMA, login).await;
        for route in machi::ui::routes() {
            if route.public || route.path == "/logout" {
                continue;
            }
            let uri = fill(route.path, &ids);
            for method in route.methods {
                ui_routes += 1;
                let (status, _, body) = if *method == "GET" {
                    s.get(&format!("{uri}?person={person}")).await
                } else {
                    s.post(
                        &uri,
                        &[
                            ("action", "approve"),
                            ("id", "1"),
                            ("person", person.as_str()),
                            ("purpose", "view"),
                            ("for_operator", "clerk"),
                            ("type", "death"),
                            ("effective_date", "2024-01-01"),
                            ("client_id", &fuchu_client),
                            ("login", "setup"),
                        ],
                    )
                    .await
                };
                for m in FUCHU_MARKERS {
                    assert!(
                        !body.contains(m),
                        "{login}: {method} {uri} ({status}) leaked {m}"
                    );
                }
                // Without a session: to the login page, never the content.
                let (status, headers, body) = send(&router, method, &uri, None, Some("x=1")).await;
                assert_eq!(
                    status,
                    StatusCode::SEE_OTHER,
                    "{method} {uri} without a session"
                );
                assert_eq!(crate::ui::location(&headers), "/login");
                assert!(FUCHU_MARKERS.iter().all(|m| !body.contains(m)));
            }
        }
    }
    assert!(
        ui_routes >= 50,
        "the UI router lists {ui_routes} route-methods"
    );

    // FUCHU's client cannot be disabled, rotated, widened or let commit
    // from AKISHIMA.
    let admin = Session::login(&router, AKISHIMA, "admin").await;
    let boss = Session::login(&router, AKISHIMA, "boss").await;
    for (s, uri, form) in [
        (
            &admin,
            "/ui/admin/clients/state",
            vec![("action", "disable")],
        ),
        (&admin, "/ui/admin/clients/direct", vec![("action", "on")]),
        (
            &admin,
            "/ui/admin/clients/scopes",
            vec![("scopes", "kokuho:residents:read")],
        ),
        (&boss, "/ui/grants/rotate", vec![]),
        (
            &admin,
            "/ui/admin/procedures",
            vec![
                ("procedure", "sodaigomi"),
                ("version", "1"),
                ("decision", "accept"),
            ],
        ),
    ] {
        let mut form = form;
        form.push(("client_id", fuchu_client.as_str()));
        let (status, _, body) = s.post(uri, &form).await;
        assert!(!status.is_success(), "{uri} answered {status}: {body}");
    }
    let t = fuchu.clone();
    let client = db
        .store
        .read(Some(&fuchu), move |tx| {
            machi::store::accounts::list_clients(tx, &t)
        })
        .await
        .unwrap();
    assert_eq!(client.len(), 1);
    assert!(!client[0].disabled && !client[0].direct_commit);
    assert_eq!(client[0].scopes, "kokuho:events:read");
    assert_eq!(
        crate::duties::token(&router, &fuchu_client, &fuchu_secret)
            .await
            .0,
        StatusCode::OK,
        "FUCHU's client still works with its secret"
    );
    assert_eq!(
        r.grants(&fuchu, true, 10).await.unwrap().len(),
        1,
        "FUCHU's proposal is still pending, and the only one"
    );
    // Nothing of FUCHU changed.
    let after = (
        counts(&db.store, FUCHU).await,
        r.pending(&fuchu, 1).await.unwrap().status,
        r.support_measure(&fuchu, measure.measure_id(), &Actor::system("t"))
            .await
            .unwrap()
            .stored
            .measure
            .status,
    );
    assert_eq!(before, after);
    // FUCHU's definition still awaits FUCHU's administrator.
    let t = fuchu.clone();
    let trust = db
        .store
        .read(Some(&fuchu), move |tx| {
            machi::store::procedure_definitions::trust(tx, &t, "sodaigomi", 1)
        })
        .await
        .unwrap();
    assert_eq!(trust, machi::store::procedure_definitions::Trust::Pending);
    // And AKISHIMA has nothing of FUCHU's either.
    assert_eq!(counts(&db.store, AKISHIMA).await.0, 0);
}
