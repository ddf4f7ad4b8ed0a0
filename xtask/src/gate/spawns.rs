//! Background work: nothing durable runs from a bare task, thread or timer (ARCHITECTURE.md,
//! "Invariants"); durable side effects are outbox actions. Every place in the shipped crates'
//! sources that starts a task, a thread or a timer must be listed in
//! `xtask/gate/spawn-sites.toml` with the reason it is not a side effect that could be lost.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::{config_line, read_reasons, Outcome, Violation};

pub const LIST: &str = "xtask/gate/spawn-sites.toml";

/// What starts work outside the request or outbox that caused it.
pub const PATTERNS: &[&str] = &[
    "tokio::spawn",
    "task::spawn",
    "spawn_blocking",
    "spawn_local",
    "thread::spawn",
    "thread::Builder",
    "time::interval",
    "JoinSet",
];

/// Crates whose sources are not shipped in the server (the test harness).
const EXEMPT_CRATES: &[&str] = &["testkit"];

/// Every `(file, line, pattern)` that starts background work in `source`, skipping comments and
/// everything from a top-level `#[cfg(test)]` on (unit tests).
pub fn sites(source: &str) -> Vec<(usize, &'static str)> {
    let mut out = Vec::new();
    for (i, line) in source.lines().enumerate() {
        if line.starts_with("#[cfg(test)]") {
            break;
        }
        let code = line.split("//").next().unwrap_or_default();
        if let Some(p) = PATTERNS.iter().find(|p| code.contains(**p)) {
            out.push((i + 1, *p));
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            rust_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// Checks `crates/*/src` under `root` against the reviewed list (`[sites]`, file path = reason).
pub fn check(root: &Path, list_text: &str, listed: &[(String, String)]) -> anyhow::Result<Outcome> {
    let mut outcome = Outcome::default();
    let mut files = Vec::new();
    let crates = root.join("crates");
    for entry in std::fs::read_dir(&crates).with_context(|| format!("reading {}", crates.display()))? {
        let dir = entry?.path();
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        if EXEMPT_CRATES.contains(&name.as_str()) || !dir.join("src").is_dir() {
            continue;
        }
        rust_files(&dir.join("src"), &mut files)?;
    }
    files.sort();
    let mut used = std::collections::BTreeSet::new();
    for file in &files {
        let rel = file.strip_prefix(root).unwrap_or(file).to_string_lossy().replace('\\', "/");
        let source = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let found = sites(&source);
        if found.is_empty() {
            continue;
        }
        if listed.iter().any(|(path, _)| *path == rel) {
            used.insert(rel);
            continue;
        }
        for (line, pattern) in found {
            outcome.push(Violation::new(
                format!("{rel}:{line}"),
                format!("`{pattern}` starts work that nothing durable tracks: a side effect run there is lost if the process stops"),
                format!("make the side effect an outbox action (`scheduler::enqueue` in the transaction that causes it); if this is not a side effect, list `\"{rel}\" = \"<why>\"` in {LIST}"),
            ));
        }
    }
    for (path, _) in listed {
        if !used.contains(path) {
            let line = config_line(list_text, path).unwrap_or(0);
            outcome.push(Violation::new(
                format!("{LIST}:{line}"),
                format!("`{path}` is listed but starts no task, thread or timer"),
                "remove the stale entry",
            ));
        }
    }
    outcome.summary.push(format!(
        "background work: {} source files checked, {} listed site(s) with reasons",
        files.len(),
        used.len()
    ));
    Ok(outcome)
}

/// The gate's step.
pub fn gate(root: &Path) -> anyhow::Result<Outcome> {
    let (text, listed) = read_reasons(&root.join(LIST), "sites")?;
    check(root, &text, &listed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workspace(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        dir
    }

    #[test]
    fn a_bare_spawn_in_a_shipped_crate_fails_the_gate_naming_its_line_and_the_outbox() {
        let dir = workspace(&[(
            "crates/api/src/routes.rs",
            "fn a() {}\n// tokio::spawn in a comment is fine\nfn b() { tokio::spawn(send_mail()); }\n",
        )]);
        let outcome = check(dir.path(), "", &[]).unwrap();
        assert_eq!(outcome.violations.len(), 1, "{}", outcome.text());
        let v = outcome.violations[0].to_string();
        assert!(v.contains("crates/api/src/routes.rs:3") && v.contains("scheduler::enqueue"), "{v}");
    }

    #[test]
    fn listed_sites_unit_tests_and_the_test_harness_pass_and_a_stale_entry_fails() {
        let dir = workspace(&[
            ("crates/rampart/src/main.rs", "fn main() { tokio::spawn(worker.run()); }\n"),
            (
                "crates/auth/src/lib.rs",
                "fn a() {}\n#[cfg(test)]\nmod tests { fn t() { std::thread::spawn(|| {}); } }\n",
            ),
            ("crates/testkit/src/lib.rs", "fn serve() { tokio::spawn(server); }\n"),
            ("crates/api/src/lib.rs", "fn quiet() {}\n"),
        ]);
        let text =
            "[sites]\n\"crates/rampart/src/main.rs\" = \"the worker loop\"\n\"crates/api/src/lib.rs\" = \"was\"\n";
        let listed = super::super::parse_reasons(text, "sites").unwrap();
        let outcome = check(dir.path(), text, &listed).unwrap();
        assert_eq!(outcome.violations.len(), 1, "{}", outcome.text());
        let v = outcome.violations[0].to_string();
        assert!(v.contains("spawn-sites.toml:3") && v.contains("crates/api/src/lib.rs"), "{v}");
    }

    #[test]
    fn the_workspace_starts_background_work_only_where_listed() {
        let root = crate::workspace_root();
        let outcome = gate(&root).unwrap();
        assert!(outcome.violations.is_empty(), "{}", outcome.text());
    }
}
