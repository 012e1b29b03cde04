//! `machi bench-search`: search latency at city scale (j340), beside a
//! primary-key read in the same run, on SQLite and PostgreSQL.
//!
//! A synthetic municipality (`machi generate`'s layout, default 1,000,000
//! residents) is imported once per backend and kept (`--dir`, and the
//! PostgreSQL database `--pg-database`), so a second run measures again
//! without importing. The queries are drawn from the tenant's own records:
//! full names and furigana (exact), family names (prefix, common), given
//! names (contained), parts of 1, 2 and 3+ characters, addresses and their
//! parts, and texts that match nobody (the worst case of a scan). Each is
//! timed alone; reported per kind and overall as p50/p99/max, through the
//! service (which also appends the access-log entry, j1370) and at the
//! store (the query alone). The baseline is a read of one resident by
//! 宛名番号 (also through the service, also logged) in the same run.
//!
//! Also reported: the size of each search index, and changes/s (転居 of a
//! whole household) at this scale.
//!
//! Run: `cargo run --release -p machi -- bench-search --postgres URL`.

use std::time::Instant;

use clap::Args;
use machi_domain::change::{AsOf, ChangeCommand, ChangeMeta, ChangeRequest};
use machi_domain::ids::{AddresseeNumber, MunicipalityCode};
use machi_domain::names::{is_kana_query, search_key};

use crate::crypto::{Keyring, MasterKey};
use crate::service::registry::SearchParams;
use crate::service::{Actor, Clock, Registry};
use crate::store::records::{self, SearchFilter};
use crate::store::{Backend, DatabaseLocation, Store, StoreError};
use crate::synth::TOWNS;

#[derive(Args, Debug, Clone)]
pub struct SearchBenchArgs {
    /// Residents to generate and import.
    #[arg(long, default_value_t = 1_000_000)]
    residents: usize,
    /// Directory for the generated files and the SQLite database; kept,
    /// and reused by the next run.
    #[arg(long, default_value = "bench-out/search")]
    dir: std::path::PathBuf,
    /// Also run on PostgreSQL: a server URL. The database `--pg-database`
    /// is made there once and kept.
    #[arg(long, env = "MACHI_BENCH_POSTGRES")]
    postgres: Option<String>,
    /// The PostgreSQL database of the benchmark (created if missing).
    #[arg(long, default_value = "machi_bench_search")]
    pg_database: String,
    /// Skip SQLite.
    #[arg(long)]
    skip_sqlite: bool,
    /// Queries of each kind.
    #[arg(long, default_value_t = 60)]
    per_kind: usize,
    /// Changes (転居 of a household) to time at this scale.
    #[arg(long, default_value_t = 300)]
    changes: usize,
}

/// A small deterministic generator (xorshift64*): the same queries every run.
struct StdRng(u64);

impl StdRng {
    fn seed_from_u64(seed: u64) -> Self {
        StdRng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// A number in `range` (empty ranges give its start).
    fn random_range(&mut self, range: std::ops::RangeInclusive<usize>) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        let (lo, hi) = (*range.start(), *range.end());
        if hi <= lo {
            return lo;
        }
        lo + (x % (hi - lo + 1) as u64) as usize
    }
}

/// A fixed master key: the benchmark keeps its databases between runs
/// (synthetic people only).
const BENCH_MASTER_KEY: &str = "62656e63682d7365617263682d6e6f742d612d7265616c2d6b65792d2d2d2d21";

pub async fn run(a: &SearchBenchArgs, extra_eras: &[String]) -> anyhow::Result<()> {
    use crate::migration::generate::{GenerateOptions, generate};
    let eras = crate::config::era_table(extra_eras).map_err(anyhow::Error::msg)?;
    let keyring = std::sync::Arc::new(Keyring::new(
        &MasterKey::from_hex(BENCH_MASTER_KEY).map_err(|e| anyhow::anyhow!("{e:?}"))?,
    ));
    let data = a.dir.join(format!("data-{}", a.residents));
    println!("machi bench-search — {} residents", a.residents);
    if !data.join(crate::migration::layout::RESIDENTS_FILE).exists() {
        let t = Instant::now();
        let opts = GenerateOptions {
            residents: a.residents,
            seed: 1,
            town_index: 0,
            today: Clock::System.today(),
        };
        let (d, e) = (data.clone(), eras.clone());
        let g = tokio::task::spawn_blocking(move || generate(&d, &opts, &e)).await??;
        println!(
            "  generated {} persons, {} history rows in {:.1} s",
            g.persons,
            g.history_rows,
            t.elapsed().as_secs_f64()
        );
    }
    let mut targets: Vec<(&str, DatabaseLocation)> = Vec::new();
    if !a.skip_sqlite {
        targets.push((
            "SQLite",
            DatabaseLocation::Sqlite(a.dir.join(format!("search-{}.sqlite", a.residents))),
        ));
    }
    if let Some(url) = &a.postgres {
        let db_url = crate::store::postgres_url_with_database(url, &a.pg_database);
        let exists = Store::connect(&DatabaseLocation::Postgres(db_url.clone()), keyring.clone())
            .await
            .is_ok();
        let db_url = if exists {
            db_url
        } else {
            crate::store::create_fresh_postgres_database(url, &a.pg_database).await?
        };
        targets.push(("PostgreSQL", DatabaseLocation::Postgres(db_url)));
    }
    for (label, loc) in targets {
        let store = Store::connect(&loc, keyring.clone()).await?;
        let r = Registry::new(store, eras.clone(), Clock::System);
        measure(label, &r, &loc, &data, a).await?;
    }
    Ok(())
}

/// What one query asks: a name (kanji or kana) or an address.
#[derive(Debug, Clone)]
struct Query {
    kind: &'static str,
    name: Option<String>,
    address: Option<String>,
    /// Also past history rows and 除票 (`include_history`, `include_removed`).
    history: bool,
}

fn chars(s: &str) -> Vec<char> {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

fn part(rng: &mut StdRng, s: &str, len: usize) -> String {
    let cs = chars(s);
    if cs.len() <= len {
        return cs.into_iter().collect();
    }
    let start = rng.random_range(0..=cs.len() - len);
    cs[start..start + len].iter().collect()
}

/// The queries, drawn from the records of `sample` (current rows).
fn queries(sample: &[machi_domain::change::HistoryRow], per_kind: usize) -> Vec<Query> {
    let mut rng = StdRng::seed_from_u64(7);
    // The kinds added later draw from their own generator: the earlier
    // kinds' queries stay as they were.
    let mut rng2 = StdRng::seed_from_u64(13);
    let mut out = Vec::new();
    let name = |q: String| Some(q);
    for i in 0..per_kind {
        let r = &sample[i % sample.len()].record;
        let full = r.name.as_str().to_string();
        let (family, given) = full
            .split_once(['　', ' '])
            .map_or((full.clone(), full.clone()), |(f, g)| {
                (f.to_string(), g.to_string())
            });
        let kana = r
            .name_kana
            .as_ref()
            .map_or(String::new(), |k| k.as_str().to_string());
        let kana_family = kana
            .split_once(['　', ' '])
            .map_or(kana.clone(), |(f, _)| f.to_string());
        let address = r.address.address.clone();
        let mut push_h =
            |kind: &'static str, n: Option<String>, a: Option<String>, history: bool| {
                out.push(Query {
                    kind,
                    name: n,
                    address: a,
                    history,
                })
            };
        let mut push =
            |kind: &'static str, n: Option<String>, a: Option<String>| push_h(kind, n, a, false);
        push("name, full (exact)", name(full.clone()), None);
        push("name, family (prefix, common)", name(family.clone()), None);
        push("name, given (contained)", name(given.clone()), None);
        push("name, 1 character", name(part(&mut rng, &full, 1)), None);
        push("name, 2 characters", name(part(&mut rng, &full, 2)), None);
        push("name, 3 characters", name(part(&mut rng, &full, 3)), None);
        push("kana, full (exact)", name(kana.clone()), None);
        push("kana, family (prefix)", name(kana_family), None);
        push("kana, 3+ characters", name(part(&mut rng, &kana, 4)), None);
        push("address, full", None, Some(address.clone()));
        push(
            "address, 2 characters",
            None,
            Some(part(&mut rng, &address, 2)),
        );
        push(
            "address, 3+ characters",
            None,
            Some(part(&mut rng, &address, 4)),
        );
        // Texts that match nobody: the whole index (or table) must say no.
        const RARE: [&str; 6] = ["鬱", "鬱金", "鬱金香", "ヴュルツ", "轟木鬱", "蠶"];
        push(
            "no match (rare)",
            name(RARE[i % RARE.len()].to_string()),
            None,
        );
        // Added with the address and history grams: one-character
        // addresses, and one and two characters over history and 除票.
        push(
            "address, 1 character",
            None,
            Some(part(&mut rng2, &address, 1)),
        );
        let (n1, n2) = (part(&mut rng2, &full, 1), part(&mut rng2, &full, 2));
        let a2 = part(&mut rng2, &address, 2);
        push_h("history, name 1 character", name(n1), None, true);
        push_h("history, name 2 characters", name(n2), None, true);
        push_h("history, address 2 characters", None, Some(a2), true);
        push_h(
            "history, no match (rare)",
            name(RARE[i % 3].to_string()),
            None,
            true,
        );
    }
    out
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn stats(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (
        percentile(&v, 0.5),
        percentile(&v, 0.99),
        v.last().copied().unwrap_or(0.0),
    )
}

async fn measure(
    label: &str,
    r: &Registry,
    loc: &DatabaseLocation,
    data: &std::path::Path,
    a: &SearchBenchArgs,
) -> anyhow::Result<()> {
    use crate::migration::import::{ImportOptions, Outcome, import};
    let town = &TOWNS[0];
    let code: MunicipalityCode = town.code.parse().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let actor = Actor::system("bench-search");
    println!("\n{label}");
    if r.tenant(&code).await.is_err() {
        r.create_tenant(code.clone(), town.name, town.prefecture)
            .await?;
    }
    let t = code.clone();
    let residents: i64 = r
        .store()
        .read(Some(&code), move |tx| {
            tx.query_one(
                "SELECT count(*) FROM resident_current WHERE tenant = $1 AND status = 'resident'",
                &[t.as_str().into()],
            )?
            .int(0)
        })
        .await?;
    if residents == 0 {
        let rep = import(
            r,
            &code,
            std::slice::from_ref(&data.to_path_buf()),
            &ImportOptions::default(),
            &actor,
        )
        .await?;
        if rep.outcome != Outcome::Imported {
            anyhow::bail!("import ended {:?}: {:?}", rep.outcome, rep.problems.first());
        }
        println!(
            "  imported {} persons, {} history rows in {:.1} s (search indexes built in the same load)",
            rep.persons,
            rep.history_rows,
            rep.validate_seconds + rep.load_seconds
        );
        r.store().wait_for_checkpoint().await;
        if let DatabaseLocation::Postgres(url) = loc {
            let _ = crate::store::checkpoint_postgres(url).await;
        }
    } else {
        println!("  {residents} residents already imported: reused");
    }
    print_index_sizes(r).await?;

    // The sample: residents spread over the tenant; and, drawn apart,
    // the households the timed changes move (never one of the sample's:
    // a moved household gets an address of its own, and the next run's
    // address queries drawn from it would match a household, not a
    // building).
    let t = code.clone();
    let (sample, movers) = r
        .store()
        .read(Some(&code), move |tx| {
            let all: Vec<String> = tx
                .query(
                    "SELECT addressee_number FROM resident_current WHERE tenant = $1 AND status = 'resident' ORDER BY addressee_number",
                    &[t.as_str().into()],
                )?
                .iter()
                .map(|r| r.text(0))
                .collect::<Result<_, _>>()?;
            let draw = |seed: u64| -> Vec<AddresseeNumber> {
                let mut rng = StdRng::seed_from_u64(seed);
                (0..400)
                    .filter_map(|_| all.get(rng.random_range(0..=all.len().saturating_sub(1))))
                    .filter_map(|a| a.parse().ok())
                    .collect()
            };
            let sample = records::change_context(tx, &t, &draw(13), &[])?;
            let movers = records::change_context(tx, &t, &draw(29), &[])?;
            Ok::<_, StoreError>((sample, movers))
        })
        .await?;
    let sample: Vec<_> = sample
        .into_iter()
        .filter(|r| r.record.status.is_resident())
        .collect();
    let sampled: std::collections::BTreeSet<String> = sample
        .iter()
        .map(|r| r.record.household_number.to_string())
        .collect();
    let movers: Vec<_> = movers
        .into_iter()
        .filter(|r| {
            r.record.status.is_resident()
                && !sampled.contains(&r.record.household_number.to_string())
        })
        .collect();
    if sample.is_empty() {
        anyhow::bail!("no residents to sample");
    }
    let qs = queries(&sample, a.per_kind);
    // Warm-up: one pass of every kind, not timed (caches as in service).
    for q in qs.iter().take(36) {
        let _ = r.search(&code, &params(q), &actor).await?;
    }

    let mut pk = Vec::new();
    let mut svc: std::collections::BTreeMap<&str, Vec<f64>> = Default::default();
    let mut raw: std::collections::BTreeMap<&str, Vec<f64>> = Default::default();
    let mut results: std::collections::BTreeMap<&str, usize> = Default::default();
    // (through the service, alone, query): the slowest are printed.
    let mut slowest: Vec<(f64, f64, usize)> = Vec::new();
    for (i, q) in qs.iter().enumerate() {
        // The baseline, interleaved: one resident by 宛名番号.
        let p = &sample[i % sample.len()].record.addressee_number;
        let t0 = Instant::now();
        r.resident(&code, p, AsOf::default(), &actor).await?;
        pk.push(t0.elapsed().as_secs_f64() * 1e3);

        let t0 = Instant::now();
        let page = r.search(&code, &params(q), &actor).await?;
        let through = t0.elapsed().as_secs_f64() * 1e3;
        svc.entry(q.kind).or_default().push(through);
        *results.entry(q.kind).or_default() += page.rows.len();

        let f = filter(q);
        let t = code.clone();
        let t0 = Instant::now();
        r.store()
            .read(Some(&code), move |tx| records::search(tx, &t, &f, None, 51))
            .await?;
        let alone = t0.elapsed().as_secs_f64() * 1e3;
        raw.entry(q.kind).or_default().push(alone);
        slowest.push((through, alone, i));
    }
    let (p50, p99, max) = stats(pk.clone());
    println!(
        "  {:<32} {:>6} {:>9} {:>9} {:>9}   {:>9} {:>9}  {:>8}",
        "query kind", "count", "p50 ms", "p99 ms", "max ms", "store p50", "store p99", "rows/q"
    );
    println!(
        "  {:<32} {:>6} {:>9.2} {:>9.2} {:>9.2}   (baseline: a resident by 宛名番号, logged)",
        "primary-key read (baseline)",
        pk.len(),
        p50,
        p99,
        max
    );
    let mut all_svc = Vec::new();
    let mut all_raw = Vec::new();
    for (kind, v) in &svc {
        let n = v.len();
        let (p50, p99, max) = stats(v.clone());
        let (r50, r99, _) = stats(raw[kind].clone());
        all_svc.extend(v);
        all_raw.extend(&raw[kind]);
        println!(
            "  {:<32} {:>6} {:>9.2} {:>9.2} {:>9.2}   {:>9.2} {:>9.2}  {:>8.1}",
            kind,
            n,
            p50,
            p99,
            max,
            r50,
            r99,
            results[kind] as f64 / n as f64
        );
    }
    slowest.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (through, alone, i) in slowest.iter().take(8) {
        let q = &qs[*i];
        println!(
            "  slow: {:<32} {:>7.2} ms ({:>6.2} alone)  name {:?} address {:?}",
            q.kind, through, alone, q.name, q.address
        );
    }
    let (s50, s99, smax) = stats(all_svc);
    let (r50, r99, _) = stats(all_raw);
    let (b50, b99, _) = stats(pk);
    println!(
        "  {:<32} {:>6} {:>9.2} {:>9.2} {:>9.2}   {:>9.2} {:>9.2}",
        "all searches",
        qs.len(),
        s50,
        s99,
        smax,
        r50,
        r99
    );
    println!(
        "  searches vs the primary-key read: p50 {:.2}×, p99 {:.2}× (target: search p99 ≤ 10 ms)",
        s50 / b50.max(1e-9),
        s99 / b99.max(1e-9)
    );

    // Changes at this scale: 転居 of a drawn person's household (not the
    // sample's).
    if a.changes > 0 && movers.is_empty() {
        println!("  changes: none timed (every household drawn is the sample's)");
    }
    if a.changes > 0 && !movers.is_empty() {
        let today = r.today();
        // New addresses of this run (a second run on the same database
        // would otherwise move people to where they already live).
        let run = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() % 1_000_000);
        let mut n = 0;
        let mut lat = Vec::new();
        let t0 = Instant::now();
        for (i, row) in movers.iter().cycle().take(a.changes).enumerate() {
            // The whole household moves (a part of one would need a
            // household of its own).
            let (t, h) = (code.clone(), row.record.household_number.to_string());
            // Sorted here: with `ORDER BY`, SQLite (no statistics) walks the
            // tenant in key order instead of the 世帯番号 index (244 ms at
            // 1,000,000 residents; see `records::household_rows`).
            let mut persons: Vec<String> = r
                .store()
                .read(Some(&code), move |tx| {
                    tx.query(
                        "SELECT addressee_number FROM resident_current WHERE tenant = $1 \
                         AND household_number = $2 AND status = 'resident'",
                        &[t.as_str().into(), h.as_str().into()],
                    )?
                    .iter()
                    .map(|r| r.text(0))
                    .collect::<Result<Vec<_>, _>>()
                })
                .await?;
            persons.sort();
            let req = ChangeRequest {
                meta: ChangeMeta {
                    effective_date: today.format("%Y-%m-%d").to_string(),
                    filed_on: None,
                    input_place: "bench".into(),
                    input_terminal: "B-1".into(),
                    allow_headless_household: false,
                },
                command: ChangeCommand::MoveWithin {
                    persons,
                    address: machi_domain::change::AddressInput {
                        address: format!("{}{}番{}号", town.name, 9000 + i, run),
                        annex: None,
                        postal_code: None,
                    },
                    household: None,
                },
            };
            let c0 = Instant::now();
            match r.submit(&code, &req, &actor).await {
                Ok(_) => {
                    n += 1;
                    lat.push(c0.elapsed().as_secs_f64() * 1e3);
                }
                Err(e) => println!("  (a change was refused: {e})"),
            }
        }
        let secs = t0.elapsed().as_secs_f64();
        let (c50, c99, _) = stats(lat);
        println!(
            "  changes (転居, one client)      {:>6} {:>9.2} {:>9.2}   {:.0} changes/s",
            n,
            c50,
            c99,
            n as f64 / secs.max(1e-9)
        );
    }
    Ok(())
}

fn params(q: &Query) -> SearchParams {
    SearchParams {
        name: q.name.clone(),
        address: q.address.clone(),
        limit: 50,
        include_history: q.history,
        include_removed: q.history,
        ..Default::default()
    }
}

fn filter(q: &Query) -> SearchFilter {
    let folded = |s: &str| -> Option<String> {
        let k: String = search_key(s).chars().filter(|c| !c.is_control()).collect();
        (!k.is_empty()).then_some(k)
    };
    let mut f = SearchFilter {
        include_history: q.history,
        include_removed: q.history,
        ..Default::default()
    };
    if let Some(n) = &q.name {
        if is_kana_query(n) {
            f.kana_key = folded(n);
        } else {
            f.name_key = folded(n);
        }
    }
    if let Some(a) = &q.address {
        f.address_key = folded(a);
        f.exclude_shielded = true;
    }
    f
}

/// The size of each search index (and of the tables), in MiB.
async fn print_index_sizes(r: &Registry) -> anyhow::Result<()> {
    let sizes: Vec<(String, f64)> = r
        .store()
        .read(None, |tx| {
            let sql = match tx.backend() {
                Backend::Sqlite => {
                    "SELECT name AS n, CAST(sum(pgsize) AS BIGINT) FROM dbstat \
                     WHERE name LIKE 'resident_%' OR name LIKE 'search_%' GROUP BY n ORDER BY n"
                }
                Backend::Postgres => {
                    "SELECT CASE WHEN p.relname IS NULL THEN c.relname::text ELSE p.relname::text END AS n, \
                     sum(pg_relation_size(c.oid))::bigint FROM pg_class c \
                     LEFT JOIN pg_inherits i ON i.inhrelid = c.oid LEFT JOIN pg_class p ON p.oid = i.inhparent \
                     WHERE (c.relname LIKE 'resident_current%' OR c.relname LIKE 'resident_history%' \
                     OR c.relname LIKE 'resident_gram%' OR c.relname LIKE 'search_key_gram%' \
                     OR c.relname LIKE 'search_gram_count%') \
                     AND c.relkind IN ('r', 'i') GROUP BY n ORDER BY n"
                }
            };
            let rows = tx.query(sql, &[])?;
            rows.iter()
                .map(|r| Ok::<_, StoreError>((r.text(0)?, r.int(1)? as f64 / 1048576.0)))
                .collect::<Result<Vec<_>, _>>()
        })
        .await?;
    println!("  sizes (MiB):");
    for (n, mib) in sizes {
        println!("    {n:<44} {mib:>9.1}");
    }
    Ok(())
}
