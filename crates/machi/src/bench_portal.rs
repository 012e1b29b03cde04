//! `machi bench-portal` (issue 11, item 10): filings accepted per second by
//! the citizen portal (answers checked against the published definition,
//! signature verified, sealed to the back office, stored in the portal's
//! database) and imported per second by the back office (pulled over HTTP
//! from the running portal, opened, checked, stored idempotently in
//! `portal_filings`, acknowledged), each beside baselines measured in the
//! same run: signature verification alone, sealing alone, opening alone.
//!
//! Material is synthetic: a DEMO CA (`machi-sign` feature `demo-signer`),
//! DEMO cards, 転出届 filings of 架空 persons signed with them.
//!
//! Run: `cargo run --release -p machi -- bench-portal` (add `--postgres URL`
//! for the back office on PostgreSQL).

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use clap::Args;
use machi_domain::ids::MunicipalityCode;
use machi_portal::accept::{Submission, signed_content};
use machi_portal::seal::{self, OpeningKey};
use machi_portal::signing::{SignatureFiles, Signing, payload_of};
use machi_portal::{Config, Portal};
use machi_procedures::{Answers, CheckContext, Definition};
use machi_sign::demo::{CardSpec, DemoCa, SignOptions, generate_key};
use sha2::{Digest, Sha256};

use crate::crypto::Keyring;
use crate::service::{Clock, Registry};
use crate::store::{DatabaseLocation, SqliteSync, Store};

#[derive(Args, Debug, Clone)]
pub struct BenchPortalArgs {
    /// Signed filings accepted in the batched measurement (and then imported).
    #[arg(long, default_value_t = 4000)]
    filings: usize,
    /// Filings accepted one transaction each (the comparison).
    #[arg(long, default_value_t = 500)]
    single: usize,
    /// Distinct DEMO cards (one RSA-2048 key each; generating them is slow).
    #[arg(long, default_value_t = 8)]
    cards: usize,
    /// Serials on the DEMO CA's CRL.
    #[arg(long, default_value_t = 100_000)]
    revoked: usize,
    /// Threads accepting filings (and for the baselines).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Filings per accepted batch (one transaction each).
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Signed 転出届 sent through the served submit (`POST /d/submit` of
    /// the running portal) per client count in `--clients`.
    #[arg(long, default_value_t = 1000)]
    served: usize,
    /// Concurrent HTTP clients for the served measurement, comma-separated.
    #[arg(long, default_value = "1,16", value_delimiter = ',')]
    clients: Vec<usize>,
    /// Filings per pull (the portal answers at most 1,000).
    #[arg(long, default_value_t = 500)]
    page: usize,
    /// The back office on PostgreSQL instead of SQLite: a server URL (a
    /// fresh database is created there and dropped after).
    #[arg(long, env = "MACHI_BENCH_POSTGRES")]
    postgres: Option<String>,
}

struct Rate {
    what: String,
    n: usize,
    secs: f64,
    cpu: Option<f64>,
}

impl Rate {
    fn per_sec(&self) -> f64 {
        self.n as f64 / self.secs.max(1e-9)
    }
    fn line(&self, base: Option<&Rate>) -> String {
        let ratio = base
            .map(|b| format!("; {:.2}× {}", self.per_sec() / b.per_sec(), short(&b.what)))
            .unwrap_or_default();
        let cpu = self
            .cpu
            .filter(|c| *c > 0.0)
            .map(|c| format!("; {:.0} per CPU-second", self.n as f64 / c))
            .unwrap_or_default();
        format!(
            "{:<58} {:>7.0}/s ({} in {:.2} s{ratio}{cpu})",
            self.what,
            self.per_sec(),
            self.n,
            self.secs
        )
    }
}

fn short(what: &str) -> &str {
    what.split(',').next().unwrap_or(what)
}

/// User + system CPU time of this process (Linux, USER_HZ = 100).
fn cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let u: f64 = f.get(11)?.parse().ok()?;
    let s: f64 = f.get(12)?.parse().ok()?;
    Some((u + s) / 100.0)
}

/// Runs `f(i)` for i in 0..n on `threads` threads (interleaved).
fn timed<F: Fn(usize) + Sync>(what: String, n: usize, threads: usize, f: F) -> Rate {
    let cpu0 = cpu_secs();
    let t = Instant::now();
    std::thread::scope(|s| {
        for k in 0..threads.max(1) {
            let f = &f;
            s.spawn(move || {
                let mut i = k;
                while i < n {
                    f(i);
                    i += threads.max(1);
                }
            });
        }
    });
    let secs = t.elapsed().as_secs_f64();
    Rate {
        what,
        n,
        secs,
        cpu: cpu0.zip(cpu_secs()).map(|(a, b)| b - a),
    }
}

/// The answers of the i-th synthetic 転出届 (seireki dates).
fn answers(i: usize, today: chrono::NaiveDate) -> Answers {
    let d = |prefix: &str, date: chrono::NaiveDate, a: &mut Answers| {
        use chrono::Datelike;
        a.insert(format!("{prefix}.era"), "seireki".into());
        a.insert(format!("{prefix}.year"), date.year().to_string());
        a.insert(format!("{prefix}.month"), date.month().to_string());
        a.insert(format!("{prefix}.day"), date.day().to_string());
    };
    let mut a = Answers::new();
    a.insert("applicant_name".into(), "架空　太郎".into());
    a.insert("applicant_kana".into(), "カクウ　タロウ".into());
    a.insert(
        "phone".into(),
        format!("042-{:03}-{:04}", i / 10_000 % 1000, i % 10_000),
    );
    d("moving_date", today + chrono::Duration::days(7), &mut a);
    a.insert("destination.postal".into(), "196-0015".into());
    a.insert(
        "destination.address".into(),
        format!("東京都昭島市昭和町二丁目{}番地", i % 50 + 1),
    );
    a.insert("members.count".into(), "1".into());
    a.insert("members.0.name".into(), "架空　太郎".into());
    a.insert("members.0.kana".into(), "カクウ　タロウ".into());
    d(
        "members.0.birth_date",
        chrono::NaiveDate::from_ymd_opt(1980, 4, 1).unwrap_or(today),
        &mut a,
    );
    d("visit_date", today + chrono::Duration::days(14), &mut a);
    a
}

const TENANT: &str = "132063";

pub async fn run(a: &BenchPortalArgs, extra_eras: &[String]) -> anyhow::Result<()> {
    let eras = crate::config::era_table(extra_eras).map_err(anyhow::Error::msg)?;
    let threads = a.threads.max(1);
    let n = a.filings.max(1);
    let single = a.single;
    println!(
        "machi bench-portal — {n} signed 転出届 filings batched by {} on {threads} threads, {single} one transaction each; pulls of {}",
        a.batch, a.page
    );
    let setup = Instant::now();
    let dir = std::env::temp_dir().join(format!("machi-bench-portal-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;

    // The DEMO CA, cards, and every filing signed (set-up, not measured).
    let now = Utc::now();
    let today = now.with_timezone(&machi_portal::jst()).date_naive();
    let cards_n = a.cards.max(1);
    let revoked = a.revoked;
    let total = n + single;
    let def = Definition::parse(
        machi_procedures::SHIPPED
            .iter()
            .find(|(name, _)| name.contains("tenshutsu"))
            .map(|(_, s)| *s)
            .ok_or_else(|| anyhow::anyhow!("the shipped 転出届 is missing"))?,
    )
    .map_err(|r| anyhow::anyhow!("{}", r.message_en()))?;
    let def_served = def.clone();
    let (ca_der, crl_der, subs, cards) = tokio::task::spawn_blocking(move || {
        let ca = DemoCa::new(
            generate_key()?,
            "Bench",
            now - chrono::Duration::days(700),
            now + chrono::Duration::days(3000),
        )?;
        let cards = (0..cards_n)
            .map(|i| {
                let spec = CardSpec::new(
                    10_000 + i as u64,
                    "架空　太郎",
                    "1",
                    "419800401",
                    "東京都府中市宮西町二丁目24番地",
                    now - chrono::Duration::days(30),
                );
                ca.issue(&spec, &generate_key()?)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let revoked: Vec<_> = (0..revoked)
            .map(|i| (20_000_000 + i as u64, now - chrono::Duration::days(1)))
            .collect();
        let crl = ca.crl(
            now - chrono::Duration::hours(1),
            now + chrono::Duration::days(1),
            &revoked,
        )?;
        let ctx = CheckContext::new(today);
        let subs: Vec<(Submission, Vec<u8>)> = (0..total)
            .map(|i| {
                let ans = answers(i, today);
                let nonce = format!("{i:032x}");
                let content = signed_content(
                    TENANT,
                    def.id(),
                    def.version(),
                    Some(&nonce),
                    def.filing_payload(&ans, &ctx),
                );
                let bytes = payload_of(&content)
                    .and_then(|p| p.canonical_bytes().ok())
                    .unwrap_or_default();
                let cms = cards[i % cards.len()].sign(
                    &bytes,
                    SignOptions {
                        detached: true,
                        pss: false,
                        signing_time: now - chrono::Duration::minutes(1),
                    },
                )?;
                Ok((
                    Submission {
                        tenant: TENANT.into(),
                        procedure: def.id().into(),
                        version: def.version(),
                        answers: ans,
                        nonce: Some(nonce),
                        signature: Some(cms),
                        demo: false,
                        draft_code: None,
                        corrects: None,
                    },
                    bytes,
                ))
            })
            .collect::<Result<_, machi_sign::demo::DemoError>>()?;
        Ok::<_, machi_sign::demo::DemoError>((ca.cert_der(), crl, subs, cards))
    })
    .await??;
    let cards_for_served = Arc::new(cards);
    let mut verifier = machi_sign::Verifier::new(&[&ca_der])?;
    verifier.add_crl(&crl_der)?;
    let verifier = Arc::new(verifier);

    // The portal, as `machi portal serve` opens it.
    let key = OpeningKey::generate()?;
    let token = hex::encode(seal::random::<32>()?);
    let mut config = Config::new(key.public());
    config.pull_token_sha256 = Some(hex::encode(Sha256::digest(token.as_bytes())));
    let signing = Arc::new(
        Signing::load(
            SignatureFiles::default(),
            vec![ca_der.clone()],
            vec![crl_der.clone()],
        )
        .map_err(|e| anyhow::anyhow!("{}", e.message_en()))?,
    );
    config.signing = Some(signing.clone());
    let portal = Portal::open(&dir.join("portal.sqlite"), config)?;
    portal
        .publish_shipped(TENANT, "府中市", "Fuchu City")
        .map_err(|e| anyhow::anyhow!("{}", e.message_en()))?;
    println!(
        "set-up {:.1} s (DEMO CA, {cards_n} cards, {total} filings signed; CRL of {} serials, {} bytes)\n",
        setup.elapsed().as_secs_f64(),
        revoked,
        crl_der.len()
    );

    // ---- the portal
    let subs = Arc::new(subs);
    let (single_rate, batched, verify_only, seal_only, sealed_sample) = {
        let portal = portal.clone();
        let subs = subs.clone();
        let verifier = verifier.clone();
        let key_pub = key.public();
        let batch = a.batch.max(1);
        tokio::task::spawn_blocking(move || {
            let sample_plain: Vec<u8> = vec![b'x'; 1500];
            let verify_only = timed(
                format!("baseline: signature verification alone, {threads} threads"),
                n,
                threads,
                |i| {
                    let (s, bytes) = &subs[single + i];
                    let cms = s.signature.as_deref().unwrap_or_default();
                    let r = verifier.verify(cms, Some(bytes), Utc::now());
                    assert!(r.is_ok(), "bench signature refused: {r:?}");
                },
            );
            let seal_only = timed(
                format!("baseline: sealing alone (HPKE, 1.5 KB), {threads} threads"),
                n,
                threads,
                |i| {
                    let r = seal::seal_filing(&key_pub, &sample_plain, &i.to_string());
                    assert!(r.is_ok());
                },
            );
            let single_rate = timed(
                format!("accepted, one transaction per filing, {threads} threads"),
                single,
                threads,
                |i| {
                    let r = portal.accept_batch(std::slice::from_ref(&subs[i].0));
                    assert!(
                        matches!(r.as_deref(), Ok([Ok(_)])),
                        "bench filing refused: {r:?}"
                    );
                },
            );
            let chunks = n.div_ceil(batch);
            let cpu0 = cpu_secs();
            let t = Instant::now();
            std::thread::scope(|s| {
                for k in 0..threads {
                    let (portal, subs) = (&portal, &subs);
                    s.spawn(move || {
                        let mut c = k;
                        while c < chunks {
                            let from = single + c * batch;
                            let to = (from + batch).min(single + n);
                            let part: Vec<Submission> =
                                subs[from..to].iter().map(|(s, _)| s.clone()).collect();
                            let r = portal.accept_batch(&part);
                            assert!(
                                r.as_ref().is_ok_and(|v| v.iter().all(|x| x.is_ok())),
                                "bench batch refused: {:?}",
                                r.map(|v| v.into_iter().find(|x| x.is_err()))
                            );
                            c += threads;
                        }
                    });
                }
            });
            let batched = Rate {
                what: format!("accepted, batches of {batch}, {threads} threads"),
                n,
                secs: t.elapsed().as_secs_f64(),
                cpu: cpu0.zip(cpu_secs()).map(|(a, b)| b - a),
            };
            let sealed_sample = portal
                .store
                .pending(1000)
                .unwrap_or_default()
                .into_iter()
                .map(|r| (r.0, r.5))
                .collect::<Vec<_>>();
            (single_rate, batched, verify_only, seal_only, sealed_sample)
        })
        .await?
    };
    println!("portal (accept = answers checked + signature verified + sealed + stored)");
    println!("  {}", verify_only.line(None));
    println!("  {}", seal_only.line(None));
    println!("  {}", single_rate.line(Some(&verify_only)));
    println!("  {}", batched.line(Some(&verify_only)));
    println!(
        "  target ≥ 1,000/s accepted: {}",
        if batched.per_sec() >= 1000.0 {
            "met"
        } else {
            "NOT met"
        }
    );

    // ---- the served path: the portal's real HTTP server on loopback, the
    // citizen's last step (`POST /d/submit` of a signed, confirmed draft)
    // sent by N concurrent clients.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn({
        let portal = portal.clone();
        async move {
            let _ = axum::serve(listener, machi_portal::router(portal)).await;
        }
    });
    let http = crate::service::hooks::http_client(std::time::Duration::from_secs(60))?;
    let mut served_total = 0usize;
    let mut served_rates = Vec::new();
    for &clients in a.clients.iter().filter(|c| **c > 0) {
        let m = if clients == 1 {
            a.served.clamp(1, 300)
        } else {
            a.served.max(1)
        };
        let t0 = Instant::now();
        let drafts = served_drafts(&http, &url, &def_served, &cards_for_served, m, today).await?;
        println!(
            "  (set-up: {m} drafts filled, signed and confirmed over HTTP in {:.1} s)",
            t0.elapsed().as_secs_f64()
        );
        let drafts = Arc::new(drafts);
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let commits0 = portal.commits();
        let cpu0 = cpu_secs();
        let t = Instant::now();
        let tasks: Vec<_> = (0..clients)
            .map(|_| {
                let (http, url, drafts, next) =
                    (http.clone(), url.clone(), drafts.clone(), next.clone());
                tokio::spawn(async move {
                    let mut ok = 0usize;
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(cookie) = drafts.get(i) else {
                            return Ok::<_, anyhow::Error>(ok);
                        };
                        let r = http
                            .post(format!("{url}/d/submit"))
                            .header(reqwest::header::COOKIE, cookie)
                            .header(
                                reqwest::header::CONTENT_TYPE,
                                "application/x-www-form-urlencoded",
                            )
                            .send()
                            .await?;
                        let to = location(&r);
                        if r.status() != reqwest::StatusCode::SEE_OTHER
                            || !to.starts_with("/status/")
                        {
                            let status = r.status();
                            let body = r.text().await.unwrap_or_default();
                            anyhow::bail!(
                                "served submit refused: {status} {to} {}",
                                body.chars().take(400).collect::<String>()
                            );
                        }
                        ok += 1;
                    }
                })
            })
            .collect();
        let mut ok = 0;
        for task in tasks {
            ok += task.await??;
        }
        let rate = Rate {
            what: format!("accepted, served (POST /d/submit over HTTP), {clients} clients"),
            n: ok,
            secs: t.elapsed().as_secs_f64(),
            cpu: cpu0.zip(cpu_secs()).map(|(a, b)| b - a),
        };
        let commits = portal.commits() - commits0;
        served_total += ok;
        served_rates.push((rate, commits));
    }
    println!(
        "\nportal, served (the portal's HTTP server in this process, loopback; answers checked + signature verified + sealed + stored by group commit)"
    );
    println!("  {}", verify_only.line(None));
    for (rate, commits) in &served_rates {
        println!(
            "  {} — {commits} commits, {:.1} filings per commit",
            rate.line(Some(&verify_only)),
            rate.n as f64 / (*commits).max(1) as f64
        );
    }
    if let Some((best, _)) = served_rates
        .iter()
        .max_by(|a, b| a.0.per_sec().total_cmp(&b.0.per_sec()))
    {
        println!(
            "  target ≥ 1,000/s accepted (served): {}",
            if best.per_sec() >= 1000.0 {
                "met"
            } else {
                "NOT met"
            }
        );
    }

    // ---- the back office
    let open_only = {
        let k = OpeningKey::from_hex(&key.to_hex())?;
        let m = sealed_sample.len();
        tokio::task::spawn_blocking(move || {
            timed(
                format!("baseline: opening alone (HPKE), {threads} threads"),
                m,
                threads,
                |i| {
                    let (id, sealed) = &sealed_sample[i];
                    assert!(k.open(sealed, id).is_ok());
                },
            )
        })
        .await?
    };
    let backends: Vec<(&str, DatabaseLocation)> = match &a.postgres {
        Some(url) => {
            let db = format!("machi_bench_portal_{}", std::process::id());
            let fresh = crate::store::create_fresh_postgres_database(url, &db).await?;
            vec![("PostgreSQL", DatabaseLocation::Postgres(fresh))]
        }
        None => vec![(
            "SQLite (WAL, synchronous=FULL)",
            DatabaseLocation::Sqlite(dir.join("backoffice.sqlite")),
        )],
    };
    for (label, loc) in backends {
        let store = Store::connect_with(&loc, SqliteSync::Full, Keyring::ephemeral()?).await?;
        let registry = Registry::new(store.clone(), eras.clone(), Clock::System);
        let code: MunicipalityCode = TENANT.parse().map_err(|e| anyhow::anyhow!("{e:?}"))?;
        registry
            .create_tenant(code.clone(), "府中市", "東京都")
            .await?;
        let client = crate::service::hooks::http_client(std::time::Duration::from_secs(30))?;
        let expected = single + n + served_total;
        let mut imported = 0usize;
        let cpu0 = cpu_secs();
        let t = Instant::now();
        loop {
            let o = crate::portal::pull_once(
                &client,
                &url,
                &token,
                &store,
                &key,
                Some(&signing),
                a.page.clamp(1, 1000),
                // Unix seconds: the verification time of every signature
                // (microseconds here once made it a time far off, where no
                // certificate is valid: the import measured refusals).
                Utc::now().timestamp(),
            )
            .await
            .map_err(|e| anyhow::anyhow!("{}", e.message_ja()))?;
            if !o.refused.is_empty() {
                anyhow::bail!("bench filings refused on import: {:?}", o.refused[0]);
            }
            if o.signatures_failed > 0 {
                anyhow::bail!("bench filings' signatures failed on import");
            }
            imported += o.imported;
            if o.acknowledge.is_empty() {
                break;
            }
        }
        let rate = Rate {
            what: format!("imported (pull + open + store + ack), {label}"),
            n: imported,
            secs: t.elapsed().as_secs_f64(),
            cpu: cpu0.zip(cpu_secs()).map(|(a, b)| b - a),
        };
        println!(
            "\nback office (import = pulled over HTTP, opened, checked, stored, acknowledged)"
        );
        println!("  {}", open_only.line(None));
        println!("  {}", verify_only.line(None));
        println!("  {}", rate.line(Some(&open_only)));
        println!(
            "  target ≥ 1,000/s imported: {}",
            if rate.per_sec() >= 1000.0 {
                "met"
            } else {
                "NOT met"
            }
        );
        if imported != expected {
            anyhow::bail!("imported {imported} of {expected} filings");
        }
        // What one commit per filing costs: storing alone, one
        // transaction each, against one transaction for the lot.
        let m = single.clamp(1, 500);
        let plain = br#"{"format":"machi-portal-filing/1"}"#.to_vec();
        let mut store_rates = Vec::new();
        for (what, per_tx) in [
            ("storing alone, one transaction per filing", 1usize),
            ("storing alone, one transaction for all", m),
        ] {
            let cpu0 = cpu_secs();
            let t = Instant::now();
            let mut i = 0;
            while i < m {
                let to = (i + per_tx).min(m);
                let (code, plain) = (code.clone(), plain.clone());
                let tag = per_tx;
                store
                    .write(Some(&code.clone()), move |tx| {
                        for k in i..to {
                            let id = format!("bench-{tag}-{k}");
                            crate::store::portal_filings::insert_if_new(
                                tx,
                                &code,
                                &crate::store::portal_filings::NewPortalFiling {
                                    portal_id: &id,
                                    receipt: &id,
                                    procedure: "tenshutsu",
                                    version: 1,
                                    received_at: "2026-12-06T09:00:00+09:00",
                                    imported_at: 0,
                                    filing: &plain,
                                    signed: true,
                                },
                            )?;
                        }
                        Ok::<_, crate::store::StoreError>(())
                    })
                    .await?;
                i = to;
            }
            store_rates.push(Rate {
                what: format!("{what}, {label}"),
                n: m,
                secs: t.elapsed().as_secs_f64(),
                cpu: cpu0.zip(cpu_secs()).map(|(a, b)| b - a),
            });
        }
        for r in &store_rates {
            println!("  {}", r.line(None));
        }
        drop(registry);
        drop(store);
        if let (Some(u), DatabaseLocation::Postgres(_)) = (&a.postgres, &loc) {
            crate::store::drop_postgres_database(
                u,
                &format!("machi_bench_portal_{}", std::process::id()),
            )
            .await?;
        }
    }
    server.abort();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn location(r: &reqwest::Response) -> String {
    r.headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

const BOUNDARY: &str = "----machi-bench-portal";

fn multipart(fields: &[(&str, &str)], file: Option<(&str, &[u8])>) -> Vec<u8> {
    let mut body = Vec::new();
    for (k, v) in fields {
        body.extend_from_slice(
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    if let Some((name, bytes)) = file {
        body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"filing.p7s\"\r\nContent-Type: application/pkcs7-signature\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// Fills `m` 転出届 drafts through the portal's real routes, as a
/// citizen's browser does (start, every page, the signing step with the
/// document downloaded, signed with a DEMO card and uploaded, the
/// confirmation page), 8 at a time; returns their draft cookies, each
/// ready for its last step, `POST /d/submit`. Set-up, not measured.
async fn served_drafts(
    http: &reqwest::Client,
    url: &str,
    def: &Definition,
    cards: &Arc<Vec<machi_sign::demo::DemoCard>>,
    m: usize,
    today: chrono::NaiveDate,
) -> anyhow::Result<Vec<String>> {
    let base = SERVED_BASE.fetch_add(m, std::sync::atomic::Ordering::Relaxed);
    let jobs: Vec<_> = (0..8)
        .map(|k| {
            let (http, url, def, cards) =
                (http.clone(), url.to_owned(), def.clone(), cards.clone());
            tokio::spawn(async move {
                let mut out = Vec::new();
                let mut i = k;
                while i < m {
                    out.push(served_draft(&http, &url, &def, &cards, base + i, today).await?);
                    i += 8;
                }
                Ok::<_, anyhow::Error>(out)
            })
        })
        .collect();
    let mut all = Vec::with_capacity(m);
    for j in jobs {
        all.extend(j.await??);
    }
    Ok(all)
}

/// Numbers the served drafts' answers apart from the library path's.
static SERVED_BASE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1_000_000);

async fn served_draft(
    http: &reqwest::Client,
    url: &str,
    def: &Definition,
    cards: &[machi_sign::demo::DemoCard],
    i: usize,
    today: chrono::NaiveDate,
) -> anyhow::Result<String> {
    let r = http
        .post(format!("{url}/t/{TENANT}/{}/start", def.id()))
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .send()
        .await?;
    let cookie = r
        .headers()
        .get(reqwest::header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("start: no draft cookie ({})", r.status()))?;
    let ans = answers(i, today);
    for page in def.visible_pages(&ans) {
        let ids: Vec<&str> = page.fields.iter().map(|f| f.id()).collect();
        let fields: Vec<(&str, &str)> = ans
            .iter()
            .filter(|(k, _)| {
                let head = k.split('.').next().unwrap_or(k);
                ids.contains(&head)
            })
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let r = http
            .post(format!("{url}/d/p/{}", page.id()))
            .header(reqwest::header::COOKIE, &cookie)
            .header(
                reqwest::header::CONTENT_TYPE,
                format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .body(multipart(&fields, None))
            .send()
            .await?;
        if r.status() != reqwest::StatusCode::SEE_OTHER {
            anyhow::bail!("page {}: {}", page.id(), r.status());
        }
    }
    let r = http
        .get(format!("{url}/d/sign"))
        .header(reqwest::header::COOKIE, &cookie)
        .send()
        .await?;
    if r.status() != reqwest::StatusCode::OK {
        anyhow::bail!("signing page: {} {}", r.status(), location(&r));
    }
    let doc = http
        .get(format!("{url}/d/sign/document"))
        .header(reqwest::header::COOKIE, &cookie)
        .send()
        .await?
        .bytes()
        .await?;
    let card = &cards[i % cards.len()];
    let cms = card.sign(
        &doc,
        SignOptions {
            detached: true,
            pss: false,
            signing_time: Utc::now() - chrono::Duration::minutes(1),
        },
    )?;
    let r = http
        .post(format!("{url}/d/sign"))
        .header(reqwest::header::COOKIE, &cookie)
        .header(
            reqwest::header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(multipart(
            &[("_action", "upload")],
            Some(("signature", &cms)),
        ))
        .send()
        .await?;
    if location(&r) != "/d/confirm" {
        let status = r.status();
        let body = r.text().await.unwrap_or_default();
        anyhow::bail!(
            "signature upload refused: {status} {}",
            body.chars().take(400).collect::<String>()
        );
    }
    let r = http
        .get(format!("{url}/d/confirm"))
        .header(reqwest::header::COOKIE, &cookie)
        .send()
        .await?;
    if r.status() != reqwest::StatusCode::OK {
        anyhow::bail!("confirmation page: {}", r.status());
    }
    Ok(cookie)
}
