//! The shape of a definition, as read from TOML.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use toml::Spanned;

/// The language a page is shown in: 日本語, やさしい日本語 or English.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lang {
    #[default]
    Ja,
    Easy,
    En,
}

impl Lang {
    /// From a query or cookie value (`ja`, `easy`, `en`); anything else is 日本語.
    pub fn from_code(code: &str) -> Lang {
        match code {
            "en" => Lang::En,
            "easy" => Lang::Easy,
            _ => Lang::Ja,
        }
    }
    pub fn code(self) -> &'static str {
        match self {
            Lang::Ja => "ja",
            Lang::Easy => "easy",
            Lang::En => "en",
        }
    }
    /// The HTML `lang` attribute (やさしい日本語 is Japanese).
    pub fn html_lang(self) -> &'static str {
        match self {
            Lang::En => "en",
            _ => "ja",
        }
    }
    /// Picks one of three texts.
    pub fn t<'a>(self, ja: &'a str, easy: &'a str, en: &'a str) -> &'a str {
        match self {
            Lang::Ja => ja,
            Lang::Easy => easy,
            Lang::En => en,
        }
    }
}

/// A text in Japanese, optionally in やさしい日本語 and English (each falls
/// back to the Japanese).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Text {
    pub ja: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub easy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub en: Option<String>,
}

impl Text {
    pub fn new(ja: &str, easy: &str, en: &str) -> Text {
        Text {
            ja: ja.to_owned(),
            easy: Some(easy.to_owned()),
            en: Some(en.to_owned()),
        }
    }
    pub fn get(&self, lang: Lang) -> &str {
        match lang {
            Lang::Ja => &self.ja,
            Lang::Easy => self.easy.as_deref().unwrap_or(&self.ja),
            Lang::En => self.en.as_deref().unwrap_or(&self.ja),
        }
    }
}

/// A whole definition: one TOML file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Definition {
    pub procedure: Header,
    #[serde(default, rename = "page")]
    pub pages: Vec<Page>,
    pub action: Action,
}

/// `[procedure]`: what the procedure is.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// Lower-case letters, digits and `_`, e.g. `tenshutsu`.
    pub id: Spanned<String>,
    /// From 1; a published version never changes.
    pub version: Spanned<i64>,
    pub title: Text,
    #[serde(default)]
    pub summary: Option<Text>,
    /// Who may file: `none` (anyone) or `signature` (a JPKI-style signature).
    pub identity: Spanned<String>,
    /// Days a filing is kept after it is closed.
    pub retention_days: Spanned<i64>,
    /// The department that handles it (shown to the citizen).
    #[serde(default)]
    pub department: Option<Text>,
}

/// `[[page]]`: one question or a small group.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Page {
    pub id: Spanned<String>,
    pub title: Text,
    #[serde(default)]
    pub hint: Option<Text>,
    #[serde(default)]
    pub show_if: Option<Condition>,
    #[serde(default, rename = "field")]
    pub fields: Vec<Field>,
}

/// `[[page.field]]`: one answer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Field {
    pub id: Spanned<String>,
    pub kind: Spanned<String>,
    pub label: Text,
    #[serde(default)]
    pub hint: Option<Text>,
    #[serde(default = "yes")]
    pub required: bool,
    #[serde(default)]
    pub show_if: Option<Condition>,
    /// `text`: the most characters accepted.
    #[serde(default)]
    pub max_chars: Option<i64>,
    /// `choice` and `choices`: the options.
    #[serde(default, rename = "option")]
    pub options: Vec<OptionItem>,
    /// `date`: the earliest and latest day accepted, in days from the day
    /// of filing (e.g. -10 and 30).
    #[serde(default)]
    pub not_before_days: Option<i64>,
    #[serde(default)]
    pub not_after_days: Option<i64>,
    /// `date`: another date field of the procedure, asked before this one
    /// and always shown, that this date is bounded by: at the earliest
    /// `not_before_relative_days` and at the latest
    /// `not_after_relative_days` days after that field's date (e.g. a
    /// 来庁予定日 from the moving date to 14 days after it).
    #[serde(default)]
    pub relative_to: Option<Spanned<String>>,
    #[serde(default)]
    pub not_before_relative_days: Option<i64>,
    #[serde(default)]
    pub not_after_relative_days: Option<i64>,
    /// The label of the `relative_to` field, set when the definition is
    /// read (for the messages).
    #[serde(skip)]
    pub relative_label: Option<Text>,
    /// `number`: bounds.
    #[serde(default)]
    pub min: Option<i64>,
    #[serde(default)]
    pub max: Option<i64>,
    /// `file`: accepted MIME types and the largest size in bytes.
    #[serde(default)]
    pub accept: Vec<String>,
    #[serde(default)]
    pub max_bytes: Option<i64>,
    /// `people` ("add another person"): the fields asked for each person and
    /// the most persons.
    #[serde(default, rename = "field")]
    pub fields: Vec<Field>,
    #[serde(default)]
    pub max_items: Option<i64>,
}

fn yes() -> bool {
    true
}

/// One option of a `choice` or `choices` field.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptionItem {
    pub value: String,
    pub label: Text,
}

/// `show_if = { field = "...", equals = "..." }` (or `not_equals`, or
/// `in = [...]`). A `yes_no` field's values are `yes` and `no`; a `choices`
/// field matches when any ticked value matches.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    pub field: String,
    #[serde(default)]
    pub equals: Option<String>,
    #[serde(default)]
    pub not_equals: Option<String>,
    #[serde(default, rename = "in")]
    pub one_of: Option<Vec<String>>,
}

/// `[action]`: what an approved filing does.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Action {
    pub kind: Spanned<String>,
    /// `registry_change`: the change command (e.g. `move_out`).
    #[serde(default)]
    pub change: Option<String>,
    /// `certificate`: which certificate (e.g. `juminhyo_copy`).
    #[serde(default)]
    pub certificate: Option<String>,
    /// `handoff`: the business system and the event type it receives.
    #[serde(default)]
    pub system: Option<String>,
    #[serde(default)]
    pub event: Option<String>,
    /// `survey`: the fields whose answers are counted and published.
    #[serde(default)]
    pub aggregate: Vec<String>,
    /// Parameter of the command or certificate → field id.
    #[serde(default)]
    pub mapping: BTreeMap<String, String>,
}

/// The kinds of field, parsed from `kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    Text,
    Name,
    Kana,
    Date,
    Address,
    Choice,
    Choices,
    YesNo,
    Number,
    Phone,
    Email,
    People,
    File,
}

impl FieldKind {
    pub const ALL: [(&'static str, FieldKind); 13] = [
        ("text", FieldKind::Text),
        ("name", FieldKind::Name),
        ("kana", FieldKind::Kana),
        ("date", FieldKind::Date),
        ("address", FieldKind::Address),
        ("choice", FieldKind::Choice),
        ("choices", FieldKind::Choices),
        ("yes_no", FieldKind::YesNo),
        ("number", FieldKind::Number),
        ("phone", FieldKind::Phone),
        ("email", FieldKind::Email),
        ("people", FieldKind::People),
        ("file", FieldKind::File),
    ];
    pub fn parse(s: &str) -> Option<FieldKind> {
        Self::ALL.iter().find(|(n, _)| *n == s).map(|(_, k)| *k)
    }
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, k)| *k == self)
            .map(|(n, _)| *n)
            .unwrap_or("text")
    }
    /// Fields a condition may look at.
    pub fn is_selectable(self) -> bool {
        matches!(
            self,
            FieldKind::Choice | FieldKind::Choices | FieldKind::YesNo
        )
    }
}

/// The identity a filing needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {
    None,
    Signature,
}

/// What an approved filing does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionKind {
    RegistryChange,
    Certificate,
    Handoff,
    Survey,
}

impl Field {
    /// The kind (checked on publish; an unknown kind reads as text here).
    pub fn kind(&self) -> FieldKind {
        FieldKind::parse(self.kind.get_ref()).unwrap_or(FieldKind::Text)
    }
    pub fn id(&self) -> &str {
        self.id.get_ref()
    }
}

impl Page {
    pub fn id(&self) -> &str {
        self.id.get_ref()
    }
}

impl Definition {
    pub fn id(&self) -> &str {
        self.procedure.id.get_ref()
    }
    pub fn version(&self) -> u32 {
        u32::try_from(*self.procedure.version.get_ref()).unwrap_or(0)
    }
    pub fn identity(&self) -> Identity {
        if self.procedure.identity.get_ref() == "signature" {
            Identity::Signature
        } else {
            Identity::None
        }
    }
    pub fn retention_days(&self) -> u32 {
        u32::try_from(*self.procedure.retention_days.get_ref()).unwrap_or(0)
    }
    pub fn action_kind(&self) -> ActionKind {
        match self.action.kind.get_ref().as_str() {
            "registry_change" => ActionKind::RegistryChange,
            "certificate" => ActionKind::Certificate,
            "handoff" => ActionKind::Handoff,
            _ => ActionKind::Survey,
        }
    }
    pub fn page(&self, id: &str) -> Option<&Page> {
        self.pages.iter().find(|p| p.id() == id)
    }
    /// Every top-level field with its page.
    pub fn fields(&self) -> impl Iterator<Item = (&Page, &Field)> {
        self.pages
            .iter()
            .flat_map(|p| p.fields.iter().map(move |f| (p, f)))
    }
    pub fn field(&self, id: &str) -> Option<&Field> {
        self.fields().map(|(_, f)| f).find(|f| f.id() == id)
    }
}
