//! Failure class: concurrency. One process at a time writes a run or feature folder: a second
//! `lofi train` on the same `--out` is refused at once, naming the process that holds it (before,
//! both exited 0 and the folder ended with one run's weights), shards of one extraction coexist
//! but two runs of the same shard do not, and the lock of a killed process is reported as stale
//! and taken over by the resume.

mod common;

use common::{extract_tiny, lofi, s, tiny_dataset, train_head_tiny};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn spawn(args: &[&str]) -> Child {
    Command::new(common::lofi_bin())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn lofi")
}

/// Waits until `dir/.lofi-lock` names a holder (the first process has taken the folder).
fn wait_for_holder(dir: &Path, child: &mut Child) {
    let started = Instant::now();
    loop {
        let line = std::fs::read_to_string(dir.join(".lofi-lock")).unwrap_or_default();
        if line.starts_with("pid ") {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the first process ended ({status}) before taking its folder");
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no lock taken"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn train_args<'a>(data: &'a Path, out: &'a Path, epochs: &'a str) -> Vec<&'a str> {
    vec![
        "train",
        "--data",
        s(data),
        "--out",
        s(out),
        "--preset",
        "tiny",
        "--schedule",
        "t",
        "--epochs",
        epochs,
    ]
}

/// Issue 11, problem 2: two `lofi train` on one `--out` both exited 0.
#[test]
fn a_second_train_on_the_same_folder_is_refused_while_the_first_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = tiny_dataset(dir.path(), 2);
    let out = dir.path().join("run");
    let mut first = spawn(&train_args(&data, &out, "3"));
    wait_for_holder(&out, &mut first);
    let (ok, _, err) = lofi(&train_args(&data, &out, "3"));
    let pid = format!("pid {}", first.id());
    assert!(
        !ok && err.contains("in use by another lofi process") && err.contains(&pid),
        "the second run must be refused naming {pid}: {err}"
    );
    let done = first.wait_with_output().expect("first run");
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    // The folder is free again and holds the first run: a fresh start is refused as before,
    // a resume finds it complete.
    let (ok, _, err) = lofi(&train_args(&data, &out, "3"));
    assert!(!ok && err.contains("already holds a run"), "{err}");
}

/// A process killed while it held the folder leaves its line in the lock file; the next process
/// reports the stale lock and takes the folder over (the kernel released the lock itself).
#[test]
fn the_lock_of_a_killed_run_is_reported_stale_and_taken_over() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = tiny_dataset(dir.path(), 8);
    let out = dir.path().join("run");
    let mut first = spawn(&train_args(&data, &out, "2"));
    wait_for_holder(&out, &mut first);
    let pid = first.id();
    first.kill().expect("kill");
    let _ = first.wait();
    let (ok, _, err) = lofi(&[&train_args(&data, &out, "2")[..], &["--resume"]].concat());
    assert!(ok, "resume after a kill: {err}");
    assert!(
        err.contains("stale lock") && err.contains(&format!("pid {pid} ")),
        "{err}"
    );
    let line = std::fs::read_to_string(out.join(".lofi-lock")).expect("lock file");
    assert!(
        line.is_empty(),
        "a normal end clears the holder line: {line}"
    );
}

/// Shards of one extraction write one folder at once; the same shard twice does not, and neither
/// does an unsharded run beside them.
#[test]
fn extraction_shards_coexist_but_a_shard_twice_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = tiny_dataset(dir.path(), 9);
    let feats = dir.path().join("features");
    // This test process holds shard 0 as another lofi process would (an OS file lock).
    let held = lofi_engine::FolderLock::shard(&feats, "extraction", 0, 2).expect("lock");
    let (ok, err) = extract_tiny(&data, &feats, &["--shard", "0/2"]);
    assert!(
        !ok && err.contains("in use by another lofi process")
            && err.contains(&format!("pid {}", std::process::id())),
        "{err}"
    );
    let (ok, err) = extract_tiny(&data, &feats, &[]);
    assert!(
        !ok && err.contains("in use by another lofi process"),
        "{err}"
    );
    let (ok, err) = extract_tiny(&data, &feats, &["--shard", "1/2"]);
    assert!(ok, "the other shard runs beside it: {err}");
    drop(held);
    let (ok, err) = extract_tiny(&data, &feats, &["--shard", "0/2"]);
    assert!(ok, "{err}");
    let gt = data.join("ground_truth.json");
    let (ok, _, err) = lofi(&["extract", "--ground-truth", s(&gt), "--verify", s(&feats)]);
    assert!(ok, "{err}");
}

/// Issue 26, item 4: `train-head` and `detect` read a feature folder that a running extraction
/// was writing (with `--skip-missing-features`, the head trained on the videos done so far and
/// exited 0). A reader now refuses while the folder or one of its shards is written, naming the
/// writer, or waits for it with `--wait`.
#[test]
fn readers_refuse_or_wait_for_a_folder_still_being_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = tiny_dataset(dir.path(), 10);
    let gt = data.join("ground_truth.json");
    let feats = dir.path().join("features");
    let (ok, err) = extract_tiny(&data, &feats, &[]);
    assert!(ok, "{err}");
    let head = dir.path().join("head");
    let train_head = || train_head_tiny(&feats, &gt, &head, &["--skip-missing-features"]);
    let me = format!("pid {}", std::process::id());
    // A shard of an extraction writes the folder (this process holds its lock, as lofi would).
    let shard = lofi_engine::FolderLock::shard(&feats, "extraction", 1, 2).expect("lock");
    let (ok, _, err) = train_head();
    assert!(
        !ok && err.contains("still being written") && err.contains(&me),
        "{err}"
    );
    assert!(!head.join("head.bpk").exists());
    drop(shard);
    let (ok, _, err) = train_head();
    assert!(ok, "{err}");

    // detect --wait waits for an unsharded writer, then runs.
    let writer = lofi_engine::FolderLock::exclusive(&feats, "extraction").expect("lock");
    let out = dir.path().join("detections.json");
    let detect_args = [
        "detect",
        "--head",
        s(&head),
        "--features",
        s(&feats),
        "--ground-truth",
        s(&gt),
        "--out",
        s(&out),
    ];
    let (ok, _, err) = lofi(&detect_args);
    assert!(!ok && err.contains("still being written"), "{err}");
    let mut child = spawn(&[&detect_args[..], &["--wait"]].concat());
    let mut stderr = std::io::BufReader::new(child.stderr.take().expect("stderr"));
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        let n = std::io::BufRead::read_line(&mut stderr, &mut line).expect("read");
        assert!(n > 0, "detect --wait ended without waiting: {seen}");
        seen.push_str(&line);
        if line.contains("waiting for the lofi process writing") {
            break;
        }
    }
    assert!(!out.exists(), "detect read the folder while it was written");
    drop(writer);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).expect("read");
    let status = child.wait().expect("wait");
    assert!(status.success(), "{seen}{rest}");
    assert!(out.is_file());
}
