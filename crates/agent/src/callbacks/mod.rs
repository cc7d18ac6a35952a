//! Patroni's callbacks (`postgresql.callbacks`): a user's command run as
//! `<command> <action> <role> <scope>` when the agent starts, stops, restarts or reloads
//! PostgreSQL or changes its role, e.g. to move a virtual IP or repoint pgbouncer.
//!
//! Owns: the section's commands ([`Commands`], checked when the file is read), the pure
//! choice of which callback an effect calls ([`Tracker`], Patroni's sequence), and their
//! running in the background ([`runner`]). Must not decide anything about PostgreSQL:
//! the HA loop tells the tracker what it did ([`Event`]), after it did it.
//!
//! Patroni's sequence, as `Postgresql.call_nowait`, `start`, `stop`, `follow` and
//! `promote` make it: a start calls `on_start` with the role PostgreSQL starts as; a
//! stop the agent makes calls `on_stop`; a restart on request `on_restart`; a reload
//! `on_reload`; a promotion `on_role_change primary`; and a former primary (stopped or
//! crashed) that starts again as a replica under the same agent calls `on_role_change
//! replica` instead of `on_start`. An agent that finds PostgreSQL already running and
//! has called nothing yet calls `on_start` once (Patroni's `cb_called`). The decision
//! is made whether or not a command is configured, as Patroni's is, so a callback
//! added later by a reload does not replay the past.

pub mod runner;

use serde::Deserialize;

use crate::cluster::Role;
use crate::invalid::Invalid;

/// `postgresql.callbacks:` the command of each action (Patroni's names); a command is
/// split into words as a POSIX shell would (quotes kept together), not run by a shell.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Commands {
    pub on_start: Option<String>,
    pub on_stop: Option<String>,
    pub on_restart: Option<String>,
    pub on_reload: Option<String>,
    pub on_role_change: Option<String>,
}

impl Commands {
    fn command(&self, action: CallbackAction) -> Option<&str> {
        match action {
            CallbackAction::OnStart => self.on_start.as_deref(),
            CallbackAction::OnStop => self.on_stop.as_deref(),
            CallbackAction::OnRestart => self.on_restart.as_deref(),
            CallbackAction::OnReload => self.on_reload.as_deref(),
            CallbackAction::OnRoleChange => self.on_role_change.as_deref(),
        }
    }

    /// The program and arguments of `call` (its command's words, then action, role and
    /// `scope`), or `None` when that action has no command.
    pub fn argv(&self, call: Call, scope: &str) -> Option<Vec<String>> {
        let mut words = shlex::split(self.command(call.action)?).filter(|w| !w.is_empty())?;
        words.extend([call.action.as_str().to_string(), call.role.as_str().to_string(), scope.to_string()]);
        Some(words)
    }

    /// Every command given splits into words and names a program (one that is a path
    /// must exist); the error names the key.
    pub fn check(&self) -> Result<(), Invalid> {
        for action in CallbackAction::ALL {
            let Some(command) = self.command(action) else { continue };
            let key = format!("postgresql.callbacks.{}", action.as_str());
            let words = shlex::split(command).ok_or_else(|| Invalid(format!("{key}: unbalanced quotes in {command:?}")))?;
            let program = words.first().filter(|w| !w.is_empty()).ok_or_else(|| Invalid(format!("{key}: the command is empty")))?;
            if program.contains('/') && !std::path::Path::new(program).exists() {
                return Err(Invalid(format!("{key}: {program} does not exist")));
            }
        }
        Ok(())
    }
}

/// The first argument of a callback (Patroni's `CallbackAction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackAction {
    OnStart,
    OnStop,
    OnRestart,
    OnReload,
    OnRoleChange,
}

impl CallbackAction {
    pub const ALL: [CallbackAction; 5] = [Self::OnStart, Self::OnStop, Self::OnRestart, Self::OnReload, Self::OnRoleChange];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::OnStart => "on_start",
            Self::OnStop => "on_stop",
            Self::OnRestart => "on_restart",
            Self::OnReload => "on_reload",
            Self::OnRoleChange => "on_role_change",
        }
    }
}

/// The second argument: the role, by Patroni 4's names (`demoted` is the role of a
/// stopped former primary until it starts again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackRole {
    Primary,
    Replica,
    Demoted,
}

impl CallbackRole {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Primary => "primary",
            Self::Replica => "replica",
            Self::Demoted => "demoted",
        }
    }

    /// The role PostgreSQL runs as; `None` when not known.
    fn of(role: Role) -> Option<Self> {
        match role {
            Role::Primary => Some(Self::Primary),
            Role::Replica | Role::StandbyLeader => Some(Self::Replica),
            Role::Uninitialized => None,
        }
    }
}

/// What an effect of the HA loop just did to PostgreSQL, with the role it runs (or ran) as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The agent started it.
    Started(Role),
    /// It was seen running (every cycle; counts only before any other event).
    Running(Role),
    /// The agent stopped or killed it.
    Stopped(Role),
    /// The agent restarted it on request.
    Restarted(Role),
    /// The agent reloaded its configuration.
    Reloaded(Role),
    /// The agent promoted it.
    Promoted,
}

/// One callback to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Call {
    pub action: CallbackAction,
    pub role: CallbackRole,
}

/// What the agent remembers to choose the next callback (Patroni's `cb_called` and role).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tracker {
    /// A callback other than `on_reload` was chosen in this run of the agent.
    called: bool,
    /// The role of the last callback chosen (`Demoted` after a primary's stop).
    last: Option<CallbackRole>,
}

impl Tracker {
    /// The callback `event` calls for, if any; remembers it.
    pub fn on(&mut self, event: Event) -> Option<Call> {
        use CallbackAction::*;
        let call = match event {
            Event::Started(role) => {
                let role = CallbackRole::of(role)?;
                let was_primary = matches!(self.last, Some(CallbackRole::Primary | CallbackRole::Demoted));
                let action = if self.called && was_primary && role == CallbackRole::Replica { OnRoleChange } else { OnStart };
                Call { action, role }
            }
            Event::Running(_) if self.called => return None,
            Event::Running(role) => Call { action: OnStart, role: CallbackRole::of(role)? },
            Event::Stopped(role) => Call { action: OnStop, role: CallbackRole::of(role)? },
            Event::Restarted(role) => Call { action: OnRestart, role: CallbackRole::of(role)? },
            Event::Reloaded(role) => Call { action: OnReload, role: CallbackRole::of(role)? },
            Event::Promoted => Call { action: OnRoleChange, role: CallbackRole::Primary },
        };
        self.called |= call.action != OnReload;
        self.last = Some(match call {
            Call { action: OnStop, role: CallbackRole::Primary } => CallbackRole::Demoted,
            Call { role, .. } => role,
        });
        Some(call)
    }
}

#[cfg(test)]
mod tests;
