//! `raftctl show-config` and `raftctl edit-config`: the dynamic configuration in
//! `/config`, shown as YAML; changed with `--replace FILE`, `--apply FILE` (`-` for
//! standard input, with `--force`), `-s key.path=value`, `-p pg_param=value`, or in
//! `$EDITOR`, as patronictl. Every change is validated by the agents' own rules (the timing
//! inequality included) and written with compare-and-swap.

use std::io::Write;

use anyhow::{bail, Context};
use clap::Args;
use raftgres_agent::ops;
use serde_json::Value;

use crate::command::cluster::{confirm, open, ClusterArgs};
use raftgres_client::Api;

#[derive(Debug, Args)]
pub struct ShowConfigArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

#[derive(Debug, Args)]
pub struct EditConfigArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Set a key: `-s ttl=5`, `-s postgresql.use_pg_rewind=false` (values are YAML; `null` removes).
    #[arg(short = 's', long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Set a PostgreSQL parameter: `-p max_connections=200`.
    #[arg(short = 'p', long = "pg", value_name = "PARAM=VALUE")]
    pub pg: Vec<String>,
    /// Merge a YAML file into the configuration (`-` reads standard input; needs --force).
    #[arg(long, value_name = "FILE")]
    pub apply: Option<String>,
    /// Replace the whole configuration with a YAML file (`-` reads standard input; needs --force).
    #[arg(long, value_name = "FILE")]
    pub replace: Option<String>,
    /// Do not show the changes.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub force: bool,
}

/// A YAML document from `FILE` or `-` (standard input), for `--apply`/`--replace`.
fn read_yaml(flag: &str, source: &str) -> anyhow::Result<Value> {
    let text = if source == "-" {
        std::io::read_to_string(std::io::stdin()).with_context(|| format!("{flag} -: reading standard input"))?
    } else {
        std::fs::read_to_string(source).with_context(|| format!("{flag} {source}: cannot read it"))?
    };
    let value: Value = serde_norway::from_str(&text).with_context(|| format!("{flag} {source}: not valid YAML"))?;
    if !value.is_object() && !value.is_null() {
        bail!("{flag} {source}: the configuration must be a mapping of keys, not {value}");
    }
    Ok(if value.is_null() { Value::Object(Default::default()) } else { value })
}

/// The configuration after the changes, in patronictl's order: `--replace` (the file
/// is the whole configuration), then `--apply` (merged in, a null removes a key), then
/// `-s`/`-p`; None when none is given (the editor decides).
pub fn changed(
    current: &Value,
    replace: Option<Value>,
    apply: Option<Value>,
    set: &[String],
    pg: &[String],
) -> anyhow::Result<Option<Value>> {
    if replace.is_none() && apply.is_none() && set.is_empty() && pg.is_empty() {
        return Ok(None);
    }
    let mut new = replace.unwrap_or_else(|| current.clone());
    if let Some(patch) = apply {
        ops::merge(&mut new, &patch);
    }
    if !set.is_empty() || !pg.is_empty() {
        ops::merge(&mut new, &patch_from(set, pg)?);
    }
    Ok(Some(new))
}

pub async fn show(api: &Api, args: ShowConfigArgs) -> anyhow::Result<()> {
    let (_, view) = open(api, &args.cluster).await?;
    let config = view.config.map(|(c, _)| c).unwrap_or(Value::Object(Default::default()));
    print!("{}", serde_norway::to_string(&config)?);
    Ok(())
}

/// `a.b.c=v` → `{"a": {"b": {"c": v}}}` (v parsed as YAML).
pub fn patch_from(set: &[String], pg: &[String]) -> anyhow::Result<Value> {
    let mut patch = Value::Object(Default::default());
    let pairs = set.iter().map(|s| (s.as_str(), "")).chain(pg.iter().map(|s| (s.as_str(), "postgresql.parameters.")));
    for (item, prefix) in pairs {
        let (key, value) = item.split_once('=').with_context(|| format!("{item:?} must be KEY=VALUE"))?;
        if key.trim().is_empty() {
            bail!("{item:?} has an empty key");
        }
        let value: Value = serde_norway::from_str(value).with_context(|| format!("value of {key}"))?;
        let path = format!("{prefix}{}", key.trim());
        let mut node = &mut patch;
        let parts: Vec<&str> = path.split('.').collect();
        for (i, part) in parts.iter().enumerate() {
            let obj = node.as_object_mut().context("conflicting keys")?;
            if i + 1 == parts.len() {
                obj.insert((*part).to_string(), value.clone());
                break;
            }
            node = obj.entry((*part).to_string()).or_insert_with(|| Value::Object(Default::default()));
        }
    }
    Ok(patch)
}

pub async fn edit(api: &Api, args: EditConfigArgs) -> anyhow::Result<()> {
    let (dcs, view) = open(api, &args.cluster).await?;
    let current = view.config.clone().map(|(c, _)| c).unwrap_or(Value::Object(Default::default()));
    let from_stdin = args.apply.as_deref() == Some("-") || args.replace.as_deref() == Some("-");
    if from_stdin && !args.force {
        bail!("the changes come from standard input, so there is no terminal to confirm them on: add --force (as patronictl)");
    }
    let replace = args.replace.as_deref().map(|f| read_yaml("--replace", f)).transpose()?;
    let apply = args.apply.as_deref().map(|f| read_yaml("--apply", f)).transpose()?;
    let new = match changed(&current, replace, apply, &args.set, &args.pg)? {
        Some(new) => new,
        None => edit_in_editor(&current)?,
    };
    if new == current {
        if !args.quiet {
            println!("no change");
        }
        return Ok(());
    }
    if !args.quiet {
        print_diff(&current, &new)?;
    }
    confirm("Apply these changes?", args.force)?;
    ops::replace_config(&dcs, &new).await?;
    println!("configuration changed; every agent applies it in its next cycle");
    Ok(())
}

fn edit_in_editor(current: &Value) -> anyhow::Result<Value> {
    let editor = std::env::var("EDITOR").unwrap_or_else(|_| "vi".into());
    let mut file = tempfile::Builder::new().suffix(".yaml").tempfile()?;
    file.write_all(serde_norway::to_string(current)?.as_bytes())?;
    let status = std::process::Command::new(&editor).arg(file.path()).status().with_context(|| format!("running {editor}"))?;
    if !status.success() {
        bail!("{editor} exited with {status}; nothing changed");
    }
    let text = std::fs::read_to_string(file.path())?;
    serde_norway::from_str(&text).context("the edited configuration is not valid YAML; nothing changed")
}

fn print_diff(old: &Value, new: &Value) -> anyhow::Result<()> {
    let (old, new) = (serde_norway::to_string(old)?, serde_norway::to_string(new)?);
    for line in old.lines().filter(|l| !new.lines().any(|n| n == *l)) {
        println!("- {line}");
    }
    for line in new.lines().filter(|l| !old.lines().any(|o| o == *l)) {
        println!("+ {line}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_patches() {
        let p = patch_from(&["ttl=5".into(), "postgresql.use_pg_rewind=false".into()], &["max_connections=200".into()]).expect("patch");
        assert_eq!(p, serde_json::json!({"ttl": 5, "postgresql": {"use_pg_rewind": false, "parameters": {"max_connections": 200}}}));
        assert!(patch_from(&["ttl".into()], &[]).is_err());
        assert!(patch_from(&["=1".into()], &[]).is_err());
        assert_eq!(patch_from(&["pause=null".into()], &[]).expect("null"), serde_json::json!({"pause": null}));
    }

    #[test]
    fn replace_then_apply_then_set() {
        use serde_json::json;
        let current = json!({"ttl": 30, "loop_wait": 10, "postgresql": {"parameters": {"work_mem": "4MB"}}});
        assert_eq!(changed(&current, None, None, &[], &[]).expect("nothing"), None, "the editor decides");
        let applied = changed(&current, None, Some(json!({"ttl": 20, "loop_wait": null})), &[], &[]).expect("apply");
        assert_eq!(applied, Some(json!({"ttl": 20, "postgresql": {"parameters": {"work_mem": "4MB"}}})));
        let replaced = changed(&current, Some(json!({"ttl": 40})), Some(json!({"retry_timeout": 10})), &[], &["work_mem=8MB".into()]);
        assert_eq!(
            replaced.expect("replace"),
            Some(json!({"ttl": 40, "retry_timeout": 10, "postgresql": {"parameters": {"work_mem": "8MB"}}}))
        );
    }

    #[test]
    fn yaml_files_must_hold_a_mapping() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.yml");
        std::fs::write(&path, "- a list\n").expect("write");
        let e = read_yaml("--apply", path.to_str().expect("utf-8")).expect_err("a list").to_string();
        assert!(e.contains("must be a mapping of keys"), "{e}");
        std::fs::write(&path, "ttl: [\n").expect("write");
        let e = format!("{:#}", read_yaml("--replace", path.to_str().expect("utf-8")).expect_err("bad YAML"));
        assert!(e.starts_with("--replace") && e.contains("not valid YAML"), "{e}");
        assert!(read_yaml("--apply", "/nonexistent/c.yml").expect_err("missing").to_string().contains("cannot read it"));
    }
}
