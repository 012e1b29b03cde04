//! The `machi` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use machi_domain::error::Localized;
use machi_domain::ids::MunicipalityCode;

use zeroize::Zeroizing;

use crate::api::{self, AppState};
use crate::crypto::{Keyring, MasterKey};
use crate::service::{Actor, Clock, Registry};
use crate::store::{DatabaseLocation, SqliteSync, Store};

const DEFAULT_DATABASE: &str = "machi-data/machi.sqlite";

#[derive(Parser, Debug)]
#[command(
    name = "machi",
    version,
    about = "machi: the resident registry (住民記録) of many municipalities on one deployment",
    long_about = "machi runs the resident registry (住民記録) of many municipalities (tenants) on one \
deployment, following the national standard. Data lives in SQLite (the default, one file) or PostgreSQL."
)]
pub struct Cli {
    /// Database: a SQLite file path (default) or a postgres:// URL.
    #[arg(long, global = true, env = "MACHI_DATABASE")]
    database: Option<String>,
    /// Extra eras for the era master (j280), as NAME:ABBREV:YYYY-MM-DD, comma-separated.
    #[arg(
        long = "extra-era",
        global = true,
        env = "MACHI_EXTRA_ERAS",
        value_delimiter = ','
    )]
    extra_eras: Vec<String>,
    /// SQLite durability: `full` syncs every commit to disk (default), `normal` syncs at checkpoints.
    #[arg(
        long,
        global = true,
        env = "MACHI_SQLITE_SYNC",
        value_enum,
        default_value = "full"
    )]
    sqlite_sync: SqliteSync,
    /// A file holding the master key that encrypts 個人番号 (64 hexadecimal
    /// characters). Or set MACHI_MASTER_KEY to the key itself. Without
    /// either, a SQLite database keeps its key in master.key beside it.
    #[arg(long, global = true, env = "MACHI_MASTER_KEY_FILE")]
    master_key_file: Option<PathBuf>,
    /// Log lines on standard error: `text` for people (default) or `json`,
    /// one JSON object a line, for a log collector.
    #[arg(
        long,
        global = true,
        env = "MACHI_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// The environment variable holding the bearer token `/metrics` asks for.
const METRICS_TOKEN_ENV: &str = "MACHI_METRICS_TOKEN";

/// The environment variable holding the master key itself.
const MASTER_KEY_ENV: &str = "MACHI_MASTER_KEY";

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a demo database with six real municipalities and a few thousand
    /// synthetic residents, serve the API on it, and print where to look.
    Demo(DemoArgs),
    /// The citizen portal (its own process and database; it cannot read the
    /// registry): serve it, check or publish procedure definitions.
    Portal(crate::portal::PortalArgs),
    /// Serve the JSON API (and /openapi.json, /healthz, /readyz, /metrics) on
    /// the configured database. MACHI_METRICS_TOKEN: the bearer token
    /// /metrics asks for (without it, /metrics is open).
    Serve(ServeArgs),
    /// Run pending database migrations and list the applied ones; or
    /// `migrate rehearse` for a data-migration rehearsal.
    Migrate {
        #[command(subcommand)]
        action: Option<MigrateAction>,
    },
    /// The access log (j1370).
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Manage tenants (municipalities).
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Search indexes.
    #[command(subcommand)]
    Search(SearchCommand),
    /// Staff accounts.
    #[command(subcommand)]
    Account(AccountCommand),
    /// API clients of other systems (OAuth2 client credentials).
    #[command(subcommand)]
    Client(ClientCommand),
    /// Make a new random master key (64 hexadecimal characters) for
    /// MACHI_MASTER_KEY or --master-key-file.
    Keygen {
        /// Write it to this new file (mode 0600) instead of standard output.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Print the OpenAPI document (the committed copy is openapi.json).
    Openapi {
        /// Write to this file instead of standard output.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Measure change writes/s and reads/s against baselines from the same run.
    Bench(crate::bench::BenchArgs),
    /// Run the 児童手当 (child allowance) system: a separate process with
    /// its own database, fed only by the registry's event feed and API
    /// through its own API client. MACHI_ALLOWANCE_CLIENT_SECRET: the
    /// client's secret (environment only: a flag would show in `ps`). Staff
    /// sign in with accounts of their own: `machi allowance account add`.
    Allowance(AllowanceArgs),
    /// Import files in the migration layout (docs/migration-layout.md) into a
    /// tenant: validated first, then loaded all-or-nothing in one
    /// transaction; running the same import again changes nothing.
    Import(ImportArgs),
    /// Generate a synthetic population in the migration layout.
    Generate {
        /// About how many persons (the last household may add a few).
        #[arg(long)]
        residents: usize,
        /// Directory to write (created if missing).
        #[arg(long)]
        output: PathBuf,
        /// Random seed: the same seed on the same day gives the same files
        /// (ages and dates count back from today).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Which demo municipality's addresses to use (0–5).
        #[arg(long, default_value_t = 0)]
        town: usize,
    },
    /// Measure signed-filing verifications/s (CMS + chain + CRL, synthetic
    /// DEMO cards) beside a bare RSA-2048 verification from the same run.
    BenchSign {
        /// Distinct signed filings.
        #[arg(long, default_value_t = 1000)]
        filings: usize,
        /// Serials on the CRL.
        #[arg(long, default_value_t = 100_000)]
        revoked: usize,
        /// Passes over the filings per measurement.
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Threads for the parallel measurement.
        #[arg(long, default_value_t = 2)]
        threads: usize,
    },
    /// Measure import at scale: generate residents, then the parse-and-validate
    /// rate (baseline) and full imports into SQLite and PostgreSQL.
    BenchMigration(crate::bench::MigrationBenchArgs),
    /// Measure webhook deliveries/s to local subscribers and the lag from
    /// commit to delivery under load, beside plain HTTP POSTs (baseline).
    BenchHooks(crate::bench_hooks::BenchHooksArgs),
    /// Drive the real server over loopback (creates, reads, searches at 1
    /// and 8 connections) beside /healthz and the empty transaction from
    /// the same run; the server's memory under load.
    BenchHttp(crate::bench_http::BenchHttpArgs),
    /// Measure search latency (p50/p99) at city scale on both backends,
    /// beside a primary-key read from the same run; index sizes and
    /// changes/s at that scale.
    BenchSearch(crate::bench_search::SearchBenchArgs),
    /// Measure signed filings accepted/s by the citizen portal (checked,
    /// verified, sealed, stored) and imported/s by the back office (pulled,
    /// opened, stored, acknowledged), beside verification, sealing and
    /// opening alone from the same run.
    BenchPortal(crate::bench_portal::BenchPortalArgs),
    /// Measure what many tenants cost one PostgreSQL server (1, 100 and
    /// 1,741 tenants): creation time, reads and changes p50/p99, first
    /// reads on new connections and backend memory, each beside the
    /// one-tenant figure as a ratio.
    BenchTenants(crate::bench_tenants::TenantsBenchArgs),
    /// Export a whole tenant in the migration layout (j1410).
    Export {
        /// 団体コード of the tenant.
        #[arg(long)]
        tenant: String,
        /// Directory to write (created if missing).
        #[arg(long)]
        output: PathBuf,
        /// A difference extract: only rows of changes after this change id
        /// (the `last change id` an earlier export printed).
        #[arg(long)]
        after_change: Option<i64>,
    },
    /// File linkage: a full or difference extract of a tenant (CSV in the
    /// migration layout, SHA256SUMS and linkage-manifest.json, written
    /// last) to a directory or s3://BUCKET/PREFIX. A difference extract
    /// continues from the last complete extract at that target.
    Extract {
        /// 団体コード of the tenant.
        #[arg(long)]
        tenant: String,
        /// full or diff.
        #[arg(long, default_value = "diff")]
        kind: String,
        /// A directory or s3://BUCKET/PREFIX (AWS_* variables for S3).
        #[arg(long)]
        to: String,
        /// Include 個人番号 in residents.csv (off by default: the column is
        /// empty). Only for receiving systems whose affairs use it; its use
        /// is marked in the access log.
        #[arg(long)]
        include_my_number: bool,
    },
}

#[derive(Subcommand, Debug)]
enum AuditCommand {
    /// Verify the hash chain of the access log; exits 1 and names the first
    /// bad entry if any entry was edited, removed or reordered.
    Verify {
        /// Only this tenant (default: every tenant).
        #[arg(long)]
        tenant: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
enum MigrateAction {
    /// Rehearse a data migration on a scratch database: load the old system's
    /// data (an extract given with --from, or a generated population), change
    /// some households, then compare a full load with an incremental
    /// (difference) load at cutover: extract and load times, rows/s, problems
    /// found, downtime. Exits 1 if the data is refused.
    Rehearse {
        /// Residents of the generated population (without --from).
        #[arg(long, default_value_t = 100_000)]
        residents: usize,
        /// The old system's extract in the migration layout (a directory):
        /// rehearse with it instead of a generated population.
        #[arg(long)]
        from: Option<PathBuf>,
        /// Households that change between the initial extract and cutover.
        #[arg(long, default_value_t = 100)]
        changes: usize,
        /// Rehearse on PostgreSQL: a server URL (a scratch database is created and dropped).
        #[arg(long)]
        postgres: Option<String>,
    },
}

#[derive(Args, Debug)]
struct ImportArgs {
    /// 団体コード of the tenant to import into.
    #[arg(long)]
    tenant: String,
    /// The files (residents.csv, households.csv, …) or a directory holding them.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Character encoding of the files.
    #[arg(long, value_enum, default_value = "auto")]
    encoding: crate::migration::import::InputEncoding,
    /// Validate and report only; write nothing.
    #[arg(long)]
    validate_only: bool,
    /// Also write the problems to this CSV file (the first --max-problems;
    /// a last line says how many more there were).
    #[arg(long)]
    report: Option<PathBuf>,
    /// Problems kept in detail (all are counted).
    #[arg(long, default_value_t = 1000)]
    max_problems: usize,
}

#[derive(Args, Debug)]
struct DemoArgs {
    /// Port of the API.
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Where the demo database is created (unless --database is given).
    #[arg(long, default_value = "machi-data")]
    data_dir: PathBuf,
    /// Synthetic residents per municipality (about).
    #[arg(long, default_value_t = 600)]
    residents_per_tenant: usize,
    /// Create the data and exit without serving.
    #[arg(long)]
    no_serve: bool,
    /// Port of the 児童手当 system the demo starts as a child process.
    #[arg(long, default_value_t = 8090)]
    allowance_port: u16,
    /// Do not start the 児童手当 system.
    #[arg(long)]
    no_allowance: bool,
    /// Port of the citizen portal the demo runs beside the staff UI.
    #[arg(long, default_value_t = 8070)]
    portal_port: u16,
    /// Do not run the citizen portal.
    #[arg(long)]
    no_portal: bool,
    /// DEMO signing cards issued per portal municipality (synthetic
    /// residents; a DEMO CA, never JPKI).
    #[arg(long, default_value_t = 2)]
    demo_cards: usize,
}

#[derive(Args, Debug)]
#[command(subcommand_negates_reqs = true, args_conflicts_with_subcommands = true)]
struct AllowanceArgs {
    #[command(subcommand)]
    command: Option<AllowanceCommand>,
    /// The allowance system's own SQLite database.
    #[arg(
        long,
        default_value = "machi-data/allowance.sqlite",
        env = "MACHI_ALLOWANCE_DATABASE"
    )]
    allowance_database: PathBuf,
    /// The registry's base URL (its API and event feed).
    #[arg(
        long,
        default_value = "http://127.0.0.1:8080",
        env = "MACHI_ALLOWANCE_REGISTRY_URL"
    )]
    registry_url: String,
    /// The municipality (団体コード) whose feed it reads.
    #[arg(long, env = "MACHI_ALLOWANCE_TENANT", required = true)]
    tenant: Option<String>,
    /// Its API client id at the registry (scopes `{system}:events:read
    /// {system}:residents:read`).
    #[arg(long, env = "MACHI_ALLOWANCE_CLIENT_ID", required = true)]
    client_id: Option<String>,
    /// Port of the clerk's pages and the allowance API.
    #[arg(long, default_value_t = 8090, env = "MACHI_ALLOWANCE_PORT")]
    port: u16,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1", env = "MACHI_ALLOWANCE_BIND")]
    bind: String,
    /// Long-poll wait of each feed read, seconds (1-30).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=30))]
    wait: u64,
    /// Stop when standard input closes (how `machi demo` ties this process
    /// to its own life).
    #[arg(long)]
    exit_on_stdin_eof: bool,
}

#[derive(Subcommand, Debug)]
enum AllowanceCommand {
    /// Staff accounts of the allowance system.
    #[command(subcommand)]
    Account(AllowanceAccountCommand),
    /// The allowance system's access log.
    #[command(subcommand)]
    Log(AllowanceLogCommand),
}

#[derive(Subcommand, Debug)]
enum AllowanceAccountCommand {
    /// Add an account (the first supervisor is made this way); the password
    /// is read from MACHI_ALLOWANCE_PASSWORD (at least 12 characters).
    Add {
        /// The allowance system's SQLite database.
        #[arg(
            long,
            default_value = "machi-data/allowance.sqlite",
            env = "MACHI_ALLOWANCE_DATABASE"
        )]
        allowance_database: PathBuf,
        #[arg(long)]
        login: String,
        #[arg(long)]
        name: String,
        /// clerk (enters claims and reads) or supervisor (also approves
        /// payment files, manages accounts, reads the access log).
        #[arg(long, default_value = "clerk")]
        role: String,
    },
}

#[derive(Subcommand, Debug)]
enum AllowanceLogCommand {
    /// Walk the hash chain of the access log; exit status 1 if broken.
    Verify {
        #[arg(
            long,
            default_value = "machi-data/allowance.sqlite",
            env = "MACHI_ALLOWANCE_DATABASE"
        )]
        allowance_database: PathBuf,
    },
}

/// The allowance system's secrets come from the environment only.
const ALLOWANCE_SECRET_ENV: &str = "MACHI_ALLOWANCE_CLIENT_SECRET";
const ALLOWANCE_PASSWORD_ENV: &str = "MACHI_ALLOWANCE_PASSWORD";

#[derive(Args, Debug)]
struct ServeArgs {
    /// Port to listen on.
    #[arg(long, default_value_t = 8080, env = "MACHI_PORT")]
    port: u16,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1", env = "MACHI_BIND")]
    bind: String,
    /// Reverse proxies in front of machi whose X-Forwarded-For is believed
    /// for throttling by client address: addresses or networks,
    /// comma-separated (e.g. `10.0.0.5,10.1.0.0/16`). Without it the
    /// header is ignored and the connection's address counts.
    #[arg(long, env = "MACHI_TRUSTED_PROXIES", default_value = "")]
    trusted_proxies: String,
    /// Scheduled file linkage: write every tenant's extracts here (a
    /// directory or s3://BUCKET/PREFIX): a full extract first, then a
    /// difference extract whenever events came since the last.
    #[arg(long, env = "MACHI_EXTRACT_TO")]
    extract_to: Option<String>,
    /// Seconds between scheduled extracts.
    #[arg(long, env = "MACHI_EXTRACT_EVERY", default_value_t = 3600)]
    extract_every: u64,
    /// Write 個人番号 into the scheduled extracts of tenants without a
    /// schedule of their own (off by default: the column is empty). Only
    /// for receiving systems whose affairs use it (番号法); each such
    /// extract is logged as `linkage.extract` with 個人番号 marked shown.
    #[arg(long, env = "MACHI_EXTRACT_INCLUDE_MY_NUMBER")]
    extract_include_my_number: bool,
    /// Seconds between pulls of the citizen portal's filings, when
    /// MACHI_PORTAL_URL is set (with MACHI_PORTAL_PULL_TOKEN,
    /// MACHI_PORTAL_OPENING_KEY, MACHI_SIGN_ANCHORS, MACHI_SIGN_CRLS): a
    /// worker beside the server imports them and pushes status updates.
    #[arg(long, env = "MACHI_PORTAL_PULL_EVERY", default_value_t = 300)]
    portal_pull_every: u64,
}

#[derive(Subcommand, Debug)]
enum AccountCommand {
    /// Add a staff account; the password is read from MACHI_PASSWORD.
    Add {
        /// 団体コード; omit for a platform operator.
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        login: String,
        #[arg(long)]
        name: String,
        /// clerk, supervisor, support_officer, tenant_admin, cio, platform_operator
        #[arg(long)]
        role: String,
        #[arg(long, env = "MACHI_PASSWORD", hide_env_values = true)]
        password: String,
    },
}

#[derive(Subcommand, Debug)]
enum ClientCommand {
    /// Register a client; prints its id and secret (shown once).
    Add {
        #[arg(long)]
        tenant: String,
        /// e.g. jidou_teate
        #[arg(long)]
        system: String,
        /// Space-separated, e.g. "jidou_teate:residents:read jidou_teate:events:read"
        #[arg(long)]
        scopes: String,
    },
    /// Disable a client: its live tokens stop at once and it gets no new ones.
    Disable {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        client_id: String,
    },
    /// Enable a disabled client again (with the secret it had).
    Enable {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        client_id: String,
    },
    /// Give a client a new secret (printed once); the old secret and its
    /// live tokens stop at once.
    Rotate {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        client_id: String,
    },
}

#[derive(Subcommand, Debug)]
enum TenantCommand {
    /// Add a municipality: `machi tenant add 132063 府中市 東京都`.
    Add {
        /// 団体コード (6 digits with check digit)
        code: String,
        /// Name, e.g. 府中市
        name: String,
        /// Prefecture, e.g. 東京都
        prefecture: String,
    },
    /// List the municipalities.
    List,
}

#[derive(Subcommand, Debug)]
enum SearchCommand {
    /// Fold the search keys of a tenant's records again with today's
    /// table (the MJ 縮退マップ): for databases made before it. Batched
    /// (one transaction a batch), resumable (it continues where it
    /// stopped), and running it again changes nothing.
    Refold {
        /// 団体コード of the tenant.
        #[arg(long)]
        tenant: String,
        /// Persons a transaction.
        #[arg(long, default_value_t = 1000)]
        batch: i64,
        /// Start from the first person again.
        #[arg(long)]
        restart: bool,
    },
}

/// A command's output piped into a reader that stops early (`machi portal
/// keygen | head -1`) ends the command quietly, as `head` expects, instead
/// of the panic `println!` raises on a closed pipe. Any other panic is
/// reported as before.
fn quiet_on_closed_pipe() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let text = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if text.starts_with("failed printing to stdout") && text.contains("Broken pipe") {
            // 128 + SIGPIPE, what a shell reports for a closed pipe.
            std::process::exit(141);
        }
        previous(info);
    }));
}

pub fn main() -> ExitCode {
    quiet_on_closed_pipe();
    let cli = Cli::parse();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MACHI_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,machi=info")),
        )
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().with_ansi(false).init(),
    }
    let rt = match (if std::env::var_os("MACHI_CURRENT_THREAD").is_some() {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    })
    .enable_all()
    .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("machi: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("machi: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn location(cli: &Cli, default: &str) -> DatabaseLocation {
    DatabaseLocation::parse(cli.database.as_deref().unwrap_or(default))
}

/// The keyring of the configured master key (see [`crate::config::master_key`]).
fn keyring(cli: &Cli, loc: &DatabaseLocation) -> anyhow::Result<Keyring> {
    use crate::config::KeySource;
    let env_key = std::env::var(MASTER_KEY_ENV).ok().map(Zeroizing::new);
    let (key, source) = crate::config::master_key(
        env_key.as_deref().map(String::as_str),
        cli.master_key_file.as_deref(),
        loc,
    )
    .map_err(anyhow::Error::msg)?;
    match source {
        KeySource::Environment => tracing::info!("master key from {MASTER_KEY_ENV}"),
        KeySource::File(p) => tracing::info!(path = %p.display(), "master key from file"),
        KeySource::Created(p) => eprintln!(
            "machi: created a new master key in {} (個人番号 are encrypted with it; back it up with the database, \
             and in production give the key through {MASTER_KEY_ENV} instead)",
            p.display()
        ),
    }
    Ok(Keyring::new(&key))
}

async fn open(cli: &Cli, default: &str) -> anyhow::Result<Registry> {
    let loc = location(cli, default);
    let eras = crate::config::era_table(&cli.extra_eras).map_err(anyhow::Error::msg)?;
    let keyring = keyring(cli, &loc)?;
    let store = Store::connect_with(&loc, cli.sqlite_sync, keyring)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", loc.display()))?;
    Ok(Registry::new(store, eras, Clock::System)
        .with_hook_policy(crate::service::hooks::HookPolicy::from_env()))
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Portal(a) if a.is_pull() => {
            let registry = open(&cli, DEFAULT_DATABASE).await?;
            crate::portal::pull_command(registry.store()).await
        }
        Command::Portal(a) => crate::portal::run(a).await,
        Command::Demo(a) => {
            let default = a.data_dir.join("demo.sqlite");
            let default = default.to_string_lossy().into_owned();
            let started = std::time::Instant::now();
            // The demo accepts webhooks to this machine over plain HTTP.
            let registry =
                open(&cli, &default)
                    .await?
                    .with_hook_policy(crate::service::hooks::HookPolicy {
                        allow_insecure_local: true,
                        ..crate::service::hooks::HookPolicy::from_env()
                    });
            // File linkage: extracts to a directory beside the database, on
            // demand from the administrator's page and on the server-wide
            // schedule (hourly) unless a tenant sets its own.
            let extracts = a.data_dir.join("extracts");
            let extracts = extracts.to_string_lossy().into_owned();
            let registry = registry
                .with_extract_target(Some(extracts.clone()))
                .with_extract_every(3600);
            let summary = crate::demo::seed(&registry, a.residents_per_tenant).await?;
            crate::demo::seed_accounts(&registry).await?;
            println!("{summary}");
            println!(
                "database: {}  (ready in {:.1} s)",
                location(&cli, &default).display(),
                started.elapsed().as_secs_f64()
            );
            if a.no_serve {
                return Ok(ExitCode::SUCCESS);
            }
            let addr = SocketAddr::from(([127, 0, 0, 1], a.port));
            let listener = tokio::net::TcpListener::bind(addr).await?;
            print_demo_links(&registry, a.port).await?;
            println!("file-linkage extracts: {extracts}");
            let _extract_schedule = {
                let (store, prefix) = crate::linkage::open_target(&extracts)?;
                crate::linkage::spawn_schedule(
                    registry.clone(),
                    store,
                    prefix,
                    std::time::Duration::from_secs(3600),
                )
            };
            // The citizen portal: its own database and port, filings
            // sealed to the demo back office and pulled on an interval.
            let _portal = if a.no_portal {
                None
            } else {
                let cards = if a.demo_cards == 0 {
                    None
                } else {
                    Some(crate::demo_portal::issue_cards(&registry, a.demo_cards).await?)
                };
                let p =
                    crate::demo_portal::start_portal(&registry, &a.data_dir, a.portal_port, cards)
                        .await?;
                crate::demo_portal::print_links(&p);
                Some(p)
            };
            // 申請管理: each decision is told to the demo portal at once
            // (and retried by the pull worker when that fails).
            let registry = match &_portal {
                Some(p) => registry
                    .with_portal_link(Some(crate::service::inbox::PortalLink {
                        url: p.url.clone(),
                        token: p.token.clone(),
                        client: crate::service::hooks::http_client(
                            std::time::Duration::from_secs(10),
                        )?,
                    }))
                    .with_portal_importer(Some(p.link.clone())),
                None => registry,
            };
            // The allowance system: another process, as another vendor's
            // system would be, talking to this one over HTTP only. Killed
            // when the demo ends (kill_on_drop).
            let _allowance = if a.no_allowance {
                None
            } else {
                Some(crate::demo::start_allowance(&a.data_dir, a.port, a.allowance_port).await?)
            };
            serve(listener, registry, api::AppOptions::default()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Allowance(a) => {
            match &a.command {
                Some(AllowanceCommand::Account(AllowanceAccountCommand::Add {
                    allowance_database,
                    login,
                    name,
                    role,
                })) => {
                    let role = machi_allowance::accounts::Role::parse(role).ok_or_else(|| {
                        anyhow::anyhow!(
                            "--role must be clerk or supervisor / 役割は clerk（担当）か supervisor（監督者）です"
                        )
                    })?;
                    let password = std::env::var(ALLOWANCE_PASSWORD_ENV).map_err(|_| {
                        anyhow::anyhow!(
                            "{ALLOWANCE_PASSWORD_ENV} is not set: the new account's password / パスワードを環境変数で渡してください"
                        )
                    })?;
                    machi_allowance::add_account(allowance_database, login, name, role, &password)
                        .await?;
                    return Ok(ExitCode::SUCCESS);
                }
                Some(AllowanceCommand::Log(AllowanceLogCommand::Verify { allowance_database })) => {
                    let ok = machi_allowance::verify_log(allowance_database).await?;
                    return Ok(if ok {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    });
                }
                None => {}
            }
            let secret = std::env::var(ALLOWANCE_SECRET_ENV).map_err(|_| {
                anyhow::anyhow!("{ALLOWANCE_SECRET_ENV} is not set: the API client's secret")
            })?;
            let tenant: MunicipalityCode =
                a.tenant.as_deref().unwrap_or_default().parse().map_err(
                    |e: machi_domain::ids::IdError| anyhow::anyhow!("{}", e.message_en()),
                )?;
            let listen: SocketAddr = format!("{}:{}", a.bind, a.port)
                .parse()
                .map_err(|e| anyhow::anyhow!("--bind {}: {e}", a.bind))?;
            machi_allowance::run(machi_allowance::Config {
                database: a.allowance_database.clone(),
                link: machi_allowance::worker::LinkConfig {
                    base_url: a.registry_url.clone(),
                    tenant: tenant.to_string(),
                    client_id: a.client_id.clone().unwrap_or_default(),
                    client_secret: secret,
                },
                listen,
                wait: a.wait,
                exit_on_stdin_eof: a.exit_on_stdin_eof,
            })
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve(a) => {
            let metrics_token = match std::env::var(METRICS_TOKEN_ENV) {
                Ok(t) if t.trim().is_empty() => {
                    anyhow::bail!("{METRICS_TOKEN_ENV} is set but empty")
                }
                Ok(t) => Some(t),
                Err(_) => None,
            };
            let registry = open(&cli, DEFAULT_DATABASE).await?;
            let addr: SocketAddr = format!("{}:{}", a.bind, a.port)
                .parse()
                .map_err(|e| anyhow::anyhow!("--bind {}: {e}", a.bind))?;
            if metrics_token.is_none() && !addr.ip().is_loopback() {
                tracing::warn!(
                    "/metrics is open to anyone who reaches {addr}: set {METRICS_TOKEN_ENV} to ask for a token"
                );
            }
            let trusted_proxies = api::source::TrustedProxies::parse(&a.trusted_proxies)
                .map_err(anyhow::Error::msg)?;
            let registry = registry
                .with_extract_target(a.extract_to.clone())
                .with_extract_every(a.extract_every.max(60))
                .with_extract_my_number(a.extract_include_my_number);
            // 申請管理: where filing statuses are told to the citizen portal.
            let registry = match (
                std::env::var("MACHI_PORTAL_URL"),
                std::env::var(crate::portal::PULL_TOKEN_ENV),
            ) {
                (Ok(url), Ok(token)) if !url.trim().is_empty() => {
                    registry.with_portal_link(Some(crate::service::inbox::PortalLink {
                        url: url.trim().to_string(),
                        token: token.trim().to_string(),
                        client: crate::service::hooks::http_client(
                            std::time::Duration::from_secs(10),
                        )?,
                    }))
                }
                _ => registry,
            };
            // The pull worker's link (opening key, trust anchors) serves
            // the staff's re-import of quarantined filings too.
            let portal_link = crate::portal::PortalLink::from_env()?.map(std::sync::Arc::new);
            let registry = registry.with_portal_importer(portal_link.clone());
            let _extracts = match &a.extract_to {
                Some(to) => {
                    if a.extract_include_my_number {
                        tracing::warn!(
                            "scheduled extracts of tenants without a schedule of their own include 個人番号 (--extract-include-my-number); each is logged as linkage.extract"
                        );
                    }
                    let (store, prefix) = crate::linkage::open_target(to)?;
                    Some(crate::linkage::spawn_schedule(
                        registry.clone(),
                        store,
                        prefix,
                        std::time::Duration::from_secs(a.extract_every.max(60)),
                    ))
                }
                None => None,
            };
            let _portal_pull = match portal_link {
                Some(link) => {
                    println!(
                        "portal pull every {} s from {}",
                        a.portal_pull_every.max(10),
                        link.url
                    );
                    Some(crate::portal::spawn_pull_worker(
                        link,
                        registry.store().clone(),
                        std::time::Duration::from_secs(a.portal_pull_every.max(10)),
                    ))
                }
                None => None,
            };
            let listener = tokio::net::TcpListener::bind(addr).await?;
            println!("machi API on http://{addr}/ (OpenAPI: http://{addr}/openapi.json)");
            serve(
                listener,
                registry,
                api::AppOptions {
                    metrics_token,
                    trusted_proxies,
                },
            )
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate {
            action:
                Some(MigrateAction::Rehearse {
                    residents,
                    from,
                    changes,
                    postgres,
                }),
        } => {
            rehearse(
                &cli,
                *residents,
                from.as_deref(),
                *changes,
                postgres.as_deref(),
            )
            .await
        }
        Command::Account(AccountCommand::Add {
            tenant,
            login,
            name,
            role,
            password,
        }) => {
            let registry = open(&cli, DEFAULT_DATABASE).await?;
            let tenant: Option<MunicipalityCode> = match tenant {
                Some(t) => Some(t.parse().map_err(|e: machi_domain::ids::IdError| {
                    anyhow::anyhow!("{}", e.message_en())
                })?),
                None => None,
            };
            let role: machi_domain::access::Role =
                role.parse()
                    .map_err(|e: machi_domain::access::AccessError| {
                        anyhow::anyhow!("{}", e.message_en())
                    })?;
            registry
                .create_account(
                    tenant.as_ref(),
                    login,
                    name,
                    role,
                    password,
                    &Actor::system("cli"),
                )
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("account {login} created");
            Ok(ExitCode::SUCCESS)
        }
        Command::Client(ClientCommand::Add {
            tenant,
            system,
            scopes,
        }) => {
            let registry = open(&cli, DEFAULT_DATABASE).await?;
            let tenant: MunicipalityCode = tenant
                .parse()
                .map_err(|e: machi_domain::ids::IdError| anyhow::anyhow!("{}", e.message_en()))?;
            let (id, secret) = registry
                .create_client(&tenant, system, scopes, &Actor::system("cli"))
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("client_id={id}");
            println!("client_secret={secret}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Client(
            ClientCommand::Disable { tenant, client_id }
            | ClientCommand::Enable { tenant, client_id },
        ) => {
            let disable = matches!(cli.command, Command::Client(ClientCommand::Disable { .. }));
            let registry = open(&cli, DEFAULT_DATABASE).await?;
            let tenant: MunicipalityCode = tenant
                .parse()
                .map_err(|e: machi_domain::ids::IdError| anyhow::anyhow!("{}", e.message_en()))?;
            registry
                .set_client_disabled(&tenant, client_id, disable, &Actor::system("cli"))
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!(
                "client {client_id} {}",
                if disable { "disabled" } else { "enabled" }
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Client(ClientCommand::Rotate { tenant, client_id }) => {
            let registry = open(&cli, DEFAULT_DATABASE).await?;
            let tenant: MunicipalityCode = tenant
                .parse()
                .map_err(|e: machi_domain::ids::IdError| anyhow::anyhow!("{}", e.message_en()))?;
            let secret = registry
                .rotate_client_secret(&tenant, client_id, &Actor::system("cli"))
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("client_id={client_id}");
            println!("client_secret={secret}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate { action: None } => {
            let registry = open(&cli, DEFAULT_DATABASE).await?;
            for (v, name) in registry.store().applied_migrations().await? {
                println!("{v:>4}  {name}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Tenant(TenantCommand::Add {
            code,
            name,
            prefecture,
        }) => {
            let code: MunicipalityCode = match code.parse() {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("machi: {} / {}", e.message_en(), e.message_ja());
                    return Ok(ExitCode::from(2));
                }
            };
            let registry = open(&cli, DEFAULT_DATABASE).await?;
            let t = registry.create_tenant(code, name, prefecture).await?;
            println!("added {} {} {}", t.municipality_code, t.prefecture, t.name);
            Ok(ExitCode::SUCCESS)
        }
        Command::Search(SearchCommand::Refold {
            tenant,
            batch,
            restart,
        }) => {
            let Some(code) = parse_code(tenant) else {
                return Ok(ExitCode::from(2));
            };
            let registry = open(&cli, DEFAULT_DATABASE).await?;
            let started = std::time::Instant::now();
            let p = registry
                .refold_search_keys(&code, *batch, None, *restart)
                .await?;
            println!(
                "re-folded the search keys of {}: {} rows changed in {:.1} s / 検索キーを付け直しました",
                code.as_str(),
                p.updated_rows,
                started.elapsed().as_secs_f64()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Tenant(TenantCommand::List) => {
            let registry = open(&cli, DEFAULT_DATABASE).await?;
            for t in registry.tenants().await? {
                println!("{}  {}{}", t.municipality_code, t.prefecture, t.name);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Keygen { output } => {
            match output {
                Some(p) => {
                    MasterKey::create_file(p)?;
                    println!("wrote a new master key to {}", p.display());
                }
                None => println!("{}", MasterKey::generate()?.to_hex().as_str()),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Openapi { output } => {
            let json = api::openapi_json();
            match output {
                Some(p) => std::fs::write(p, json)?,
                None => print!("{json}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Import(a) => import(&cli, a).await,
        Command::Audit(AuditCommand::Verify { tenant }) => {
            let registry = open(&cli, DEFAULT_DATABASE).await?;
            let tenants = match tenant {
                Some(t) => match parse_code(t) {
                    Some(c) => vec![c],
                    None => return Ok(ExitCode::from(2)),
                },
                None => registry
                    .tenants()
                    .await?
                    .into_iter()
                    .map(|t| t.municipality_code)
                    .collect(),
            };
            let mut ok = true;
            for t in tenants {
                let v = registry.verify_audit(&t).await?;
                match &v.first_bad {
                    None => println!("{t}: ok, {} entries / 改ざんなし", v.entries),
                    Some((seq, problem)) => {
                        ok = false;
                        let (ja, en) = match problem {
                            crate::service::audit::ChainProblem::Altered => {
                                ("内容が改ざんされています", "was edited")
                            }
                            crate::service::audit::ChainProblem::Unlinked => (
                                "前の記録とつながっていません（移動・前の記録の削除）",
                                "does not chain to the entry before it (moved, or the one before removed)",
                            ),
                            crate::service::audit::ChainProblem::Missing => {
                                ("削除されています", "was removed")
                            }
                            crate::service::audit::ChainProblem::Truncated => (
                                "以降の記録が削除されています",
                                "and the entries after it were removed",
                            ),
                        };
                        println!(
                            "{t}: entry {seq} {en} / 記録 {seq}: {ja} ({} entries read)",
                            v.entries
                        );
                    }
                }
            }
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Export {
            tenant,
            output,
            after_change,
        } => {
            let Some(code) = parse_code(tenant) else {
                return Ok(ExitCode::from(2));
            };
            let registry = open(&cli, DEFAULT_DATABASE).await?;
            let started = std::time::Instant::now();
            let s = crate::migration::export::export_since(
                &registry,
                &code,
                output,
                *after_change,
                &Actor::system("cli"),
            )
            .await?;
            println!(
                "exported {} history rows and {} households of {} to {} in {:.1} s (last change id {})",
                s.history_rows,
                s.households,
                code,
                output.display(),
                started.elapsed().as_secs_f64(),
                s.last_change_id
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Extract {
            tenant,
            kind,
            to,
            include_my_number,
        } => {
            let Some(code) = parse_code(tenant) else {
                return Ok(ExitCode::from(2));
            };
            let kind: crate::linkage::Kind = match kind.parse() {
                Ok(k) => k,
                Err(e) => {
                    eprintln!("{e}");
                    return Ok(ExitCode::from(2));
                }
            };
            let (store, prefix) = crate::linkage::open_target(to)?;
            let registry = open(&cli, DEFAULT_DATABASE).await?;
            let m = crate::linkage::extract_with(
                &registry,
                &code,
                kind,
                crate::linkage::ExtractOptions {
                    include_my_number: *include_my_number,
                },
                store.as_ref(),
                &prefix,
                &Actor::system("cli"),
            )
            .await?;
            println!(
                "{} extract of {} (events {} to {}): {} files at {} / 抽出しました",
                m.kind.as_str(),
                m.tenant,
                m.from_seq + 1,
                m.to_seq,
                m.files.len(),
                m.folder
            );
            for f in &m.files {
                println!(
                    "  {} {} rows {} bytes sha256 {}",
                    f.name, f.rows, f.bytes, f.sha256
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Generate {
            residents,
            output,
            seed,
            town,
        } => {
            let eras = crate::config::era_table(&cli.extra_eras).map_err(anyhow::Error::msg)?;
            let opts = crate::migration::generate::GenerateOptions {
                residents: *residents,
                seed: *seed,
                town_index: (*town).min(crate::synth::TOWNS.len() - 1),
                today: Clock::System.today(),
            };
            let started = std::time::Instant::now();
            let s = crate::migration::generate::generate(output, &opts, &eras)?;
            println!(
                "generated {} persons ({} foreign), {} history rows, {} households, {} changes, {} irregular dates in {} ({:.1} s)",
                s.persons,
                s.foreign,
                s.history_rows,
                s.households,
                s.changes,
                s.irregular_dates,
                output.display(),
                started.elapsed().as_secs_f64()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::BenchMigration(a) => {
            crate::bench::run_migration(a, &cli.extra_eras).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::BenchSearch(a) => {
            crate::bench_search::run(a, &cli.extra_eras).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::BenchPortal(a) => {
            crate::bench_portal::run(a, &cli.extra_eras).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::BenchTenants(a) => {
            crate::bench_tenants::run(a, &cli.extra_eras).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::BenchHooks(a) => {
            crate::bench_hooks::run(a, &cli.extra_eras).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::BenchHttp(a) => {
            crate::bench_http::run(a, &cli.extra_eras).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(a) => {
            crate::bench::run(a, &cli.extra_eras).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::BenchSign {
            filings,
            revoked,
            rounds,
            threads,
        } => {
            let o = machi_sign::bench::BenchOptions {
                filings: *filings,
                revoked: *revoked,
                rounds: *rounds,
                threads: *threads,
                ..Default::default()
            };
            println!(
                "machi bench-sign — {} filings from {} DEMO cards, CRL of {} serials, {} rounds",
                o.filings, o.cards, o.revoked, o.rounds
            );
            let report = tokio::task::spawn_blocking(move || machi_sign::bench::run(&o)).await??;
            print!("{}", report.render());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Progress bars on standard error (hidden when it is not a terminal): one
/// per import pass, by bytes of residents.csv.
fn progress_bars() -> crate::migration::import::Progress {
    use crate::migration::import::Phase;
    use indicatif::{ProgressBar, ProgressStyle};
    let current: std::sync::Mutex<Option<(Phase, ProgressBar)>> = std::sync::Mutex::new(None);
    std::sync::Arc::new(move |phase: Phase, done: u64, total: u64| {
        let Ok(mut cur) = current.lock() else { return };
        if cur.as_ref().is_none_or(|(p, _)| *p != phase) {
            if let Some((_, bar)) = cur.take() {
                bar.finish();
            }
            let bar = ProgressBar::new(total);
            let label = match phase {
                Phase::Validate => "検証 validate",
                Phase::Load => "取込 load    ",
            };
            if let Ok(style) = ProgressStyle::with_template(&format!(
                "{label} [{{bar:40}}] {{bytes}}/{{total_bytes}} {{eta}}"
            )) {
                bar.set_style(style);
            }
            *cur = Some((phase, bar));
        }
        if let Some((_, bar)) = cur.as_ref() {
            bar.set_position(done);
            if done >= total {
                bar.finish();
            }
        }
    })
}

async fn rehearse(
    cli: &Cli,
    residents: usize,
    from: Option<&std::path::Path>,
    changes: usize,
    postgres: Option<&str>,
) -> anyhow::Result<ExitCode> {
    use crate::migration::{generate, import, rehearse};
    let eras = crate::config::era_table(&cli.extra_eras).map_err(anyhow::Error::msg)?;
    let work = std::env::temp_dir().join(format!("machi-rehearsal-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let pg_db = format!("machi_rehearsal_{}", std::process::id());
    let location = match postgres {
        Some(url) => DatabaseLocation::Postgres(
            crate::store::create_fresh_postgres_database(url, &pg_db).await?,
        ),
        None => DatabaseLocation::Sqlite(work.join("rehearsal.sqlite")),
    };
    // A scratch database: a key of its own, never stored.
    let registry = Registry::new(
        Store::connect(&location, Keyring::ephemeral()?).await?,
        eras.clone(),
        Clock::System,
    );
    let town = &crate::synth::TOWNS[0];
    let code: MunicipalityCode = town.code.parse().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    registry
        .create_tenant(code.clone(), town.name, town.prefecture)
        .await?;
    let source = match from {
        Some(dir) => dir.to_path_buf(),
        None => {
            let source = work.join("old-system");
            let opts = generate::GenerateOptions {
                residents,
                seed: 11,
                town_index: 0,
                today: Clock::System.today(),
            };
            let (s2, e2) = (source.clone(), eras.clone());
            tokio::task::spawn_blocking(move || generate::generate(&s2, &opts, &e2)).await??;
            source
        }
    };
    let loaded = import::import(
        &registry,
        &code,
        std::slice::from_ref(&source),
        &import::ImportOptions::default(),
        &Actor::system("rehearsal"),
    )
    .await?;
    let code_out = if loaded.outcome != import::Outcome::Imported {
        // The first finding: the extract itself is refused.
        println!("移行リハーサル / migration rehearsal");
        println!(
            "  旧システムの抽出データに問題が {} 件あり、取り込めません。/ the old system's extract has {} problems and cannot be loaded:",
            loaded.problem_count, loaded.problem_count
        );
        for p in loaded.problems.iter().take(20) {
            println!("  {p}");
        }
        ExitCode::FAILURE
    } else {
        let r = rehearse::rehearse(&registry, &code, &work, changes).await?;
        rehearse::print(&r);
        if rehearse::all_loaded(&r) {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    };
    registry.store().wait_for_checkpoint().await;
    drop(registry);
    if let Some(url) = postgres {
        crate::store::drop_postgres_database(url, &pg_db).await?;
    }
    let _ = std::fs::remove_dir_all(&work);
    Ok(code_out)
}

fn parse_code(s: &str) -> Option<MunicipalityCode> {
    match s.parse() {
        Ok(c) => Some(c),
        Err(e) => {
            let e: machi_domain::ids::IdError = e;
            eprintln!("machi: {} / {}", e.message_en(), e.message_ja());
            None
        }
    }
}

async fn import(cli: &Cli, a: &ImportArgs) -> anyhow::Result<ExitCode> {
    use crate::migration::import::{ImportOptions, Outcome};
    let Some(code) = parse_code(&a.tenant) else {
        return Ok(ExitCode::from(2));
    };
    let registry = open(cli, DEFAULT_DATABASE).await?;
    let opts = ImportOptions {
        encoding: a.encoding,
        validate_only: a.validate_only,
        max_reported: a.max_problems,
        progress: Some(progress_bars()),
    };
    let r =
        crate::migration::import::import(&registry, &code, &a.files, &opts, &Actor::system("cli"))
            .await?;
    let (ja, en) = match r.outcome {
        Outcome::Imported => ("取り込みました", "imported"),
        Outcome::Validated => (
            "検証のみ行いました（書き込みなし）",
            "validated only, nothing written",
        ),
        Outcome::AlreadyImported => (
            "取込み済みです（変更なし）",
            "already imported, nothing changed",
        ),
        Outcome::Unchanged => (
            "すべて登録済みです（変更なし）",
            "everything is stored already, nothing changed",
        ),
        Outcome::Refused => (
            "問題があるため何も取り込んでいません",
            "problems found, nothing imported",
        ),
    };
    println!("{ja} / {en}");
    println!(
        "  persons {}  history rows {}  households {}  written {}  already present {}  encoding {}",
        r.persons,
        r.history_rows,
        r.households,
        r.rows_written,
        r.rows_already_present,
        r.encoding.as_deref().unwrap_or("-")
    );
    // A full load validates while it writes: before it, the files are only
    // read for their digest and encoding.
    println!(
        "  before loading {:.1} s (digest, encoding{})  loading {:.1} s",
        r.validate_seconds,
        if r.one_pass { "" } else { ", validation" },
        r.load_seconds
    );
    if r.outcome == Outcome::Imported && registry.store().backend() == crate::store::Backend::Sqlite
    {
        // The rows are committed; the log is copied into the database file
        // before the command exits.
        let started = std::time::Instant::now();
        registry.store().wait_for_checkpoint().await;
        let secs = started.elapsed().as_secs_f64();
        println!(
            "  database file updated in {secs:.1} s / データベースファイルへの反映 {secs:.1} 秒"
        );
    }
    if r.problem_count > 0 {
        println!(
            "  problems: {} (file, row, column: 問題 / problem)",
            r.problem_count
        );
        for p in r.problems.iter().take(50) {
            println!("  {p}");
        }
        if r.problem_count > 50 {
            println!("  … {} more", r.problem_count - 50);
        }
    }
    if let Some(path) = &a.report {
        let mut w = csv::Writer::from_path(path)?;
        w.write_record(["file", "row", "column", "code", "message_ja", "message_en"])?;
        for p in &r.problems {
            w.write_record([
                p.file.as_str(),
                &p.row.to_string(),
                &p.column,
                &p.code,
                &p.message_ja,
                &p.message_en,
            ])?;
        }
        let left_out = r.problem_count.saturating_sub(r.problems.len() as u64);
        if left_out > 0 {
            w.write_record([
                "",
                "",
                "",
                "more_problems",
                &format!("ほかに {left_out} 件の問題があります（--max-problems で増やせます）。"),
                &format!("{left_out} more problems not listed (raise --max-problems)"),
            ])?;
        }
        w.flush()?;
    }
    Ok(if r.outcome == Outcome::Refused {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

async fn print_demo_links(registry: &Registry, port: u16) -> anyhow::Result<()> {
    let base = format!("http://127.0.0.1:{port}");
    println!();
    println!("machi demo is running — Ctrl-C to stop");
    println!("  staff UI:  {base}/login   (Japanese; English from the menu)");
    println!("  demo logins (団体コード / login / password):");
    for (tenant, login, role, _, password) in crate::demo::DEMO_LOGINS {
        let tenant = if tenant.is_empty() { "(empty)" } else { tenant };
        println!(
            "    {tenant:<8} {login:<11} {password:<21} {} / {}",
            role.label_ja(),
            role.label_en()
        );
    }
    let (id, secret, _) = crate::demo::DEMO_CLIENT;
    println!("  API (OAuth2 client credentials, tokens live 10 minutes), as 府中市's demo client:");
    println!(
        "    curl -s -d grant_type=client_credentials -d client_id={id} -d client_secret={secret} {base}/oauth/token"
    );
    println!(
        "    curl -H \"Authorization: Bearer <access_token>\" '{base}/api/v1/tenants/132063/search?name=たかはし'"
    );
    println!(
        "  more clients: machi client add --tenant 132063 --system jidou_teate --scopes jidou_teate:residents:read"
    );
    println!("  health:    {base}/healthz  (ready: {base}/readyz, metrics: {base}/metrics)");
    println!("  OpenAPI:   {base}/openapi.json");
    println!(
        "  tenants:   {}",
        registry
            .tenants()
            .await?
            .iter()
            .map(|t| format!("{}{} ({})", t.prefecture, t.name, t.municipality_code))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "  e.g. with the token: {base}/api/v1/tenants/132063/households/{}",
        crate::demo::first_household()
    );
    println!("  certificate check (public): {base}/verify");
    Ok(())
}

/// Serves the application; each request knows its peer's address
/// (`ConnectInfo`) for throttling (see [`api::source`]).
async fn serve(
    listener: tokio::net::TcpListener,
    registry: Registry,
    options: api::AppOptions,
) -> anyhow::Result<()> {
    // The webhook delivery worker runs beside the server; its position and
    // retry schedule are in the database, so a restart loses nothing.
    let config =
        crate::service::hooks::WorkerConfig::from_env().map_err(|e| anyhow::anyhow!("{e}"))?;
    let _hooks = crate::service::hooks::spawn_worker(registry.clone(), config)
        .map_err(|e| anyhow::anyhow!("webhook worker: {e}"))?;
    let app = api::app_with(AppState { registry }, options);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
