//! Survey results (issue 11, item 1: 「アンケート … with aggregated
//! results」): how many respondents chose each option of each counted
//! question of a survey procedure (`[action] kind = "survey"`, the fields
//! its `aggregate` names), per tenant and per definition version, with
//! percentages.
//!
//! - Computed from the stored filings each time (no separate counter to
//!   drift): one row per stored filing, and a filing imported twice is
//!   stored once (`(tenant, portal_id)` is unique), so it is counted once.
//! - **Counted without approval.** A survey asks no identity and changes
//!   nothing; requiring a clerk to approve each answer would be work for
//!   nothing. Every imported answer counts as soon as it is imported,
//!   except one a clerk rejected (a test answer, a duplicate): rejecting
//!   is how staff take an answer out of the results.
//! - **Only on versions the tenant stands behind.** Answers made on a
//!   version of the tenant's own definition its administrator has not
//!   accepted (awaiting a decision, refused, or the acceptance withdrawn,
//!   [`procedure_definitions::Trust`]) are not counted: the back office
//!   does not act on such a version's filings, and a version refused
//!   because it is not the tenant's text must not shape its results.
//!   They are reported as a number ([`SurveyResults::not_accepted`]) and
//!   counted as soon as the version is accepted. There is no filing
//!   status for a withdrawn filing (a citizen does not withdraw one;
//!   staff reject it), so rejection is the only status left out.
//! - Anonymous: only counts leave this module; no answer, free text
//!   (`comment`) or receipt number is shown, and a survey names no person
//!   to match (see `inbox::parties`).

use std::sync::Arc;

use machi_domain::ids::MunicipalityCode;
use machi_procedures::{ActionKind, Definition, FieldKind, Lang};
use serde_json::Value;

use super::inbox::FilingStatus;
use super::registry::{Registry, ServiceError};
use crate::store::{portal_filings, procedure_definitions};

/// One option's count.
#[derive(Debug, Clone, PartialEq)]
pub struct OptionCount {
    pub value: String,
    pub label_ja: String,
    pub label_en: String,
    pub count: u64,
    /// Of the respondents asked this question (0 when none), in percent.
    pub percent: f64,
}

/// One counted question.
#[derive(Debug, Clone, PartialEq)]
pub struct QuestionCount {
    pub field: String,
    pub label_ja: String,
    pub label_en: String,
    /// Several options may be chosen (percentages then add up to more
    /// than 100).
    pub multiple: bool,
    /// Respondents who answered it.
    pub answered: u64,
    /// Respondents who did not (it was optional, or not shown to them).
    pub unanswered: u64,
    pub options: Vec<OptionCount>,
}

/// The counts of one definition version, or of all versions together.
#[derive(Debug, Clone, PartialEq)]
pub struct SurveyCounts {
    /// None: every version together.
    pub version: Option<i64>,
    /// Answers counted (every imported one but the rejected).
    pub respondents: u64,
    /// Answers a clerk rejected (not counted).
    pub rejected: u64,
    pub questions: Vec<QuestionCount>,
}

/// A survey's results for one tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct SurveyResults {
    pub procedure: String,
    pub title_ja: String,
    pub title_en: String,
    /// Every version together (the newest version's questions and labels;
    /// each question counted over the versions that ask it).
    pub total: SurveyCounts,
    /// Each version with answers or published, newest first (the
    /// versions counted only).
    pub versions: Vec<SurveyCounts>,
    /// Answers on versions the tenant administrator has not accepted
    /// (awaiting a decision, refused, or the acceptance withdrawn): not
    /// counted, whatever their status.
    pub not_accepted: u64,
}

/// A survey a tenant knows: (id, Japanese title, English title).
pub type SurveyRef = (String, String, String);

fn percent(n: u64, of: u64) -> f64 {
    if of == 0 {
        0.0
    } else {
        // One decimal place, as the page shows it.
        ((n as f64) * 1000.0 / (of as f64)).round() / 10.0
    }
}

/// The values a field may take and their labels.
fn options_of(f: &machi_procedures::Field) -> Vec<(String, String, String)> {
    if f.kind() == FieldKind::YesNo {
        vec![
            ("true".into(), "はい".into(), "Yes".into()),
            ("false".into(), "いいえ".into(), "No".into()),
        ]
    } else {
        f.options
            .iter()
            .map(|o| {
                (
                    o.value.clone(),
                    o.label.ja.clone(),
                    o.label.get(Lang::En).to_owned(),
                )
            })
            .collect()
    }
}

fn chose(answer: &Value, value: &str) -> bool {
    match answer {
        Value::String(s) => s == value,
        Value::Bool(b) => (if *b { "true" } else { "false" }) == value,
        Value::Array(a) => a.iter().any(|x| x.as_str() == Some(value)),
        _ => false,
    }
}

fn answered(answer: &Value) -> bool {
    match answer {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        _ => true,
    }
}

/// Counts `answers` (each one respondent's answers) for the questions of
/// `def`'s `aggregate`. `asked(field)`: how many respondents were asked
/// that question (for every version together, those whose version has it).
fn count(
    def: &Definition,
    answers: &[(&Definition, &Value)],
    version: Option<i64>,
    rejected: u64,
) -> SurveyCounts {
    let mut questions = Vec::new();
    for id in &def.action.aggregate {
        let Some(f) = def.field(id) else { continue };
        let asked: Vec<&Value> = answers
            .iter()
            .filter(|(d, _)| d.field(id).is_some())
            .map(|(_, a)| &a[id.as_str()])
            .collect();
        let base = asked.len() as u64;
        let done = asked.iter().filter(|a| answered(a)).count() as u64;
        let options = options_of(f)
            .into_iter()
            .map(|(value, label_ja, label_en)| {
                let n = asked.iter().filter(|a| chose(a, &value)).count() as u64;
                OptionCount {
                    percent: percent(n, base),
                    value,
                    label_ja,
                    label_en,
                    count: n,
                }
            })
            .collect();
        questions.push(QuestionCount {
            field: id.clone(),
            label_ja: f.label.ja.clone(),
            label_en: f.label.get(Lang::En).to_owned(),
            multiple: f.kind() == FieldKind::Choices,
            answered: done,
            unanswered: base - done,
            options,
        });
    }
    SurveyCounts {
        version,
        respondents: answers.len() as u64,
        rejected,
        questions,
    }
}

/// Counts the stored answers of a survey: per version (each with its own
/// definition) and all versions together (the newest definition's
/// questions). Answers on a version the back office does not know are
/// left out of the counts (none with a current portal: every version is
/// imported with its filings).
pub fn tally(
    defs: &[Arc<Definition>],
    rows: &[(i64, String, Value)],
) -> Option<(Arc<Definition>, SurveyCounts, Vec<SurveyCounts>)> {
    let newest = defs.iter().max_by_key(|d| d.version())?.clone();
    let rejected_code = FilingStatus::Rejected.code();
    let def_of = |v: i64| defs.iter().find(|d| i64::from(d.version()) == v);
    let mut all: Vec<(&Definition, &Value)> = Vec::new();
    let mut total_rejected = 0;
    let mut versions = Vec::new();
    let mut vs: Vec<i64> = defs.iter().map(|d| i64::from(d.version())).collect();
    vs.sort_unstable_by(|a, b| b.cmp(a));
    for v in vs {
        let Some(def) = def_of(v) else { continue };
        let of_v: Vec<&(i64, String, Value)> = rows.iter().filter(|r| r.0 == v).collect();
        let rejected = of_v.iter().filter(|r| r.1 == rejected_code).count() as u64;
        let counted: Vec<(&Definition, &Value)> = of_v
            .iter()
            .filter(|r| r.1 != rejected_code)
            .map(|r| (def.as_ref(), &r.2))
            .collect();
        total_rejected += rejected;
        all.extend(counted.iter().copied());
        versions.push(count(def, &counted, Some(v), rejected));
    }
    let total = count(&newest, &all, None, total_rejected);
    Some((newest, total, versions))
}

impl Registry {
    /// The surveys a tenant knows (shipped and its own published ones).
    pub async fn surveys(&self, tenant: &MunicipalityCode) -> Result<Vec<SurveyRef>, ServiceError> {
        self.ensure_tenant(tenant).await?;
        let t = tenant.clone();
        let defs = self
            .store()
            .read(Some(tenant), move |tx| {
                Ok::<_, ServiceError>(procedure_definitions::all(tx, &t)?)
            })
            .await?;
        let surveys: Vec<Arc<Definition>> = defs
            .into_iter()
            .filter(|d| d.action_kind() == ActionKind::Survey)
            .collect();
        Ok(super::inbox::procedures_of(&surveys))
    }

    /// A survey's results for a tenant, counted from the stored filings.
    /// None when the tenant knows no survey with this id.
    pub async fn survey_results(
        &self,
        tenant: &MunicipalityCode,
        procedure: &str,
    ) -> Result<Option<SurveyResults>, ServiceError> {
        self.ensure_tenant(tenant).await?;
        let (t, p) = (tenant.clone(), procedure.to_owned());
        let (defs, rows) = self
            .store()
            .read(Some(tenant), move |tx| {
                let mut defs: Vec<(Arc<Definition>, bool)> = Vec::new();
                for d in procedure_definitions::all(tx, &t)? {
                    if d.id() != p || d.action_kind() != ActionKind::Survey {
                        continue;
                    }
                    let trust = procedure_definitions::trust(tx, &t, &p, i64::from(d.version()))?;
                    defs.push((d, trust.approvable()));
                }
                if defs.is_empty() {
                    return Ok::<_, ServiceError>((defs, vec![]));
                }
                let rows = portal_filings::answers_of_procedure(tx, &t, &p)?;
                Ok((defs, rows))
            })
            .await?;
        let Some(newest_known) = defs.iter().map(|(d, _)| d).max_by_key(|d| d.version()) else {
            return Ok(None);
        };
        let newest_known = newest_known.clone();
        let counted: Vec<Arc<Definition>> = defs
            .iter()
            .filter(|(_, ok)| *ok)
            .map(|(d, _)| d.clone())
            .collect();
        let held: Vec<i64> = defs
            .iter()
            .filter(|(_, ok)| !*ok)
            .map(|(d, _)| i64::from(d.version()))
            .collect();
        let not_accepted = rows.iter().filter(|r| held.contains(&r.0)).count() as u64;
        let rows: Vec<(i64, String, Value)> =
            rows.into_iter().filter(|r| !held.contains(&r.0)).collect();
        // No version accepted yet: nothing is counted (every answer is on
        // a held version); the newest version's questions, with zeros.
        let none_counted = counted.is_empty();
        let base = if none_counted {
            vec![newest_known]
        } else {
            counted
        };
        let Some((newest, total, mut versions)) = tally(&base, &rows) else {
            return Ok(None);
        };
        if none_counted {
            versions.clear();
        }
        Ok(Some(SurveyResults {
            procedure: procedure.to_owned(),
            title_ja: newest.procedure.title.ja.clone(),
            title_en: newest.procedure.title.get(Lang::En).to_owned(),
            total,
            versions,
            not_accepted,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn survey() -> Arc<Definition> {
        let src = machi_procedures::SHIPPED
            .iter()
            .find(|(n, _)| *n == "survey_internet.toml")
            .unwrap()
            .1;
        Arc::new(Definition::parse(src).unwrap())
    }

    #[test]
    fn counts_and_percentages_leave_out_rejected_answers() {
        let d = survey();
        let rows = vec![
            (
                1,
                "received".into(),
                json!({"age_group": "a70", "uses_internet": true, "devices": ["smartphone", "pc"]}),
            ),
            (
                1,
                "approved".into(),
                json!({"age_group": "a70", "uses_internet": false}),
            ),
            (
                1,
                "rejected".into(),
                json!({"age_group": "a80", "uses_internet": true}),
            ),
            (
                1,
                "under_review".into(),
                json!({"age_group": "a65", "uses_internet": true, "devices": ["smartphone"]}),
            ),
        ];
        let (_, total, versions) = tally(&[d], &rows).unwrap();
        assert_eq!(total.respondents, 3);
        assert_eq!(total.rejected, 1);
        assert_eq!(versions.len(), 1);
        let age = &total.questions[0];
        assert_eq!(age.field, "age_group");
        let a70 = age.options.iter().find(|o| o.value == "a70").unwrap();
        assert_eq!((a70.count, a70.percent), (2, 66.7));
        let a80 = age.options.iter().find(|o| o.value == "a80").unwrap();
        assert_eq!(a80.count, 0, "the rejected answer is not counted");
        let uses = &total.questions[1];
        assert_eq!(
            uses.options.iter().map(|o| o.count).collect::<Vec<_>>(),
            vec![2, 1]
        );
        let devices = &total.questions[2];
        assert!(devices.multiple);
        assert_eq!((devices.answered, devices.unanswered), (2, 1));
        let phone = devices
            .options
            .iter()
            .find(|o| o.value == "smartphone")
            .unwrap();
        assert_eq!((phone.count, phone.percent), (2, 66.7));
    }

    #[test]
    fn no_answers_is_zero_not_a_division_by_zero() {
        let (_, total, _) = tally(&[survey()], &[]).unwrap();
        assert_eq!(total.respondents, 0);
        assert!(
            total
                .questions
                .iter()
                .all(|q| q.options.iter().all(|o| o.percent == 0.0))
        );
        assert!(tally(&[], &[]).is_none());
    }
}
