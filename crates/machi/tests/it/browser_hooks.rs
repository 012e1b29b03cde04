//! The tenant administrator's webhook page in a real browser: a client
//! subscribed to a local receiver from the page (event types ticked by
//! name, the secret shown once), a delivery seen arriving, a failing
//! receiver's subscription paused after 72 hours (a fast clock) and its
//! alert on the staff & clients page, resumed from there, its secret
//! rotated; axe-core and the readability check on every screenshot.

use std::time::{Duration, Instant};

use fantoccini::Locator;
use machi::api::{self, AppState};
use machi::service::hooks::{HookPolicy, spawn_worker};
use machi::service::{Actor, Clock, Registry};
use machi_domain::dates::EraTable;

use crate::browser::Harness;
use crate::contract::takahashi_family;
use crate::duties::approved_client;
use crate::hooks::{Receiver, fast};
use crate::readable::visible_text;
use crate::support::{FUCHU, TestDb, code};

both_backends!(browser_hooks_admin_day);

const LOCAL: HookPolicy = HookPolicy {
    allow_insecure_local: true,
    allow_private: false,
    require_resolvable: false,
};

/// The page's visible text once `ok(text)` holds, reloading `path`.
async fn until(h: &Harness, path: &str, ok: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        h.go(path).await;
        let text = visible_text(&h.text().await);
        if ok(&text) || start.elapsed() > Duration::from_secs(40) {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn secret(h: &Harness) -> String {
    h.client
        .find(Locator::Id("new-secret"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn browser_hooks_admin_day(db: TestDb) {
    machi::demo::seed(&db.registry, 5).await.expect("demo data");
    machi::demo::seed_accounts(&db.registry)
        .await
        .expect("demo accounts");
    let (client_id, _) =
        approved_client(&db, "jidou", "jidou:events:read jidou:subscriptions:write").await;
    let registry = db.registry.clone().with_hook_policy(LOCAL);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = api::app(AppState { registry });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    // The worker on a fast clock: 72 hours of retries in seconds.
    let worker_registry = Registry::new(
        db.store.clone(),
        EraTable::standard(),
        Clock::scaled(50_000),
    )
    .with_hook_policy(LOCAL);
    let _w = spawn_worker(worker_registry, fast(10, 5_000)).unwrap();
    let ok = Receiver::start().await;
    let down = Receiver::start().await;
    down.otherwise(Some(503));
    let h = Harness::browser(db, base, None).await;

    h.login(FUCHU, "admin", "admin-Demo-2026").await;
    h.go("/ui/admin/subscriptions").await;
    h.wait_for("#subscribe-form").await;
    let text = visible_text(&h.text().await);
    assert!(text.contains("通知先はまだありません"), "{text}");
    // The demo's vendor client is offered (it holds subscriptions:write).
    assert!(text.contains(machi::demo::DEMO_CLIENT.0), "{text}");
    h.shot("hooks-01-empty").await;
    // Subscribe the client to move-ins: the type ticked by its name.
    h.select("client_id", &client_id).await;
    h.fill("url", &ok.url).await;
    let label = h
        .client
        .find(Locator::XPath(
            "//fieldset[@id='types']//label[normalize-space(.)='異動：国内転入']",
        ))
        .await
        .expect("a box named 異動：国内転入");
    label.click().await.unwrap();
    h.shot("hooks-02-form").await;
    h.click("#subscribe").await;
    h.wait_for("#new-secret").await;
    let first_secret = secret(&h).await;
    assert!(first_secret.starts_with("whsec_"), "{first_secret}");
    h.shot("hooks-03-secret-once").await;
    // POST-redirect-GET: a reload resends no form, shows no secret and
    // says how to get a new one.
    h.client.refresh().await.unwrap();
    h.wait_for("#subscribe-form").await;
    assert!(h.client.find(Locator::Id("new-secret")).await.is_err());
    let text = visible_text(&h.text().await);
    assert!(text.contains("一度だけ表示しました"), "{text}");
    assert!(!text.contains(&first_secret));
    assert_eq!(
        h.db.registry
            .subscriptions(&code(FUCHU), None)
            .await
            .unwrap()
            .len(),
        1,
        "the reload subscribed nobody again"
    );
    // A family moves in: the delivery arrives and the page says so.
    let req: machi_domain::change::ChangeRequest =
        serde_json::from_value(takahashi_family()).unwrap();
    let seq =
        h.db.registry
            .submit(&code(FUCHU), &req, &Actor::system("clerk"))
            .await
            .unwrap()
            .event_seq;
    let got = ok.wait_ok(1, Duration::from_secs(30)).await;
    assert_eq!(got.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![seq]);
    let text = until(&h, "/ui/admin/subscriptions/1", |t| {
        t.contains("受信されました")
    })
    .await;
    assert!(text.contains(&format!("第{seq}号（令和")), "{text}");
    assert!(text.contains("配信中（正常）"), "{text}");
    assert!(!text.contains(&first_secret), "the secret is shown once");
    h.shot("hooks-04-delivered").await;

    // A second subscription, to a receiver that is down, from the first
    // event on (every type).
    h.go("/ui/admin/subscriptions").await;
    h.select("client_id", &client_id).await;
    h.fill("url", &down.url).await;
    h.click("#from_start").await;
    h.click("#subscribe").await;
    h.wait_for("#new-secret").await;
    let down_secret = secret(&h).await;
    // Failing for more than 72 hours: paused, and the alert is on the
    // administrator's page.
    let text = until(&h, "/ui/admin/accounts", |t| t.contains("一時停止中")).await;
    assert!(text.contains("一時停止中"), "{text}");
    h.wait_for("#hook-alerts").await;
    h.shot("hooks-05-alert").await;
    h.click("#hook-alerts a[href='/ui/admin/subscriptions/2']")
        .await;
    h.wait_for("#resume").await;
    let text = visible_text(&h.text().await);
    assert!(
        text.contains("一時停止中：72時間以上届かなかったため自動で停止しました"),
        "{text}"
    );
    assert!(text.contains("受け手がエラーを返しました（HTTP 503）"));
    h.shot("hooks-06-paused").await;
    // The receiver is back: resume delivers everything, in order, from
    // the first event not yet delivered (the first).
    assert!(down.ok().is_empty());
    down.otherwise(None);
    h.click("#resume").await;
    h.wait_for(".flash").await;
    assert!(visible_text(&h.text().await).contains("第1号から再開しました"));
    let got = down.wait_ok(seq as usize, Duration::from_secs(40)).await;
    assert_eq!(
        got.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (1..=seq).collect::<Vec<_>>(),
        "every event, in order"
    );
    let text = until(&h, "/ui/admin/subscriptions/2", |t| {
        t.contains("配信中（正常）")
    })
    .await;
    assert!(text.contains("配信中（正常）"), "{text}");
    h.shot("hooks-07-resumed").await;
    // Rotate its secret: a new one, shown once.
    h.click("#rotate").await;
    h.wait_for("#new-secret").await;
    let rotated = secret(&h).await;
    assert!(rotated.starts_with("whsec_") && rotated != down_secret);
    h.shot("hooks-08-rotated").await;
}
