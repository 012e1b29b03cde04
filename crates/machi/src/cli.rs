//! The `machi` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use machi_domain::error::Localized;
use machi_domain::ids::MunicipalityCode;

use crate::api::{self, AppState};
use crate::service::{Clock, Registry};
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
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a demo database with six real municipalities and a few thousand
    /// synthetic residents, serve the API on it, and print where to look.
    Demo(DemoArgs),
    /// Serve the JSON API (and /openapi.json, /healthz) on the configured database.
    Serve(ServeArgs),
    /// Run pending database migrations and list the applied ones.
    Migrate,
    /// Manage tenants (municipalities).
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Print the OpenAPI document (the committed copy is openapi.json).
    Openapi {
        /// Write to this file instead of standard output.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Measure change writes/s and reads/s against baselines from the same run.
    Bench(crate::bench::BenchArgs),
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
}

#[derive(Args, Debug)]
struct ServeArgs {
    /// Port to listen on.
    #[arg(long, default_value_t = 8080, env = "MACHI_PORT")]
    port: u16,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1", env = "MACHI_BIND")]
    bind: String,
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

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MACHI_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,machi=info")),
        )
        .with_writer(std::io::stderr)
        .init();
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

async fn open(cli: &Cli, default: &str) -> anyhow::Result<Registry> {
    let loc = location(cli, default);
    let eras = crate::config::era_table(&cli.extra_eras).map_err(anyhow::Error::msg)?;
    let store = Store::connect_with(&loc, cli.sqlite_sync)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", loc.display()))?;
    Ok(Registry::new(store, eras, Clock::System))
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Demo(a) => {
            let default = a.data_dir.join("demo.sqlite");
            let default = default.to_string_lossy().into_owned();
            let started = std::time::Instant::now();
            let registry = open(&cli, &default).await?;
            let summary = crate::demo::seed(&registry, a.residents_per_tenant).await?;
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
            serve(listener, registry).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve(a) => {
            let registry = open(&cli, DEFAULT_DATABASE).await?;
            let addr: SocketAddr = format!("{}:{}", a.bind, a.port)
                .parse()
                .map_err(|e| anyhow::anyhow!("--bind {}: {e}", a.bind))?;
            let listener = tokio::net::TcpListener::bind(addr).await?;
            println!("machi API on http://{addr}/ (OpenAPI: http://{addr}/openapi.json)");
            serve(listener, registry).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate => {
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
        Command::Tenant(TenantCommand::List) => {
            let registry = open(&cli, DEFAULT_DATABASE).await?;
            for t in registry.tenants().await? {
                println!("{}  {}{}", t.municipality_code, t.prefecture, t.name);
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
        Command::Bench(a) => {
            crate::bench::run(a, &cli.extra_eras).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn print_demo_links(registry: &Registry, port: u16) -> anyhow::Result<()> {
    let base = format!("http://127.0.0.1:{port}");
    println!();
    println!("machi demo is running — Ctrl-C to stop");
    println!("  health:    {base}/healthz");
    println!("  OpenAPI:   {base}/openapi.json");
    println!("  tenants:   {base}/api/v1/tenants");
    for t in registry.tenants().await? {
        println!(
            "  {}{} ({}): {base}/api/v1/tenants/{}/search?name=たかはし",
            t.prefecture, t.name, t.municipality_code, t.municipality_code
        );
    }
    println!(
        "  e.g. a household: {base}/api/v1/tenants/132063/households/{}",
        crate::demo::first_household()
    );
    println!(
        "  e.g. a resident:  {base}/api/v1/tenants/132063/residents/{}",
        crate::demo::first_addressee()
    );
    Ok(())
}

async fn serve(listener: tokio::net::TcpListener, registry: Registry) -> anyhow::Result<()> {
    let app = api::app(AppState { registry });
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
