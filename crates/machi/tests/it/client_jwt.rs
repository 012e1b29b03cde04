//! `client_secret_jwt` at the token endpoint (RFC 7523 §2.2): a good
//! assertion gets a token that works; a wrong secret, an expired
//! assertion, a wrong audience, a replayed `jti`, `alg: none`, an `RS256`
//! header, an over-long lifetime and mismatched `iss`/`sub` are each
//! refused with `invalid_client`, a typed `reason` and a message in both
//! languages; the throttle counts them like wrong secrets.
//!
//! Assertions are built here from the RFCs with the `hmac` crate (not with
//! the code under test), except where the test needs a well-signed one
//! with odd claims.

use std::net::{IpAddr, SocketAddr};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use chrono::Utc;
use hmac::{Hmac, Mac};
use http_body_util::BodyExt;
use machi::api::{self, AppState};
use machi::service::{Actor, Clock, Registry};
use serde_json::{Value, json};
use sha2::Sha256;
use tower::ServiceExt;

use crate::support::{FUCHU, TestDb, code};
use crate::ui::form;

both_backends!(
    a_good_assertion_gets_a_token_that_works,
    bad_assertions_are_refused_each_with_its_reason,
    failed_assertions_are_throttled_like_wrong_secrets,
    a_rotated_secret_signs_and_the_old_one_does_not,
);

const HOST: &str = "machi.test";
const AUDIENCE: &str = "http://machi.test/oauth/token";
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A JWT: base64url(header).base64url(claims).base64url(HMAC-SHA256).
fn jwt(header: &Value, claims: &Value, key: &[u8]) -> String {
    let signing_input = format!(
        "{}.{}",
        B64URL.encode(header.to_string()),
        B64URL.encode(claims.to_string())
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(signing_input.as_bytes());
    format!(
        "{signing_input}.{}",
        B64URL.encode(mac.finalize().into_bytes())
    )
}

fn claims(id: &str, now: i64, jti: &str) -> Value {
    json!({"iss": id, "sub": id, "aud": AUDIENCE, "iat": now, "exp": now + 60, "jti": jti})
}

fn hs256(claims: &Value, secret: &str) -> String {
    jwt(
        &json!({"alg": "HS256", "typ": "JWT"}),
        claims,
        secret.as_bytes(),
    )
}

struct Answer {
    status: StatusCode,
    body: Value,
}

async fn post(router: &axum::Router, from: IpAddr, pairs: &[(&str, &str)]) -> Answer {
    let mut req = Request::builder()
        .method("POST")
        .uri("/oauth/token")
        .header("host", HOST)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(form(pairs)))
        .unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::new(from, 40_000)));
    let res = router.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

async fn by_assertion(router: &axum::Router, from: IpAddr, assertion: &str) -> Answer {
    post(
        router,
        from,
        &[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", assertion),
        ],
    )
    .await
}

fn addr(s: &str) -> IpAddr {
    s.parse().unwrap()
}

async fn setup(db: TestDb) -> (TestDb, Registry, axum::Router, String, String, i64) {
    let db = db.with_tenants().await;
    let (id, secret) = db
        .registry
        .create_client(
            &code(FUCHU),
            "test",
            "test:events:read",
            &Actor::system("setup"),
        )
        .await
        .unwrap();
    // A fixed instant: the throttle's window never passes by itself.
    let t0 = Utc::now();
    let registry = db.registry.at(Clock::Fixed(t0));
    let router = api::app(AppState {
        registry: registry.clone(),
    });
    (db, registry, router, id, secret, t0.timestamp())
}

fn assert_refused(a: &Answer, reason: &str) {
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{reason}: {}", a.body);
    assert_eq!(a.body["error"], "invalid_client", "{}", a.body);
    assert_eq!(a.body["reason"], reason, "{}", a.body);
    let ja = a.body["message_ja"].as_str().unwrap_or("");
    let en = a.body["error_description"].as_str().unwrap_or("");
    assert!(
        ja.chars().any(|c| ('\u{3040}'..='\u{30ff}').contains(&c)),
        "Japanese message: {ja:?}"
    );
    assert!(en.is_ascii() && en.len() > 10, "English message: {en:?}");
    assert!(a.body.get("access_token").is_none());
}

async fn a_good_assertion_gets_a_token_that_works(db: TestDb) {
    let (_db, _registry, router, id, secret, now) = setup(db).await;
    let a = by_assertion(
        &router,
        addr("192.0.2.10"),
        &hs256(&claims(&id, now, "jti-1"), &secret),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["token_type"], "Bearer");
    assert_eq!(a.body["scope"], "test:events:read");
    let token = a.body["access_token"].as_str().unwrap();
    let req = Request::builder()
        .uri(format!("/api/v1/tenants/{FUCHU}/events"))
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let res = router.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // The form may name the client too, if it names the same one.
    let a = post(
        &router,
        addr("192.0.2.10"),
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &id),
            ("client_assertion_type", ASSERTION_TYPE),
            (
                "client_assertion",
                &hs256(&claims(&id, now, "jti-2"), &secret),
            ),
        ],
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    // aud may be a list holding the endpoint.
    let mut c = claims(&id, now, "jti-3");
    c["aud"] = json!(["https://elsewhere.example/", AUDIENCE]);
    let a = by_assertion(&router, addr("192.0.2.10"), &hs256(&c, &secret)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
}

async fn bad_assertions_are_refused_each_with_its_reason(db: TestDb) {
    let (_db, _registry, router, id, secret, now) = setup(db).await;
    // Each from its own address: the throttle stays out of the way.
    let mut n = 0;
    let mut from = || {
        n += 1;
        addr(&format!("198.51.100.{n}"))
    };
    // Wrong secret.
    let a = by_assertion(
        &router,
        from(),
        &hs256(&claims(&id, now, "w"), "not-the-secret"),
    )
    .await;
    assert_refused(&a, "assertion_signature");
    // Unknown client: the same answer.
    let a = by_assertion(
        &router,
        from(),
        &hs256(&claims("132063-test-ffffffff", now, "u"), &secret),
    )
    .await;
    assert_refused(&a, "assertion_signature");
    // Expired a minute ago.
    let mut c = claims(&id, now - 200, "e");
    c["exp"] = json!(now - 60);
    let a = by_assertion(&router, from(), &hs256(&c, &secret)).await;
    assert_refused(&a, "assertion_expired");
    // Another audience.
    let mut c = claims(&id, now, "a");
    c["aud"] = json!("https://other.example/oauth/token");
    let a = by_assertion(&router, from(), &hs256(&c, &secret)).await;
    assert_refused(&a, "assertion_audience");
    assert!(
        a.body["error_description"]
            .as_str()
            .unwrap()
            .contains(AUDIENCE)
    );
    // iss is the client, sub someone else.
    let mut c = claims(&id, now, "s");
    c["sub"] = json!("someone-else");
    let a = by_assertion(&router, from(), &hs256(&c, &secret)).await;
    assert_refused(&a, "assertion_subject");
    // Living an hour.
    let mut c = claims(&id, now, "l");
    c["exp"] = json!(now + 3_600);
    let a = by_assertion(&router, from(), &hs256(&c, &secret)).await;
    assert_refused(&a, "assertion_lifetime");
    // No jti.
    let mut c = claims(&id, now, "x");
    c.as_object_mut().unwrap().remove("jti");
    let a = by_assertion(&router, from(), &hs256(&c, &secret)).await;
    assert_refused(&a, "assertion_claims");
    // alg none, no signature.
    let unsigned = format!(
        "{}.{}.",
        B64URL.encode(json!({"alg": "none"}).to_string()),
        B64URL.encode(claims(&id, now, "n").to_string())
    );
    let a = by_assertion(&router, from(), &unsigned).await;
    assert_refused(&a, "assertion_algorithm");
    // RS256 named in the header, HMAC-signed with the secret (algorithm
    // confusion): refused for its algorithm, whatever the signature.
    let rs = jwt(
        &json!({"alg": "RS256", "typ": "JWT"}),
        &claims(&id, now, "r"),
        secret.as_bytes(),
    );
    let a = by_assertion(&router, from(), &rs).await;
    assert_refused(&a, "assertion_algorithm");
    // HS512 is not HS256 either.
    let a = by_assertion(
        &router,
        from(),
        &jwt(
            &json!({"alg": "HS512"}),
            &claims(&id, now, "h"),
            secret.as_bytes(),
        ),
    )
    .await;
    assert_refused(&a, "assertion_algorithm");
    // Not a JWT at all.
    let a = by_assertion(&router, from(), "garbage").await;
    assert_refused(&a, "assertion_malformed");
    // A good one, then the same again: a replay.
    let good = hs256(&claims(&id, now, "once"), &secret);
    assert_eq!(
        by_assertion(&router, from(), &good).await.status,
        StatusCode::OK
    );
    let a = by_assertion(&router, from(), &good).await;
    assert_refused(&a, "assertion_replayed");
    // The same jti with a new signature is a replay too.
    let mut c = claims(&id, now, "once");
    c["exp"] = json!(now + 61);
    let a = by_assertion(&router, from(), &hs256(&c, &secret)).await;
    assert_refused(&a, "assertion_replayed");
    // Two methods at once, or a wrong assertion type: invalid_request.
    let a = post(
        &router,
        from(),
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &id),
            ("client_secret", &secret),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", &hs256(&claims(&id, now, "b"), &secret)),
        ],
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
    assert_eq!(a.body["error"], "invalid_request");
    let a = post(
        &router,
        from(),
        &[
            ("grant_type", "client_credentials"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:saml2-bearer",
            ),
            ("client_assertion", &hs256(&claims(&id, now, "t"), &secret)),
        ],
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
    assert!(
        a.body["message_ja"]
            .as_str()
            .unwrap()
            .contains("jwt-bearer")
    );
    // client_id naming another client than iss.
    let a = post(
        &router,
        from(),
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "132063-test-00000000"),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", &hs256(&claims(&id, now, "c"), &secret)),
        ],
    )
    .await;
    assert_refused(&a, "assertion_subject");
}

async fn failed_assertions_are_throttled_like_wrong_secrets(db: TestDb) {
    let (_db, _registry, router, id, secret, now) = setup(db).await;
    let attacker = addr("203.0.113.8");
    let mut statuses = Vec::new();
    for i in 0..8 {
        // Expired, wrong audience, replayed or badly signed: all failures.
        let bad = match i % 4 {
            0 => hs256(&claims(&id, now, &format!("j{i}")), "wrong"),
            1 => {
                let mut c = claims(&id, now - 600, &format!("j{i}"));
                c["exp"] = json!(now - 500);
                hs256(&c, &secret)
            }
            2 => {
                let mut c = claims(&id, now, &format!("j{i}"));
                c["aud"] = json!("https://other.example/");
                hs256(&c, &secret)
            }
            _ => jwt(
                &json!({"alg": "RS256"}),
                &claims(&id, now, &format!("j{i}")),
                secret.as_bytes(),
            ),
        };
        let a = by_assertion(&router, attacker, &bad).await;
        if a.status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(a.body["error"], "invalid_client");
        }
        statuses.push(a.status.as_u16());
    }
    // Five failures of one client from one address lock it there, as five
    // wrong secrets do (a wrong algorithm is counted too: the client is the
    // one its iss names).
    assert_eq!(statuses, [vec![401u16; 5], vec![429; 3]].concat());
    // Even a good assertion from that address waits.
    let a = by_assertion(
        &router,
        attacker,
        &hs256(&claims(&id, now, "late"), &secret),
    )
    .await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{}", a.body);
    // The client itself, from its own address, is served.
    let a = by_assertion(
        &router,
        addr("192.0.2.40"),
        &hs256(&claims(&id, now, "mine"), &secret),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
}

async fn a_rotated_secret_signs_and_the_old_one_does_not(db: TestDb) {
    let (db, _registry, router, id, old, now) = setup(db).await;
    let new = db
        .registry
        .rotate_client_secret(&code(FUCHU), &id, &Actor::system("setup"))
        .await
        .unwrap();
    let a = by_assertion(
        &router,
        addr("192.0.2.11"),
        &hs256(&claims(&id, now, "o"), &old),
    )
    .await;
    assert_refused(&a, "assertion_signature");
    let a = by_assertion(
        &router,
        addr("192.0.2.12"),
        &hs256(&claims(&id, now, "n"), &new),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
}
