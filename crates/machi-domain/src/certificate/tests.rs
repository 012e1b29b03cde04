//! Certificates built from synthetic households (no real person).

use chrono::NaiveDate;

use super::*;
use crate::change::ChangeInfo;
use crate::dates::DatePolicy;
use crate::ids::{MyNumber, ResidentCode};
use crate::model::{Address, Destination, ForeignResidentInfo, RegisteredDomicile, Removal, Sex};
use crate::names::{Furigana, PersonName};
use crate::relationship::Relationship;

fn day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

fn wareki(s: &str) -> DateValue {
    DateValue::parse(s, &EraTable::standard(), DatePolicy::AllowIrregular).unwrap()
}

fn a(n: u64) -> AddresseeNumber {
    AddresseeNumber::from_serial(n).unwrap()
}

fn h(n: u64) -> HouseholdNumber {
    HouseholdNumber::from_serial(n).unwrap()
}

/// A valid 個人番号 built from an eleven-digit body.
fn my_number(body: &str) -> MyNumber {
    let check = MyNumber::check_digit(body).unwrap();
    format!("{body}{check}").parse().unwrap()
}

const HOME: &str = "東京都府中市宮西町二丁目24番地";
const ANNEX: &str = "府中ハイツ101号";

fn home() -> Address {
    Address {
        address: HOME.into(),
        annex: Some(ANNEX.into()),
        postal_code: None,
    }
}

fn person(n: u64, name: &str, kana: &str, birth: &str, sex: Sex, rel: &str) -> ResidentRecord {
    ResidentRecord {
        addressee_number: a(n),
        household_number: h(1),
        kind: ResidentKind::Japanese,
        status: ResidentStatus::Resident,
        name: PersonName::new(name).unwrap(),
        name_kana: Some(Furigana::new(kana).unwrap()),
        birth_date: wareki(birth),
        sex,
        relationship: Relationship::parse(rel).unwrap(),
        head_name: Some(PersonName::new("髙橋　花子").unwrap()),
        registered_domicile: Some(RegisteredDomicile {
            domicile: "東京都府中市寿町一丁目5番地".into(),
            head: "髙橋　花子".into(),
        }),
        address: home(),
        address_since: Some(wareki("令和2年4月1日")),
        resident_since: Some(wareki("令和2年4月1日")),
        previous_address: Some("東京都昭島市田中町一丁目1番1号".into()),
        my_number: Some(my_number(&format!("{:011}", 12_345_678_900 + n))),
        resident_code: Some(
            format!("{:011}", 10_000_000_000 + n)
                .parse::<ResidentCode>()
                .unwrap(),
        ),
        foreign: None,
        removal: None,
    }
}

fn row(
    n: i64,
    record: ResidentRecord,
    change_id: i64,
    reason: ChangeReason,
    effective: &str,
    filed: Option<&str>,
) -> HistoryRow {
    HistoryRow {
        history_number: n,
        record,
        change: ChangeInfo {
            change_id,
            reason,
            effective_date: wareki(effective),
            processed_on: day("2026-11-01"),
            filed_on: filed.map(day),
            input_place: "本庁".into(),
            input_terminal: "本庁1".into(),
            recorded_at: change_id * 1_000,
            cancels: None,
        },
    }
}

/// The 髙橋 household of 府中市: 花子 (head), 一郎 (her husband), and two
/// children given younger first, all moved in together on 令和2年4月1日.
fn household() -> Vec<Vec<HistoryRow>> {
    let members = [
        person(
            1,
            "髙橋　花子",
            "タカハシ　ハナコ",
            "昭和55年6月1日",
            Sex::Female,
            "世帯主",
        ),
        person(
            4,
            "髙橋　さくら",
            "タカハシ　サクラ",
            "平成27年3月3日",
            Sex::Female,
            "子",
        ),
        person(
            2,
            "髙橋　一郎",
            "タカハシ　イチロウ",
            "昭和53年1月7日",
            Sex::Male,
            "夫",
        ),
        person(
            3,
            "髙橋　健",
            "タカハシ　ケン",
            "平成25年10月10日",
            Sex::Male,
            "子",
        ),
    ];
    members
        .into_iter()
        .map(|r| {
            vec![row(
                1,
                r,
                1,
                ChangeReason::MoveIn,
                "令和2年4月1日",
                Some("2020-04-03"),
            )]
        })
        .collect()
}

fn issuer() -> Issuer {
    Issuer {
        title: "東京都府中市長".into(),
        name: "府中　一郎".into(),
        seal_text: None,
        seal_note: Some("この印は黒色です".into()),
    }
}

const ISSUED: &str = "2026-11-22";

fn build_with(
    kind: CertificateKind,
    persons: &[Vec<HistoryRow>],
    options: &CertificateOptions,
    issued: &str,
) -> Result<Certificate, CertificateError> {
    let eras = EraTable::standard();
    let issuer = issuer();
    build(&CertificateInput {
        kind,
        persons,
        municipality: "府中市",
        issuer: &issuer,
        issue_date: day(issued),
        eras: &eras,
        options,
    })
}

fn labels(items: &[Item]) -> Vec<&str> {
    items.iter().map(|i| i.label.as_str()).collect()
}

fn value(items: &[Item], kind: ItemKind) -> Option<&str> {
    items
        .iter()
        .find(|i| i.kind == kind)
        .map(|i| i.value.as_str())
}

fn names(c: &Certificate) -> Vec<String> {
    c.persons
        .iter()
        .map(|p| value(&p.items, ItemKind::Name).unwrap_or("").to_string())
        .collect()
}

#[test]
fn whole_household_copy_by_default_shows_only_the_basic_items() {
    let c = build_with(
        CertificateKind::ResidentCopy,
        &household(),
        &CertificateOptions::default(),
        ISSUED,
    )
    .unwrap();
    assert_eq!(c.title, "住民票の写し");
    assert_eq!(c.issue_date_text, "令和8年11月22日");
    // j1010: head, spouse, then children by birth date.
    assert_eq!(
        names(&c),
        ["髙橋　花子", "髙橋　一郎", "髙橋　健", "髙橋　さくら"]
    );
    // j1030: the 方書 is always printed; the shared address is shown once.
    assert_eq!(labels(&c.common), ["住所"]);
    assert_eq!(c.common[0].value, format!("{HOME}　{ANNEX}"));
    let first = &c.persons[0].items;
    assert_eq!(
        labels(first),
        [
            "氏名",
            "生年月日",
            "性別",
            "住民となった年月日",
            "住所を定めた年月日",
            "届出年月日",
            "前住所"
        ]
    );
    assert_eq!(value(first, ItemKind::BirthDate), Some("昭和55年6月1日"));
    assert_eq!(
        value(first, ItemKind::AddressFiledOn),
        Some("令和2年4月3日")
    );
    // Omitted without a special request (j1000).
    for p in &c.persons {
        for k in [
            ItemKind::HeadOfHousehold,
            ItemKind::Relationship,
            ItemKind::RegisteredDomicile,
            ItemKind::FamilyRegisterHead,
            ItemKind::MyNumber,
            ItemKind::ResidentCode,
        ] {
            assert_eq!(value(&p.items, k), None, "{k:?}");
        }
        assert!(p.history.is_empty());
    }
    assert_eq!(
        c.certification.sentence,
        "この写しは、世帯全員の住民票の原本と相違ないことを証明する。"
    );
    assert_eq!(c.certification.date, "令和8年11月22日");
    assert_eq!(c.certification.issuer, "東京都府中市長　府中　一郎");
    assert_eq!(c.certification.seal_text, "東京都府中市長之印");
    assert_eq!(
        c.certification.seal_note.as_deref(),
        Some("この印は黒色です")
    );
    assert_eq!(c.end_mark, "以下余白");
    assert!(c.marks.is_empty());
}

#[test]
fn each_omittable_item_is_printed_when_asked_for() {
    let options = CertificateOptions {
        head_and_relationship: true,
        registered_domicile: true,
        resident_code: true,
        my_number: true,
        furigana: true,
        official_use: true,
        ..Default::default()
    };
    let c = build_with(
        CertificateKind::ResidentCopy,
        &household(),
        &options,
        ISSUED,
    )
    .unwrap();
    assert_eq!(labels(&c.common), ["世帯主", "住所"]);
    assert_eq!(c.common[0].value, "髙橋　花子");
    let ichiro = &c.persons[1].items;
    assert_eq!(
        value(ichiro, ItemKind::Name),
        Some("髙橋　一郎　（タカハシ　イチロウ）")
    );
    assert_eq!(value(ichiro, ItemKind::Relationship), Some("夫"));
    assert_eq!(
        value(ichiro, ItemKind::RegisteredDomicile),
        Some("東京都府中市寿町一丁目5番地")
    );
    assert_eq!(
        value(ichiro, ItemKind::FamilyRegisterHead),
        Some("髙橋　花子")
    );
    assert_eq!(value(ichiro, ItemKind::MyNumber).map(str::len), Some(12));
    assert_eq!(value(ichiro, ItemKind::ResidentCode), Some("10000000002"));
    // The standard order of the items (法第7条).
    let kinds: Vec<ItemKind> = ichiro.iter().map(|i| i.kind).collect();
    let mut sorted = kinds.clone();
    sorted.sort();
    assert_eq!(kinds, sorted);
    assert_eq!(c.marks, ["公用"]);

    // Each flag on its own shows only its own items.
    let only_code = CertificateOptions {
        resident_code: true,
        ..Default::default()
    };
    let c = build_with(
        CertificateKind::ResidentCopy,
        &household(),
        &only_code,
        ISSUED,
    )
    .unwrap();
    assert!(value(&c.persons[0].items, ItemKind::ResidentCode).is_some());
    assert!(value(&c.persons[0].items, ItemKind::MyNumber).is_none());
    assert!(value(&c.persons[0].items, ItemKind::Relationship).is_none());
}

#[test]
fn part_of_the_household_in_the_given_or_standard_order() {
    let options = CertificateOptions {
        persons: PersonSelection::Persons(vec![a(4), a(1)]),
        ..Default::default()
    };
    let c = build_with(
        CertificateKind::ResidentCopy,
        &household(),
        &options,
        ISSUED,
    )
    .unwrap();
    assert_eq!(names(&c), ["髙橋　花子", "髙橋　さくら"]);
    assert_eq!(
        c.certification.sentence,
        "この写しは、住民票の原本と相違ないことを証明する。"
    );
    let as_given = CertificateOptions {
        order: MemberOrder::AsGiven,
        ..options
    };
    let c = build_with(
        CertificateKind::ResidentCopy,
        &household(),
        &as_given,
        ISSUED,
    )
    .unwrap();
    assert_eq!(names(&c), ["髙橋　さくら", "髙橋　花子"]);
    assert_eq!(
        c.issue_record().persons,
        vec![a(4), a(1)],
        "the issue record names whom it was issued about (j300)"
    );
}

#[test]
fn empty_and_unknown_selections_are_refused() {
    let empty = CertificateOptions {
        persons: PersonSelection::Persons(vec![]),
        ..Default::default()
    };
    assert_eq!(
        build_with(CertificateKind::ResidentCopy, &household(), &empty, ISSUED),
        Err(CertificateError::EmptySelection)
    );
    assert_eq!(
        build_with(
            CertificateKind::ResidentCopy,
            &[],
            &CertificateOptions::default(),
            ISSUED
        ),
        Err(CertificateError::EmptySelection)
    );
    let unknown = CertificateOptions {
        persons: PersonSelection::Persons(vec![a(99)]),
        ..Default::default()
    };
    assert_eq!(
        build_with(
            CertificateKind::ResidentCopy,
            &household(),
            &unknown,
            ISSUED
        ),
        Err(CertificateError::UnknownPerson(a(99)))
    );
    assert_eq!(
        build_with(
            CertificateKind::ResidentCopy,
            &[vec![]],
            &CertificateOptions::default(),
            ISSUED
        ),
        Err(CertificateError::EmptyHistory)
    );
    let mut mixed = household();
    let stray = mixed[1][0].clone();
    mixed[0].push(HistoryRow {
        history_number: 2,
        ..stray
    });
    assert_eq!(
        build_with(
            CertificateKind::ResidentCopy,
            &mixed,
            &CertificateOptions::default(),
            ISSUED
        ),
        Err(CertificateError::MixedHistory(a(1), a(4)))
    );
}

#[test]
fn persons_of_two_households_are_not_put_on_one_copy() {
    let mut persons = household();
    let mut other = persons[3][0].clone();
    other.record.addressee_number = a(7);
    other.record.household_number = h(2);
    persons.push(vec![other]);
    assert_eq!(
        build_with(
            CertificateKind::ResidentCopy,
            &persons,
            &CertificateOptions::default(),
            ISSUED
        ),
        Err(CertificateError::MixedHouseholds(h(1), h(2)))
    );
}

#[test]
fn the_issuer_and_the_municipality_are_required() {
    let eras = EraTable::standard();
    let persons = household();
    let options = CertificateOptions::default();
    let mut nameless = issuer();
    nameless.name = "　".into();
    let input = CertificateInput {
        kind: CertificateKind::ResidentCopy,
        persons: &persons,
        municipality: "府中市",
        issuer: &nameless,
        issue_date: day(ISSUED),
        eras: &eras,
        options: &options,
    };
    assert_eq!(build(&input), Err(CertificateError::MissingIssuer));
    let issuer = issuer();
    let input = CertificateInput {
        issuer: &issuer,
        municipality: " ",
        ..input
    };
    assert_eq!(build(&input), Err(CertificateError::MissingMunicipality));
}

/// 花子's history: moved in on 令和2年4月1日, moved within the town on
/// 令和5年7月1日, a wrong 転居 on 令和6年1月10日 that was cancelled.
fn hanako_with_history() -> Vec<HistoryRow> {
    let base = person(
        1,
        "髙橋　花子",
        "タカハシ　ハナコ",
        "昭和55年6月1日",
        Sex::Female,
        "世帯主",
    );
    let mut moved = base.clone();
    moved.address = Address {
        address: "東京都府中市寿町三丁目1番地".into(),
        annex: None,
        postal_code: None,
    };
    moved.address_since = Some(wareki("令和5年7月1日"));
    let mut wrong = moved.clone();
    wrong.address.address = "東京都府中市本町一丁目1番地".into();
    let mut rows = vec![
        row(
            1,
            base,
            1,
            ChangeReason::MoveIn,
            "令和2年4月1日",
            Some("2020-04-03"),
        ),
        row(
            2,
            moved.clone(),
            2,
            ChangeReason::MoveWithin,
            "令和5年7月1日",
            Some("2023-07-05"),
        ),
        row(
            3,
            wrong,
            3,
            ChangeReason::MoveWithin,
            "令和6年1月10日",
            Some("2024-01-10"),
        ),
        row(
            4,
            moved,
            4,
            ChangeReason::CancellationAmendment,
            "令和6年1月10日",
            None,
        ),
    ];
    rows[3].change.cancels = Some(3);
    rows
}

#[test]
fn history_lists_the_changes_still_in_effect() {
    let options = CertificateOptions {
        with_history: true,
        ..Default::default()
    };
    let c = build_with(
        CertificateKind::ResidentCopy,
        &[hanako_with_history()],
        &options,
        ISSUED,
    )
    .unwrap();
    let p = &c.persons[0];
    let lines: Vec<String> = p.history.iter().map(HistoryLine::text).collect();
    assert_eq!(
        lines,
        [
            "令和2年4月1日　国内転入（届出　令和2年4月3日）　前住所　東京都昭島市田中町一丁目1番1号",
            format!("令和5年7月1日　転居（届出　令和5年7月5日）　前住所　{HOME}　{ANNEX}").as_str(),
        ]
    );
    // 住所を定めた旨の届出の年月日 is that of the 転居 that brought her here.
    assert_eq!(
        value(&c.common, ItemKind::Address),
        Some("東京都府中市寿町三丁目1番地")
    );
    assert_eq!(
        value(&p.items, ItemKind::AddressFiledOn),
        Some("令和5年7月5日")
    );
    assert!(c.issue_record().with_history);
}

/// 花子 files a 転出 to 昭島市 planned for 令和8年12月15日; 一郎 stays and
/// becomes head by the same change.
fn household_with_planned_move_out() -> Vec<Vec<HistoryRow>> {
    let mut persons = household();
    let before = persons[0][0].record.clone();
    let mut gone = before.clone();
    gone.status = ResidentStatus::MovedOut;
    gone.removal = Some(Removal {
        reason: ChangeReason::MoveOut,
        date: wareki("令和8年12月15日"),
        destination: Some(Destination {
            address: "東京都昭島市田中町一丁目1番1号".into(),
            annex: Some("昭島コーポ202号".into()),
            postal_code: None,
            abroad: false,
        }),
    });
    persons[0].push(row(
        2,
        gone,
        9,
        ChangeReason::MoveOut,
        "令和8年12月15日",
        Some("2026-11-20"),
    ));
    let mut ichiro = persons[2][0].record.clone();
    ichiro.relationship = Relationship::head();
    ichiro.head_name = Some(ichiro.name.clone());
    let new_head = ichiro.name.clone();
    persons[2].push(row(
        2,
        ichiro,
        9,
        ChangeReason::MoveOut,
        "令和8年12月15日",
        Some("2026-11-20"),
    ));
    for i in [1, 3] {
        let mut child = persons[i][0].record.clone();
        child.head_name = Some(new_head.clone());
        persons[i].push(row(
            2,
            child,
            9,
            ChangeReason::MoveOut,
            "令和8年12月15日",
            Some("2026-11-20"),
        ));
    }
    persons
}

#[test]
fn before_the_planned_date_a_mover_is_still_on_the_copy_without_the_move_out() {
    let persons = household_with_planned_move_out();
    let options = CertificateOptions {
        head_and_relationship: true,
        with_history: true,
        ..Default::default()
    };
    let c = build_with(CertificateKind::ResidentCopy, &persons, &options, ISSUED).unwrap();
    assert_eq!(
        c.persons.len(),
        4,
        "the 転出予定者 is still a resident (j50)"
    );
    // j1000: what the 転出届 recorded is left out before the planned date.
    assert_eq!(
        value(&c.common, ItemKind::HeadOfHousehold),
        Some("髙橋　花子")
    );
    assert_eq!(
        value(&c.persons[1].items, ItemKind::Relationship),
        Some("夫")
    );
    for p in &c.persons {
        assert_eq!(value(&p.items, ItemKind::Destination), None);
        assert!(p.history.iter().all(|l| !l.reason.contains("転出")));
    }
    // Not yet a 除票.
    let hanako = CertificateOptions {
        persons: PersonSelection::Persons(vec![a(1)]),
        ..Default::default()
    };
    assert_eq!(
        build_with(CertificateKind::RemovedCopy, &persons, &hanako, ISSUED),
        Err(CertificateError::StillResident(a(1)))
    );
}

#[test]
fn after_the_planned_date_the_mover_has_a_removed_record() {
    let persons = household_with_planned_move_out();
    let after = "2026-12-16";
    let options = CertificateOptions {
        head_and_relationship: true,
        ..Default::default()
    };
    let c = build_with(CertificateKind::ResidentCopy, &persons, &options, after).unwrap();
    assert_eq!(names(&c), ["髙橋　一郎", "髙橋　健", "髙橋　さくら"]);
    assert_eq!(
        value(&c.common, ItemKind::HeadOfHousehold),
        Some("髙橋　一郎")
    );
    let hanako = CertificateOptions {
        persons: PersonSelection::Persons(vec![a(1)]),
        ..Default::default()
    };
    assert_eq!(
        build_with(CertificateKind::ResidentCopy, &persons, &hanako, after),
        Err(CertificateError::NotResident {
            person: a(1),
            status: "転出"
        })
    );
    let c = build_with(CertificateKind::RemovedCopy, &persons, &hanako, after).unwrap();
    assert_eq!(c.title, "住民票の除票の写し");
    let items = &c.persons[0].items;
    assert_eq!(value(items, ItemKind::RemovalReason), Some("国内転出"));
    assert_eq!(value(items, ItemKind::RemovalDate), Some("令和8年12月15日"));
    assert_eq!(
        value(&c.common, ItemKind::Destination),
        Some("東京都昭島市田中町一丁目1番1号　昭島コーポ202号")
    );
    assert_eq!(
        c.certification.sentence,
        "この写しは、住民票の除票の原本と相違ないことを証明する。"
    );
    // The whole "household" of removed records is just 花子 here.
    let c = build_with(
        CertificateKind::RemovedCopy,
        &persons,
        &CertificateOptions::default(),
        after,
    )
    .unwrap();
    assert_eq!(names(&c), ["髙橋　花子"]);
}

#[test]
fn a_move_out_certificate_needs_a_recorded_domestic_move_out() {
    let persons = household_with_planned_move_out();
    let hanako = CertificateOptions {
        persons: PersonSelection::Persons(vec![a(1)]),
        ..Default::default()
    };
    // Issued in the move-out flow, before the planned date (j660), with
    // every item 住基令第23条 requires, whatever the omission flags say.
    let c = build_with(
        CertificateKind::MoveOutCertificate,
        &persons,
        &hanako,
        ISSUED,
    )
    .unwrap();
    assert_eq!(c.title, "転出証明書");
    let all: Vec<Item> = c
        .common
        .iter()
        .chain(&c.persons[0].items)
        .cloned()
        .collect();
    assert_eq!(value(&all, ItemKind::RemovalDate), Some("令和8年12月15日"));
    assert_eq!(
        all.iter()
            .find(|i| i.kind == ItemKind::RemovalDate)
            .map(|i| i.label.as_str()),
        Some("転出予定年月日")
    );
    assert!(value(&all, ItemKind::Destination).is_some());
    assert!(value(&all, ItemKind::MyNumber).is_some());
    assert!(value(&all, ItemKind::ResidentCode).is_some());
    assert!(value(&all, ItemKind::RegisteredDomicile).is_some());
    assert_eq!(value(&all, ItemKind::Relationship), Some("世帯主"));
    assert_eq!(value(&all, ItemKind::RemovalReason), None);
    assert_eq!(
        c.certification.sentence,
        "上記の者は、転出の届出をしたことを証明する。"
    );

    let reissue = CertificateOptions {
        reissue: true,
        ..hanako.clone()
    };
    let c = build_with(
        CertificateKind::MoveOutCertificate,
        &persons,
        &reissue,
        ISSUED,
    )
    .unwrap();
    assert_eq!(c.title, "転出証明書（再交付）");

    // 一郎 stays: no 転出 of his own.
    let ichiro = CertificateOptions {
        persons: PersonSelection::Persons(vec![a(2)]),
        ..Default::default()
    };
    assert_eq!(
        build_with(
            CertificateKind::MoveOutCertificate,
            &persons,
            &ichiro,
            ISSUED
        ),
        Err(CertificateError::NoPlannedMoveOut(a(2)))
    );
    // Whole household: only those who move out.
    let c = build_with(
        CertificateKind::MoveOutCertificate,
        &persons,
        &CertificateOptions::default(),
        ISSUED,
    )
    .unwrap();
    assert_eq!(names(&c), ["髙橋　花子"]);
    // Nobody moving out.
    assert_eq!(
        build_with(
            CertificateKind::MoveOutCertificate,
            &household(),
            &CertificateOptions::default(),
            ISSUED
        ),
        Err(CertificateError::EmptySelection)
    );
}

#[test]
fn no_move_out_certificate_for_a_move_abroad() {
    let mut persons = household_with_planned_move_out();
    let last = persons[0].last_mut().unwrap();
    last.change.reason = ChangeReason::MoveOutAbroad;
    if let Some(m) = last.record.removal.as_mut() {
        m.reason = ChangeReason::MoveOutAbroad;
        if let Some(d) = m.destination.as_mut() {
            d.abroad = true;
            d.address = "アメリカ合衆国".into();
        }
    }
    let hanako = CertificateOptions {
        persons: PersonSelection::Persons(vec![a(1)]),
        ..Default::default()
    };
    assert_eq!(
        build_with(
            CertificateKind::MoveOutCertificate,
            &persons,
            &hanako,
            ISSUED
        ),
        Err(CertificateError::NoPlannedMoveOut(a(1)))
    );
}

#[test]
fn a_dead_person_has_a_removed_record_with_the_date_of_death() {
    let mut persons = household();
    let mut dead = persons[2][0].record.clone();
    dead.status = ResidentStatus::Deceased;
    dead.removal = Some(Removal {
        reason: ChangeReason::Death,
        date: wareki("令和7年頃"),
        destination: None,
    });
    persons[2].push(row(
        2,
        dead,
        5,
        ChangeReason::Death,
        "令和7年頃",
        Some("2025-06-01"),
    ));
    let c = build_with(
        CertificateKind::RemovedCopy,
        &persons,
        &CertificateOptions {
            with_history: true,
            ..Default::default()
        },
        ISSUED,
    )
    .unwrap();
    assert_eq!(names(&c), ["髙橋　一郎"]);
    let items = &c.persons[0].items;
    assert_eq!(value(items, ItemKind::RemovalReason), Some("死亡"));
    assert_eq!(value(items, ItemKind::RemovalDate), Some("令和7年頃"));
    assert_eq!(
        items
            .iter()
            .find(|i| i.kind == ItemKind::RemovalDate)
            .map(|i| i.label.as_str()),
        Some("死亡年月日")
    );
    assert_eq!(
        c.persons[0].history.last().map(|l| l.reason.as_str()),
        Some("死亡")
    );
}

#[test]
fn a_record_items_certificate_certifies_the_requested_items() {
    let options = CertificateOptions {
        persons: PersonSelection::Persons(vec![a(3)]),
        record_items: Some(vec![ItemKind::Name, ItemKind::Address, ItemKind::MyNumber]),
        omit_address_annex: true,
        ..Default::default()
    };
    let c = build_with(
        CertificateKind::RecordItemsCertificate,
        &household(),
        &options,
        ISSUED,
    )
    .unwrap();
    assert_eq!(c.title, "住民票記載事項証明書");
    assert_eq!(labels(&c.common), ["住所"]);
    assert_eq!(c.common[0].value, HOME, "方書 omitted on request (j1030)");
    // 個人番号 is listed but not asked for by its own flag: still omitted.
    assert_eq!(labels(&c.persons[0].items), ["氏名"]);
    assert_eq!(
        c.certification.sentence,
        "上記の事項は、住民票に記載されていることを証明する。"
    );
    assert_eq!(
        c.issue_record().items,
        vec![ItemKind::Name, ItemKind::Address]
    );

    let nothing = CertificateOptions {
        record_items: Some(vec![]),
        ..Default::default()
    };
    assert_eq!(
        build_with(
            CertificateKind::RecordItemsCertificate,
            &household(),
            &nothing,
            ISSUED
        ),
        Err(CertificateError::NoRecordItems)
    );
    let only_omitted = CertificateOptions {
        record_items: Some(vec![ItemKind::MyNumber]),
        ..Default::default()
    };
    assert_eq!(
        build_with(
            CertificateKind::RecordItemsCertificate,
            &household(),
            &only_omitted,
            ISSUED
        ),
        Err(CertificateError::NoRecordItems)
    );
}

#[test]
fn options_that_do_not_fit_the_kind_are_refused() {
    let cases = [
        (
            CertificateKind::ResidentCopy,
            CertificateOptions {
                omit_address_annex: true,
                ..Default::default()
            },
            "omit_address_annex",
        ),
        (
            CertificateKind::RemovedCopy,
            CertificateOptions {
                record_items: Some(vec![ItemKind::Name]),
                ..Default::default()
            },
            "record_items",
        ),
        (
            CertificateKind::MoveOutCertificate,
            CertificateOptions {
                with_history: true,
                ..Default::default()
            },
            "with_history",
        ),
        (
            CertificateKind::MoveOutCertificate,
            CertificateOptions {
                official_use: true,
                ..Default::default()
            },
            "official_use",
        ),
        (
            CertificateKind::ResidentCopy,
            CertificateOptions {
                reissue: true,
                ..Default::default()
            },
            "reissue",
        ),
    ];
    for (kind, options, option) in cases {
        assert_eq!(
            build_with(kind, &household(), &options, ISSUED),
            Err(CertificateError::OptionNotApplicable { option, kind })
        );
    }
}

fn zhang() -> Vec<HistoryRow> {
    let mut r = person(
        8,
        "張　玉蓮",
        "チャン　ユウリン",
        "平成13年2月3日",
        Sex::Female,
        "世帯主",
    );
    r.kind = ResidentKind::Foreign;
    r.birth_date = DateValue::calendar(day("2001-02-03"));
    r.registered_domicile = None;
    r.household_number = h(3);
    r.head_name = Some(r.name.clone());
    r.foreign = Some(ForeignResidentInfo {
        alphabet_name: "ZHANG YULIN".into(),
        alias: Some(PersonName::new("住民　花子").unwrap()),
        alias_kana: Some(Furigana::new("ジュウミン　ハナコ").unwrap()),
        nationality: "中国".into(),
        residence_status: "技術・人文知識・国際業務".into(),
        period_of_stay: Some("3年".into()),
        stay_expires_on: Some(DateValue::calendar(day("2027-03-31"))),
        card_number: Some("AB12345678CD".into()),
    });
    vec![row(
        1,
        r,
        1,
        ChangeReason::MoveInFromAbroad,
        "令和2年4月1日",
        Some("2020-04-01"),
    )]
}

#[test]
fn a_foreign_resident_has_seireki_dates_and_omittable_status_items() {
    let c = build_with(
        CertificateKind::ResidentCopy,
        &[zhang()],
        &CertificateOptions {
            furigana: true,
            ..Default::default()
        },
        ISSUED,
    )
    .unwrap();
    let items = &c.persons[0].items;
    // j1020's example.
    assert_eq!(
        value(items, ItemKind::Name),
        Some("ZHANG YULIN　張　玉蓮　（チャン　ユウリン）")
    );
    assert_eq!(
        value(items, ItemKind::Alias),
        Some("住民　花子　（ジュウミン　ハナコ）")
    );
    // j90: 西暦 for a foreign resident's birth date.
    assert_eq!(value(items, ItemKind::BirthDate), Some("2001年2月3日"));
    assert_eq!(
        items
            .iter()
            .find(|i| i.kind == ItemKind::ResidentSince)
            .map(|i| i.label.as_str()),
        Some("外国人住民となった年月日")
    );
    assert_eq!(value(items, ItemKind::Nationality), None);

    let c = build_with(
        CertificateKind::ResidentCopy,
        &[zhang()],
        &CertificateOptions {
            foreign_status: true,
            ..Default::default()
        },
        ISSUED,
    )
    .unwrap();
    let items = &c.persons[0].items;
    assert_eq!(value(items, ItemKind::Nationality), Some("中国"));
    assert_eq!(
        value(items, ItemKind::ResidenceStatus),
        Some("技術・人文知識・国際業務")
    );
    assert_eq!(value(items, ItemKind::PeriodOfStay), Some("3年"));
    assert_eq!(value(items, ItemKind::StayExpiresOn), Some("2027年3月31日"));
    assert_eq!(
        value(items, ItemKind::ResidenceCardNumber),
        Some("AB12345678CD")
    );
}

#[test]
fn irregular_dates_are_shown_as_entered() {
    let mut persons = household();
    persons[0][0].record.birth_date = wareki("明治45年7月30日");
    persons[1][0].record.birth_date = wareki("年月日不詳");
    let c = build_with(
        CertificateKind::ResidentCopy,
        &persons,
        &CertificateOptions::default(),
        ISSUED,
    )
    .unwrap();
    assert_eq!(
        value(&c.persons[0].items, ItemKind::BirthDate),
        Some("明治45年7月30日")
    );
    // An unknown birth date sorts after the known ones (j1010).
    assert_eq!(names(&c).last().map(String::as_str), Some("髙橋　さくら"));
    assert_eq!(
        value(&c.persons[3].items, ItemKind::BirthDate),
        Some("年月日不詳")
    );
}

#[test]
fn the_standard_order_groups_members_as_j1010_says() {
    let mut persons = Vec::new();
    let members = [
        (10, "同居　人", "同居人", "昭和40年1月1日"),
        (11, "髙橋　父", "父", "昭和20年1月1日"),
        (12, "髙橋　母", "母", "昭和18年1月1日"),
        (13, "髙橋　兄", "兄", "昭和50年1月1日"),
        (14, "髙橋　孫", "子の子", "令和3年1月1日"),
        (15, "髙橋　嫁", "子の妻", "平成10年1月1日"),
        (16, "髙橋　長男", "子", "平成8年1月1日"),
        (17, "髙橋　花子", "世帯主", "昭和48年1月1日"),
        (18, "妻側　父", "妻の父", "昭和15年1月1日"),
        (19, "縁故　者", "縁故者", "昭和30年1月1日"),
    ];
    for (n, name, rel, birth) in members {
        let mut r = person(n, name, "タカハシ", birth, Sex::Male, rel);
        if rel == "父" {
            // 父 is the 筆頭者: before 母 although younger.
            r.registered_domicile = Some(RegisteredDomicile {
                domicile: "東京都府中市寿町一丁目5番地".into(),
                head: name.into(),
            });
        }
        persons.push(vec![row(
            1,
            r,
            1,
            ChangeReason::MoveIn,
            "令和2年4月1日",
            None,
        )]);
    }
    let c = build_with(
        CertificateKind::ResidentCopy,
        &persons,
        &CertificateOptions::default(),
        ISSUED,
    )
    .unwrap();
    assert_eq!(
        names(&c),
        [
            "髙橋　花子",
            "髙橋　長男",
            "髙橋　嫁",
            "髙橋　孫",
            "髙橋　父",
            "髙橋　母",
            "髙橋　兄",
            "妻側　父",
            "縁故　者",
            "同居　人",
        ]
    );
}

#[test]
fn issue_numbers_follow_j1040() {
    let n = IssueNumber {
        issued_on: day("2020-05-02"),
        municipality: "府中市".into(),
        terminal: "本庁1".into(),
        printer: "プリンタ001".into(),
        sequence: 11,
    };
    assert_eq!(n.to_string(), "20200502 府中市 本庁1 プリンタ001 011");
}

#[test]
fn kinds_round_trip_and_errors_read_in_both_languages() {
    for k in CertificateKind::ALL {
        assert_eq!(CertificateKind::from_code(k.code()), Some(k));
    }
    let e = CertificateError::StillResident(a(1));
    assert_eq!(e.code(), "certificate_still_resident");
    assert!(e.message_ja().contains("除票の写し"));
    assert!(e.message_en().contains("still a resident"));
}
