//! A citizen's answers, checked against a definition with the domain's own
//! validators, and turned into the canonical form of a filing.
//!
//! Answers are a flat map from input names to what was typed, so a form can
//! be re-shown exactly as entered (input is never cleared):
//!
//! | kind | inputs |
//! | --- | --- |
//! | text, name, kana, number, phone, email, choice, yes_no | `id` |
//! | choices | `id` (the ticked values, one a line) |
//! | date | `id.era` (`seireki` or an era name), `id.year`, `id.month`, `id.day` |
//! | address | `id.postal`, `id.address` |
//! | people | `id.count`, then each person's fields as `id.N.sub` (N from 0) |
//! | file | `id.name`, `id.type`, `id.size`, `id.data` (base64) |

use std::collections::BTreeMap;

use chrono::{Duration, NaiveDate};
use machi_domain::dates::{DatePolicy, DateValue, EraTable};
use machi_domain::ids::PostalCode;
use machi_domain::names::{Furigana, NameError, PersonName};
use serde_json::{Map, Value, json};

use crate::model::{Condition, Definition, Field, FieldKind, Lang, Page, Text};

/// What was typed, by input name.
pub type Answers = BTreeMap<String, String>;

/// What checking needs besides the answers.
#[derive(Debug, Clone)]
pub struct CheckContext {
    /// The day of filing (date windows count from it).
    pub today: NaiveDate,
    pub eras: EraTable,
}

impl CheckContext {
    pub fn new(today: NaiveDate) -> CheckContext {
        CheckContext {
            today,
            eras: EraTable::standard(),
        }
    }
}

/// One answer that cannot be accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The input to link to and focus (`move_date.year`, `members.1.name`).
    pub input: String,
    /// The field's id (`members.1.name` for a person's field).
    pub field: String,
    pub message: Text,
}

impl FieldError {
    fn new(
        input: impl Into<String>,
        field: impl Into<String>,
        ja: &str,
        easy: &str,
        en: &str,
    ) -> Self {
        FieldError {
            input: input.into(),
            field: field.into(),
            message: Text::new(ja, easy, en),
        }
    }
}

/// Recognises an attachment by its leading bytes.
pub fn file_type_of(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"%PDF-") {
        Some("application/pdf")
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if bytes.starts_with(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]) {
        Some("image/png")
    } else {
        None
    }
}

/// Bytes a standard base64 text decodes to.
fn decoded_len(b64: &str) -> u64 {
    let len = b64.trim_end_matches('=').len() as u64;
    len * 3 / 4
}

fn get<'a>(a: &'a Answers, key: &str) -> &'a str {
    a.get(key).map(|s| s.trim()).unwrap_or("")
}

impl Condition {
    /// Whether the condition holds for these answers.
    pub fn holds(&self, answers: &Answers) -> bool {
        let raw = get(answers, &self.field);
        let values: Vec<&str> = raw
            .lines()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if let Some(v) = &self.equals {
            values.contains(&v.as_str())
        } else if let Some(v) = &self.not_equals {
            !values.contains(&v.as_str())
        } else if let Some(vs) = &self.one_of {
            vs.iter().any(|v| values.contains(&v.as_str()))
        } else {
            true
        }
    }
}

impl Definition {
    /// The pages shown for these answers, in order.
    pub fn visible_pages(&self, answers: &Answers) -> Vec<&Page> {
        self.pages
            .iter()
            .filter(|p| p.show_if.as_ref().is_none_or(|c| c.holds(answers)))
            .collect()
    }

    /// The fields of a page shown for these answers.
    pub fn visible_fields<'a>(&self, page: &'a Page, answers: &Answers) -> Vec<&'a Field> {
        page.fields
            .iter()
            .filter(|f| f.show_if.as_ref().is_none_or(|c| c.holds(answers)))
            .collect()
    }

    /// Checks the answers on one page.
    pub fn check_page(
        &self,
        page: &Page,
        answers: &Answers,
        ctx: &CheckContext,
    ) -> Vec<FieldError> {
        let mut errors = Vec::new();
        for f in self.visible_fields(page, answers) {
            check_field(f, f.id(), answers, ctx, &mut errors);
        }
        errors
    }

    /// Writes each フリガナ answer on the page as it will be filed: what a
    /// citizen typed in hiragana (or half-width katakana) becomes katakana
    /// ([`Furigana::from_input`]), so the form shows and the check page
    /// reads what is sent. An answer that is not valid furigana is left as
    /// typed (input is never cleared; [`Definition::check_page`] says why).
    pub fn tidy_kana(&self, page: &Page, answers: &mut Answers) {
        fn tidy(f: &Field, key: &str, a: &mut Answers) {
            match f.kind() {
                FieldKind::Kana => {
                    if let Some(v) = a.get(key)
                        && let Ok(k) = Furigana::from_input(v.trim())
                        && k.as_str() != v
                    {
                        let k = k.as_str().to_owned();
                        a.insert(key.to_owned(), k);
                    }
                }
                FieldKind::People => {
                    for i in 0..count_of(key, a) {
                        for sub in &f.fields {
                            tidy(sub, &format!("{key}.{i}.{}", sub.id()), a);
                        }
                    }
                }
                _ => {}
            }
        }
        for f in &page.fields {
            tidy(f, f.id(), answers);
        }
    }

    /// Checks every shown page; the errors come with their page id.
    pub fn check_all(&self, answers: &Answers, ctx: &CheckContext) -> Vec<(String, FieldError)> {
        self.visible_pages(answers)
            .into_iter()
            .flat_map(|p| {
                self.check_page(p, answers, ctx)
                    .into_iter()
                    .map(move |e| (p.id().to_owned(), e))
            })
            .collect()
    }

    /// The answers as the filing carries them: only shown fields, each as a
    /// typed value (dates as `YYYY-MM-DD`, addresses with their postal code,
    /// persons as a list, files with type, size and base64 content). Call it
    /// after [`Definition::check_all`] found nothing; a value that does not
    /// check is left out.
    pub fn filing_payload(&self, answers: &Answers, ctx: &CheckContext) -> Value {
        let mut out = Map::new();
        for p in self.visible_pages(answers) {
            for f in self.visible_fields(p, answers) {
                if let Some(v) = value_of(f, f.id(), answers, ctx) {
                    out.insert(f.id().to_owned(), v);
                }
            }
        }
        Value::Object(out)
    }

    /// Checks a filing's answers as it carries them (the payload of
    /// [`Definition::filing_payload`]) against this definition, for a back
    /// office that never trusts the portal: the payload is turned back into
    /// typed answers, checked with [`Definition::check_all`] (the same
    /// validators as the portal's pages, date windows counted from
    /// `ctx.today`, the day of filing), and must then be exactly the payload
    /// those answers make (no hidden or unknown field, no value of the
    /// wrong shape). The first problem comes back.
    pub fn check_filed(&self, payload: &Value, ctx: &CheckContext) -> Result<(), FieldError> {
        let Some(obj) = payload.as_object() else {
            return Err(FieldError::new(
                "",
                "",
                "申請の回答の形式が正しくありません",
                "こたえの かたちが ただしく ありません",
                "the filing's answers are not shaped as a set of answers",
            ));
        };
        let mut answers = Answers::new();
        for (key, v) in obj {
            let Some(f) = self.field(key) else {
                return Err(FieldError::new(
                    key.as_str(),
                    key.as_str(),
                    &format!("この手続にない項目「{key}」への回答があります"),
                    &format!("この てつづきに ない こうもく「{key}」が あります"),
                    &format!("an answer to {key:?}, which the procedure does not ask"),
                ));
            };
            if !answers_of(f, key, v, &mut answers) {
                return Err(FieldError::new(
                    key.as_str(),
                    key.as_str(),
                    &format!("「{}」への回答の形式が正しくありません", f.label.ja),
                    &format!(
                        "「{}」の こたえの かたちが ただしく ありません",
                        f.label.get(Lang::Easy)
                    ),
                    &format!(
                        "the answer to {} is not of the right form",
                        f.label.get(Lang::En)
                    ),
                ));
            }
        }
        if let Some((_, e)) = self.check_all(&answers, ctx).into_iter().next() {
            return Err(e);
        }
        if &self.filing_payload(&answers, ctx) != payload {
            return Err(FieldError::new(
                "",
                "",
                "申請の回答が、この手続の質問（表示条件を含む）と一致しません",
                "こたえが てつづきの しつもんと あいません",
                "the filing's answers do not match the procedure's questions (including which are shown)",
            ));
        }
        Ok(())
    }

    /// The answer to show on the check-your-answers page, in the reader's
    /// language (dates in 和暦, choices by their label).
    pub fn display_answer(
        &self,
        f: &Field,
        key: &str,
        answers: &Answers,
        ctx: &CheckContext,
        lang: Lang,
    ) -> Vec<String> {
        display(f, key, answers, ctx, lang)
    }
}

fn display(f: &Field, key: &str, a: &Answers, ctx: &CheckContext, lang: Lang) -> Vec<String> {
    match f.kind() {
        FieldKind::Date => match date_of(key, a, ctx) {
            Some(Ok(d)) => vec![match lang {
                Lang::En => d.format("%-d %B %Y").to_string(),
                _ => ctx.eras.format_wareki(d),
            }],
            _ => vec![],
        },
        FieldKind::Address => {
            let postal = get(a, &format!("{key}.postal"));
            let addr = get(a, &format!("{key}.address"));
            let postal = postal
                .parse::<PostalCode>()
                .map(|p| format!("〒{}", p.formatted()))
                .unwrap_or_default();
            vec![format!("{postal} {addr}").trim().to_owned()]
        }
        FieldKind::Choice | FieldKind::Choices => get(a, key)
            .lines()
            .filter_map(|v| f.options.iter().find(|o| o.value == v.trim()))
            .map(|o| o.label.get(lang).to_owned())
            .collect(),
        FieldKind::YesNo => match get(a, key) {
            "yes" => vec![lang.t("はい", "はい", "Yes").to_owned()],
            "no" => vec![lang.t("いいえ", "いいえ", "No").to_owned()],
            _ => vec![],
        },
        FieldKind::People => {
            let n = count_of(key, a);
            (0..n)
                .map(|i| {
                    f.fields
                        .iter()
                        .map(|sub| {
                            display(sub, &format!("{key}.{i}.{}", sub.id()), a, ctx, lang).join(" ")
                        })
                        .filter(|s| !s.is_empty())
                        .collect::<Vec<_>>()
                        .join("・")
                })
                .collect()
        }
        FieldKind::File => {
            let name = get(a, &format!("{key}.name"));
            if name.is_empty() {
                vec![]
            } else {
                let size: u64 = get(a, &format!("{key}.size")).parse().unwrap_or(0);
                let kb = size.div_ceil(1024);
                vec![match lang {
                    Lang::En => format!("{name} ({kb} KB)"),
                    _ => format!("{name}（{kb} KB）"),
                }]
            }
        }
        _ => {
            let v = get(a, key);
            if v.is_empty() {
                vec![]
            } else {
                vec![v.to_owned()]
            }
        }
    }
}

/// The number of persons entered for a `people` field (at least one).
pub(crate) fn count_of(key: &str, a: &Answers) -> usize {
    get(a, &format!("{key}.count"))
        .parse::<usize>()
        .unwrap_or(1)
        .clamp(1, 20)
}

fn date_text(key: &str, a: &Answers) -> Option<String> {
    let era = get(a, &format!("{key}.era"));
    let y = get(a, &format!("{key}.year"));
    let m = get(a, &format!("{key}.month"));
    let d = get(a, &format!("{key}.day"));
    if y.is_empty() && m.is_empty() && d.is_empty() {
        return None;
    }
    Some(if era.is_empty() || era == "seireki" {
        format!("{y}年{m}月{d}日")
    } else {
        format!("{era}{y}年{m}月{d}日")
    })
}

fn date_of(
    key: &str,
    a: &Answers,
    ctx: &CheckContext,
) -> Option<Result<NaiveDate, machi_domain::dates::DateError>> {
    let text = date_text(key, a)?;
    Some(
        DateValue::parse(&text, &ctx.eras, DatePolicy::CalendarOnly)
            .map(|v| v.as_calendar().unwrap_or(ctx.today)),
    )
}

fn is_empty(f: &Field, key: &str, a: &Answers) -> bool {
    match f.kind() {
        FieldKind::Date => date_text(key, a).is_none(),
        FieldKind::Address => {
            get(a, &format!("{key}.postal")).is_empty()
                && get(a, &format!("{key}.address")).is_empty()
        }
        FieldKind::File => get(a, &format!("{key}.name")).is_empty(),
        FieldKind::People => false,
        _ => get(a, key).is_empty(),
    }
}

fn check_field(
    f: &Field,
    key: &str,
    a: &Answers,
    ctx: &CheckContext,
    errors: &mut Vec<FieldError>,
) {
    let label = &f.label;
    let first_input = match f.kind() {
        FieldKind::Date => format!("{key}.year"),
        FieldKind::Address => format!("{key}.postal"),
        FieldKind::File => key.to_owned(),
        FieldKind::Choice | FieldKind::Choices | FieldKind::YesNo => format!("{key}.0"),
        _ => key.to_owned(),
    };
    if is_empty(f, key, a) {
        if f.required {
            let (ja, easy, en) = match f.kind() {
                FieldKind::Choice | FieldKind::Choices | FieldKind::YesNo => (
                    format!("{}を選んでください", label.ja),
                    format!("{}を えらんで ください", label.get(Lang::Easy)),
                    format!("Select {}", label.get(Lang::En).to_lowercase()),
                ),
                FieldKind::File => (
                    format!("{}のファイルを選んでください", label.ja),
                    format!("{}の ファイルを えらんで ください", label.get(Lang::Easy)),
                    format!("Choose a file for {}", label.get(Lang::En).to_lowercase()),
                ),
                _ => (
                    format!("{}を入力してください", label.ja),
                    format!("{}を かいて ください", label.get(Lang::Easy)),
                    format!("Enter {}", label.get(Lang::En).to_lowercase()),
                ),
            };
            errors.push(FieldError::new(first_input, key, &ja, &easy, &en));
        }
        return;
    }
    let v = get(a, key);
    macro_rules! err {
        ($input:expr, $ja:expr, $easy:expr, $en:expr $(,)?) => {
            errors.push(FieldError::new(
                String::from($input),
                key,
                &$ja,
                &$easy,
                &$en,
            ))
        };
    }
    match f.kind() {
        FieldKind::Text => {
            let max = f.max_chars.unwrap_or(200) as usize;
            let n = v.chars().count();
            if n > max {
                err!(
                    key,
                    format!(
                        "{}は{max}文字以内で入力してください（今は{n}文字）",
                        label.ja
                    ),
                    format!(
                        "{}は {max}もじ までです（いまは {n}もじ）",
                        label.get(Lang::Easy)
                    ),
                    format!(
                        "{} must be {max} characters or fewer (you entered {n})",
                        label.get(Lang::En)
                    ),
                );
            }
            if v.chars()
                .any(|c| c.is_control() && c != '\n' && c != '\r' && c != '\t')
            {
                err!(
                    key,
                    format!("{}に使えない文字があります", label.ja),
                    format!("{}に つかえない もじが あります", label.get(Lang::Easy)),
                    format!(
                        "{} contains a character that cannot be used",
                        label.get(Lang::En)
                    ),
                );
            }
        }
        // The citizen's own words for the domain's refusals: never the
        // input echoed back, English without Japanese text.
        FieldKind::Name => match PersonName::new(v) {
            Err(NameError::NameTooLong { max, .. }) => err!(
                key,
                format!("{}は{max}文字以内で入力してください", label.ja),
                format!("{}は {max}もじ までです", label.get(Lang::Easy)),
                format!("{} must be {max} characters or fewer", label.get(Lang::En)),
            ),
            Err(_) => err!(
                key,
                format!("{}に使えない文字があります", label.ja),
                format!("{}に つかえない もじが あります", label.get(Lang::Easy)),
                format!(
                    "{} contains a character that cannot be used",
                    label.get(Lang::En)
                ),
            ),
            Ok(_) => {}
        },
        // フリガナ (j180): hiragana and half-width katakana are turned into
        // katakana ([`Furigana::from_input`]); Latin letters and other
        // characters are refused.
        FieldKind::Kana => match Furigana::from_input(v) {
            Err(NameError::FuriganaTooLong { max, .. }) => err!(
                key,
                format!("{}は{max}文字以内で入力してください", label.ja),
                format!("{}は {max}もじ までです", label.get(Lang::Easy)),
                format!("{} must be {max} characters or fewer", label.get(Lang::En)),
            ),
            Err(NameError::FuriganaLatin { .. }) => err!(
                key,
                format!(
                    "{}はカタカナで入力してください。ローマ字（アルファベット）は使えません",
                    label.ja
                ),
                format!(
                    "{}は カタカナで かいて ください。ローマじは つかえません",
                    label.get(Lang::Easy)
                ),
                format!(
                    "{} can only contain katakana characters, not Latin letters",
                    label.get(Lang::En)
                ),
            ),
            Err(_) => err!(
                key,
                format!(
                    "{}はカタカナで入力してください。数字や記号は使えません",
                    label.ja
                ),
                format!(
                    "{}は カタカナで かいて ください（れい：カクウ タロウ）",
                    label.get(Lang::Easy)
                ),
                format!(
                    "{} can only contain katakana characters, with a space between family name and given name",
                    label.get(Lang::En)
                ),
            ),
            Ok(_) => {}
        },
        FieldKind::Date => match date_of(key, a, ctx) {
            Some(Ok(d)) => {
                let earliest = f.not_before_days.map(|n| ctx.today + Duration::days(n));
                let latest = f.not_after_days.map(|n| ctx.today + Duration::days(n));
                let w = |d: NaiveDate| ctx.eras.format_wareki(d);
                let iso = |d: NaiveDate| d.format("%-d %B %Y").to_string();
                match (earliest, latest) {
                    (Some(e), Some(l)) if d < e || d > l => err!(
                        format!("{key}.year"),
                        format!("{}は{}から{}までの日にしてください", label.ja, w(e), w(l)),
                        format!(
                            "{}は {}から {}までの 日に して ください",
                            label.get(Lang::Easy),
                            w(e),
                            w(l)
                        ),
                        format!(
                            "{} must be between {} and {}",
                            label.get(Lang::En),
                            iso(e),
                            iso(l)
                        ),
                    ),
                    (Some(e), None) if d < e => err!(
                        format!("{key}.year"),
                        format!("{}は{}以降の日にしてください", label.ja, w(e)),
                        format!(
                            "{}は {}より あとの 日に して ください",
                            label.get(Lang::Easy),
                            w(e)
                        ),
                        format!("{} must be on or after {}", label.get(Lang::En), iso(e)),
                    ),
                    (None, Some(l)) if d > l => err!(
                        format!("{key}.year"),
                        format!("{}は{}以前の日にしてください", label.ja, w(l)),
                        format!(
                            "{}は {}より まえの 日に して ください",
                            label.get(Lang::Easy),
                            w(l)
                        ),
                        format!("{} must be on or before {}", label.get(Lang::En), iso(l)),
                    ),
                    _ => {}
                }
                // Bounded by another date of the filing (e.g. the moving
                // date). That date's own problems are its field's to report.
                if let Some(other) = &f.relative_to
                    && let Some(Ok(base)) = date_of(other.get_ref(), a, ctx)
                {
                    let earliest = f.not_before_relative_days.map(|n| base + Duration::days(n));
                    let latest = f.not_after_relative_days.map(|n| base + Duration::days(n));
                    let o = f.relative_label.clone().unwrap_or_else(|| Text {
                        ja: other.get_ref().clone(),
                        easy: None,
                        en: None,
                    });
                    let (oja, oeasy, oen) = (
                        o.ja.clone(),
                        o.get(Lang::Easy).to_owned(),
                        o.get(Lang::En).to_owned(),
                    );
                    match (earliest, latest) {
                        (Some(e), Some(l)) if d < e || d > l => err!(
                            format!("{key}.year"),
                            format!(
                                "{}は、{}（{}）をもとに{}から{}までの日にしてください",
                                label.ja,
                                oja,
                                w(base),
                                w(e),
                                w(l)
                            ),
                            format!(
                                "{}は {}（{}）から かぞえて {}から {}までの 日に して ください",
                                label.get(Lang::Easy),
                                oeasy,
                                w(base),
                                w(e),
                                w(l)
                            ),
                            format!(
                                "{} must be between {} and {} (counted from {}, {})",
                                label.get(Lang::En),
                                iso(e),
                                iso(l),
                                oen.to_lowercase(),
                                iso(base)
                            ),
                        ),
                        (Some(e), None) if d < e => err!(
                            format!("{key}.year"),
                            format!(
                                "{}は、{}（{}）をもとに{}以降の日にしてください",
                                label.ja,
                                oja,
                                w(base),
                                w(e)
                            ),
                            format!(
                                "{}は {}（{}）から かぞえて {}より あとの 日に して ください",
                                label.get(Lang::Easy),
                                oeasy,
                                w(base),
                                w(e)
                            ),
                            format!(
                                "{} must be on or after {} (counted from {}, {})",
                                label.get(Lang::En),
                                iso(e),
                                oen.to_lowercase(),
                                iso(base)
                            ),
                        ),
                        (None, Some(l)) if d > l => err!(
                            format!("{key}.year"),
                            format!(
                                "{}は、{}（{}）をもとに{}以前の日にしてください",
                                label.ja,
                                oja,
                                w(base),
                                w(l)
                            ),
                            format!(
                                "{}は {}（{}）から かぞえて {}より まえの 日に して ください",
                                label.get(Lang::Easy),
                                oeasy,
                                w(base),
                                w(l)
                            ),
                            format!(
                                "{} must be on or before {} (counted from {}, {})",
                                label.get(Lang::En),
                                iso(l),
                                oen.to_lowercase(),
                                iso(base)
                            ),
                        ),
                        _ => {}
                    }
                }
            }
            Some(Err(_)) => err!(
                format!("{key}.year"),
                format!(
                    "{}は実在する日付を入力してください（例：令和8年4月1日）",
                    label.ja
                ),
                format!(
                    "{}は ただしい 日を かいて ください（れい：令和8年4月1日）",
                    label.get(Lang::Easy)
                ),
                format!(
                    "{} must be a real date, for example 1 April 2026",
                    label.get(Lang::En)
                ),
            ),
            None => {}
        },
        FieldKind::Address => {
            let pk = format!("{key}.postal");
            if get(a, &pk).parse::<PostalCode>().is_err() {
                err!(
                    pk,
                    format!(
                        "{}の郵便番号は7桁の数字で入力してください（例：183-0056）",
                        label.ja
                    ),
                    format!(
                        "{}の ゆうびん ばんごうは すうじ 7けたで かいて ください（れい：183-0056）",
                        label.get(Lang::Easy)
                    ),
                    format!(
                        "Enter the postcode of the {} as 7 digits, like 183-0056",
                        label.get(Lang::En).to_lowercase()
                    ),
                );
            }
            let ak = format!("{key}.address");
            let addr = get(a, &ak);
            let n = addr.chars().count();
            if n == 0 {
                err!(
                    ak,
                    format!("{}を、都道府県から入力してください", label.ja),
                    format!("{}を けんから かいて ください", label.get(Lang::Easy)),
                    format!(
                        "Enter the {}, starting with the prefecture",
                        label.get(Lang::En).to_lowercase()
                    ),
                );
            } else if n > 200 || addr.chars().any(char::is_control) {
                err!(
                    ak,
                    format!(
                        "{}は200文字以内で、改行などを含めずに入力してください",
                        label.ja
                    ),
                    format!("{}は 200もじ までです", label.get(Lang::Easy)),
                    format!(
                        "{} must be one line of at most 200 characters",
                        label.get(Lang::En)
                    ),
                );
            }
        }
        FieldKind::Choice | FieldKind::YesNo => {
            let ok = if f.kind() == FieldKind::YesNo {
                v == "yes" || v == "no"
            } else {
                f.options.iter().any(|o| o.value == v)
            };
            if !ok {
                err!(
                    format!("{key}.0"),
                    format!("{}の選択肢から選んでください", label.ja),
                    format!("{}の なかから えらんで ください", label.get(Lang::Easy)),
                    format!(
                        "Select one of the options for {}",
                        label.get(Lang::En).to_lowercase()
                    ),
                );
            }
        }
        FieldKind::Choices => {
            if v.lines()
                .any(|x| !f.options.iter().any(|o| o.value == x.trim()))
            {
                err!(
                    format!("{key}.0"),
                    format!("{}の選択肢から選んでください", label.ja),
                    format!("{}の なかから えらんで ください", label.get(Lang::Easy)),
                    format!(
                        "Select from the options for {}",
                        label.get(Lang::En).to_lowercase()
                    ),
                );
            }
        }
        FieldKind::Number => {
            let folded: String = v.chars().map(fold_digit).collect();
            match folded.parse::<i64>() {
                Ok(n) if f.min.is_none_or(|m| n >= m) && f.max.is_none_or(|m| n <= m) => {}
                _ => {
                    let range = match (f.min, f.max) {
                        (Some(a), Some(b)) => format!("{a}〜{b}"),
                        (Some(a), None) => format!("{a}〜"),
                        (None, Some(b)) => format!("〜{b}"),
                        _ => String::new(),
                    };
                    let range_en = match (f.min, f.max) {
                        (Some(a), Some(b)) => format!(" from {a} to {b}"),
                        (Some(a), None) => format!(" of {a} or more"),
                        (None, Some(b)) => format!(" of {b} or less"),
                        _ => String::new(),
                    };
                    err!(
                        key,
                        format!("{}は数字（{range}）で入力してください", label.ja),
                        format!(
                            "{}は すうじ（{range}）で かいて ください",
                            label.get(Lang::Easy)
                        ),
                        format!("{} must be a number{range_en}", label.get(Lang::En)),
                    );
                }
            }
        }
        FieldKind::Phone => {
            let digits: String = v
                .chars()
                .map(fold_digit)
                .filter(char::is_ascii_digit)
                .collect();
            let only = v.chars().map(fold_digit).all(|c| {
                c.is_ascii_digit() || matches!(c, '-' | '－' | 'ー' | ' ' | '(' | ')' | '（' | '）')
            });
            if !only || !(10..=11).contains(&digits.len()) {
                err!(
                    key,
                    format!(
                        "{}は10桁か11桁の数字で入力してください（例：042-000-0000）",
                        label.ja
                    ),
                    format!(
                        "{}は すうじ 10けたか 11けたで かいて ください",
                        label.get(Lang::Easy)
                    ),
                    format!(
                        "{} must have 10 or 11 digits, like 042-000-0000",
                        label.get(Lang::En)
                    ),
                );
            }
        }
        FieldKind::Email => {
            let ok = v.len() <= 254
                && v.split_once('@').is_some_and(|(l, d)| {
                    !l.is_empty() && d.contains('.') && !d.starts_with('.') && !d.ends_with('.')
                })
                && !v.chars().any(|c| c.is_whitespace() || c.is_control());
            if !ok {
                err!(
                    key,
                    format!("{}は name@example.jp の形で入力してください", label.ja),
                    format!(
                        "{}は name@example.jp の ように かいて ください",
                        label.get(Lang::Easy)
                    ),
                    format!(
                        "Enter {} in the form name@example.jp",
                        label.get(Lang::En).to_lowercase()
                    ),
                );
            }
        }
        FieldKind::People => {
            let raw = get(a, &format!("{key}.count"));
            let n = count_of(key, a);
            let max = f.max_items.unwrap_or(20) as usize;
            if raw.parse::<usize>().is_ok_and(|c| c > max) || n > max {
                errors.push(FieldError::new(
                    format!("{key}.0.{}", f.fields.first().map(|s| s.id()).unwrap_or("")),
                    key,
                    &format!("{}は{max}人までです", label.ja),
                    &format!("{}は {max}にん までです", label.get(Lang::Easy)),
                    &format!("{}: at most {max} persons", label.get(Lang::En)),
                ));
            }
            for i in 0..n.min(max) {
                for sub in &f.fields {
                    let before = errors.len();
                    check_field(sub, &format!("{key}.{i}.{}", sub.id()), a, ctx, errors);
                    for e in &mut errors[before..] {
                        let who = |l: Lang| match l {
                            Lang::En => format!("Person {}: ", i + 1),
                            _ => format!("{}人目：", i + 1),
                        };
                        e.message.ja = format!("{}{}", who(Lang::Ja), e.message.ja);
                        e.message.easy = e
                            .message
                            .easy
                            .as_ref()
                            .map(|s| format!("{}{s}", who(Lang::Easy)));
                        e.message.en = e
                            .message
                            .en
                            .as_ref()
                            .map(|s| format!("{}{s}", who(Lang::En)));
                    }
                }
            }
        }
        FieldKind::File => {
            let ty = get(a, &format!("{key}.type"));
            let size = decoded_len(get(a, &format!("{key}.data")));
            errors.extend(file_error(f, key, ty, size));
        }
    }
}

/// Why an attachment cannot be taken for a `file` field (its type, by
/// what its bytes are, or its size), or None. The portal asks before it
/// keeps an upload, so a refused file never replaces the one kept.
pub fn file_error(f: &Field, key: &str, ty: &str, size: u64) -> Option<FieldError> {
    let label = &f.label;
    let max = f.max_bytes.unwrap_or(0).max(0) as u64;
    if !f.accept.iter().any(|t| t == ty) {
        let kinds: Vec<&str> = f
            .accept
            .iter()
            .map(|t| match t.as_str() {
                "application/pdf" => "PDF",
                "image/jpeg" => "JPEG",
                "image/png" => "PNG",
                _ => "?",
            })
            .collect();
        let kinds_en = kinds.join(", ");
        let kinds = kinds.join("・");
        Some(FieldError::new(
            key,
            key,
            &format!("{}は{kinds}のファイルにしてください", label.ja),
            &format!(
                "{}は {kinds}の ファイルに して ください",
                label.get(Lang::Easy)
            ),
            &format!("{} must be a {kinds_en} file", label.get(Lang::En)),
        ))
    } else if size > max {
        let mb = |b: u64| format!("{:.1}", b as f64 / 1_048_576.0);
        Some(FieldError::new(
            key,
            key,
            &format!(
                "{}は{}MB以下にしてください（今は{}MB）",
                label.ja,
                mb(max),
                mb(size)
            ),
            &format!("{}は {}MB までです", label.get(Lang::Easy), mb(max)),
            &format!(
                "{} must be {} MB or smaller (it is {} MB)",
                label.get(Lang::En),
                mb(max),
                mb(size)
            ),
        ))
    } else {
        None
    }
}

/// Puts one carried answer back as the inputs that made it (the inverse
/// of [`value_of`]); false when its JSON shape is not the field's.
fn answers_of(f: &Field, key: &str, v: &Value, out: &mut Answers) -> bool {
    match f.kind() {
        FieldKind::Date => {
            let Some(d) = v
                .as_str()
                .and_then(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
            else {
                return false;
            };
            use chrono::Datelike;
            put(out, format!("{key}.era"), "seireki".into());
            put(out, format!("{key}.year"), d.year().to_string());
            put(out, format!("{key}.month"), d.month().to_string());
            put(out, format!("{key}.day"), d.day().to_string());
        }
        FieldKind::Address => {
            let (Some(p), Some(a)) = (v["postal_code"].as_str(), v["address"].as_str()) else {
                return false;
            };
            put(out, format!("{key}.postal"), p.to_owned());
            put(out, format!("{key}.address"), a.to_owned());
        }
        FieldKind::Choices => {
            let Some(items) = v.as_array() else {
                return false;
            };
            let mut lines = Vec::with_capacity(items.len());
            for i in items {
                match i.as_str() {
                    Some(s) if !s.contains('\n') => lines.push(s),
                    _ => return false,
                }
            }
            put(out, key.to_owned(), lines.join("\n"));
        }
        FieldKind::YesNo => match v.as_bool() {
            Some(b) => put(out, key.to_owned(), if b { "yes" } else { "no" }.into()),
            None => return false,
        },
        FieldKind::Number => match v.as_i64() {
            Some(n) => put(out, key.to_owned(), n.to_string()),
            None => return false,
        },
        FieldKind::People => {
            let Some(people) = v.as_array() else {
                return false;
            };
            put(out, format!("{key}.count"), people.len().to_string());
            for (i, person) in people.iter().enumerate() {
                let Some(m) = person.as_object() else {
                    return false;
                };
                for (sub_id, sv) in m {
                    let Some(sub) = f.fields.iter().find(|s| s.id() == sub_id) else {
                        return false;
                    };
                    if !answers_of(sub, &format!("{key}.{i}.{sub_id}"), sv, out) {
                        return false;
                    }
                }
            }
        }
        FieldKind::File => {
            let (Some(n), Some(t), Some(d)) =
                (v["name"].as_str(), v["type"].as_str(), v["data"].as_str())
            else {
                return false;
            };
            put(out, format!("{key}.name"), n.to_owned());
            put(out, format!("{key}.type"), t.to_owned());
            put(out, format!("{key}.data"), d.to_owned());
            put(out, format!("{key}.size"), decoded_len(d).to_string());
        }
        _ => match v.as_str() {
            Some(s) => put(out, key.to_owned(), s.to_owned()),
            None => return false,
        },
    }
    true
}

fn put(out: &mut Answers, k: String, v: String) {
    out.insert(k, v);
}

fn fold_digit(c: char) -> char {
    match c {
        '０'..='９' => char::from_u32(c as u32 - '０' as u32 + '0' as u32).unwrap_or(c),
        _ => c,
    }
}

fn value_of(f: &Field, key: &str, a: &Answers, ctx: &CheckContext) -> Option<Value> {
    if is_empty(f, key, a) && f.kind() != FieldKind::People {
        return None;
    }
    let v = get(a, key);
    Some(match f.kind() {
        FieldKind::Date => json!(date_of(key, a, ctx)?.ok()?.format("%Y-%m-%d").to_string()),
        FieldKind::Address => {
            let postal: PostalCode = get(a, &format!("{key}.postal")).parse().ok()?;
            json!({"postal_code": postal.as_str(), "address": get(a, &format!("{key}.address"))})
        }
        FieldKind::Choices => json!(
            v.lines()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
        ),
        FieldKind::YesNo => json!(v == "yes"),
        FieldKind::Number => json!(
            v.chars()
                .map(fold_digit)
                .collect::<String>()
                .parse::<i64>()
                .ok()?
        ),
        FieldKind::Name => json!(PersonName::new(v).ok()?.as_str()),
        FieldKind::Kana => json!(Furigana::from_input(v).ok()?.as_str()),
        FieldKind::People => {
            let n = count_of(key, a).min(f.max_items.unwrap_or(20) as usize);
            let people: Vec<Value> = (0..n)
                .map(|i| {
                    let mut m = Map::new();
                    for sub in &f.fields {
                        if let Some(v) = value_of(sub, &format!("{key}.{i}.{}", sub.id()), a, ctx) {
                            m.insert(sub.id().to_owned(), v);
                        }
                    }
                    Value::Object(m)
                })
                .collect();
            json!(people)
        }
        FieldKind::File => json!({
            "name": get(a, &format!("{key}.name")),
            "type": get(a, &format!("{key}.type")),
            "size": decoded_len(get(a, &format!("{key}.data"))),
            "data": get(a, &format!("{key}.data")),
        }),
        _ => json!(v),
    })
}
