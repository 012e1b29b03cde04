//! `machi generate`: a synthetic municipality in the migration layout
//! ([`super::layout`]), with history, for trying an import at any size.
//!
//! Households are generated one at a time. Each lives its whole life on a
//! tiny in-memory registry that holds only that household: it moves in
//! (国内転入 or 国外転入) on its move-in day, then over the years until
//! `today` a few events happen in date order (出生, 転居, 死亡 with a
//! 世帯主変更 first where j490 needs one, 国内転出/国外転出, 誤記修正). Every
//! event is planned by [`machi_domain::change::plan`], so the rows are exactly
//! those machi itself would append. Addressee numbers, household numbers and
//! change ids come from global serials in generation order, so a household's
//! persons have consecutive numbers and its rows can be written, sorted,
//! as soon as the household is done: memory stays flat whatever the size.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use chrono::{Datelike, Duration, NaiveDate};
use machi_domain::change::{
    self, AddressInput, Allocated, ChangeCommand, ChangeInfo, ChangeMeta, ChangeRequest,
    HistoryRow, HouseholdTarget, MemberRelationship, NewPerson, PlanContext, RecordPatch,
    RegistryView,
};
use machi_domain::dates::{DatePolicy, DateValue, EraTable};
use machi_domain::ids::{AddresseeNumber, HouseholdNumber};
use machi_domain::model::{ResidentKind, ResidentRecord, Sex};

use crate::migration::layout;
use crate::synth::{Synth, TOWNS, Town};

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// Stop adding households once this many distinct persons exist (the
    /// last household may overshoot a little).
    pub residents: usize,
    pub seed: u64,
    /// Index into [`crate::synth::TOWNS`]: the municipality whose addresses
    /// are used.
    pub town_index: usize,
    /// The processing day of the generated registry: no date is after it.
    pub today: NaiveDate,
}

/// What was generated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GenerateSummary {
    /// Distinct persons (宛名番号), residents or not.
    pub persons: usize,
    /// Rows of residents.csv.
    pub history_rows: usize,
    /// Current households (rows of households.csv).
    pub households: usize,
    /// Changes (異動), each appending one or more history rows.
    pub changes: usize,
    /// Persons who are foreign residents.
    pub foreign: usize,
    /// Non-calendar or unknown dates entered (j80): birth dates of new
    /// persons and 異動日.
    pub irregular_dates: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("CSV error: {0}")]
    Csv(#[from] csv::Error),
    #[error("cannot generate: {0}")]
    Plan(String),
}

const INPUT_PLACE: &str = "移行";
const INPUT_TERMINAL: &str = "GEN";

/// Yearly rates of the events a household may go through.
const MOVE_OUT_RATE: f64 = 0.02;
const MOVE_OUT_RATE_FOREIGN: f64 = 0.10;
const MOVE_WITHIN_RATE: f64 = 0.025;
const BIRTH_RATE: f64 = 0.12;
const MAX_BIRTHS: usize = 3;
const KANA_CORRECTION_RATE: f64 = 0.5;
const BIRTH_DATE_CORRECTION_RATE: f64 = 0.003;
/// Share of households with a furigana entered wrong at move-in (and
/// corrected later by a 誤記修正).
const MISSPELLED_KANA: f64 = 0.015;
/// Share of deaths entered with a year-only date (「令和3年頃」).
const UNKNOWN_DEATH_DATE: f64 = 0.06;
/// Share of persons born before 1950 entered with a 和暦 year-only birth date.
const UNKNOWN_BIRTH_DATE_OLD: f64 = 0.04;
/// Share of persons entered with 2/29 of a non-leap year as birth date.
const NON_CALENDAR_BIRTH_DATE: f64 = 0.003;

/// Yearly probability of dying at `age`.
fn mortality(age: i32) -> f64 {
    match age {
        ..40 => 0.0005,
        40..60 => 0.003,
        60..70 => 0.01,
        70..80 => 0.03,
        80..90 => 0.09,
        _ => 0.2,
    }
}

/// Writes residents.csv, households.csv, support_measures.csv,
/// certificates.csv and their manifest.json for `opts` into `dir` (created
/// if missing).
pub fn generate(
    dir: &Path,
    opts: &GenerateOptions,
    eras: &EraTable,
) -> Result<GenerateSummary, GenerateError> {
    let town = TOWNS.get(opts.town_index).ok_or_else(|| {
        GenerateError::Plan(format!(
            "town index {} is out of range (0..{})",
            opts.town_index,
            TOWNS.len()
        ))
    })?;
    if !(1990..=9000).contains(&opts.today.year()) {
        return Err(GenerateError::Plan(format!(
            "today ({}) must lie between 1990 and 9000",
            opts.today
        )));
    }
    let max_persons = usize::try_from(machi_domain::ids::MAX_SERIAL).unwrap_or(usize::MAX);
    if opts.residents > max_persons {
        return Err(GenerateError::Plan(format!(
            "at most {max_persons} residents can be numbered"
        )));
    }
    std::fs::create_dir_all(dir)?;
    let mut residents = csv_writer(&dir.join(layout::RESIDENTS_FILE), layout::RESIDENT_COLUMNS)?;
    let mut households = csv_writer(
        &dir.join(layout::HOUSEHOLDS_FILE),
        layout::HOUSEHOLD_COLUMNS,
    )?;
    for (file, columns) in [
        (
            layout::SUPPORT_MEASURES_FILE,
            layout::SUPPORT_MEASURE_COLUMNS,
        ),
        (layout::CERTIFICATES_FILE, layout::CERTIFICATE_COLUMNS),
    ] {
        csv_writer(&dir.join(file), columns)?.flush()?;
    }

    let mut g = Generator {
        synth: Synth::new(opts.seed),
        town,
        eras,
        today: opts.today,
        serials: Serials::default(),
        summary: GenerateSummary::default(),
        persons: Vec::new(),
        rows: Vec::new(),
        view: RegistryView::default(),
    };
    let mut household_fields: Vec<String> = Vec::with_capacity(layout::HOUSEHOLD_COLUMNS.len());
    while g.serials.addressee < opts.residents as u64 {
        g.persons.clear();
        g.rows.clear();
        g.view.persons.clear();
        g.view.households.clear();
        g.household()?;
        g.summary.foreign += (0..g.persons.len())
            .filter(|&i| g.rec(i).kind == ResidentKind::Foreign)
            .count();
        let current = g.current_household(&mut household_fields);
        g.rows.sort_by(|a, b| {
            (&a.record.addressee_number, a.history_number)
                .cmp(&(&b.record.addressee_number, b.history_number))
        });
        for row in &g.rows {
            residents.write_record(layout::resident_fields(row))?;
        }
        g.summary.history_rows += g.rows.len();
        if current {
            households.write_record(&household_fields)?;
            g.summary.households += 1;
        }
    }
    residents.flush()?;
    households.flush()?;
    drop((residents, households));
    let mut summary = g.summary;
    summary.persons = usize::try_from(g.serials.addressee).unwrap_or(usize::MAX);
    // As an export does: an import then tells a cut or altered file.
    super::manifest::write_manifest(
        dir,
        town.code,
        format!("{}T00:00:00+09:00", opts.today),
        &[
            (layout::RESIDENTS_FILE, summary.history_rows as u64),
            (layout::HOUSEHOLDS_FILE, summary.households as u64),
            (layout::SUPPORT_MEASURES_FILE, 0),
            (layout::CERTIFICATES_FILE, 0),
        ],
    )
    .map_err(|(_, e)| GenerateError::from(e))?;
    Ok(summary)
}

fn csv_writer(
    path: &Path,
    columns: &[(&str, &str)],
) -> Result<csv::Writer<BufWriter<File>>, GenerateError> {
    let file = File::create(path)?;
    let mut w = csv::Writer::from_writer(BufWriter::with_capacity(1 << 20, file));
    w.write_record(columns.iter().map(|(key, _)| *key))?;
    Ok(w)
}

/// `YYYY-MM-DD`.
fn ymd(d: NaiveDate) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), d.month(), d.day())
}

/// Microseconds since the Unix epoch at noon JST (03:00 UTC) of `d`.
fn noon_jst_micros(d: NaiveDate) -> i64 {
    let days = i64::from(d.num_days_from_ce()) - 719_163; // 1970-01-01
    days * 86_400_000_000 + 3 * 3_600_000_000
}

/// `{元号}{年}年頃` for a year that one era covers entirely (so the text is
/// unambiguous), checked by parsing it back.
fn year_only_date(eras: &EraTable, year: i32) -> Option<String> {
    let (first, era_year) = eras.era_of(NaiveDate::from_ymd_opt(year, 1, 1)?)?;
    let (last, _) = eras.era_of(NaiveDate::from_ymd_opt(year, 12, 31)?)?;
    if first.name != last.name || era_year < 2 {
        return None;
    }
    let text = format!("{}{}年頃", first.name, era_year);
    DateValue::parse(&text, eras, DatePolicy::AllowIrregular)
        .ok()
        .filter(DateValue::is_irregular)
        .map(|_| text)
}

fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

/// A plausible slip of the pen in a furigana: ウ written ー, a 濁点 added
/// or dropped on the given name, or a stray ッ.
fn misspell_kana(kana: &str) -> Option<String> {
    const PAIRS: &[(char, char)] = &[
        ('カ', 'ガ'),
        ('キ', 'ギ'),
        ('ク', 'グ'),
        ('ケ', 'ゲ'),
        ('コ', 'ゴ'),
        ('サ', 'ザ'),
        ('シ', 'ジ'),
        ('ス', 'ズ'),
        ('タ', 'ダ'),
        ('ト', 'ド'),
        ('ハ', 'バ'),
        ('ヒ', 'ビ'),
        ('ホ', 'ボ'),
    ];
    let (family, given) = kana.split_once('　')?;
    let mut chars: Vec<char> = given.chars().collect();
    let last = chars.len().checked_sub(1)?;
    if chars[last] == 'ウ' {
        chars[last] = 'ー';
    } else if let Some(&(a, b)) = PAIRS.iter().find(|(a, b)| chars[0] == *a || chars[0] == *b) {
        chars[0] = if chars[0] == a { b } else { a };
    } else {
        chars.insert(last, 'ッ');
    }
    let given: String = chars.into_iter().collect();
    Some(format!("{family}　{given}"))
}

#[derive(Debug, Default)]
struct Serials {
    addressee: u64,
    household: u64,
    change: i64,
}

/// The 異動日 of an event: a calendar day, or an irregular text (processed
/// on `today`).
enum Effective {
    Day(NaiveDate),
    Text(String),
}

struct Generator<'a> {
    synth: Synth,
    town: &'a Town,
    eras: &'a EraTable,
    today: NaiveDate,
    serials: Serials,
    summary: GenerateSummary,
    /// Every person of the current household, in addressee-number order:
    /// the index in `rows` of the person's latest row.
    persons: Vec<usize>,
    /// The current household's history rows, in the order appended.
    rows: Vec<HistoryRow>,
    /// The household's registry as the planner sees it: every person's
    /// latest record.
    view: RegistryView,
}

impl Generator<'_> {
    fn chance(&mut self, p: f64) -> bool {
        self.synth.rng.f64() < p
    }

    /// The latest record of person `i`.
    fn rec(&self, i: usize) -> &ResidentRecord {
        &self.rows[self.persons[i]].record
    }

    /// Indexes of the persons who are residents now.
    fn residents(&self) -> Vec<usize> {
        (0..self.persons.len())
            .filter(|&i| self.rec(i).status.is_resident())
            .collect()
    }

    fn age_on(&self, i: usize, d: NaiveDate) -> Option<i32> {
        self.rec(i)
            .birth_date
            .sort_key()
            .map(|(y, _, _)| d.year() - y)
    }

    /// Plans `command` on the household's registry and appends its rows.
    fn apply(
        &mut self,
        command: ChangeCommand,
        effective: Effective,
        filed: bool,
    ) -> Result<(), GenerateError> {
        let (effective_date, processed_on) = match effective {
            Effective::Day(d) => (ymd(d), d),
            Effective::Text(t) => (t, self.today),
        };
        let req = ChangeRequest {
            meta: ChangeMeta {
                effective_date,
                filed_on: filed.then(|| ymd(processed_on)),
                input_place: INPUT_PLACE.to_string(),
                input_terminal: INPUT_TERMINAL.to_string(),
                allow_headless_household: false,
            },
            command,
        };
        let numbering = |e: machi_domain::ids::IdError| GenerateError::Plan(format!("{e:?}"));
        let new_persons = req.new_person_count() as u64;
        let alloc = Allocated {
            addressees: (1..=new_persons)
                .map(|i| AddresseeNumber::from_serial(self.serials.addressee + i))
                .collect::<Result<_, _>>()
                .map_err(numbering)?,
            household: if req.needs_new_household() {
                Some(HouseholdNumber::from_serial(self.serials.household + 1).map_err(numbering)?)
            } else {
                None
            },
        };
        let ctx = PlanContext {
            eras: self.eras,
            today: processed_on,
            municipality: None,
        };
        let plan = change::plan(&req, &self.view, &alloc, &ctx).map_err(|e| {
            GenerateError::Plan(format!(
                "{} on {} refused: {e}",
                change::reason_of(&req.command).label_ja(),
                req.meta.effective_date
            ))
        })?;
        self.serials.addressee += new_persons;
        self.serials.household += u64::from(alloc.household.is_some());
        self.serials.change += 1;
        self.summary.changes += 1;
        if plan.effective_date.is_irregular() {
            self.summary.irregular_dates += 1;
        }
        let info = ChangeInfo {
            change_id: self.serials.change,
            reason: plan.reason,
            effective_date: plan.effective_date,
            processed_on,
            filed_on: plan.filed_on,
            input_place: req.meta.input_place,
            input_terminal: req.meta.input_terminal,
            recorded_at: noon_jst_micros(processed_on),
            cancels: None,
        };
        for record in plan.rows {
            let known = (0..self.persons.len())
                .find(|&i| self.rec(i).addressee_number == record.addressee_number);
            let history_number = match known {
                Some(i) => self.rows[self.persons[i]].history_number + 1,
                None => {
                    if record.birth_date.is_irregular() {
                        self.summary.irregular_dates += 1;
                    }
                    1
                }
            };
            // The planner's view: the person's new record, and household
            // membership as of now.
            for members in self.view.households.values_mut() {
                members.retain(|a| *a != record.addressee_number);
            }
            self.view.insert(record.clone());
            match known {
                Some(i) => self.persons[i] = self.rows.len(),
                None => self.persons.push(self.rows.len()),
            }
            self.rows.push(HistoryRow {
                history_number,
                record,
                change: info.clone(),
            });
        }
        Ok(())
    }

    /// Some birth dates as the registry must keep them (j80).
    fn irregular_birth_dates(&mut self, persons: &mut [NewPerson]) {
        for p in persons.iter_mut() {
            if p.kind != ResidentKind::Japanese {
                continue;
            }
            let Ok(born) = NaiveDate::parse_from_str(&p.birth_date, "%Y-%m-%d") else {
                continue;
            };
            if born.year() < 1950 && self.chance(UNKNOWN_BIRTH_DATE_OLD) {
                if let Some(text) = year_only_date(self.eras, born.year()) {
                    p.birth_date = text;
                }
            } else if !is_leap(born.year()) && self.chance(NON_CALENDAR_BIRTH_DATE) {
                p.birth_date = format!("{:04}-02-29", born.year());
            }
        }
    }

    /// Generates one household's whole life.
    fn household(&mut self) -> Result<(), GenerateError> {
        let mut plan = self.synth.household(self.town, self.today);
        self.irregular_birth_dates(&mut plan.persons);
        // A furigana entered wrong, to be corrected later: (index, right kana).
        let mut misspelled: Option<(usize, String)> = None;
        if self.chance(MISSPELLED_KANA) {
            let i = self.synth.rng.usize(..plan.persons.len().max(1));
            if let Some(p) = plan.persons.get_mut(i)
                && p.kind == ResidentKind::Japanese
                && let Some(kana) = p.name_kana.clone()
                && let Some(wrong) = misspell_kana(&kana)
            {
                p.name_kana = Some(wrong);
                misspelled = Some((i, kana));
            }
        }
        let foreign = plan.persons.iter().any(|p| p.kind == ResidentKind::Foreign);
        // Where the household lives now: a 転居 must go somewhere else (j630).
        let mut current = plan.address.clone();
        let household = HouseholdTarget::New {
            address: plan.address,
        };
        let command = if plan.abroad {
            ChangeCommand::MoveInFromAbroad {
                persons: plan.persons,
                household,
                previous_address: plan.previous_address,
            }
        } else {
            ChangeCommand::MoveIn {
                persons: plan.persons,
                household,
                previous_address: plan.previous_address,
            }
        };
        self.apply(command, Effective::Day(plan.moved_in), true)?;

        let mut births = 0usize;
        let mut t = plan.moved_in;
        while t < self.today {
            let end = (t + Duration::days(365)).min(self.today);
            let frac = (end - t).num_days() as f64 / 365.0;
            let residents = self.residents();
            if residents.is_empty() {
                break;
            }
            // Deaths first: each resident by age.
            let dying = residents.iter().copied().find(|&i| {
                let age = self.age_on(i, end).unwrap_or(50);
                self.synth.rng.f64() < mortality(age) * frac
            });
            let d = self.synth.day_between(t + Duration::days(1), end);
            if let Some(i) = dying {
                if self.death(i, &residents, t, d)? {
                    break;
                }
            } else if self.chance(
                frac * if foreign {
                    MOVE_OUT_RATE_FOREIGN
                } else {
                    MOVE_OUT_RATE
                },
            ) {
                self.move_out(&residents, foreign, d)?;
                break;
            } else if self.chance(MOVE_WITHIN_RATE * frac) {
                let mut address = self.synth.address(self.town);
                while (&address.address, &address.annex) == (&current.address, &current.annex) {
                    address = self.synth.address(self.town);
                }
                current = address.clone();
                let command = ChangeCommand::MoveWithin {
                    persons: self.numbers(&residents),
                    address,
                    household: None,
                };
                self.apply(command, Effective::Day(d), true)?;
            } else if births < MAX_BIRTHS
                && let Some((surname, kana, household_number, register)) = self.parents(d)
                && self.chance(BIRTH_RATE * frac)
            {
                let person = self.synth.newborn(&surname, &kana, d, register);
                let command = ChangeCommand::Birth {
                    person,
                    household_number,
                };
                self.apply(command, Effective::Day(d), true)?;
                births += 1;
            } else if let Some((i, kana)) = misspelled.take() {
                if self.chance(KANA_CORRECTION_RATE * frac) {
                    let command = ChangeCommand::ClericalCorrection {
                        person: self.rec(i).addressee_number.to_string(),
                        patch: RecordPatch {
                            name_kana: Some(kana),
                            ..RecordPatch::default()
                        },
                    };
                    self.apply(command, Effective::Day(d), false)?;
                } else {
                    misspelled = Some((i, kana));
                    t = end;
                    continue;
                }
            } else if self.chance(BIRTH_DATE_CORRECTION_RATE * frac) {
                self.correct_birth_date(&residents, d)?;
            } else {
                t = end;
                continue;
            }
            t = d;
        }
        Ok(())
    }

    fn numbers(&self, idx: &[usize]) -> Vec<String> {
        idx.iter()
            .map(|&i| self.rec(i).addressee_number.to_string())
            .collect()
    }

    /// Person `i` dies, between `after` (exclusive) and `d`. Returns true
    /// when the household's life ends here (nobody left, or a death entered
    /// with an unknown date and so processed today).
    fn death(
        &mut self,
        i: usize,
        residents: &[usize],
        after: NaiveDate,
        d: NaiveDate,
    ) -> Result<bool, GenerateError> {
        let is_head = self.rec(i).relationship.is_head();
        let others: Vec<usize> = residents.iter().copied().filter(|&j| j != i).collect();
        let mut effective = Effective::Day(d);
        if is_head && others.len() >= 2 {
            // j490: the head leaves two or more members; change the head first.
            self.head_change(i, &others, d)?;
        } else if self.chance(UNKNOWN_DEATH_DATE) {
            let year = d.year();
            let year_start = NaiveDate::from_ymd_opt(year, 1, 1);
            if year < self.today.year()
                && year_start.is_some_and(|s| s > after)
                && let Some(text) = year_only_date(self.eras, year)
            {
                effective = Effective::Text(text);
            }
        }
        let ends = others.is_empty() || matches!(effective, Effective::Text(_));
        let command = ChangeCommand::Death {
            person: self.rec(i).addressee_number.to_string(),
        };
        self.apply(command, effective, true)?;
        Ok(ends)
    }

    /// 世帯主変更 before the death of head `old`: the spouse becomes head if
    /// there is one, else the eldest member; everyone else gets a 続柄 to the
    /// new head (j730).
    fn head_change(
        &mut self,
        old: usize,
        others: &[usize],
        d: NaiveDate,
    ) -> Result<(), GenerateError> {
        let spouse = |r: &ResidentRecord| matches!(r.relationship.as_str(), "妻" | "夫");
        let new = others
            .iter()
            .copied()
            .find(|&j| spouse(self.rec(j)))
            .or_else(|| {
                others
                    .iter()
                    .copied()
                    .min_by_key(|&j| self.rec(j).birth_date.sort_key())
            })
            .ok_or_else(|| GenerateError::Plan("head change without members".into()))?;
        let new_rec = &self.rec(new);
        let new_is_spouse = spouse(new_rec);
        let new_is_child = new_rec.relationship.as_str() == "子";
        let mut relationships = Vec::new();
        for &j in std::iter::once(&old).chain(others) {
            if j == new {
                continue;
            }
            let r = &self.rec(j);
            let male = r.sex == Sex::Male;
            let rel = if j == old {
                match (new_is_spouse, new_is_child, male) {
                    (true, _, true) => "夫",
                    (true, _, false) => "妻",
                    (false, true, true) => "父",
                    (false, true, false) => "母",
                    _ => "縁故者",
                }
            } else {
                match (r.relationship.as_str(), new_is_spouse, new_is_child) {
                    ("子", true, _) => "子",
                    ("妻", _, true) => "母",
                    ("夫", _, true) => "父",
                    ("子", _, true) => {
                        let older = r.birth_date.sort_key() < new_rec.birth_date.sort_key();
                        match (older, male) {
                            (true, true) => "兄",
                            (true, false) => "姉",
                            (false, true) => "弟",
                            (false, false) => "妹",
                        }
                    }
                    _ => "縁故者",
                }
            };
            relationships.push(MemberRelationship {
                addressee_number: r.addressee_number.to_string(),
                relationship: rel.to_string(),
            });
        }
        let command = ChangeCommand::HeadChange {
            household_number: self.rec(new).household_number.to_string(),
            new_head: self.rec(new).addressee_number.to_string(),
            relationships,
        };
        self.apply(command, Effective::Day(d), true)
    }

    fn move_out(
        &mut self,
        residents: &[usize],
        foreign: bool,
        d: NaiveDate,
    ) -> Result<(), GenerateError> {
        let persons = self.numbers(residents);
        let command = if foreign && self.chance(0.7) {
            let country = residents
                .first()
                .and_then(|&i| self.rec(i).previous_address.clone())
                .unwrap_or_else(|| "ベトナム社会主義共和国".to_string());
            ChangeCommand::MoveOutAbroad {
                persons,
                destination: AddressInput {
                    address: country,
                    annex: None,
                    postal_code: None,
                },
            }
        } else {
            ChangeCommand::MoveOut {
                persons,
                destination: AddressInput {
                    address: self.synth.elsewhere(),
                    annex: None,
                    postal_code: None,
                },
            }
        };
        self.apply(command, Effective::Day(d), true)
    }

    /// For a 出生 on `d`: the head's surname and its reading and the
    /// household, when the head and a spouse live here, the household is
    /// Japanese and the mother is between 20 and 42.
    #[allow(clippy::type_complexity)]
    fn parents(&self, d: NaiveDate) -> Option<(String, String, String, Option<(String, String)>)> {
        let residents = self.residents();
        let head = residents
            .iter()
            .copied()
            .find(|&i| self.rec(i).relationship.is_head())?;
        let spouse = residents
            .iter()
            .copied()
            .find(|&i| matches!(self.rec(i).relationship.as_str(), "妻" | "夫"))?;
        let mother = [head, spouse]
            .into_iter()
            .find(|&i| self.rec(i).sex == Sex::Female)?;
        let age = self.age_on(mother, d)?;
        let h = &self.rec(head);
        if !(20..=42).contains(&age) || h.kind != ResidentKind::Japanese {
            return None;
        }
        let (surname, _) = h.name.as_str().split_once('　')?;
        let (kana, _) = h.name_kana.as_ref()?.as_str().split_once('　')?;
        Some((
            surname.to_string(),
            kana.to_string(),
            h.household_number.to_string(),
            // The child enters the parents' family register (j120).
            h.registered_domicile
                .as_ref()
                .map(|r| (r.domicile.clone(), r.head.clone())),
        ))
    }

    /// 誤記修正 of a calendar birth date, one day off.
    fn correct_birth_date(
        &mut self,
        residents: &[usize],
        d: NaiveDate,
    ) -> Result<(), GenerateError> {
        if residents.is_empty() {
            return Ok(());
        }
        let i = residents[self.synth.rng.usize(..residents.len())];
        let Some(born) = self.rec(i).birth_date.as_calendar() else {
            return Ok(());
        };
        let later = born + Duration::days(1);
        let fixed = if later <= d && self.synth.rng.bool() {
            later
        } else {
            born - Duration::days(1)
        };
        let command = ChangeCommand::ClericalCorrection {
            person: self.rec(i).addressee_number.to_string(),
            patch: RecordPatch {
                birth_date: Some(ymd(fixed)),
                ..RecordPatch::default()
            },
        };
        self.apply(command, Effective::Day(d), false)
    }

    /// The household as households.csv lists it, if anyone still lives in it.
    fn current_household(&self, fields: &mut Vec<String>) -> bool {
        let residents: Vec<&ResidentRecord> = (0..self.persons.len())
            .map(|i| self.rec(i))
            .filter(|r| r.status.is_resident())
            .collect();
        let Some(first) = residents.first() else {
            return false;
        };
        fields.clear();
        fields.push(first.household_number.to_string());
        fields.push(
            residents
                .iter()
                .find(|r| r.relationship.is_head())
                .map(|r| r.addressee_number.to_string())
                .unwrap_or_default(),
        );
        fields.push(first.address.address.clone());
        fields.push(first.address.annex.clone().unwrap_or_default());
        fields.push(residents.len().to_string());
        true
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use machi_domain::change::ChangeReason;

    use super::*;

    fn options(residents: usize, seed: u64) -> GenerateOptions {
        GenerateOptions {
            residents,
            seed,
            town_index: 0,
            today: NaiveDate::from_ymd_opt(2026, 11, 22).unwrap(),
        }
    }

    fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
        let mut r = csv::Reader::from_path(path).unwrap();
        let header = r.headers().unwrap().iter().map(str::to_string).collect();
        let rows = r
            .records()
            .map(|rec| rec.unwrap().iter().map(str::to_string).collect())
            .collect();
        (header, rows)
    }

    fn keys(columns: &[(&str, &str)]) -> Vec<String> {
        columns.iter().map(|(k, _)| k.to_string()).collect()
    }

    #[test]
    fn generated_files_follow_the_layout() {
        let dir = tempfile::tempdir().unwrap();
        let eras = EraTable::standard();
        let summary = generate(dir.path(), &options(2_000, 7), &eras).unwrap();
        assert!(
            summary.persons >= 2_000 && summary.persons < 2_020,
            "{summary:?}"
        );

        let (header, rows) = read_csv(&dir.path().join(layout::RESIDENTS_FILE));
        assert_eq!(header, keys(layout::RESIDENT_COLUMNS));
        assert_eq!(rows.len(), summary.history_rows);

        let mut previous: Option<(String, i64)> = None;
        let mut latest: BTreeMap<String, HistoryRow> = BTreeMap::new();
        let mut reasons = BTreeSet::new();
        let mut foreign = BTreeSet::new();
        let mut irregular = 0;
        let mut changes = BTreeSet::new();
        for fields in &rows {
            let refs: Vec<&str> = fields.iter().map(String::as_str).collect();
            let row = layout::parse_resident(&refs, &eras)
                .unwrap_or_else(|p| panic!("{fields:?}: {p:?}"));
            assert_eq!(&layout::resident_fields(&row), fields);
            let a = row.record.addressee_number.to_string();
            match &previous {
                Some((pa, ph)) if *pa == a => assert_eq!(row.history_number, ph + 1, "{a}"),
                Some((pa, _)) => {
                    assert!(*pa < a, "{pa} before {a}");
                    assert_eq!(row.history_number, 1, "{a}");
                }
                None => assert_eq!(row.history_number, 1),
            }
            previous = Some((a.clone(), row.history_number));
            reasons.insert(row.change.reason.code().to_string());
            if row.record.kind == ResidentKind::Foreign {
                foreign.insert(a.clone());
            }
            if row.record.birth_date.is_irregular() || row.change.effective_date.is_irregular() {
                irregular += 1;
            }
            assert!(row.change.processed_on <= options(0, 0).today);
            if let Some(d) = row.change.effective_date.as_calendar() {
                assert_eq!(d, row.change.processed_on);
            }
            changes.insert(row.change.change_id);
            latest.insert(a, row);
        }
        assert_eq!(latest.len(), summary.persons);
        assert_eq!(changes.len(), summary.changes);
        assert_eq!(foreign.len(), summary.foreign);
        assert!(summary.foreign > 10, "{summary:?}");
        assert!(irregular > 0 && summary.irregular_dates > 3, "{summary:?}");
        for r in [
            ChangeReason::MoveIn,
            ChangeReason::MoveInFromAbroad,
            ChangeReason::Birth,
            ChangeReason::Death,
            ChangeReason::MoveWithin,
            ChangeReason::MoveOut,
            ChangeReason::HeadChange,
            ChangeReason::ClericalCorrection,
        ] {
            assert!(reasons.contains(r.code()), "no {r:?} in {reasons:?}");
        }

        // households.csv: the current households of the resident rows.
        let mut expected: BTreeMap<String, (String, String, String, usize)> = BTreeMap::new();
        for r in latest.values().map(|r| &r.record) {
            if !r.status.is_resident() {
                continue;
            }
            let e = expected
                .entry(r.household_number.to_string())
                .or_insert_with(|| {
                    (
                        String::new(),
                        r.address.address.clone(),
                        r.address.annex.clone().unwrap_or_default(),
                        0,
                    )
                });
            e.3 += 1;
            if r.relationship.is_head() {
                e.0 = r.addressee_number.to_string();
            }
        }
        let (header, households) = read_csv(&dir.path().join(layout::HOUSEHOLDS_FILE));
        assert_eq!(header, keys(layout::HOUSEHOLD_COLUMNS));
        assert_eq!(households.len(), summary.households);
        let got: BTreeMap<String, (String, String, String, usize)> = households
            .iter()
            .map(|f| {
                (
                    f[0].clone(),
                    (
                        f[1].clone(),
                        f[2].clone(),
                        f[3].clone(),
                        f[4].parse().unwrap(),
                    ),
                )
            })
            .collect();
        assert_eq!(got, expected);
        let numbers: Vec<&String> = households.iter().map(|f| &f[0]).collect();
        assert!(numbers.windows(2).all(|w| w[0] < w[1]), "sorted");

        for (file, columns) in [
            (
                layout::SUPPORT_MEASURES_FILE,
                layout::SUPPORT_MEASURE_COLUMNS,
            ),
            (layout::CERTIFICATES_FILE, layout::CERTIFICATE_COLUMNS),
        ] {
            let (header, rows) = read_csv(&dir.path().join(file));
            assert_eq!(header, keys(columns));
            assert!(rows.is_empty());
        }
        // The manifest counts the rows and digests each file.
        let manifest: super::super::manifest::Manifest = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join(layout::MANIFEST_FILE)).unwrap(),
        )
        .unwrap();
        let residents = &manifest.files[0];
        assert_eq!(residents.name, layout::RESIDENTS_FILE);
        assert_eq!(residents.rows, summary.history_rows as u64);
        assert_eq!(
            (residents.sha256.clone(), residents.bytes),
            super::super::manifest::digest_file(&dir.path().join(layout::RESIDENTS_FILE)).unwrap()
        );
    }

    #[test]
    fn the_same_seed_gives_the_same_files() {
        let eras = EraTable::standard();
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let c = tempfile::tempdir().unwrap();
        let sa = generate(a.path(), &options(500, 42), &eras).unwrap();
        let sb = generate(b.path(), &options(500, 42), &eras).unwrap();
        generate(c.path(), &options(500, 43), &eras).unwrap();
        assert_eq!(sa, sb);
        for file in [layout::RESIDENTS_FILE, layout::HOUSEHOLDS_FILE] {
            let x = std::fs::read(a.path().join(file)).unwrap();
            let y = std::fs::read(b.path().join(file)).unwrap();
            let z = std::fs::read(c.path().join(file)).unwrap();
            assert!(x == y, "{file} differs between runs");
            assert!(x != z, "{file} ignores the seed");
        }
    }

    #[test]
    fn nothing_asked_gives_headers_only_and_bad_options_are_errors() {
        let eras = EraTable::standard();
        let dir = tempfile::tempdir().unwrap();
        let s = generate(&dir.path().join("new"), &options(0, 1), &eras).unwrap();
        assert_eq!(s, GenerateSummary::default());
        let (_, rows) = read_csv(&dir.path().join("new").join(layout::RESIDENTS_FILE));
        assert!(rows.is_empty());
        let mut bad = options(10, 1);
        bad.town_index = TOWNS.len();
        assert!(matches!(
            generate(dir.path(), &bad, &eras),
            Err(GenerateError::Plan(_))
        ));
        let mut bad = options(10, 1);
        bad.today = NaiveDate::MAX;
        assert!(matches!(
            generate(dir.path(), &bad, &eras),
            Err(GenerateError::Plan(_))
        ));
        // A file where the directory should be is an I/O error, not a panic.
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        assert!(matches!(
            generate(&file, &options(10, 1), &eras),
            Err(GenerateError::Io(_))
        ));
    }

    #[test]
    fn misspelled_kana_differs_and_stays_furigana() {
        for kana in [
            "サトウ　タロウ",
            "スズキ　ハナコ",
            "キム　ミンジュン",
            "イトウ　レン",
        ] {
            let wrong = misspell_kana(kana).unwrap();
            assert_ne!(wrong, kana);
            machi_domain::names::Furigana::new(wrong).unwrap();
        }
        assert_eq!(misspell_kana("サトウ"), None);
    }

    #[test]
    fn recorded_at_is_noon_in_japan() {
        let d = NaiveDate::from_ymd_opt(2024, 4, 1).unwrap();
        let expected = d.and_hms_opt(3, 0, 0).unwrap().and_utc().timestamp_micros();
        assert_eq!(noon_jst_micros(d), expected);
    }
}
