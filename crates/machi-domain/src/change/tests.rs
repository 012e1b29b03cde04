//! The change rules, exercised on an in-memory registry: the standard's own
//! examples (j200's 青木太郎), j490, the household changes of j720/j730,
//! cancellation, j480 and the two time axes.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde_json::json;

use super::*;
use crate::dates::{DateValue, EraTable};
use crate::error::Localized;
use crate::ids::{AddresseeNumber, HouseholdNumber};
use crate::model::{ResidentRecord, ResidentStatus};

/// The tests' in-memory registry: it plans with the domain's functions and
/// appends the plan's rows, numbering them itself. Its 履歴番号, 宛名番号
/// and "nothing appended on a refusal" are its own, not the real
/// registry's; those are checked against the stores by the integration
/// test `registry_model` (crates/machi/tests/it).
struct Reg {
    rows: Vec<HistoryRow>,
    next_addressee: u64,
    next_household: u64,
    next_change: i64,
    clock: i64,
    eras: EraTable,
    today: NaiveDate,
    municipality: Option<Municipality>,
}

fn day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

impl Reg {
    fn new() -> Self {
        Reg {
            rows: Vec::new(),
            next_addressee: 0,
            next_household: 0,
            next_change: 0,
            clock: 1_000_000,
            eras: EraTable::standard(),
            today: day("2026-11-22"),
            municipality: Some(Municipality {
                prefecture: "東京都".into(),
                name: "府中市".into(),
            }),
        }
    }

    fn latest(&self) -> BTreeMap<AddresseeNumber, &HistoryRow> {
        let mut out: BTreeMap<AddresseeNumber, &HistoryRow> = BTreeMap::new();
        for r in &self.rows {
            let e = out.entry(r.record.addressee_number.clone()).or_insert(r);
            if r.history_number > e.history_number {
                *e = r;
            }
        }
        out
    }

    fn record(&self, a: &AddresseeNumber) -> ResidentRecord {
        self.latest()[a].record.clone()
    }

    fn history(&self, a: &AddresseeNumber) -> Vec<HistoryRow> {
        self.rows
            .iter()
            .filter(|r| &r.record.addressee_number == a)
            .cloned()
            .collect()
    }

    fn apply(&mut self, req: serde_json::Value) -> Result<ChangePlan, ChangeError> {
        let req: ChangeRequest = serde_json::from_value(req).expect("request JSON");
        let ctx = PlanContext {
            eras: &self.eras,
            today: self.today,
            municipality: self.municipality.as_ref(),
        };
        let (plan, cancels) = if let ChangeCommand::Cancel { change_id } = req.command {
            let mut histories = BTreeMap::new();
            for r in self.rows.iter().filter(|r| r.change.change_id == change_id) {
                let a = r.record.addressee_number.clone();
                histories.insert(a.clone(), self.history(&a));
            }
            let households = households_of_change(change_id, &histories);
            let mut household_histories = BTreeMap::new();
            for r in self
                .rows
                .iter()
                .filter(|r| households.contains(&r.record.household_number))
            {
                let a = r.record.addressee_number.clone();
                household_histories.insert(a.clone(), self.history(&a));
            }
            (
                plan_cancellation(change_id, &histories, &household_histories)?,
                Some(change_id),
            )
        } else {
            let mut view = RegistryView::default();
            for r in self.latest().values() {
                view.insert(r.record.clone());
            }
            let alloc = Allocated {
                addressees: (1..=req.new_person_count() as u64)
                    .map(|i| AddresseeNumber::from_serial(self.next_addressee + i).unwrap())
                    .collect(),
                household: req
                    .needs_new_household()
                    .then(|| HouseholdNumber::from_serial(self.next_household + 1).unwrap()),
            };
            let plan = plan(&req, &view, &alloc, &ctx)?;
            self.next_addressee += req.new_person_count() as u64;
            self.next_household += u64::from(req.needs_new_household());
            (plan, None)
        };
        self.next_change += 1;
        self.clock += 1_000;
        let latest: BTreeMap<AddresseeNumber, i64> = self
            .latest()
            .into_iter()
            .map(|(a, r)| (a, r.history_number))
            .collect();
        for record in &plan.rows {
            let n = latest.get(&record.addressee_number).map_or(1, |n| n + 1);
            self.rows.push(HistoryRow {
                history_number: n,
                record: record.clone(),
                change: ChangeInfo {
                    change_id: self.next_change,
                    reason: plan.reason,
                    effective_date: plan.effective_date.clone(),
                    processed_on: self.today,
                    filed_on: plan.filed_on,
                    input_place: req.meta.input_place.clone(),
                    input_terminal: req.meta.input_terminal.clone(),
                    recorded_at: self.clock,
                    cancels,
                },
            });
        }
        Ok(plan)
    }
}

fn person(name: &str, kana: &str, birth: &str, sex: &str, rel: &str) -> serde_json::Value {
    json!({"name": name, "name_kana": kana, "birth_date": birth, "sex": sex, "relationship": rel})
}

fn move_in_new(date: &str, persons: Vec<serde_json::Value>, address: &str) -> serde_json::Value {
    json!({
        "effective_date": date, "filed_on": date, "input_place": "市民課", "input_terminal": "T1",
        "command": {"type": "move_in", "persons": persons, "previous_address": "東京都調布市小島町二丁目1番地",
                    "household": {"type": "new", "address": {"address": address}}}
    })
}

fn a(n: u64) -> AddresseeNumber {
    AddresseeNumber::from_serial(n).unwrap()
}

fn h(n: u64) -> HouseholdNumber {
    HouseholdNumber::from_serial(n).unwrap()
}

/// j200's example: 青木太郎 moves in to 松町１番地, then moves to 松町８番地;
/// 青木花子 moves into his household. Three rows, keyed 宛名番号 + 履歴番号.
#[test]
fn j200_aoki_taro_example() {
    let mut reg = Reg::new();
    reg.apply(move_in_new(
        "2024-04-01",
        vec![person(
            "青木　太郎",
            "アオキ　タロウ",
            "平成15年1月7日",
            "male",
            "世帯主",
        )],
        "松町１番地",
    ))
    .unwrap();
    reg.apply(json!({
        "effective_date": "2024-05-01", "command": {"type": "move_within", "persons": [a(1).to_string()],
        "address": {"address": "松町８番地"}}
    }))
    .unwrap();
    reg.apply(json!({
        "effective_date": "2024-05-10",
        "command": {"type": "move_in", "previous_address": "東京都調布市",
            "persons": [person("青木　花子", "アオキ　ハナコ", "平成17年12月30日", "female", "妻")],
            "household": {"type": "join", "household_number": h(1).to_string()}}
    }))
    .unwrap();
    let table: Vec<(String, i64, String, String, String, String, &str)> = reg
        .rows
        .iter()
        .map(|r| {
            (
                r.record.addressee_number.to_string(),
                r.history_number,
                r.record.household_number.to_string(),
                r.record.address.address.clone(),
                r.record.name.as_str().to_string(),
                r.record.birth_date.display_wareki(&reg.eras),
                r.change.reason.label_ja(),
            )
        })
        .collect();
    let (a1, a2, h1) = (a(1).to_string(), a(2).to_string(), h(1).to_string());
    assert_eq!(
        table,
        vec![
            (
                a1.clone(),
                1,
                h1.clone(),
                "松町１番地".into(),
                "青木　太郎".into(),
                "平成15年1月7日".into(),
                "国内転入"
            ),
            (
                a1,
                2,
                h1.clone(),
                "松町８番地".into(),
                "青木　太郎".into(),
                "平成15年1月7日".into(),
                "転居"
            ),
            (
                a2,
                1,
                h1,
                "松町８番地".into(),
                "青木　花子".into(),
                "平成17年12月30日".into(),
                "国内転入"
            ),
        ]
    );
    // The household-common item (head's name) is held per person (j200).
    assert_eq!(reg.record(&a(2)).head_name.unwrap().as_str(), "青木　太郎");
}

fn family(reg: &mut Reg, n: usize) {
    let mut ps = vec![person(
        "佐藤　一郎",
        "サトウ　イチロウ",
        "1970-01-01",
        "male",
        "世帯主",
    )];
    let rest = [
        person(
            "佐藤　京子",
            "サトウ　キョウコ",
            "1972-03-03",
            "female",
            "妻",
        ),
        person("佐藤　翔", "サトウ　ショウ", "2000-05-05", "male", "子"),
        person("佐藤　葵", "サトウ　アオイ", "2003-07-07", "female", "子"),
    ];
    ps.extend(rest.into_iter().take(n - 1));
    reg.apply(move_in_new("2020-04-01", ps, "府中市宮西町二丁目1番地"))
        .unwrap();
}

#[test]
fn head_leaving_with_one_remaining_member_makes_that_member_head_j490() {
    let mut reg = Reg::new();
    family(&mut reg, 2);
    let plan = reg
        .apply(json!({"effective_date": "2025-01-10", "command": {"type": "death", "person": a(1).to_string()}}))
        .unwrap();
    assert_eq!(plan.rows.len(), 2);
    let wife = reg.record(&a(2));
    assert!(wife.relationship.is_head());
    assert_eq!(wife.head_name.unwrap().as_str(), "佐藤　京子");
    assert_eq!(reg.record(&a(1)).status, ResidentStatus::Deceased);
    assert!(matches!(plan.notices[0], Notice::HeadAssigned { .. }));
}

/// j650 with j560/j630: a 転出 to an address the text places in the
/// municipality itself is a 転居 and is refused, changing nothing; one that
/// names another municipality, or only a town (j650 allows a partial
/// destination), or is abroad, is a 転出.
#[test]
fn move_out_to_an_address_in_the_municipality_is_refused_j650() {
    let mut reg = Reg::new();
    family(&mut reg, 2);
    let before = reg.record(&a(1));
    let move_out = |address: &str| {
        json!({"effective_date": "2025-01-10", "command": {"type": "move_out",
            "persons": [a(1).to_string(), a(2).to_string()], "destination": {"address": address}}})
    };
    for inside in ["東京都府中市寿町一丁目1番地", "府中市宮西町二丁目24番地"]
    {
        let e = reg.apply(move_out(inside)).unwrap_err();
        assert!(
            matches!(&e, ChangeError::InsideMunicipality { municipality, address }
                if municipality == "東京都府中市" && address == inside),
            "{e:?}"
        );
        assert_eq!(e.code(), "inside_municipality");
        assert!(e.message_ja().contains("転居"), "{}", e.message_ja());
        assert!(e.message_en().contains("move within"), "{}", e.message_en());
        assert_eq!(reg.record(&a(1)), before, "nothing changed");
    }
    // 広島県府中市 is another municipality of the same name: a 転出.
    reg.apply(move_out("広島県府中市府川町1番地")).unwrap();
    assert_eq!(reg.record(&a(1)).status, ResidentStatus::MovedOut);
}

#[test]
fn move_out_to_a_town_name_or_abroad_is_not_judged_inside_j650() {
    let mut reg = Reg::new();
    family(&mut reg, 1);
    // A destination naming only a town (瑞穂町 without its 郡) is taken as
    // given; it is not this municipality's.
    reg.apply(
        json!({"effective_date": "2025-01-10", "command": {"type": "move_out",
        "persons": [a(1).to_string()], "destination": {"address": "瑞穂町箱根ケ崎1番地"}}}),
    )
    .unwrap();
    let mut reg = Reg::new();
    family(&mut reg, 1);
    reg.apply(
        json!({"effective_date": "2025-01-10", "command": {"type": "move_out_abroad",
        "persons": [a(1).to_string()], "destination": {"address": "大韓民国ソウル特別市"}}}),
    )
    .unwrap();
    // 国外転出 to this municipality is no 国外転出 either.
    let e = reg
        .apply(
            json!({"effective_date": "2025-01-10", "command": {"type": "move_out_abroad",
        "persons": [a(1).to_string()], "destination": {"address": "府中市寿町一丁目"}}}),
        )
        .unwrap_err();
    assert_eq!(e.code(), "inside_municipality");
}

#[test]
fn head_leaving_with_two_or_more_remaining_needs_a_head_change_first_j490() {
    let mut reg = Reg::new();
    family(&mut reg, 3);
    let err = reg
        .apply(json!({"effective_date": "2025-01-10", "command": {"type": "move_out", "persons": [a(1).to_string()],
                "destination": {"address": "大阪府大阪市北区"}}}))
        .unwrap_err();
    assert!(matches!(
        err,
        ChangeError::HeadChangeRequired { remaining: 2, .. }
    ));
    // Confirmed: the household stays without a head and a notice is raised.
    let plan = reg
        .apply(json!({"effective_date": "2025-01-10", "allow_headless_household": true,
            "command": {"type": "move_out", "persons": [a(1).to_string()], "destination": {"address": "大阪府大阪市北区"}}}))
        .unwrap();
    assert!(matches!(
        plan.notices[0],
        Notice::HeadChangeRequested { .. }
    ));
    assert!(reg.record(&a(2)).head_name.is_none());
    // A head change then fixes it (j720, j730).
    reg.apply(
        json!({"effective_date": "2025-01-11", "command": {"type": "head_change",
        "household_number": h(1).to_string(), "new_head": a(2).to_string(),
        "relationships": [{"addressee_number": a(3).to_string(), "relationship": "子"}]}}),
    )
    .unwrap();
    assert!(reg.record(&a(2)).relationship.is_head());
    assert_eq!(reg.record(&a(3)).head_name.unwrap().as_str(), "佐藤　京子");
}

/// That a refused change writes nothing is the registry's to keep: see
/// the integration test `registry_model`, which checks the stores.
#[test]
fn a_removed_person_cannot_move_out() {
    let mut reg = Reg::new();
    family(&mut reg, 1);
    reg.apply(json!({"effective_date": "2025-01-10", "command": {"type": "death", "person": a(1).to_string()}}))
        .unwrap();
    let err = reg
        .apply(json!({"effective_date": "2025-02-10", "command": {"type": "move_out", "persons": [a(1).to_string()],
            "destination": {"address": "大阪府"}}}))
        .unwrap_err();
    assert!(matches!(err, ChangeError::NotAResident(..)));
}

#[test]
fn effective_date_after_today_is_refused_except_for_move_out_j480() {
    let mut reg = Reg::new();
    family(&mut reg, 2);
    let err = reg
        .apply(json!({"effective_date": "2026-12-01", "command": {"type": "move_within",
            "persons": [a(1).to_string(), a(2).to_string()], "address": {"address": "府中市寿町一丁目1番地"}}}))
        .unwrap_err();
    assert!(matches!(err, ChangeError::EffectiveDateInFuture(_)));
    // 転出 with a planned date in the future (j650).
    let plan = reg
        .apply(json!({"effective_date": "令和8年12月15日", "command": {"type": "move_out",
            "persons": [a(1).to_string(), a(2).to_string()], "destination": {"address": "東京都昭島市田中町1丁目"}}}))
        .unwrap();
    assert_eq!(plan.rows.len(), 2);
    let removal = reg.record(&a(1)).removal.unwrap();
    assert_eq!(
        removal.destination.unwrap().address,
        "東京都昭島市田中町1丁目"
    );
    assert_eq!(removal.date.as_calendar(), Some(day("2026-12-15")));
}

#[test]
fn birth_and_death_accept_unknown_and_non_calendar_dates_other_changes_do_not_j80() {
    let mut reg = Reg::new();
    family(&mut reg, 2);
    reg.apply(
        json!({"effective_date": "平成3年2月29日", "command": {"type": "birth",
        "household_number": h(1).to_string(),
        "person": person("佐藤　凛", "サトウ　リン", "平成3年2月29日", "female", "子")}}),
    )
    .unwrap();
    let child = reg.record(&a(3));
    assert!(matches!(child.birth_date, DateValue::NonCalendar { .. }));
    assert_eq!(child.birth_date.display_wareki(&reg.eras), "平成3年2月29日");
    reg.apply(json!({"effective_date": "令和6年頃", "command": {"type": "death", "person": a(3).to_string()}}))
        .unwrap();
    assert_eq!(
        reg.record(&a(3))
            .removal
            .unwrap()
            .date
            .display_wareki(&reg.eras),
        "令和6年頃"
    );
    let err = reg
        .apply(json!({"effective_date": "令和6年頃", "command": {"type": "move_within",
            "persons": [a(1).to_string(), a(2).to_string()], "address": {"address": "府中市寿町"}}}))
        .unwrap_err();
    assert!(
        matches!(err, ChangeError::Field { ref field, .. } if field == "effective_date"),
        "{err:?}"
    );
}

#[test]
fn split_merge_and_transfer_j720() {
    let mut reg = Reg::new();
    family(&mut reg, 4);
    // 世帯分離: the two children form their own household at the same address.
    reg.apply(json!({"effective_date": "2024-01-01", "command": {"type": "household_split", "relationships": [
        {"addressee_number": a(3).to_string(), "relationship": "世帯主"},
        {"addressee_number": a(4).to_string(), "relationship": "妹"}]}}))
        .unwrap();
    assert_eq!(reg.record(&a(3)).household_number, h(2));
    assert!(reg.record(&a(3)).relationship.is_head());
    assert_eq!(reg.record(&a(4)).head_name.unwrap().as_str(), "佐藤　翔");
    assert_eq!(reg.record(&a(3)).address, reg.record(&a(1)).address);
    // 世帯変更: the younger moves back to the parents' household.
    reg.apply(
        json!({"effective_date": "2024-02-01", "command": {"type": "household_transfer",
        "into_household": h(1).to_string(),
        "relationships": [{"addressee_number": a(4).to_string(), "relationship": "子"}]}}),
    )
    .unwrap();
    assert_eq!(reg.record(&a(4)).household_number, h(1));
    // Transferring the last member is a merge, not a transfer.
    let err = reg
        .apply(
            json!({"effective_date": "2024-03-01", "command": {"type": "household_transfer",
            "into_household": h(1).to_string(),
            "relationships": [{"addressee_number": a(3).to_string(), "relationship": "子"}]}}),
        )
        .unwrap_err();
    assert!(matches!(err, ChangeError::WholeHousehold(_)));
    // 世帯合併
    reg.apply(
        json!({"effective_date": "2024-03-01", "command": {"type": "household_merge",
        "from_household": h(2).to_string(), "into_household": h(1).to_string(),
        "relationships": [{"addressee_number": a(3).to_string(), "relationship": "子"}]}}),
    )
    .unwrap();
    let r3 = reg.record(&a(3));
    assert_eq!(r3.household_number, h(1));
    assert_eq!(r3.relationship.as_str(), "子");
    assert_eq!(r3.head_name.unwrap().as_str(), "佐藤　一郎");
}

#[test]
fn households_at_different_addresses_cannot_merge_j720() {
    let mut reg = Reg::new();
    family(&mut reg, 1);
    reg.apply(move_in_new(
        "2021-01-01",
        vec![person(
            "鈴木　花子",
            "スズキ　ハナコ",
            "1980-01-01",
            "female",
            "世帯主",
        )],
        "府中市寿町一丁目1番地",
    ))
    .unwrap();
    let err = reg
        .apply(json!({"effective_date": "2024-03-01", "command": {"type": "household_merge",
            "from_household": h(2).to_string(), "into_household": h(1).to_string(),
            "relationships": [{"addressee_number": a(2).to_string(), "relationship": "妻（未届）"}]}}))
        .unwrap_err();
    assert!(matches!(err, ChangeError::DifferentAddress(..)));
}

#[test]
fn cancellation_restores_the_previous_snapshot_and_keeps_history() {
    let mut reg = Reg::new();
    family(&mut reg, 2);
    reg.apply(json!({"effective_date": "2024-06-01", "command": {"type": "move_within",
        "persons": [a(1).to_string(), a(2).to_string()], "address": {"address": "府中市寿町一丁目1番地"}}}))
        .unwrap();
    let plan = reg
        .apply(json!({"effective_date": "", "command": {"type": "cancel", "change_id": 2}}))
        .unwrap();
    // A cancelled 転居 is 異動の取消し（修正）, never a 転居取消.
    assert_eq!(plan.reason, ChangeReason::CancellationAmendment);
    assert_eq!(reg.record(&a(1)).address.address, "府中市宮西町二丁目1番地");
    assert_eq!(reg.history(&a(1)).len(), 3);
    // As of a date after the cancelled move, the cancelled row does not count.
    let as_of = AsOf {
        effective: Some(day("2025-01-01")),
        recorded_at: None,
    };
    let rows = reg.history(&a(1));
    assert_eq!(
        select_as_of(&rows, as_of).unwrap().record.address.address,
        "府中市宮西町二丁目1番地"
    );
    // As recorded before the cancellation, the move was there.
    let before_cancel = rows[1].change.recorded_at;
    let as_recorded = AsOf {
        effective: Some(day("2025-01-01")),
        recorded_at: Some(before_cancel),
    };
    assert_eq!(
        select_as_of(&rows, as_recorded)
            .unwrap()
            .record
            .address
            .address,
        "府中市寿町一丁目1番地"
    );
    // A cancellation cannot itself be cancelled.
    let err = reg
        .apply(json!({"effective_date": "", "command": {"type": "cancel", "change_id": 3}}))
        .unwrap_err();
    assert!(matches!(err, ChangeError::NotCancellable(3)));
}

#[test]
fn cancelling_an_entry_or_a_removal_picks_the_direction_j210() {
    let mut reg = Reg::new();
    family(&mut reg, 1);
    reg.apply(json!({"effective_date": "2025-01-10", "command": {"type": "death", "person": a(1).to_string()}}))
        .unwrap();
    let plan = reg
        .apply(json!({"effective_date": "", "command": {"type": "cancel", "change_id": 2}}))
        .unwrap();
    assert_eq!(plan.reason, ChangeReason::CancellationEntry);
    assert_eq!(reg.record(&a(1)).status, ResidentStatus::Resident);
    // Cancelling the move-in itself needs the later changes cancelled first.
    let err = reg
        .apply(json!({"effective_date": "", "command": {"type": "cancel", "change_id": 1}}))
        .unwrap_err();
    assert!(matches!(err, ChangeError::LaterChangesExist { .. }));
    let mut reg = Reg::new();
    family(&mut reg, 1);
    let plan = reg
        .apply(json!({"effective_date": "", "command": {"type": "cancel", "change_id": 1}}))
        .unwrap();
    assert_eq!(plan.reason, ChangeReason::CancellationRemoval);
    assert_eq!(reg.record(&a(1)).status, ResidentStatus::EntryCancelled);
}

#[test]
fn as_of_effective_date_follows_the_valid_time() {
    let mut reg = Reg::new();
    family(&mut reg, 1);
    reg.apply(
        json!({"effective_date": "2024-06-01", "command": {"type": "move_within",
        "persons": [a(1).to_string()], "address": {"address": "府中市寿町一丁目1番地"}}}),
    )
    .unwrap();
    let rows = reg.history(&a(1));
    let on = |d: &str| {
        select_as_of(
            &rows,
            AsOf {
                effective: Some(day(d)),
                recorded_at: None,
            },
        )
        .map(|r| r.record.address.address.clone())
    };
    assert_eq!(on("2019-01-01"), None);
    assert_eq!(on("2020-04-01").as_deref(), Some("府中市宮西町二丁目1番地"));
    assert_eq!(on("2024-05-31").as_deref(), Some("府中市宮西町二丁目1番地"));
    assert_eq!(on("2024-06-01").as_deref(), Some("府中市寿町一丁目1番地"));
}

#[test]
fn corrections_append_and_change_only_what_they_name() {
    let mut reg = Reg::new();
    family(&mut reg, 2);
    let err = reg
        .apply(
            json!({"effective_date": "2025-01-01", "command": {"type": "clerical_correction",
            "person": a(1).to_string(), "patch": {}}}),
        )
        .unwrap_err();
    assert_eq!(err, ChangeError::NothingToCorrect);
    // The head's name is corrected; every member's row carries it (j200).
    let plan = reg
        .apply(json!({"effective_date": "2025-01-01", "command": {"type": "clerical_correction",
            "person": a(1).to_string(), "patch": {"name": "髙橋　一郎", "name_kana": "タカハシ　イチロウ"}}}))
        .unwrap();
    assert_eq!(plan.rows.len(), 2);
    assert_eq!(reg.record(&a(2)).head_name.unwrap().as_str(), "髙橋　一郎");
    assert_eq!(reg.history(&a(1))[0].record.name.as_str(), "佐藤　一郎");
    let err = reg
        .apply(
            json!({"effective_date": "2025-01-01", "command": {"type": "ex_officio_correction",
            "person": a(1).to_string(), "patch": {"my_number": "123456789012"}}}),
        )
        .unwrap_err();
    assert!(matches!(err, ChangeError::Field { ref field, .. } if field == "patch.my_number"));
}

#[test]
fn new_persons_are_validated_field_by_field() {
    let mut reg = Reg::new();
    let err = reg
        .apply(move_in_new(
            "2024-01-01",
            vec![person(
                "山田　太郎",
                "やまだ　たろう",
                "1980-01-01",
                "male",
                "世帯主",
            )],
            "府中市",
        ))
        .unwrap_err();
    assert!(matches!(err, ChangeError::Field { ref field, .. } if field == "persons[0].name_kana"));
    let err = reg
        .apply(move_in_new(
            "2024-01-01",
            vec![person(
                "山田　太郎",
                "ヤマダ　タロウ",
                "1980-01-01",
                "male",
                "祖父",
            )],
            "府中市",
        ))
        .unwrap_err();
    assert!(
        matches!(err, ChangeError::Field { ref field, .. } if field == "persons[0].relationship")
    );
    let err = reg
        .apply(move_in_new(
            "2024-01-01",
            vec![
                person(
                    "山田　太郎",
                    "ヤマダ　タロウ",
                    "1980-01-01",
                    "male",
                    "世帯主",
                ),
                person(
                    "山田　次郎",
                    "ヤマダ　ジロウ",
                    "1982-01-01",
                    "male",
                    "世帯主",
                ),
            ],
            "府中市",
        ))
        .unwrap_err();
    assert_eq!(err, ChangeError::HeadCount(2));
}

#[test]
fn foreign_residents_need_their_items_and_have_no_domicile() {
    let mut reg = Reg::new();
    let mut p = person(
        "NGUYEN VAN AN",
        "グエン　ヴァン　アン",
        "1995-02-03",
        "male",
        "世帯主",
    );
    p["kind"] = json!("foreign");
    let err = reg
        .apply(move_in_new("2024-01-01", vec![p.clone()], "府中市"))
        .unwrap_err();
    assert!(matches!(err, ChangeError::Missing(ref f) if f == "persons[0].foreign"));
    p["foreign"] = json!({"alphabet_name": "NGUYEN VAN AN", "nationality": "ベトナム",
        "residence_status": "技術・人文知識・国際業務", "period_of_stay": "3年", "stay_expires_on": "2027-03-31",
        "alias": "中村　安"});
    reg.apply(move_in_new("2024-01-01", vec![p], "府中市"))
        .unwrap();
    let r = reg.record(&a(1));
    let f = r.foreign.unwrap();
    assert_eq!(f.alias.unwrap().as_str(), "中村　安");
    assert_eq!(
        f.stay_expires_on.unwrap().as_calendar(),
        Some(day("2027-03-31"))
    );
}

/// Random sequences of changes, valid or not, planned on a small in-memory
/// registry: planning never panics, and the household invariants (at most
/// one head, every member carrying the head's name, one address) hold
/// after every accepted plan. What the real registry stores for such
/// sequences (nothing for a refused change, 履歴番号 without gaps) is
/// checked against the stores by the integration test `registry_model`.
#[test]
fn random_change_sequences_keep_households_consistent() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    let op = (0u8..14, 1u64..9, 1u64..9, 1u64..5, any::<bool>());
    let mut runner = TestRunner::new(Config {
        cases: 64,
        ..Config::default()
    });
    runner
        .run(&proptest::collection::vec(op, 1..60), |ops| {
            let mut reg = Reg::new();
            family(&mut reg, 4);
            for (i, (kind, p, q, hh, flag)) in ops.into_iter().enumerate() {
                let (pa, qa, hn) = (a(p).to_string(), a(q).to_string(), h(hh).to_string());
                let date = format!("2024-{:02}-{:02}", 1 + i % 12, 1 + i % 28);
                let rel = if flag { "子" } else { "世帯主" };
                let command = match kind {
                    0 => json!({"type": "move_in", "previous_address": "調布市",
                        "persons": [person("鈴木　一", "スズキ　ハジメ", "1990-01-01", "male", rel)],
                        "household": if flag { json!({"type": "join", "household_number": hn}) }
                                     else { json!({"type": "new", "address": {"address": "府中市本町"}}) }}),
                    1 => json!({"type": "birth", "household_number": hn,
                        "person": person("鈴木　二", "スズキ　ジ", "2024-01-01", "female", "子")}),
                    2 => json!({"type": "move_within", "persons": [pa], "address": {"address": "府中市寿町"}}),
                    3 => json!({"type": "move_within", "persons": [pa], "address": {"address": "府中市寿町"},
                        "household": {"type": "new", "relationships": [{"addressee_number": a(p).to_string(), "relationship": "世帯主"}]}}),
                    4 => json!({"type": "move_out", "persons": [pa], "destination": {"address": "大阪市"}}),
                    5 => json!({"type": "death", "person": pa}),
                    6 => json!({"type": "household_split", "relationships": [{"addressee_number": pa, "relationship": "世帯主"}]}),
                    7 => json!({"type": "household_transfer", "into_household": hn,
                        "relationships": [{"addressee_number": pa, "relationship": "子"}]}),
                    8 => json!({"type": "household_merge", "from_household": h(p % 4 + 1).to_string(), "into_household": hn,
                        "relationships": [{"addressee_number": pa, "relationship": "子"}, {"addressee_number": qa, "relationship": "子"}]}),
                    9 => json!({"type": "head_change", "household_number": hn, "new_head": pa,
                        "relationships": [{"addressee_number": qa, "relationship": "子"}]}),
                    10 => json!({"type": "clerical_correction", "person": pa, "patch": {"name": format!("佐藤　{i}")}}),
                    11 => json!({"type": "ex_officio_removal", "person": pa}),
                    12 => json!({"type": "cancel", "change_id": (p as i64) + (q as i64)}),
                    _ => json!({"type": "ex_officio_entry", "person": person("田中　三", "タナカ　サン", "1980-02-29", "male", rel),
                        "household": {"type": "join", "household_number": hn}}),
                };
                let result = reg.apply(json!({"effective_date": date, "allow_headless_household": flag, "command": command}));
                if result.is_err() {
                    continue;
                }
                // Invariants over the current records.
                let latest = reg.latest();
                let mut heads: BTreeMap<HouseholdNumber, Vec<&ResidentRecord>> = BTreeMap::new();
                for r in latest.values().map(|r| &r.record).filter(|r| r.status.is_resident()) {
                    heads.entry(r.household_number.clone()).or_default().push(r);
                }
                for (hh, members) in &heads {
                    let hs: Vec<_> = members.iter().filter(|m| m.relationship.is_head()).collect();
                    prop_assert!(hs.len() <= 1, "household {} has {} heads", hh, hs.len());
                    let expected = hs.first().map(|h| h.name.clone());
                    for m in members {
                        prop_assert_eq!(&m.head_name, &expected, "head name in {}", hh);
                    }
                    let addresses: std::collections::BTreeSet<_> = members.iter().map(|m| &m.address.address).collect();
                    prop_assert_eq!(addresses.len(), 1, "household {} split over addresses", hh);
                }
            }
            Ok(())
        })
        .unwrap();
}

/// A register with one resident, 架空太郎 (宛名番号 1), at
/// 東京都府中市緑町一丁目1番地.
fn one_resident_in_midori() -> Reg {
    let mut reg = Reg::new();
    reg.apply(move_in_new(
        "2024-04-01",
        vec![person(
            "架空　太郎",
            "カクウ　タロウ",
            "昭和60年1月7日",
            "male",
            "世帯主",
        )],
        "東京都府中市緑町一丁目1番地",
    ))
    .unwrap();
    reg
}

/// A 転居 of 宛名番号 1 to `address` (and `annex`) on 2024-05-01.
fn move_to(address: &str, annex: Option<&str>) -> serde_json::Value {
    json!({"effective_date": "2024-05-01", "command": {"type": "move_within",
        "persons": [a(1).to_string()], "address": {"address": address, "annex": annex}}})
}

/// j560, j630: a 転居 to another municipality is a 転出, and one to the
/// address and 方書 the person already has is no move; another building at
/// the same 地番 is a 転居.
#[test]
fn move_within_stays_in_the_municipality_and_changes_the_address() {
    let mut reg = one_resident_in_midori();
    let e = reg
        .apply(move_to("東京都調布市小島町一丁目1番地", None))
        .unwrap_err();
    assert!(
        matches!(&e, ChangeError::OutsideMunicipality { municipality, .. } if municipality == "東京都府中市"),
        "{e:?}"
    );
    assert!(e.message_ja().contains("転出"), "{}", e.message_ja());
    assert!(e.message_en().contains("move-out"), "{}", e.message_en());
    let e = reg
        .apply(move_to("広島県府中市府川町1番地", None))
        .unwrap_err();
    assert_eq!(e.code(), "outside_municipality");
    let e = reg
        .apply(move_to("東京都府中市緑町一丁目1番地", None))
        .unwrap_err();
    assert_eq!(e, ChangeError::SameAddress(a(1)));
    // Same 地番, another building (j630): a move.
    reg.apply(move_to("東京都府中市緑町一丁目1番地", Some("別棟101号")))
        .unwrap();
    reg.apply(move_to("府中市寿町二丁目3番地", None)).unwrap();
}

#[test]
fn an_address_or_annex_too_long_for_search_is_refused() {
    let mut reg = one_resident_in_midori();
    let base = "東京都府中市緑町";
    let of = |n: usize| format!("{base}{}", "二".repeat(n - base.chars().count()));
    for (address, annex, what) in [
        (of(201), None, "住所"),
        (of(30), Some("号".repeat(201)), "方書"),
        (
            format!("{base}\u{FDFA}"),
            Some("\u{FDFA}".repeat(60)),
            "検索用",
        ),
    ] {
        let e = reg.apply(move_to(&address, annex.as_deref())).unwrap_err();
        assert_eq!(e.code(), "address_too_long", "{e:?}");
        assert!(
            matches!(&e, ChangeError::Field { field, .. } if field == "address.address"),
            "{e:?}"
        );
        assert!(e.message_ja().contains(what), "{}", e.message_ja());
    }
    reg.apply(move_to(&of(200), Some(&"号".repeat(200))))
        .unwrap();
}
