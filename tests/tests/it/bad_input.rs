//! Bad command lines give one clear line and a non-zero exit, never a panic.

use std::process::Command;

use raftgres_tests::{bin, free_port};

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(bin("raftgres")).args(args).output().expect("run raftgres");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code().unwrap_or(-1), stderr)
}

fn base(dir: &str, peer: u16, client: u16) -> Vec<String> {
    vec![
        "--name".into(),
        "n1".into(),
        "--data-dir".into(),
        dir.into(),
        "--listen-peer".into(),
        format!("127.0.0.1:{peer}"),
        "--listen-client".into(),
        format!("127.0.0.1:{client}"),
    ]
}

fn assert_clear_failure(code: i32, stderr: &str, expect: &str) {
    assert_ne!(code, 0, "must fail: {stderr}");
    assert!(stderr.contains(expect), "expected {expect:?} in {stderr:?}");
    assert!(!stderr.contains("panicked"), "no panic: {stderr}");
}

#[test]
fn unknown_flag() {
    let (code, err) = run(&["--bogus"]);
    assert_clear_failure(code, &err, "--bogus");
}

#[test]
fn malformed_initial_cluster() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut args = base(dir.path().to_str().expect("utf8"), free_port(), free_port());
    args.extend(["--initial-cluster".into(), "n1=127.0.0.1".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, err) = run(&args);
    assert_clear_failure(code, &err, "--initial-cluster");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
}

#[test]
fn occupied_port() {
    let dir = tempfile::tempdir().expect("tempdir");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let args = base(dir.path().to_str().expect("utf8"), free_port(), port);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, err) = run(&args);
    assert_clear_failure(code, &err, "another node using this port");
}

#[test]
fn unusable_data_dir() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a directory").expect("write");
    let data_dir = file.join("data");
    let args = base(data_dir.to_str().expect("utf8"), free_port(), free_port());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, err) = run(&args);
    assert_clear_failure(code, &err, "data dir");
}
