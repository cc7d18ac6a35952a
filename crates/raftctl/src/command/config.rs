//! `raftctl show-config` and `raftctl edit-config`: the dynamic configuration in
//! `/config`, shown as YAML; changed with `-s key.path=value`, `-p pg_param=value`, or
//! in `$EDITOR`. Every change is validated by the agents' own rules (the timing
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
    /// Do not ask for confirmation.
    #[arg(long)]
    pub force: bool,
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
    let new = if args.set.is_empty() && args.pg.is_empty() {
        edit_in_editor(&current)?
    } else {
        let mut new = current.clone();
        ops::merge(&mut new, &patch_from(&args.set, &args.pg)?);
        new
    };
    if new == current {
        println!("no change");
        return Ok(());
    }
    print_diff(&current, &new)?;
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
}
