//! What people type, read the way they meant it (issue 13, item 4).
//!
//! One small, pure module every handler calls before it parses a number,
//! a code or a date: full-width digits and letters (０-９, Ａ-Ｚ) become
//! ASCII, the ideographic space a space, and for numbers the separators a
//! person or a printed certificate puts between groups of digits (spaces,
//! hyphens of any width) are dropped. Identifiers ([`crate::ids`]) and
//! dates ([`crate::dates::DateValue::parse`]) go through here; so does the
//! public certificate check (発行番号 and 照合番号 as copied from paper,
//! j1040).

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveTime, TimeZone};

use crate::dates::{DateError, DatePolicy, DateValue, EraTable};

/// Full-width ASCII (U+FF01–U+FF5E) to ASCII and the ideographic space
/// (U+3000) to a space; every other character unchanged.
pub fn fold_char(c: char) -> char {
    match c {
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(u32::from(c) - 0xFEE0).unwrap_or(c),
        '\u{3000}' => ' ',
        _ => c,
    }
}

/// [`fold_char`] over a string.
pub fn fold_width(s: &str) -> String {
    s.chars().map(fold_char).collect()
}

/// A hyphen or dash of any width as typed between digits (including the
/// long-vowel marks ー and ｰ that Japanese input methods produce for "-").
pub fn is_hyphen(c: char) -> bool {
    matches!(
        c,
        '-' | '－' | '‐' | '‑' | '‒' | '–' | '—' | '―' | '−' | 'ー' | 'ｰ'
    )
}

/// A number as typed ("０００１ ２３４５", "1234-5678-9012", " 12 ") as its
/// characters without separators: width folded, whitespace dropped, and a
/// single hyphen dropped where it stands between two other characters (a
/// leading "-1" or a doubled "1--2" keeps its hyphens, so that it is still
/// refused). Whether what is left is digits is the caller's check.
pub fn compact_number(s: &str) -> String {
    let chars: Vec<char> = s
        .chars()
        .map(fold_char)
        .filter(|c| !c.is_whitespace())
        .collect();
    let mut out = String::with_capacity(chars.len());
    for (i, &c) in chars.iter().enumerate() {
        let between =
            i > 0 && i + 1 < chars.len() && !is_hyphen(chars[i - 1]) && !is_hyphen(chars[i + 1]);
        if !(is_hyphen(c) && between) {
            out.push(c);
        }
    }
    out
}

/// The key two spellings of a 発行番号 (j1040) share: width folded,
/// whitespace and hyphens dropped, letters upper-cased. 「20240401 府中市
/// 本庁1 P1 011」, 「20240401府中市本庁1P1011」 and the full-width copy of
/// either have the same key.
pub fn issue_number_key(s: &str) -> String {
    compact_number(s).to_uppercase()
}

/// A short code as typed (照合番号): [`issue_number_key`].
pub fn code_key(s: &str) -> String {
    issue_number_key(s)
}

/// A calendar date as people write it: 西暦 with or without separators
/// ("20240401", "2024/4/1", "2024-04-01", "2024年4月1日"), 和暦 by name or
/// letter ("令和6年4月1日", "R6.4.1", "令和元年5月1日"), full-width or not.
pub fn calendar_date(s: &str, eras: &EraTable) -> Result<NaiveDate, DateError> {
    let v = DateValue::parse(s, eras, DatePolicy::CalendarOnly)?;
    v.as_calendar().ok_or(DateError::Empty)
}

/// A point in time as people write it ("記録時点"): RFC 3339
/// ("2026-11-22T10:00:00+09:00"), or a date in any form
/// [`calendar_date`] reads followed by an optional time of day
/// ("2026/11/22 10:00", "令和8年11月22日 10時30分", "R8.11.22 9:05:30"),
/// in Japan time (+09:00). A date alone means the end of that day (what
/// the registry said once the day was over).
pub fn recorded_time(s: &str, eras: &EraTable) -> Result<DateTime<FixedOffset>, DateError> {
    let text = fold_width(s).trim().to_string();
    if text.is_empty() {
        return Err(DateError::Empty);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(&text) {
        return Ok(t);
    }
    let unparseable = || DateError::Unparseable {
        input: s.trim().chars().take(100).collect(),
    };
    // Where the time of day begins: after 日, after a space, or after a T.
    let (date, time) = if let Some(i) = text.find('日') {
        let (d, t) = text.split_at(i + '日'.len_utf8());
        (d.to_string(), t.trim().to_string())
    } else if let Some((d, t)) = text.rsplit_once([' ', 'T']) {
        (d.trim().to_string(), t.trim().to_string())
    } else {
        (text.clone(), String::new())
    };
    let day = calendar_date(&date, eras)?;
    let time = if time.is_empty() {
        NaiveTime::from_hms_micro_opt(23, 59, 59, 999_999).ok_or_else(unparseable)?
    } else {
        let t = time.replace(['時', '分'], ":").replace('秒', "");
        let parts: Vec<&str> = t.trim_end_matches(':').split(':').collect();
        let num = |i: usize| -> Result<u32, DateError> {
            match parts.get(i) {
                None => Ok(0),
                Some(p)
                    if !p.is_empty() && p.len() <= 2 && p.bytes().all(|b| b.is_ascii_digit()) =>
                {
                    p.parse().map_err(|_| unparseable())
                }
                Some(_) => Err(unparseable()),
            }
        };
        if parts.len() > 3 {
            return Err(unparseable());
        }
        NaiveTime::from_hms_opt(num(0)?, num(1)?, num(2)?).ok_or_else(unparseable)?
    };
    let jst = crate::dates::jst();
    jst.from_local_datetime(&day.and_time(time))
        .single()
        .ok_or_else(unparseable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_lose_width_and_separators() {
        assert_eq!(compact_number("０００１ ２３４５"), "00012345");
        assert_eq!(compact_number("1234－5678ー9012"), "123456789012");
        assert_eq!(compact_number("\u{3000}12\t"), "12");
        assert_eq!(compact_number("12a"), "12a");
        assert_eq!(compact_number("-1"), "-1");
        assert_eq!(compact_number("1--2"), "1--2");
    }

    #[test]
    fn issue_numbers_match_whatever_the_spacing_or_width() {
        let printed = "20240401 府中市 本庁1 P1 011";
        let key = issue_number_key(printed);
        for typed in [
            "20240401府中市本庁1P1011",
            "２０２４０４０１　府中市　本庁１　Ｐ１　０１１",
            " 20240401  府中市 本庁1 p1 011 ",
        ] {
            assert_eq!(issue_number_key(typed), key, "{typed}");
        }
        assert_ne!(issue_number_key("20240401 府中市 本庁1 P1 012"), key);
        assert_eq!(code_key("ａｂｃ-2345"), "ABC2345");
    }

    #[test]
    fn dates_as_people_write_them() {
        let eras = EraTable::standard();
        let d = NaiveDate::from_ymd_opt(2024, 4, 1).unwrap();
        for typed in [
            "20240401",
            "2024/4/1",
            "2024-04-01",
            "2024.4.1",
            "2024年4月1日",
            "令和6年4月1日",
            "R6.4.1",
            "r6/4/1",
            "Ｒ６．４．１",
            "２０２４０４０１",
            "令和６年４月１日",
        ] {
            assert_eq!(calendar_date(typed, &eras), Ok(d), "{typed}");
        }
        assert!(calendar_date("2024/2/30", &eras).is_err());
        assert!(calendar_date("", &eras).is_err());
        assert!(calendar_date("あした", &eras).is_err());
    }

    #[test]
    fn record_times_as_people_write_them() {
        let eras = EraTable::standard();
        let at = |s: &str| recorded_time(s, &eras).map(|t| t.to_rfc3339());
        let ten_thirty = Ok("2026-11-22T10:30:00+09:00".to_string());
        for typed in [
            "2026-11-22T10:30:00+09:00",
            "2026-11-22T01:30:00Z",
            "2026/11/22 10:30",
            "20261122 10:30:00",
            "令和8年11月22日 10時30分",
            "令和8年11月22日10時30分",
            "R8.11.22 10:30",
            "２０２６／１１／２２　１０：３０",
        ] {
            let got = recorded_time(typed, &eras).map(|t| t.timestamp());
            let want = chrono::DateTime::parse_from_rfc3339("2026-11-22T10:30:00+09:00")
                .unwrap()
                .timestamp();
            assert_eq!(got, Ok(want), "{typed}");
        }
        assert_eq!(at("2026/11/22 10:30"), ten_thirty);
        assert_eq!(
            at("令和8年11月22日"),
            Ok("2026-11-22T23:59:59.999999+09:00".to_string())
        );
        for bad in [
            "",
            "昨日",
            "2026/11/22 25:00",
            "2026/11/22 10:30:00:01",
            "2026/11/22 ab",
        ] {
            assert!(recorded_time(bad, &eras).is_err(), "{bad}");
        }
    }
}
