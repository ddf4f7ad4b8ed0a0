//! The parts of `cargo metadata --format-version 1` the gate reads. Fixtures in tests list only
//! these fields, which is why this is a handful of structs rather than the full schema.

use std::path::Path;

use anyhow::{bail, Context as _};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct Metadata {
    pub packages: Vec<Package>,
    #[serde(default)]
    pub workspace_members: Vec<String>,
    pub resolve: Option<Resolve>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Package {
    pub id: String,
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub license: Option<String>,
    #[serde(default)]
    pub license_file: Option<String>,
    #[serde(default)]
    pub manifest_path: String,
    #[serde(default)]
    pub dependencies: Vec<Dependency>,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Dependency {
    pub name: String,
    #[serde(default)]
    pub rename: Option<String>,
    /// `None` for a normal dependency, else `dev` or `build`.
    #[serde(default)]
    pub kind: Option<String>,
    /// Set for path (workspace) dependencies.
    #[serde(default)]
    pub path: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Resolve {
    pub nodes: Vec<Node>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Node {
    pub id: String,
    #[serde(default)]
    pub deps: Vec<NodeDep>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct NodeDep {
    pub pkg: String,
    #[serde(default)]
    pub dep_kinds: Vec<DepKind>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DepKind {
    #[serde(default)]
    pub kind: Option<String>,
}

impl Metadata {
    pub fn package(&self, id: &str) -> Option<&Package> {
        self.packages.iter().find(|p| p.id == id)
    }

    pub fn members(&self) -> Vec<&Package> {
        self.workspace_members.iter().filter_map(|id| self.package(id)).collect()
    }

    pub fn node(&self, id: &str) -> Option<&Node> {
        self.resolve.as_ref()?.nodes.iter().find(|n| n.id == id)
    }

    /// Package ids `id` depends on through a normal (not dev, not build) edge.
    pub fn normal_deps(&self, id: &str) -> Vec<&str> {
        self.node(id)
            .map(|n| {
                n.deps
                    .iter()
                    .filter(|d| d.dep_kinds.is_empty() || d.dep_kinds.iter().any(|k| k.kind.is_none()))
                    .map(|d| d.pkg.as_str())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Runs `cargo metadata` in `root`, for every platform or only for `platform`.
pub fn load(root: &Path, platform: Option<&str>) -> anyhow::Result<Metadata> {
    let mut cmd = crate::cargo();
    cmd.current_dir(root).args(["metadata", "--format-version", "1", "--locked"]);
    if let Some(platform) = platform {
        cmd.args(["--filter-platform", platform]);
    }
    let out = cmd.output().context("running cargo metadata")?;
    if !out.status.success() {
        bail!("cargo metadata failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    serde_json::from_slice(&out.stdout).context("reading cargo metadata's output")
}

/// The host's target triple, from `rustc -vV`.
pub fn host_triple() -> anyhow::Result<String> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = std::process::Command::new(rustc).arg("-vV").output().context("running rustc -vV")?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        .context("rustc -vV printed no host triple")
}
