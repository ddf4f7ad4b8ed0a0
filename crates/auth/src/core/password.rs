//! Password policy and hashing: NIST SP 800-63B-4 length rules and blocklist, bcrypt off the async
//! runtime with bounded concurrency, and explicit handling of bcrypt's 72-byte input limit.

use std::{
    collections::HashSet,
    sync::{Arc, OnceLock},
};

use base64::{engine::general_purpose::STANDARD, Engine as _};
use crypto_vault::KeyMaterial;
use ring::hmac;
use secrecy::{ExposeSecret, SecretString};
use unicode_normalization::UnicodeNormalization;

use crate::core::error::AuthError;

/// NIST SP 800-63B-4 §3.1.1.2: at least 15 characters for a password used as a single factor.
pub const MIN_CHARS: usize = 15;
/// NIST SP 800-63B-4 §3.1.1.2 asks verifiers to allow at least 64; we allow 128 code points.
pub const MAX_CHARS: usize = 128;
/// OWASP Password Storage Cheat Sheet: bcrypt work factor at least 10; 12 is the default here.
pub const MIN_BCRYPT_COST: u32 = 10;
pub const DEFAULT_BCRYPT_COST: u32 = 12;

static COMMON: OnceLock<HashSet<&'static str>> = OnceLock::new();

fn common() -> &'static HashSet<&'static str> {
    COMMON.get_or_init(|| include_str!("../../data/common-passwords.txt").lines().filter(|l| !l.is_empty()).collect())
}

/// A password that satisfies the policy. Normalised to NFKC (NIST SP 800-63B-4 §3.1.1.2 asks
/// for Unicode normalisation so equivalent strings verify). Never printed.
pub struct Password(SecretString);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password([REDACTED])")
    }
}

impl Password {
    /// Checks a new password. `context` holds words the password must not be built on (the
    /// account's e-mail, the service name). There are no composition rules (NIST: SHALL NOT).
    pub fn parse_new(raw: &str, context: &[&str]) -> Result<Password, AuthError> {
        let normalised: String = raw.nfkc().collect();
        let chars = normalised.chars().count();
        if chars < MIN_CHARS {
            return Err(AuthError::WeakPassword(format!("use at least {MIN_CHARS} characters")));
        }
        if chars > MAX_CHARS {
            return Err(AuthError::WeakPassword(format!("use at most {MAX_CHARS} characters")));
        }
        if is_common(&normalised) {
            return Err(AuthError::WeakPassword(
                "this password is too common or appears in breached password lists".into(),
            ));
        }
        let lower = normalised.to_lowercase();
        for word in context.iter().map(|w| w.to_lowercase()).filter(|w| w.chars().count() >= 4) {
            if lower.contains(&word) {
                return Err(AuthError::WeakPassword(
                    "do not build the password on your e-mail address or the service name".into(),
                ));
            }
        }
        Ok(Password(SecretString::from(normalised)))
    }

    /// A password as typed at sign-in: only normalised, never judged (the policy may have changed
    /// since it was set).
    pub fn for_verification(raw: &str) -> Password {
        Password(SecretString::from(raw.nfkc().collect::<String>()))
    }

    fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

/// True for blocklisted passwords, including list entries padded with digits or symbols and
/// entries repeated ("passwordpassword").
fn is_common(password: &str) -> bool {
    let lower = password.to_lowercase();
    let list = common();
    if list.contains(lower.as_str()) {
        return true;
    }
    let trimmed = lower.trim_matches(|c: char| !c.is_alphabetic());
    let core = if trimmed.is_empty() { lower.as_str() } else { trimmed };
    if list.contains(core) || is_sequence(core) {
        return true;
    }
    let chars: Vec<char> = core.chars().collect();
    for unit in 1..=chars.len() / 2 {
        if chars.len().is_multiple_of(unit) && chars.chunks(unit).all(|c| c == &chars[..unit]) {
            let word: String = chars[..unit].iter().collect();
            if unit < 4 || list.contains(word.as_str()) {
                return true;
            }
        }
    }
    false
}

/// Runs like `1234567890123` or `zyxwvu…`: each character one step from the last.
fn is_sequence(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 4 || !b.iter().all(u8::is_ascii_alphanumeric) {
        return false;
    }
    let step = |x: u8, y: u8, dir: i16| -> bool {
        if x.is_ascii_digit() && y.is_ascii_digit() {
            (i16::from(y) - i16::from(x) - dir).rem_euclid(10) == 0
        } else {
            i16::from(y) - i16::from(x) == dir
        }
    };
    [1i16, -1].iter().any(|&dir| b.windows(2).all(|w| step(w[0], w[1], dir)))
}

type Job = Box<dyn FnOnce() + Send>;

/// A small pool of threads that run at the lowest scheduling priority (`SCHED_IDLE` at nice 19 on
/// Linux, the lowest priority elsewhere): bcrypt uses every idle cycle, yet any other request
/// preempts it at once, so a sign-in flood neither starves the async workers nor the cores they
/// run on.
struct HashPool {
    jobs: std::sync::mpsc::Sender<Job>,
}

/// Moves the calling thread to the lowest priority the platform offers.
fn lowest_priority() {
    #[cfg(target_os = "linux")]
    {
        use thread_priority::{NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy};
        let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
        if thread_priority::set_thread_priority_and_policy(
            thread_priority::thread_native_id(),
            ThreadPriority::Min,
            idle,
        )
        .is_ok()
        {
            return;
        }
    }
    let _ = thread_priority::set_current_thread_priority(thread_priority::ThreadPriority::Min);
}

impl HashPool {
    fn new(threads: usize) -> HashPool {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let rx = Arc::new(std::sync::Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            let _ = std::thread::Builder::new().name(format!("rampart-hash-{i}")).spawn(move || {
                // Best effort: without permission to lower priority, hashing still works.
                lowest_priority();
                loop {
                    let job = match rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    match job {
                        Ok(job) => job(),
                        Err(_) => return, // The hasher was dropped.
                    }
                }
            });
        }
        HashPool { jobs: tx }
    }

    async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, AuthError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        self.jobs.send(job).map_err(|_| AuthError::Internal("hash pool stopped".into()))?;
        rx.await.map_err(|_| AuthError::Internal("hash job lost".into()))
    }
}

/// Hashes and verifies passwords on a dedicated low-priority pool of `concurrency` threads, so a
/// sign-in flood queues there instead of starving other requests.
#[derive(Clone)]
pub struct PasswordHasher {
    cost: u32,
    pepper: hmac::Key,
    pool: Arc<HashPool>,
    dummy: Arc<OnceLock<String>>,
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher").field("cost", &self.cost).finish_non_exhaustive()
    }
}

/// Prefix of the stored form: bcrypt over the base64 of a peppered HMAC-SHA256 of the password.
/// The pre-hash keeps every input at 44 bytes, under bcrypt's 72-byte limit, so no password is
/// silently truncated; base64 avoids bcrypt's NUL-byte pitfall and the pepper defeats "password
/// shucking" (OWASP Password Storage Cheat Sheet, "Pre-Hashing Passwords with bcrypt").
const SCHEME: &str = "$rampart-bcrypt-hmac-sha256$";

impl PasswordHasher {
    pub fn new(cost: u32, pepper: KeyMaterial, concurrency: usize) -> PasswordHasher {
        PasswordHasher {
            cost: cost.max(MIN_BCRYPT_COST),
            pepper: hmac::Key::new(hmac::HMAC_SHA256, pepper.expose()),
            pool: Arc::new(HashPool::new(concurrency)),
            dummy: Arc::new(OnceLock::new()),
        }
    }

    pub fn cost(&self) -> u32 {
        self.cost
    }

    fn prehash(&self, password: &Password) -> Result<String, AuthError> {
        Ok(STANDARD.encode(hmac::sign(&self.pepper, password.expose().as_bytes())))
    }

    /// The stored form of `password`.
    pub async fn hash(&self, password: &Password) -> Result<String, AuthError> {
        let input = zeroize::Zeroizing::new(self.prehash(password)?);
        let cost = self.cost;
        let hashed = self
            .pool
            .run(move || bcrypt::non_truncating_hash(input.as_bytes(), cost))
            .await?
            .map_err(|e| AuthError::Internal(e.to_string()))?;
        Ok(format!("{SCHEME}{hashed}"))
    }

    /// Checks `password` against a stored hash; with no stored hash it still spends the same
    /// work on a dummy, so the answer's timing does not reveal whether the account exists.
    pub async fn verify(&self, password: &Password, stored: Option<&str>) -> Result<bool, AuthError> {
        let input = zeroize::Zeroizing::new(self.prehash(password)?);
        let (target, real) = match stored.and_then(|s| s.strip_prefix(SCHEME)) {
            Some(hash) => (hash.to_owned(), true),
            None => (self.dummy_hash().await?, false),
        };
        let ok =
            self.pool.run(move || bcrypt::non_truncating_verify(input.as_bytes(), &target).unwrap_or(false)).await?;
        Ok(ok && real)
    }

    /// Spends one hash's worth of work, for answers that must take as long as a real one.
    pub async fn burn(&self) -> Result<(), AuthError> {
        self.verify(&Password::for_verification("timing equaliser"), None).await.map(|_| ())
    }

    async fn dummy_hash(&self) -> Result<String, AuthError> {
        if let Some(h) = self.dummy.get() {
            return Ok(h.clone());
        }
        let cost = self.cost;
        let h = self
            .pool
            .run(move || bcrypt::hash("rampart dummy password for timing", cost))
            .await?
            .map_err(|e| AuthError::Internal(e.to_string()))?;
        Ok(self.dummy.get_or_init(|| h).clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(raw: &str, ok: bool) {
        let result = Password::parse_new(raw, &["alice@example.com", "alice", "rampart"]);
        assert_eq!(result.is_ok(), ok, "{raw:?}: {:?}", result.err());
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn password_hashing_threads_run_under_the_idle_scheduling_policy() {
        let pool = HashPool::new(1);
        let policy = pool.run(thread_priority::unix::thread_schedule_policy).await.unwrap().unwrap();
        assert_eq!(
            policy,
            thread_priority::ThreadSchedulePolicy::Normal(thread_priority::NormalThreadSchedulePolicy::Idle)
        );
        let own = thread_priority::unix::thread_schedule_policy().unwrap();
        assert_ne!(own, policy, "the async runtime's threads keep the normal policy");
    }

    #[test]
    fn length_rules_follow_nist_without_composition_rules() {
        check("short one", false);
        check("fourteen chars", false);
        check("violet ocean ladder", true);
        check("all lowercase words here", true);
        check(&"é".repeat(15), false); // a repetition, not length
        check("ünïcödé pässwörd wörks", true);
        check(&"correct horse battery ".repeat(6), false); // 132 characters
    }

    #[test]
    fn common_padded_and_repeated_passwords_are_refused() {
        check("passwordpassword", false);
        check("password12345678", false);
        check("!!!qwertyuiop!!!", false);
        check("123456789012345", false);
        check("aaaaaaaaaaaaaaaa", false);
        check("abcabcabcabcabcabc", false);
        check("dragondragondragon", false);
    }

    #[test]
    fn passwords_built_on_the_account_or_service_are_refused() {
        check("alice-loves-her-cat", false);
        check("my rampart account key", false);
    }

    #[test]
    fn debug_never_shows_the_password() {
        let p = Password::parse_new("violet ocean ladder", &[]).unwrap();
        assert!(!format!("{p:?}").contains("violet"));
    }

    #[tokio::test]
    async fn hashes_verify_and_long_passwords_are_not_truncated() {
        let hasher = PasswordHasher::new(4, KeyMaterial::generate(), 2);
        assert_eq!(hasher.cost(), MIN_BCRYPT_COST, "cost is never below the floor");
        let hasher = PasswordHasher { cost: 4, ..hasher }; // fast for this test only
                                                           // Two passwords sharing their first 72 bytes must not verify against each other.
        let base = "x".repeat(60) + " shared prefix";
        let a = Password::for_verification(&(base.clone() + " ending one"));
        let b = Password::for_verification(&(base + " ending two"));
        let stored = hasher.hash(&a).await.unwrap();
        assert!(stored.starts_with(SCHEME));
        assert!(hasher.verify(&a, Some(&stored)).await.unwrap());
        assert!(!hasher.verify(&b, Some(&stored)).await.unwrap());
        assert!(!hasher.verify(&a, None).await.unwrap(), "no account never verifies");
    }

    #[tokio::test]
    async fn a_different_pepper_does_not_verify() {
        let a = PasswordHasher { cost: 4, ..PasswordHasher::new(4, KeyMaterial::generate(), 1) };
        let b = PasswordHasher { cost: 4, ..PasswordHasher::new(4, KeyMaterial::generate(), 1) };
        let p = Password::for_verification("violet ocean ladder");
        let stored = a.hash(&p).await.unwrap();
        assert!(!b.verify(&p, Some(&stored)).await.unwrap());
    }
}
