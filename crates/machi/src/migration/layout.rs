//! The migration layout (docs/migration-layout.md): what each CSV file holds,
//! and the mapping between a history row and a CSV record.
//!
//! The layout follows the items of the standard's migration data for the
//! resident registry (住民基本台帳 中間標準レイアウト): one row per history row
//! (宛名番号 + 履歴番号, j200) with every item of the record, and the change
//! that appended it. Dates are written as entered (j80): 西暦 `YYYY-MM-DD`,
//! 和暦 as entered, non-calendar and unknown dates in their j80 text.

use chrono::NaiveDate;
use machi_domain::change::{ChangeInfo, ChangeReason, HistoryRow};
use machi_domain::dates::{DatePolicy, DateValue, EraTable};
use machi_domain::error::Localized;
use machi_domain::model::*;
use machi_domain::names::{Furigana, PersonName};
use machi_domain::relationship::Relationship;

/// Bounds that keep the numbers of imported rows far from overflow.
pub const MAX_HISTORY_NUMBER: i64 = 1_000_000;
pub const MAX_CHANGE_ID: i64 = 1 << 53;

/// Version written to and expected in the manifest.
pub const LAYOUT_VERSION: &str = "machi-jyuki-1";
pub const MANIFEST_FILE: &str = "manifest.json";
pub const RESIDENTS_FILE: &str = "residents.csv";
pub const HOUSEHOLDS_FILE: &str = "households.csv";
pub const SUPPORT_MEASURES_FILE: &str = "support_measures.csv";
pub const CERTIFICATES_FILE: &str = "certificates.csv";
pub const CODES_FILE: &str = "codes.csv";

/// codes.csv: the code tables used by the other files.
pub const CODE_COLUMNS: &[(&str, &str)] = &[
    ("table", "コード表"),
    ("code", "コード"),
    ("label_ja", "名称"),
];

/// residents.csv: (column, 項目名). One row per history row, sorted by
/// 宛名番号 then 履歴番号 (1, 2, 3, … without gaps).
pub const RESIDENT_COLUMNS: &[(&str, &str)] = &[
    ("addressee_number", "宛名番号"),
    ("history_number", "履歴番号"),
    ("household_number", "世帯番号"),
    ("kind", "住民種別"),
    ("status", "住民状態"),
    ("name", "氏名"),
    ("name_kana", "氏名フリガナ"),
    ("birth_date", "生年月日"),
    ("sex", "性別"),
    ("relationship", "続柄"),
    ("head_name", "世帯主氏名"),
    ("domicile", "本籍"),
    ("domicile_head", "筆頭者"),
    ("address", "住所"),
    ("address_annex", "方書"),
    ("postal_code", "郵便番号"),
    ("address_since", "住所を定めた年月日"),
    ("resident_since", "住民となった年月日"),
    ("previous_address", "転入前住所"),
    ("my_number", "個人番号"),
    ("resident_code", "住民票コード"),
    ("alphabet_name", "氏名（アルファベット）"),
    ("alias", "通称"),
    ("alias_kana", "通称フリガナ"),
    ("nationality", "国籍・地域"),
    ("residence_status", "在留資格"),
    ("period_of_stay", "在留期間"),
    ("stay_expires_on", "在留期間の満了の日"),
    ("card_number", "在留カード等番号"),
    ("removal_reason", "消除事由"),
    ("removal_date", "消除事由の生じた年月日"),
    ("destination", "転出先住所"),
    ("destination_annex", "転出先方書"),
    ("destination_postal_code", "転出先郵便番号"),
    ("destination_abroad", "国外転出"),
    ("change_id", "異動番号"),
    ("reason", "異動事由"),
    ("effective_date", "異動日"),
    ("processed_on", "処理日"),
    ("filed_on", "届出日"),
    ("input_place", "入力場所"),
    ("input_terminal", "入力端末"),
    ("recorded_at", "記録日時"),
    ("cancels", "取消対象異動番号"),
];

/// The position of `my_number` (個人番号) in [`RESIDENT_COLUMNS`].
pub const MY_NUMBER_COLUMN: usize = column_index("my_number");

/// 宛名連携 (j1190: 住民記録データ（支援対象者管理データを含む）): the column a
/// file-linkage extract adds after [`RESIDENT_COLUMNS`] in residents.csv,
/// telling the receiving system that a support measure (支援措置, j440)
/// covers the person now, so that it never discloses their address:
/// [`SUPPORT_FLAG_PROTECTED`], [`SUPPORT_FLAG_COVERED`] or empty. A
/// migration export has no such column; `machi import` accepts and
/// ignores it (the measures themselves are in support_measures.csv).
pub const SUPPORT_FLAG_COLUMN: (&str, &str) = ("support_measure", "支援措置対象");
/// The person is a 支援対象者 (the 申出者 or one who asked with them).
pub const SUPPORT_FLAG_PROTECTED: &str = "protected";
/// The person lives in the household or at the address of a 支援対象者
/// (showing them shows the protected person's address: j410 世帯単位).
pub const SUPPORT_FLAG_COVERED: &str = "covered";
/// What the values of [`SUPPORT_FLAG_COLUMN`] mean, for the manifest.
pub const SUPPORT_FLAG_VALUES: &str = "protected: 支援対象者（併せて支援を求める者を含む） / covered: 支援対象者と同一世帯又は同一住所の者 / 空欄: 該当なし。protected・covered の者の住所等は開示しないこと（住民基本台帳事務における支援措置）。";

/// households.csv: the current households, as a cross-check of residents.csv.
pub const HOUSEHOLD_COLUMNS: &[(&str, &str)] = &[
    ("household_number", "世帯番号"),
    ("head_addressee_number", "世帯主宛名番号"),
    ("address", "住所"),
    ("address_annex", "方書"),
    ("members", "世帯員数"),
];

/// support_measures.csv (支援措置, j160/j440): header only until support
pub use super::side::{CERTIFICATE_COLUMNS, SUPPORT_MEASURE_COLUMNS};

/// The code tables of the layout: (table, code, 名称).
pub fn code_tables() -> Vec<(&'static str, String, String)> {
    let mut out = Vec::new();
    for r in ChangeReason::ALL {
        out.push(("reason", r.code().to_string(), r.label_ja().to_string()));
    }
    for (c, l) in [("male", "男"), ("female", "女")] {
        out.push(("sex", c.into(), l.into()));
    }
    for (c, l) in [("japanese", "日本人住民"), ("foreign", "外国人住民")] {
        out.push(("kind", c.into(), l.into()));
    }
    for s in [
        ResidentStatus::Resident,
        ResidentStatus::MovedOut,
        ResidentStatus::Deceased,
        ResidentStatus::Removed,
        ResidentStatus::EntryCancelled,
    ] {
        out.push(("status", code_of(&s), s.label_ja().into()));
    }
    for m in machi_domain::support::MeasureStatus::ALL {
        out.push((
            "support_status",
            m.code().to_string(),
            m.label_ja().to_string(),
        ));
    }
    for k in machi_domain::certificate::CertificateKind::ALL {
        out.push((
            "certificate_kind",
            k.code().to_string(),
            k.title_ja().to_string(),
        ));
    }
    out
}

fn code_of<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn from_code<T: serde::de::DeserializeOwned>(s: &str) -> Option<T> {
    use serde::de::IntoDeserializer;
    let d: serde::de::value::StrDeserializer<'_, serde::de::value::Error> = s.into_deserializer();
    T::deserialize(d).ok()
}

/// One problem with one field of one row.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldProblem {
    pub column: &'static str,
    pub code: &'static str,
    pub message_ja: String,
    pub message_en: String,
}

impl FieldProblem {
    pub fn new(
        column: &'static str,
        code: &'static str,
        ja: impl Into<String>,
        en: impl Into<String>,
    ) -> Self {
        FieldProblem {
            column,
            code,
            message_ja: ja.into(),
            message_en: en.into(),
        }
    }

    fn from_error(column: &'static str, e: &dyn Localized) -> Self {
        Self::new(column, e.code(), e.message_ja(), e.message_en())
    }
}

fn opt(s: &Option<String>) -> String {
    s.clone().unwrap_or_default()
}

fn opt_date(d: &Option<DateValue>) -> String {
    d.as_ref().map(DateValue::entered_text).unwrap_or_default()
}

/// A history row as a residents.csv record (in [`RESIDENT_COLUMNS`] order).
pub fn resident_fields(row: &HistoryRow) -> Vec<String> {
    let r = &row.record;
    let c = &row.change;
    let f = r.foreign.as_ref();
    let removal = r.removal.as_ref();
    let dest = removal.and_then(|m| m.destination.as_ref());
    vec![
        r.addressee_number.to_string(),
        row.history_number.to_string(),
        r.household_number.to_string(),
        code_of(&r.kind),
        code_of(&r.status),
        r.name.as_str().to_string(),
        r.name_kana
            .as_ref()
            .map(|k| k.as_str().to_string())
            .unwrap_or_default(),
        r.birth_date.entered_text(),
        code_of(&r.sex),
        r.relationship.to_string(),
        r.head_name
            .as_ref()
            .map(|n| n.as_str().to_string())
            .unwrap_or_default(),
        r.registered_domicile
            .as_ref()
            .map(|d| d.domicile.clone())
            .unwrap_or_default(),
        r.registered_domicile
            .as_ref()
            .map(|d| d.head.clone())
            .unwrap_or_default(),
        r.address.address.clone(),
        opt(&r.address.annex),
        r.address
            .postal_code
            .as_ref()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default(),
        opt_date(&r.address_since),
        opt_date(&r.resident_since),
        opt(&r.previous_address),
        r.my_number
            .as_ref()
            .map(|n| n.as_str().to_string())
            .unwrap_or_default(),
        r.resident_code
            .as_ref()
            .map(|n| n.as_str().to_string())
            .unwrap_or_default(),
        f.map(|f| f.alphabet_name.clone()).unwrap_or_default(),
        f.and_then(|f| f.alias.as_ref())
            .map(|a| a.as_str().to_string())
            .unwrap_or_default(),
        f.and_then(|f| f.alias_kana.as_ref())
            .map(|a| a.as_str().to_string())
            .unwrap_or_default(),
        f.map(|f| f.nationality.clone()).unwrap_or_default(),
        f.map(|f| f.residence_status.clone()).unwrap_or_default(),
        f.and_then(|f| f.period_of_stay.clone()).unwrap_or_default(),
        f.map(|f| opt_date(&f.stay_expires_on)).unwrap_or_default(),
        f.and_then(|f| f.card_number.clone()).unwrap_or_default(),
        removal
            .map(|m| m.reason.code().to_string())
            .unwrap_or_default(),
        removal.map(|m| m.date.entered_text()).unwrap_or_default(),
        dest.map(|d| d.address.clone()).unwrap_or_default(),
        dest.and_then(|d| d.annex.clone()).unwrap_or_default(),
        dest.and_then(|d| d.postal_code.as_ref())
            .map(|p| p.as_str().to_string())
            .unwrap_or_default(),
        dest.map(|d| if d.abroad { "1" } else { "0" }.to_string())
            .unwrap_or_default(),
        c.change_id.to_string(),
        c.reason.code().to_string(),
        c.effective_date.entered_text(),
        c.processed_on.to_string(),
        c.filed_on.map(|d| d.to_string()).unwrap_or_default(),
        c.input_place.clone(),
        c.input_terminal.clone(),
        c.recorded_at.to_string(),
        c.cancels.map(|x| x.to_string()).unwrap_or_default(),
    ]
}

/// Reads one residents.csv record (fields in [`RESIDENT_COLUMNS`] order)
/// into a history row, validating every field with the domain's rules.
/// All problems of the row are returned, not just the first.
pub fn parse_resident(fields: &[&str], eras: &EraTable) -> Result<HistoryRow, Vec<FieldProblem>> {
    let mut p = Parser {
        fields,
        eras,
        problems: Vec::new(),
    };
    let row = p.resident();
    match row {
        Some(r) if p.problems.is_empty() => Ok(r),
        _ => Err(p.problems),
    }
}

/// The position of `column` in [`RESIDENT_COLUMNS`]; a compile error
/// (through [`col!`]) if there is no such column.
const fn column_index(column: &str) -> usize {
    let mut i = 0;
    while i < RESIDENT_COLUMNS.len() {
        let name = RESIDENT_COLUMNS[i].0.as_bytes();
        let wanted = column.as_bytes();
        if name.len() == wanted.len() {
            let mut j = 0;
            while j < name.len() && name[j] == wanted[j] {
                j += 1;
            }
            if j == name.len() {
                return i;
            }
        }
        i += 1;
    }
    panic!("not a column of residents.csv")
}

/// A column of residents.csv by name, looked up when compiling.
macro_rules! col {
    ($name:literal) => {{
        const I: usize = column_index($name);
        Col(I)
    }};
}

/// A column of residents.csv (its position in [`RESIDENT_COLUMNS`]).
#[derive(Clone, Copy)]
struct Col(usize);

impl Col {
    fn name(self) -> &'static str {
        RESIDENT_COLUMNS[self.0].0
    }
}

struct Parser<'a> {
    fields: &'a [&'a str],
    eras: &'a EraTable,
    problems: Vec<FieldProblem>,
}

/// `YYYY-MM-DD` (ASCII digits) as a date: what `%Y-%m-%d` reads for it,
/// without interpreting a format string each time.
fn iso_day(v: &str) -> Option<NaiveDate> {
    let b = v.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let digits = |r: std::ops::Range<usize>| -> Option<u32> {
        b[r].iter().try_fold(0u32, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
        })
    };
    NaiveDate::from_ymd_opt(digits(0..4)? as i32, digits(5..7)?, digits(8..10)?)
}

impl<'a> Parser<'a> {
    fn raw(&self, column: Col) -> &'a str {
        self.fields.get(column.0).map(|s| s.trim()).unwrap_or("")
    }

    fn opt_raw(&self, column: Col) -> Option<String> {
        let v = self.raw(column);
        (!v.is_empty()).then(|| v.to_string())
    }

    fn required(&mut self, column: Col) -> Option<&'a str> {
        let v = self.raw(column);
        if v.is_empty() {
            self.problems.push(FieldProblem::new(
                column.name(),
                "missing_item",
                "必須項目が空です。",
                "a required item is empty",
            ));
            return None;
        }
        Some(v)
    }

    fn parsed<T: std::str::FromStr>(&mut self, column: Col) -> Option<T>
    where
        T::Err: Localized,
    {
        let v = self.required(column)?;
        match v.parse::<T>() {
            Ok(x) => Some(x),
            Err(e) => {
                self.problems
                    .push(FieldProblem::from_error(column.name(), &e));
                None
            }
        }
    }

    fn opt_parsed<T: std::str::FromStr>(&mut self, column: Col) -> Option<Option<T>>
    where
        T::Err: Localized,
    {
        let v = self.raw(column);
        if v.is_empty() {
            return Some(None);
        }
        match v.parse::<T>() {
            Ok(x) => Some(Some(x)),
            Err(e) => {
                self.problems
                    .push(FieldProblem::from_error(column.name(), &e));
                None
            }
        }
    }

    fn int(&mut self, column: Col) -> Option<i64> {
        let v = self.required(column)?;
        match v.parse::<i64>() {
            Ok(x) => Some(x),
            Err(_) => {
                self.problems.push(FieldProblem::new(
                    column.name(),
                    "invalid_number",
                    format!("数値ではありません: {v}"),
                    format!("not a number: {v}"),
                ));
                None
            }
        }
    }

    fn opt_int(&mut self, column: Col) -> Option<Option<i64>> {
        if self.raw(column).is_empty() {
            return Some(None);
        }
        self.int(column).map(Some)
    }

    fn code<T: serde::de::DeserializeOwned>(&mut self, column: Col) -> Option<T> {
        let v = self.required(column)?;
        let parsed = from_code::<T>(v);
        if parsed.is_none() {
            self.problems.push(FieldProblem::new(
                column.name(),
                "invalid_code",
                format!("コード表にない値です: {v}"),
                format!("not in the code table: {v}"),
            ));
        }
        parsed
    }

    fn date(&mut self, column: Col, policy: DatePolicy) -> Option<DateValue> {
        let v = self.required(column)?;
        match DateValue::parse(v, self.eras, policy) {
            Ok(d) => Some(d),
            Err(e) => {
                self.problems
                    .push(FieldProblem::from_error(column.name(), &e));
                None
            }
        }
    }

    fn opt_date(&mut self, column: Col, policy: DatePolicy) -> Option<Option<DateValue>> {
        if self.raw(column).is_empty() {
            return Some(None);
        }
        self.date(column, policy).map(Some)
    }

    fn day(&mut self, column: Col) -> Option<NaiveDate> {
        let v = self.required(column)?;
        match iso_day(v).or_else(|| NaiveDate::parse_from_str(v, "%Y-%m-%d").ok()) {
            Some(d) => Some(d),
            None => {
                self.problems.push(FieldProblem::new(
                    column.name(),
                    "invalid_date",
                    format!("日付は YYYY-MM-DD で記載してください: {v}"),
                    format!("write the date as YYYY-MM-DD: {v}"),
                ));
                None
            }
        }
    }

    fn name(&mut self, column: Col) -> Option<PersonName> {
        let v = self.fields.get(column.0).copied().unwrap_or_default();
        match PersonName::new(v) {
            Ok(n) => Some(n),
            Err(e) => {
                self.problems
                    .push(FieldProblem::from_error(column.name(), &e));
                None
            }
        }
    }

    fn opt_name(&mut self, column: Col) -> Option<Option<PersonName>> {
        if self.raw(column).is_empty() {
            return Some(None);
        }
        self.name(column).map(Some)
    }

    fn opt_kana(&mut self, column: Col) -> Option<Option<Furigana>> {
        if self.raw(column).is_empty() {
            return Some(None);
        }
        // Kept exactly as written, spaces included.
        let v = self.fields.get(column.0).copied().unwrap_or_default();
        match Furigana::new(v) {
            Ok(k) => Some(Some(k)),
            Err(e) => {
                self.problems
                    .push(FieldProblem::from_error(column.name(), &e));
                None
            }
        }
    }

    fn resident(&mut self) -> Option<HistoryRow> {
        if self.fields.len() != RESIDENT_COLUMNS.len() {
            self.problems.push(FieldProblem::new(
                "(row)",
                "wrong_field_count",
                format!(
                    "項目数が {} です（{} 項目必要）。",
                    self.fields.len(),
                    RESIDENT_COLUMNS.len()
                ),
                format!(
                    "{} fields, {} expected",
                    self.fields.len(),
                    RESIDENT_COLUMNS.len()
                ),
            ));
            return None;
        }
        let irregular = DatePolicy::AllowIrregular;
        let addressee_number = self.parsed(col!("addressee_number"));
        let history_number = self.int(col!("history_number"));
        let household_number = self.parsed(col!("household_number"));
        let kind: Option<ResidentKind> = self.code(col!("kind"));
        let status: Option<ResidentStatus> = self.code(col!("status"));
        let name = self.name(col!("name"));
        let name_kana = self.opt_kana(col!("name_kana"));
        let birth_date = self.date(col!("birth_date"), irregular);
        let sex: Option<Sex> = self.code(col!("sex"));
        let relationship = match self.required(col!("relationship")) {
            Some(v) => match Relationship::parse(v) {
                Ok(r) => Some(r),
                Err(e) => {
                    self.problems
                        .push(FieldProblem::from_error("relationship", &e));
                    None
                }
            },
            None => None,
        };
        let head_name = self.opt_name(col!("head_name"));
        let domicile = match (
            self.opt_raw(col!("domicile")),
            self.opt_raw(col!("domicile_head")),
        ) {
            (None, None) => Some(None),
            (Some(domicile), Some(head)) => Some(Some(RegisteredDomicile { domicile, head })),
            _ => {
                self.problems.push(FieldProblem::new(
                    "domicile",
                    "missing_item",
                    "本籍と筆頭者は両方記載するか、両方空にしてください。",
                    "give both 本籍 and 筆頭者, or neither",
                ));
                None
            }
        };
        let address = self.required(col!("address"));
        let postal_code = self.opt_parsed(col!("postal_code"));
        let address_since = self.opt_date(col!("address_since"), irregular);
        let resident_since = self.opt_date(col!("resident_since"), irregular);
        let my_number = self.opt_parsed(col!("my_number"));
        let resident_code = self.opt_parsed(col!("resident_code"));
        let alias = self.opt_name(col!("alias"));
        let alias_kana = self.opt_kana(col!("alias_kana"));
        let stay_expires_on = self.opt_date(col!("stay_expires_on"), DatePolicy::CalendarOnly);
        let foreign = match kind {
            Some(ResidentKind::Foreign) => {
                let alphabet_name = self.required(col!("alphabet_name"));
                let nationality = self.required(col!("nationality"));
                let residence_status = self.required(col!("residence_status"));
                match (
                    alphabet_name,
                    nationality,
                    residence_status,
                    alias,
                    alias_kana,
                    stay_expires_on,
                ) {
                    (
                        Some(alphabet_name),
                        Some(nationality),
                        Some(residence_status),
                        Some(alias),
                        Some(alias_kana),
                        Some(stay_expires_on),
                    ) => Some(Some(ForeignResidentInfo {
                        alphabet_name: alphabet_name.to_string(),
                        alias,
                        alias_kana,
                        nationality: nationality.to_string(),
                        residence_status: residence_status.to_string(),
                        period_of_stay: self.opt_raw(col!("period_of_stay")),
                        stay_expires_on,
                        card_number: self.opt_raw(col!("card_number")),
                    })),
                    _ => None,
                }
            }
            _ => {
                if self.opt_raw(col!("alphabet_name")).is_some()
                    || self.opt_raw(col!("nationality")).is_some()
                {
                    self.problems.push(FieldProblem::new(
                        "alphabet_name",
                        "kind_mismatch",
                        "日本人住民に外国人住民の項目があります。",
                        "foreign-resident items on a Japanese resident",
                    ));
                }
                Some(None)
            }
        };
        let removal = match self.opt_raw(col!("removal_reason")) {
            None => Some(None),
            Some(code) => {
                let reason = ChangeReason::from_code(&code);
                if reason.is_none() {
                    self.problems.push(FieldProblem::new(
                        "removal_reason",
                        "invalid_code",
                        format!("コード表にない異動事由です: {code}"),
                        format!("not a change reason: {code}"),
                    ));
                }
                let date = self.date(col!("removal_date"), irregular);
                let destination = match self.opt_raw(col!("destination")) {
                    None => Some(None),
                    Some(address) => {
                        self.opt_parsed(col!("destination_postal_code"))
                            .map(|postal_code| {
                                Some(Destination {
                                    address,
                                    annex: self.opt_raw(col!("destination_annex")),
                                    postal_code,
                                    abroad: self.raw(col!("destination_abroad")) == "1",
                                })
                            })
                    }
                };
                match (reason, date, destination) {
                    (Some(reason), Some(date), Some(destination)) => Some(Some(Removal {
                        reason,
                        date,
                        destination,
                    })),
                    _ => None,
                }
            }
        };
        let change_id = self.int(col!("change_id"));
        let reason = match self.required(col!("reason")) {
            Some(code) => {
                let r = ChangeReason::from_code(code);
                if r.is_none() {
                    self.problems.push(FieldProblem::new(
                        "reason",
                        "invalid_code",
                        format!("コード表にない異動事由です: {code}"),
                        format!("not a change reason: {code}"),
                    ));
                }
                r
            }
            None => None,
        };
        let effective_date = self.date(col!("effective_date"), irregular);
        let processed_on = self.day(col!("processed_on"));
        let filed_on = match self.opt_raw(col!("filed_on")) {
            None => Some(None),
            Some(_) => self.day(col!("filed_on")).map(Some),
        };
        let recorded_at = self.int(col!("recorded_at"));
        let cancels = self.opt_int(col!("cancels"));
        let record = ResidentRecord {
            addressee_number: addressee_number?,
            household_number: household_number?,
            kind: kind?,
            status: status?,
            name: name?,
            name_kana: name_kana?,
            birth_date: birth_date?,
            sex: sex?,
            relationship: relationship?,
            head_name: head_name?,
            registered_domicile: domicile?,
            address: Address {
                address: address?.to_string(),
                annex: self.opt_raw(col!("address_annex")),
                postal_code: postal_code?,
            },
            address_since: address_since?,
            resident_since: resident_since?,
            previous_address: self.opt_raw(col!("previous_address")),
            my_number: my_number?,
            resident_code: resident_code?,
            foreign: foreign?,
            removal: removal?,
        };
        if let Err(e) = record.address.check() {
            self.problems.push(FieldProblem::from_error("address", &e));
        }
        if record.status.is_resident() != record.removal.is_none() {
            self.problems.push(FieldProblem::new(
                "status",
                "inconsistent_status",
                "住民状態と消除事由が一致しません。",
                "the status and the removal reason disagree",
            ));
        }
        let history_number = history_number?;
        if !(1..=MAX_HISTORY_NUMBER).contains(&history_number) {
            self.problems.push(FieldProblem::new(
                "history_number",
                "invalid_number",
                format!("履歴番号は1〜{MAX_HISTORY_NUMBER}です。"),
                format!("history numbers run from 1 to {MAX_HISTORY_NUMBER}"),
            ));
        }
        let change_id = change_id?;
        if !(1..=MAX_CHANGE_ID).contains(&change_id) {
            self.problems.push(FieldProblem::new(
                "change_id",
                "invalid_number",
                format!("異動番号は1〜{MAX_CHANGE_ID}です。"),
                format!("change ids run from 1 to {MAX_CHANGE_ID}"),
            ));
        }
        Some(HistoryRow {
            history_number,
            record,
            change: ChangeInfo {
                change_id,
                reason: reason?,
                effective_date: effective_date?,
                processed_on: processed_on?,
                filed_on: filed_on?,
                input_place: self.raw(col!("input_place")).to_string(),
                input_terminal: self.raw(col!("input_terminal")).to_string(),
                recorded_at: recorded_at?,
                cancels: cancels?,
            },
        })
    }
}
