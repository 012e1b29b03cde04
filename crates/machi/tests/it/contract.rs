//! The storage contract: the same scenarios against SQLite and PostgreSQL.

use chrono::NaiveDate;
use machi::service::registry::SearchParams;
use machi::service::{Actor, Registry, ServiceError};
use machi::store::records::{self, GENESIS_HASH};
use machi::store::{Param, Store, StoreError};
use machi_domain::change::{AsOf, ChangeError, ChangeRequest};
use machi_domain::ids::{AddresseeNumber, HouseholdNumber};
use machi_domain::model::ResidentStatus;
use serde_json::json;

use crate::support::{AKISHIMA, FUCHU, TestDb, code};

/// A valid 個人番号 used only where a test looks for it in raw rows.
pub const MY_NUMBER: &str = "123456789018";

fn actor() -> Actor {
    Actor {
        operator: "clerk-1".into(),
        terminal: "T-01".into(),
    }
}

fn req(v: serde_json::Value) -> ChangeRequest {
    serde_json::from_value(v).expect("request")
}

pub fn person(name: &str, kana: &str, birth: &str, sex: &str, rel: &str) -> serde_json::Value {
    json!({"name": name, "name_kana": kana, "birth_date": birth, "sex": sex, "relationship": rel})
}

pub fn move_in(persons: Vec<serde_json::Value>, address: &str) -> serde_json::Value {
    json!({"effective_date": "2024-04-01", "filed_on": "2024-04-01", "input_place": "市民課窓口", "input_terminal": "T-01",
        "command": {"type": "move_in", "persons": persons, "previous_address": "東京都調布市小島町二丁目",
            "household": {"type": "new", "address": {"address": address, "annex": "府中ハイツ101", "postal_code": "183-0056"}}}})
}

pub fn takahashi_family() -> serde_json::Value {
    move_in(
        vec![
            person(
                "髙橋　一郎",
                "タカハシ　イチロウ",
                "昭和64年1月7日",
                "male",
                "世帯主",
            ),
            person(
                "髙橋　京子",
                "タカハシ　キョウコ",
                "平成元年1月8日",
                "female",
                "妻",
            ),
            person("髙橋　翔", "タカハシ　ショウ", "2015-06-01", "male", "子"),
        ],
        "東京都府中市宮西町二丁目24番地",
    )
}

fn a(n: u64) -> AddresseeNumber {
    AddresseeNumber::from_serial(n).unwrap()
}

fn h(n: u64) -> HouseholdNumber {
    HouseholdNumber::from_serial(n).unwrap()
}

/// (history rows, changes, audit entries, events) of a tenant.
pub async fn counts(store: &Store, tenant: &str) -> (i64, i64, i64, i64) {
    let t = code(tenant);
    let scope = t.clone();
    store
        .read(Some(&scope), move |tx| {
            let mut out = [0i64; 4];
            for (i, table) in ["resident_history", "changes", "audit_log", "outbox"]
                .iter()
                .enumerate()
            {
                // Audit entries of changes (reads have entries of their own).
                let extra = if *table == "audit_log" {
                    " AND function LIKE 'change.%'"
                } else {
                    ""
                };
                let sql = format!("SELECT COUNT(*) FROM {table} WHERE tenant = $1{extra}");
                out[i] = tx.query_one(&sql, &[Param::Text(t.as_str())])?.int(0)?;
            }
            Ok::<_, StoreError>((out[0], out[1], out[2], out[3]))
        })
        .await
        .unwrap()
}

macro_rules! contract {
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

contract!(
    tenants_are_created_once_and_listed,
    migrations_are_versioned_and_rerun_safely,
    a_move_in_appends_history_audit_and_outbox_in_one_commit,
    every_change_type_round_trips,
    a_refused_change_writes_nothing,
    history_answers_as_of_effective_date_and_as_recorded,
    search_folds_names_and_finds_past_addresses,
    tenants_are_isolated_in_the_storage_api,
    a_returning_resident_keeps_the_addressee_number_j600,
    the_audit_chain_verifies,
    concurrent_changes_lose_nothing,
    a_change_that_fails_midway_stores_none_of_it,
);

async fn tenants_are_created_once_and_listed(db: TestDb) {
    let r = &db.registry;
    let t = r
        .create_tenant(code(FUCHU), "府中市", "東京都")
        .await
        .unwrap();
    assert_eq!(t.name, "府中市");
    assert!(matches!(
        r.create_tenant(code(FUCHU), "府中市", "東京都").await,
        Err(ServiceError::TenantExists(_))
    ));
    r.create_tenant(code(AKISHIMA), "昭島市", "東京都")
        .await
        .unwrap();
    let all = r.tenants().await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(r.tenant(&code(AKISHIMA)).await.unwrap().name, "昭島市");
    assert!(matches!(
        r.tenant(&code("131202")).await,
        Err(ServiceError::TenantNotFound(_))
    ));
}

async fn migrations_are_versioned_and_rerun_safely(db: TestDb) {
    let applied = db.store.applied_migrations().await.unwrap();
    let versions: Vec<i64> = applied.iter().map(|m| m.0).collect();
    // Every version from 1 on, none skipped (7: support measures).
    assert!(versions.len() >= 7, "{versions:?}");
    let last = versions.last().copied().unwrap_or(0);
    assert_eq!(versions, (1..=last).collect::<Vec<i64>>());
    // Opening the same database again applies nothing twice.
    let again = Store::connect(&db.location().await, db.store.keyring())
        .await
        .unwrap();
    assert_eq!(
        again.applied_migrations().await.unwrap().len(),
        versions.len()
    );
}

async fn a_move_in_appends_history_audit_and_outbox_in_one_commit(db: TestDb) {
    let db = db.with_tenants().await;
    let r = &db.registry;
    let out = r
        .submit(&code(FUCHU), &req(takahashi_family()), &actor())
        .await
        .unwrap();
    assert_eq!(out.rows.len(), 3);
    assert!(out.rows.iter().all(|row| row.history_number == 1));
    // The numbers the store produced, as stored: the first serials of the
    // tenant, each with a valid check digit, and as the change answered.
    let t = code(FUCHU);
    let stored: Vec<(String, i64, String)> = db
        .store
        .read(Some(&t.clone()), move |tx| {
            tx.query(
                "SELECT addressee_number, history_number, household_number FROM resident_history \
                 WHERE tenant = $1 ORDER BY addressee_number",
                &[Param::Text(t.as_str())],
            )?
            .iter()
            .map(|r| Ok((r.text(0)?, r.int(1)?, r.text(2)?)))
            .collect::<Result<_, StoreError>>()
        })
        .await
        .unwrap();
    let answered: Vec<(String, i64, String)> = out
        .rows
        .iter()
        .map(|r| {
            (
                r.record.addressee_number.to_string(),
                r.history_number,
                r.record.household_number.to_string(),
            )
        })
        .collect();
    assert_eq!(stored, answered);
    for (addressee, _, household) in &stored {
        let addressee: AddresseeNumber = addressee.parse().unwrap();
        let household: HouseholdNumber = household.parse().unwrap();
        assert!(addressee.has_valid_check_digit(), "{addressee}");
        assert!(household.has_valid_check_digit(), "{household}");
    }
    let serials = |n: u64| (a(n).to_string(), 1, h(1).to_string());
    assert_eq!(stored, vec![serials(1), serials(2), serials(3)]);
    assert_eq!(counts(&db.store, FUCHU).await, (3, 1, 1, 1));
    assert_eq!(counts(&db.store, AKISHIMA).await, (0, 0, 0, 0));
    let (row, history) = r
        .resident(&code(FUCHU), &a(1), AsOf::default(), &clerk())
        .await
        .unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(row.record.name.as_str(), "髙橋　一郎");
    assert_eq!(
        row.record.birth_date.display_wareki(r.eras()),
        "昭和64年1月7日"
    );
    assert_eq!(row.change.input_place, "市民課窓口");
    let members = r
        .household(&code(FUCHU), &h(1), AsOf::default(), &clerk())
        .await
        .unwrap();
    assert_eq!(members.len(), 3);
    let events = r.events(&code(FUCHU), 0, 10, &clerk()).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event_id, format!("{FUCHU}-1"));
    assert_eq!(events[0].payload["reason"], "move_in");
}

async fn submit(r: &Registry, v: serde_json::Value) -> machi::service::registry::ChangeOutcome {
    r.submit(&code(FUCHU), &req(v.clone()), &actor())
        .await
        .unwrap_or_else(|e| panic!("{e}: {v}"))
}

async fn every_change_type_round_trips(db: TestDb) {
    let db = db.with_tenants().await;
    let r = &db.registry;
    submit(r, takahashi_family()).await; // a1..a3, h1
    // 国外転入: a4, h2
    submit(r, json!({"effective_date": "2024-05-01", "command": {"type": "move_in_from_abroad",
        "previous_address": "アメリカ合衆国", "persons": [person("佐藤　花子", "サトウ　ハナコ", "1990-02-03", "female", "世帯主")],
        "household": {"type": "new", "address": {"address": "東京都府中市寿町一丁目1番地"}}}})).await;
    // 出生 into h1: a5
    let out = submit(r, json!({"effective_date": "2024-06-01", "command": {"type": "birth", "household_number": h(1).to_string(),
        "person": person("髙橋　凛", "タカハシ　リン", "2024-06-01", "female", "子")}})).await;
    assert_eq!(
        out.rows[0].record.head_name.as_ref().unwrap().as_str(),
        "髙橋　一郎"
    );
    // 職権記載 into a new household: a6, h3
    submit(
        r,
        json!({"effective_date": "2024-06-02", "command": {"type": "ex_officio_entry",
        "person": person("田中　誠", "タナカ　マコト", "1960-01-01", "male", "世帯主"),
        "household": {"type": "new", "address": {"address": "東京都府中市本町一丁目"}}}}),
    )
    .await;
    // 転居 of the whole household h1.
    let ids = |ns: &[u64]| ns.iter().map(|n| a(*n).to_string()).collect::<Vec<_>>();
    submit(r, json!({"effective_date": "2024-07-01", "command": {"type": "move_within", "persons": ids(&[1, 2, 3, 5]),
        "address": {"address": "東京都府中市緑町三丁目5番地"}}})).await;
    // 世帯分離 of a3 (new household h4 at the same address).
    submit(
        r,
        json!({"effective_date": "2024-08-01", "command": {"type": "household_split",
        "relationships": [{"addressee_number": a(3).to_string(), "relationship": "世帯主"}]}}),
    )
    .await;
    assert_eq!(
        r.resident(&code(FUCHU), &a(3), AsOf::default(), &clerk())
            .await
            .unwrap()
            .0
            .record
            .household_number,
        h(4)
    );
    // 世帯合併: h4 back into h1.
    submit(
        r,
        json!({"effective_date": "2024-09-01", "command": {"type": "household_merge",
        "from_household": h(4).to_string(), "into_household": h(1).to_string(),
        "relationships": [{"addressee_number": a(3).to_string(), "relationship": "子"}]}}),
    )
    .await;
    // 世帯分離 then 世帯変更 of a5 into h1's split-off household.
    submit(
        r,
        json!({"effective_date": "2024-09-02", "command": {"type": "household_split",
        "relationships": [{"addressee_number": a(3).to_string(), "relationship": "世帯主"}]}}),
    )
    .await; // h5
    submit(
        r,
        json!({"effective_date": "2024-09-03", "command": {"type": "household_transfer",
        "into_household": h(5).to_string(),
        "relationships": [{"addressee_number": a(5).to_string(), "relationship": "妹"}]}}),
    )
    .await;
    // 世帯主変更 in h1.
    submit(
        r,
        json!({"effective_date": "2024-10-01", "command": {"type": "head_change",
        "household_number": h(1).to_string(), "new_head": a(2).to_string(),
        "relationships": [{"addressee_number": a(1).to_string(), "relationship": "夫"}]}}),
    )
    .await;
    // 職権修正 and 誤記修正
    submit(
        r,
        json!({"effective_date": "2024-10-02", "command": {"type": "ex_officio_correction",
        "person": a(6).to_string(), "patch": {"address_annex": "本町ビル3階"}}}),
    )
    .await;
    submit(
        r,
        json!({"effective_date": "2024-10-03", "command": {"type": "clerical_correction",
        "person": a(4).to_string(), "patch": {"birth_date": "1990-02-04"}}}),
    )
    .await;
    // 国内転出 (planned, future date) and 国外転出
    submit(r, json!({"effective_date": "2099-01-31", "command": {"type": "move_out", "persons": ids(&[3, 5]),
        "destination": {"address": "東京都昭島市田中町一丁目"}}})).await;
    submit(r, json!({"effective_date": "2024-11-01", "command": {"type": "move_out_abroad", "persons": ids(&[4]),
        "destination": {"address": "大韓民国ソウル特別市"}}})).await;
    // 死亡 and 職権消除
    submit(r, json!({"effective_date": "2024-11-02", "command": {"type": "death", "person": a(1).to_string()}})).await;
    let removal = submit(r, json!({"effective_date": "2024-11-03", "command": {"type": "ex_officio_removal", "person": a(6).to_string()}})).await;
    // 異動の取消し of the removal.
    submit(r, json!({"effective_date": "", "command": {"type": "cancel", "change_id": removal.change_id}})).await;
    let (row, history) = r
        .resident(&code(FUCHU), &a(6), AsOf::default(), &clerk())
        .await
        .unwrap();
    assert_eq!(row.record.status, ResidentStatus::Resident);
    assert_eq!(history.len(), 4);
    assert_eq!(
        history
            .iter()
            .map(|h| h.change.reason.code())
            .collect::<Vec<_>>(),
        vec![
            "ex_officio_entry",
            "ex_officio_correction",
            "ex_officio_removal",
            "cancellation_entry"
        ]
    );
    let (row, _) = r
        .resident(&code(FUCHU), &a(1), AsOf::default(), &clerk())
        .await
        .unwrap();
    assert_eq!(row.record.status, ResidentStatus::Deceased);
    let (row, _) = r
        .resident(&code(FUCHU), &a(3), AsOf::default(), &clerk())
        .await
        .unwrap();
    assert_eq!(row.record.status, ResidentStatus::MovedOut);
    // 転出 planned for 2099: as of today the person is still in the household.
    let today = r.today();
    let (row, _) = r
        .resident(
            &code(FUCHU),
            &a(3),
            AsOf {
                effective: Some(today),
                recorded_at: None,
            },
            &clerk(),
        )
        .await
        .unwrap();
    assert_eq!(row.record.status, ResidentStatus::Resident);
    // Every change: one audit entry and one event.
    let (_, changes, audit, events) = counts(&db.store, FUCHU).await;
    assert_eq!(changes, 17);
    assert_eq!((audit, events), (17, 17));
    let (list, more) = r.changes(&code(FUCHU), None, 100, &clerk()).await.unwrap();
    assert_eq!(list.len(), 17);
    assert!(!more);
    let newest = list[0].shown().expect("nobody is protected: shown");
    assert_eq!(newest.reason.code(), "cancellation_entry");
    assert_eq!(newest.cancels, Some(removal.change_id));
}

async fn a_refused_change_writes_nothing(db: TestDb) {
    let db = db.with_tenants().await;
    let r = &db.registry;
    submit(r, takahashi_family()).await;
    let before = counts(&db.store, FUCHU).await;
    let bad = [
        // The head leaves two remaining members (j490).
        json!({"effective_date": "2024-11-02", "command": {"type": "death", "person": a(1).to_string()}}),
        // A person who does not exist.
        json!({"effective_date": "2024-11-02", "command": {"type": "death", "person": a(99).to_string()}}),
        // A bad My Number check digit.
        move_in(
            vec![
                json!({"name": "山田　太郎", "name_kana": "ヤマダ　タロウ", "birth_date": "1980-01-01",
            "sex": "male", "relationship": "世帯主", "my_number": "123456789012"}),
            ],
            "府中市",
        ),
        // A date that is not one.
        json!({"effective_date": "令和99年13月1日", "command": {"type": "death", "person": a(3).to_string()}}),
        // Cancelling a change that does not exist.
        json!({"effective_date": "", "command": {"type": "cancel", "change_id": 42}}),
    ];
    for b in bad {
        let e = r.submit(&code(FUCHU), &req(b.clone()), &actor()).await;
        assert!(matches!(e, Err(ServiceError::Change(_))), "{b}: {e:?}");
    }
    assert_eq!(counts(&db.store, FUCHU).await, before);
    // The allocated numbers were not consumed either: the next person is a4.
    let out = submit(
        r,
        move_in(
            vec![person(
                "山田　太郎",
                "ヤマダ　タロウ",
                "1980-01-01",
                "male",
                "世帯主",
            )],
            "府中市",
        ),
    )
    .await;
    assert_eq!(out.rows[0].record.addressee_number, a(4));
    assert_eq!(out.rows[0].record.household_number, h(2));
}

async fn history_answers_as_of_effective_date_and_as_recorded(db: TestDb) {
    let db = db.with_tenants().await;
    let r = &db.registry;
    submit(
        r,
        move_in(
            vec![person(
                "青木　太郎",
                "アオキ　タロウ",
                "平成15年1月7日",
                "male",
                "世帯主",
            )],
            "松町１番地",
        ),
    )
    .await;
    let moved = submit(
        r,
        json!({"effective_date": "2024-06-01", "command": {"type": "move_within",
        "persons": [a(1).to_string()], "address": {"address": "松町８番地"}}}),
    )
    .await;
    let recorded_move = moved.rows[0].change.recorded_at;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    submit(
        r,
        json!({"effective_date": "", "command": {"type": "cancel", "change_id": moved.change_id}}),
    )
    .await;
    let day = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
    let addr = |row: &machi_domain::change::HistoryRow| row.record.address.address.clone();
    let t = code(FUCHU);
    // Now: the move was cancelled.
    assert_eq!(
        addr(
            &r.resident(&t, &a(1), AsOf::default(), &clerk())
                .await
                .unwrap()
                .0
        ),
        "松町１番地"
    );
    // On 2024-07-01 as the registry says now: still 松町１番地.
    let now_view = AsOf {
        effective: Some(day("2024-07-01")),
        recorded_at: None,
    };
    assert_eq!(
        addr(&r.resident(&t, &a(1), now_view, &clerk()).await.unwrap().0),
        "松町１番地"
    );
    // On 2024-07-01 as the registry said right after the move was recorded.
    let then_view = AsOf {
        effective: Some(day("2024-07-01")),
        recorded_at: Some(recorded_move),
    };
    let (row, history) = r.resident(&t, &a(1), then_view, &clerk()).await.unwrap();
    assert_eq!(addr(&row), "松町８番地");
    assert_eq!(history.len(), 2);
    // Before the move-in there is no record.
    let before = AsOf {
        effective: Some(day("2024-03-31")),
        recorded_at: None,
    };
    assert!(matches!(
        r.resident(&t, &a(1), before, &clerk()).await,
        Err(ServiceError::NotRecordedAsOf(_))
    ));
    // Household as of a date.
    let members = r.household(&t, &h(1), then_view, &clerk()).await.unwrap();
    assert_eq!(members.len(), 1);
}

async fn search_folds_names_and_finds_past_addresses(db: TestDb) {
    let db = db.with_tenants().await;
    let r = &db.registry;
    submit(r, takahashi_family()).await;
    submit(
        r,
        move_in(
            vec![person(
                "渡邊　恵子",
                "ワタナベ　ケイコ",
                "1950-05-05",
                "female",
                "世帯主",
            )],
            "東京都府中市寿町一丁目",
        ),
    )
    .await;
    submit(
        r,
        json!({"effective_date": "2024-06-01", "command": {"type": "move_within",
        "persons": [a(4).to_string()], "address": {"address": "東京都府中市本町三丁目"}}}),
    )
    .await;
    let t = code(FUCHU);
    let t = &t;
    let find = |p: SearchParams| async move { r.search(t, &p, &clerk()).await.unwrap().rows };
    let by_name = |n: &str| SearchParams {
        name: Some(n.into()),
        limit: 50,
        ..Default::default()
    };
    assert_eq!(find(by_name("高橋")).await.len(), 3);
    assert_eq!(find(by_name("たかはし")).await.len(), 3);
    assert_eq!(find(by_name("ﾀｶﾊｼ ｷｮｳｺ")).await.len(), 1);
    assert_eq!(find(by_name("キヨウコ")).await.len(), 1);
    assert_eq!(find(by_name("渡辺")).await.len(), 1);
    assert_eq!(find(by_name("京子")).await.len(), 1);
    assert_eq!(find(by_name("佐藤")).await.len(), 0);
    let by_birth = SearchParams {
        birth_date: Some("平成元年1月8日".into()),
        limit: 50,
        ..Default::default()
    };
    assert_eq!(find(by_birth).await[0].record.name.as_str(), "髙橋　京子");
    let by_old_address = SearchParams {
        address: Some("寿町".into()),
        limit: 50,
        ..Default::default()
    };
    assert_eq!(find(by_old_address.clone()).await.len(), 0);
    let with_history = SearchParams {
        include_history: true,
        ..by_old_address
    };
    assert_eq!(
        find(with_history).await[0].record.address.address,
        "東京都府中市本町三丁目"
    );
    let by_household = SearchParams {
        household_number: Some(h(1).to_string()),
        limit: 2,
        ..Default::default()
    };
    let page = r.search(t, &by_household, &clerk()).await.unwrap();
    assert_eq!(page.rows.len(), 2);
    let next = page.next_after.expect("more");
    let page2 = r
        .search(
            t,
            &SearchParams {
                after: Some(machi::service::registry::encode_cursor(&next)),
                ..by_household
            },
            &clerk(),
        )
        .await
        .unwrap();
    assert_eq!(page2.rows.len(), 1);
    assert!(page2.next_after.is_none());
    assert!(matches!(
        r.search(t, &SearchParams::default(), &clerk()).await,
        Err(ServiceError::Invalid { .. })
    ));
}

async fn tenants_are_isolated_in_the_storage_api(db: TestDb) {
    let db = db.with_tenants().await;
    let r = &db.registry;
    submit(r, takahashi_family()).await;
    let other = code(AKISHIMA);
    assert!(matches!(
        r.resident(&other, &a(1), AsOf::default(), &clerk()).await,
        Err(ServiceError::PersonNotFound(_))
    ));
    assert!(matches!(
        r.household(&other, &h(1), AsOf::default(), &clerk()).await,
        Err(ServiceError::HouseholdNotFound(_))
    ));
    let p = SearchParams {
        name: Some("高橋".into()),
        limit: 50,
        ..Default::default()
    };
    assert!(
        r.search(&other, &p, &clerk())
            .await
            .unwrap()
            .rows
            .is_empty()
    );
    assert!(r.events(&other, 0, 10, &clerk()).await.unwrap().is_empty());
    // A change in 昭島市 naming 府中市's person finds nobody.
    let e = r
        .submit(&other, &req(json!({"effective_date": "2024-11-02", "command": {"type": "death", "person": a(3).to_string()}})), &actor())
        .await;
    assert!(matches!(
        e,
        Err(ServiceError::Change(ChangeError::PersonNotFound(_)))
    ));
    // Numbering is per tenant: 昭島市's first person is a1 too.
    let out = r
        .submit(&other, &req(takahashi_family()), &actor())
        .await
        .unwrap();
    assert_eq!(out.rows[0].record.addressee_number, a(1));
}

async fn a_returning_resident_keeps_the_addressee_number_j600(db: TestDb) {
    let db = db.with_tenants().await;
    let r = &db.registry;
    let mut p = person("鈴木　誠", "スズキ　マコト", "1985-01-01", "male", "世帯主");
    p["my_number"] = json!("123456789018");
    p["resident_code"] = json!("12345678901");
    submit(r, move_in(vec![p.clone()], "府中市本町一丁目")).await;
    // The same 個人番号 while still a resident: refused.
    let e = r
        .submit(
            &code(FUCHU),
            &req(move_in(vec![p.clone()], "府中市本町二丁目")),
            &actor(),
        )
        .await;
    assert!(
        matches!(
            e,
            Err(ServiceError::Change(ChangeError::DuplicateIdentity(..)))
        ),
        "{e:?}"
    );
    submit(r, json!({"effective_date": "2024-05-01", "command": {"type": "move_out", "persons": [a(1).to_string()],
        "destination": {"address": "東京都昭島市"}}})).await;
    // Two newcomers claiming the same former resident's identity: refused.
    let twice = move_in(vec![p.clone(), p.clone()], "府中市本町三丁目");
    let e = r.submit(&code(FUCHU), &req(twice), &actor()).await;
    assert!(
        matches!(
            e,
            Err(ServiceError::Change(ChangeError::DuplicateIdentity(..)))
        ),
        "{e:?}"
    );
    let out = submit(r, move_in(vec![p], "府中市本町三丁目")).await;
    assert_eq!(out.rows[0].record.addressee_number, a(1));
    assert_eq!(out.rows[0].history_number, 3);
}

async fn the_audit_chain_verifies(db: TestDb) {
    let db = db.with_tenants().await;
    let r = &db.registry;
    submit(r, takahashi_family()).await;
    submit(r, json!({"effective_date": "2024-07-01", "command": {"type": "move_within",
        "persons": [a(1).to_string(), a(2).to_string(), a(3).to_string()], "address": {"address": "府中市緑町"}}})).await;
    let t = code(FUCHU);
    let t2 = t.clone();
    let entries = db
        .store
        .read(Some(&t), move |tx| records::audit_entries(tx, &t2, 0, 100))
        .await
        .unwrap();
    assert_eq!(entries.len(), 2);
    let mut prev = GENESIS_HASH.to_string();
    for e in &entries {
        assert_eq!(e.prev_hash, prev);
        assert_eq!(
            records::audit_hash(&t, e.seq, e.at, &prev, &e.entry),
            e.hash
        );
        prev = e.hash.clone();
    }
    assert_eq!(entries[0].entry.function, "change.move_in");
    assert_eq!(entries[0].entry.operator, "clerk-1");
}

async fn concurrent_changes_lose_nothing(db: TestDb) {
    let db = db.with_tenants().await;
    let r = db.registry.clone();
    submit(&r, takahashi_family()).await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let r = r.clone();
        tasks.push(tokio::spawn(async move {
            let v = json!({"effective_date": "2024-07-01", "command": {"type": "clerical_correction",
                "person": a(3).to_string(), "patch": {"name": format!("髙橋　翔{i}")}}});
            r.submit(&code(FUCHU), &req(v), &actor()).await
        }));
    }
    // What each committed change said it wrote: (change id, 履歴番号, name).
    let mut committed = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await.unwrap() {
            Ok(out) => {
                assert_eq!(out.rows.len(), 1);
                let row = &out.rows[0];
                assert_eq!(row.record.addressee_number, a(3));
                assert_eq!(row.record.name.as_str(), format!("髙橋　翔{i}"));
                committed.push((out.change_id, row.history_number, format!("髙橋　翔{i}")));
            }
            Err(ServiceError::Store(StoreError::Conflict)) => {}
            Err(e) => panic!("{e}"),
        }
    }
    // A conflict is answered, never silent; but not every change may conflict.
    assert!(!committed.is_empty(), "every concurrent change conflicted");
    let ok = committed.len();
    let (_, history) = r
        .resident(&code(FUCHU), &a(3), AsOf::default(), &clerk())
        .await
        .unwrap();
    // Every committed change is stored as it was answered, nothing else is,
    // and the 履歴番号 run without gaps.
    let mut stored: Vec<(i64, i64, String)> = history[1..]
        .iter()
        .map(|h| {
            (
                h.change.change_id,
                h.history_number,
                h.record.name.as_str().to_string(),
            )
        })
        .collect();
    stored.sort();
    committed.sort();
    assert_eq!(stored, committed);
    assert_eq!(
        history.iter().map(|h| h.history_number).collect::<Vec<_>>(),
        (1..=1 + ok as i64).collect::<Vec<_>>()
    );
    let (_, changes, audit, events) = counts(&db.store, FUCHU).await;
    assert_eq!(
        (changes, audit, events),
        (1 + ok as i64, 1 + ok as i64, 1 + ok as i64)
    );
    // The recorded changes are the committed ones.
    let t = code(FUCHU);
    let ids: Vec<i64> = db
        .store
        .read(Some(&t.clone()), move |tx| {
            tx.query(
                "SELECT change_id FROM changes WHERE tenant = $1 ORDER BY change_id",
                &[Param::Text(t.as_str())],
            )?
            .iter()
            .map(|r| r.int(0))
            .collect::<Result<_, StoreError>>()
        })
        .await
        .unwrap();
    let mut expected: Vec<i64> = std::iter::once(1)
        .chain(committed.iter().map(|c| c.0))
        .collect();
    expected.sort();
    assert_eq!(ids, expected);
}

/// A change of three persons whose third row breaks a key of the store:
/// the first two rows were written when it failed, and none of it stays,
/// nor the numbers it took.
async fn a_change_that_fails_midway_stores_none_of_it(db: TestDb) {
    let db = db.with_tenants().await;
    // A stray row where the third new person's first row will go (as
    // someone with database access could leave one).
    db.raw(&format!(
        "INSERT INTO resident_history (tenant, addressee_number, history_number, change_id, \
         household_number, status, name_key, kana_key, address_key, record, reason, effective_date, \
         processed_on, input_place, input_terminal, recorded_at) \
         VALUES ('{FUCHU}', '{}', 1, 99, '{}', 'resident', '', '', '', '{{}}', 'move_in', \
         '2024-04-01', '2024-04-01', '', '', 0)",
        a(3),
        h(9)
    ))
    .await;
    let before = db.raw_dump().await;
    let e = db
        .registry
        .submit(&code(FUCHU), &req(takahashi_family()), &actor())
        .await
        .unwrap_err();
    assert!(
        matches!(e, ServiceError::Store(ref s) if s.is_unique_violation()),
        "{e:?}"
    );
    // Every table as it was: no row of the first two persons, no change,
    // audit entry or event, the sequences not advanced.
    assert_eq!(db.raw_dump().await, before);
    // Without the stray row the same change goes through, with the same numbers.
    db.raw(&format!(
        "DELETE FROM resident_history WHERE tenant = '{FUCHU}' AND change_id = 99"
    ))
    .await;
    let out = submit(&db.registry, takahashi_family()).await;
    let numbers: Vec<(AddresseeNumber, i64)> = out
        .rows
        .iter()
        .map(|r| (r.record.addressee_number.clone(), r.history_number))
        .collect();
    assert_eq!(numbers, vec![(a(1), 1), (a(2), 1), (a(3), 1)]);
    assert_eq!((out.change_id, out.audit_seq, out.event_seq), (1, 1, 1));
}

mod audit_chain {
    use machi::service::audit::ChainProblem;

    use super::*;

    async fn verdict(db: &TestDb) -> Option<(i64, ChainProblem)> {
        db.registry
            .verify_audit(&code(FUCHU))
            .await
            .unwrap()
            .first_bad
    }

    async fn tampering_is_found_and_named(db: TestDb) {
        let db = db.with_tenants().await;
        let r = &db.registry;
        submit(r, takahashi_family()).await;
        for d in ["2024-05-01", "2024-06-01", "2024-07-01", "2024-08-01"] {
            submit(r, json!({"effective_date": d, "command": {"type": "move_within",
                "persons": [a(1).to_string(), a(2).to_string(), a(3).to_string()], "address": {"address": format!("府中市{d}")}}}))
            .await;
        }
        let v = r.verify_audit(&code(FUCHU)).await.unwrap();
        assert_eq!((v.entries, v.first_bad), (5, None));
        let t = FUCHU;
        db.raw(&format!(
            "UPDATE audit_log SET detail = '{{}}' WHERE tenant = '{t}' AND seq = 2"
        ))
        .await;
        assert_eq!(verdict(&db).await, Some((2, ChainProblem::Altered)));
        db.raw(&format!(
            "UPDATE audit_log SET detail = '{{\"change_id\":2}}' WHERE tenant = '{t}' AND seq = 2"
        ))
        .await;
        assert_eq!(verdict(&db).await, None);
        db.raw(&format!(
            "UPDATE audit_log SET seq = 30 WHERE tenant = '{t}' AND seq = 3; \
             UPDATE audit_log SET seq = 3 WHERE tenant = '{t}' AND seq = 4; \
             UPDATE audit_log SET seq = 4 WHERE tenant = '{t}' AND seq = 30;"
        ))
        .await;
        assert_eq!(verdict(&db).await, Some((3, ChainProblem::Unlinked)));
        db.raw(&format!(
            "UPDATE audit_log SET seq = 30 WHERE tenant = '{t}' AND seq = 3; \
             UPDATE audit_log SET seq = 3 WHERE tenant = '{t}' AND seq = 4; \
             UPDATE audit_log SET seq = 4 WHERE tenant = '{t}' AND seq = 30;"
        ))
        .await;
        assert_eq!(verdict(&db).await, None);
        db.raw(&format!(
            "DELETE FROM audit_log WHERE tenant = '{t}' AND seq = 5"
        ))
        .await;
        assert_eq!(verdict(&db).await, Some((5, ChainProblem::Truncated)));
        db.raw(&format!(
            "DELETE FROM audit_log WHERE tenant = '{t}' AND seq = 2"
        ))
        .await;
        assert_eq!(verdict(&db).await, Some((2, ChainProblem::Missing)));
    }

    contract!(tampering_is_found_and_named);
}

/// The operator of the tests' reads (each writes an access-log entry).
pub fn clerk() -> machi::service::Actor {
    machi::service::Actor::system("test-clerk")
}

/// 個人番号 at rest: sealed in the stored rows, keyed lookups, typed errors.
mod my_number_at_rest {
    use machi::crypto::{Keyring, MasterKey, SealError};
    use machi::service::ServiceError;

    use super::*;

    /// The cells of raw rows holding `needle`, as `table: cell`.
    async fn cells_containing(db: &TestDb, needle: &str) -> Vec<String> {
        let mut found = Vec::new();
        for (table, rows) in db.raw_dump().await {
            for row in rows {
                for cell in row.into_iter().flatten() {
                    if cell.contains(needle) {
                        found.push(format!("{table}: {cell}"));
                    }
                }
            }
        }
        found
    }

    /// The raw `(record, my_number_key)` of history rows of a person.
    async fn raw_history(db: &TestDb, tenant: &str, person: &str) -> Vec<(String, Option<String>)> {
        let mut out = Vec::new();
        for (table, rows) in db.raw_dump().await {
            if table != "resident_history" {
                continue;
            }
            for row in rows {
                let text: Vec<String> = row.iter().map(|c| c.clone().unwrap_or_default()).collect();
                if text.first().map(String::as_str) == Some(tenant)
                    && text.get(1).map(String::as_str) == Some(person)
                {
                    // The record is the JSON object cell; the key is 64 hex digits.
                    let record = text.iter().find(|c| c.starts_with('{')).cloned().unwrap();
                    let key = text
                        .iter()
                        .find(|c| c.len() == 64 && c.bytes().all(|b| b.is_ascii_hexdigit()))
                        .cloned();
                    out.push((record, key));
                }
            }
        }
        out
    }

    fn with_number() -> serde_json::Value {
        let mut p = person("鈴木　誠", "スズキ　マコト", "1985-01-01", "male", "世帯主");
        p["my_number"] = json!(MY_NUMBER);
        p
    }

    async fn the_plain_number_is_nowhere_in_the_database(db: TestDb) {
        let db = db.with_tenants().await;
        let r = &db.registry;
        let req_json = move_in(vec![with_number()], "府中市本町一丁目");
        let out = submit(r, req_json.clone()).await;
        assert_eq!(
            out.rows[0].record.my_number.as_ref().unwrap().as_str(),
            MY_NUMBER
        );
        // The same person in another tenant: keys of its own.
        r.submit(&code(AKISHIMA), &req(req_json), &actor())
            .await
            .unwrap();

        let found = cells_containing(&db, MY_NUMBER).await;
        assert!(
            found.is_empty(),
            "plain 個人番号 in the database: {found:?}"
        );

        // The stored record holds the sealed number instead.
        let fuchu = raw_history(&db, FUCHU, a(1).as_str()).await;
        let akishima = raw_history(&db, AKISHIMA, a(1).as_str()).await;
        let (record, key) = &fuchu[0];
        let stored: serde_json::Value = serde_json::from_str(record).unwrap();
        assert!(stored.get("my_number").is_none(), "{record}");
        let sealed = stored["my_number_sealed"].as_str().unwrap();
        assert!(sealed.starts_with("v1:"), "{sealed}");
        // The lookup key is keyed: not the old unkeyed hash, and per tenant.
        let key = key.clone().expect("my_number_key");
        let unkeyed = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(format!("{FUCHU}:{MY_NUMBER}")))
        };
        assert_ne!(key, unkeyed);
        assert_ne!(Some(key.clone()), akishima[0].1);
        assert_ne!(record, &akishima[0].0);
        // The projection keys the person the same way as the history row.
        let current: Vec<String> = db
            .raw_dump()
            .await
            .into_iter()
            .filter(|(t, _)| t == "resident_current")
            .flat_map(|(_, rows)| rows)
            .flat_map(|row| row.into_iter().flatten())
            .filter(|c| c.len() == 64)
            .collect();
        assert!(current.contains(&key), "{current:?}");

        // Reads through the service open it.
        let (row, history) = r
            .resident(&code(FUCHU), &a(1), AsOf::default(), &clerk())
            .await
            .unwrap();
        assert_eq!(row.record.my_number.as_ref().unwrap().as_str(), MY_NUMBER);
        assert_eq!(history[0].record.my_number, row.record.my_number);
        let change = r
            .change(&code(FUCHU), out.change_id, &clerk())
            .await
            .unwrap();
        assert_eq!(
            change.request["command"]["persons"][0]["my_number"],
            json!(MY_NUMBER)
        );
        let found = r
            .search(
                &code(FUCHU),
                &SearchParams {
                    name: Some("鈴木".into()),
                    limit: 10,
                    ..Default::default()
                },
                &clerk(),
            )
            .await
            .unwrap();
        assert_eq!(
            found.rows[0].record.my_number.as_ref().unwrap().as_str(),
            MY_NUMBER
        );
    }

    async fn altered_or_moved_ciphertext_is_an_error(db: TestDb) {
        let db = db.with_tenants().await;
        let r = &db.registry;
        let mut other = person("鈴木　花子", "スズキ　ハナコ", "1986-02-02", "female", "妻");
        other["my_number"] = json!("987654321093");
        submit(r, move_in(vec![with_number(), other], "府中市本町一丁目")).await;
        let (one, two) = (
            raw_history(&db, FUCHU, a(1).as_str()).await.remove(0).0,
            raw_history(&db, FUCHU, a(2).as_str()).await.remove(0).0,
        );
        let sealed_of = |json: &str| -> String {
            let v: serde_json::Value = serde_json::from_str(json).unwrap();
            v["my_number_sealed"].as_str().unwrap().to_string()
        };
        let set = |person: String, record: String| {
            format!(
                "UPDATE resident_history SET record = '{}' WHERE tenant = '{FUCHU}' AND addressee_number = '{person}'",
                record.replace('\'', "''")
            )
        };
        let read_a2 = || async {
            r.resident(&code(FUCHU), &a(2), AsOf::default(), &clerk())
                .await
        };

        // One character of the ciphertext changed.
        let sealed = sealed_of(&two);
        let mut flipped = sealed.clone().into_bytes();
        let i = flipped.len() - 10;
        flipped[i] = if flipped[i] == b'A' { b'B' } else { b'A' };
        let tampered = two.replace(&sealed, std::str::from_utf8(&flipped).unwrap());
        db.raw(&set(a(2).to_string(), tampered)).await;
        let e = read_a2().await.unwrap_err();
        assert!(
            matches!(
                e,
                ServiceError::Store(StoreError::Sealed(SealError::Authentication))
            ),
            "{e:?}"
        );

        // Person 1's sealed number moved into person 2's row.
        db.raw(&set(
            a(2).to_string(),
            two.replace(&sealed, &sealed_of(&one)),
        ))
        .await;
        let e = read_a2().await.unwrap_err();
        assert!(
            matches!(
                e,
                ServiceError::Store(StoreError::Sealed(SealError::Authentication))
            ),
            "{e:?}"
        );

        // A plain number planted in the record.
        let mut planted: serde_json::Value = serde_json::from_str(&two).unwrap();
        planted.as_object_mut().unwrap().remove("my_number_sealed");
        planted["my_number"] = json!("987654321093");
        db.raw(&set(a(2).to_string(), planted.to_string())).await;
        let e = read_a2().await.unwrap_err();
        assert!(
            matches!(
                e,
                ServiceError::Store(StoreError::Sealed(SealError::Unsealed))
            ),
            "{e:?}"
        );

        // The sealed number removed: not a silent "no number".
        let mut removed: serde_json::Value = serde_json::from_str(&two).unwrap();
        removed.as_object_mut().unwrap().remove("my_number_sealed");
        db.raw(&set(a(2).to_string(), removed.to_string())).await;
        let e = read_a2().await.unwrap_err();
        assert!(
            matches!(
                e,
                ServiceError::Store(StoreError::Sealed(SealError::Inconsistent))
            ),
            "{e:?}"
        );

        // Restored, it reads again.
        db.raw(&set(a(2).to_string(), two)).await;
        let (row, _) = read_a2().await.unwrap();
        assert_eq!(row.record.my_number.unwrap().as_str(), "987654321093");
    }

    async fn a_different_master_key_is_refused_at_start(db: TestDb) {
        let db = db.with_tenants().await;
        submit(
            &db.registry,
            move_in(vec![with_number()], "府中市本町一丁目"),
        )
        .await;
        let wrong = Keyring::new(&MasterKey::from_hex(&"ab".repeat(32)).unwrap());
        let e = Store::connect(&db.location().await, wrong)
            .await
            .unwrap_err();
        assert!(
            matches!(e, StoreError::Sealed(SealError::Authentication)),
            "{e:?}"
        );
        assert!(!e.to_string().contains(MY_NUMBER));
        // The right key opens it.
        Store::connect(&db.location().await, db.store.keyring())
            .await
            .unwrap();
    }

    /// j600 through the keyed lookup alone (no 住民票コード given).
    async fn a_returning_resident_is_found_by_my_number_alone(db: TestDb) {
        let db = db.with_tenants().await;
        let r = &db.registry;
        submit(r, move_in(vec![with_number()], "府中市本町一丁目")).await;
        let e = r
            .submit(
                &code(FUCHU),
                &req(move_in(vec![with_number()], "府中市本町二丁目")),
                &actor(),
            )
            .await;
        assert!(
            matches!(
                e,
                Err(ServiceError::Change(ChangeError::DuplicateIdentity(..)))
            ),
            "{e:?}"
        );
        submit(r, json!({"effective_date": "2024-05-01", "command": {"type": "move_out", "persons": [a(1).to_string()],
            "destination": {"address": "東京都昭島市"}}})).await;
        let out = submit(r, move_in(vec![with_number()], "府中市本町三丁目")).await;
        assert_eq!(out.rows[0].record.addressee_number, a(1));
        assert_eq!(out.rows[0].history_number, 3);
        // Another tenant's lookup keys differ: there the person is new.
        let other = r
            .submit(
                &code(AKISHIMA),
                &req(move_in(vec![with_number()], "昭島市")),
                &actor(),
            )
            .await
            .unwrap();
        assert_eq!(other.rows[0].history_number, 1);
    }

    contract!(
        a_returning_resident_is_found_by_my_number_alone,
        the_plain_number_is_nowhere_in_the_database,
        altered_or_moved_ciphertext_is_an_error,
        a_different_master_key_is_refused_at_start,
    );
}
