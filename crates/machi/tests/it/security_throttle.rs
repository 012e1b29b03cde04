//! The attacks of issue 14 repeated against the real router, each request
//! carrying the client address a server gives it (`ConnectInfo`), and once
//! against a real server on a port: floods of sign-ins, token requests and
//! certificate checks from one address are refused with 429 and
//! `Retry-After` while other addresses go on; a stranger cannot lock out
//! an account or a client; a client asking for a scope it lacks does not
//! lock itself; `X-Forwarded-For` counts only from a trusted proxy; every
//! response has the security headers; unreadable bodies are answered
//! without the parser's words.
//!
//! Time is a fixed clock moved on by hand ([`Registry::at`]): no test
//! waits for a window to pass.

use std::net::{IpAddr, SocketAddr};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Request, StatusCode, header};
use chrono::{Duration, Utc};
use http_body_util::BodyExt;
use machi::api::source::TrustedProxies;
use machi::api::{self, AppState};
use machi::service::auth::THROTTLE_WINDOW_SECONDS;
use machi::service::throttle::Limits;
use machi::service::{Actor, Clock, Registry};
use machi_domain::access::Role;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::contract::takahashi_family;
use crate::support::{FUCHU, TestDb};
use crate::ui::{PASSWORD, form, staff};

both_backends!(
    a_sign_in_flood_from_one_address_is_refused_there_only,
    a_strangers_wrong_passwords_lock_only_the_stranger,
    the_global_ceiling_refuses_new_addresses_but_not_proven_ones,
    token_floods_are_refused_well_before_thirty,
    a_strangers_wrong_secrets_do_not_stop_the_real_client,
    ungranted_scopes_do_not_lock_a_client,
    certificate_check_floods_are_refused,
    forwarded_for_counts_only_from_a_trusted_proxy,
    a_real_server_throttles_by_peer_address,
    every_response_has_the_security_headers,
    unreadable_requests_are_answered_without_parser_text,
);

/// The router as a server on a port gives it requests: each with the
/// client's address.
#[derive(Clone)]
struct Net {
    router: axum::Router,
}

/// One answer: status, headers, body as text.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    fn session_cookie(&self) -> Option<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with("machi_session=") && !v.starts_with("machi_session=;"))
            .map(|v| v.split(';').next().unwrap().to_string())
    }
}

fn addr(s: &str) -> IpAddr {
    s.parse().unwrap()
}

impl Net {
    fn new(registry: &Registry) -> Net {
        Net {
            router: api::app(AppState {
                registry: registry.clone(),
            }),
        }
    }

    async fn send(
        &self,
        from: IpAddr,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> Answer {
        let mut req = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let mut req = req.body(body.into()).unwrap();
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::new(from, 40_000)));
        let res = self.router.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    /// Opens the sign-in page and posts it, as a browser at `from` does.
    async fn sign_in(
        &self,
        from: IpAddr,
        extra: &[(&str, &str)],
        tenant: &str,
        login: &str,
        password: &str,
    ) -> Answer {
        let page = self.send(from, "GET", "/login", extra, Body::empty()).await;
        let cookie = page
            .headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with("machi_login="))
            .map(|v| v.split(';').next().unwrap().to_string())
            .expect("login cookie");
        let marker = "name=\"login_csrf\" value=\"";
        let i = page.body.find(marker).expect("login csrf") + marker.len();
        let token = page.body[i..].split('"').next().unwrap().to_string();
        let body = form(&[
            ("login_csrf", &token),
            ("tenant", tenant),
            ("login", login),
            ("password", password),
            ("terminal", "T-SEC"),
        ]);
        let mut headers = vec![
            ("cookie", cookie.as_str()),
            ("content-type", "application/x-www-form-urlencoded"),
        ];
        headers.extend_from_slice(extra);
        self.send(from, "POST", "/login", &headers, body).await
    }

    async fn token(&self, from: IpAddr, id: &str, secret: &str, scope: Option<&str>) -> Answer {
        let mut pairs = vec![
            ("grant_type", "client_credentials"),
            ("client_id", id),
            ("client_secret", secret),
        ];
        if let Some(s) = scope {
            pairs.push(("scope", s));
        }
        self.send(
            from,
            "POST",
            "/oauth/token",
            &[("content-type", "application/x-www-form-urlencoded")],
            form(&pairs),
        )
        .await
    }

    async fn verify(&self, from: IpAddr, number: &str) -> Answer {
        self.send(
            from,
            "POST",
            "/verify",
            &[("content-type", "application/x-www-form-urlencoded")],
            form(&[
                ("tenant", FUCHU),
                ("number", number),
                ("code", "ABCDEFGHJK"),
            ]),
        )
        .await
    }
}

/// The registry at a fixed instant (now), and the same registry later.
fn fixed(db: &TestDb) -> (Registry, chrono::DateTime<Utc>) {
    let t0 = Utc::now();
    (db.registry.at(Clock::Fixed(t0)), t0)
}

/// Access-log functions of 府中市, in order.
async fn log_functions(db: &TestDb) -> Vec<String> {
    let fuchu: machi_domain::ids::MunicipalityCode = FUCHU.parse().unwrap();
    let t = fuchu.clone();
    db.store
        .read(Some(&fuchu), move |tx| {
            machi::store::records::audit_entries(tx, &t, 0, 100_000)
        })
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.entry.function)
        .collect()
}

fn count(log: &[String], f: &str) -> usize {
    log.iter().filter(|x| *x == f).count()
}

/// A 429 as the person or the program gets it: a wait in seconds, and the
/// reason in both languages (the page in the language chosen).
fn assert_refused(a: &Answer, max_wait: u64) {
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{}", a.body);
    let wait: u64 = a.header("retry-after").parse().expect("Retry-After");
    assert!((1..=max_wait).contains(&wait), "Retry-After {wait}");
    assert!(
        a.body.contains("やり直してください") || a.body.contains("try again"),
        "{}",
        a.body
    );
}

async fn a_sign_in_flood_from_one_address_is_refused_there_only(db: TestDb) {
    let db = db.with_tenants().await;
    staff(&db, FUCHU, "clerk", Role::Clerk).await;
    let (registry, t0) = fixed(&db);
    let net = Net::new(&registry);
    let attacker = addr("203.0.113.7");
    // 40 failed sign-ins across 40 logins from one address.
    let mut statuses = vec![];
    for i in 0..40 {
        let a = net
            .sign_in(
                attacker,
                &[],
                FUCHU,
                &format!("user{i:02}"),
                "Wrong-password-1",
            )
            .await;
        if a.status == StatusCode::TOO_MANY_REQUESTS {
            assert_refused(&a, THROTTLE_WINDOW_SECONDS as u64);
        }
        statuses.push(a.status.as_u16());
    }
    let limit = Limits::default().sign_in.per_source;
    assert!(limit < 40);
    assert_eq!(
        statuses,
        [vec![401; limit], vec![429; 40 - limit]].concat(),
        "the address gets {limit} tries"
    );
    // Only the admitted attempts reached a password check and the log.
    let log = log_functions(&db).await;
    assert_eq!(count(&log, "login.failed"), limit);
    // The right password from that address is refused too ...
    let a = net.sign_in(attacker, &[], FUCHU, "clerk", PASSWORD).await;
    assert_refused(&a, THROTTLE_WINDOW_SECONDS as u64);
    assert_eq!(a.session_cookie(), None);
    // ... while the clerk at another address signs in.
    let a = net
        .sign_in(addr("198.51.100.20"), &[], FUCHU, "clerk", PASSWORD)
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    assert!(a.session_cookie().is_some());
    // A wrong tenant or an IPv6 neighbour in the same /64 is no way round.
    let a = net
        .sign_in(attacker, &[], "131016", "clerk", "Wrong-password-1")
        .await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    let v6 = Net::new(&registry);
    for i in 0..limit {
        let from = addr(&format!("2001:db8:7:1::{:x}", i + 1));
        let login = format!("nobody{i}");
        let a = v6
            .sign_in(from, &[], FUCHU, &login, "Wrong-password-1")
            .await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    }
    let a = v6
        .sign_in(addr("2001:db8:7:1:ffff::1"), &[], FUCHU, "clerk", PASSWORD)
        .await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    let a = v6
        .sign_in(addr("2001:db8:7:2::1"), &[], FUCHU, "clerk", PASSWORD)
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    // When the window has passed, the address may try again.
    let later = Net::new(&registry.at(Clock::Fixed(
        t0 + Duration::seconds(THROTTLE_WINDOW_SECONDS + 1),
    )));
    let a = later.sign_in(attacker, &[], FUCHU, "clerk", PASSWORD).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
}

async fn a_strangers_wrong_passwords_lock_only_the_stranger(db: TestDb) {
    let db = db.with_tenants().await;
    staff(&db, FUCHU, "clerk", Role::Clerk).await;
    let (registry, _) = fixed(&db);
    let net = Net::new(&registry);
    let stranger = addr("203.0.113.50");
    for _ in 0..5 {
        let a = net
            .sign_in(stranger, &[], FUCHU, "clerk", "Wrong-password-1")
            .await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    }
    // The account is locked for the stranger, even with the right password ...
    let a = net.sign_in(stranger, &[], FUCHU, "clerk", PASSWORD).await;
    assert_refused(&a, THROTTLE_WINDOW_SECONDS as u64);
    // ... and not for the clerk at the counter.
    let a = net
        .sign_in(addr("192.0.2.30"), &[], FUCHU, "clerk", PASSWORD)
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    let log = log_functions(&db).await;
    assert_eq!(
        (count(&log, "login.failed"), count(&log, "login.throttled")),
        (5, 1)
    );
    assert_eq!(count(&log, "login"), 1);
}

async fn the_global_ceiling_refuses_new_addresses_but_not_proven_ones(db: TestDb) {
    let db = db.with_tenants().await;
    staff(&db, FUCHU, "clerk", Role::Clerk).await;
    // The ceiling lowered from its default (each failure costs a password
    // check, ~0.1 s on a loaded test machine), the mechanism unchanged.
    let defaults = Limits::default();
    let ceiling = 15;
    let limits = Limits {
        sign_in: machi::service::throttle::DoorLimits {
            global: ceiling,
            ..defaults.sign_in
        },
        token: machi::service::throttle::DoorLimits {
            global: 5,
            ..defaults.token
        },
        ..defaults
    };
    let t0 = Utc::now();
    let registry = db.registry.clone().with_limits(limits).at(Clock::Fixed(t0));
    let net = Net::new(&registry);
    let office = addr("192.0.2.1");
    let a = net.sign_in(office, &[], FUCHU, "clerk", PASSWORD).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    // A flood from many addresses, one failure each.
    for i in 0..ceiling {
        let from = addr(&format!("10.{}.{}.1", i / 200, i % 200));
        let a = net
            .sign_in(from, &[], FUCHU, "nobody", "Wrong-password-1")
            .await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    // A new address is refused, even with the right password, for at most
    // the global window; the address that proved the password is not.
    let a = net
        .sign_in(addr("198.51.100.99"), &[], FUCHU, "clerk", PASSWORD)
        .await;
    assert_refused(&a, limits.sign_in.global_window as u64);
    let a = net.sign_in(office, &[], FUCHU, "clerk", PASSWORD).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    // The flood's password checks are all the log has of it.
    let log = log_functions(&db).await;
    assert_eq!(count(&log, "login.failed"), ceiling);
    let later = Net::new(&registry.at(Clock::Fixed(
        t0 + Duration::seconds(limits.sign_in.global_window + 1),
    )));
    let a = later
        .sign_in(addr("198.51.100.99"), &[], FUCHU, "clerk", PASSWORD)
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    // The token endpoint has its own ceiling, with the same exemption.
    let (id, secret) = client(&db, "test:residents:read").await;
    let system = addr("192.0.2.2");
    assert_eq!(
        net.token(system, &id, &secret, None).await.status,
        StatusCode::OK
    );
    for i in 0..5 {
        let from = addr(&format!("10.200.0.{i}"));
        let a = net
            .token(from, &format!("{FUCHU}-z-{i}"), "wrong", None)
            .await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    }
    let a = net.token(addr("198.51.100.98"), &id, &secret, None).await;
    assert_refused(&a, limits.token.global_window as u64);
    assert_eq!(
        net.token(system, &id, &secret, None).await.status,
        StatusCode::OK
    );
}

async fn client(db: &TestDb, scopes: &str) -> (String, String) {
    db.registry
        .create_client(
            &FUCHU.parse().unwrap(),
            "test",
            scopes,
            &Actor::system("setup"),
        )
        .await
        .unwrap()
}

async fn token_floods_are_refused_well_before_thirty(db: TestDb) {
    let db = db.with_tenants().await;
    let (id, secret) = client(&db, "test:residents:read").await;
    let (registry, _) = fixed(&db);
    let net = Net::new(&registry);
    // 30 wrong secrets for one client from one address: its lock.
    let attacker = addr("203.0.113.8");
    let statuses: Vec<u16> = {
        let mut v = vec![];
        for _ in 0..30 {
            let a = net.token(attacker, &id, "wrong-secret", None).await;
            if a.status == StatusCode::TOO_MANY_REQUESTS {
                assert_refused(&a, THROTTLE_WINDOW_SECONDS as u64);
                assert_eq!(a.json()["error"], "invalid_client");
                assert!(
                    a.json()["message_ja"]
                        .as_str()
                        .unwrap()
                        .contains("やり直して")
                );
            }
            v.push(a.status.as_u16());
        }
        v
    };
    assert_eq!(statuses, [vec![401; 5], vec![429; 25]].concat());
    // 30 wrong secrets over 30 made-up clients from another address: its
    // own budget.
    let other = addr("203.0.113.9");
    let mut statuses = vec![];
    for i in 0..30 {
        let a = net
            .token(other, &format!("{FUCHU}-x-{i:04}"), "wrong-secret", None)
            .await;
        statuses.push(a.status.as_u16());
    }
    let limit = Limits::default().token.per_source;
    assert!(limit <= 10);
    assert_eq!(statuses, [vec![401; limit], vec![429; 30 - limit]].concat());
    // The client itself, from its own address, is served.
    let a = net.token(addr("192.0.2.40"), &id, &secret, None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
}

async fn a_strangers_wrong_secrets_do_not_stop_the_real_client(db: TestDb) {
    let db = db.with_tenants().await;
    let (id, secret) = client(&db, "test:residents:read").await;
    let (registry, _) = fixed(&db);
    let net = Net::new(&registry);
    let stranger = addr("203.0.113.66");
    for _ in 0..5 {
        let a = net.token(stranger, &id, "not-the-secret", None).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
    }
    let a = net.token(stranger, &id, "not-the-secret", None).await;
    assert_refused(&a, THROTTLE_WINDOW_SECONDS as u64);
    // The real client, with its secret, gets a token that works.
    let a = net.token(addr("192.0.2.41"), &id, &secret, None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let bearer = format!("Bearer {}", a.json()["access_token"].as_str().unwrap());
    let a = net
        .send(
            addr("192.0.2.41"),
            "GET",
            &format!("/api/v1/tenants/{FUCHU}/search?name=x"),
            &[("authorization", &bearer)],
            Body::empty(),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
}

async fn ungranted_scopes_do_not_lock_a_client(db: TestDb) {
    let db = db.with_tenants().await;
    let (id, secret) = client(&db, "test:residents:read").await;
    let (registry, _) = fixed(&db);
    let net = Net::new(&registry);
    let home = addr("192.0.2.42");
    // More than the per-client and the per-address budgets.
    let n = Limits::default().token.per_source + 2;
    for _ in 0..n {
        let a = net
            .token(home, &id, &secret, Some("test:changes:write"))
            .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
        assert_eq!(a.json()["error"], "invalid_scope");
    }
    let a = net
        .token(home, &id, &secret, Some("test:residents:read"))
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    // A malformed scope is not a failure either.
    for _ in 0..6 {
        let a = net.token(home, &id, &secret, Some("nonsense")).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
    }
    let a = net.token(home, &id, &secret, None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    // A wrong secret from the same address still counts.
    for _ in 0..5 {
        let a = net.token(home, &id, "wrong", None).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    }
    let a = net.token(home, &id, &secret, None).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
}

async fn certificate_check_floods_are_refused(db: TestDb) {
    let db = db.with_tenants().await;
    let (registry, t0) = fixed(&db);
    let net = Net::new(&registry);
    let flood = addr("203.0.113.10");
    let limit = Limits::default().verify.per_source;
    let mut statuses = vec![];
    for i in 0..limit + 10 {
        let a = net.verify(flood, &format!("第{i}号")).await;
        if a.status == StatusCode::TOO_MANY_REQUESTS {
            assert_refused(&a, Limits::default().verify.source_window as u64);
            assert!(a.body.contains("<html"), "a page for people");
        }
        statuses.push(a.status.as_u16());
    }
    assert_eq!(statuses, [vec![200; limit], vec![429; 10]].concat());
    // Refused checks write nothing.
    let log = log_functions(&db).await;
    assert_eq!(count(&log, "certificate.verify"), limit);
    // Another address checks; the flood's address may again a window later.
    let a = net.verify(addr("198.51.100.10"), "第1号").await;
    assert_eq!(a.status, StatusCode::OK);
    let later = Net::new(&registry.at(Clock::Fixed(
        t0 + Duration::seconds(Limits::default().verify.source_window + 1),
    )));
    assert_eq!(later.verify(flood, "第1号").await.status, StatusCode::OK);
}

async fn forwarded_for_counts_only_from_a_trusted_proxy(db: TestDb) {
    let db = db.with_tenants().await;
    staff(&db, FUCHU, "clerk", Role::Clerk).await;
    let (registry, _) = fixed(&db);
    let limit = Limits::default().sign_in.per_source;
    // No proxy configured: a forged header changes nothing.
    let direct = Net::new(&registry);
    let from = addr("203.0.113.11");
    for i in 0..limit {
        let xff = format!("198.18.0.{i}");
        let login = format!("x{i}");
        let a = direct
            .sign_in(
                from,
                &[("x-forwarded-for", &xff)],
                FUCHU,
                &login,
                "Wrong-password-1",
            )
            .await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    }
    let a = direct
        .sign_in(
            from,
            &[("x-forwarded-for", "198.18.1.1")],
            FUCHU,
            "clerk",
            PASSWORD,
        )
        .await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    // Behind a trusted proxy: the address it appends is the client.
    let proxied = Net {
        router: api::app_with(
            AppState {
                registry: registry.clone(),
            },
            api::AppOptions {
                trusted_proxies: TrustedProxies::parse("10.9.0.0/16").unwrap(),
                ..Default::default()
            },
        ),
    };
    let proxy = addr("10.9.0.2");
    for i in 0..limit {
        let login = format!("y{i}");
        let a = proxied
            .sign_in(
                proxy,
                &[("x-forwarded-for", "1.2.3.4, 198.51.100.77")],
                FUCHU,
                &login,
                "Wrong-password-1",
            )
            .await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    }
    let a = proxied
        .sign_in(
            proxy,
            &[("x-forwarded-for", "198.51.100.77")],
            FUCHU,
            "clerk",
            PASSWORD,
        )
        .await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    // Another client through the same proxy is not affected.
    let a = proxied
        .sign_in(
            proxy,
            &[("x-forwarded-for", "198.51.100.78")],
            FUCHU,
            "clerk",
            PASSWORD,
        )
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    // The proxy's neighbours that are not proxies are believed no more
    // than anyone: 203.0.113.11 sending through a header is still refused.
    let a = proxied
        .sign_in(
            from,
            &[("x-forwarded-for", "198.51.100.79")],
            FUCHU,
            "clerk",
            PASSWORD,
        )
        .await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
}

async fn a_real_server_throttles_by_peer_address(db: TestDb) {
    let db = db.with_tenants().await;
    let (id, secret) = client(&db, "test:residents:read").await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = api::app(AppState {
        registry: db.registry.clone(),
    });
    let server = tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });
    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<axum::body::Bytes>>();
    let post = |client_id: String, secret: String, forwarded: String| {
        let http = http.clone();
        async move {
            let body = form(&[
                ("grant_type", "client_credentials"),
                ("client_id", &client_id),
                ("client_secret", &secret),
            ]);
            let req = Request::post(format!("http://127.0.0.1:{port}/oauth/token"))
                .header("content-type", "application/x-www-form-urlencoded")
                // No trusted proxy: ignored.
                .header("x-forwarded-for", forwarded)
                .body(http_body_util::Full::new(axum::body::Bytes::from(body)))
                .unwrap();
            let res = http.request(req).await.unwrap();
            (
                res.status(),
                res.headers().get("retry-after").cloned(),
                res.headers().get("referrer-policy").cloned(),
            )
        }
    };
    let limit = Limits::default().token.per_source;
    for i in 0..limit {
        let (s, _, referrer) = post(
            format!("{FUCHU}-y-{i}"),
            "wrong".into(),
            format!("198.51.100.{i}"),
        )
        .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        assert_eq!(referrer.unwrap(), "no-referrer");
    }
    // The loopback address has spent its budget, whatever the header says:
    // even the right secret waits.
    let (s, retry, _) = post(id.clone(), secret.clone(), "198.51.100.200".into()).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    assert!(retry.is_some());
    // It was counted against the peer's address, not against "unknown"
    // (where a caller without a socket, like this one, counts).
    let grant = db.registry.issue_token(&id, &secret, None).await;
    assert!(grant.is_ok(), "{grant:?}");
    server.abort();
}

fn assert_security_headers(what: &str, a: &Answer) {
    assert_eq!(a.header("referrer-policy"), "no-referrer", "{what}");
    assert_eq!(a.header("x-content-type-options"), "nosniff", "{what}");
    assert_eq!(a.header("cache-control"), "no-store", "{what}");
}

async fn every_response_has_the_security_headers(db: TestDb) {
    let db = db.with_tenants().await;
    staff(&db, FUCHU, "clerk", Role::Clerk).await;
    let (id, secret) = client(&db, "test:residents:read test:changes:write").await;
    // Its change commits at once (a second person approved that).
    crate::duties::allow_direct_commit(&db, FUCHU, &id).await;
    let net = Net::new(&db.registry);
    let me = addr("192.0.2.60");
    let a = net.token(me, &id, &secret, None).await;
    assert_security_headers("token", &a);
    let bearer = format!("Bearer {}", a.json()["access_token"].as_str().unwrap());
    let auth = [("authorization", bearer.as_str())];
    let a = net
        .send(
            me,
            "POST",
            &format!("/api/v1/tenants/{FUCHU}/changes"),
            &[auth[0], ("content-type", "application/json")],
            takahashi_family().to_string(),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    let a1 = machi_domain::ids::AddresseeNumber::from_serial(1)
        .unwrap()
        .to_string();
    let a = net
        .send(
            me,
            "GET",
            &format!("/api/v1/tenants/{FUCHU}/residents/{a1}"),
            &auth,
            Body::empty(),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.body.contains("髙橋"));
    assert_security_headers("resident JSON", &a);
    for (what, uri, headers) in [
        (
            "no credentials",
            format!("/api/v1/tenants/{FUCHU}/residents/{a1}"),
            &[][..],
        ),
        ("unknown path", "/api/v1/nothing".to_string(), &auth[..]),
        (
            "bad path",
            format!("/api/v1/tenants/{FUCHU}/residents/x"),
            &auth[..],
        ),
    ] {
        let a = net.send(me, "GET", &uri, headers, Body::empty()).await;
        assert!(a.status.is_client_error(), "{what}: {}", a.status);
        assert!(a.json()["code"].is_string(), "{what}: {}", a.body);
        assert_security_headers(what, &a);
    }
    let a = net
        .sign_in(me, &[], FUCHU, "clerk", "Wrong-password-1")
        .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_security_headers("failed sign-in page", &a);
    let a = net.sign_in(me, &[], FUCHU, "clerk", PASSWORD).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_security_headers("sign-in redirect", &a);
    let cookie = a.session_cookie().unwrap();
    let a = net
        .send(
            me,
            "GET",
            &format!("/ui/residents/{a1}"),
            &[("cookie", &cookie)],
            Body::empty(),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.body.contains("髙橋"));
    assert_security_headers("resident page", &a);
    let a = net
        .send(
            me,
            "GET",
            "/ui/residents/nope",
            &[("cookie", &cookie)],
            Body::empty(),
        )
        .await;
    assert!(a.status.is_client_error());
    assert_security_headers("UI error page", &a);
    let a = net.verify(me, "第1号").await;
    assert_security_headers("verify page", &a);
    // A refusal, too.
    let (registry, _) = fixed(&db);
    let limited = Net::new(&registry);
    for _ in 0..=Limits::default().verify.per_source {
        limited.verify(me, "第1号").await;
    }
    let a = limited.verify(me, "第1号").await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    assert_security_headers("429", &a);
    // The stylesheet and the health check may be cached; they are still
    // not to be sniffed nor to leak the page they were loaded from.
    for uri in ["/static/machi.css", "/healthz"] {
        let a = net.send(me, "GET", uri, &[], Body::empty()).await;
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(a.header("x-content-type-options"), "nosniff");
        assert_eq!(a.header("referrer-policy"), "no-referrer");
        assert_ne!(a.header("cache-control"), "no-store", "{uri}");
    }
}

/// Words of serde, axum and serde_urlencoded that must not reach a body.
const PARSER_WORDS: [&str; 8] = [
    "recursion",
    "line",
    "column",
    "expected",
    "Failed to",
    "invalid type",
    "deserialize",
    "`",
];

fn assert_no_parser_text(what: &str, a: &Answer) {
    for w in PARSER_WORDS {
        assert!(!a.body.contains(w), "{what}: {w:?} in {}", a.body);
    }
}

async fn unreadable_requests_are_answered_without_parser_text(db: TestDb) {
    let db = db.with_tenants().await;
    staff(&db, FUCHU, "clerk", Role::Clerk).await;
    let (id, secret) = client(&db, "test:residents:read test:changes:write").await;
    let net = Net::new(&db.registry);
    let me = addr("192.0.2.70");
    let a = net.token(me, &id, &secret, None).await;
    let bearer = format!("Bearer {}", a.json()["access_token"].as_str().unwrap());
    let changes = format!("/api/v1/tenants/{FUCHU}/changes");
    let json_headers = [
        ("authorization", bearer.as_str()),
        ("content-type", "application/json"),
    ];
    let deep = format!(
        "{{\"effective_date\": \"2024-04-01\", \"command\": {{\"type\": \"death\", \"x\": {}{}}}}}",
        "[".repeat(5000),
        "]".repeat(5000)
    );
    // The body does reach serde_json's recursion limit (and the parser's
    // own message says so).
    let parsed = serde_json::from_str::<machi_domain::change::ChangeRequest>(&deep);
    assert!(
        parsed.is_err_and(|e| e.to_string().contains("recursion limit")),
        "the nested body must trip the recursion limit"
    );
    for (what, body, status) in [
        ("deeply nested", deep, StatusCode::BAD_REQUEST),
        (
            "malformed",
            "{\"effective_date\": ".to_string(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "trailing text",
            format!("{} x", takahashi_family()),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let a = net.send(me, "POST", &changes, &json_headers, body).await;
        assert_eq!(a.status, status, "{what}: {}", a.body);
        let v = a.json();
        assert_eq!(v["code"], "invalid_json", "{what}: {v}");
        assert!(v["message_ja"].as_str().unwrap().contains("JSON"));
        assert_no_parser_text(what, &a);
        assert_security_headers(what, &a);
    }
    // A value of the wrong kind: the field named, nothing else.
    let mut wrong = takahashi_family();
    wrong["command"]["persons"][0]["name"] = json!(42);
    let a = net
        .send(me, "POST", &changes, &json_headers, wrong.to_string())
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.body);
    assert_no_parser_text("wrong kind", &a);
    assert!(a.json()["message_en"].is_string() && a.json()["message_ja"].is_string());
    // The parser knows the part at fault down to the command (the
    // command's own fields are read in a second pass that keeps no path).
    assert!(
        a.json()["field"]
            .as_str()
            .is_some_and(|f| f.starts_with("command")),
        "{}",
        a.body
    );
    assert_eq!(a.json()["code"], "invalid_json");
    // No content type; a query parameter of the wrong kind.
    let a = net
        .send(me, "POST", &changes, &[json_headers[0]], "{}")
        .await;
    assert_eq!(a.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(a.json()["code"], "invalid_json");
    assert_no_parser_text("no content type", &a);
    let a = net
        .send(
            me,
            "GET",
            &format!("/api/v1/tenants/{FUCHU}/search?name=x&limit=ten"),
            &[json_headers[0]],
            Body::empty(),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
    assert_eq!(a.json()["field"], "limit", "{}", a.body);
    assert_no_parser_text("query", &a);
    // A query the extractor itself refuses (serde: "duplicate field").
    let a = net
        .send(
            me,
            "GET",
            &format!("/api/v1/tenants/{FUCHU}/search?name=x&name=y"),
            &[json_headers[0]],
            Body::empty(),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
    assert_eq!(a.json()["code"], "invalid_query", "{}", a.body);
    assert_no_parser_text("duplicate query parameter", &a);
    // A page posted with the wrong content type gets a page, not
    // the extractor's text.
    let a = net.sign_in(me, &[], FUCHU, "clerk", PASSWORD).await;
    let cookie = a.session_cookie().unwrap();
    let a = net
        .send(
            me,
            "POST",
            "/ui/entry",
            &[("cookie", &cookie), ("content-type", "application/json")],
            "{}",
        )
        .await;
    assert_eq!(a.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(a.body.contains("<html"), "{}", a.body);
    assert_no_parser_text("UI form", &a);
    assert_security_headers("UI form", &a);
    let a = net
        .send(
            me,
            "POST",
            "/verify",
            &[("content-type", "text/plain")],
            "x",
        )
        .await;
    assert_eq!(a.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(a.body.contains("<html"), "{}", a.body);
    assert_no_parser_text("verify form", &a);
}
