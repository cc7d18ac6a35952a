//! etcd's simple tokens: what `Authenticate` hands out and requests carry in the gRPC
//! metadata key `token`. A token is random (`<16 letters>.<log index>`, etcd's shape)
//! and held in this member's memory only, for [`TOKEN_TTL`] after its last use, as
//! etcd's simple tokens are: a client that moves to another member authenticates
//! again there (etcd clients do so on "invalid auth token").
//!
//! A token stays valid only while what it was issued for holds: auth has not been
//! disabled and enabled again since, and the user still exists with the same password
//! hash (a password change or a user deletion voids its tokens on every member, since
//! each checks against the replicated state).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use raftgres_store::auth::AuthState;
use rand::distributions::Alphanumeric;
use rand::Rng;

/// etcd's simple token TTL, refreshed on each use.
pub const TOKEN_TTL: Duration = Duration::from_secs(300);

/// Random letters before the `.` (etcd's `defaultSimpleTokenLength`).
const TOKEN_LETTERS: usize = 16;

/// The tokens this member issued.
#[derive(Debug)]
pub struct Tokens {
    ttl: Duration,
    issued: Mutex<HashMap<String, Issued>>,
}

impl Default for Tokens {
    fn default() -> Self {
        Self::with_ttl(TOKEN_TTL)
    }
}

#[derive(Debug)]
struct Issued {
    user: String,
    password_hash: Option<String>,
    enabled_at: u64,
    expires: Instant,
}

impl Tokens {
    pub fn with_ttl(ttl: Duration) -> Self {
        Self { ttl, issued: Mutex::new(HashMap::new()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Issued>> {
        self.issued.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new token for `user`, valid while its password hash is `password_hash` and
    /// auth stays enabled since `enabled_at`; `index` is the applied log index.
    pub fn issue(&self, user: &str, password_hash: Option<String>, enabled_at: u64, index: u64) -> String {
        let letters: String =
            rand::thread_rng().sample_iter(&Alphanumeric).filter(u8::is_ascii_alphabetic).take(TOKEN_LETTERS).map(char::from).collect();
        let token = format!("{letters}.{index}");
        let now = Instant::now();
        let issued = Issued { user: user.to_string(), password_hash, enabled_at, expires: now + self.ttl };
        let mut all = self.lock();
        all.retain(|_, t| t.expires > now);
        all.insert(token.clone(), issued);
        token
    }

    /// The user `token` was issued to, if it is still valid under `auth`; refreshes its
    /// TTL. An expired or void token is forgotten.
    pub fn user_of(&self, token: &str, auth: &AuthState) -> Option<String> {
        let now = Instant::now();
        let mut all = self.lock();
        let issued = all.get_mut(token)?;
        let holds = issued.expires > now
            && issued.enabled_at == auth.enabled_at()
            && auth.user(&issued.user).is_some_and(|u| u.password_hash == issued.password_hash);
        if !holds {
            all.remove(token);
            return None;
        }
        issued.expires = now + self.ttl;
        Some(issued.user.clone())
    }
}

#[cfg(test)]
mod tests {
    use raftgres_store::auth::{AuthChange, ROOT};

    use super::*;

    /// A token for `user` as `auth` knows it now.
    fn issue(tokens: &Tokens, user: &str, auth: &AuthState, index: u64) -> String {
        tokens.issue(user, auth.user(user).and_then(|u| u.password_hash.clone()), auth.enabled_at(), index)
    }

    fn state() -> AuthState {
        let mut auth = AuthState::default();
        for change in [
            AuthChange::UserAdd { name: ROOT.into(), password_hash: Some("h1".into()) },
            AuthChange::UserGrantRole { user: ROOT.into(), role: ROOT.into() },
            AuthChange::Enable,
        ] {
            auth.apply(&change).expect("apply");
        }
        auth
    }

    #[test]
    fn tokens_have_etcds_shape_and_name_their_user() {
        let tokens = Tokens::default();
        let auth = state();
        let token = issue(&tokens, ROOT, &auth, 42);
        let (letters, index) = token.split_once('.').expect("a dot");
        assert_eq!((letters.len(), index), (16, "42"));
        assert!(letters.chars().all(|c| c.is_ascii_alphabetic()));
        assert_eq!(tokens.user_of(&token, &auth).as_deref(), Some(ROOT));
        assert_eq!(tokens.user_of("nope.1", &auth), None);
        assert_ne!(issue(&tokens, ROOT, &auth, 42), token, "random");
    }

    #[test]
    fn a_password_change_or_re_enable_voids_tokens() {
        let tokens = Tokens::default();
        let mut auth = state();
        let token = issue(&tokens, ROOT, &auth, 1);
        auth.apply(&AuthChange::UserChangePassword { name: ROOT.into(), password_hash: Some("h2".into()) }).expect("passwd");
        assert_eq!(tokens.user_of(&token, &auth), None);
        let token = issue(&tokens, ROOT, &auth, 2);
        auth.apply(&AuthChange::Disable).expect("disable");
        auth.apply(&AuthChange::Enable).expect("enable");
        assert_eq!(tokens.user_of(&token, &auth), None, "issued before the disable");
    }

    #[test]
    fn tokens_expire_unless_used() {
        let tokens = Tokens::with_ttl(Duration::from_millis(300));
        let auth = state();
        let used = issue(&tokens, ROOT, &auth, 1);
        let idle = issue(&tokens, ROOT, &auth, 1);
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(150));
            assert!(tokens.user_of(&used, &auth).is_some(), "refreshed on use");
        }
        assert_eq!(tokens.user_of(&idle, &auth), None, "expired after 450 ms idle");
    }
}
