//! Dependency audit: RustSec advisories from a local copy of the advisory database, package
//! sources (crates.io and the workspace only: no git, no other registry), a licence allow-list,
//! and yanked releases (from cargo's own index cache, refreshed by cargo unless `--offline`).
//!
//! The policy lives in `xtask/gate/dependencies.toml`; every ignored advisory, allowed licence
//! and licence exception carries its reason there.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use rustsec::{database::Query, Database, Lockfile};

use super::{config_line, metadata::Metadata, parse_reasons, Options, Outcome, Violation, CONFIG_DIR};

pub const POLICY: &str = "dependencies.toml";

/// The reviewed dependency policy.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub text: String,
    pub ignored: Vec<(String, String)>,
    pub registries: Vec<(String, String)>,
    pub licences: Vec<(String, String)>,
    pub licence_exceptions: Vec<(String, String)>,
}

impl Policy {
    pub fn parse(text: &str) -> anyhow::Result<Policy> {
        Ok(Policy {
            text: text.to_owned(),
            ignored: parse_reasons(text, "ignored-advisories")?,
            registries: parse_reasons(text, "registries")?,
            licences: parse_reasons(text, "licences")?,
            licence_exceptions: parse_reasons(text, "licence-exceptions")?,
        })
    }

    fn place(&self, key: &str) -> String {
        let line = config_line(&self.text, key).map(|l| format!(":{l}")).unwrap_or_default();
        format!("{CONFIG_DIR}/{POLICY}{line}")
    }
}

/// `Cargo.lock:line` of a package's `name = …` line.
pub fn lock_place(lock_text: &str, name: &str, version: &str) -> String {
    let lines: Vec<&str> = lock_text.lines().collect();
    let want_name = format!("name = \"{name}\"");
    let want_version = format!("version = \"{version}\"");
    for (i, line) in lines.iter().enumerate() {
        if line.trim() == want_name && lines.get(i + 1).is_some_and(|next| next.trim() == want_version) {
            return format!("Cargo.lock:{}", i + 1);
        }
    }
    "Cargo.lock".to_owned()
}

/// Open advisories against the locked packages: vulnerabilities, and the informational kinds
/// that also fail the gate (unmaintained, unsound). Notices are printed only.
pub fn check_advisories(db: &Database, lock: &Lockfile, lock_text: &str, policy: &Policy) -> Outcome {
    let mut out = Outcome::default();
    let mut found = db.query_vulnerabilities(lock, &Query::crate_scope());
    found.extend(db.query_vulnerabilities(lock, &Query::crate_scope().informational(true)));
    let ignored: Vec<&str> = policy.ignored.iter().map(|(id, _)| id.as_str()).collect();
    let mut matched_ignores = Vec::new();
    let mut vulnerable = std::collections::BTreeSet::new();
    let mut ignored_count = 0;
    for v in &found {
        let a = &v.advisory;
        let id = a.id.as_str();
        let kind = match &a.informational {
            None => "vulnerability".to_owned(),
            Some(rustsec::advisory::Informational::Notice) => {
                out.notices.push(format!("{} {}: notice {id}: {}", v.package.name, v.package.version, a.title));
                continue;
            }
            Some(other) => other.as_str().to_owned(),
        };
        if ignored.contains(&id) {
            matched_ignores.push(id.to_owned());
            ignored_count += 1;
            continue;
        }
        vulnerable.insert(format!("{} {}", v.package.name, v.package.version));
        let patched: Vec<String> = v.versions.patched().iter().map(ToString::to_string).collect();
        let upgrade = if patched.is_empty() {
            "no patched release exists: replace the crate".to_owned()
        } else {
            format!(
                "upgrade to a patched release ({}) with `cargo update -p {}@{}`",
                patched.join(" or "),
                v.package.name,
                v.package.version
            )
        };
        let url = a.url.as_ref().map(|u| format!(" <{u}>")).unwrap_or_default();
        out.push(Violation::new(
            lock_place(lock_text, v.package.name.as_str(), &v.package.version.to_string()),
            format!("{} {} has {kind} advisory {id}: {}{url}", v.package.name, v.package.version, a.title),
            format!(
                "{upgrade}; if it cannot reach Rampart, add `\"{id}\" = \"<why it does not affect us>\"` under [ignored-advisories] in {CONFIG_DIR}/{POLICY}"
            ),
        ));
    }
    for (id, _) in &policy.ignored {
        if !matched_ignores.contains(id) {
            out.push(Violation::new(
                policy.place(id),
                format!("ignores {id}, which no longer matches any locked package"),
                format!("remove `{id}` from [ignored-advisories] in {CONFIG_DIR}/{POLICY}"),
            ));
        }
    }
    out.summary.push(format!(
        "Dependencies: {} of {} locked packages have an open advisory ({} advisories in the database; {ignored_count} ignored with a reason)",
        vulnerable.len(),
        lock.packages.len(),
        db.iter().count()
    ));
    out
}

/// Every package comes from the workspace or from a listed registry; git sources never.
pub fn check_sources(lock: &Lockfile, lock_text: &str, policy: &Policy) -> Outcome {
    let mut out = Outcome::default();
    let allowed: Vec<&str> = policy.registries.iter().map(|(r, _)| r.as_str()).collect();
    let mut ok = 0;
    for p in &lock.packages {
        let Some(source) = &p.source else {
            ok += 1;
            continue;
        };
        let url = source.to_string();
        let place = lock_place(lock_text, p.name.as_str(), &p.version.to_string());
        if source.is_git() {
            out.push(Violation::new(
                place,
                format!(
                    "{} {} comes from a git repository ({url}): unreviewed, mutable and outside the advisory database",
                    p.name, p.version
                ),
                "depend on a published crates.io release instead (vendor it into the workspace if no release exists)",
            ));
        } else if source.is_path() || allowed.contains(&url.as_str()) {
            ok += 1;
        } else {
            out.push(Violation::new(
                place,
                format!("{} {} comes from an unknown registry ({url})", p.name, p.version),
                format!("depend on the crates.io release, or add `\"{url}\" = \"<who runs it and why we trust it>\"` under [registries] in {CONFIG_DIR}/{POLICY}"),
            ));
        }
    }
    out.summary.push(format!(
        "Dependencies: {ok}/{} packages from crates.io or the workspace (no git sources, no unknown registries)",
        lock.packages.len()
    ));
    out
}

/// The SPDX id of a licence requirement, with its exception (`Apache-2.0 WITH LLVM-exception`).
fn requirement_name(req: &spdx::LicenseReq) -> String {
    match &req.addition {
        Some(addition) => format!("{} WITH {addition}", req.license),
        None => req.license.to_string(),
    }
}

/// Every package's licence expression is satisfiable with the allowed licences alone.
pub fn check_licences(meta: &Metadata, lock_text: &str, policy: &Policy) -> Outcome {
    let mut out = Outcome::default();
    let allowed: Vec<&str> = policy.licences.iter().map(|(l, _)| l.as_str()).collect();
    let excepted: Vec<&str> = policy.licence_exceptions.iter().map(|(c, _)| c.as_str()).collect();
    let mut ok = 0;
    let mut packages: Vec<_> = meta.packages.iter().collect();
    packages.sort_by(|a, b| (&a.name, &a.version).cmp(&(&b.name, &b.version)));
    for p in packages {
        if excepted.contains(&p.name.as_str()) {
            ok += 1;
            continue;
        }
        let place = lock_place(lock_text, &p.name, &p.version);
        let exception_fix = format!(
            "replace the crate, or add `\"{}\" = \"<its licence and why we may use it>\"` under [licence-exceptions] in {CONFIG_DIR}/{POLICY}",
            p.name
        );
        let Some(expression) = &p.license else {
            let file = p.license_file.as_deref().map(|f| format!(" (only a licence file: {f})")).unwrap_or_default();
            out.push(Violation::new(
                place,
                format!("{} {} declares no SPDX licence{file}", p.name, p.version),
                exception_fix,
            ));
            continue;
        };
        match spdx::Expression::parse_mode(expression, spdx::ParseMode::LAX) {
            Err(err) => out.push(Violation::new(
                place,
                format!(
                    "{} {} has a licence that is not an SPDX expression: `{expression}` ({err})",
                    p.name, p.version
                ),
                exception_fix,
            )),
            Ok(parsed) => {
                if parsed.evaluate(|req| allowed.contains(&requirement_name(req).as_str())) {
                    ok += 1;
                } else {
                    out.push(Violation::new(
                        place,
                        format!("{} {} is licensed `{expression}`, which the allowed licences do not satisfy", p.name, p.version),
                        format!(
                            "replace the crate, or, once the licence is reviewed, add it under [licences] in {CONFIG_DIR}/{POLICY} (or the crate under [licence-exceptions]) with the reason"
                        ),
                    ));
                }
            }
        }
    }
    out.summary.push(format!("Dependencies: {ok}/{} packages have an allowed licence", meta.packages.len()));
    out
}

/// Cargo's sparse-index cache path for a crate (the layout of index.crates.io itself).
fn index_path(name: &str) -> PathBuf {
    let name = name.to_ascii_lowercase();
    match name.len() {
        1 => PathBuf::from("1").join(&name),
        2 => PathBuf::from("2").join(&name),
        3 => PathBuf::from("3").join(&name[..1]).join(&name),
        _ => PathBuf::from(&name[..2]).join(&name[2..4]).join(&name),
    }
}

/// Whether `version` is yanked according to a cached index file: NUL-separated pairs of a version
/// and that version's index line (JSON), after a header. `None` when the version is not there.
pub fn yanked_in_cache(cache_file: &[u8], version: &str) -> Option<bool> {
    cache_file.split(|b| *b == 0).filter(|part| part.starts_with(b"{")).find_map(|part| {
        let entry: serde_json::Value = serde_json::from_slice(part).ok()?;
        (entry["vers"].as_str()? == version).then(|| entry["yanked"].as_bool().unwrap_or(false))
    })
}

/// The crates.io index caches under `cargo_home`, newest first.
pub fn index_caches(cargo_home: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(cargo_home.join("registry/index"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("index.crates.io-"))
        .map(|e| (e.metadata().and_then(|m| m.modified()).unwrap_or(std::time::UNIX_EPOCH), e.path().join(".cache")))
        .filter(|(_, p)| p.is_dir())
        .collect();
    dirs.sort_by_key(|d| std::cmp::Reverse(d.0));
    dirs.into_iter().map(|(_, p)| p).collect()
}

/// Yanked releases among the crates.io packages in the lockfile, read from cargo's index cache.
pub fn check_yanked(lock: &Lockfile, lock_text: &str, caches: &[PathBuf]) -> Outcome {
    let mut out = Outcome::default();
    let (mut checked, mut unknown, mut yanked) = (0, Vec::new(), 0);
    for p in lock.packages.iter().filter(|p| p.source.as_ref().is_some_and(|s| s.is_default_registry())) {
        let version = p.version.to_string();
        let state = caches
            .iter()
            .find_map(|dir| yanked_in_cache(&std::fs::read(dir.join(index_path(p.name.as_str()))).ok()?, &version));
        match state {
            None => unknown.push(format!("{} {version}", p.name)),
            Some(is_yanked) => {
                checked += 1;
                if is_yanked {
                    yanked += 1;
                    out.push(Violation::new(
                        lock_place(lock_text, p.name.as_str(), &version),
                        format!("{} {version} is yanked from crates.io: its authors withdrew it", p.name),
                        format!("`cargo update -p {}@{version}` to a release that is not yanked", p.name),
                    ));
                }
            }
        }
    }
    if !unknown.is_empty() {
        out.notices.push(format!(
            "{} package(s) are not in cargo's index cache, so their yanked state is unknown: {}",
            unknown.len(),
            unknown.join(", ")
        ));
    }
    out.summary.push(format!("Dependencies: {yanked} of {checked} crates.io packages are yanked"));
    out
}

fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from(".cargo"))
}

/// The gate's step.
pub fn gate(root: &Path, opts: &Options) -> anyhow::Result<Outcome> {
    let policy_path = root.join(CONFIG_DIR).join(POLICY);
    let text = std::fs::read_to_string(&policy_path).with_context(|| format!("reading {}", policy_path.display()))?;
    let policy = Policy::parse(&text).with_context(|| format!("in {}", policy_path.display()))?;
    let lock_text = std::fs::read_to_string(root.join("Cargo.lock")).context("reading Cargo.lock")?;
    let lock: Lockfile = lock_text.parse().context("parsing Cargo.lock")?;
    let db = Database::open(&opts.advisory_db).with_context(|| {
        format!(
            "no RustSec advisory database at {}: pass --advisory-db PATH or set RAMPART_ADVISORY_DB (a copy of github.com/rustsec/advisory-db)",
            opts.advisory_db.display()
        )
    })?;
    let meta = super::metadata::load(root, None)?;

    let mut out = check_advisories(&db, &lock, &lock_text, &policy);
    let snapshot = std::fs::read_to_string(opts.advisory_db.join("SNAPSHOT")).ok().and_then(|s| {
        s.lines().find_map(|l| l.strip_prefix("commit: ").map(|c| c.chars().take(12).collect::<String>()))
    });
    out.notices.push(format!(
        "advisories from {}{}",
        opts.advisory_db.display(),
        snapshot.map(|c| format!(" (snapshot of commit {c})")).unwrap_or_default()
    ));
    out.merge(check_sources(&lock, &lock_text, &policy));
    out.merge(check_licences(&meta, &lock_text, &policy));
    if opts.offline {
        out.notices.push("yanked crates not checked: --offline (cargo's index cannot be refreshed)".to_owned());
        out.summary.push("Dependencies: yanked check skipped (--offline)".to_owned());
    } else {
        // Cargo itself refreshes its index cache for every locked package; nothing is changed.
        let refresh = crate::cargo()
            .current_dir(root)
            .args(["update", "--workspace", "--dry-run"])
            .output()
            .context("running cargo update --dry-run")?;
        if refresh.status.success() {
            out.merge(check_yanked(&lock, &lock_text, &index_caches(&cargo_home())));
        } else {
            out.push(Violation::new(
                "crates.io index",
                format!(
                    "cargo could not refresh its index to check for yanked crates: {}",
                    String::from_utf8_lossy(&refresh.stderr).trim()
                ),
                "restore access to crates.io, or run `cargo xtask security-gate --offline` to skip the yanked check",
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Database {
        let root = crate::workspace_root();
        let path =
            super::super::default_advisory_db(&root, None, std::env::var_os("RAMPART_ADVISORY_DB").map(PathBuf::from));
        Database::open(&path).unwrap_or_else(|e| {
            panic!(
                "no advisory database at {} ({e}): set RAMPART_ADVISORY_DB to a copy of the RustSec advisory-db",
                path.display()
            )
        })
    }

    fn committed_policy() -> Policy {
        let text = std::fs::read_to_string(crate::workspace_root().join(CONFIG_DIR).join(POLICY)).unwrap();
        Policy::parse(&text).unwrap()
    }

    const VULNERABLE_LOCK: &str = r#"# A fixture lockfile.
version = 4

[[package]]
name = "fixture"
version = "0.1.0"
dependencies = [
 "smallvec",
]

[[package]]
name = "smallvec"
version = "1.6.0"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "fe0f37c9e8f3c5a4a66ad655a93c74daac4ad00c441533bf5c6e7990bb42604e"
"#;

    #[test]
    fn a_dependency_with_a_known_advisory_fails_the_gate_naming_the_package_and_the_upgrade() {
        let lock: Lockfile = VULNERABLE_LOCK.parse().unwrap();
        let out = check_advisories(&snapshot(), &lock, VULNERABLE_LOCK, &Policy::default());
        let text = out.text();
        assert!(text.contains("Cargo.lock:12: smallvec 1.6.0 has vulnerability advisory RUSTSEC-2021-0003: Buffer overflow in SmallVec::insert_many"), "{text}");
        assert!(
            text.contains(
                "fix: upgrade to a patched release (>=0.6.14, <1.0.0 or >=1.6.1) with `cargo update -p smallvec@1.6.0`"
            ),
            "{text}"
        );
        assert!(text.contains("add `\"RUSTSEC-2021-0003\" = \"<why it does not affect us>\"` under [ignored-advisories] in xtask/gate/dependencies.toml"), "{text}");
        assert!(
            out.summary[0].starts_with("Dependencies: 1 of 2 locked packages have an open advisory"),
            "{:?}",
            out.summary
        );
    }

    #[test]
    fn an_ignored_advisory_needs_a_reason_and_a_stale_one_fails_the_gate() {
        let err = Policy::parse("[ignored-advisories]\n\"RUSTSEC-2021-0003\" = \"\"\n").unwrap_err();
        assert!(err.to_string().contains("empty reason"), "{err}");

        let lock: Lockfile = VULNERABLE_LOCK.parse().unwrap();
        let policy = Policy::parse("[ignored-advisories]\n\"RUSTSEC-2021-0003\" = \"insert_many is never called\"\n\"RUSTSEC-2000-0000\" = \"gone\"\n").unwrap();
        let out = check_advisories(&snapshot(), &lock, VULNERABLE_LOCK, &policy);
        assert_eq!(
            out.text(),
            "xtask/gate/dependencies.toml:3: ignores RUSTSEC-2000-0000, which no longer matches any locked package\n    fix: remove `RUSTSEC-2000-0000` from [ignored-advisories] in xtask/gate/dependencies.toml\n"
        );
        assert!(out.summary[0].contains("1 ignored with a reason"), "{:?}", out.summary);
    }

    #[test]
    fn git_sources_and_unknown_registries_fail_the_gate() {
        let text = r#"version = 4

[[package]]
name = "from-git"
version = "0.1.0"
source = "git+https://example.com/from-git.git?rev=abc#abcdef0123456789abcdef0123456789abcdef01"

[[package]]
name = "elsewhere"
version = "1.0.0"
source = "registry+https://registry.example.com/index"
checksum = "fe0f37c9e8f3c5a4a66ad655a93c74daac4ad00c441533bf5c6e7990bb42604e"

[[package]]
name = "serde"
version = "1.0.0"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "fe0f37c9e8f3c5a4a66ad655a93c74daac4ad00c441533bf5c6e7990bb42604e"
"#;
        let lock: Lockfile = text.parse().unwrap();
        let out = check_sources(&lock, text, &committed_policy());
        let msg = out.text();
        assert_eq!(out.violations.len(), 2, "{msg}");
        assert!(msg.contains("Cargo.lock:4: from-git 0.1.0 comes from a git repository"), "{msg}");
        assert!(msg.contains("fix: depend on a published crates.io release instead"), "{msg}");
        assert!(msg.contains("Cargo.lock:9: elsewhere 1.0.0 comes from an unknown registry (registry+https://registry.example.com/index)"), "{msg}");
        assert_eq!(
            out.summary,
            ["Dependencies: 1/3 packages from crates.io or the workspace (no git sources, no unknown registries)"]
        );
    }

    fn meta_with(licences: &[(&str, Option<&str>)]) -> Metadata {
        let packages: Vec<serde_json::Value> = licences
            .iter()
            .map(|(name, license)| serde_json::json!({"id": format!("{name} 1.0.0"), "name": name, "version": "1.0.0", "license": license}))
            .collect();
        serde_json::from_value(serde_json::json!({"packages": packages})).unwrap()
    }

    #[test]
    fn a_licence_outside_the_allow_list_fails_the_gate_and_either_side_of_an_or_suffices() {
        let meta = meta_with(&[
            ("dual", Some("MIT OR Apache-2.0")),
            ("legacy", Some("MIT/Apache-2.0")),
            ("llvm", Some("Apache-2.0 WITH LLVM-exception")),
            ("choice", Some("GPL-3.0-only OR MIT")),
            ("copyleft", Some("GPL-3.0-only")),
            ("unlabelled", None),
        ]);
        let out = check_licences(&meta, "", &committed_policy());
        let text = out.text();
        assert_eq!(out.violations.len(), 2, "{text}");
        assert!(
            text.contains("copyleft 1.0.0 is licensed `GPL-3.0-only`, which the allowed licences do not satisfy"),
            "{text}"
        );
        assert!(text.contains("unlabelled 1.0.0 declares no SPDX licence"), "{text}");
        assert!(text.contains("[licence-exceptions] in xtask/gate/dependencies.toml"), "{text}");
    }

    #[test]
    fn a_yanked_release_in_cargos_index_cache_fails_the_gate() {
        let cache = tempfile::tempdir().unwrap();
        let dir = cache.path().join("he/xx");
        std::fs::create_dir_all(&dir).unwrap();
        // Cargo's cache layout: a header, then NUL-separated version / index line pairs.
        let mut file = b"\x03\x02\x00\x00\x00etag\x00".to_vec();
        for (v, yanked) in [("0.4.1", true), ("0.4.3", false)] {
            file.extend_from_slice(
                format!("{v}\0{{\"name\":\"hexxy\",\"vers\":\"{v}\",\"yanked\":{yanked}}}\0").as_bytes(),
            );
        }
        std::fs::write(dir.join("hexxy"), &file).unwrap();
        let lock_for = |v: &str| {
            format!("version = 4\n\n[[package]]\nname = \"hexxy\"\nversion = \"{v}\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\nchecksum = \"fe0f37c9e8f3c5a4a66ad655a93c74daac4ad00c441533bf5c6e7990bb42604e\"\n")
        };
        let text = lock_for("0.4.1");
        let out = check_yanked(&text.parse().unwrap(), &text, &[cache.path().to_owned()]);
        assert!(out.text().contains("Cargo.lock:4: hexxy 0.4.1 is yanked from crates.io"), "{}", out.text());
        assert!(out.text().contains("fix: `cargo update -p hexxy@0.4.1`"), "{}", out.text());
        let text = lock_for("0.4.3");
        let out = check_yanked(&text.parse().unwrap(), &text, &[cache.path().to_owned()]);
        assert!(out.violations.is_empty(), "{}", out.text());
        assert_eq!(out.summary, ["Dependencies: 0 of 1 crates.io packages are yanked"]);
    }

    #[test]
    fn the_committed_lockfile_passes_the_advisory_source_and_licence_checks() {
        let root = crate::workspace_root();
        let text = std::fs::read_to_string(root.join("Cargo.lock")).unwrap();
        let lock: Lockfile = text.parse().unwrap();
        let policy = committed_policy();
        let mut out = check_advisories(&snapshot(), &lock, &text, &policy);
        out.merge(check_sources(&lock, &text, &policy));
        out.merge(check_licences(&super::super::metadata::load(&root, None).unwrap(), &text, &policy));
        assert!(out.violations.is_empty(), "{}", out.text());
    }
}
