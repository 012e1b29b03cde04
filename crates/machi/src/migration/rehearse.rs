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

/// One measured step: an extract from the old system, then its load.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Step {
    pub what_ja: String,
    pub what_en: String,
    pub rows: u64,
    /// Writing the extract (the old system's side).
    pub extract_seconds: f64,
    /// Importing it: reading, validating, writing, committing.
    pub load_seconds: f64,
    pub outcome: Outcome,
    pub problems: u64,
    /// The first problems, as `file:row column: message`.
    pub first_problems: Vec<String>,
}

impl Step {
    fn new(ja: &str, en: &str, extract_seconds: f64, r: &ImportReport) -> Step {
        Step {
            what_ja: ja.to_string(),
            what_en: en.to_string(),
            rows: r.rows_written,
            extract_seconds,
            load_seconds: r.validate_seconds + r.load_seconds,
            outcome: r.outcome,
            problems: r.problem_count,
            first_problems: r.problems.iter().take(5).map(ToString::to_string).collect(),
        }
    }

    /// Rows loaded per second.
    pub fn rate(&self) -> f64 {
        self.rows as f64 / self.load_seconds.max(1e-9)
    }

    /// Extract and load: what the step takes end to end.
    pub fn seconds(&self) -> f64 {
        self.extract_seconds + self.load_seconds
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Rehearsal {
    pub residents: u64,
    pub history_rows: u64,
    pub changed_households: u64,
    /// Households asked to change (fewer change if fewer live there).
    pub asked_households: u64,
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
    let started = std::time::Instant::now();
    let first = export(registry, source, &initial, &actor).await?;
    let initial_extract = started.elapsed().as_secs_f64();
    // The changes that happen while the old system still runs.
    let mut synth = Synth::new(7);
    let today = registry.today();
    let town = &TOWNS[0];
    // Households of the initial extract's residents (each person's latest
    // row), whatever the town.
    let mut households: Vec<String> = Vec::new();
    {
        let mut reader = csv::Reader::from_path(initial.join(super::layout::RESIDENTS_FILE))?;
        let header = reader.headers()?.clone();
        let column = |name: &str| header.iter().position(|h| h == name).unwrap_or(0);
        let (person, household, status) = (
            column("addressee_number"),
            column("household_number"),
            column("status"),
        );
        let mut latest: Option<csv::StringRecord> = None;
        let mut take = |r: &csv::StringRecord| {
            if &r[status] == "resident" {
                households.push(r[household].to_string());
            }
        };
        for row in reader.records() {
            let row = row?;
            if let Some(l) = &latest
                && l[person] != row[person]
            {
                take(l);
            }
            latest = Some(row);
        }
        if let Some(l) = &latest {
            take(l);
        }
    }
    let mut moved = 0u64;
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
    let started = std::time::Instant::now();
    export(registry, source, &cutover, &actor).await?;
    let full_extract = started.elapsed().as_secs_f64();
    let difference = work.join("difference");
    let started = std::time::Instant::now();
    export_since(
        registry,
        source,
        &difference,
        Some(first.last_change_id),
        &actor,
    )
    .await?;
    let difference_extract = started.elapsed().as_secs_f64();

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
    // A refused step is a finding, reported with its problems.
    Ok(Rehearsal {
        residents: full.persons,
        history_rows: first.history_rows,
        changed_households: moved,
        asked_households: changes as u64,
        full: Step::new(
            "一括：切替時に全件",
            "full: everything at cutover",
            full_extract,
            &full,
        ),
        incremental_initial: Step::new(
            "差分：事前に全件（旧システム稼働中）",
            "incremental: everything beforehand (old system running)",
            initial_extract,
            &inc1,
        ),
        incremental_cutover: Step::new(
            "差分：切替時に差分のみ",
            "incremental: the difference at cutover",
            difference_extract,
            &inc2,
        ),
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
    if r.changed_households < r.asked_households {
        println!(
            "  注意：異動を {} 世帯で指定しましたが、住民のいる世帯は {} 世帯でした。/ note: {} households were asked to change, {} could.",
            r.asked_households, r.changed_households, r.asked_households, r.changed_households
        );
    }
    for s in [&r.full, &r.incremental_initial, &r.incremental_cutover] {
        println!("  {} / {}", s.what_ja, s.what_en);
        println!(
            "    {} 行 rows, 抽出 extract {:.2} s, 取込 load {:.2} s, {:.0} 行/秒 rows/s, 問題 problems {}",
            s.rows,
            s.extract_seconds,
            s.load_seconds,
            s.rate(),
            s.problems
        );
        if s.outcome == Outcome::Refused {
            println!("    取り込めませんでした / refused:");
            for p in &s.first_problems {
                println!("    {p}");
            }
        }
    }
    println!(
        "  業務停止時間（切替時の抽出と取込み）/ downtime at cutover (extract and load): 一括 full {:.2} s, 差分 incremental {:.2} s",
        r.full.seconds(),
        r.incremental_cutover.seconds()
    );
    println!(
        "  差分方式は全件の取込み（{:.2} s）を旧システム稼働中に済ませます。/ The incremental way loads everything ({:.2} s) while the old system still runs.",
        r.incremental_initial.seconds(),
        r.incremental_initial.seconds()
    );
    println!(
        "  どちらも問題が一つでもあれば何も取り込まず、同じ取込みの再実行は何も変えません。/ Both refuse everything on any problem; re-running changes nothing."
    );
}

/// Whether every step loaded (a difference with nothing new loads nothing).
pub fn all_loaded(r: &Rehearsal) -> bool {
    [&r.full, &r.incremental_initial, &r.incremental_cutover]
        .iter()
        .all(|s| matches!(s.outcome, Outcome::Imported | Outcome::Unchanged))
}
