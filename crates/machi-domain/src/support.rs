//! 支援措置 (j160, j380, j440): support measures for victims of domestic
//! violence, stalking and the like (DV等支援措置).
//!
//! * What is recorded follows j160 (支援対象者管理): the requester (申出者)
//!   and the persons who ask for support with them (併せて支援措置を求める者),
//!   the offenders (加害者), the affairs the requester asks to be protected
//!   from with the addresses concerned, forwarding between municipalities,
//!   the period and the provisional measure (仮支援措置).
//! * The life of a measure follows j440: a request is first a provisional
//!   measure ([`MeasureStatus::Provisional`]), which already blocks; once the
//!   need is confirmed it is [`MeasureStatus::Confirmed`] with a one-year
//!   period ([`one_year_period_end`]); from one month before the end it can
//!   be extended by one year counted from the day after the end
//!   ([`extended_period_end`]); it ends when the requester asks, when the
//!   period passed without extension, or when the need is gone.
//! * While a measure is in effect ([`SupportMeasure::in_effect`]) every
//!   request that would show or issue a record of a protected person fails
//!   until an authorised officer releases it (j440, j410). Passing the end
//!   date does not lift a measure by itself (j410: 抑止の終了日を経過しても、
//!   抑止は自動的に終了しないこと); it raises the "period ended" alert
//!   ([`SupportAlert::PeriodEnded`]) until the measure is extended or ended.
//!
//! Everything here is pure: dates ("today") are passed in.

use std::collections::BTreeSet;
use std::fmt;

use chrono::{Months, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::dates::{DateValue, EraTable, extended_period_end, one_year_period_end};
use crate::error::Localized;
use crate::ids::{AddresseeNumber, MunicipalityCode};
use crate::model::Sex;
use crate::names::{Furigana, PersonName};

/// Longest one-line text item (addresses, relationships, contact details).
pub const MAX_LINE_CHARS: usize = 200;
/// Longest free text (加害者「その他」).
pub const MAX_TEXT_CHARS: usize = 2000;
/// Most persons (申出者 and 併せて支援措置を求める者) one measure protects.
pub const MAX_PERSONS: usize = 50;
/// Most offenders, affairs, forwardings or addresses one measure records.
pub const MAX_ITEMS: usize = 20;

// ---------------------------------------------------------------------------
// Status, purpose, reasons
// ---------------------------------------------------------------------------

/// 支援措置の状態 (j440).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MeasureStatus {
    /// 仮支援措置: requested, the need not yet confirmed. Already blocks (j440).
    Provisional,
    /// 支援措置 (本登録): confirmed, with a one-year period.
    Confirmed,
    /// 延長: confirmed and extended at least once.
    Extended,
    /// 終了: ended (on request, after the period, or when no longer needed).
    Ended,
    /// 取消し: a provisional measure closed without starting (支援の必要性が
    /// ないことを確認したとき, or the request withdrawn).
    Cancelled,
}

impl MeasureStatus {
    /// Every status, in order.
    pub const ALL: [MeasureStatus; 5] = [
        MeasureStatus::Provisional,
        MeasureStatus::Confirmed,
        MeasureStatus::Extended,
        MeasureStatus::Ended,
        MeasureStatus::Cancelled,
    ];

    /// The stable code stored and sent, e.g. `provisional`.
    pub fn code(self) -> &'static str {
        match self {
            Self::Provisional => "provisional",
            Self::Confirmed => "confirmed",
            Self::Extended => "extended",
            Self::Ended => "ended",
            Self::Cancelled => "cancelled",
        }
    }

    /// The status with this code.
    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.code() == code)
    }

    /// The status in Japanese.
    pub fn label_ja(self) -> &'static str {
        match self {
            Self::Provisional => "仮支援措置",
            Self::Confirmed => "支援措置",
            Self::Extended => "支援措置（延長）",
            Self::Ended => "終了",
            Self::Cancelled => "取消し",
        }
    }

    /// Whether a measure in this status blocks requests (provisional,
    /// confirmed or extended).
    pub fn in_effect(self) -> bool {
        matches!(self, Self::Provisional | Self::Confirmed | Self::Extended)
    }

    /// Whether the measure has a period (confirmed or extended).
    pub fn is_confirmed(self) -> bool {
        matches!(self, Self::Confirmed | Self::Extended)
    }

    /// Whether no transition is possible any more (ended or cancelled).
    pub fn is_closed(self) -> bool {
        matches!(self, Self::Ended | Self::Cancelled)
    }
}

impl fmt::Display for MeasureStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// What a request concerning a protected person is for (j440): the two
/// kinds of request a support measure blocks and an officer may release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SupportPurpose {
    /// 閲覧・照会: showing the record (住民基本台帳の一部の写しの閲覧, a
    /// resident or household read).
    View,
    /// 交付: issuing a certificate (住民票の写し等の交付).
    Issue,
}

impl SupportPurpose {
    /// Both purposes.
    pub const ALL: [SupportPurpose; 2] = [SupportPurpose::View, SupportPurpose::Issue];

    /// The stable code stored and sent: `view` or `issue`.
    pub fn code(self) -> &'static str {
        match self {
            Self::View => "view",
            Self::Issue => "issue",
        }
    }

    /// The purpose with this code.
    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.code() == code)
    }

    /// The purpose in Japanese.
    pub fn label_ja(self) -> &'static str {
        match self {
            Self::View => "閲覧・照会",
            Self::Issue => "住民票の写し等の交付",
        }
    }

    /// The purpose in English.
    pub fn label_en(self) -> &'static str {
        match self {
            Self::View => "viewing",
            Self::Issue => "issuing a certificate",
        }
    }
}

impl fmt::Display for SupportPurpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// Why a confirmed measure ends (j440).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// 支援対象者から支援の終了を求める旨の申出を受けたとき.
    Requested,
    /// 支援措置の期間を経過し、又は延長がされなかったとき: only after the end date.
    PeriodExpired,
    /// その他市区町村長が支援の必要性がなくなったと認めるとき.
    NoLongerNeeded,
}

impl EndReason {
    /// The reason in Japanese.
    pub fn label_ja(self) -> &'static str {
        match self {
            Self::Requested => "支援対象者からの終了の申出",
            Self::PeriodExpired => "期間経過（延長なし）",
            Self::NoLongerNeeded => "支援の必要性がなくなったと認めたため",
        }
    }
}

/// Why a provisional measure is closed without starting (j160, j440).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelReason {
    /// 支援の必要性がないことを確認したとき.
    NotNeeded,
    /// 申出の取下げ.
    Withdrawn,
}

impl CancelReason {
    /// The reason in Japanese.
    pub fn label_ja(self) -> &'static str {
        match self {
            Self::NotNeeded => "支援の必要性がないことを確認",
            Self::Withdrawn => "申出の取下げ",
        }
    }
}

// ---------------------------------------------------------------------------
// What is recorded (j160)
// ---------------------------------------------------------------------------

/// Which municipality the requester's measure is kept by (j160 ①, ②).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MunicipalityRole {
    /// 現住所地市区町村: the requester lives here.
    #[default]
    CurrentAddress,
    /// 前住所地市区町村等: the requester lived here (the record is a 除票).
    FormerAddress,
}

/// 連絡先 (j160): telephone, mobile telephone, e-mail and the like.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    /// 電話番号
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// 携帯電話番号
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mobile_phone: Option<String>,
    /// メールアドレス
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// その他の連絡先
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub other: Option<String>,
}

/// 申出者 (j160): the person who asked for the measure.
///
/// The items j160 lists that the registry already holds (氏名及びフリガナ,
/// 通称, 生年月日, 性別, 住所, 前住所等, 本籍, 前本籍等; for a former resident
/// 前住所 and the 転出先住所 of the 除票) are read from the person's record by
/// 宛名番号, never copied here; what the record does not hold is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requester {
    /// 宛名番号
    pub addressee_number: AddresseeNumber,
    /// 現住所地 or 前住所地等.
    #[serde(default)]
    pub municipality_role: MunicipalityRole,
    /// 連絡先
    #[serde(default)]
    pub contact: Contact,
}

/// 併せて支援措置を求める者 (j160): a person protected with the requester
/// (e.g. a child). Protected exactly like the requester (j440: 支援対象者
/// （併せて支援を求める者を含む。）).
///
/// With an 宛名番号 the person's record supplies name, birth date and sex;
/// without one (a person not in this municipality's addressee space) they
/// are kept here, and no request of this registry can show the person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelatedPerson {
    /// 宛名番号
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addressee_number: Option<AddresseeNumber>,
    /// 氏名
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<PersonName>,
    /// フリガナ
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_kana: Option<Furigana>,
    /// 通称
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<PersonName>,
    /// 通称のフリガナ
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias_kana: Option<Furigana>,
    /// 生年月日 (unknown dates kept as entered, j80).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub birth_date: Option<DateValue>,
    /// 性別
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sex: Option<Sex>,
    /// 前住所
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_address: Option<String>,
    /// 申出者との関係, e.g. 「子」.
    pub relationship: String,
}

/// 加害者 (j160): a person the requester is protected from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offender {
    /// 氏名
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<PersonName>,
    /// 宛名番号 (only when the offender is in this municipality).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addressee_number: Option<AddresseeNumber>,
    /// 生年月日 (unknown dates kept as entered, j80).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub birth_date: Option<DateValue>,
    /// 性別
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sex: Option<Sex>,
    /// 住所
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// その他 (any text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub other: Option<String>,
}

/// 申出者より支援を求められている事務 (j160).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Affair {
    /// 住民基本台帳の閲覧（現住所）
    RegistryViewing,
    /// 住民票の写し等の交付（現住所、前住所）
    ResidentRecordCopy,
    /// 戸籍の附票の写し等の交付（本籍、前本籍、前々本籍等）
    FamilyRegisterAnnexCopy,
}

impl Affair {
    /// The affair in Japanese.
    pub fn label_ja(self) -> &'static str {
        match self {
            Self::RegistryViewing => "住民基本台帳の閲覧",
            Self::ResidentRecordCopy => "住民票の写し等の交付",
            Self::FamilyRegisterAnnexCopy => "戸籍の附票の写し等の交付",
        }
    }
}

/// One affair the requester asks protection from, with the addresses
/// concerned (抑止対象の住所等, j160): for viewing the current address; for
/// certificates the current and former addresses; for the 戸籍の附票 the
/// registered domiciles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AffairRequest {
    pub affair: Affair,
    /// 抑止対象の住所等
    #[serde(default)]
    pub addresses: Vec<String>,
}

/// 転送先 (j160 転送情報 ①): where the initial municipality forwarded the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardedTo {
    /// 転送先市区町村
    pub municipality: MunicipalityCode,
    /// 転送年月日
    pub on: NaiveDate,
}

/// 転送情報 (j160).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Forwarding {
    /// ① 当初受付市区町村として: where the request was forwarded to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forwarded_to: Vec<ForwardedTo>,
    /// ② 転送受付市区町村として: 当初受付市区町村 (j160 仮支援措置).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_municipality: Option<MunicipalityCode>,
    /// ② 転送された支援措置申出書の受付年月日.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_on: Option<NaiveDate>,
    /// ② 支援の必要性がないことを確認したときの申出者への連絡年月日.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_need_notified_on: Option<NaiveDate>,
}

/// A request for a support measure as the counter takes it (j160).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewSupportMeasure {
    /// 申出日: not after today.
    pub filed_on: NaiveDate,
    /// 仮支援措置の開始年月日: from 申出日 (the default) to today.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisional_start: Option<NaiveDate>,
    /// 申出者
    pub requester: Requester,
    /// 併せて支援措置を求める者
    #[serde(default)]
    pub related_persons: Vec<RelatedPerson>,
    /// 加害者
    #[serde(default)]
    pub offenders: Vec<Offender>,
    /// 支援を求められている事務及び抑止対象の住所等: at least one.
    pub affairs: Vec<AffairRequest>,
    /// 転送情報
    #[serde(default)]
    pub forwarding: Forwarding,
}

/// 支援措置の期間 (j160, j440): both days included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupportPeriod {
    /// 支援措置の開始年月日
    pub start: NaiveDate,
    /// 支援措置の終了年月日 (after any extension).
    pub end: NaiveDate,
}

/// One extension (j440): the period continues from the day after
/// `previous_end` to `new_end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extension {
    pub previous_end: NaiveDate,
    pub new_end: NaiveDate,
    /// The day the extension was processed.
    pub extended_on: NaiveDate,
}

/// How a measure was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Closing {
    /// 終了
    Ended { on: NaiveDate, reason: EndReason },
    /// 取消し
    Cancelled { on: NaiveDate, reason: CancelReason },
}

/// 支援措置 (j160, j440): one measure, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupportMeasure {
    pub status: MeasureStatus,
    /// 申出日
    pub filed_on: NaiveDate,
    /// 仮支援措置の開始年月日 (仮支援措置の有無: every measure starts provisional).
    pub provisional_start: NaiveDate,
    /// The day the need was confirmed (本登録).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmed_on: Option<NaiveDate>,
    /// 支援措置の期間, from confirmation on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<SupportPeriod>,
    /// Extensions, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extensions: Vec<Extension>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closing: Option<Closing>,
    pub requester: Requester,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub related_persons: Vec<RelatedPerson>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub offenders: Vec<Offender>,
    pub affairs: Vec<AffairRequest>,
    #[serde(default)]
    pub forwarding: Forwarding,
}

/// The alert j440 asks for when a protected person's record is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SupportAlert {
    /// Nothing to say.
    None,
    /// １か月以内に支援措置の期間が終了する: from one month before the end
    /// date to the end date.
    EndingSoon { end_date: NaiveDate, days_left: i64 },
    /// 支援措置の期間が終了している: the end date passed, and the measure was
    /// neither extended nor ended.
    PeriodEnded { end_date: NaiveDate },
}

impl SupportAlert {
    /// The alert in Japanese (empty for none).
    pub fn message_ja(&self) -> String {
        match self {
            Self::None => String::new(),
            Self::EndingSoon {
                end_date,
                days_left,
            } => format!(
                "支援措置の期間が1か月以内に終了します（終了年月日 {end_date}、残り{days_left}日）。"
            ),
            Self::PeriodEnded { end_date } => {
                format!(
                    "支援措置の期間が終了しています（終了年月日 {end_date}）。延長または終了の処理をしてください。"
                )
            }
        }
    }

    /// The alert in English (empty for none).
    pub fn message_en(&self) -> String {
        match self {
            Self::None => String::new(),
            Self::EndingSoon {
                end_date,
                days_left,
            } => format!(
                "the support period ends within one month (on {end_date}, {days_left} days left)"
            ),
            Self::PeriodEnded { end_date } => {
                format!("the support period ended on {end_date}; extend or end the measure")
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Period rules (j440)
// ---------------------------------------------------------------------------

/// j440: the first day an extension may be processed, and the first day the
/// "ends within one month" alert shows: one month before the end date
/// (支援措置の期間終了日の１か月前). When that month has no such day the last
/// day of the month is taken: the end 2021-03-31 opens on 2021-02-28.
pub fn extension_opens_on(end: NaiveDate) -> NaiveDate {
    end.checked_sub_months(Months::new(1))
        .unwrap_or(NaiveDate::MIN)
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// A support-measure transition or input the rules refuse; nothing is written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SupportError {
    /// One input item is invalid; `field` is its path in the request.
    #[error("{field}: {message_en}")]
    Field {
        field: String,
        code: &'static str,
        message_ja: String,
        message_en: String,
    },
    #[error("the filing date {0} is after today")]
    FiledInFuture(NaiveDate),
    #[error(
        "the provisional measure cannot start on {start}: it runs from the filing date {filed_on} to today"
    )]
    ProvisionalStartOutOfRange {
        start: NaiveDate,
        filed_on: NaiveDate,
    },
    #[error("the measure cannot start on {start}, before the filing date {filed_on}")]
    StartBeforeFiling {
        start: NaiveDate,
        filed_on: NaiveDate,
    },
    #[error("the end date {end} is before the start date {start}")]
    EndBeforeStart { start: NaiveDate, end: NaiveDate },
    #[error("the extended end date {end} is not after the current end date {previous_end}")]
    ExtensionNotLater {
        previous_end: NaiveDate,
        end: NaiveDate,
    },
    #[error("person {0} is named twice in the measure")]
    DuplicatePerson(AddresseeNumber),
    /// confirm twice.
    #[error("the measure is already confirmed")]
    AlreadyConfirmed,
    /// extend or end a provisional measure.
    #[error("the measure is still provisional: confirm it first (or cancel it)")]
    NotConfirmed,
    /// cancel a confirmed measure.
    #[error("the measure is confirmed: end it instead of cancelling it")]
    NotProvisional,
    /// any transition of an ended or cancelled measure.
    #[error("the measure is {0} and can no longer change")]
    Closed(MeasureStatus),
    /// j440: extension only from one month before the end date.
    #[error(
        "the measure can be extended from {opens_on} (one month before its end date {end_date})"
    )]
    ExtensionTooEarly {
        opens_on: NaiveDate,
        end_date: NaiveDate,
    },
    /// j440: ending for the period passed, before the end date.
    #[error("the period runs until {end_date}: it has not passed yet")]
    PeriodNotOver { end_date: NaiveDate },
    /// A release asked for a person no measure in effect protects.
    #[error("no support measure in effect protects person {0}")]
    NotProtected(AddresseeNumber),
}

impl SupportError {
    fn field(field: impl Into<String>, e: &dyn Localized) -> Self {
        SupportError::Field {
            field: field.into(),
            code: e.code(),
            message_ja: e.message_ja(),
            message_en: e.message_en(),
        }
    }

    fn text(field: impl Into<String>, ja: String, en: String) -> Self {
        SupportError::Field {
            field: field.into(),
            code: "invalid_text",
            message_ja: ja,
            message_en: en,
        }
    }

    /// Whether the error is about the measure's state (a conflict with what
    /// is recorded) rather than about the input.
    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            Self::AlreadyConfirmed
                | Self::NotConfirmed
                | Self::NotProvisional
                | Self::Closed(_)
                | Self::ExtensionTooEarly { .. }
                | Self::PeriodNotOver { .. }
                | Self::NotProtected(_)
        )
    }
}

impl Localized for SupportError {
    fn code(&self) -> &'static str {
        match self {
            Self::Field { code, .. } => code,
            Self::FiledInFuture(_) => "filed_on_in_future",
            Self::ProvisionalStartOutOfRange { .. } => "provisional_start_out_of_range",
            Self::StartBeforeFiling { .. } => "start_before_filing",
            Self::EndBeforeStart { .. } => "end_before_start",
            Self::ExtensionNotLater { .. } => "extension_not_later",
            Self::DuplicatePerson(_) => "duplicate_person",
            Self::AlreadyConfirmed => "support_already_confirmed",
            Self::NotConfirmed => "support_not_confirmed",
            Self::NotProvisional => "support_not_provisional",
            Self::Closed(_) => "support_closed",
            Self::ExtensionTooEarly { .. } => "support_extension_too_early",
            Self::PeriodNotOver { .. } => "support_period_not_over",
            Self::NotProtected(_) => "support_not_protected",
        }
    }

    fn message_ja(&self) -> String {
        match self {
            Self::Field {
                field, message_ja, ..
            } => format!("{field}: {message_ja}"),
            Self::FiledInFuture(d) => format!("申出日 {d} が処理日より後です。"),
            Self::ProvisionalStartOutOfRange { start, filed_on } => format!(
                "仮支援措置の開始年月日 {start} は申出日 {filed_on} から処理日までの日にしてください。"
            ),
            Self::StartBeforeFiling { start, filed_on } => {
                format!("支援措置の開始年月日 {start} が申出日 {filed_on} より前です。")
            }
            Self::EndBeforeStart { start, end } => {
                format!("支援措置の終了年月日 {end} が開始年月日 {start} より前です。")
            }
            Self::ExtensionNotLater { previous_end, end } => format!(
                "延長後の終了年月日 {end} が延長前の終了年月日 {previous_end} より後ではありません。"
            ),
            Self::DuplicatePerson(a) => {
                format!("宛名番号 {a} の方が支援措置に重複して指定されています。")
            }
            Self::AlreadyConfirmed => "この支援措置はすでに本登録されています。".into(),
            Self::NotConfirmed => {
                "この支援措置は仮支援措置です。先に本登録（または取消し）をしてください。".into()
            }
            Self::NotProvisional => {
                "この支援措置は本登録済みです。取消しではなく終了の処理をしてください。".into()
            }
            Self::Closed(s) => format!("この支援措置は{}のため、変更できません。", s.label_ja()),
            Self::ExtensionTooEarly { opens_on, end_date } => format!(
                "延長は期間終了日（{end_date}）の1か月前（{opens_on}）から行えます（j440）。"
            ),
            Self::PeriodNotOver { end_date } => {
                format!("支援措置の期間（{end_date} まで）はまだ経過していません。")
            }
            Self::NotProtected(a) => {
                format!("宛名番号 {a} の方に実施中の支援措置はありません。")
            }
        }
    }

    fn message_en(&self) -> String {
        self.to_string()
    }
}

// ---------------------------------------------------------------------------
// Validation of what is entered
// ---------------------------------------------------------------------------

/// A line of text: not blank, no control characters, at most `max` characters.
fn check_text(field: &str, s: &str, max: usize, multiline: bool) -> Result<(), SupportError> {
    if s.trim().is_empty() {
        return Err(SupportError::text(
            field,
            "値が入力されていません。".into(),
            "the value is empty".into(),
        ));
    }
    let chars = s.chars().count();
    if chars > max {
        return Err(SupportError::text(
            field,
            format!("長すぎます（{chars}文字、最大{max}文字）。"),
            format!("too long: {chars} characters, at most {max}"),
        ));
    }
    let allowed = |c: char| multiline && matches!(c, '\n' | '\r' | '\t');
    if let Some(c) = s
        .chars()
        .find(|&c| (c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')) && !allowed(c))
    {
        return Err(SupportError::text(
            field,
            format!(
                "使用できない制御文字（U+{:04X}）が含まれています。",
                c as u32
            ),
            format!("contains the control character U+{:04X}", c as u32),
        ));
    }
    Ok(())
}

fn check_opt_text(
    field: &str,
    s: &Option<String>,
    max: usize,
    multiline: bool,
) -> Result<(), SupportError> {
    match s {
        Some(s) => check_text(field, s, max, multiline),
        None => Ok(()),
    }
}

fn check_count(field: &str, n: usize, max: usize) -> Result<(), SupportError> {
    if n > max {
        return Err(SupportError::text(
            field,
            format!("指定が多すぎます（{n}件、最大{max}件）。"),
            format!("too many entries: {n}, at most {max}"),
        ));
    }
    Ok(())
}

fn check_date_value(
    field: &str,
    d: &Option<DateValue>,
    eras: &EraTable,
) -> Result<(), SupportError> {
    match d {
        Some(d) => d.validate(eras).map_err(|e| SupportError::field(field, &e)),
        None => Ok(()),
    }
}

fn check_contact(c: &Contact) -> Result<(), SupportError> {
    for (field, v) in [
        ("requester.contact.phone", &c.phone),
        ("requester.contact.mobile_phone", &c.mobile_phone),
        ("requester.contact.email", &c.email),
        ("requester.contact.other", &c.other),
    ] {
        check_opt_text(field, v, MAX_LINE_CHARS, false)?;
    }
    Ok(())
}

fn check_related(i: usize, p: &RelatedPerson, eras: &EraTable) -> Result<(), SupportError> {
    let f = |name: &str| format!("related_persons[{i}].{name}");
    if p.addressee_number.is_none() && p.name.is_none() {
        return Err(SupportError::text(
            f("addressee_number"),
            "宛名番号または氏名を入力してください。".into(),
            "give the addressee number or the name".into(),
        ));
    }
    check_text(&f("relationship"), &p.relationship, MAX_LINE_CHARS, false)?;
    check_opt_text(
        &f("previous_address"),
        &p.previous_address,
        MAX_LINE_CHARS,
        false,
    )?;
    check_date_value(&f("birth_date"), &p.birth_date, eras)
}

fn check_offender(i: usize, o: &Offender, eras: &EraTable) -> Result<(), SupportError> {
    let f = |name: &str| format!("offenders[{i}].{name}");
    if o.name.is_none()
        && o.addressee_number.is_none()
        && o.birth_date.is_none()
        && o.address.is_none()
        && o.other.is_none()
    {
        return Err(SupportError::text(
            f("name"),
            "加害者の情報が入力されていません。".into(),
            "nothing is entered about the offender".into(),
        ));
    }
    check_opt_text(&f("address"), &o.address, MAX_LINE_CHARS, false)?;
    check_opt_text(&f("other"), &o.other, MAX_TEXT_CHARS, true)?;
    check_date_value(&f("birth_date"), &o.birth_date, eras)
}

fn check_affairs(affairs: &[AffairRequest]) -> Result<(), SupportError> {
    if affairs.is_empty() {
        return Err(SupportError::text(
            "affairs",
            "支援を求められている事務を1つ以上指定してください。".into(),
            "name at least one affair the requester asks protection from".into(),
        ));
    }
    check_count("affairs", affairs.len(), MAX_ITEMS)?;
    let mut seen = BTreeSet::new();
    for (i, a) in affairs.iter().enumerate() {
        if !seen.insert(a.affair) {
            return Err(SupportError::text(
                format!("affairs[{i}].affair"),
                format!("「{}」が重複しています。", a.affair.label_ja()),
                "the affair is named twice".into(),
            ));
        }
        check_count(
            &format!("affairs[{i}].addresses"),
            a.addresses.len(),
            MAX_ITEMS,
        )?;
        for (j, addr) in a.addresses.iter().enumerate() {
            check_text(
                &format!("affairs[{i}].addresses[{j}]"),
                addr,
                MAX_LINE_CHARS,
                false,
            )?;
        }
    }
    Ok(())
}

fn check_forwarding(f: &Forwarding, today: NaiveDate) -> Result<(), SupportError> {
    check_count("forwarding.forwarded_to", f.forwarded_to.len(), MAX_ITEMS)?;
    let future = |field: String, d: NaiveDate| -> Result<(), SupportError> {
        if d > today {
            return Err(SupportError::text(
                field,
                format!("{d} は処理日より後です。"),
                format!("{d} is after today"),
            ));
        }
        Ok(())
    };
    for (i, t) in f.forwarded_to.iter().enumerate() {
        future(format!("forwarding.forwarded_to[{i}].on"), t.on)?;
    }
    if let Some(d) = f.received_on {
        future("forwarding.received_on".into(), d)?;
    }
    if let Some(d) = f.no_need_notified_on {
        future("forwarding.no_need_notified_on".into(), d)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The measure and its transitions (j440)
// ---------------------------------------------------------------------------

impl SupportMeasure {
    /// 支援措置の申出の受付 (j160, j440): a new provisional measure
    /// (仮支援措置), which blocks from now on. `today` is the processing day;
    /// `eras` checks entered birth dates.
    pub fn register(
        req: NewSupportMeasure,
        today: NaiveDate,
        eras: &EraTable,
    ) -> Result<SupportMeasure, SupportError> {
        if req.filed_on > today {
            return Err(SupportError::FiledInFuture(req.filed_on));
        }
        let provisional_start = req.provisional_start.unwrap_or(req.filed_on);
        if provisional_start < req.filed_on || provisional_start > today {
            return Err(SupportError::ProvisionalStartOutOfRange {
                start: provisional_start,
                filed_on: req.filed_on,
            });
        }
        check_contact(&req.requester.contact)?;
        check_count(
            "related_persons",
            req.related_persons.len(),
            MAX_PERSONS - 1,
        )?;
        let mut seen = BTreeSet::from([req.requester.addressee_number.clone()]);
        for (i, p) in req.related_persons.iter().enumerate() {
            check_related(i, p, eras)?;
            if let Some(a) = &p.addressee_number
                && !seen.insert(a.clone())
            {
                return Err(SupportError::DuplicatePerson(a.clone()));
            }
        }
        check_count("offenders", req.offenders.len(), MAX_ITEMS)?;
        for (i, o) in req.offenders.iter().enumerate() {
            check_offender(i, o, eras)?;
        }
        check_affairs(&req.affairs)?;
        check_forwarding(&req.forwarding, today)?;
        Ok(SupportMeasure {
            status: MeasureStatus::Provisional,
            filed_on: req.filed_on,
            provisional_start,
            confirmed_on: None,
            period: None,
            extensions: Vec::new(),
            closing: None,
            requester: req.requester,
            related_persons: req.related_persons,
            offenders: req.offenders,
            affairs: req.affairs,
            forwarding: req.forwarding,
        })
    }

    /// 本登録 (j440): the need is confirmed and the measure starts on
    /// `start`. The end date is set to one year from the start
    /// ([`one_year_period_end`]: 令和2年4月1日 → 令和3年3月31日) unless
    /// `end` corrects it (必要に応じて修正できること).
    pub fn confirm(
        &self,
        start: NaiveDate,
        end: Option<NaiveDate>,
        today: NaiveDate,
    ) -> Result<SupportMeasure, SupportError> {
        match self.status {
            MeasureStatus::Provisional => {}
            MeasureStatus::Confirmed | MeasureStatus::Extended => {
                return Err(SupportError::AlreadyConfirmed);
            }
            s @ (MeasureStatus::Ended | MeasureStatus::Cancelled) => {
                return Err(SupportError::Closed(s));
            }
        }
        if start < self.filed_on {
            return Err(SupportError::StartBeforeFiling {
                start,
                filed_on: self.filed_on,
            });
        }
        let end = end.unwrap_or_else(|| one_year_period_end(start));
        if end < start {
            return Err(SupportError::EndBeforeStart { start, end });
        }
        Ok(SupportMeasure {
            status: MeasureStatus::Confirmed,
            confirmed_on: Some(today),
            period: Some(SupportPeriod { start, end }),
            ..self.clone()
        })
    }

    /// The period of a confirmed measure that may still change.
    fn open_period(&self) -> Result<SupportPeriod, SupportError> {
        match (self.status, self.period) {
            (s, _) if s.is_closed() => Err(SupportError::Closed(s)),
            (MeasureStatus::Confirmed | MeasureStatus::Extended, Some(p)) => Ok(p),
            _ => Err(SupportError::NotConfirmed),
        }
    }

    /// 延長 (j440): from one month before the end date
    /// ([`extension_opens_on`]) on, also after the end date as long as the
    /// measure was not ended. The new period counts one year from the day
    /// after the current end date ([`extended_period_end`]: 令和3年3月31日 →
    /// 令和4年3月31日), whenever the extension is processed; `end` corrects it.
    pub fn extend(
        &self,
        end: Option<NaiveDate>,
        today: NaiveDate,
    ) -> Result<SupportMeasure, SupportError> {
        let period = self.open_period()?;
        let opens_on = extension_opens_on(period.end);
        if today < opens_on {
            return Err(SupportError::ExtensionTooEarly {
                opens_on,
                end_date: period.end,
            });
        }
        let new_end = end.unwrap_or_else(|| extended_period_end(period.end));
        if new_end <= period.end {
            return Err(SupportError::ExtensionNotLater {
                previous_end: period.end,
                end: new_end,
            });
        }
        let mut next = self.clone();
        next.status = MeasureStatus::Extended;
        next.period = Some(SupportPeriod {
            start: period.start,
            end: new_end,
        });
        next.extensions.push(Extension {
            previous_end: period.end,
            new_end,
            extended_on: today,
        });
        Ok(next)
    }

    /// 終了 (j440): a confirmed measure ends today. For
    /// [`EndReason::PeriodExpired`] the end date must have passed.
    pub fn end(&self, reason: EndReason, today: NaiveDate) -> Result<SupportMeasure, SupportError> {
        let period = self.open_period()?;
        if reason == EndReason::PeriodExpired && today <= period.end {
            return Err(SupportError::PeriodNotOver {
                end_date: period.end,
            });
        }
        Ok(SupportMeasure {
            status: MeasureStatus::Ended,
            closing: Some(Closing::Ended { on: today, reason }),
            ..self.clone()
        })
    }

    /// 取消し (j160, j440): a provisional measure is closed without starting.
    pub fn cancel(
        &self,
        reason: CancelReason,
        today: NaiveDate,
    ) -> Result<SupportMeasure, SupportError> {
        match self.status {
            MeasureStatus::Provisional => Ok(SupportMeasure {
                status: MeasureStatus::Cancelled,
                closing: Some(Closing::Cancelled { on: today, reason }),
                ..self.clone()
            }),
            MeasureStatus::Confirmed | MeasureStatus::Extended => Err(SupportError::NotProvisional),
            s @ (MeasureStatus::Ended | MeasureStatus::Cancelled) => Err(SupportError::Closed(s)),
        }
    }

    /// Whether the measure blocks requests showing its persons: provisional,
    /// confirmed or extended, whatever the dates (j440; j410: passing the end
    /// date does not lift it).
    pub fn in_effect(&self) -> bool {
        self.status.in_effect()
    }

    /// The alert for `today` (j440).
    pub fn alert(&self, today: NaiveDate) -> SupportAlert {
        let Some(period) = self.period.filter(|_| self.status.is_confirmed()) else {
            return SupportAlert::None;
        };
        if today > period.end {
            SupportAlert::PeriodEnded {
                end_date: period.end,
            }
        } else if today >= extension_opens_on(period.end) {
            SupportAlert::EndingSoon {
                end_date: period.end,
                days_left: (period.end - today).num_days(),
            }
        } else {
            SupportAlert::None
        }
    }

    /// The persons the measure protects and this registry can find: the
    /// requester, then the related persons with an 宛名番号.
    pub fn protected_persons(&self) -> Vec<AddresseeNumber> {
        let mut out = vec![self.requester.addressee_number.clone()];
        out.extend(
            self.related_persons
                .iter()
                .filter_map(|p| p.addressee_number.clone()),
        );
        out
    }

    /// Every 宛名番号 the measure names (protected persons and offenders), for
    /// checking that they exist.
    pub fn named_persons(&self) -> Vec<(String, AddresseeNumber)> {
        let mut out = vec![(
            "requester.addressee_number".to_string(),
            self.requester.addressee_number.clone(),
        )];
        for (i, p) in self.related_persons.iter().enumerate() {
            if let Some(a) = &p.addressee_number {
                out.push((format!("related_persons[{i}].addressee_number"), a.clone()));
            }
        }
        for (i, o) in self.offenders.iter().enumerate() {
            if let Some(a) = &o.addressee_number {
                out.push((format!("offenders[{i}].addressee_number"), a.clone()));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dates::DatePolicy;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).expect("date")
    }

    fn a(n: u64) -> AddresseeNumber {
        AddresseeNumber::from_serial(n).expect("serial")
    }

    fn eras() -> EraTable {
        EraTable::standard()
    }

    fn request(filed_on: NaiveDate) -> NewSupportMeasure {
        NewSupportMeasure {
            filed_on,
            provisional_start: None,
            requester: Requester {
                addressee_number: a(1),
                municipality_role: MunicipalityRole::CurrentAddress,
                contact: Contact {
                    mobile_phone: Some("090-0000-0000".into()),
                    ..Contact::default()
                },
            },
            related_persons: vec![RelatedPerson {
                addressee_number: Some(a(2)),
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
                name: Some(PersonName::new("山田　太郎").expect("name")),
                addressee_number: None,
                birth_date: Some(
                    DateValue::parse("昭和50年頃", &eras(), DatePolicy::AllowIrregular)
                        .expect("date"),
                ),
                sex: Some(Sex::Male),
                address: Some("東京都調布市小島町二丁目".into()),
                other: Some("勤務先: 不明\n車: 白".into()),
            }],
            affairs: vec![
                AffairRequest {
                    affair: Affair::ResidentRecordCopy,
                    addresses: vec!["東京都府中市宮西町二丁目24番地".into()],
                },
                AffairRequest {
                    affair: Affair::RegistryViewing,
                    addresses: vec![],
                },
            ],
            forwarding: Forwarding::default(),
        }
    }

    fn provisional(filed_on: NaiveDate) -> SupportMeasure {
        SupportMeasure::register(request(filed_on), filed_on, &eras()).expect("register")
    }

    fn confirmed(start: NaiveDate) -> SupportMeasure {
        provisional(start)
            .confirm(start, None, start)
            .expect("confirm")
    }

    #[test]
    fn j440_example_period_and_extension() {
        let t = eras();
        // 例）開始年月日が令和２年４月１日の場合、終了年月日が令和３年３月31日.
        let start = t.to_gregorian("令和", 2, 4, 1).expect("R2.4.1");
        let m = confirmed(start);
        let period = m.period.expect("period");
        assert_eq!(t.format_wareki(period.end), "令和3年3月31日");
        assert_eq!(m.status, MeasureStatus::Confirmed);
        assert!(m.in_effect());
        // Extension opens one month before the end date: 2021-02-28 (2/31 does not exist).
        assert_eq!(extension_opens_on(period.end), date(2021, 2, 28));
        assert_eq!(
            m.extend(None, date(2021, 2, 27)),
            Err(SupportError::ExtensionTooEarly {
                opens_on: date(2021, 2, 28),
                end_date: date(2021, 3, 31)
            })
        );
        let x = m.extend(None, date(2021, 2, 28)).expect("extend");
        // One year counted from the day after the previous end: 令和3年4月1日 – 令和4年3月31日.
        assert_eq!(t.format_wareki(x.period.expect("p").end), "令和4年3月31日");
        assert_eq!(x.status, MeasureStatus::Extended);
        assert_eq!(x.period.expect("p").start, start);
        assert_eq!(
            x.extensions,
            vec![Extension {
                previous_end: date(2021, 3, 31),
                new_end: date(2022, 3, 31),
                extended_on: date(2021, 2, 28)
            }]
        );
        // A second extension waits for the new window.
        assert!(matches!(
            x.extend(None, date(2021, 3, 1)),
            Err(SupportError::ExtensionTooEarly { .. })
        ));
        let y = x.extend(None, date(2022, 2, 28)).expect("second");
        assert_eq!(y.period.expect("p").end, date(2023, 3, 31));
        assert_eq!(y.extensions.len(), 2);
    }

    #[test]
    fn period_end_at_month_ends_and_leap_days() {
        let cases = [
            (date(2020, 2, 29), date(2021, 2, 28)),
            (date(2019, 3, 1), date(2020, 2, 29)),
            (date(2023, 3, 1), date(2024, 2, 29)),
            (date(2021, 1, 1), date(2021, 12, 31)),
            (date(2021, 12, 31), date(2022, 12, 30)),
            (date(2024, 1, 31), date(2025, 1, 30)),
            (date(2024, 2, 28), date(2025, 2, 27)),
        ];
        for (start, end) in cases {
            let m = confirmed(start);
            assert_eq!(m.period.map(|p| p.end), Some(end), "{start}");
        }
        // Extension after a period that ended on 2/28 after a 2/29 start.
        let m = confirmed(date(2020, 2, 29));
        let x = m.extend(None, date(2021, 2, 1)).expect("extend");
        assert_eq!(x.period.map(|p| p.end), Some(date(2022, 2, 28)));
        // Extension across a leap day: end 2023-02-28 → 2024-02-29.
        let m = confirmed(date(2022, 3, 1));
        assert_eq!(m.period.map(|p| p.end), Some(date(2023, 2, 28)));
        let x = m.extend(None, date(2023, 1, 28)).expect("extend");
        assert_eq!(x.period.map(|p| p.end), Some(date(2024, 2, 29)));
    }

    #[test]
    fn extension_window_opens_one_month_before_the_end() {
        for (end, opens) in [
            (date(2021, 3, 31), date(2021, 2, 28)),
            (date(2024, 3, 31), date(2024, 2, 29)),
            (date(2024, 3, 30), date(2024, 2, 29)),
            (date(2021, 4, 30), date(2021, 3, 30)),
            (date(2021, 12, 31), date(2021, 11, 30)),
            (date(2022, 1, 15), date(2021, 12, 15)),
            (date(2024, 2, 29), date(2024, 1, 29)),
            (date(2021, 5, 31), date(2021, 4, 30)),
        ] {
            assert_eq!(extension_opens_on(end), opens, "{end}");
        }
        assert_eq!(extension_opens_on(NaiveDate::MIN), NaiveDate::MIN);
    }

    #[test]
    fn extension_after_the_end_counts_from_the_previous_end() {
        let m = confirmed(date(2020, 4, 1));
        // Processed two weeks after the end date: still allowed (j440 sets no
        // upper limit), and the new period joins the old one.
        let x = m.extend(None, date(2021, 4, 14)).expect("late extension");
        assert_eq!(
            x.period,
            Some(SupportPeriod {
                start: date(2020, 4, 1),
                end: date(2022, 3, 31)
            })
        );
    }

    #[test]
    fn end_date_can_be_corrected() {
        let p = provisional(date(2020, 4, 1));
        let m = p
            .confirm(date(2020, 4, 1), Some(date(2020, 9, 30)), date(2020, 4, 1))
            .expect("corrected");
        assert_eq!(m.period.map(|p| p.end), Some(date(2020, 9, 30)));
        assert_eq!(
            p.confirm(date(2020, 4, 1), Some(date(2020, 3, 31)), date(2020, 4, 1)),
            Err(SupportError::EndBeforeStart {
                start: date(2020, 4, 1),
                end: date(2020, 3, 31)
            })
        );
        // Same-day period allowed.
        assert!(
            p.confirm(date(2020, 4, 1), Some(date(2020, 4, 1)), date(2020, 4, 1))
                .is_ok()
        );
        let x = m
            .extend(Some(date(2021, 3, 31)), date(2020, 9, 1))
            .expect("x");
        assert_eq!(x.period.map(|p| p.end), Some(date(2021, 3, 31)));
        assert_eq!(
            m.extend(Some(date(2020, 9, 30)), date(2020, 9, 1)),
            Err(SupportError::ExtensionNotLater {
                previous_end: date(2020, 9, 30),
                end: date(2020, 9, 30)
            })
        );
    }

    #[test]
    fn transitions_refuse_the_wrong_state() {
        let d = date(2020, 4, 1);
        let p = provisional(d);
        assert_eq!(p.status, MeasureStatus::Provisional);
        assert!(p.in_effect());
        assert_eq!(p.extend(None, d), Err(SupportError::NotConfirmed));
        assert_eq!(
            p.end(EndReason::Requested, d),
            Err(SupportError::NotConfirmed)
        );
        let c = p.confirm(d, None, d).expect("confirm");
        assert_eq!(c.confirm(d, None, d), Err(SupportError::AlreadyConfirmed));
        assert_eq!(
            c.cancel(CancelReason::NotNeeded, d),
            Err(SupportError::NotProvisional)
        );
        let e = c.end(EndReason::Requested, date(2020, 6, 1)).expect("end");
        assert_eq!(e.status, MeasureStatus::Ended);
        assert!(!e.in_effect());
        assert_eq!(
            e.closing,
            Some(Closing::Ended {
                on: date(2020, 6, 1),
                reason: EndReason::Requested
            })
        );
        let closed = Err(SupportError::Closed(MeasureStatus::Ended));
        assert_eq!(e.extend(None, date(2021, 3, 1)), closed);
        assert_eq!(e.end(EndReason::NoLongerNeeded, d), closed);
        assert_eq!(e.confirm(d, None, d), closed);
        assert_eq!(e.cancel(CancelReason::Withdrawn, d), closed);
        let x = p.cancel(CancelReason::NotNeeded, d).expect("cancel");
        assert_eq!(x.status, MeasureStatus::Cancelled);
        assert!(!x.in_effect());
        let closed = Err(SupportError::Closed(MeasureStatus::Cancelled));
        assert_eq!(x.confirm(d, None, d), closed);
        assert_eq!(x.extend(None, d), closed);
        assert_eq!(x.cancel(CancelReason::NotNeeded, d), closed);
        assert_eq!(x.alert(date(2030, 1, 1)), SupportAlert::None);
    }

    #[test]
    fn ending_for_the_period_waits_for_the_end_date() {
        let m = confirmed(date(2020, 4, 1));
        assert_eq!(
            m.end(EndReason::PeriodExpired, date(2021, 3, 31)),
            Err(SupportError::PeriodNotOver {
                end_date: date(2021, 3, 31)
            })
        );
        let e = m
            .end(EndReason::PeriodExpired, date(2021, 4, 1))
            .expect("expired");
        assert_eq!(e.status, MeasureStatus::Ended);
        // Other reasons at any time.
        assert!(m.end(EndReason::NoLongerNeeded, date(2020, 4, 1)).is_ok());
    }

    #[test]
    fn alert_states() {
        let m = confirmed(date(2020, 4, 1)); // ends 2021-03-31
        assert_eq!(m.alert(date(2020, 4, 1)), SupportAlert::None);
        assert_eq!(m.alert(date(2021, 2, 27)), SupportAlert::None);
        assert_eq!(
            m.alert(date(2021, 2, 28)),
            SupportAlert::EndingSoon {
                end_date: date(2021, 3, 31),
                days_left: 31
            }
        );
        assert_eq!(
            m.alert(date(2021, 3, 31)),
            SupportAlert::EndingSoon {
                end_date: date(2021, 3, 31),
                days_left: 0
            }
        );
        let ended = SupportAlert::PeriodEnded {
            end_date: date(2021, 3, 31),
        };
        assert_eq!(m.alert(date(2021, 4, 1)), ended);
        assert_eq!(m.alert(date(2030, 1, 1)), ended);
        // The period passed, yet the measure still blocks (j410).
        assert!(m.in_effect());
        assert!(!ended.message_ja().is_empty() && !ended.message_en().is_empty());
        // Extended: the alert follows the new end.
        let x = m.extend(None, date(2021, 4, 2)).expect("extend");
        assert_eq!(x.alert(date(2021, 4, 2)), SupportAlert::None);
        // Provisional and closed measures carry no period alert.
        assert_eq!(
            provisional(date(2020, 4, 1)).alert(date(2030, 1, 1)),
            SupportAlert::None
        );
        let e = m
            .end(EndReason::PeriodExpired, date(2021, 4, 1))
            .expect("end");
        assert_eq!(e.alert(date(2021, 4, 2)), SupportAlert::None);
    }

    #[test]
    fn register_checks_dates_persons_and_text() {
        let d = date(2020, 4, 1);
        let e = eras();
        let r = SupportMeasure::register(request(d), date(2020, 3, 31), &e);
        assert_eq!(r, Err(SupportError::FiledInFuture(d)));

        let mut q = request(d);
        q.provisional_start = Some(date(2020, 3, 31));
        assert!(matches!(
            SupportMeasure::register(q, d, &e),
            Err(SupportError::ProvisionalStartOutOfRange { .. })
        ));
        let mut q = request(d);
        q.provisional_start = Some(date(2020, 4, 3));
        assert!(matches!(
            SupportMeasure::register(q, date(2020, 4, 2), &e),
            Err(SupportError::ProvisionalStartOutOfRange { .. })
        ));
        let mut q = request(d);
        q.provisional_start = Some(date(2020, 4, 2));
        let m = SupportMeasure::register(q, date(2020, 4, 2), &e).expect("ok");
        assert_eq!(m.provisional_start, date(2020, 4, 2));
        assert_eq!(m.protected_persons(), vec![a(1), a(2)]);

        let mut q = request(d);
        q.related_persons[0].addressee_number = Some(a(1));
        assert_eq!(
            SupportMeasure::register(q, d, &e),
            Err(SupportError::DuplicatePerson(a(1)))
        );
        let mut q = request(d);
        q.related_persons[0].addressee_number = None;
        assert_eq!(
            SupportMeasure::register(q, d, &e)
                .map(|_| ())
                .map_err(|e| e.code()),
            Err("invalid_text")
        );
        let mut q = request(d);
        q.affairs.clear();
        assert!(SupportMeasure::register(q, d, &e).is_err());
        let mut q = request(d);
        q.affairs.push(q.affairs[0].clone());
        assert!(SupportMeasure::register(q, d, &e).is_err());
        let mut q = request(d);
        q.offenders[0].address = Some("住所\u{0}".into());
        let err = SupportMeasure::register(q, d, &e).expect_err("control");
        assert!(
            matches!(&err, SupportError::Field { field, .. } if field == "offenders[0].address")
        );
        let mut q = request(d);
        q.requester.contact.email = Some("x".repeat(MAX_LINE_CHARS + 1));
        assert!(SupportMeasure::register(q, d, &e).is_err());
        let mut q = request(d);
        q.offenders[0].birth_date = Some(DateValue::NonCalendar {
            year: 2020,
            month: 2,
            day: 29,
            era: None,
        });
        assert!(SupportMeasure::register(q, d, &e).is_err());
        let mut q = request(d);
        q.offenders.push(Offender {
            name: None,
            addressee_number: None,
            birth_date: None,
            sex: Some(Sex::Male),
            address: None,
            other: None,
        });
        assert!(SupportMeasure::register(q, d, &e).is_err());
        let mut q = request(d);
        q.forwarding.received_on = Some(date(2020, 4, 2));
        assert!(SupportMeasure::register(q, d, &e).is_err());
        // Confirmation cannot start before the filing date.
        let p = provisional(d);
        assert_eq!(
            p.confirm(date(2020, 3, 31), None, d),
            Err(SupportError::StartBeforeFiling {
                start: date(2020, 3, 31),
                filed_on: d
            })
        );
    }

    #[test]
    fn extremes_do_not_panic() {
        let max = NaiveDate::MAX;
        let p = SupportMeasure::register(request(max), max, &eras()).expect("register");
        let c = p.confirm(max, None, max).expect("confirm");
        assert_eq!(c.period.map(|p| p.end), Some(max));
        // No day after NaiveDate::MAX: the extension cannot be later.
        assert!(c.extend(None, max).is_err());
        let _ = c.alert(max);
        let min = NaiveDate::MIN;
        let p = SupportMeasure::register(request(min), min, &eras()).expect("register");
        let c = p.confirm(min, None, min).expect("confirm");
        let _ = (c.alert(min), c.extend(None, min), c.alert(max));
    }

    proptest::proptest! {
        /// j440 for any start day: the period ends the day before the
        /// anniversary, the window opens one month before the end, the
        /// alerts follow the window, and an extension joins the old period.
        #[test]
        fn period_window_and_alerts_agree(offset in 0i64..=80_000) {
            let start = date(1900, 1, 1) + chrono::Duration::days(offset);
            let m = confirmed(start);
            let end = m.period.map(|p| p.end).unwrap_or(start);
            proptest::prop_assert_eq!(end, one_year_period_end(start));
            let opens = extension_opens_on(end);
            let window = (end - opens).num_days();
            proptest::prop_assert!(opens < end && (28..=31).contains(&window), "{} {}", opens, end);
            let before = opens.pred_opt().unwrap_or(opens);
            proptest::prop_assert_eq!(m.alert(before), SupportAlert::None);
            let too_early = matches!(m.extend(None, before), Err(SupportError::ExtensionTooEarly { .. }));
            proptest::prop_assert!(too_early, "{}", before);
            let soon = matches!(m.alert(opens), SupportAlert::EndingSoon { .. });
            proptest::prop_assert!(soon, "{}", opens);
            proptest::prop_assert_eq!(m.alert(end), SupportAlert::EndingSoon { end_date: end, days_left: 0 });
            let after = end.succ_opt().unwrap_or(end);
            proptest::prop_assert_eq!(m.alert(after), SupportAlert::PeriodEnded { end_date: end });
            for day in [opens, end, after] {
                let x = m.extend(None, day).map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
                let p = x.period.unwrap_or(SupportPeriod { start, end });
                proptest::prop_assert_eq!(p.start, start);
                proptest::prop_assert_eq!(p.end, one_year_period_end(after));
            }
        }
    }

    #[test]
    fn codes_round_trip_and_json_is_stable() {
        for s in MeasureStatus::ALL {
            assert_eq!(MeasureStatus::from_code(s.code()), Some(s));
        }
        for p in SupportPurpose::ALL {
            assert_eq!(SupportPurpose::from_code(p.code()), Some(p));
        }
        assert_eq!(MeasureStatus::from_code("x"), None);
        let m = confirmed(date(2020, 4, 1))
            .extend(None, date(2021, 3, 1))
            .expect("x")
            .end(EndReason::Requested, date(2021, 6, 1))
            .expect("end");
        let json = serde_json::to_string(&m).expect("json");
        let back: SupportMeasure = serde_json::from_str(&json).expect("back");
        assert_eq!(back, m);
        let v = serde_json::to_value(SupportAlert::PeriodEnded {
            end_date: date(2021, 3, 31),
        })
        .expect("alert");
        assert_eq!(
            v,
            serde_json::json!({"kind": "period_ended", "end_date": "2021-03-31"})
        );
        for e in [
            SupportError::AlreadyConfirmed,
            SupportError::Closed(MeasureStatus::Ended),
            SupportError::NotProtected(a(1)),
        ] {
            assert!(e.is_conflict());
            assert!(!e.message_ja().is_empty());
        }
        assert!(!SupportError::FiledInFuture(date(2020, 1, 1)).is_conflict());
    }
}
