//! The HTTP API through the real router: each endpoint once, and bad input
//! on every endpoint answered with a 4xx, a JSON error, and nothing written.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use machi::api::{self, AppState};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::contract::{counts, takahashi_family};
use crate::support::{AKISHIMA, FUCHU, TestDb};
use machi::service::Actor;
use machi_domain::access::Role;

both_backends!(
    every_endpoint_answers,
    bad_input_is_a_4xx_json_error_and_writes_nothing,
    each_scope_opens_its_own_resource_only,
    errors_name_the_field_in_both_languages,
    the_api_never_returns_a_my_number,
    the_access_log_names_exactly_what_was_returned,
);

/// The router and the credentials a test calls it with.
pub struct Api {
    pub router: axum::Router,
    pub headers: Vec<(String, String)>,
}

impl Api {
    pub fn with_headers(&self, headers: Vec<(String, String)>) -> Api {
        Api {
            router: self.router.clone(),
            headers,
        }
    }
}

pub async fn call(app: &Api, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in &app.headers {
        req = req.header(k, v);
    }
    let body = match body {
        Some(v) => {
            req = req.header("content-type", "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    let res = app
        .router
        .clone()
        .oneshot(req.body(body).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let v = serde_json::from_slice(&bytes)
        .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, v)
}

/// Registers an API client of `tenant` with every scope and gets a token
/// through the real token endpoint.
pub async fn client_token(db: &TestDb, router: &axum::Router, tenant: &str) -> String {
    let scopes = "test:residents:read test:changes:read test:changes:write test:events:read test:subscriptions:write";
    let (id, secret) = db
        .registry
        .create_client(
            &tenant.parse().unwrap(),
            "test",
            scopes,
            &Actor::system("setup"),
        )
        .await
        .unwrap();
    // Its changes commit at once: the tenant allowed it (proposed by an
    // administrator, approved by a second person).
    crate::duties::allow_direct_commit(db, tenant, &id).await;
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
    assert_eq!(v["token_type"], "Bearer");
    assert!(v.get("refresh_token").is_none());
    format!("Bearer {}", v["access_token"].as_str().unwrap())
}

/// Signs in a platform operator; the headers of their session.
pub async fn platform_headers(db: &TestDb) -> Vec<(String, String)> {
    let pw = "platform-Operator-1";
    db.registry
        .create_account(
            None,
            "ops",
            "基盤 運用",
            Role::PlatformOperator,
            pw,
            &Actor::system("setup"),
        )
        .await
        .unwrap();
    let out = db.registry.login(None, "ops", pw, "T-OPS").await.unwrap();
    vec![
        ("cookie".into(), format!("machi_session={}", out.token)),
        ("x-csrf-token".into(), out.session.csrf),
    ]
}

async fn setup(db: TestDb) -> (TestDb, Api) {
    let db = db.with_tenants().await;
    let router = api::app(AppState {
        registry: db.registry.clone(),
    });
    let token = client_token(&db, &router, FUCHU).await;
    let app = Api {
        router,
        headers: vec![("authorization".into(), token)],
    };
    (db, app)
}

fn first() -> (String, String) {
    (
        machi_domain::ids::AddresseeNumber::from_serial(1)
            .unwrap()
            .to_string(),
        machi_domain::ids::HouseholdNumber::from_serial(1)
            .unwrap()
            .to_string(),
    )
}

async fn every_endpoint_answers(db: TestDb) {
    let (db, app) = setup(db).await;
    let ops = app.with_headers(platform_headers(&db).await);
    let (a1, h1) = first();
    let (s, v) = call(&app, "GET", "/healthz", None).await;
    assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("ok")));
    let (s, v) = call(&app, "GET", "/openapi.json", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(v["paths"]["/api/v1/tenants/{municipality_code}/changes"].is_object());
    let (s, v) = call(
        &ops,
        "POST",
        "/api/v1/tenants",
        Some(json!({"municipality_code": "131202", "name": "練馬区", "prefecture": "東京都"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = call(&ops, "GET", "/api/v1/tenants", None).await;
    assert_eq!(
        (s, v["tenants"].as_array().map(Vec::len)),
        (StatusCode::OK, Some(3))
    );
    let (s, v) = call(&ops, "GET", "/api/v1/tenants/131202", None).await;
    assert_eq!((s, v["name"].as_str()), (StatusCode::OK, Some("練馬区")));
    // A tenant's client sees its own tenant only.
    let (s, v) = call(&app, "GET", "/api/v1/tenants", None).await;
    assert_eq!(
        (s, v["tenants"].as_array().map(Vec::len)),
        (StatusCode::OK, Some(1))
    );
    // The platform operator reads no personal data.
    let (s, _) = call(
        &ops,
        "GET",
        &format!("/api/v1/tenants/{FUCHU}/search?name=x"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    let (s, v) = call(
        &app,
        "POST",
        &format!("/api/v1/tenants/{FUCHU}/changes"),
        Some(takahashi_family()),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["reason_label_ja"], "国内転入");
    assert_eq!(v["rows"][0]["birth_date"]["text"], "昭和64年1月7日");
    assert_eq!(v["rows"][1]["birth_date"]["wareki"], "平成元年1月8日");
    assert_eq!(v["rows"][1]["birth_date"]["iso"], "1989-01-08");
    let change_id = v["change_id"].as_i64().unwrap();

    let (s, v) = call(
        &app,
        "GET",
        &format!("/api/v1/tenants/{FUCHU}/residents/{a1}"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["record"]["name"], "髙橋　一郎");
    assert_eq!(v["record"]["postal_code"], "183-0056");
    assert_eq!(v["record"]["change"]["reason"], "move_in");
    assert_eq!(v["history"].as_array().map(Vec::len), Some(1));
    let (s, v) = call(
        &app,
        "GET",
        &format!("/api/v1/tenants/{FUCHU}/residents/{a1}?as_of=令和6年4月1日"),
        None,
    )
    .await;
    assert_eq!(
        (s, v["record"]["history_number"].as_i64()),
        (StatusCode::OK, Some(1)),
        "{v}"
    );
    let (s, v) = call(
        &app,
        "GET",
        &format!("/api/v1/tenants/{FUCHU}/residents/{a1}/history"),
        None,
    )
    .await;
    assert_eq!(
        (s, v["history"].as_array().map(Vec::len)),
        (StatusCode::OK, Some(1))
    );
    let (s, v) = call(
        &app,
        "GET",
        &format!("/api/v1/tenants/{FUCHU}/households/{h1}"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["members"].as_array().map(Vec::len), Some(3));
    assert_eq!(v["head_addressee_number"], a1.as_str());
    let (s, v) = call(
        &app,
        "GET",
        &format!("/api/v1/tenants/{FUCHU}/search?name=%E9%AB%98%E6%A9%8B&limit=2"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["results"].as_array().map(Vec::len), Some(2));
    let next = v["next"].as_str().unwrap().to_string();
    let (s, v) = call(
        &app,
        "GET",
        &format!("/api/v1/tenants/{FUCHU}/search?name=%E9%AB%98%E6%A9%8B&limit=2&after={next}"),
        None,
    )
    .await;
    assert_eq!(
        (s, v["results"].as_array().map(Vec::len)),
        (StatusCode::OK, Some(1))
    );
    let (s, v) = call(
        &app,
        "GET",
        &format!("/api/v1/tenants/{FUCHU}/changes"),
        None,
    )
    .await;
    assert_eq!(
        (s, v["changes"].as_array().map(Vec::len)),
        (StatusCode::OK, Some(1))
    );
    let (s, v) = call(
        &app,
        "GET",
        &format!("/api/v1/tenants/{FUCHU}/changes/{change_id}"),
        None,
    )
    .await;
    assert_eq!((s, v["reason"].as_str()), (StatusCode::OK, Some("move_in")));
    let (s, v) = call(
        &app,
        "GET",
        &format!("/api/v1/tenants/{FUCHU}/events?after=0"),
        None,
    )
    .await;
    assert_eq!((s, v["next_after"].as_i64()), (StatusCode::OK, Some(1)));
    // The other tenant sees none of it.
    let (s, _) = call(
        &app,
        "GET",
        &format!("/api/v1/tenants/{AKISHIMA}/residents/{a1}"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

async fn bad_input_is_a_4xx_json_error_and_writes_nothing(db: TestDb) {
    let (db, app) = setup(db).await;
    let (a1, h1) = first();
    call(
        &app,
        "POST",
        &format!("/api/v1/tenants/{FUCHU}/changes"),
        Some(takahashi_family()),
    )
    .await;
    let before = (
        counts(&db.store, FUCHU).await,
        counts(&db.store, AKISHIMA).await,
    );
    let tenants_before = db.registry.tenants().await.unwrap().len();
    let t = format!("/api/v1/tenants/{FUCHU}");
    let cases: Vec<(&str, String, Option<Value>, u16)> = vec![
        ("GET", "/api/v1/tenants/13206X".into(), None, 400),
        ("GET", "/api/v1/tenants/132064".into(), None, 400),
        ("GET", "/api/v1/tenants/131016".into(), None, 404),
        (
            "POST",
            "/api/v1/tenants".into(),
            Some(json!({"municipality_code": "132064", "name": "x", "prefecture": "y"})),
            400,
        ),
        (
            "POST",
            "/api/v1/tenants".into(),
            Some(json!({"municipality_code": "132063", "name": "府中市", "prefecture": "東京都"})),
            409,
        ),
        (
            "POST",
            "/api/v1/tenants".into(),
            Some(json!({"municipality_code": "131016", "name": "", "prefecture": "東京都"})),
            400,
        ),
        (
            "POST",
            "/api/v1/tenants".into(),
            Some(json!({"name": "x"})),
            422,
        ),
        ("GET", format!("{t}/residents/abc"), None, 400),
        (
            "GET",
            format!("{t}/residents/{a1}?as_of=令和99年99月1日"),
            None,
            400,
        ),
        (
            "GET",
            format!("{t}/residents/{a1}?recorded_as_of=yesterday"),
            None,
            400,
        ),
        ("GET", format!("{t}/residents/999999999"), None, 404),
        (
            "GET",
            format!("{t}/residents/{a1}/history?recorded_as_of=x"),
            None,
            400,
        ),
        ("GET", format!("{t}/residents/x1/history"), None, 400),
        (
            "GET",
            format!("{t}/households/{h1}?as_of=1800-01-01"),
            None,
            404,
        ),
        ("GET", format!("{t}/households/--"), None, 400),
        ("GET", format!("{t}/search"), None, 400),
        ("GET", format!("{t}/search?birth_date=notadate"), None, 400),
        ("GET", format!("{t}/search?name=x&after=zz"), None, 400),
        ("GET", format!("{t}/search?name=x&limit=ten"), None, 400),
        ("GET", format!("{t}/changes?after=nothex"), None, 400),
        ("GET", format!("{t}/changes/abc"), None, 400),
        ("GET", format!("{t}/changes/999"), None, 404),
        ("GET", format!("{t}/events?after=-x"), None, 400),
        ("GET", "/api/v1/tenants/131016/events".into(), None, 404),
        (
            "POST",
            format!("{t}/changes"),
            Some(json!({"effective_date": "2024-01-01"})),
            422,
        ),
        (
            "POST",
            format!("{t}/changes"),
            Some(json!({"effective_date": "2024-01-01", "command": {"type": "teleport"}})),
            422,
        ),
        (
            "POST",
            format!("{t}/changes"),
            Some(
                json!({"effective_date": "2024-01-01", "command": {"type": "death", "person": "x"}}),
            ),
            422,
        ),
        (
            "POST",
            format!("{t}/changes"),
            Some(
                json!({"effective_date": "2024-01-01", "command": {"type": "death", "person": a1}}),
            ),
            422,
        ),
        (
            "POST",
            format!("{t}/changes"),
            Some(
                json!({"effective_date": "2999-01-01", "command": {"type": "death", "person": "3"}}),
            ),
            422,
        ),
        (
            "POST",
            format!("{t}/changes"),
            Some(json!({"effective_date": "", "command": {"type": "cancel", "change_id": 77}})),
            422,
        ),
        (
            "POST",
            "/api/v1/tenants/131016/changes".into(),
            Some(takahashi_family()),
            404,
        ),
        ("GET", "/api/v1/nowhere".into(), None, 404),
    ];
    let ops = app.with_headers(platform_headers(&db).await);
    for (method, uri, body, want) in cases {
        let who = if method == "POST" && uri == "/api/v1/tenants" {
            &ops
        } else {
            &app
        };
        let (s, v) = call(who, method, &uri, body.clone()).await;
        assert_eq!(s.as_u16(), want, "{method} {uri} {body:?} → {v}");
        assert!(
            v["code"].is_string() && v["message_ja"].is_string() && v["message_en"].is_string(),
            "{uri}: {v}"
        );
    }
    // Not JSON at all, and the wrong content type.
    let auth = app.headers[0].1.clone();
    let res = app
        .router
        .clone()
        .oneshot(
            Request::post(format!("{t}/changes"))
                .header("authorization", &auth)
                .header("content-type", "application/json")
                .body(Body::from("{not json"))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let res = app
        .router
        .clone()
        .oneshot(
            Request::post(format!("{t}/changes"))
                .header("authorization", &auth)
                .body(Body::from("{}"))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(
        (
            counts(&db.store, FUCHU).await,
            counts(&db.store, AKISHIMA).await
        ),
        before
    );
    assert_eq!(db.registry.tenants().await.unwrap().len(), tenants_before);
}

async fn each_scope_opens_its_own_resource_only(db: TestDb) {
    let (db, app) = setup(db).await;
    let (a1, _) = first();
    call(
        &app,
        "POST",
        &format!("/api/v1/tenants/{FUCHU}/changes"),
        Some(takahashi_family()),
    )
    .await;
    let (id, secret) = db
        .registry
        .create_client(
            &FUCHU.parse().unwrap(),
            "kokuho",
            "kokuho:changes:read",
            &Actor::system("t"),
        )
        .await
        .unwrap();
    let grant = db.registry.issue_token(&id, &secret, None).await.unwrap();
    let changes_only = app.with_headers(vec![(
        "authorization".into(),
        format!("Bearer {}", grant.access_token),
    )]);
    let (s, _) = call(
        &changes_only,
        "GET",
        &format!("/api/v1/tenants/{FUCHU}/changes"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    for uri in [
        format!("/api/v1/tenants/{FUCHU}/residents/{a1}"),
        format!("/api/v1/tenants/{FUCHU}/search?name=x"),
        format!("/api/v1/tenants/{FUCHU}/events"),
    ] {
        let (s, _) = call(&changes_only, "GET", &uri, None).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{uri}");
    }
    let (s, _) = call(
        &changes_only,
        "POST",
        &format!("/api/v1/tenants/{FUCHU}/changes"),
        Some(takahashi_family()),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // A wrong secret: RFC 6749 invalid_client with WWW-Authenticate.
    let res = app
        .router
        .clone()
        .oneshot(
            Request::post("/oauth/token")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from(format!(
                    "grant_type=client_credentials&client_id={id}&client_secret=nope"
                )))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(res.headers().contains_key("www-authenticate"));
}

async fn errors_name_the_field_in_both_languages(db: TestDb) {
    let (_db, app) = setup(db).await;
    let mut fam = takahashi_family();
    fam["command"]["persons"][1]["name_kana"] = json!("たかはし　きょうこ");
    let (s, v) = call(
        &app,
        "POST",
        &format!("/api/v1/tenants/{FUCHU}/changes"),
        Some(fam),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["field"], "persons[1].name_kana");
    assert_eq!(v["code"], "invalid_furigana");
    assert!(
        v["message_ja"].as_str().unwrap().contains("カタカナ"),
        "{v}"
    );
}

async fn the_api_never_returns_a_my_number(db: TestDb) {
    let (_db, app) = setup(db).await;
    let (a1, _) = first();
    let mut family = takahashi_family();
    family["command"]["persons"][0]["my_number"] = json!(crate::contract::MY_NUMBER);
    let (s, v) = call(
        &app,
        "POST",
        &format!("/api/v1/tenants/{FUCHU}/changes"),
        Some(family),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let change_id = v["change_id"].as_i64().unwrap();
    let mut answers = vec![v];
    for uri in [
        format!("/api/v1/tenants/{FUCHU}/residents/{a1}"),
        format!("/api/v1/tenants/{FUCHU}/residents/{a1}/history"),
        format!("/api/v1/tenants/{FUCHU}/changes/{change_id}"),
        format!("/api/v1/tenants/{FUCHU}/changes"),
        format!("/api/v1/tenants/{FUCHU}/search?name=髙橋"),
    ] {
        let (s, v) = call(&app, "GET", &uri, None).await;
        assert_eq!(s, StatusCode::OK, "{uri}: {v}");
        answers.push(v);
    }
    for v in &answers {
        assert!(!v.to_string().contains(crate::contract::MY_NUMBER), "{v}");
    }
    assert_eq!(answers[1]["record"]["has_my_number"], true);
    assert_eq!(answers[1]["record"]["my_number_masked"], "************");
    // The request as submitted keeps its shape, the number masked.
    assert_eq!(
        answers[3]["request"]["command"]["persons"][0]["my_number"],
        "************"
    );
    assert!(answers[3]["request"]["command"]["persons"][1]["my_number"].is_null());
}

/// The last access-log entry of `function`: (target, detail).
async fn last_entry(db: &TestDb, function: &'static str) -> (String, Value) {
    let t = crate::support::code(FUCHU);
    let scope = t.clone();
    let (target, detail) = db
        .store
        .read(Some(&scope), move |tx| {
            let row = tx.query_one(
                "SELECT target, detail FROM audit_log WHERE tenant = $1 AND function = $2 \
                 ORDER BY seq DESC LIMIT 1",
                &[t.as_str().into(), function.into()],
            )?;
            Ok::<_, machi::store::StoreError>((row.text(0)?, row.text(1)?))
        })
        .await
        .unwrap();
    (target, serde_json::from_str(&detail).unwrap())
}

/// j1370, issue 14: every read's entry names exactly the persons and
/// changes the answer carried: a page of one change names that change and
/// its persons (not the one read ahead to find the next page), and a read
/// of the linkage feed names the persons of the events returned.
async fn the_access_log_names_exactly_what_was_returned(db: TestDb) {
    let (db, app) = setup(db).await;
    let setup_actor = Actor::system("setup");
    for body in [
        takahashi_family(),
        crate::contract::move_in(
            vec![crate::contract::person(
                "山田　花子",
                "ヤマダ　ハナコ",
                "1990-05-05",
                "female",
                "世帯主",
            )],
            "東京都府中市宮西町一丁目1番地",
        ),
    ] {
        let req: machi_domain::change::ChangeRequest = serde_json::from_value(body).unwrap();
        db.registry
            .submit(&crate::support::code(FUCHU), &req, &setup_actor)
            .await
            .unwrap();
    }
    let (s, v) = call(
        &app,
        "GET",
        &format!("/api/v1/tenants/{FUCHU}/changes?limit=1"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let listed = v["changes"].as_array().unwrap();
    assert_eq!(listed.len(), 1);
    assert!(v["next"].is_string(), "a next page exists: {v}");
    let id = listed[0]["change_id"].as_i64().unwrap();
    let persons: Vec<String> = listed[0]["persons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            p.as_str().map_or_else(
                || p["addressee_number"].as_str().unwrap().to_string(),
                str::to_string,
            )
        })
        .collect();
    let (target, detail) = last_entry(&db, "read.changes").await;
    assert_eq!(detail["change_ids"], serde_json::json!([id]), "{detail}");
    assert_eq!(
        target,
        persons.join(","),
        "the entry names the page's persons only"
    );
    // The feed: the target names every person of the events returned.
    let (s, v) = call(
        &app,
        "GET",
        &format!("/api/v1/tenants/{FUCHU}/events?after=0"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (target, _) = last_entry(&db, "read.events").await;
    assert!(!target.is_empty(), "a feed read has a target");
    let named: Vec<&str> = target.split(',').collect();
    assert_eq!(
        named.len(),
        4,
        "three family members and one more: {target}"
    );
    let text = v.to_string();
    for a in &named {
        assert!(
            text.contains(a),
            "{a} named in the log but not in the answer"
        );
    }
}
