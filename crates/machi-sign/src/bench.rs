//! `machi bench-sign`: signed filings verified per second (full check: CMS,
//! chain to the anchor, validity, profile, basic four items, CRL lookup)
//! beside a baseline from the same run: one bare RSA-2048 PKCS #1 v1.5
//! SHA-256 verification (the `rsa` crate) over the same content.
//!
//! Material is synthetic (feature `demo-signer`): one DEMO CA, `cards`
//! distinct cards (keys shared between cards to keep the set-up short), a
//! CRL listing `revoked` other serials, `filings` distinct signed filings.

use std::time::Instant;

use chrono::{Duration, TimeZone, Utc};
use rsa::signature::{SignatureEncoding, Signer};
use rsa::{Pkcs1v15Sign, RsaPrivateKey};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::canonical::FilingPayload;
use crate::demo::{CardSpec, DemoCa, DemoError, generate_key};
use crate::verify::Verifier;

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Distinct signed filings (each signed once in the set-up).
    pub filings: usize,
    /// Distinct cards (certificates) signing them.
    pub cards: usize,
    /// Distinct RSA keys among the cards.
    pub keys: usize,
    /// Serials on the CRL (none of them a signing card).
    pub revoked: usize,
    /// Passes over the filings per measurement.
    pub rounds: usize,
    /// Threads for the parallel measurement.
    pub threads: usize,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            filings: 1000,
            cards: 100,
            keys: 4,
            revoked: 100_000,
            rounds: 5,
            threads: 2,
        }
    }
}

/// One measured rate.
#[derive(Debug, Clone)]
pub struct Rate {
    pub what: String,
    pub n: usize,
    /// Wall-clock seconds.
    pub secs: f64,
    /// CPU seconds the process used meanwhile (Linux; `None` elsewhere). On
    /// a shared machine this, not the wall clock, tells what a core can do.
    pub cpu_secs: Option<f64>,
}

impl Rate {
    pub fn per_sec(&self) -> f64 {
        self.n as f64 / self.secs.max(1e-9)
    }
    /// Operations per CPU-second (what one otherwise idle core would do).
    pub fn per_cpu_sec(&self) -> Option<f64> {
        self.cpu_secs.map(|c| self.n as f64 / c.max(1e-9))
    }
}

/// User + system CPU time of this process, from /proc/self/stat (Linux,
/// USER_HZ = 100).
fn cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which ends with the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// The figures of one run.
#[derive(Debug, Clone)]
pub struct BenchReport {
    pub setup_secs: f64,
    pub crl_load_secs: f64,
    pub crl_bytes: usize,
    /// Bare RSA-2048 verification, one thread (the baseline).
    pub baseline: Rate,
    /// Full verification, one thread.
    pub full: Rate,
    /// Bare RSA verification over `threads` threads.
    pub baseline_parallel: Rate,
    /// Full verification over `threads` threads.
    pub full_parallel: Rate,
}

impl BenchReport {
    /// A table for the terminal.
    pub fn render(&self) -> String {
        let mut s = String::new();
        s.push_str(&format!(
            "set-up {:.1} s (keys, cards, signing); CRL of {} bytes loaded and checked in {:.1} ms\n",
            self.setup_secs,
            self.crl_bytes,
            self.crl_load_secs * 1e3
        ));
        for (r, base) in [
            (&self.baseline, &self.baseline),
            (&self.full, &self.baseline),
            (&self.baseline_parallel, &self.baseline_parallel),
            (&self.full_parallel, &self.baseline_parallel),
        ] {
            let cpu = match r.per_cpu_sec() {
                Some(c) => format!("; {c:.0} per CPU-second"),
                None => String::new(),
            };
            s.push_str(&format!(
                "{:<50} {:>7.0}/s wall ({} in {:.2} s; {:.2}× baseline{cpu})\n",
                r.what,
                r.per_sec(),
                r.n,
                r.secs,
                r.per_sec() / base.per_sec()
            ));
        }
        s
    }
}

fn payload(i: usize) -> FilingPayload {
    FilingPayload {
        tenant: "132063".into(),
        procedure_id: "tenshutsu".into(),
        procedure_version: 1,
        nonce: format!("bench-nonce-{i:08}"),
        fields: json!({
            "planned_date": "2027-02-01",
            "destination": {"postal_code": "1960015", "address": "東京都昭島市昭和町二丁目1番地"},
            "members": ["架空 太郎", "架空 花子"],
            "visit_date": "2027-02-10",
            "phone": "0420000000"
        }),
    }
}

fn timed<F: Fn(usize) + Sync>(what: String, n: usize, threads: usize, f: F) -> Rate {
    let cpu_start = cpu_secs();
    let start = Instant::now();
    if threads <= 1 {
        (0..n).for_each(&f);
    } else {
        std::thread::scope(|s| {
            for t in 0..threads {
                let f = &f;
                s.spawn(move || {
                    let mut i = t;
                    while i < n {
                        f(i);
                        i += threads;
                    }
                });
            }
        });
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu_secs = match (cpu_start, cpu_secs()) {
        (Some(a), Some(b)) if b > a => Some(b - a),
        _ => None,
    };
    Rate {
        what,
        n,
        secs,
        cpu_secs,
    }
}

/// Runs the benchmark. Every full verification is checked to succeed (a
/// benchmark of refusals would measure nothing).
pub fn run(o: &BenchOptions) -> Result<BenchReport, DemoError> {
    let setup = Instant::now();
    let now = Utc.with_ymd_and_hms(2027, 1, 15, 0, 0, 0).unwrap();
    let ca = DemoCa::new(
        generate_key()?,
        "Bench",
        now - Duration::days(700),
        now + Duration::days(3000),
    )?;
    let keys: Vec<RsaPrivateKey> = (0..o.keys.max(1))
        .map(|_| generate_key())
        .collect::<Result<_, _>>()?;
    let cards = (0..o.cards.max(1))
        .map(|i| {
            let spec = CardSpec::new(
                10_000_000 + i as u64,
                &format!("架空 太郎{i}"),
                if i % 2 == 0 { "1" } else { "2" },
                "419900102",
                "東京都府中市宮西町二丁目24番地",
                now - Duration::days(30),
            );
            ca.issue(&spec, &keys[i % keys.len()])
        })
        .collect::<Result<Vec<_>, _>>()?;
    let signed: Vec<(FilingPayload, Vec<u8>)> = (0..o.filings.max(1))
        .map(|i| {
            let p = payload(i);
            let der = cards[i % cards.len()].sign_filing(&p, now - Duration::minutes(1))?;
            Ok((p, der))
        })
        .collect::<Result<_, DemoError>>()?;
    let revoked: Vec<_> = (0..o.revoked)
        .map(|i| (20_000_000 + i as u64, now - Duration::days(1)))
        .collect();
    let crl = ca.crl(now - Duration::hours(1), now + Duration::days(1), &revoked)?;
    // Baseline material: the same canonical bytes, signed bare.
    let bare: Vec<(Vec<u8>, Vec<u8>)> = signed
        .iter()
        .enumerate()
        .map(|(i, (p, _))| {
            let content = p.canonical_bytes()?;
            let key = rsa::pkcs1v15::SigningKey::<Sha256>::new(keys[i % keys.len()].clone());
            let sig = key.sign(&content).to_vec();
            Ok((content, sig))
        })
        .collect::<Result<_, DemoError>>()?;
    let publics: Vec<_> = keys.iter().map(|k| k.to_public_key()).collect();
    let setup_secs = setup.elapsed().as_secs_f64();

    let crl_start = Instant::now();
    let mut verifier = Verifier::new(&[ca.cert_der()])?;
    verifier.add_crl(&crl)?;
    let crl_load_secs = crl_start.elapsed().as_secs_f64();

    let n = signed.len() * o.rounds.max(1);
    let full_one = |i: usize| {
        let (p, der) = &signed[i % signed.len()];
        let r = verifier.verify_filing(der, p, now);
        assert!(r.is_ok(), "bench filing refused: {r:?}");
    };
    let bare_one = |i: usize| {
        let (content, sig) = &bare[i % bare.len()];
        let hashed = Sha256::digest(content);
        let r = publics[i % publics.len()].verify(Pkcs1v15Sign::new::<Sha256>(), &hashed, sig);
        assert!(r.is_ok(), "bench baseline refused");
    };
    // Warm up both paths once.
    (0..signed.len().min(50)).for_each(full_one);
    (0..bare.len().min(50)).for_each(bare_one);
    let t = o.threads.max(1);
    let baseline = timed(
        "baseline: bare RSA-2048 verify, 1 thread".into(),
        n,
        1,
        bare_one,
    );
    let full = timed(
        "full check (CMS+chain+profile+CRL), 1 thread".into(),
        n,
        1,
        full_one,
    );
    let baseline_parallel = timed(
        format!("baseline: bare RSA-2048 verify, {t} threads"),
        n,
        t,
        bare_one,
    );
    let full_parallel = timed(
        format!("full check (CMS+chain+profile+CRL), {t} threads"),
        n,
        t,
        full_one,
    );
    Ok(BenchReport {
        setup_secs,
        crl_load_secs,
        crl_bytes: crl.len(),
        baseline,
        full,
        baseline_parallel,
        full_parallel,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_run_measures_successful_verifications() {
        let r = run(&BenchOptions {
            filings: 4,
            cards: 2,
            keys: 1,
            revoked: 10,
            rounds: 1,
            threads: 2,
        })
        .unwrap();
        assert_eq!(r.full.n, 4);
        assert_eq!(r.full_parallel.n, 4);
        assert!(r.render().contains("baseline"));
    }
}
