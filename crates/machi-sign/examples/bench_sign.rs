//! The same measurement as `machi bench-sign`, without building machi:
//! `cargo run --release -p machi-sign --features demo-signer --example bench_sign [filings] [threads]`.

fn main() {
    let mut args = std::env::args().skip(1);
    let mut o = machi_sign::bench::BenchOptions::default();
    if let Some(n) = args.next().and_then(|a| a.parse().ok()) {
        o.filings = n;
    }
    if let Some(t) = args.next().and_then(|a| a.parse().ok()) {
        o.threads = t;
    }
    println!(
        "bench-sign — {} filings from {} DEMO cards, CRL of {} serials, {} rounds",
        o.filings, o.cards, o.revoked, o.rounds
    );
    // The machine may be shared: say how busy it was (rates are wall-clock).
    if let Ok(l) = std::fs::read_to_string("/proc/loadavg") {
        println!("load average before: {}", l.trim());
    }
    match machi_sign::bench::run(&o) {
        Ok(r) => print!("{}", r.render()),
        Err(e) => {
            eprintln!("bench-sign failed: {e}");
            std::process::exit(1);
        }
    }
}
