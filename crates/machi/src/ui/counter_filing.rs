//! Counter-assisted filing (書かない窓口, issue 11 item 7): from a
//! resident's page a clerk opens any published procedure in counter mode.
//! The applicant's registry data is prefilled (name, kana, birth date,
//! address; the household's members for a 転出届), the clerk fills the
//! rest on one page, the applicant checks a read-only confirmation view in
//! large text that shows nothing staff-only, and the filing joins the
//! filings imported from the portal, marked as filed at the counter with
//! the clerk recorded (see [`crate::service::counter_filing`]).
//!
//! The procedures are those shipped with machi and the tenant's own
//! published on the portal (stored with the filings pulled from it), each
//! at its newest version the back office acts on: shipped, or accepted by
//! the tenant's administrator
//! ([`crate::service::Registry::counter_procedures`]). The registry
//! prefills every field whose id names an applicant's item
//! (`applicant_name`, `claimant_kana`, `guardian_birth_date`,
//! `applicant_address`, …) and a `members` or `children` list, in a
//! tenant's own procedure as in a shipped one. A file field is not uploaded at the counter: the clerk ticks
//! that the original was seen.
//!
//! Before the applicant sees the confirmation view the clerk records the
//! identity check (本人確認): the document seen and whether the applicant
//! came or a representative (氏名, 本人との関係, 委任状). An anonymous
//! procedure (a survey) asks for none.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Form, Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use machi_domain::access::Permission;
use machi_domain::change::AsOf;
use machi_domain::dates::EraTable;
use machi_domain::ids::{AddresseeNumber, MunicipalityCode};
use machi_domain::model::ResidentRecord;
use machi_procedures::{Answers, CheckContext, Definition, Field, FieldKind, Lang as PLang};

use super::forms::FormData;
use super::{Chrome, Ctx, UiError, html};
use crate::api::AppState;
use crate::service::counter_filing::{self, CounterFiling, IdentityInput, ShownDocument};

/// The procedures a clerk can file at the counter for the tenant.
async fn procedures(
    s: &AppState,
    ctx: &Ctx,
    tenant: &MunicipalityCode,
) -> Result<Vec<Arc<Definition>>, Response> {
    s.registry
        .counter_procedures(tenant)
        .await
        .map_err(|e| ctx.error(&e.into()))
}

async fn procedure(
    s: &AppState,
    ctx: &Ctx,
    tenant: &MunicipalityCode,
    id: &str,
) -> Result<Arc<Definition>, Response> {
    procedures(s, ctx, tenant)
        .await?
        .into_iter()
        .find(|d| d.id() == id)
        .ok_or_else(|| not_published(ctx))
}

fn plang(c: &Ctx) -> PLang {
    if c.lang.en { PLang::En } else { PLang::Ja }
}

/// Prefixes of the fields that describe the applicant in the shipped
/// procedures (届出人, 請求者, 保護者).
const APPLICANT_PREFIXES: [&str; 3] = ["applicant", "claimant", "guardian"];

/// The input names of a date, split as the portal's date inputs are: era
/// (an era name, or `seireki`), year, month, day.
fn put_date(a: &mut Answers, key: &str, d: chrono::NaiveDate, eras: &EraTable) {
    use chrono::Datelike;
    let w = eras.format_wareki(d);
    let era: String = w
        .chars()
        .take_while(|c| !c.is_ascii_digit() && *c != '元')
        .collect();
    let (era, year) = if !era.is_empty() && w.len() > era.len() {
        let rest = &w[era.len()..];
        let y: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        let y = if rest.starts_with('元') {
            "1".to_string()
        } else {
            y
        };
        (era, y)
    } else {
        ("seireki".to_string(), d.year().to_string())
    };
    a.insert(format!("{key}.era"), era);
    a.insert(format!("{key}.year"), year);
    a.insert(format!("{key}.month"), d.month().to_string());
    a.insert(format!("{key}.day"), d.day().to_string());
}

/// Puts a person's registry data into the fields of `f` named after the
/// items (`name`, `kana`, `birth_date`, `address`) under `prefix`.
fn put_person(
    a: &mut Answers,
    fields: &[Field],
    key_of: &dyn Fn(&str) -> Option<String>,
    r: &ResidentRecord,
    eras: &EraTable,
) {
    for f in fields {
        let Some(key) = key_of(f.id()) else { continue };
        match f.kind() {
            FieldKind::Name => {
                a.insert(key, r.name.as_str().to_owned());
            }
            FieldKind::Kana => {
                if let Some(k) = &r.name_kana {
                    a.insert(key, k.as_str().to_owned());
                }
            }
            FieldKind::Date if f.id().ends_with("birth_date") => {
                if let Some(d) = r.birth_date.as_calendar() {
                    put_date(a, &key, d, eras);
                }
            }
            FieldKind::Address => {
                a.insert(format!("{key}.address"), r.address.full());
                if let Some(p) = &r.address.postal_code {
                    a.insert(format!("{key}.postal"), p.formatted());
                }
            }
            _ => {}
        }
    }
}

/// The answers the registry already knows: the applicant's items, and the
/// household's members for a `members` field (children under 18 for a
/// `children` field).
fn prefill(
    def: &Definition,
    applicant: &ResidentRecord,
    household: &[ResidentRecord],
    today: chrono::NaiveDate,
    eras: &EraTable,
) -> Answers {
    let mut a = Answers::new();
    let top: Vec<Field> = def.fields().map(|(_, f)| f.clone()).collect();
    for prefix in APPLICANT_PREFIXES {
        let p = format!("{prefix}_");
        put_person(
            &mut a,
            &top,
            &|id: &str| {
                id.strip_prefix(&p)
                    .filter(|rest| ["name", "kana", "birth_date", "address"].contains(rest))
                    .map(|_| id.to_owned())
            },
            applicant,
            eras,
        );
    }
    for f in top.iter().filter(|f| f.kind() == FieldKind::People) {
        let persons: Vec<&ResidentRecord> = match f.id() {
            "members" => household.iter().collect(),
            "children" => household
                .iter()
                .filter(|m| {
                    m.birth_date
                        .as_calendar()
                        .is_some_and(|b| (today - b).num_days() < 18 * 365)
                })
                .collect(),
            _ => continue,
        };
        let max = f.max_items.unwrap_or(10).max(1) as usize;
        let persons: Vec<&ResidentRecord> = persons.into_iter().take(max).collect();
        a.insert(format!("{}.count", f.id()), persons.len().to_string());
        for (i, m) in persons.iter().enumerate() {
            let base = format!("{}.{i}", f.id());
            put_person(
                &mut a,
                &f.fields,
                &|sub: &str| Some(format!("{base}.{sub}")),
                m,
                eras,
            );
            a.insert(format!("{base}._include"), "yes".into());
        }
    }
    a
}

/// The form's state as posted: every input named `a.<answer key>`.
fn posted_state(f: &FormData) -> Answers {
    let mut a = Answers::new();
    for (k, v) in &f.0 {
        if let Some(key) = k.strip_prefix("a.") {
            a.entry(key.to_owned())
                .and_modify(|old| {
                    old.push('\n');
                    old.push_str(v);
                })
                .or_insert_with(|| v.clone());
        }
    }
    a
}

/// The answers to check and file: the persons of a `people` field whose
/// "include" box is ticked, numbered from 0; file fields left out (their
/// originals are seen at the counter).
fn answers_of(def: &Definition, state: &Answers) -> Answers {
    let mut a: Answers = state
        .iter()
        .filter(|(k, _)| !k.contains("._include") && !k.ends_with(".seen"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (_, f) in def.fields().filter(|(_, f)| f.kind() == FieldKind::People) {
        let id = f.id();
        let count: usize = state
            .get(&format!("{id}.count"))
            .and_then(|c| c.trim().parse().ok())
            .unwrap_or(0)
            .min(50);
        a.retain(|k, _| !k.starts_with(&format!("{id}.")));
        let mut n = 0;
        for i in 0..count {
            if state.get(&format!("{id}.{i}._include")).map(String::as_str) != Some("yes") {
                continue;
            }
            for sub in &f.fields {
                let from = format!("{id}.{i}.{}", sub.id());
                let to = format!("{id}.{n}.{}", sub.id());
                for (k, v) in state.iter().filter(|(k, _)| k.starts_with(&from)) {
                    a.insert(k.replacen(&from, &to, 1), v.clone());
                }
            }
            n += 1;
        }
        a.insert(format!("{id}.count"), n.to_string());
    }
    a
}

/// The identity check as posted (inputs `id.*`).
fn identity_input(f: &FormData) -> IdentityInput {
    IdentityInput {
        document: f.text("id.document"),
        note: f.text("id.note"),
        appeared: f.text("id.appeared"),
        representative_name: f.text("id.rep_name"),
        representative_relationship: f.text("id.rep_relationship"),
        power_of_attorney: f.text("id.poa"),
    }
}

/// The identity inputs as hidden fields (the confirmation view carries them).
fn identity_hidden(i: &IdentityInput) -> Vec<(String, String)> {
    [
        ("id.document", &i.document),
        ("id.note", &i.note),
        ("id.appeared", &i.appeared),
        ("id.rep_name", &i.representative_name),
        ("id.rep_relationship", &i.representative_relationship),
        ("id.poa", &i.power_of_attorney),
    ]
    .into_iter()
    .filter(|(_, v)| !v.is_empty())
    .map(|(k, v)| (k.to_string(), v.clone()))
    .collect()
}

/// The HTML id of an identity input (the error summary links to it).
fn identity_input_id(input: &str) -> String {
    match input {
        "document" => "id-document",
        "note" => "id-note",
        "appeared" => "id-appeared",
        "representative_name" => "id-rep-name",
        "representative_relationship" => "id-rep-relationship",
        _ => "id-poa",
    }
    .to_string()
}

/// The applicant's household as names, without the applicant.
fn household_names(r: &ResidentRecord, household: &[ResidentRecord]) -> Vec<String> {
    household
        .iter()
        .filter(|m| m.addressee_number != r.addressee_number)
        .map(|m| m.name.as_str().to_owned())
        .collect()
}

/// The identity section of the clerk's form.
pub struct IdentityView {
    pub documents: Vec<OptView>,
    pub note: String,
    pub appeared: Vec<OptView>,
    pub rep_name: String,
    pub rep_relationship: String,
    pub poa: Vec<OptView>,
    pub document_error: String,
    pub note_error: String,
    pub appeared_error: String,
    pub rep_name_error: String,
    pub rep_relationship_error: String,
    pub poa_error: String,
}

fn identity_view(i: &IdentityInput, problems: &[Problem], c: &Ctx) -> IdentityView {
    let l = c.lang;
    let err = |input: &str| {
        problems
            .iter()
            .find(|p| p.input == identity_input_id(input))
            .map(|p| p.message.clone())
            .unwrap_or_default()
    };
    let opts = |name: &str, chosen: &str, list: Vec<(String, String)>| {
        list.into_iter()
            .map(|(value, label)| OptView {
                id: format!("id-{name}-{}", value.replace('_', "-")),
                checked: chosen == value,
                value,
                label,
            })
            .collect::<Vec<_>>()
    };
    IdentityView {
        documents: opts(
            "document",
            i.document.trim(),
            ShownDocument::ALL
                .iter()
                .map(|d| {
                    (
                        d.code().to_string(),
                        l.t(d.label_ja(), d.label_en()).to_string(),
                    )
                })
                .collect(),
        ),
        note: i.note.clone(),
        appeared: opts(
            "appeared",
            i.appeared.trim(),
            vec![
                ("self".into(), l.t("本人", "The applicant").into()),
                (
                    "representative".into(),
                    l.t("代理人", "A representative").into(),
                ),
            ],
        ),
        rep_name: i.representative_name.clone(),
        rep_relationship: i.representative_relationship.clone(),
        poa: opts(
            "poa",
            i.power_of_attorney.trim(),
            vec![
                ("yes".into(), l.t("確認した", "Seen").into()),
                (
                    "no".into(),
                    l.t(
                        "なし（同じ世帯の方の届出）",
                        "None (a member of the household)",
                    )
                    .into(),
                ),
            ],
        ),
        document_error: err("document"),
        note_error: err("note"),
        appeared_error: err("appeared"),
        rep_name_error: err("representative_name"),
        rep_relationship_error: err("representative_relationship"),
        poa_error: err("power_of_attorney"),
    }
}

/// One problem the clerk must fix, linked to its input.
struct Problem {
    input: String,
    message: String,
}

/// Checks the answers as the portal does, and that the original of every
/// required document was seen at the counter.
fn problems(def: &Definition, state: &Answers, ctx: &CheckContext, l: PLang) -> Vec<Problem> {
    let answers = answers_of(def, state);
    let files: Vec<String> = def
        .fields()
        .filter(|(_, f)| f.kind() == FieldKind::File)
        .map(|(_, f)| f.id().to_owned())
        .collect();
    let mut out: Vec<Problem> = def
        .check_all(&answers, ctx)
        .into_iter()
        .filter(|(_, e)| !files.contains(&e.field))
        .map(|(_, e)| Problem {
            input: input_id(&e.input),
            message: e.message.get(l).to_owned(),
        })
        .collect();
    for p in def.visible_pages(&answers) {
        for f in def.visible_fields(p, &answers) {
            if f.kind() == FieldKind::File
                && f.required
                && state.get(&format!("{}.seen", f.id())).map(String::as_str) != Some("yes")
            {
                out.push(Problem {
                    input: input_id(&format!("{}.seen", f.id())),
                    message: l
                        .t(
                            "原本を窓口で確認してください。",
                            "原本を窓口で確認してください。",
                            "Check the original at the counter.",
                        )
                        .to_owned(),
                });
            }
        }
    }
    out
}

fn input_id(key: &str) -> String {
    format!(
        "f-{}",
        key.chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect::<String>()
    )
}

// ------------------------------------------------------------------ views

/// One option of a choice.
pub struct OptView {
    pub id: String,
    pub value: String,
    pub label: String,
    pub checked: bool,
}

/// One input of a field (a date's year, an address's postal code, …).
pub struct PartView {
    pub id: String,
    pub name: String,
    pub label: String,
    pub value: String,
    pub class: &'static str,
}

/// One field as the clerk's form shows it.
pub struct FieldView {
    /// `text`, `date`, `address`, `radios`, `checkboxes`, `seen` (a file
    /// whose original is checked at the counter), `people`.
    pub kind: &'static str,
    pub id: String,
    pub name: String,
    pub label: String,
    pub hint: String,
    pub required: bool,
    pub value: String,
    pub input_type: &'static str,
    pub parts: Vec<PartView>,
    pub options: Vec<OptView>,
    pub error: String,
    /// A `people` field's persons.
    pub persons: Vec<PersonView>,
    pub count_name: String,
    pub count: usize,
}

/// One person of a `people` field.
pub struct PersonView {
    pub heading: String,
    pub include_id: String,
    pub include_name: String,
    pub included: bool,
    pub fields: Vec<FieldView>,
}

fn field_view(
    f: &Field,
    key: &str,
    state: &Answers,
    errors: &[Problem],
    l: PLang,
    eras: &EraTable,
) -> FieldView {
    let get = |k: &str| state.get(k).cloned().unwrap_or_default();
    let err = |k: &str| {
        errors
            .iter()
            .find(|p| p.input == input_id(k) || p.input.starts_with(&format!("{}-", input_id(k))))
            .map(|p| p.message.clone())
            .unwrap_or_default()
    };
    let mut v = FieldView {
        kind: "text",
        id: input_id(key),
        name: format!("a.{key}"),
        label: f.label.get(l).to_owned(),
        hint: f
            .hint
            .as_ref()
            .map(|h| h.get(l).to_owned())
            .unwrap_or_default(),
        required: f.required,
        value: get(key),
        input_type: "text",
        parts: vec![],
        options: vec![],
        error: err(key),
        persons: vec![],
        count_name: String::new(),
        count: 0,
    };
    let _ = eras;
    match f.kind() {
        FieldKind::Email => v.input_type = "email",
        FieldKind::Phone => v.input_type = "tel",
        FieldKind::Date => {
            v.kind = "date";
            let era = get(&format!("{key}.era"));
            let era = if era.is_empty() {
                "令和".to_owned()
            } else {
                era
            };
            v.options = [
                ("令和", "令和", "Reiwa"),
                ("平成", "平成", "Heisei"),
                ("昭和", "昭和", "Showa"),
                ("大正", "大正", "Taisho"),
                ("明治", "明治", "Meiji"),
                ("seireki", "西暦", "Western (AD)"),
            ]
            .iter()
            .map(|(value, ja, en)| OptView {
                id: String::new(),
                value: (*value).to_owned(),
                label: l.t(ja, ja, en).to_owned(),
                checked: era == *value,
            })
            .collect();
            v.parts = [
                ("era", "", ""),
                ("year", "年", "Year"),
                ("month", "月", "Month"),
                ("day", "日", "Day"),
            ]
            .iter()
            .map(|(part, ja, en)| {
                let name = format!("{key}.{part}");
                PartView {
                    id: input_id(&name),
                    value: get(&name),
                    name: format!("a.{name}"),
                    label: l.t(ja, ja, en).to_owned(),
                    class: if *part == "year" { "w4" } else { "w2" },
                }
            })
            .collect();
            v.error = err(key);
        }
        FieldKind::Address => {
            v.kind = "address";
            v.parts = [
                ("postal", "郵便番号", "Postcode", "w8"),
                ("address", "住所", "Address", "wide"),
            ]
            .iter()
            .map(|(part, ja, en, class)| {
                let name = format!("{key}.{part}");
                PartView {
                    id: input_id(&name),
                    value: get(&name),
                    name: format!("a.{name}"),
                    label: l.t(ja, ja, en).to_owned(),
                    class,
                }
            })
            .collect();
        }
        FieldKind::Choice | FieldKind::Choices | FieldKind::YesNo => {
            v.kind = if f.kind() == FieldKind::Choices {
                "checkboxes"
            } else {
                "radios"
            };
            let chosen: Vec<String> = v.value.lines().map(|s| s.trim().to_owned()).collect();
            let opts: Vec<(String, String)> = if f.kind() == FieldKind::YesNo {
                vec![
                    ("yes".into(), l.t("はい", "はい", "Yes").into()),
                    ("no".into(), l.t("いいえ", "いいえ", "No").into()),
                ]
            } else {
                f.options
                    .iter()
                    .map(|o| (o.value.clone(), o.label.get(l).to_owned()))
                    .collect()
            };
            v.options = opts
                .into_iter()
                .map(|(value, label)| OptView {
                    id: input_id(&format!("{key}.{value}")),
                    checked: chosen.contains(&value),
                    value,
                    label,
                })
                .collect();
        }
        FieldKind::File => {
            v.kind = "seen";
            let name = format!("{key}.seen");
            v.id = input_id(&name);
            v.name = format!("a.{name}");
            v.value = get(&name);
            v.error = err(&name);
        }
        FieldKind::People => {
            v.kind = "people";
            let count: usize = get(&format!("{key}.count"))
                .trim()
                .parse()
                .unwrap_or(0)
                .min(50);
            v.count_name = format!("a.{key}.count");
            v.count = count;
            v.persons = (0..count)
                .map(|i| {
                    let base = format!("{key}.{i}");
                    let inc = format!("{base}._include");
                    PersonView {
                        heading: format!("{} {}", l.t("人", "ひと", "Person"), i + 1),
                        include_id: input_id(&inc),
                        include_name: format!("a.{inc}"),
                        included: get(&inc) == "yes",
                        fields: f
                            .fields
                            .iter()
                            .map(|sub| {
                                field_view(
                                    sub,
                                    &format!("{base}.{}", sub.id()),
                                    state,
                                    errors,
                                    l,
                                    eras,
                                )
                            })
                            .collect(),
                    }
                })
                .collect();
        }
        _ => {}
    }
    v
}

/// A page of the procedure with its fields.
pub struct SectionView {
    pub title: String,
    pub fields: Vec<FieldView>,
}

#[derive(Template)]
#[template(path = "counter_filing_choose.html")]
struct ChoosePage {
    c: Chrome,
    person: String,
    name: String,
    procedures: Vec<(String, String, String)>,
}

#[derive(Template)]
#[template(path = "counter_filing_form.html")]
struct FormPage {
    c: Chrome,
    person: String,
    name: String,
    procedure: String,
    identity: Option<IdentityView>,
    sections: Vec<SectionView>,
    problems: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "counter_filing_confirm.html")]
struct ConfirmPage {
    l: super::Lang,
    csrf: String,
    person: String,
    procedure: String,
    title: String,
    department: String,
    tenant_name: String,
    rows: Vec<(String, Vec<String>)>,
    hidden: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "counter_filing_done.html")]
struct DonePage {
    c: Chrome,
    person: String,
    name: String,
    title: String,
    receipt: String,
    filing_id: i64,
    /// The confirmation had been filed already: this is the first filing.
    repeated: bool,
}

/// The persons of a counter filing the registry already knows: each party
/// of the filing (the applicant, each member moving) whose name and date
/// of birth are those of exactly one member of the applicant's household,
/// as prefilled (a name the clerk changed is left for the inbox to match).
fn counter_matches(
    def: &Definition,
    payload: &serde_json::Value,
    household: &[ResidentRecord],
) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    for p in crate::service::inbox::parties(def, payload) {
        let Some(name) = p.name.as_deref().map(str::trim) else {
            continue;
        };
        let hits: Vec<&ResidentRecord> = household
            .iter()
            .filter(|m| {
                m.name.as_str() == name
                    && p.birth_date
                        .is_none_or(|b| m.birth_date.as_calendar() == Some(b))
            })
            .collect();
        if let [one] = hits.as_slice() {
            out.insert(p.key.clone(), one.addressee_number.to_string());
        }
    }
    out
}

// --------------------------------------------------------------- handlers

/// The applicant's record and household, read for the counter (each read
/// in the access log, with the support-measure guard, j440).
async fn applicant(
    s: &AppState,
    ctx: &Ctx,
    tenant: &MunicipalityCode,
    person: &str,
) -> Result<(AddresseeNumber, ResidentRecord, Vec<ResidentRecord>), Response> {
    let a: AddresseeNumber = person.parse().map_err(|e| {
        let e: &dyn machi_domain::error::Localized = &e;
        ctx.error(&e.into())
    })?;
    let actor = ctx.caller.actor();
    let (row, _) = s
        .registry
        .resident(tenant, &a, AsOf::default(), &actor)
        .await
        .map_err(|e| ctx.refused(e, &format!("宛名番号 {a}"), &format!("addressee {a}")))?;
    if !row.record.status.is_resident() {
        return Err(ctx.error(&UiError {
            status: axum::http::StatusCode::CONFLICT,
            ja: "住民でない方の手続は窓口申請で受け付けられません。".into(),
            en: "a procedure can be filed at the counter only for a current resident".into(),
        }));
    }
    let household = s
        .registry
        .household(
            tenant,
            &row.record.household_number,
            AsOf::default(),
            &actor,
        )
        .await
        .map_err(|e| ctx.refused(e, "世帯", "household"))?
        .into_iter()
        .map(|r| r.record)
        .collect();
    Ok((a, row.record, household))
}

fn not_published(ctx: &Ctx) -> Response {
    ctx.error(&UiError {
        status: axum::http::StatusCode::NOT_FOUND,
        ja: "その手続は公開されていません。".into(),
        en: "no such published procedure".into(),
    })
}

/// GET /ui/residents/{addressee_number}/counter: the procedures to open.
pub async fn choose(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(person): Path<String>,
) -> Response {
    let (ctx, tenant) = match Ctx::for_page(&s, &headers, Permission::EnterChange).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let (a, r, _) = match applicant(&s, &ctx, &tenant, &person).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let l = plang(&ctx);
    let list = match procedures(&s, &ctx, &tenant).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    html(&ChoosePage {
        c: Chrome::new(
            &ctx,
            "窓口で申請を受け付ける",
            "File a procedure at the counter",
        ),
        person: a.to_string(),
        name: r.name.as_str().to_owned(),
        procedures: list
            .iter()
            .map(|d| {
                (
                    d.id().to_owned(),
                    d.procedure.title.get(l).to_owned(),
                    d.procedure
                        .summary
                        .as_ref()
                        .map(|s| s.get(l).to_owned())
                        .unwrap_or_default(),
                )
            })
            .collect(),
    })
}

#[allow(clippy::too_many_arguments)]
fn render_form(
    ctx: &Ctx,
    a: &AddresseeNumber,
    r: &ResidentRecord,
    def: &Definition,
    state: &Answers,
    identity: &IdentityInput,
    problems: Vec<Problem>,
    eras: &EraTable,
) -> Response {
    let l = plang(ctx);
    let answers = answers_of(def, state);
    let sections = def
        .visible_pages(&answers)
        .into_iter()
        .map(|p| SectionView {
            title: p.title.get(l).to_owned(),
            fields: def
                .visible_fields(p, &answers)
                .into_iter()
                .map(|f| field_view(f, f.id(), state, &problems, l, eras))
                .collect(),
        })
        .collect();
    let mut c = Chrome::new(
        ctx,
        &format!("{}（窓口申請）", def.procedure.title.ja),
        &format!("{} (at the counter)", def.procedure.title.get(PLang::En)),
    );
    if !problems.is_empty() {
        c.title = format!("{}{}", ctx.lang.t("エラー：", "Error: "), c.title);
    }
    let anonymous = def.action_kind() == machi_procedures::ActionKind::Survey;
    html(&FormPage {
        c,
        person: a.to_string(),
        name: r.name.as_str().to_owned(),
        procedure: def.id().to_owned(),
        identity: (!anonymous).then(|| identity_view(identity, &problems, ctx)),
        sections,
        problems: problems.into_iter().map(|p| (p.input, p.message)).collect(),
    })
}

/// GET /ui/residents/{addressee_number}/counter/{procedure}: the form,
/// prefilled from the registry.
pub async fn form(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path((person, id)): Path<(String, String)>,
) -> Response {
    let (ctx, tenant) = match Ctx::for_page(&s, &headers, Permission::EnterChange).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let def = match procedure(&s, &ctx, &tenant, &id).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let (a, r, household) = match applicant(&s, &ctx, &tenant, &person).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let eras = s.registry.eras().clone();
    let state = prefill(&def, &r, &household, s.registry.today(), &eras);
    render_form(
        &ctx,
        &a,
        &r,
        &def,
        &state,
        &IdentityInput::default(),
        vec![],
        &eras,
    )
}

/// POST /ui/residents/{addressee_number}/counter/{procedure}: `step`
/// `check` (the applicant's confirmation view, or the form with its
/// problems), `edit` (the form again, as entered) or `file` (stored).
pub async fn submit(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path((person, id)): Path<(String, String)>,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let f = FormData(form);
    let (ctx, tenant) = match Ctx::for_form(&s, &headers, &f, Permission::EnterChange).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let def = match procedure(&s, &ctx, &tenant, &id).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let (a, r, household) = match applicant(&s, &ctx, &tenant, &person).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let eras = s.registry.eras().clone();
    let state = posted_state(&f);
    let identity = identity_input(&f);
    let step = f.text("step");
    if step == "edit" {
        return render_form(&ctx, &a, &r, &def, &state, &identity, vec![], &eras);
    }
    let l = plang(&ctx);
    let check = CheckContext::new(s.registry.today());
    let anonymous = def.action_kind() == machi_procedures::ActionKind::Survey;
    let others = household_names(&r, &household);
    // The identity check first (the clerk does it first), then the answers.
    let mut found: Vec<Problem> = if anonymous {
        vec![]
    } else {
        match identity.check(r.name.as_str(), &others) {
            Ok(_) => vec![],
            Err(ps) => ps
                .into_iter()
                .map(|p| Problem {
                    input: identity_input_id(p.input),
                    message: if ctx.lang.en {
                        p.message_en
                    } else {
                        p.message_ja
                    },
                })
                .collect(),
        }
    };
    found.extend(problems(&def, &state, &check, l));
    if !found.is_empty() {
        return render_form(&ctx, &a, &r, &def, &state, &identity, found, &eras);
    }
    let answers = answers_of(&def, &state);
    // Filed only with the confirmation's one-time token; without one (an
    // old or hand-made form) the applicant's confirmation is shown again.
    let once = f.text("once");
    if step == "file" && counter_filing::confirmation_token(&once).is_some() {
        let documents_seen = def
            .fields()
            .filter(|(_, x)| x.kind() == FieldKind::File)
            .map(|(_, x)| x.id().to_owned())
            .filter(|k| state.get(&format!("{k}.seen")).map(String::as_str) == Some("yes"))
            .collect();
        let payload = def.filing_payload(&answers, &check);
        let matches = counter_matches(&def, &payload, &household);
        let filing = CounterFiling {
            applicant: a.clone(),
            procedure: def.id().to_owned(),
            version: def.version(),
            answers: payload,
            documents_seen,
            clerk_name: ctx.display_name.clone(),
            anonymous,
            identity: (!anonymous).then(|| identity.clone()),
            applicant_name: r.name.as_str().to_owned(),
            household: others,
            once,
            matches,
        };
        return match s
            .registry
            .file_at_counter(&tenant, filing, &ctx.caller.actor())
            .await
        {
            Ok(done) => html(&DonePage {
                c: Chrome::new(&ctx, "窓口申請を受け付けました", "Filed at the counter"),
                person: a.to_string(),
                name: r.name.as_str().to_owned(),
                title: def.procedure.title.get(l).to_owned(),
                receipt: done.receipt,
                filing_id: done.filing_id,
                repeated: done.repeated,
            }),
            Err(e) => ctx.refused(e, &format!("宛名番号 {a}"), &format!("addressee {a}")),
        };
    }
    // The applicant's view: what will be filed, nothing staff-only.
    let mut rows = Vec::new();
    for p in def.visible_pages(&answers) {
        for fld in def.visible_fields(p, &answers) {
            let shown = if fld.kind() == FieldKind::File {
                if state.get(&format!("{}.seen", fld.id())).map(String::as_str) == Some("yes") {
                    vec![
                        l.t(
                            "窓口で原本を確認しました",
                            "窓口で原本を確認しました",
                            "Original seen at the counter",
                        )
                        .to_owned(),
                    ]
                } else {
                    vec![]
                }
            } else {
                def.display_answer(fld, fld.id(), &answers, &check, l)
            };
            if !shown.is_empty() {
                rows.push((fld.label.get(l).to_owned(), shown));
            }
        }
    }
    // How identity was checked, for the applicant to see too.
    if !anonymous && let Ok(i) = identity.check(r.name.as_str(), &others) {
        let en = ctx.lang.en;
        for (lja, len, vja, ven) in i.describe() {
            rows.push((
                ctx.lang.t(lja, len).to_owned(),
                vec![if en { ven } else { vja }],
            ));
        }
    }
    let mut hidden: Vec<(String, String)> = state
        .into_iter()
        .map(|(k, v)| (format!("a.{k}"), v))
        .collect();
    if !anonymous {
        hidden.extend(identity_hidden(&identity));
    }
    match counter_filing::new_confirmation_token() {
        Ok(t) => hidden.push(("once".into(), t)),
        Err(e) => return ctx.error(&e.into()),
    }
    html(&ConfirmPage {
        l: ctx.lang,
        csrf: ctx.csrf.clone(),
        person: a.to_string(),
        procedure: def.id().to_owned(),
        title: def.procedure.title.get(l).to_owned(),
        department: def
            .procedure
            .department
            .as_ref()
            .map(|d| d.get(l).to_owned())
            .unwrap_or_default(),
        tenant_name: ctx.tenant_name.clone(),
        rows,
        hidden,
    })
}
