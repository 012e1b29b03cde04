//! The allowance system's own staff accounts (not the registry's): named
//! clerks and supervisors, passwords hashed with Argon2 (`argon2`, its
//! default parameters, as the registry does), and sign-in throttling with
//! the registry's policy figures, re-implemented here because this crate
//! must not depend on the registry:
//!
//! 1. **Per source** (in memory): 20 failed sign-ins from one address (an
//!    IPv6 /64 counts as one) within 15 minutes, over all accounts; then
//!    every attempt from it is refused until the oldest failure leaves the
//!    window.
//! 2. **Global** (in memory): 120 failures from all sources within 60
//!    seconds; beyond that, sources that have not signed in correctly
//!    within the last 7 days are refused. Password checks run at most 2–8
//!    at a time (one per core; each Argon2 check holds ~19 MiB).
//! 3. **Per account and source** (in the database, `login_failures`): 5
//!    failures for one account from one source lock that source out of
//!    that account for 15 minutes; another source is not affected, so a
//!    stranger cannot lock a clerk out.
//!
//! An attempt is counted when admitted, before the password is checked,
//! and taken back when it proves right.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use serde::Serialize;

/// What an account may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// 児童手当担当: reads claimants and children, enters claims, closes
    /// work items, sees payment lines.
    Clerk,
    /// 児童手当監督者: also approves and exports payment files, manages
    /// accounts and reads the access log.
    Supervisor,
}

impl Role {
    pub fn code(self) -> &'static str {
        match self {
            Role::Clerk => "clerk",
            Role::Supervisor => "supervisor",
        }
    }
    pub fn parse(s: &str) -> Option<Role> {
        match s.trim() {
            "clerk" => Some(Role::Clerk),
            "supervisor" => Some(Role::Supervisor),
            _ => None,
        }
    }
    pub fn label_ja(self) -> &'static str {
        match self {
            Role::Clerk => "児童手当担当",
            Role::Supervisor => "児童手当監督者",
        }
    }
    pub fn label_en(self) -> &'static str {
        match self {
            Role::Clerk => "allowance clerk",
            Role::Supervisor => "allowance supervisor",
        }
    }
    /// Approve and export payment files, manage accounts, read the log.
    pub fn supervises(self) -> bool {
        self == Role::Supervisor
    }
}

/// A stored account (without its hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Account {
    pub login: String,
    pub display_name: String,
    pub role: Role,
    pub disabled: bool,
    /// Signed in with a temporary password (a supervisor's reset): must
    /// choose a new one before anything else.
    pub must_change: bool,
}

/// Why an account cannot be made as asked (Japanese and English).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountError {
    pub ja: String,
    pub en: String,
}

impl std::fmt::Display for AccountError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} / {}", self.ja, self.en)
    }
}

fn bad(ja: &str, en: &str) -> AccountError {
    AccountError {
        ja: ja.into(),
        en: en.into(),
    }
}

/// Minimum password length.
pub const MIN_PASSWORD: usize = 12;

/// Checks a new account's fields; returns the cleaned login and name.
pub fn check_new(
    login: &str,
    name: &str,
    password: &str,
) -> Result<(String, String), AccountError> {
    let login = login.trim();
    if login.is_empty()
        || login.len() > 40
        || !login
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(bad(
            "ログインIDは英数字と - _ . で40文字以内です。",
            "A login is up to 40 letters, digits, '-', '_' or '.'.",
        ));
    }
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 40 || name.chars().any(char::is_control) {
        return Err(bad(
            "氏名を40文字以内で入力してください。",
            "Enter a name of up to 40 characters.",
        ));
    }
    check_password(password)?;
    Ok((login.to_string(), name.to_string()))
}

pub fn check_password(password: &str) -> Result<(), AccountError> {
    if password.chars().count() < MIN_PASSWORD {
        return Err(bad(
            "パスワードは12文字以上にしてください。",
            "A password has at least 12 characters.",
        ));
    }
    Ok(())
}

/// Checks a password change: the new one twice the same, long enough,
/// not the current one.
pub fn check_change(current: &str, new: &str, again: &str) -> Result<(), AccountError> {
    if new != again {
        return Err(bad(
            "新しいパスワードが確認欄と一致しません。",
            "The new password and its confirmation differ.",
        ));
    }
    check_password(new)?;
    if new.len() > 1024 {
        return Err(bad(
            "パスワードは1024バイト以内にしてください。",
            "A password has at most 1024 bytes.",
        ));
    }
    if new == current {
        return Err(bad(
            "新しいパスワードは現在のものと違うものにしてください。",
            "The new password must differ from the current one.",
        ));
    }
    Ok(())
}

/// Letters and digits that are hard to mistake for one another when read
/// out or copied by hand (no 0/O, 1/l/I).
const TEMPORARY_ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";

/// A temporary password for a reset: 16 characters drawn uniformly from
/// [`TEMPORARY_ALPHABET`] (about 93 bits) with the operating system's
/// random source; shown once, stored only as its hash.
pub fn temporary_password() -> String {
    let n = TEMPORARY_ALPHABET.len();
    // Rejection sampling: bytes at or above the largest multiple of n are
    // drawn again, so every character is equally likely.
    let limit = (256 / n * n) as u8;
    let mut out = String::with_capacity(16);
    while out.len() < 16 {
        let mut b = [0u8; 32];
        getrandom::fill(&mut b).expect("the operating system's random source");
        for x in b {
            if x < limit && out.len() < 16 {
                out.push(TEMPORARY_ALPHABET[x as usize % n] as char);
            }
        }
    }
    out
}

/// An Argon2id hash (PHC string, random salt).
pub fn hash_password(password: &str) -> Result<String, AccountError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| bad("パスワードを保存できません。", &format!("argon2: {e}")))
}

/// Whether `password` matches `hash` (false for a malformed hash).
pub fn verify_password(password: &str, hash: &str) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), hash)
        .is_ok()
}

/// A hash no password matches, checked when the login is unknown so that
/// an unknown login takes as long as a wrong password.
pub fn dummy_hash() -> &'static str {
    static H: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    H.get_or_init(|| hash_password("no account has this password 0").unwrap_or_default())
}

/// Failures of one account from one source allowed in [`ACCOUNT_WINDOW`].
pub const MAX_ACCOUNT_FAILURES: i64 = 5;
/// 15 minutes.
pub const ACCOUNT_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Failures from one source allowed in [`SOURCE_WINDOW`], all accounts.
pub const MAX_SOURCE_FAILURES: usize = 20;
pub const SOURCE_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Failures from all sources in [`GLOBAL_WINDOW`] before unproven sources
/// are refused.
pub const MAX_GLOBAL_FAILURES: usize = 120;
pub const GLOBAL_WINDOW: Duration = Duration::from_secs(60);
/// How long a source stays proven after a correct sign-in.
pub const PROVEN_FOR: Duration = Duration::from_secs(7 * 24 * 3600);

/// Where an attempt comes from: an IPv4 address, an IPv6 /64, or unknown.
pub fn source_key(addr: Option<IpAddr>) -> String {
    match addr {
        None => "unknown".into(),
        Some(IpAddr::V4(a)) => a.to_string(),
        Some(IpAddr::V6(a)) => match a.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = a.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

#[derive(Default)]
struct State {
    per_source: HashMap<String, VecDeque<Instant>>,
    global: VecDeque<Instant>,
    proven: HashMap<String, Instant>,
}

/// The in-memory walls (1 and 2) and the hashing turns.
pub struct Throttle {
    state: Mutex<State>,
    hashing: tokio::sync::Semaphore,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle {
            state: Mutex::default(),
            hashing: tokio::sync::Semaphore::new(
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(2)
                    .clamp(2, 8),
            ),
        }
    }
}

fn prune(q: &mut VecDeque<Instant>, window: Duration, now: Instant) {
    while q.front().is_some_and(|t| now.duration_since(*t) >= window) {
        q.pop_front();
    }
}

fn wait_of(oldest: Option<Instant>, window: Duration, now: Instant) -> u64 {
    let left = oldest
        .map(|t| window.saturating_sub(now.duration_since(t)))
        .unwrap_or(window);
    left.as_secs().max(1)
}

impl Throttle {
    /// Admits an attempt from `source` (counted), or the seconds to wait.
    pub fn admit(&self, source: &str) -> Result<(), u64> {
        let now = Instant::now();
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let proven = s
            .proven
            .get(source)
            .is_some_and(|t| now.duration_since(*t) < PROVEN_FOR);
        prune(&mut s.global, GLOBAL_WINDOW, now);
        if !proven && s.global.len() >= MAX_GLOBAL_FAILURES {
            return Err(wait_of(s.global.front().copied(), GLOBAL_WINDOW, now));
        }
        let q = s.per_source.entry(source.to_string()).or_default();
        prune(q, SOURCE_WINDOW, now);
        if q.len() >= MAX_SOURCE_FAILURES {
            return Err(wait_of(q.front().copied(), SOURCE_WINDOW, now));
        }
        q.push_back(now);
        s.global.push_back(now);
        Ok(())
    }

    /// The attempt from `source` proved right: take it back, and remember
    /// the source as proven.
    pub fn proven(&self, source: &str) {
        let now = Instant::now();
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(q) = s.per_source.get_mut(source) {
            q.pop_back();
        }
        s.global.pop_back();
        s.proven.insert(source.to_string(), now);
    }

    /// The attempt from `source` was refused further in (per account): not
    /// counted here either (a refused attempt is not a guess).
    pub fn release(&self, source: &str) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(q) = s.per_source.get_mut(source) {
            q.pop_back();
        }
        s.global.pop_back();
    }

    /// Checks a password on a blocking thread when a hashing turn is free.
    pub async fn check(&self, password: &str, hash: &str) -> bool {
        let Ok(_turn) = self.hashing.acquire().await else {
            return false;
        };
        let (pw, h) = (password.to_string(), hash.to_string());
        tokio::task::spawn_blocking(move || verify_password(&pw, &h))
            .await
            .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_wrong_passwords_do_not() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("correct horse batter", &h));
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn a_source_is_refused_after_twenty_failures_until_it_proves_nothing() {
        let t = Throttle::default();
        for _ in 0..MAX_SOURCE_FAILURES {
            assert!(t.admit("192.0.2.1").is_ok());
        }
        let wait = t.admit("192.0.2.1").unwrap_err();
        assert!(wait > 800 && wait <= 900, "{wait}");
        // Another source is not affected.
        assert!(t.admit("192.0.2.2").is_ok());
    }

    #[test]
    fn a_right_password_takes_its_attempt_back() {
        let t = Throttle::default();
        for _ in 0..MAX_SOURCE_FAILURES * 2 {
            assert!(t.admit("192.0.2.1").is_ok());
            t.proven("192.0.2.1");
        }
    }

    #[test]
    fn ipv6_sources_count_per_64() {
        let a: IpAddr = "2001:db8:1:2:3::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert_eq!(source_key(Some(a)), source_key(Some(b)));
        assert_eq!(source_key(None), "unknown");
    }

    #[test]
    fn new_accounts_are_checked() {
        assert!(check_new("sato", "佐藤　一", "long-enough-pass").is_ok());
        assert!(check_new("", "佐藤", "long-enough-pass").is_err());
        assert!(check_new("佐藤", "佐藤", "long-enough-pass").is_err());
        assert!(check_new("sato", " ", "long-enough-pass").is_err());
        assert!(check_new("sato", "佐藤", "short").is_err());
    }

    #[test]
    fn a_password_change_and_a_temporary_password_are_checked() {
        assert!(check_change("old-password-1", "new-password-12", "new-password-12").is_ok());
        let e = check_change("old-password-1", "new-password-12", "new-password-13").unwrap_err();
        assert!(e.ja.contains("一致しません") && e.en.contains("differ"));
        let e = check_change("old-password-1", "short", "short").unwrap_err();
        assert!(e.ja.contains("12文字以上"));
        let e = check_change("same-password-1", "same-password-1", "same-password-1").unwrap_err();
        assert!(e.en.contains("must differ"));
        let a = temporary_password();
        let b = temporary_password();
        assert_eq!(a.chars().count(), 16);
        assert_ne!(a, b);
        assert!(a.bytes().all(|c| TEMPORARY_ALPHABET.contains(&c)));
        assert!(check_password(&a).is_ok());
    }
}
