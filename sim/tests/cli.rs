//! The `ksim` binary's contracts: exit codes, JSON fields, replay commands,
//! determinism across processes and across `--jobs`.

use std::path::PathBuf;
use std::process::{Command, Output};

fn data(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name).display().to_string()
}

fn ksim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ksim")).args(args).output().expect("ksim runs")
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn run_passes_with_the_contracted_json_fields() {
    let out = ksim(&["run", &data("tiny.toml"), "--seed", "3", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    let v = json(&out);
    for field in ["scenario", "seed", "verdict", "violations", "trace_hash", "sim_seconds", "events", "messages"] {
        assert!(v.get(field).is_some(), "missing {field}: {v}");
    }
    assert_eq!(v["verdict"], "pass");
    assert_eq!(v["seed"], 3);
    assert!(v["messages"].as_u64().unwrap() > 100);
}

#[test]
fn same_seed_gives_the_same_trace_in_separate_processes() {
    let a = json(&ksim(&["run", &data("tiny.toml"), "--seed", "5", "--json"]));
    let b = json(&ksim(&["run", &data("tiny.toml"), "--seed", "5", "--json"]));
    let c = json(&ksim(&["run", &data("tiny.toml"), "--seed", "6", "--json"]));
    assert_eq!(a["trace_hash"], b["trace_hash"]);
    assert_ne!(a["trace_hash"], c["trace_hash"], "different seeds should differ");
}

#[test]
fn check_determinism_runs_twice_and_passes() {
    let out = ksim(&["run", &data("tiny.toml"), "--seed", "1", "--check-determinism"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("identical on a second run"));
}

#[test]
fn a_planted_bug_fails_with_evidence_and_a_replay_command() {
    let file = data("tiny.toml");
    // offset-reuse needs a restart under load: tiny has one; try a few seeds.
    let failing = (0..10).find_map(|seed| {
        let seed = seed.to_string();
        let out = ksim(&["run", &file, "--seed", &seed, "--plant", "offset-reuse", "--json"]);
        (out.status.code() == Some(1)).then(|| json(&out))
    });
    let v = failing.expect("offset-reuse caught within 10 seeds of tiny");
    assert_eq!(v["verdict"], "fail");
    let violations = v["violations"].as_array().unwrap();
    assert!(violations.iter().any(|x| x["invariant"] == "inconsistent-offsets"), "{v}");
    let replay = v["replay"].as_str().unwrap();
    assert!(replay.contains("--plant offset-reuse") && replay.contains(&format!("--seed {}", v["seed"])));
}

#[test]
fn sweep_results_do_not_depend_on_jobs() {
    let file = data("tiny.toml");
    let one = ksim(&["sweep", &file, "--seeds", "0..6", "--jobs", "1", "--json"]);
    let two = ksim(&["sweep", &file, "--seeds", "0..6", "--jobs", "2", "--json"]);
    assert_eq!(one.status.code(), Some(0));
    let (mut a, mut b) = (json(&one), json(&two));
    for v in [&mut a, &mut b] {
        v.as_object_mut().unwrap().remove("wall_seconds");
    }
    assert_eq!(a, b);
    for field in ["scenario", "seeds", "runs", "verdict", "counts", "failures"] {
        assert!(a.get(field).is_some(), "missing {field}: {a}");
    }
    assert_eq!(a["runs"], 6);
    assert_eq!(a["seeds"], serde_json::json!([0, 6]));
}

#[test]
fn sweep_with_a_plant_fails_and_lists_replays() {
    let out = ksim(&["sweep", &data("tiny.toml"), "--seeds", "0..8", "--plant", "offset-reuse", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v = json(&out);
    let failures = v["failures"].as_array().unwrap();
    assert!(!failures.is_empty());
    assert!(failures[0]["replay"].as_str().unwrap().contains("--plant offset-reuse"));
}

#[test]
fn bad_input_exits_2_with_file_line_and_column() {
    let out = ksim(&["run", &data("bad-node.toml"), "--seed", "1"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad-node.toml:14:"), "{err}");
    assert!(err.contains("broker-7"), "{err}");
}

#[test]
fn usage_errors_exit_2() {
    let file = data("tiny.toml");
    for args in [
        vec!["run", file.as_str(), "--seed", "1", "--plant", "no-such-bug"],
        vec!["sweep", file.as_str(), "--seeds", "9..3"],
        vec!["sweep", file.as_str(), "--seeds", "banana"],
        vec!["sweep", file.as_str(), "--seeds", "0..3", "--jobs", "0"],
        vec!["run", "does-not-exist.toml", "--seed", "1"],
        vec!["run", file.as_str()],
        vec!["frobnicate"],
    ] {
        let out = ksim(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(!out.stderr.is_empty(), "{args:?} printed no error");
    }
}

#[test]
fn list_plants_names_every_switch() {
    let out = ksim(&["list-plants"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("fetch-skips-record") && text.contains("offset-reuse"));
}

#[test]
fn trace_and_history_files_are_json_lines() {
    let dir = std::env::temp_dir().join(format!("ksim-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (trace, history) = (dir.join("t.jsonl"), dir.join("h.jsonl"));
    let out = ksim(&[
        "run",
        &data("tiny.toml"),
        "--seed",
        "2",
        "--trace",
        trace.to_str().unwrap(),
        "--history",
        history.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    for (file, key) in [(&trace, "t_ms"), (&history, "time_ns")] {
        let text = std::fs::read_to_string(file).unwrap();
        assert!(text.lines().count() > 100);
        for line in text.lines().take(50) {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert!(v.get(key).is_some(), "{line}");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
