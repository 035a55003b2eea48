//! Load generator for web chat. Starts the real `switchboard` binary (a separate process, so the
//! server's memory and CPU are its own) on a fresh SQLite file and drives it over loopback.
//!
//!   bench throughput [--connections 200] [--seconds 10] [--nodes 1]   (--nodes N > 1: on PostgreSQL)
//!   bench latency    [--rate 1000] [--connections 200] [--seconds 10]
//!   bench idle       [--connections 19000] [--concurrency 500] [--returning 1]
//!                    (--returning 1: every visitor chatted before, as in a reconnect storm)
//!   bench idle-floor [--connections 19000] [--concurrency 500]
//!                    (the same openings against a bare WebSocket server, a process of its own
//!                    that only answers `ready`: what this machine and load generator allow)
//!   bench startup    [--runs 5]
//!   bench panel      [--conversations 100000] [--messages-each 10] [--requests 200]
//!   bench nlp        [--connections 32] [--seconds 10]
//!   bench overload   [--rate 500] [--connections 100] [--seconds 60] [--budget-ms 200]
//!   bench wal        [--rate 300] [--seconds 600]          (SQLite: the WAL's size under load)
//!   bench soak       [--cycles 10] [--rate 300] [--seconds 5]   (kill -9 under load; SQLite)
//!   bench failover   [--runs 5]     (two nodes on PostgreSQL: Telegram polling after kill -9)
//!   bench live-nodes [--messages 200] (two nodes on PostgreSQL: live news from one to the other)
//!   bench reports    [--conversations 100000] [--messages-each 10] [--days 90] [--requests 50]
//!   bench sla        [--conversations 100000] [--due-per-second 50] [--rate 300] [--seconds 20]
//!                    (SQLite: web-chat replies while SLA timers come due, against none due)
//!
//! BENCH_DATABASE=postgres runs the server on a fresh PostgreSQL database (on TEST_POSTGRES_URL's
//! server, default 127.0.0.1:5432) instead of SQLite.
//! All but `nlp` and `overload` run the server on keyword rules, to measure the gateway itself; `nlp` runs it
//! with the sentence encoder (./scripts/fetch-model.sh) and the built-in intents.
//! Results go to stdout as one line per measurement; BENCHMARKS.md records them.

use anyhow::{Context, bail};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use switchboard_channels::webchat::VisitorKeys;
use tokio::net::TcpSocket;
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message as WsMessage;

const SECRET: &str = "bench-secret-bench-secret-bench-secret-0123";

struct Server {
    child: Child,
    addr: SocketAddr,
    /// Where it runs (its `switchboard.db`); removed at the end when it is a temporary one.
    dir: PathBuf,
    _temporary: Option<tempfile::TempDir>,
    /// Set when BENCH_DATABASE=postgres: a fresh database on TEST_POSTGRES_URL's server.
    _database: Option<switchboard_tests::databases::TestDatabase>,
    /// How many times its log said it returned freed heap to the system (`MEMORY_RETURNED`).
    memory_returns: tokio::sync::watch::Receiver<u64>,
}

/// The server's debug line (target `switchboard::memory`) after each return of freed heap.
const MEMORY_RETURNED: &str = "returned freed heap to the system";

impl Server {
    fn start() -> anyhow::Result<(Self, Duration)> {
        Self::start_in(tempfile::tempdir()?)
    }

    /// Runs in `dir` (its `switchboard.db` is the database), on keyword rules.
    fn start_in(dir: tempfile::TempDir) -> anyhow::Result<(Self, Duration)> {
        Self::start_with(dir, &[("SWITCHBOARD_NLP__ENABLED", "false")])
    }

    fn start_with(dir: tempfile::TempDir, env: &[(&str, &str)]) -> anyhow::Result<(Self, Duration)> {
        let path = dir.path().to_path_buf();
        let (mut server, ready) = Self::start_at(&path, "127.0.0.1:0", env)?;
        server._temporary = Some(dir);
        Ok((server, ready))
    }

    /// Runs in `dir`, listening on `listen`; the directory outlives it (for restarts).
    fn start_at(dir: &std::path::Path, listen: &str, env: &[(&str, &str)]) -> anyhow::Result<(Self, Duration)> {
        let given_database = env.iter().any(|(key, _)| *key == "SWITCHBOARD_DATABASE__URL");
        let database = match std::env::var("BENCH_DATABASE").as_deref() {
            _ if given_database => None,
            Ok("postgres") => Some(
                std::thread::spawn(|| {
                    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                    runtime.block_on(switchboard_tests::databases::TestDatabase::postgres())
                })
                .join()
                .map_err(|_| anyhow::anyhow!("could not create a PostgreSQL database (TEST_POSTGRES_URL)"))?,
            ),
            Ok("sqlite") | Err(_) => None,
            Ok(other) => bail!("BENCH_DATABASE={other}: use sqlite or postgres"),
        };
        let database_url = database.as_ref().map(|d| d.url.clone());
        let started = Instant::now();
        let mut child = Command::new(binary()?)
            .arg("serve")
            .envs(database_url.iter().map(|url| ("SWITCHBOARD_DATABASE__URL", url.as_str())))
            .envs(env.iter().copied())
            .current_dir(dir)
            .env("SWITCHBOARD_SERVER__LISTEN", listen)
            .env("SWITCHBOARD_SERVER__SECRET", SECRET)
            .env("SWITCHBOARD_WEBCHAT__RATE_LIMIT_PER_MINUTE", "100000000")
            .env("SWITCHBOARD_WEBCHAT__RATE_LIMIT_BURST", "100000000")
            .env("SWITCHBOARD_WEBCHAT__MESSAGES_PER_ADDRESS_PER_MINUTE", "100000000")
            .env("SWITCHBOARD_WEBCHAT__SESSIONS_PER_ADDRESS_PER_MINUTE", "100000000")
            // BENCH_LOG_LEVEL=info shows what the server notes under load (slow steps, checkpoints).
            .env("SWITCHBOARD_LOG__LEVEL", format!("{},switchboard::memory=debug", std::env::var("BENCH_LOG_LEVEL").unwrap_or_else(|_| "warn".into())))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting the switchboard binary")?;
        // Its log goes on to ours, all but the returns of freed heap, which are counted.
        let (returned, memory_returns) = tokio::sync::watch::channel(0u64);
        let log = child.stderr.take().context("stderr")?;
        std::thread::spawn(move || {
            for line in BufReader::new(log).lines().map_while(Result::ok) {
                match line.contains(MEMORY_RETURNED) {
                    true => returned.send_modify(|count| *count += 1),
                    false => eprintln!("{line}"),
                }
            }
        });
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
        let addr: SocketAddr = line
            .trim()
            .rsplit("http://")
            .next()
            .context("address line")?
            .parse()
            .with_context(|| format!("unexpected first line: {line}"))?;
        // Ready = answers HTTP.
        loop {
            if std::net::TcpStream::connect(addr).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let ready = started.elapsed();
        Ok((Self { child, addr, dir: dir.to_path_buf(), _temporary: None, _database: database, memory_returns }, ready))
    }

    fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS:")
    }

    /// The resident memory that is the process's own (heap, stacks), without mapped files such
    /// as SQLite's pages, which the OS may take back.
    fn anonymous_kib(&self) -> u64 {
        self.status_kib("RssAnon:")
    }

    /// Waits for the server's next periodic return of freed heap (every 10 s; it says so in its
    /// log); an error when none comes within `limit`.
    async fn next_memory_return(&self, limit: Duration) -> anyhow::Result<()> {
        let mut returns = self.memory_returns.clone();
        let seen = *returns.borrow_and_update();
        tokio::time::timeout(limit, returns.wait_for(|count| *count > seen))
            .await
            .map_err(|_| anyhow::anyhow!("the server returned no freed memory within {limit:?}"))?
            .map_err(|_| anyhow::anyhow!("the server's log ended before it returned freed memory"))?;
        Ok(())
    }

    fn status_kib(&self, field: &str) -> u64 {
        process_status_kib(self.child.id(), field)
    }
}

/// A size from /proc/<pid>/status (`VmRSS:`, `RssAnon:`), in KiB; 0 when unreadable.
fn process_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A file of this repository (the bench runs from the build directory).
fn repository_file(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(relative)
}

/// The release binary beside this one.
fn binary() -> anyhow::Result<PathBuf> {
    let mut path = std::env::current_exe()?;
    path.pop();
    path.push("switchboard");
    if !path.exists() {
        bail!("{} is missing: build it with `cargo build --release --workspace`", path.display());
    }
    Ok(path)
}

type Socket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// Opens a widget socket from source address 127.0.0.x so many sockets fit the port range.
async fn open(addr: SocketAddr, keys: &VisitorKeys, index: usize) -> anyhow::Result<Socket> {
    let (_, token) = keys.issue();
    open_with_token(addr, &token, index).await
}

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.windows(2)
        .find(|w| w[0] == name)
        .and_then(|w| w[1].parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let scenario = args.first().map(String::as_str).unwrap_or("help");
    match scenario {
        "throughput" => {
            throughput(arg(&args, "--connections", 200) as usize, arg(&args, "--seconds", 10), arg(&args, "--nodes", 1) as usize).await
        }
        "latency" => {
            latency(arg(&args, "--rate", 1000), arg(&args, "--connections", 200) as usize, arg(&args, "--seconds", 10))
                .await
        }
        "idle" => idle(arg(&args, "--connections", 19_000) as usize, arg(&args, "--concurrency", 500) as usize, arg(&args, "--returning", 0) == 1).await,
        "idle-floor" => idle_floor(arg(&args, "--connections", 19_000) as usize, arg(&args, "--concurrency", 500) as usize).await,
        "floor-server" => floor_server().await,
        "startup" => startup(arg(&args, "--runs", 5) as usize),
        "failover" => failover(arg(&args, "--runs", 5) as usize).await,
        "live-nodes" => live_across_nodes(arg(&args, "--messages", 200) as usize).await,
        "wal" => wal(arg(&args, "--rate", 300), arg(&args, "--seconds", 600)).await,
        "soak" => soak(arg(&args, "--cycles", 10), arg(&args, "--rate", 300), arg(&args, "--seconds", 5)).await,
        "nlp" => nlp(arg(&args, "--connections", 32) as usize, arg(&args, "--seconds", 10)).await,
        "overload" => {
            overload(arg(&args, "--rate", 500), arg(&args, "--connections", 100) as usize, arg(&args, "--seconds", 60), arg(&args, "--budget-ms", 200))
                .await
        }
        "sla" => {
            sla(arg(&args, "--conversations", 100_000), arg(&args, "--due-per-second", 50), arg(&args, "--rate", 300), arg(&args, "--seconds", 20))
                .await
        }
        "panel" => {
            let mixed = arg(&args, "--mixed", 0) as usize;
            panel(arg(&args, "--conversations", 100_000), arg(&args, "--messages-each", 10), arg(&args, "--requests", 200) as usize, mixed)
                .await
        }
        "reports" => {
            reports(arg(&args, "--conversations", 100_000), arg(&args, "--messages-each", 10), arg(&args, "--days", 90), arg(&args, "--requests", 50) as usize)
                .await
        }
        _ => {
            eprintln!("usage: bench throughput|latency|idle|startup [options]; see the source header");
            Ok(())
        }
    }
}

/// Closed loop: each connection sends its next message as soon as the bot answered the last.
async fn throughput(connections: usize, seconds: u64, nodes: usize) -> anyhow::Result<()> {
    if nodes > 1 {
        return throughput_on_nodes(connections, seconds, nodes).await;
    }
    let (server, _) = Server::start()?;
    let processes = ["switchboard", "postgres", "bench"];
    let before = cpu_seconds_by_name(&processes);
    let run = closed_loop(&[server.addr], connections, seconds, |_, _| "hello".to_string()).await?;
    let after = cpu_seconds_by_name(&processes);
    let spent: Vec<String> = processes
        .iter()
        .map(|name| format!("{name} {:.1} s", after.get(*name).unwrap_or(&0.0) - before.get(*name).unwrap_or(&0.0)))
        .collect();
    println!(
        "throughput: {connections} connections, {} messages persisted and answered in {:.1} s = {:.0} msg/s, {}; server RSS {} MiB; \
         CPU during the run: {} (of {:.1} s on {} cores)",
        run.answered(),
        run.elapsed,
        run.rate(),
        run.reply_percentiles(),
        server.rss_kib() / 1024,
        spent.join(", "),
        run.elapsed * std::thread::available_parallelism().map_or(1, |n| n.get()) as f64,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    );
    Ok(())
}

/// CPU seconds (user + system) every process with one of these names on this machine has used
/// so far, summed per name, from `/proc/<pid>/stat`: where a run's time goes, the database's
/// server processes included.
fn cpu_seconds_by_name(names: &[&str]) -> std::collections::HashMap<String, f64> {
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let mut spent = std::collections::HashMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // "pid (comm) state …": the name may hold spaces, so split after its closing parenthesis.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        let name = &stat[open + 1..close];
        if !names.contains(&name) {
            continue;
        }
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
        let time: f64 = fields.get(11..13).into_iter().flatten().filter_map(|f| f.parse::<f64>().ok()).sum();
        *spent.entry(name.to_string()).or_insert(0.0) += time / ticks;
    }
    spent
}

/// `nodes` servers on one PostgreSQL database, the sockets spread over them in turn (a load
/// balancer without sticky sessions); reports the total and each node's share.
async fn throughput_on_nodes(connections: usize, seconds: u64, nodes: usize) -> anyhow::Result<()> {
    let db = switchboard_tests::databases::TestDatabase::postgres().await;
    let env = [("SWITCHBOARD_DATABASE__URL", db.url.as_str()), ("SWITCHBOARD_NLP__ENABLED", "false")];
    let mut servers = Vec::new();
    for _ in 0..nodes {
        servers.push(Server::start_with(tempfile::tempdir()?, &env)?.0);
    }
    let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
    let run = closed_loop(&addrs, connections, seconds, |_, _| "hello".to_string()).await?;
    let pool = sqlx::PgPool::connect(&db.url).await?;
    let replies: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE sender = 'bot' AND delivered_at IS NOT NULL").fetch_one(&pool).await?;
    let rss: Vec<String> = servers.iter().map(|s| format!("{} MiB", s.rss_kib() / 1024)).collect();
    println!(
        "throughput: {nodes} nodes on one PostgreSQL database, {connections} connections ({} per node), {} messages persisted and answered in {:.1} s = {:.0} msg/s in all, {:.0} per node; {replies} replies delivered; node RSS {}",
        connections / nodes,
        run.answered(),
        run.elapsed,
        run.rate(),
        run.rate() / nodes as f64,
        rss.join(", ")
    );
    Ok(())
}

/// The service with the sentence encoder: startup with a trained head in the cache, memory, and
/// messages classified, persisted and answered per second under load.
async fn nlp(connections: usize, seconds: u64) -> anyhow::Result<()> {
    let cache = tempfile::tempdir()?;
    let cache_dir = cache.path().display().to_string();
    let env = [("SWITCHBOARD_NLP__ENABLED", "true"), ("SWITCHBOARD_NLP__CACHE_DIR", cache_dir.as_str())];
    let (cold, first) = Server::start_with(tempfile::tempdir()?, &env)?;
    drop(cold);
    let mut warm = Vec::new();
    for _ in 0..3 {
        let (server, ready) = Server::start_with(tempfile::tempdir()?, &env)?;
        warm.push(ready);
        drop(server);
    }
    warm.sort();
    println!(
        "nlp startup: {:.2} s training the head (first start), {:.2} s median with the cached head (3 runs)",
        first.as_secs_f64(),
        warm[1].as_secs_f64()
    );
    let (server, _) = Server::start_with(tempfile::tempdir()?, &env)?;
    println!("nlp memory: server RSS {} MiB with the model loaded, before traffic", server.rss_kib() / 1024);
    let run = closed_loop(&[server.addr], connections, seconds, distinct_question).await?;
    let first_stage = metric(server.addr, "switchboard_classifications_first_stage_total").await?;
    let (shed, shed_by_reason) = fast_path_counts(server.addr).await?;
    println!(
        "nlp throughput: {connections} connections, {} messages classified, persisted and answered in {:.1} s = {:.0} msg/s, {} \
         ({first_stage:.0} by the first stage, {shed:.0} shed to the fast path: {shed_by_reason}); server RSS {} MiB",
        run.answered(),
        run.elapsed,
        run.rate(),
        run.reply_percentiles(),
        server.rss_kib() / 1024
    );
    Ok(())
}

/// The server's /metrics, as text.
async fn scrape(addr: SocketAddr) -> anyhow::Result<String> {
    Ok(reqwest::get(format!("http://{addr}/metrics")).await?.text().await?)
}

/// A counter's value on the server's /metrics (0 when it has not counted yet).
async fn metric(addr: SocketAddr, name: &str) -> anyhow::Result<f64> {
    Ok(metric_in(&scrape(addr).await?, name))
}

/// The first sample named `name` (with its labels, if given) in a scrape; 0 when there is none.
fn metric_in(metrics: &str, name: &str) -> f64 {
    metrics.lines().find(|l| l.starts_with(name)).and_then(|l| l.rsplit(' ').next()?.parse().ok()).unwrap_or(0.0)
}

/// The SQLite writer's work so far, from its metrics: seconds busy committing groups, steps
/// committed, groups.
struct WriterLoad {
    busy_seconds: f64,
    steps: f64,
    groups: f64,
}

impl WriterLoad {
    /// From one scrape, so the three figures are of the same moment.
    async fn read(addr: SocketAddr) -> anyhow::Result<Self> {
        let metrics = scrape(addr).await?;
        Ok(Self {
            busy_seconds: metric_in(&metrics, "switchboard_store_group_commit_seconds_sum"),
            steps: metric_in(&metrics, "switchboard_store_group_steps_sum"),
            groups: metric_in(&metrics, "switchboard_store_group_steps_count"),
        })
    }

    fn since(&self, before: &Self) -> Self {
        Self { busy_seconds: self.busy_seconds - before.busy_seconds, steps: self.steps - before.steps, groups: self.groups - before.groups }
    }
}

/// How many messages took the fast path, in all and by reason (`reason` label), e.g.
/// "store_behind 12, encoder_behind 30".
async fn fast_path_counts(addr: SocketAddr) -> anyhow::Result<(f64, String)> {
    let metrics = scrape(addr).await?;
    let by_reason: Vec<(String, f64)> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("switchboard_classifications_fast_path_total{reason=\""))
        .filter_map(|l| {
            let (reason, rest) = l.split_once('"')?;
            Some((reason.to_string(), rest.rsplit(' ').next()?.parse().ok()?))
        })
        .collect();
    let total = by_reason.iter().fold(0.0, |sum, (_, n)| sum + n);
    let described = by_reason.iter().map(|(reason, n)| format!("{reason} {n:.0}")).collect::<Vec<_>>().join(", ");
    Ok((total, if described.is_empty() { "none".to_string() } else { described }))
}

/// One of the answerable questions, made a text no other message of the run has (a reference
/// number, as customers quote one), so that nothing can be answered from a cache.
fn distinct_question(socket: usize, n: u64) -> String {
    format!("{} (ref {socket}-{n})", NLP_TEXTS[n as usize % NLP_TEXTS.len()])
}

/// Each of `connections` widget sockets sends `text(socket, n)` for its `n`th message and waits
/// for the bot's answer, until `seconds` pass.
async fn closed_loop(servers: &[SocketAddr], connections: usize, seconds: u64, text: fn(usize, u64) -> String) -> anyhow::Result<ClosedLoop> {
    let keys = Arc::new(VisitorKeys::new(SECRET.as_bytes().to_vec()));
    // Every socket open first: opening is not part of the measured time.
    let mut sockets = Vec::with_capacity(connections);
    for index in 0..connections {
        sockets.push(open(servers[index % servers.len()], &keys, index).await?);
    }
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for (index, socket) in sockets.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let (mut sink, mut stream) = socket.split();
            let mut reply_times = Vec::new();
            let mut last_answer = Instant::now();
            let mut n = 0u64;
            while Instant::now() < deadline {
                n += 1;
                let frame = json!({"type": "send", "client_id": format!("m{n}"), "text": text(index, n)});
                let sent = Instant::now();
                if sink.send(WsMessage::Text(frame.to_string().into())).await.is_err() {
                    break;
                }
                // Until the bot's answer to this message arrives.
                // A conversation the bot handed to a person gets no answer: that socket stops
                // (counted) once the run is over, instead of waiting for ever.
                let answered = loop {
                    match tokio::time::timeout_at((deadline + UNANSWERED_AFTER).into(), stream.next()).await {
                        Ok(Some(Ok(WsMessage::Text(text)))) if text.contains("\"sender\":\"bot\"") => break true,
                        Ok(Some(Ok(_))) => continue,
                        _ => break false,
                    }
                };
                if !answered {
                    return (reply_times, 1, last_answer);
                }
                reply_times.push(sent.elapsed());
                last_answer = Instant::now();
            }
            (reply_times, 0, last_answer)
        }));
    }
    let started = Instant::now();
    let (mut reply_times, mut unanswered, mut last_answer) = (Vec::new(), 0, started);
    for task in tasks {
        let (times, lost, last) = task.await.unwrap_or((Vec::new(), 0, started));
        reply_times.extend(times);
        unanswered += lost;
        last_answer = last_answer.max(last);
    }
    // Until the last answer: a socket left waiting for an answer that never comes adds nothing.
    Ok(ClosedLoop { elapsed: last_answer.duration_since(started).as_secs_f64(), reply_times, unanswered })
}

/// How long after a closed loop's end a socket still waits for its last answer.
const UNANSWERED_AFTER: Duration = Duration::from_secs(10);

/// What a closed loop measured: each message's time from its send to the bot's answer.
struct ClosedLoop {
    elapsed: f64,
    reply_times: Vec<Duration>,
    /// Sockets whose last message got no answer (`UNANSWERED_AFTER`).
    unanswered: usize,
}

impl ClosedLoop {
    fn answered(&self) -> usize {
        self.reply_times.len()
    }

    fn rate(&self) -> f64 {
        self.answered() as f64 / self.elapsed
    }

    /// "reply p50 …, p99 …" in milliseconds.
    fn reply_percentiles(&self) -> String {
        let mut times = self.reply_times.clone();
        let unanswered = match self.unanswered {
            0 => String::new(),
            n => format!(" ({n} sockets' last message never answered: handed to a person?)"),
        };
        format!("reply p50 {:.2} ms, p99 {:.2} ms{unanswered}", percentile(&mut times, 0.50), percentile(&mut times, 0.99))
    }
}

/// The model under an open-loop load above what its encoder can take: reply latencies, what
/// was never answered, how many messages took the fast path, and one customer's reply time
/// once the load stops.
async fn overload(rate: u64, connections: usize, seconds: u64, budget_ms: u64) -> anyhow::Result<()> {
    let cache = tempfile::tempdir()?;
    let cache_dir = cache.path().display().to_string();
    let budget = budget_ms.to_string();
    let env = [
        ("SWITCHBOARD_NLP__ENABLED", "true"),
        ("SWITCHBOARD_NLP__CACHE_DIR", cache_dir.as_str()),
        ("SWITCHBOARD_NLP__QUEUE_BUDGET_MS", budget.as_str()),
    ];
    let (server, _) = Server::start_with(tempfile::tempdir()?, &env)?;
    let writer_before = WriterLoad::read(server.addr).await?;
    let loaded = Instant::now();
    let (samples, mut since_created, achieved) = reply_latencies_of(server.addr, rate, connections, seconds, |n| NLP_TEXTS[n as usize % NLP_TEXTS.len()]).await?;
    let writer = WriterLoad::read(server.addr).await?.since(&writer_before);
    let loaded = loaded.elapsed().as_secs_f64();
    let pct = |p: f64| samples.get(((samples.len() as f64 * p) as usize).min(samples.len().saturating_sub(1))).copied().unwrap_or_default();
    let sent = rate * seconds;
    let (fast, fast_by_reason) = fast_path_counts(server.addr).await?;
    // A conversation handed to a person gets no more bot answers: its socket's later sends
    // stay unanswered, and each answer before is paired with an older send.
    let escalated = metric(server.addr, "switchboard_escalations_total").await?;
    let delivered = metric(server.addr, "switchboard_deliveries_total{channel=\"webchat\",outcome=\"delivered\"}").await?;
    println!(
        "overload: offered {rate} msg/s over {connections} connections for {seconds} s (sent at {achieved:.0} msg/s), budget {budget_ms} ms: \
         {} of {sent} answered within 2 s of the last send ({} not), p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms; {fast:.0} took the fast path ({fast_by_reason}), \
         {escalated:.0} conversations handed to a person, {delivered:.0} replies delivered",
        samples.len(),
        sent.saturating_sub(samples.len() as u64),
        pct(0.50).as_secs_f64() * 1000.0,
        pct(0.99).as_secs_f64() * 1000.0,
        samples.last().copied().unwrap_or_default().as_secs_f64() * 1000.0,
    );
    println!(
        "overload: the store's group commits busy {:.0} % of the {loaded:.1} s (load and its last answers; SQLite's one writer, or the sum of PostgreSQL's committers), \
         {:.0} steps/s in {:.0} groups/s of {:.0}",
        100.0 * writer.busy_seconds / loaded,
        writer.steps / loaded,
        writer.groups / loaded,
        writer.steps / writer.groups.max(1.0),
    );
    // Where the wait is: before the reply was created (reading, storing, classifying the
    // message) or after (committing, the outbox, the socket).
    println!(
        "overload: from a reply's creation to its arrival: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        percentile(&mut since_created, 0.50),
        percentile(&mut since_created, 0.99),
        percentile(&mut since_created, 1.0),
    );
    // Recovery: one customer alone, right after.
    let (mut after, _, _) = reply_latencies_of(server.addr, 5, 1, 4, |n| NLP_TEXTS[n as usize % NLP_TEXTS.len()]).await?;
    after.sort();
    println!(
        "overload: after the load, one customer at 5 msg/s: p50 {:.1} ms, max {:.1} ms ({} answered)",
        after.get(after.len() / 2).copied().unwrap_or_default().as_secs_f64() * 1000.0,
        after.last().copied().unwrap_or_default().as_secs_f64() * 1000.0,
        after.len()
    );
    Ok(())
}

/// Questions the bot answers from its intents, so conversations stay with the bot.
const NLP_TEXTS: [&str; 6] = [
    "what plans do you offer and how much do they cost",
    "how do I reset my password",
    "how can I export all my data",
    "can I get a copy of last month's invoice",
    "what are your opening hours",
    "do you have a dark mode",
];

/// Open loop at a fixed rate; latency from send to the bot's answer arriving.
async fn latency(rate: u64, connections: usize, seconds: u64) -> anyhow::Result<()> {
    let (server, _) = Server::start()?;
    let (samples, achieved) = reply_latencies(server.addr, rate, connections, seconds).await?;
    let pct = |p: f64| samples.get(((samples.len() as f64 * p) as usize).min(samples.len().saturating_sub(1))).copied().unwrap_or_default();
    println!(
        "latency: offered {rate} msg/s over {connections} connections for {seconds} s (achieved {achieved:.0} msg/s sent), {} answered: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        samples.len(),
        pct(0.50).as_secs_f64() * 1000.0,
        pct(0.99).as_secs_f64() * 1000.0,
        samples.last().copied().unwrap_or_default().as_secs_f64() * 1000.0,
    );
    Ok(())
}

/// Open loop at `rate` messages a second over `connections` widgets: each bot answer's time
/// since its message was sent, sorted, and the send rate achieved.
async fn reply_latencies(addr: SocketAddr, rate: u64, connections: usize, seconds: u64) -> anyhow::Result<(Vec<Duration>, f64)> {
    let (samples, _, achieved) = reply_latencies_of(addr, rate, connections, seconds, |_| "hello").await?;
    Ok((samples, achieved))
}

/// `reply_latencies` with the `n`th message's text given; also each reply's time from when the
/// server created it (its `created_at`, taken as the step is decided) to its arrival.
async fn reply_latencies_of(
    addr: SocketAddr,
    rate: u64,
    connections: usize,
    seconds: u64,
    text: fn(u64) -> &'static str,
) -> anyhow::Result<(Vec<Duration>, Vec<Duration>, f64)> {
    let keys = VisitorKeys::new(SECRET.as_bytes().to_vec());
    let samples = Arc::new(Mutex::new(Vec::<Duration>::new()));
    let since_created = Arc::new(Mutex::new(Vec::<Duration>::new()));
    let mut sinks = Vec::new();
    let mut readers = Vec::new();
    for index in 0..connections {
        let (sink, mut stream) = open(addr, &keys, index).await?.split();
        let sent_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        sinks.push((sink, sent_at.clone()));
        let (samples, since_created) = (samples.clone(), since_created.clone());
        readers.push(tokio::spawn(async move {
            // Answers come in order per conversation: pair each with the oldest unanswered send.
            while let Some(Ok(message)) = stream.next().await {
                let WsMessage::Text(text) = message else { continue };
                let frame: Value = serde_json::from_str(&text).unwrap_or_default();
                if frame["type"] == "message" && frame["message"]["sender"] == "bot" {
                    let created = frame["message"]["created_at"].as_str().and_then(|at| chrono::DateTime::parse_from_rfc3339(at).ok());
                    if let Some(created) = created {
                        let since = (chrono::Utc::now() - created.with_timezone(&chrono::Utc)).to_std().unwrap_or_default();
                        since_created.lock().await.push(since);
                    }
                    let mut pending = sent_at.lock().await;
                    if let Some(key) = pending.iter().min_by_key(|(_, at)| **at).map(|(k, _)| k.clone()) {
                        let at = pending.remove(&key).expect("present");
                        samples.lock().await.push(at.elapsed());
                    }
                }
            }
        }));
    }
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let total = rate * seconds;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    for n in 0..total {
        ticker.tick().await;
        let (sink, sent_at) = &mut sinks[(n as usize) % connections];
        let id = format!("m{n}");
        sent_at.lock().await.insert(id.clone(), Instant::now());
        let frame = json!({"type": "send", "client_id": id, "text": text(n)});
        sink.send(WsMessage::Text(frame.to_string().into())).await?;
    }
    let send_elapsed = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut samples = samples.lock().await.clone();
    samples.sort();
    let since_created = since_created.lock().await.clone();
    for reader in readers {
        reader.abort();
    }
    Ok((samples, since_created, total as f64 / send_elapsed))
}

/// SLA timers at scale: `conversations` escalated conversations with their clocks and a breach
/// timer each. Twice: once with every timer far ahead (the sweep finds nothing due), once with
/// `due_per_second` of them coming due through the run; web-chat replies at `rate` meanwhile.
/// Prints the reply latencies of both and the timers' lag from due to fired.
async fn sla(conversations: u64, due_per_second: u64, rate: u64, seconds: u64) -> anyhow::Result<()> {
    for firing in [false, true] {
        let dir = tempfile::tempdir()?;
        // The first timers come due once the server is up and the widgets are connected.
        let first_due = chrono::Utc::now() + chrono::Duration::seconds(8);
        let seeding = Instant::now();
        let dues = seed_sla(dir.path(), conversations, firing.then_some((first_due, due_per_second, seconds))).await?;
        let seeded = seeding.elapsed().as_secs_f64();
        let path = dir.path().to_path_buf();
        let (server, _) = Server::start_in(dir)?;
        let wait = (first_due - chrono::Utc::now()).to_std().unwrap_or_default();
        tokio::time::sleep(wait.saturating_sub(Duration::from_secs(2))).await;
        let (samples, achieved) = reply_latencies(server.addr, rate, 100, seconds).await?;
        let pct = |p: f64| samples.get(((samples.len() as f64 * p) as usize).min(samples.len().saturating_sub(1))).copied().unwrap_or_default();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "sla: {conversations} open conversations with SLA timers (seeded in {seeded:.1} s), {}: offered {rate} msg/s ({achieved:.0} sent), {} answered: p50 {:.1} ms, p99 {:.1} ms",
            if firing { format!("{due_per_second} timers due a second") } else { "none due".to_string() },
            samples.len(),
            ms(pct(0.5)),
            ms(pct(0.99)),
        );
        if firing {
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=ro", path.join("switchboard.db").display())).await?;
            let fired: Vec<(String, i64)> =
                sqlx::query_as("SELECT conversation_id, at FROM audit_log WHERE after_state LIKE '%first_reply_breach came due%'").fetch_all(&pool).await?;
            let mut lags: Vec<Duration> = fired
                .iter()
                .filter_map(|(id, at)| dues.get(id).map(|due| Duration::from_millis((at - due).max(0) as u64)))
                .collect();
            lags.sort();
            let due_by_now = dues.values().filter(|due| **due <= chrono::Utc::now().timestamp_millis()).count();
            let lag = |p: f64| lags.get(((lags.len() as f64 * p) as usize).min(lags.len().saturating_sub(1))).copied().unwrap_or_default();
            println!(
                "sla: {} of {due_by_now} due timers fired; lag due -> fired p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
                lags.len(),
                ms(lag(0.5)),
                ms(lag(0.99)),
                ms(lags.last().copied().unwrap_or_default()),
            );
        }
    }
    Ok(())
}

/// Escalated conversations waiting in the queue, each with its SLA clocks and a first-reply
/// breach timer: far ahead, or (`due`: first instant, per second, seconds) coming due through
/// a run. Returns each coming-due conversation's due time in milliseconds.
async fn seed_sla(
    dir: &std::path::Path,
    conversations: u64,
    due: Option<(chrono::DateTime<chrono::Utc>, u64, u64)>,
) -> anyhow::Result<HashMap<String, i64>> {
    let url = format!("sqlite://{}", dir.join("switchboard.db").display());
    let store = switchboard_store::SqliteStore::open(&url).await?;
    store.migrate().await?;
    switchboard_admin_web::accounts::create_account(&store, "bench@example.com", "Bench", switchboard_models::Role::Admin, "bench-password-123", None)
        .await?;
    drop(store);
    let pool = sqlx::SqlitePool::connect(&url).await?;
    let now = chrono::Utc::now().timestamp_millis();
    let far = now + 30 * 24 * 3600 * 1000;
    let mut dues = HashMap::new();
    let mut tx = pool.begin().await?;
    for start in (0..conversations).step_by(500) {
        let end = (start + 500).min(conversations);
        let (mut contacts, mut convs, mut timers) = (Vec::new(), Vec::new(), Vec::new());
        for n in start..end {
            let contact = uuid::Uuid::now_v7().to_string();
            let conversation = uuid::Uuid::now_v7().to_string();
            let at = now - (conversations - n) as i64 * 10;
            let due_at = match due {
                Some((first, per_second, seconds)) if n < per_second * seconds => {
                    let due_at = first.timestamp_millis() + (n * 1000 / per_second) as i64;
                    dues.insert(conversation.clone(), due_at);
                    due_at
                }
                _ => far,
            };
            contacts.push(format!("('{contact}', 'webchat', 'sla-visitor-{n}', 'Customer {n}', {at})"));
            convs.push(format!(
                "('{conversation}', '{contact}', 'webchat', 'queue', 'open', 'general_inquiry', 'medium', '{{\"kind\":\"human_requested\"}}', '', {at}, {at}, {at}, {due_at}, {})",
                due_at + 44 * 3600 * 1000
            ));
            timers.push(format!("('{conversation}', 'first_reply_breach', {due_at})"));
        }
        let insert = |table: &str, columns: &str, rows: &[String]| format!("INSERT INTO {table} ({columns}) VALUES {}", rows.join(","));
        sqlx::query(sqlx::AssertSqlSafe(insert("contacts", "id, channel, external_id, display_name, created_at", &contacts))).execute(&mut *tx).await?;
        sqlx::query(sqlx::AssertSqlSafe(insert(
            "conversations",
            "id, contact_id, channel, handler, status, category, priority, escalation_reason, escalation_summary, escalated_at, created_at, \
             updated_at, first_reply_due_at, resolution_due_at",
            &convs,
        )))
        .execute(&mut *tx)
        .await?;
        sqlx::query(sqlx::AssertSqlSafe(insert("timers", "conversation_id, kind, due_at", &timers))).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&pool).await?;
    Ok(dues)
}

/// Idle widgets: server memory per open connection.
/// `concurrency` openings in flight at once (a reconnect storm: all of them). `returning`: each
/// visitor first wrote a message and got the bot's answer, then went away, so every opening
/// finds a customer and a conversation (what a restart's reconnect storm brings back).
async fn idle(connections: usize, concurrency: usize, returning: bool) -> anyhow::Result<()> {
    let (server, _) = Server::start()?;
    let keys = VisitorKeys::new(SECRET.as_bytes().to_vec());
    let tokens: Vec<String> = (0..connections).map(|_| keys.issue().1).collect();
    if returning {
        let chatted = Instant::now();
        let chats = futures::stream::iter(tokens.iter().enumerate().map(|(i, token)| chat_once(server.addr, token, i + 1)))
            .buffer_unordered(concurrency.max(1));
        for chat in chats.collect::<Vec<_>>().await {
            chat?;
        }
        println!("idle: {connections} visitors each wrote a message and were answered first, in {:.1} s", chatted.elapsed().as_secs_f64());
        // The server hands freed heap back every 10 s: measure from there.
        server.next_memory_return(Duration::from_secs(15)).await?;
    }
    // Warm the server (first connection allocates shared buffers) before measuring.
    let warm = open(server.addr, &keys, 0).await?;
    let before = server.rss_kib();
    let anonymous_before = server.anonymous_kib();
    let (sockets, opening) = open_all(server.addr, &tokens, concurrency).await?;
    // Each socket returned on the server's `ready`: its part of the server is set up by now.
    let after = server.rss_kib();
    let per = (after.saturating_sub(before)) as f64 * 1024.0 / connections as f64;
    println!(
        "idle: {connections} widget connections opened {concurrency} at a time in {:.1} s ({:.0}/s); server RSS {} MiB -> {} MiB = {:.1} KB per connection",
        opening.as_secs_f64(),
        connections as f64 / opening.as_secs_f64(),
        before / 1024,
        after / 1024,
        per / 1000.0
    );
    // The server hands freed heap back every 10 s: what stays after the next return is what
    // idle sockets hold.
    server.next_memory_return(Duration::from_secs(15)).await?;
    let settled = server.rss_kib();
    let anonymous = server.anonymous_kib();
    println!(
        "idle: after the server's next return of freed heap: server RSS {} MiB = {:.1} KB per connection; its own memory (RssAnon) {} MiB -> {} MiB = {:.1} KB per connection",
        settled / 1024,
        settled.saturating_sub(before) as f64 * 1024.0 / connections as f64 / 1000.0,
        anonymous_before / 1024,
        anonymous / 1024,
        anonymous.saturating_sub(anonymous_before) as f64 * 1024.0 / connections as f64 / 1000.0
    );
    drop((warm, sockets));
    Ok(())
}

/// Opens a widget socket for each token, `concurrency` at a time, each to its `ready` frame;
/// how long that took.
async fn open_all(addr: SocketAddr, tokens: &[String], concurrency: usize) -> anyhow::Result<(Vec<Socket>, Duration)> {
    let started = Instant::now();
    let opened = futures::stream::iter(tokens.iter().enumerate().map(|(i, token)| open_with_token(addr, token, i + 1)))
        .buffer_unordered(concurrency.max(1));
    let sockets = opened.collect::<Vec<_>>().await.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    Ok((sockets, started.elapsed()))
}

/// `bench idle`'s openings against `floor-server`: the rate no server can beat on this machine
/// with this load generator sharing its cores.
async fn idle_floor(connections: usize, concurrency: usize) -> anyhow::Result<()> {
    let mut child = Command::new(std::env::current_exe()?).arg("floor-server").stdout(Stdio::piped()).spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("floor server's stdout")?).read_line(&mut line)?;
    let addr: SocketAddr = line.trim().parse().with_context(|| format!("floor server said {line:?}"))?;
    let tokens: Vec<String> = (0..connections).map(|i| format!("visitor-{i}")).collect();
    let before = process_status_kib(child.id(), "VmRSS:");
    let (sockets, opening) = open_all(addr, &tokens, concurrency).await?;
    let after = process_status_kib(child.id(), "VmRSS:");
    println!(
        "idle-floor: {connections} connections to a bare WebSocket server opened {concurrency} at a time in {:.1} s ({:.0}/s); its RSS {} MiB -> {} MiB",
        opening.as_secs_f64(),
        connections as f64 / opening.as_secs_f64(),
        before / 1024,
        after / 1024
    );
    drop(sockets);
    child.kill()?;
    child.wait()?;
    Ok(())
}

/// The bare server of `idle-floor`: accepts WebSockets on loopback (TCP_NODELAY and small
/// buffers, as the service sets), sends each a `ready` frame and holds it until the client leaves. Prints its address.
async fn floor_server() -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("{}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            stream.set_nodelay(true)?;
            // The service's buffer sizes: the library's defaults (128 KiB to read) would make
            // the floor pay for page faults the service does not.
            let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default().read_buffer_size(2048).write_buffer_size(0);
            let mut ws = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await?;
            ws.send(WsMessage::Text(r#"{"type":"ready"}"#.into())).await?;
            while let Some(Ok(_)) = ws.next().await {}
            anyhow::Ok(())
        });
    }
}

/// From process start to accepting connections, on a fresh database (migrations included).
fn startup(runs: usize) -> anyhow::Result<()> {
    let mut times: Vec<Duration> = (0..runs).map(|_| Server::start().map(|(_, t)| t)).collect::<Result<_, _>>()?;
    times.sort();
    println!(
        "startup: median {:.0} ms, max {:.0} ms over {runs} runs (fresh SQLite file, migrations included)",
        times[runs / 2].as_secs_f64() * 1000.0,
        times.last().expect("runs > 0").as_secs_f64() * 1000.0
    );
    Ok(())
}

/// Fills a fresh database with `conversations` conversations of `each` messages, straight in SQL.
/// Seeds `conversations` conversations of `each` messages, one every `spacing_ms` up to now,
/// each with the history the reports read (created, escalated, assigned, first reply, resolved).
/// `agents`: the team the conversations are spread over (the admin first, then agents).
async fn seed(dir: &std::path::Path, conversations: u64, each: u64, spacing_ms: i64, agents: u64) -> anyhow::Result<()> {
    use switchboard_core::ports::Accounts;
    let url = format!("sqlite://{}", dir.join("switchboard.db").display());
    let store = switchboard_store::SqliteStore::open(&url).await?;
    store.migrate().await?;
    switchboard_admin_web::accounts::create_account(&store, "bench@example.com", "Bench", switchboard_models::Role::Admin, "bench-password-123", None)
        .await?;
    let mut team = vec![store.agent_by_email("bench@example.com").await?.expect("admin").id.to_string()];
    for k in 1..agents.max(1) {
        let email = format!("agent{k}@example.com");
        switchboard_admin_web::accounts::create_account(&store, &email, &format!("Agent {k}"), switchboard_models::Role::Agent, "bench-password-123", None).await?;
        team.push(store.agent_by_email(&email).await?.expect("agent").id.to_string());
    }
    drop(store);
    let pool = sqlx::SqlitePool::connect(&url).await?;
    let statuses = ["open", "assigned", "in_progress", "waiting_on_customer", "resolved", "closed"];
    let priorities = ["urgent", "high", "medium", "low"];
    let now = chrono::Utc::now().timestamp_millis();
    // Customer messages carry a classification: without one they would be waiting for an answer.
    let classification = serde_json::to_string(&switchboard_models::Classification {
        intent: switchboard_models::IntentName::parse("billing_question").expect("intent name"),
        category: switchboard_models::Category::Billing,
        confidence: 0.9,
        alternatives: Vec::new(),
        sentiment: 0.0,
        urgency: switchboard_models::Urgency::None,
        language: None,
        answer: None,
        always_escalate: false,
        collect_document: None,
        source: switchboard_models::ClassificationSource::Keywords,
        judgement: None,
        embedding: None,
    })?;
    // Realistic text: customer messages are the labelled support messages (12 languages),
    // replies a handful of agent and bot sentences; names, channels and ids vary.
    let cases = switchboard_nlp::judge::read_cases(&repository_file("nlp/eval/support.csv"))?;
    let replies = [
        "Thanks for reaching out. I have checked your order and the refund is on its way; it takes 3 to 5 business days.",
        "Sorry for the trouble. Could you send me the order number and the email address you used?",
        "I have reset the password link for you; it is valid for one hour.",
        "The courier confirms delivery tomorrow between 9:00 and 13:00.",
        "I understand. I have passed this to our billing team and will write again today.",
        "Is there anything else I can help with?",
    ];
    let first_names = ["Maria", "Jonas", "Aiko", "Pedro", "Fatima", "Liam", "Olga", "Chen", "Amara", "Lukas", "Sofia", "Mehmet", "Nora", "Ravi"];
    let last_names = ["Keller", "Silva", "Tanaka", "Novak", "Haddad", "Murphy", "Ivanova", "Wang", "Okafor", "Schmidt", "Rossi", "Yilmaz"];
    let channels = ["webchat", "telegram", "discord", "email"];
    const ROWS: u64 = 500;
    let mut tx = pool.begin().await?;
    for start in (0..conversations).step_by(ROWS as usize) {
        let end = (start + ROWS).min(conversations);
        let mut contacts = Vec::new();
        let mut convs = Vec::new();
        let mut messages = Vec::new();
        let mut events = Vec::new();
        for n in start..end {
            let contact = uuid::Uuid::now_v7().to_string();
            let conversation = uuid::Uuid::now_v7().to_string();
            let at = now - (conversations - n) as i64 * spacing_ms;
            let status = statuses[(n % 6) as usize];
            let admin = &team[((n / 6) % team.len() as u64) as usize];
            let (handler, agent) = match status {
                "open" => ("'queue'", "NULL".to_string()),
                "assigned" | "in_progress" | "waiting_on_customer" => ("'agent'", format!("'{admin}'")),
                _ => ("'bot'", "NULL".to_string()),
            };
            let channel = channels[(n % 4) as usize];
            let name = format!("{} {}", first_names[(n % 14) as usize], last_names[(n / 14 % 12) as usize]);
            let external = match channel {
                "webchat" => format!("visitor-{n}"),
                "telegram" => format!("{}", 100_000_000 + n),
                "discord" => format!("{}", 900_000_000_000_000_000u64 + n),
                _ => format!("{}.{n}@example.test", name.to_lowercase().replace(' ', ".")),
            };
            let opening = &cases[(n as usize * 7) % cases.len()];
            let category = match opening.category.as_str() {
                "oos" => "general_inquiry",
                known => known,
            };
            contacts.push(format!("('{contact}', '{channel}', '{external}', '{name} {n}', {at})"));
            let priority = priorities[(n % 4) as usize];
            let event = |kind: &str, when: i64, agent: &str, reason: &str, wait: &str| {
                format!("('{conversation}', '{kind}', {when}, '{channel}', {agent}, '{category}', '{priority}', {reason}, {wait})")
            };
            events.push(event("created", at, "NULL", "NULL", "NULL"));
            if status != "closed" {
                let reasons = ["'human_requested'", "'low_confidence'", "'urgent'", "'needs_person'"];
                events.push(event("escalated", at + 1, "NULL", reasons[(n % 4) as usize], "NULL"));
            }
            if agent != "NULL" || status == "resolved" {
                let wait = (n % 600) as i64 * 1000;
                events.push(event("assigned", at + 2, &format!("'{admin}'"), "NULL", "NULL"));
                events.push(event("first_reply", at + 2 + wait, &format!("'{admin}'"), "NULL", &wait.to_string()));
            }
            if status == "resolved" {
                let open_for = (n % 7200) as i64 * 1000 + 60_000;
                events.push(event("resolved", at + open_for, &format!("'{admin}'"), "NULL", &open_for.to_string()));
            }
            convs.push(format!(
                "('{conversation}', '{contact}', '{channel}', {handler}, {agent}, {last_agent}, '{status}', '{category}', '{priority}', {at}, {at}, {at})",
                last_agent = if status == "resolved" { format!("'{admin}'") } else { agent.clone() },
            ));
            for m in 0..each {
                // One customer message in ten the bot was unsure of: the reports' "needs teaching".
                let (sender, classified, intent, confidence, body) = if m % 2 == 0 {
                    let text = if m == 0 { &opening.text } else { &cases[(n as usize * 7 + m as usize * 13) % cases.len()].text };
                    let confidence = if (n + m) % 10 == 0 { "0.3" } else { "0.9" };
                    ("customer", format!("'{classification}'"), "'billing_question'", confidence, text.as_str())
                } else {
                    ("bot", "NULL".to_string(), "NULL", "NULL", replies[((n + m) % 6) as usize])
                };
                // The first reply names the case's reference: a word found in one conversation.
                let body = if m == 1 { format!("{body} Your reference is SB-{n}.") } else { body.to_string() };
                messages.push(format!(
                    "('{}', '{conversation}', '{contact}', '{channel}', '{sender}', '{}', {classified}, {intent}, {confidence}, {})",
                    uuid::Uuid::now_v7(),
                    body.replace('\'', "''"),
                    at + m as i64
                ));
            }
        }
        let insert = |table: &str, columns: &str, rows: &[String]| format!("INSERT INTO {table} ({columns}) VALUES {}", rows.join(","));
        sqlx::query(sqlx::AssertSqlSafe(insert("contacts", "id, channel, external_id, display_name, created_at", &contacts))).execute(&mut *tx).await?;
        sqlx::query(sqlx::AssertSqlSafe(insert(
            "conversations",
            "id, contact_id, channel, handler, agent_id, last_agent_id, status, category, priority, escalated_at, created_at, updated_at",
            &convs,
        )))
        .execute(&mut *tx)
        .await?;
        for chunk in messages.chunks(1000) {
            sqlx::query(sqlx::AssertSqlSafe(insert("messages", "id, conversation_id, contact_id, channel, sender, body, classification, intent, confidence, created_at", chunk)))
                .execute(&mut *tx)
                .await?;
        }
        let columns = "conversation_id, kind, at, channel, agent_id, category, priority, reason, wait_ms";
        for chunk in events.chunks(1000) {
            sqlx::query(sqlx::AssertSqlSafe(insert("conversation_events", columns, chunk))).execute(&mut *tx).await?;
        }
    }
    tx.commit().await?;
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&pool).await?;
    Ok(())
}

fn percentile(samples: &mut [Duration], p: f64) -> f64 {
    samples.sort();
    let index = ((samples.len() as f64 * p) as usize).min(samples.len().saturating_sub(1));
    samples.get(index).copied().unwrap_or_default().as_secs_f64() * 1000.0
}

/// Panel pages on a large store, and how fast a new message reaches an open page's live stream.
/// With BENCH_DATABASE=postgres the seeded SQLite file is copied into a fresh PostgreSQL
/// database (`switchboard copy`'s code) and the server runs on that.
async fn panel(conversations: u64, each: u64, requests: usize, mixed: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let seeding = Instant::now();
    seed(dir.path(), conversations, each, 1000, 1).await?;
    println!("panel: seeded {conversations} conversations and {} messages in {:.1} s", conversations * each, seeding.elapsed().as_secs_f64());
    keep_seed(dir.path())?;
    let (server, _postgres) = start_seeded(dir, "panel").await?;
    let base = format!("http://{}", server.addr);
    let client = switchboard_tests::panel::PanelClient::sign_in(&base, "bench@example.com", "bench-password-123").await;
    let token = client.new_api_token("bench").await;
    let http = reqwest::Client::new();
    let api = |path: String| http.get(format!("{base}{path}")).bearer_auth(&token).send();
    // A conversation in the middle of the store, for its page and its detail.
    let middle: Value = api(format!("/api/conversations?limit=1&q=SB-{}", conversations / 2)).await?.json().await?;
    let middle = middle["conversations"][0]["id"].as_str().context("the middle conversation")?.to_string();
    let conversation_page = format!("/panel/conversations/{middle}");
    let pages = [
        ("dashboard", "/panel/"),
        ("conversation list", "/panel/conversations"),
        ("urgent filter", "/panel/conversations?priority=urgent&status=open"),
        ("queue, longest waiting first", "/panel/conversations?assignee=queue"),
        ("search finding nothing", "/panel/conversations?q=zebra"),
        ("search finding one (a reference)", "/panel/conversations?q=SB-4242"),
        ("search finding thousands (a common word)", "/panel/conversations?q=order"),
        ("search finding thousands (two words)", "/panel/conversations?q=refund+card"),
        ("search by customer name and number", "/panel/conversations?q=Novak+4242"),
        ("search by customer name, thousands", "/panel/conversations?q=Okafor"),
        ("search with a filter", "/panel/conversations?q=refund&priority=urgent&status=open"),
        ("a conversation page", conversation_page.as_str()),
        ("customers", "/panel/customers"),
        ("customers by name, thousands", "/panel/customers?q=Okafor"),
        ("customers by channel id", "/panel/customers?q=4242"),
    ];
    for (name, path) in pages {
        let mut samples = Vec::with_capacity(requests);
        for _ in 0..requests {
            let started = Instant::now();
            let reply = client.get(path).await;
            samples.push(started.elapsed());
            anyhow::ensure!(reply.status == 200, "{path} answered {}", reply.status);
        }
        println!("panel: {name} ({path}) over {requests} requests: {}", spread(&mut samples));
    }
    let mut samples = Vec::with_capacity(requests);
    for _ in 0..requests {
        let started = Instant::now();
        let reply = api(format!("/api/conversations/{middle}")).await?;
        anyhow::ensure!(reply.status().is_success(), "the API detail answered {}", reply.status());
        reply.bytes().await?;
        samples.push(started.elapsed());
    }
    println!("panel: API conversation detail over {requests} requests: {}", spread(&mut samples));
    page_to_the_end(&client, "/panel/conversations?limit=200", "conversation-row", conversations).await?;
    // The seed gives every conversation its own customer.
    page_to_the_end(&client, "/panel/customers?limit=200", "customer-row", conversations).await?;
    if mixed > 0 {
        mixed_requests(&server, &client, &api, &pages, &middle, mixed).await?;
    }
    let mut samples = Vec::new();
    let mut freshness = Vec::new();
    let mut events = client.event_stream("/panel/events").await;
    let keys = VisitorKeys::new(SECRET.as_bytes().to_vec());
    let http = reqwest::Client::new();
    // BENCH_LIVE_TEXT picks what the customers say (default: a handoff, the busiest path).
    let live_text = std::env::var("BENCH_LIVE_TEXT").unwrap_or_else(|_| "I want to talk to a person".into());
    for n in 0..50 {
        let (_, token) = keys.issue();
        let started = Instant::now();
        let sent = http
            .post(format!("{base}/webchat/messages"))
            .header("authorization", format!("Bearer {token}"))
            .json(&json!({"client_id": format!("live{n}"), "text": live_text.as_str()}))
            .send();
        let (sent, first) = tokio::join!(sent, events.next_event());
        anyhow::ensure!(sent?.status().is_success(), "message not accepted");
        let event: Value = serde_json::from_str(&first?)?;
        samples.push(started.elapsed());
        let age = chrono::Utc::now().timestamp_millis() - event["at"].as_i64().unwrap_or_default();
        freshness.push(Duration::from_millis(age.max(0) as u64));
        events.drain_for(Duration::from_millis(50)).await;
    }
    println!(
        "panel: customer message sent -> event on an open panel page over 50 messages: p50 {:.1} ms, p99 {:.1} ms",
        percentile(&mut samples, 0.5),
        percentile(&mut samples, 0.99)
    );
    println!(
        "panel: event (message stored) -> open panel page: p50 {:.1} ms, p99 {:.1} ms",
        percentile(&mut freshness, 0.5),
        percentile(&mut freshness, 0.99)
    );
    Ok(())
}

/// BENCH_KEEP_SEED=FILE keeps a copy of the seeded store, to study its queries in a shell.
fn keep_seed(dir: &std::path::Path) -> anyhow::Result<()> {
    if let Ok(keep) = std::env::var("BENCH_KEEP_SEED") {
        for suffix in ["", "-wal"] {
            let seeded = dir.join(format!("switchboard.db{suffix}"));
            if seeded.exists() {
                std::fs::copy(&seeded, format!("{keep}{suffix}")).with_context(|| format!("copying the seeded store to {keep}"))?;
            }
        }
    }
    Ok(())
}

/// Starts the server on a seeded SQLite store, or with BENCH_DATABASE=postgres on a fresh
/// PostgreSQL database the seed is copied into (`switchboard db copy`'s code).
async fn start_seeded(dir: tempfile::TempDir, scenario: &str) -> anyhow::Result<(Server, Option<switchboard_tests::databases::TestDatabase>)> {
    let mut env = vec![("SWITCHBOARD_NLP__ENABLED", "false".to_string())];
    let postgres = if std::env::var("BENCH_DATABASE").as_deref() == Ok("postgres") {
        let database = switchboard_tests::databases::TestDatabase::postgres().await;
        let copying = Instant::now();
        let sqlite = format!("sqlite://{}", dir.path().join("switchboard.db").display());
        switchboard_store::copy::copy(&sqlite, &database.url, false, &mut |_, _, _| {}).await?;
        let pool = sqlx::PgPool::connect(&database.url).await?;
        // What autovacuum does soon after a bulk load: statistics and the visibility map.
        sqlx::query("VACUUM ANALYZE").execute(&pool).await?;
        println!("{scenario}: copied into PostgreSQL in {:.1} s", copying.elapsed().as_secs_f64());
        env.push(("SWITCHBOARD_DATABASE__URL", database.url.clone()));
        Some(database)
    } else {
        None
    };
    let env: Vec<(&str, &str)> = env.iter().map(|(key, value)| (*key, value.as_str())).collect();
    let (server, _) = Server::start_with(dir, &env)?;
    Ok((server, postgres))
}

/// The team the reports bench spreads its conversations over.
const REPORT_AGENTS: u64 = 10;

/// The Reports page and API on a large store: `conversations` over the last `days` days (the
/// issue's figure: 100,000 conversations and 1,000,000 messages), each period and filter timed
/// from outside the server.
async fn reports(conversations: u64, each: u64, days: u64, requests: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let seeding = Instant::now();
    let spacing_ms = (days * 86_400_000 / conversations.max(1)) as i64;
    seed(dir.path(), conversations, each, spacing_ms, REPORT_AGENTS).await?;
    keep_seed(dir.path())?;
    println!(
        "reports: seeded {conversations} conversations and {} messages over {days} days, {REPORT_AGENTS} agents, in {:.1} s",
        conversations * each,
        seeding.elapsed().as_secs_f64()
    );
    let sqlite_url = format!("sqlite://{}", dir.path().join("switchboard.db").display());
    let (server, postgres) = start_seeded(dir, "reports").await?;
    let base = format!("http://{}", server.addr);
    let client = switchboard_tests::panel::PanelClient::sign_in(&base, "bench@example.com", "bench-password-123").await;
    let token = client.new_api_token("bench").await;
    // The server counts the past days per day at start; counting again finds nothing left, and
    // says so (a report before that reads every message of the period, as on an upgrade's first seconds).
    let store = switchboard_store::open(postgres.as_ref().map_or(sqlite_url.as_str(), |db| db.url.as_str())).await?;
    let rolling = Instant::now();
    let counted = switchboard::jobs::roll_up_reports(store.as_ref(), chrono::Utc::now()).await?;
    println!("reports: the reports job found {counted} past days left to count, in {:.1} s", rolling.elapsed().as_secs_f64());
    let admin = store.agent_by_email("bench@example.com").await?.expect("the bench's admin").id;
    let timed = time_reports(&base, &client, &token, days, requests, &admin.to_string()).await;
    // The server stops before its database goes.
    drop(server);
    // BENCH_KEEP_DATABASE=1 keeps the PostgreSQL database, to study its queries in psql.
    if let Some(database) = postgres.filter(|_| std::env::var("BENCH_KEEP_DATABASE").is_ok()) {
        println!("reports: kept the database {}", database.url);
        std::mem::forget(database);
    }
    timed
}

/// Each report period and filter, `requests` times from this client process over HTTP.
async fn time_reports(base: &str, client: &switchboard_tests::panel::PanelClient, token: &str, days: u64, requests: usize, agent: &str) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let today = chrono::Utc::now().date_naive();
    let quarter = format!("range=custom&from={}&to={today}&zone=UTC", today - chrono::Duration::days(days as i64 - 1));
    let paths = [
        ("today".to_string(), "/api/reports?range=today".to_string()),
        ("7 days".to_string(), "/api/reports?range=7d".to_string()),
        ("30 days".to_string(), "/api/reports?range=30d".to_string()),
        (format!("{days} days (everything)"), format!("/api/reports?{quarter}")),
        ("30 days, one channel".to_string(), "/api/reports?range=30d&channel=telegram".to_string()),
        ("30 days, one category".to_string(), "/api/reports?range=30d&category=billing".to_string()),
        ("30 days, one agent".to_string(), format!("/api/reports?range=30d&agent={agent}")),
        ("30 days in Berlin".to_string(), "/api/reports?range=30d&zone=Europe/Berlin".to_string()),
        ("30 days, agents as CSV".to_string(), "/api/reports/agents.csv?range=30d".to_string()),
    ];
    for (name, path) in &paths {
        let mut samples = Vec::with_capacity(requests);
        for _ in 0..requests {
            let started = Instant::now();
            let reply = http.get(format!("{base}{path}")).bearer_auth(token).send().await?;
            anyhow::ensure!(reply.status().is_success(), "{path} answered {}", reply.status());
            reply.bytes().await?;
            samples.push(started.elapsed());
        }
        println!("reports: {name} ({path}) over {requests} requests: {}", spread(&mut samples));
    }
    let mut samples = Vec::with_capacity(requests);
    for _ in 0..requests {
        let started = Instant::now();
        let reply = client.get("/panel/reports?range=30d").await;
        samples.push(started.elapsed());
        anyhow::ensure!(reply.status == 200, "the Reports page answered {}", reply.status);
    }
    println!("reports: the Reports page, 30 days (/panel/reports?range=30d) over {requests} requests: {}", spread(&mut samples));
    Ok(())
}

/// Follows a list's "next" links from the first page to the last: every row is reachable, and
/// a deep page costs what the first does.
async fn page_to_the_end(client: &switchboard_tests::panel::PanelClient, first: &str, row: &str, expected: u64) -> anyhow::Result<()> {
    let mut path = first.to_string();
    let mut pages = 0u64;
    let mut rows = 0u64;
    let mut samples = Vec::new();
    let row_marker = format!("data-test=\"{row}\"");
    loop {
        let started = Instant::now();
        let reply = client.get(&path).await;
        samples.push(started.elapsed());
        anyhow::ensure!(reply.status == 200, "{path} answered {}", reply.status);
        pages += 1;
        rows += reply.body.matches(&row_marker).count() as u64;
        let link = reply.body.split("\" data-test=\"next-page\"").next().filter(|_| reply.body.contains("data-test=\"next-page\""));
        let Some(next) = link.and_then(|before| before.rsplit("href=\"").next()) else {
            break;
        };
        path = next.replace("&amp;", "&").replace("&#x3D;", "=");
    }
    anyhow::ensure!(rows == expected, "paging {first} reached {rows} of {expected} rows");
    println!("panel: paged through all {rows} rows of {first} in {pages} pages: {}", spread(&mut samples));
    Ok(())
}

/// "p50 …, p95 …, p99 … ms" of some samples.
fn spread(samples: &mut [Duration]) -> String {
    let [p50, p95, p99] = [0.5, 0.95, 0.99].map(|p| percentile(samples, p));
    format!("p50 {p50:.1} ms, p95 {p95:.1} ms, p99 {p99:.1} ms")
}

/// `total` panel and API requests, round robin over the measured pages and API calls, with the
/// server's RSS sampled every tenth of the run: memory must stay flat.
async fn mixed_requests<'a, F, Fut>(
    server: &Server,
    client: &switchboard_tests::panel::PanelClient,
    api: &F,
    pages: &[(&str, &str)],
    middle: &str,
    total: usize,
) -> anyhow::Result<()>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = reqwest::Result<reqwest::Response>>,
{
    let api_paths = [
        "/api/conversations".to_string(),
        "/api/conversations?q=refund+card".to_string(),
        "/api/conversations?assignee=queue&limit=100".to_string(),
        format!("/api/conversations/{middle}"),
    ];
    let mut rss = vec![server.rss_kib()];
    let kinds = pages.len() + api_paths.len();
    for n in 0..total {
        let kind = n % kinds;
        if kind < pages.len() {
            let reply = client.get(pages[kind].1).await;
            anyhow::ensure!(reply.status == 200, "{} answered {}", pages[kind].1, reply.status);
        } else {
            let reply = api(api_paths[kind - pages.len()].clone()).await?;
            anyhow::ensure!(reply.status().is_success(), "{} answered {}", api_paths[kind - pages.len()], reply.status());
            reply.bytes().await?;
        }
        if (n + 1) % (total / 10).max(1) == 0 {
            rss.push(server.rss_kib());
        }
    }
    let half = rss[rss.len() / 2];
    let last = *rss.last().expect("samples");
    println!(
        "panel: server RSS over {total} mixed requests (MiB, every tenth): {}; last half grew {:.1} %",
        rss.iter().map(|kib| format!("{:.0}", *kib as f64 / 1024.0)).collect::<Vec<_>>().join(" → "),
        (last as f64 - half as f64) / half as f64 * 100.0
    );
    Ok(())
}

/// Sends `rate` messages a second, spread over `connections` sockets, without waiting for
/// answers (frames are read and dropped), until `stop` says so. Returns how many were sent.
async fn open_loop(addr: SocketAddr, rate: u64, connections: usize, stop: impl Fn(u64) -> bool) -> anyhow::Result<u64> {
    let keys = VisitorKeys::new(SECRET.as_bytes().to_vec());
    let mut sinks = Vec::new();
    for index in 0..connections {
        let (sink, mut stream) = open(addr, &keys, index).await?.split();
        tokio::spawn(async move { while let Some(Ok(_)) = stream.next().await {} });
        sinks.push(sink);
    }
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut sent = 0u64;
    while !stop(sent) {
        ticker.tick().await;
        let frame = json!({"type": "send", "client_id": format!("m{sent}"), "text": "hello"});
        sinks[(sent as usize) % connections].send(WsMessage::Text(frame.to_string().into())).await?;
        sent += 1;
    }
    Ok(sent)
}

/// The SQLite WAL's size under sustained load, sampled every 10 s.
async fn wal(rate: u64, seconds: u64) -> anyhow::Result<()> {
    anyhow::ensure!(std::env::var("BENCH_DATABASE").as_deref() != Ok("postgres"), "the WAL bench is for SQLite");
    let (server, _) = Server::start()?;
    let wal_path = server.dir.join("switchboard.db-wal");
    let wal_bytes = move || std::fs::metadata(&wal_path).map_or(0, |m| m.len());
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (peak, wal_bytes) = (peak.clone(), wal_bytes.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                let now = wal_bytes();
                peak.fetch_max(now, Ordering::Relaxed);
                println!("wal: after {:>4.0} s: {:.1} MiB", started.elapsed().as_secs_f64(), now as f64 / 1048576.0);
            }
        })
    };
    let sent = open_loop(server.addr, rate, 50, |_| Instant::now() >= deadline).await?;
    sampler.abort();
    println!(
        "wal: {sent} messages at {rate} msg/s for {seconds} s: WAL peak {:.1} MiB (10 s samples), at the end {:.1} MiB; server RSS {} MiB",
        peak.load(Ordering::Relaxed) as f64 / 1048576.0,
        wal_bytes() as f64 / 1048576.0,
        server.rss_kib() / 1024
    );
    Ok(())
}

/// One simulated widget in the soak: what it sent and what the server acknowledged.
#[derive(Default)]
struct SoakVisitor {
    token: String,
    visitor: String,
    next: u64,
    /// Sent and not acknowledged yet: resent after every reconnect, as the widget does.
    pending: std::collections::BTreeSet<String>,
    acknowledged: std::collections::HashSet<String>,
    /// Reply seqs received, and how many arrived again (the widget drops repeats by seq).
    replies: std::collections::HashSet<i64>,
    repeated_replies: u64,
}

/// Kill -9 under load, `cycles` times: widgets keep sending at `rate` msg/s, reconnect and
/// resend what was not acknowledged; at the end the database is compared with what was
/// acknowledged. SQLite.
async fn soak(cycles: u64, rate: u64, seconds: u64) -> anyhow::Result<()> {
    anyhow::ensure!(std::env::var("BENCH_DATABASE").as_deref() != Ok("postgres"), "the soak runs on SQLite");
    const VISITORS: usize = 30;
    let dir = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let listen = format!("127.0.0.1:{port}");
    let env = [("SWITCHBOARD_NLP__ENABLED", "false")];
    let (mut server, _) = Server::start_at(dir.path(), &listen, &env)?;
    let addr = server.addr;
    let keys = VisitorKeys::new(SECRET.as_bytes().to_vec());
    let visitors: Vec<Arc<Mutex<SoakVisitor>>> = (0..VISITORS)
        .map(|_| {
            let (visitor, token) = keys.issue();
            Arc::new(Mutex::new(SoakVisitor { token, visitor: visitor.to_string(), ..SoakVisitor::default() }))
        })
        .collect();
    let sending = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let mut tasks = Vec::new();
    for (index, visitor) in visitors.iter().enumerate() {
        let (visitor, sending) = (visitor.clone(), sending.clone());
        let interval = Duration::from_secs_f64(VISITORS as f64 / rate as f64);
        tasks.push(tokio::spawn(soak_visitor(addr, index, visitor, sending, interval)));
    }
    let mut restarts = Vec::new();
    for _ in 0..cycles {
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        server.child.kill()?;
        server.child.wait()?;
        let (next, ready) = Server::start_at(dir.path(), &listen, &env)?;
        restarts.push(ready);
        server = next;
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    sending.store(false, Ordering::Relaxed);
    // Let every visitor see its last messages acknowledged (they resend until they are).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut open = 0;
        for visitor in &visitors {
            open += visitor.lock().await.pending.len();
        }
        if open == 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The SIGTERM below lets the last answers finish and delivers them (a clean stop does).
    for task in tasks {
        task.abort();
    }
    let status = Command::new("kill").args(["-TERM", &server.child.id().to_string()]).status()?;
    anyhow::ensure!(status.success(), "could not stop the server");
    server.child.wait()?;

    let url = format!("sqlite://{}", dir.path().join("switchboard.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await?;
    let (mut acknowledged, mut lost, mut unacknowledged, mut repeated) = (0u64, 0u64, 0u64, 0u64);
    for visitor in &visitors {
        let visitor = visitor.lock().await;
        acknowledged += visitor.acknowledged.len() as u64;
        unacknowledged += visitor.pending.len() as u64;
        repeated += visitor.repeated_replies;
        for client_id in &visitor.acknowledged {
            let external_id = format!("{}:{client_id}", visitor.visitor);
            let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE channel = 'webchat' AND external_id = ?")
                .bind(&external_id)
                .fetch_one(&pool)
                .await?;
            lost += u64::from(stored == 0);
        }
    }
    let customer: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE sender = 'customer'").fetch_one(&pool).await?;
    let unanswered: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE sender = 'customer' AND classification IS NULL").fetch_one(&pool).await?;
    let answers: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE sender = 'bot'").fetch_one(&pool).await?;
    let undelivered: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE outbound = TRUE AND delivered_at IS NULL").fetch_one(&pool).await?;
    restarts.sort();
    println!(
        "soak: {cycles} kill -9 cycles at {rate} msg/s ({VISITORS} widgets, {seconds} s apart): {acknowledged} acknowledged, \
         {lost} of them lost, {unacknowledged} never acknowledged; {customer} customer messages stored, {unanswered} unanswered, \
         {answers} bot answers, {undelivered} undelivered; {repeated} replies reached a widget twice (dropped by seq); \
         restart median {:.2} s, max {:.2} s",
        restarts.get(restarts.len() / 2).copied().unwrap_or_default().as_secs_f64(),
        restarts.last().copied().unwrap_or_default().as_secs_f64()
    );
    Ok(())
}

/// One widget in the soak: sends every `interval` while `sending`; on a dropped socket it
/// reconnects (the server is being restarted) and resends everything unacknowledged.
async fn soak_visitor(addr: SocketAddr, index: usize, visitor: Arc<Mutex<SoakVisitor>>, sending: Arc<std::sync::atomic::AtomicBool>, interval: Duration) {
    let token = visitor.lock().await.token.clone();
    loop {
        let Ok(socket) = open_with_token(addr, &token, index).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let (mut sink, mut stream) = socket.split();
        let resend: Vec<String> = visitor.lock().await.pending.iter().cloned().collect();
        let mut broken = false;
        for client_id in resend {
            let frame = json!({"type": "send", "client_id": client_id, "text": "hello"});
            broken |= sink.send(WsMessage::Text(frame.to_string().into())).await.is_err();
        }
        let mut ticker = tokio::time::interval(interval);
        while !broken {
            tokio::select! {
                _ = ticker.tick() => {
                    let mut state = visitor.lock().await;
                    let resend: Vec<String> = state.pending.iter().cloned().collect();
                    if sending.load(Ordering::Relaxed) {
                        state.next += 1;
                        let client_id = format!("m{}", state.next);
                        state.pending.insert(client_id.clone());
                        let frame = json!({"type": "send", "client_id": client_id, "text": "hello"});
                        broken |= sink.send(WsMessage::Text(frame.to_string().into())).await.is_err();
                    } else {
                        // Winding down: keep asking for what is still unacknowledged.
                        for client_id in resend {
                            let frame = json!({"type": "send", "client_id": client_id, "text": "hello"});
                            broken |= sink.send(WsMessage::Text(frame.to_string().into())).await.is_err();
                        }
                    }
                }
                frame = stream.next() => match frame {
                    Some(Ok(WsMessage::Text(text))) => {
                        let frame: Value = serde_json::from_str(&text).unwrap_or_default();
                        let mut state = visitor.lock().await;
                        match frame["type"].as_str() {
                            Some("ack") => {
                                let client_id = frame["client_id"].as_str().unwrap_or_default().to_string();
                                state.pending.remove(&client_id);
                                state.acknowledged.insert(client_id);
                            }
                            Some("message") if frame["message"]["sender"] == "bot" => {
                                let seq = frame["message"]["seq"].as_i64().unwrap_or_default();
                                if !state.replies.insert(seq) {
                                    state.repeated_replies += 1;
                                }
                            }
                            _ => {}
                        }
                    }
                    Some(Ok(_)) => {}
                    _ => broken = true,
                },
            }
        }
    }
}

/// A widget socket for an existing visitor token.
async fn open_with_token(addr: SocketAddr, token: &str, index: usize) -> anyhow::Result<Socket> {
    let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + (index % 250) as u8));
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    let stream = socket.connect(addr).await?;
    let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}/webchat/ws?token={token}"), stream).await?;
    while let Some(frame) = ws.next().await {
        if let WsMessage::Text(text) = frame?
            && text.contains("\"ready\"")
        {
            return Ok(ws);
        }
    }
    bail!("closed before ready")
}

/// Opens a widget socket with `token`, writes one message, waits for the bot's answer, closes.
async fn chat_once(addr: SocketAddr, token: &str, index: usize) -> anyhow::Result<()> {
    let mut ws = open_with_token(addr, token, index).await?;
    ws.send(WsMessage::Text(json!({"type": "send", "client_id": "first", "text": "hello"}).to_string().into())).await?;
    while let Some(frame) = ws.next().await {
        if let WsMessage::Text(text) = frame?
            && text.contains("\"sender\":\"bot\"")
        {
            ws.close(None).await?;
            return Ok(());
        }
    }
    bail!("closed before the bot answered")
}

/// Singleton failover: two nodes on one PostgreSQL database poll a local Telegram stand-in
/// through a lease; the holder is killed with -9 and a customer writes at once. Measured: from
/// the kill until the other node has stored that message. The killed node then comes back as
/// the standby for the next run.
async fn failover(runs: usize) -> anyhow::Result<()> {
    use switchboard_tests::fake_telegram::{FakeTelegram, TOKEN, private_text};
    let telegram = FakeTelegram::start().await;
    let db = switchboard_tests::databases::TestDatabase::postgres().await;
    let api = telegram.url();
    let names = ["node-a", "node-b"];
    let dirs = [tempfile::tempdir()?, tempfile::tempdir()?];
    let env = |name: &'static str| {
        [
            ("SWITCHBOARD_DATABASE__URL", db.url.as_str()),
            ("SWITCHBOARD_NLP__ENABLED", "false"),
            ("SWITCHBOARD_TELEGRAM__TOKEN", TOKEN),
            ("SWITCHBOARD_TELEGRAM__API_URL", api.as_str()),
            ("SWITCHBOARD_SERVER__NODE_NAME", name),
        ]
    };
    let start = |index: usize| Server::start_at(dirs[index].path(), "127.0.0.1:0", &env(names[index])).map(|(server, _)| server);
    let mut nodes = vec![Some(start(0)?), Some(start(1)?)];
    let pool = sqlx::PgPool::connect(&db.url).await?;
    let stored = || async {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM messages WHERE channel = 'telegram' AND sender = 'customer'")
            .fetch_one(&pool)
            .await
    };
    let wait_for = |count: i64| async move {
        let deadline = Instant::now() + Duration::from_secs(60);
        while stored().await? < count {
            anyhow::ensure!(Instant::now() < deadline, "message {count} was never stored");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        anyhow::Ok(())
    };
    let mut sent = 1;
    telegram.push_message(private_text(505, sent, "hello"));
    wait_for(sent).await?;
    let mut times = Vec::new();
    for run in 0..runs {
        let holder: String = sqlx::query_scalar("SELECT holder FROM leases WHERE name = 'telegram'").fetch_one(&pool).await?;
        let index = names.iter().position(|name| *name == holder).context("an unknown lease holder")?;
        let mut killed = nodes[index].take().expect("running");
        killed.child.kill()?;
        let at = Instant::now();
        killed.child.wait()?;
        sent += 1;
        telegram.push_message(private_text(505, sent, &format!("written during failover {run}")));
        wait_for(sent).await?;
        times.push(at.elapsed());
        println!("failover: run {}: {:.1} s ({} killed)", run + 1, times.last().expect("pushed").as_secs_f64(), names[index]);
        // Back as the standby for the next run (its lease loop runs from its start).
        nodes[index] = Some(start(index)?);
    }
    times.sort();
    println!(
        "failover: Telegram polling after kill -9 of the lease holder, {runs} runs: median {:.1} s, max {:.1} s (lease 10 s, renewed every 3 s); {} messages stored once each, {} conflicting polls",
        times[runs / 2].as_secs_f64(),
        times.last().expect("runs > 0").as_secs_f64(),
        stored().await?,
        telegram.conflicts()
    );
    Ok(())
}

/// Two nodes on one PostgreSQL database, measured from outside both: a customer writes through
/// node A and an agent's open panel stream on node B hears of it; the agent answers through
/// node B's API and the customer's widget on node A shows the answer.
async fn live_across_nodes(messages: usize) -> anyhow::Result<()> {
    let db = switchboard_tests::databases::TestDatabase::postgres().await;
    let store = switchboard_store::open(&db.url).await?;
    switchboard_admin_web::accounts::create_account(store.as_ref(), "bench@example.com", "Bench", switchboard_models::Role::Admin, "bench-password-123", None)
        .await?;
    drop(store);
    let env = [
        ("SWITCHBOARD_DATABASE__URL", db.url.as_str()),
        ("SWITCHBOARD_NLP__ENABLED", "false"),
        ("SWITCHBOARD_SERVER__API_REQUESTS_PER_MINUTE", "1000000"),
    ];
    let (a, _) = Server::start_with(tempfile::tempdir()?, &env)?;
    let (b, _) = Server::start_with(tempfile::tempdir()?, &env)?;
    let (base_a, base_b) = (format!("http://{}", a.addr), format!("http://{}", b.addr));
    let panel = switchboard_tests::panel::PanelClient::sign_in(&base_b, "bench@example.com", "bench-password-123").await;
    let api_token = panel.new_api_token("bench").await;
    let mut events = panel.event_stream("/panel/events").await;
    let keys = VisitorKeys::new(SECRET.as_bytes().to_vec());
    let http = reqwest::Client::new();

    let mut heard = Vec::with_capacity(messages);
    for n in 0..messages {
        let (_, token) = keys.issue();
        let started = Instant::now();
        let sent = http
            .post(format!("{base_a}/webchat/messages"))
            .header("authorization", format!("Bearer {token}"))
            .json(&json!({"client_id": format!("live{n}"), "text": "hello"}))
            .send();
        let message_event = async {
            loop {
                let event: Value = serde_json::from_str(&events.next_event().await?)?;
                if event["kind"] == "message" {
                    return anyhow::Ok(());
                }
            }
        };
        let (sent, heard_of) = tokio::join!(sent, tokio::time::timeout(Duration::from_secs(5), message_event));
        anyhow::ensure!(sent?.status().is_success(), "message not accepted");
        heard_of.with_context(|| format!("message {n}: node B's panel never heard of it"))??;
        heard.push(started.elapsed());
        events.drain_for(Duration::from_millis(30)).await;
    }
    println!("live-nodes: customer message sent to node A -> event on a panel page served by node B, {messages} messages: {}", spread(&mut heard));

    let (_, token) = keys.issue();
    let mut widget = open_with_token(a.addr, &token, 0).await?;
    let hello = json!({"type": "send", "client_id": "first", "text": "I want to talk to a person"});
    widget.send(WsMessage::Text(hello.to_string().into())).await?;
    let conversation = loop {
        let Some(Ok(WsMessage::Text(text))) = widget.next().await else { bail!("the widget closed") };
        let frame: Value = serde_json::from_str(&text)?;
        if frame["type"] == "ack" {
            break frame["conversation"]["id"].as_str().context("conversation id")?.to_string();
        }
    };
    let mut shown = Vec::with_capacity(messages);
    for n in 0..messages {
        let text = format!("Agent reply {n}");
        let started = Instant::now();
        let sent = http
            .post(format!("{base_b}/api/conversations/{conversation}/actions"))
            .bearer_auth(&api_token)
            .json(&json!({"action": "reply", "text": text}))
            .send();
        let arrived = async {
            loop {
                let Some(Ok(WsMessage::Text(frame))) = widget.next().await else { bail!("the widget closed") };
                if frame.contains(&format!("\"{text}\"")) {
                    return anyhow::Ok(());
                }
            }
        };
        let (sent, arrived) = tokio::join!(sent, tokio::time::timeout(Duration::from_secs(5), arrived));
        let sent = sent?;
        anyhow::ensure!(sent.status().is_success(), "the reply was refused: {}", sent.text().await?);
        arrived.with_context(|| format!("reply {n}: the widget on node A never showed it"))??;
        shown.push(started.elapsed());
    }
    println!("live-nodes: agent reply sent to node B -> shown in a widget on node A, {messages} replies: {}", spread(&mut shown));
    Ok(())
}
