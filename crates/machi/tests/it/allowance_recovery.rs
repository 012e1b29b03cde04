//! 児童手当: what follows an overpayment (過払) — the 返還通知書 for what
//! became a 返還請求 (issued once per form, printable on A4, reprinted,
//! every showing logged), a repayment recorded wrongly cancelled with a
//! reason (the overpayment owed again), and a 還付 (an overpayment undone
//! after it was withheld) paid once into the claimant's account by the
//! next regular payment file, held while the claim has no account — the
//! account set through the JSON API, with its checks. The registry runs
//! on both backends; the allowance system keeps its own SQLite file.

use machi_allowance::audit::{Action, Entry};
use machi_allowance::rules::{PayRule, Recovery};
use machi_allowance::store::{PaymentRun, Store, WorkKind};
use machi_allowance::web::{WebState, payment_lines};
use machi_allowance::worker::Worker;
use serde_json::{Value, json};

use crate::allowance::{
    CLERK, CLERK_PASSWORD, SUPERVISOR, Town, catch_up, csrf_of, d, enter_claim, family, found_on,
    get_as, no_redirects, nonce_of, post_as, serve, sign_in, staff, town, ym,
};
use crate::support::TestDb;

both_backends!(
    a_demanded_overpayment_gets_a_printable_notice_issued_once_and_reprinted,
    a_repayment_recorded_wrongly_is_cancelled_with_a_reason_and_is_owed_again,
    a_refund_is_paid_once_into_the_account_by_the_next_regular_file,
    a_notice_to_a_claimant_who_moved_away_goes_to_the_new_address,
    a_file_that_pays_one_claimant_demands_nothing_of_another,
    a_repayment_received_before_the_overpayment_was_found_is_refused,
    a_notice_for_a_claimant_under_a_support_measure_says_why_and_leaks_nothing,
    a_reprint_after_a_support_measure_began_shows_no_address,
    no_notice_is_issued_to_a_dead_claimant_not_even_at_the_counter,
    the_counter_notice_offered_before_midnight_is_issued_after_it,
);

/// A support measure (j440) for the claimant alone, from today.
async fn protect(o: &Overpaid, claimant: &str) {
    let today = chrono::Utc::now()
        .with_timezone(&machi::service::clock::jst())
        .date_naive();
    let mut req = crate::support_measures::request(today);
    req.requester.addressee_number = claimant.parse().unwrap();
    req.related_persons.clear();
    o.t.db
        .registry
        .support_register(
            &crate::support::code(crate::support::FUCHU),
            &req,
            &crate::support_measures::officer(),
        )
        .await
        .unwrap();
}

/// A claim with a 返還請求 of ¥25,000.
struct Overpaid {
    t: Town,
    dir: tempfile::TempDir,
    store: Store,
    w: Worker,
    web: WebState,
    id: i64,
    /// The registry's number of 二郎's move-out (to cancel it).
    moved: Value,
}

/// Family 架空 (一郎 2019, 二郎 2022) claims from 令和6年5月 with an
/// account; the August and October 2025 files pay June to September
/// (¥85,000); 二郎's move-out planned for 20 May 2025 reaches the system
/// only then: June to September overpaid by ¥45,000 (第9条第3項). The
/// December file withholds ¥20,000 (第13条: June's ¥15,000, July's
/// ¥5,000); July's remaining ¥5,000, August's and September's ¥10,000
/// become a 返還請求 (¥25,000). The pages' "today" is `today`.
async fn overpaid(db: TestDb, today: &str) -> Overpaid {
    let t = town(db).await;
    let a = t
        .submit(family(
            "2024-04-01",
            ("架空", "カクウ"),
            &[
                ("一郎", "イチロウ", "2019-05-10"),
                ("二郎", "ジロウ", "2022-06-01"),
            ],
        ))
        .await;
    let head = a.rows[0].record.addressee_number.to_string();
    let jiro = a.rows[3].record.addressee_number.to_string();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("allowance.sqlite")).unwrap();
    // The overpayment is found on 20 November 2025 (the store's clock,
    // as the pages' "today" is the test's): repayments are received after.
    store.set_now(Some(found_on("2025-11-20")));
    staff(&store).await;
    let w = t.worker(&store);
    catch_up(&t.db.registry, &w).await;
    let mut web = t.web(&store);
    web.today = Some(d(today));
    let id = enter_claim(
        &web,
        CLERK,
        &head,
        d("2024-04-10"),
        Some(d("2024-04-01")),
        false,
    )
    .await
    .unwrap();
    assert_eq!(approve(&store, "2025-08-01").await.unwrap().total, 45_000);
    assert_eq!(approve(&store, "2025-10-01").await.unwrap().total, 40_000);
    let moved = t
        .submit(
            json!({"effective_date": "2025-05-20", "command": {"type": "move_out", "persons": [jiro],
            "destination": {"address": "東京都昭島市田中町一丁目"}}}),
        )
        .await;
    catch_up(&t.db.registry, &w).await;
    assert_eq!(approve(&store, "2025-12-01").await.unwrap().total, 0);
    let demanded: i64 = store
        .recoveries(id)
        .await
        .unwrap()
        .iter()
        .filter(|r| r.state() == Recovery::Demanded)
        .map(|r| r.remaining())
        .sum();
    assert_eq!(demanded, 25_000);
    Overpaid {
        moved: json!(moved.change_id),
        t,
        dir,
        store,
        w,
        web,
        id,
    }
}

async fn approve(store: &Store, on: &str) -> Option<PaymentRun> {
    store
        .approve_payment(
            PayRule::Regular,
            d(on),
            Entry::new(SUPERVISOR, "", Action::PaymentApproved, String::new()),
        )
        .await
        .unwrap()
}

async fn text_of(http: &reqwest::Client, cookie: &str, url: String) -> (u16, String) {
    let r = get_as(http, cookie, url).await;
    (r.status().as_u16(), r.text().await.unwrap())
}

/// How many access-log entries have `action`.
async fn logged(store: &Store, action: Action) -> usize {
    store
        .log_rows(10_000, None)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.action == action.code())
        .count()
}

/// How many reads of a person's record the registry logged.
async fn registry_reads(db: &TestDb) -> usize {
    let t = crate::support::code(crate::support::FUCHU);
    let tenant = t.clone();
    db.store
        .read(Some(&tenant), move |tx| {
            machi::store::oversight::search_audit(
                tx,
                &t,
                &machi::store::oversight::AuditFilter {
                    function: Some("read.resident".into()),
                    ..Default::default()
                },
                100_000,
            )
        })
        .await
        .unwrap()
        .len()
}

/// The page from the form posting to `action` on.
fn form_at<'a>(html: &'a str, action: &str) -> &'a str {
    let at = html
        .find(&format!(r#"action="{action}""#))
        .unwrap_or_else(|| panic!("no form for {action}: {html}"));
    &html[at..]
}

/// The one-time key of the form posting to `action` on a page.
fn nonce_for(html: &str, action: &str) -> String {
    nonce_of(form_at(html, action))
}

/// The clerk signed in on a claim's page, with what its 返還通知書 form
/// sends besides its fields.
struct NoticeForm {
    http: reqwest::Client,
    clerk: String,
    base: String,
    /// `/claims/{id}/notices`.
    action: String,
    csrf: String,
    nonce: String,
}

/// Signs the clerk in on the server at `base` and opens claim `id`'s page.
async fn notice_form(base: &str, id: i64) -> NoticeForm {
    let http = no_redirects();
    let (_, clerk) = sign_in(&http, base, CLERK, CLERK_PASSWORD).await;
    let clerk = clerk.unwrap();
    let action = format!("/claims/{id}/notices");
    let (_, html) = text_of(&http, &clerk, format!("{base}/claims/{id}")).await;
    NoticeForm {
        csrf: csrf_of(&html),
        nonce: nonce_for(&html, &action),
        http,
        clerk,
        base: base.to_string(),
        action,
    }
}

impl NoticeForm {
    /// Sends the form with `fields` to the server it was opened on.
    async fn post(&self, fields: &[(&str, &str)]) -> reqwest::Response {
        self.post_at(&self.base, fields).await
    }

    /// Sends the form with `fields` to the server at `base` (the same
    /// database, another day).
    async fn post_at(&self, base: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        let mut all = vec![("csrf", self.csrf.as_str()), ("nonce", self.nonce.as_str())];
        all.extend_from_slice(fields);
        post_as(
            &self.http,
            &self.clerk,
            format!("{base}{}", self.action),
            &all,
        )
        .await
    }
}

/// A notice for the ¥25,000 claimed back: the form (due date prefilled
/// 30 days ahead in 和暦), bad dates and a stale form refused in both
/// languages with nothing written, then issued once however often the
/// form is sent; the printable notice names the claimant and the address
/// the registry has, the months and the event in words and 和暦, the
/// articles, the amount and the due date; the claim page shows it as
/// issued with a reprint link and no new form; each showing is logged;
/// a later repayment changes the amount and offers a new notice.
async fn a_demanded_overpayment_gets_a_printable_notice_issued_once_and_reprinted(db: TestDb) {
    let o = overpaid(db, "2025-12-20").await;
    let id = o.id;
    let base = serve(o.web.clone()).await;
    let http = no_redirects();
    let (_, clerk) = sign_in(&http, &base, CLERK, CLERK_PASSWORD).await;
    let clerk = clerk.unwrap();
    let (_, html) = text_of(&http, &clerk, format!("{base}/claims/{id}")).await;
    crate::readable::assert_readable(&html, "/claims/{id}");
    for words in [
        "返還通知書はまだ発行していません",
        r#"id="notice-submit""#,
        // 30 days after 令和7年12月20日.
        r#"name="due_on" value="令和8年1月19日""#,
        "返還を求める額 25,000円（次の支払で差し引ききれなかった過払）",
    ] {
        assert!(html.contains(words), "{words}: {html}");
    }
    let csrf = csrf_of(&html);
    let nonce = nonce_for(&html, &format!("/claims/{id}/notices"));
    let issue = |due: &'static str, nonce: String| {
        let (http, clerk, csrf) = (http.clone(), clerk.clone(), csrf.clone());
        let url = format!("{base}/claims/{id}/notices");
        async move {
            let r = post_as(
                &http,
                &clerk,
                url,
                &[("csrf", &csrf), ("nonce", &nonce), ("due_on", due)],
            )
            .await;
            let location = r
                .headers()
                .get("location")
                .map(|v| v.to_str().unwrap().to_string());
            (r.status().as_u16(), location, r.text().await.unwrap())
        }
    };
    for (due, words_ja, words_en) in [
        ("", "納付期限を入力してください", "Enter the due date"),
        ("令和8年2月30日", "納付期限：", "due date:"),
        // Today, tomorrow, nine days on: too soon for the claimant (at
        // least ten days after the issue date).
        (
            "令和7年12月20日",
            "10日以上後の日にしてください（令和7年12月30日以降）",
            "at least 10 days after the issue date",
        ),
        (
            "令和7年12月21日",
            "10日以上後の日にしてください（令和7年12月30日以降）",
            "at least 10 days after the issue date",
        ),
        (
            "令和7年12月29日",
            "10日以上後の日にしてください（令和7年12月30日以降）",
            "at least 10 days after the issue date",
        ),
        ("令和9年1月1日", "1年以内", "within a year"),
    ] {
        let (status, _, body) = issue(due, nonce.clone()).await;
        assert_eq!(status, 422, "{due}: {body}");
        assert!(
            body.contains(words_ja) && body.contains(words_en),
            "{due}: {body}"
        );
    }
    let (status, _, body) = issue("令和8年1月31日", "abc".into()).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("画面が古い"), "{body}");
    for claim in ["999", "abc"] {
        let r = post_as(
            &http,
            &clerk,
            format!("{base}/claims/{claim}/notices"),
            &[
                ("csrf", &csrf),
                ("nonce", &nonce),
                ("due_on", "令和8年1月31日"),
            ],
        )
        .await;
        assert_eq!(r.status().as_u16(), 404, "{claim}");
        let body = r.text().await.unwrap();
        assert!(
            body.contains("その受給者はいません") && body.contains("No such claim"),
            "{body}"
        );
    }
    assert!(o.store.notices(id).await.unwrap().is_empty());
    assert_eq!(logged(&o.store, Action::NoticeIssued).await, 0);

    let (status, location, body) = issue("令和8年1月31日", nonce.clone()).await;
    assert_eq!(status, 303, "{body}");
    let notices = o.store.notices(id).await.unwrap();
    assert_eq!(notices.len(), 1);
    let n = &notices[0];
    assert_eq!(
        (n.amount, n.issued_on, n.due_on, n.issued_by.as_str()),
        (25_000, d("2025-12-20"), d("2026-01-31"), CLERK)
    );
    assert_eq!(n.name, "架空　太郎");
    assert_eq!(n.address, "東京都府中市宮西町二丁目24番地");
    let url = format!("/claims/{id}/notices/{}", n.id);
    assert_eq!(location.as_deref(), Some(url.as_str()));
    // The same form again (a double click, a reload): the same notice,
    // answered from the stored notice: the registry is not read again.
    let (reads, addressed) = (
        registry_reads(&o.t.db).await,
        logged(&o.store, Action::PersonRead).await,
    );
    assert!(reads > 0, "the first issue read the registry");
    for _ in 0..2 {
        let (status, again, _) = issue("令和8年1月31日", nonce.clone()).await;
        assert_eq!((status, again.as_deref()), (303, Some(url.as_str())));
    }
    assert_eq!(registry_reads(&o.t.db).await, reads, "no registry read");
    assert_eq!(logged(&o.store, Action::PersonRead).await, addressed);
    assert_eq!(o.store.notices(id).await.unwrap().len(), 1);
    assert_eq!(logged(&o.store, Action::NoticeIssued).await, 1);

    // The notice, printable.
    let (status, notice) = text_of(&http, &clerk, format!("{base}{url}")).await;
    assert_eq!(status, 200, "{notice}");
    crate::readable::assert_readable(&notice, "/claims/{id}/notices/{notice}");
    for words in [
        "児童手当返還通知書",
        "通知番号 第1号",
        "令和7年12月20日",
        "東京都府中市宮西町二丁目24番地",
        "架空　太郎 様",
        r#"id="notice-amount">25,000円"#,
        // July: the ¥5,000 not withheld; August and September in full.
        r#"<td class="m">令和7年7月分</td><td class="n">20,000円</td><td class="n">10,000円</td><td class="n">5,000円</td>"#,
        "令和7年8月分",
        "令和7年9月分",
        "令和7年5月20日の異動：架空　二郎が受給者の監護を離れた",
        "児童手当法第9条第3項",
        "児童手当法第13条",
        "民法第703条",
        r#"<strong id="notice-due">令和8年1月31日</strong>"#,
        "size:A4",
        "@media print",
        r#"class="noprint""#,
    ] {
        assert!(notice.contains(words), "{words}: {notice}");
    }
    // June was withheld in full: not claimed back.
    assert!(!notice.contains("令和7年6月分"), "{notice}");
    assert_eq!(logged(&o.store, Action::NoticePrinted).await, 1);
    // The claim's page: issued, with a reprint; no second form.
    let (_, html) = text_of(&http, &clerk, format!("{base}/claims/{id}")).await;
    crate::readable::assert_readable(&html, "/claims/{id}");
    assert!(
        html.contains("返還通知 令和7年12月20日 発行済み")
            && html.contains(&format!(r#"href="{url}""#)),
        "{html}"
    );
    assert!(!html.contains(r#"id="notice-submit""#), "{html}");
    // A reprint: the same notice, logged again.
    let (status, reprint) = text_of(&http, &clerk, format!("{base}{url}")).await;
    assert_eq!(status, 200);
    assert_eq!(reprint, notice);
    assert_eq!(logged(&o.store, Action::NoticePrinted).await, 2);
    for bad in ["999", "abc"] {
        let (status, body) =
            text_of(&http, &clerk, format!("{base}/claims/{id}/notices/{bad}")).await;
        assert_eq!(status, 404, "{body}");
        assert!(body.contains("その返還通知書はありません"), "{body}");
        crate::readable::assert_readable(&body, "notice 404");
    }
    // Issuing and printing in the access log, in words.
    let (_, boss) = sign_in(&http, &base, SUPERVISOR, CLERK_PASSWORD).await;
    let (_, log) = text_of(&http, &boss.unwrap(), format!("{base}/access-log")).await;
    crate::readable::assert_readable(&log, "/access-log");
    for words in [
        "返還通知書の発行",
        "通知番号 1 25,000円 納付期限 令和8年1月31日",
        "返還通知書の表示・印刷",
        "返還通知書の宛先",
    ] {
        assert!(log.contains(words), "{words}: {log}");
    }
    // ¥5,000 repaid: the amount claimed back is now ¥20,000, which no
    // notice states: a new one is offered, the old one still listed.
    o.store
        .record_repayment(
            id,
            5_000,
            d("2025-12-19"),
            &"b".repeat(64),
            Entry::new(CLERK, "", Action::RepaymentRecorded, String::new()),
        )
        .await
        .unwrap()
        .unwrap();
    let (_, html) = text_of(&http, &clerk, format!("{base}/claims/{id}")).await;
    for words in [
        "返還通知 令和7年12月20日 発行済み",
        "前回の通知の後に返還を求める額が変わりました。返還を求める額 20,000円",
        r#"id="notice-submit""#,
    ] {
        assert!(html.contains(words), "{words}: {html}");
    }
}

/// A repayment recorded wrongly (返還金の収納の取消し): refused without a
/// reason or with one too long, for an unknown repayment, or with a stale
/// token, nothing changed; cancelled with a reason, logged; the ¥12,000
/// it settled is owed again (still a 返還請求), the page shows it struck
/// through with the reason; a second cancellation is refused; the full
/// amount can then be recorded.
async fn a_repayment_recorded_wrongly_is_cancelled_with_a_reason_and_is_owed_again(db: TestDb) {
    let o = overpaid(db, "2026-01-20").await;
    let id = o.id;
    let remaining = || async {
        o.store
            .recoveries(id)
            .await
            .unwrap()
            .iter()
            .map(|r| r.remaining())
            .sum::<i64>()
    };
    let r = o
        .store
        .record_repayment(
            id,
            12_000,
            d("2026-01-15"),
            &"a".repeat(64),
            Entry::new(CLERK, "", Action::RepaymentRecorded, String::new()),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(remaining().await, 13_000);
    let base = serve(o.web.clone()).await;
    let http = no_redirects();
    let (_, clerk) = sign_in(&http, &base, CLERK, CLERK_PASSWORD).await;
    let clerk = clerk.unwrap();
    let (_, html) = text_of(&http, &clerk, format!("{base}/claims/{id}")).await;
    crate::readable::assert_readable(&html, "/claims/{id}");
    assert!(
        html.contains(&format!(r#"id="cancel-repayment-{}""#, r.id)),
        "{html}"
    );
    let csrf = csrf_of(&html);
    let cancel = |rid: String, reason: String, csrf: String| {
        let (http, clerk) = (http.clone(), clerk.clone());
        let url = format!("{base}/claims/{id}/repayments/{rid}/cancel");
        async move {
            let r = post_as(&http, &clerk, url, &[("csrf", &csrf), ("reason", &reason)]).await;
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let rid = r.id.to_string();
    for (reason, status, words) in [
        (String::new(), 422, "取消しの理由を入力してください"),
        ("  ".to_string(), 422, "取消しの理由を入力してください"),
        ("誤".repeat(201), 422, "200文字以内"),
        ("二行\nの理由".to_string(), 422, "200文字以内"),
    ] {
        let (s, body) = cancel(rid.clone(), reason.clone(), csrf.clone()).await;
        assert_eq!(s, status, "{reason}: {body}");
        assert!(body.contains(words), "{reason}: {body}");
        crate::readable::assert_readable(&body, "cancel refused");
    }
    for bad in ["999", "abc"] {
        let (s, body) = cancel(bad.into(), "金額の誤り".into(), csrf.clone()).await;
        assert_eq!(s, 404, "{body}");
        assert!(body.contains("その収納の記録はありません"), "{body}");
    }
    let (s, _) = cancel(rid.clone(), "金額の誤り".into(), "stale".into()).await;
    assert_eq!(s, 403);
    assert!(o.store.repayments(id).await.unwrap()[0].cancelled.is_none());
    assert_eq!(remaining().await, 13_000);
    assert_eq!(logged(&o.store, Action::RepaymentCancelled).await, 0);

    let reason = "金額の誤り（1,200円を12,000円と入力）";
    let (s, body) = cancel(rid.clone(), reason.into(), csrf.clone()).await;
    assert_eq!(s, 303, "{body}");
    let cancelled = o.store.repayments(id).await.unwrap()[0]
        .cancelled
        .clone()
        .unwrap();
    assert_eq!(
        (cancelled.reason.as_str(), cancelled.by.as_str()),
        (reason, CLERK)
    );
    // What it settled is owed again, and still claimed back.
    assert_eq!(remaining().await, 25_000);
    let rec = o.store.recoveries(id).await.unwrap();
    assert_eq!(
        rec.iter()
            .map(|r| (r.month, r.remaining(), r.state()))
            .collect::<Vec<_>>(),
        vec![
            (ym(2025, 6), 0, Recovery::Settled),
            (ym(2025, 7), 5_000, Recovery::Demanded),
            (ym(2025, 8), 10_000, Recovery::Demanded),
            (ym(2025, 9), 10_000, Recovery::Demanded),
        ]
    );
    assert!(rec.iter().all(|r| r.repaid.is_empty()));
    let (s, body) = cancel(rid.clone(), reason.into(), csrf.clone()).await;
    assert_eq!(s, 409, "{body}");
    assert!(body.contains("すでに取り消されています"), "{body}");
    assert_eq!(logged(&o.store, Action::RepaymentCancelled).await, 1);
    let (_, html) = text_of(&http, &clerk, format!("{base}/claims/{id}")).await;
    crate::readable::assert_readable(&html, "/claims/{id}");
    for words in [
        "<del>12,000円</del>",
        "取消し済み：金額の誤り（1,200円を12,000円と入力）",
        "返還を求める額 25,000円",
        "残りの過払 25,000円",
    ] {
        assert!(html.contains(words), "{words}: {html}");
    }
    assert!(
        !html.contains(&format!(r#"id="cancel-repayment-{rid}""#)),
        "{html}"
    );
    let (_, boss) = sign_in(&http, &base, SUPERVISOR, CLERK_PASSWORD).await;
    let (_, log) = text_of(&http, &boss.unwrap(), format!("{base}/access-log")).await;
    assert!(
        log.contains("返還金の収納の取消し")
            && log.contains(
                "収納番号 1 12,000円 取消し（理由：金額の誤り（1,200円を12,000円と入力））"
            ),
        "{log}"
    );
    // The right amount can now be recorded in full.
    o.store
        .record_repayment(
            id,
            25_000,
            d("2026-01-20"),
            &"c".repeat(64),
            Entry::new(CLERK, "", Action::RepaymentRecorded, String::new()),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(remaining().await, 0);
}

/// A PUT of a JSON body with a session cookie.
async fn put_json(
    http: &reqwest::Client,
    cookie: &str,
    url: String,
    body: String,
) -> (u16, String) {
    let r = http
        .put(url)
        .header("cookie", cookie)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// 還付: the registry cancels 二郎's move-out, so the ¥20,000 withheld by
/// the December file is the claimant's. The claim has no account (as a
/// claim from before accounts were kept): the February file holds the
/// refund (口座未登録). The account is set through the API (bad fields
/// refused with typed errors in both languages, nothing written; the
/// number masked in every answer; logged). Then the February file pays
/// the refund as its own 還付 line into the account, approving it records
/// the refund against each overpayment and closes the work item, and the
/// April file does not pay it again.
async fn a_refund_is_paid_once_into_the_account_by_the_next_regular_file(db: TestDb) {
    let o = overpaid(db, "2026-01-20").await;
    let id = o.id;
    o.t.submit(json!({"effective_date": "", "command": {"type": "cancel", "change_id": o.moved}}))
        .await;
    catch_up(&o.t.db.registry, &o.w).await;
    let rec = o.store.recoveries(id).await.unwrap();
    assert_eq!(rec.iter().map(|r| r.refund_due()).sum::<i64>(), 20_000);
    let refund_items = |open: bool| {
        let store = o.store.clone();
        async move {
            store
                .work_items(open)
                .await
                .unwrap()
                .into_iter()
                .filter(|w| w.kind == WorkKind::RefundDue && w.claim_id == Some(id))
                .map(|w| (w.amount, w.done))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(refund_items(true).await, vec![(Some(20_000), false)]);
    // No account: everything of the claim is held, the refund too.
    rusqlite::Connection::open(o.dir.path().join("allowance.sqlite"))
        .unwrap()
        .execute("UPDATE claims SET bank_code = NULL WHERE id = ?1", [id])
        .unwrap();
    assert!(
        payment_lines(&o.store, ym(2026, 2))
            .await
            .unwrap()
            .is_empty()
    );
    let held = o
        .store
        .held(PayRule::Regular, d("2026-02-01"))
        .await
        .unwrap();
    assert!(
        held.iter()
            .any(|l| l.rule == PayRule::Refund && l.amount == 20_000),
        "{held:?}"
    );

    // The account through the API: bad input refused, nothing written.
    let base = serve(o.web.clone()).await;
    let http = no_redirects();
    let (_, clerk) = sign_in(&http, &base, CLERK, CLERK_PASSWORD).await;
    let clerk = clerk.unwrap();
    let (_, page) = text_of(&http, &clerk, format!("{base}/payments/2026-02")).await;
    crate::readable::assert_readable(&page, "/payments/{month}");
    assert!(
        page.contains("口座未登録のため支払を保留する受給者")
            && page.contains("還付（過払の取消し）：令和7年6月・令和7年7月"),
        "{page}"
    );
    let url = format!("{base}/api/claims/{id}/account");
    let good = json!({"bank_code": "０００５", "branch_code": "002", "account_kind": "ordinary",
        "account_number": "7654321", "account_holder": "かくう　たろう"});
    let with = |k: &str, v: &str| {
        let mut b = good.clone();
        b[k] = json!(v);
        b.to_string()
    };
    for (body, status, code, ja, en) in [
        (
            with("bank_code", "12"),
            422,
            "invalid_bank_code",
            "金融機関コード",
            "bank code",
        ),
        (
            with("branch_code", "12a"),
            422,
            "invalid_branch_code",
            "支店コード",
            "branch code",
        ),
        (
            with("account_kind", "savings"),
            422,
            "invalid_account_kind",
            "預金種目",
            "account type",
        ),
        (
            with("account_number", "12345"),
            422,
            "invalid_account_number",
            "口座番号",
            "account number",
        ),
        (
            with("account_holder", "Kakuu Taro"),
            422,
            "invalid_account_holder",
            "口座名義",
            "account holder",
        ),
        (
            "{}".to_string(),
            422,
            "missing_account",
            "振込先口座を入力してください",
            "Enter the bank account",
        ),
        ("not json".to_string(), 400, "invalid_body", "JSON", "JSON"),
        (
            r#"{"bank_code": 5}"#.to_string(),
            400,
            "invalid_body",
            "JSON",
            "JSON",
        ),
    ] {
        let (s, text) = put_json(&http, &clerk, url.clone(), body.clone()).await;
        assert_eq!(s, status, "{body}: {text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["code"], code, "{body}: {text}");
        assert!(
            v["message_ja"].as_str().unwrap().contains(ja)
                && v["message_en"].as_str().unwrap().contains(en),
            "{body}: {text}"
        );
        if code == "invalid_body" {
            // The Japanese message is Japanese: the parser's English words
            // are in a field of their own.
            let message_ja = v["message_ja"].as_str().unwrap();
            assert!(
                !message_ja.chars().any(|c| c.is_ascii_lowercase()),
                "{body}: {text}"
            );
            assert!(
                !v["message_en"].as_str().unwrap().contains("line "),
                "{body}: {text}"
            );
            assert!(
                v["detail"].as_str().is_some_and(|d| !d.is_empty()),
                "{text}"
            );
        }
    }
    let (s, text) = put_json(
        &http,
        &clerk,
        format!("{base}/api/claims/999/account"),
        good.to_string(),
    )
    .await;
    assert_eq!(s, 404, "{text}");
    let (s, _) = put_json(&http, "", url.clone(), good.to_string()).await;
    assert_eq!(s, 401);
    assert!(o.store.claim(id).await.unwrap().unwrap().account.is_none());
    assert_eq!(
        logged(&o.store, Action::BankAccountSet).await,
        1,
        "only the account entered with the claim"
    );
    let (s, text) = put_json(&http, &clerk, url.clone(), good.to_string()).await;
    assert_eq!(s, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        v["account"],
        json!({"bank_code": "0005", "branch_code": "002", "account_kind": "ordinary",
            "account_kind_ja": "普通", "account_number_masked": "***4321",
            "holder_kana": "カクウ　タロウ"}),
        "{text}"
    );
    assert!(v["filing"].is_null(), "{text}");
    assert!(!text.contains("7654321"), "{text}");
    let (_, text) = text_of(&http, &clerk, format!("{base}/api/claims/{id}")).await;
    assert!(
        text.contains("***4321") && !text.contains("7654321"),
        "{text}"
    );
    let (_, text) = text_of(&http, &clerk, format!("{base}/api/claims")).await;
    assert!(
        !text.contains("1234567") && !text.contains("7654321"),
        "{text}"
    );
    assert_eq!(logged(&o.store, Action::BankAccountSet).await, 2);
    let a = o.store.claim(id).await.unwrap().unwrap().account.unwrap();
    assert_eq!((a.bank.as_str(), a.number.as_str()), ("0005", "7654321"));

    // February: the refund is its own line, into the account, nothing
    // withheld from it.
    let feb = payment_lines(&o.store, ym(2026, 2)).await.unwrap();
    let refund: Vec<_> = feb.iter().filter(|l| l.rule == PayRule::Refund).collect();
    assert_eq!(refund.len(), 1, "{feb:?}");
    assert_eq!(
        (
            refund[0].claim_id,
            refund[0].amount,
            refund[0].offset,
            refund[0].months.clone(),
            refund[0].amounts.clone()
        ),
        (
            id,
            20_000,
            0,
            vec!["2025-06".to_string(), "2025-07".to_string()],
            vec![15_000, 5_000]
        )
    );
    assert_eq!(refund[0].account.as_ref().unwrap().number, "7654321");
    // The JSON API of the payment lines shows the account masked, to a
    // clerk as to anyone: the full number goes only into the file
    // (supervisor, logged).
    let (s, text) = text_of(&http, &clerk, format!("{base}/api/payments/2026-02")).await;
    assert_eq!(s, 200, "{text}");
    assert!(
        text.contains("***4321") && !text.contains("7654321"),
        "{text}"
    );
    let (_, page) = text_of(&http, &clerk, format!("{base}/payments/2026-02")).await;
    crate::readable::assert_readable(&page, "/payments/{month}");
    assert!(
        page.contains("還付（過払の取消し）：令和7年6月・令和7年7月")
            && page.contains("うち還付 20,000円"),
        "{page}"
    );
    let run = approve(&o.store, "2026-02-01").await.unwrap();
    assert_eq!(
        run.total,
        feb.iter().map(|l| l.amount - l.offset).sum::<i64>()
    );
    let rec = o.store.recoveries(id).await.unwrap();
    assert_eq!(
        rec.iter()
            .map(|r| (r.month, r.refunds.clone(), r.refund_due(), r.state()))
            .collect::<Vec<_>>(),
        vec![
            (ym(2025, 6), vec![(run.id, 15_000)], 0, Recovery::Cancelled),
            (ym(2025, 7), vec![(run.id, 5_000)], 0, Recovery::Cancelled),
            (ym(2025, 8), vec![], 0, Recovery::Cancelled),
            (ym(2025, 9), vec![], 0, Recovery::Cancelled),
        ]
    );
    assert!(refund_items(true).await.is_empty());
    assert_eq!(refund_items(false).await, vec![(Some(20_000), true)]);
    let lines = o.store.run_lines(run.id).await.unwrap();
    assert!(
        lines.iter().any(|l| l.rule == PayRule::Refund
            && l.amount == 20_000
            && l.account.as_ref().is_some_and(|a| a.number == "7654321")),
        "{lines:?}"
    );
    // Never twice: the next file has no refund, the same one nothing.
    let apr = payment_lines(&o.store, ym(2026, 4)).await.unwrap();
    assert!(
        !apr.is_empty() && apr.iter().all(|l| l.rule != PayRule::Refund),
        "{apr:?}"
    );
    assert!(approve(&o.store, "2026-02-01").await.is_none());
    let run2 = approve(&o.store, "2026-04-01").await.unwrap();
    assert!(
        o.store
            .run_lines(run2.id)
            .await
            .unwrap()
            .iter()
            .all(|l| l.rule != PayRule::Refund)
    );
    // The file and the claim, in words; the CSV names the basis.
    let (_, boss) = sign_in(&http, &base, SUPERVISOR, CLERK_PASSWORD).await;
    let boss = boss.unwrap();
    let (_, page) = text_of(&http, &boss, format!("{base}/payments/runs/{}", run.id)).await;
    crate::readable::assert_readable(&page, "/payments/runs/{id}");
    assert!(page.contains("うち還付 20,000円"), "{page}");
    let (_, csv) = text_of(&http, &boss, format!("{base}/payments/runs/{}.csv", run.id)).await;
    assert!(
        csv.contains("2025-06 2025-07,20000,還付（過払の取消し。児童手当法第13条・第8条第4項）,0,20000,0005,002,普通,7654321"),
        "{csv}"
    );
    let (_, html) = text_of(&http, &clerk, format!("{base}/claims/{id}")).await;
    crate::readable::assert_readable(&html, "/claims/{id}");
    assert!(
        html.contains(&format!("第{}号</a>で15,000円を還付済み", run.id)),
        "{html}"
    );
}

/// A claimant who moved out of the municipality with the whole household
/// (planned 31 July 2025,
/// reported after the October file): August and September were overpaid
/// (第8条第2項); no payment of theirs follows, so once the December file
/// is made (paying another family) the whole ¥40,000 is a 返還請求. The
/// notice goes to the 転出先 the registry recorded, and cites 第8条第2項.
async fn a_notice_to_a_claimant_who_moved_away_goes_to_the_new_address(db: TestDb) {
    let t = town(db).await;
    let (mut heads, mut members) = (Vec::new(), Vec::new());
    for (surname, kana, address) in [
        ("架空", "カクウ", None),
        ("見本", "ミホン", Some("東京都府中市宮西町三丁目3番地")),
    ] {
        let mut f = family(
            "2024-04-01",
            (surname, kana),
            &[
                ("一郎", "イチロウ", "2016-05-10"),
                ("二郎", "ジロウ", "2018-06-02"),
            ],
        );
        if let Some(a) = address {
            f["command"]["household"]["address"]["address"] = json!(a);
        }
        let rows = t.submit(f).await.rows;
        heads.push(rows[0].record.addressee_number.to_string());
        members.push(
            rows.iter()
                .map(|r| r.record.addressee_number.to_string())
                .collect::<Vec<_>>(),
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("allowance.sqlite")).unwrap();
    staff(&store).await;
    let w = t.worker(&store);
    catch_up(&t.db.registry, &w).await;
    let mut web = t.web(&store);
    web.today = Some(d("2025-12-10"));
    let mut ids = Vec::new();
    for h in &heads {
        ids.push(
            enter_claim(
                &web,
                CLERK,
                h,
                d("2024-04-10"),
                Some(d("2024-04-01")),
                false,
            )
            .await
            .unwrap(),
        );
    }
    assert_eq!(approve(&store, "2025-08-01").await.unwrap().total, 80_000);
    assert_eq!(approve(&store, "2025-10-01").await.unwrap().total, 80_000);
    t.submit(
        json!({"effective_date": "2025-07-31", "command": {"type": "move_out", "persons": members[0],
        "destination": {"address": "東京都昭島市田中町一丁目5番地"}}}),
    )
    .await;
    catch_up(&t.db.registry, &w).await;
    // December pays only the other family; 架空's ¥40,000 is claimed back.
    assert_eq!(approve(&store, "2025-12-01").await.unwrap().total, 40_000);
    let rec = store.recoveries(ids[0]).await.unwrap();
    assert_eq!(
        rec.iter()
            .map(|r| (r.month, r.remaining(), r.state()))
            .collect::<Vec<_>>(),
        vec![
            (ym(2025, 8), 20_000, Recovery::Demanded),
            (ym(2025, 9), 20_000, Recovery::Demanded),
        ]
    );
    let base = serve(web).await;
    let http = no_redirects();
    let (_, clerk) = sign_in(&http, &base, CLERK, CLERK_PASSWORD).await;
    let clerk = clerk.unwrap();
    let id = ids[0];
    let (_, html) = text_of(&http, &clerk, format!("{base}/claims/{id}")).await;
    let r = post_as(
        &http,
        &clerk,
        format!("{base}/claims/{id}/notices"),
        &[
            ("csrf", &csrf_of(&html)),
            ("nonce", &nonce_for(&html, &format!("/claims/{id}/notices"))),
            ("due_on", "2026-01-09"),
        ],
    )
    .await;
    assert_eq!(r.status().as_u16(), 303, "{}", r.text().await.unwrap());
    let n = &store.notices(id).await.unwrap()[0];
    assert_eq!(
        (
            n.amount,
            n.address.as_str(),
            n.postal_code.as_deref(),
            n.due_on
        ),
        (
            40_000,
            "東京都昭島市田中町一丁目5番地",
            None,
            d("2026-01-09")
        )
    );
    let (_, notice) = text_of(
        &http,
        &clerk,
        format!("{base}/claims/{id}/notices/{}", n.id),
    )
    .await;
    crate::readable::assert_readable(&notice, "/claims/{id}/notices/{notice}");
    for words in [
        "東京都昭島市田中町一丁目5番地",
        "架空　太郎 様",
        "40,000円",
        "令和7年7月31日の異動：受給資格の消滅",
        "児童手当法第8条第2項",
        "令和8年1月9日",
    ] {
        assert!(notice.contains(words), "{words}: {notice}");
    }
    assert!(!notice.contains("宮西町二丁目"), "{notice}");
}

/// A regular file turns into a 返還請求 only the overpayments of the
/// claims it paid (their payment came and could not absorb them, 第13条):
/// a second file of the same payment month that pays another claimant
/// leaves them to be withheld from the claim's own next payment.
async fn a_file_that_pays_one_claimant_demands_nothing_of_another(db: TestDb) {
    let t = town(db).await;
    let a = t
        .submit(family(
            "2024-04-01",
            ("架空", "カクウ"),
            &[
                ("一郎", "イチロウ", "2019-05-10"),
                ("二郎", "ジロウ", "2022-06-01"),
            ],
        ))
        .await;
    let head = a.rows[0].record.addressee_number.to_string();
    let jiro = a.rows[3].record.addressee_number.to_string();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("allowance.sqlite")).unwrap();
    staff(&store).await;
    let w = t.worker(&store);
    catch_up(&t.db.registry, &w).await;
    let mut web = t.web(&store);
    web.today = Some(d("2025-12-01"));
    let first = enter_claim(
        &web,
        CLERK,
        &head,
        d("2024-04-10"),
        Some(d("2024-04-01")),
        false,
    )
    .await
    .unwrap();
    approve(&store, "2025-08-01").await.unwrap();
    approve(&store, "2025-10-01").await.unwrap();
    approve(&store, "2025-12-01").await.unwrap();
    // 二郎's move-out in May reaches the system after the December file:
    // June to November were overpaid, to be withheld from February's.
    t.submit(
        json!({"effective_date": "2025-05-20", "command": {"type": "move_out", "persons": [jiro],
        "destination": {"address": "東京都昭島市田中町一丁目"}}}),
    )
    .await;
    // Another family moves in and claims; a second December file pays it.
    let b = t
        .submit(family(
            "2025-09-01",
            ("仮名", "カメイ"),
            &[("三郎", "サブロウ", "2021-03-03")],
        ))
        .await;
    catch_up(&t.db.registry, &w).await;
    let open_before: i64 = store
        .recoveries(first)
        .await
        .unwrap()
        .iter()
        .map(|r| r.remaining())
        .sum();
    assert!(open_before > 0, "the overpayment was found");
    let second = enter_claim(
        &web,
        CLERK,
        b.rows[0].record.addressee_number.as_ref(),
        d("2025-09-10"),
        Some(d("2025-09-01")),
        false,
    )
    .await
    .unwrap();
    let run = approve(&store, "2025-12-15").await.unwrap();
    assert!(run.total > 0, "the second file pays the new claimant");
    let rec = store.recoveries(first).await.unwrap();
    assert!(
        rec.iter().all(|r| r.state() != Recovery::Demanded),
        "a file that paid claim {second} only demanded claim {first}'s overpayment: {rec:?}"
    );
    assert_eq!(rec.iter().map(|r| r.remaining()).sum::<i64>(), open_before);
}

/// 返還金の収納 dated before the overpayment was found (20 November 2025
/// by the store's clock; the pages' "today" is 20 December 2025): refused
/// in Japanese and English, naming the day found, nothing written or
/// logged; the day it was found is accepted.
async fn a_repayment_received_before_the_overpayment_was_found_is_refused(db: TestDb) {
    let o = overpaid(db, "2025-12-20").await;
    let id = o.id;
    let base = serve(o.web.clone()).await;
    let http = no_redirects();
    let (_, clerk) = sign_in(&http, &base, CLERK, CLERK_PASSWORD).await;
    let clerk = clerk.unwrap();
    let (_, html) = text_of(&http, &clerk, format!("{base}/claims/{id}")).await;
    let csrf = csrf_of(&html);
    let nonce = nonce_for(&html, &format!("/claims/{id}/repayments"));
    let repay = |on: &'static str| {
        let (http, clerk, csrf, nonce) = (http.clone(), clerk.clone(), csrf.clone(), nonce.clone());
        let url = format!("{base}/claims/{id}/repayments");
        async move {
            let r = post_as(
                &http,
                &clerk,
                url,
                &[
                    ("csrf", &csrf),
                    ("nonce", &nonce),
                    ("amount", "5000"),
                    ("received_on", on),
                ],
            )
            .await;
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    for on in ["令和7年11月19日", "令和6年4月1日"] {
        let (status, body) = repay(on).await;
        assert_eq!(status, 422, "{on}: {body}");
        assert!(
            body.contains("受領日が、過払が判明した日（令和7年11月20日）より前です")
                && body.contains("before the overpayment was found (20 November 2025)"),
            "{on}: {body}"
        );
        crate::readable::assert_readable(&body, "repayment refused");
    }
    assert!(o.store.repayments(id).await.unwrap().is_empty());
    assert_eq!(logged(&o.store, Action::RepaymentRecorded).await, 0);
    // The store refuses it too, whoever calls it.
    let refused = o
        .store
        .record_repayment(
            id,
            5_000,
            d("2025-11-19"),
            &"d".repeat(64),
            Entry::new(CLERK, "", Action::RepaymentRecorded, String::new()),
        )
        .await
        .unwrap();
    assert_eq!(
        refused.unwrap_err(),
        machi_allowance::store::RepaymentRefused::BeforeFound {
            found_on: d("2025-11-20")
        }
    );
    let (status, body) = repay("令和7年11月20日").await;
    assert_eq!(status, 303, "{body}");
    assert_eq!(o.store.repayments(id).await.unwrap().len(), 1);
}

/// A claimant under a 支援措置 (j440): the registry withholds the address
/// from the allowance system, so no 返還通知書 is issued; the refusal says
/// why and what to do (hand it over at the counter, consult the
/// support-measure officer) in Japanese and English, and names no
/// address; nothing is stored or logged as issued.
async fn a_notice_for_a_claimant_under_a_support_measure_says_why_and_leaks_nothing(db: TestDb) {
    let o = overpaid(db, "2025-12-20").await;
    let id = o.id;
    let claimant = o.store.claim(id).await.unwrap().unwrap().claimant;
    protect(&o, &claimant).await;
    // Even a release for the 児童手当 system's client (its next read sees
    // the record, marked `support_measure`) gives no address to post to.
    o.t.db
        .registry
        .support_release(
            &crate::support::code(crate::support::FUCHU),
            &claimant.parse().unwrap(),
            machi_domain::support::SupportPurpose::View,
            &format!("client:{}", o.t.link.client_id),
            &crate::support_measures::officer(),
        )
        .await
        .unwrap();
    let base = serve(o.web.clone()).await;
    let form = notice_form(&base, id).await;
    let (http, clerk) = (&form.http, &form.clerk);
    let r = form.post(&[("due_on", "令和8年1月31日")]).await;
    assert_eq!(r.status().as_u16(), 409);
    let body = r.text().await.unwrap();
    crate::readable::assert_readable(&body, "notice refused: support measure");
    for words in [
        "支援措置",
        "住所をこのシステムに示しません",
        "返還通知書は発行していません",
        "窓口で手渡してください",
        "支援措置の担当者に相談",
        "support measure",
        "withholds the address",
        "hand the notice to the claimant at the counter",
        "support-measure officer",
    ] {
        assert!(body.contains(words), "{words}: {body}");
    }
    for address in ["宮西町", "府中市", "〒"] {
        assert!(!body.contains(address), "{address} leaked: {body}");
    }
    assert!(o.store.notices(id).await.unwrap().is_empty());
    assert_eq!(logged(&o.store, Action::NoticeIssued).await, 0);

    // The refusal offers the notice to hand over at the counter: issued
    // without asking the registry again, printed with 「窓口交付」 where
    // the address goes, logged as such.
    assert!(body.contains(r#"id="notice-counter""#), "{body}");
    let reads = registry_reads(&o.t.db).await;
    let counter_nonce = nonce_for(&body, &form.action);
    assert_eq!(counter_nonce, form.nonce, "the same form, one notice");
    let r = form
        .post(&[("due_on", "令和8年1月31日"), ("delivery", "counter")])
        .await;
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(registry_reads(&o.t.db).await, reads, "no registry read");
    let notices = o.store.notices(id).await.unwrap();
    assert_eq!(notices.len(), 1);
    assert_eq!(
        (
            notices[0].address.as_str(),
            notices[0].postal_code.as_deref()
        ),
        ("窓口交付", None)
    );
    let url = format!("/claims/{id}/notices/{}", notices[0].id);
    let (status, notice) = text_of(http, clerk, format!("{base}{url}")).await;
    assert_eq!(status, 200, "{notice}");
    crate::readable::assert_readable(&notice, "notice handed over at the counter");
    assert!(
        notice.contains(r#"<p id="notice-to">窓口交付<br>架空　太郎 様</p>"#),
        "{notice}"
    );
    for address in ["宮西町", "〒"] {
        assert!(!notice.contains(address), "{address} printed: {notice}");
    }
    // The claim's list of notices says it is handed over, not posted.
    let (_, claim) = text_of(http, clerk, format!("{base}/claims/{id}")).await;
    assert!(
        claim.contains("窓口で手渡し（郵送しない）"),
        "the list does not say it: {claim}"
    );
    assert_eq!(logged(&o.store, Action::NoticeIssued).await, 1);
    let (_, boss) = sign_in(http, &base, SUPERVISOR, CLERK_PASSWORD).await;
    let (_, log) = text_of(http, &boss.unwrap(), format!("{base}/access-log")).await;
    assert!(log.contains("納付期限 令和8年1月31日 窓口交付"), "{log}");
}

/// A notice issued to the claimant's address, reprinted after a support
/// measure began for them (j440): the reprint shows no address (「窓口交付」
/// instead) and tells the clerk not to post it.
async fn a_reprint_after_a_support_measure_began_shows_no_address(db: TestDb) {
    let o = overpaid(db, "2025-12-20").await;
    let id = o.id;
    let claimant = o.store.claim(id).await.unwrap().unwrap().claimant;
    let base = serve(o.web.clone()).await;
    let form = notice_form(&base, id).await;
    let (http, clerk) = (&form.http, &form.clerk);
    let r = form.post(&[("due_on", "令和8年1月31日")]).await;
    assert_eq!(r.status().as_u16(), 303);
    let notices = o.store.notices(id).await.unwrap();
    assert_eq!(notices.len(), 1);
    let url = format!("{base}/claims/{id}/notices/{}", notices[0].id);
    let (status, before) = text_of(http, clerk, url.clone()).await;
    assert_eq!(status, 200, "{before}");
    assert!(before.contains("宮西町"), "the address as issued: {before}");
    assert!(!before.contains("notice-withheld"), "{before}");

    protect(&o, &claimant).await;
    let (status, after) = text_of(http, clerk, url).await;
    assert_eq!(status, 200, "{after}");
    crate::readable::assert_readable(&after, "a reprint under a support measure");
    for address in ["宮西町", "〒"] {
        assert!(!after.contains(address), "{address} printed: {after}");
    }
    assert!(
        after.contains(r#"<p id="notice-to">窓口交付<br>"#),
        "{after}"
    );
    assert!(
        after.contains("郵送せず、窓口で手渡してください"),
        "{after}"
    );
    assert!(after.contains("hand it over at the counter"), "{after}");
}

/// The value of the hidden field `name` of the form posting to `action`.
fn field_for(html: &str, action: &str, name: &str) -> String {
    form_at(html, action)
        .split(&format!(r#"name="{name}" value=""#))
        .nth(1)
        .unwrap_or_else(|| panic!("no {name}: {html}"))
        .split('"')
        .next()
        .unwrap()
        .to_string()
}

/// The claimant died (the registry's 死亡, which ended the claim): no
/// 返還通知書 is issued to them, neither to post (refused without asking
/// the registry for an address) nor to hand over at the counter (a
/// hand-made form with `delivery=counter`, which reads nothing from the
/// registry): 409 in Japanese and English, nothing stored or logged.
async fn no_notice_is_issued_to_a_dead_claimant_not_even_at_the_counter(db: TestDb) {
    let o = overpaid(db, "2025-12-20").await;
    let id = o.id;
    let claimant = o.store.claim(id).await.unwrap().unwrap().claimant;
    o.t.submit(
        json!({"effective_date": "2025-12-05", "allow_headless_household": true,
        "command": {"type": "death", "person": claimant}}),
    )
    .await;
    catch_up(&o.t.db.registry, &o.w).await;
    let c = o.store.claim(id).await.unwrap().unwrap();
    assert_eq!(
        (c.ended_on, c.end_reason.as_deref()),
        (Some(d("2025-12-05")), Some("死亡")),
        "{c:?}"
    );
    let owed: i64 = o
        .store
        .recoveries(id)
        .await
        .unwrap()
        .iter()
        .filter(|r| r.state() == Recovery::Demanded)
        .map(|r| r.remaining())
        .sum();
    assert_eq!(owed, 25_000, "still claimed back");
    let base = serve(o.web.clone()).await;
    let form = notice_form(&base, id).await;
    let reads = registry_reads(&o.t.db).await;
    let person_reads = logged(&o.store, Action::PersonRead).await;
    for delivery in ["counter", ""] {
        let r = form
            .post(&[("due_on", "令和8年1月31日"), ("delivery", delivery)])
            .await;
        assert_eq!(r.status().as_u16(), 409, "delivery={delivery}");
        let body = r.text().await.unwrap();
        crate::readable::assert_readable(&body, "notice refused: the claimant died");
        for words in [
            "受給者は死亡しています",
            "窓口で手渡すものも発行できません",
            "返還通知書は発行していません",
            "The claimant has died",
            "handed over at the counter",
            "No notice was issued",
        ] {
            assert!(body.contains(words), "{words}: {body}");
        }
        assert!(!body.contains(r#"id="notice-counter""#), "{body}");
        assert!(o.store.notices(id).await.unwrap().is_empty(), "{delivery}");
        assert_eq!(logged(&o.store, Action::NoticeIssued).await, 0);
    }
    assert_eq!(registry_reads(&o.t.db).await, reads, "no registry read");
    assert_eq!(logged(&o.store, Action::PersonRead).await, person_reads);
}

/// Under a 支援措置 the refusal page offers the notice to hand over at the
/// counter with the due date it checked (exactly 10 days after 20
/// December 2025); the clerk presses the button after midnight: issued,
/// dated 21 December, the due date as chosen. The day checked is vouched
/// for by the page: a hand-made counter form without it, with it forged
/// or taken to another date, or pressed two midnights later is checked
/// against the day it is sent (refused, nothing issued).
async fn the_counter_notice_offered_before_midnight_is_issued_after_it(db: TestDb) {
    let o = overpaid(db, "2025-12-20").await;
    let id = o.id;
    let claimant = o.store.claim(id).await.unwrap().unwrap().claimant;
    protect(&o, &claimant).await;
    let base = serve(o.web.clone()).await;
    let form = notice_form(&base, id).await;
    let action = &form.action;
    let r = form.post(&[("due_on", "令和7年12月30日")]).await;
    assert_eq!(r.status().as_u16(), 409);
    let refusal = r.text().await.unwrap();
    crate::readable::assert_readable(&refusal, "notice refused: support measure");
    assert!(
        refusal.contains("納付期限 令和7年12月30日"),
        "the due date offered is shown: {refusal}"
    );
    assert!(refusal.contains("Due date: 30 December 2025"), "{refusal}");
    let due = field_for(&refusal, action, "due_on");
    assert_eq!(due, "令和7年12月30日");
    let checked = field_for(&refusal, action, "checked");
    // The same form refused for a due date a day later: its token vouches
    // for that date only.
    let r = form.post(&[("due_on", "令和7年12月31日")]).await;
    assert_eq!(r.status().as_u16(), 409);
    let later = field_for(&r.text().await.unwrap(), action, "checked");
    // The same pages, the same sessions, one and two midnights later.
    let on = |day: &str| {
        let mut web = o.web.clone();
        web.today = Some(d(day));
        serve(web)
    };
    let next_day = on("2025-12-21").await;
    let two_days_on = on("2025-12-22").await;
    let (day, tag) = checked.split_once('.').unwrap();
    let earlier = format!("{}.{tag}", day.parse::<i64>().unwrap() - 1);
    let flipped = format!(
        "{day}.{}{}",
        if tag.starts_with('0') { "1" } else { "0" },
        &tag[1..]
    );
    let send = |at: String, due: &'static str, checked: String| {
        let form = &form;
        async move {
            let r = form
                .post_at(
                    &at,
                    &[
                        ("due_on", due),
                        ("delivery", "counter"),
                        ("checked", &checked),
                    ],
                )
                .await;
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    for (at, due, token, why) in [
        (&next_day, "令和7年12月30日", String::new(), "no token"),
        (&next_day, "令和7年12月30日", earlier.clone(), "another day"),
        (&next_day, "令和7年12月30日", flipped.clone(), "forged"),
        (&next_day, "令和7年12月30日", later.clone(), "another date"),
        (
            &two_days_on,
            "令和7年12月30日",
            checked.clone(),
            "two midnights",
        ),
    ] {
        let (status, body) = send(at.clone(), due, token).await;
        assert_eq!(status, 422, "{why}: {body}");
        assert!(body.contains("10日以上後の日"), "{why}: {body}");
        assert!(body.contains("at least 10 days after"), "{why}: {body}");
        assert!(o.store.notices(id).await.unwrap().is_empty(), "{why}");
    }
    assert_eq!(logged(&o.store, Action::NoticeIssued).await, 0);
    // The button as the page made it, pressed after midnight.
    let (status, body) = send(next_day.clone(), "令和7年12月30日", checked.clone()).await;
    assert_eq!(status, 303, "{body}");
    let notices = o.store.notices(id).await.unwrap();
    assert_eq!(notices.len(), 1);
    assert_eq!(
        (
            notices[0].issued_on,
            notices[0].due_on,
            notices[0].address.as_str()
        ),
        (d("2025-12-21"), d("2025-12-30"), "窓口交付")
    );
    assert_eq!(logged(&o.store, Action::NoticeIssued).await, 1);
}
