//! Online procedure definitions (issue 11, item 1).
//!
//! A procedure is a TOML file a clerk-administrator can read: a header
//! (identifier, version, titles, the identity a filing needs, retention),
//! pages of fields, conditions that show a page or a field only when an
//! earlier answer says so, and the action an approved filing takes (a
//! registry change with the mapping from fields to the command, a
//! certificate, a handoff to another business system, or a survey whose
//! answers are counted). See `procedures/*.toml` at the repository root for
//! the five shipped with machi.
//!
//! - [`Definition::parse`] reads and validates a definition on publish; what
//!   is wrong comes back as a [`Report`] of [`Issue`]s, each with its line
//!   and the page or field it is about, in Japanese and English.
//! - A published version never changes: the portal keeps the exact text
//!   and refuses a different text under a version it already has; a filing
//!   names the procedure and version it was made on.
//! - [`Definition::check_page`] and [`Definition::check_all`] check a
//!   citizen's answers with the domain's own validators (names, furigana,
//!   dates in 和暦 or 西暦, postal codes), and [`Definition::filing_payload`]
//!   turns checked answers into the canonical form of a filing.
//!
//! Pure: no I/O, depends only on `machi-domain`.

mod answers;
mod model;
mod publish;

pub use answers::{Answers, CheckContext, FieldError, file_error, file_type_of};
pub use model::{
    Action, ActionKind, Condition, Definition, Field, FieldKind, Header, Identity, Lang,
    OptionItem, Page, Text,
};
pub use publish::{Issue, Report};

/// The MIME types an attachment may be declared to accept, each recognised
/// by its leading bytes (a file's name or the browser's word is not trusted).
pub const ATTACHMENT_TYPES: [&str; 3] = ["application/pdf", "image/jpeg", "image/png"];

/// The largest attachment a definition may allow, in bytes (10 MiB).
pub const MAX_ATTACHMENT_BYTES: u64 = 10 * 1024 * 1024;

/// The longest a definition may keep a filing, in days (10 years).
pub const MAX_RETENTION_DAYS: u32 = 3650;

/// The procedures shipped with machi, as (file name, TOML text).
pub const SHIPPED: [(&str, &str); 5] = [
    (
        "tenshutsu.toml",
        include_str!("../procedures/tenshutsu.toml"),
    ),
    ("juminhyo.toml", include_str!("../procedures/juminhyo.toml")),
    ("gakudo.toml", include_str!("../procedures/gakudo.toml")),
    (
        "jidoteate.toml",
        include_str!("../procedures/jidoteate.toml"),
    ),
    (
        "survey_internet.toml",
        include_str!("../procedures/survey_internet.toml"),
    ),
];

/// Earlier versions of shipped procedures, as (file name, TOML text): a
/// published version never changes, so a changed shipped text gets a new
/// version and the old one stays known to the back office (filings made on
/// it are read and approved under it). They are not published anew.
pub const SUPERSEDED: [(&str, &str); 1] = [(
    "superseded/tenshutsu-v1.toml",
    include_str!("../procedures/superseded/tenshutsu-v1.toml"),
)];

/// One counted answer of a survey: the option's label and how many chose it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally {
    pub field: String,
    pub label: Text,
    /// (option label, count), in the definition's order.
    pub counts: Vec<(Text, u64)>,
}

/// Counts a survey's answers (the filing payloads made by
/// [`Definition::filing_payload`]) for the fields its action names.
pub fn aggregate(def: &Definition, payloads: &[serde_json::Value]) -> Vec<Tally> {
    def.action
        .aggregate
        .iter()
        .filter_map(|id| def.field(id))
        .map(|f| {
            let options: Vec<(String, Text)> = if f.kind() == FieldKind::YesNo {
                vec![
                    ("true".into(), Text::new("はい", "はい", "Yes")),
                    ("false".into(), Text::new("いいえ", "いいえ", "No")),
                ]
            } else {
                f.options
                    .iter()
                    .map(|o| (o.value.clone(), o.label.clone()))
                    .collect()
            };
            let counts = options
                .into_iter()
                .map(|(value, label)| {
                    let n = payloads
                        .iter()
                        .filter(|p| match p.get(f.id()) {
                            Some(serde_json::Value::String(s)) => *s == value,
                            Some(serde_json::Value::Bool(b)) => b.to_string() == value,
                            Some(serde_json::Value::Array(a)) => {
                                a.iter().any(|x| x.as_str() == Some(&value))
                            }
                            _ => false,
                        })
                        .count() as u64;
                    (label, n)
                })
                .collect();
            Tally {
                field: f.id().to_owned(),
                label: f.label.clone(),
                counts,
            }
        })
        .collect()
}

/// The canonical bytes of a filing: JSON with object keys in code-point
/// order and no insignificant whitespace. A signature (issue 11, item 3) is
/// made over exactly these bytes.
pub fn canonical_json(v: &serde_json::Value) -> Vec<u8> {
    fn sort(v: &serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(m) => {
                let sorted: std::collections::BTreeMap<&String, serde_json::Value> =
                    m.iter().map(|(k, v)| (k, sort(v))).collect();
                serde_json::Value::Object(sorted.into_iter().map(|(k, v)| (k.clone(), v)).collect())
            }
            serde_json::Value::Array(a) => serde_json::Value::Array(a.iter().map(sort).collect()),
            other => other.clone(),
        }
    }
    serde_json::to_vec(&sort(v)).unwrap_or_default()
}

#[cfg(test)]
mod tests;
