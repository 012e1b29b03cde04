//! 支援措置 (j160, j440) on SQLite and PostgreSQL: the period and its
//! extension, alerts, the guard and single-use releases, and the access log.

use chrono::{Duration, NaiveDate, TimeZone, Utc};
use machi::api::error::ApiError;
use machi::service::support::{SupportMeasureView, guard};
use machi::service::{Actor, Clock, Registry, ServiceError};
use machi::store::records;
use machi::store::{Param, Store, StoreError};
use machi_domain::change::AsOf;
use machi_domain::dates::EraTable;
use machi_domain::ids::{AddresseeNumber, HouseholdNumber};
use machi_domain::support::{
    Affair, AffairRequest, CancelReason, Contact, EndReason, MeasureStatus, MunicipalityRole,
    NewSupportMeasure, Offender, RelatedPerson, Requester, SupportAlert, SupportError,
    SupportPurpose,
};
use serde_json::json;

use crate::contract::{move_in, takahashi_family};
use crate::support::{FUCHU, TestDb, code};

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(crate::support::TestDb::sqlite().await).await; })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(crate::support::TestDb::postgres().await).await; })*
        }
    };
}

on_both_backends!(
    register_confirm_and_period_end_follow_j440,
    extension_opens_one_month_before_the_end,
    active_measures_carry_alerts,
    guard_blocks_protected_persons_and_passes_others,
    a_release_lets_exactly_one_request_through,
    a_release_for_another_operator_or_purpose_does_not_help,
    racing_requests_use_a_release_once,
    support_operations_are_audited,
);

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

fn a(n: u64) -> AddresseeNumber {
    AddresseeNumber::from_serial(n).unwrap()
}

fn h(n: u64) -> HouseholdNumber {
    HouseholdNumber::from_serial(n).unwrap()
}

fn clerk(name: &str) -> Actor {
    Actor {
        operator: name.into(),
        terminal: "T-01".into(),
    }
}

pub fn officer() -> Actor {
    clerk("officer-1")
}

/// The registry as it runs at noon (JST) on `day`.
fn on(db: &TestDb, day: NaiveDate) -> Registry {
    let noon_jst = Utc.from_utc_datetime(&day.and_hms_opt(3, 0, 0).unwrap());
    Registry::new(
        db.store.clone(),
        EraTable::standard(),
        Clock::Fixed(noon_jst),
    )
}

/// 府中市 with the 髙橋 family (a1 head, a2 wife, a3 child, household 1) and
/// a neighbour (a4, household 2).
async fn setup(db: TestDb) -> TestDb {
    let db = db.with_tenants().await;
    for request in [
        takahashi_family(),
        move_in(
            vec![
                json!({"name": "佐藤　花子", "name_kana": "サトウ　ハナコ", "birth_date": "1980-05-05",
                "sex": "female", "relationship": "世帯主"}),
            ],
            "東京都府中市宮西町三丁目1番地",
        ),
    ] {
        db.registry
            .submit(
                &code(FUCHU),
                &serde_json::from_value(request).unwrap(),
                &clerk("clerk-1"),
            )
            .await
            .unwrap();
    }
    db
}

/// A request by the wife (a2), with the child (a3) asking for support with her.
pub fn request(filed_on: NaiveDate) -> NewSupportMeasure {
    NewSupportMeasure {
        filed_on,
        provisional_start: None,
        requester: Requester {
            addressee_number: a(2),
            municipality_role: MunicipalityRole::CurrentAddress,
            contact: Contact {
                mobile_phone: Some("090-0000-0000".into()),
                ..Contact::default()
            },
        },
        related_persons: vec![RelatedPerson {
            addressee_number: Some(a(3)),
            name: None,
            name_kana: None,
            alias: None,
            alias_kana: None,
            birth_date: None,
            sex: None,
            previous_address: None,
            relationship: "子".into(),
        }],
        offenders: vec![Offender {
            name: Some("山田　太郎".parse().unwrap()),
            addressee_number: None,
            birth_date: None,
            sex: None,
            address: Some("東京都調布市小島町二丁目".into()),
            other: None,
        }],
        affairs: vec![AffairRequest {
            affair: Affair::ResidentRecordCopy,
            addresses: vec!["東京都府中市宮西町二丁目24番地".into()],
        }],
        forwarding: Default::default(),
    }
}

/// A request by the neighbour (a4) alone.
fn request_a4(filed_on: NaiveDate) -> NewSupportMeasure {
    let mut r = request(filed_on);
    r.requester.addressee_number = a(4);
    r.related_persons.clear();
    r
}

async fn confirmed(db: &TestDb, req: NewSupportMeasure, start: NaiveDate) -> SupportMeasureView {
    let r = on(db, start);
    let m = r
        .support_register(&code(FUCHU), &req, &officer())
        .await
        .unwrap();
    r.support_confirm(&code(FUCHU), m.measure_id(), start, None, &officer())
        .await
        .unwrap()
}

/// Runs the guard in a write transaction of its own, as a read path would.
async fn check(
    r: &Registry,
    persons: &[AddresseeNumber],
    operator: &str,
    purpose: SupportPurpose,
) -> Result<Vec<i64>, ServiceError> {
    let t = code(FUCHU);
    let (persons, actor) = (persons.to_vec(), clerk(operator));
    let at = r.clock().now().timestamp_micros();
    r.store()
        .write(Some(&t.clone()), move |tx| {
            guard(tx, &t, &persons, &actor, purpose, at)
        })
        .await
}

fn blocked(r: Result<Vec<i64>, ServiceError>) -> Vec<AddresseeNumber> {
    match r {
        Err(ServiceError::SupportBlocked { persons, .. }) => persons,
        other => panic!("expected a block, got {other:?}"),
    }
}

async fn count(store: &Store, table: &str) -> i64 {
    let t = code(FUCHU);
    let sql = format!("SELECT COUNT(*) FROM {table} WHERE tenant = $1");
    store
        .read(Some(&t.clone()), move |tx| {
            tx.query_one(&sql, &[Param::Text(t.as_str())])?.int(0)
        })
        .await
        .unwrap()
}

async fn audit_log(store: &Store) -> Vec<records::StoredAudit> {
    let t = code(FUCHU);
    store
        .read(Some(&t.clone()), move |tx| {
            records::audit_entries(tx, &t, 0, 10_000)
        })
        .await
        .unwrap()
}

fn status_of(e: ServiceError) -> (u16, String) {
    let api = ApiError::from(e);
    (api.status.as_u16(), api.body.code)
}

async fn register_confirm_and_period_end_follow_j440(db: TestDb) {
    let db = setup(db).await;
    let t = code(FUCHU);
    let eras = EraTable::standard();
    // 令和2年4月1日
    let start = eras.to_gregorian("令和", 2, 4, 1).unwrap();
    let r = on(&db, start);
    let m = r
        .support_register(&t, &request(date(2020, 3, 25)), &officer())
        .await
        .unwrap();
    assert_eq!(m.measure().status, MeasureStatus::Provisional);
    assert_eq!(m.measure().provisional_start, date(2020, 3, 25));
    assert_eq!(m.measure().period, None);
    assert_eq!(m.alert, SupportAlert::None);
    assert_eq!(m.stored.created_by, "officer-1");

    let c = r
        .support_confirm(&t, m.measure_id(), start, None, &officer())
        .await
        .unwrap();
    assert_eq!(c.measure().status, MeasureStatus::Confirmed);
    let period = c.measure().period.unwrap();
    assert_eq!(period.start, start);
    // 終了年月日が令和3年3月31日に自動的に設定される.
    assert_eq!(eras.format_wareki(period.end), "令和3年3月31日");
    assert_eq!(c.measure().confirmed_on, Some(start));

    // What was stored reads back the same, through either protected person.
    let got = r
        .support_measure(&t, m.measure_id(), &officer())
        .await
        .unwrap();
    assert_eq!(got.measure(), c.measure());
    for person in [a(2), a(3)] {
        let list = r
            .support_measures_of(&t, &person, &officer())
            .await
            .unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].measure_id(), m.measure_id());
    }
    assert!(
        r.support_measures_of(&t, &a(1), &officer())
            .await
            .unwrap()
            .is_empty()
    );
    // Columns repeat the detail.
    let sid = m.measure_id();
    let row = db
        .store
        .read(Some(&t.clone()), move |tx| {
            let r = tx.query_one(
                "SELECT addressee_number, status, start_date, end_date FROM support_measures WHERE tenant = $1 AND measure_id = $2",
                &[Param::Text(FUCHU), sid.into()],
            )?;
            Ok::<_, StoreError>((r.text(0)?, r.text(1)?, r.opt_text(2)?, r.opt_text(3)?))
        })
        .await
        .unwrap();
    assert_eq!(
        row,
        (
            a(2).to_string(),
            "confirmed".to_string(),
            Some("2020-04-01".to_string()),
            Some("2021-03-31".to_string())
        )
    );

    // Confirming twice is refused (409), and so is a start before the filing.
    let e = r
        .support_confirm(&t, m.measure_id(), start, None, &officer())
        .await
        .unwrap_err();
    assert!(matches!(
        e,
        ServiceError::Support(SupportError::AlreadyConfirmed)
    ));
    assert_eq!(status_of(e), (409, "support_already_confirmed".into()));
    let m2 = r
        .support_register(&t, &request_a4(date(2020, 3, 30)), &officer())
        .await
        .unwrap();
    let e = r
        .support_confirm(&t, m2.measure_id(), date(2020, 3, 1), None, &officer())
        .await
        .unwrap_err();
    assert_eq!(status_of(e), (422, "start_before_filing".into()));
    // A corrected end date (必要に応じて修正できること).
    let c2 = r
        .support_confirm(
            &t,
            m2.measure_id(),
            start,
            Some(date(2020, 12, 31)),
            &officer(),
        )
        .await
        .unwrap();
    assert_eq!(c2.measure().period.unwrap().end, date(2020, 12, 31));

    // Unknown measure, unknown person: refused, nothing written.
    let e = r.support_measure(&t, 999, &officer()).await.unwrap_err();
    assert_eq!(status_of(e), (404, "support_measure_not_found".into()));
    let before = count(&db.store, "support_measures").await;
    let mut bad = request(date(2020, 3, 25));
    bad.related_persons[0].addressee_number = Some(a(99));
    let e = r.support_register(&t, &bad, &officer()).await.unwrap_err();
    assert!(matches!(e, ServiceError::PersonNotFound(ref p) if *p == a(99).to_string()));
    let e = r
        .support_register(&t, &request(date(2020, 4, 2)), &officer())
        .await
        .unwrap_err();
    assert_eq!(status_of(e), (422, "filed_on_in_future".into()));
    assert_eq!(count(&db.store, "support_measures").await, before);
}

async fn extension_opens_one_month_before_the_end(db: TestDb) {
    let db = setup(db).await;
    let t = code(FUCHU);
    let m = confirmed(&db, request(date(2020, 4, 1)), date(2020, 4, 1)).await;
    let id = m.measure_id();
    // The end date is 2021-03-31; one month before it is 2021-02-28.
    let e = on(&db, date(2021, 2, 27))
        .support_extend(&t, id, None, &officer())
        .await
        .unwrap_err();
    assert!(matches!(
        e,
        ServiceError::Support(SupportError::ExtensionTooEarly { opens_on, end_date })
            if opens_on == date(2021, 2, 28) && end_date == date(2021, 3, 31)
    ));
    assert_eq!(status_of(e), (409, "support_extension_too_early".into()));
    let x = on(&db, date(2021, 2, 28))
        .support_extend(&t, id, None, &officer())
        .await
        .unwrap();
    assert_eq!(x.measure().status, MeasureStatus::Extended);
    // 延長前の期間の終了日の翌日から起算して１年間: 2021-04-01 – 2022-03-31.
    assert_eq!(x.measure().period.unwrap().end, date(2022, 3, 31));
    assert_eq!(x.measure().extensions.len(), 1);
    // Not twice in the same window.
    let e = on(&db, date(2021, 3, 1))
        .support_extend(&t, id, None, &officer())
        .await
        .unwrap_err();
    assert!(matches!(
        e,
        ServiceError::Support(SupportError::ExtensionTooEarly { .. })
    ));

    // The period passes without extension: the alert says so, the measure still blocks.
    let late = on(&db, date(2022, 4, 1));
    let v = late.support_measure(&t, id, &officer()).await.unwrap();
    assert_eq!(
        v.alert,
        SupportAlert::PeriodEnded {
            end_date: date(2022, 3, 31)
        }
    );
    assert_eq!(
        blocked(check(&late, &[a(2)], "clerk-2", SupportPurpose::Issue).await),
        vec![a(2)]
    );
    // Ending for the period only once it has passed.
    let e = on(&db, date(2022, 3, 31))
        .support_end(&t, id, EndReason::PeriodExpired, &officer())
        .await
        .unwrap_err();
    assert_eq!(status_of(e), (409, "support_period_not_over".into()));
    let ended = late
        .support_end(&t, id, EndReason::PeriodExpired, &officer())
        .await
        .unwrap();
    assert_eq!(ended.measure().status, MeasureStatus::Ended);
    assert_eq!(ended.alert, SupportAlert::None);
    assert_eq!(
        check(&late, &[a(2), a(3)], "clerk-2", SupportPurpose::Issue)
            .await
            .unwrap(),
        Vec::<i64>::new()
    );
    // An ended measure cannot be extended.
    let e = late
        .support_extend(&t, id, None, &officer())
        .await
        .unwrap_err();
    assert!(matches!(
        e,
        ServiceError::Support(SupportError::Closed(MeasureStatus::Ended))
    ));
    assert_eq!(status_of(e), (409, "support_closed".into()));

    // A provisional measure is neither extended nor ended, only cancelled.
    let p = late
        .support_register(&t, &request_a4(date(2022, 4, 1)), &officer())
        .await
        .unwrap();
    let e = late
        .support_extend(&t, p.measure_id(), None, &officer())
        .await
        .unwrap_err();
    assert!(matches!(
        e,
        ServiceError::Support(SupportError::NotConfirmed)
    ));
    let c = late
        .support_cancel(&t, p.measure_id(), CancelReason::NotNeeded, &officer())
        .await
        .unwrap();
    assert_eq!(c.measure().status, MeasureStatus::Cancelled);
}

async fn active_measures_carry_alerts(db: TestDb) {
    let db = setup(db).await;
    let t = code(FUCHU);
    // A: a2 (+a3), 2020-04-01 – 2021-03-31.
    let ma = confirmed(&db, request(date(2020, 4, 1)), date(2020, 4, 1)).await;
    // B: a4, 2020-03-01 – 2021-02-28.
    let mb = confirmed(&db, request_a4(date(2020, 3, 1)), date(2020, 3, 1)).await;
    assert_eq!(mb.measure().period.unwrap().end, date(2021, 2, 28));
    // C: a1, provisional.
    let mut req_c = request_a4(date(2021, 3, 10));
    req_c.requester.addressee_number = a(1);
    let mc = on(&db, date(2021, 3, 10))
        .support_register(&t, &req_c, &officer())
        .await
        .unwrap();
    // D: a4 again, ended.
    let md = confirmed(&db, request_a4(date(2020, 6, 1)), date(2020, 6, 1)).await;
    on(&db, date(2020, 7, 1))
        .support_end(&t, md.measure_id(), EndReason::Requested, &officer())
        .await
        .unwrap();

    let r = on(&db, date(2021, 3, 15));
    let list = r.support_active(&t, &officer()).await.unwrap();
    let got: Vec<(i64, SupportAlert)> = list.iter().map(|v| (v.measure_id(), v.alert)).collect();
    assert_eq!(
        got,
        vec![
            (
                mb.measure_id(),
                SupportAlert::PeriodEnded {
                    end_date: date(2021, 2, 28)
                }
            ),
            (
                ma.measure_id(),
                SupportAlert::EndingSoon {
                    end_date: date(2021, 3, 31),
                    days_left: 16
                }
            ),
            (mc.measure_id(), SupportAlert::None),
        ]
    );
    // Earlier, nothing to say about A.
    let early = on(&db, date(2021, 2, 27))
        .support_measure(&t, ma.measure_id(), &officer())
        .await
        .unwrap();
    assert_eq!(early.alert, SupportAlert::None);
    // What a read path shows about the persons (j380).
    let p = r
        .support_protection(&t, &[a(1), a(2), a(3), a(4)])
        .await
        .unwrap();
    assert_eq!(p.len(), 4);
    assert!(p[&a(1)].provisional);
    assert_eq!(p[&a(3)].measure_ids, vec![ma.measure_id()]);
    assert!(matches!(p[&a(3)].alert, SupportAlert::EndingSoon { .. }));
    // a4: the ended measure no longer counts; B is in effect, its period over.
    assert_eq!(p[&a(4)].measure_ids, vec![mb.measure_id()]);
    assert!(matches!(p[&a(4)].alert, SupportAlert::PeriodEnded { .. }));
}

async fn guard_blocks_protected_persons_and_passes_others(db: TestDb) {
    let db = setup(db).await;
    let t = code(FUCHU);
    let r = on(&db, date(2020, 4, 1));
    // Not protected yet: everyone passes, nothing is written.
    let audit_before = count(&db.store, "audit_log").await;
    let all = [a(1), a(2), a(3), a(4)];
    assert_eq!(
        check(&r, &all, "clerk-2", SupportPurpose::View)
            .await
            .unwrap(),
        Vec::<i64>::new()
    );
    assert_eq!(count(&db.store, "audit_log").await, audit_before);

    // A provisional measure already blocks (j440 仮支援措置), the requester
    // and the person asking with her alike.
    let m = r
        .support_register(&t, &request(date(2020, 4, 1)), &officer())
        .await
        .unwrap();
    let household = [a(1), a(2), a(3)];
    for purpose in [SupportPurpose::View, SupportPurpose::Issue] {
        assert_eq!(
            blocked(check(&r, &household, "clerk-2", purpose).await),
            vec![a(2), a(3)]
        );
    }
    assert_eq!(
        blocked(check(&r, &[a(3), a(3)], "clerk-2", SupportPurpose::Issue).await),
        vec![a(3)]
    );
    // The head lives with them: showing him shows where they live, so he
    // is blocked by their measure, needing their releases (j440, j410
    // 世帯単位). The neighbour, at another address, passes.
    assert_eq!(
        blocked(check(&r, &[a(1)], "clerk-2", SupportPurpose::Issue).await),
        vec![a(2), a(3)]
    );
    assert_eq!(
        check(&r, &[a(4)], "clerk-2", SupportPurpose::Issue)
            .await
            .unwrap(),
        Vec::<i64>::new()
    );
    assert_eq!(
        check(&r, &[], "clerk-2", SupportPurpose::Issue)
            .await
            .unwrap(),
        Vec::<i64>::new()
    );
    // The API answers 403 with a clear code, the same refusal for any of
    // them: it names nobody, so it cannot tell who is protected.
    let refusal = |e: ServiceError| {
        let api = ApiError::from(e);
        (
            api.status.as_u16(),
            api.body.code,
            api.body.message_ja,
            api.body.message_en,
        )
    };
    let whole = refusal(
        check(&r, &household, "clerk-2", SupportPurpose::Issue)
            .await
            .unwrap_err(),
    );
    assert_eq!((whole.0, whole.1.as_str()), (403, "support_measure_block"));
    for person in &household {
        let one = check(
            &r,
            std::slice::from_ref(person),
            "clerk-2",
            SupportPurpose::Issue,
        )
        .await
        .unwrap_err();
        assert_eq!(refusal(one), whole);
    }
    for p in [a(1), a(2), a(3)] {
        assert!(!whole.2.contains(p.as_str()) && !whole.3.contains(p.as_str()));
    }
    // Confirmed: still blocked. Cancelled/ended: passes again.
    r.support_confirm(&t, m.measure_id(), date(2020, 4, 1), None, &officer())
        .await
        .unwrap();
    assert_eq!(
        blocked(check(&r, &household, "clerk-2", SupportPurpose::View).await),
        vec![a(2), a(3)]
    );
    r.support_end(&t, m.measure_id(), EndReason::Requested, &officer())
        .await
        .unwrap();
    assert_eq!(
        check(&r, &household, "clerk-2", SupportPurpose::View)
            .await
            .unwrap(),
        Vec::<i64>::new()
    );
    // Measures are per tenant: 昭島市 knows nothing of 府中市's.
    let akishima = code(crate::support::AKISHIMA);
    let r2 = r.clone();
    let persons = vec![a(2)];
    let at = r.clock().now().timestamp_micros();
    let out = r2
        .store()
        .write(Some(&akishima.clone()), move |tx| {
            guard(
                tx,
                &akishima,
                &persons,
                &clerk("clerk-2"),
                SupportPurpose::View,
                at,
            )
        })
        .await
        .unwrap();
    assert!(out.is_empty());
}

async fn a_release_lets_exactly_one_request_through(db: TestDb) {
    let db = setup(db).await;
    let t = code(FUCHU);
    let r = on(&db, date(2020, 4, 1));
    r.support_register(&t, &request_a4(date(2020, 4, 1)), &officer())
        .await
        .unwrap();
    let rel = r
        .support_release(&t, &a(4), SupportPurpose::Issue, "clerk-2", &officer())
        .await
        .unwrap();
    assert_eq!(rel.granted_to, "clerk-2");
    assert_eq!(rel.released_by, "officer-1");
    assert_eq!(rel.used_at, None);
    assert!(rel.expires_at > rel.released_at);
    // The one request passes and uses the release …
    let used = check(&r, &[a(1), a(4)], "clerk-2", SupportPurpose::Issue)
        .await
        .unwrap();
    assert_eq!(used, vec![rel.release_id]);
    let after = r.support_releases_of(&t, &a(4), &officer()).await.unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].used_by.as_deref(), Some("clerk-2"));
    assert!(after[0].used_at.is_some());
    // … the next is blocked again.
    assert_eq!(
        blocked(check(&r, &[a(4)], "clerk-2", SupportPurpose::Issue).await),
        vec![a(4)]
    );

    // Two protected persons need a release each; with one only, the request
    // is blocked naming the other, and the one release stays unused.
    r.support_register(&t, &request(date(2020, 4, 1)), &officer())
        .await
        .unwrap();
    let r2 = r
        .support_release(&t, &a(2), SupportPurpose::Issue, "clerk-2", &officer())
        .await
        .unwrap();
    assert_eq!(
        blocked(check(&r, &[a(1), a(2), a(3)], "clerk-2", SupportPurpose::Issue).await),
        vec![a(3)]
    );
    let r3 = r
        .support_release(&t, &a(3), SupportPurpose::Issue, "clerk-2", &officer())
        .await
        .unwrap();
    let mut used = check(&r, &[a(1), a(2), a(3)], "clerk-2", SupportPurpose::Issue)
        .await
        .unwrap();
    used.sort();
    assert_eq!(used, vec![r2.release_id, r3.release_id]);
    assert_eq!(
        blocked(check(&r, &[a(2)], "clerk-2", SupportPurpose::Issue).await),
        vec![a(2)]
    );
}

async fn a_release_for_another_operator_or_purpose_does_not_help(db: TestDb) {
    let db = setup(db).await;
    let t = code(FUCHU);
    let r = on(&db, date(2020, 4, 1));
    r.support_register(&t, &request_a4(date(2020, 4, 1)), &officer())
        .await
        .unwrap();
    let rel = r
        .support_release(&t, &a(4), SupportPurpose::View, "clerk-2", &officer())
        .await
        .unwrap();
    // Another operator, another purpose: blocked, the release untouched.
    assert_eq!(
        blocked(check(&r, &[a(4)], "clerk-3", SupportPurpose::View).await),
        vec![a(4)]
    );
    assert_eq!(
        blocked(check(&r, &[a(4)], "clerk-2", SupportPurpose::Issue).await),
        vec![a(4)]
    );
    // Expired (j410: the release returns to blocking after its time).
    let short = r
        .support_release_for(
            &t,
            &a(4),
            SupportPurpose::Issue,
            "clerk-2",
            Duration::minutes(5),
            &officer(),
        )
        .await
        .unwrap();
    let later = Registry::new(
        db.store.clone(),
        EraTable::standard(),
        Clock::Fixed(r.clock().now() + Duration::minutes(6)),
    );
    assert_eq!(
        blocked(check(&later, &[a(4)], "clerk-2", SupportPurpose::Issue).await),
        vec![a(4)]
    );
    // The right operator and purpose, in time.
    assert_eq!(
        check(&r, &[a(4)], "clerk-2", SupportPurpose::View)
            .await
            .unwrap(),
        vec![rel.release_id]
    );
    assert_eq!(
        check(&r, &[a(4)], "clerk-2", SupportPurpose::Issue)
            .await
            .unwrap(),
        vec![short.release_id]
    );
    // A release for a person nobody protects, for nobody, or for too long: refused.
    let e = r
        .support_release(&t, &a(1), SupportPurpose::Issue, "clerk-2", &officer())
        .await
        .unwrap_err();
    assert_eq!(status_of(e), (409, "support_not_protected".into()));
    let e = r
        .support_release(&t, &a(4), SupportPurpose::Issue, " \u{7} ", &officer())
        .await
        .unwrap_err();
    assert_eq!(status_of(e), (400, "invalid_operator".into()));
    let e = r
        .support_release_for(
            &t,
            &a(4),
            SupportPurpose::Issue,
            "clerk-2",
            Duration::days(2),
            &officer(),
        )
        .await
        .unwrap_err();
    assert_eq!(status_of(e), (400, "invalid_release_validity".into()));
}

async fn racing_requests_use_a_release_once(db: TestDb) {
    let db = setup(db).await;
    let t = code(FUCHU);
    let r = on(&db, date(2020, 4, 1));
    r.support_register(&t, &request_a4(date(2020, 4, 1)), &officer())
        .await
        .unwrap();
    r.support_release(&t, &a(4), SupportPurpose::Issue, "clerk-2", &officer())
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let r = r.clone();
        tasks.push(tokio::spawn(async move {
            check(&r, &[a(4)], "clerk-2", SupportPurpose::Issue).await
        }));
    }
    let mut passed = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(ids) => {
                assert_eq!(ids.len(), 1);
                passed += 1;
            }
            Err(ServiceError::SupportBlocked { .. }) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(passed, 1);
}

async fn support_operations_are_audited(db: TestDb) {
    let db = setup(db).await;
    let t = code(FUCHU);
    let before = audit_log(&db.store).await.len();
    let r = on(&db, date(2021, 3, 1));
    let m = r
        .support_register(&t, &request(date(2020, 3, 25)), &officer())
        .await
        .unwrap();
    let id = m.measure_id();
    r.support_confirm(&t, id, date(2020, 4, 1), None, &officer())
        .await
        .unwrap();
    r.support_extend(&t, id, None, &officer()).await.unwrap();
    r.support_measure(&t, id, &officer()).await.unwrap();
    r.support_measures_of(&t, &a(3), &officer()).await.unwrap();
    r.support_active(&t, &officer()).await.unwrap();
    // A refused transition writes nothing.
    let n = audit_log(&db.store).await.len();
    assert!(
        r.support_confirm(&t, id, date(2020, 4, 1), None, &officer())
            .await
            .is_err()
    );
    assert_eq!(audit_log(&db.store).await.len(), n);
    let rel = r
        .support_release(&t, &a(2), SupportPurpose::View, "clerk-2", &officer())
        .await
        .unwrap();
    // The real read path with a release: the release is used and the read
    // logged after it, in the read's own transaction …
    let (row, _) = r
        .resident(&t, &a(2), AsOf::default(), &clerk("clerk-2"))
        .await
        .unwrap();
    assert_eq!(row.record.addressee_number, a(2));
    // … and without one the read is refused, the refusal logged, the read not.
    let e = r
        .household(&t, &h(1), AsOf::default(), &clerk("clerk-2"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, ServiceError::SupportBlocked { ref persons, purpose: SupportPurpose::View } if *persons == vec![a(2), a(3)])
    );
    r.support_end(&t, id, EndReason::Requested, &officer())
        .await
        .unwrap();

    let log = audit_log(&db.store).await;
    let ours: Vec<(&str, &str, &str)> = log[before..]
        .iter()
        .map(|e| {
            (
                e.entry.function.as_str(),
                e.entry.target.as_str(),
                e.entry.operator.as_str(),
            )
        })
        .collect();
    let both = format!("{},{}", a(2), a(3));
    let a2 = a(2).to_string();
    let a3 = a(3).to_string();
    assert_eq!(
        ours,
        vec![
            ("support.register", both.as_str(), "officer-1"),
            ("support.confirm", both.as_str(), "officer-1"),
            ("support.extend", both.as_str(), "officer-1"),
            ("support.view", both.as_str(), "officer-1"),
            ("support.list", a3.as_str(), "officer-1"),
            ("support.list_active", "*", "officer-1"),
            ("support.release", a2.as_str(), "officer-1"),
            ("support.release_used", a2.as_str(), "clerk-2"),
            ("read.resident", a2.as_str(), "clerk-2"),
            ("support.blocked", both.as_str(), "clerk-2"),
            ("support.end", both.as_str(), "officer-1"),
        ]
    );
    let used: serde_json::Value = serde_json::from_str(&log[before + 7].entry.detail).unwrap();
    assert_eq!(
        used,
        json!({"release_ids": [rel.release_id], "purpose": "view"})
    );
    let ext: serde_json::Value = serde_json::from_str(&log[before + 2].entry.detail).unwrap();
    assert_eq!(ext["end_date"], "2022-03-31");
    assert!(log.iter().all(|e| e.entry.terminal == "T-01"));
    // The chain still verifies.
    let verdict = r.verify_audit(&t).await.unwrap();
    assert_eq!(verdict.first_bad, None);
    assert_eq!(verdict.entries as usize, log.len());
}
