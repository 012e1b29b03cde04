//! The 児童手当 clerk's pages in a real browser: the registry (demo data)
//! and the allowance system on ports of their own, a family moving in
//! through the registry, the work item on the clerk's list, the claim
//! entered from it (with a bad date first), the claim's months with their
//! rules, and the payment page; a late move-out making the paid month
//! overpaid, and a repayment recorded on the claim's page (a bad amount
//! first); a child living in another town added by hand on the claim's
//! page (a birth date in the future first) and an end by hand refused
//! without its reason; a 返還通知書 issued for what the next file could
//! not withhold, printable; axe-core on every screenshot.

use std::sync::Arc;

use fantoccini::Locator;
use machi_allowance::store::Store;
use machi_allowance::web::{WebState, app};
use machi_allowance::worker::{LinkConfig, RegistryClient, Worker};
use serde_json::json;

use crate::allowance::{CLERK, CLERK_PASSWORD, SUPERVISOR, catch_up, staff};
use crate::browser::Harness;
use crate::contract::person;
use crate::duties::approved_client;
use crate::support::{FUCHU, TestDb, code};

both_backends!(browser_allowance_clerk_day);

async fn browser_allowance_clerk_day(db: TestDb) {
    let h = Harness::start(db).await;
    let (client_id, client_secret) =
        approved_client(&h.db, "jidou", "jidou:events:read jidou:residents:read").await;
    let link = LinkConfig {
        base_url: h.base.clone(),
        tenant: FUCHU.into(),
        client_id,
        client_secret,
    };
    let req: machi_domain::change::ChangeRequest = serde_json::from_value(json!({
        "effective_date": "2025-04-01", "filed_on": "2025-04-01", "input_place": "市民課窓口", "input_terminal": "T-01",
        "command": {"type": "move_in", "previous_address": "東京都調布市小島町二丁目",
            "persons": [
                person("見本　太郎", "ミホン　タロウ", "1988-04-10", "male", "世帯主"),
                person("見本　花子", "ミホン　ハナコ", "1990-09-20", "female", "妻"),
                person("見本　一郎", "ミホン　イチロウ", "2016-07-07", "male", "子"),
                person("見本　二郎", "ミホン　ジロウ", "2019-02-02", "male", "子"),
                person("見本　三郎", "ミホン　サブロウ", "2024-12-01", "male", "子")],
            "household": {"type": "new", "address": {"address": "東京都府中市宮西町二丁目24番地"}}}}))
    .unwrap();
    h.db.registry
        .submit(&code(FUCHU), &req, &machi::service::Actor::system("clerk"))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("allowance.sqlite")).unwrap();
    let w = Worker {
        store: store.clone(),
        client: RegistryClient::new(link.clone()).unwrap(),
    };
    catch_up(&h.db.registry, &w).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    staff(&store).await;
    let web = WebState::new(store.clone(), Arc::new(RegistryClient::new(link).unwrap()));
    tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            app(web).into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await;
    });
    let go = |path: &str| format!("{base}{path}");

    // Sign in with the keyboard.
    h.client.goto(&go("/login")).await.unwrap();
    h.shot("allowance-01-login").await;
    h.fill("login", CLERK).await;
    h.fill("password", CLERK_PASSWORD).await;
    h.client
        .find(Locator::Id("password"))
        .await
        .unwrap()
        .send_keys("\u{E007}")
        .await
        .unwrap();
    h.wait_for("#me").await;
    // The move-in of three children: work items, in Japanese, 和暦.
    let page = h.text().await;
    assert!(page.contains("転入：認定請求が必要な可能性"), "{page}");
    assert!(page.contains("見本　三郎"));
    assert!(page.contains("令和7年4月1日"));
    assert!(!page.contains("move_in"));
    h.shot("allowance-02-work-items").await;
    // Enter the claim from the work item: the claimant is the household
    // head, the move-in date is filled in.
    h.client
        .find(Locator::XPath(
            "//tr[td[contains(., '見本　三郎')]]//a[starts-with(@href, '/claims/new')]",
        ))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    h.wait_for("#claim-submit").await;
    let claimant = h
        .client
        .find(Locator::Id("claimant"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap()
        .unwrap_or_default();
    assert!(!claimant.is_empty());
    // The person is named, not only numbered.
    assert!(h.text().await.contains("請求者：見本　太郎"));
    let event = h
        .client
        .find(Locator::Id("event_on"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap()
        .unwrap_or_default();
    assert_eq!(event, "令和7年4月1日");
    // A bad date first: a clear error in both languages, nothing stored.
    h.fill("claimed_on", "令和7年4月31日").await;
    h.click("#claim-submit").await;
    h.wait_for("#error").await;
    let page = h.text().await;
    assert!(page.contains("請求日"), "{page}");
    // What the clerk entered and where it came from stay on the form.
    assert!(page.contains("請求者：見本　太郎"), "{page}");
    assert!(page.contains("転入：認定請求が必要な可能性"), "{page}");
    assert!(store.claims().await.unwrap().is_empty());
    h.shot("allowance-03-claim-error").await;
    h.fill("claimed_on", "令和7年4月10日").await;
    // The account the allowance is paid into (the name typed in hiragana
    // is kept in katakana).
    h.fill("bank_code", "0001").await;
    h.fill("branch_code", "001").await;
    h.fill("account_number", "1234567").await;
    h.fill("account_holder", "みほん　たろう").await;
    h.click("#claim-submit").await;
    h.wait_for("#status").await;
    let page = h.text().await;
    assert!(page.contains("受給者：見本　太郎"), "{page}");
    assert!(page.contains("第3子"));
    assert!(page.contains("30,000円"));
    assert!(page.contains("令和7年5月"));
    assert!(page.contains("児童手当法第6条第1項"));
    assert!(!page.contains("third_and_later"));
    h.shot("allowance-04-claim").await;
    // The payment of June 2025 (April and May: May only, from the month
    // after the claim): ¥10,000 + ¥10,000 + ¥30,000.
    h.client.goto(&go("/payments/2025-06")).await.unwrap();
    h.wait_for("#total").await;
    let page = h.text().await;
    assert!(page.contains("50,000円"), "{page}");
    // A clerk cannot approve: the page says who does, and the server
    // refuses the supervisor's pages.
    assert!(page.contains("児童手当監督者が行います"), "{page}");
    h.shot("allowance-05-payment").await;
    h.client.goto(&go("/access-log")).await.unwrap();
    h.wait_for(".err").await;
    assert!(h.text().await.contains("児童手当監督者だけ"));
    h.shot("allowance-06-clerk-refused").await;
    h.click("form[action='/logout'] button").await;
    h.wait_for("#login").await;
    // The supervisor approves the June file and downloads it.
    h.fill("login", SUPERVISOR).await;
    h.fill("password", CLERK_PASSWORD).await;
    h.click("#login-submit").await;
    h.wait_for("#me").await;
    h.client.goto(&go("/payments/2025-06")).await.unwrap();
    h.wait_for("#approve").await;
    h.click("#approve").await;
    h.wait_for("#csv").await;
    let page = h.text().await;
    assert!(page.contains("定例払"), "{page}");
    assert!(page.contains("50,000円"), "{page}");
    assert!(page.contains("児童手当法第8条第4項"), "{page}");
    assert_eq!(store.payment_runs().await.unwrap().len(), 1);
    h.shot("allowance-07-payment-file").await;
    // The access log: 和暦 times, words, the chain checked.
    h.client.goto(&go("/access-log")).await.unwrap();
    h.wait_for("#chain").await;
    let page = h.text().await;
    assert!(page.contains("改ざんはありません"), "{page}");
    assert!(page.contains("支払ファイルの確定"), "{page}");
    assert!(page.contains("受給者・児童の情報の閲覧"), "{page}");
    assert!(page.contains("手当　担当（tanto）"), "{page}");
    h.shot("allowance-08-access-log").await;
    h.client.goto(&go("/accounts")).await.unwrap();
    h.wait_for("#account-submit").await;
    h.shot("allowance-09-accounts").await;
    // 三郎's move-out on 25 April 2025 reaches the registry after May was
    // paid: May is overpaid by his ¥30,000 (第9条第3項).
    let saburo = store.claims().await.unwrap()[0]
        .children
        .iter()
        .find(|c| c.name == "見本　三郎")
        .unwrap()
        .child
        .clone();
    let req: machi_domain::change::ChangeRequest = serde_json::from_value(json!({
        "effective_date": "2025-04-25",
        "command": {"type": "move_out", "persons": [saburo],
            "destination": {"address": "東京都昭島市田中町一丁目"}}}))
    .unwrap();
    h.db.registry
        .submit(&code(FUCHU), &req, &machi::service::Actor::system("clerk"))
        .await
        .unwrap();
    catch_up(&h.db.registry, &w).await;
    let id = store.claims().await.unwrap()[0].id;
    h.client.goto(&go(&format!("/claims/{id}"))).await.unwrap();
    h.wait_for("#repay-submit").await;
    let page = h.text().await;
    assert!(page.contains("過払（返還金）"), "{page}");
    assert!(page.contains("残りの過払 30,000円"), "{page}");
    // A bad amount: a clear error, nothing recorded.
    h.fill("repay_amount", "三千円").await;
    h.click("#repay-submit").await;
    h.wait_for(".err").await;
    assert!(h.text().await.contains("金額は1円以上の整数"));
    assert!(store.repayments(id).await.unwrap().is_empty());
    h.shot("allowance-10-repayment-error").await;
    // ¥10,000 received today (the form's day, in 和暦).
    h.client.goto(&go(&format!("/claims/{id}"))).await.unwrap();
    h.wait_for("#repay-submit").await;
    h.fill("repay_amount", "10,000").await;
    h.click("#repay-submit").await;
    h.wait_for("table[aria-labelledby='repayments']").await;
    let page = h.text().await;
    assert!(page.contains("10,000円の返還を受けた"), "{page}");
    assert!(page.contains("残りの過払 20,000円"), "{page}");
    assert_eq!(store.repayments(id).await.unwrap().len(), 1);
    h.shot("allowance-11-repayment").await;
    // A child living in another town (大学生等の生計費負担), entered by
    // name and birth date on the claim's page: a birth date in the future
    // first, refused in both languages, nothing stored.
    h.client.goto(&go(&format!("/claims/{id}"))).await.unwrap();
    h.wait_for("#apart-submit").await;
    h.shot("allowance-12-apart-form").await;
    let children = store.claim(id).await.unwrap().unwrap().children.len();
    h.fill("apart_name", "見本　長子").await;
    h.fill("apart_birth", "令和30年6月10日").await;
    h.click("#basis_student").await;
    h.fill("apart_since", "令和8年4月1日").await;
    h.click("#apart-submit").await;
    h.wait_for("#error").await;
    let page = h.text().await;
    assert!(page.contains("生年月日が未来の日付です"), "{page}");
    assert!(page.contains("The birthdate is in the future"), "{page}");
    assert_eq!(
        store.claim(id).await.unwrap().unwrap().children.len(),
        children
    );
    h.shot("allowance-13-apart-error").await;
    h.client.goto(&go(&format!("/claims/{id}"))).await.unwrap();
    h.wait_for("#apart-submit").await;
    h.fill("apart_name", "見本　長子").await;
    h.fill("apart_birth", "平成17年6月10日").await;
    h.click("#basis_student").await;
    h.fill("apart_since", "令和8年4月1日").await;
    h.click("#apart-submit").await;
    // The claim page after the redirect: `#end-submit` is on the page
    // the form was posted from too, so wait for the child itself.
    let start = std::time::Instant::now();
    let page = loop {
        let page = h.text().await;
        if page.contains("見本　長子") || start.elapsed() > std::time::Duration::from_secs(30)
        {
            break page;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    h.wait_for("#end-submit").await;
    assert!(page.contains("見本　長子"), "{page}");
    assert!(page.contains("大学生等の生計費負担"), "{page}");
    assert!(page.contains("住民記録なし"), "{page}");
    assert!(!page.contains(">student_support<"), "{page}");
    let added = store.claim(id).await.unwrap().unwrap();
    assert_eq!(added.children.len(), children + 1);
    assert!(added.children.iter().any(|c| !c.registered));
    h.shot("allowance-14-apart-added").await;
    // Ending a child by hand without a reason: refused, nothing changed.
    h.fill("end_on", "令和8年4月2日").await;
    h.click("#end-submit").await;
    h.wait_for("#error").await;
    assert!(h.text().await.contains("終了の事由を選んでください"));
    assert!(
        store.claim(id).await.unwrap().unwrap().children[..]
            .iter()
            .all(|c| c.ended_by.is_none())
    );
    h.shot("allowance-15-end-error").await;
    // 二郎's move-out on 25 April 2025 arrives late too: May is overpaid
    // by ¥40,000 in all, ¥10,000 repaid; the August file withholds
    // ¥20,000 (June and July for 一郎) and the last ¥10,000 becomes a
    // 返還請求. The clerk issues a 返還通知書 and sees it printable.
    let jiro = store.claims().await.unwrap()[0]
        .children
        .iter()
        .find(|c| c.name == "見本　二郎")
        .unwrap()
        .child
        .clone();
    let req: machi_domain::change::ChangeRequest = serde_json::from_value(json!({
        "effective_date": "2025-04-25",
        "command": {"type": "move_out", "persons": [jiro],
            "destination": {"address": "東京都昭島市田中町一丁目"}}}))
    .unwrap();
    h.db.registry
        .submit(&code(FUCHU), &req, &machi::service::Actor::system("clerk"))
        .await
        .unwrap();
    catch_up(&h.db.registry, &w).await;
    store
        .approve_payment(
            machi_allowance::rules::PayRule::Regular,
            chrono::NaiveDate::from_ymd_opt(2025, 8, 1).unwrap(),
            machi_allowance::audit::Entry::new(
                SUPERVISOR,
                "",
                machi_allowance::audit::Action::PaymentApproved,
                String::new(),
            ),
        )
        .await
        .unwrap()
        .unwrap();
    h.client.goto(&go(&format!("/claims/{id}"))).await.unwrap();
    h.wait_for("#notice-submit").await;
    let page = h.text().await;
    assert!(page.contains("返還を求める額 10,000円"), "{page}");
    h.shot("allowance-16-notice-form").await;
    h.click("#notice-submit").await;
    h.wait_for("#notice-amount").await;
    let page = h.text().await;
    assert!(page.contains("児童手当の返還について（通知）"), "{page}");
    assert!(page.contains("見本　太郎 様"), "{page}");
    assert!(page.contains("東京都府中市宮西町二丁目24番地"), "{page}");
    assert!(page.contains("10,000円"), "{page}");
    assert!(page.contains("児童手当法第9条第3項"), "{page}");
    assert_eq!(store.notices(id).await.unwrap().len(), 1);
    let notice_url = h.client.current_url().await.unwrap().to_string();
    h.shot("allowance-17-notice").await;
    // Printed, the menu and the way back are not on the paper.
    let hidden = h
        .client
        .execute(
            "const before = getComputedStyle(document.querySelector('header')).display;
             const sheet = [...document.styleSheets].flatMap(s => [...s.cssRules]);
             const print = sheet.filter(r => r.media && r.media.mediaText === 'print');
             return [before, print.map(r => r.cssText).join(' ')];",
            vec![],
        )
        .await
        .unwrap();
    let hidden = hidden.to_string();
    assert!(
        hidden.contains("header") && hidden.contains(".noprint") && hidden.contains("none"),
        "{hidden}"
    );
    // The claim's page: issued, with a reprint link.
    h.client.goto(&go(&format!("/claims/{id}"))).await.unwrap();
    h.wait_for(".notice-issued").await;
    assert!(h.text().await.contains("発行済み"));
    h.shot("allowance-18-notice-issued").await;
    // At a phone's width (390 px) neither the notice nor the claim's page
    // scrolls sideways.
    h.viewport(Some((390, 844))).await;
    for (url, name) in [
        (notice_url, "allowance-19-notice-390"),
        (go(&format!("/claims/{id}")), "allowance-20-claim-390"),
        (go("/payments/runs/2"), "allowance-21-run-390"),
    ] {
        h.client.goto(&url).await.unwrap();
        h.wait_for("main").await;
        let v = h
            .client
            .execute(
                "return [document.documentElement.scrollWidth, window.innerWidth];",
                vec![],
            )
            .await
            .unwrap();
        let (scroll, inner) = (v[0].as_i64().unwrap(), v[1].as_i64().unwrap());
        assert!(inner <= 400, "{inner}");
        h.shot(name).await;
        assert!(
            scroll <= inner,
            "{name}: the page is {scroll} px wide in a {inner} px window"
        );
    }
    h.viewport(None).await;
    // The claimant dies: what was not paid to him is held (未支払請求待ち),
    // and the clerk records the child's 未支払請求 (児童手当法第12条第1項),
    // the child chosen from the claim's children, the 請求日 in 和暦.
    let taro = store.claim(id).await.unwrap().unwrap().claimant;
    let req: machi_domain::change::ChangeRequest = serde_json::from_value(json!({
        "effective_date": "2025-09-05", "allow_headless_household": true,
        "command": {"type": "death", "person": taro}}))
    .unwrap();
    h.db.registry
        .submit(&code(FUCHU), &req, &machi::service::Actor::system("clerk"))
        .await
        .unwrap();
    catch_up(&h.db.registry, &w).await;
    h.client
        .goto(&go(&format!("/claims/{id}#unpaid")))
        .await
        .unwrap();
    h.wait_for("#unpaid-submit").await;
    let page = h.text().await;
    assert!(page.contains("未支払請求待ち"), "{page}");
    assert!(page.contains("令和7年9月5日に亡くなりました"), "{page}");
    h.shot("allowance-22-unpaid-form").await;
    h.fill("unpaid_requester_name", "見本　花子").await;
    h.fill("unpaid_requester_kana", "みほん　はなこ").await;
    h.fill("unpaid_bank_code", "0005").await;
    h.fill("unpaid_branch_code", "002").await;
    h.fill("unpaid_account_number", "7654321").await;
    h.fill("unpaid_account_holder", "ミホン　イチロウ").await;
    h.click("#unpaid-submit").await;
    h.wait_for("#unpaid-claim").await;
    let page = h.text().await;
    assert!(page.contains("の未支払請求を受け付けました"), "{page}");
    assert!(
        page.contains("請求者：見本　花子（ミホン　ハナコ）"),
        "{page}"
    );
    assert!(store.unpaid_claim(id).await.unwrap().is_some());
    h.shot("allowance-23-unpaid-recorded").await;
    h.viewport(Some((390, 844))).await;
    h.client.goto(&go(&format!("/claims/{id}"))).await.unwrap();
    h.wait_for("#unpaid-claim").await;
    let v = h
        .client
        .execute(
            "return [document.documentElement.scrollWidth, window.innerWidth];",
            vec![],
        )
        .await
        .unwrap();
    assert!(v[0].as_i64().unwrap() <= v[1].as_i64().unwrap(), "{v:?}");
    h.shot("allowance-24-unpaid-390").await;
    h.viewport(None).await;
}
