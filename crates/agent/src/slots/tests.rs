use serde_json::json;

use super::*;

fn logical(database: &str, plugin: &str) -> SlotKind {
    SlotKind::Logical { database: database.into(), plugin: plugin.into() }
}

#[derive(Debug)]
struct Config {
    permanent: PermanentSlots,
    ignore: IgnoreSlots,
}

impl Config {
    fn wanted(&self) -> Wanted<'_> {
        Wanted { permanent: &self.permanent, ignore: &self.ignore }
    }
}

fn read(slots: Value, ignore: Value) -> Result<Config, String> {
    Ok(Config {
        permanent: PermanentSlots::read(Some(&slots)).map_err(|e| e.0)?,
        ignore: IgnoreSlots::read(Some(&ignore)).map_err(|e| e.0)?,
    })
}

#[test]
fn patronis_format_is_read() {
    let c = read(
        json!({"cdc": {"type": "logical", "database": "app", "plugin": "pgoutput"}, "archiver": {"type": "physical"}, "dr": null,
               "implied": {"database": "app", "plugin": "test_decoding"}}),
        json!([{"name": "debezium"}, {"type": "logical", "database": "legacy"}]),
    )
    .expect("valid");
    let kinds: Vec<(&str, &SlotKind)> = c.permanent.0.iter().map(|(n, k)| (n.as_str(), k)).collect();
    assert_eq!(
        kinds,
        [
            ("archiver", &SlotKind::Physical),
            ("cdc", &logical("app", "pgoutput")),
            ("dr", &SlotKind::Physical),
            ("implied", &logical("app", "test_decoding"))
        ]
    );
    assert!(c.permanent.has_logical());
    assert!(c.ignore.ignored("debezium", &SlotKind::Physical));
    assert!(c.ignore.ignored("anything", &logical("legacy", "wal2json")));
    assert!(!c.ignore.ignored("anything", &logical("app", "wal2json")), "another database");
    assert!(!c.ignore.ignored("anything", &SlotKind::Physical), "a physical slot has no database");
    assert_eq!(PermanentSlots::read(Some(&Value::Null)), Ok(PermanentSlots::default()));
    assert_eq!(IgnoreSlots::read(None), Ok(IgnoreSlots::default()));
    let back = (serde_json::to_value(&c.permanent).expect("json"), serde_json::to_value(&c.ignore).expect("json"));
    assert_eq!(back.0["implied"], json!({"type": "logical", "database": "app", "plugin": "test_decoding"}));
    assert_eq!(back.0["dr"], json!({"type": "physical"}));
    assert_eq!(back.1, json!([{"name": "debezium"}, {"type": "logical", "database": "legacy"}]));
    assert_eq!(serde_json::from_value::<PermanentSlots>(back.0).expect("reads back"), c.permanent);
}

#[test]
fn bad_slots_are_refused_with_one_error_each() {
    let rows: [(Value, Value, &str); 12] = [
        (json!([1]), json!(null), "slots must be a mapping of slot names"),
        (json!({"Cdc": {"type": "physical"}}), json!(null), "slots.Cdc: \"Cdc\" is not a replication slot name"),
        (json!({"a-b": {}}), json!(null), "slots.a-b: \"a-b\" is not a replication slot name"),
        (json!({"x".repeat(64): {}}), json!(null), "is not a replication slot name (lower case letters, digits and underscores, 1 to 63"),
        (json!({"cdc": {"type": "logical", "database": "app"}}), json!(null), "slots.cdc: a logical slot needs a database and a plugin"),
        (json!({"cdc": {"type": "logical"}}), json!(null), "slots.cdc: a logical slot needs a database and a plugin"),
        (json!({"cdc": {"type": "physical", "plugin": "pgoutput"}}), json!(null), "slots.cdc: a physical slot takes no database or plugin"),
        (json!({"cdc": {"type": "phisical"}}), json!(null), "slots.cdc.type must be physical or logical, not \"phisical\""),
        (json!({"cdc": {"typ": "physical"}}), json!(null), "slots.cdc.typ is not a known setting (type, database, plugin)"),
        (json!({"cdc": {"type": "logical", "database": "", "plugin": "p"}}), json!(null), "slots.cdc.database must be a non-empty string"),
        (json!({}), json!([{}]), "ignore_slots[0] matches every slot: give at least one of name, type, database, plugin"),
        (json!({}), json!({"name": "x"}), "ignore_slots must be a list of"),
    ];
    for (slots, ignore, expected) in rows {
        let e = read(slots.clone(), ignore).expect_err("refused");
        assert!(e.contains(expected), "{slots}: {e}");
    }
    let e = read(json!({}), json!([{"name": "x", "kind": "logical"}])).expect_err("unknown key");
    assert_eq!(e, "ignore_slots[0].kind is not a known setting (name, type, database, plugin)");
}

#[test]
fn a_logical_slot_may_not_take_a_members_slot_name() {
    let c = read(json!({"node_2": {"database": "a", "plugin": "b"}, "node_3": {"type": "physical"}}), json!(null)).expect("valid");
    let e = c.permanent.check_members(&["node1".to_string(), "node-2".to_string()]).expect_err("clash").0;
    assert_eq!(e, "slots.node_2 is logical, but member node-2 replicates through a physical slot of that name: rename the slot");
    c.permanent.check_members(&["node-3".to_string()]).expect("a physical one is the member's slot kept while it is away");
}

fn slot(name: &str, kind: SlotKind, active: bool, position: Option<u64>) -> Existing {
    Existing { name: name.into(), kind, active, position }
}

fn create(name: &str, kind: SlotKind) -> Step {
    Step::Create { name: name.into(), kind }
}

fn drop_unknown(name: &str) -> Step {
    Step::Drop { name: name.into(), why: "neither a member's nor a permanent slot (nor in ignore_slots)" }
}

#[test]
fn the_slot_plan() {
    let config = read(
        json!({"cdc": {"type": "logical", "database": "app", "plugin": "pgoutput"}, "archiver": {"type": "physical"},
               "node2": {"type": "physical"}}),
        json!([{"name": "keep_me"}, {"type": "logical", "plugin": "wal2json"}]),
    )
    .expect("valid");
    let members = vec!["node1".to_string(), "node2".to_string(), "node3".to_string()];
    let primary = Role::Primary { member_slots: vec!["node2".into(), "node3".into()] };
    let replica = |published: &[(&str, u64)]| Role::Replica { published: published.iter().map(|(n, l)| (n.to_string(), *l)).collect() };
    let cdc = || logical("app", "pgoutput");
    let advance = |name: &str, database: Option<&str>, to: u64| Step::Advance { name: name.into(), database: database.map(Into::into), to };
    let none: &[(&str, u64)] = &[];
    type Row<'a> = (&'a str, Role, &'a str, Vec<Existing>, Vec<Step>, &'a [(&'a str, u64)]);
    let rows: Vec<Row> = vec![
        (
            "a fresh primary creates the members' and the permanent slots; node2's permanent slot is its member slot",
            primary.clone(),
            "node1",
            vec![],
            vec![
                create("archiver", SlotKind::Physical),
                create("cdc", cdc()),
                create("node2", SlotKind::Physical),
                create("node3", SlotKind::Physical),
            ],
            none,
        ),
        (
            "a steady primary publishes its permanent slots' positions (node2's too) and drops what nobody wants",
            primary.clone(),
            "node1",
            vec![
                slot("archiver", SlotKind::Physical, false, Some(100)),
                slot("cdc", cdc(), true, Some(200)),
                slot("node2", SlotKind::Physical, true, Some(300)),
                slot("node3", SlotKind::Physical, true, Some(300)),
                slot("old_member", SlotKind::Physical, false, Some(10)),
                slot("busy", SlotKind::Physical, true, Some(10)),
                slot("keep_me", logical("x", "y"), false, Some(10)),
                slot("json", logical("app", "wal2json"), false, Some(10)),
                slot("stray", logical("app", "pgoutput"), false, Some(10)),
            ],
            vec![drop_unknown("old_member"), drop_unknown("stray")],
            &[("archiver", 100), ("cdc", 200), ("node2", 300)],
        ),
        (
            "a permanent slot of the wrong kind is dropped and created again, unless in use",
            primary.clone(),
            "node1",
            vec![
                slot("cdc", logical("app", "test_decoding"), false, Some(5)),
                slot("archiver", cdc(), true, Some(5)),
                slot("node2", SlotKind::Physical, false, None),
                slot("node3", SlotKind::Physical, false, None),
            ],
            vec![Step::Drop { name: "cdc".into(), why: "it is not the configured kind" }, create("cdc", cdc())],
            none,
        ),
        (
            "node2 as a replica: never its own slot; physical ones created, the logical one copied once published",
            replica(&[("cdc", 500), ("archiver", 400)]),
            "node2",
            vec![slot("node3", SlotKind::Physical, false, Some(1))],
            vec![drop_unknown("node3"), create("archiver", SlotKind::Physical), Step::Copy { name: "cdc".into() }],
            none,
        ),
        (
            "a replica waits for the primary to publish a logical slot before copying it",
            replica(&[]),
            "node3",
            vec![],
            vec![create("archiver", SlotKind::Physical), create("node2", SlotKind::Physical)],
            none,
        ),
        (
            "a replica advances its copies to the published positions, never back, and never an active one",
            replica(&[("cdc", 500), ("archiver", 400), ("node2", 50)]),
            "node3",
            vec![
                slot("cdc", cdc(), false, Some(450)),
                slot("archiver", SlotKind::Physical, false, Some(400)),
                slot("node2", SlotKind::Physical, true, Some(10)),
            ],
            vec![advance("cdc", Some("app"), 500)],
            none,
        ),
        (
            "a replica's logical copy ahead of the primary's slot is dropped (copied again next cycle); a physical one is left",
            replica(&[("cdc", 500), ("archiver", 400), ("node2", 50)]),
            "node3",
            vec![
                slot("cdc", cdc(), false, Some(600)),
                slot("archiver", SlotKind::Physical, false, Some(450)),
                slot("node2", SlotKind::Physical, false, Some(50)),
            ],
            vec![Step::Drop { name: "cdc".into(), why: "it is ahead of the primary's" }],
            none,
        ),
        (
            "a replica's logical slot of the wrong kind is dropped; the copy comes next cycle",
            replica(&[("cdc", 500)]),
            "node3",
            vec![
                slot("cdc", logical("other", "pgoutput"), false, Some(1)),
                slot("archiver", SlotKind::Physical, false, Some(1)),
                slot("node2", SlotKind::Physical, false, Some(1)),
            ],
            vec![Step::Drop { name: "cdc".into(), why: "it is not the configured kind" }],
            none,
        ),
    ];
    for (what, role, me, existing, steps, publish) in rows {
        let p = plan(&role, config.wanted(), me, &members, &existing);
        assert_eq!(p.steps, steps, "{what}");
        let publish: BTreeMap<String, u64> = publish.iter().map(|(n, l)| (n.to_string(), *l)).collect();
        assert_eq!(p.publish, publish, "{what}");
        assert!(p.warnings.is_empty() || what.contains("unless in use"), "{what}: {:?}", p.warnings);
    }
}

#[test]
fn a_logical_slot_clashing_with_a_member_is_left_out_with_a_warning() {
    let config = read(json!({"node3": {"type": "logical", "database": "a", "plugin": "b"}}), json!(null)).expect("valid");
    let members = vec!["node1".to_string(), "node3".to_string()];
    let p = plan(&Role::Primary { member_slots: vec!["node3".into()] }, config.wanted(), "node1", &members, &[]);
    assert_eq!(p.steps, [create("node3", SlotKind::Physical)]);
    assert_eq!(p.warnings, ["permanent slot node3 is logical, but a member replicates through a physical slot of that name"]);
}
