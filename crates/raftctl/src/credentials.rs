//! The etcd user raftctl authenticates as when the store has etcd auth enabled, taken
//! as etcdctl takes it: `--user USER[:PASSWORD]`, or `--user USER --password PASSWORD`
//! (the user is then the whole of `--user`), else `$RAFTCTL_USER`/`$RAFTCTL_PASSWORD`,
//! else `$ETCDCTL_USER`/`$ETCDCTL_PASSWORD`. A user without a password is asked for it
//! on the terminal (echo off); without a terminal that is one error naming the ways
//! to give it. No user: raftctl calls without a token, as etcdctl does.
//!
//! A node's file (`-c raftgres.yml`) has no etcd user to offer: the agent needs none
//! (its in-process channel to the store is trusted as root), so there is no key for one.

use anyhow::bail;
use clap::Args;
use raftgres_client::Credentials;

use crate::command::cluster::{prompt, Echo};

/// The etcd user flag (global: it may follow the command, as etcdctl's).
#[derive(Debug, Default, Args)]
pub struct UserArgs {
    /// etcd user, for a store with etcd auth enabled: USER or USER:PASSWORD (etcdctl's
    /// --user); the password is asked for when not given. Default: $RAFTCTL_USER, then $ETCDCTL_USER.
    #[arg(long, global = true, value_name = "USER[:PASSWORD]")]
    pub user: Option<String>,
}

/// What the flags and variables give.
#[derive(Debug, PartialEq, Eq)]
pub enum Wanted {
    /// No user: calls carry no token.
    Anonymous,
    Complete(Credentials),
    /// A user whose password must be asked for.
    NeedsPassword(String),
}

/// The user and password by the order of the module doc; `env` reads a variable.
pub fn wanted(user: Option<&str>, password: Option<&str>, env: impl Fn(&str) -> Option<String>) -> anyhow::Result<Wanted> {
    let user = user.map(str::to_string).or_else(|| env("RAFTCTL_USER")).or_else(|| env("ETCDCTL_USER"));
    let password = password.map(str::to_string).or_else(|| env("RAFTCTL_PASSWORD")).or_else(|| env("ETCDCTL_PASSWORD"));
    let Some(user) = user else {
        if password.is_some() {
            bail!("an etcd password is given (--password, $RAFTCTL_PASSWORD or $ETCDCTL_PASSWORD) without a user: give --user USER");
        }
        return Ok(Wanted::Anonymous);
    };
    let (user, password) = match (password, user.split_once(':')) {
        (Some(password), _) => (user, Some(password)),
        (None, Some((name, password))) => (name.to_string(), Some(password.to_string())),
        (None, None) => (user, None),
    };
    if user.is_empty() {
        bail!("--user: the etcd user name is empty (USER or USER:PASSWORD)");
    }
    Ok(match password {
        Some(password) => Wanted::Complete(Credentials { user, password }),
        None => Wanted::NeedsPassword(user),
    })
}

/// The credentials to connect with, asking for a missing password on the terminal.
pub fn resolve(user: Option<&str>, password: Option<&str>) -> anyhow::Result<Option<Credentials>> {
    match wanted(user, password, |v| std::env::var(v).ok())? {
        Wanted::Anonymous => Ok(None),
        Wanted::Complete(credentials) => Ok(Some(credentials)),
        Wanted::NeedsPassword(user) => {
            let otherwise = format!(" (etcd user {user}): give it as --user {user}:PASSWORD, --password, or $RAFTCTL_PASSWORD");
            let password = prompt("Password", Echo::Off, &otherwise)?;
            Ok(Some(Credentials { user, password }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string())
    }

    fn complete(user: &str, password: &str) -> Wanted {
        Wanted::Complete(Credentials { user: user.into(), password: password.into() })
    }

    #[test]
    fn etcdctls_forms_and_order() {
        let none = env(&[]);
        assert_eq!(wanted(None, None, &none).expect("none"), Wanted::Anonymous);
        assert_eq!(wanted(Some("root:pw"), None, &none).expect("user:pw"), complete("root", "pw"));
        assert_eq!(wanted(Some("root:a:b"), None, &none).expect("colon in pw"), complete("root", "a:b"));
        assert_eq!(wanted(Some("odd:name"), Some("pw"), &none).expect("--password"), complete("odd:name", "pw"));
        assert_eq!(wanted(Some("root"), None, &none).expect("prompt"), Wanted::NeedsPassword("root".into()));
        let both = env(&[("RAFTCTL_USER", "r"), ("RAFTCTL_PASSWORD", "rp"), ("ETCDCTL_USER", "e:ep"), ("ETCDCTL_PASSWORD", "x")]);
        assert_eq!(wanted(None, None, &both).expect("raftctl's"), complete("r", "rp"));
        assert_eq!(wanted(Some("flag:fp"), None, &both).expect("flag user, variable password"), complete("flag:fp", "rp"));
        let etcdctl = env(&[("ETCDCTL_USER", "e:ep")]);
        assert_eq!(wanted(None, None, &etcdctl).expect("etcdctl's"), complete("e", "ep"));
    }

    #[test]
    fn a_password_without_a_user_or_an_empty_name_is_refused() {
        let err = wanted(None, Some("pw"), env(&[])).expect_err("no user");
        assert!(err.to_string().contains("without a user: give --user"), "{err}");
        let err = wanted(None, None, env(&[("ETCDCTL_PASSWORD", "pw")])).expect_err("no user");
        assert!(err.to_string().contains("without a user"), "{err}");
        let err = wanted(Some(":pw"), None, env(&[])).expect_err("empty");
        assert!(err.to_string().contains("user name is empty"), "{err}");
    }
}
