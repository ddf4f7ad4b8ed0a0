//! `cargo xtask security-gate`: every check collects all of its violations, each with where it is
//! and how to fix it, prints a summary line, and the gate fails when any check found anything.
//!
//! Each check is a plain function over data (a live catalogue, `cargo metadata`, `Cargo.lock`, an
//! OpenAPI document), so the tests run the very same functions on fixtures.

pub mod api;
pub mod arch;
pub mod catalogue;
pub mod deps;
pub mod metadata;
pub mod sbom;
pub mod spawns;
pub mod tidy;

use std::{
    fmt,
    path::{Path, PathBuf},
};

use anyhow::Context as _;

/// Where the gate's reviewed lists live, relative to the workspace root.
pub const CONFIG_DIR: &str = "xtask/gate";

/// One thing the gate refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// `file:line`, or the database object (`table public.projects`).
    pub place: String,
    pub problem: String,
    pub fix: String,
}

impl Violation {
    pub fn new(place: impl Into<String>, problem: impl Into<String>, fix: impl Into<String>) -> Violation {
        Violation { place: place.into(), problem: problem.into(), fix: fix.into() }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}\n    fix: {}", self.place, self.problem, self.fix)
    }
}

/// The outcome of one check.
#[derive(Debug, Default)]
pub struct Outcome {
    pub violations: Vec<Violation>,
    /// Summary lines, e.g. "8/8 tenant tables forced".
    pub summary: Vec<String>,
    /// Things worth saying that are not failures (a skipped step, a stale-free note).
    pub notices: Vec<String>,
}

impl Outcome {
    pub fn push(&mut self, v: Violation) {
        self.violations.push(v);
    }

    pub fn merge(&mut self, other: Outcome) {
        self.violations.extend(other.violations);
        self.summary.extend(other.summary);
        self.notices.extend(other.notices);
    }

    /// Every violation as printed, one string; tests assert on it.
    #[cfg(test)]
    pub fn text(&self) -> String {
        self.violations.iter().map(|v| format!("{v}\n")).collect()
    }

    fn failed(err: &anyhow::Error, what: &str) -> Outcome {
        Outcome {
            violations: vec![Violation::new(
                what,
                format!("the check could not run: {err:#}"),
                "fix the cause above and run `cargo xtask security-gate` again",
            )],
            ..Outcome::default()
        }
    }
}

/// What the command line decides.
#[derive(Debug, Clone)]
pub struct Options {
    pub advisory_db: PathBuf,
    /// No network: the yanked-crate check is skipped with a notice.
    pub offline: bool,
    pub sbom: PathBuf,
}

/// The advisory database: `--advisory-db`, else `RAMPART_ADVISORY_DB`, else `advisory-db` or
/// `shared/advisory-db` beside the workspace (CI lays the snapshot out as `../shared/advisory-db`).
pub fn default_advisory_db(root: &Path, flag: Option<PathBuf>, env: Option<PathBuf>) -> PathBuf {
    if let Some(path) = flag.or(env) {
        return path;
    }
    let parent = root.parent().unwrap_or(root);
    let candidates = [parent.join("shared/advisory-db"), parent.join("advisory-db")];
    candidates.iter().find(|p| p.join("crates").is_dir()).cloned().unwrap_or_else(|| candidates[0].clone())
}

/// A line of a reviewed list (`key = "reason"`), for messages that point at it.
pub fn config_line(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|line| {
            let line = line.trim_start();
            let rest = line
                .strip_prefix(&format!("\"{key}\""))
                .or_else(|| line.strip_prefix(&format!("'{key}'")))
                .or_else(|| line.strip_prefix(key));
            rest.is_some_and(|r| r.trim_start().starts_with('='))
        })
        .map(|i| i + 1)
}

/// Reads a reviewed list of `key = "reason"` pairs under `[section]`; an empty reason is an error,
/// because the point of the list is the reason.
pub fn read_reasons(path: &Path, section: &str) -> anyhow::Result<(String, Vec<(String, String)>)> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let reasons = parse_reasons(&text, section).with_context(|| format!("in {}", path.display()))?;
    Ok((text, reasons))
}

pub fn parse_reasons(text: &str, section: &str) -> anyhow::Result<Vec<(String, String)>> {
    let doc: toml::Table = text.parse()?;
    let Some(table) = doc.get(section) else {
        return Ok(Vec::new());
    };
    let table = table.as_table().with_context(|| format!("[{section}] must be a table of `name = \"reason\"`"))?;
    let mut out = Vec::new();
    for (key, value) in table {
        let reason = value.as_str().with_context(|| format!("`{key}`: the value must be the reason, a string"))?;
        if reason.trim().is_empty() {
            anyhow::bail!("`{key}` has an empty reason: say why it is allowed");
        }
        out.push((key.clone(), reason.to_owned()));
    }
    Ok(out)
}

/// Runs every check, prints what it found, and fails when anything was found.
pub fn run(root: &Path, opts: &Options) -> anyhow::Result<()> {
    let checks: Vec<(&str, Outcome)> = vec![
        ("database", catalogue::gate(root).unwrap_or_else(|e| Outcome::failed(&e, "database catalogue"))),
        ("dependencies", deps::gate(root, opts).unwrap_or_else(|e| Outcome::failed(&e, "dependencies"))),
        ("api", api::gate(root).unwrap_or_else(|e| Outcome::failed(&e, "openapi/openapi.json"))),
        ("architecture", arch::gate(root).unwrap_or_else(|e| Outcome::failed(&e, "cargo metadata"))),
        ("background work", spawns::gate(root).unwrap_or_else(|e| Outcome::failed(&e, spawns::LIST))),
        ("sbom", sbom::gate(root, &opts.sbom).unwrap_or_else(|e| Outcome::failed(&e, "SBOM"))),
        ("tidy", tidy::gate(root).unwrap_or_else(|e| Outcome::failed(&e, "sources"))),
    ];
    let total = report(&checks);
    if total > 0 {
        anyhow::bail!("security gate: {total} violation(s); each is listed above with its fix");
    }
    println!("security gate: passed");
    Ok(())
}

/// `cargo xtask tidy`: the tidy step alone; with `write_debt`, rewrites its debt list instead.
pub fn run_tidy(root: &Path, write_debt: bool) -> anyhow::Result<()> {
    if write_debt {
        let lines = tidy::write_debt(root)?;
        println!("wrote {} ({lines} lines)", tidy::DEBT);
        return Ok(());
    }
    let checks = [("tidy", tidy::gate(root).unwrap_or_else(|e| Outcome::failed(&e, "sources")))];
    let total = report(&checks);
    if total > 0 {
        anyhow::bail!("tidy: {total} violation(s); each is listed above with its fix");
    }
    println!("tidy: passed");
    Ok(())
}

/// Prints every check's violations, notices and summary; returns how many violations there were.
fn report(checks: &[(&str, Outcome)]) -> usize {
    let mut total = 0;
    for (name, outcome) in checks {
        for v in &outcome.violations {
            println!("error[{name}]: {v}");
        }
        for n in &outcome.notices {
            println!("note[{name}]: {n}");
        }
        total += outcome.violations.len();
    }
    println!();
    for (_, outcome) in checks {
        for line in &outcome.summary {
            println!("{line}");
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reviewed_lists_need_a_reason_for_every_entry() {
        let err = parse_reasons("[tables]\nusers = \"\"\n", "tables").unwrap_err();
        assert!(err.to_string().contains("`users` has an empty reason"), "{err}");
        let ok = parse_reasons("[tables]\n\"a b\" = \"because\"\n", "tables").unwrap();
        assert_eq!(ok, [("a b".to_owned(), "because".to_owned())]);
    }

    #[test]
    fn config_lines_are_found_for_bare_and_quoted_keys() {
        let text = "# head\n[tables]\nusers = \"x\"\n\"GET /healthz\" = \"y\"\n";
        assert_eq!(config_line(text, "users"), Some(3));
        assert_eq!(config_line(text, "GET /healthz"), Some(4));
        assert_eq!(config_line(text, "other"), None);
    }

    #[test]
    fn the_advisory_database_is_found_beside_the_workspace_unless_given() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("clone");
        std::fs::create_dir_all(dir.path().join("shared/advisory-db/crates")).unwrap();
        assert_eq!(default_advisory_db(&root, None, None), dir.path().join("shared/advisory-db"));
        assert_eq!(default_advisory_db(&root, None, Some("/env".into())), PathBuf::from("/env"));
        assert_eq!(default_advisory_db(&root, Some("/flag".into()), Some("/env".into())), PathBuf::from("/flag"));
    }
}
