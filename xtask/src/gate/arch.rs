//! Architecture: the dependency direction drawn in ARCHITECTURE.md ("Dependency direction"),
//! checked against `cargo metadata`. Only `api` depends on poem; the pure crates reach no crate
//! that does I/O, however indirectly. Messages name the `Cargo.toml` line to change.

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    path::Path,
};

use anyhow::{bail, Context as _};

use super::{metadata::Metadata, Outcome, Violation};

pub const DOCUMENT: &str = "ARCHITECTURE.md";
const SECTION: &str = "## Dependency direction";

/// Crates that mean HTTP serving; only these workspace crates may depend on them directly.
pub const HTTP_CRATES: &[&str] = &["poem", "poem-openapi"];
/// `ids` implements the description traits of its id types behind its `openapi` feature, which only
/// `api` turns on (the orphan rule keeps those impls beside the types).
pub const HTTP_ALLOWED: &[&str] = &["api", "ids"];

/// Crates that do I/O (network, database, files, an async runtime, process-wide logging sinks). A
/// pure crate reaches none of them through its normal dependencies, however indirectly.
pub const IO_CRATES: &[&str] = &[
    "tokio",
    "async-std",
    "smol",
    "mio",
    "socket2",
    "sea-orm",
    "sqlx",
    "sqlx-core",
    "rusqlite",
    "libsqlite3-sys",
    "postgres",
    "tokio-postgres",
    "diesel",
    "redis",
    "reqwest",
    "hyper",
    "h2",
    "ureq",
    "curl",
    "isahc",
    "poem",
    "poem-openapi",
    "axum",
    "actix-web",
    "warp",
    "tonic",
    "lettre",
    "tracing-subscriber",
    "tracing-appender",
    "tempfile",
];

/// The dependency direction as ARCHITECTURE.md draws it.
#[derive(Debug, Clone, Default)]
pub struct Direction {
    /// crate -> what it may use, with the line that says so.
    pub edges: BTreeMap<String, (BTreeSet<String>, usize)>,
    /// Pure libraries: no arrows out (to workspace crates), no I/O.
    pub pure: BTreeMap<String, usize>,
    /// Crates that may only be dev-dependencies (the test harness).
    pub dev_only: BTreeSet<String>,
}

/// The first word of a crate reference (`rampart (bin: CLI)` -> `rampart`).
fn crate_word(s: &str) -> Option<String> {
    s.split_whitespace()
        .next()
        .map(|w| w.trim_matches(|c: char| !(c.is_alphanumeric() || c == '-' || c == '_')).to_owned())
        .filter(|w| !w.is_empty())
}

fn strip_parentheses(s: &str) -> String {
    let mut depth = 0;
    s.chars()
        .filter(|c| {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    return false;
                }
                _ => {}
            }
            depth == 0
        })
        .collect()
}

/// Parses the code block under "## Dependency direction": `a -> b, c` lines (text after `;` and in
/// parentheses is commentary; "(dev-dependency only)" marks the test harness) and one
/// `x, y: pure libraries` line.
pub fn parse_direction(doc: &str) -> anyhow::Result<Direction> {
    let lines: Vec<&str> = doc.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.trim() == SECTION)
        .with_context(|| format!("{DOCUMENT} has no `{SECTION}` section"))?;
    let open = lines[start..]
        .iter()
        .position(|l| l.trim_start().starts_with("```"))
        .map(|i| start + i)
        .context("no code block under the dependency direction")?;
    let mut dir = Direction::default();
    for (i, line) in lines.iter().enumerate().skip(open + 1) {
        let number = i + 1;
        if line.trim_start().starts_with("```") {
            return Ok(dir);
        }
        if line.trim().is_empty() {
            continue;
        }
        if let Some((lhs, rhs)) = line.split_once("->") {
            let from = crate_word(lhs).with_context(|| format!("{DOCUMENT}:{number}: no crate before `->`"))?;
            let rhs = rhs.split(';').next().unwrap_or("");
            if rhs.contains("(dev-dependency only)") {
                dir.dev_only.insert(from.clone());
            }
            let to: BTreeSet<String> = strip_parentheses(rhs).split(',').filter_map(crate_word).collect();
            dir.edges.insert(from, (to, number));
        } else if let Some((names, what)) = line.split_once(':') {
            if !what.contains("pure") {
                bail!("{DOCUMENT}:{number}: `{}` is neither `a -> b, c` nor `x, y: pure libraries`", line.trim());
            }
            for name in names.split(',').filter_map(crate_word) {
                dir.pure.insert(name, number);
            }
        } else {
            bail!("{DOCUMENT}:{number}: `{}` is neither `a -> b, c` nor `x, y: pure libraries`", line.trim());
        }
    }
    bail!("{DOCUMENT}: the dependency direction's code block is not closed")
}

/// The line declaring dependency `name` in a manifest, in a section of the given kind
/// (`None` normal, `dev`, `build`), including `[target.'cfg(…)'.dependencies]` tables.
pub fn manifest_line(text: &str, name: &str, kind: Option<&str>) -> Option<usize> {
    let wanted = match kind {
        Some("dev") => "dev-dependencies",
        Some("build") => "build-dependencies",
        _ => "dependencies",
    };
    let mut in_section = false;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if let Some(header) = line.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            let target = header.starts_with("target.");
            let table = format!("{wanted}.{name}");
            if header == table || target && header.ends_with(&format!(".{table}")) {
                return Some(i + 1);
            }
            in_section = header == wanted || target && header.ends_with(&format!(".{wanted}"));
            continue;
        }
        if in_section {
            if let Some(rest) = line.strip_prefix(name) {
                let rest = rest.trim_start();
                if rest.starts_with('=') || rest.starts_with('.') {
                    return Some(i + 1);
                }
            }
        }
    }
    None
}

/// Reads a member's manifest, for line numbers.
pub type Manifests = BTreeMap<String, String>;

fn relative(root: &Path, manifest: &str) -> String {
    Path::new(manifest).strip_prefix(root).map(|p| p.display().to_string()).unwrap_or_else(|_| manifest.to_owned())
}

fn place(root: &Path, manifests: &Manifests, manifest: &str, dep: &str, kind: Option<&str>) -> String {
    let rel = relative(root, manifest);
    match manifests.get(manifest).and_then(|text| manifest_line(text, dep, kind)) {
        Some(line) => format!("{rel}:{line}"),
        None => rel,
    }
}

fn kind_label(kind: Option<&str>) -> &'static str {
    match kind {
        Some("dev") => "dev-dependency",
        Some("build") => "build-dependency",
        _ => "dependency",
    }
}

/// Checks the workspace in `meta` against `dir` and the HTTP and I/O rules.
pub fn check_architecture(root: &Path, meta: &Metadata, dir: &Direction, manifests: &Manifests) -> Outcome {
    let mut out = Outcome::default();
    let members = meta.members();
    let member_names: BTreeSet<&str> = members.iter().map(|p| p.name.as_str()).collect();
    let mut edges = 0;

    for (name, (_, line)) in &dir.edges {
        if !member_names.contains(name.as_str()) {
            out.push(Violation::new(
                format!("{DOCUMENT}:{line}"),
                format!("names `{name}`, which is not a crate of the workspace"),
                format!("correct the name or remove the line from {DOCUMENT}"),
            ));
        }
    }

    for m in &members {
        let drawn = dir.edges.get(&m.name).map(|(to, _)| to);
        let pure = dir.pure.contains_key(&m.name);
        if drawn.is_none() && !pure {
            out.push(Violation::new(
                relative(root, &m.manifest_path),
                format!("crate `{}` is not in {DOCUMENT}'s dependency direction", m.name),
                format!("add a line `{} -> <what it uses>` (or list it with the pure libraries) under `{SECTION}` in {DOCUMENT}", m.name),
            ));
        }
        for d in &m.dependencies {
            let kind = d.kind.as_deref();
            let used = d.rename.as_deref().unwrap_or(&d.name);
            if HTTP_CRATES.contains(&d.name.as_str()) && !HTTP_ALLOWED.contains(&m.name.as_str()) {
                out.push(Violation::new(
                    place(root, manifests, &m.manifest_path, used, kind),
                    format!(
                        "`{}` has a {} on `{}`: only {} may depend on poem ({DOCUMENT}, Invariants)",
                        m.name,
                        kind_label(kind),
                        d.name,
                        HTTP_ALLOWED.join(", ")
                    ),
                    format!(
                        "remove the dependency; expose what `{}` needs from `api`, or move the HTTP code into `api`",
                        m.name
                    ),
                ));
            }
            if d.path.is_none() || !member_names.contains(d.name.as_str()) {
                continue;
            }
            edges += 1;
            let allowed = drawn.is_some_and(|to| to.contains(&d.name));
            if dir.dev_only.contains(&d.name) {
                if kind != Some("dev") {
                    out.push(Violation::new(
                        place(root, manifests, &m.manifest_path, used, kind),
                        format!(
                            "`{}` has a {} on `{}`, which may only be a dev-dependency ({DOCUMENT})",
                            m.name,
                            kind_label(kind),
                            d.name
                        ),
                        format!("move `{}` to [dev-dependencies]", d.name),
                    ));
                }
                continue;
            }
            if !allowed {
                let why = if pure {
                    format!("`{}` is a pure library: it uses no other workspace crate", m.name)
                } else {
                    format!("{DOCUMENT} draws no arrow `{} -> {}`", m.name, d.name)
                };
                out.push(Violation::new(
                    place(root, manifests, &m.manifest_path, used, kind),
                    format!("`{}` has a {} on `{}`: {why}", m.name, kind_label(kind), d.name),
                    format!("remove the dependency, or, if the design changed, draw the arrow in {DOCUMENT} under `{SECTION}` first"),
                ));
            }
        }
    }

    // Pure crates reach no I/O crate through normal dependencies, however indirectly.
    for name in dir.pure.keys() {
        let Some(pkg) = members.iter().find(|p| &p.name == name) else {
            continue;
        };
        let mut parent: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = VecDeque::from([pkg.id.as_str()]);
        let mut seen = BTreeSet::from([pkg.id.as_str()]);
        while let Some(id) = queue.pop_front() {
            for dep in meta.normal_deps(id) {
                if !seen.insert(dep) {
                    continue;
                }
                parent.insert(dep, id);
                let Some(dep_pkg) = meta.package(dep) else { continue };
                if IO_CRATES.contains(&dep_pkg.name.as_str()) {
                    let mut chain = vec![dep_pkg.name.clone()];
                    let mut at = id;
                    while at != pkg.id {
                        chain.push(meta.package(at).map(|p| p.name.clone()).unwrap_or_default());
                        at = parent.get(at).copied().unwrap_or(pkg.id.as_str());
                    }
                    chain.push(name.clone());
                    chain.reverse();
                    let direct = &chain[1];
                    let used = pkg
                        .dependencies
                        .iter()
                        .find(|d| &d.name == direct)
                        .map(|d| d.rename.clone().unwrap_or_else(|| d.name.clone()))
                        .unwrap_or_else(|| direct.clone());
                    out.push(Violation::new(
                        place(root, manifests, &pkg.manifest_path, &used, None),
                        format!("`{name}` is a pure library but reaches `{}`, which does I/O ({})", dep_pkg.name, chain.join(" -> ")),
                        format!("remove `{direct}` from `{name}`; take what the I/O produces as a parameter or a trait implemented in a crate that may do I/O"),
                    ));
                    continue;
                }
                queue.push_back(dep);
            }
        }
    }

    out.summary.push(format!(
        "Architecture: {} workspace crates, {edges} dependencies between them, as {DOCUMENT} draws them",
        members.len()
    ));
    out.summary.push(format!("Architecture: {} only in {}", HTTP_CRATES.join(" and "), HTTP_ALLOWED.join(", ")));
    out.summary.push(format!(
        "Architecture: {} pure crates ({}) reach no I/O crate",
        dir.pure.len(),
        dir.pure.keys().cloned().collect::<Vec<_>>().join(", ")
    ));
    out
}

/// The gate's step.
pub fn gate(root: &Path) -> anyhow::Result<Outcome> {
    let doc = std::fs::read_to_string(root.join(DOCUMENT)).with_context(|| format!("reading {DOCUMENT}"))?;
    let dir = parse_direction(&doc)?;
    let meta = super::metadata::load(root, None)?;
    let manifests: Manifests = meta
        .members()
        .iter()
        .filter_map(|p| Some((p.manifest_path.clone(), std::fs::read_to_string(&p.manifest_path).ok()?)))
        .collect();
    Ok(check_architecture(root, &meta, &dir, &manifests))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIRECTION: &str = "# A\n\n## Dependency direction\n\n```\napp (bin)  ->  api, core (to do things); otherwise nothing\napi  ->  core\nharness  ->  api (dev-dependency only)\ncore: pure libraries (no I/O)\n```\n";

    #[test]
    fn the_dependency_direction_block_is_parsed_with_its_commentary_dropped() {
        let dir = parse_direction(DIRECTION).unwrap();
        assert_eq!(dir.edges["app"].0, BTreeSet::from(["api".to_owned(), "core".to_owned()]));
        assert_eq!(dir.edges["app"].1, 6);
        assert!(dir.dev_only.contains("harness"));
        assert_eq!(dir.pure.keys().collect::<Vec<_>>(), ["core"]);
        let err = parse_direction("## Dependency direction\n```\nwhat is this\n```\n").unwrap_err();
        assert!(err.to_string().contains("ARCHITECTURE.md:3"), "{err}");
    }

    #[test]
    fn manifest_lines_are_found_in_their_own_section() {
        let text = "[package]\nname = \"x\"\n\n[dependencies]\ntokio.workspace = true\npoem = { workspace = true }\n\n[dev-dependencies]\ntokio = \"1\"\n\n[dependencies.serde]\nversion = \"1\"\n";
        assert_eq!(manifest_line(text, "tokio", None), Some(5));
        assert_eq!(manifest_line(text, "poem", None), Some(6));
        assert_eq!(manifest_line(text, "tokio", Some("dev")), Some(9));
        assert_eq!(manifest_line(text, "serde", None), Some(11));
        assert_eq!(manifest_line(text, "poem", Some("dev")), None);
    }

    /// A workspace of `core` (pure), `api` and `app`, written to `root`, and its metadata.
    fn fixture(root: &Path, core_deps: &str, app_deps: &str) -> (Metadata, Manifests) {
        let manifest = |name: &str, deps: &str| {
            let path = root.join("crates").join(name).join("Cargo.toml");
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let text = format!("[package]\nname = \"{name}\"\nversion = \"0.1.0\"\n\n[dependencies]\n{deps}");
            std::fs::write(&path, &text).unwrap();
            (path.display().to_string(), text)
        };
        let (core_path, core_text) = manifest("core", core_deps);
        let (api_path, api_text) = manifest("api", "core.workspace = true\npoem.workspace = true\n");
        let (app_path, app_text) = manifest("app", app_deps);
        let dep = |name: &str, path: bool| serde_json::json!({"name": name, "kind": null, "path": if path { Some("x") } else { None }});
        let deps_of = |text: &str| -> Vec<serde_json::Value> {
            text.lines()
                .filter_map(|l| l.split(['.', ' ']).next())
                .filter(|n| !n.is_empty())
                .map(|n| dep(n, ["core", "api", "app"].contains(&n)))
                .collect()
        };
        let pkg = |name: &str, path: &str, text: &str| serde_json::json!({"id": name, "name": name, "version": "0.1.0", "manifest_path": path, "dependencies": deps_of(text.split("[dependencies]\n").nth(1).unwrap())});
        let node = |name: &str, text: &str| {
            let deps: Vec<serde_json::Value> = deps_of(text.split("[dependencies]\n").nth(1).unwrap())
                .iter()
                .map(|d| serde_json::json!({"pkg": d["name"], "dep_kinds": [{"kind": null}]}))
                .collect();
            serde_json::json!({"id": name, "deps": deps})
        };
        let meta = serde_json::json!({
            "workspace_members": ["core", "api", "app"],
            "packages": [
                pkg("core", &core_path, &core_text), pkg("api", &api_path, &api_text), pkg("app", &app_path, &app_text),
                {"id": "poem", "name": "poem", "version": "3.1.0"},
                {"id": "tokio", "name": "tokio", "version": "1.0.0"},
                {"id": "lexer", "name": "lexer", "version": "1.0.0"},
            ],
            "resolve": {"nodes": [
                node("core", &core_text), node("api", &api_text), node("app", &app_text),
                {"id": "lexer", "deps": [{"pkg": "tokio", "dep_kinds": [{"kind": null}]}]},
                {"id": "poem", "deps": [{"pkg": "tokio", "dep_kinds": [{"kind": null}]}]},
            ]}
        });
        let manifests = Manifests::from([(core_path, core_text), (api_path, api_text), (app_path, app_text)]);
        (serde_json::from_value(meta).unwrap(), manifests)
    }

    fn check(core_deps: &str, app_deps: &str) -> Outcome {
        let root = tempfile::tempdir().unwrap();
        let (meta, manifests) = fixture(root.path(), core_deps, app_deps);
        let doc = "## Dependency direction\n```\napp -> api, core\napi -> core\ncore: pure libraries\n```\n";
        check_architecture(root.path(), &meta, &parse_direction(doc).unwrap(), &manifests)
    }

    #[test]
    fn a_workspace_that_follows_the_drawn_direction_passes() {
        let out = check("", "api.workspace = true\ncore.workspace = true\n");
        assert!(out.violations.is_empty(), "{}", out.text());
        assert_eq!(
            out.summary[0],
            "Architecture: 3 workspace crates, 3 dependencies between them, as ARCHITECTURE.md draws them"
        );
    }

    #[test]
    fn a_pure_crate_that_reaches_an_io_crate_fails_the_gate_naming_its_cargo_toml_line() {
        let out = check("serde.workspace = true\nlexer.workspace = true\n", "api.workspace = true\n");
        let text = out.text();
        assert_eq!(out.violations.len(), 1, "{text}");
        assert!(text.contains("crates/core/Cargo.toml:7: `core` is a pure library but reaches `tokio`, which does I/O (core -> lexer -> tokio)"), "{text}");
        assert!(text.contains("fix: remove `lexer` from `core`"), "{text}");
    }

    #[test]
    fn a_crate_other_than_api_depending_on_poem_fails_the_gate() {
        let out = check("", "api.workspace = true\npoem.workspace = true\n");
        let text = out.text();
        assert!(
            text.contains(
                "crates/app/Cargo.toml:7: `app` has a dependency on `poem`: only api, ids may depend on poem"
            ),
            "{text}"
        );
    }

    #[test]
    fn an_arrow_missing_from_architecture_md_fails_the_gate() {
        let out = check("api.workspace = true\n", "api.workspace = true\n");
        let text = out.text();
        assert!(
            text.contains("crates/core/Cargo.toml:6: `core` has a dependency on `api`: `core` is a pure library"),
            "{text}"
        );
        assert!(
            text.contains("`core` is a pure library but reaches `poem`, which does I/O (core -> api -> poem)"),
            "{text}"
        );
    }

    #[test]
    fn the_workspace_follows_architecture_md() {
        let root = crate::workspace_root();
        let out = gate(&root).unwrap();
        assert!(out.violations.is_empty(), "{}", out.text());
        let dir = parse_direction(&std::fs::read_to_string(root.join(DOCUMENT)).unwrap()).unwrap();
        assert_eq!(dir.pure.keys().cloned().collect::<Vec<_>>(), ["crypto-vault", "pii", "rbac"]);
        assert!(dir.dev_only.contains("testkit"));
    }
}
