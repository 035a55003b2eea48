//! The `switchboard` binary as an operator meets it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

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

    std::fs::write(dir.path().join("bad.toml"), "[webchat]\nallowed_origins = [\"shop.example.com/path\"]\n").unwrap();
    let (code, _, err) = run(&["--config", "bad.toml", "config", "check"], &[], dir.path());
    assert_eq!(code, 2);
    assert!(err.contains("webchat.allowed_origins"), "{err}");

    std::fs::write(dir.path().join("typo.toml"), "[webchat]\ntitel = \"Help\"\n").unwrap();
    let (code, _, err) = run(&["--config", "typo.toml", "config", "check"], &[], dir.path());
    assert_eq!(code, 2);
    assert!(err.contains("titel") && err.contains("typo.toml"), "{err}");

    let (code, _, err) = run(&["--config", "missing.toml", "serve"], &[], dir.path());
    assert_eq!(code, 2);
    assert!(err.contains("missing.toml") && err.contains("does not exist"), "{err}");
}

#[test]
fn secrets_never_show_in_config_output() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t";
    let (code, out, err) = run(&["config", "check"], &[("SWITCHBOARD_SERVER__SECRET", secret)], dir.path());
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains(secret) && out.contains("<hidden>"));
}

#[test]
fn serve_with_no_config_runs_on_sqlite_and_prints_its_address() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, _) = run(&["migrate"], &[], dir.path());
    assert_eq!(code, 0);
    assert!(out.contains("up to date"));
    let mut child = Command::new(binary())
        .arg("serve")
        .current_dir(dir.path())
        .env("SWITCHBOARD_SERVER__LISTEN", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let address = line.trim().rsplit(' ').next().unwrap().to_string();
    assert!(address.starts_with("http://127.0.0.1:"), "{line}");
    let status_line = http_get_status(address.trim_start_matches("http://"), "/widget.js");
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(status_line.starts_with("HTTP/1.1 200"), "{status_line}");
    assert!(dir.path().join("switchboard.db").exists(), "the embedded default is ./switchboard.db");
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
        use switchboard_core::ports::Store;
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
