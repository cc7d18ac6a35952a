//! etcd's authentication state (users, roles, key permissions, the enabled flag and
//! the auth revision), part of the replicated state so every member agrees and it
//! survives restarts, snapshots and backups. It changes only by an [`AuthChange`]
//! through the Raft log ([`Store::auth_change`]); deciding whether a user may do
//! something ([`AuthState::check`]) is pure and reads the local applied state.
//!
//! The rules are etcd 3.4/3.5's: a user holding the `root` role is an administrator
//! with every key permission; auth can be enabled only once the `root` user exists and
//! holds the `root` role (which may be granted without being added first), and while
//! it is enabled the root user, the root role and the root user's root role cannot be
//! removed. Every change that does something raises the auth revision (1 on a fresh
//! cluster). Passwords arrive hashed (the API layer hashes them with bcrypt before
//! proposing, so every replica stores the same bytes); nothing here sees a password.
//! Tokens are not replicated: they belong to the member that issued them.

mod ranges;

use std::collections::{BTreeMap, BTreeSet};

use raftgres_proto::authpb::permission::Type as PermType;
use raftgres_proto::authpb::Permission;
use serde::{Deserialize, Serialize};

pub use ranges::{covers, valid_grant};

use crate::error::StoreError;
use crate::types::{Request, Response};
use crate::Store;

/// The administrator user and role.
pub const ROOT: &str = "root";

/// One user: its bcrypt password hash (None: created with `--no-password`, it cannot
/// authenticate with a password) and its roles.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub password_hash: Option<String>,
    pub roles: BTreeSet<String>,
}

/// The replicated authentication state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthState {
    enabled: bool,
    revision: u64,
    /// The revision auth was last enabled at: tokens issued before it are void (etcd
    /// drops its simple tokens when auth is disabled).
    enabled_at: u64,
    users: BTreeMap<String, User>,
    /// Role name to its permissions, sorted by key as etcd lists them.
    roles: BTreeMap<String, Vec<Permission>>,
}

impl Default for AuthState {
    fn default() -> Self {
        Self { enabled: false, revision: 1, enabled_at: 0, users: BTreeMap::new(), roles: BTreeMap::new() }
    }
}

/// A change of the auth state, as replicated through the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AuthChange {
    Enable,
    Disable,
    UserAdd { name: String, password_hash: Option<String> },
    UserDelete { name: String },
    UserChangePassword { name: String, password_hash: Option<String> },
    UserGrantRole { user: String, role: String },
    UserRevokeRole { user: String, role: String },
    RoleAdd { name: String },
    RoleDelete { name: String },
    RoleGrantPermission { role: String, perm: Option<Permission> },
    RoleRevokePermission { role: String, key: Vec<u8>, range_end: Vec<u8> },
}

/// Why an auth change or check is refused: etcd's errors, with etcd's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum AuthError {
    #[error("etcdserver: root user does not exist")]
    RootUserNotExist,
    #[error("etcdserver: root user does not have root role")]
    RootRoleNotExist,
    #[error("etcdserver: user name already exists")]
    UserAlreadyExist,
    #[error("etcdserver: user name is empty")]
    UserEmpty,
    #[error("etcdserver: user name not found")]
    UserNotFound,
    #[error("etcdserver: role name already exists")]
    RoleAlreadyExist,
    #[error("etcdserver: role name not found")]
    RoleNotFound,
    #[error("etcdserver: role name is empty")]
    RoleEmpty,
    #[error("etcdserver: authentication failed, invalid user ID or password")]
    AuthFailed,
    #[error("etcdserver: permission not given")]
    PermissionNotGiven,
    #[error("etcdserver: permission denied")]
    PermissionDenied,
    #[error("etcdserver: role is not granted to the user")]
    RoleNotGranted,
    #[error("etcdserver: permission is not granted to the role")]
    PermissionNotGranted,
    #[error("etcdserver: authentication is not enabled")]
    AuthNotEnabled,
    #[error("etcdserver: invalid auth token")]
    InvalidAuthToken,
    #[error("etcdserver: invalid auth management")]
    InvalidAuthMgmt,
}

/// What a request needs of its caller once auth is enabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need<'a> {
    /// Any authenticated user.
    User,
    /// The root role.
    Admin,
    /// Root, or the caller is this user (etcd's `user get` of oneself).
    AdminOrSelf(&'a str),
    /// Root, or the caller holds this role (etcd's `role get`).
    AdminOrRole(&'a str),
    /// Read permission on `(key, range_end)`.
    Read(&'a [u8], &'a [u8]),
    /// Write permission on `(key, range_end)`.
    Write(&'a [u8], &'a [u8]),
}

impl AuthState {
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }

    pub fn enabled_at(&self) -> u64 {
        self.enabled_at
    }

    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.get(name)
    }

    pub fn user_names(&self) -> Vec<String> {
        self.users.keys().cloned().collect()
    }

    pub fn role_names(&self) -> Vec<String> {
        self.roles.keys().cloned().collect()
    }

    /// A role's permissions; `RoleNotFound` when there is no such role.
    pub fn role(&self, name: &str) -> Result<&[Permission], AuthError> {
        self.roles.get(name).map(Vec::as_slice).ok_or(AuthError::RoleNotFound)
    }

    fn is_admin(&self, user: &User) -> bool {
        user.roles.contains(ROOT)
    }

    /// Whether `user` (an authenticated name) may do everything in `needs`. Callers
    /// check `enabled` first: with auth disabled nobody is refused.
    pub fn check(&self, user: &str, needs: &[Need<'_>]) -> Result<(), AuthError> {
        let Some(found) = self.users.get(user) else { return Err(AuthError::PermissionDenied) };
        if self.is_admin(found) {
            return Ok(());
        }
        let allowed = |need: &Need<'_>| match *need {
            Need::User => true,
            Need::Admin => false,
            Need::AdminOrSelf(name) => name == user,
            Need::AdminOrRole(role) => found.roles.contains(role),
            Need::Read(key, end) => self.covered(found, key, end, PermType::Read),
            Need::Write(key, end) => self.covered(found, key, end, PermType::Write),
        };
        if needs.iter().all(allowed) {
            Ok(())
        } else {
            Err(AuthError::PermissionDenied)
        }
    }

    /// Whether the user's roles grant `wanted` (READ or WRITE) on the whole interval.
    fn covered(&self, user: &User, key: &[u8], range_end: &[u8], wanted: PermType) -> bool {
        let grants = user
            .roles
            .iter()
            .filter_map(|role| self.roles.get(role))
            .flatten()
            .filter(|p| p.perm_type == wanted as i32 || p.perm_type == PermType::Readwrite as i32)
            .map(|p| (p.key.as_slice(), p.range_end.as_slice()));
        covers(grants, key, range_end)
    }

    /// Applies one change; the auth revision after it.
    pub fn apply(&mut self, change: &AuthChange) -> Result<u64, AuthError> {
        let changed = self.change(change)?;
        if changed {
            self.revision += 1;
            if matches!(change, AuthChange::Enable) {
                self.enabled_at = self.revision;
            }
        }
        Ok(self.revision)
    }

    /// Makes `change`; false when it was already so (nothing to record).
    fn change(&mut self, change: &AuthChange) -> Result<bool, AuthError> {
        match change {
            AuthChange::Enable => {
                let root = self.users.get(ROOT).ok_or(AuthError::RootUserNotExist)?;
                if !self.is_admin(root) {
                    return Err(AuthError::RootRoleNotExist);
                }
                Ok(!std::mem::replace(&mut self.enabled, true))
            }
            AuthChange::Disable => Ok(std::mem::replace(&mut self.enabled, false)),
            AuthChange::UserAdd { name, password_hash } => {
                if name.is_empty() {
                    return Err(AuthError::UserEmpty);
                }
                if self.users.contains_key(name) {
                    return Err(AuthError::UserAlreadyExist);
                }
                self.users.insert(name.clone(), User { password_hash: password_hash.clone(), roles: BTreeSet::new() });
                Ok(true)
            }
            AuthChange::UserDelete { name } => {
                if self.enabled && name == ROOT {
                    return Err(AuthError::InvalidAuthMgmt);
                }
                self.users.remove(name).ok_or(AuthError::UserNotFound)?;
                Ok(true)
            }
            AuthChange::UserChangePassword { name, password_hash } => {
                let user = self.users.get_mut(name).ok_or(AuthError::UserNotFound)?;
                user.password_hash = password_hash.clone();
                Ok(true)
            }
            AuthChange::UserGrantRole { user, role } => {
                if role != ROOT && !self.roles.contains_key(role) {
                    // Checked after the user, as etcd does.
                    self.users.get(user).ok_or(AuthError::UserNotFound)?;
                    return Err(AuthError::RoleNotFound);
                }
                let found = self.users.get_mut(user).ok_or(AuthError::UserNotFound)?;
                Ok(found.roles.insert(role.clone()))
            }
            AuthChange::UserRevokeRole { user, role } => {
                if self.enabled && user == ROOT && role == ROOT {
                    return Err(AuthError::InvalidAuthMgmt);
                }
                let found = self.users.get_mut(user).ok_or(AuthError::UserNotFound)?;
                if !found.roles.remove(role) {
                    return Err(AuthError::RoleNotGranted);
                }
                Ok(true)
            }
            AuthChange::RoleAdd { name } => {
                if name.is_empty() {
                    return Err(AuthError::RoleEmpty);
                }
                if self.roles.contains_key(name) {
                    return Err(AuthError::RoleAlreadyExist);
                }
                self.roles.insert(name.clone(), Vec::new());
                Ok(true)
            }
            AuthChange::RoleDelete { name } => {
                if self.enabled && name == ROOT {
                    return Err(AuthError::InvalidAuthMgmt);
                }
                self.roles.remove(name).ok_or(AuthError::RoleNotFound)?;
                for user in self.users.values_mut() {
                    user.roles.remove(name);
                }
                Ok(true)
            }
            AuthChange::RoleGrantPermission { role, perm } => {
                let perm = perm.as_ref().ok_or(AuthError::PermissionNotGiven)?;
                if !valid_grant(&perm.key, &perm.range_end) || PermType::try_from(perm.perm_type).is_err() {
                    return Err(AuthError::InvalidAuthMgmt);
                }
                let perms = self.roles.get_mut(role).ok_or(AuthError::RoleNotFound)?;
                match perms.iter_mut().find(|p| p.key == perm.key && p.range_end == perm.range_end) {
                    Some(existing) => existing.perm_type = perm.perm_type,
                    None => perms.push(perm.clone()),
                }
                perms.sort_by(|a, b| a.key.cmp(&b.key));
                Ok(true)
            }
            AuthChange::RoleRevokePermission { role, key, range_end } => {
                let perms = self.roles.get_mut(role).ok_or(AuthError::RoleNotFound)?;
                let before = perms.len();
                perms.retain(|p| !(p.key == *key && p.range_end == *range_end));
                if perms.len() == before {
                    return Err(AuthError::PermissionNotGranted);
                }
                Ok(true)
            }
        }
    }
}

impl std::fmt::Display for AuthChange {
    /// What the log shows: names, never password hashes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthChange::Enable => write!(f, "enable"),
            AuthChange::Disable => write!(f, "disable"),
            AuthChange::UserAdd { name, .. } => write!(f, "user add {name}"),
            AuthChange::UserDelete { name } => write!(f, "user delete {name}"),
            AuthChange::UserChangePassword { name, .. } => write!(f, "user passwd {name}"),
            AuthChange::UserGrantRole { user, role } => write!(f, "user {user} grant {role}"),
            AuthChange::UserRevokeRole { user, role } => write!(f, "user {user} revoke {role}"),
            AuthChange::RoleAdd { name } => write!(f, "role add {name}"),
            AuthChange::RoleDelete { name } => write!(f, "role delete {name}"),
            AuthChange::RoleGrantPermission { role, .. } => write!(f, "role {role} grant permission"),
            AuthChange::RoleRevokePermission { role, .. } => write!(f, "role {role} revoke permission"),
        }
    }
}

impl Store {
    /// Replicates one auth change; the auth revision after it, or etcd's refusal.
    pub async fn auth_change(&self, change: AuthChange) -> Result<Result<u64, AuthError>, StoreError> {
        match self.write(Request::Auth(change)).await? {
            Response::Auth(result) => Ok(result),
            other => Err(StoreError::Internal(format!("unexpected answer {other:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user_add(name: &str) -> AuthChange {
        AuthChange::UserAdd { name: name.into(), password_hash: Some("h".into()) }
    }

    fn grant(user: &str, role: &str) -> AuthChange {
        AuthChange::UserGrantRole { user: user.into(), role: role.into() }
    }

    fn perm(kind: PermType, key: &str, end: &str) -> AuthChange {
        let perm = Permission { perm_type: kind as i32, key: key.into(), range_end: end.into() };
        AuthChange::RoleGrantPermission { role: "app".into(), perm: Some(perm) }
    }

    /// root (enabled), app role reading /app/ and writing /app/w/, user alice with it.
    fn enabled_state() -> AuthState {
        let mut s = AuthState::default();
        for c in [
            user_add(ROOT),
            grant(ROOT, ROOT),
            AuthChange::RoleAdd { name: "app".into() },
            perm(PermType::Read, "/app/", "/app0"),
            perm(PermType::Readwrite, "/app/w/", "/app/w0"),
            user_add("alice"),
            grant("alice", "app"),
            AuthChange::Enable,
        ] {
            s.apply(&c).unwrap_or_else(|e| panic!("{c}: {e}"));
        }
        s
    }

    #[test]
    fn enabling_needs_root_with_the_root_role() {
        let mut s = AuthState::default();
        assert_eq!(s.revision(), 1);
        assert_eq!(s.apply(&AuthChange::Enable), Err(AuthError::RootUserNotExist));
        s.apply(&user_add(ROOT)).expect("add root");
        assert_eq!(s.apply(&AuthChange::Enable), Err(AuthError::RootRoleNotExist));
        s.apply(&grant(ROOT, ROOT)).expect("the root role needs no role add");
        let rev = s.apply(&AuthChange::Enable).expect("enable");
        assert!(s.enabled());
        assert_eq!((rev, s.enabled_at()), (4, 4));
        assert_eq!(s.apply(&AuthChange::Enable), Ok(4), "enabling again changes nothing");
    }

    #[test]
    fn root_cannot_be_removed_while_enabled() {
        let mut s = enabled_state();
        assert_eq!(s.apply(&AuthChange::UserDelete { name: ROOT.into() }), Err(AuthError::InvalidAuthMgmt));
        assert_eq!(s.apply(&AuthChange::UserRevokeRole { user: ROOT.into(), role: ROOT.into() }), Err(AuthError::InvalidAuthMgmt));
        assert_eq!(s.apply(&AuthChange::RoleDelete { name: ROOT.into() }), Err(AuthError::InvalidAuthMgmt));
        s.apply(&AuthChange::Disable).expect("disable");
        s.apply(&AuthChange::UserDelete { name: ROOT.into() }).expect("allowed once disabled");
    }

    #[test]
    fn users_and_roles_refuse_bad_names_and_duplicates() {
        let mut s = enabled_state();
        assert_eq!(s.apply(&user_add("")), Err(AuthError::UserEmpty));
        assert_eq!(s.apply(&user_add("alice")), Err(AuthError::UserAlreadyExist));
        assert_eq!(s.apply(&AuthChange::RoleAdd { name: String::new() }), Err(AuthError::RoleEmpty));
        assert_eq!(s.apply(&AuthChange::RoleAdd { name: "app".into() }), Err(AuthError::RoleAlreadyExist));
        assert_eq!(s.apply(&grant("bob", "app")), Err(AuthError::UserNotFound));
        assert_eq!(s.apply(&grant("alice", "nope")), Err(AuthError::RoleNotFound));
        assert_eq!(s.apply(&AuthChange::UserRevokeRole { user: "alice".into(), role: "other".into() }), Err(AuthError::RoleNotGranted));
        let revoke = AuthChange::RoleRevokePermission { role: "app".into(), key: b"/x".to_vec(), range_end: vec![] };
        assert_eq!(s.apply(&revoke), Err(AuthError::PermissionNotGranted));
        let none = AuthChange::RoleGrantPermission { role: "app".into(), perm: None };
        assert_eq!(s.apply(&none), Err(AuthError::PermissionNotGiven));
        assert_eq!(s.apply(&perm(PermType::Read, "/b", "/a")), Err(AuthError::InvalidAuthMgmt));
        let rev = s.revision();
        assert_eq!(s.apply(&grant("alice", "app")), Ok(rev), "a role granted twice changes nothing");
    }

    #[test]
    fn permissions_follow_roles_and_root_has_all() {
        let s = enabled_state();
        assert_eq!(s.check("alice", &[Need::Read(b"/app/x", b"")]), Ok(()));
        assert_eq!(s.check("alice", &[Need::Read(b"/app/", b"/app0")]), Ok(()));
        assert_eq!(s.check("alice", &[Need::Write(b"/app/x", b"")]), Err(AuthError::PermissionDenied), "read only");
        assert_eq!(s.check("alice", &[Need::Write(b"/app/w/x", b""), Need::Read(b"/app/w/x", b"")]), Ok(()));
        assert_eq!(s.check("alice", &[Need::Read(b"/other", b"")]), Err(AuthError::PermissionDenied));
        assert_eq!(s.check("alice", &[Need::User, Need::AdminOrSelf("alice"), Need::AdminOrRole("app")]), Ok(()));
        assert_eq!(s.check("alice", &[Need::Admin]), Err(AuthError::PermissionDenied));
        assert_eq!(s.check("alice", &[Need::AdminOrSelf(ROOT)]), Err(AuthError::PermissionDenied));
        assert_eq!(s.check("ghost", &[Need::User]), Err(AuthError::PermissionDenied));
        assert_eq!(s.check(ROOT, &[Need::Admin, Need::Write(b"", &[0])]), Ok(()));
    }

    #[test]
    fn deleting_a_role_takes_it_from_its_users() {
        let mut s = enabled_state();
        s.apply(&AuthChange::RoleDelete { name: "app".into() }).expect("delete");
        assert!(s.user("alice").expect("alice").roles.is_empty());
        assert_eq!(s.check("alice", &[Need::Read(b"/app/x", b"")]), Err(AuthError::PermissionDenied));
    }

    #[test]
    fn a_grant_on_the_same_range_replaces_its_type() {
        let mut s = enabled_state();
        s.apply(&perm(PermType::Write, "/app/", "/app0")).expect("grant");
        let perms = s.role("app").expect("role");
        assert_eq!(perms.len(), 2);
        assert_eq!(perms[0].perm_type, PermType::Write as i32);
        assert_eq!(s.check("alice", &[Need::Read(b"/app/x", b"")]), Err(AuthError::PermissionDenied));
    }
}
