//! 児童手当: the edges of a claim's household as the registry shows it to
//! the allowance system — a child who left and came back before a claim
//! entered late, a child a support measure hides, and the work a move-in
//! raises.

use chrono::{NaiveDate, TimeZone, Utc};
use machi::service::{Actor, Clock};
use machi_allowance::rules::{YearMonth, month};
use machi_allowance::store::{Store, WorkKind};
use machi_domain::change::ChangeRequest;
use serde_json::{Value, json};

use crate::allowance::{
    CLERK, CLERK_PASSWORD, Town, catch_up, csrf_of, d, enter_claim, family, get_as, no_redirects,
    post_as, serve, sign_in, staff, town, ym,
};
use crate::contract::person;
use crate::support::{FUCHU, TestDb, code};

both_backends!(
    a_child_who_left_and_came_back_is_not_paid_for_the_months_away,
    a_child_hidden_by_a_support_measure_is_never_paid_on_a_guess,
    move_ins_raise_work_only_for_what_a_clerk_must_act_on,
);

/// (total, [(child, rank, amount)]) of a month.
type Lines = Option<(i64, Vec<(String, usize, i64)>)>;

fn by_child(r: &machi_allowance::rules::Claim, m: YearMonth) -> Lines {
    month(r, m).map(|x| {
        (
            x.total,
            x.children
                .iter()
                .map(|c| (c.key.clone(), c.rank, c.amount))
                .collect(),
        )
    })
}

async fn claim_work(store: &Store, id: i64) -> Vec<(WorkKind, String, Option<NaiveDate>)> {
    let mut w: Vec<_> = store
        .work_items(true)
        .await
        .unwrap()
        .into_iter()
        .filter(|x| x.claim_id == Some(id))
        .map(|x| (x.kind, x.person, x.event_on))
        .collect();
    w.sort_by_key(|x| (x.2, x.0.code()));
    w
}

/// Issue 12, 児童手当法第8条第2項・第9条: a claim entered late (請求日 10
/// April 2025, entered on 1 December) for a household whose second child
/// moved out (planned 20 June) and moved back in (5 September) before
/// the entry. The registry's history is followed month by month: the
/// child is counted through June and not from July (the move-out), and
/// not again on his coming back: that needs a new 額改定請求, for which
/// the clerk gets the move-in's work item. The 額改定請求 made from it (12
/// September, within 15 days of the move-in: 第9条第2項) counts him from
/// October; one dated before he left is refused. The months away are
/// never paid, and the claim page says so in words.
async fn a_child_who_left_and_came_back_is_not_paid_for_the_months_away(db: TestDb) {
    let t = town(db).await;
    let mut fam = family(
        "2024-04-01",
        ("架空", "カクウ"),
        &[
            ("一郎", "イチロウ", "2014-07-01"),
            ("二郎", "ジロウ", "2019-05-10"),
            ("三郎", "サブロウ", "2022-06-01"),
        ],
    );
    fam["command"]["persons"][3]["resident_code"] = json!("10000000029");
    let a = t.submit(fam).await;
    let head = a.rows[0].record.addressee_number.to_string();
    let household = a.rows[0].record.household_number.to_string();
    let ichiro = a.rows[2].record.addressee_number.to_string();
    let jiro = a.rows[3].record.addressee_number.to_string();
    let saburo = a.rows[4].record.addressee_number.to_string();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("allowance.sqlite")).unwrap();
    staff(&store).await;
    let w = t.worker(&store);
    catch_up(&t.db.registry, &w).await;
    // After the 請求日: 二郎 moves out and comes back (the same 住民票コード,
    // so the same 宛名番号, j600). The worker is behind.
    t.submit(
        json!({"effective_date": "2025-06-20", "command": {"type": "move_out", "persons": [jiro],
        "destination": {"address": "東京都昭島市田中町一丁目"}}}),
    )
    .await;
    let mut back = person("架空　二郎", "カクウ　ジロウ", "2019-05-10", "male", "子");
    back["resident_code"] = json!("10000000029");
    let again = t
        .submit(json!({"effective_date": "2025-09-05", "filed_on": "2025-09-05", "command": {"type": "move_in",
            "persons": [back], "previous_address": "東京都昭島市田中町一丁目",
            "household": {"type": "join", "household_number": household}}}))
        .await;
    assert_eq!(again.rows[0].record.addressee_number.to_string(), jiro);
    let mut web = t.web(&store);
    web.today = Some(d("2025-12-01"));
    let id = enter_claim(&web, CLERK, &head, d("2025-04-10"), None, false)
        .await
        .unwrap();
    let c = store.claim(id).await.unwrap().unwrap();
    let j = c.children.iter().find(|x| x.child == jiro).unwrap();
    assert_eq!(j.left_on, Some(d("2025-06-20")), "{c:?}");
    assert_eq!(j.left_reason.as_deref(), Some("転出"));
    let r = c.rules();
    let all_three = Some((
        50_000,
        vec![
            (ichiro.clone(), 1, 10_000),
            (jiro.clone(), 2, 10_000),
            (saburo.clone(), 3, 30_000),
        ],
    ));
    let two = Some((
        20_000,
        vec![(ichiro.clone(), 1, 10_000), (saburo.clone(), 2, 10_000)],
    ));
    for m in 5..=6 {
        assert_eq!(by_child(&r, ym(2025, m)), all_three, "2025-{m:02}");
    }
    // From July: not counted, back in the household or not.
    for m in 7..=11 {
        assert_eq!(by_child(&r, ym(2025, m)), two, "2025-{m:02}");
    }
    // The work the changes raise on the claim: the move-out, and the
    // move-in that may call for a 額改定請求.
    assert_eq!(
        claim_work(&store, id).await,
        vec![
            (WorkKind::ChildLeft, jiro.clone(), Some(d("2025-06-20"))),
            (WorkKind::MoveInClaim, jiro.clone(), Some(d("2025-09-05"))),
        ]
    );
    // The worker reading those changes afterwards changes nothing.
    catch_up(&t.db.registry, &w).await;
    assert_eq!(store.claim(id).await.unwrap().unwrap(), c);
    assert_eq!(claim_work(&store, id).await.len(), 2);

    // The 額改定請求 from the move-in's item.
    let item = store
        .work_items(true)
        .await
        .unwrap()
        .into_iter()
        .find(|x| x.kind == WorkKind::MoveInClaim && x.claim_id == Some(id))
        .unwrap();
    let base = serve(web).await;
    let http = no_redirects();
    let cookie = sign_in(&http, &base, CLERK, CLERK_PASSWORD)
        .await
        .1
        .unwrap();
    let link = format!("/claims/{id}?work={}#increase", item.id);
    let page = get_as(&http, &cookie, format!("{base}{link}"))
        .await
        .text()
        .await
        .unwrap();
    let csrf = csrf_of(&page);
    let work = item.id.to_string();
    // Dated before he left: refused in both languages, nothing written.
    let r = post_as(
        &http,
        &cookie,
        format!("{base}/claims/{id}/children"),
        &[
            ("csrf", &csrf),
            ("work", &work),
            ("requested_on", "令和7年6月1日"),
        ],
    )
    .await;
    assert_eq!(r.status(), 422);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("令和7年6月20日に外れています")
            && text.contains("Enter a claim date after that day"),
        "{text}"
    );
    assert_eq!(store.claim(id).await.unwrap().unwrap(), c);
    let r = post_as(
        &http,
        &cookie,
        format!("{base}/claims/{id}/children"),
        &[
            ("csrf", &csrf),
            ("work", &work),
            ("requested_on", "令和7年9月12日"),
        ],
    )
    .await;
    assert_eq!(r.status(), 303);
    let c = store.claim(id).await.unwrap().unwrap();
    let j = c.children.iter().find(|x| x.child == jiro).unwrap();
    assert_eq!(j.left_on, None);
    assert_eq!(j.earlier.len(), 1, "{j:?}");
    assert_eq!(j.earlier[0].left_on, d("2025-06-20"));
    let r = c.rules();
    for m in 5..=6 {
        assert_eq!(by_child(&r, ym(2025, m)), all_three, "2025-{m:02}");
    }
    // July to September: away, then back but not yet claimed for.
    for m in 7..=9 {
        assert_eq!(by_child(&r, ym(2025, m)), two, "2025-{m:02}");
    }
    // From October (the 15-day rule: the month after the move-in).
    for m in 10..=11 {
        assert_eq!(by_child(&r, ym(2025, m)), all_three, "2025-{m:02}");
    }
    assert!(
        claim_work(&store, id)
            .await
            .iter()
            .all(|x| x.0 != WorkKind::MoveInClaim),
        "the item is done"
    );
    // The claim page says it in words, dates in 和暦.
    let page = get_as(&http, &cookie, format!("{base}/claims/{id}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("以前の期間：令和7年5月分から令和7年6月分まで（転出・令和7年6月20日）"),
        "{page}"
    );
    assert!(
        page.contains("令和7年9月12日の額改定請求：令和7年10月分から再び数える"),
        "{page}"
    );
    assert!(!page.contains("2025-"), "no ISO date on the page");
}

/// A registry change as a request.
async fn submit_at(
    t: &Town,
    clock: Option<Clock>,
    v: Value,
) -> machi::service::registry::ChangeOutcome {
    let req: ChangeRequest = serde_json::from_value(v.clone()).unwrap();
    let r = match clock {
        Some(c) => t.db.registry.at(c),
        None => t.db.registry.clone(),
    };
    r.submit(&code(FUCHU), &req, &Actor::system("clerk"))
        .await
        .unwrap_or_else(|e| panic!("{e}: {v}"))
}

/// 支援措置 (j440): the mother and the younger child of a claimant's
/// household ask for a support measure and move within the town to a
/// new household. The registry withholds the change from the allowance
/// system (it names nobody) and answers 403 `support_measure_block` to
/// a read of the child. The allowance system neither ends the child on a
/// guess nor keeps paying silently: the clerk gets one work item for the
/// claim, in words, naming the child. A claim by the protected mother, and
/// a late claim whose household of the 請求日 holds protected persons, are
/// refused with the same explanation (nothing written).
async fn a_child_hidden_by_a_support_measure_is_never_paid_on_a_guess(db: TestDb) {
    let t = town(db).await;
    let a = t
        .submit(family(
            "2024-04-01",
            ("架空", "カクウ"),
            &[
                ("一郎", "イチロウ", "2014-07-01"),
                ("二郎", "ジロウ", "2019-05-10"),
            ],
        ))
        .await;
    let head = a.rows[0].record.addressee_number.to_string();
    let mother = a.rows[1].record.addressee_number.to_string();
    let ichiro = a.rows[2].record.addressee_number.to_string();
    let jiro = a.rows[3].record.addressee_number.to_string();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("allowance.sqlite")).unwrap();
    staff(&store).await;
    let w = t.worker(&store);
    catch_up(&t.db.registry, &w).await;
    let mut web = t.web(&store);
    web.today = Some(d("2025-05-01"));
    let id = enter_claim(&web, CLERK, &head, d("2025-04-10"), None, false)
        .await
        .unwrap();
    catch_up(&t.db.registry, &w).await;
    let before = store.claim(id).await.unwrap().unwrap();
    let items_before = store.work_items(true).await.unwrap().len();
    // The measure (花子 the requester, 二郎 with her), then their move.
    let today = Utc::now()
        .with_timezone(&machi::service::clock::jst())
        .date_naive();
    let mut req = crate::support_measures::request(today);
    req.requester.addressee_number = mother.parse().unwrap();
    req.related_persons[0].addressee_number = Some(jiro.parse().unwrap());
    t.db.registry
        .support_register(&code(FUCHU), &req, &crate::support_measures::officer())
        .await
        .unwrap();
    // The registry's clerk needs the support officer's release (j410) to
    // record a change of a protected person, one per person and change.
    let release = || async {
        for p in [&mother, &jiro] {
            t.db.registry
                .support_release(
                    &code(FUCHU),
                    &p.parse().unwrap(),
                    machi_domain::support::SupportPurpose::View,
                    "clerk",
                    &crate::support_measures::officer(),
                )
                .await
                .unwrap();
        }
    };
    release().await;
    submit_at(
        &t,
        None,
        json!({"effective_date": "2025-07-01", "command": {"type": "move_within", "persons": [mother, jiro],
            "address": {"address": "東京都府中市本町一丁目"},
            "household": {"type": "new", "relationships": [
                {"addressee_number": mother, "relationship": "世帯主"},
                {"addressee_number": jiro, "relationship": "子"}]}}}),
    )
    .await;
    // What the registry answers the allowance system's client.
    let client = machi_allowance::worker::RegistryClient::new(t.link.clone()).unwrap();
    assert_eq!(
        client.resident_lookup(&jiro).await.unwrap(),
        machi_allowance::worker::Lookup::Hidden
    );
    assert!(matches!(
        client.resident_lookup(&ichiro).await.unwrap(),
        machi_allowance::worker::Lookup::Found(_)
    ));
    catch_up(&t.db.registry, &w).await;
    // Nothing guessed: the claim is as it was (二郎 not ended) ...
    assert_eq!(store.claim(id).await.unwrap().unwrap(), before);
    // ... and the clerk is told, once, about 二郎 only.
    let hidden: Vec<_> = store
        .work_items(true)
        .await
        .unwrap()
        .into_iter()
        .filter(|x| x.kind == WorkKind::RecordHidden)
        .collect();
    assert_eq!(hidden.len(), 1, "{hidden:?}");
    assert_eq!(hidden[0].person, jiro);
    assert_eq!(hidden[0].person_name, "架空　二郎");
    assert_eq!(hidden[0].claim_id, Some(id));
    assert_eq!(
        store.work_items(true).await.unwrap().len(),
        items_before + 1
    );
    // Another withheld change (二郎's household gets a new head) raises
    // nothing twice.
    release().await;
    submit_at(
        &t,
        None,
        json!({"effective_date": "2025-08-01", "command": {"type": "move_within", "persons": [mother, jiro],
            "address": {"address": "東京都府中市本町二丁目"}}}),
    )
    .await;
    catch_up(&t.db.registry, &w).await;
    assert_eq!(
        store.work_items(true).await.unwrap().len(),
        items_before + 1
    );
    // Refusals, nothing written: the protected mother's own claim, and a
    // late claim whose household of the 請求日 held protected persons.
    let hidden_refusal = (
        machi_allowance::web::HIDDEN_JA.to_string(),
        machi_allowance::web::HIDDEN_EN.to_string(),
    );
    web.today = Some(d("2025-12-01"));
    let claims = store.claims().await.unwrap().len();
    assert_eq!(
        enter_claim(&web, CLERK, &mother, d("2025-11-10"), None, false)
            .await
            .unwrap_err(),
        hidden_refusal
    );
    let dir2 = tempfile::tempdir().unwrap();
    let other = Store::open(&dir2.path().join("allowance.sqlite")).unwrap();
    let mut web2 = t.web(&other);
    web2.today = Some(d("2025-12-01"));
    assert_eq!(
        enter_claim(&web2, CLERK, &head, d("2025-04-10"), None, false)
            .await
            .unwrap_err(),
        hidden_refusal
    );
    assert_eq!(store.claims().await.unwrap().len(), claims);
    assert!(other.claims().await.unwrap().is_empty());
    // The work list says it in words.
    let base = serve(web).await;
    let http = no_redirects();
    let cookie = sign_in(&http, &base, CLERK, CLERK_PASSWORD)
        .await
        .1
        .unwrap();
    let list = get_as(&http, &cookie, format!("{base}/"))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        list.contains("支援措置のため住民記録の異動が届かない：窓口で世帯と監護の状況を確認"),
        "{list}"
    );
    assert!(!list.contains("record_hidden"));
    // The payment page says it before the file is approved.
    let pay = get_as(&http, &cookie, format!("{base}/payments/2025-08"))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        pay.contains("住民記録で確認できない方がいる受給者") && pay.contains("架空　二郎"),
        "{pay}"
    );
}

/// The work a move-in raises is what a clerk must act on: a child under
/// the age limit arriving in a claimant's household (a 額改定請求 may be
/// due) or, while the 15 days of 第8条第3項 run, in a household without a
/// claim; anyone else joining a claimant's household after the 請求日 (a
/// household check). Not: a household of adults, a move-in recorded years ago (the
/// first read of a long history), nor a child already counted on a claim
/// entered before the worker read the move-in.
async fn move_ins_raise_work_only_for_what_a_clerk_must_act_on(db: TestDb) {
    let t = town(db).await;
    let today = Utc::now()
        .with_timezone(&machi::service::clock::jst())
        .date_naive();
    // Recorded on 1 May 2020: a family with a child (born 2015) moved in
    // then.
    let old_clock = Clock::Fixed(Utc.with_ymd_and_hms(2020, 5, 1, 3, 0, 0).unwrap());
    let old = submit_at(
        &t,
        Some(old_clock),
        family(
            "2020-04-20",
            ("古株", "フルカブ"),
            &[("太一", "タイチ", "2015-04-01")],
        ),
    )
    .await;
    let old_child = old.rows[2].record.addressee_number.to_string();
    // Adults only, recently.
    let recent = (today - chrono::Days::new(3))
        .format("%Y-%m-%d")
        .to_string();
    let adults = family(&recent, ("大人", "オトナ"), &[]);
    submit_at(&t, None, adults).await;
    // A family with a child, recently: a claim may be due.
    let n = submit_at(
        &t,
        None,
        family(
            &recent,
            ("新来", "シンライ"),
            &[("花", "ハナ", "2020-02-02")],
        ),
    )
    .await;
    let new_child = n.rows[2].record.addressee_number.to_string();
    // A family that moved in on 1 April 2024 and claims (請求日 10 April
    // 2024); the worker is behind and reads the move-in only after the
    // claim was entered. A child joins the household after the 請求日.
    let c = submit_at(
        &t,
        None,
        family(
            "2024-04-01",
            ("架空", "カクウ"),
            &[
                ("一郎", "イチロウ", "2014-07-01"),
                ("二郎", "ジロウ", "2019-05-10"),
            ],
        ),
    )
    .await;
    let head = c.rows[0].record.addressee_number.to_string();
    let household = c.rows[0].record.household_number.to_string();
    let claimed = [
        c.rows[2].record.addressee_number.to_string(),
        c.rows[3].record.addressee_number.to_string(),
    ];
    let shiro = submit_at(
        &t,
        None,
        json!({"effective_date": "2025-06-01", "filed_on": "2025-06-01", "command": {"type": "move_in",
            "persons": [person("架空　四郎", "カクウ　シロウ", "2013-02-01", "male", "子")],
            "previous_address": "東京都昭島市田中町一丁目",
            "household": {"type": "join", "household_number": household}}}),
    )
    .await
    .rows[0]
        .record
        .addressee_number
        .to_string();
    // And a grandparent joins it: the claimant's household changes.
    let grandpa = submit_at(
        &t,
        None,
        json!({"effective_date": "2025-07-01", "filed_on": "2025-07-01", "command": {"type": "move_in",
            "persons": [person("架空　源造", "カクウ　ゲンゾウ", "1950-01-15", "male", "父")],
            "previous_address": "東京都昭島市田中町一丁目",
            "household": {"type": "join", "household_number": household}}}),
    )
    .await
    .rows[0]
        .record
        .addressee_number
        .to_string();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("allowance.sqlite")).unwrap();
    staff(&store).await;
    let mut web = t.web(&store);
    web.today = Some(today);
    let id = enter_claim(&web, CLERK, &head, d("2024-04-10"), None, false)
        .await
        .unwrap();
    let w = t.worker(&store);
    catch_up(&t.db.registry, &w).await;
    let mut work: Vec<(WorkKind, String, Option<i64>)> = store
        .work_items(true)
        .await
        .unwrap()
        .into_iter()
        .map(|x| (x.kind, x.person, x.claim_id))
        .collect();
    work.sort_by_key(|x| (x.0.code(), x.1.clone()));
    let mut expected = vec![
        (WorkKind::MoveInClaim, new_child.clone(), None),
        (WorkKind::MoveInClaim, shiro.clone(), Some(id)),
        (WorkKind::HouseholdCheck, grandpa.clone(), Some(id)),
    ];
    expected.sort_by_key(|x| (x.0.code(), x.1.clone()));
    assert_eq!(work, expected);
    assert!(
        work.iter()
            .all(|x| x.1 != old_child && !claimed.contains(&x.1))
    );
    // The same feed read again from the start by a second system raises
    // the same: nothing for the old move-in or the adults.
    let dir2 = tempfile::tempdir().unwrap();
    let fresh = Store::open(&dir2.path().join("allowance.sqlite")).unwrap();
    let w2 = t.worker(&fresh);
    catch_up(&t.db.registry, &w2).await;
    let kinds: Vec<(WorkKind, String)> = fresh
        .work_items(true)
        .await
        .unwrap()
        .into_iter()
        .map(|x| (x.kind, x.person))
        .collect();
    // No claim there: the claimed family's move-in (recorded now) and
    // 四郎's are within the 15 days of their recording; the old one is not.
    assert!(kinds.iter().all(|x| x.1 != old_child), "{kinds:?}");
    assert!(kinds.contains(&(WorkKind::MoveInClaim, new_child.clone())));
    // A third system has read this feed since 1 January 2020 and was down
    // for years: the 2020 move-in happened while it ran, so reading it
    // late still raises the work item (an outage loses nothing).
    let dir3 = tempfile::tempdir().unwrap();
    let behind = Store::open(&dir3.path().join("allowance.sqlite")).unwrap();
    behind
        .feed_started_on(&t.link.tenant, d("2020-01-01"))
        .await
        .unwrap();
    let w3 = t.worker(&behind);
    catch_up(&t.db.registry, &w3).await;
    let kinds: Vec<(WorkKind, String)> = behind
        .work_items(true)
        .await
        .unwrap()
        .into_iter()
        .map(|x| (x.kind, x.person))
        .collect();
    assert!(
        kinds.contains(&(WorkKind::MoveInClaim, old_child.clone())),
        "{kinds:?}"
    );
    assert!(kinds.contains(&(WorkKind::MoveInClaim, new_child)));
}
