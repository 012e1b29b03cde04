//! 年月日: dates as the resident registry accepts, keeps and shows them.
//!
//! * [`EraTable`] is the era master of j280 (和暦・西暦管理): 和暦⇔西暦
//!   conversion, with a new era added by configuration rather than by code.
//! * [`DateValue`] is a 年月日 as kept under j80 (年月日の管理): a calendar
//!   date, a non-calendar date (暦上日以外の年月日, e.g. 2/29 of a common year)
//!   or one of the fourteen 不詳日 patterns ([`UnknownDate`]). Nothing here
//!   ever invents a date: an unknown date stays unknown, a non-calendar date
//!   stays exactly as entered, and the era a date was entered in is kept, so
//!   明治45年7月30日 stays 明治45年7月30日.
//! * Display follows j90 (年月日の表示): 和暦 in general
//!   ([`DateValue::display_wareki`]), 西暦 for foreign residents' birth dates
//!   and 在留期間満了日 ([`DateValue::display_seireki`]).
//! * [`one_year_period_end`] is the one-year 支援措置 period of j440.

use std::fmt;

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::error::Localized;

/// A (year, month, day) triple, compared lexicographically. Unlike
/// [`NaiveDate`] it can hold a non-calendar day such as 2021-02-29, which is
/// what j80 asks us to keep.
type Ymd = (i32, u32, u32);

/// Earliest 西暦 year a [`DateValue`] may carry.
pub const MIN_YEAR: i32 = 1;
/// Latest 西暦 year a [`DateValue`] may carry.
pub const MAX_YEAR: i32 = 9999;

/// Longest piece of the offending input repeated in an error message.
const MAX_SHOWN_INPUT: usize = 100;

/// Days on which the era changed in the course of the day (the emperor died
/// that day), so that by tradition the day belongs to both eras: it may be
/// written as the last day of the old era (明治45年7月30日, 大正15年12月25日)
/// or the first of the new one (大正元年7月30日, 昭和元年12月25日). j80 names
/// both forms explicitly. Later changes (1989-01-08, 2019-05-01) took effect
/// at midnight, so 昭和64年1月8日 and 平成31年5月1日 do not exist.
const MIDDAY_ERA_CHANGES: [Ymd; 2] = [(1912, 7, 30), (1926, 12, 25)];

/// The standard era master (j280): name, abbreviation, first day.
const STANDARD_ERAS: [(&str, char, i32, u32, u32); 5] = [
    ("明治", 'M', 1868, 1, 25),
    ("大正", 'T', 1912, 7, 30),
    ("昭和", 'S', 1926, 12, 25),
    ("平成", 'H', 1989, 1, 8),
    ("令和", 'R', 2019, 5, 1),
];

fn ymd(d: NaiveDate) -> Ymd {
    (d.year(), d.month(), d.day())
}

/// The last day of a month (28..=31); 31 when the year is out of chrono's range.
fn last_day_of_month(year: i32, month: u32) -> u32 {
    let next = if month >= 12 {
        year.checked_add(1)
            .and_then(|y| NaiveDate::from_ymd_opt(y, 1, 1))
    } else {
        NaiveDate::from_ymd_opt(year, month + 1, 1)
    };
    next.and_then(|d| d.pred_opt()).map_or(31, |d| d.day())
}

/// The era year (1 = 元年) of 西暦 `year` in `era`; `None` on overflow.
fn era_year_of(era: &Era, year: i32) -> Option<i32> {
    year.checked_sub(era.start.year())?.checked_add(1)
}

/// "元" for the first year of an era (元年), the number otherwise.
fn wareki_year(era_year: i32) -> String {
    if era_year == 1 {
        "元".to_owned()
    } else {
        era_year.to_string()
    }
}

// ---------------------------------------------------------------------------
// Era master (j280)
// ---------------------------------------------------------------------------

/// 元号: one row of the era master (j280).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Era {
    /// The era name, e.g. "令和".
    pub name: String,
    /// The one-letter abbreviation used in short forms such as "R7.11.22".
    pub abbrev: char,
    /// The first day of the era (元年).
    pub start: NaiveDate,
}

impl Era {
    /// A new era row.
    pub fn new(name: impl Into<String>, abbrev: char, start: NaiveDate) -> Self {
        Era {
            name: name.into(),
            abbrev,
            start,
        }
    }

    /// The 西暦 year of `era_year` of this era (1 = 元年); `None` when
    /// `era_year` is below 1 or the sum overflows. Says nothing about whether
    /// the era still lasted in that year.
    pub fn gregorian_year(&self, era_year: i32) -> Option<i32> {
        if era_year < 1 {
            return None;
        }
        self.start.year().checked_add(era_year - 1)
    }
}

/// What is wrong with an era added to the master (j280).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EraConfigIssue {
    /// The name is empty.
    EmptyName,
    /// The name contains whitespace, digits, punctuation or characters that
    /// are part of the date grammar (年, 月, 日, 頃, a leading 推定).
    InvalidName,
    /// The abbreviation is not an ASCII letter.
    InvalidAbbrev,
    /// Another era already has this name.
    DuplicateName,
    /// Another era already has this abbreviation (letters compare case-insensitively).
    DuplicateAbbrev,
    /// The era does not start after the last era of the table.
    NotAfterLast {
        /// First day of the current last era.
        last_start: NaiveDate,
        /// First day asked for.
        start: NaiveDate,
    },
}

impl EraConfigIssue {
    /// The issue in Japanese.
    pub fn message_ja(&self) -> String {
        match self {
            EraConfigIssue::EmptyName => "元号名が空です。".to_owned(),
            EraConfigIssue::InvalidName => {
                "元号名に空白・数字・記号、または「年」「月」「日」「頃」の文字は使えず、「推定」で始めることもできません。"
                    .to_owned()
            }
            EraConfigIssue::InvalidAbbrev => "元号の略号は英字1文字にしてください。".to_owned(),
            EraConfigIssue::DuplicateName => "同じ名前の元号が既に登録されています。".to_owned(),
            EraConfigIssue::DuplicateAbbrev => "同じ略号の元号が既に登録されています。".to_owned(),
            EraConfigIssue::NotAfterLast { last_start, start } => format!(
                "開始日（{}）が最後の元号の開始日（{}）より後ではありません。",
                format_seireki(*start),
                format_seireki(*last_start)
            ),
        }
    }
}

impl fmt::Display for EraConfigIssue {
    /// The issue in English.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EraConfigIssue::EmptyName => f.write_str("the era name is empty"),
            EraConfigIssue::InvalidName => f.write_str(
                "the era name may not contain whitespace, digits, punctuation, 年, 月, 日 or 頃, nor start with 推定",
            ),
            EraConfigIssue::InvalidAbbrev => {
                f.write_str("the era abbreviation must be a single ASCII letter")
            }
            EraConfigIssue::DuplicateName => f.write_str("an era with this name already exists"),
            EraConfigIssue::DuplicateAbbrev => {
                f.write_str("an era with this abbreviation already exists")
            }
            EraConfigIssue::NotAfterLast { last_start, start } => write!(
                f,
                "its first day {start} is not after the first day {last_start} of the last era"
            ),
        }
    }
}

/// 和暦・西暦管理 (j280): the era master table, sorted by start.
///
/// [`EraTable::standard`] holds 明治 to 令和; a new era is added by
/// configuration with [`EraTable::with_era`] (or a whole master loaded with
/// [`EraTable::from_eras`]) without changing code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EraTable {
    eras: Vec<Era>,
}

impl Default for EraTable {
    fn default() -> Self {
        Self::standard()
    }
}

impl EraTable {
    /// 明治 M 1868-01-25, 大正 T 1912-07-30, 昭和 S 1926-12-25,
    /// 平成 H 1989-01-08, 令和 R 2019-05-01.
    pub fn standard() -> Self {
        let eras = STANDARD_ERAS
            .iter()
            .filter_map(|&(name, abbrev, y, m, d)| {
                NaiveDate::from_ymd_opt(y, m, d).map(|start| Era::new(name, abbrev, start))
            })
            .collect();
        EraTable { eras }
    }

    /// A table from a configured era master (j280), in any order. Every row
    /// is checked as by [`EraTable::with_era`]; two eras may not start on the
    /// same day. An empty master gives a table that shows everything in 西暦.
    pub fn from_eras(eras: impl IntoIterator<Item = Era>) -> Result<Self, DateError> {
        let mut list: Vec<Era> = eras.into_iter().collect();
        list.sort_by_key(|e| e.start);
        list.into_iter()
            .try_fold(EraTable { eras: Vec::new() }, EraTable::with_era)
    }

    /// Adds a new era by configuration (j280: 元号が改正された場合、パラメータ
    /// 設定による元号変更対応). It must start after the last era's first day,
    /// and its name and abbreviation must be unused.
    pub fn with_era(mut self, era: Era) -> Result<Self, DateError> {
        if let Some(issue) = self.issue_with(&era) {
            return Err(DateError::InvalidEraConfig {
                era: shown(&era.name),
                issue,
            });
        }
        self.eras.push(era);
        Ok(self)
    }

    fn issue_with(&self, era: &Era) -> Option<EraConfigIssue> {
        let name = era.name.as_str();
        if name.is_empty() {
            return Some(EraConfigIssue::EmptyName);
        }
        let bad_char = |c: char| {
            c.is_whitespace()
                || c.is_control()
                || c.is_numeric()
                || c.is_ascii_punctuation()
                || fold_char(c) != c
                || "年月日頃".contains(c)
        };
        if name.chars().any(bad_char) || name.starts_with("推定") {
            return Some(EraConfigIssue::InvalidName);
        }
        if !era.abbrev.is_ascii_alphabetic() {
            return Some(EraConfigIssue::InvalidAbbrev);
        }
        if self.eras.iter().any(|e| e.name == era.name) {
            return Some(EraConfigIssue::DuplicateName);
        }
        if self
            .eras
            .iter()
            .any(|e| e.abbrev.eq_ignore_ascii_case(&era.abbrev))
        {
            return Some(EraConfigIssue::DuplicateAbbrev);
        }
        match self.eras.last() {
            Some(last) if era.start <= last.start => Some(EraConfigIssue::NotAfterLast {
                last_start: last.start,
                start: era.start,
            }),
            _ => None,
        }
    }

    /// The eras, oldest first.
    pub fn eras(&self) -> &[Era] {
        &self.eras
    }

    /// The era named `name_or_abbrev`: its name ("令和") or its abbreviation
    /// in either case ("R", "r"; full-width letters too).
    pub fn find(&self, name_or_abbrev: &str) -> Option<&Era> {
        self.position(name_or_abbrev).and_then(|i| self.eras.get(i))
    }

    fn position(&self, name_or_abbrev: &str) -> Option<usize> {
        let key: String = name_or_abbrev.trim().chars().map(fold_char).collect();
        if let Some(i) = self.eras.iter().position(|e| e.name == key) {
            return Some(i);
        }
        let mut chars = key.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) => self.abbrev_position(c),
            _ => None,
        }
    }

    fn abbrev_position(&self, c: char) -> Option<usize> {
        if !c.is_ascii_alphabetic() {
            return None;
        }
        self.eras
            .iter()
            .position(|e| e.abbrev.eq_ignore_ascii_case(&c))
    }

    /// The longest era name the cursor starts with: (index, length in chars).
    fn name_at(&self, cursor: &Cursor) -> Option<(usize, usize)> {
        self.eras
            .iter()
            .enumerate()
            .filter(|(_, e)| !e.name.is_empty() && cursor.starts_with(&e.name))
            .map(|(i, e)| (i, e.name.chars().count()))
            .max_by_key(|&(_, len)| len)
    }

    /// The era in force on `d` and the era year (1 = 元年); `None` before the
    /// first era (明治). On a day the era changed the new era is given
    /// (1912-07-30 → 大正元年).
    pub fn era_of(&self, d: NaiveDate) -> Option<(&Era, i32)> {
        let era = self.eras.get(self.index_of(ymd(d))?)?;
        Some((era, era_year_of(era, d.year())?))
    }

    /// Index of the era in force on `at` (a possibly non-calendar day).
    fn index_of(&self, at: Ymd) -> Option<usize> {
        self.eras.iter().rposition(|e| ymd(e.start) <= at)
    }

    /// The last day that can be written in era `idx`: the day before the next
    /// era starts, or that very day for a mid-day change; `None` for the
    /// current era.
    fn last_day(&self, idx: usize) -> Option<Ymd> {
        let next = self.eras.get(idx.checked_add(1)?)?;
        let first = ymd(next.start);
        if MIDDAY_ERA_CHANGES.contains(&first) {
            Some(first)
        } else {
            Some(next.start.pred_opt().map_or(first, ymd))
        }
    }

    /// Whether the days `from..=to` overlap era `idx` (with the mid-day rule).
    fn overlaps(&self, idx: usize, from: Ymd, to: Ymd) -> bool {
        let Some(era) = self.eras.get(idx) else {
            return false;
        };
        to >= ymd(era.start) && self.last_day(idx).is_none_or(|last| from <= last)
    }

    /// The single era (and era year) covering all of `from..=to`, if any.
    fn era_covering(&self, from: Ymd, to: Ymd) -> Option<(&Era, i32)> {
        let idx = self.index_of(from)?;
        if self.index_of(to)? != idx {
            return None;
        }
        let era = self.eras.get(idx)?;
        Some((era, era_year_of(era, from.0)?))
    }

    /// The year of era `idx`, era year `era_year`, checked (元年 and later,
    /// 西暦 within [`MIN_YEAR`]..=[`MAX_YEAR`]).
    fn resolve_era_year(
        &self,
        idx: usize,
        era_year: i64,
        input: &str,
    ) -> Result<ResolvedYear, DateError> {
        let era = self.eras.get(idx).ok_or_else(|| DateError::Unparseable {
            input: shown(input),
        })?;
        if era_year < 1 {
            return Err(DateError::InvalidEraYear {
                input: shown(input),
                year: era_year,
            });
        }
        let gregorian = i64::from(era.start.year()).saturating_add(era_year - 1);
        let gregorian = checked_year(gregorian, input)?;
        let year = i32::try_from(era_year).map_err(|_| DateError::YearOutOfRange {
            input: shown(input),
            year: era_year,
        })?;
        Ok(ResolvedYear {
            gregorian,
            era: Some((
                idx,
                EnteredEra {
                    name: era.name.clone(),
                    year,
                },
            )),
        })
    }

    /// 和暦 → 西暦, strictly: the day must exist and lie within the era,
    /// except that 明治45年7月30日 and 大正15年12月25日 are accepted (j80; see
    /// the mid-day rule above). `era` is a name or an abbreviation.
    ///
    /// 昭和64年1月7日 → 1989-01-07; 昭和64年1月8日 → [`DateError::DateOutsideEra`].
    pub fn to_gregorian(
        &self,
        era: &str,
        era_year: i32,
        month: u32,
        day: u32,
    ) -> Result<NaiveDate, DateError> {
        let input = format!("{era}{}年{month}月{day}日", wareki_year(era_year));
        let idx = self.position(era).ok_or_else(|| DateError::UnknownEra {
            input: shown(&input),
            era: shown(era),
        })?;
        let year = self.resolve_era_year(idx, i64::from(era_year), &input)?;
        check_month(month, &input)?;
        check_day(day, &input)?;
        let at = (year.gregorian, month, day);
        self.check_in_era(&year, at, at, &input)?;
        NaiveDate::from_ymd_opt(year.gregorian, month, day).ok_or_else(|| {
            DateError::NotACalendarDate {
                input: shown(&input),
            }
        })
    }

    /// Errs when the year was entered in an era that does not overlap `from..=to`.
    fn check_in_era(
        &self,
        year: &ResolvedYear,
        from: Ymd,
        to: Ymd,
        input: &str,
    ) -> Result<(), DateError> {
        match &year.era {
            Some((idx, entered)) if !self.overlaps(*idx, from, to) => {
                Err(DateError::DateOutsideEra {
                    input: shown(input),
                    era: entered.name.clone(),
                    era_year: entered.year,
                })
            }
            _ => Ok(()),
        }
    }

    /// 和暦 display (j90): "平成元年1月8日", "昭和64年1月7日",
    /// "令和7年11月22日". Before the first era, 西暦 ("1868年1月1日").
    pub fn format_wareki(&self, d: NaiveDate) -> String {
        match self.era_of(d) {
            Some((era, year)) => format!(
                "{}{}年{}月{}日",
                era.name,
                wareki_year(year),
                d.month(),
                d.day()
            ),
            None => format_seireki(d),
        }
    }
}

/// 西暦 display (j90, for foreign residents): "2001年2月3日".
/// Japan Standard Time (UTC+9, no daylight saving): the day of a
/// date in these records (処理日, 請求日, 受付日) is the day in Japan,
/// whatever the server's own time zone.
pub fn jst() -> chrono::FixedOffset {
    chrono::FixedOffset::east_opt(9 * 3600).expect("UTC+9 is a valid offset")
}

pub fn format_seireki(d: NaiveDate) -> String {
    format!("{}年{}月{}日", d.year(), d.month(), d.day())
}

// ---------------------------------------------------------------------------
// The values (j80)
// ---------------------------------------------------------------------------

/// The era a year was entered in (和暦): "令和3年" is `{ name: "令和", year: 3 }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnteredEra {
    /// The era name as in the era master (also when an abbreviation was typed).
    pub name: String,
    /// The era year, 1 = 元年.
    pub year: i32,
}

impl fmt::Display for EnteredEra {
    /// "令和3年", "平成元年".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}年", self.name, wareki_year(self.year))
    }
}

/// The year part of a text form: "令和3年" when entered in 和暦, "2021年" otherwise.
fn year_text(year: i32, era: Option<&EnteredEra>) -> String {
    match era {
        Some(e) => e.to_string(),
        None => format!("{year}年"),
    }
}

/// 春夏秋冬 of the 不詳日 pattern 「令和○○年春」 (j80).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Season {
    /// 春 (March–May)
    Spring,
    /// 夏 (June–August)
    Summer,
    /// 秋 (September–November)
    Autumn,
    /// 冬: may mean the start or the end of the year, so it stands for the
    /// whole year when sorting.
    Winter,
}

impl Season {
    /// "春", "夏", "秋", "冬".
    pub fn as_str(self) -> &'static str {
        match self {
            Season::Spring => "春",
            Season::Summer => "夏",
            Season::Autumn => "秋",
            Season::Winter => "冬",
        }
    }

    fn from_char(c: char) -> Option<Self> {
        match c {
            '春' => Some(Season::Spring),
            '夏' => Some(Season::Summer),
            '秋' => Some(Season::Autumn),
            '冬' => Some(Season::Winter),
            _ => None,
        }
    }

    /// First and last month the season can denote.
    fn months(self) -> (u32, u32) {
        match self {
            Season::Spring => (3, 5),
            Season::Summer => (6, 8),
            Season::Autumn => (9, 11),
            Season::Winter => (1, 12),
        }
    }
}

/// 上旬・中旬・下旬 of the 不詳日 patterns 「令和○○年○月上旬」 (j80).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MonthPart {
    /// 上旬 (days 1–10)
    Early,
    /// 中旬 (days 11–20)
    Middle,
    /// 下旬 (day 21 to the end of the month)
    Late,
}

impl MonthPart {
    /// "上旬", "中旬", "下旬".
    pub fn as_str(self) -> &'static str {
        match self {
            MonthPart::Early => "上旬",
            MonthPart::Middle => "中旬",
            MonthPart::Late => "下旬",
        }
    }

    /// First and last day of the part in the given month.
    fn days(self, year: i32, month: u32) -> (u32, u32) {
        match self {
            MonthPart::Early => (1, 10),
            MonthPart::Middle => (11, 20),
            MonthPart::Late => (21, last_day_of_month(year, month)),
        }
    }
}

/// 不詳日 (j80): the fourteen patterns of 【不詳日入力一覧】, in that order.
///
/// Every pattern but 「年月日不詳」 keeps the 西暦 `year` and, when the year
/// was entered in 和暦, the entered era (`era`), so it formats back to
/// exactly its entered text ("令和3年4月上旬") or, for 西暦 entry (foreign
/// residents), "2021年4月上旬". Months are 1..=12, days 1..=31; a day need not
/// exist in its month (j80 allows 暦上日以外).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "pattern", rename_all = "snake_case")]
pub enum UnknownDate {
    /// 1. 「令和○○年頃」
    YearCirca { year: i32, era: Option<EnteredEra> },
    /// 2. 「令和○○年○月頃」
    MonthCirca {
        year: i32,
        era: Option<EnteredEra>,
        month: u32,
    },
    /// 3. 「令和○○年〇月〇日頃」
    DayCirca {
        year: i32,
        era: Option<EnteredEra>,
        month: u32,
        day: u32,
    },
    /// 4. 「推定令和○○年○月○日」
    EstimatedDay {
        year: i32,
        era: Option<EnteredEra>,
        month: u32,
        day: u32,
    },
    /// 5. 「推定令和○○年○月」
    EstimatedMonth {
        year: i32,
        era: Option<EnteredEra>,
        month: u32,
    },
    /// 6. 「令和○○年春」 (春夏秋冬)
    Season {
        year: i32,
        era: Option<EnteredEra>,
        season: Season,
    },
    /// 7. 「令和○○年○月上旬」 (上旬・中旬・下旬)
    PartOfMonth {
        year: i32,
        era: Option<EnteredEra>,
        month: u32,
        part: MonthPart,
    },
    /// 8. 「令和○○年○月中旬頃」 (上旬・中旬・下旬 + 頃)
    PartOfMonthCirca {
        year: i32,
        era: Option<EnteredEra>,
        month: u32,
        part: MonthPart,
    },
    /// 9. 「年月日不詳」: nothing known.
    AllUnknown,
    /// 10. 「令和○○年 月日不詳」
    MonthDayUnknown { year: i32, era: Option<EnteredEra> },
    /// 11. 「令和○○年○○月 日不詳」
    DayUnknown {
        year: i32,
        era: Option<EnteredEra>,
        month: u32,
    },
    /// 12. 「令和○○年○○月○日から○○月○日頃までの間」
    BetweenDaysCirca {
        year: i32,
        era: Option<EnteredEra>,
        from_month: u32,
        from_day: u32,
        to_month: u32,
        to_day: u32,
    },
    /// 13. 「令和○○年○○月推定○日から○日までの間」
    EstimatedBetweenDays {
        year: i32,
        era: Option<EnteredEra>,
        month: u32,
        from_day: u32,
        to_day: u32,
    },
    /// 14. 「令和○○年○○月○日頃から○日頃までの間」
    BetweenDaysEachCirca {
        year: i32,
        era: Option<EnteredEra>,
        month: u32,
        from_day: u32,
        to_day: u32,
    },
}

impl UnknownDate {
    /// The 西暦 year; `None` for 「年月日不詳」.
    pub fn year(&self) -> Option<i32> {
        use UnknownDate as U;
        match *self {
            U::YearCirca { year, .. }
            | U::MonthCirca { year, .. }
            | U::DayCirca { year, .. }
            | U::EstimatedDay { year, .. }
            | U::EstimatedMonth { year, .. }
            | U::Season { year, .. }
            | U::PartOfMonth { year, .. }
            | U::PartOfMonthCirca { year, .. }
            | U::MonthDayUnknown { year, .. }
            | U::DayUnknown { year, .. }
            | U::BetweenDaysCirca { year, .. }
            | U::EstimatedBetweenDays { year, .. }
            | U::BetweenDaysEachCirca { year, .. } => Some(year),
            U::AllUnknown => None,
        }
    }

    /// The era the year was entered in; `None` for 西暦 entry and 「年月日不詳」.
    pub fn era(&self) -> Option<&EnteredEra> {
        use UnknownDate as U;
        match self {
            U::YearCirca { era, .. }
            | U::MonthCirca { era, .. }
            | U::DayCirca { era, .. }
            | U::EstimatedDay { era, .. }
            | U::EstimatedMonth { era, .. }
            | U::Season { era, .. }
            | U::PartOfMonth { era, .. }
            | U::PartOfMonthCirca { era, .. }
            | U::MonthDayUnknown { era, .. }
            | U::DayUnknown { era, .. }
            | U::BetweenDaysCirca { era, .. }
            | U::EstimatedBetweenDays { era, .. }
            | U::BetweenDaysEachCirca { era, .. } => era.as_ref(),
            U::AllUnknown => None,
        }
    }

    /// The first and last day the pattern can denote; `None` for 「年月日不詳」.
    /// Only for ordering and range queries, never shown.
    fn span(&self) -> Option<(Ymd, Ymd)> {
        use UnknownDate as U;
        let whole_month = |year: i32, month: u32| {
            (
                (year, month, 1),
                (year, month, last_day_of_month(year, month)),
            )
        };
        Some(match *self {
            U::YearCirca { year, .. } | U::MonthDayUnknown { year, .. } => {
                ((year, 1, 1), (year, 12, 31))
            }
            U::Season { year, season, .. } => {
                let (first, last) = season.months();
                ((year, first, 1), whole_month(year, last).1)
            }
            U::MonthCirca { year, month, .. }
            | U::EstimatedMonth { year, month, .. }
            | U::DayUnknown { year, month, .. } => whole_month(year, month),
            U::DayCirca {
                year, month, day, ..
            }
            | U::EstimatedDay {
                year, month, day, ..
            } => ((year, month, day), (year, month, day)),
            U::PartOfMonth {
                year, month, part, ..
            }
            | U::PartOfMonthCirca {
                year, month, part, ..
            } => {
                let (first, last) = part.days(year, month);
                ((year, month, first), (year, month, last))
            }
            U::AllUnknown => return None,
            U::BetweenDaysCirca {
                year,
                from_month,
                from_day,
                to_month,
                to_day,
                ..
            } => ((year, from_month, from_day), (year, to_month, to_day)),
            U::EstimatedBetweenDays {
                year,
                month,
                from_day,
                to_day,
                ..
            }
            | U::BetweenDaysEachCirca {
                year,
                month,
                from_day,
                to_day,
                ..
            } => ((year, month, from_day), (year, month, to_day)),
        })
    }

    /// The j80 text form with `y` ("令和3年" or "2021年") as its year part.
    fn text_with_year(&self, y: &str) -> String {
        use UnknownDate as U;
        match self {
            U::YearCirca { .. } => format!("{y}頃"),
            U::MonthCirca { month, .. } => format!("{y}{month}月頃"),
            U::DayCirca { month, day, .. } => format!("{y}{month}月{day}日頃"),
            U::EstimatedDay { month, day, .. } => format!("推定{y}{month}月{day}日"),
            U::EstimatedMonth { month, .. } => format!("推定{y}{month}月"),
            U::Season { season, .. } => format!("{y}{}", season.as_str()),
            U::PartOfMonth { month, part, .. } => format!("{y}{month}月{}", part.as_str()),
            U::PartOfMonthCirca { month, part, .. } => {
                format!("{y}{month}月{}頃", part.as_str())
            }
            U::AllUnknown => "年月日不詳".to_owned(),
            U::MonthDayUnknown { .. } => format!("{y} 月日不詳"),
            U::DayUnknown { month, .. } => format!("{y}{month}月 日不詳"),
            U::BetweenDaysCirca {
                from_month,
                from_day,
                to_month,
                to_day,
                ..
            } => format!("{y}{from_month}月{from_day}日から{to_month}月{to_day}日頃までの間"),
            U::EstimatedBetweenDays {
                month,
                from_day,
                to_day,
                ..
            } => format!("{y}{month}月推定{from_day}日から{to_day}日までの間"),
            U::BetweenDaysEachCirca {
                month,
                from_day,
                to_day,
                ..
            } => format!("{y}{month}月{from_day}日頃から{to_day}日頃までの間"),
        }
    }

    /// Checks months (1..=12), days (1..=31) and that a range runs forwards.
    fn check_parts(&self, input: &str) -> Result<(), DateError> {
        use UnknownDate as U;
        let (months, days): (&[u32], &[u32]) = match self {
            U::YearCirca { .. } | U::Season { .. } | U::AllUnknown | U::MonthDayUnknown { .. } => {
                (&[], &[])
            }
            U::MonthCirca { month, .. }
            | U::EstimatedMonth { month, .. }
            | U::PartOfMonth { month, .. }
            | U::PartOfMonthCirca { month, .. }
            | U::DayUnknown { month, .. } => (std::slice::from_ref(month), &[]),
            U::DayCirca { month, day, .. } | U::EstimatedDay { month, day, .. } => {
                (std::slice::from_ref(month), std::slice::from_ref(day))
            }
            U::BetweenDaysCirca {
                from_month,
                from_day,
                to_month,
                to_day,
                ..
            } => {
                for &m in [from_month, to_month] {
                    check_month(m, input)?;
                }
                for &d in [from_day, to_day] {
                    check_day(d, input)?;
                }
                if (from_month, from_day) > (to_month, to_day) {
                    return Err(DateError::InvalidRange {
                        input: shown(input),
                    });
                }
                (&[], &[])
            }
            U::EstimatedBetweenDays {
                month,
                from_day,
                to_day,
                ..
            }
            | U::BetweenDaysEachCirca {
                month,
                from_day,
                to_day,
                ..
            } => {
                check_month(*month, input)?;
                check_day(*from_day, input)?;
                check_day(*to_day, input)?;
                if from_day > to_day {
                    return Err(DateError::InvalidRange {
                        input: shown(input),
                    });
                }
                (&[], &[])
            }
        };
        for &m in months {
            check_month(m, input)?;
        }
        for &d in days {
            check_day(d, input)?;
        }
        Ok(())
    }
}

impl fmt::Display for UnknownDate {
    /// The j80 text form as entered ("令和3年4月上旬", "2001年頃", "年月日不詳").
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let y = self
            .year()
            .map(|year| year_text(year, self.era()))
            .unwrap_or_default();
        f.write_str(&self.text_with_year(&y))
    }
}

/// Which 年月日 a field accepts (j80).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatePolicy {
    /// Only calendar dates (暦上日): most dates (j80, first sentence).
    CalendarOnly,
    /// Also 暦上日以外の年月日 and 不詳日: 生年月日, 住民となった年月日,
    /// 住所を定めた年月日, 外国人住民となった年月日, and the 異動日 of
    /// 出生/死亡/失踪 (j80).
    AllowIrregular,
}

/// 年月日 as the registry keeps it (j80).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DateValue {
    /// A date on the calendar. `era` is Some when entered in 和暦 (era name +
    /// era year), None when entered in 西暦; display uses the entered era so
    /// 明治45年7月30日 stays 明治45年7月30日 (not 大正元年7月30日).
    Calendar {
        date: NaiveDate,
        era: Option<EnteredEra>,
    },
    /// 暦上日以外の年月日: month 1..=12, day 1..=31, but no such calendar day
    /// (e.g. 2/29 of a non-leap year, 4/31). Kept as entered.
    NonCalendar {
        /// 西暦 year.
        year: i32,
        month: u32,
        day: u32,
        era: Option<EnteredEra>,
    },
    /// 不詳日: one of the 14 patterns of j80, with its parts.
    Unknown(UnknownDate),
}

impl DateValue {
    /// Parses what a clerk typed.
    ///
    /// Accepted (surrounding whitespace trimmed; inner half/full-width spaces
    /// ignored; full-width digits, letters and punctuation folded for parsing
    /// only; year, month and day may also be written in kanji numerals,
    /// "平成三年十二月二十一日"):
    /// * 西暦: "1989-01-07", "1989/1/7", "1989.1.7", "19890107", "1989年1月7日";
    /// * 和暦: "昭和64年1月7日", "平成元年1月8日", and with the era's name or
    ///   abbreviation (either case) and separators, "H1.1.8", "S64.01.07",
    ///   "R7/11/22", "H01.01.08", "平成1.1.8";
    /// * with [`DatePolicy::AllowIrregular`], non-calendar dates
    ///   ("平成3年2月29日", "2021-02-29") and the 14 不詳日 patterns of j80,
    ///   in 和暦 or 西暦 form ("令和3年頃", "2001年頃", "年月日不詳").
    ///
    /// A 和暦 date must lie within its era (明治45年7月30日 and 大正15年12月25日
    /// included, see [`EraTable::to_gregorian`]).
    pub fn parse(input: &str, eras: &EraTable, policy: DatePolicy) -> Result<DateValue, DateError> {
        let trimmed = input.trim();
        // The commonest form, "1989-01-07", straight to the checks the
        // general reader below applies to it (what it would read is the
        // same year, month and day).
        if let Some((year, month, day)) = iso_date_parts(trimmed) {
            let year = ResolvedYear {
                gregorian: checked_year(i64::from(year), trimmed)?,
                era: None,
            };
            return accept_day(year, month, day, trimmed, eras, policy);
        }
        let text: Vec<char> = trimmed
            .chars()
            .filter(|c| !c.is_whitespace())
            .map(fold_char)
            .collect();
        if text.is_empty() {
            return Err(DateError::Empty);
        }
        parse_folded(
            Cursor {
                chars: text,
                pos: 0,
            },
            trimmed,
            eras,
            policy,
        )
    }

    /// A calendar date entered in 西暦: `Calendar { date, era: None }`.
    pub fn calendar(date: NaiveDate) -> DateValue {
        DateValue::Calendar { date, era: None }
    }

    /// The text to show (j90: 和暦). Exactly the entered form for anything
    /// entered in 和暦 (明治45年7月30日 stays so); a calendar date entered in
    /// 西暦 in 和暦 via the table. A non-calendar or unknown date entered in
    /// 西暦 gets its year in 和暦 when one era covers every day it can
    /// denote ("2021年頃" → "令和3年頃"); otherwise (e.g. "2019年頃", which
    /// spans 平成 and 令和, or a year before 明治) it stays in 西暦 rather
    /// than pick an era.
    pub fn display_wareki(&self, eras: &EraTable) -> String {
        match self {
            DateValue::Calendar {
                date,
                era: Some(era),
            } => format!("{era}{}月{}日", date.month(), date.day()),
            DateValue::Calendar { date, era: None } => eras.format_wareki(*date),
            DateValue::NonCalendar {
                year,
                month,
                day,
                era,
            } => {
                let at = (*year, *month, *day);
                let y = match era {
                    Some(e) => e.to_string(),
                    None => converted_year_text(eras, at, at, *year),
                };
                format!("{y}{month}月{day}日")
            }
            DateValue::Unknown(u) => match (u.era(), u.year(), u.span()) {
                (None, Some(year), Some((from, to))) => {
                    u.text_with_year(&converted_year_text(eras, from, to, year))
                }
                _ => u.to_string(),
            },
        }
    }

    /// The text to show in 西暦 (j90: foreign residents' 生年月日 and
    /// 在留期間満了日): "2001年2月3日"; non-calendar and unknown dates in their
    /// own form with the 西暦 year ("2021年4月上旬").
    pub fn display_seireki(&self, _eras: &EraTable) -> String {
        match self {
            DateValue::Calendar { date, .. } => format_seireki(*date),
            DateValue::NonCalendar {
                year, month, day, ..
            } => format!("{year}年{month}月{day}日"),
            DateValue::Unknown(u) => match u.year() {
                Some(year) => u.text_with_year(&format!("{year}年")),
                None => u.to_string(),
            },
        }
    }

    /// The date, when this is a calendar date.
    pub fn as_calendar(&self) -> Option<NaiveDate> {
        match self {
            DateValue::Calendar { date, .. } => Some(*date),
            _ => None,
        }
    }

    /// An ordering key: the earliest day the value can denote ("令和3年頃" →
    /// (2021, 1, 1), "令和3年4月下旬" → (2021, 4, 21), non-calendar 2021-02-29
    /// → (2021, 2, 29)); `None` for 年月日不詳. Only for sorting and range
    /// queries: never shown, never stored as the value.
    pub fn sort_key(&self) -> Option<(i32, u32, u32)> {
        match self {
            DateValue::Calendar { date, .. } => Some(ymd(*date)),
            DateValue::NonCalendar {
                year, month, day, ..
            } => Some((*year, *month, *day)),
            DateValue::Unknown(u) => u.span().map(|(from, _)| from),
        }
    }

    /// The latest day the value can denote ("令和3年頃" → (2021, 12, 31));
    /// `None` for 年月日不詳. The counterpart of [`DateValue::sort_key`] for
    /// range queries; same caveats.
    pub fn latest_key(&self) -> Option<(i32, u32, u32)> {
        match self {
            DateValue::Unknown(u) => u.span().map(|(_, to)| to),
            _ => self.sort_key(),
        }
    }

    /// Whether this is a non-calendar or unknown date (j80).
    pub fn is_irregular(&self) -> bool {
        !matches!(self, DateValue::Calendar { .. })
    }

    /// The text that was entered, as far as it is kept: the 和暦 form for a
    /// date entered in 和暦, else the [`Display`](fmt::Display) form.
    pub fn entered_text(&self) -> String {
        match self {
            DateValue::Calendar {
                date,
                era: Some(era),
            } => format!("{era}{}月{}日", date.month(), date.day()),
            _ => self.to_string(),
        }
    }

    /// Checks a value that did not come from [`DateValue::parse`] (e.g. read
    /// back from storage): it must be exactly what parsing its entered text
    /// gives with [`DatePolicy::AllowIrregular`] — a known era, an era year
    /// matching the 西暦 year, parts in range, a NonCalendar day that really
    /// is not on the calendar.
    pub fn validate(&self, eras: &EraTable) -> Result<(), DateError> {
        let text = self.entered_text();
        let reparsed = DateValue::parse(&text, eras, DatePolicy::AllowIrregular)?;
        if &reparsed == self {
            Ok(())
        } else {
            Err(DateError::Inconsistent {
                value: shown(&text),
            })
        }
    }
}

impl fmt::Display for DateValue {
    /// ISO 8601 ("1989-01-07") for a calendar date; otherwise the j80 text
    /// form as entered ("平成3年2月29日", "令和3年頃", "2001年頃").
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DateValue::Calendar { date, .. } => write!(f, "{}", date.format("%Y-%m-%d")),
            DateValue::NonCalendar {
                year,
                month,
                day,
                era,
            } => write!(f, "{}{month}月{day}日", year_text(*year, era.as_ref())),
            DateValue::Unknown(u) => fmt::Display::fmt(u, f),
        }
    }
}

/// The year part in 和暦 when one era covers `from..=to`, else in 西暦.
fn converted_year_text(eras: &EraTable, from: Ymd, to: Ymd, year: i32) -> String {
    match eras.era_covering(from, to) {
        Some((era, era_year)) => format!("{}{}年", era.name, wareki_year(era_year)),
        None => format!("{year}年"),
    }
}

// ---------------------------------------------------------------------------
// 支援措置の期間 (j440)
// ---------------------------------------------------------------------------

/// j440: the end of a one-year period from `start` (初日算入): the day before
/// the same date next year. 令和2年4月1日 → 令和3年3月31日; 2020-02-29 →
/// 2021-02-28 (no 2/29 next year, so the period runs to the end of February).
/// At the very end of chrono's range the result saturates.
pub fn one_year_period_end(start: NaiveDate) -> NaiveDate {
    start
        .year()
        .checked_add(1)
        .and_then(|y| {
            NaiveDate::from_ymd_opt(y, start.month(), start.day())
                .or_else(|| NaiveDate::from_ymd_opt(y, 3, 1))
        })
        .and_then(|anniversary| anniversary.pred_opt())
        .unwrap_or(NaiveDate::MAX)
}

/// j440: the end of a one-year extension of a period ending on
/// `previous_end`, counted from the following day.
pub fn extended_period_end(previous_end: NaiveDate) -> NaiveDate {
    previous_end
        .succ_opt()
        .map_or(NaiveDate::MAX, one_year_period_end)
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Why a 年月日 or an era row was refused. Inputs are repeated (cut to 100
/// characters) so a clerk sees what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DateError {
    /// Nothing was entered.
    #[error("no date was entered")]
    Empty,
    /// The text is in none of the accepted forms.
    #[error(
        "{input:?} is not a date this registry understands (e.g. 令和7年11月22日, R7.11.22, 2025-11-22)"
    )]
    Unparseable { input: String },
    /// The era is not in the era master.
    #[error("{input:?}: the era {era:?} is not in the era table")]
    UnknownEra { input: String, era: String },
    /// Era year 0 or below.
    #[error("{input:?}: the era year {year} is invalid; era years start at 1 (元年)")]
    InvalidEraYear { input: String, year: i64 },
    /// The 西暦 year is outside [`MIN_YEAR`]..=[`MAX_YEAR`].
    #[error("{input:?}: the year {year} is outside the supported range 1 to 9999")]
    YearOutOfRange { input: String, year: i64 },
    /// Month outside 1..=12.
    #[error("{input:?}: the month {month} is invalid; months run from 1 to 12")]
    InvalidMonth { input: String, month: u32 },
    /// Day outside 1..=31.
    #[error("{input:?}: the day {day} is invalid; days run from 1 to 31")]
    InvalidDay { input: String, day: u32 },
    /// No such day on the calendar (e.g. 2/29 of a common year) where only
    /// calendar dates are allowed.
    #[error("{input:?} is not a day on the calendar")]
    NotACalendarDate { input: String },
    /// The 和暦 date lies outside its era (昭和64年1月8日, 平成31年5月1日).
    #[error("{input:?} is outside the era {era} (era year {era_year})")]
    DateOutsideEra {
        input: String,
        era: String,
        era_year: i32,
    },
    /// An unknown-date pattern (不詳日) where only calendar dates are allowed.
    #[error("{input:?} is an unknown or approximate date; this field accepts only calendar dates")]
    IrregularNotAllowed { input: String },
    /// A 「…から…までの間」 range whose start is after its end.
    #[error("{input:?}: the range starts after it ends")]
    InvalidRange { input: String },
    /// A new era row was refused (j280).
    #[error("the era {era:?} cannot be added: {issue}")]
    InvalidEraConfig { era: String, issue: EraConfigIssue },
    /// A stored value contradicts itself (see [`DateValue::validate`]).
    #[error("the stored date {value:?} is inconsistent")]
    Inconsistent { value: String },
}

impl Localized for DateError {
    fn code(&self) -> &'static str {
        match self {
            DateError::Empty => "empty_date",
            DateError::Unparseable { .. } => "invalid_date",
            DateError::UnknownEra { .. } => "unknown_era",
            DateError::InvalidEraYear { .. } => "invalid_era_year",
            DateError::YearOutOfRange { .. } => "year_out_of_range",
            DateError::InvalidMonth { .. } => "invalid_month",
            DateError::InvalidDay { .. } => "invalid_day",
            DateError::NotACalendarDate { .. } => "not_a_calendar_date",
            DateError::DateOutsideEra { .. } => "date_outside_era",
            DateError::IrregularNotAllowed { .. } => "irregular_date_not_allowed",
            DateError::InvalidRange { .. } => "invalid_date_range",
            DateError::InvalidEraConfig { .. } => "invalid_era_config",
            DateError::Inconsistent { .. } => "inconsistent_date",
        }
    }

    fn message_ja(&self) -> String {
        match self {
            DateError::Empty => "年月日が入力されていません。".to_owned(),
            DateError::Unparseable { input } => format!(
                "「{input}」は年月日として認識できません（入力例：令和7年11月22日、R7.11.22、2025-11-22）。"
            ),
            DateError::UnknownEra { input, era } => {
                format!("「{input}」の元号「{era}」は元号マスタに登録されていません。")
            }
            DateError::InvalidEraYear { input, year } => format!(
                "「{input}」の元号の年（{year}年）が正しくありません。元号の年は元年（1年）から始まります。"
            ),
            DateError::YearOutOfRange { input, year } => format!(
                "「{input}」の年（{year}年）は扱える範囲（西暦1年から9999年まで）を超えています。"
            ),
            DateError::InvalidMonth { input, month } => {
                format!("「{input}」の月（{month}月）が正しくありません。月は1から12までです。")
            }
            DateError::InvalidDay { input, day } => {
                format!("「{input}」の日（{day}日）が正しくありません。日は1から31までです。")
            }
            DateError::NotACalendarDate { input } => {
                format!("「{input}」は暦上に存在しない日付です。")
            }
            DateError::DateOutsideEra {
                input,
                era,
                era_year,
            } => format!(
                "「{input}」は{era}の期間外の日付です（{era}{}年）。",
                wareki_year(*era_year)
            ),
            DateError::IrregularNotAllowed { input } => {
                format!("「{input}」は不詳日です。この項目には暦上の日付のみ入力できます。")
            }
            DateError::InvalidRange { input } => {
                format!("「{input}」の期間の始まりが終わりより後になっています。")
            }
            DateError::InvalidEraConfig { era, issue } => {
                format!("元号「{era}」を登録できません。{}", issue.message_ja())
            }
            DateError::Inconsistent { value } => {
                format!("保存されている年月日「{value}」の内容に矛盾があります。")
            }
        }
    }

    fn message_en(&self) -> String {
        self.to_string()
    }
}

/// The offending input as repeated in an error, cut to [`MAX_SHOWN_INPUT`] chars.
fn shown(input: &str) -> String {
    let mut chars = input.chars();
    let mut out: String = chars.by_ref().take(MAX_SHOWN_INPUT).collect();
    if chars.next().is_some() {
        out.push('…');
    }
    out
}

fn check_month(month: u32, input: &str) -> Result<(), DateError> {
    if (1..=12).contains(&month) {
        Ok(())
    } else {
        Err(DateError::InvalidMonth {
            input: shown(input),
            month,
        })
    }
}

fn check_day(day: u32, input: &str) -> Result<(), DateError> {
    if (1..=31).contains(&day) {
        Ok(())
    } else {
        Err(DateError::InvalidDay {
            input: shown(input),
            day,
        })
    }
}

fn checked_year(year: i64, input: &str) -> Result<i32, DateError> {
    match i32::try_from(year) {
        Ok(y) if (MIN_YEAR..=MAX_YEAR).contains(&y) => Ok(y),
        _ => Err(DateError::YearOutOfRange {
            input: shown(input),
            year,
        }),
    }
}

// ---------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------

/// Full-width ASCII (Ｈ１．１．８) to ASCII, for parsing only.
fn fold_char(c: char) -> char {
    crate::input::fold_char(c)
}

fn kanji_digit(c: char) -> Option<u32> {
    Some(match c {
        '〇' | '零' => 0,
        '一' => 1,
        '二' => 2,
        '三' => 3,
        '四' => 4,
        '五' => 5,
        '六' => 6,
        '七' => 7,
        '八' => 8,
        '九' => 9,
        _ => return None,
    })
}

fn kanji_unit(c: char) -> Option<u32> {
    match c {
        '十' => Some(10),
        '百' => Some(100),
        '千' => Some(1000),
        _ => None,
    }
}

fn is_kanji_numeral(c: char) -> bool {
    kanji_digit(c).is_some() || kanji_unit(c).is_some()
}

/// Whether a number (ASCII or kanji digits, or 元) starts with `c`.
fn starts_number(c: char) -> bool {
    c.is_ascii_digit() || is_kanji_numeral(c) || c == '元'
}

/// A kanji numeral: positional ("二〇〇一") or with units ("六十四",
/// "二千一"); `None` when malformed ("十十", "二三十").
fn kanji_value(run: &[char]) -> Option<u32> {
    if run.iter().any(|&c| kanji_unit(c).is_some()) {
        let mut total: u32 = 0;
        let mut pending: Option<u32> = None;
        let mut last_unit = u32::MAX;
        for &c in run {
            if let Some(d) = kanji_digit(c) {
                if pending.is_some() {
                    return None;
                }
                pending = Some(d);
            } else {
                let unit = kanji_unit(c)?;
                if unit >= last_unit {
                    return None;
                }
                last_unit = unit;
                total = total.saturating_add(pending.take().unwrap_or(1).saturating_mul(unit));
            }
        }
        Some(total.saturating_add(pending.unwrap_or(0)))
    } else {
        run.iter().try_fold(0u32, |acc, &c| {
            Some(acc.saturating_mul(10).saturating_add(kanji_digit(c)?))
        })
    }
}

/// A position in the folded input.
struct Cursor {
    chars: Vec<char>,
    pos: usize,
}

impl Cursor {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_at(&self, n: usize) -> Option<char> {
        self.chars.get(self.pos.checked_add(n)?).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        Some(c)
    }

    fn remaining(&self) -> &[char] {
        self.chars.get(self.pos..).unwrap_or(&[])
    }

    fn at_end(&self) -> bool {
        self.remaining().is_empty()
    }

    fn starts_with(&self, s: &str) -> bool {
        let mut rest = self.remaining().iter();
        s.chars().all(|c| rest.next() == Some(&c))
    }

    /// Consumes `s` if the input continues with it.
    fn eat(&mut self, s: &str) -> bool {
        if self.starts_with(s) {
            self.pos += s.chars().count();
            true
        } else {
            false
        }
    }

    /// Consumes `s`, or `None`.
    fn expect(&mut self, s: &str) -> Option<()> {
        self.eat(s).then_some(())
    }

    /// Consumes the rest if it is exactly `s`.
    fn rest_is(&mut self, s: &str) -> bool {
        if self.remaining().iter().copied().eq(s.chars()) {
            self.pos = self.chars.len();
            true
        } else {
            false
        }
    }

    /// A number in ASCII digits (saturating) or kanji numerals; 元 = 1 if
    /// `allow_gan`.
    fn number(&mut self, allow_gan: bool) -> Option<u32> {
        let first = self.peek()?;
        if allow_gan && first == '元' {
            self.pos += 1;
            return Some(1);
        }
        if first.is_ascii_digit() {
            let mut value: u32 = 0;
            while let Some(d) = self.peek().and_then(|c| c.to_digit(10)) {
                value = value.saturating_mul(10).saturating_add(d);
                self.pos += 1;
            }
            return Some(value);
        }
        let start = self.pos;
        while self.peek().is_some_and(is_kanji_numeral) {
            self.pos += 1;
        }
        if self.pos == start {
            return None;
        }
        kanji_value(self.chars.get(start..self.pos)?)
    }

    /// Consumes 上旬/中旬/下旬.
    fn month_part(&mut self) -> Option<MonthPart> {
        [MonthPart::Early, MonthPart::Middle, MonthPart::Late]
            .into_iter()
            .find(|part| self.eat(part.as_str()))
    }
}

/// The year as typed: an era and era year, or a 西暦 year.
enum YearToken {
    Era { idx: usize, era_year: u32 },
    Gregorian(u32),
}

/// A checked year: 西暦 and, when entered in 和暦, the era index and entry.
struct ResolvedYear {
    gregorian: i32,
    era: Option<(usize, EnteredEra)>,
}

/// What the text after the year describes.
enum Shape {
    /// Month and day: a calendar or non-calendar date.
    Day { month: u32, day: u32 },
    /// One of the 不詳日 patterns.
    Unknown(UnknownDate),
}

fn parse_folded(
    mut c: Cursor,
    input: &str,
    eras: &EraTable,
    policy: DatePolicy,
) -> Result<DateValue, DateError> {
    let unparseable = || DateError::Unparseable {
        input: shown(input),
    };
    if c.rest_is("年月日不詳") {
        return accept_unknown(UnknownDate::AllUnknown, None, input, eras, policy);
    }
    // 19890107
    if c.chars.len() == 8 && c.chars.iter().all(char::is_ascii_digit) {
        let digits = c.number(false).ok_or_else(unparseable)?;
        let year = ResolvedYear {
            gregorian: checked_year(i64::from(digits / 10_000), input)?,
            era: None,
        };
        let (month, day) = ((digits % 10_000) / 100, digits % 100);
        return accept_day(year, month, day, input, eras, policy);
    }
    let estimated = c.eat("推定");
    let token = read_year(&mut c, eras, input)?;
    let year = match token {
        YearToken::Era { idx, era_year } => {
            eras.resolve_era_year(idx, i64::from(era_year), input)?
        }
        YearToken::Gregorian(y) => ResolvedYear {
            gregorian: checked_year(i64::from(y), input)?,
            era: None,
        },
    };
    let shape = match c.bump() {
        Some(sep @ ('-' | '/' | '.')) if !estimated => read_separated(&mut c, sep),
        Some('年') => {
            let era = year.era.as_ref().map(|(_, e)| e.clone());
            read_after_year(&mut c, estimated, year.gregorian, era)
        }
        _ => None,
    }
    .ok_or_else(unparseable)?;
    match shape {
        Shape::Day { month, day } => accept_day(year, month, day, input, eras, policy),
        Shape::Unknown(u) => accept_unknown(u, Some(&year), input, eras, policy),
    }
}

/// Year, month and day of exactly `YYYY-MM-DD` in ASCII digits.
fn iso_date_parts(s: &str) -> Option<(u32, u32, u32)> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let digits = |r: std::ops::Range<usize>| -> Option<u32> {
        b[r].iter().try_fold(0u32, |v, &d| {
            d.is_ascii_digit().then(|| v * 10 + u32::from(d - b'0'))
        })
    };
    Some((digits(0..4)?, digits(5..7)?, digits(8..10)?))
}

/// Reads the year: an era name or abbreviation with its year ("令和3",
/// "平成元", "H1"), or a 西暦 year ("2021", "二〇二一").
fn read_year(c: &mut Cursor, eras: &EraTable, input: &str) -> Result<YearToken, DateError> {
    let unparseable = || DateError::Unparseable {
        input: shown(input),
    };
    if let Some((idx, len)) = eras.name_at(c) {
        c.pos += len;
        let era_year = c.number(true).ok_or_else(unparseable)?;
        return Ok(YearToken::Era { idx, era_year });
    }
    let first = c.peek().ok_or_else(unparseable)?;
    if first.is_ascii_alphabetic() && c.peek_at(1).is_some_and(starts_number) {
        let idx = eras
            .abbrev_position(first)
            .ok_or_else(|| DateError::UnknownEra {
                input: shown(input),
                era: first.to_string(),
            })?;
        c.pos += 1;
        let era_year = c.number(true).ok_or_else(unparseable)?;
        return Ok(YearToken::Era { idx, era_year });
    }
    if first != '元' && starts_number(first) {
        let year = c.number(false).ok_or_else(unparseable)?;
        return Ok(YearToken::Gregorian(year));
    }
    // Something like "天保3年": a name followed by a number is an unknown era.
    let name: String = c
        .remaining()
        .iter()
        .copied()
        .take_while(|&ch| !starts_number(ch))
        .collect();
    let len = name.chars().count();
    let followed_by_number = c.peek_at(len).is_some_and(starts_number);
    if (1..=10).contains(&len) && followed_by_number && name.chars().all(char::is_alphabetic) {
        return Err(DateError::UnknownEra {
            input: shown(input),
            era: name,
        });
    }
    Err(unparseable())
}

/// After "1989-": "01-07" (the same separator twice).
fn read_separated(c: &mut Cursor, sep: char) -> Option<Shape> {
    let month = c.number(false)?;
    (c.bump()? == sep).then_some(())?;
    let day = c.number(false)?;
    c.at_end().then_some(Shape::Day { month, day })
}

/// After "令和3年": a month and day, or one of the 不詳日 patterns (j80).
fn read_after_year(
    c: &mut Cursor,
    estimated: bool,
    year: i32,
    era: Option<EnteredEra>,
) -> Option<Shape> {
    use UnknownDate as U;
    let found = |u: UnknownDate| Some(Shape::Unknown(u));
    if !estimated {
        if c.rest_is("頃") {
            return found(U::YearCirca { year, era });
        }
        if let Some(season) = c.peek().and_then(Season::from_char)
            && c.remaining().len() == 1
        {
            return found(U::Season { year, era, season });
        }
        if c.rest_is("月日不詳") {
            return found(U::MonthDayUnknown { year, era });
        }
    }
    let month = c.number(false)?;
    c.expect("月")?;
    if estimated {
        if c.at_end() {
            return found(U::EstimatedMonth { year, era, month });
        }
        let day = c.number(false)?;
        c.expect("日")?;
        return c.at_end().then_some(Shape::Unknown(U::EstimatedDay {
            year,
            era,
            month,
            day,
        }));
    }
    if c.rest_is("頃") {
        return found(U::MonthCirca { year, era, month });
    }
    if let Some(part) = c.month_part() {
        if c.at_end() {
            return found(U::PartOfMonth {
                year,
                era,
                month,
                part,
            });
        }
        return c
            .rest_is("頃")
            .then_some(Shape::Unknown(U::PartOfMonthCirca {
                year,
                era,
                month,
                part,
            }));
    }
    if c.rest_is("日不詳") {
        return found(U::DayUnknown { year, era, month });
    }
    if c.eat("推定") {
        let from_day = c.number(false)?;
        c.expect("日から")?;
        let to_day = c.number(false)?;
        return c
            .rest_is("日までの間")
            .then_some(Shape::Unknown(U::EstimatedBetweenDays {
                year,
                era,
                month,
                from_day,
                to_day,
            }));
    }
    let day = c.number(false)?;
    c.expect("日")?;
    if c.at_end() {
        return Some(Shape::Day { month, day });
    }
    if c.eat("頃") {
        if c.at_end() {
            return found(U::DayCirca {
                year,
                era,
                month,
                day,
            });
        }
        c.expect("から")?;
        let to_day = c.number(false)?;
        return c
            .rest_is("日頃までの間")
            .then_some(Shape::Unknown(U::BetweenDaysEachCirca {
                year,
                era,
                month,
                from_day: day,
                to_day,
            }));
    }
    c.expect("から")?;
    let to_month = c.number(false)?;
    c.expect("月")?;
    let to_day = c.number(false)?;
    c.rest_is("日頃までの間")
        .then_some(Shape::Unknown(U::BetweenDaysCirca {
            year,
            era,
            from_month: month,
            from_day: day,
            to_month,
            to_day,
        }))
}

/// A month and day in a checked year: Calendar, or NonCalendar if allowed.
fn accept_day(
    year: ResolvedYear,
    month: u32,
    day: u32,
    input: &str,
    eras: &EraTable,
    policy: DatePolicy,
) -> Result<DateValue, DateError> {
    check_month(month, input)?;
    check_day(day, input)?;
    let at = (year.gregorian, month, day);
    eras.check_in_era(&year, at, at, input)?;
    let era = year.era.map(|(_, e)| e);
    match NaiveDate::from_ymd_opt(year.gregorian, month, day) {
        Some(date) => Ok(DateValue::Calendar { date, era }),
        None => match policy {
            DatePolicy::CalendarOnly => Err(DateError::NotACalendarDate {
                input: shown(input),
            }),
            DatePolicy::AllowIrregular => Ok(DateValue::NonCalendar {
                year: year.gregorian,
                month,
                day,
                era,
            }),
        },
    }
}

/// A 不詳日 pattern, if the policy allows it and its parts are valid.
fn accept_unknown(
    u: UnknownDate,
    year: Option<&ResolvedYear>,
    input: &str,
    eras: &EraTable,
    policy: DatePolicy,
) -> Result<DateValue, DateError> {
    if policy == DatePolicy::CalendarOnly {
        return Err(DateError::IrregularNotAllowed {
            input: shown(input),
        });
    }
    u.check_parts(input)?;
    if let (Some(year), Some((from, to))) = (year, u.span()) {
        eras.check_in_era(year, from, to, input)?;
    }
    Ok(DateValue::Unknown(u))
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).expect("valid test date")
    }

    fn eras() -> EraTable {
        EraTable::standard()
    }

    fn parse_irregular(s: &str) -> Result<DateValue, DateError> {
        DateValue::parse(s, &eras(), DatePolicy::AllowIrregular)
    }

    fn parse_strict(s: &str) -> Result<DateValue, DateError> {
        DateValue::parse(s, &eras(), DatePolicy::CalendarOnly)
    }

    fn code_of<T: fmt::Debug>(r: Result<T, DateError>) -> &'static str {
        match r {
            Ok(v) => panic!("expected an error, got {v:?}"),
            Err(e) => e.code(),
        }
    }

    fn entered(name: &str, year: i32) -> Option<EnteredEra> {
        Some(EnteredEra {
            name: name.to_owned(),
            year,
        })
    }

    // --- era master (j280) -------------------------------------------------

    #[test]
    fn standard_table_is_sorted_and_complete() {
        let t = eras();
        let names: Vec<&str> = t.eras().iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["明治", "大正", "昭和", "平成", "令和"]);
        assert!(t.eras().windows(2).all(|w| w[0].start < w[1].start));
        assert_eq!(EraTable::default(), t);
    }

    #[test]
    fn find_by_name_or_abbrev() {
        let t = eras();
        assert_eq!(t.find("令和").map(|e| e.abbrev), Some('R'));
        assert_eq!(t.find("R").map(|e| e.name.as_str()), Some("令和"));
        assert_eq!(t.find("r").map(|e| e.name.as_str()), Some("令和"));
        assert_eq!(t.find("Ｈ").map(|e| e.name.as_str()), Some("平成"));
        assert_eq!(t.find("X"), None);
        assert_eq!(t.find("天保"), None);
        assert_eq!(t.find(""), None);
    }

    #[test]
    fn era_boundaries_are_exact() {
        let t = eras();
        let cases = [
            (date(1989, 1, 7), "昭和64年1月7日"),
            (date(1989, 1, 8), "平成元年1月8日"),
            (date(2019, 4, 30), "平成31年4月30日"),
            (date(2019, 5, 1), "令和元年5月1日"),
            (date(1912, 7, 29), "明治45年7月29日"),
            (date(1912, 7, 30), "大正元年7月30日"),
            (date(1926, 12, 24), "大正15年12月24日"),
            (date(1926, 12, 25), "昭和元年12月25日"),
            (date(1868, 1, 25), "明治元年1月25日"),
            (date(2025, 11, 22), "令和7年11月22日"),
        ];
        for (d, text) in cases {
            assert_eq!(t.format_wareki(d), text, "{d}");
        }
        assert_eq!(
            t.era_of(date(1989, 1, 8)).map(|(e, y)| (e.abbrev, y)),
            Some(('H', 1))
        );
    }

    #[test]
    fn before_meiji_falls_back_to_seireki() {
        let t = eras();
        assert_eq!(t.era_of(date(1868, 1, 24)), None);
        assert_eq!(t.format_wareki(date(1868, 1, 1)), "1868年1月1日");
        assert_eq!(format_seireki(date(2001, 2, 3)), "2001年2月3日");
    }

    #[test]
    fn to_gregorian_is_strict_but_keeps_the_traditional_boundary_days() {
        let t = eras();
        assert_eq!(t.to_gregorian("明治", 45, 7, 30), Ok(date(1912, 7, 30)));
        assert_eq!(t.to_gregorian("大正", 15, 12, 25), Ok(date(1926, 12, 25)));
        assert_eq!(t.to_gregorian("昭和", 64, 1, 7), Ok(date(1989, 1, 7)));
        assert_eq!(t.to_gregorian("平成", 1, 1, 8), Ok(date(1989, 1, 8)));
        assert_eq!(t.to_gregorian("H", 31, 4, 30), Ok(date(2019, 4, 30)));
        assert_eq!(t.to_gregorian("r", 1, 5, 1), Ok(date(2019, 5, 1)));
        for (era, y, m, d) in [
            ("昭和", 64, 1, 8),
            ("平成", 31, 5, 1),
            ("平成", 1, 1, 7),
            ("令和", 1, 4, 30),
            ("明治", 45, 7, 31),
            ("大正", 15, 12, 26),
            ("明治", 1, 1, 24),
            ("平成", 40, 1, 1),
        ] {
            assert_eq!(
                code_of(t.to_gregorian(era, y, m, d)),
                "date_outside_era",
                "{era}{y}"
            );
        }
        assert_eq!(code_of(t.to_gregorian("天保", 3, 1, 1)), "unknown_era");
        assert_eq!(code_of(t.to_gregorian("令和", 0, 1, 1)), "invalid_era_year");
        assert_eq!(
            code_of(t.to_gregorian("令和", -3, 1, 1)),
            "invalid_era_year"
        );
        assert_eq!(code_of(t.to_gregorian("令和", 3, 13, 1)), "invalid_month");
        assert_eq!(code_of(t.to_gregorian("令和", 3, 4, 0)), "invalid_day");
        assert_eq!(
            code_of(t.to_gregorian("平成", 3, 2, 29)),
            "not_a_calendar_date"
        );
        assert_eq!(
            code_of(t.to_gregorian("令和", i32::MAX, 1, 1)),
            "year_out_of_range"
        );
    }

    #[test]
    fn a_new_era_can_be_added_by_configuration() {
        let t = eras()
            .with_era(Era::new("新元号", 'N', date(2040, 1, 1)))
            .expect("new era");
        assert_eq!(t.format_wareki(date(2040, 1, 1)), "新元号元年1月1日");
        assert_eq!(t.format_wareki(date(2039, 12, 31)), "令和21年12月31日");
        assert_eq!(t.to_gregorian("N", 2, 3, 4), Ok(date(2041, 3, 4)));
        assert_eq!(
            code_of(t.to_gregorian("令和", 22, 1, 1)),
            "date_outside_era"
        );
        let v = DateValue::parse("新元号元年1月1日", &t, DatePolicy::CalendarOnly);
        assert_eq!(
            v,
            Ok(DateValue::Calendar {
                date: date(2040, 1, 1),
                era: entered("新元号", 1)
            })
        );
        assert_eq!(
            DateValue::parse("n2.1.1", &t, DatePolicy::CalendarOnly).map(|v| v.as_calendar()),
            Ok(Some(date(2041, 1, 1)))
        );
        // The standard table does not know it.
        assert_eq!(code_of(parse_strict("新元号元年1月1日")), "unknown_era");
        assert_eq!(code_of(parse_strict("N1.1.1")), "unknown_era");
    }

    #[test]
    fn a_bad_new_era_is_rejected() {
        let cases = [
            (Era::new("新元号", 'N', date(2019, 5, 1)), "NotAfterLast"),
            (Era::new("新元号", 'N', date(2000, 1, 1)), "NotAfterLast"),
            (Era::new("令和", 'N', date(2040, 1, 1)), "DuplicateName"),
            (Era::new("新元号", 'r', date(2040, 1, 1)), "DuplicateAbbrev"),
            (Era::new("", 'N', date(2040, 1, 1)), "EmptyName"),
            (Era::new("新 元号", 'N', date(2040, 1, 1)), "InvalidName"),
            (Era::new("新2", 'N', date(2040, 1, 1)), "InvalidName"),
            (Era::new("年号", 'N', date(2040, 1, 1)), "InvalidName"),
            (Era::new("推定元", 'N', date(2040, 1, 1)), "InvalidName"),
            (Era::new("新元号", '新', date(2040, 1, 1)), "InvalidAbbrev"),
            (Era::new("新元号", '1', date(2040, 1, 1)), "InvalidAbbrev"),
        ];
        for (era, expected) in cases {
            let err = eras().with_era(era.clone()).expect_err("must be rejected");
            assert_eq!(err.code(), "invalid_era_config");
            match &err {
                DateError::InvalidEraConfig { issue, .. } => {
                    assert!(
                        format!("{issue:?}").starts_with(expected),
                        "{era:?}: {issue:?}"
                    )
                }
                other => panic!("{other:?}"),
            }
            assert!(!err.message_ja().is_empty() && !err.message_en().is_empty());
        }
    }

    #[test]
    fn from_eras_sorts_and_validates() {
        let mut rows = eras().eras().to_vec();
        rows.reverse();
        assert_eq!(EraTable::from_eras(rows.clone()), Ok(eras()));
        rows.push(Era::new("重複", 'Z', date(1989, 1, 8)));
        assert_eq!(code_of(EraTable::from_eras(rows)), "invalid_era_config");
        let empty = EraTable::from_eras(Vec::new()).expect("empty master");
        assert_eq!(empty.format_wareki(date(2001, 2, 3)), "2001年2月3日");
    }

    // --- parsing calendar dates --------------------------------------------

    #[test]
    fn parses_the_accepted_forms() {
        let heisei = |m, d| DateValue::Calendar {
            date: date(1989, m, d),
            era: entered("平成", 1),
        };
        let seireki = |y, m, d| DateValue::calendar(date(y, m, d));
        let cases: Vec<(&str, DateValue)> = vec![
            ("1989-01-07", seireki(1989, 1, 7)),
            ("1989/1/7", seireki(1989, 1, 7)),
            ("1989.1.7", seireki(1989, 1, 7)),
            ("19890107", seireki(1989, 1, 7)),
            ("1989年1月7日", seireki(1989, 1, 7)),
            ("  1989年 1月 7日\u{3000}", seireki(1989, 1, 7)),
            ("１９８９年１月７日", seireki(1989, 1, 7)),
            ("１９８９－０１－０７", seireki(1989, 1, 7)),
            ("二〇〇一年二月三日", seireki(2001, 2, 3)),
            (
                "昭和64年1月7日",
                DateValue::Calendar {
                    date: date(1989, 1, 7),
                    era: entered("昭和", 64),
                },
            ),
            (
                "S64.01.07",
                DateValue::Calendar {
                    date: date(1989, 1, 7),
                    era: entered("昭和", 64),
                },
            ),
            (
                "昭和六十四年一月七日",
                DateValue::Calendar {
                    date: date(1989, 1, 7),
                    era: entered("昭和", 64),
                },
            ),
            ("平成元年1月8日", heisei(1, 8)),
            ("平成1年1月8日", heisei(1, 8)),
            ("H1.1.8", heisei(1, 8)),
            ("h1.1.8", heisei(1, 8)),
            ("H01.01.08", heisei(1, 8)),
            ("Ｈ１．１．８", heisei(1, 8)),
            ("平成 元年 1月 8日", heisei(1, 8)),
            ("平成1/1/8", heisei(1, 8)),
            ("H元.1.8", heisei(1, 8)),
            (
                "R7/11/22",
                DateValue::Calendar {
                    date: date(2025, 11, 22),
                    era: entered("令和", 7),
                },
            ),
            (
                "令和７年１１月２２日",
                DateValue::Calendar {
                    date: date(2025, 11, 22),
                    era: entered("令和", 7),
                },
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_strict(text).as_ref(), Ok(&expected), "{text}");
            assert_eq!(parse_irregular(text).as_ref(), Ok(&expected), "{text}");
        }
    }

    #[test]
    fn traditional_boundary_days_are_kept_as_entered() {
        let t = eras();
        for (text, d) in [
            ("明治45年7月30日", date(1912, 7, 30)),
            ("大正15年12月25日", date(1926, 12, 25)),
            ("大正元年7月30日", date(1912, 7, 30)),
            ("昭和元年12月25日", date(1926, 12, 25)),
        ] {
            let v = parse_strict(text).expect(text);
            assert_eq!(v.as_calendar(), Some(d));
            assert_eq!(v.display_wareki(&t), text);
            assert_eq!(v.display_seireki(&t), format_seireki(d));
            assert!(!v.is_irregular());
            assert_eq!(v.validate(&t), Ok(()));
        }
        // The same day entered in 西暦 shows in the new era.
        assert_eq!(
            DateValue::calendar(date(1912, 7, 30)).display_wareki(&t),
            "大正元年7月30日"
        );
    }

    #[test]
    fn dates_outside_their_era_are_rejected() {
        for text in [
            "昭和64年1月8日",
            "平成31年5月1日",
            "平成元年1月7日",
            "H31.5.1",
            "明治45年7月31日",
            "令和元年4月30日",
        ] {
            assert_eq!(code_of(parse_irregular(text)), "date_outside_era", "{text}");
        }
        assert!(parse_strict("昭和64年1月7日").is_ok());
        assert!(parse_strict("平成31年4月30日").is_ok());
    }

    #[test]
    fn non_calendar_dates_need_allow_irregular() {
        let t = eras();
        let v = parse_irregular("平成3年2月29日").expect("non-calendar");
        assert_eq!(
            v,
            DateValue::NonCalendar {
                year: 1991,
                month: 2,
                day: 29,
                era: entered("平成", 3)
            }
        );
        assert_eq!(v.display_wareki(&t), "平成3年2月29日");
        assert_eq!(v.display_seireki(&t), "1991年2月29日");
        assert_eq!(v.to_string(), "平成3年2月29日");
        assert_eq!(v.sort_key(), Some((1991, 2, 29)));
        assert_eq!(v.as_calendar(), None);
        assert!(v.is_irregular());

        let v = parse_irregular("2021-02-29").expect("non-calendar");
        assert_eq!(
            v,
            DateValue::NonCalendar {
                year: 2021,
                month: 2,
                day: 29,
                era: None
            }
        );
        assert_eq!(v.to_string(), "2021年2月29日");
        assert_eq!(v.display_wareki(&t), "令和3年2月29日");
        assert_eq!(v.display_seireki(&t), "2021年2月29日");
        assert_eq!(v.sort_key(), Some((2021, 2, 29)));
        assert!(parse_irregular("令和3年4月31日").is_ok());

        for text in ["平成3年2月29日", "2021-02-29", "20210229", "令和3年4月31日"] {
            assert_eq!(code_of(parse_strict(text)), "not_a_calendar_date", "{text}");
        }
        // A leap day is a calendar day.
        assert!(parse_strict("2020-02-29").is_ok());
        assert!(parse_strict("平成4年2月29日").is_ok());
    }

    #[test]
    fn invalid_inputs_get_distinct_errors() {
        let cases = [
            ("", "empty_date"),
            ("   \u{3000} ", "empty_date"),
            ("hello", "invalid_date"),
            ("2021", "invalid_date"),
            ("令和3年4月", "invalid_date"),
            ("令和3年4月1日ごろ", "invalid_date"),
            ("1989-01/07", "invalid_date"),
            ("元年1月1日", "invalid_date"),
            ("推定2021-04-01", "invalid_date"),
            ("令和3年4月1日から5月2日までの間", "invalid_date"),
            ("平成十十年1月1日", "invalid_date"),
            ("天保3年1月1日", "unknown_era"),
            ("X1.1.1", "unknown_era"),
            ("令和0年1月1日", "invalid_era_year"),
            ("2021-13-01", "invalid_month"),
            ("2021-00-01", "invalid_month"),
            ("2021-04-32", "invalid_day"),
            ("2021-04-00", "invalid_day"),
            ("0000-01-01", "year_out_of_range"),
            ("10000-01-01", "year_out_of_range"),
            ("99999999999999999999-01-01", "year_out_of_range"),
            ("令和99999年1月1日", "year_out_of_range"),
        ];
        for (text, code) in cases {
            assert_eq!(code_of(parse_irregular(text)), code, "{text:?}");
        }
    }

    #[test]
    fn error_messages_name_the_input() {
        let errors = [
            parse_irregular("hello"),
            parse_irregular("天保3年1月1日"),
            parse_irregular("平成31年5月1日"),
            parse_strict("2021-02-29"),
            parse_strict("令和3年頃"),
            parse_irregular("令和3年4月3日頃から1日頃までの間"),
        ];
        for r in errors {
            let e = r.expect_err("an error");
            assert!(!e.code().is_empty());
            let ja = e.message_ja();
            let en = e.message_en();
            assert!(ja.contains('「'), "{ja}");
            for text in [
                "hello",
                "天保3年1月1日",
                "平成31年5月1日",
                "2021-02-29",
                "令和3年頃",
            ] {
                if ja.contains(text) {
                    assert!(en.contains(text), "{en}");
                }
            }
        }
        let e = parse_irregular("天保3年1月1日").expect_err("unknown era");
        assert_eq!(
            e,
            DateError::UnknownEra {
                input: "天保3年1月1日".to_owned(),
                era: "天保".to_owned()
            }
        );
        assert!(e.message_ja().contains("天保"));
        let long = "x".repeat(1000);
        let e = parse_irregular(&long).expect_err("unparseable");
        assert!(e.message_en().chars().count() < 300);
        assert_eq!(
            DateError::Empty.message_ja(),
            "年月日が入力されていません。"
        );
    }

    // --- 不詳日 (j80) -------------------------------------------------------

    /// The 14 patterns of j80 in order: text, parsed value, sort key.
    fn unknown_patterns() -> Vec<(&'static str, UnknownDate, Option<Ymd>)> {
        use UnknownDate as U;
        let r3 = || entered("令和", 3);
        vec![
            (
                "令和3年頃",
                U::YearCirca {
                    year: 2021,
                    era: r3(),
                },
                Some((2021, 1, 1)),
            ),
            (
                "令和3年4月頃",
                U::MonthCirca {
                    year: 2021,
                    era: r3(),
                    month: 4,
                },
                Some((2021, 4, 1)),
            ),
            (
                "令和3年4月1日頃",
                U::DayCirca {
                    year: 2021,
                    era: r3(),
                    month: 4,
                    day: 1,
                },
                Some((2021, 4, 1)),
            ),
            (
                "推定令和3年4月1日",
                U::EstimatedDay {
                    year: 2021,
                    era: r3(),
                    month: 4,
                    day: 1,
                },
                Some((2021, 4, 1)),
            ),
            (
                "推定令和3年4月",
                U::EstimatedMonth {
                    year: 2021,
                    era: r3(),
                    month: 4,
                },
                Some((2021, 4, 1)),
            ),
            (
                "令和3年春",
                U::Season {
                    year: 2021,
                    era: r3(),
                    season: Season::Spring,
                },
                Some((2021, 3, 1)),
            ),
            (
                "令和3年4月上旬",
                U::PartOfMonth {
                    year: 2021,
                    era: r3(),
                    month: 4,
                    part: MonthPart::Early,
                },
                Some((2021, 4, 1)),
            ),
            (
                "令和3年4月中旬頃",
                U::PartOfMonthCirca {
                    year: 2021,
                    era: r3(),
                    month: 4,
                    part: MonthPart::Middle,
                },
                Some((2021, 4, 11)),
            ),
            ("年月日不詳", U::AllUnknown, None),
            (
                "令和3年 月日不詳",
                U::MonthDayUnknown {
                    year: 2021,
                    era: r3(),
                },
                Some((2021, 1, 1)),
            ),
            (
                "令和3年4月 日不詳",
                U::DayUnknown {
                    year: 2021,
                    era: r3(),
                    month: 4,
                },
                Some((2021, 4, 1)),
            ),
            (
                "令和3年4月1日から5月2日頃までの間",
                U::BetweenDaysCirca {
                    year: 2021,
                    era: r3(),
                    from_month: 4,
                    from_day: 1,
                    to_month: 5,
                    to_day: 2,
                },
                Some((2021, 4, 1)),
            ),
            (
                "令和3年4月推定1日から3日までの間",
                U::EstimatedBetweenDays {
                    year: 2021,
                    era: r3(),
                    month: 4,
                    from_day: 1,
                    to_day: 3,
                },
                Some((2021, 4, 1)),
            ),
            (
                "令和3年4月1日頃から3日頃までの間",
                U::BetweenDaysEachCirca {
                    year: 2021,
                    era: r3(),
                    month: 4,
                    from_day: 1,
                    to_day: 3,
                },
                Some((2021, 4, 1)),
            ),
        ]
    }

    /// Every value variant, for the serde and validation tests.
    fn all_values() -> Vec<DateValue> {
        let mut values = vec![
            DateValue::calendar(date(1989, 1, 7)),
            DateValue::Calendar {
                date: date(1912, 7, 30),
                era: entered("明治", 45),
            },
            DateValue::NonCalendar {
                year: 1991,
                month: 2,
                day: 29,
                era: entered("平成", 3),
            },
            DateValue::NonCalendar {
                year: 2021,
                month: 2,
                day: 29,
                era: None,
            },
        ];
        for (text, u, _) in unknown_patterns() {
            values.push(DateValue::Unknown(u));
            if let Ok(v) = parse_irregular(&text.replace("令和3年", "2001年")) {
                values.push(v);
            }
        }
        values
    }

    #[test]
    fn every_unknown_pattern_parses_and_displays_back() {
        let t = eras();
        let patterns = unknown_patterns();
        assert_eq!(patterns.len(), 14);
        for (text, expected, key) in patterns {
            let v = parse_irregular(text).expect(text);
            assert_eq!(v, DateValue::Unknown(expected.clone()), "{text}");
            assert_eq!(v.display_wareki(&t), text);
            assert_eq!(v.to_string(), text);
            assert_eq!(expected.to_string(), text);
            assert_eq!(v.entered_text(), text);
            assert_eq!(v.sort_key(), key, "{text}");
            assert!(v.is_irregular());
            assert_eq!(v.as_calendar(), None);
            assert_eq!(v.validate(&t), Ok(()));
            assert_eq!(
                code_of(parse_strict(text)),
                "irregular_date_not_allowed",
                "{text}"
            );
            // Full-width digits and spaces are tolerated.
            let wide: String = text
                .chars()
                .map(|c| match c {
                    '0'..='9' => char::from_u32(u32::from(c) + 0xFEE0).unwrap_or(c),
                    ' ' => '\u{3000}',
                    _ => c,
                })
                .collect();
            assert_eq!(parse_irregular(&wide).as_ref(), Ok(&v), "{wide}");

            // The same pattern entered in 西暦 (foreign residents).
            let seireki_text = text.replace("令和3年", "2001年");
            let s = parse_irregular(&seireki_text).expect(&seireki_text);
            assert_eq!(s.to_string(), seireki_text);
            assert_eq!(s.display_seireki(&t), seireki_text);
            assert_eq!(s.display_wareki(&t), text.replace("令和3年", "平成13年"));
            if let DateValue::Unknown(u) = &s {
                assert_eq!(u.era(), None);
                assert_eq!(u.year(), expected.year().map(|_| 2001));
            }
            // 和暦 entry shows with its 西暦 year in display_seireki.
            assert_eq!(v.display_seireki(&t), text.replace("令和3年", "2021年"));
        }
    }

    #[test]
    fn unknown_pattern_variants() {
        let t = eras();
        for (text, part) in [
            ("令和3年4月上旬", MonthPart::Early),
            ("令和3年4月中旬", MonthPart::Middle),
            ("令和3年4月下旬", MonthPart::Late),
        ] {
            let v = parse_irregular(text).expect(text);
            assert_eq!(v.display_wareki(&t), text);
            assert!(
                matches!(v, DateValue::Unknown(UnknownDate::PartOfMonth { part: p, .. }) if p == part)
            );
        }
        for text in ["令和3年4月上旬頃", "令和3年4月下旬頃"] {
            assert_eq!(
                parse_irregular(text).map(|v| v.display_wareki(&t)),
                Ok(text.to_owned())
            );
        }
        for text in ["令和3年春", "令和3年夏", "令和3年秋", "令和3年冬"] {
            assert_eq!(
                parse_irregular(text).map(|v| v.display_wareki(&t)),
                Ok(text.to_owned())
            );
        }
        let late = parse_irregular("令和3年2月下旬").expect("late");
        assert_eq!(late.sort_key(), Some((2021, 2, 21)));
        assert_eq!(late.latest_key(), Some((2021, 2, 28)));
        assert_eq!(
            parse_irregular("令和3年頃").map(|v| v.latest_key()),
            Ok(Some((2021, 12, 31)))
        );
        // 元年, abbreviations and kanji numerals in patterns.
        assert_eq!(
            parse_irregular("令和元年頃").map(|v| v.display_wareki(&t)),
            Ok("令和元年頃".to_owned())
        );
        assert_eq!(
            parse_irregular("R3年4月頃").map(|v| v.display_wareki(&t)),
            Ok("令和3年4月頃".to_owned())
        );
        assert_eq!(
            parse_irregular("令和三年四月頃").map(|v| v.display_wareki(&t)),
            Ok("令和3年4月頃".to_owned())
        );
        // 西暦 years spanning two eras stay in 西暦.
        let v = parse_irregular("2019年頃").expect("2019");
        assert_eq!(v.display_wareki(&t), "2019年頃");
        assert_eq!(
            parse_irregular("2019年5月頃").map(|v| v.display_wareki(&t)),
            Ok("令和元年5月頃".to_owned())
        );
        assert_eq!(
            parse_irregular("1989年1月頃").map(|v| v.display_wareki(&t)),
            Ok("1989年1月頃".to_owned())
        );
        assert_eq!(
            parse_irregular("1850年頃").map(|v| v.display_wareki(&t)),
            Ok("1850年頃".to_owned())
        );
        // The traditional boundary applies to patterns too.
        assert!(parse_irregular("明治45年7月30日頃").is_ok());
        assert!(parse_irregular("昭和64年1月頃").is_ok());
        assert!(parse_irregular("平成31年頃").is_ok());
    }

    #[test]
    fn all_unknown_has_no_sort_key() {
        let v = parse_irregular("年月日不詳").expect("年月日不詳");
        assert_eq!(v, DateValue::Unknown(UnknownDate::AllUnknown));
        assert_eq!(v.sort_key(), None);
        assert_eq!(v.latest_key(), None);
        assert_eq!(v.display_seireki(&eras()), "年月日不詳");
        assert_eq!(parse_irregular(" 年 月 日 不 詳 "), Ok(v));
    }

    #[test]
    fn unknown_pattern_parts_are_validated() {
        let cases = [
            ("令和3年13月頃", "invalid_month"),
            ("令和3年0月 日不詳", "invalid_month"),
            ("令和3年4月32日頃", "invalid_day"),
            ("推定令和3年4月0日", "invalid_day"),
            ("令和3年4月1日から13月2日頃までの間", "invalid_month"),
            ("令和0年頃", "invalid_era_year"),
            ("天保3年頃", "unknown_era"),
            ("平成32年頃", "date_outside_era"),
            ("平成31年5月頃", "date_outside_era"),
            ("昭和64年1月下旬", "date_outside_era"),
            ("令和元年4月 日不詳", "date_outside_era"),
            ("令和3年5月1日から4月2日頃までの間", "invalid_date_range"),
            ("令和3年4月推定3日から1日までの間", "invalid_date_range"),
            ("令和3年4月3日頃から1日頃までの間", "invalid_date_range"),
            ("令和3年頃頃", "invalid_date"),
            ("推定令和3年頃", "invalid_date"),
            ("推定令和3年4月頃", "invalid_date"),
            ("令和3年4月1日頃から3日までの間", "invalid_date"),
            ("令和3年4月推定1日から3日頃までの間", "invalid_date"),
            ("令和3年4月上旬ごろ", "invalid_date"),
            ("令和3年雨", "invalid_date"),
            ("年月日", "invalid_date"),
        ];
        for (text, code) in cases {
            assert_eq!(code_of(parse_irregular(text)), code, "{text}");
        }
    }

    // --- storage -------------------------------------------------------------

    #[test]
    fn serde_json_round_trips_every_variant() {
        let values = all_values();
        assert!(values.len() >= 4 + 14 + 13);
        for v in values {
            let json = serde_json::to_string(&v).expect("serialize");
            let back: DateValue = serde_json::from_str(&json).expect(&json);
            assert_eq!(back, v, "{json}");
        }
        let json = serde_json::to_value(DateValue::calendar(date(1989, 1, 7))).expect("json");
        assert_eq!(
            json,
            serde_json::json!({"kind": "calendar", "date": "1989-01-07", "era": null})
        );
        let json =
            serde_json::to_value(parse_irregular("令和3年4月上旬").expect("ok")).expect("json");
        assert_eq!(
            json,
            serde_json::json!({
                "kind": "unknown", "pattern": "part_of_month", "year": 2021,
                "era": {"name": "令和", "year": 3}, "month": 4, "part": "early"
            })
        );
        let era = Era::new("令和", 'R', date(2019, 5, 1));
        let json = serde_json::to_string(&era).expect("era");
        assert_eq!(serde_json::from_str::<Era>(&json).ok(), Some(era));
    }

    #[test]
    fn validate_catches_inconsistent_stored_values() {
        let t = eras();
        for v in all_values() {
            assert_eq!(v.validate(&t), Ok(()), "{v:?}");
        }
        let bad = [
            DateValue::Calendar {
                date: date(2021, 1, 1),
                era: entered("平成", 3),
            },
            DateValue::NonCalendar {
                year: 2020,
                month: 2,
                day: 29,
                era: None,
            },
            DateValue::NonCalendar {
                year: 2021,
                month: 2,
                day: 40,
                era: None,
            },
            DateValue::Unknown(UnknownDate::YearCirca {
                year: 2021,
                era: entered("天保", 3),
            }),
            DateValue::Unknown(UnknownDate::YearCirca {
                year: 2020,
                era: entered("令和", 3),
            }),
        ];
        for v in bad {
            assert!(v.validate(&t).is_err(), "{v:?}");
        }
    }

    // --- display (j90) -------------------------------------------------------

    #[test]
    fn display_forms() {
        let t = eras();
        let v = parse_strict("2025-11-22").expect("iso");
        assert_eq!(v.to_string(), "2025-11-22");
        assert_eq!(v.display_wareki(&t), "令和7年11月22日");
        assert_eq!(v.display_seireki(&t), "2025年11月22日");
        let v = parse_strict("H1.1.8").expect("abbrev");
        assert_eq!(v.to_string(), "1989-01-08");
        assert_eq!(v.display_wareki(&t), "平成元年1月8日");
        assert_eq!(v.entered_text(), "平成元年1月8日");
        assert_eq!(v.display_seireki(&t), "1989年1月8日");
        assert_eq!(
            DateValue::calendar(date(1850, 3, 4)).display_wareki(&t),
            "1850年3月4日"
        );
    }

    // --- 支援措置 (j440) -------------------------------------------------------

    #[test]
    fn support_measure_period_is_one_year() {
        let t = eras();
        let start = t.to_gregorian("令和", 2, 4, 1).expect("R2.4.1");
        let end = one_year_period_end(start);
        assert_eq!(t.format_wareki(end), "令和3年3月31日");
        assert_eq!(one_year_period_end(date(2020, 2, 29)), date(2021, 2, 28));
        assert_eq!(one_year_period_end(date(2019, 3, 1)), date(2020, 2, 29));
        assert_eq!(one_year_period_end(date(2021, 1, 1)), date(2021, 12, 31));
        assert_eq!(extended_period_end(end), date(2022, 3, 31));
        assert_eq!(one_year_period_end(NaiveDate::MAX), NaiveDate::MAX);
        assert_eq!(extended_period_end(NaiveDate::MAX), NaiveDate::MAX);
    }

    // --- properties ------------------------------------------------------------

    fn first_day() -> NaiveDate {
        date(1873, 1, 1)
    }

    fn day_count() -> i64 {
        (date(2100, 12, 31) - first_day()).num_days()
    }

    /// Characters that reach deep into the grammar.
    const ALPHABET: &[char] = &[
        '0',
        '1',
        '2',
        '3',
        '9',
        '１',
        '元',
        '一',
        '十',
        '百',
        '〇',
        '年',
        '月',
        '日',
        '頃',
        '推',
        '定',
        '春',
        '冬',
        '上',
        '旬',
        '不',
        '詳',
        'か',
        'ら',
        'ま',
        'で',
        'の',
        '間',
        '令',
        '和',
        '平',
        '成',
        '昭',
        'H',
        'r',
        'x',
        '-',
        '/',
        '.',
        ' ',
        '\u{3000}',
        '\u{FF0E}',
        '天',
        '\u{0}',
        '\u{10FFFF}',
    ];

    /// [`DateValue::parse`] without its shortcut for `YYYY-MM-DD`.
    fn parse_general(
        input: &str,
        eras: &EraTable,
        policy: DatePolicy,
    ) -> Result<DateValue, DateError> {
        let trimmed = input.trim();
        let text: Vec<char> = trimmed
            .chars()
            .filter(|c| !c.is_whitespace())
            .map(fold_char)
            .collect();
        parse_folded(
            Cursor {
                chars: text,
                pos: 0,
            },
            trimmed,
            eras,
            policy,
        )
    }

    proptest! {
        #[test]
        fn the_iso_shortcut_reads_as_the_general_reader(y in 0u32..10000, m in 0u32..100, d in 0u32..100, pad in any::<bool>()) {
            let t = eras();
            let text = format!("{}{y:04}-{m:02}-{d:02}", if pad { " " } else { "" });
            for policy in [DatePolicy::CalendarOnly, DatePolicy::AllowIrregular] {
                prop_assert_eq!(DateValue::parse(&text, &t, policy), parse_general(&text, &t, policy), "{}", text);
            }
        }

        #[test]
        fn wareki_round_trip(offset in 0..=day_count()) {
            let t = eras();
            let d = first_day() + chrono::Duration::days(offset);
            let text = t.format_wareki(d);
            let v = DateValue::parse(&text, &t, DatePolicy::CalendarOnly);
            let v = v.map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
            prop_assert!(matches!(&v, DateValue::Calendar { date, era: Some(_) } if *date == d), "{text}: {v:?}");
            prop_assert_eq!(v.as_calendar(), Some(d));
            prop_assert_eq!(v.display_wareki(&t), text);

            let iso = d.format("%Y-%m-%d").to_string();
            prop_assert_eq!(DateValue::parse(&iso, &t, DatePolicy::CalendarOnly), Ok(DateValue::calendar(d)));
            let compact = d.format("%Y%m%d").to_string();
            prop_assert_eq!(DateValue::parse(&compact, &t, DatePolicy::CalendarOnly), Ok(DateValue::calendar(d)));
            let (era, year) = t.era_of(d).ok_or_else(|| TestCaseError::fail("no era"))?;
            let short = format!("{}{}.{}.{}", era.abbrev, year, d.month(), d.day());
            prop_assert_eq!(DateValue::parse(&short, &t, DatePolicy::CalendarOnly).map(|v| v.as_calendar()), Ok(Some(d)));
            prop_assert_eq!(t.to_gregorian(&era.name, year, d.month(), d.day()), Ok(d));
        }

        #[test]
        fn parse_never_panics_on_any_unicode(s in any::<String>()) {
            let t = eras();
            for policy in [DatePolicy::CalendarOnly, DatePolicy::AllowIrregular] {
                if let Ok(v) = DateValue::parse(&s, &t, policy) {
                    prop_assert_eq!(v.validate(&t), Ok(()));
                }
            }
        }

        #[test]
        fn parse_never_panics_on_date_like_text(
            chars in proptest::collection::vec(proptest::sample::select(ALPHABET), 0..24)
        ) {
            let s: String = chars.into_iter().collect();
            let t = eras();
            for policy in [DatePolicy::CalendarOnly, DatePolicy::AllowIrregular] {
                if let Ok(v) = DateValue::parse(&s, &t, policy) {
                    // Whatever was accepted is stable and displayable.
                    prop_assert_eq!(v.validate(&t), Ok(()), "{}", s);
                    let _ = (v.display_wareki(&t), v.display_seireki(&t), v.sort_key());
                }
            }
        }

        #[test]
        fn period_end_is_within_a_year(offset in 0..=day_count()) {
            let start = first_day() + chrono::Duration::days(offset);
            let end = one_year_period_end(start);
            let days = (end - start).num_days();
            prop_assert!((364..=365).contains(&days), "{start} → {end}");
        }
    }
}
