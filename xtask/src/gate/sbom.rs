//! A CycloneDX 1.5 bill of materials of what the `rampart` binary is built from: every package
//! reached from it through normal dependencies on the host platform (build scripts' own
//! dependencies are not part of the binary and are left out), with its licence, its crates.io
//! checksum and the dependency graph. No timestamp or random serial number: the same lockfile gives
//! the same file.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

use anyhow::{bail, Context as _};
use cyclonedx_bom::{
    external_models::{normalized_string::NormalizedString, spdx::SpdxExpression, uri::Purl},
    models::{
        bom::{Bom, SpecVersion},
        component::{Classification, Component, Components, Scope},
        dependency::{Dependencies, Dependency},
        hash::{Hash, HashAlgorithm, HashValue, Hashes},
        license::{LicenseChoice, Licenses},
        metadata::Metadata as BomMetadata,
    },
    validation::Validate,
};
use rustsec::Lockfile;

use super::{metadata::Metadata, Outcome};

pub const BINARY: &str = "rampart";

fn component(p: &super::metadata::Package, lock: &Lockfile, kind: Classification) -> anyhow::Result<Component> {
    let bom_ref = format!("pkg:cargo/{}@{}", p.name, p.version);
    let mut c = Component::new(kind, &p.name, &p.version, Some(bom_ref));
    c.purl = Some(Purl::new("cargo", &p.name, &p.version)?);
    c.scope = Some(Scope::Required);
    c.description = p.description.as_deref().map(|d| NormalizedString::new(d.trim()));
    c.licenses = p.license.as_ref().map(|l| {
        Licenses(vec![match SpdxExpression::parse_lax(l.clone()) {
            Ok(expr) => LicenseChoice::Expression(expr),
            Err(_) => LicenseChoice::license(l),
        }])
    });
    let checksum = lock
        .packages
        .iter()
        .find(|l| l.name.as_str() == p.name && l.version.to_string() == p.version)
        .and_then(|l| l.checksum.as_ref());
    if let Some(sum) = checksum {
        c.hashes = Some(Hashes(vec![Hash { alg: HashAlgorithm::SHA_256, content: HashValue(sum.to_string()) }]));
    }
    Ok(c)
}

/// The bill of materials of `binary`, from host-platform metadata and the lockfile's checksums.
pub fn build(meta: &Metadata, lock: &Lockfile, binary: &str) -> anyhow::Result<Bom> {
    let root = meta
        .members()
        .into_iter()
        .find(|p| p.name == binary)
        .with_context(|| format!("no workspace crate `{binary}`"))?;
    let mut reached: BTreeSet<&str> = BTreeSet::new();
    let mut queue = vec![root.id.as_str()];
    let mut graph: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    while let Some(id) = queue.pop() {
        if graph.contains_key(id) {
            continue;
        }
        let deps = meta.normal_deps(id);
        for d in &deps {
            reached.insert(d);
            queue.push(d);
        }
        graph.insert(id, deps);
    }
    let bom_ref = |id: &str| {
        meta.package(id).map(|p| format!("pkg:cargo/{}@{}", p.name, p.version)).unwrap_or_else(|| id.to_owned())
    };
    let mut components = Vec::new();
    for id in &reached {
        let p = meta.package(id).with_context(|| format!("cargo metadata has no package {id}"))?;
        components.push(component(p, lock, Classification::Library)?);
    }
    components.sort_by(|a, b| a.bom_ref.cmp(&b.bom_ref));
    components.dedup_by(|a, b| a.bom_ref == b.bom_ref);
    let mut dependencies: Vec<Dependency> = graph
        .iter()
        .map(|(id, deps)| {
            let mut refs: Vec<String> = deps.iter().map(|d| bom_ref(d)).collect();
            refs.sort();
            refs.dedup();
            Dependency { dependency_ref: bom_ref(id), dependencies: refs }
        })
        .collect();
    dependencies.sort_by(|a, b| a.dependency_ref.cmp(&b.dependency_ref));
    dependencies.dedup_by(|a, b| a.dependency_ref == b.dependency_ref);
    let metadata =
        BomMetadata { component: Some(component(root, lock, Classification::Application)?), ..BomMetadata::default() };
    let bom = Bom {
        serial_number: None,
        metadata: Some(metadata),
        components: Some(Components(components)),
        dependencies: Some(Dependencies(dependencies)),
        spec_version: SpecVersion::V1_5,
        ..Bom::default()
    };
    let result = bom.validate_version(SpecVersion::V1_5);
    if result.has_errors() {
        bail!(
            "the bill of materials does not validate against CycloneDX 1.5: {:?}",
            result.errors().collect::<Vec<_>>()
        );
    }
    Ok(bom)
}

/// CycloneDX JSON of `bom`.
pub fn to_json(bom: Bom) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    bom.output_as_json_v1_5(&mut out).context("writing CycloneDX JSON")?;
    out.push(b'\n');
    Ok(out)
}

/// The gate's step: writes the bill of materials to `path`.
pub fn gate(root: &Path, path: &Path) -> anyhow::Result<Outcome> {
    let meta = super::metadata::load(root, Some(&super::metadata::host_triple()?))?;
    let lock: Lockfile = std::fs::read_to_string(root.join("Cargo.lock"))?.parse().context("parsing Cargo.lock")?;
    let bom = build(&meta, &lock, BINARY)?;
    let count = bom.components.as_ref().map_or(0, |c| c.0.len());
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, to_json(bom)?).with_context(|| format!("writing {}", path.display()))?;
    let mut out = Outcome::default();
    out.summary
        .push(format!("SBOM: wrote {} (CycloneDX 1.5, {count} components of the {BINARY} binary)", path.display()));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bill_of_materials_lists_the_binarys_runtime_dependencies_with_licences_and_checksums() {
        let meta: Metadata = serde_json::from_value(serde_json::json!({
            "workspace_members": ["app"],
            "packages": [
                {"id": "app", "name": "rampart", "version": "0.1.0", "license": "Apache-2.0"},
                {"id": "serde", "name": "serde", "version": "1.0.0", "license": "MIT/Apache-2.0", "description": "A serialization framework"},
                {"id": "cc", "name": "cc", "version": "1.0.0", "license": "MIT"},
            ],
            "resolve": {"nodes": [
                {"id": "app", "deps": [{"pkg": "serde", "dep_kinds": [{"kind": null}]}, {"pkg": "cc", "dep_kinds": [{"kind": "build"}]}]},
                {"id": "serde", "deps": []},
                {"id": "cc", "deps": []},
            ]}
        }))
        .unwrap();
        let lock: Lockfile = "version = 4\n\n[[package]]\nname = \"serde\"\nversion = \"1.0.0\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\nchecksum = \"fe0f37c9e8f3c5a4a66ad655a93c74daac4ad00c441533bf5c6e7990bb42604e\"\n"
            .parse()
            .unwrap();
        let json: serde_json::Value =
            serde_json::from_slice(&to_json(build(&meta, &lock, "rampart").unwrap()).unwrap()).unwrap();
        assert_eq!(json["bomFormat"], "CycloneDX");
        assert_eq!(json["specVersion"], "1.5");
        assert_eq!(json["metadata"]["component"]["name"], "rampart");
        let components = json["components"].as_array().unwrap();
        assert_eq!(components.len(), 1, "build dependencies are not part of the binary: {components:?}");
        assert_eq!(components[0]["purl"], "pkg:cargo/serde@1.0.0");
        assert_eq!(components[0]["licenses"][0]["expression"], "MIT OR Apache-2.0");
        assert_eq!(
            components[0]["hashes"][0]["content"],
            "fe0f37c9e8f3c5a4a66ad655a93c74daac4ad00c441533bf5c6e7990bb42604e"
        );
        assert_eq!(json["dependencies"][0]["ref"], "pkg:cargo/rampart@0.1.0");
        assert_eq!(json["dependencies"][0]["dependsOn"], serde_json::json!(["pkg:cargo/serde@1.0.0"]));
    }
}
