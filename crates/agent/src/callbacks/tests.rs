use super::*;

/// The `action role` lines a run of events calls for, from a fresh agent.
fn lines(events: &[Event]) -> Vec<String> {
    let mut tracker = Tracker::default();
    events.iter().filter_map(|e| tracker.on(*e)).map(|c| format!("{} {}", c.action.as_str(), c.role.as_str())).collect()
}

#[test]
fn patronis_sequences() {
    use Event::*;
    use Role::{Primary, Replica};
    let rows: [(&str, &[Event], &[&str]); 9] = [
        ("bootstrap", &[Started(Primary), Running(Primary), Running(Primary)], &["on_start primary"]),
        ("a clone joins", &[Started(Replica), Running(Replica)], &["on_start replica"]),
        (
            "a replica promoted in a failover",
            &[Started(Replica), Promoted, Running(Primary)],
            &["on_start replica", "on_role_change primary"],
        ),
        (
            "a switchover's old primary",
            &[Running(Primary), Stopped(Primary), Started(Replica)],
            &["on_start primary", "on_stop primary", "on_role_change replica"],
        ),
        ("a killed primary's agent, back: a new run starts a replica", &[Started(Replica)], &["on_start replica"]),
        (
            "a replica stopped and started again (a stalled or diverged one)",
            &[Running(Replica), Stopped(Replica), Started(Replica)],
            &["on_start replica", "on_stop replica", "on_start replica"],
        ),
        (
            "a crashed primary restarted in place, then a switchover aborted",
            &[Running(Primary), Started(Primary), Stopped(Primary), Started(Primary)],
            &["on_start primary", "on_start primary", "on_stop primary", "on_start primary"],
        ),
        (
            "reloads and restarts keep the role; a reload alone does not count as a first call",
            &[Reloaded(Replica), Running(Replica), Restarted(Replica), Reloaded(Replica), Running(Replica)],
            &["on_reload replica", "on_start replica", "on_restart replica", "on_reload replica"],
        ),
        ("an unknown role calls nothing", &[Running(Role::Uninitialized), Stopped(Role::Uninitialized)], &[]),
    ];
    for (case, events, expected) in rows {
        assert_eq!(lines(events), expected, "{case}");
    }
    // PostgreSQL seen running with a role not known yet is no first call.
    assert_eq!(lines(&[Running(Role::Uninitialized), Running(Replica)]), ["on_start replica"]);
}

#[test]
fn commands_split_into_words_and_take_patronis_arguments() {
    let commands = Commands { on_role_change: Some("/bin/echo --vip '10.0.0.9/24' \"dev eth0\"".into()), ..Default::default() };
    commands.check().expect("valid");
    let call = Call { action: CallbackAction::OnRoleChange, role: CallbackRole::Primary };
    assert_eq!(
        commands.argv(call, "demo").expect("configured"),
        ["/bin/echo", "--vip", "10.0.0.9/24", "dev eth0", "on_role_change", "primary", "demo"]
    );
    assert_eq!(commands.argv(Call { action: CallbackAction::OnStart, ..call }, "demo"), None, "no on_start command");
}

#[test]
fn bad_commands_name_their_key() {
    let bad = |c: Commands| c.check().expect_err("invalid").0;
    assert_eq!(
        bad(Commands { on_stop: Some("/bin/true 'oops".into()), ..Default::default() }),
        "postgresql.callbacks.on_stop: unbalanced quotes in \"/bin/true 'oops\""
    );
    assert_eq!(
        bad(Commands { on_reload: Some("  ".into()), ..Default::default() }),
        "postgresql.callbacks.on_reload: the command is empty"
    );
    assert_eq!(
        bad(Commands { on_start: Some("/nonexistent/vip.sh up".into()), ..Default::default() }),
        "postgresql.callbacks.on_start: /nonexistent/vip.sh does not exist"
    );
    Commands { on_start: Some("logger -t raftgres".into()), ..Default::default() }.check().expect("a program on PATH is not looked up");
}
