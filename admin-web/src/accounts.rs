//! Account commands: the first admin is created from the command line (there is no default
//! password), with the password hashed by Argon2id.

use argon2::password_hash::{PasswordHasher, SaltString, rand_core::OsRng};
use switchboard_core::ports::{Accounts, AdminWrite};
use switchboard_models::{Agent, AgentId, AuditAction, AuditEntry, Presence, Role};

/// The shortest password by default (`server.password_min_chars`).
pub const MIN_PASSWORD_CHARS: usize = 12;
/// How long a panel sign-in lasts by default (`server.session_days`).
pub const SESSION_DAYS: u32 = 7;

/// How long a panel sign-in lasts and how short a password may be: from the configuration, and
/// changed on the Settings page while running (a new lifetime applies to new sign-ins).
pub struct AccountRules {
    session_days: std::sync::atomic::AtomicU32,
    min_password_chars: std::sync::atomic::AtomicUsize,
}

impl AccountRules {
    pub fn new(session_days: u32, min_password_chars: usize) -> Self {
        Self { session_days: session_days.into(), min_password_chars: min_password_chars.into() }
    }

    pub fn set(&self, session_days: u32, min_password_chars: usize) {
        self.session_days.store(session_days, std::sync::atomic::Ordering::Relaxed);
        self.min_password_chars.store(min_password_chars, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn session_days(&self) -> u32 {
        self.session_days.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn min_password_chars(&self) -> usize {
        self.min_password_chars.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Default for AccountRules {
    fn default() -> Self {
        Self::new(SESSION_DAYS, MIN_PASSWORD_CHARS)
    }
}

/// Why an account was not created; fit to show the operator.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AccountError(String);

macro_rules! bail {
    ($($arg:tt)*) => { return Err(AccountError(format!($($arg)*))) };
}

/// An address like `ann@example.com`: one `@`, no spaces or control characters (a line break
/// would let a mail header in), a domain with a dot.
pub fn check_email(email: &str) -> Result<(), AccountError> {
    let shown = crate::limits::shown(email, 80);
    if email.chars().any(|c| c.is_control() || c.is_whitespace()) {
        bail!("`{shown}` is not an email address: it contains spaces, line breaks or other control characters");
    }
    let Some((local, domain)) = email.split_once('@') else {
        bail!("`{shown}` is not an email address: it has no @");
    };
    let domain_ok = domain.contains('.')
        && domain.split('.').all(|label| !label.is_empty() && label.chars().all(|c| c.is_alphanumeric() || c == '-'));
    if local.is_empty() || local.len() > 64 || domain.contains('@') || !domain_ok || email.len() > 254 {
        bail!("`{shown}` is not an email address like ann@example.com");
    }
    Ok(())
}

/// Long enough, not blank, and not guessable: a strength estimate (zxcvbn) of at least 3 of 4,
/// counting the account's own email and name as known words. The reason says how to do better.
pub fn check_password(password: &str, known: &[&str], min_chars: usize) -> Result<(), AccountError> {
    if password.trim().is_empty() {
        bail!("the password is blank; use a passphrase of several words");
    }
    if password.chars().count() < min_chars {
        bail!("the password must have at least {min_chars} characters");
    }
    let estimate = zxcvbn::zxcvbn(password, known);
    if estimate.score() < zxcvbn::Score::Three {
        let feedback = estimate.feedback();
        let warning = feedback.and_then(|f| f.warning()).map(|w| format!("{w} ")).unwrap_or_default();
        let suggestion = feedback.and_then(|f| f.suggestions().first()).map(|s| s.to_string()).unwrap_or_else(|| "Add another word or two.".into());
        bail!("the password is too easy to guess. {warning}{suggestion}");
    }
    Ok(())
}

pub fn hash_password(password: &str) -> Result<String, AccountError> {
    let salt = SaltString::generate(&mut OsRng);
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| AccountError(format!("hashing the password failed: {e}")))
}

/// Creates an account with a password and the default capacity (5 conversations). Refuses a
/// taken email, a bad address or a short password. `by` is the admin who created it (`None`
/// from the command line).
pub async fn create_account(
    store: &dyn Accounts,
    email: &str,
    name: &str,
    role: Role,
    password: &str,
    by: Option<AgentId>,
) -> Result<Agent, AccountError> {
    create_account_with_capacity(store, email, name, role, password, by, 5, MIN_PASSWORD_CHARS).await
}

/// `create_account` taking up to `capacity` conversations at once. The account, its password
/// hash and the audit entry are written together.
pub async fn create_account_with_capacity(
    store: &dyn Accounts,
    email: &str,
    name: &str,
    role: Role,
    password: &str,
    by: Option<AgentId>,
    capacity: u32,
    min_password_chars: usize,
) -> Result<Agent, AccountError> {
    let failed = |what: &str, e: switchboard_core::ports::StoreError| AccountError(format!("{what}: {e}"));
    let email = email.trim().to_lowercase();
    check_email(&email)?;
    if name.trim().is_empty() {
        bail!("the name is empty; it is shown to customers when the agent joins");
    }
    if name.chars().any(char::is_control) {
        bail!("the name contains control characters (such as line breaks); use letters, spaces and punctuation");
    }
    check_password(password, &[&email, name], min_password_chars)?;
    if store.agent_by_email(&email).await.map_err(|e| failed("looking up the email", e))?.is_some() {
        bail!("an account with email {email} already exists");
    }
    let agent = Agent {
        id: AgentId::new(),
        email,
        name: name.trim().to_string(),
        role,
        presence: Presence::Offline,
        capacity,
        active: true,
        created_at: chrono::Utc::now(),
        skills: Vec::new(),
    };
    let entry = AuditEntry {
        at: agent.created_at,
        actor: by,
        action: AuditAction::CreateAccount,
        conversation: None,
        subject_agent: Some(agent.id),
        before: None,
        after: Some(format!("{} {} <{}>", agent.role, agent.name, agent.email)),
    };
    let write = AdminWrite {
        agent: Some(agent.clone()),
        password_hash: Some((agent.id, hash_password(password)?)),
        audit: vec![entry],
        ..AdminWrite::default()
    };
    store.commit_admin(write).await.map_err(|e| failed("saving the account", e))?;
    Ok(agent)
}
