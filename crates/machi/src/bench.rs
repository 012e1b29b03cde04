//! `machi bench`: change writes/s and reads/s on SQLite and PostgreSQL,
//! each beside a baseline measured in the same run on the same backend
//! (an empty write transaction; an empty read transaction).
//!
//! Run: `cargo run --release -p machi -- bench` (add `--postgres URL` or set
//! `MACHI_BENCH_POSTGRES` to include PostgreSQL).

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::Duration;
use clap::Args;
use machi_domain::change::{AsOf, ChangeCommand, ChangeMeta, ChangeRequest, HouseholdTarget};
use machi_domain::ids::{AddresseeNumber, MunicipalityCode};

use crate::crypto::Keyring;
use crate::service::registry::SearchParams;
use crate::service::{Actor, Clock, Registry};
use crate::store::{DatabaseLocation, SqliteSync, Store};
use crate::synth::{Synth, TOWNS};

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Households moved in before measuring (each move-in is a change too).
    #[arg(long, default_value_t = 2000)]
    households: usize,
    /// Changes (転居 of a whole household) to time.
    #[arg(long, default_value_t = 5000)]
    changes: usize,
    /// Reads (a resident with its whole history) to time.
    #[arg(long, default_value_t = 20000)]
    reads: usize,
    /// Also run on PostgreSQL: a server URL; a fresh database is created there and dropped after.
    #[arg(long, env = "MACHI_BENCH_POSTGRES")]
    postgres: Option<String>,
    /// Skip SQLite.
    #[arg(long)]
    skip_sqlite: bool,
    /// Concurrent clients for the second change measurement (group commit).
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Drop the search key B-trees (migrations 21 and 34) first: what a
    /// change costs without them, for comparison (the postings of grams
    /// and distinct keys are still written).
    #[arg(long)]
    without_search_indexes: bool,
    /// SQLite durability for the run (`full` is the default of `machi serve`).
    #[arg(long, value_enum, default_value = "full")]
    bench_sqlite_sync: SqliteSync,
    /// 国内転入 of households of three, one after another, whose writes are
    /// counted (rows per table, statements, round trips, pages) and printed
    /// per change; 0 skips the breakdown.
    #[arg(long, default_value_t = 50)]
    count_changes: usize,
}

struct Figure {
    what: &'static str,
    n: usize,
    secs: f64,
}

impl Figure {
    fn rate(&self) -> f64 {
        self.n as f64 / self.secs.max(1e-9)
    }
}

pub async fn run(a: &BenchArgs, extra_eras: &[String]) -> anyhow::Result<()> {
    let eras = crate::config::era_table(extra_eras).map_err(anyhow::Error::msg)?;
    println!(
        "machi bench — {} households seeded, {} changes, {} reads per backend (one client, then {} concurrent clients)",
        a.households, a.changes, a.reads, a.clients
    );
    if !a.skip_sqlite {
        let dir = std::env::temp_dir().join(format!("machi-bench-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("bench.sqlite");
        let store = Store::connect_with(
            &DatabaseLocation::Sqlite(path.clone()),
            a.bench_sqlite_sync,
            Keyring::ephemeral()?,
        )
        .await?;
        let label = match a.bench_sqlite_sync {
            SqliteSync::Full => "SQLite (WAL, synchronous=FULL)",
            SqliteSync::Normal => "SQLite (WAL, synchronous=NORMAL)",
        };
        let r = Registry::new(store.clone(), eras.clone(), Clock::System);
        let result = measure(label, &r, a, &Inspect::Sqlite(path.clone())).await;
        let _ = std::fs::remove_dir_all(&dir);
        result?;
    }
    if let Some(url) = &a.postgres {
        let db = format!("machi_bench_{}", std::process::id());
        let fresh = crate::store::create_fresh_postgres_database(url, &db).await?;
        let store = Store::connect(
            &DatabaseLocation::Postgres(fresh.clone()),
            Keyring::ephemeral()?,
        )
        .await?;
        let r = Registry::new(store.clone(), eras.clone(), Clock::System);
        let result = measure("PostgreSQL", &r, a, &Inspect::Postgres(fresh)).await;
        crate::store::drop_postgres_database(url, &db).await?;
        result?;
    } else {
        println!("\n(PostgreSQL skipped: pass --postgres URL or set MACHI_BENCH_POSTGRES)");
    }
    Ok(())
}

fn meta(date: chrono::NaiveDate) -> ChangeMeta {
    ChangeMeta {
        effective_date: date.format("%Y-%m-%d").to_string(),
        filed_on: None,
        input_place: "bench".into(),
        input_terminal: "B-1".into(),
        allow_headless_household: false,
    }
}

async fn measure(
    label: &str,
    r: &Registry,
    a: &BenchArgs,
    inspect: &Inspect,
) -> anyhow::Result<()> {
    if a.households == 0 {
        anyhow::bail!("--households must be at least 1");
    }
    if a.without_search_indexes {
        r.store()
            .write(None, crate::store::records::drop_search_indexes)
            .await?;
        println!("  (search indexes dropped: --without-search-indexes)");
    }
    let town = &TOWNS[0];
    let code: MunicipalityCode = town.code.parse().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    r.create_tenant(code.clone(), town.name, town.prefecture)
        .await?;
    let actor = Actor::system("bench");
    let today = r.today();
    let mut synth = Synth::new(42);

    // Seed: move-ins (changes too, with 1–5 persons each).
    let mut households: Vec<Vec<String>> = Vec::with_capacity(a.households);
    let mut persons: Vec<AddresseeNumber> = Vec::new();
    let t = Instant::now();
    for _ in 0..a.households {
        let plan = synth.household(town, today);
        let out = r
            .submit(
                &code,
                &ChangeRequest {
                    meta: meta(plan.moved_in),
                    command: ChangeCommand::MoveIn {
                        persons: plan.persons,
                        household: HouseholdTarget::New {
                            address: plan.address,
                        },
                        previous_address: plan.previous_address,
                    },
                },
                &actor,
            )
            .await?;
        let ids: Vec<AddresseeNumber> = out
            .rows
            .iter()
            .map(|x| x.record.addressee_number.clone())
            .collect();
        persons.extend(ids.iter().cloned());
        households.push(ids.iter().map(|x| x.to_string()).collect());
    }
    let move_ins = Figure {
        what: "move-in changes (1–5 persons each)",
        n: a.households,
        secs: t.elapsed().as_secs_f64(),
    };
    if a.count_changes > 0 {
        count_move_ins(label, r, &code, a.count_changes, inspect).await?;
    }

    // Baseline: empty write transactions.
    let t = Instant::now();
    for _ in 0..a.changes {
        r.store().empty_transaction(&code).await?;
    }
    let empty_write = Figure {
        what: "empty write transactions (baseline)",
        n: a.changes,
        secs: t.elapsed().as_secs_f64(),
    };

    // Changes: 転居 of whole households, history + audit + outbox each;
    // first one client after another, then `clients` at once (each on its
    // own households, as counters at different desks would be).
    let date = today - Duration::days(1);
    let addresses: Vec<_> = (0..64).map(|_| synth.address(town)).collect();
    // `i` is unique per change: a 転居 must change the address or 方書
    // (j630), so each change gets a 方書 of its own.
    let move_within = |h: &Vec<String>, i: usize| ChangeRequest {
        meta: meta(date),
        command: ChangeCommand::MoveWithin {
            persons: h.clone(),
            address: {
                let mut a = addresses[i % addresses.len()].clone();
                a.annex = Some(format!("ハイツ{}号室", 100 + i));
                a
            },
            household: None,
        },
    };
    let t = Instant::now();
    for i in 0..a.changes {
        let h = &households[synth.rng.usize(..households.len())];
        r.submit(&code, &move_within(h, i), &actor).await?;
    }
    let changes = Figure {
        what: "changes (転居, whole household), 1 client",
        n: a.changes,
        secs: t.elapsed().as_secs_f64(),
    };
    let clients = a.clients.clamp(1, households.len());
    let t = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for c in 0..clients {
        let (r, code, actor) = (r.clone(), code.clone(), actor.clone());
        let mine: Vec<ChangeRequest> = (0..a.changes / clients)
            .map(|i| {
                let h = &households[(c + i * clients) % households.len()];
                move_within(h, a.changes + c * (a.changes / clients + 1) + i)
            })
            .collect();
        tasks.push(tokio::spawn(async move {
            for req in &mine {
                r.submit(&code, req, &actor).await?;
            }
            Ok::<usize, crate::service::ServiceError>(mine.len())
        }));
    }
    let mut done = 0;
    for task in tasks {
        done += task.await??;
    }
    let concurrent = Figure {
        what: "changes (転居), concurrent clients",
        n: done,
        secs: t.elapsed().as_secs_f64(),
    };

    // Baseline: empty read transactions.
    let t = Instant::now();
    for _ in 0..a.reads {
        r.store().empty_read(&code).await?;
    }
    let empty_read = Figure {
        what: "empty read transactions (baseline)",
        n: a.reads,
        secs: t.elapsed().as_secs_f64(),
    };

    // Every read writes its access-log entry (j1370), as in service.
    let bench_actor = crate::service::Actor::system("bench");
    let t = Instant::now();
    for _ in 0..a.reads {
        let p = &persons[synth.rng.usize(..persons.len())];
        r.resident(&code, p, AsOf::default(), &bench_actor).await?;
    }
    let reads = Figure {
        what: "reads (resident + history + log entry), 1 client",
        n: a.reads,
        secs: t.elapsed().as_secs_f64(),
    };
    // The same reads from concurrent clients: their log entries share commits.
    let t = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for c in 0..clients {
        let (r, code, actor) = (r.clone(), code.clone(), bench_actor.clone());
        let mine: Vec<_> = (0..a.reads / clients)
            .map(|i| persons[(c * 7919 + i * 104_729) % persons.len()].clone())
            .collect();
        tasks.push(tokio::spawn(async move {
            for p in &mine {
                r.resident(&code, p, AsOf::default(), &actor).await?;
            }
            Ok::<usize, crate::service::ServiceError>(mine.len())
        }));
    }
    let mut done = 0;
    for task in tasks {
        done += task.await??;
    }
    let concurrent_reads = Figure {
        what: "reads, concurrent clients",
        n: done,
        secs: t.elapsed().as_secs_f64(),
    };

    // Without the search indexes a search would scan: no searches are
    // timed then.
    let searches = if a.without_search_indexes {
        0
    } else {
        a.reads / 10
    };
    let t = Instant::now();
    for i in 0..searches {
        let q = ["タカハシ", "高橋", "さいとう", "渡辺", "ヨシダ", "山崎"][i % 6];
        r.search(
            &code,
            &SearchParams {
                name: Some(q.to_string()),
                limit: 20,
                ..Default::default()
            },
            &bench_actor,
        )
        .await?;
    }
    let search = Figure {
        what: "name searches (folded, partial; 20 per page; logged)",
        n: searches,
        secs: t.elapsed().as_secs_f64(),
    };

    println!(
        "\n{label}  ({} persons in {} households)",
        persons.len(),
        households.len()
    );
    println!("  {:<46} {:>10} {:>12}", "operation", "count", "per second");
    for f in [
        &empty_write,
        &move_ins,
        &changes,
        &concurrent,
        &empty_read,
        &reads,
        &concurrent_reads,
        &search,
    ] {
        println!("  {:<46} {:>10} {:>12.0}", f.what, f.n, f.rate());
    }
    println!("  ({clients} concurrent clients)");
    println!(
        "  ratios: changes/s ÷ empty write tx/s = {:.2} (1 client), {:.2} ({clients} clients); reads/s ÷ empty read tx/s = {:.2} (1 client), {:.2} ({clients} clients)",
        changes.rate() / empty_write.rate(),
        concurrent.rate() / empty_write.rate(),
        reads.rate() / empty_read.rate(),
        concurrent_reads.rate() / empty_read.rate()
    );
    Ok(())
}

/// The bench's own database, read beside the store to count its rows.
#[derive(Clone)]
enum Inspect {
    Sqlite(std::path::PathBuf),
    /// A URL of a role that sees every row (the bench's server URL, on the
    /// fresh database).
    Postgres(String),
}

/// Rows of every table (PostgreSQL's partitioned tables as one), with
/// `resident_gram` also per `col` (`resident_gram[1]` …), and the
/// PostgreSQL server's WAL position (bytes).
fn count_rows(inspect: &Inspect) -> anyhow::Result<(BTreeMap<String, i64>, Option<u64>)> {
    let mut out = BTreeMap::new();
    match inspect {
        Inspect::Sqlite(path) => {
            let c = rusqlite::Connection::open(path)?;
            let names: Vec<String> = c
                .prepare(
                    "SELECT name FROM sqlite_schema WHERE type = 'table' \
                     AND sql NOT LIKE 'CREATE VIRTUAL%' ORDER BY name",
                )?
                .query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            for n in names {
                let k: i64 =
                    c.query_row(&format!("SELECT count(*) FROM \"{n}\""), [], |r| r.get(0))?;
                out.insert(n, k);
            }
            let mut st = c.prepare("SELECT col, count(*) FROM resident_gram GROUP BY col")?;
            for r in st.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))? {
                let (col, k) = r?;
                out.insert(format!("resident_gram[{col}]"), k);
            }
            Ok((out, None))
        }
        Inspect::Postgres(url) => {
            let mut c = postgres::Client::connect(url, postgres::NoTls)?;
            let names: Vec<String> = c
                .query(
                    "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                     WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition \
                     ORDER BY 1",
                    &[],
                )?
                .iter()
                .map(|r| r.get(0))
                .collect();
            for n in names {
                let k: i64 = c
                    .query_one(&format!("SELECT count(*) FROM \"{n}\""), &[])?
                    .get(0);
                out.insert(n, k);
            }
            for r in c.query(
                "SELECT col::bigint, count(*) FROM resident_gram GROUP BY col",
                &[],
            )? {
                out.insert(format!("resident_gram[{}]", r.get::<_, i64>(0)), r.get(1));
            }
            let wal: i64 = c
                .query_one(
                    "SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint",
                    &[],
                )?
                .get(0);
            Ok((out, Some(wal as u64)))
        }
    }
}

/// SQLite: the pages the writer connection has written to the log and the
/// bytes its thread has passed to `write(2)` (the log, statement journals
/// spilled to temporary files), read on the writer thread itself.
async fn writer_io(r: &Registry) -> anyhow::Result<(Option<i64>, Option<u64>)> {
    Ok(r.store()
        .write(None, |tx| {
            let pages = tx.sqlite_pages_written();
            let bytes = std::fs::read_to_string("/proc/thread-self/io")
                .ok()
                .and_then(|io| {
                    io.lines()
                        .find_map(|l| l.strip_prefix("wchar: "))
                        .and_then(|v| v.trim().parse::<u64>().ok())
                });
            Ok::<_, crate::store::StoreError>((pages, bytes))
        })
        .await?)
}

/// Counts what `n` 国内転入 (each a new household of three at an address of
/// its own, one after another) write, and prints it per change: rows per
/// table, statements and PostgreSQL round trips (every statement this
/// process sent, `store::db::sent`), SQLite log pages and writer bytes,
/// PostgreSQL WAL bytes. Counts, not time: a loaded machine gives the same.
async fn count_move_ins(
    label: &str,
    r: &Registry,
    code: &MunicipalityCode,
    n: usize,
    inspect: &Inspect,
) -> anyhow::Result<()> {
    let town = &TOWNS[0];
    let today = r.today();
    let actor = Actor::system("bench");
    // A generator of its own: the timed figures see the same households
    // with or without the breakdown.
    let mut synth = Synth::new(4242);
    let mut plans = Vec::with_capacity(n);
    while plans.len() < n {
        let plan = synth.household(town, today);
        if plan.persons.len() == 3 {
            plans.push(plan);
        }
    }
    let (rows0, wal0) = {
        let i = inspect.clone();
        tokio::task::spawn_blocking(move || count_rows(&i)).await??
    };
    let (pages0, bytes0) = writer_io(r).await?;
    let sent0 = crate::store::counts();
    for plan in plans {
        r.submit(
            code,
            &ChangeRequest {
                meta: meta(plan.moved_in),
                command: ChangeCommand::MoveIn {
                    persons: plan.persons,
                    household: HouseholdTarget::New {
                        address: plan.address,
                    },
                    previous_address: plan.previous_address,
                },
            },
            &actor,
        )
        .await?;
    }
    let sent1 = crate::store::counts();
    let (pages1, bytes1) = writer_io(r).await?;
    let (rows1, wal1) = {
        let i = inspect.clone();
        tokio::task::spawn_blocking(move || count_rows(&i)).await??
    };
    let per = |d: f64| d / n as f64;
    println!(
        "\n{label}: what one 国内転入 of a household of three writes (mean of {n}, one after another; counts, not time)"
    );
    let mut total = 0;
    for (table, after) in &rows1 {
        let d = after - rows0.get(table).copied().unwrap_or(0);
        if d == 0 {
            continue;
        }
        if !table.contains('[') {
            total += d;
        }
        let note = match table.as_str() {
            "resident_gram[1]" => "  (names)",
            "resident_gram[2]" => "  (furigana)",
            "resident_gram[3]" => "  (addresses)",
            "resident_gram[4]" => "  (history: names)",
            "resident_gram[5]" => "  (history: furigana)",
            "resident_gram[6]" => "  (history: addresses)",
            _ => "",
        };
        let member = if table.starts_with("resident_gram") {
            format!(", {:.1} per member", per(d as f64) / 3.0)
        } else {
            String::new()
        };
        println!(
            "  rows  {table:<40} {:>8.1} per change{member}{note}",
            per(d as f64)
        );
    }
    println!(
        "  rows  {:<40} {:>8.1} per change",
        "(all tables)",
        per(total as f64)
    );
    // The two reads of the writer's counters are writes too (empty ones):
    // one statement-free transaction each, no pages.
    println!(
        "  statements sent                                {:>8.1} per change",
        per((sent1.0 - sent0.0) as f64)
    );
    if let (Some(w0), Some(w1)) = (wal0, wal1) {
        println!(
            "  PostgreSQL round trips                         {:>8.1} per change",
            per((sent1.1 - sent0.1) as f64)
        );
        println!(
            "  PostgreSQL WAL bytes (whole server)            {:>8.0} per change  (other sessions' writes included)",
            per(w1.saturating_sub(w0) as f64)
        );
    }
    if let (Some(p0), Some(p1)) = (pages0, pages1) {
        println!(
            "  SQLite log pages written (WAL frames)          {:>8.1} per change",
            per((p1 - p0) as f64)
        );
    }
    if let (Some(b0), Some(b1)) = (bytes0, bytes1)
        && pages0.is_some()
    {
        println!(
            "  SQLite writer thread bytes written             {:>8.0} per change  (log + spilled statement journals)",
            per(b1.saturating_sub(b0) as f64)
        );
    }
    Ok(())
}

/// `machi bench-migration`: a population in the migration layout, then the
/// parse-and-validate-only rate (the baseline) and full imports into SQLite
/// and PostgreSQL (COPY), each with its peak memory.
#[derive(Args, Debug, Clone)]
pub struct MigrationBenchArgs {
    /// Residents to generate and import.
    #[arg(long, default_value_t = 1_000_000)]
    residents: usize,
    /// Also import into PostgreSQL: a server URL; a fresh database is created there and dropped after.
    #[arg(long, env = "MACHI_BENCH_POSTGRES")]
    postgres: Option<String>,
    /// Keep the generated files in this directory (default: a temporary one, removed after).
    #[arg(long)]
    keep: Option<std::path::PathBuf>,
    /// With --keep: import the files already in that directory instead of
    /// generating them again (they must be from the same --residents).
    #[arg(long, requires = "keep")]
    reuse: bool,
    /// Skip the import into SQLite (measure PostgreSQL only).
    #[arg(long)]
    skip_sqlite: bool,
}

/// Peak resident memory of this process since the last reset, in MiB (Linux).
fn peak_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Resets the peak so the next phase is measured alone (Linux ≥ 4.0).
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Lets the machine go quiet before a timed import: what earlier steps
/// wrote (the generated files, the other backend's load) is flushed to disk
/// first, and PostgreSQL checkpoints, so that a run does not pay for the
/// one before it. Best effort: a failure only means a noisier figure.
async fn settle(loc: &DatabaseLocation) {
    let _ = std::process::Command::new("sync").status();
    if let DatabaseLocation::Postgres(url) = loc
        && let Err(e) = crate::store::checkpoint_postgres(url).await
    {
        println!("  (no checkpoint before the run: {e})");
    }
}

pub async fn run_migration(a: &MigrationBenchArgs, extra_eras: &[String]) -> anyhow::Result<()> {
    use crate::migration::generate::{GenerateOptions, generate};
    use crate::migration::import::{ImportOptions, Outcome, import};
    let eras = crate::config::era_table(extra_eras).map_err(anyhow::Error::msg)?;
    let tmp = std::env::temp_dir().join(format!("machi-bench-migration-{}", std::process::id()));
    let dir = a.keep.clone().unwrap_or_else(|| tmp.join("data"));
    let town = &TOWNS[0];
    let code: MunicipalityCode = town.code.parse().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    println!("machi bench-migration — {} residents", a.residents);
    reset_peak();
    let t = Instant::now();
    let opts = GenerateOptions {
        residents: a.residents,
        seed: 1,
        town_index: 0,
        today: Clock::System.today(),
    };
    if a.reuse && dir.join(crate::migration::layout::RESIDENTS_FILE).exists() {
        println!("  reusing the files in {}", dir.display());
    } else {
        let (dir2, eras2) = (dir.clone(), eras.clone());
        let g = tokio::task::spawn_blocking(move || generate(&dir2, &opts, &eras2)).await??;
        let gen_secs = t.elapsed().as_secs_f64();
        let gen_peak = peak_mib();
        println!(
            "  generated {} persons, {} history rows, {} households in {:.1} s ({:.0} persons/s, peak {:.0} MiB)",
            g.persons,
            g.history_rows,
            g.households,
            gen_secs,
            g.persons as f64 / gen_secs,
            gen_peak.unwrap_or(0.0)
        );
    }
    let actor = Actor::system("bench");
    let mut lines = Vec::new();
    let mut baseline = None;
    let sqlite_path = tmp.join("bench.sqlite");
    let mut targets: Vec<(&str, DatabaseLocation)> =
        vec![("SQLite", DatabaseLocation::Sqlite(sqlite_path))];
    let pg_db = format!("machi_bench_mig_{}", std::process::id());
    if let Some(url) = &a.postgres {
        let fresh = crate::store::create_fresh_postgres_database(url, &pg_db).await?;
        targets.push(("PostgreSQL (COPY)", DatabaseLocation::Postgres(fresh)));
    }
    for (i, (label, loc)) in targets.iter().enumerate() {
        let skip = a.skip_sqlite && matches!(loc, DatabaseLocation::Sqlite(_));
        let store = Store::connect(loc, Keyring::ephemeral()?).await?;
        let r = Registry::new(store, eras.clone(), Clock::System);
        r.create_tenant(code.clone(), town.name, town.prefecture)
            .await?;
        if i == 0 {
            reset_peak();
            let v = import(
                &r,
                &code,
                std::slice::from_ref(&dir),
                &ImportOptions {
                    validate_only: true,
                    ..ImportOptions::default()
                },
                &actor,
            )
            .await?;
            if v.outcome != Outcome::Validated {
                anyhow::bail!("validation failed: {:?}", v.problems.first());
            }
            let rate = v.persons as f64 / v.validate_seconds.max(1e-9);
            baseline = Some(rate);
            lines.push(format!(
                "  {:<34} {:>9.1} s {:>12.0} residents/s {:>10.0} rows/s  peak {:>5.0} MiB",
                "parse + validate only (baseline)",
                v.validate_seconds,
                rate,
                v.history_rows as f64 / v.validate_seconds.max(1e-9),
                peak_mib().unwrap_or(0.0)
            ));
        }
        if skip {
            continue;
        }
        settle(loc).await;
        reset_peak();
        let rep = import(
            &r,
            &code,
            std::slice::from_ref(&dir),
            &ImportOptions::default(),
            &actor,
        )
        .await?;
        if rep.outcome != Outcome::Imported {
            anyhow::bail!(
                "{label}: import ended {:?}: {:?}",
                rep.outcome,
                rep.problems.first()
            );
        }
        let secs = rep.validate_seconds + rep.load_seconds;
        let rate = rep.persons as f64 / secs.max(1e-9);
        lines.push(format!(
            "  {:<34} {:>9.1} s {:>12.0} residents/s {:>10.0} rows/s  peak {:>5.0} MiB  (digest and encoding {:.1} s + validated and written in one pass {:.1} s; {:.2}× baseline time)",
            format!("import into {label}"),
            secs,
            rate,
            rep.history_rows as f64 / secs.max(1e-9),
            peak_mib().unwrap_or(0.0),
            rep.validate_seconds,
            rep.load_seconds,
            baseline.map_or(0.0, |b| b / rate)
        ));
        if let DatabaseLocation::Sqlite(path) = loc {
            // SQLite copies the log into the database file after the commit,
            // on a thread of its own: waited for here (and shown) so that it
            // does not overlap the next measurement.
            let t = Instant::now();
            r.store().wait_for_checkpoint().await;
            let checkpoint = t.elapsed().as_secs_f64();
            lines.push(format!(
                "  {:<34} {:>9.1} s  (after the commit, while reads and writes go on)",
                "  then the log into the file", checkpoint
            ));
            // Its gigabytes leave the page cache before the next run.
            drop(r);
            for suffix in ["", "-wal", "-shm"] {
                let mut name = path.clone().into_os_string();
                name.push(suffix);
                let _ = std::fs::remove_file(name);
            }
        }
    }
    for l in &lines {
        println!("{l}");
    }
    if let Some(url) = &a.postgres {
        crate::store::drop_postgres_database(url, &pg_db).await?;
    }
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}
