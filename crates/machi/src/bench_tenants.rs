//! `machi bench-tenants`: what the number of tenants costs one PostgreSQL
//! server (issue 10, item 2). On a fresh database of its own, tenants are
//! created one after another up to each step (default 1, 100 and 1,741:
//! every municipality of Japan); at each step it measures
//!
//! - tenant creation time, p50/p99 over the last tenants created;
//! - the first read on a new connection (each sampled tenant through a new
//!   pool, so the connection's first planning shows);
//! - reads (a resident with its whole history and the access-log entry, as
//!   in service) and changes (転居 of a whole household), p50/p99/max, on
//!   one pool serving a sample of tenants spread evenly over all of them
//!   (so the first query of each tenant on that connection counts too);
//! - backend memory of the connection that served the sample
//!   (`pg_backend_memory_contexts` total, and the backend's `RssAnon` from
//!   `/proc` when the server runs on this machine);
//!
//! and prints each figure beside the one-tenant figure as a ratio. Every
//! tenant is seeded with one household (so each has rows in every
//! registry table) when it is created; seeding is not timed.
//!
//! Run: `cargo run --release -p machi -- bench-tenants` (`--max 500` for a
//! shorter run; the server URL may carry `?options=-c plan_cache_mode=…`).

use std::time::Instant;

use clap::Args;
use machi_domain::change::{AsOf, ChangeCommand, ChangeMeta, ChangeRequest, HouseholdTarget};
use machi_domain::ids::{AddresseeNumber, MunicipalityCode};

use std::sync::Arc;

use crate::crypto::Keyring;
use crate::service::{Actor, Clock, Registry};
use crate::store::{DatabaseLocation, Store, StoreError};
use crate::synth::{Synth, TOWNS};

#[derive(Args, Debug, Clone)]
pub struct TenantsBenchArgs {
    /// PostgreSQL server URL; a fresh database is created there and dropped after.
    #[arg(
        long,
        env = "MACHI_BENCH_POSTGRES",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    postgres: String,
    /// Tenant counts to measure at, ascending; the first is the baseline.
    #[arg(long, value_delimiter = ',', default_value = "1,100,1741")]
    steps: Vec<usize>,
    /// Stop at this many tenants (a quicker run): larger steps are replaced
    /// by this one.
    #[arg(long)]
    max: Option<usize>,
    /// Tenants sampled at each step, spread evenly over all created.
    #[arg(long, default_value_t = 16)]
    sample: usize,
    /// Reads per sampled tenant. The first read of each sampled tenant on
    /// the connection is slower (reported on its own line); with 20 reads
    /// those 16 first reads were 5 % of the samples and made the p99 of
    /// every step but the first (which samples one tenant 16 times), so
    /// the default is 200 (0.5 %).
    #[arg(long, default_value_t = 200)]
    reads: usize,
    /// Changes per sampled tenant.
    #[arg(long, default_value_t = 8)]
    changes: usize,
    /// Creation time over the last this many tenants of each step.
    #[arg(long, default_value_t = 50)]
    last: usize,
    /// Keep the database after the run (its name is printed).
    #[arg(long)]
    keep: bool,
}

/// A tenant of the run: its code and its seeded household's persons.
struct Seeded {
    code: MunicipalityCode,
    persons: Vec<String>,
}

/// The figures of one step, in milliseconds or KiB.
#[derive(Default)]
struct Step {
    tenants: usize,
    partitions: i64,
    relations: i64,
    create: (f64, f64),
    first_read_new_conn: (f64, f64),
    first_read_of_tenant: (f64, f64),
    reads: (f64, f64, f64),
    changes: (f64, f64, f64),
    memory_contexts_kib: f64,
    rss_anon_kib: Option<f64>,
    new_conn_contexts_kib: f64,
    new_conn_rss_anon_kib: Option<f64>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn p50_p99_max(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (
        percentile(&v, 0.5),
        percentile(&v, 0.99),
        v.last().copied().unwrap_or(0.0),
    )
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

/// `n` distinct valid 団体コード: two-digit prefecture, three digits, check digit.
fn tenant_codes(n: usize) -> anyhow::Result<Vec<MunicipalityCode>> {
    let mut out = Vec::with_capacity(n);
    'all: for city in 200..1000 {
        for pref in 1..=47 {
            if out.len() == n {
                break 'all;
            }
            out.push(
                MunicipalityCode::from_five_digits(&format!("{pref:02}{city:03}"))
                    .map_err(|e| anyhow::anyhow!("{e:?}"))?,
            );
        }
    }
    if out.len() < n {
        anyhow::bail!("at most {} tenants", out.len());
    }
    Ok(out)
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

pub async fn run(a: &TenantsBenchArgs, extra_eras: &[String]) -> anyhow::Result<()> {
    let eras = crate::config::era_table(extra_eras).map_err(anyhow::Error::msg)?;
    let mut steps: Vec<usize> = a
        .steps
        .iter()
        .map(|&s| a.max.map_or(s, |m| s.min(m)))
        .collect();
    steps.dedup();
    if steps.is_empty() || steps[0] == 0 || steps.windows(2).any(|w| w[0] >= w[1]) {
        anyhow::bail!("--steps must be ascending tenant counts, the first at least 1");
    }
    if a.sample == 0 || a.reads == 0 || a.changes == 0 || a.last == 0 {
        anyhow::bail!("--sample, --reads, --changes and --last must be at least 1");
    }
    let db = format!("machi_bench_tenants_{}", std::process::id());
    let fresh = crate::store::create_fresh_postgres_database(&a.postgres, &db).await?;
    let loc = DatabaseLocation::Postgres(fresh);
    let key = Arc::new(Keyring::ephemeral()?);
    println!(
        "machi bench-tenants — steps {steps:?}; per step {} sampled tenants × ({} reads + {} changes); creation over the last {} tenants; database {db}",
        a.sample, a.reads, a.changes, a.last
    );
    let result = measure_all(a, &steps, &loc, &key, &eras).await;
    if a.keep {
        println!("(database {db} kept)");
    } else {
        crate::store::drop_postgres_database(&a.postgres, &db).await?;
    }
    let figures = result?;
    print_table(&figures);
    Ok(())
}

async fn measure_all(
    a: &TenantsBenchArgs,
    steps: &[usize],
    loc: &DatabaseLocation,
    key: &Arc<Keyring>,
    eras: &machi_domain::dates::EraTable,
) -> anyhow::Result<Vec<Step>> {
    let codes = tenant_codes(*steps.last().unwrap_or(&1))?;
    let store = Store::connect(loc, key.clone()).await?;
    let r = Registry::new(store, eras.clone(), Clock::System);
    let actor = Actor::system("bench");
    let today = r.today();
    let town = &TOWNS[0];
    let mut synth = Synth::new(7);
    let mut tenants: Vec<Seeded> = Vec::new();
    let mut creation_ms: Vec<f64> = Vec::new();
    let mut out = Vec::new();
    let mut change_no = 0usize;
    for &step in steps {
        let started = Instant::now();
        while tenants.len() < step {
            let code = codes[tenants.len()].clone();
            let t = Instant::now();
            // Named as the town whose addresses the synthetic households
            // have (a 転居 must stay in the tenant's municipality).
            r.create_tenant(code.clone(), town.name, town.prefecture)
                .await?;
            creation_ms.push(ms(t));
            let plan = synth.household(town, today);
            let done = r
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
            let persons = done
                .rows
                .iter()
                .map(|x| x.record.addressee_number.to_string())
                .collect();
            tenants.push(Seeded { code, persons });
            if tenants.len().is_multiple_of(250) {
                println!(
                    "  {} tenants ({:.0} s; last creation {:.0} ms)",
                    tenants.len(),
                    started.elapsed().as_secs_f64(),
                    creation_ms.last().copied().unwrap_or(0.0)
                );
            }
        }
        let last = &creation_ms[creation_ms.len().saturating_sub(a.last)..];
        let (c50, c99, _) = p50_p99_max(last.to_vec());
        let mut f = Step {
            tenants: step,
            create: (c50, c99),
            ..Step::default()
        };
        let (partitions, relations) = r
            .store()
            .read(None, |tx| {
                let p = tx
                    .query_one("SELECT count(*)::bigint FROM pg_inherits", &[])?
                    .int(0)?;
                let c = tx
                    .query_one(
                        "SELECT count(*)::bigint FROM pg_class WHERE relnamespace = 'public'::regnamespace",
                        &[],
                    )?
                    .int(0)?;
                Ok::<_, StoreError>((p, c))
            })
            .await?;
        f.partitions = partitions;
        f.relations = relations;
        // The sample: spread evenly over every tenant created so far (with
        // one tenant, the same one each time).
        let sample: Vec<&Seeded> = (0..a.sample)
            .map(|i| &tenants[i * tenants.len() / a.sample])
            .collect();

        // First read on a new connection, per sampled tenant.
        let mut first_new = Vec::new();
        let mut new_ctx = Vec::new();
        let mut new_rss = Vec::new();
        for s in &sample {
            let store = Store::connect(loc, key.clone()).await?;
            let fresh = Registry::new(store, eras.clone(), Clock::System);
            let p: AddresseeNumber = s.persons[0].parse()?;
            let t = Instant::now();
            fresh.resident(&s.code, &p, AsOf::default(), &actor).await?;
            first_new.push(ms(t));
            let (ctx, rss) = backend_memory(fresh.store()).await?;
            new_ctx.push(ctx);
            if let Some(x) = rss {
                new_rss.push(x);
            }
        }
        let (p50, _, max) = p50_p99_max(first_new);
        f.first_read_new_conn = (p50, max);
        f.new_conn_contexts_kib = p50_p99_max(new_ctx).0;
        f.new_conn_rss_anon_kib = (!new_rss.is_empty()).then(|| p50_p99_max(new_rss).0);

        // Reads and changes on one new pool serving the whole sample.
        let store = Store::connect(loc, key.clone()).await?;
        let pool = Registry::new(store, eras.clone(), Clock::System);
        let date = today - chrono::Duration::days(1);
        let mut reads = Vec::new();
        let mut first_of_tenant = Vec::new();
        let mut changes = Vec::new();
        for s in &sample {
            let persons: Vec<AddresseeNumber> = s
                .persons
                .iter()
                .map(|p| p.parse())
                .collect::<Result<_, _>>()?;
            for i in 0..a.reads {
                let t = Instant::now();
                pool.resident(
                    &s.code,
                    &persons[i % persons.len()],
                    AsOf::default(),
                    &actor,
                )
                .await?;
                let took = ms(t);
                if i == 0 {
                    first_of_tenant.push(took);
                }
                reads.push(took);
            }
            for _ in 0..a.changes {
                change_no += 1;
                let mut address = synth.address(town);
                address.annex = Some(format!("ハイツ{change_no}号室"));
                let req = ChangeRequest {
                    meta: meta(date),
                    command: ChangeCommand::MoveWithin {
                        persons: s.persons.clone(),
                        address,
                        household: None,
                    },
                };
                let t = Instant::now();
                pool.submit(&s.code, &req, &actor).await?;
                changes.push(ms(t));
            }
        }
        let (p50, _, max) = p50_p99_max(first_of_tenant);
        f.first_read_of_tenant = (p50, max);
        f.reads = p50_p99_max(reads);
        f.changes = p50_p99_max(changes);
        let (ctx, rss) = backend_memory(pool.store()).await?;
        f.memory_contexts_kib = ctx;
        f.rss_anon_kib = rss;
        println!(
            "  step {step}: {} tenants, {} partitions ({:.0} s)",
            tenants.len(),
            f.partitions,
            started.elapsed().as_secs_f64()
        );
        out.push(f);
    }
    Ok(out)
}

/// The memory of the backend serving `store`'s connection (the pool
/// reuses its most recent idle connection, the one that served the work
/// just before): its memory contexts in all, and its private resident
/// memory from `/proc` when the server runs on this machine.
async fn backend_memory(store: &Store) -> anyhow::Result<(f64, Option<f64>)> {
    let (pid, bytes) = store
        .read(None, |tx| {
            // The view is for superusers and pg_read_all_stats: the role
            // that connected, not machi_app.
            tx.execute_batch("SET LOCAL ROLE NONE")?;
            let r = tx.query_one(
                "SELECT pg_backend_pid()::bigint, sum(total_bytes)::bigint FROM pg_backend_memory_contexts",
                &[],
            )?;
            Ok::<_, StoreError>((r.int(0)?, r.int(1)?))
        })
        .await?;
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("RssAnon:"))?.to_string();
            line.split_whitespace().nth(1)?.parse::<f64>().ok()
        });
    Ok((bytes as f64 / 1024.0, rss))
}

fn print_table(steps: &[Step]) {
    let Some(base) = steps.first() else { return };
    println!();
    print!("  {:<52}", "figure");
    for s in steps {
        print!(" {:>22}", format!("{} tenants", s.tenants));
    }
    println!();
    let mut worst: f64 = 0.0;
    let mut row = |name: &str, get: &dyn Fn(&Step) -> Option<f64>, unit: &str, flat: bool| {
        print!("  {name:<52}");
        let b = get(base);
        for s in steps {
            match (get(s), b) {
                (Some(v), Some(b)) if b > 0.0 => {
                    let ratio = v / b;
                    if flat && s.tenants == steps.last().map_or(0, |l| l.tenants) {
                        worst = worst.max(ratio);
                    }
                    print!(" {:>22}", format!("{v:.1} {unit} ({ratio:.2}×)"));
                }
                (Some(v), _) => print!(" {:>22}", format!("{v:.1} {unit}")),
                (None, _) => print!(" {:>22}", "n/a"),
            }
        }
        println!();
    };
    row(
        "partitions (pg_inherits rows)",
        &|s| Some(s.partitions as f64),
        "",
        false,
    );
    row(
        "relations in the schema",
        &|s| Some(s.relations as f64),
        "",
        false,
    );
    row("tenant creation p50", &|s| Some(s.create.0), "ms", true);
    row("tenant creation p99", &|s| Some(s.create.1), "ms", true);
    row(
        "first read on a new connection p50",
        &|s| Some(s.first_read_new_conn.0),
        "ms",
        true,
    );
    row(
        "first read on a new connection max",
        &|s| Some(s.first_read_new_conn.1),
        "ms",
        false,
    );
    row(
        "first read of a tenant on a used connection p50",
        &|s| Some(s.first_read_of_tenant.0),
        "ms",
        true,
    );
    row(
        "first read of a tenant on a used connection max",
        &|s| Some(s.first_read_of_tenant.1),
        "ms",
        false,
    );
    row("reads p50", &|s| Some(s.reads.0), "ms", true);
    row("reads p99", &|s| Some(s.reads.1), "ms", true);
    row("reads max", &|s| Some(s.reads.2), "ms", false);
    row("changes p50", &|s| Some(s.changes.0), "ms", true);
    row("changes p99", &|s| Some(s.changes.1), "ms", true);
    row("changes max", &|s| Some(s.changes.2), "ms", false);
    row(
        "memory of a new connection (contexts)",
        &|s| Some(s.new_conn_contexts_kib),
        "KiB",
        true,
    );
    row(
        "memory of a new connection (RssAnon)",
        &|s| s.new_conn_rss_anon_kib,
        "KiB",
        false,
    );
    row(
        "memory of the sample's connection (contexts)",
        &|s| Some(s.memory_contexts_kib),
        "KiB",
        true,
    );
    row(
        "memory of the sample's connection (RssAnon)",
        &|s| s.rss_anon_kib,
        "KiB",
        false,
    );
    if steps.len() > 1 {
        let verdict = if worst <= 1.2 {
            "flat: every figure within 20 %"
        } else {
            "NOT flat: some figure more than 20 % above"
        };
        println!(
            "\n  worst ratio at {} tenants (creation, first reads, reads, changes p50/p99, memory contexts): {worst:.2}× — {verdict} of the one-tenant figure",
            steps.last().map_or(0, |s| s.tenants)
        );
    }
}
