//! Identifiers: 全国地方公共団体コード, 個人番号, 住民票コード, 郵便番号,
//! 宛名番号 and 世帯番号 (j130, j170).
//!
//! Every identifier is a newtype over its canonical text (ASCII digits only),
//! validated when it is built, parsed ([`FromStr`]) or deserialized. Parsing is
//! lenient about what a person types: surrounding whitespace (including the
//! ideographic space) is trimmed and full-width digits (０-９) are folded to
//! ASCII. Anything else that is not valid is an [`IdError`]; no input panics.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::Localized;

/// Which identifier an [`IdError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdKind {
    /// 全国地方公共団体コード
    MunicipalityCode,
    /// 個人番号
    MyNumber,
    /// 住民票コード
    ResidentCode,
    /// 郵便番号
    PostalCode,
    /// 宛名番号
    AddresseeNumber,
    /// 世帯番号
    HouseholdNumber,
    /// A bare digit string given to [`m11w27_check_digit`].
    Digits,
}

impl IdKind {
    /// The item's name in Japanese, as a form labels it.
    pub fn label_ja(self) -> &'static str {
        match self {
            IdKind::MunicipalityCode => "全国地方公共団体コード",
            IdKind::MyNumber => "個人番号",
            IdKind::ResidentCode => "住民票コード",
            IdKind::PostalCode => "郵便番号",
            IdKind::AddresseeNumber => "宛名番号",
            IdKind::HouseholdNumber => "世帯番号",
            IdKind::Digits => "数字列",
        }
    }

    /// The item's name in English.
    pub fn label_en(self) -> &'static str {
        match self {
            IdKind::MunicipalityCode => "municipality code",
            IdKind::MyNumber => "My Number",
            IdKind::ResidentCode => "resident record code",
            IdKind::PostalCode => "postal code",
            IdKind::AddresseeNumber => "addressee number",
            IdKind::HouseholdNumber => "household number",
            IdKind::Digits => "digit string",
        }
    }

    /// The stable error code for this kind of identifier.
    pub fn code(self) -> &'static str {
        match self {
            IdKind::MunicipalityCode => "invalid_municipality_code",
            IdKind::MyNumber => "invalid_my_number",
            IdKind::ResidentCode => "invalid_resident_code",
            IdKind::PostalCode => "invalid_postal_code",
            IdKind::AddresseeNumber => "invalid_addressee_number",
            IdKind::HouseholdNumber => "invalid_household_number",
            IdKind::Digits => "invalid_digits",
        }
    }
}

impl fmt::Display for IdKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label_en())
    }
}

/// How many digits an identifier must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DigitCount {
    /// Exactly this many.
    Exactly(usize),
    /// From `.0` to `.1` digits, inclusive.
    Between(usize, usize),
}

impl DigitCount {
    fn contains(self, n: usize) -> bool {
        match self {
            DigitCount::Exactly(e) => n == e,
            DigitCount::Between(lo, hi) => (lo..=hi).contains(&n),
        }
    }

    fn ja(self) -> String {
        match self {
            DigitCount::Exactly(n) => format!("{n}桁"),
            DigitCount::Between(lo, hi) => format!("{lo}〜{hi}桁"),
        }
    }
}

impl fmt::Display for DigitCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DigitCount::Exactly(n) => write!(f, "{n}"),
            DigitCount::Between(lo, hi) => write!(f, "{lo} to {hi}"),
        }
    }
}

/// An invalid identifier.
///
/// `input` is the offending text as given (trimmed, and shortened when very
/// long). For [`IdKind::MyNumber`] it is always masked (every character shown
/// as `*`): a 個人番号 never appears in an error, its Debug output or a log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{kind} is empty")]
    Empty { kind: IdKind },
    #[error("{kind} must contain only digits: {input:?}")]
    NotDigits { kind: IdKind, input: String },
    #[error("{kind} must have {expected} digits, got {actual}: {input:?}")]
    WrongLength {
        kind: IdKind,
        input: String,
        expected: DigitCount,
        actual: usize,
    },
    #[error("{kind} is not in a valid format: {input:?}")]
    Malformed { kind: IdKind, input: String },
    #[error("{kind} has a wrong check digit: {input:?}")]
    BadCheckDigit { kind: IdKind, input: String },
    #[error("{kind} serial {serial} is out of range (1 to 999999999)")]
    SerialOutOfRange { kind: IdKind, serial: u64 },
}

impl IdError {
    /// Which identifier the error is about.
    pub fn kind(&self) -> IdKind {
        match self {
            IdError::Empty { kind }
            | IdError::NotDigits { kind, .. }
            | IdError::WrongLength { kind, .. }
            | IdError::Malformed { kind, .. }
            | IdError::BadCheckDigit { kind, .. }
            | IdError::SerialOutOfRange { kind, .. } => *kind,
        }
    }
}

impl Localized for IdError {
    fn code(&self) -> &'static str {
        self.kind().code()
    }

    fn message_ja(&self) -> String {
        match self {
            IdError::Empty { kind } => format!("{}が入力されていません", kind.label_ja()),
            IdError::NotDigits { kind, input } => {
                format!("{}は数字で入力してください: {input}", kind.label_ja())
            }
            IdError::WrongLength {
                kind,
                input,
                expected,
                actual,
            } => format!(
                "{}は{}の数字で入力してください（入力は{actual}桁）: {input}",
                kind.label_ja(),
                expected.ja()
            ),
            IdError::Malformed { kind, input } => match kind {
                IdKind::PostalCode => format!(
                    "郵便番号の形式が正しくありません（例: 183-0056 または 1830056）: {input}"
                ),
                _ => format!("{}の形式が正しくありません: {input}", kind.label_ja()),
            },
            IdError::BadCheckDigit { kind, input } => {
                format!(
                    "{}のチェックデジットが正しくありません: {input}",
                    kind.label_ja()
                )
            }
            IdError::SerialOutOfRange { kind, serial } => format!(
                "{}の連番が範囲外です（1〜999999999）: {serial}",
                kind.label_ja()
            ),
        }
    }

    fn message_en(&self) -> String {
        self.to_string()
    }
}

// ---------------------------------------------------------------------------
// Shared parsing helpers

/// Inputs longer than this many characters are shortened in error messages.
const MAX_ECHO_CHARS: usize = 40;

/// The input as an error may show it: masked for 個人番号, shortened if long.
fn echo(kind: IdKind, input: &str) -> String {
    let mut out: String = if kind == IdKind::MyNumber {
        input.chars().take(MAX_ECHO_CHARS).map(|_| '*').collect()
    } else {
        input.chars().take(MAX_ECHO_CHARS).collect()
    };
    if input.chars().nth(MAX_ECHO_CHARS).is_some() {
        out.push('…');
    }
    out
}

/// Folds a full-width digit (０-９) to ASCII; other characters are unchanged.
fn fold_digit(c: char) -> char {
    match c {
        '０'..='９' => char::from_u32(c as u32 - '０' as u32 + '0' as u32).unwrap_or(c),
        _ => c,
    }
}

/// Trims, folds full-width digits and checks the result is ASCII digits with
/// a length in `count` (strict, as the API's schema says: the pages first
/// compact what a person typed with [`crate::input::compact_number`]).
fn parse_digits(kind: IdKind, raw: &str, count: DigitCount) -> Result<String, IdError> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(IdError::Empty { kind });
    }
    let digits: String = trimmed.chars().map(fold_digit).collect();
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(IdError::NotDigits {
            kind,
            input: echo(kind, trimmed),
        });
    }
    // All ASCII now, so the byte length is the digit count.
    if !count.contains(digits.len()) {
        return Err(IdError::WrongLength {
            kind,
            input: echo(kind, trimmed),
            expected: count,
            actual: digits.len(),
        });
    }
    Ok(digits)
}

/// The numeric values of a string already known to be ASCII digits.
fn digit_values(digits: &str) -> impl DoubleEndedIterator<Item = u32> + '_ {
    digits.bytes().map(|b| u32::from(b.wrapping_sub(b'0')))
}

/// The last digit of a string of ASCII digits and the digits before it.
fn split_check_digit(digits: &str) -> Option<(&str, u8)> {
    let last = digits.bytes().last()?;
    let body = digits.get(..digits.len() - 1)?;
    Some((body, last.wrapping_sub(b'0')))
}

/// Implements the traits every identifier shares: Display via `$display`,
/// `as_str`, `FromStr`, `TryFrom<String>` and `From<Self> for String`.
macro_rules! id_common {
    ($ty:ident) => {
        impl $ty {
            /// The canonical text: ASCII digits only.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $ty {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                s.parse()
            }
        }

        impl TryFrom<&str> for $ty {
            type Error = IdError;
            fn try_from(s: &str) -> Result<Self, IdError> {
                s.parse()
            }
        }

        impl From<$ty> for String {
            fn from(v: $ty) -> String {
                v.0
            }
        }
    };
}

// ---------------------------------------------------------------------------
// 全国地方公共団体コード

/// 全国地方公共団体コード: five digits (two for the prefecture, three for the
/// municipality) followed by a check digit.
///
/// Check digit: multiply the five digits by 6, 5, 4, 3, 2 and add; let `r` be
/// the sum modulo 11. The check digit is `(11 - r) % 10`, i.e. `11 - r`, except
/// that `r = 1` gives 0 (11 - 1 = 10 is not one digit) and `r = 0` gives 1
/// (11 - 0 = 11, last digit). Checked against real codes, including the two
/// edge cases: 090000 栃木県 (r = 1 → 0) and 110001 埼玉県 (r = 0 → 1), and
/// 131202 練馬区, 132063 府中市, 132071 昭島市, 011002 札幌市.
///
/// The prefecture part is not checked against the list of 47 prefectures.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MunicipalityCode(String);

id_common!(MunicipalityCode);

impl MunicipalityCode {
    const KIND: IdKind = IdKind::MunicipalityCode;

    /// The check digit for a five-digit code (full-width digits and
    /// surrounding whitespace accepted).
    pub fn check_digit(first5: &str) -> Result<u8, IdError> {
        let digits = parse_digits(Self::KIND, first5, DigitCount::Exactly(5))?;
        Ok(Self::check_digit_of(&digits))
    }

    /// `digits` are five ASCII digits.
    fn check_digit_of(digits: &str) -> u8 {
        let sum: u32 = digit_values(digits)
            .zip([6u32, 5, 4, 3, 2])
            .map(|(d, w)| d * w)
            .sum();
        ((11 - sum % 11) % 10) as u8
    }

    /// The full code for a five-digit code, with its check digit computed.
    pub fn from_five_digits(first5: &str) -> Result<Self, IdError> {
        let digits = parse_digits(Self::KIND, first5, DigitCount::Exactly(5))?;
        let check = Self::check_digit_of(&digits);
        Ok(MunicipalityCode(format!("{digits}{check}")))
    }

    /// The two-digit prefecture code (都道府県コード), e.g. "13" for 東京都.
    pub fn prefecture_code(&self) -> &str {
        self.0.get(..2).unwrap_or_default()
    }

    /// The five digits without the check digit.
    pub fn without_check_digit(&self) -> &str {
        self.0.get(..5).unwrap_or_default()
    }
}

impl FromStr for MunicipalityCode {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let digits = parse_digits(Self::KIND, s, DigitCount::Exactly(6))?;
        match split_check_digit(&digits) {
            Some((body, check)) if Self::check_digit_of(body) == check => {
                Ok(MunicipalityCode(digits))
            }
            _ => Err(IdError::BadCheckDigit {
                kind: Self::KIND,
                input: echo(Self::KIND, s.trim()),
            }),
        }
    }
}

impl fmt::Display for MunicipalityCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for MunicipalityCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("MunicipalityCode").field(&self.0).finish()
    }
}

// ---------------------------------------------------------------------------
// 個人番号

/// 個人番号 (My Number): eleven digits and a check digit.
///
/// Check digit (行政手続における特定の個人を識別するための番号の利用等に関する
/// 法律施行令第八条に基づく総務省令): for n = 1..=11 let P(n) be the n-th of the
/// first eleven digits counted from the right, Q(n) = n + 1 for n ≤ 6 and
/// n - 5 for n ≥ 7; r = Σ P(n)·Q(n) mod 11; the check digit is 0 when r ≤ 1,
/// else 11 - r.
///
/// Sensitive: [`fmt::Debug`] prints `MyNumber(***)`, errors mask the input.
/// [`fmt::Display`], [`MyNumber::as_str`] and serde give the real number, for
/// the code paths that are allowed to show or store it; use
/// [`MyNumber::masked`] everywhere else.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MyNumber(String);

id_common!(MyNumber);

impl MyNumber {
    const KIND: IdKind = IdKind::MyNumber;

    /// The check digit for the first eleven digits.
    pub fn check_digit(first11: &str) -> Result<u8, IdError> {
        let digits = parse_digits(Self::KIND, first11, DigitCount::Exactly(11))?;
        Ok(Self::check_digit_of(&digits))
    }

    /// `digits` are eleven ASCII digits.
    fn check_digit_of(digits: &str) -> u8 {
        let sum: u32 = digit_values(digits)
            .rev()
            .zip(1u32..)
            .map(|(p, n)| p * if n <= 6 { n + 1 } else { n - 5 })
            .sum();
        let r = sum % 11;
        if r <= 1 { 0 } else { (11 - r) as u8 }
    }

    /// The number as it may be shown to anyone: twelve asterisks.
    pub fn masked(&self) -> &'static str {
        "************"
    }
}

impl FromStr for MyNumber {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let digits = parse_digits(Self::KIND, s, DigitCount::Exactly(12))?;
        match split_check_digit(&digits) {
            Some((body, check)) if Self::check_digit_of(body) == check => Ok(MyNumber(digits)),
            _ => Err(IdError::BadCheckDigit {
                kind: Self::KIND,
                input: echo(Self::KIND, s.trim()),
            }),
        }
    }
}

impl fmt::Display for MyNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for MyNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MyNumber(***)")
    }
}

// ---------------------------------------------------------------------------
// 住民票コード

/// 住民票コード: exactly eleven digits (its check digit is not verified).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ResidentCode(String);

id_common!(ResidentCode);

impl FromStr for ResidentCode {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        parse_digits(IdKind::ResidentCode, s, DigitCount::Exactly(11)).map(ResidentCode)
    }
}

impl fmt::Display for ResidentCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ResidentCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ResidentCode").field(&self.0).finish()
    }
}

// ---------------------------------------------------------------------------
// 郵便番号

/// 郵便番号 (j170): seven digits.
///
/// Accepts `1830056`, `183-0056`, `〒183-0056`, `〒 183-0056` and their
/// full-width forms; the hyphen may be any of - － ‐ ‑ – — − ー ｰ, and only
/// between the third and fourth digit. Stored (and serialized) as seven
/// digits; displayed as `183-0056`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PostalCode(String);

id_common!(PostalCode);

impl PostalCode {
    const KIND: IdKind = IdKind::PostalCode;

    /// The code with its hyphen, e.g. `183-0056` (same as Display).
    pub fn formatted(&self) -> String {
        self.to_string()
    }
}

fn is_hyphen(c: char) -> bool {
    matches!(
        c,
        '-' | '－' | '‐' | '‑' | '–' | '—' | '−' | 'ー' | 'ｰ' | '―'
    )
}

impl FromStr for PostalCode {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let kind = Self::KIND;
        let trimmed = s.trim();
        let body = trimmed.strip_prefix('〒').unwrap_or(trimmed).trim_start();
        if body.is_empty() {
            return Err(IdError::Empty { kind });
        }
        let folded: Vec<char> = body.chars().map(fold_digit).collect();
        if folded.iter().any(|&c| !c.is_ascii_digit() && !is_hyphen(c)) {
            return Err(IdError::NotDigits {
                kind,
                input: echo(kind, trimmed),
            });
        }
        let digits: String = folded.iter().filter(|c| c.is_ascii_digit()).collect();
        if digits.len() != 7 {
            return Err(IdError::WrongLength {
                kind,
                input: echo(kind, trimmed),
                expected: DigitCount::Exactly(7),
                actual: digits.len(),
            });
        }
        let hyphens: Vec<usize> = folded
            .iter()
            .enumerate()
            .filter(|(_, c)| is_hyphen(**c))
            .map(|(i, _)| i)
            .collect();
        if !(hyphens.is_empty() || hyphens == [3]) {
            return Err(IdError::Malformed {
                kind,
                input: echo(kind, trimmed),
            });
        }
        Ok(PostalCode(digits))
    }
}

impl fmt::Display for PostalCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.0.get(..3), self.0.get(3..)) {
            (Some(a), Some(b)) => write!(f, "{a}-{b}"),
            _ => f.write_str(&self.0),
        }
    }
}

impl fmt::Debug for PostalCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PostalCode").field(&self.0).finish()
    }
}

// ---------------------------------------------------------------------------
// 宛名番号・世帯番号 (j130)

/// Largest serial [`AddresseeNumber::from_serial`] and
/// [`HouseholdNumber::from_serial`] accept: nine digits.
pub const MAX_SERIAL: u64 = 999_999_999;

/// Check digit by modulus 11, weights 2 to 7 (M11W2-7), as j130 prescribes for
/// 宛名番号 and 世帯番号.
///
/// The weights 2, 3, 4, 5, 6, 7, 2, 3, ... are applied from the rightmost
/// digit leftwards; `r` is the weighted sum modulo 11 and the check digit is
/// `11 - r`, except: `r = 0` gives 0 (j130: 「余りが０の場合、検査付番は０」),
/// and `r = 1` also gives 0, because 11 - 1 = 10 is not one digit.
///
/// `digits` may be any non-empty run of digits (full-width folded, whitespace
/// trimmed).
pub fn m11w27_check_digit(digits: &str) -> Result<u8, IdError> {
    let digits = parse_digits(IdKind::Digits, digits, DigitCount::Between(1, usize::MAX))?;
    Ok(m11w27_of(&digits))
}

/// `digits` are ASCII digits.
fn m11w27_of(digits: &str) -> u8 {
    let r = digit_values(digits)
        .rev()
        .zip([2u32, 3, 4, 5, 6, 7].into_iter().cycle())
        .fold(0u32, |acc, (d, w)| (acc + d * w) % 11);
    if r <= 1 { 0 } else { (11 - r) as u8 }
}

macro_rules! serial_number {
    ($(#[$doc:meta])* $ty:ident, $kind:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $ty(String);

        id_common!($ty);

        impl $ty {
            const KIND: IdKind = $kind;

            /// A newly allocated number: `serial` zero-padded to nine digits
            /// followed by its M11W2-7 check digit ([`m11w27_check_digit`]),
            /// ten digits in all. `serial` must be 1 to [`MAX_SERIAL`].
            pub fn from_serial(serial: u64) -> Result<Self, IdError> {
                if serial == 0 || serial > MAX_SERIAL {
                    return Err(IdError::SerialOutOfRange {
                        kind: Self::KIND,
                        serial,
                    });
                }
                let body = format!("{serial:09}");
                let check = m11w27_of(&body);
                Ok($ty(format!("{body}{check}")))
            }

            /// Whether the last digit is the M11W2-7 check digit of the
            /// digits before it. Numbers allocated before the rule applied
            /// may fail this and are still valid (j130).
            pub fn has_valid_check_digit(&self) -> bool {
                match split_check_digit(&self.0) {
                    Some((body, check)) if !body.is_empty() => m11w27_of(body) == check,
                    _ => false,
                }
            }
        }

        impl FromStr for $ty {
            type Err = IdError;
            /// Any run of 1 to 15 digits; the check digit is not required.
            fn from_str(s: &str) -> Result<Self, IdError> {
                parse_digits(Self::KIND, s, DigitCount::Between(1, 15)).map($ty)
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_tuple(stringify!($ty)).field(&self.0).finish()
            }
        }
    };
}

serial_number!(
    /// 宛名番号 (j130): 1 to 15 digits, per municipality. New numbers come
    /// from a per-tenant serial with an M11W2-7 check digit
    /// ([`AddresseeNumber::from_serial`]); numbers allocated earlier keep
    /// their form.
    AddresseeNumber,
    IdKind::AddresseeNumber
);

serial_number!(
    /// 世帯番号 (j130): 1 to 15 digits, per municipality. New numbers come
    /// from a per-tenant serial with an M11W2-7 check digit
    /// ([`HouseholdNumber::from_serial`]); numbers allocated earlier keep
    /// their form.
    HouseholdNumber,
    IdKind::HouseholdNumber
);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const REAL_CODES: &[(&str, &str)] = &[
        ("131202", "練馬区"),
        ("132063", "府中市"),
        ("132071", "昭島市"),
        ("132241", "多摩市"),
        ("113816", "美里町"),
        ("113468", "川島町"),
        ("011002", "札幌市"),
        ("131016", "千代田区"),
        ("090000", "栃木県 (r = 1)"),
        ("110001", "埼玉県 (r = 0)"),
        ("130001", "東京都"),
        ("111007", "さいたま市"),
    ];

    #[test]
    fn real_municipality_codes_are_valid() {
        for (code, name) in REAL_CODES {
            let parsed: MunicipalityCode = code.parse().unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(parsed.as_str(), *code);
            assert_eq!(parsed.to_string(), *code);
            let first5 = &code[..5];
            assert_eq!(MunicipalityCode::from_five_digits(first5).unwrap(), parsed);
            assert_eq!(
                MunicipalityCode::check_digit(first5).unwrap(),
                code.as_bytes()[5] - b'0'
            );
        }
    }

    #[test]
    fn real_municipality_codes_with_wrong_check_digit_are_invalid() {
        for (code, _) in REAL_CODES {
            let right = code.as_bytes()[5] - b'0';
            for d in 0..10u8 {
                if d == right {
                    continue;
                }
                let wrong = format!("{}{d}", &code[..5]);
                let err = wrong.parse::<MunicipalityCode>().unwrap_err();
                assert!(matches!(err, IdError::BadCheckDigit { .. }), "{wrong}");
                assert_eq!(err.code(), "invalid_municipality_code");
                assert!(err.message_ja().contains("全国地方公共団体コード"));
            }
        }
    }

    #[test]
    fn municipality_code_parts_and_lenient_input() {
        let c: MunicipalityCode = " １３２０６３\u{3000}".parse().unwrap();
        assert_eq!(c.as_str(), "132063");
        assert_eq!(c.prefecture_code(), "13");
        assert_eq!(c.without_check_digit(), "13206");
        assert!(matches!(
            "13206".parse::<MunicipalityCode>(),
            Err(IdError::WrongLength { actual: 5, .. })
        ));
        assert!(matches!(
            MunicipalityCode::from_five_digits("1320"),
            Err(IdError::WrongLength { .. })
        ));
    }

    #[test]
    fn known_my_numbers() {
        // 123456789018 is the commonly cited valid example.
        assert_eq!(MyNumber::check_digit("12345678901").unwrap(), 8);
        assert!("123456789018".parse::<MyNumber>().is_ok());
        assert!("123456789017".parse::<MyNumber>().is_err());
        for first11 in ["00000000000", "11111111111", "98765432109", "31415926535"] {
            let check = MyNumber::check_digit(first11).unwrap();
            let n: MyNumber = format!("{first11}{check}").parse().unwrap();
            assert_eq!(n.as_str(), format!("{first11}{check}"));
        }
        // Full-width input and whitespace.
        let n: MyNumber = "　１２３４５６７８９０１８ ".parse().unwrap();
        assert_eq!(n.as_str(), "123456789018");
    }

    #[test]
    fn my_number_is_never_shown_by_debug_or_errors() {
        let n: MyNumber = "123456789018".parse().unwrap();
        assert_eq!(format!("{n:?}"), "MyNumber(***)");
        assert_eq!(n.masked(), "************");
        let opt = Some(n.clone());
        assert!(!format!("{opt:?}").contains("1234"));

        for bad in [
            "123456789017",
            "12345678901",
            "1234567890123",
            "12345678901x",
        ] {
            let err = bad.parse::<MyNumber>().unwrap_err();
            for text in [
                err.to_string(),
                format!("{err:?}"),
                err.message_ja(),
                err.message_en(),
            ] {
                assert!(!text.contains("1234"), "{text}");
                assert!(!text.contains("8901"), "{text}");
            }
            assert_eq!(err.code(), "invalid_my_number");
        }
        let err = "123456789017".parse::<MyNumber>().unwrap_err();
        assert!(
            err.message_ja()
                .starts_with("個人番号のチェックデジットが正しくありません: ")
        );
    }

    #[test]
    fn my_number_check_digit_zero_ambiguity() {
        // 00000000000: r = 0 → 0. 20000000000: r = 2·6 mod 11 = 1 → 0 too.
        // The published rule maps both remainders to 0, so this one-digit
        // difference is not detected; both numbers are valid.
        assert!("000000000000".parse::<MyNumber>().is_ok());
        assert!("200000000000".parse::<MyNumber>().is_ok());
    }

    #[test]
    fn resident_code() {
        let c: ResidentCode = "12345678901".parse().unwrap();
        assert_eq!(c.as_str(), "12345678901");
        assert!("1234567890".parse::<ResidentCode>().is_err());
        assert!("123456789012".parse::<ResidentCode>().is_err());
        assert_eq!(
            "abc".parse::<ResidentCode>().unwrap_err().code(),
            "invalid_resident_code"
        );
    }

    #[test]
    fn postal_code_formats() {
        for input in [
            "1830056",
            "183-0056",
            "〒183-0056",
            "〒 183-0056",
            "１８３－００５６",
            "〒１８３－００５６",
            "１８３００５６",
            " 183ー0056 ",
            "183‐0056",
        ] {
            let p: PostalCode = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(p.as_str(), "1830056");
            assert_eq!(p.to_string(), "183-0056");
            assert_eq!(p.formatted(), "183-0056");
        }
        for bad in [
            "",
            "〒",
            "18-30056",
            "1830-056",
            "183--0056",
            "183005",
            "18300567",
            "183-005a",
        ] {
            let err = bad.parse::<PostalCode>().unwrap_err();
            assert_eq!(err.code(), "invalid_postal_code", "{bad}");
            assert!(err.message_ja().contains("郵便番号"));
        }
    }

    #[test]
    fn serial_numbers() {
        let a = AddresseeNumber::from_serial(1).unwrap();
        // 1 × 2 = 2, r = 2, check = 9.
        assert_eq!(a.as_str(), "0000000019");
        assert!(a.has_valid_check_digit());
        let h = HouseholdNumber::from_serial(999_999_999).unwrap();
        assert_eq!(h.as_str().len(), 10);
        assert!(h.has_valid_check_digit());
        assert!(matches!(
            AddresseeNumber::from_serial(0),
            Err(IdError::SerialOutOfRange { .. })
        ));
        assert!(matches!(
            HouseholdNumber::from_serial(1_000_000_000),
            Err(IdError::SerialOutOfRange { .. })
        ));
        // Legacy numbers parse without a check digit.
        let legacy: AddresseeNumber = "12345".parse().unwrap();
        assert!(!legacy.has_valid_check_digit());
        let one: HouseholdNumber = "7".parse().unwrap();
        assert!(!one.has_valid_check_digit());
        assert!("1234567890123456".parse::<AddresseeNumber>().is_err());
        assert_eq!(
            "".parse::<HouseholdNumber>().unwrap_err().code(),
            "invalid_household_number"
        );
    }

    #[test]
    fn m11w27_edge_cases() {
        // "6": 6 × 2 = 12, r = 1 → 0 (11 - 1 = 10 is not one digit).
        assert_eq!(m11w27_check_digit("6").unwrap(), 0);
        // "0": r = 0 → 0.
        assert_eq!(m11w27_check_digit("0").unwrap(), 0);
        // "1": 2, r = 2 → 9.
        assert_eq!(m11w27_check_digit("1").unwrap(), 9);
        // "1234567": 7·2 + 6·3 + 5·4 + 4·5 + 3·6 + 2·7 + 1·2 = 106, r = 7 → 4.
        assert_eq!(m11w27_check_digit("1234567").unwrap(), 4);
        assert!(m11w27_check_digit("").is_err());
        assert_eq!(
            m11w27_check_digit("12a").unwrap_err().code(),
            "invalid_digits"
        );
    }

    #[test]
    fn serde_round_trip_and_validation() {
        let c: MunicipalityCode = serde_json::from_str("\"132071\"").unwrap();
        assert_eq!(serde_json::to_string(&c).unwrap(), "\"132071\"");
        assert!(serde_json::from_str::<MunicipalityCode>("\"132072\"").is_err());
        let p: PostalCode = serde_json::from_str("\"〒183-0056\"").unwrap();
        assert_eq!(serde_json::to_string(&p).unwrap(), "\"1830056\"");
        let n: MyNumber = serde_json::from_str("\"123456789018\"").unwrap();
        assert_eq!(serde_json::to_string(&n).unwrap(), "\"123456789018\"");
        let err = serde_json::from_str::<MyNumber>("\"123456789017\"").unwrap_err();
        assert!(!err.to_string().contains("1234"));
        let a: AddresseeNumber = serde_json::from_str("\"0000000019\"").unwrap();
        assert_eq!(serde_json::to_string(&a).unwrap(), "\"0000000019\"");
        assert!(serde_json::from_str::<HouseholdNumber>("\"x\"").is_err());
        let r: ResidentCode = serde_json::from_str("\"12345678901\"").unwrap();
        assert_eq!(String::from(r), "12345678901");
    }

    #[test]
    fn junk_inputs_are_errors() {
        let junk = [
            "",
            "   ",
            "\u{3000}",
            "abc",
            "１３２０６x",
            "😀",
            "13206😀",
            "12345678901234567890123456789012345678901234567890",
            "-1",
            "+131202",
            "٣٣٣٣٣٣",
        ];
        for j in junk {
            assert!(j.parse::<MunicipalityCode>().is_err(), "{j}");
            assert!(j.parse::<MyNumber>().is_err(), "{j}");
            assert!(j.parse::<ResidentCode>().is_err(), "{j}");
            assert!(j.parse::<PostalCode>().is_err(), "{j}");
            assert!(j.parse::<AddresseeNumber>().is_err(), "{j}");
            assert!(j.parse::<HouseholdNumber>().is_err(), "{j}");
            assert!(MunicipalityCode::from_five_digits(j).is_err(), "{j}");
            assert!(MyNumber::check_digit(j).is_err(), "{j}");
        }
        let long = "1".repeat(60);
        let err = long.parse::<ResidentCode>().unwrap_err();
        assert!(err.to_string().contains('…'));
    }

    fn digits(n: usize) -> impl Strategy<Value = String> {
        proptest::collection::vec(0u8..10, n)
            .prop_map(|v| v.into_iter().map(|d| char::from(b'0' + d)).collect())
    }

    proptest! {
        #[test]
        fn my_number_check_digit_validates(first11 in digits(11), pos in 0usize..12, delta in 1u8..10) {
            let check = MyNumber::check_digit(&first11).unwrap();
            let full = format!("{first11}{check}");
            prop_assert!(full.parse::<MyNumber>().is_ok());
            // Changing any single digit makes it invalid, with one exception
            // inherent in the rule: check digit 0 stands for both r = 0 and
            // r = 1, so a change of one of the first eleven digits that moves
            // r between 0 and 1 keeps the number valid (see
            // `my_number_check_digit_zero_ambiguity`).
            let mut bytes = full.clone().into_bytes();
            bytes[pos] = b'0' + (bytes[pos] - b'0' + delta) % 10;
            let changed = String::from_utf8(bytes).unwrap();
            let still_zero = pos < 11
                && check == 0
                && MyNumber::check_digit(&changed[..11]).unwrap() == 0;
            prop_assert_eq!(changed.parse::<MyNumber>().is_ok(), still_zero, "{} -> {}", full, changed);
        }

        #[test]
        fn municipality_from_five_digits_round_trips(first5 in digits(5)) {
            let c = MunicipalityCode::from_five_digits(&first5).unwrap();
            prop_assert_eq!(c.as_str().parse::<MunicipalityCode>().unwrap(), c.clone());
            prop_assert_eq!(c.without_check_digit(), first5.as_str());
        }

        #[test]
        fn from_serial_round_trips(serial in 1u64..=MAX_SERIAL) {
            let a = AddresseeNumber::from_serial(serial).unwrap();
            prop_assert_eq!(a.as_str().len(), 10);
            prop_assert!(a.has_valid_check_digit());
            let parsed: AddresseeNumber = a.as_str().parse().unwrap();
            prop_assert_eq!(&parsed, &a);
            prop_assert_eq!(a.as_str()[..9].parse::<u64>().unwrap(), serial);
            let h = HouseholdNumber::from_serial(serial).unwrap();
            prop_assert_eq!(h.as_str(), a.as_str());
            prop_assert!(h.has_valid_check_digit());
            let json = serde_json::to_string(&h).unwrap();
            prop_assert_eq!(serde_json::from_str::<HouseholdNumber>(&json).unwrap(), h);
        }

        #[test]
        fn from_serial_changed_digit_breaks_check(serial in 1u64..=MAX_SERIAL, pos in 0usize..10, delta in 1u8..10) {
            // M11W2-7 catches every single-digit change, except that check
            // digit 0 stands for both r = 0 and r = 1.
            let a = AddresseeNumber::from_serial(serial).unwrap();
            let old_check = a.as_str().as_bytes()[9] - b'0';
            let mut bytes = a.as_str().as_bytes().to_vec();
            bytes[pos] = b'0' + (bytes[pos] - b'0' + delta) % 10;
            let changed: AddresseeNumber = String::from_utf8(bytes).unwrap().parse().unwrap();
            let new_check = m11w27_check_digit(&changed.as_str()[..9]).unwrap();
            let still_zero = pos < 9 && old_check == 0 && new_check == 0;
            prop_assert_eq!(changed.has_valid_check_digit(), still_zero);
        }

        #[test]
        fn parsers_never_panic(s in any::<String>()) {
            let _ = s.parse::<MunicipalityCode>();
            let _ = s.parse::<MyNumber>();
            let _ = s.parse::<ResidentCode>();
            let _ = s.parse::<PostalCode>();
            let _ = s.parse::<AddresseeNumber>();
            let _ = s.parse::<HouseholdNumber>();
            let _ = MunicipalityCode::from_five_digits(&s);
            let _ = MyNumber::check_digit(&s);
            let _ = m11w27_check_digit(&s);
            if let Err(e) = s.parse::<MyNumber>() {
                let _ = (e.code(), e.message_ja(), e.message_en());
            }
        }

        #[test]
        fn parsers_never_panic_on_digit_like(s in "[0-9０-９〒\\- －ー]{0,20}") {
            for r in [
                s.parse::<MunicipalityCode>().map(|v| v.to_string()),
                s.parse::<MyNumber>().map(|v| v.to_string()),
                s.parse::<ResidentCode>().map(|v| v.to_string()),
                s.parse::<PostalCode>().map(|v| v.to_string()),
                s.parse::<AddresseeNumber>().map(|v| v.to_string()),
                s.parse::<HouseholdNumber>().map(|v| v.to_string()),
            ] {
                match r {
                    Ok(v) => prop_assert!(!v.is_empty()),
                    Err(e) => {
                        prop_assert!(!e.message_ja().is_empty());
                        prop_assert!(!e.message_en().is_empty());
                    }
                }
            }
        }
    }
}
