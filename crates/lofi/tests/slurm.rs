//! The Slurm example (`examples/slurm/`) on a real scheduler: a one-node Slurm cluster (Debian's
//! `slurm-wlm` and `munge`) started and stopped by the test, every daemon bound to 127.0.0.1
//! and all of its state in a temporary folder, runs the commands of `examples/slurm/README.md`
//! as written there (read from the file, so they cannot drift; only N and the resubmitted
//! indices are scaled down to the tiny synthetic dataset) with the debug `lofi` on the CPU.
//!
//! Why a real scheduler: the example's failures were all about how Slurm runs a script (array
//! variables of a partial resubmission, resource requests, log names), which no imitation of
//! Slurm would catch.
//!
//! Ignored by default (`cargo test` lists it as ignored): it needs root (slurmd launches jobs as
//! their user) and the Debian packages. `scripts/slurm-test.sh` installs them and runs it; CI
//! calls that script. A cluster that cannot start fails the test with the reason and the
//! daemons' logs.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{s, tiny_dataset};

/// Shards of the test (the README's N=24, scaled to the 16 videos of the tiny set).
const N: usize = 4;
/// Shards the test resubmits after deleting some of their outputs (the README's `3,17`).
const REDO: [usize; 2] = [1, 3];
/// Longest wait for the cluster to come up, and for the queue to drain after a submission.
const START_TIMEOUT: Duration = Duration::from_secs(60);
const QUEUE_TIMEOUT: Duration = Duration::from_secs(300);
/// The node's name in slurm.conf (slurmd is started as it).
const NODE: &str = "lofinode";

/// The Slurm binaries the test runs.
const TOOLS: [&str; 9] = [
    "munged",
    "mungekey",
    "munge",
    "slurmctld",
    "slurmd",
    "sbatch",
    "squeue",
    "scontrol",
    "scancel",
];

/// The commands of examples/slurm/README.md: every line of its ```sh blocks.
fn readme_commands(readme: &str) -> Vec<String> {
    #[derive(PartialEq)]
    enum Fence {
        Outside,
        Sh,
        Other,
    }
    let mut state = Fence::Outside;
    let mut commands = Vec::new();
    for line in readme.lines() {
        let t = line.trim();
        if t.starts_with("```") {
            state = match state {
                Fence::Outside if t == "```sh" => Fence::Sh,
                Fence::Outside => Fence::Other,
                _ => Fence::Outside,
            };
        } else if state == Fence::Sh && !t.is_empty() && !t.starts_with('#') {
            commands.push(t.to_string());
        }
    }
    commands
}

/// `command` with `from` (which must occur exactly once) replaced by `to`.
fn scaled(command: &str, from: &str, to: &str) -> String {
    assert_eq!(
        command.matches(from).count(),
        1,
        "examples/slurm/README.md: expected {from:?} once in {command:?} (the test scales it to {to:?})"
    );
    command.replacen(from, to, 1)
}

/// Two free TCP ports on the loopback address (bound, read, released).
fn free_ports() -> (u16, u16) {
    let a = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let b = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let ports = (
        a.local_addr().expect("port").port(),
        b.local_addr().expect("port").port(),
    );
    (ports.0, ports.1)
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| dir.join(tool).is_file())
            || ["/usr/sbin", "/sbin"]
                .iter()
                .any(|dir| Path::new(dir).join(tool).is_file())
    })
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(t) => {
            let all: Vec<&str> = t.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read: {e})"),
    }
}

/// A running one-node cluster; stopped (jobs cancelled, daemons shut down) when dropped.
struct Cluster {
    root: tempfile::TempDir,
    conf: PathBuf,
    work: PathBuf,
}

impl Cluster {
    /// Starts munged, slurmctld and slurmd under a fresh temporary folder and waits (bounded)
    /// for the node to be idle. Panics with the reason and the logs when anything fails.
    fn start() -> Self {
        let missing: Vec<&str> = TOOLS.iter().copied().filter(|t| !on_path(t)).collect();
        assert!(
            missing.is_empty(),
            "cannot start the Slurm test cluster: {} not installed (scripts/slurm-test.sh \
             installs Debian's slurmctld, slurmd, slurm-client and munge)",
            missing.join(", ")
        );
        let euid = Command::new("id").arg("-u").output().expect("run id -u");
        assert_eq!(
            String::from_utf8_lossy(&euid.stdout).trim(),
            "0",
            "cannot start the Slurm test cluster: slurmd must run as root to launch jobs \
             (run scripts/slurm-test.sh as root, as CI does)"
        );
        let root = tempfile::Builder::new()
            .prefix("lofi-slurm-")
            .tempdir()
            .expect("temporary folder");
        let dir = root.path().to_path_buf();
        // munged wants every folder above its socket searchable by all.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        for sub in ["munge", "ctld", "spool", "work"] {
            std::fs::create_dir(dir.join(sub)).expect("mkdir");
        }
        let cluster = Self {
            conf: dir.join("slurm.conf"),
            work: dir.join("work"),
            root,
        };
        cluster.start_munge();
        cluster.write_config();
        let conf = s(&cluster.conf).to_string();
        cluster.daemon("slurmctld", &["-f", &conf]);
        cluster.daemon("slurmd", &["-f", &conf, "-N", NODE]);
        let started = Instant::now();
        loop {
            let out = cluster.slurm("sinfo", &["-h", "-n", NODE, "-o", "%T"]);
            let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if out.status.success() && state == "idle" {
                break;
            }
            if started.elapsed() > START_TIMEOUT {
                cluster.fail(&format!(
                    "node {NODE} not idle after {START_TIMEOUT:?} (sinfo: {})",
                    text(&out).trim()
                ));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        cluster
    }

    fn dir(&self) -> &Path {
        self.root.path()
    }

    fn munge_socket(&self) -> PathBuf {
        self.dir().join("munge/munge.socket")
    }

    fn start_munge(&self) {
        let munge = self.dir().join("munge");
        let key = munge.join("munge.key");
        let out = Command::new("mungekey")
            .arg("--create")
            .arg(format!("--keyfile={}", key.display()))
            .output()
            .expect("run mungekey");
        if !out.status.success() {
            self.fail(&format!("mungekey failed: {}", text(&out)));
        }
        let socket = self.munge_socket();
        self.daemon(
            "munged",
            &[
                &format!("--socket={}", socket.display()),
                &format!("--key-file={}", key.display()),
                &format!("--pid-file={}", munge.join("munged.pid").display()),
                &format!("--log-file={}", munge.join("munged.log").display()),
                &format!("--seed-file={}", munge.join("munged.seed").display()),
                "--origin=127.0.0.1",
            ],
        );
        let out = Command::new("munge")
            .arg("-n")
            .arg(format!("--socket={}", socket.display()))
            .output()
            .expect("run munge");
        if !out.status.success() {
            self.fail(&format!("munged does not answer: {}", text(&out)));
        }
    }

    fn write_config(&self) {
        let d = self.dir().display();
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
        let host = host.trim().split('.').next().unwrap_or("localhost");
        let (ctld_port, slurmd_port) = free_ports();
        // One node with one GPU slot (a gres backed by /dev/null: lofi runs on the CPU, the
        // slot makes the script's `--gres=gpu:1` schedulable as written) and more CPUs and memory
        // than the machine has (config_overrides), enough for the script's requests; memory is
        // not a consumable resource here (CR_CPU), so tasks run one at a time on the GPU slot.
        let conf = format!(
            "ClusterName=lofitest\n\
             SlurmctldHost={host}(127.0.0.1)\n\
             SlurmctldPort={ctld_port}\n\
             SlurmdPort={slurmd_port}\n\
             CommunicationParameters=NoInAddrAny,NoCtldInAddrAny\n\
             SlurmUser=root\n\
             SlurmdUser=root\n\
             AuthType=auth/munge\n\
             CredType=cred/munge\n\
             AuthInfo=socket={d}/munge/munge.socket\n\
             StateSaveLocation={d}/ctld\n\
             SlurmdSpoolDir={d}/spool\n\
             SlurmctldPidFile={d}/slurmctld.pid\n\
             SlurmdPidFile={d}/slurmd.pid\n\
             SlurmctldLogFile={d}/slurmctld.log\n\
             SlurmdLogFile={d}/slurmd.log\n\
             ProctrackType=proctrack/linuxproc\n\
             TaskPlugin=task/none\n\
             JobAcctGatherType=jobacct_gather/none\n\
             AccountingStorageType=accounting_storage/none\n\
             JobCompType=jobcomp/none\n\
             MpiDefault=none\n\
             SelectType=select/cons_tres\n\
             SelectTypeParameters=CR_CPU\n\
             SlurmdParameters=config_overrides\n\
             ReturnToService=2\n\
             MinJobAge=3600\n\
             GresTypes=gpu\n\
             NodeName={NODE} NodeHostname={host} NodeAddr=127.0.0.1 CPUs=16 RealMemory=65536 \
             Gres=gpu:1 State=UNKNOWN\n\
             PartitionName=lofi Nodes={NODE} Default=YES MaxTime=INFINITE State=UP\n"
        );
        std::fs::write(&self.conf, conf).expect("write slurm.conf");
        std::fs::write(
            self.dir().join("gres.conf"),
            format!("NodeName={NODE} Name=gpu File=/dev/null\n"),
        )
        .expect("write gres.conf");
    }

    /// A command with the cluster's environment: no SLURM_*/SBATCH_* of the caller (a CI
    /// runner inside another Slurm job must not leak into this one), SLURM_CONF set.
    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        for (key, _) in std::env::vars_os() {
            let k = key.to_string_lossy();
            if k.starts_with("SLURM_") || k.starts_with("SBATCH_") || k.starts_with("SALLOC_") {
                c.env_remove(&key);
            }
        }
        c.env("SLURM_CONF", &self.conf);
        c
    }

    fn slurm(&self, program: &str, args: &[&str]) -> Output {
        self.command("timeout")
            .arg("30")
            .arg(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
    }

    /// Starts a daemon (it forks into the background) and checks that it says so.
    fn daemon(&self, program: &str, args: &[&str]) {
        let out = self
            .command("timeout")
            .arg("30")
            .arg(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        if !out.status.success() {
            self.fail(&format!("{program} did not start: {}", text(&out)));
        }
    }

    /// Runs one README command with bash in the work folder and the example's settings.
    fn run(&self, line: &str, settings: &[(&str, String)]) -> String {
        let out = self
            .command("timeout")
            .arg("60")
            .args(["bash", "-c", line])
            .current_dir(&self.work)
            .envs(settings.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .expect("run bash");
        if !out.status.success() {
            self.fail(&format!("`{line}` failed: {}", text(&out)));
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits (bounded) until no job is pending or running.
    fn wait_for_empty_queue(&self) {
        let started = Instant::now();
        loop {
            let out = self.slurm("squeue", &["-h", "-o", "%i %T"]);
            if !out.status.success() {
                self.fail(&format!("squeue failed: {}", text(&out)));
            }
            if out.stdout.iter().all(u8::is_ascii_whitespace) {
                return;
            }
            if started.elapsed() > QUEUE_TIMEOUT {
                self.fail(&format!(
                    "jobs still queued after {QUEUE_TIMEOUT:?}:\n{}",
                    text(&out)
                ));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// `scontrol show job ID` as one field map per job record (one per array task).
    fn jobs(&self, id: &str) -> Vec<BTreeMap<String, String>> {
        let out = self.slurm("scontrol", &["-o", "show", "job", id]);
        if !out.status.success() {
            self.fail(&format!("scontrol show job {id}: {}", text(&out)));
        }
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                l.split_whitespace()
                    .filter_map(|f| f.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            })
            .collect()
    }

    /// The job's records, each checked to have ended in `state`.
    fn expect_state(&self, id: &str, state: &str) -> Vec<BTreeMap<String, String>> {
        let jobs = self.jobs(id);
        if jobs.is_empty() {
            self.fail(&format!("no record of job {id}"));
        }
        for job in &jobs {
            let got = job.get("JobState").map(String::as_str).unwrap_or("?");
            if got != state {
                self.fail(&format!("job {id}: {got}, expected {state}: {job:?}"));
            }
        }
        jobs
    }

    /// Panics with `message` and what the daemons and jobs logged.
    fn fail(&self, message: &str) -> ! {
        let mut report = format!("Slurm test: {message}\n");
        let mut logs = vec![
            self.dir().join("munge/munged.log"),
            self.dir().join("slurmctld.log"),
            self.dir().join("slurmd.log"),
        ];
        if let Ok(entries) = std::fs::read_dir(self.work.join("logs")) {
            let mut job_logs: Vec<PathBuf> =
                entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
            job_logs.sort();
            logs.extend(job_logs);
        }
        for log in logs {
            report += &format!("--- {} (last lines)\n{}\n", log.display(), tail(&log, 25));
        }
        panic!("{report}");
    }

    fn pid(&self, file: &str) -> Option<i32> {
        std::fs::read_to_string(self.dir().join(file))
            .ok()
            .and_then(|t| t.trim().parse().ok())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Our own cluster only (SLURM_CONF): cancel what is left, ask slurmctld and slurmd to shut
        // down, then make sure each daemon (by the pid it wrote) has ended, munged last.
        let slurm_daemons: Vec<i32> = ["slurmd.pid", "slurmctld.pid"]
            .iter()
            .filter_map(|f| self.pid(f))
            .collect();
        let munged = self.pid("munge/munged.pid");
        let _ = self.slurm("scancel", &["--user=root"]);
        let _ = self.slurm("scontrol", &["shutdown"]);
        for pid in slurm_daemons {
            stop(pid, Duration::from_secs(5));
        }
        if let Some(pid) = munged {
            stop(pid, Duration::ZERO);
        }
    }
}

/// Waits up to `grace` for process `pid` to end, then sends SIGTERM, then SIGKILL (bounded).
fn stop(pid: i32, grace: Duration) {
    let alive = || Path::new(&format!("/proc/{pid}")).exists();
    let wait = |limit: Duration| {
        let deadline = Instant::now() + limit;
        while alive() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait(grace);
    for signal in ["-TERM", "-KILL"] {
        if alive() {
            let _ = Command::new("kill")
                .args([signal, &pid.to_string()])
                .output();
            wait(Duration::from_secs(5));
        }
    }
}

/// The ids of the ground truth in lofi's shard order (sorted), as `lofi extract --shard` deals
/// them.
fn sorted_ids(gt: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(gt).expect("ground truth");
    let json: serde_json::Value = serde_json::from_str(&text).expect("ground truth parses");
    let mut ids: Vec<String> = json["database"]
        .as_object()
        .expect("database")
        .keys()
        .cloned()
        .collect();
    ids.sort();
    ids
}

fn file_names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// "Submitted batch job 12" -> "12".
fn submitted_id(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("Submitted batch job "))
        .map(|id| id.trim().to_string())
        .unwrap_or_else(|| panic!("no job id in sbatch's output: {stdout:?}"))
}

#[test]
#[ignore = "starts a Slurm cluster: needs root, slurm-wlm and munge; run scripts/slurm-test.sh (CI does)"]
fn slurm_example_runs_as_documented() {
    let started = Instant::now();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let example = repo.join("examples/slurm");
    let readme = std::fs::read_to_string(example.join("README.md")).expect("README");
    let commands = readme_commands(&readme);
    let [submit, redo, verify] = commands.as_slice() else {
        panic!("examples/slurm/README.md: expected three commands (submit, redo, verify), found {commands:?}");
    };
    assert!(
        submit.ends_with(" submit"),
        "first command submits: {submit}"
    );
    assert!(
        redo.contains("--array="),
        "second command resubmits: {redo}"
    );
    assert!(
        verify.contains("verify.sbatch"),
        "third command verifies: {verify}"
    );
    // The scripts' own usage lines are the README's.
    for (script, line) in [("extract_array.sbatch", submit), ("verify.sbatch", verify)] {
        let text = std::fs::read_to_string(example.join(script)).expect("script");
        assert!(
            text.contains(&format!("#   {line}\n")),
            "{script} shows `{line}`"
        );
    }
    let submit = scaled(submit, "N=24 ", &format!("N={N} "));
    let redo = scaled(redo, "N=24 ", &format!("N={N} "));
    let redo = scaled(
        &redo,
        "--array=3,17 ",
        &format!("--array={},{} ", REDO[0], REDO[1]),
    );

    let cluster = Cluster::start();
    let cluster_up = started.elapsed();
    let work = cluster.work.clone();
    // The README's paths are relative to the repository: the work folder sees its examples/.
    std::os::unix::fs::symlink(repo.join("examples"), work.join("examples")).expect("symlink");
    let data = tiny_dataset(&work, 7);
    let gt = data.join("ground_truth.json");
    let config = work.join("extract.toml");
    std::fs::write(
        &config,
        "snippets = 8\nsize = 32\nworkers = 1\n[encoder]\nseed = 5\n[encoder.model]\n\
         depth = 18\nbase_width = 8\nshift = true\nshift_div = 8\nfrozen_bn = false\n",
    )
    .expect("write config");
    let features = work.join("features");
    let settings = [
        ("LOFI", env!("CARGO_BIN_EXE_lofi").to_string()),
        ("DEVICE", "cpu".to_string()),
        ("CONFIG", s(&config).to_string()),
        ("GT", s(&gt).to_string()),
        ("VIDEOS", s(&data.join("videos")).to_string()),
        ("FEATURES", s(&features).to_string()),
    ];

    // 1. The array and its verify job.
    let phase = Instant::now();
    let out = cluster.run(&submit, &settings);
    let id_after = |prefix: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|rest| rest.split_whitespace().next())
            .map(str::to_string)
            .unwrap_or_else(|| cluster.fail(&format!("no {prefix:?} line in: {out}")))
    };
    let array = id_after("extraction array: job ");
    let verify_job = id_after("verify: job ");
    cluster.wait_for_empty_queue();
    let first_run = phase.elapsed();
    let tasks = cluster.expect_state(&array, "COMPLETED");
    assert_eq!(tasks.len(), N, "one record per array task: {tasks:?}");
    for task in &tasks {
        assert!(
            task.get("TresPerNode").is_some_and(|t| t == "gres:gpu:1"),
            "array tasks ask for the GPU of the #SBATCH line: {task:?}"
        );
    }
    let verify_record = cluster.expect_state(&verify_job, "COMPLETED");
    let v = &verify_record[0];
    assert!(
        !v.contains_key("TresPerNode") && v.get("NumCPUs").is_some_and(|c| c == "2"),
        "the verify job asks for no GPU and 2 CPUs: {v:?}"
    );
    let logs = work.join("logs");
    let mut expected_logs: BTreeSet<String> = (0..N)
        .map(|k| format!("lofi-extract-{array}_{k}.out"))
        .collect();
    expected_logs.insert(format!("lofi-verify-{verify_job}.out"));
    assert_eq!(file_names(&logs), expected_logs, "log names");
    for k in 0..N {
        let log = std::fs::read_to_string(logs.join(format!("lofi-extract-{array}_{k}.out")))
            .expect("task log");
        assert!(log.contains(&format!("shard {k}/{N} ")), "task {k}: {log}");
    }
    let ids = sorted_ids(&gt);
    let mut expected_files: BTreeSet<String> = ids.iter().map(|id| format!("{id}.npy")).collect();
    expected_files.extend((0..N).map(|k| format!("index.shard-{k}-of-{N}.json")));
    expected_files.extend([
        "index.json".to_string(),
        "config.toml".to_string(),
        "fingerprint.json".to_string(),
    ]);
    // Plus the locks: the folder's (taken shared by every shard), the short one shards take in
    // turn to claim the folder, and one per shard, all left empty by shards that finished; and
    // the ownership record all shards appended to.
    expected_files.insert(".lofi-lock".to_string());
    expected_files.insert(".lofi-lock.claim".to_string());
    expected_files.insert(".lofi-owned.jsonl".to_string());
    expected_files.extend((0..N).map(|k| format!(".lofi-lock.shard-{k}-of-{N}")));
    assert_eq!(file_names(&features), expected_files, "feature folder");
    // Four shards appended to one record at once: every file they wrote is in it.
    let record = lofi_engine::owned::Record::read(&features).expect("record");
    for name in expected_files.iter().filter(|n| !n.starts_with(".lofi-")) {
        assert!(record.owns(name).expect("owns"), "{name} is not recorded");
    }
    for k in 0..N {
        let lock = features.join(format!(".lofi-lock.shard-{k}-of-{N}"));
        let holder = std::fs::read_to_string(&lock).expect("shard lock");
        assert!(holder.is_empty(), "shard {k} ended but left {holder:?}");
    }
    let before: BTreeMap<String, Vec<u8>> = ids
        .iter()
        .map(|id| {
            let bytes = std::fs::read(features.join(format!("{id}.npy"))).expect("features");
            (id.clone(), bytes)
        })
        .collect();

    // 2. Lose some outputs of shards REDO: verify (the README's command) fails and names them.
    // Two videos of the first shard, one of the second.
    let lost: Vec<&String> = [REDO[0], REDO[0] + N, REDO[1]]
        .iter()
        .map(|&pos| &ids[pos])
        .collect();
    for id in &lost {
        std::fs::remove_file(features.join(format!("{id}.npy"))).expect("delete");
    }
    let job = submitted_id(&cluster.run(verify, &settings));
    cluster.wait_for_empty_queue();
    let record = cluster.expect_state(&job, "FAILED");
    assert_ne!(record[0]["ExitCode"], "0:0");
    let log = std::fs::read_to_string(logs.join(format!("lofi-verify-{job}.out"))).expect("log");
    for id in &lost {
        assert!(
            log.contains(&format!("missing: {id}")),
            "{id} listed: {log}"
        );
    }

    // 3. Redo those shards as the README says, then verify again: complete and identical.
    let phase = Instant::now();
    let redo_job = submitted_id(&cluster.run(&redo, &settings));
    cluster.wait_for_empty_queue();
    let redo_time = phase.elapsed();
    let tasks = cluster.expect_state(&redo_job, "COMPLETED");
    assert_eq!(tasks.len(), REDO.len(), "{tasks:?}");
    for k in REDO {
        let log = std::fs::read_to_string(logs.join(format!("lofi-extract-{redo_job}_{k}.out")))
            .expect("redo log");
        let redone = lost.iter().filter(|id| {
            let pos = ids.iter().position(|i| i == **id).expect("known id");
            pos % N == k
        });
        assert!(log.contains(&format!("shard {k}/{N} ")), "task {k}: {log}");
        assert!(
            log.contains(&format!("{} extracted (0 redone)", redone.count())),
            "task {k} extracts only its lost videos: {log}"
        );
    }
    let job = submitted_id(&cluster.run(verify, &settings));
    cluster.wait_for_empty_queue();
    cluster.expect_state(&job, "COMPLETED");
    assert_eq!(
        file_names(&features),
        expected_files,
        "no other shard count appeared"
    );
    for (id, bytes) in &before {
        let now = std::fs::read(features.join(format!("{id}.npy"))).expect("features");
        assert!(&now == bytes, "{id}.npy differs after the redo");
    }

    // 4. A resubmission with another N is refused before any work.
    let wrong = redo.replacen(&format!("N={N} "), "N=2 ", 1);
    let job = submitted_id(&cluster.run(&wrong, &settings));
    cluster.wait_for_empty_queue();
    let log_name = format!("lofi-extract-{job}_{}.out", REDO[0]);
    cluster.expect_state(&job, "FAILED");
    let log = std::fs::read_to_string(logs.join(log_name)).expect("refusal log");
    assert!(log.contains(&format!("extracted with N={N}")), "{log}");
    assert_eq!(file_names(&features), expected_files, "nothing written");

    drop(cluster);
    eprintln!(
        "Slurm test: cluster up in {:.1} s, array of {N} + verify in {:.1} s, redo of {} shards \
         in {:.1} s; {:.1} s in all",
        cluster_up.as_secs_f64(),
        first_run.as_secs_f64(),
        REDO.len(),
        redo_time.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}
