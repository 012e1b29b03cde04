//! アンケート集計 in the staff UI (issue 11, item 1): a survey's answers
//! counted per question and option, with percentages, for the tenant, all
//! versions together and each definition version. Counts only: no answer,
//! free text or receipt number is shown (see `service::surveys`).

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::{Chrome, Ctx, UiError, html};
use crate::api::AppState;
use crate::service::inbox::roles;
use crate::service::surveys::{QuestionCount, SurveyCounts};

struct OptionRow {
    label: String,
    count: u64,
    percent: String,
}

struct Question {
    id: String,
    label: String,
    multiple: bool,
    unanswered: u64,
    options: Vec<OptionRow>,
}

struct Section {
    id: String,
    heading: String,
    respondents: u64,
    rejected: u64,
    questions: Vec<Question>,
}

#[derive(Template)]
#[template(path = "surveys.html")]
struct SurveysPage {
    c: Chrome,
    surveys: Vec<(String, String)>,
    title: Option<String>,
    sections: Vec<Section>,
    /// Answers on versions not accepted by the administrator (not counted).
    not_accepted: u64,
}

/// 66.7 → 「66.7%」.
fn percent(p: f64) -> String {
    format!("{p:.1}%")
}

fn question(q: &QuestionCount, en: bool) -> Question {
    Question {
        id: q.field.clone(),
        label: if en {
            q.label_en.clone()
        } else {
            q.label_ja.clone()
        },
        multiple: q.multiple,
        unanswered: q.unanswered,
        options: q
            .options
            .iter()
            .map(|o| OptionRow {
                label: if en {
                    o.label_en.clone()
                } else {
                    o.label_ja.clone()
                },
                count: o.count,
                percent: percent(o.percent),
            })
            .collect(),
    }
}

fn section(c: &SurveyCounts, en: bool) -> Section {
    let (id, heading) = match c.version {
        None => (
            "all".to_string(),
            if en {
                "All versions".to_string()
            } else {
                "全体（すべての版）".to_string()
            },
        ),
        Some(v) => (
            format!("v{v}"),
            if en {
                format!("Version {v}")
            } else {
                format!("第{v}版")
            },
        ),
    };
    Section {
        id,
        heading,
        respondents: c.respondents,
        rejected: c.rejected,
        questions: c.questions.iter().map(|q| question(q, en)).collect(),
    }
}

/// The surveys the tenant knows, each a link to its results.
pub async fn list(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let (ctx, tenant) = match Ctx::for_page(&s, &headers, roles::READ).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let surveys = match s.registry.surveys(&tenant).await {
        Ok(v) => v,
        Err(e) => return ctx.error(&UiError::from(e)),
    };
    let en = ctx.lang.en;
    html(&SurveysPage {
        c: Chrome::new(&ctx, "アンケート集計", "Survey results"),
        surveys: surveys
            .into_iter()
            .map(|(id, ja, e)| (id, if en { e } else { ja }))
            .collect(),
        title: None,
        not_accepted: 0,
        sections: vec![],
    })
}

/// One survey's results: all versions together, then each version.
pub async fn results(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(procedure): Path<String>,
) -> Response {
    let (ctx, tenant) = match Ctx::for_page(&s, &headers, roles::READ).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let found = match s.registry.survey_results(&tenant, &procedure).await {
        Ok(r) => r,
        Err(e) => return ctx.error(&UiError::from(e)),
    };
    let Some(r) = found else {
        return ctx.error(&UiError {
            status: StatusCode::NOT_FOUND,
            ja: "そのアンケートはありません。".into(),
            en: "no such survey".into(),
        });
    };
    let en = ctx.lang.en;
    let mut sections = vec![section(&r.total, en)];
    if r.versions.len() > 1 {
        sections.extend(r.versions.iter().map(|v| section(v, en)));
    }
    html(&SurveysPage {
        c: Chrome::new(&ctx, "アンケート集計", "Survey results"),
        surveys: vec![],
        title: Some(if en { r.title_en } else { r.title_ja }),
        sections,
        not_accepted: r.not_accepted,
    })
}
