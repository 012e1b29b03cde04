//! What the API returns: records as people read them (dates in 和暦 with
//! the value kept as entered, labels in Japanese) and as programs read them
//! (ISO dates, snake_case codes).

use chrono::{DateTime, NaiveDate, Utc};
use machi_domain::change::{ChangeInfo, HistoryRow, Notice};
use machi_domain::dates::{DateValue, EraTable};
use machi_domain::model::{ResidentKind, ResidentRecord};
use serde::Serialize;
use utoipa::ToSchema;

use crate::service::clock::jst;
use crate::store::records::ChangeRecord;

/// A date as the registry keeps it (j80): a calendar date, a non-calendar
/// date or an unknown date, never invented.
#[derive(Debug, Serialize, ToSchema)]
pub struct DateView {
    /// How to show it: 和暦 (j90), or 西暦 for a foreign resident's birth
    /// date and end of stay. Unknown and non-calendar dates as entered.
    #[schema(example = "平成元年1月8日")]
    pub text: String,
    /// `calendar`, `non_calendar` or `unknown`.
    #[schema(example = "calendar")]
    pub kind: String,
    /// ISO 8601, for calendar dates only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "1989-01-08")]
    pub iso: Option<String>,
    /// 和暦 form.
    pub wareki: String,
}

impl DateView {
    pub fn new(d: &DateValue, eras: &EraTable, seireki: bool) -> Self {
        let kind = match d {
            DateValue::Calendar { .. } => "calendar",
            DateValue::NonCalendar { .. } => "non_calendar",
            DateValue::Unknown(_) => "unknown",
        };
        let wareki = d.display_wareki(eras);
        DateView {
            text: if seireki {
                d.display_seireki(eras)
            } else {
                wareki.clone()
            },
            kind: kind.to_string(),
            iso: d.as_calendar().map(|c| c.to_string()),
            wareki,
        }
    }

    pub fn day(d: NaiveDate, eras: &EraTable) -> Self {
        Self::new(&DateValue::calendar(d), eras, false)
    }
}

/// 本籍・筆頭者
#[derive(Debug, Serialize, ToSchema)]
pub struct DomicileView {
    pub domicile: String,
    pub head: String,
}

/// The items only foreign residents have (j20).
#[derive(Debug, Serialize, ToSchema)]
pub struct ForeignView {
    pub alphabet_name: String,
    pub alias: Option<String>,
    pub alias_kana: Option<String>,
    pub nationality: String,
    pub residence_status: String,
    pub period_of_stay: Option<String>,
    /// 在留期間の満了の日, in 西暦 (j90).
    pub stay_expires_on: Option<DateView>,
    pub card_number: Option<String>,
}

/// 消除 facts of a 除票.
#[derive(Debug, Serialize, ToSchema)]
pub struct RemovalView {
    pub reason: String,
    pub reason_label_ja: String,
    pub date: DateView,
    pub destination: Option<String>,
    /// 転出先の郵便番号 (`183-0056`), when one was entered.
    pub destination_postal_code: Option<String>,
    pub destination_abroad: bool,
}

/// The change that appended a history row (j200).
#[derive(Debug, Serialize, ToSchema)]
pub struct ChangeInfoView {
    pub change_id: i64,
    /// 異動事由 code (j210).
    pub reason: String,
    pub reason_label_ja: String,
    /// 異動日
    pub effective_date: DateView,
    /// 処理日
    pub processed_on: DateView,
    /// 届出日
    pub filed_on: Option<DateView>,
    /// 入力場所
    pub input_place: String,
    /// 入力端末
    pub input_terminal: String,
    /// Transaction time, RFC 3339 (JST).
    pub recorded_at: String,
    /// For 異動の取消し: the cancelled change.
    pub cancels: Option<i64>,
}

impl ChangeInfoView {
    pub fn new(c: &ChangeInfo, eras: &EraTable) -> Self {
        ChangeInfoView {
            change_id: c.change_id,
            reason: c.reason.code().to_string(),
            reason_label_ja: c.reason.label_ja().to_string(),
            effective_date: DateView::new(&c.effective_date, eras, false),
            processed_on: DateView::day(c.processed_on, eras),
            filed_on: c.filed_on.map(|d| DateView::day(d, eras)),
            input_place: c.input_place.clone(),
            input_terminal: c.input_terminal.clone(),
            recorded_at: rfc3339(c.recorded_at),
            cancels: c.cancels,
        }
    }
}

/// Microseconds since the epoch as RFC 3339 in JST.
pub fn rfc3339(micros: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(micros)
        .map(|t| t.with_timezone(&jst()).to_rfc3339())
        .unwrap_or_default()
}

/// 住民票: one history row (the current one unless asked "as of").
#[derive(Debug, Serialize, ToSchema)]
pub struct ResidentView {
    /// 宛名番号
    pub addressee_number: String,
    /// 履歴番号
    pub history_number: i64,
    /// 世帯番号
    pub household_number: String,
    /// `japanese` or `foreign`
    pub kind: String,
    /// `resident`, `moved_out`, `deceased`, `removed`, `entry_cancelled`
    pub status: String,
    pub status_label_ja: String,
    /// 氏名, exactly as entered.
    pub name: String,
    /// フリガナ
    pub name_kana: Option<String>,
    /// 生年月日
    pub birth_date: DateView,
    /// `male` or `female`
    pub sex: String,
    pub sex_label_ja: String,
    /// 続柄
    pub relationship: String,
    /// 世帯主の氏名
    pub head_name: Option<String>,
    pub registered_domicile: Option<DomicileView>,
    pub address: String,
    /// 方書
    pub address_annex: Option<String>,
    pub postal_code: Option<String>,
    /// 住定日
    pub address_since: Option<DateView>,
    /// 住民となった年月日
    pub resident_since: Option<DateView>,
    /// 転入前住所
    pub previous_address: Option<String>,
    /// Whether a 個人番号 is recorded. The number itself is never returned
    /// by this endpoint.
    pub has_my_number: bool,
    /// Masked 個人番号 (`************`) when one is recorded.
    pub my_number_masked: Option<String>,
    /// 住民票コード
    pub resident_code: Option<String>,
    pub foreign: Option<ForeignView>,
    pub removal: Option<RemovalView>,
    /// The change that appended this row.
    pub change: ChangeInfoView,
    /// j380: `provisional` (仮支援措置期間中) or `in_effect` (支援措置期間中)
    /// on the record of a person under a support measure, shown after a
    /// release; absent otherwise. Lists show such persons, and those
    /// living with them, as restricted entries instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub support_measure: Option<String>,
}

impl ResidentView {
    pub fn new(row: &HistoryRow, eras: &EraTable) -> Self {
        let r: &ResidentRecord = &row.record;
        let foreign = r.kind == ResidentKind::Foreign;
        let code = |v: serde_json::Value| v.as_str().unwrap_or_default().to_string();
        ResidentView {
            addressee_number: r.addressee_number.to_string(),
            history_number: row.history_number,
            household_number: r.household_number.to_string(),
            kind: code(serde_json::to_value(r.kind).unwrap_or_default()),
            status: code(serde_json::to_value(r.status).unwrap_or_default()),
            status_label_ja: r.status.label_ja().to_string(),
            name: r.name.as_str().to_string(),
            name_kana: r.name_kana.as_ref().map(|k| k.as_str().to_string()),
            // j90: a foreign resident's birth date is shown in 西暦.
            birth_date: DateView::new(&r.birth_date, eras, foreign),
            sex: code(serde_json::to_value(r.sex).unwrap_or_default()),
            sex_label_ja: r.sex.label_ja().to_string(),
            relationship: r.relationship.to_string(),
            head_name: r.head_name.as_ref().map(|n| n.as_str().to_string()),
            registered_domicile: r.registered_domicile.as_ref().map(|d| DomicileView {
                domicile: d.domicile.clone(),
                head: d.head.clone(),
            }),
            address: r.address.address.clone(),
            address_annex: r.address.annex.clone(),
            postal_code: r.address.postal_code.as_ref().map(|p| p.to_string()),
            address_since: r
                .address_since
                .as_ref()
                .map(|d| DateView::new(d, eras, false)),
            resident_since: r
                .resident_since
                .as_ref()
                .map(|d| DateView::new(d, eras, false)),
            previous_address: r.previous_address.clone(),
            has_my_number: r.my_number.is_some(),
            my_number_masked: r.my_number.as_ref().map(|n| n.masked().to_string()),
            resident_code: r.resident_code.as_ref().map(|c| c.to_string()),
            foreign: r.foreign.as_ref().map(|f| ForeignView {
                alphabet_name: f.alphabet_name.clone(),
                alias: f.alias.as_ref().map(|a| a.as_str().to_string()),
                alias_kana: f.alias_kana.as_ref().map(|a| a.as_str().to_string()),
                nationality: f.nationality.clone(),
                residence_status: f.residence_status.clone(),
                period_of_stay: f.period_of_stay.clone(),
                stay_expires_on: f
                    .stay_expires_on
                    .as_ref()
                    .map(|d| DateView::new(d, eras, true)),
                card_number: f.card_number.clone(),
            }),
            removal: r.removal.as_ref().map(|m| RemovalView {
                reason: m.reason.code().to_string(),
                reason_label_ja: m.reason.label_ja().to_string(),
                date: DateView::new(&m.date, eras, false),
                destination: m.destination.as_ref().map(|d| match &d.annex {
                    Some(a) => format!("{}　{}", d.address, a),
                    None => d.address.clone(),
                }),
                destination_postal_code: m
                    .destination
                    .as_ref()
                    .and_then(|d| d.postal_code.as_ref())
                    .map(|p| p.to_string()),
                destination_abroad: m.destination.as_ref().is_some_and(|d| d.abroad),
            }),
            change: ChangeInfoView::new(&row.change, eras),
            support_measure: None,
        }
    }

    /// Marks a person under a support measure (j380: 支援措置期間中 or
    /// 仮支援措置期間中), on a record shown after a release.
    pub fn protected(mut self, p: Option<&crate::service::support::Protection>) -> Self {
        if let Some(p) = p {
            self.support_measure = Some(
                if p.provisional {
                    "provisional"
                } else {
                    "in_effect"
                }
                .into(),
            );
        }
        self
    }
}

/// What a list shows of a person the shield of a support measure covers
/// (j380, j410, j440): a protected person, or anyone living in their
/// household or at their address, all alike, so that a list tells neither
/// where they live nor which of them is protected. Only who they are:
/// no address, household, head, relationship, domicile, dates of arrival,
/// identifiers or change.
#[derive(Debug, Serialize, ToSchema)]
pub struct RestrictedResidentView {
    /// 宛名番号: what a support officer releases a request for.
    pub addressee_number: String,
    /// `japanese` or `foreign`
    pub kind: String,
    /// `resident`, `moved_out`, `deceased`, `removed`, `entry_cancelled`
    pub status: String,
    pub status_label_ja: String,
    /// 氏名, exactly as entered.
    pub name: String,
    /// フリガナ
    pub name_kana: Option<String>,
    /// A foreign resident's name in the alphabet.
    pub alphabet_name: Option<String>,
    /// 生年月日
    pub birth_date: DateView,
    /// `male` or `female`
    pub sex: String,
    pub sex_label_ja: String,
    /// Always `restricted`.
    #[schema(example = "restricted")]
    pub support_measure: String,
    #[schema(example = "支援措置対象：閲覧には解除が必要です")]
    pub notice_ja: String,
    pub notice_en: String,
}

/// The notice on a restricted entry.
pub const RESTRICTED_JA: &str = "支援措置対象：閲覧には解除が必要です";
pub const RESTRICTED_EN: &str = "Support measure: viewing needs a release";

impl RestrictedResidentView {
    pub fn new(row: &HistoryRow, eras: &EraTable) -> Self {
        let v = ResidentView::new(row, eras);
        RestrictedResidentView {
            addressee_number: v.addressee_number,
            kind: v.kind,
            status: v.status,
            status_label_ja: v.status_label_ja,
            name: v.name,
            name_kana: v.name_kana,
            alphabet_name: v.foreign.map(|f| f.alphabet_name),
            birth_date: v.birth_date,
            sex: v.sex,
            sex_label_ja: v.sex_label_ja,
            support_measure: "restricted".into(),
            notice_ja: RESTRICTED_JA.into(),
            notice_en: RESTRICTED_EN.into(),
        }
    }
}

/// One person in a list: the record, or, for a person the shield of a
/// support measure covers, the restricted entry.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum ResidentEntry {
    Shown(Box<ResidentView>),
    Restricted(Box<RestrictedResidentView>),
}

impl ResidentEntry {
    pub fn new(row: &HistoryRow, eras: &EraTable, restricted: bool) -> Self {
        if restricted {
            ResidentEntry::Restricted(Box::new(RestrictedResidentView::new(row, eras)))
        } else {
            ResidentEntry::Shown(Box::new(ResidentView::new(row, eras)))
        }
    }
}

/// A person's record with the whole history, oldest first (j200, j350).
#[derive(Debug, Serialize, ToSchema)]
pub struct ResidentDetail {
    pub record: ResidentView,
    pub history: Vec<ResidentView>,
}

/// A household (世帯) with its members.
#[derive(Debug, Serialize, ToSchema)]
pub struct HouseholdView {
    pub household_number: String,
    pub address: String,
    pub address_annex: Option<String>,
    /// 世帯主's addressee number; None while the household has no head (j100).
    pub head_addressee_number: Option<String>,
    pub head_name: Option<String>,
    pub members: Vec<ResidentView>,
}

/// A page of search results.
#[derive(Debug, Serialize, ToSchema)]
pub struct SearchResults {
    pub results: Vec<ResidentEntry>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next: Option<String>,
}

/// A recorded change (異動).
#[derive(Debug, Serialize, ToSchema)]
pub struct ChangeView {
    pub change_id: i64,
    pub reason: String,
    pub reason_label_ja: String,
    pub effective_date: DateView,
    pub processed_on: DateView,
    pub filed_on: Option<DateView>,
    pub input_place: String,
    pub input_terminal: String,
    pub operator: String,
    pub recorded_at: String,
    pub cancels: Option<i64>,
    /// The persons whose history the change appended to.
    pub persons: Vec<String>,
    /// j490/j500 notices raised by the change.
    #[schema(value_type = Vec<Object>)]
    pub notices: serde_json::Value,
    /// The request as submitted, any 個人番号 in it masked (`************`).
    #[schema(value_type = Object)]
    pub request: serde_json::Value,
}

/// Masks every non-empty string under a `my_number` key, at any depth: the
/// API never returns a 個人番号.
pub fn mask_my_numbers(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, x) in map.iter_mut() {
                match x {
                    serde_json::Value::String(s) if k == "my_number" => {
                        if !s.is_empty() {
                            *s = "************".to_string();
                        }
                    }
                    _ => mask_my_numbers(x),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(mask_my_numbers),
        _ => {}
    }
}

impl ChangeView {
    pub fn new(c: &ChangeRecord, eras: &EraTable) -> Self {
        ChangeView {
            change_id: c.change_id,
            reason: c.reason.code().to_string(),
            reason_label_ja: c.reason.label_ja().to_string(),
            effective_date: DateView::new(&c.effective_date, eras, false),
            processed_on: DateView::day(c.processed_on, eras),
            filed_on: c.filed_on.map(|d| DateView::day(d, eras)),
            input_place: c.input_place.clone(),
            input_terminal: c.input_terminal.clone(),
            operator: c.operator.clone(),
            recorded_at: rfc3339(c.recorded_at),
            cancels: c.cancels,
            persons: c.persons.iter().map(|p| p.to_string()).collect(),
            notices: c.notices.clone(),
            request: {
                let mut r = c.request.clone();
                mask_my_numbers(&mut r);
                r
            },
        }
    }
}

/// The answer to a committed change.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChangeResult {
    pub change_id: i64,
    pub reason: String,
    pub reason_label_ja: String,
    /// The history rows the change appended; restricted entries for the
    /// persons a support measure's shield covers.
    pub rows: Vec<ResidentEntry>,
    #[schema(value_type = Vec<Object>)]
    pub notices: Vec<Notice>,
    /// Sequence number of the linkage event published for the change.
    pub event_seq: i64,
}

/// The answer to a change entered provisionally (仮登録, j530): validated,
/// not committed; it becomes a change when a supervisor approves it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProvisionalChange {
    /// Its number in the tenant's review queue.
    pub pending_id: i64,
    /// `pending`, `approved`, `returned` or `withdrawn`.
    #[schema(example = "pending")]
    pub status: String,
    pub reason: String,
    pub reason_label_ja: String,
    /// 宛名番号 of the registered persons it would touch. Persons it would
    /// enter get their numbers only when it is approved (see the change
    /// then named by the provisional change's status).
    pub persons: Vec<String>,
    /// How many persons it would enter for the first time.
    pub new_persons: usize,
    #[schema(value_type = Vec<Object>)]
    pub notices: Vec<Notice>,
}

/// Where a provisional change stands.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProvisionalStatus {
    pub pending_id: i64,
    /// `pending`, `approved`, `returned` or `withdrawn`.
    #[schema(example = "approved")]
    pub status: String,
    pub reason: String,
    pub entered_at: String,
    pub decided_at: Option<String>,
    /// The committed change, once approved.
    pub change_id: Option<i64>,
    /// The supervisor's comment when it was sent back.
    pub comment: Option<String>,
}

/// A change a list may not show (j440): it concerns a person the shield
/// of a support measure covers. Its content, reason, dates and persons are
/// withheld; reading it (`GET …/changes/{id}`) needs a release.
#[derive(Debug, Serialize, ToSchema)]
pub struct WithheldChange {
    pub change_id: i64,
    /// Always `support_measure`.
    #[schema(example = "support_measure")]
    pub withheld: String,
    pub notice_ja: String,
    pub notice_en: String,
}

impl WithheldChange {
    pub fn new(change_id: i64) -> Self {
        WithheldChange {
            change_id,
            withheld: "support_measure".into(),
            notice_ja: RESTRICTED_JA.into(),
            notice_en: RESTRICTED_EN.into(),
        }
    }
}

/// One change in a list: shown, or withheld.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum ChangeEntry {
    Shown(Box<ChangeView>),
    Withheld(WithheldChange),
}

/// A page of changes, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChangeList {
    pub changes: Vec<ChangeEntry>,
    pub next: Option<String>,
}
