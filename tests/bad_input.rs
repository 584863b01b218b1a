//! Bad input gets one clear line and changes nothing (SPEC §1.2): every invalid invocation below
//! exits 2 with exactly one stderr line, starting `error:`, and the emulator's call log shows no
//! mutating call.

use kube_ha_testkit as support;

use support::cluster::Sandbox;

struct Case {
    what: &'static str,
    args: &'static [&'static str],
    env: &'static [(&'static str, &'static str)],
    /// A word the error line must contain (it says what to do about this input).
    says: &'static str,
}

const CASES: &[Case] = &[
    Case {
        what: "zone syntax",
        args: &["up"],
        env: &[("KUBE_GCE_ZONE", "europe_west1_b")],
        says: "KUBE_GCE_ZONE",
    },
    Case {
        what: "zone missing its letter",
        args: &["up"],
        env: &[("KUBE_GCE_ZONE", "europe-west1")],
        says: "KUBE_GCE_ZONE",
    },
    Case {
        what: "zone unknown to the project's catalogue",
        args: &["up"],
        env: &[("KUBE_GCE_ZONE", "europe-west9-z")],
        says: "does not exist",
    },
    Case {
        what: "replicate flag that is not a boolean",
        args: &["up"],
        env: &[("KUBE_REPLICATE_EXISTING_MASTER", "yes please")],
        says: "true or false",
    },
    Case {
        what: "worker-node creation",
        args: &["up"],
        env: &[("KUBE_USE_EXISTING_MASTER", "true")],
        says: "not supported",
    },
    Case {
        what: "empty replica name",
        args: &["down"],
        env: &[("KUBE_DELETE_NODES", "false"), ("KUBE_REPLICA_NAME", "")],
        says: "KUBE_REPLICA_NAME",
    },
    Case {
        what: "replica name that cannot be a GCE name",
        args: &["down"],
        env: &[
            ("KUBE_DELETE_NODES", "false"),
            ("KUBE_REPLICA_NAME", "Kubernetes_Master!"),
        ],
        says: "GCE instance name",
    },
    Case {
        what: "replica name of another cluster",
        args: &["down"],
        env: &[
            ("KUBE_DELETE_NODES", "false"),
            ("KUBE_REPLICA_NAME", "other-master-a1b"),
        ],
        says: "not a replica name",
    },
    Case {
        what: "non-numeric disk size",
        args: &["up"],
        env: &[("MASTER_DISK_SIZE", "big")],
        says: "MASTER_DISK_SIZE",
    },
    Case {
        what: "non-numeric node count",
        args: &["up"],
        env: &[("NUM_NODES", "many")],
        says: "NUM_NODES",
    },
    Case {
        what: "both quorum-read spellings disagree",
        args: &["up"],
        env: &[
            ("ENABLE_ETCD_QUORUM_READ", "true"),
            ("ENABLE_ETCD_QUORUM_READS", "false"),
        ],
        says: "disagree",
    },
    Case {
        what: "instance prefix that cannot make GCE names",
        args: &["up"],
        env: &[("KUBE_GCE_INSTANCE_PREFIX", "My_Cluster")],
        says: "KUBE_GCE_INSTANCE_PREFIX",
    },
    Case {
        what: "delete-nodes flag that is not a boolean",
        args: &["down"],
        env: &[("KUBE_DELETE_NODES", "no")],
        says: "true or false",
    },
    Case {
        what: "service range that is not a CIDR",
        args: &["up"],
        env: &[("SERVICE_CLUSTER_IP_RANGE", "10.0.0.0")],
        says: "SERVICE_CLUSTER_IP_RANGE",
    },
    Case {
        what: "timeout that is not a duration",
        args: &["up"],
        env: &[("KUBE_HA_TIMEOUT", "forever")],
        says: "KUBE_HA_TIMEOUT",
    },
    Case {
        what: "output format",
        args: &["status"],
        env: &[("KUBE_HA_OUTPUT", "yaml")],
        says: "KUBE_HA_OUTPUT",
    },
    Case {
        what: "a failpoint that names no step kind (a crash test would pass without crashing)",
        args: &["up"],
        env: &[("KUBE_HA_FAILPOINT", "after:create_vmm")],
        says: "KUBE_HA_FAILPOINT",
    },
    Case {
        what: "a take-over that names no lock owner",
        args: &["up"],
        env: &[("KUBE_HA_TAKE_OVER_LOCK", "pid 42")],
        says: "<host>:<pid>",
    },
    Case {
        what: "unknown flag",
        args: &["up", "--force"],
        env: &[],
        says: "--help",
    },
    Case {
        what: "add a replica to a cluster that does not exist",
        args: &["up"],
        env: &[
            ("KUBE_REPLICATE_EXISTING_MASTER", "true"),
            ("KUBE_GCE_ZONE", "europe-west1-c"),
        ],
        says: "KUBE_REPLICATE_EXISTING_MASTER",
    },
    Case {
        what: "remove a replica from a cluster that does not exist",
        args: &["down"],
        env: &[("KUBE_DELETE_NODES", "false"), ("KUBE_GCE_ZONE", "europe-west1-c")],
        says: "no replica",
    },
    Case {
        what: "a typo'd zone variable is named in the refusal it causes",
        args: &["up"],
        env: &[
            ("KUBE_GCE_ZOEN", "europe-west1-b"),
            ("KUBE_REPLICATE_EXISTING_MASTER", "true"),
        ],
        says: "did you mean KUBE_GCE_ZONE",
    },
];

#[tokio::test]
async fn each_invalid_invocation_exits_2_with_one_error_line_and_no_mutating_call() {
    let sandbox = Sandbox::start(&[]);
    assert!(CASES.len() >= 12);
    for case in CASES {
        sandbox.emu.clear_calls().await;
        let run = sandbox.kube_ha(case.args, case.env).await;
        assert_eq!(run.code, 2, "{}: exit code\n{}", case.what, run.stderr);
        let lines: Vec<&str> = run.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{}: exactly one stderr line, got {lines:?}", case.what);
        assert!(lines[0].starts_with("error: "), "{}: {:?}", case.what, lines[0]);
        assert!(
            lines[0].contains(case.says),
            "{}: {:?} should say {:?}",
            case.what,
            lines[0],
            case.says
        );
        let mutating = sandbox.emu.mutating_calls().await;
        assert!(mutating.is_empty(), "{}: mutating calls {mutating:?}", case.what);
    }
}

#[tokio::test]
async fn a_missing_project_is_refused_before_any_call() {
    let sandbox = Sandbox::start(&[]);
    let run = sandbox.kube_ha(&["up"], &[("PROJECT", "")]).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(run.error_lines().len(), 1);
    assert!(sandbox.emu.calls().await.is_empty(), "no call at all");
}
