//! Tidy: the shape of the sources themselves. No module import cycle inside a crate, every crate
//! root opens with a paragraph saying what the crate owns and what it must never do, and no bare
//! `Uuid` where an entity id belongs. Violations known today are listed in [`DEBT`], which may
//! only shrink: a violation not in it fails, and so does a line that no longer occurs.

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use proc_macro2::{Spacing, TokenStream, TokenTree};
use syn::visit::Visit;

use super::{Outcome, Violation};

/// The debt list: one stable line per violation the tree still has.
pub const DEBT: &str = "xtask/gate/tidy-debt.txt";

/// The domain crates: their public functions take typed ids, never a bare `Uuid`.
pub const DOMAIN_CRATES: &[&str] =
    &["auth", "tenancy", "webhooks", "audit", "scheduler", "rbac", "crypto-vault", "pii", "egress", "storage"];

/// The API's handlers: their path and query parameters are typed ids, never a bare `Uuid`.
pub const ROUTES: &str = "crates/api/src/routes";

const DEBT_HEADER: &str = "\
# Known violations of `cargo xtask tidy`, one stable line each (no line numbers). The list may only
# shrink: a violation not listed here fails the gate, and so does a line that no longer occurs.
# After removing debt, `cargo xtask tidy --write-debt` rewrites this file from the tree.
";

/// One violation found in the tree, with the line that stands for it in the debt list.
#[derive(Debug, Clone)]
pub struct Finding {
    pub key: String,
    pub violation: Violation,
}

/// A crate's sources: its name and its `src` directory.
#[derive(Debug, Clone)]
struct Crate {
    name: String,
    src: PathBuf,
}

/// `path` relative to `root`, with forward slashes, as messages and the debt list write it.
fn rel(root: &Path, path: &Path) -> String {
    let path = path.strip_prefix(root).unwrap_or(path);
    path.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
}

/// Every crate of the workspace (`crates/*/src`) and xtask (`xtask/src`), by name.
fn crates(root: &Path) -> anyhow::Result<Vec<Crate>> {
    let mut out = Vec::new();
    let dir = root.join("crates");
    if dir.is_dir() {
        for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            if path.join("src").is_dir() {
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                out.push(Crate { name, src: path.join("src") });
            }
        }
    }
    if root.join("xtask/src").is_dir() {
        out.push(Crate { name: "xtask".to_owned(), src: root.join("xtask/src") });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Every `.rs` file under `dir`, sorted.
fn rs_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn parse(root: &Path, path: &Path) -> anyhow::Result<syn::File> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    syn::parse_file(&text).with_context(|| format!("parsing {}", rel(root, path)))
}

/// Every violation in the tree, in a stable order.
pub fn find(root: &Path) -> anyhow::Result<Vec<Finding>> {
    let crates = crates(root)?;
    let mut out = Vec::new();
    for krate in &crates {
        out.extend(cycles(root, krate)?);
    }
    for krate in &crates {
        out.extend(crate_roots(root, krate)?);
    }
    out.extend(uuid_extractors(root)?);
    for krate in crates.iter().filter(|c| DOMAIN_CRATES.contains(&c.name.as_str())) {
        out.extend(uuid_params(root, krate)?);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Module import cycles.

/// A file's module path inside its crate (`a/b.rs` and `a/b/mod.rs` are `a::b`; roots are empty).
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap_or(file);
    let mut segs: Vec<String> = rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
    if let Some(last) = segs.pop() {
        let stem = last.trim_end_matches(".rs");
        let root_file = segs.is_empty() && (stem == "lib" || stem == "main");
        if stem != "mod" && !root_file {
            segs.push(stem.to_owned());
        }
    }
    segs
}

/// Roots and `mod.rs` files declare and re-export; they are not nodes of the import graph.
fn is_node(file: &Path) -> bool {
    !matches!(file.file_name().and_then(|n| n.to_str()), Some("lib.rs" | "main.rs" | "mod.rs"))
}

/// The deepest existing file a crate-absolute path lands in (`a/b.rs`, `a/b/mod.rs`, `a.rs`, …).
fn resolve(src: &Path, segs: &[String]) -> Option<PathBuf> {
    (1..=segs.len()).rev().find_map(|n| {
        let dir = src.join(segs[..n].join("/"));
        let file = dir.with_extension("rs");
        if file.is_file() {
            Some(file)
        } else {
            Some(dir.join("mod.rs")).filter(|m| m.is_file())
        }
    })
}

/// The `crate::`, `super::` and `self::` paths of one file, made crate-absolute, with their lines.
#[derive(Default)]
struct Refs {
    scope: Vec<String>,
    found: Vec<(usize, String, Vec<String>)>,
}

impl Refs {
    fn add(&mut self, line: usize, segs: Vec<String>) {
        let mut scope = self.scope.clone();
        let mut rest = segs.as_slice();
        match rest.first().map(String::as_str) {
            Some("crate") => {
                scope.clear();
                rest = &rest[1..];
            }
            Some("self") => rest = &rest[1..],
            Some("super") => {}
            _ => return,
        }
        while rest.first().is_some_and(|s| s == "super") {
            scope.pop();
            rest = &rest[1..];
        }
        scope.extend(rest.iter().cloned());
        self.found.push((line, segs.join("::"), scope));
    }

    fn use_tree(&mut self, tree: &syn::UseTree, prefix: &mut Vec<String>, line: usize) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(&p.tree, prefix, line);
                prefix.pop();
            }
            syn::UseTree::Name(n) if n.ident == "self" => self.add(line, prefix.clone()),
            syn::UseTree::Name(n) => self.add(line, [prefix.clone(), vec![n.ident.to_string()]].concat()),
            syn::UseTree::Rename(r) => self.add(line, [prefix.clone(), vec![r.ident.to_string()]].concat()),
            syn::UseTree::Glob(_) => self.add(line, prefix.clone()),
            syn::UseTree::Group(g) => g.items.iter().for_each(|t| self.use_tree(t, prefix, line)),
        }
    }

    /// Paths inside a macro's tokens (`format!("{}", crate::x::y())`), which syn leaves unparsed.
    fn tokens(&mut self, tokens: TokenStream) {
        let flat: Vec<TokenTree> = tokens.into_iter().collect();
        let mut i = 0;
        while i < flat.len() {
            match &flat[i] {
                TokenTree::Group(g) => self.tokens(g.stream()),
                TokenTree::Ident(id) if id == "crate" || id == "self" || id == "super" => {
                    let mut segs = vec![id.to_string()];
                    while let (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b)), Some(TokenTree::Ident(next))) =
                        (flat.get(i + 1), flat.get(i + 2), flat.get(i + 3))
                    {
                        if !(a.as_char() == ':' && a.spacing() == Spacing::Joint && b.as_char() == ':') {
                            break;
                        }
                        segs.push(next.to_string());
                        i += 3;
                    }
                    if segs.len() > 1 {
                        self.add(id.span().start().line, segs);
                    }
                }
                _ => {}
            }
            i += 1;
        }
    }
}

impl<'ast> Visit<'ast> for Refs {
    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        self.scope.push(m.ident.to_string());
        syn::visit::visit_item_mod(self, m);
        self.scope.pop();
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        self.use_tree(&u.tree, &mut Vec::new(), u.use_token.span.start().line);
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        if let Some(first) = p.segments.first() {
            let line = first.ident.span().start().line;
            self.add(line, p.segments.iter().map(|s| s.ident.to_string()).collect());
        }
        syn::visit::visit_path(self, p);
    }

    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        self.tokens(m.tokens.clone());
        syn::visit::visit_macro(self, m);
    }
}

/// One reference from a file to another: its line and the path as written.
type Edges = BTreeMap<PathBuf, BTreeMap<PathBuf, (usize, String)>>;

/// The import graph of one crate: file -> files it references, each with its first reference.
fn import_graph(root: &Path, krate: &Crate) -> anyhow::Result<Edges> {
    let mut edges = Edges::new();
    for file in rs_files(&krate.src)?.into_iter().filter(|f| is_node(f)) {
        let mut refs = Refs { scope: module_path(&krate.src, &file), ..Refs::default() };
        refs.visit_file(&parse(root, &file)?);
        let out = edges.entry(file.clone()).or_default();
        for (line, written, segs) in refs.found {
            let Some(target) = resolve(&krate.src, &segs).filter(|t| is_node(t) && *t != file) else { continue };
            let entry = out.entry(target).or_insert((line, written.clone()));
            if line < entry.0 {
                *entry = (line, written);
            }
        }
    }
    Ok(edges)
}

fn reachable(edges: &Edges, from: &Path) -> BTreeSet<PathBuf> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![from.to_path_buf()];
    while let Some(at) = stack.pop() {
        for next in edges.get(&at).into_iter().flat_map(|m| m.keys()) {
            if seen.insert(next.clone()) {
                stack.push(next.clone());
            }
        }
    }
    seen
}

/// The strongly connected components of more than one file.
fn components(edges: &Edges) -> Vec<BTreeSet<PathBuf>> {
    let reach: BTreeMap<&PathBuf, BTreeSet<PathBuf>> = edges.keys().map(|f| (f, reachable(edges, f))).collect();
    let mut out: Vec<BTreeSet<PathBuf>> = Vec::new();
    for (file, from_here) in &reach {
        let component: BTreeSet<PathBuf> = std::iter::once((*file).clone())
            .chain(from_here.iter().filter(|other| reach.get(other).is_some_and(|r| r.contains(*file))).cloned())
            .collect();
        if component.len() > 1 && !out.contains(&component) {
            out.push(component);
        }
    }
    out
}

/// The shortest chain of references from the component's first file back to itself.
fn chain(edges: &Edges, component: &BTreeSet<PathBuf>) -> Vec<(PathBuf, usize, String)> {
    let Some(start) = component.first() else { return Vec::new() };
    let mut parent: BTreeMap<PathBuf, PathBuf> = BTreeMap::new();
    let mut queue = VecDeque::from([start.clone()]);
    'search: while let Some(at) = queue.pop_front() {
        for next in edges.get(&at).into_iter().flat_map(|m| m.keys()).filter(|n| component.contains(*n)) {
            if next == start {
                parent.insert(start.clone(), at);
                break 'search;
            }
            if !parent.contains_key(next) {
                parent.insert(next.clone(), at.clone());
                queue.push_back(next.clone());
            }
        }
    }
    let mut files = vec![start.clone()];
    let mut at = parent.get(start).cloned();
    while let Some(file) = at.filter(|f| f != start) {
        at = parent.get(&file).cloned();
        files.push(file);
    }
    files.push(start.clone());
    files.reverse();
    files
        .windows(2)
        .filter_map(|w| edges.get(&w[0])?.get(&w[1]).map(|(line, path)| (w[0].clone(), *line, path.clone())))
        .collect()
}

fn cycles(root: &Path, krate: &Crate) -> anyhow::Result<Vec<Finding>> {
    let edges = import_graph(root, krate)?;
    let short = |f: &Path| rel(&krate.src, f);
    let mut out = Vec::new();
    for component in components(&edges) {
        let files: Vec<String> = component.iter().map(|f| short(f)).collect();
        let steps: Vec<String> = chain(&edges, &component)
            .iter()
            .map(|(file, line, path)| format!("{}:{line} uses `{path}`", short(file)))
            .collect();
        let first = component.first().map(|f| rel(root, f)).unwrap_or_default();
        out.push(Finding {
            key: format!("cycle {}: {}", rel(root, &krate.src), files.join(" ")),
            violation: Violation::new(
                first,
                format!(
                    "module import cycle in crate `{}` among {} files ({}); one chain: {} -> back to {}",
                    krate.name,
                    files.len(),
                    files.join(", "),
                    steps.join(" -> "),
                    files[0]
                ),
                "make the references point one way: move what these files share into a module that imports none of them, \
                 or merge them",
            ),
        });
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Crate roots.

/// What is wrong with a crate root's opening, if anything.
pub fn crate_root_problem(text: &str) -> Option<&'static str> {
    let mut lines = text.lines().skip_while(|l| l.trim().is_empty()).peekable();
    if !lines.peek().is_some_and(|l| l.trim_start().starts_with("//!")) {
        return Some("the crate root does not open with a `//!` paragraph");
    }
    let doc: String = lines.take_while(|l| l.trim_start().starts_with("//!")).collect::<Vec<_>>().join("\n");
    if !doc.to_lowercase().contains("never") {
        return Some("the crate root's opening `//!` paragraph does not say what the crate must never do");
    }
    None
}

fn crate_roots(root: &Path, krate: &Crate) -> anyhow::Result<Vec<Finding>> {
    let mut out = Vec::new();
    for file in ["lib.rs", "main.rs"].map(|f| krate.src.join(f)).into_iter().filter(|f| f.is_file()) {
        let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
        let Some(problem) = crate_root_problem(&text) else { continue };
        let path = rel(root, &file);
        out.push(Finding {
            key: format!("crate-doc {path}"),
            violation: Violation::new(
                format!("{path}:1"),
                problem,
                format!(
                    "open {path} with a `//!` paragraph saying what `{}` owns and a sentence of what it must never do \
                     (ARCHITECTURE.md's code map says both)",
                    krate.name
                ),
            ),
        });
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Bare `Uuid`s where an entity id belongs.

fn last_segment(ty: &syn::Type) -> Option<&syn::PathSegment> {
    match ty {
        syn::Type::Path(p) if p.qself.is_none() => p.path.segments.last(),
        _ => None,
    }
}

fn is_uuid(ty: &syn::Type) -> bool {
    last_segment(ty).is_some_and(|s| s.ident == "Uuid" && s.arguments.is_none())
}

/// The one type argument of `Name<T>`.
fn argument<'a>(ty: &'a syn::Type, name: &str) -> Option<&'a syn::Type> {
    let seg = last_segment(ty).filter(|s| s.ident == name)?;
    let syn::PathArguments::AngleBracketed(args) = &seg.arguments else { return None };
    match args.args.iter().collect::<Vec<_>>().as_slice() {
        [syn::GenericArgument::Type(t)] => Some(t),
        _ => None,
    }
}

/// `Uuid`, `&Uuid`, `Option<Uuid>`, `&[Uuid]` or `Vec<Uuid>`: the shape, to name in the message.
fn bare_uuid_param(ty: &syn::Type) -> Option<&'static str> {
    if is_uuid(ty) {
        return Some("Uuid");
    }
    if let syn::Type::Reference(r) = ty {
        if is_uuid(&r.elem) {
            return Some("&Uuid");
        }
        if matches!(&*r.elem, syn::Type::Slice(s) if is_uuid(&s.elem)) {
            return Some("&[Uuid]");
        }
    }
    if argument(ty, "Option").is_some_and(is_uuid) {
        return Some("Option<Uuid>");
    }
    argument(ty, "Vec").is_some_and(is_uuid).then_some("Vec<Uuid>")
}

/// `Path<Uuid>`, `Query<Uuid>` or `Query<Option<Uuid>>`.
fn bare_uuid_extractor(ty: &syn::Type) -> Option<&'static str> {
    if argument(ty, "Path").is_some_and(is_uuid) {
        return Some("Path<Uuid>");
    }
    let query = argument(ty, "Query")?;
    if is_uuid(query) {
        return Some("Query<Uuid>");
    }
    argument(query, "Option").is_some_and(is_uuid).then_some("Query<Option<Uuid>>")
}

fn pattern_name(pat: &syn::Pat) -> String {
    match pat {
        syn::Pat::Ident(p) => p.ident.to_string(),
        syn::Pat::TupleStruct(t) => t.elems.first().map(pattern_name).unwrap_or_else(|| "_".to_owned()),
        syn::Pat::Reference(r) => pattern_name(&r.pat),
        _ => "_".to_owned(),
    }
}

/// The id type a parameter should take: from its name (`workspace_id` -> `WorkspaceId`), or, for a
/// plain `id`, from the file it is in (`projects.rs` -> `ProjectId`).
pub fn id_type(param: &str, file: &Path) -> String {
    let name = param.trim_start_matches('_');
    let name = name.strip_suffix("_ids").or_else(|| name.strip_suffix("_id")).unwrap_or(name);
    let name = match name {
        "" | "id" | "ids" => {
            let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("entity");
            if stem.ends_with('s') && !stem.ends_with("ss") {
                &stem[..stem.len() - 1]
            } else {
                stem
            }
        }
        "ws" => "workspace",
        other => other,
    };
    let camel: String = name
        .split('_')
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut chars = w.chars();
            chars.next().map(|c| c.to_uppercase().chain(chars).collect::<String>()).unwrap_or_default()
        })
        .collect();
    format!("{camel}Id")
}

/// The functions of one file that take a parameter `flag` objects to.
struct Signatures<'a> {
    flag: fn(&syn::Type) -> Option<&'static str>,
    /// Only `pub` functions and methods count.
    public_only: bool,
    self_ty: Option<String>,
    /// (line, function, parameter, shape)
    found: Vec<(usize, String, String, &'a str)>,
}

impl Signatures<'_> {
    fn signature(&mut self, vis: &syn::Visibility, attrs: &[syn::Attribute], sig: &syn::Signature) {
        if (self.public_only && !matches!(vis, syn::Visibility::Public(_))) || is_test(attrs) {
            return;
        }
        let name = match &self.self_ty {
            Some(ty) => format!("{ty}::{}", sig.ident),
            None => sig.ident.to_string(),
        };
        for input in &sig.inputs {
            let syn::FnArg::Typed(arg) = input else { continue };
            if let Some(shape) = (self.flag)(&arg.ty) {
                let line = sig.ident.span().start().line;
                self.found.push((line, name.clone(), pattern_name(&arg.pat), shape));
            }
        }
    }
}

fn is_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("test") || a.path().is_ident("cfg") && a.parse_args::<syn::Ident>().is_ok_and(|i| i == "test")
    })
}

impl<'ast> Visit<'ast> for Signatures<'_> {
    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        if !is_test(&m.attrs) {
            syn::visit::visit_item_mod(self, m);
        }
    }

    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        self.signature(&f.vis, &f.attrs, &f.sig);
    }

    fn visit_item_impl(&mut self, i: &'ast syn::ItemImpl) {
        if is_test(&i.attrs) {
            return;
        }
        let outer = self.self_ty.replace(last_segment(&i.self_ty).map(|s| s.ident.to_string()).unwrap_or_default());
        syn::visit::visit_item_impl(self, i);
        self.self_ty = outer;
    }

    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        self.signature(&f.vis, &f.attrs, &f.sig);
    }
}

fn uuid_findings(root: &Path, files: &[PathBuf], kind: &str, public_only: bool) -> anyhow::Result<Vec<Finding>> {
    let flag = if kind == "uuid-extractor" { bare_uuid_extractor } else { bare_uuid_param };
    let mut out = Vec::new();
    for file in files {
        let mut sigs = Signatures { flag, public_only, self_ty: None, found: Vec::new() };
        sigs.visit_file(&parse(root, file)?);
        let path = rel(root, file);
        for (line, function, param, shape) in sigs.found {
            let id = id_type(&param, file);
            out.push(Finding {
                key: format!("{kind} {path} fn {function}({param})"),
                violation: Violation::new(
                    format!("{path}:{line}"),
                    format!(
                        "`fn {function}` takes parameter `{param}` as a bare `{shape}`, where an entity id belongs"
                    ),
                    format!(
                        "take ids::{id} (`{}`), the entity's newtype from crates/ids, so ids of different entities \
                         cannot be swapped",
                        shape.replace("Uuid", &format!("ids::{id}"))
                    ),
                ),
            });
        }
    }
    Ok(out)
}

fn uuid_extractors(root: &Path) -> anyhow::Result<Vec<Finding>> {
    let dir = root.join(ROUTES);
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    uuid_findings(root, &rs_files(&dir)?, "uuid-extractor", false)
}

fn uuid_params(root: &Path, krate: &Crate) -> anyhow::Result<Vec<Finding>> {
    uuid_findings(root, &rs_files(&krate.src)?, "uuid-param", true)
}

// ---------------------------------------------------------------------------------------------
// The debt list.

/// The debt list's entries with their line numbers (comments and blank lines skipped).
fn debt_entries(text: &str) -> Vec<(usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

/// The kind of a finding or debt line: its first word.
fn kind(key: &str) -> &str {
    key.split_whitespace().next().unwrap_or("")
}

/// Fails every finding the debt list does not hold and every debt line that no longer occurs.
pub fn settle(findings: Vec<Finding>, debt: &str) -> Outcome {
    let mut out = Outcome::default();
    let mut listed: BTreeMap<&str, VecDeque<usize>> = BTreeMap::new();
    for (line, entry) in debt_entries(debt) {
        listed.entry(entry).or_default().push_back(line);
    }
    let mut known: BTreeMap<String, usize> = BTreeMap::new();
    for finding in findings {
        if listed.get_mut(finding.key.as_str()).and_then(VecDeque::pop_front).is_some() {
            *known.entry(kind(&finding.key).to_owned()).or_default() += 1;
            continue;
        }
        let mut v = finding.violation;
        v.fix = format!("{}; the debt list ({DEBT}) takes no new entries", v.fix);
        out.push(v);
    }
    for (entry, lines) in listed {
        for line in lines {
            out.push(Violation::new(
                format!("{DEBT}:{line}"),
                format!("`{entry}` no longer occurs"),
                "remove this line from the debt list (`cargo xtask tidy --write-debt` rewrites it from the tree)",
            ));
        }
    }
    let counts: Vec<String> = known.iter().map(|(k, n)| format!("{n} {k}")).collect();
    out.summary.push(format!(
        "Tidy: no import cycle, bare crate root or bare Uuid beyond the debt list ({})",
        if counts.is_empty() { "empty".to_owned() } else { counts.join(", ") }
    ));
    out
}

/// The debt list that holds exactly `findings`.
pub fn debt_text(findings: &[Finding]) -> String {
    let mut keys: Vec<&str> = findings.iter().map(|f| f.key.as_str()).collect();
    keys.sort_unstable();
    let mut text = DEBT_HEADER.to_owned();
    for key in keys {
        text.push_str(key);
        text.push('\n');
    }
    text
}

/// Rewrites the debt list from the tree; returns how many lines it holds.
pub fn write_debt(root: &Path) -> anyhow::Result<usize> {
    let findings = find(root)?;
    std::fs::write(root.join(DEBT), debt_text(&findings)).with_context(|| format!("writing {DEBT}"))?;
    Ok(findings.len())
}

/// The gate's step.
pub fn gate(root: &Path) -> anyhow::Result<Outcome> {
    let findings = find(root)?;
    let debt = match std::fs::read_to_string(root.join(DEBT)) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {DEBT}")),
    };
    Ok(settle(findings, &debt))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A workspace of the given files, written to a temporary directory.
    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        dir
    }

    const ROOT: &str = "//! Demo: owns the demo. Must never do I/O.\n\nmod a;\nmod b;\n";

    fn check(files: &[(&str, &str)]) -> Outcome {
        let dir = tree(files);
        settle(find(dir.path()).unwrap(), "")
    }

    #[test]
    fn a_two_file_import_cycle_fails_naming_both_files_the_chain_and_the_fix() {
        let out = check(&[
            ("crates/demo/src/lib.rs", ROOT),
            ("crates/demo/src/a.rs", "use crate::b::B;\npub struct A;\n"),
            ("crates/demo/src/b.rs", "pub struct B;\n\npub fn make() -> super::a::A {\n    super::a::A\n}\n"),
        ]);
        let text = out.text();
        assert_eq!(out.violations.len(), 1, "{text}");
        assert!(
            text.contains("crates/demo/src/a.rs: module import cycle in crate `demo` among 2 files (a.rs, b.rs)"),
            "{text}"
        );
        assert!(
            text.contains("one chain: a.rs:1 uses `crate::b::B` -> b.rs:3 uses `super::a::A` -> back to a.rs"),
            "{text}"
        );
        assert!(text.contains("fix: make the references point one way"), "{text}");
    }

    #[test]
    fn references_that_point_one_way_through_a_hub_pass() {
        let out = check(&[
            ("crates/demo/src/lib.rs", ROOT),
            ("crates/demo/src/a.rs", "use crate::b::B;\nuse crate::Shared;\nmod tests {\n    use super::*;\n}\n"),
            ("crates/demo/src/b.rs", "pub struct B;\npub fn f() { let _ = format!(\"{}\", crate::VERSION); }\n"),
        ]);
        assert!(out.violations.is_empty(), "{}", out.text());
    }

    #[test]
    fn a_reference_inside_a_macro_counts_as_an_import() {
        let out = check(&[
            ("crates/demo/src/lib.rs", ROOT),
            ("crates/demo/src/a/mod.rs", "mod inner;\n"),
            ("crates/demo/src/a/inner.rs", "pub fn f() { println!(\"{}\", crate::b::B); }\n"),
            ("crates/demo/src/b.rs", "use crate::a::inner::f;\npub struct B;\n"),
        ]);
        assert!(out.text().contains("among 2 files (a/inner.rs, b.rs)"), "{}", out.text());
    }

    #[test]
    fn a_crate_root_without_a_doc_paragraph_fails_naming_the_file_and_the_fix() {
        let out = check(&[("crates/demo/src/lib.rs", "\n// A plain comment.\npub fn f() {}\n")]);
        let text = out.text();
        assert!(
            text.contains("crates/demo/src/lib.rs:1: the crate root does not open with a `//!` paragraph"),
            "{text}"
        );
        assert!(
            text.contains("fix: open crates/demo/src/lib.rs with a `//!` paragraph saying what `demo` owns"),
            "{text}"
        );
    }

    #[test]
    fn a_crate_root_whose_paragraph_does_not_say_what_it_must_never_do_fails() {
        let out = check(&[(
            "xtask/src/main.rs",
            "//! Automation.\n\n// Never mind: not the opening paragraph.\nfn main() {}\n",
        )]);
        let text = out.text();
        assert!(text.contains("xtask/src/main.rs:1: the crate root's opening `//!` paragraph does not say what the crate must never do"), "{text}");
        assert!(text.contains("a sentence of what it must never do"), "{text}");
    }

    #[test]
    fn a_crate_root_that_says_what_it_owns_and_must_never_do_passes() {
        assert_eq!(crate_root_problem("\n//! Owns x.\n//!\n//! It NEVER does y.\n"), None);
        assert!(check(&[("crates/demo/src/lib.rs", ROOT)]).violations.is_empty());
    }

    #[test]
    fn a_handler_taking_a_bare_uuid_path_fails_naming_the_function_and_the_id_to_take() {
        let handler = "impl ProjectsApi {\n    async fn get(&self, scope: Scope, project_id: Path<Uuid>, q: Query<Option<Uuid>>) {}\n}\n";
        let out = check(&[("crates/api/src/routes/projects.rs", handler)]);
        let text = out.text();
        assert_eq!(out.violations.len(), 2, "{text}");
        assert!(text.contains("crates/api/src/routes/projects.rs:2: `fn ProjectsApi::get` takes parameter `project_id` as a bare `Path<Uuid>`"), "{text}");
        assert!(text.contains("fix: take ids::ProjectId (`Path<ids::ProjectId>`)"), "{text}");
        assert!(text.contains("parameter `q` as a bare `Query<Option<Uuid>>`"), "{text}");
    }

    #[test]
    fn a_handler_taking_typed_ids_passes() {
        let handler = "impl ProjectsApi {\n    async fn get(&self, project: Path<ProjectId>, after: Query<Option<ProjectId>>) {}\n}\n";
        assert!(check(&[("crates/api/src/routes/projects.rs", handler)]).violations.is_empty());
    }

    #[test]
    fn a_domain_pub_fn_taking_a_bare_uuid_fails_naming_the_parameter_and_the_id_to_take() {
        let code = "pub async fn get(tx: &Tx, id: Uuid) {}\nfn private(id: Uuid) {}\npub struct S;\nimpl S {\n    pub fn members(&self, user_ids: &[Uuid]) {}\n}\n#[cfg(test)]\nmod tests {\n    pub fn t(id: Uuid) {}\n}\n";
        let out = check(&[("crates/tenancy/src/projects.rs", code)]);
        let text = out.text();
        assert_eq!(out.violations.len(), 2, "{text}");
        assert!(
            text.contains("crates/tenancy/src/projects.rs:1: `fn get` takes parameter `id` as a bare `Uuid`"),
            "{text}"
        );
        assert!(text.contains("fix: take ids::ProjectId (`ids::ProjectId`)"), "{text}");
        assert!(
            text.contains(
                "crates/tenancy/src/projects.rs:5: `fn S::members` takes parameter `user_ids` as a bare `&[Uuid]`"
            ),
            "{text}"
        );
        assert!(text.contains("take ids::UserId (`&[ids::UserId]`)"), "{text}");
    }

    #[test]
    fn a_domain_pub_fn_taking_a_typed_id_passes_and_other_crates_are_not_domain() {
        let out = check(&[
            ("crates/tenancy/src/projects.rs", "pub fn get(id: ProjectId, ids: Vec<UserId>) {}\n"),
            ("crates/testkit/src/helpers.rs", "pub fn get(id: Uuid) {}\n"),
        ]);
        assert!(out.violations.is_empty(), "{}", out.text());
    }

    #[test]
    fn listed_debt_passes_and_a_stale_debt_line_fails_asking_for_its_removal() {
        let dir = tree(&[("crates/tenancy/src/projects.rs", "pub fn get(id: Uuid) {}\n")]);
        let findings = find(dir.path()).unwrap();
        let debt = debt_text(&findings);
        assert!(debt.contains("\nuuid-param crates/tenancy/src/projects.rs fn get(id)\n"), "{debt}");
        let out = settle(findings.clone(), &debt);
        assert!(out.violations.is_empty(), "{}", out.text());
        assert_eq!(
            out.summary,
            ["Tidy: no import cycle, bare crate root or bare Uuid beyond the debt list (1 uuid-param)"]
        );

        let stale = format!("{debt}uuid-param crates/tenancy/src/projects.rs fn gone(id)\n");
        let out = settle(findings, &stale);
        let text = out.text();
        assert_eq!(out.violations.len(), 1, "{text}");
        assert!(
            text.contains(
                "xtask/gate/tidy-debt.txt:5: `uuid-param crates/tenancy/src/projects.rs fn gone(id)` no longer occurs"
            ),
            "{text}"
        );
        assert!(text.contains("fix: remove this line from the debt list"), "{text}");
    }

    #[test]
    fn a_new_violation_fails_even_when_the_debt_list_holds_others() {
        let dir = tree(&[("crates/tenancy/src/projects.rs", "pub fn get(id: Uuid) {}\npub fn put(id: Uuid) {}\n")]);
        let debt = "uuid-param crates/tenancy/src/projects.rs fn get(id)\n";
        let out = settle(find(dir.path()).unwrap(), debt);
        assert_eq!(out.violations.len(), 1, "{}", out.text());
        assert!(out.text().contains("`fn put` takes parameter `id`"), "{}", out.text());
        assert!(out.text().contains("the debt list (xtask/gate/tidy-debt.txt) takes no new entries"), "{}", out.text());
    }

    #[test]
    fn the_workspace_is_tidy_apart_from_its_listed_debt() {
        let out = gate(&crate::workspace_root()).unwrap();
        assert!(out.violations.is_empty(), "{}", out.text());
    }
}
