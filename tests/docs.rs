//! The README and `--help` are generated from, or checked against, the one env-var table
//! (`config::vars::ENV_VARS`). `UPDATE_README=1 cargo test --test docs` rewrites the README's table.

use std::process::Command;

use kube_ha_core::config::vars::{Audience, ENV_VARS, markdown_table};

const START: &str = "<!-- env-table:start (generated from crates/core/src/config/vars.rs; UPDATE_README=1 cargo test --test docs) -->\n";
const END: &str = "<!-- env-table:end -->";

#[test]
fn readme_env_table_is_the_table_in_the_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
    let readme = std::fs::read_to_string(path).expect("README.md");
    let start = readme.find(START).expect("README has the env-table start marker") + START.len();
    let end = readme[start..].find(END).expect("README has the env-table end marker") + start;
    let want = markdown_table();
    if std::env::var_os("UPDATE_README").is_some() {
        let updated = format!("{}{want}{}", &readme[..start], &readme[end..]);
        std::fs::write(path, updated).expect("write README");
        return;
    }
    assert_eq!(
        &readme[start..end],
        want,
        "README env table is stale: run UPDATE_README=1 cargo test --test docs"
    );
}

fn kube_ha(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kube-ha"))
        .args(args)
        .env_clear()
        .output()
        .expect("run kube-ha")
}

#[test]
fn help_shows_the_operators_variables_and_help_env_all_shows_the_testing_ones_too() {
    for args in [
        &["--help"][..],
        &["up", "--help"],
        &["down", "--help"],
        &["status", "--help"],
    ] {
        let out = kube_ha(args);
        assert!(out.status.success(), "{args:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        for v in ENV_VARS {
            let shown = text
                .lines()
                .any(|l| l.trim_start().starts_with(&format!("{} ", v.name)));
            assert_eq!(shown, v.audience == Audience::Operator, "{args:?} and {}", v.name);
        }
        assert!(
            text.contains("kube-ha help env --all"),
            "{args:?} points at the full list"
        );
    }
    let out = kube_ha(&["help", "env", "--all"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for v in ENV_VARS {
        assert!(text.contains(v.name), "help env --all lists {}", v.name);
    }
}

#[test]
fn bare_kube_ha_and_bare_sandbox_print_the_command_list_and_exit_2() {
    for (args, commands) in [
        (&[][..], &["up", "down", "status", "sandbox", "help"][..]),
        (&["sandbox"][..], &["start", "stop", "env"][..]),
    ] {
        let out = kube_ha(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(text.contains("Commands:"), "{args:?}: {text}");
        for c in commands {
            assert!(
                text.lines().any(|l| l.trim_start().starts_with(&format!("{c} "))),
                "{args:?} lists {c}: {text}"
            );
        }
    }
}

#[test]
fn every_env_example_is_used_by_a_test_and_only_sets_known_variables() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/env-examples");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).expect("env-examples") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("read");
        for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
            let (k, _) = line.split_once('=').expect("KEY=VALUE");
            assert!(
                kube_ha_core::config::vars::is_known(k),
                "{}: unknown variable {k}",
                path.display()
            );
        }
        assert!(
            text.starts_with("# kube-ha "),
            "{}: first line names the command",
            path.display()
        );
        n += 1;
    }
    assert_eq!(n, 7, "one file per SPEC §1 invocation");
}

/// The first hour: the README says what to install, how to get `kube-ha` on PATH, how to use an
/// env-examples file without leaking its variables, where the sandbox keeps its state and that
/// `sandbox stop` erases it; and every file it names is in the repository (it used to point at
/// a SPEC the repository does not have).
#[test]
fn the_readme_covers_the_first_hour_and_names_only_files_the_repository_has() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).expect("README.md");
    // Line breaks in the markdown are not part of what it says.
    let prose = readme.split_whitespace().collect::<Vec<_>>().join(" ");
    for needle in [
        "Rust ≥ 1.91",
        "clippy",
        "rustfmt",
        "PATH",
        "cargo install --locked --path .",
        "( set -a; . env-examples/",
        "~/.local/state/kube-ha/sandbox",
        "`kube-ha sandbox stop` erases",
    ] {
        assert!(prose.contains(needle), "the README should say {needle:?}");
    }
    assert!(
        !readme.contains("SPEC"),
        "the README points at no document the repository lacks"
    );
    let dirs = [
        "crates/",
        "src/",
        "tests/",
        "benches/",
        "env-examples/",
        "scripts/",
        ".ci/",
    ];
    for word in readme.split_whitespace() {
        let path = word
            .trim_start_matches(|c: char| !c.is_alphanumeric() && c != '.')
            .trim_end_matches(|c: char| !c.is_alphanumeric() && c != '/');
        let named = dirs.iter().any(|d| path.starts_with(d));
        if named && !path.ends_with('/') && !path.contains(['<', '*', '|']) {
            assert!(
                std::path::Path::new(root).join(path).exists(),
                "README names {path}, which does not exist"
            );
        }
    }
    let demo = std::fs::read_to_string(format!("{root}/scripts/sandbox-demo")).expect("demo");
    assert!(!demo.contains("--quiet"), "the demo shows cargo's build progress");
    assert!(
        demo.contains("rm -rf \"$created\""),
        "the demo removes the temp dir it made"
    );
}
