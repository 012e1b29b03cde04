//! The real registry against a model, on SQLite and PostgreSQL: random
//! sequences of changes, valid or not, go through `Registry::submit` and
//! through an in-memory model built from the domain's own planning
//! functions. After every change the store must agree with the model: the
//! same refusals, nothing written by a refused change, the same rows with
//! the same 履歴番号 (1, 2, 3, … per person, no gaps), and in the end the
//! same history for every person.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{NaiveDate, TimeZone, Utc};
use machi::service::{Actor, Clock, Registry, ServiceError};
use machi::store::records;
use machi_domain::change::{
    self, Allocated, ChangeCommand, ChangeError, ChangeInfo, ChangeRequest, HistoryRow,
    PlanContext, RegistryView,
};
use machi_domain::dates::EraTable;
use machi_domain::ids::{AddresseeNumber, HouseholdNumber, MunicipalityCode};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseResult, TestRunner};
use serde_json::json;

use crate::contract::counts;
use crate::support::TestDb;

/// Cases per backend, each a fresh tenant with up to [`MAX_OPS`] changes.
const CASES: u32 = 24;
const MAX_OPS: usize = 40;

// Plain tests (each drives its own runtime from inside proptest's runner),
// named like `both_backends!`'s so that the twins are counted.
mod sqlite {
    #[test]
    fn stores_what_the_model_plans() {
        super::check(false);
    }
}

mod postgres {
    #[test]
    fn stores_what_the_model_plans() {
        super::check(true);
    }
}

/// The day the registry runs on (noon in Japan), as in the domain's tests.
fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 22).unwrap()
}

fn a(n: u64) -> AddresseeNumber {
    AddresseeNumber::from_serial(n).unwrap()
}

fn h(n: u64) -> HouseholdNumber {
    HouseholdNumber::from_serial(n).unwrap()
}

/// The reference: the registry as the domain's rules define it, in memory.
/// 宛名番号, 世帯番号 and change ids are counted from 1 and used only by
/// accepted changes; each accepted change appends one row per person it
/// touches, numbered one past that person's last.
struct Model {
    rows: Vec<HistoryRow>,
    next_addressee: u64,
    next_household: u64,
    next_change: i64,
    eras: EraTable,
    recorded_at: i64,
}

impl Model {
    fn new(recorded_at: i64) -> Self {
        Model {
            rows: Vec::new(),
            next_addressee: 0,
            next_household: 0,
            next_change: 0,
            eras: EraTable::standard(),
            recorded_at,
        }
    }

    fn history(&self, p: &AddresseeNumber) -> Vec<HistoryRow> {
        let mut rows: Vec<HistoryRow> = self
            .rows
            .iter()
            .filter(|r| &r.record.addressee_number == p)
            .cloned()
            .collect();
        rows.sort_by_key(|r| r.history_number);
        rows
    }

    fn persons(&self) -> Vec<AddresseeNumber> {
        let mut out: Vec<AddresseeNumber> = self
            .rows
            .iter()
            .map(|r| r.record.addressee_number.clone())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    fn last_numbers(&self) -> BTreeMap<AddresseeNumber, i64> {
        let mut out = BTreeMap::new();
        for r in &self.rows {
            let n = out.entry(r.record.addressee_number.clone()).or_insert(0);
            *n = (*n).max(r.history_number);
        }
        out
    }

    /// The rows the change appends, or why it is refused.
    fn apply(&mut self, req: &ChangeRequest) -> Result<Vec<HistoryRow>, ChangeError> {
        // The registry's tenant (see `stores_what_the_model_plans`).
        let municipality = machi_domain::change::Municipality {
            prefecture: "東京都".into(),
            name: "試験市".into(),
        };
        let ctx = PlanContext {
            eras: &self.eras,
            today: today(),
            municipality: Some(&municipality),
        };
        let last = self.last_numbers();
        let (plan, cancels) = if let ChangeCommand::Cancel { change_id } = req.command {
            // A cancellation is final: neither it nor what it cancelled is
            // cancelled again.
            if self
                .rows
                .iter()
                .any(|r| r.change.cancels == Some(change_id))
            {
                return Err(ChangeError::NotCancellable(change_id));
            }
            let mut histories = BTreeMap::new();
            for r in self.rows.iter().filter(|r| r.change.change_id == change_id) {
                let p = r.record.addressee_number.clone();
                histories.insert(p.clone(), self.history(&p));
            }
            let households = change::households_of_change(change_id, &histories);
            let mut household_histories = BTreeMap::new();
            for r in self
                .rows
                .iter()
                .filter(|r| households.contains(&r.record.household_number))
            {
                let p = r.record.addressee_number.clone();
                household_histories.insert(p.clone(), self.history(&p));
            }
            (
                change::plan_cancellation(change_id, &histories, &household_histories)?,
                Some(change_id),
            )
        } else {
            let mut view = RegistryView::default();
            for p in self.persons() {
                if let Some(r) = self.history(&p).pop() {
                    view.insert(r.record);
                }
            }
            let new_persons = req.new_person_count() as u64;
            let alloc = Allocated {
                addressees: (1..=new_persons)
                    .map(|i| a(self.next_addressee + i))
                    .collect(),
                household: req
                    .needs_new_household()
                    .then(|| h(self.next_household + 1)),
            };
            let plan = change::plan(req, &view, &alloc, &ctx)?;
            self.next_addressee += new_persons;
            self.next_household += u64::from(req.needs_new_household());
            (plan, None)
        };
        self.next_change += 1;
        let info = ChangeInfo {
            change_id: self.next_change,
            reason: plan.reason,
            effective_date: plan.effective_date.clone(),
            processed_on: today(),
            filed_on: plan.filed_on,
            input_place: req.meta.input_place.trim().to_string(),
            input_terminal: req.meta.input_terminal.trim().to_string(),
            recorded_at: self.recorded_at,
            cancels,
        };
        let appended: Vec<HistoryRow> = plan
            .rows
            .into_iter()
            .map(|record| HistoryRow {
                history_number: last.get(&record.addressee_number).map_or(1, |n| n + 1),
                record,
                change: info.clone(),
            })
            .collect();
        self.rows.extend(appended.iter().cloned());
        Ok(appended)
    }
}

fn person(name: &str, kana: &str, birth: &str, sex: &str, rel: &str) -> serde_json::Value {
    json!({"name": name, "name_kana": kana, "birth_date": birth, "sex": sex, "relationship": rel})
}

/// A family of four moving in: 宛名番号 1–4, 世帯番号 1.
fn family() -> serde_json::Value {
    json!({"effective_date": "2020-04-01", "filed_on": "2020-04-01", "input_place": "市民課", "input_terminal": "T1",
        "command": {"type": "move_in", "previous_address": "東京都調布市小島町二丁目1番地",
            "household": {"type": "new", "address": {"address": "府中市宮西町二丁目1番地"}},
            "persons": [
                person("佐藤　一郎", "サトウ　イチロウ", "1970-01-01", "male", "世帯主"),
                person("佐藤　京子", "サトウ　キョウコ", "1972-03-03", "female", "妻"),
                person("佐藤　翔", "サトウ　ショウ", "2000-05-05", "male", "子"),
                person("佐藤　葵", "サトウ　アオイ", "2003-07-07", "female", "子")]}})
}

type Op = (u8, u64, u64, u64, bool);

/// One random change, valid or not: every kind of change on persons 1–8
/// and households 1–4, some of whom do not exist (yet).
fn request(i: usize, (kind, p, q, hh, flag): Op) -> ChangeRequest {
    let (pa, qa, hn) = (a(p).to_string(), a(q).to_string(), h(hh).to_string());
    let date = format!("2024-{:02}-{:02}", 1 + i % 12, 1 + i % 28);
    let rel = if flag { "子" } else { "世帯主" };
    let command = match kind {
        0 => json!({"type": "move_in", "previous_address": "調布市",
            "persons": [person("鈴木　一", "スズキ　ハジメ", "1990-01-01", "male", rel)],
            "household": if flag { json!({"type": "join", "household_number": hn}) }
                         else { json!({"type": "new", "address": {"address": "試験市本町"}}) }}),
        1 => json!({"type": "birth", "household_number": hn,
            "person": person("鈴木　二", "スズキ　ジ", "2024-01-01", "female", "子")}),
        2 => json!({"type": "move_within", "persons": [pa], "address": {"address": "試験市寿町"}}),
        3 => json!({"type": "move_within", "persons": [pa], "address": {"address": "試験市寿町"},
            "household": {"type": "new", "relationships": [{"addressee_number": pa, "relationship": "世帯主"}]}}),
        4 => json!({"type": "move_out", "persons": [pa], "destination": {"address": "大阪市"}}),
        5 => json!({"type": "death", "person": pa}),
        6 => {
            json!({"type": "household_split", "relationships": [{"addressee_number": pa, "relationship": "世帯主"}]})
        }
        7 => json!({"type": "household_transfer", "into_household": hn,
            "relationships": [{"addressee_number": pa, "relationship": "子"}]}),
        8 => {
            json!({"type": "household_merge", "from_household": h(p % 4 + 1).to_string(), "into_household": hn,
            "relationships": [{"addressee_number": pa, "relationship": "子"}, {"addressee_number": qa, "relationship": "子"}]})
        }
        9 => json!({"type": "head_change", "household_number": hn, "new_head": pa,
            "relationships": [{"addressee_number": qa, "relationship": "子"}]}),
        10 => {
            json!({"type": "clerical_correction", "person": pa, "patch": {"name": format!("佐藤　{i}")}})
        }
        11 => json!({"type": "ex_officio_removal", "person": pa}),
        12 => json!({"type": "cancel", "change_id": (p as i64) + (q as i64)}),
        _ => {
            json!({"type": "ex_officio_entry", "person": person("田中　三", "タナカ　サン", "1980-02-29", "male", rel),
            "household": {"type": "join", "household_number": hn}})
        }
    };
    serde_json::from_value(
        json!({"effective_date": date, "allow_headless_household": flag, "command": command}),
    )
    .expect("request JSON")
}

fn check(postgres: bool) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let db = rt.block_on(async {
        if postgres {
            TestDb::postgres().await
        } else {
            TestDb::sqlite().await
        }
    });
    let noon_jst = Utc.from_utc_datetime(&today().and_hms_opt(3, 0, 0).unwrap());
    let registry = Registry::new(
        db.store.clone(),
        EraTable::standard(),
        Clock::Fixed(noon_jst),
    );
    // A fresh tenant for every case (and every shrinking step).
    let serial = AtomicU64::new(0);
    // Accepted and refused changes over all cases.
    let tally = [AtomicU64::new(0), AtomicU64::new(0)];
    let mut runner = TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    });
    let ops = proptest::collection::vec(
        (0u8..14, 1u64..9, 1u64..9, 1u64..5, any::<bool>()),
        1..MAX_OPS,
    );
    let result = runner.run(&ops, |ops| {
        let n = serial.fetch_add(1, Ordering::SeqCst);
        let tenant = MunicipalityCode::from_five_digits(&format!("{:05}", 20_000 + n)).unwrap();
        rt.block_on(one_case(
            &db,
            &registry,
            tenant,
            noon_jst.timestamp_micros(),
            ops,
            &tally,
        ))
    });
    if let Err(e) = result {
        panic!("the registry and the model disagree: {e}");
    }
    // The sequences exercise the registry: many changes go through, and
    // many are refused.
    let [accepted, refused] = tally.map(|t| t.into_inner());
    println!("{accepted} changes accepted, {refused} refused");
    let least = 3 * u64::from(CASES);
    assert!(
        accepted >= least && refused >= least,
        "{accepted} accepted, {refused} refused"
    );
}

async fn one_case(
    db: &TestDb,
    registry: &Registry,
    tenant: MunicipalityCode,
    recorded_at: i64,
    ops: Vec<Op>,
    tally: &[AtomicU64; 2],
) -> TestCaseResult {
    registry
        .create_tenant(tenant.clone(), "試験市", "東京都")
        .await
        .unwrap();
    let actor = Actor::system("model-test");
    let mut model = Model::new(recorded_at);
    let requests = std::iter::once(serde_json::from_value(family()).unwrap())
        .chain(ops.into_iter().enumerate().map(|(i, op)| request(i, op)));
    for (step, req) in requests.enumerate() {
        let before = counts(&db.store, tenant.as_str()).await;
        let expected = model.apply(&req);
        let got = registry.submit(&tenant, &req, &actor).await;
        let what = format!("step {step}: {}", serde_json::to_string(&req).unwrap());
        let refused = expected.is_err();
        tally[usize::from(refused)].fetch_add(1, Ordering::Relaxed);
        match (expected, got) {
            (Ok(rows), Ok(out)) => {
                prop_assert_eq!(out.change_id, model.next_change, "{}", what);
                prop_assert_eq!(&out.rows, &rows, "{}", what);
                // What was stored for each person it touched: the model's history.
                let persons: Vec<AddresseeNumber> = rows
                    .iter()
                    .map(|r| r.record.addressee_number.clone())
                    .collect();
                for (p, stored) in stored_histories(db, &tenant, &persons).await {
                    prop_assert_eq!(&stored, &model.history(&p), "{} person {}", what, p);
                }
            }
            // Both refuse it as a change the rules do not allow (which
            // rule speaks first may differ: the registry checks the
            // request's shape before planning).
            (Err(_), Err(ServiceError::Change(_))) => {}
            (Ok(_), Err(e)) => {
                return Err(TestCaseError::fail(format!(
                    "{what}: refused ({e}), the model accepts it"
                )));
            }
            (Err(want), got) => {
                return Err(TestCaseError::fail(format!(
                    "{what}: the model refuses it ({want}), the registry answered {:?}",
                    got.map(|o| o.rows)
                )));
            }
        }
        // History rows, changes, change audit entries and events: the
        // model's count after an accepted change, unchanged after a refusal.
        let after = counts(&db.store, tenant.as_str()).await;
        let n = model.next_change;
        prop_assert_eq!(after, (model.rows.len() as i64, n, n, n), "{}", what);
        if refused {
            prop_assert_eq!(after, before, "{}: a refused change wrote something", what);
        }
    }
    // Every person's whole history, 履歴番号 1, 2, 3, … without gaps.
    let persons = model.persons();
    for (p, stored) in stored_histories(db, &tenant, &persons).await {
        let numbers: Vec<i64> = stored.iter().map(|r| r.history_number).collect();
        prop_assert_eq!(
            numbers,
            (1..=stored.len() as i64).collect::<Vec<_>>(),
            "person {}",
            p
        );
        prop_assert_eq!(&stored, &model.history(&p), "person {}", p);
    }
    Ok(())
}

/// Each person's stored history, oldest first, read in one transaction.
async fn stored_histories(
    db: &TestDb,
    tenant: &MunicipalityCode,
    persons: &[AddresseeNumber],
) -> Vec<(AddresseeNumber, Vec<HistoryRow>)> {
    let (t, persons) = (tenant.clone(), persons.to_vec());
    db.store
        .read(Some(tenant), move |tx| {
            persons
                .into_iter()
                .map(|p| Ok((p.clone(), records::history(tx, &t, &p)?)))
                .collect::<Result<Vec<_>, machi::store::StoreError>>()
        })
        .await
        .unwrap()
}
