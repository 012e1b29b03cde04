//! `machi migrate rehearse`: a migration rehearsal for a CIO. It compares a
//! full load (everything, at cutover) with an incremental one (everything
//! earlier, then only the difference at cutover) on the same data, and
//! reports time, rows/s, problems found and the downtime each needs.

use std::path::Path;

use chrono::Duration;
use machi_domain::change::{ChangeCommand, ChangeMeta, ChangeRequest};
use machi_domain::ids::MunicipalityCode;

use super::export::{export, export_since};
use super::import::{ImportOptions, ImportReport, Outcome, import};
use crate::service::{Actor, Registry};
use crate::synth::{Synth, TOWNS};

/// One measured step.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Step {
    pub what: String,
    pub rows: u64,
    pub seconds: f64,
    pub validate_seconds: f64,
    pub problems: u64,
}

impl Step {
    fn from_report(what: &str, r: &ImportReport) -> Step {
        Step {
            what: what.to_string(),
            rows: r.rows_written,
            seconds: r.validate_seconds + r.load_seconds,
            validate_seconds: r.validate_seconds,
            problems: r.problem_count,
        }
    }

    pub fn rate(&self) -> f64 {
        self.rows as f64 / self.seconds.max(1e-9)
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Rehearsal {
    pub residents: u64,
    pub history_rows: u64,
    pub changed_households: u64,
    pub full: Step,
    pub incremental_initial: Step,
    pub incremental_cutover: Step,
}

fn tenant(code: &str) -> anyhow::Result<MunicipalityCode> {
    code.parse().map_err(|e| anyhow::anyhow!("{e:?}"))
}

/// Runs the rehearsal on `source` (a tenant already holding the old
/// system's data, e.g. imported from a generated population): exports it
/// (the initial extract), applies `changes` household moves (the changes
/// between the extract and cutover), exports again (the cutover extract),
/// then loads both ways into fresh tenants.
pub async fn rehearse(
    registry: &Registry,
    source: &MunicipalityCode,
    work: &Path,
    changes: usize,
) -> anyhow::Result<Rehearsal> {
    let actor = Actor::system("rehearsal");
    let initial = work.join("initial");
    let cutover = work.join("cutover");
    let first = export(registry, source, &initial, &actor).await?;
    // The changes that happen while the old system still runs.
    let mut synth = Synth::new(7);
    let today = registry.today();
    let town = &TOWNS[0];
    let page = registry
        .search(
            source,
            &crate::service::registry::SearchParams {
                address: Some(town.name.to_string()),
                limit: 200,
                ..Default::default()
            },
            &actor,
        )
        .await?;
    let mut moved = 0u64;
    let mut households: Vec<String> = page
        .rows
        .iter()
        .map(|r| r.record.household_number.to_string())
        .collect();
    households.sort();
    households.dedup();
    for h in households.iter().take(changes) {
        let members = registry
            .household(source, &h.parse()?, Default::default(), &actor)
            .await?;
        let req = ChangeRequest {
            meta: ChangeMeta {
                effective_date: (today - Duration::days(1)).to_string(),
                filed_on: None,
                input_place: "rehearsal".into(),
                input_terminal: "R-1".into(),
                allow_headless_household: false,
            },
            command: ChangeCommand::MoveWithin {
                persons: members
                    .iter()
                    .map(|m| m.record.addressee_number.to_string())
                    .collect(),
                address: synth.address(town),
                household: None,
            },
        };
        registry.submit(source, &req, &actor).await?;
        moved += 1;
    }
    // The cutover extract: everything (for the full load) and only what
    // changed since the initial extract (for the incremental one).
    export(registry, source, &cutover, &actor).await?;
    let difference = work.join("difference");
    export_since(
        registry,
        source,
        &difference,
        Some(first.last_change_id),
        &actor,
    )
    .await?;

    let (full_t, inc_t) = (tenant("131016")?, tenant("131024")?);
    for (code, name) in [
        (&full_t, "リハーサル（一括）"),
        (&inc_t, "リハーサル（差分）"),
    ] {
        if registry.tenant(code).await.is_err() {
            registry.create_tenant(code.clone(), name, "東京都").await?;
        }
    }
    let opts = ImportOptions::default();
    let full = import(
        registry,
        &full_t,
        std::slice::from_ref(&cutover),
        &opts,
        &actor,
    )
    .await?;
    let inc1 = import(
        registry,
        &inc_t,
        std::slice::from_ref(&initial),
        &opts,
        &actor,
    )
    .await?;
    let inc2 = import(
        registry,
        &inc_t,
        std::slice::from_ref(&difference),
        &opts,
        &actor,
    )
    .await?;
    for r in [&full, &inc1, &inc2] {
        if r.outcome != Outcome::Imported {
            anyhow::bail!(
                "rehearsal import ended {:?}: {:?}",
                r.outcome,
                r.problems.first()
            );
        }
    }
    Ok(Rehearsal {
        residents: full.persons,
        history_rows: first.history_rows,
        changed_households: moved,
        full: Step::from_report("full load at cutover", &full),
        incremental_initial: Step::from_report(
            "incremental: initial load (old system still running)",
            &inc1,
        ),
        incremental_cutover: Step::from_report("incremental: difference at cutover", &inc2),
    })
}

/// The report, in Japanese and English, as a CIO reads it.
pub fn print(r: &Rehearsal) {
    println!("移行リハーサル / migration rehearsal");
    println!(
        "  住民 {} 人、履歴 {} 行、抽出後の異動 {} 世帯 / {} residents, {} history rows, {} households changed after the extract",
        r.residents,
        r.history_rows,
        r.changed_households,
        r.residents,
        r.history_rows,
        r.changed_households
    );
    println!(
        "  {:<52} {:>10} {:>9} {:>10} {:>12} {:>8}",
        "step", "rows", "seconds", "validate", "rows/s", "problems"
    );
    for s in [&r.full, &r.incremental_initial, &r.incremental_cutover] {
        println!(
            "  {:<52} {:>10} {:>9.2} {:>10.2} {:>12.0} {:>8}",
            s.what,
            s.rows,
            s.seconds,
            s.validate_seconds,
            s.rate(),
            s.problems
        );
    }
    println!(
        "  業務停止時間（切替時の取込み）/ downtime at cutover: 一括 full {:.2} s, 差分 incremental {:.2} s",
        r.full.seconds, r.incremental_cutover.seconds
    );
    println!(
        "  どちらも検証で問題があれば何も取り込まず、同じ取込みの再実行は何も変えません。/ Both refuse everything on any problem; re-running changes nothing."
    );
}
