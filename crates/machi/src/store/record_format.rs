//! How a resident record is kept in `resident_history.record`.
//!
//! Two forms are read; the second is written:
//!
//! - **v1**: the record's own JSON (every item, under its API name), with
//!   the 個人番号 removed and sealed beside it as `my_number_sealed`.
//! - **v2** (`{"v":2,…}`): the same items under short keys, without the
//!   three items the row keeps in columns of its own (宛名番号, 世帯番号,
//!   住民状態: `addressee_number`, `household_number`, `status`), and with a
//!   calendar date entered in 西暦 written as `"YYYY-MM-DD"` instead of
//!   `{"kind":"calendar","date":"YYYY-MM-DD","era":null}`. About half the
//!   bytes of v1 (a history row is written for every change and a bulk load
//!   writes millions). The sealed number keeps its key `my_number_sealed`.
//!
//! The same compact date is used for the `effective_date` column of history
//! rows; both forms are read there too.

use chrono::{Datelike, NaiveDate};
use machi_domain::dates::DateValue;
use machi_domain::ids::{AddresseeNumber, HouseholdNumber, PostalCode, ResidentCode};
use machi_domain::model::{
    Address, ForeignResidentInfo, RegisteredDomicile, Removal, ResidentKind, ResidentRecord,
    ResidentStatus, Sex,
};
use machi_domain::names::{Furigana, PersonName};
use machi_domain::relationship::Relationship;
use serde::{Deserialize, Serialize};

/// The columns of a history row that v2 records leave out of the JSON.
#[derive(Debug, Clone, Copy)]
pub struct RowColumns<'a> {
    pub addressee_number: &'a str,
    pub household_number: &'a str,
    pub status: &'a str,
}

/// A record read from its stored form, its 個人番号 still sealed.
pub struct Stored {
    /// The record, without its 個人番号.
    pub record: ResidentRecord,
    /// The sealed 個人番号 (`my_number_sealed`), if any.
    pub sealed_my_number: Option<String>,
    /// Whether a plain `my_number` was found in the JSON (never written by
    /// machi: an altered row).
    pub plain_my_number: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("history record: {0}")]
    Json(#[from] serde_json::Error),
    #[error("history record: {0}")]
    Invalid(String),
}

/// A date as v2 writes it: `"YYYY-MM-DD"` for a calendar date entered in
/// 西暦, the date's own JSON otherwise.
pub struct DateRef<'a>(pub &'a DateValue);

impl Serialize for DateRef<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            DateValue::Calendar { date, era: None } if (1..=9999).contains(&date.year()) => s
                .collect_str(&format_args!(
                    "{:04}-{:02}-{:02}",
                    date.year(),
                    date.month(),
                    date.day()
                )),
            other => other.serialize(s),
        }
    }
}

/// Reads either form of a stored date.
pub struct StoredDate(pub DateValue);

impl<'de> Deserialize<'de> for StoredDate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = StoredDate;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a date: \"YYYY-MM-DD\" or a date object")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<StoredDate, E> {
                NaiveDate::parse_from_str(v, "%Y-%m-%d")
                    .map(|d| StoredDate(DateValue::calendar(d)))
                    .map_err(|e| E::custom(format!("date {v}: {e}")))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<StoredDate, A::Error> {
                DateValue::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(StoredDate)
            }
        }
        d.deserialize_any(V)
    }
}

/// A date in the compact form, as JSON text (the `effective_date` column).
pub fn write_date(out: &mut Vec<u8>, d: &DateValue) -> Result<(), FormatError> {
    serde_json::to_writer(out, &DateRef(d))?;
    Ok(())
}

/// Reads a date written by [`write_date`] or as the date's own JSON.
pub fn read_date(json: &str) -> Result<DateValue, FormatError> {
    Ok(serde_json::from_str::<StoredDate>(json)?.0)
}

fn is_none<T>(v: &Option<T>) -> bool {
    v.is_none()
}

/// A value written with its `Display` (the 続柄).
struct Shown<'a, T: std::fmt::Display>(&'a T);

impl<T: std::fmt::Display> Serialize for Shown<'_, T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self.0)
    }
}

/// v2, as written (borrowing the record).
#[derive(Serialize)]
struct V2Out<'a> {
    v: u8,
    k: ResidentKind,
    n: &'a str,
    #[serde(skip_serializing_if = "is_none")]
    nk: Option<&'a str>,
    b: DateRef<'a>,
    s: Sex,
    r: Shown<'a, Relationship>,
    #[serde(skip_serializing_if = "is_none")]
    hn: Option<&'a str>,
    #[serde(skip_serializing_if = "is_none")]
    d: Option<&'a str>,
    #[serde(skip_serializing_if = "is_none")]
    dh: Option<&'a str>,
    a: &'a str,
    #[serde(skip_serializing_if = "is_none")]
    aa: Option<&'a str>,
    #[serde(skip_serializing_if = "is_none")]
    pc: Option<&'a str>,
    #[serde(rename = "as", skip_serializing_if = "is_none")]
    address_since: Option<DateRef<'a>>,
    #[serde(skip_serializing_if = "is_none")]
    rs: Option<DateRef<'a>>,
    #[serde(skip_serializing_if = "is_none")]
    pa: Option<&'a str>,
    #[serde(skip_serializing_if = "is_none")]
    rc: Option<&'a str>,
    #[serde(skip_serializing_if = "is_none")]
    f: Option<&'a ForeignResidentInfo>,
    #[serde(skip_serializing_if = "is_none")]
    rm: Option<&'a Removal>,
    #[serde(skip_serializing_if = "is_none")]
    my_number_sealed: Option<&'a str>,
}

/// v2, as read.
#[derive(Deserialize)]
struct V2In {
    v: u8,
    k: ResidentKind,
    n: PersonName,
    #[serde(default)]
    nk: Option<Furigana>,
    b: StoredDate,
    s: Sex,
    r: Relationship,
    #[serde(default)]
    hn: Option<PersonName>,
    #[serde(default)]
    d: Option<String>,
    #[serde(default)]
    dh: Option<String>,
    a: String,
    #[serde(default)]
    aa: Option<String>,
    #[serde(default)]
    pc: Option<PostalCode>,
    #[serde(rename = "as", default)]
    address_since: Option<StoredDate>,
    #[serde(default)]
    rs: Option<StoredDate>,
    #[serde(default)]
    pa: Option<String>,
    #[serde(default)]
    rc: Option<ResidentCode>,
    #[serde(default)]
    f: Option<ForeignResidentInfo>,
    #[serde(default)]
    rm: Option<Removal>,
    #[serde(default)]
    my_number_sealed: Option<String>,
    /// Never written: present only in an altered row.
    #[serde(default)]
    my_number: Option<serde::de::IgnoredAny>,
}

/// v1: the record's own JSON with the sealed number beside it.
#[derive(Deserialize)]
struct V1In {
    #[serde(flatten)]
    record: ResidentRecord,
    #[serde(default)]
    my_number_sealed: Option<String>,
}

const V2_PREFIX: &str = "{\"v\":2,";

/// Writes `r` in the v2 form (its own `my_number` is never written; the
/// sealed number, if any, goes under `my_number_sealed`).
pub fn write_v2(
    out: &mut Vec<u8>,
    r: &ResidentRecord,
    sealed_my_number: Option<&str>,
) -> Result<(), FormatError> {
    let v = V2Out {
        v: 2,
        k: r.kind,
        n: r.name.as_str(),
        nk: r.name_kana.as_ref().map(|k| k.as_str()),
        b: DateRef(&r.birth_date),
        s: r.sex,
        r: Shown(&r.relationship),
        hn: r.head_name.as_ref().map(|n| n.as_str()),
        d: r.registered_domicile.as_ref().map(|d| d.domicile.as_str()),
        dh: r.registered_domicile.as_ref().map(|d| d.head.as_str()),
        a: &r.address.address,
        aa: r.address.annex.as_deref(),
        pc: r.address.postal_code.as_ref().map(|p| p.as_str()),
        address_since: r.address_since.as_ref().map(DateRef),
        rs: r.resident_since.as_ref().map(DateRef),
        pa: r.previous_address.as_deref(),
        rc: r.resident_code.as_ref().map(|c| c.as_str()),
        f: r.foreign.as_ref(),
        rm: r.removal.as_ref(),
        my_number_sealed: sealed_my_number,
    };
    serde_json::to_writer(out, &v)?;
    Ok(())
}

fn status_from_code(code: &str) -> Result<ResidentStatus, FormatError> {
    serde_json::from_value(serde_json::Value::String(code.to_string()))
        .map_err(|_| FormatError::Invalid(format!("status {code}")))
}

/// Reads a stored record of either form; `columns` are its row's.
pub fn read(json: &str, columns: RowColumns<'_>) -> Result<Stored, FormatError> {
    if json.starts_with(V2_PREFIX) || !json.contains("\"addressee_number\"") {
        return read_v2(json, columns);
    }
    let v1: V1In = serde_json::from_str(json)?;
    let plain_my_number = v1.record.my_number.is_some();
    Ok(Stored {
        record: v1.record,
        sealed_my_number: v1.my_number_sealed,
        plain_my_number,
    })
}

fn read_v2(json: &str, c: RowColumns<'_>) -> Result<Stored, FormatError> {
    let v: V2In = serde_json::from_str(json)?;
    if v.v != 2 {
        return Err(FormatError::Invalid(format!("record version {}", v.v)));
    }
    let invalid = |what: &str| FormatError::Invalid(what.to_string());
    let registered_domicile = match (v.d, v.dh) {
        (None, None) => None,
        (Some(domicile), Some(head)) => Some(RegisteredDomicile { domicile, head }),
        _ => return Err(invalid("本籍 without 筆頭者 or the reverse")),
    };
    let record = ResidentRecord {
        addressee_number: c
            .addressee_number
            .parse::<AddresseeNumber>()
            .map_err(|_| invalid("addressee number"))?,
        household_number: c
            .household_number
            .parse::<HouseholdNumber>()
            .map_err(|_| invalid("household number"))?,
        kind: v.k,
        status: status_from_code(c.status)?,
        name: v.n,
        name_kana: v.nk,
        birth_date: v.b.0,
        sex: v.s,
        relationship: v.r,
        head_name: v.hn,
        registered_domicile,
        address: Address {
            address: v.a,
            annex: v.aa,
            postal_code: v.pc,
        },
        address_since: v.address_since.map(|d| d.0),
        resident_since: v.rs.map(|d| d.0),
        previous_address: v.pa,
        my_number: None,
        resident_code: v.rc,
        foreign: v.f,
        removal: v.rm,
    };
    Ok(Stored {
        record,
        sealed_my_number: v.my_number_sealed,
        plain_my_number: v.my_number.is_some(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> ResidentRecord {
        let eras = machi_domain::dates::EraTable::standard();
        let date = |t: &str| {
            serde_json::to_value(
                DateValue::parse(t, &eras, machi_domain::dates::DatePolicy::AllowIrregular)
                    .unwrap(),
            )
            .unwrap()
        };
        serde_json::from_value(serde_json::json!({
            "addressee_number": "0000000019", "household_number": "0000000019",
            "kind": "japanese", "status": "resident", "name": "髙橋　一郎",
            "name_kana": "タカハシ　イチロウ",
            "birth_date": {"kind": "calendar", "date": "1969-02-18", "era": null},
            "sex": "male", "relationship": "世帯主", "head_name": "髙橋　一郎",
            "registered_domicile": {"domicile": "長野県長野市", "head": "髙橋　一郎"},
            "address": {"address": "東京都府中市緑町二丁目9番8号", "annex": "府中ハイツ101号", "postal_code": "1833129"},
            "address_since": date("平成元年1月8日"),
            "resident_since": date("年月日不詳"),
            "resident_code": "62201498250"
        }))
        .unwrap()
    }

    fn columns(r: &ResidentRecord) -> (String, String) {
        (
            r.addressee_number.to_string(),
            r.household_number.to_string(),
        )
    }

    #[test]
    fn v2_round_trips_and_is_smaller() {
        let r = record();
        let mut out = Vec::new();
        write_v2(&mut out, &r, Some("v1:sealed")).unwrap();
        let json = String::from_utf8(out).unwrap();
        assert!(json.starts_with(V2_PREFIX), "{json}");
        assert!(json.contains("\"b\":\"1969-02-18\""), "{json}");
        let (a, h) = columns(&r);
        let back = read(
            &json,
            RowColumns {
                addressee_number: &a,
                household_number: &h,
                status: "resident",
            },
        )
        .unwrap();
        assert_eq!(back.record, r);
        assert_eq!(back.sealed_my_number.as_deref(), Some("v1:sealed"));
        assert!(!back.plain_my_number);
        let v1 = serde_json::to_string(&r).unwrap();
        assert!(
            json.len() * 4 < v1.len() * 3,
            "{} vs {}",
            json.len(),
            v1.len()
        );
    }

    #[test]
    fn v1_is_still_read() {
        let r = record();
        let mut v = serde_json::to_value(&r).unwrap();
        v["my_number_sealed"] = serde_json::json!("v1:sealed");
        let back = read(
            &v.to_string(),
            RowColumns {
                addressee_number: "x",
                household_number: "y",
                status: "z",
            },
        )
        .unwrap();
        assert_eq!(back.record, r);
        assert_eq!(back.sealed_my_number.as_deref(), Some("v1:sealed"));
    }

    #[test]
    fn a_reserialized_v2_record_is_still_v2() {
        // Keys in another order (e.g. edited and written back by a tool).
        let r = record();
        let mut out = Vec::new();
        write_v2(&mut out, &r, None).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let sorted = v.to_string();
        let (a, h) = columns(&r);
        let back = read(
            &sorted,
            RowColumns {
                addressee_number: &a,
                household_number: &h,
                status: "resident",
            },
        )
        .unwrap();
        assert_eq!(back.record, r);
    }

    #[test]
    fn dates_keep_their_entered_form() {
        let eras = machi_domain::dates::EraTable::standard();
        for text in [
            "1969-02-18",
            "平成元年1月8日",
            "平成3年2月29日",
            "令和6年頃",
            "年月日不詳",
        ] {
            let d = DateValue::parse(text, &eras, machi_domain::dates::DatePolicy::AllowIrregular)
                .unwrap();
            let mut out = Vec::new();
            write_date(&mut out, &d).unwrap();
            let back = read_date(std::str::from_utf8(&out).unwrap()).unwrap();
            assert_eq!(back, d, "{text}");
            assert_eq!(back.entered_text(), d.entered_text());
        }
        // The date's own JSON (what v1 rows hold) is read too.
        let d = DateValue::calendar(NaiveDate::from_ymd_opt(2024, 7, 1).unwrap());
        assert_eq!(read_date(&serde_json::to_string(&d).unwrap()).unwrap(), d);
    }
}
