//! Verified bearer tokens and sessions are served from memory for a moment
//! (`CallerCache`), and revocation is not weakened by it: a client
//! disabled, its scopes narrowed, an account disabled or a session ended
//! stops working at the very next request on this process; on PostgreSQL
//! another server on the same database hears of it by `NOTIFY machi_auth`.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use machi::api::{self, AppState};
use machi::service::{Actor, Clock, Registry};
use machi::store::{DatabaseLocation, Store};
use machi_domain::access::Role;
use machi_domain::dates::EraTable;

use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::api::{Api, call};
use crate::support::{FUCHU, TestDb, code, test_keyring};
use crate::ui::{Session, staff};

both_backends!(revocations_stop_cached_callers_at_once,);

fn api_with(router: &axum::Router, token: &str) -> Api {
    Api {
        router: router.clone(),
        headers: vec![("authorization".into(), token.into())],
    }
}

/// A new API client of FUCHU and a token of it: `(client id, "Bearer …")`.
async fn client_and_token(db: &TestDb, router: &axum::Router) -> (String, String) {
    let (id, secret) = db
        .registry
        .create_client(
            &code(FUCHU),
            "test",
            "test:residents:read test:events:read",
            &Actor::system("setup"),
        )
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
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    (
        id,
        format!("Bearer {}", v["access_token"].as_str().unwrap()),
    )
}

async fn revocations_stop_cached_callers_at_once(db: TestDb) {
    let db = db.with_tenants().await;
    let router = api::app(AppState {
        registry: db.registry.clone(),
    });
    let tenant_uri = format!("/api/v1/tenants/{FUCHU}");
    let admin = Actor::system("admin");

    // A disabled client: refused at the next request, though its token
    // was verified (and cached) a moment ago.
    let (id, token) = client_and_token(&db, &router).await;
    let app = api_with(&router, &token);
    for _ in 0..3 {
        let (s, body) = call(&app, "GET", &tenant_uri, None).await;
        assert_eq!(s, StatusCode::OK, "{body}");
    }
    db.registry
        .set_client_disabled(&code(FUCHU), &id, true, &admin)
        .await
        .unwrap();
    let (s, body) = call(&app, "GET", &tenant_uri, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "disabled client: {body}");

    // Narrowed scopes end the client's live tokens at once.
    let (id, token) = client_and_token(&db, &router).await;
    let app = api_with(&router, &token);
    let (s, body) = call(&app, "GET", &tenant_uri, None).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    db.registry
        .change_client_scopes(&code(FUCHU), &id, "test:events:read", &admin)
        .await
        .unwrap();
    let (s, body) = call(&app, "GET", &tenant_uri, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "narrowed client: {body}");

    // A staff session: a disabled account's session ends at once.
    staff(&db, FUCHU, "clerk1", Role::Clerk).await;
    let ui = crate::ui::app(&db).await;
    let session = Session::login(&ui, FUCHU, "clerk1").await;
    for _ in 0..3 {
        let (s, _, body) = session.get("/ui").await;
        assert_eq!(s, StatusCode::OK, "{body}");
    }
    db.registry
        .set_account_disabled(&code(FUCHU), "clerk1", true, &admin)
        .await
        .unwrap();
    let (s, headers, _) = session.get("/ui").await;
    assert_eq!(s, StatusCode::SEE_OTHER, "disabled account");
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "location" && v == "/login"),
        "{headers:?}"
    );

    // An expired token is refused whatever the cache holds.
    let (_, token) = client_and_token(&db, &router).await;
    let app = api_with(&router, &token);
    let (s, body) = call(&app, "GET", &tenant_uri, None).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let later = db.registry.at(Clock::Fixed(
        chrono::Utc::now() + chrono::Duration::minutes(11),
    ));
    let later_router = api::app(AppState { registry: later });
    let (s, body) = call(&api_with(&later_router, &token), "GET", &tenant_uri, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "expired token: {body}");
}

/// Two servers on one PostgreSQL database: B has verified a token and
/// keeps it for a minute; A disables the client; B refuses the token as
/// soon as the notification arrives, long before the minute is up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_servers_revocation_reaches_this_one() {
    let db = TestDb::postgres().await.with_tenants().await;
    let url = db.url().unwrap();
    let store_b = Store::connect(&DatabaseLocation::Postgres(url), test_keyring())
        .await
        .unwrap();
    let registry_b = Registry::new(store_b.clone(), EraTable::standard(), Clock::System)
        .with_caller_cache(Duration::from_secs(60));
    let router_a = api::app(AppState {
        registry: db.registry.clone(),
    });
    let router_b = api::app(AppState {
        registry: registry_b,
    });
    // B caches only once its listener is connected.
    let waited = Instant::now();
    while store_b.auth_epoch().is_none() {
        assert!(
            waited.elapsed() < Duration::from_secs(20),
            "B's listener did not connect"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (id, token) = client_and_token(&db, &router_a).await;
    let tenant_uri = format!("/api/v1/tenants/{FUCHU}");
    let b = api_with(&router_b, &token);
    let (s, body) = call(&b, "GET", &tenant_uri, None).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    // B serves the token from memory: a change behind machi's back (no
    // notification) is not seen within the minute.
    db.raw(&format!(
        "UPDATE api_clients SET disabled = 1 WHERE client_id = '{id}'"
    ))
    .await;
    let (s, body) = call(&b, "GET", &tenant_uri, None).await;
    assert_eq!(
        s,
        StatusCode::OK,
        "B should have served the cached token: {body}"
    );
    db.raw(&format!(
        "UPDATE api_clients SET disabled = 0 WHERE client_id = '{id}'"
    ))
    .await;
    // A disables the client through machi: B hears of it.
    db.registry
        .set_client_disabled(&code(FUCHU), &id, true, &Actor::system("admin"))
        .await
        .unwrap();
    let disabled = Instant::now();
    loop {
        let (s, _) = call(&b, "GET", &tenant_uri, None).await;
        if s == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(
            disabled.elapsed() < Duration::from_secs(10),
            "B still accepts the token {:?} after A disabled its client",
            disabled.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
