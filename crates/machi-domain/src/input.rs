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

use chrono::NaiveDate;

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
}
