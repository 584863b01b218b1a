//! Issue "operator safety": nothing destroyed by a typo, nothing leaked by a resume, a Ctrl-C that
//! hands over, failures that say what to do. Every test drives the real binary as an operator
//! would and asserts on what an operator sees: the exit code, the `error:` line, the emulator's
//! mutating-call log, the kubeconfig as `kubectl config view` prints it, the resources left.

use kube_ha_testkit as support;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use kube_ha_core::plan::lock::Intent;
use serde_json::json;
use support::cluster::{PROJECT, Run, Sandbox, env_example};

const B: &str = "europe-west1-b";
const C: &str = "europe-west1-c";
const NONE: &[(&str, &str)] = &[];

fn add_env(zone: &str) -> Vec<(&'static str, String)> {
    vec![
        ("KUBE_GCE_ZONE", zone.to_string()),
        ("KUBE_REPLICATE_EXISTING_MASTER", "true".to_string()),
    ]
}

/// A small seeded generator, so a failing random moment can be replayed (the seed is printed).
struct Rng(u64);

impl Rng {
    fn from_clock() -> Rng {
        let seed = std::env::var("KUBE_HA_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            });
        eprintln!("random moments from KUBE_HA_TEST_SEED={seed}");
        Rng(seed | 1)
    }

    /// In `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        lo + self.0 % (hi - lo + 1)
    }
}

/// The one `error:` line of a run, which must be its only line on stderr when it refused.
#[track_caller]
fn only_error_line(run: &Run) -> &str {
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one stderr line, got {lines:?}");
    assert!(lines[0].starts_with("error: "), "{:?}", lines[0]);
    lines[0]
}

/// `K=V … kube-ha up|down` out of a message, as an operator would paste it.
fn suggested_command(line: &str) -> (Vec<(String, String)>, String) {
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words.iter().rposition(|w| *w == "kube-ha").expect("a kube-ha command");
    let command = words[at + 1].trim_end_matches([',', ';']).to_string();
    let mut env: Vec<(String, String)> = words[..at]
        .iter()
        .rev()
        .map_while(|w| {
            w.split_once('=')
                .filter(|(k, _)| k.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'))
        })
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    env.reverse();
    (env, command)
}

// ---- 1. No teardown by typo ----

/// Seen on main: `KUBE_DELETE_NODE=false kube-ha down` on a one-replica cluster tore it down,
/// data disk included, with exit 0 and a "did you mean" warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typo_of_kube_delete_nodes_refuses_down_and_a_bare_down_first_says_what_it_deletes() {
    let sb = Sandbox::start(&[]);
    sb.first_master().await.expect_code(0);
    let before = sb.inventory().await;
    sb.emu.clear_calls().await;
    let run = sb
        .kube_ha(&["down"], &[("KUBE_DELETE_NODE", "false"), ("KUBE_GCE_ZONE", B)])
        .await;
    run.expect_code(2);
    let line = only_error_line(&run);
    assert!(line.contains("did you mean KUBE_DELETE_NODES?"), "{line}");
    assert!(line.contains("KUBE_HA_ALLOW_UNKNOWN_VARS=true"), "{line}");
    assert!(
        sb.emu.mutating_calls_but_run_keys().await.is_empty(),
        "refused with zero mutating calls"
    );
    assert_eq!(
        sb.inventory().await,
        before,
        "the cluster, data disk included, is untouched"
    );

    // With the override the typo is a warning, and the bare down keeps kube-down's meaning
    // (teardown of the last replica), but it says what it deletes before it deletes anything.
    let run = sb
        .kube_ha(
            &["down"],
            &[("KUBE_DELETE_NODE", "false"), ("KUBE_HA_ALLOW_UNKNOWN_VARS", "true")],
        )
        .await;
    run.expect_code(0);
    let lines: Vec<&str> = run.stderr.lines().collect();
    let listed = lines
        .iter()
        .position(|l| l.contains("deletes:"))
        .expect("the teardown lists what it deletes");
    let first_step = lines.iter().position(|l| l.starts_with("[1/")).expect("steps");
    assert!(listed < first_step, "listed before the first step:\n{}", run.stderr);
    for what in [
        "VM kubernetes-master (europe-west1-b)",
        "data disk (etcd's data) kubernetes-master-pd",
        "static IP kubernetes-master-ip",
        "firewall rule kubernetes-master-https",
        "firewall rule kubernetes-master-etcd",
    ] {
        assert!(lines[listed].contains(what), "{} should list {what}", lines[listed]);
    }
    assert!(run.stderr.contains("did you mean KUBE_DELETE_NODES"), "{}", run.stderr);
    assert!(run.stderr.contains("KUBE_DELETE_NODES is unset"), "{}", run.stderr);
    assert!(sb.inventory().await.is_empty(), "{:?}", sb.inventory().await);
}

// ---- 2. The kubeconfig is merged, never overwritten ----

fn kubectl(home: &Path, kubeconfig: &Path, args: &[&str]) -> String {
    let out = Command::new("kubectl")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .expect("run kubectl");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn names(view: &serde_json::Value, list: &str) -> Vec<String> {
    let mut v: Vec<String> = view[list]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_merges_this_cluster_into_the_kubeconfig_and_teardown_removes_only_its_entries() {
    let sb = Sandbox::start(&[]);
    let home = sb.dir.path();
    let config = home.join("config");
    for args in [
        &["config", "set-cluster", "other", "--server=https://10.9.9.9"][..],
        &["config", "set-credentials", "other", "--token=secret"],
        &["config", "set-context", "other", "--cluster=other", "--user=other"],
        &["config", "use-context", "other"],
    ] {
        kubectl(home, &config, args);
    }
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let second = home.join("second");
    // kubectl's list form: kube-ha writes the first file, as kubectl does.
    let kubeconfig = format!("{}:{}", config.display(), second.display());
    let mut env = env_example("01-first-master.env");
    env.push(("KUBECONFIG".into(), kubeconfig.clone()));
    sb.kube_ha(&["up"], &env).await.expect_code(0);

    let ours = format!("{PROJECT}_kubernetes");
    let view: serde_json::Value =
        serde_json::from_str(&kubectl(home, &config, &["config", "view", "--raw", "-o", "json"])).expect("JSON");
    for list in ["clusters", "users", "contexts"] {
        assert_eq!(
            names(&view, list),
            [ours.clone(), "other".to_string()],
            "{list}: {view}"
        );
    }
    assert_eq!(view["current-context"], ours.as_str());
    let static_ip = sb.static_ip().await;
    let server = view["clusters"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == ours.as_str()))
        .map(|c| c["cluster"]["server"].clone());
    assert_eq!(server, Some(json!(format!("https://{static_ip}"))));
    let other_user = view["users"]
        .as_array()
        .and_then(|a| a.iter().find(|u| u["name"] == "other"))
        .map(|u| u["user"]["token"].clone());
    assert_eq!(other_user, Some(json!("secret")), "the other user is kept as it was");
    let mode = std::fs::metadata(&config).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o640, "the file's mode is kept");
    assert!(!second.exists(), "only the first file of the list is written");
    // The merged entries work with the real client.
    let healthz = kubectl(home, &config, &["--context", &ours, "get", "--raw", "/healthz"]);
    assert_eq!(healthz.trim(), "ok");

    let mut env = env_example("05-teardown.env");
    env.push(("KUBECONFIG".into(), kubeconfig));
    sb.kube_ha(&["down"], &env).await.expect_code(0);
    let view: serde_json::Value =
        serde_json::from_str(&kubectl(home, &config, &["config", "view", "--raw", "-o", "json"])).expect("JSON");
    for list in ["clusters", "users", "contexts"] {
        assert_eq!(names(&view, list), ["other"], "{list}: {view}");
    }
    assert_eq!(view["current-context"], "", "{view}");
}

// ---- 3. A resumed teardown does not leak; status sees every leftover ----

/// Seen on main: a teardown killed after the disk deletion, finished by `kube-ha down`, reported
/// done while the static IP and the internal address stayed reserved: with no VM or disk left,
/// the region fell back to the default zone's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_teardown_resumed_after_its_disk_went_releases_every_address_and_status_lists_the_leftovers() {
    let sb = Sandbox::start(&[]);
    sb.first_master().await.expect_code(0);
    let killed = sb
        .kube_ha(
            &["down"],
            &[("KUBE_GCE_ZONE", B), ("KUBE_HA_FAILPOINT", "after:delete_disk")],
        )
        .await;
    assert_eq!(killed.code, -1, "killed by SIGKILL:\n{}", killed.stderr);
    assert!(sb.replicas().await.is_empty(), "the VM went first");

    // KUBE_GCE_ZONE left at its default (us-central1-b): status still finds everything.
    let status = sb.kube_ha(&["status"], NONE).await;
    status.expect_code(1);
    assert!(status.stdout.starts_with("degraded: 0 replica(s)"), "{}", status.stdout);
    for what in [
        "address kubernetes-master-internal (europe-west1)",
        "static IP kubernetes-master-ip",
        "firewall rule kubernetes-master-https",
        "firewall rule kubernetes-master-etcd",
    ] {
        assert!(
            status.stdout.contains(what),
            "status should list {what}:\n{}",
            status.stdout
        );
    }
    assert!(
        status.stdout.contains("next: KUBE_DELETE_NODES=true kube-ha down"),
        "{}",
        status.stdout
    );

    let resumed = sb.kube_ha(&["down"], NONE).await;
    resumed.expect_code(0);
    assert!(resumed.stderr.contains("took over the lock"), "{}", resumed.stderr);
    assert!(
        sb.all_address_names().await.is_empty(),
        "{:?}",
        sb.all_address_names().await
    );
    assert!(sb.inventory().await.is_empty(), "{:?}", sb.inventory().await);

    let status = sb.kube_ha(&["status"], NONE).await;
    status.expect_code(2);
    let line = only_error_line(&status);
    assert!(
        line.contains(&format!("no cluster kubernetes-master in project {PROJECT}")),
        "{line}"
    );
    assert!(status.stdout.is_empty(), "no empty table: {}", status.stdout);
}

// ---- 4. SIGINT and SIGTERM hand over; 8. dry run = real run; 9. status ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_at_a_random_step_of_an_add_hands_the_lock_over_and_another_host_finishes_it_at_once() {
    // Every GCE operation takes 100 ms, so a signal lands in a step, often in an operation.
    let sb = Sandbox::start(&["--op-latency-ms", "100"]);
    let mut rng = Rng::from_clock();
    sb.first_master().await.expect_code(0);

    // The dry run names the replica the real run makes, says nothing changed, warns once.
    sb.emu.clear_calls().await;
    let dry = sb.kube_ha(&["up", "--dry-run"], &add_env(C)).await;
    dry.expect_code(0);
    assert!(sb.emu.mutating_calls_but_run_keys().await.is_empty());
    assert!(dry.stdout.contains("dry run: nothing was changed"), "{}", dry.stdout);
    let name = dry
        .stdout
        .lines()
        .find_map(|l| l.split("create replica VM ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the dry run names the new replica")
        .to_string();
    let everything = format!("{}{}", dry.stdout, dry.stderr);
    assert_eq!(everything.matches("less available").count(), 1, "{everything}");
    let steps = dry
        .stdout
        .lines()
        .filter(|l| {
            l.trim_start()
                .split_once(". ")
                .is_some_and(|(n, _)| n.parse::<u32>().is_ok())
        })
        .count() as u64;
    assert!(steps >= 10, "{}", dry.stdout);

    // SIGINT at a random moment: while step k runs (k before the promotes, which wait for the
    // VM's boot, so the add cannot finish before the signal lands), plus a random delay.
    let k = rng.range(1, steps - 4);
    let jitter = Duration::from_millis(rng.range(0, 150));
    eprintln!("SIGINT at step {k}/{steps} + {jitter:?}");
    let mut add = sb.spawn(&["up"], &add_env(C));
    add.wait_for_line(Duration::from_secs(60), |l| l.starts_with(&format!("[{k}/")))
        .await
        .expect("the add reaches step k");
    tokio::time::sleep(jitter).await;
    add.signal(libc::SIGINT);
    let run = add.finish(Duration::from_secs(120)).await;
    assert_eq!(run.code, 130, "exit 128 + SIGINT:\n{}", run.stderr);
    let line = run.error_lines().last().copied().expect("an error line");
    assert!(line.contains("interrupted at step"), "{line}");
    assert!(line.ends_with("rerun the same command to resume"), "{line}");

    // The lock: handed over, with the intent the next run needs.
    let record = sb.lock_record().await.expect("the lock is kept");
    assert!(record.handed_over.is_some(), "{record:?}");
    assert_eq!(
        record.intent,
        Intent::AddReplica {
            replica: name.clone(),
            zone: C.into(),
            rolling_back: false
        }
    );
    let status = sb.kube_ha(&["status"], NONE).await;
    status.expect_code(1);
    assert!(
        status.stdout.contains("lock: left by an interrupted run"),
        "{}",
        status.stdout
    );
    assert!(
        status
            .stdout
            .contains("next: KUBE_GCE_ZONE=europe-west1-c KUBE_REPLICATE_EXISTING_MASTER=true kube-ha up"),
        "{}",
        status.stdout
    );

    // From another host (another lock owner), at once: it was handed over, not expired.
    let mut env = add_env(C);
    env.push(("KUBE_HA_LOCK_HOST", "another-host".into()));
    let resumed = sb.kube_ha(&["up"], &env).await;
    resumed.expect_code(0);
    assert!(
        resumed.stderr.contains("took over the lock") && resumed.stderr.contains("handed over"),
        "{}",
        resumed.stderr
    );
    assert_eq!(sb.replica_names().await, ["kubernetes-master".to_string(), name]);
    sb.assert_complete(2, &[]).await;
    assert!(sb.lock_record().await.is_none(), "released");
    let status = sb.kube_ha(&["status"], NONE).await;
    status.expect_code(0);
    assert!(
        status.stdout.starts_with(
            "healthy: 2 replica(s); etcd voters 2 of 2; tolerates 0 failure(s); zones: europe-west1-b, europe-west1-c"
        ),
        "{}",
        status.stdout
    );

    // SIGTERM at a random step of the removal: 143, and the same command finishes it.
    let k = rng.range(1, 5);
    eprintln!("SIGTERM at step {k} of the removal");
    let remove = [("KUBE_DELETE_NODES", "false"), ("KUBE_GCE_ZONE", C)];
    let mut down = sb.spawn(&["down"], &remove);
    down.wait_for_line(Duration::from_secs(60), |l| l.starts_with(&format!("[{k}/")))
        .await
        .expect("the removal reaches step k");
    down.signal(libc::SIGTERM);
    let run = down.finish(Duration::from_secs(120)).await;
    assert_eq!(run.code, 143, "exit 128 + SIGTERM:\n{}", run.stderr);
    sb.kube_ha(&["down"], &remove).await.expect_code(0);
    sb.assert_complete(1, &[]).await;

    // Quorum lost: the verdict says so, exit 1.
    let (code, _) = sb.emu.crash(B, "kubernetes-master").await;
    assert_eq!(code, 200);
    let status = sb.kube_ha(&["status"], NONE).await;
    status.expect_code(1);
    assert!(
        status.stdout.starts_with("quorum lost: 1 replica(s)"),
        "{}",
        status.stdout
    );
}

/// A second Ctrl-C does not wait for the step in flight (here a VM insert whose operation takes
/// 15 s, which the first Ctrl-C waits for); on this host the next run takes the lock of the dead
/// process over at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigint_exits_at_once_and_the_same_command_then_resumes() {
    let sb = Sandbox::start(&[]);
    sb.emu
        .fault(json!({"method": "POST", "path_contains": "/instances", "action": {"kind": "delay", "ms": 15000}}))
        .await;
    let mut up = sb.spawn(&["up"], &env_example("01-first-master.env"));
    up.wait_for_line(Duration::from_secs(60), |l| l.contains("create first master VM"))
        .await
        .expect("the up reaches the VM insert");
    support::sandbox::eventually("the VM insert is in flight", Duration::from_secs(30), || async {
        sb.emu
            .mutating_calls()
            .await
            .iter()
            .any(|c| c["method"] == "POST" && c["path"].as_str().is_some_and(|p| p.ends_with("/instances")))
            .then_some(())
    })
    .await;
    up.signal(libc::SIGINT);
    up.wait_for_line(Duration::from_secs(30), |l| l.starts_with("SIGINT received"))
        .await
        .expect("the first SIGINT is acknowledged");
    up.signal(libc::SIGINT);
    let run = up.finish(Duration::from_secs(30)).await;
    assert_eq!(run.code, 130, "{}", run.stderr);
    assert!(run.stderr.contains("SIGINT again: exiting at once"), "{}", run.stderr);

    let resumed = sb.first_master().await;
    resumed.expect_code(0);
    assert!(resumed.stderr.contains("its process is gone"), "{}", resumed.stderr);
    sb.assert_complete(1, &[]).await;
}

// ---- 5. Fail fast, with the fix, when nothing can be reached ----

fn bare_kube_ha(home: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let out = Command::new(support::kube_ha_bin())
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .envs(env.iter().copied())
        .output()
        .expect("run kube-ha");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn a_stopped_sandbox_or_missing_credentials_is_refused_at_once_with_the_fix() {
    let home = tempfile::tempdir().expect("tmp");
    let state = home.path().join("sandbox");
    let state = state.to_str().expect("utf-8");
    let sandbox = |action: &str| bare_kube_ha(home.path(), &["sandbox", action], &[("KUBE_HA_SANDBOX", state)]);
    sandbox("start").expect_code(0);
    let env = sandbox("env");
    env.expect_code(0);
    let endpoint = env
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("export KUBE_HA_COMPUTE_ENDPOINT="))
        .expect("sandbox env exports the endpoint")
        .to_string();
    sandbox("stop").expect_code(0);

    // `eval "$(kube-ha sandbox env)"`, then `sandbox stop`: the endpoint refuses connections.
    for args in [&["up"][..], &["down"], &["status"]] {
        let run = bare_kube_ha(
            home.path(),
            args,
            &[("KUBE_HA_COMPUTE_ENDPOINT", &endpoint), ("PROJECT", "sandbox")],
        );
        run.expect_code(2);
        let line = only_error_line(&run);
        assert!(line.contains(&endpoint), "{args:?} names the endpoint: {line}");
        assert!(line.contains("kube-ha sandbox start"), "{args:?}: {line}");
        assert!(line.contains("KUBE_HA_SANDBOX=1"), "{args:?}: {line}");
    }

    // Real GCE without Application Default Credentials: no file in HOME, or a file that is not there.
    for extra in [
        vec![],
        vec![("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/key.json")],
    ] {
        for args in [&["up"][..], &["status"]] {
            let mut env = vec![("PROJECT", "my-project")];
            env.extend(extra.iter().copied());
            let run = bare_kube_ha(home.path(), args, &env);
            run.expect_code(2);
            let line = only_error_line(&run);
            assert!(
                line.contains("gcloud auth application-default login"),
                "{args:?} {extra:?}: {line}"
            );
            assert!(line.contains("KUBE_HA_SANDBOX=1"), "{args:?} {extra:?}: {line}");
        }
    }
}

// ---- 6. Every suggested command works when pasted; never "remove" a live add's learner ----

/// Seen in 1 of 5 runs of two concurrent `up`s: one refused with "remove it with …" naming the
/// learner the other was adding under a live lock. Here the race is made certain: B's instance
/// list is held back, so B reads part of the world before A takes its lock and the rest after
/// A's learner joined; A then dies (SIGKILL) on another host, its lock still live for B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_whose_holder_is_gone_is_taken_over_with_the_command_the_refusal_suggests() {
    let sb = Sandbox::start(&[]);
    sb.first_master().await.expect_code(0);
    sb.emu
        .fault(
            json!({"method": "GET", "path_contains": "aggregated/instances", "action": {"kind": "delay", "ms": 20000}}),
        )
        .await;
    sb.emu.clear_calls().await;
    let mut b_env = add_env("europe-west1-d");
    b_env.push(("KUBE_HA_LOCK_HOST", "host-b".into()));
    let mut b = sb.spawn(&["up"], &b_env);
    support::sandbox::eventually("B asks for the instances", Duration::from_secs(30), || async {
        sb.emu
            .calls()
            .await
            .iter()
            .any(|c| c["path"].as_str().is_some_and(|p| p.contains("aggregated/instances")))
            .then_some(())
    })
    .await;
    let mut a_env = add_env(C);
    a_env.push(("KUBE_HA_LOCK_HOST", "host-a".into()));
    a_env.push(("KUBE_HA_FAILPOINT", "after:add_learner".into()));
    let a = sb.kube_ha(&["up"], &a_env).await;
    assert_eq!(a.code, -1, "A dies right after its learner joined:\n{}", a.stderr);
    assert!(!b.exited(), "B's held-back list must outlast A");
    sb.emu.clear_calls().await;
    let b = b.finish(Duration::from_secs(60)).await;
    b.expect_code(2);
    let line = only_error_line(&b);
    assert!(line.contains("another kube-ha operation is running"), "{line}");
    assert!(
        !line.contains("remove it with"),
        "never suggests removing A's learner: {line}"
    );
    assert!(!line.contains("gcloud"), "{line}");
    assert!(sb.emu.mutating_calls_but_run_keys().await.is_empty());

    // The way out it suggests, pasted as is on host B: take A's lock over and finish A's add.
    let (env, command) = suggested_command(line);
    assert_eq!(command, "up");
    assert!(env.iter().any(|(k, _)| k == "KUBE_HA_TAKE_OVER_LOCK"), "{line}");
    let mut env: Vec<(String, String)> = env;
    env.push(("KUBE_HA_LOCK_HOST".into(), "host-b".into()));
    let resumed = sb.kube_ha(&["up"], &env).await;
    resumed.expect_code(0);
    assert!(resumed.stderr.contains("taken over on request"), "{}", resumed.stderr);
    sb.assert_complete(2, &[]).await;
    let zones: Vec<String> = sb
        .replicas()
        .await
        .iter()
        .filter_map(|i| i.zone.as_deref().map(|z| z.rsplit('/').next().unwrap_or(z).to_string()))
        .collect();
    assert_eq!(zones, [B, C], "A's add, in A's zone, was finished");
}
