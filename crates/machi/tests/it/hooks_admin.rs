//! Webhook subscriptions as the tenant administrator manages them
//! (`/ui/admin/subscriptions`), through the real router with a real
//! delivery worker and receiver: subscribe a client from the page, see the
//! delivery, the failure, pause, resume, replay, rotate, delete, each in the
//! access log; bad input (plain HTTP, private addresses by number or by
//! name, malformed or unknown event types, a client without the scope)
//! refused on the page and on the API in Japanese and English with nothing
//! changed; a name re-pointed inside the network after it was accepted is
//! not called; per-subscription delivery metrics that name no URL and no
//! person.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use machi::api::{self, AppState};
use machi::service::hooks::{HookPolicy, NewSubscription, WorkerHandle, spawn_worker};
use machi::service::{Actor, Clock, Registry};
use machi_domain::access::Role;
use machi_domain::change::ChangeRequest;
use machi_domain::dates::EraTable;
use machi_domain::ids::MunicipalityCode;
use serde_json::json;

use crate::api::{Api, call, client_token};
use crate::contract::takahashi_family;
use crate::duties::approved_client;
use crate::hooks::{Receiver, fast, local_host_name};
use crate::readable::visible_text;
use crate::support::{AKISHIMA, FUCHU, TestDb, code};
use crate::ui::{Session, staff};

both_backends!(
    the_admin_subscribes_sees_failures_pauses_resumes_replays_and_rotates,
    bad_callbacks_and_filters_are_refused_on_the_page_and_the_api,
    a_name_pointed_inside_after_acceptance_is_not_called,
    per_subscription_metrics_name_the_subscription_only,
    the_secret_is_shown_once_after_a_redirect_and_a_reload_resends_nothing,
    the_demo_has_a_vendor_client_to_subscribe,
    a_link_cannot_make_the_subscription_pages_say_something_was_done,
    a_second_resume_of_an_active_subscription_says_it_is_already_active,
    a_second_pause_says_it_is_already_stopped,
    the_secret_survives_a_head_request_and_a_page_that_failed,
);

const LOCAL: HookPolicy = HookPolicy {
    allow_insecure_local: true,
    allow_private: false,
    require_resolvable: false,
};

struct Admin {
    db: TestDb,
    registry: Registry,
    router: axum::Router,
    session: Session,
    /// A client of 府中市 holding `subscriptions:write` (approved).
    client_id: String,
}

async fn admin(db: TestDb) -> Admin {
    let db = db.with_tenants().await;
    let registry = db.registry.clone().with_hook_policy(LOCAL);
    let router = api::app(AppState {
        registry: registry.clone(),
    });
    staff(&db, FUCHU, "hookadmin", Role::TenantAdmin).await;
    let (client_id, _) =
        approved_client(&db, "jidou", "jidou:events:read jidou:subscriptions:write").await;
    let session = Session::login(&router, FUCHU, "hookadmin").await;
    Admin {
        db,
        registry,
        router,
        session,
        client_id,
    }
}

impl Admin {
    fn worker(&self) -> WorkerHandle {
        spawn_worker(self.registry.clone(), fast(10, 5_000)).unwrap()
    }

    async fn change(&self) -> i64 {
        let req: ChangeRequest = serde_json::from_value(takahashi_family()).unwrap();
        self.db
            .registry
            .submit(&code(FUCHU), &req, &Actor::system("clerk"))
            .await
            .unwrap()
            .event_seq
    }

    /// The session in English (the language cookie beside the session).
    fn english(&self) -> Session {
        Session {
            router: self.router.clone(),
            cookie: format!("{}; machi_lang=en", self.session.cookie),
            csrf: self.session.csrf.clone(),
        }
    }

    /// Posts a form as a browser does: a success is a 303 to the page
    /// (POST-redirect-GET), which is then read with the one-time secret
    /// cookie the answer set, if any; a refusal is the answer itself.
    /// Subscribes the client to `rx` on the page (subscription 1 in a
    /// fresh tenant), the redirect followed.
    async fn subscribe(&self, rx: &Receiver) {
        let (s, _, _) = self
            .post_follow(
                "/ui/admin/subscriptions",
                &[("client_id", &self.client_id), ("url", &rx.url)],
            )
            .await;
        assert_eq!(s, StatusCode::OK);
    }

    /// Subscribes the client to `rx` on the page, the redirect (303) not
    /// followed: its headers.
    async fn subscribe_unfollowed(&self, rx: &Receiver) -> Vec<(String, String)> {
        let (s, headers, _) = self
            .session
            .post(
                "/ui/admin/subscriptions",
                &[("client_id", &self.client_id), ("url", &rx.url)],
            )
            .await;
        assert_eq!(s, StatusCode::SEE_OTHER);
        headers
    }

    async fn post_follow(
        &self,
        uri: &str,
        pairs: &[(&str, &str)],
    ) -> (StatusCode, Vec<(String, String)>, String) {
        let (s, headers, page) = self.session.post(uri, pairs).await;
        if s != StatusCode::SEE_OTHER {
            return (s, headers, page);
        }
        let to = crate::ui::location(&headers);
        assert!(to.starts_with("/ui/admin/subscriptions"), "{to}");
        let cookie = match secret_cookie(&headers) {
            Some(c) => format!("{}; {c}", self.session.cookie),
            None => self.session.cookie.clone(),
        };
        let (s, headers, page) =
            crate::ui::send(&self.router, "GET", &to, Some(&cookie), None).await;
        if secret_cookie(&headers).is_none() && cookie.contains("machi_hook_once=") {
            // The page that showed the message clears its cookie.
            assert!(
                headers
                    .iter()
                    .any(|(k, v)| k == "set-cookie" && v.starts_with("machi_hook_once=;")),
                "{headers:?}"
            );
        }
        (s, headers, page)
    }

    /// The subscription page once `ok(text)` holds (real time, 30 s).
    async fn page_until(&self, id: i64, ok: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let (s, _, page) = self
                .session
                .get(&format!("/ui/admin/subscriptions/{id}"))
                .await;
            assert_eq!(s, StatusCode::OK, "{page}");
            let text = visible_text(&page);
            if ok(&text) || start.elapsed() > Duration::from_secs(30) {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }

    /// The access log's `webhook.*` functions, oldest first.
    async fn logged(&self) -> Vec<(String, String)> {
        let t = code(FUCHU);
        let tenant = t.clone();
        let mut v: Vec<(String, String)> = self
            .db
            .store
            .read(Some(&tenant), move |tx| {
                machi::store::oversight::search_audit(
                    tx,
                    &t,
                    &machi::store::oversight::AuditFilter {
                        function: Some("webhook.".into()),
                        ..Default::default()
                    },
                    1000,
                )
            })
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.entry.function, e.entry.operator))
            .collect();
        v.reverse();
        v
    }
}

/// The one-time cookie an answer sets (`name=value`: the message and,
/// after a subscription or a rotation, the sealed secret), if any.
fn secret_cookie(headers: &[(String, String)]) -> Option<String> {
    headers
        .iter()
        .filter(|(k, _)| k == "set-cookie")
        .filter_map(|(_, v)| v.split(';').next())
        .find(|c| c.starts_with("machi_hook_once=") && c.len() > "machi_hook_once=".len())
        .map(str::to_string)
}

/// The value of the form's hidden secret box, if shown.
fn secret_of(page: &str) -> Option<String> {
    let i = page.find("id=\"new-secret\">")? + "id=\"new-secret\">".len();
    Some(page[i..].split('<').next()?.to_string())
}

async fn the_admin_subscribes_sees_failures_pauses_resumes_replays_and_rotates(db: TestDb) {
    let a = admin(db).await;
    let rx = Receiver::start().await;
    let _w = a.worker();
    // The page: event types by name, never by code.
    let (s, _, page) = a.session.get("/ui/admin/subscriptions").await;
    assert_eq!(s, StatusCode::OK, "{page}");
    let text = visible_text(&page);
    assert!(text.contains("通知先はまだありません"), "{text}");
    assert!(text.contains("異動：国内転入") && text.contains("支援措置：本登録"));
    assert!(text.contains(&a.client_id));
    // Subscribe the client to move-ins, from the first event on.
    let first = a.change().await;
    let (s, _, page) = a
        .post_follow(
            "/ui/admin/subscriptions",
            &[
                ("client_id", &a.client_id),
                ("url", &rx.url),
                ("type", "jp.machi.registry.change.move_in.v1"),
                ("from_start", "1"),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{page}");
    crate::readable::assert_readable(&page, "subscribe");
    let secret = secret_of(&page).expect("the secret, shown once");
    assert!(secret.starts_with("whsec_"), "{secret}");
    let text = visible_text(&page);
    assert!(text.contains("通知先 1 を登録しました"), "{text}");
    // Shown once: the next look at the list does not show it.
    let (_, _, page) = a.session.get("/ui/admin/subscriptions").await;
    assert!(secret_of(&page).is_none() && !page.contains(&secret));
    let text = visible_text(&page);
    assert!(
        text.contains("異動：国内転入") && text.contains(&rx.url),
        "{text}"
    );
    // The delivery arrives, signed with that secret.
    let got = rx.wait_ok(1, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].seq, first);
    assert!(got[0].signature.contains(&crate::hooks::expected_signature(
        &secret,
        &got[0].id,
        got[0].timestamp,
        &got[0].body
    )));
    let text = a
        .page_until(1, |t| t.contains(&format!("第{first}号（")))
        .await;
    assert!(text.contains("配信中（正常）"), "{text}");
    assert!(text.contains("受信されました（HTTP 200）"), "{text}");
    assert!(text.contains("令和"), "{text}");
    // The receiver fails: the state says since when, the attempts say how.
    rx.otherwise(Some(503));
    let second = a.change().await;
    let text = a.page_until(1, |t| t.contains("失敗が続いています")).await;
    assert!(text.contains("1 回失敗"), "{text}");
    assert!(
        text.contains("受け手がエラーを返しました（HTTP 503）"),
        "{text}"
    );
    // The administrator's page shows it too, with the way to it.
    let (_, _, accounts) = a.session.get("/ui/admin/accounts").await;
    assert!(accounts.contains("id=\"hook-alerts\""), "{accounts}");
    assert!(accounts.contains("href=\"/ui/admin/subscriptions/1\""));
    // Pause by hand: nothing more is sent.
    let (s, _, page) = a
        .post_follow("/ui/admin/subscriptions/1/act", &[("action", "pause")])
        .await;
    assert_eq!(s, StatusCode::OK, "{page}");
    let text = visible_text(&page);
    assert!(
        text.contains("一時停止中：管理者または連携先が停止しました"),
        "{text}"
    );
    // The administrator's alert says it was paused by hand, not that the
    // receiver failed for 72 hours.
    let (_, _, accounts) = a.session.get("/ui/admin/accounts").await;
    let alert = visible_text(&accounts);
    assert!(
        alert.contains("管理者または連携先が停止しました") && !alert.contains("72時間"),
        "{alert}"
    );
    let sent = rx.all().len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.all().len(), sent, "paused: nothing sent");
    // Pausing again changes nothing and says so calmly.
    let (s, _, page) = a
        .post_follow("/ui/admin/subscriptions/1/act", &[("action", "pause")])
        .await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert!(visible_text(&page).contains("既に停止しています"));
    // Resume: from the first event not yet delivered.
    rx.otherwise(None);
    let (s, _, page) = a
        .post_follow("/ui/admin/subscriptions/1/act", &[("action", "resume")])
        .await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert!(
        visible_text(&page).contains(&format!("第{second}号から再開しました")),
        "{page}"
    );
    let got = rx.wait_ok(2, Duration::from_secs(30)).await;
    assert_eq!(
        got.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![first, second]
    );
    // Replay from the first event, chosen from the list.
    let (_, _, page) = a.session.get("/ui/admin/subscriptions/1").await;
    assert!(
        page.contains(&format!("<option value=\"{first}\"")),
        "{page}"
    );
    let (s, _, page) = a
        .post_follow(
            "/ui/admin/subscriptions/1/act",
            &[("action", "replay"), ("from", &first.to_string())],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{page}");
    let got = rx.wait_ok(4, Duration::from_secs(30)).await;
    assert_eq!(
        got.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![first, second, first, second]
    );
    assert_eq!(got[0].id, got[2].id, "the same webhook-id on a replay");
    // Bad replays: not a number, no such event yet. Nothing changed.
    for (from, says) in [("abc", "番号を数字で"), ("999999", "まだありません")] {
        let (s, _, page) = a
            .session
            .post(
                "/ui/admin/subscriptions/1/act",
                &[("action", "replay"), ("from", "1"), ("from_number", from)],
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{from}: {page}");
        assert!(visible_text(&page).contains(says), "{from}: {page}");
    }
    // Rotate: a new secret, shown once; the next delivery carries both.
    let (s, _, page) = a
        .post_follow("/ui/admin/subscriptions/1/act", &[("action", "rotate")])
        .await;
    assert_eq!(s, StatusCode::OK, "{page}");
    let rotated = secret_of(&page).expect("the new secret");
    assert_ne!(rotated, secret);
    let third = a.change().await;
    let got = rx.wait_ok(5, Duration::from_secs(30)).await;
    let last = got.last().unwrap();
    assert_eq!(last.seq, third);
    for k in [&rotated, &secret] {
        assert!(last.signature.contains(&crate::hooks::expected_signature(
            k,
            &last.id,
            last.timestamp,
            &last.body
        )));
    }
    // Another tenant's administrator does not see it.
    staff(&a.db, AKISHIMA, "otheradmin", Role::TenantAdmin).await;
    let other = Session::login(&a.router, AKISHIMA, "otheradmin").await;
    let (s, _, _) = other.get("/ui/admin/subscriptions/1").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, _) = other
        .post("/ui/admin/subscriptions/1/act", &[("action", "pause")])
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Delete: asks for the tick first.
    let (s, _, page) = a
        .post_follow("/ui/admin/subscriptions/1/act", &[("action", "delete")])
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{page}");
    let (s, _, page) = a
        .post_follow(
            "/ui/admin/subscriptions/1/act",
            &[("action", "delete"), ("confirm_delete", "1")],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert!(visible_text(&page).contains("通知先はまだありません"));
    // Every action in the access log, by the administrator.
    let logged = a.logged().await;
    let functions: Vec<&str> = logged.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(
        functions,
        vec![
            "webhook.subscribe",
            "webhook.pause",
            "webhook.resume",
            "webhook.replay",
            "webhook.rotate_secret",
            "webhook.unsubscribe"
        ]
    );
    assert!(logged.iter().all(|(_, op)| op == "hookadmin"), "{logged:?}");
    // The access log names them in words.
    staff(&a.db, FUCHU, "hooksuper", Role::Supervisor).await;
    let sup = Session::login(&a.router, FUCHU, "hooksuper").await;
    let (_, _, log) = sup.get("/ui/audit?function=webhook.").await;
    let text = visible_text(&log);
    assert!(
        text.contains("通知の一時停止") && text.contains("通知の再開"),
        "{text}"
    );
}

/// POST-redirect-GET on the 通知先 page: a subscription made, a secret
/// rotated, a pause are answered by a 303 to the page (no message in the
/// URL); the message and the new secret travel sealed in a one-time
/// cookie bound to the session and are shown by that page once (the page
/// clears it); a reload resends nothing and shows neither; the same
/// cookie sent again within its five minutes shows nothing either;
/// another session cannot open it.
async fn the_secret_is_shown_once_after_a_redirect_and_a_reload_resends_nothing(db: TestDb) {
    let a = admin(db).await;
    let rx = Receiver::start().await;
    let headers = a.subscribe_unfollowed(&rx).await;
    let to = crate::ui::location(&headers);
    assert_eq!(to, "/ui/admin/subscriptions");
    let cookie = secret_cookie(&headers).expect("the sealed secret");
    assert!(!cookie.contains("whsec_"), "sealed: {cookie}");
    // Another session (the same administrator elsewhere) cannot open it.
    let elsewhere = Session::login(&a.router, FUCHU, "hookadmin").await;
    let (_, _, page) = crate::ui::send(
        &a.router,
        "GET",
        &to,
        Some(&format!("{}; {cookie}", elsewhere.cookie)),
        None,
    )
    .await;
    assert!(secret_of(&page).is_none(), "bound to the session");
    assert!(!visible_text(&page).contains("登録しました"), "{page}");
    // This session: shown once, and the answer clears the cookie.
    let (s, headers, page) = crate::ui::send(
        &a.router,
        "GET",
        &to,
        Some(&format!("{}; {cookie}", a.session.cookie)),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{page}");
    crate::readable::assert_readable(&page, "subscribed");
    let secret = secret_of(&page).expect("shown");
    assert!(secret.starts_with("whsec_"), "{secret}");
    assert!(visible_text(&page).contains("通知先 1 を登録しました"));
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "set-cookie" && v.starts_with("machi_hook_once=;")),
        "{headers:?}"
    );
    // A reload (the cookie gone): no secret, no message, no second
    // subscription.
    let (s, _, page) = a.session.get(&to).await;
    assert_eq!(s, StatusCode::OK);
    assert!(secret_of(&page).is_none() && !page.contains(&secret));
    assert!(!visible_text(&page).contains("登録しました"), "{page}");
    // The same cookie again, within its five minutes (a reload before the
    // browser dropped it, a copy): shown once means once.
    let (s, _, page) = crate::ui::send(
        &a.router,
        "GET",
        &to,
        Some(&format!("{}; {cookie}", a.session.cookie)),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        secret_of(&page).is_none() && !page.contains(&secret),
        "{page}"
    );
    assert!(!visible_text(&page).contains("登録しました"), "{page}");
    assert_eq!(
        a.registry
            .subscriptions(&code(FUCHU), None)
            .await
            .unwrap()
            .len(),
        1
    );
    // Rotation: the same, on the subscription's page.
    let (s, headers, _) = a
        .session
        .post("/ui/admin/subscriptions/1/act", &[("action", "rotate")])
        .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let to = crate::ui::location(&headers);
    assert_eq!(to, "/ui/admin/subscriptions/1");
    let cookie = secret_cookie(&headers).expect("the sealed secret");
    // A cookie for subscription 1 shows nothing on another one's page.
    let (_, _, page) = crate::ui::send(
        &a.router,
        "GET",
        "/ui/admin/subscriptions/2",
        Some(&format!("{}; {cookie}", a.session.cookie)),
        None,
    )
    .await;
    assert!(secret_of(&page).is_none(), "{page}");
    let (_, _, page) = crate::ui::send(
        &a.router,
        "GET",
        &to,
        Some(&format!("{}; {cookie}", a.session.cookie)),
        None,
    )
    .await;
    let rotated = secret_of(&page).expect("the new secret");
    assert_ne!(rotated, secret);
    assert!(visible_text(&page).contains("署名の鍵を新しくしました"));
    for replay in [
        a.session.cookie.clone(),
        format!("{}; {cookie}", a.session.cookie),
    ] {
        let (_, _, page) = crate::ui::send(&a.router, "GET", &to, Some(&replay), None).await;
        assert!(secret_of(&page).is_none() && !page.contains(&rotated));
        assert!(!visible_text(&page).contains("署名の鍵を新しくしました"));
    }
    // A pause: a redirect too; the message once, a reload neither pauses
    // again nor says so again.
    let (s, headers, _) = a
        .session
        .post("/ui/admin/subscriptions/1/act", &[("action", "pause")])
        .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let to = crate::ui::location(&headers);
    let cookie = format!(
        "{}; {}",
        a.session.cookie,
        secret_cookie(&headers).expect("the message")
    );
    let (s, _, page) = crate::ui::send(&a.router, "GET", &to, Some(&cookie), None).await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert!(visible_text(&page).contains("一時停止しました"), "{page}");
    for _ in 0..2 {
        let (s, _, page) = crate::ui::send(&a.router, "GET", &to, Some(&cookie), None).await;
        assert_eq!(s, StatusCode::OK, "{page}");
        let text = visible_text(&page);
        assert!(!text.contains("一時停止しました"), "{text}");
        assert!(!text.contains("一時停止できません"), "{text}");
    }
    let functions: Vec<String> = a.logged().await.into_iter().map(|(f, _)| f).collect();
    assert_eq!(
        functions,
        vec![
            "webhook.subscribe",
            "webhook.rotate_secret",
            "webhook.pause"
        ]
    );
}

/// A success message comes only from the server: a link carrying the old
/// `?done=` query (stale, or forged) shows no message on either page, in
/// either language.
async fn a_link_cannot_make_the_subscription_pages_say_something_was_done(db: TestDb) {
    let a = admin(db).await;
    let rx = Receiver::start().await;
    a.subscribe(&rx).await;
    for (link, ja, en) in [
        (
            "/ui/admin/subscriptions?done=deleted&id=1",
            "削除しました",
            "deleted",
        ),
        (
            "/ui/admin/subscriptions?done=created&id=7",
            "登録しました",
            "created",
        ),
        (
            "/ui/admin/subscriptions/1?done=resumed&from=42",
            "再開しました",
            "Resumed",
        ),
        (
            "/ui/admin/subscriptions/1?done=rotated",
            "新しくしました",
            "New signing secret",
        ),
    ] {
        let (s, _, page) = a.session.get(link).await;
        assert_eq!(s, StatusCode::OK, "{link}: {page}");
        assert!(!visible_text(&page).contains(ja), "{link}: {page}");
        let (_, _, page) = a.english().get(link).await;
        assert!(!visible_text(&page).contains(en), "{link}: {page}");
    }
}

/// 再開 clicked twice (or by two administrators): the second finds the
/// subscription running and says so calmly on the page, no error page;
/// only the first resume is logged.
async fn a_second_resume_of_an_active_subscription_says_it_is_already_active(db: TestDb) {
    let a = admin(db).await;
    let rx = Receiver::start().await;
    a.subscribe(&rx).await;
    let (s, _, _) = a
        .post_follow("/ui/admin/subscriptions/1/act", &[("action", "pause")])
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, page) = a
        .post_follow("/ui/admin/subscriptions/1/act", &[("action", "resume")])
        .await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert!(visible_text(&page).contains("から再開しました"), "{page}");
    // The double click's second POST.
    let (s, headers, body) = a
        .session
        .post("/ui/admin/subscriptions/1/act", &[("action", "resume")])
        .await;
    assert_eq!(s, StatusCode::SEE_OTHER, "{body}");
    assert_eq!(crate::ui::location(&headers), "/ui/admin/subscriptions/1");
    let (s, _, page) = a
        .post_follow("/ui/admin/subscriptions/1/act", &[("action", "resume")])
        .await;
    assert_eq!(s, StatusCode::OK, "{page}");
    crate::readable::assert_readable(&page, "already active");
    let text = visible_text(&page);
    assert!(text.contains("既に再開されています"), "{text}");
    assert!(!text.contains("再開するものはありません"), "{text}");
    assert!(!page.contains("class=\"error\""), "{page}");
    let english = a.english();
    let (s, headers, _) = english
        .post("/ui/admin/subscriptions/1/act", &[("action", "resume")])
        .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let cookie = format!(
        "{}; {}",
        english.cookie,
        secret_cookie(&headers).expect("the message")
    );
    let (_, _, page) = crate::ui::send(
        &a.router,
        "GET",
        "/ui/admin/subscriptions/1",
        Some(&cookie),
        None,
    )
    .await;
    assert!(visible_text(&page).contains("Already active"), "{page}");
    let functions: Vec<String> = a.logged().await.into_iter().map(|(f, _)| f).collect();
    assert_eq!(
        functions
            .iter()
            .filter(|f| f.as_str() == "webhook.resume")
            .count(),
        1,
        "{functions:?}"
    );
}

/// Posts the subscribe form; expects a refusal whose message holds `ja`
/// (and, in English, `en`), and nothing created.
async fn refused_on_page(a: &Admin, pairs: &[(&str, &str)], ja: &str, en: &str) {
    for (session, says) in [(&a.session, ja), (&a.english(), en)] {
        let (s, _, page) = session.post("/ui/admin/subscriptions", pairs).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{pairs:?}: {page}");
        crate::readable::assert_readable(&page, "refused subscription");
        let i = page.find("id=\"error\">").expect("an error box") + 11;
        let msg = &page[i..i + page[i..].find('<').unwrap()];
        assert!(msg.contains(says), "{pairs:?}: {msg}");
        // What was typed stays on the form.
        if let Some((_, url)) = pairs.iter().find(|(k, _)| *k == "url") {
            assert!(page.contains(&format!("value=\"{url}\"")), "{page}");
        }
    }
}

async fn bad_callbacks_and_filters_are_refused_on_the_page_and_the_api(db: TestDb) {
    let a = admin(db).await;
    let client = a.client_id.clone();
    let name = local_host_name();
    let by_name = format!("https://{name}:8443/hook");
    let good = "https://example.org/hook";
    // (the form's fields, what the Japanese and the English error say)
    type Case<'a> = (Vec<(&'a str, &'a str)>, &'a str, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec![("url", "http://example.org/hook")],
            "HTTPS の URL を指定してください",
            "it must use HTTPS",
        ),
        (
            vec![("url", "https://10.1.2.3/hook")],
            "内部ネットワークのアドレスは許可されていません",
            "private or loopback address",
        ),
        (
            vec![("url", "https://169.254.169.254/latest")],
            "内部ネットワークのアドレスは許可されていません",
            "private or loopback address",
        ),
        (
            vec![("url", "https://[fd00::1]/hook")],
            "内部ネットワークのアドレスは許可されていません",
            "private or loopback address",
        ),
        (
            vec![("url", &by_name)],
            "内部ネットワークのアドレス",
            "resolves to a private",
        ),
        (
            vec![("url", good), ("type", "a*b")],
            "送る種類の指定が正しい形式ではありません",
            "are malformed",
        ),
        (
            vec![("url", good), ("type", "jp.machi.nothing.v1")],
            "存在しない種類",
            "does not exist",
        ),
        (vec![("url", "")], "送り先の URL", "enter the callback URL"),
    ];
    for (fields, ja, en) in &cases {
        let mut pairs: Vec<(&str, &str)> = vec![("client_id", &client)];
        pairs.extend(fields.iter().cloned());
        refused_on_page(&a, &pairs, ja, en).await;
    }
    // A client without the subscriptions scope, and one of no client at all.
    let (reader, _) = approved_client(&a.db, "reader", "reader:events:read").await;
    for who in [reader.as_str(), "132071-nobody"] {
        refused_on_page(
            &a,
            &[("client_id", who), ("url", good)],
            "通知を受けられません",
            "cannot receive webhooks",
        )
        .await;
    }
    // The page offers only the client that may subscribe.
    let (_, _, page) = a.session.get("/ui/admin/subscriptions").await;
    assert!(page.contains(&format!("<option value=\"{client}\"")));
    assert!(!page.contains(&format!("<option value=\"{reader}\"")));
    // The same on the API, by the client itself: 400, both languages.
    let token = client_token(&a.db, &a.router, FUCHU).await;
    let api = Api {
        router: a.router.clone(),
        headers: vec![("authorization".into(), token)],
    };
    let path = format!("/api/v1/tenants/{FUCHU}/subscriptions");
    for (body, field, code) in [
        (
            json!({"url": "http://example.org/hook"}),
            "url",
            "invalid_callback_url",
        ),
        (
            json!({"url": "https://169.254.169.254/latest"}),
            "url",
            "invalid_callback_url",
        ),
        (json!({"url": by_name}), "url", "callback_private_address"),
        (
            json!({"url": good, "types": ["a*b"]}),
            "types",
            "invalid_event_type",
        ),
        (
            json!({"url": good, "types": ["jp.machi.nothing.v1"]}),
            "types",
            "invalid_event_type",
        ),
    ] {
        let (s, v) = call(&api, "POST", &path, Some(body.clone())).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert_eq!(
            (v["field"].as_str(), v["code"].as_str()),
            (Some(field), Some(code)),
            "{v}"
        );
        assert!(!v["message_ja"].as_str().unwrap().is_empty());
        assert!(v["message_en"].as_str().unwrap().is_ascii());
    }
    // Nothing was created, nothing logged.
    assert!(
        a.registry
            .subscription_summaries(&code(FUCHU))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(a.logged().await.is_empty());
    // Allowed by configuration, the name is accepted.
    let open = a.db.registry.clone().with_hook_policy(HookPolicy {
        allow_private: true,
        ..LOCAL
    });
    open.create_subscription_for_client(
        &code(FUCHU),
        &client,
        NewSubscription {
            url: by_name,
            types: vec![],
            after: None,
        },
        &Actor::system("t"),
    )
    .await
    .expect("private addresses allowed");
}

async fn a_name_pointed_inside_after_acceptance_is_not_called(db: TestDb) {
    let a = admin(db).await;
    let rx = Receiver::start().await;
    // The name was accepted (say, it pointed outside then): made while
    // private addresses were allowed. Now it resolves to this machine.
    let port = rx.url.rsplit(':').next().unwrap().to_string();
    let url = format!("http://{}:{port}", local_host_name());
    let then = a.db.registry.clone().with_hook_policy(HookPolicy {
        allow_private: true,
        ..LOCAL
    });
    // Plain HTTP to a name is refused even so; HTTPS is what production has.
    assert!(
        then.create_subscription_for_client(
            &code(FUCHU),
            &a.client_id,
            NewSubscription {
                url: url.clone(),
                types: vec![],
                after: Some(0),
            },
            &Actor::system("t"),
        )
        .await
        .is_err()
    );
    let url = format!("https://{}:{port}/hook", local_host_name());
    then.create_subscription_for_client(
        &code(FUCHU),
        &a.client_id,
        NewSubscription {
            url,
            types: vec![],
            after: Some(0),
        },
        &Actor::system("t"),
    )
    .await
    .unwrap();
    a.change().await;
    // The worker runs under the strict policy: its resolver drops the
    // private address, nothing is sent, the attempt says why.
    let _w = a.worker();
    let text = a.page_until(1, |t| t.contains("送りませんでした")).await;
    assert!(
        text.contains("送りませんでした：送り先の名前が内部ネットワークのアドレスを指しています"),
        "{text}"
    );
    assert!(rx.all().is_empty(), "nothing reached the receiver");
}

/// A tenant of its own per backend (both backends run at once in this
/// process and share its counters): 八王子市 on SQLite, 立川市 on PostgreSQL.
fn own_tenant(db: &TestDb) -> MunicipalityCode {
    if db.url().is_some() {
        "132021".parse().unwrap()
    } else {
        "132012".parse().unwrap()
    }
}

async fn per_subscription_metrics_name_the_subscription_only(db: TestDb) {
    let tenant = own_tenant(&db);
    let t = tenant.as_str().to_string();
    db.registry
        .create_tenant(tenant.clone(), "試験市", "東京都")
        .await
        .unwrap();
    let registry = db.registry.clone().with_hook_policy(LOCAL);
    let router = api::app(AppState {
        registry: registry.clone(),
    });
    let (client_id, _) = db
        .registry
        .create_client(
            &tenant,
            "test",
            "test:subscriptions:write",
            &Actor::system("setup"),
        )
        .await
        .unwrap();
    let ok = Receiver::start().await;
    let bad = Receiver::start().await;
    bad.script(&[
        (503, None, Duration::ZERO),
        (429, None, Duration::ZERO),
        (410, None, Duration::ZERO),
    ]);
    let mut ids = Vec::new();
    for rx in [&ok, &bad] {
        let v = registry
            .create_subscription(
                &tenant,
                &client_id,
                NewSubscription {
                    url: rx.url.clone(),
                    types: vec![],
                    after: Some(0),
                },
                &Actor::system("t"),
            )
            .await
            .unwrap();
        ids.push(v.subscription_id.to_string());
    }
    let req: ChangeRequest = serde_json::from_value(takahashi_family()).unwrap();
    let mut persons = Vec::new();
    for _ in 0..2 {
        let out = db
            .registry
            .submit(&tenant, &req, &Actor::system("clerk"))
            .await
            .unwrap();
        persons.extend(out.persons().iter().map(|p| p.to_string()));
    }
    // The worker on a fast clock: the retry schedule in moments.
    let worker_registry = Registry::new(
        db.store.clone(),
        EraTable::standard(),
        Clock::scaled(50_000),
    )
    .with_hook_policy(LOCAL);
    let _w = spawn_worker(worker_registry, fast(10, 5_000)).unwrap();
    ok.wait_ok(2, Duration::from_secs(30)).await;
    let scrape = || async {
        let app = Api {
            router: router.clone(),
            headers: vec![],
        };
        let res = tower::ServiceExt::oneshot(
            app.router.clone(),
            axum::http::Request::get("/metrics")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
        let bytes = http_body_util::BodyExt::collect(res.into_body())
            .await
            .unwrap()
            .to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    };
    let attempts = "machi_webhook_subscription_attempts_total";
    let lag_count = "machi_webhook_subscription_delivery_lag_seconds_count";
    let of = |id: &str, outcome: &'static str| {
        vec![
            ("tenant", t.clone()),
            ("subscription", id.to_string()),
            ("outcome", outcome.to_string()),
        ]
    };
    let value = |m: &crate::operability::Exposition, name: &str, labels: Vec<(&str, String)>| {
        let l: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
        m.value(name, &l)
    };
    // Wait until the failing one is disabled (503, 429, then 410 Gone)
    // and every attempt is counted.
    let start = Instant::now();
    let (text, m) = loop {
        let text = scrape().await;
        let m = crate::operability::parse_exposition(&text);
        let done = value(&m, attempts, of(&ids[1], "gone")).is_some()
            && value(&m, attempts, of(&ids[0], "delivered")) == Some(2.0);
        if done || start.elapsed() > Duration::from_secs(40) {
            break (text, m);
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    };
    assert_eq!(
        value(&m, attempts, of(&ids[0], "delivered")),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        value(&m, attempts, of(&ids[0], "error_status")),
        None,
        "{text}"
    );
    let lag = |id: &str| vec![("tenant", t.clone()), ("subscription", id.to_string())];
    assert_eq!(value(&m, lag_count, lag(&ids[0])), Some(2.0), "{text}");
    assert_eq!(
        value(&m, attempts, of(&ids[1], "error_status")),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(&m, attempts, of(&ids[1], "throttled")),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(&m, attempts, of(&ids[1], "gone")),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(&m, attempts, of(&ids[1], "delivered")),
        None,
        "{text}"
    );
    assert_eq!(value(&m, lag_count, lag(&ids[1])), None, "{text}");
    // No URL, port, path, client or person in any name or label.
    let mut personal: Vec<String> = persons;
    for rx in [&ok, &bad] {
        personal.push(rx.url.clone());
        personal.push(rx.url.rsplit(':').next().unwrap().to_string());
    }
    personal.extend([client_id.clone(), "髙橋".into(), "宮西町".into()]);
    m.assert_no_personal_data(&personal, &text);
    // A deleted subscription's series go.
    registry
        .delete_subscription(&tenant, None, ids[1].parse().unwrap(), &Actor::system("t"))
        .await
        .unwrap();
    let m = crate::operability::parse_exposition(&scrape().await);
    assert_eq!(value(&m, attempts, of(&ids[1], "gone")), None);
    assert_eq!(value(&m, attempts, of(&ids[0], "delivered")), Some(2.0));
}

/// The demo's 通知先 page can be tried: its vendor client holds
/// `subscriptions:write`, is offered on the page and can be subscribed.
async fn the_demo_has_a_vendor_client_to_subscribe(db: TestDb) {
    let db = db.with_tenants().await;
    machi::demo::seed_accounts(&db.registry)
        .await
        .expect("demo accounts");
    let (demo_client, _, _) = machi::demo::DEMO_CLIENT;
    let offered = db.registry.subscribing_clients(&code(FUCHU)).await.unwrap();
    assert!(
        offered.iter().any(|c| c.client_id == demo_client),
        "{offered:?}"
    );
    let registry = db.registry.clone().with_hook_policy(LOCAL);
    let router = api::app(AppState {
        registry: registry.clone(),
    });
    staff(&db, FUCHU, "hookdemo", Role::TenantAdmin).await;
    let admin = Session::login(&router, FUCHU, "hookdemo").await;
    let (s, _, page) = admin.get("/ui/admin/subscriptions").await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert!(
        page.contains(&format!("<option value=\"{demo_client}\"")),
        "{page}"
    );
    let rx = Receiver::start().await;
    let (s, headers, _) = admin
        .post(
            "/ui/admin/subscriptions",
            &[("client_id", demo_client), ("url", &rx.url)],
        )
        .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert_eq!(crate::ui::location(&headers), "/ui/admin/subscriptions");
    assert!(secret_cookie(&headers).is_some(), "{headers:?}");
}

async fn a_second_pause_says_it_is_already_stopped(db: TestDb) {
    let a = admin(db).await;
    let rx = Receiver::start().await;
    a.subscribe(&rx).await;
    let (s, _, page) = a
        .post_follow("/ui/admin/subscriptions/1/act", &[("action", "pause")])
        .await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert!(visible_text(&page).contains("一時停止しました"), "{page}");
    // The double click's second POST: back to the page, calmly.
    let (s, headers, body) = a
        .session
        .post("/ui/admin/subscriptions/1/act", &[("action", "pause")])
        .await;
    assert_eq!(s, StatusCode::SEE_OTHER, "{body}");
    assert_eq!(crate::ui::location(&headers), "/ui/admin/subscriptions/1");
    let (s, _, page) = a
        .post_follow("/ui/admin/subscriptions/1/act", &[("action", "pause")])
        .await;
    assert_eq!(s, StatusCode::OK, "{page}");
    crate::readable::assert_readable(&page, "already stopped");
    let text = visible_text(&page);
    assert!(text.contains("既に停止しています"), "{text}");
    // No error message (the state itself is shown as a warning: paused).
    assert!(!page.contains("role=\"alert\""), "{page}");
    let v = a.registry.subscriptions(&code(FUCHU), None).await.unwrap();
    assert_eq!(v[0].status, "paused");
}

/// Whether an answer clears the one-time cookie.
fn clears_once(headers: &[(String, String)]) -> bool {
    headers
        .iter()
        .any(|(k, v)| k == "set-cookie" && v.starts_with("machi_hook_once=;"))
}

/// The one-time key is used by the page that shows it, not before: a
/// HEAD request (a link checker, a browser's prefetch; no body, so
/// nothing shown) neither uses nor clears it, and neither does a page
/// that failed (the subscription's attempts unreadable for a moment):
/// the next GET shows the secret, once.
async fn the_secret_survives_a_head_request_and_a_page_that_failed(db: TestDb) {
    let a = admin(db).await;
    let rx = Receiver::start().await;
    let headers = a.subscribe_unfollowed(&rx).await;
    let to = crate::ui::location(&headers);
    let cookie = format!(
        "{}; {}",
        a.session.cookie,
        secret_cookie(&headers).expect("the sealed secret")
    );
    for _ in 0..2 {
        let (s, headers, _) = crate::ui::send(&a.router, "HEAD", &to, Some(&cookie), None).await;
        assert_eq!(s, StatusCode::OK);
        assert!(!clears_once(&headers), "{headers:?}");
    }
    let (s, headers, page) = crate::ui::send(&a.router, "GET", &to, Some(&cookie), None).await;
    assert_eq!(s, StatusCode::OK, "{page}");
    let secret = secret_of(&page).expect("shown after the HEAD requests");
    assert!(secret.starts_with("whsec_"), "{secret}");
    assert!(visible_text(&page).contains("通知先 1 を登録しました"));
    assert!(clears_once(&headers), "{headers:?}");
    let (_, _, page) = crate::ui::send(&a.router, "GET", &to, Some(&cookie), None).await;
    assert!(
        secret_of(&page).is_none() && !page.contains(&secret),
        "once"
    );

    // A rotation whose page fails: the attempts cannot be read.
    let (s, headers, _) = a
        .session
        .post("/ui/admin/subscriptions/1/act", &[("action", "rotate")])
        .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let to = crate::ui::location(&headers);
    assert_eq!(to, "/ui/admin/subscriptions/1");
    let cookie = format!(
        "{}; {}",
        a.session.cookie,
        secret_cookie(&headers).expect("the sealed secret")
    );
    a.db.raw("ALTER TABLE webhook_attempts RENAME TO webhook_attempts_away")
        .await;
    let (s, headers, page) = crate::ui::send(&a.router, "GET", &to, Some(&cookie), None).await;
    a.db.raw("ALTER TABLE webhook_attempts_away RENAME TO webhook_attempts")
        .await;
    assert_ne!(s, StatusCode::OK, "the page failed: {page}");
    assert!(secret_of(&page).is_none(), "{page}");
    assert!(!clears_once(&headers), "{headers:?}");
    let (s, _, _) = crate::ui::send(&a.router, "HEAD", &to, Some(&cookie), None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, headers, page) = crate::ui::send(&a.router, "GET", &to, Some(&cookie), None).await;
    assert_eq!(s, StatusCode::OK, "{page}");
    crate::readable::assert_readable(&page, "rotated, after a failed page");
    let rotated = secret_of(&page).expect("shown on the page that worked");
    assert_ne!(rotated, secret);
    assert!(visible_text(&page).contains("署名の鍵を新しくしました"));
    assert!(clears_once(&headers), "{headers:?}");
    let (_, _, page) = crate::ui::send(&a.router, "GET", &to, Some(&cookie), None).await;
    assert!(
        secret_of(&page).is_none() && !page.contains(&rotated),
        "once"
    );
    assert!(!visible_text(&page).contains("署名の鍵を新しくしました"));
}
