//! The `switchboard` command: CLI, config, wiring. Nothing else.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use switchboard::config::{Config, DEFAULT_CONFIG_FILE};

mod nlu;

#[derive(Parser)]
#[command(name = "switchboard", version, about = "Support bot gateway and helpdesk in one service")]
struct Cli {
    /// TOML config file [default: ./switchboard.toml if present]. Env vars
    /// SWITCHBOARD_<SECTION>__<KEY> override it.
    #[arg(long, global = true, env = "SWITCHBOARD_CONFIG_FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Admin accounts.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Database commands.
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
    /// The local NLP model: check the intents file, evaluate on labelled data.
    Nlu {
        #[command(subcommand)]
        command: NluCommand,
    },
}

#[derive(Subcommand)]
enum NluCommand {
    /// Validate an intents file (default: nlp.intents_file, else the built-in one) and say what it holds.
    Check {
        #[arg(long)]
        intents: Option<PathBuf>,
    },
    /// Judge the service's whole decision, as configured, on labelled support messages (default:
    /// the shipped set): category or out of scope, escalate now, priority and tone.
    Judge {
        /// CSV with `text` and `category` columns; `escalate_now`, `priority`, `sentiment` and
        /// `language` are scored when present.
        #[arg(long, default_value = "nlp/eval/support.csv")]
        data: PathBuf,
        /// Where report.json goes.
        #[arg(long, default_value = "nlu-judge")]
        out: PathBuf,
        /// Judge the overload fast path instead: every message classified without the sentence
        /// encoder, as when it waited past nlp.queue_budget_ms: by the first stage, sure or not
        /// (or, with nlp.first_stage off or not installed, the words-only intent head, with no
        /// judgement); never the LLM.
        #[arg(long, alias = "words-only")]
        fast_path: bool,
    },
    /// Cross-validate the judgement heads on their built-in training set (never on the
    /// evaluation set): for choosing their training settings.
    CrossValidate {
        #[arg(long, default_value_t = 5)]
        folds: usize,
        /// Keep each writer's part of the set (the id's letters) in one fold: scores on writers
        /// the heads never saw, as the evaluation set does.
        #[arg(long)]
        by_writer: bool,
        #[command(flatten)]
        head: HeadArgs,
    },
    /// Train on labelled data and report accuracy, macro-F1, confusions, a threshold sweep and latency.
    Eval {
        /// CSV with `text` and `label` columns to evaluate on.
        #[arg(long)]
        data: PathBuf,
        /// CSV to train on; without it, four fifths of --data (per label) train and the rest test.
        #[arg(long)]
        train: Option<PathBuf>,
        /// Intents left out of training so that their messages measure out-of-scope recall.
        #[arg(long, default_value_t = 10)]
        held_out: usize,
        /// Rows with this label are out of scope: never trained on, scored as rejections.
        #[arg(long, default_value = "oos")]
        out_of_scope_label: String,
        /// Where report.json and threshold-sweep.svg go.
        #[arg(long, default_value = "nlu-eval")]
        out: PathBuf,
        #[command(flatten)]
        head: HeadArgs,
    },
}

/// Training settings of the intent head, for experiments; the defaults are what the service uses.
#[derive(clap::Args)]
struct HeadArgs {
    #[arg(long)]
    epochs: Option<usize>,
    #[arg(long)]
    learning_rate: Option<f32>,
    #[arg(long)]
    weight_decay: Option<f32>,
    /// Weight of the sentence embedding against the word features.
    #[arg(long)]
    dense_scale: Option<f32>,
    #[arg(long)]
    sparse_scale: Option<f32>,
    /// How many nearest training messages vote beside the head (0: none).
    #[arg(long)]
    neighbours: Option<usize>,
    /// The nearest messages' share of the blended vote, 0 to 1.
    #[arg(long)]
    neighbour_weight: Option<f32>,
    /// How sharply the nearest message outvotes the others (smaller: sharper).
    #[arg(long)]
    neighbour_temperature: Option<f32>,
}

impl HeadArgs {
    fn params(&self) -> anyhow::Result<switchboard_nlp::head::TrainParams> {
        self.over(switchboard_nlp::head::TrainParams::default())
    }

    fn over(&self, mut p: switchboard_nlp::head::TrainParams) -> anyhow::Result<switchboard_nlp::head::TrainParams> {
        p.epochs = self.epochs.unwrap_or(p.epochs);
        p.learning_rate = self.learning_rate.unwrap_or(p.learning_rate);
        p.weight_decay = self.weight_decay.unwrap_or(p.weight_decay);
        p.dense_scale = self.dense_scale.unwrap_or(p.dense_scale);
        p.sparse_scale = self.sparse_scale.unwrap_or(p.sparse_scale);
        p.neighbours.k = self.neighbours.unwrap_or(p.neighbours.k);
        p.neighbours.weight = self.neighbour_weight.unwrap_or(p.neighbours.weight);
        p.neighbours.temperature = self.neighbour_temperature.unwrap_or(p.neighbours.temperature);
        anyhow::ensure!(
            (0.0..=1.0).contains(&p.neighbours.weight),
            "--neighbour-weight {} is outside 0 to 1: it is the nearest messages' share of the vote",
            p.neighbours.weight
        );
        anyhow::ensure!(
            p.neighbours.temperature > 0.0,
            "--neighbour-temperature {} must be above 0 (use --neighbours 0 for no vote)",
            p.neighbours.temperature
        );
        Ok(p)
    }
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create an admin account. The password is read from SWITCHBOARD_ADMIN_PASSWORD or, when
    /// that is unset, from the first line of standard input.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
    },
}

#[derive(Subcommand)]
enum DbCommand {
    /// Copy an installation from SQLite to PostgreSQL; counts are compared at the end.
    Copy {
        /// The SQLite database, e.g. sqlite://switchboard.db.
        #[arg(long)]
        from: String,
        /// The PostgreSQL database, e.g. postgres://switchboard@db.internal/switchboard.
        #[arg(long)]
        to: String,
        /// Finish an interrupted copy: keep what the target holds and copy what it lacks.
        #[arg(long)]
        resume: bool,
    },
    /// Write a consistent copy of the SQLite database (database.url) to a new file; safe while
    /// the server runs. For PostgreSQL, says how to use pg_dump.
    Backup {
        #[arg(long)]
        to: std::path::PathBuf,
    },
    /// Put a backup in place of the SQLite database (database.url); stop the server first.
    Restore {
        #[arg(long)]
        from: std::path::PathBuf,
        /// Keep an existing database aside (…before-restore-<time>) and restore over it.
        #[arg(long)]
        replace: bool,
    },
    /// Delete what retention lets go now (expired sessions, read notifications older than
    /// jobs.retention.read_notifications_days), as the scheduled retention job does.
    Purge {
        /// Only count what would go.
        #[arg(long)]
        dry_run: bool,
    },
    /// The scheduled jobs: schedule, next run and how the last run went.
    Jobs,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Load and validate the configuration; print it (secrets hidden) or say what is wrong.
    Check,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // These variables are ours, not config keys.
    let admin_password = std::env::var("SWITCHBOARD_ADMIN_PASSWORD").ok();
    // SAFETY: single-threaded here, before the runtime starts.
    unsafe {
        // The sentence encoder runs one batch per core; each batch's matrix products then stay
        // on their thread (candle reads this variable), which is faster than splitting them.
        if std::env::var_os("RAYON_NUM_THREADS").is_none() {
            std::env::set_var("RAYON_NUM_THREADS", "1");
        }
        // Every thread that allocates would otherwise get a heap of its own (8 per core), each
        // keeping its high-water mark; two keep memory close to what is in use. glibc's own
        // settings, when given, are the operator's choice.
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        if std::env::var_os("MALLOC_ARENA_MAX").is_none()
            && !std::env::var("GLIBC_TUNABLES").is_ok_and(|tunables| tunables.contains("glibc.malloc.arena_max"))
        {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
        std::env::remove_var("SWITCHBOARD_CONFIG_FILE");
        std::env::remove_var("SWITCHBOARD_ADMIN_PASSWORD");
    }
    let config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: invalid configuration: {error}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let result = runtime.block_on(run(cli.command.unwrap_or(Command::Serve), config, admin_password));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, config: Config, admin_password: Option<String>) -> anyhow::Result<()> {
    match command {
        Command::Config { command: ConfigCommand::Check } => {
            let mut shown = config.clone();
            for secret in [
                &mut shown.server.secret,
                &mut shown.telegram.token,
                &mut shown.telegram.webhook_secret,
                &mut shown.discord.token,
                &mut shown.email.imap_password,
                &mut shown.email.smtp_password,
                &mut shown.llm.api_key,
            ] {
                if secret.is_some() {
                    *secret = Some(switchboard::config::Secret("<hidden>".into()));
                }
            }
            shown.database.url = config.database.redacted_url();
            println!("configuration OK (defaults, then {DEFAULT_CONFIG_FILE} or --config, then SWITCHBOARD_* env vars):");
            println!("{}", pretty(&shown)?);
            Ok(())
        }
        Command::Admin { command: AdminCommand::Create { email, name } } => {
            let password = match admin_password {
                Some(password) => password,
                None => {
                    eprintln!("password (at least {} characters), then Enter:", config.server.password_min_chars);
                    let mut line = String::new();
                    std::io::stdin().read_line(&mut line).context("reading the password from standard input")?;
                    line.trim_end_matches(['\r', '\n']).to_string()
                }
            };
            let store = switchboard::open_store(&config).await?;
            let role = switchboard_models::Role::Admin;
            let min_chars = config.server.password_min_chars;
            let admin = switchboard_admin_web::accounts::create_account_with_capacity(store.as_ref(), &email, &name, role, &password, None, 5, min_chars).await?;
            println!("created admin {} ({})", admin.email, admin.id);
            Ok(())
        }
        Command::Nlu { command: NluCommand::Check { intents } } => nlu::check(&config, intents.as_deref()),
        Command::Nlu { command: NluCommand::Judge { data, out, fast_path } } => nlu::judge(&config, &data, &out, fast_path).await,
        Command::Nlu { command: NluCommand::CrossValidate { folds, by_writer, head } } => {
            let params = head.over(switchboard_nlp::judgement::judgement_params())?;
            tokio::task::spawn_blocking(move || nlu::cross_validate(&config, folds, by_writer, params)).await?
        }
        Command::Nlu { command: NluCommand::Eval { data, train, held_out, out_of_scope_label, out, head } } => {
            let params = head.params()?;
            tokio::task::spawn_blocking(move || {
                nlu::eval(&config, &data, train.as_deref(), held_out, &out_of_scope_label, &out, params)
            })
            .await?
        }
        Command::Db { command: DbCommand::Copy { from, to, resume } } => {
            let style = indicatif::ProgressStyle::with_template("{msg:>20} [{bar:40}] {pos}/{len}")
                .context("progress bar template")?;
            let bar = indicatif::ProgressBar::new(0).with_style(style);
            let report = switchboard_store::copy::copy(&from, &to, resume, &mut |table, copied, total| {
                bar.set_message(table.to_string());
                bar.set_length(total);
                bar.set_position(copied);
            })
            .await?;
            bar.finish_and_clear();
            for (table, source, target) in report {
                println!("{table}: {target} of {source} rows");
            }
            let target = switchboard::config::DatabaseConfig { url: to, ..Default::default() }.redacted_url();
            println!("copy complete; set database.url = \"{target}\" to run on it");
            Ok(())
        }
        Command::Db { command: DbCommand::Backup { to } } => {
            let bytes = switchboard_store::backup::backup(&config.database.url, &to).await?;
            println!("backup written to {} ({} KiB) and checked", to.display(), bytes.div_ceil(1024));
            Ok(())
        }
        Command::Db { command: DbCommand::Restore { from, replace } } => {
            let target = switchboard_store::backup::restore(&from, &config.database.url, replace).await?;
            switchboard::open_store(&config).await?;
            println!("restored {} to {}; it is migrated and ready to serve", from.display(), target.display());
            Ok(())
        }
        Command::Db { command: DbCommand::Purge { dry_run } } => {
            let store = switchboard::open_store(&config).await?;
            let blobs = switchboard_store::FileBlobs::open(&config.attachments.dir)?;
            let described = switchboard::jobs::retain(store.as_ref(), &blobs, &config.jobs.retention, chrono::Utc::now(), dry_run).await?;
            match dry_run {
                true => println!("would delete {described} (dry run: nothing was deleted)"),
                false => println!("deleted {described}"),
            }
            store.close().await;
            Ok(())
        }
        Command::Db { command: DbCommand::Jobs } => {
            let store = switchboard::open_store(&config).await?;
            let configured = config.job_schedules()?;
            let stored = store.scheduled_jobs().await?;
            if configured.is_empty() {
                println!("no scheduled jobs are configured ([jobs.backup], [jobs.retention] and [jobs.reports] have no schedule)");
            }
            for (name, schedule) in &configured {
                let state = stored.iter().find(|s| s.name == *name);
                let next = state.map_or("at the next start".to_string(), |s| s.next_run_at.to_rfc3339());
                let last = match state.and_then(|s| s.last_started_at.map(|at| (at, s.last_ok, s.last_outcome.clone()))) {
                    None => "never ran".to_string(),
                    Some((at, None, _)) => format!("started {} and has not finished", at.to_rfc3339()),
                    Some((at, Some(ok), outcome)) => {
                        format!("{} at {}: {}", if ok { "ok" } else { "FAILED" }, at.to_rfc3339(), outcome.unwrap_or_default())
                    }
                };
                println!("{name}\t\"{}\"\tnext {next}\tlast {last}", schedule.as_str());
            }
            store.close().await;
            Ok(())
        }
        Command::Migrate => {
            switchboard::open_store(&config).await?;
            println!("database is up to date ({})", config.database.redacted_url());
            Ok(())
        }
        Command::Serve => {
            init_logging(&config)?;
            let stop = stop_requested()?;
            let running = switchboard::start(&config).await?;
            println!("Switchboard listening on http://{}", running.addr);
            tracing::info!(addr = %running.addr, database = %config.database.redacted_url(), "ready");
            if let Some(intents) = running.intents.clone() {
                tokio::spawn(reload_on_hangup(intents));
            }
            running.serve_until(stop).await
        }
    }
}

/// SIGTERM (systemd, Docker, Kubernetes) or SIGINT (Ctrl-C). The handlers are installed at
/// the call, before the server announces itself, so an early signal is not lost.
fn stop_requested() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM: stopping"),
            _ = interrupt.recv() => tracing::info!("SIGINT: stopping"),
        }
    })
}

/// SIGHUP re-reads the intents file (a changed file becomes the next version); a broken file
/// is logged and the running intents stay.
async fn reload_on_hangup(intents: std::sync::Arc<dyn switchboard_core::ports::BotIntents>) {
    let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        return;
    };
    while hangups.recv().await.is_some() {
        match intents.reload().await {
            Ok(report) => tracing::info!("intents reloaded: {report}"),
            Err(why) => tracing::error!("intents not reloaded, the previous ones stay in use: {why}"),
        }
    }
}

fn pretty(config: &Config) -> anyhow::Result<String> {
    let value = serde_json::to_value(config).context("serialising config")?;
    Ok(serde_json::to_string_pretty(&value)?)
}

fn init_logging(config: &Config) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log.level)
        .with_context(|| format!("config key `log.level`: `{}` is not a log filter", config.log.level))?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if config.log.format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
    Ok(())
}
