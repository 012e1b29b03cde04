//! Validation on publish: every problem in a definition, with its line and
//! the page or field it is about, in Japanese and English.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::ops::Range;

use crate::model::{Condition, Definition, Field, FieldKind, Text};
use crate::{ATTACHMENT_TYPES, MAX_ATTACHMENT_BYTES, MAX_RETENTION_DAYS};

/// One problem in a definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// 1-based line in the TOML text, when known.
    pub line: Option<usize>,
    /// Where: `procedure`, `page address`, `field members.birth_date`, `action`.
    pub place: String,
    pub ja: String,
    pub en: String,
}

/// Everything wrong with a definition; publishing is refused while it has
/// any issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub issues: Vec<Issue>,
}

impl Report {
    /// The report in Japanese, one issue a line.
    pub fn message_ja(&self) -> String {
        self.issues
            .iter()
            .map(|i| match i.line {
                Some(l) => format!("{}行目（{}）：{}", l, i.place, i.ja),
                None => format!("（{}）：{}", i.place, i.ja),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
    /// The report in English, one issue a line.
    pub fn message_en(&self) -> String {
        self.issues
            .iter()
            .map(|i| match i.line {
                Some(l) => format!("line {} ({}): {}", l, i.place, i.en),
                None => format!("({}): {}", i.place, i.en),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message_en())
    }
}

impl std::error::Error for Report {}

/// The parameters each action accepts: (name, required, kinds accepted).
type Params = &'static [(&'static str, bool, &'static [FieldKind])];

/// 転出 (j370-style 異動 via the registry's change path): what a 転出届
/// gives the command.
const MOVE_OUT: Params = &[
    ("moving_date", true, &[FieldKind::Date]),
    ("destination", true, &[FieldKind::Address]),
    ("members", true, &[FieldKind::People]),
    ("applicant_name", true, &[FieldKind::Name]),
    ("applicant_kana", false, &[FieldKind::Kana]),
    ("visit_date", false, &[FieldKind::Date]),
    ("phone", false, &[FieldKind::Phone]),
    ("head_of_household", false, &[FieldKind::Name]),
];

/// 住民票の写しの交付請求.
const JUMINHYO_COPY: Params = &[
    ("applicant_name", true, &[FieldKind::Name]),
    ("applicant_kana", false, &[FieldKind::Kana]),
    ("applicant_birth_date", true, &[FieldKind::Date]),
    ("applicant_address", true, &[FieldKind::Address]),
    ("scope", true, &[FieldKind::Choice]),
    ("copies", true, &[FieldKind::Number]),
    ("items", false, &[FieldKind::Choices]),
    ("purpose", true, &[FieldKind::Choice, FieldKind::Text]),
    ("mailing_address", false, &[FieldKind::Address]),
    ("phone", false, &[FieldKind::Phone]),
];

const CHANGES: &[(&str, Params)] = &[("move_out", MOVE_OUT)];
const CERTIFICATES: &[(&str, Params)] = &[("juminhyo_copy", JUMINHYO_COPY)];

fn id_ok(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('a'..='z'))
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && s.len() <= 40
}

struct Checker<'a> {
    src: &'a str,
    issues: Vec<Issue>,
}

impl Checker<'_> {
    fn line(&self, span: Range<usize>) -> Option<usize> {
        let at = span.start.min(self.src.len());
        Some(self.src[..at].matches('\n').count() + 1)
    }
    fn push(
        &mut self,
        span: Option<Range<usize>>,
        place: impl Into<String>,
        ja: String,
        en: String,
    ) {
        let line = span.and_then(|s| self.line(s));
        self.issues.push(Issue {
            line,
            place: place.into(),
            ja,
            en,
        });
    }
}

impl Definition {
    /// Reads a definition and checks everything a publish needs. Nothing is
    /// published while the report has an issue.
    pub fn parse(src: &str) -> Result<Definition, Report> {
        let mut c = Checker {
            src,
            issues: Vec::new(),
        };
        let mut def: Definition = match toml::from_str(src) {
            Ok(d) => d,
            Err(e) => {
                let msg = e.message().trim().to_owned();
                c.push(
                    e.span(),
                    "TOML",
                    format!("TOMLとして読めません：{msg}"),
                    format!("not a valid definition: {msg}"),
                );
                return Err(Report { issues: c.issues });
            }
        };
        def.check(&mut c);
        if c.issues.is_empty() {
            def.resolve_relative_labels();
            Ok(def)
        } else {
            Err(Report { issues: c.issues })
        }
    }

    /// Gives each date bounded by another date that date's label.
    fn resolve_relative_labels(&mut self) {
        let labels: HashMap<String, Text> = self
            .fields()
            .map(|(_, f)| (f.id().to_owned(), f.label.clone()))
            .collect();
        for page in &mut self.pages {
            for f in &mut page.fields {
                if let Some(r) = &f.relative_to {
                    f.relative_label = labels.get(r.get_ref()).cloned();
                }
            }
        }
    }

    fn check(&self, c: &mut Checker<'_>) {
        let h = &self.procedure;
        if !id_ok(h.id.get_ref()) {
            c.push(
                Some(h.id.span()),
                "procedure",
                "手続IDは英小文字で始まり、英小文字・数字・_ の40字以内にしてください。".into(),
                "the procedure id must start with a-z and use only a-z, 0-9 and _ (at most 40)"
                    .into(),
            );
        }
        if !(1..=i64::from(u32::MAX)).contains(h.version.get_ref()) {
            c.push(
                Some(h.version.span()),
                "procedure",
                "版（version）は1以上の整数にしてください。".into(),
                "version must be a whole number from 1".into(),
            );
        }
        if !matches!(h.identity.get_ref().as_str(), "none" | "signature") {
            c.push(
                Some(h.identity.span()),
                "procedure",
                "本人確認（identity）は none（不要）か signature（電子署名）にしてください。"
                    .into(),
                "identity must be none or signature".into(),
            );
        }
        if !(1..=i64::from(MAX_RETENTION_DAYS)).contains(h.retention_days.get_ref()) {
            c.push(
                Some(h.retention_days.span()),
                "procedure",
                format!("保存期間（retention_days）は1日から{MAX_RETENTION_DAYS}日までです。"),
                format!("retention_days must be from 1 to {MAX_RETENTION_DAYS}"),
            );
        }
        self.check_text_ja(c, &h.title.ja, Some(h.id.span()), "procedure", "title");
        if self.pages.is_empty() {
            c.push(
                None,
                "procedure",
                "ページ（[[page]]）が一つもありません。".into(),
                "the definition has no page ([[page]])".into(),
            );
        }

        // Field ids are unique across the procedure; a condition looks only
        // at a field asked before it.
        let mut seen_pages = BTreeSet::new();
        let mut seen: HashMap<String, (FieldKind, Vec<String>)> = HashMap::new();
        // Fields shown only when a condition holds (theirs or their page's).
        let mut conditional: BTreeSet<String> = BTreeSet::new();
        for page in &self.pages {
            let place = format!("page {}", page.id());
            if !id_ok(page.id()) {
                c.push(
                    Some(page.id.span()),
                    place.clone(),
                    "ページIDは英小文字・数字・_ にしてください。".into(),
                    "a page id must use only a-z, 0-9 and _".into(),
                );
            }
            if !seen_pages.insert(page.id().to_owned()) {
                c.push(
                    Some(page.id.span()),
                    place.clone(),
                    format!("ページID「{}」が重複しています。", page.id()),
                    format!("the page id {:?} is used twice", page.id()),
                );
            }
            self.check_text_ja(c, &page.title.ja, Some(page.id.span()), &place, "title");
            if let Some(cond) = &page.show_if {
                check_condition(c, cond, &seen, Some(page.id.span()), &place);
            }
            if page.fields.is_empty() {
                c.push(
                    Some(page.id.span()),
                    place.clone(),
                    "このページに項目（[[page.field]]）がありません。".into(),
                    "the page has no field ([[page.field]])".into(),
                );
            }
            for field in &page.fields {
                let fplace = format!("field {}", field.id());
                if seen.contains_key(field.id()) {
                    c.push(
                        Some(field.id.span()),
                        fplace.clone(),
                        format!("項目ID「{}」が重複しています。", field.id()),
                        format!("the field id {:?} is used twice", field.id()),
                    );
                }
                if let Some(cond) = &field.show_if {
                    check_condition(c, cond, &seen, Some(field.id.span()), &fplace);
                }
                check_field(c, field, &fplace, false);
                check_relative(c, field, &fplace, &seen, &conditional);
                if page.show_if.is_some() || field.show_if.is_some() {
                    conditional.insert(field.id().to_owned());
                }
                seen.insert(
                    field.id().to_owned(),
                    (
                        field.kind(),
                        if field.kind() == FieldKind::YesNo {
                            vec!["yes".into(), "no".into()]
                        } else {
                            field.options.iter().map(|o| o.value.clone()).collect()
                        },
                    ),
                );
            }
        }
        self.check_action(c, &seen);
    }

    fn check_text_ja(
        &self,
        c: &mut Checker<'_>,
        ja: &str,
        span: Option<Range<usize>>,
        place: &str,
        what: &str,
    ) {
        if ja.trim().is_empty() {
            c.push(
                span,
                place.to_owned(),
                format!("{what}（日本語）が空です。"),
                format!("{what} (Japanese) is empty"),
            );
        }
    }

    fn check_action(
        &self,
        c: &mut Checker<'_>,
        fields: &HashMap<String, (FieldKind, Vec<String>)>,
    ) {
        let a = &self.action;
        let span = Some(a.kind.span());
        let params: Option<Params> = match a.kind.get_ref().as_str() {
            "registry_change" => {
                match a.change.as_deref() {
                    Some(ch) => match CHANGES.iter().find(|(n, _)| *n == ch) {
                        Some((_, p)) => Some(p),
                        None => {
                            c.push(
                            span.clone(),
                            "action",
                            format!("異動「{ch}」はオンライン手続に対応していません（対応：move_out）。"),
                            format!("the change {ch:?} cannot be filed online (supported: move_out)"),
                        );
                            None
                        }
                    },
                    None => {
                        c.push(
                            span.clone(),
                            "action",
                            "registry_change には change（異動の種類）が必要です。".into(),
                            "registry_change needs change (the kind of change)".into(),
                        );
                        None
                    }
                }
            }
            "certificate" => match a.certificate.as_deref() {
                Some(cert) => match CERTIFICATES.iter().find(|(n, _)| *n == cert) {
                    Some((_, p)) => Some(p),
                    None => {
                        c.push(
                            span.clone(),
                            "action",
                            format!("証明書「{cert}」はオンライン請求に対応していません（対応：juminhyo_copy）。"),
                            format!("the certificate {cert:?} cannot be requested online (supported: juminhyo_copy)"),
                        );
                        None
                    }
                },
                None => {
                    c.push(
                        span.clone(),
                        "action",
                        "certificate には certificate（証明書の種類）が必要です。".into(),
                        "a certificate action needs certificate (which certificate)".into(),
                    );
                    None
                }
            },
            "handoff" => {
                for (what, v) in [("system", &a.system), ("event", &a.event)] {
                    if !v.as_deref().is_some_and(id_ok) {
                        c.push(
                            span.clone(),
                            "action",
                            format!("handoff には {what}（英小文字・数字・_）が必要です。"),
                            format!("handoff needs {what} (a-z, 0-9, _)"),
                        );
                    }
                }
                for (param, field) in &a.mapping {
                    if !fields.contains_key(field) {
                        c.push(
                            span.clone(),
                            "action",
                            format!("対応付け {param} の項目「{field}」がありません。"),
                            format!("mapping {param}: there is no field {field:?}"),
                        );
                    }
                }
                None
            }
            "survey" => {
                if a.aggregate.is_empty() {
                    c.push(
                        span.clone(),
                        "action",
                        "survey には集計する項目（aggregate）が必要です。".into(),
                        "a survey needs the fields to count (aggregate)".into(),
                    );
                }
                for f in &a.aggregate {
                    match fields.get(f) {
                        Some((k, _)) if k.is_selectable() => {}
                        Some(_) => c.push(
                            span.clone(),
                            "action",
                            format!("集計できるのは選択・はい/いいえの項目だけです：「{f}」"),
                            format!("only choice and yes/no fields can be counted: {f:?}"),
                        ),
                        None => c.push(
                            span.clone(),
                            "action",
                            format!("集計する項目「{f}」がありません。"),
                            format!("there is no field {f:?} to count"),
                        ),
                    }
                }
                None
            }
            other => {
                c.push(
                    span.clone(),
                    "action",
                    format!("処理（kind）「{other}」は registry_change・certificate・handoff・survey のどれかにしてください。"),
                    format!("action kind {other:?} must be registry_change, certificate, handoff or survey"),
                );
                None
            }
        };
        if let Some(params) = params {
            for (param, field) in &a.mapping {
                match params.iter().find(|(n, _, _)| n == param) {
                    None => c.push(
                        span.clone(),
                        "action",
                        format!("対応付け「{param}」はこの処理にありません（使えるもの：{}）。", names(params)),
                        format!("mapping {param:?} is not a parameter of this action (known: {})", names(params)),
                    ),
                    Some((_, _, kinds)) => match fields.get(field) {
                        None => c.push(
                            span.clone(),
                            "action",
                            format!("対応付け {param} の項目「{field}」がありません。"),
                            format!("mapping {param}: there is no field {field:?}"),
                        ),
                        Some((k, _)) if !kinds.contains(k) => c.push(
                            span.clone(),
                            "action",
                            format!("対応付け {param} には {} の項目が必要ですが、「{field}」は {} です。",
                                kinds.iter().map(|k| k.name()).collect::<Vec<_>>().join("/"), k.name()),
                            format!("mapping {param} needs a {} field but {field:?} is {}",
                                kinds.iter().map(|k| k.name()).collect::<Vec<_>>().join("/"), k.name()),
                        ),
                        Some(_) => {}
                    },
                }
            }
            for (param, required, _) in params.iter() {
                if *required && !a.mapping.contains_key(*param) {
                    c.push(
                        span.clone(),
                        "action",
                        format!("必須の対応付け「{param}」がありません。"),
                        format!("the required mapping {param:?} is missing"),
                    );
                }
            }
        }
    }
}

fn names(params: Params) -> String {
    params
        .iter()
        .map(|(n, _, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

fn check_condition(
    c: &mut Checker<'_>,
    cond: &Condition,
    seen: &HashMap<String, (FieldKind, Vec<String>)>,
    span: Option<Range<usize>>,
    place: &str,
) {
    let given = [
        cond.equals.is_some(),
        cond.not_equals.is_some(),
        cond.one_of.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if given != 1 {
        c.push(
            span.clone(),
            place.to_owned(),
            "表示条件（show_if）には equals・not_equals・in のどれか一つを書いてください。".into(),
            "show_if needs exactly one of equals, not_equals, in".into(),
        );
    }
    match seen.get(&cond.field) {
        None => c.push(
            span,
            place.to_owned(),
            format!(
                "表示条件の項目「{}」が、これより前にありません。",
                cond.field
            ),
            format!(
                "show_if refers to {:?}, which is not asked before this",
                cond.field
            ),
        ),
        Some((kind, _)) if !kind.is_selectable() => c.push(
            span,
            place.to_owned(),
            format!(
                "表示条件に使えるのは選択・はい/いいえの項目だけです：「{}」",
                cond.field
            ),
            format!(
                "show_if can look only at choice and yes/no fields: {:?}",
                cond.field
            ),
        ),
        Some((_, values)) => {
            let used = cond
                .equals
                .iter()
                .chain(cond.not_equals.iter())
                .chain(cond.one_of.iter().flatten());
            for v in used {
                if !values.contains(v) {
                    c.push(
                        span.clone(),
                        place.to_owned(),
                        format!(
                            "表示条件の値「{v}」は項目「{}」の選択肢にありません。",
                            cond.field
                        ),
                        format!("show_if value {v:?} is not an option of {:?}", cond.field),
                    );
                }
            }
        }
    }
}

/// `relative_to` (a date bounded by another date of the filing): it names
/// a date field asked before this one (on an earlier page or earlier on
/// the same page) that is always shown, with at least one of the day
/// bounds, and the bounds in order.
fn check_relative(
    c: &mut Checker<'_>,
    f: &Field,
    place: &str,
    seen: &HashMap<String, (FieldKind, Vec<String>)>,
    conditional: &BTreeSet<String>,
) {
    let bounds = f.not_before_relative_days.is_some() || f.not_after_relative_days.is_some();
    let Some(other) = &f.relative_to else {
        if bounds {
            c.push(
                Some(f.id.span()),
                place.to_owned(),
                "not_before_relative_days/not_after_relative_days には、基準にする日付の項目（relative_to）が必要です。".into(),
                "not_before_relative_days/not_after_relative_days need relative_to, the date field they count from".into(),
            );
        }
        return;
    };
    let span = Some(other.span());
    let name = other.get_ref();
    let mut bad = |ja: String, en: String| c.push(span.clone(), place.to_owned(), ja, en);
    if FieldKind::parse(f.kind.get_ref()) != Some(FieldKind::Date) {
        bad(
            "relative_to は date の項目にだけ書けます。".into(),
            "relative_to is only for date fields".into(),
        );
    }
    if name == f.id() {
        bad(
            "relative_to に自分自身は書けません。".into(),
            "relative_to cannot name the field itself".into(),
        );
    } else {
        match seen.get(name.as_str()) {
            None => bad(
                format!(
                    "relative_to の項目「{name}」は、この項目より前（前のページか、同じページの上）にありません。"
                ),
                format!(
                    "relative_to names {name:?}, which is no field asked before this one (on an earlier page or above it on the same page)"
                ),
            ),
            Some((k, _)) if *k != FieldKind::Date => bad(
                format!("relative_to の項目「{name}」は日付（date）の項目ではありません。"),
                format!("relative_to names {name:?}, which is not a date field"),
            ),
            Some(_) if conditional.contains(name.as_str()) => bad(
                format!(
                    "relative_to の項目「{name}」は条件（show_if）によって表示されないことがあります。いつも表示される日付の項目にしてください。"
                ),
                format!(
                    "relative_to names {name:?}, which a condition (show_if) may hide; name a date field that is always shown"
                ),
            ),
            Some(_) => {}
        }
    }
    if !bounds {
        bad(
            "relative_to には not_before_relative_days か not_after_relative_days を書いてください。".into(),
            "relative_to needs not_before_relative_days or not_after_relative_days".into(),
        );
    }
    if let (Some(a), Some(b)) = (f.not_before_relative_days, f.not_after_relative_days)
        && a > b
    {
        bad(
            "not_before_relative_days が not_after_relative_days より後です。".into(),
            "not_before_relative_days is after not_after_relative_days".into(),
        );
    }
    for d in [f.not_before_relative_days, f.not_after_relative_days]
        .into_iter()
        .flatten()
    {
        if d.abs() > 36_600 {
            bad(
                "日数は ±36600 日以内にしてください。".into(),
                "day offsets must lie within ±36600".into(),
            );
        }
    }
}

fn check_field(c: &mut Checker<'_>, f: &Field, place: &str, nested: bool) {
    let span = Some(f.id.span());
    if !id_ok(f.id()) {
        c.push(
            span.clone(),
            place.to_owned(),
            "項目IDは英小文字で始まり、英小文字・数字・_ にしてください。".into(),
            "a field id must start with a-z and use only a-z, 0-9 and _".into(),
        );
    }
    if f.label.ja.trim().is_empty() {
        c.push(
            span.clone(),
            place.to_owned(),
            "見出し（label.ja）が空です。".into(),
            "the label (label.ja) is empty".into(),
        );
    }
    let Some(kind) = FieldKind::parse(f.kind.get_ref()) else {
        let known = FieldKind::ALL
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(", ");
        c.push(
            Some(f.kind.span()),
            place.to_owned(),
            format!(
                "種類（kind）「{}」はありません（使えるもの：{known}）。",
                f.kind.get_ref()
            ),
            format!(
                "there is no field kind {:?} (known: {known})",
                f.kind.get_ref()
            ),
        );
        return;
    };
    let mut only = |present: bool, key: &str, kinds: &str| {
        if present {
            c.push(
                span.clone(),
                place.to_owned(),
                format!("{key} は {kinds} の項目にだけ書けます。"),
                format!("{key} is only for {kinds} fields"),
            );
        }
    };
    only(
        f.max_chars.is_some() && kind != FieldKind::Text,
        "max_chars",
        "text",
    );
    only(
        !f.options.is_empty() && !matches!(kind, FieldKind::Choice | FieldKind::Choices),
        "option",
        "choice/choices",
    );
    only(
        (f.not_before_days.is_some() || f.not_after_days.is_some()) && kind != FieldKind::Date,
        "not_before_days/not_after_days",
        "date",
    );
    only(
        (f.min.is_some() || f.max.is_some()) && kind != FieldKind::Number,
        "min/max",
        "number",
    );
    only(
        (!f.accept.is_empty() || f.max_bytes.is_some()) && kind != FieldKind::File,
        "accept/max_bytes",
        "file",
    );
    only(
        (!f.fields.is_empty() || f.max_items.is_some()) && kind != FieldKind::People,
        "field/max_items",
        "people",
    );
    let mut bad = |ja: String, en: String| c.push(span.clone(), place.to_owned(), ja, en);
    match kind {
        FieldKind::Text => {
            if let Some(m) = f.max_chars
                && !(1..=2000).contains(&m)
            {
                bad(
                    "max_chars は1から2000までです。".into(),
                    "max_chars must be from 1 to 2000".into(),
                );
            }
        }
        FieldKind::Choice | FieldKind::Choices => {
            if f.options.len() < 2 {
                bad(
                    "選択肢（[[...option]]）を二つ以上書いてください。".into(),
                    "a choice needs at least two options ([[...option]])".into(),
                );
            }
            let mut values = BTreeSet::new();
            for o in &f.options {
                if !id_ok(&o.value) {
                    bad(
                        format!(
                            "選択肢の値「{}」は英小文字・数字・_ にしてください。",
                            o.value
                        ),
                        format!("option value {:?} must use a-z, 0-9 and _", o.value),
                    );
                }
                if !values.insert(o.value.as_str()) {
                    bad(
                        format!("選択肢の値「{}」が重複しています。", o.value),
                        format!("option value {:?} is used twice", o.value),
                    );
                }
                if o.label.ja.trim().is_empty() {
                    bad(
                        format!("選択肢「{}」の見出しが空です。", o.value),
                        format!("option {:?} has an empty label", o.value),
                    );
                }
            }
        }
        FieldKind::Date => {
            if let (Some(a), Some(b)) = (f.not_before_days, f.not_after_days)
                && a > b
            {
                bad(
                    "not_before_days が not_after_days より後です。".into(),
                    "not_before_days is after not_after_days".into(),
                );
            }
            for d in [f.not_before_days, f.not_after_days].into_iter().flatten() {
                if d.abs() > 36_600 {
                    bad(
                        "日数は ±36600 日以内にしてください。".into(),
                        "day offsets must lie within ±36600".into(),
                    );
                }
            }
        }
        FieldKind::Number => {
            if let (Some(a), Some(b)) = (f.min, f.max)
                && a > b
            {
                bad(
                    "min が max より大きいです。".into(),
                    "min is greater than max".into(),
                );
            }
        }
        FieldKind::File => {
            if f.accept.is_empty() {
                bad(
                    format!(
                        "受け付けるファイルの種類（accept）を書いてください（{}）。",
                        ATTACHMENT_TYPES.join(", ")
                    ),
                    format!(
                        "accept (the file types) is required ({})",
                        ATTACHMENT_TYPES.join(", ")
                    ),
                );
            }
            for t in &f.accept {
                if !ATTACHMENT_TYPES.contains(&t.as_str()) {
                    bad(
                        format!(
                            "ファイルの種類「{t}」は受け付けられません（{}）。",
                            ATTACHMENT_TYPES.join(", ")
                        ),
                        format!(
                            "the file type {t:?} is not supported ({})",
                            ATTACHMENT_TYPES.join(", ")
                        ),
                    );
                }
            }
            match f.max_bytes {
                Some(b) if b >= 1 && b as u64 <= MAX_ATTACHMENT_BYTES => {}
                _ => bad(
                    format!(
                        "max_bytes（最大の大きさ）を1から{MAX_ATTACHMENT_BYTES}バイトで書いてください。"
                    ),
                    format!("max_bytes must be from 1 to {MAX_ATTACHMENT_BYTES}"),
                ),
            }
            if nested {
                bad(
                    "人ごとの項目にファイルは使えません。".into(),
                    "a file cannot be asked for each person".into(),
                );
            }
        }
        FieldKind::People => {
            if nested {
                bad(
                    "人ごとの項目の中に people は使えません。".into(),
                    "people cannot be nested".into(),
                );
            }
            if f.fields.is_empty() {
                bad(
                    "一人ごとに聞く項目（[[page.field.field]]）を書いてください。".into(),
                    "people needs the fields asked for each person ([[page.field.field]])".into(),
                );
            }
            match f.max_items {
                Some(m) if (1..=20).contains(&m) => {}
                _ => bad(
                    "max_items（最大の人数）を1から20で書いてください。".into(),
                    "max_items (the most persons) must be from 1 to 20".into(),
                ),
            }
            let mut ids = BTreeSet::new();
            for sub in &f.fields {
                let splace = format!("field {}.{}", f.id(), sub.id());
                if sub.relative_to.is_some()
                    || sub.not_before_relative_days.is_some()
                    || sub.not_after_relative_days.is_some()
                {
                    c.push(
                        Some(sub.id.span()),
                        splace.clone(),
                        "人ごとの項目には relative_to を書けません。".into(),
                        "relative_to cannot be used in the fields asked for each person".into(),
                    );
                }
                if !ids.insert(sub.id().to_owned()) {
                    c.push(
                        Some(sub.id.span()),
                        splace.clone(),
                        format!("項目ID「{}」が重複しています。", sub.id()),
                        format!("the field id {:?} is used twice", sub.id()),
                    );
                }
                if sub.show_if.is_some() {
                    c.push(
                        Some(sub.id.span()),
                        splace.clone(),
                        "人ごとの項目に表示条件は書けません。".into(),
                        "a field asked for each person cannot have show_if".into(),
                    );
                }
                check_field(c, sub, &splace, true);
            }
        }
        _ => {}
    }
}
