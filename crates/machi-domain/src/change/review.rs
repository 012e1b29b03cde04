//! 審査・決裁 (j530): what a supervisor sees before approving a change.
//! Each person's record before and after, item by item with what differs
//! marked, and the warnings the rules raise about the change as a whole.
//! Pure: the caller loads the records (the current registry and a dry run
//! for a provisional change, the history rows for a committed one).

use chrono::NaiveDate;

use super::reason::ChangeReason;
use crate::dates::{DateValue, EraTable};
use crate::ids::HouseholdNumber;
use crate::model::{ResidentKind, ResidentRecord};

/// How many years back an 異動日 may lie before the reviewer is warned
/// (j480 allows any day up to the processing day; a date this old is most
/// often a typing mistake, or a late notification that needs a 催告).
pub const FAR_PAST_YEARS: i32 = 1;

/// One item of a record, before and after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemDiff {
    pub label_ja: &'static str,
    pub label_en: &'static str,
    /// Empty when the person had no record before (a new entry) or the
    /// item was not set.
    pub before: String,
    pub after: String,
    pub changed: bool,
}

/// One person's items (j10, j20), as a person reads them: dates in 和暦
/// (a foreign resident's birth date and end of stay in 西暦, j90), labels
/// in Japanese, the 個人番号 never shown (only whether one is recorded,
/// and whether it changed).
///
/// `en`: the values that are labels (状態, 性別, 消除事由 …) in English.
pub fn compare(
    before: Option<&ResidentRecord>,
    after: &ResidentRecord,
    eras: &EraTable,
    en: bool,
) -> Vec<ItemDiff> {
    let b = before.map(|r| items(r, eras, en)).unwrap_or_default();
    items(after, eras, en)
        .into_iter()
        .map(|a| {
            let old = b.iter().find(|x| x.label_ja == a.label_ja);
            ItemDiff {
                label_ja: a.label_ja,
                label_en: a.label_en,
                before: old.map(|o| o.shown.clone()).unwrap_or_default(),
                changed: old.map_or(!a.key.is_empty(), |o| o.key != a.key),
                after: a.shown,
            }
        })
        .chain(
            // Items the record had and no longer has (e.g. a 方書 removed).
            b.iter()
                .filter(|o| !o.shown.is_empty() && !items_has(after, eras, o.label_ja))
                .map(|o| ItemDiff {
                    label_ja: o.label_ja,
                    label_en: o.label_en,
                    before: o.shown.clone(),
                    after: String::new(),
                    changed: true,
                }),
        )
        .filter(|d| !(d.before.is_empty() && d.after.is_empty()))
        .collect()
}

fn items_has(r: &ResidentRecord, eras: &EraTable, label: &str) -> bool {
    items(r, eras, false).iter().any(|i| i.label_ja == label)
}

/// One item: its labels, what is shown, and what is compared (the shown
/// text, except for the 個人番号, compared by value and never shown).
struct Item {
    label_ja: &'static str,
    label_en: &'static str,
    shown: String,
    key: String,
}

fn date_text(d: &DateValue, eras: &EraTable, seireki: bool) -> String {
    if seireki {
        d.display_seireki(eras)
    } else {
        d.display_wareki(eras)
    }
}

/// The items of a record in the order a 住民票 lists them.
fn items(r: &ResidentRecord, eras: &EraTable, en: bool) -> Vec<Item> {
    let t = |ja: &'static str, e: &'static str| if en { e } else { ja };
    let foreign = r.kind == ResidentKind::Foreign;
    let opt = |v: Option<String>| v.unwrap_or_default();
    let mut out = vec![
        (
            "状態",
            "Status",
            t(r.status.label_ja(), r.status.label_en()).to_string(),
        ),
        ("氏名", "Name", r.name.as_str().to_string()),
        (
            "フリガナ",
            "Reading",
            opt(r.name_kana.as_ref().map(|k| k.as_str().to_string())),
        ),
        (
            "生年月日",
            "Date of birth",
            date_text(&r.birth_date, eras, foreign),
        ),
        (
            "性別",
            "Sex",
            t(r.sex.label_ja(), r.sex.label_en()).to_string(),
        ),
        ("世帯番号", "Household no.", r.household_number.to_string()),
        ("続柄", "Relationship", r.relationship.to_string()),
        (
            "世帯主",
            "Head of household",
            opt(r.head_name.as_ref().map(|n| n.as_str().to_string())),
        ),
        ("住所", "Address", r.address.full()),
        (
            "郵便番号",
            "Postal code",
            opt(r.address.postal_code.as_ref().map(|p| p.to_string())),
        ),
        (
            "住定日",
            "At address since",
            opt(r.address_since.as_ref().map(|d| date_text(d, eras, false))),
        ),
        (
            "住民となった日",
            "Resident since",
            opt(r.resident_since.as_ref().map(|d| date_text(d, eras, false))),
        ),
        (
            "前住所",
            "Previous address",
            opt(r.previous_address.clone()),
        ),
        (
            "本籍",
            "Domicile",
            opt(r.registered_domicile.as_ref().map(|d| d.domicile.clone())),
        ),
        (
            "筆頭者",
            "Head of family register",
            opt(r.registered_domicile.as_ref().map(|d| d.head.clone())),
        ),
        (
            "個人番号",
            "My Number",
            opt(r
                .my_number
                .as_ref()
                .map(|_| t("登録あり", "recorded").to_string())),
        ),
        (
            "住民票コード",
            "Resident code",
            opt(r.resident_code.as_ref().map(|c| c.to_string())),
        ),
    ];
    if let Some(f) = &r.foreign {
        out.extend([
            (
                "氏名（アルファベット）",
                "Name (alphabet)",
                f.alphabet_name.clone(),
            ),
            (
                "通称",
                "Alias",
                opt(f.alias.as_ref().map(|a| a.as_str().to_string())),
            ),
            ("国籍・地域", "Nationality", f.nationality.clone()),
            (
                "在留資格",
                "Status of residence",
                f.residence_status.clone(),
            ),
            ("在留期間", "Period of stay", opt(f.period_of_stay.clone())),
            (
                "在留期間の満了の日",
                "End of stay",
                opt(f.stay_expires_on.as_ref().map(|d| date_text(d, eras, true))),
            ),
            (
                "在留カード等番号",
                "Card number",
                opt(f.card_number.clone()),
            ),
        ]);
    }
    if let Some(m) = &r.removal {
        out.extend([
            (
                "消除事由",
                "Reason for removal",
                t(m.reason.label_ja(), m.reason.label_en()).to_string(),
            ),
            ("消除日", "Removed on", date_text(&m.date, eras, false)),
            (
                "転出先",
                "Destination",
                opt(m.destination.as_ref().map(|d| {
                    let place = match &d.annex {
                        Some(a) if !a.is_empty() => format!("{}　{}", d.address, a),
                        _ => d.address.clone(),
                    };
                    if d.abroad {
                        format!("{place}{}", t("（国外）", " (abroad)"))
                    } else {
                        place
                    }
                })),
            ),
        ]);
    }
    out.into_iter()
        .map(|(label_ja, label_en, shown)| {
            let key = if label_ja == "個人番号" {
                opt(r.my_number.as_ref().map(|n| n.as_str().to_string()))
            } else {
                shown.clone()
            };
            Item {
                label_ja,
                label_en,
                shown,
                key,
            }
        })
        .collect()
}

/// Something the reviewer should look at before approving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warning {
    /// 転居 (j210) is a move within the municipality; a new address
    /// elsewhere is a 転出 (j640, j650), not a 転居.
    MoveWithinLeavesMunicipality { person: String, address: String },
    /// The change alters no item of anyone's record (j540: the entry is
    /// checked before it is committed).
    NoChange,
    /// j490, j500: the household is left without a head; a
    /// 世帯主変更依頼通知書 is due.
    HouseholdWithoutHead { household_number: HouseholdNumber },
    /// j480: the 異動日 lies more than [`FAR_PAST_YEARS`] before the
    /// processing day.
    DateFarInPast { date: String },
}

impl Warning {
    pub fn message_ja(&self) -> String {
        match self {
            Warning::MoveWithinLeavesMunicipality { person, address } => format!(
                "転居ですが、{person}の新しい住所「{address}」はこの市区町村の外です。市区町村外への異動は転出として届け出るものです。"
            ),
            Warning::NoChange => "この異動では誰の記録も変わりません。".into(),
            Warning::HouseholdWithoutHead { household_number } => format!(
                "世帯（世帯番号 {household_number}）が世帯主のいない世帯になります。世帯主変更依頼通知書の送付が必要です。"
            ),
            Warning::DateFarInPast { date } => format!(
                "異動日（{date}）が処理日より{FAR_PAST_YEARS}年以上前です。日付を確かめてください。"
            ),
        }
    }

    pub fn message_en(&self) -> String {
        match self {
            Warning::MoveWithinLeavesMunicipality { person, address } => format!(
                "a move within the municipality, but {person}'s new address \"{address}\" is outside it: a move elsewhere is a move-out"
            ),
            Warning::NoChange => "this change alters nobody's record".into(),
            Warning::HouseholdWithoutHead { household_number } => format!(
                "household {household_number} is left without a head; a request to name a new head is due"
            ),
            Warning::DateFarInPast { date } => format!(
                "the effective date ({date}) is more than {FAR_PAST_YEARS} year(s) before the processing day; check it"
            ),
        }
    }
}

impl super::Notice {
    /// The notice as the clerk reads it (j490, j500).
    pub fn message_ja(&self) -> String {
        match self {
            super::Notice::HeadAssigned {
                household_number, ..
            } => format!(
                "世帯主が異動したため、世帯（世帯番号 {household_number}）に残る一人を職権で世帯主としました。"
            ),
            super::Notice::HeadChangeRequested { household_number } => format!(
                "世帯（世帯番号 {household_number}）は世帯主のいない世帯になりました。世帯主変更依頼通知書を送付してください。"
            ),
        }
    }

    pub fn message_en(&self) -> String {
        match self {
            super::Notice::HeadAssigned {
                household_number, ..
            } => format!(
                "the head moved; the one remaining member of household {household_number} was made head ex officio"
            ),
            super::Notice::HeadChangeRequested { household_number } => format!(
                "household {household_number} is left without a head; send the request to name a new head"
            ),
        }
    }
}

/// Whether `address` lies in the municipality named `municipality` of
/// `prefecture` (e.g. 府中市 of 東京都): it starts with the name, with or
/// without the prefecture before it.
pub fn in_municipality(address: &str, prefecture: &str, municipality: &str) -> bool {
    let a = address.trim();
    let rest = a.strip_prefix(prefecture).unwrap_or(a);
    !municipality.is_empty() && rest.starts_with(municipality)
}

/// The warnings the rules raise about a change, from each person's record
/// before (None for a new entry) and after.
pub fn warnings(
    reason: ChangeReason,
    effective_date: &DateValue,
    today: NaiveDate,
    prefecture: &str,
    municipality: &str,
    pairs: &[(Option<&ResidentRecord>, &ResidentRecord)],
    eras: &EraTable,
) -> Vec<Warning> {
    let mut out = Vec::new();
    if reason == ChangeReason::MoveWithin {
        for (_, after) in pairs {
            if after.status.is_resident()
                && !in_municipality(&after.address.address, prefecture, municipality)
            {
                out.push(Warning::MoveWithinLeavesMunicipality {
                    person: after.name.as_str().to_string(),
                    address: after.address.full(),
                });
            }
        }
    }
    if pairs.iter().all(|(b, a)| b.is_some_and(|b| b == *a)) {
        out.push(Warning::NoChange);
    }
    let mut headless: Vec<HouseholdNumber> = Vec::new();
    for (before, after) in pairs {
        let lost_head = after.status.is_resident()
            && after.head_name.is_none()
            && before.is_none_or(|b| {
                b.head_name.is_some() || b.household_number != after.household_number
            });
        if lost_head && !headless.contains(&after.household_number) {
            headless.push(after.household_number.clone());
        }
    }
    out.extend(
        headless
            .into_iter()
            .map(|household_number| Warning::HouseholdWithoutHead { household_number }),
    );
    if let Some(d) = effective_date.as_calendar()
        && let Some(limit) =
            today.checked_sub_months(chrono::Months::new(12 * FAR_PAST_YEARS as u32))
        && d < limit
    {
        out.push(Warning::DateFarInPast {
            date: effective_date.display_wareki(eras),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::AddresseeNumber;
    use crate::model::{Address, ResidentStatus, Sex};
    use crate::names::PersonName;
    use crate::relationship::Relationship;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn rec(address: &str) -> ResidentRecord {
        ResidentRecord {
            addressee_number: AddresseeNumber::from_serial(1).unwrap(),
            household_number: HouseholdNumber::from_serial(1).unwrap(),
            kind: ResidentKind::Japanese,
            status: ResidentStatus::Resident,
            name: PersonName::new("架空　太郎").unwrap(),
            name_kana: None,
            birth_date: DateValue::calendar(day("1980-05-05")),
            sex: Sex::Male,
            relationship: Relationship::head(),
            head_name: Some(PersonName::new("架空　太郎").unwrap()),
            registered_domicile: None,
            address: Address {
                address: address.into(),
                annex: None,
                postal_code: None,
            },
            address_since: None,
            resident_since: None,
            previous_address: None,
            my_number: None,
            resident_code: None,
            foreign: None,
            removal: None,
        }
    }

    #[test]
    fn a_move_marks_the_address_and_nothing_else() {
        let eras = EraTable::standard();
        let before = rec("東京都府中市宮西町二丁目24番地");
        let after = rec("東京都府中市寿町一丁目1番地");
        let d = compare(Some(&before), &after, &eras, false);
        let changed: Vec<_> = d.iter().filter(|i| i.changed).map(|i| i.label_ja).collect();
        assert_eq!(changed, ["住所"]);
        let birth = d.iter().find(|i| i.label_ja == "生年月日").unwrap();
        assert_eq!(birth.after, "昭和55年5月5日");
        // A new person: every item is new, nothing before.
        let d = compare(None, &after, &eras, false);
        assert!(d.iter().all(|i| i.changed && i.before.is_empty()));
    }

    #[test]
    fn warnings_for_a_move_out_of_town_no_change_a_headless_household_and_an_old_date() {
        let eras = EraTable::standard();
        let today = day("2026-12-06");
        let before = rec("東京都府中市宮西町二丁目24番地");
        let away = rec("東京都調布市小島町一丁目1番地");
        let recent = DateValue::calendar(day("2026-12-01"));
        let w = warnings(
            ChangeReason::MoveWithin,
            &recent,
            today,
            "東京都",
            "府中市",
            &[(Some(&before), &away)],
            &eras,
        );
        assert!(
            matches!(&w[..], [Warning::MoveWithinLeavesMunicipality { .. }]),
            "{w:?}"
        );
        // Without the prefecture, the same.
        assert!(in_municipality("府中市寿町一丁目", "東京都", "府中市"));
        assert!(!in_municipality("調布市小島町", "東京都", "府中市"));
        let w = warnings(
            ChangeReason::MoveWithin,
            &recent,
            today,
            "東京都",
            "府中市",
            &[(Some(&before), &before)],
            &eras,
        );
        assert_eq!(w, [Warning::NoChange]);
        let mut headless = before.clone();
        headless.head_name = None;
        headless.relationship = Relationship::parse("妻").unwrap();
        let old = DateValue::calendar(day("2020-01-01"));
        let w = warnings(
            ChangeReason::HouseholdSplit,
            &old,
            today,
            "東京都",
            "府中市",
            &[(Some(&before), &headless)],
            &eras,
        );
        assert!(
            matches!(w[0], Warning::HouseholdWithoutHead { .. }),
            "{w:?}"
        );
        assert!(
            matches!(&w[1], Warning::DateFarInPast { date } if date == "令和2年1月1日"),
            "{w:?}"
        );
        assert!(w[1].message_ja().contains("令和2年1月1日"));
    }
}
