//! `scripts/lofi-torch`, the launcher for a `--features tch` build carried to a machine whose
//! libtorch is elsewhere: a program whose shared library cannot be found gets the library named
//! and the remedy (instead of the loader's error before `main`), and with `LOFI_TORCH_LIB` at the
//! library's folder it starts. A tiny C program with its own tiny library stands in for lofi and
//! libtorch, so the test needs no libtorch (only a C compiler, which building lofi needs anyway).

use std::path::{Path, PathBuf};
use std::process::Command;

fn launcher() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/lofi-torch")
}

fn cc(args: &[&str], dir: &Path) {
    let out = Command::new("cc")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("a C compiler (cc) on PATH");
    assert!(
        out.status.success(),
        "cc {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `prog` linked against `libs/liblofitorchstub.so`, with no RUNPATH.
fn program(dir: &Path) -> PathBuf {
    let libs = dir.join("libs");
    std::fs::create_dir_all(&libs).expect("mkdir");
    std::fs::write(dir.join("stub.c"), "int lofi_stub(void) { return 42; }\n").expect("write");
    std::fs::write(
        dir.join("prog.c"),
        "#include <stdio.h>\nint lofi_stub(void);\nint main(int c, char **v) { \
         printf(\"started %d %s\\n\", lofi_stub(), c > 1 ? v[1] : \"\"); return 0; }\n",
    )
    .expect("write");
    cc(
        &[
            "-shared",
            "-fPIC",
            "-o",
            "libs/liblofitorchstub.so",
            "stub.c",
        ],
        dir,
    );
    cc(&["-o", "prog", "prog.c", "-Llibs", "-llofitorchstub"], dir);
    dir.join("prog")
}

fn run(prog: &Path, lib: Option<&Path>) -> (bool, String, String) {
    let mut cmd = Command::new(launcher());
    cmd.arg(prog).arg("hello").env_remove("LD_LIBRARY_PATH");
    match lib {
        Some(l) => cmd.env("LOFI_TORCH_LIB", l),
        None => cmd.env_remove("LOFI_TORCH_LIB"),
    };
    let out = cmd.output().expect("run the launcher");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_missing_library_is_named_with_the_remedy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let prog = program(dir.path());
    let (ok, out, err) = run(&prog, None);
    assert!(!ok, "must not start: {out}");
    assert!(err.contains("missing liblofitorchstub.so"), "{err}");
    assert!(err.contains("remedy: set LOFI_TORCH_LIB"), "{err}");
    assert!(!out.contains("started"), "{out}");
    // A folder without the library is no better, and is named.
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).expect("mkdir");
    let (ok, _, err) = run(&prog, Some(&empty));
    assert!(!ok);
    assert!(err.contains(&empty.display().to_string()), "{err}");
    let (ok, _, err) = run(&prog, Some(&dir.path().join("nowhere")));
    assert!(!ok);
    assert!(err.contains("is not a folder"), "{err}");
}

#[test]
fn the_library_folder_lets_it_start_with_its_arguments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let prog = program(dir.path());
    let (ok, out, err) = run(&prog, Some(&dir.path().join("libs")));
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "started 42 hello");
}
