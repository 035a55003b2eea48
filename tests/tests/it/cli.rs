//! The `switchboard` binary as an operator meets it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use switchboard_tests::Widget;

fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_switchboard-under-test")
}

fn run(args: &[&str], env: &[(&str, &str)], cwd: &std::path::Path) -> (i32, String, String) {
    let mut command = Command::new(binary());
    command.args(args).current_dir(cwd);
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("SWITCHBOARD_")) {
        command.env_remove(key);
    }
    command.envs(env.iter().copied());
    let output = command.output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn config_check_names_the_wrong_key_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, _) = run(&["config", "check"], &[], dir.path());
    assert_eq!(code, 0);
    assert!(out.contains("configuration OK"));

    let (code, _, err) = run(&["config", "check"], &[("SWITCHBOARD_WEBCHAT__POSITION", "top")], dir.path());
    assert_eq!(code, 2);
    assert!(err.contains("webchat.position") && err.contains("left, right"), "{err}");

    let (code, _, err) = run(&["config", "check"], &[("SWITCHBOARD_WEBCHAT__MAX_MESSAGE_CHARS", "lots")], dir.path());
    assert_eq!(code, 2);
    assert!(err.contains("webchat.max_message_chars") && err.contains("SWITCHBOARD_"), "{err}");

    // The default build has no rust-bert backend: say how to get it.
    let (code, _, err) = run(&["config", "check"], &[("SWITCHBOARD_NLP__BACKEND", "rust-bert")], dir.path());
    assert_eq!(code, 2);
    assert!(err.contains("nlp.backend") && err.contains("--features rust-bert"), "{err}");
    let (code, _, err) = run(&["config", "check"], &[("SWITCHBOARD_NLP__BACKEND", "tensorflow")], dir.path());
    assert_eq!(code, 2);
    assert!(err.contains("nlp.backend") && err.contains("auto, onnx, candle, rust-bert"), "{err}");

    std::fs::write(dir.path().join("bad.toml"), "[webchat]\nallowed_origins = [\"shop.example.com/path\"]\n").unwrap();
    let (code, _, err) = run(&["--config", "bad.toml", "config", "check"], &[], dir.path());
    assert_eq!(code, 2);
    assert!(err.contains("webchat.allowed_origins"), "{err}");

    std::fs::write(dir.path().join("typo.toml"), "[webchat]\ntitel = \"Help\"\n").unwrap();
    let (code, _, err) = run(&["--config", "typo.toml", "config", "check"], &[], dir.path());
    assert_eq!(code, 2);
    assert!(err.contains("titel") && err.contains("typo.toml"), "{err}");

    let (code, _, err) = run(&["config", "check"], &[("SWITCHBOARD_DATABASE__MAX_CONNECTIONS", "4")], dir.path());
    assert_eq!(code, 2);
    assert!(err.contains("database.max_connections") && err.contains("12..=10000"), "{err}");

    // Business hours: the key, the value and what is expected.
    std::fs::write(dir.path().join("hours.toml"), "[business_hours]\ntime_zone = \"Europe/Berlin\"\nmonday = \"9 to 5\"\n").unwrap();
    let (code, _, err) = run(&["--config", "hours.toml", "config", "check"], &[], dir.path());
    assert_eq!(code, 2);
    assert!(err.contains("business_hours.monday") && err.contains("9 to 5") && err.contains("09:00-17:00"), "{err}");
    let (code, _, err) = run(&["config", "check"], &[("SWITCHBOARD_BUSINESS_HOURS__TIME_ZONE", "Berlin")], dir.path());
    assert_eq!(code, 2);
    assert!(err.contains("business_hours.time_zone") && err.contains("IANA"), "{err}");
    std::fs::write(dir.path().join("channel.toml"), "[business_hours.channels.email]\ntime_zone = \"UTC\"\nsunday = \"10:00-09:00\"\n").unwrap();
    let (code, _, err) = run(&["--config", "channel.toml", "config", "check"], &[], dir.path());
    assert_eq!(code, 2);
    assert!(err.contains("business_hours.channels.email.sunday") && err.contains("10:00-09:00"), "{err}");
    std::fs::write(dir.path().join("fax.toml"), "[business_hours.channels.fax]\ntime_zone = \"UTC\"\n").unwrap();
    let (code, _, err) = run(&["--config", "fax.toml", "config", "check"], &[], dir.path());
    assert_eq!(code, 2);
    assert!(err.contains("business_hours.channels.fax") && err.contains("webchat, telegram, discord or email"), "{err}");
    let (code, _, err) = run(&["config", "check"], &[("SWITCHBOARD_BUSINESS_HOURS__OUTSIDE_HOURS", "wait")], dir.path());
    assert_eq!(code, 2);
    assert!(err.contains("business_hours.outside_hours") && err.contains("queue, ask_email"), "{err}");

    // Scheduled jobs: a wrong cron expression or zone, a backup on PostgreSQL, an unknown notice.
    let (code, _, err) = run(&["config", "check"], &[("SWITCHBOARD_JOBS__RETENTION__SCHEDULE", "every night")], dir.path());
    assert_eq!(code, 2);
    assert!(err.contains("jobs.retention.schedule") && err.contains("every night") && err.contains("\"30 3 * * *\""), "{err}");
    let (code, _, err) = run(&["config", "check"], &[("SWITCHBOARD_JOBS__BACKUP__SCHEDULE", "0 25 * * *")], dir.path());
    assert_eq!(code, 2);
    assert!(err.contains("jobs.backup.schedule") && err.contains("0 25 * * *"), "{err}");
    let (code, _, err) = run(&["config", "check"], &[("SWITCHBOARD_JOBS__TIME_ZONE", "Mars/Olympus")], dir.path());
    assert_eq!(code, 2);
    assert!(err.contains("jobs.time_zone") && err.contains("Mars/Olympus") && err.contains("IANA"), "{err}");
    let on_postgres = [("SWITCHBOARD_JOBS__BACKUP__SCHEDULE", "0 3 * * *"), ("SWITCHBOARD_DATABASE__URL", "postgres://switchboard@127.0.0.1/sb")];
    let (code, _, err) = run(&["config", "check"], &on_postgres, dir.path());
    assert_eq!(code, 2);
    assert!(err.contains("jobs.backup.schedule") && err.contains("pg_dump"), "{err}");
    let mailing = [("SWITCHBOARD_EMAIL__ADDRESS", "support@example.com"), ("SWITCHBOARD_EMAIL__NOTIFY_AGENTS", "true"), ("SWITCHBOARD_EMAIL__NOTIFY_ABOUT", "[\"assigned\", \"birthday\"]")];
    let (code, _, err) = run(&["config", "check"], &mailing, dir.path());
    assert_eq!(code, 2);
    assert!(err.contains("email.notify_about") && err.contains("birthday") && err.contains("sla_breach"), "{err}");

    let (code, _, err) = run(&["--config", "missing.toml", "serve"], &[], dir.path());
    assert_eq!(code, 2);
    assert!(err.contains("missing.toml") && err.contains("does not exist"), "{err}");
}

#[test]
fn secrets_never_show_in_config_output() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t";
    for key in [
        "SWITCHBOARD_SERVER__SECRET",
        "SWITCHBOARD_TELEGRAM__TOKEN",
        "SWITCHBOARD_DISCORD__TOKEN",
        "SWITCHBOARD_EMAIL__IMAP_PASSWORD",
        "SWITCHBOARD_EMAIL__SMTP_PASSWORD",
        "SWITCHBOARD_LLM__API_KEY",
    ] {
        let (code, out, err) = run(&["config", "check"], &[(key, secret)], dir.path());
        assert_eq!(code, 0, "{key}: {err}");
        assert!(!out.contains(secret) && out.contains("<hidden>"), "{key}: {out}");
    }
}

#[test]
fn nlu_check_names_the_line_of_a_broken_intents_file() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = run(&["nlu", "check"], &[], dir.path());
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("intents file OK: version 2, 39 intents"), "{out}");

    let good = switchboard_nlp::intents::DEFAULT_INTENTS;
    let broken = good.replacen("category = \"billing\"", "category = \"invoices\"", 1);
    let line = broken.lines().position(|l| l.contains("\"invoices\"")).unwrap() + 1;
    std::fs::write(dir.path().join("intents.toml"), broken).unwrap();
    let (code, _, err) = run(&["nlu", "check", "--intents", "intents.toml"], &[], dir.path());
    assert_eq!(code, 1);
    assert!(err.contains(&format!("intents.toml:{line}: unknown category `invoices`")), "{err}");
    assert!(err.contains("billing, technical_support"), "the accepted values are listed: {err}");
}

#[test]
fn nlu_eval_reports_accuracy_the_sweep_and_latency() {
    let dir = tempfile::tempdir().unwrap();
    // Twelve examples of each of eight built-in intents, as a labelled CSV.
    let set = switchboard_nlp::IntentSet::parse(std::path::Path::new("x"), switchboard_nlp::intents::DEFAULT_INTENTS).unwrap();
    let mut csv = String::from("text,label\n");
    for intent in set.intents.iter().filter(|i| i.examples.len() >= 12).take(8) {
        for example in intent.examples.iter().take(12) {
            csv.push_str(&format!("\"{}\",{}\n", example.replace('"', "\"\""), intent.name));
        }
    }
    std::fs::write(dir.path().join("train.csv"), &csv).unwrap();
    // Out-of-scope rows are never trained on: they are scored as rejections.
    csv.push_str("write me a poem about autumn,oos\nwho won the football last night,oos\n");
    std::fs::write(dir.path().join("data.csv"), csv).unwrap();
    let model_dir = switchboard_tests::model_dir().display().to_string();
    let cache_dir = dir.path().join("cache").display().to_string();
    let env = [("SWITCHBOARD_NLP__MODEL_DIR", model_dir.as_str()), ("SWITCHBOARD_NLP__CACHE_DIR", cache_dir.as_str())];
    let (code, out, err) = run(&["nlu", "eval", "--data", "data.csv", "--held-out", "2", "--out", "report"], &env, dir.path());
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("80 train / 16 test, 8 intents"), "{out}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.path().join("report/report.json")).unwrap()).unwrap();
    let accuracy = report["accuracy"].as_f64().unwrap();
    assert!((0.5..=1.0).contains(&accuracy), "{report}");
    assert_eq!(report["held_out_intents"].as_array().unwrap().len(), 2);
    assert_eq!(report["sweep"].as_array().unwrap().len(), 21);
    assert_eq!(report["out_of_scope_test_samples"], 2, "{report}");
    assert!(report["service_threshold"].as_f64().is_some() && report["chosen"]["out_of_scope_recall"].as_f64().is_some(), "{report}");
    assert!(report["latency"]["single_p50_ms"].as_f64().unwrap() > 0.0);
    // The first stage is scored beside the sentence encoder, and both together as the service runs them.
    let first_stage = &report["first_stage"];
    for share in ["accuracy_alone", "taken", "taken_accuracy", "accuracy"] {
        assert!((0.0..=1.0).contains(&first_stage[share].as_f64().unwrap_or(-1.0)), "{share}: {report}");
    }
    assert!(first_stage["encoder"].as_str().unwrap().starts_with("static/"), "{report}");
    assert!(out.contains("both stages      accuracy"), "{out}");
    let chart = std::fs::read_to_string(dir.path().join("report/threshold-sweep.svg")).unwrap();
    assert!(chart.starts_with("<svg") && chart.contains("polyline"));

    // A test label the training data lack is named and scored as a rejection, not dropped.
    let first = set.intents.iter().find(|i| i.examples.len() >= 12).unwrap();
    std::fs::write(
        dir.path().join("test.csv"),
        format!("text,label\n\"{}\",{}\nwhat's the capital of Peru,trivia\nwrite a haiku,oos\n", first.examples[0], first.name),
    )
    .unwrap();
    let (code, out, err) = run(&["nlu", "eval", "--train", "train.csv", "--data", "test.csv", "--held-out", "2", "--out", "report2"], &env, dir.path());
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("labels the training data lack, scored as out of scope: trivia (1)"), "{out}");
    assert!(out.contains("2 test rows labelled `oos` or untrained"), "{out}");
    std::fs::write(dir.path().join("oos-trained.csv"), "text,label\na,oos\nb,oos\nc,x\n").unwrap();
    let (code, _, err) = run(&["nlu", "eval", "--train", "oos-trained.csv", "--data", "test.csv"], &env, dir.path());
    assert_ne!(code, 0);
    assert!(err.contains("labelled `oos` are out of scope and cannot be trained on"), "{err}");

    let (code, _, err) = run(&["nlu", "eval", "--data", "missing.csv"], &env, dir.path());
    assert_ne!(code, 0);
    assert!(err.contains("missing.csv"), "{err}");
    std::fs::write(dir.path().join("nolabel.csv"), "text,colour\nhello,red\n").unwrap();
    let (_, _, err) = run(&["nlu", "eval", "--data", "nolabel.csv"], &env, dir.path());
    assert!(err.contains("no `label` column"), "{err}");
}

#[test]
fn nlu_judge_scores_the_whole_decision_of_the_configured_service() {
    let dir = tempfile::tempdir().unwrap();
    let csv = "id,text,language,category,escalate_now,priority,sentiment\n\
               a,I want to talk to a person,en,general_inquiry,true,medium,neutral\n\
               b,hello,en,general_inquiry,false,low,neutral\n\
               c,Can you recommend a good film for tonight?,en,oos,false,low,neutral\n";
    std::fs::write(dir.path().join("cases.csv"), csv).unwrap();
    let model_dir = switchboard_tests::model_dir().display().to_string();
    let cache_dir = dir.path().join("cache").display().to_string();
    let env = [
        ("SWITCHBOARD_NLP__MODEL_DIR", model_dir.as_str()),
        ("SWITCHBOARD_NLP__CACHE_DIR", cache_dir.as_str()),
        ("SWITCHBOARD_NLP__FIRST_STAGE", "true"),
        // A budget no message through the sentence encoder keeps: the service would shed them
        // all to the fast path; the judge must not (its figures would depend on the machine's load).
        ("SWITCHBOARD_NLP__QUEUE_BUDGET_MS", "1"),
    ];
    let (code, out, err) = run(&["nlu", "judge", "--data", "cases.csv", "--out", "judged"], &env, dir.path());
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("3 messages from cases.csv"), "{out}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.path().join("judged/report.json")).unwrap()).unwrap();
    assert_eq!(report["cases"], 3);
    assert_eq!(report["escalate_now"]["true_positives"], 1, "asking for a person escalates: {report}");
    assert_eq!(report["escalate_now"]["false_positives"], 0, "{report}");
    assert_eq!(report["by_language"][0]["group"], "en");
    assert_eq!(report["by_length"][0]["group"], "1) up to 5 words", "{report}");
    // "hello" is plain: the first stage decides it; the request for a person is not.
    assert_eq!(report["first_stage"]["taken"], 1, "{report}");
    assert_eq!(report["first_stage"]["should_have_escalated"], 0, "{report}");
    assert!(out.contains("first stage      decided 1 of 3"), "{out}");
    assert_eq!(report["fast_path"], 0, "{report}");
    assert!(out.contains("fast path        decided 0 of 3"), "{out}");

    std::fs::write(dir.path().join("bad.csv"), "text,category,escalate_now\nhello,billing,maybe\n").unwrap();
    let (code, _, err) = run(&["nlu", "judge", "--data", "bad.csv"], &env, dir.path());
    assert_ne!(code, 0);
    assert!(err.contains("row 2: escalate_now `maybe`; expected true or false"), "{err}");
}

#[test]
fn serve_with_no_config_runs_on_sqlite_and_prints_its_address() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, _) = run(&["migrate"], &[], dir.path());
    assert_eq!(code, 0);
    assert!(out.contains("up to date"));
    let (mut child, address) = serve_in(dir.path());
    let status_line = http_get_status(&address, "/widget.js");
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(status_line.starts_with("HTTP/1.1 200"), "{status_line}");
    assert!(dir.path().join("switchboard.db").exists(), "the embedded default is ./switchboard.db");
}

/// `switchboard serve` in `dir` on a free port: the process and its `host:port`.
fn serve_in(dir: &std::path::Path) -> (std::process::Child, String) {
    serve_with(dir, &[])
}

pub(crate) fn serve_with(dir: &std::path::Path, env: &[(&str, &str)]) -> (std::process::Child, String) {
    let mut child = Command::new(binary())
        .arg("serve")
        .current_dir(dir)
        .envs(env.iter().copied())
        .env("SWITCHBOARD_SERVER__LISTEN", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let address = line.trim().rsplit(' ').next().unwrap().to_string();
    assert!(address.starts_with("http://127.0.0.1:"), "{line}");
    (child, address.trim_start_matches("http://").to_string())
}

fn http_get_status(host: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response.lines().next().unwrap_or_default().to_string()
}

#[test]
fn the_first_admin_is_created_from_the_command_line() {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    let dir = tempfile::tempdir().unwrap();
    let create = |email: &str, password: &str| {
        run(&["admin", "create", "--email", email, "--name", "Ada Admin"], &[("SWITCHBOARD_ADMIN_PASSWORD", password)], dir.path())
    };
    let (code, out, err) = create("Ada@Example.com", "correct horse battery");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("created admin ada@example.com"), "{out}");

    let (code, _, err) = create("ada@example.com", "another long password");
    assert_eq!(code, 1);
    assert!(err.contains("already exists"), "{err}");
    let (code, _, err) = create("bob@example.com", "short");
    assert_eq!(code, 1);
    assert!(err.contains("at least 12 characters"), "{err}");

    // Read back through the store: an admin, and only the hash of the password.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let url = format!("sqlite://{}", dir.path().join("switchboard.db").display());
        let store = switchboard_store::SqliteStore::open(&url).await.unwrap();
        use switchboard_core::ports::Accounts;
        let admin = store.agent_by_email("ada@example.com").await.unwrap().expect("created");
        assert_eq!(admin.role, switchboard_models::Role::Admin);
        let hash = store.password_hash(admin.id).await.unwrap().expect("a hash");
        assert!(hash.starts_with("$argon2id$") && !hash.contains("correct horse"));
        let parsed = PasswordHash::new(&hash).unwrap();
        assert!(argon2::Argon2::default().verify_password(b"correct horse battery", &parsed).is_ok());
        assert!(argon2::Argon2::default().verify_password(b"wrong", &parsed).is_err());
        assert!(store.agent_by_email("bob@example.com").await.unwrap().is_none());
        let audit = store.audit_entries(10).await.unwrap();
        assert_eq!(audit.len(), 1, "one account created, one entry");
        assert_eq!(audit[0].action, switchboard_models::AuditAction::CreateAccount);
        assert_eq!(audit[0].subject_agent, Some(admin.id));
    });
}

#[test]
fn only_section_and_key_environment_variables_are_config() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = run(&["config", "check"], &[("SWITCHBOARD_BIN", "/usr/local/bin/switchboard")], dir.path());
    assert_eq!(code, 0, "a deployment script's own variable is ignored: {err}");
    assert!(out.contains("configuration OK"));
    let (code, _, err) = run(&["config", "check"], &[("SWITCHBOARD_WEBCHAT__TITEL", "Help")], dir.path());
    assert_eq!(code, 2);
    assert!(err.contains("titel"), "{err}");
    assert!(err.contains("did you mean `webchat.title` (environment variable SWITCHBOARD_WEBCHAT__TITLE)"), "{err}");
    let (code, _, err) = run(&["config", "check"], &[("SWITCHBOARD_WEBCHAT__ZZZZZZ", "1")], dir.path());
    assert_eq!(code, 2);
    assert!(err.contains("zzzzzz") && !err.contains("did you mean"), "no suggestion when nothing is close: {err}");
}

#[test]
fn an_unreachable_or_unsupported_database_is_a_clear_error_without_its_password() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = run(&["config", "check"], &[("SWITCHBOARD_DATABASE__URL", "mysql://root@127.0.0.1/x")], dir.path());
    assert_eq!(code, 2);
    assert!(err.contains("database.url") && err.contains("postgres://"), "{err}");

    // Nothing listens on port 1.
    let url = "postgres://switchboard:hunter2-secret@127.0.0.1:1/switchboard";
    let (code, out, err) = run(&["migrate"], &[("SWITCHBOARD_DATABASE__URL", url)], dir.path());
    assert_ne!(code, 0);
    assert!(err.contains("database.url") && err.contains("PostgreSQL"), "{err}");
    assert!(!err.contains("hunter2") && !out.contains("hunter2"), "the password is never shown: {err}");
    let (code, out, _) = run(&["config", "check"], &[("SWITCHBOARD_DATABASE__URL", url)], dir.path());
    assert_eq!(code, 0);
    assert!(out.contains("127.0.0.1:1") && !out.contains("hunter2"), "{out}");
}

#[tokio::test]
async fn migrate_creates_the_schema_on_postgres() {
    let db = switchboard_tests::databases::TestDatabase::postgres().await;
    let url = db.url.clone();
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) =
        tokio::task::spawn_blocking(move || run(&["migrate"], &[("SWITCHBOARD_DATABASE__URL", &url)], dir.path())).await.unwrap();
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("database is up to date"), "{out}");
    assert_eq!(db.count("SELECT COUNT(*) FROM conversations").await, 0, "the schema exists");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_server_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, address) = serve_in(dir.path());
    let session: serde_json::Value = reqwest::Client::new()
        .post(format!("http://{address}/webchat/session"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = session["token"].as_str().unwrap();
    let mut widget = Widget::connect(&address, token, None).await.expect("connects");
    widget.next_of("ready").await;
    widget.say("c1", "hello").await;
    widget.next_reply().await;
    assert!(dir.path().join("switchboard.db-wal").metadata().unwrap().len() > 0, "writes went to the WAL");

    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    assert_eq!(widget.close_code().await, Some(1012), "widgets are told the service restarts, to reconnect later");
    let pid = child.id();
    let (exited, exit) = std::sync::mpsc::channel();
    std::thread::spawn(move || exited.send(child.wait()));
    let Ok(exit) = exit.recv_timeout(std::time::Duration::from_secs(30)) else {
        let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        panic!("the server did not stop after SIGTERM");
    };
    let exit = exit.unwrap();
    assert_eq!(exit.code(), Some(0), "a requested stop is a clean exit, not death by signal: {exit:?}");
    assert!(std::net::TcpStream::connect(&address).is_err(), "it no longer listens");
    let wal = dir.path().join("switchboard.db-wal").metadata().map_or(0, |m| m.len());
    assert_eq!(wal, 0, "the WAL is folded into the database file on a clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_loses_nothing_and_answers_everything_once() {
    let dir = tempfile::tempdir().unwrap();
    let unlimited = [
        ("SWITCHBOARD_WEBCHAT__RATE_LIMIT_PER_MINUTE", "1000000"),
        ("SWITCHBOARD_WEBCHAT__RATE_LIMIT_BURST", "1000000"),
        ("SWITCHBOARD_WEBCHAT__MESSAGES_PER_ADDRESS_PER_MINUTE", "1000000"),
        ("SWITCHBOARD_WEBCHAT__SESSIONS_PER_ADDRESS_PER_MINUTE", "1000000"),
    ];
    let (mut child, address) = serve_with(dir.path(), &unlimited);
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut widgets = Vec::new();
    for _ in 0..10 {
        let session: serde_json::Value =
            reqwest::Client::new().post(format!("http://{address}/webchat/session")).send().await.unwrap().json().await.unwrap();
        let (visitor, token) = (session["visitor_id"].as_str().unwrap().to_string(), session["token"].as_str().unwrap().to_string());
        let mut widget = Widget::connect(&address, &token, None).await.expect("connects");
        widget.next_of("ready").await;
        let acknowledged = acknowledged.clone();
        // Each widget sends, waits for the ack, sends again, until the server closes it.
        widgets.push(tokio::spawn(async move {
            for n in 0.. {
                widget.say(&format!("m{n}"), "hello").await;
                loop {
                    match widget.next_frame().await {
                        Some(frame) if frame["type"] == "ack" => break,
                        Some(_) => continue,
                        None => return,
                    }
                }
                acknowledged.lock().unwrap().push(format!("{visitor}:m{n}"));
            }
        }));
    }
    // Stop once the load is well under way.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while acknowledged.lock().unwrap().len() < 100 {
        assert!(std::time::Instant::now() < deadline, "the widgets never got going");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap();
    assert_eq!(exit.code(), Some(0), "a stop under load is still a clean exit: {exit:?}");
    for widget in widgets {
        widget.await.unwrap();
    }

    let store = switchboard_store::open(&format!("sqlite://{}", dir.path().join("switchboard.db").display())).await.unwrap();
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() > 50, "there was load: {}", acknowledged.len());
    for id in &acknowledged {
        assert!(store.message_by_external_id(switchboard_models::Channel::WebChat, id).await.unwrap().is_some(), "acknowledged {id} was lost");
    }
    assert!(store.unanswered_messages(10).await.unwrap().is_empty(), "every stored message was answered before the exit");
    let db = switchboard_tests::databases::TestDatabase::sqlite_at(&dir.path().join("switchboard.db"));
    let customers = db.count("SELECT COUNT(*) FROM messages WHERE sender = 'customer'").await;
    let answers = db.count("SELECT COUNT(*) FROM messages WHERE sender = 'bot'").await;
    assert_eq!(answers, customers, "one answer per message, none twice");
    let undelivered = db.count("SELECT COUNT(*) FROM messages WHERE outbound = TRUE AND delivered_at IS NULL").await;
    assert_eq!(undelivered, 0, "the outbox's last pass delivered every answer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_serving_restores_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, address) = serve_in(dir.path());
    let session: serde_json::Value =
        reqwest::Client::new().post(format!("http://{address}/webchat/session")).send().await.unwrap().json().await.unwrap();
    let token = session["token"].as_str().unwrap().to_string();
    let mut widget = Widget::connect(&address, &token, None).await.expect("connects");
    widget.next_of("ready").await;
    widget.say("c1", "I forgot my password").await;
    widget.next_reply().await;

    let backup = dir.path().join("backup.db");
    let (code, out, err) = run(&["db", "backup", "--to", backup.to_str().unwrap()], &[], dir.path());
    assert_eq!(code, 0, "a backup while serving: {err}");
    assert!(out.contains("checked"), "{out}");
    let (code, _, err) = run(&["db", "backup", "--to", backup.to_str().unwrap()], &[], dir.path());
    assert_ne!(code, 0);
    assert!(err.contains("exists already"), "a backup never overwrites a file: {err}");
    child.kill().unwrap();
    child.wait().unwrap();

    let elsewhere = tempfile::tempdir().unwrap();
    let (code, out, err) = run(&["db", "restore", "--from", backup.to_str().unwrap()], &[], elsewhere.path());
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("restored"), "{out}");
    let restored = switchboard_store::open(&format!("sqlite://{}", elsewhere.path().join("switchboard.db").display())).await.unwrap();
    let visitor = session["visitor_id"].as_str().unwrap();
    let message = restored.message_by_external_id(switchboard_models::Channel::WebChat, &format!("{visitor}:c1")).await.unwrap();
    assert_eq!(message.expect("the message came along").text, "I forgot my password");
    drop(restored);

    let (code, _, err) = run(&["db", "restore", "--from", backup.to_str().unwrap()], &[], elsewhere.path());
    assert_ne!(code, 0);
    assert!(err.contains("--replace"), "an existing database is not overwritten silently: {err}");
    let (code, _, err) = run(&["db", "restore", "--from", backup.to_str().unwrap(), "--replace"], &[], elsewhere.path());
    assert_eq!(code, 0, "{err}");
    let kept = std::fs::read_dir(elsewhere.path()).unwrap().filter_map(|e| e.ok()).any(|e| e.file_name().to_string_lossy().contains("before-restore"));
    assert!(kept, "the replaced database is kept aside");

    std::fs::write(elsewhere.path().join("junk.db"), b"not a database at all").unwrap();
    let (code, _, err) = run(&["db", "restore", "--from", "junk.db", "--replace"], &[], elsewhere.path());
    assert_ne!(code, 0);
    assert!(err.contains("not a sound Switchboard backup"), "{err}");
    let (code, _, err) = run(&["db", "backup", "--to", "x.db"], &[("SWITCHBOARD_DATABASE__URL", "postgres://u@127.0.0.1:1/x")], dir.path());
    assert_ne!(code, 0);
    assert!(err.contains("pg_dump"), "PostgreSQL has its own tools: {err}");

    // Retention by hand: a dry run counts, a real run deletes, and the jobs list says what runs when.
    let expired = switchboard_store::open(&format!("sqlite://{}", elsewhere.path().join("switchboard.db").display())).await.unwrap();
    let agent = switchboard_models::Agent {
        id: switchboard_models::AgentId::new(),
        email: "lee@example.com".into(),
        name: "Lee".into(),
        role: switchboard_models::Role::Agent,
        presence: switchboard_models::Presence::Offline,
        capacity: 3,
        active: true,
        created_at: chrono::Utc::now(),
        skills: Vec::new(),
    };
    expired.save_agent(&agent).await.unwrap();
    let record = switchboard_core::SessionRecord { agent: agent.id, csrf: "c".into(), expires_at: chrono::Utc::now() - chrono::Duration::hours(1) };
    expired.create_session("expired", &record).await.unwrap();
    expired.close().await;
    let (code, out, err) = run(&["db", "purge", "--dry-run"], &[], elsewhere.path());
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("would delete 1 expired sessions, 0 read notifications") && out.contains("nothing was deleted"), "{out}");
    let (code, out, _) = run(&["db", "purge"], &[], elsewhere.path());
    assert_eq!(code, 0);
    assert!(out.contains("deleted 1 expired sessions"), "{out}");
    let (_, out, _) = run(&["db", "purge", "--dry-run"], &[], elsewhere.path());
    assert!(out.contains("would delete 0 expired sessions"), "{out}");
    let (code, out, err) = run(&["db", "jobs"], &[("SWITCHBOARD_JOBS__BACKUP__SCHEDULE", "0 3 * * *")], elsewhere.path());
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("backup\t\"0 3 * * *\"\tnext at the next start\tlast never ran"), "{out}");
    assert!(out.contains("retention\t\"30 3 * * *\""), "{out}");
}

#[tokio::test]
async fn db_copy_moves_an_installation_from_sqlite_to_postgres() {
    use switchboard_core::ports::{Committed, StepWrite};
    use switchboard_core::ports::{AdminWrite, CannedChange};
    use switchboard_models::{Channel, Contact, ContactId, Conversation, Presence, Sender};
    use switchboard_tests::databases::TestDatabase;

    let sqlite = TestDatabase::sqlite();
    let store = sqlite.open().await;
    let admin = switchboard_models::Agent {
        id: switchboard_models::AgentId::new(),
        email: "ada@example.com".into(),
        name: "Ada".into(),
        role: switchboard_models::Role::Admin,
        presence: Presence::Offline,
        capacity: 5,
        active: true,
        created_at: chrono::DateTime::from_timestamp_millis(chrono::Utc::now().timestamp_millis()).unwrap(),
        skills: Vec::new(),
    };
    let account = AdminWrite { agent: Some(admin.clone()), password_hash: Some((admin.id, "$argon2id$v=19$kept".into())), ..AdminWrite::default() };
    store.commit_admin(account).await.unwrap();
    store.set_presence(admin.id, Presence::Online, chrono::Utc::now()).await.unwrap();
    store.setting_or_insert("visitor_token_secret", "kept-secret").await.unwrap();
    let personal = switchboard_models::CannedResponse {
        id: uuid::Uuid::now_v7(),
        title: "Mine".into(),
        body: "Only Ada's".into(),
        created_by: Some(admin.id),
        created_at: admin.created_at,
        shared: false,
    };
    store.commit_admin(AdminWrite { canned: Some(CannedChange::Save(personal.clone())), ..AdminWrite::default() }).await.unwrap();
    let contact = Contact {
        id: ContactId::new(),
        channel: Channel::WebChat,
        external_id: "visitor-copy".into(),
        display_name: Some("Ann".into()),
        created_at: chrono::Utc::now(),
        unreachable_since: None,
        unreachable_reason: None,
        email: None,
    };
    let conversation = Conversation::new(contact.id, Channel::WebChat, chrono::Utc::now());
    let receipt = switchboard_models::Document {
        id: switchboard_models::DocumentId::new(),
        conversation_id: conversation.id,
        contact_id: contact.id,
        channel: Channel::WebChat,
        message_seq: 1,
        file: switchboard_models::Attachment { key: "receipt-key".into(), file_name: "receipt.pdf".into(), content_type: "application/pdf".into(), size: 42, original: false },
        kind: "proof_of_payment".into(),
        state: switchboard_models::DocumentState::Pending,
        reviewer_id: None,
        decided_at: None,
        note: None,
        created_at: admin.created_at,
        purged_at: None,
    };
    let step = StepWrite {
        inbound: Some(crate::store::message(&conversation, Sender::Customer, "my card was charged twice", Some("copy:1"))),
        outbound: vec![crate::store::message(&conversation, Sender::Bot, "Sorry to hear that", None)],
        contact: Some(contact.clone()),
        conversation: Some(conversation.clone()),
        documents: vec![receipt.clone()],
        ..StepWrite::default()
    };
    assert!(matches!(store.commit(step).await.unwrap(), Committed::Stored { .. }));
    let history = store.contact_messages(contact.id, 0, 100).await.unwrap();
    drop(store);

    let postgres = TestDatabase::postgres().await;
    let copy = |resume: bool| {
        let (from, to) = (sqlite.url.clone(), postgres.url.clone());
        tokio::task::spawn_blocking(move || {
            let dir = tempfile::tempdir().unwrap();
            let mut args = vec!["db", "copy", "--from", from.as_str(), "--to", to.as_str()];
            if resume {
                args.push("--resume");
            }
            run(&args, &[], dir.path())
        })
    };
    let (code, out, err) = copy(false).await.unwrap();
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("messages: 2 of 2 rows") && out.contains("agents: 1 of 1 rows"), "{out}");

    let (code, _, err) = copy(false).await.unwrap();
    assert_ne!(code, 0, "a non-empty target is refused");
    assert!(err.contains("--resume"), "{err}");
    let (code, out, err) = copy(true).await.unwrap();
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("agent_presence_log: 1 of 1 rows") && out.contains("messages: 2 of 2 rows"), "nothing twice: {out}");

    let copied = postgres.open().await;
    assert_eq!(copied.agent_by_email("ada@example.com").await.unwrap(), Some(switchboard_models::Agent { presence: Presence::Online, ..admin.clone() }));
    assert_eq!(copied.password_hash(admin.id).await.unwrap().as_deref(), Some("$argon2id$v=19$kept"));
    assert_eq!(copied.setting_or_insert("visitor_token_secret", "new").await.unwrap(), "kept-secret");
    assert_eq!(copied.contact_messages(contact.id, 0, 100).await.unwrap(), history, "the same messages, in the same order");
    assert_eq!(copied.presence_changes(chrono::DateTime::UNIX_EPOCH).await.unwrap().len(), 1);
    assert_eq!(copied.canned_responses().await.unwrap(), [personal], "a personal response stays personal");
    assert_eq!(copied.document(receipt.id).await.unwrap(), Some(receipt), "documents waiting for review come along");
    let later = StepWrite {
        inbound: Some(crate::store::message(&conversation, Sender::Customer, "still there?", Some("copy:2"))),
        ..StepWrite::default()
    };
    let Committed::Stored { seqs } = copied.commit(later).await.unwrap() else { panic!("stored") };
    assert!(seqs[0] > history.last().unwrap().seq, "new messages come after the copied ones");

}
