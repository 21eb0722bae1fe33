//! Keeps the shape issue 13 asked of `operator/src`: no cycle between modules and no source file
//! past about 500 lines. Both come back one `use` or one function at a time, so they are checked here.
//!
//! A module is one `.rs` file (`x/mod.rs` is `x`, `lib.rs`/`main.rs` the crate root). The scan is
//! textual: `use` trees, inline `crate::`/`super::`/`self::` paths and `use` paths through a module's
//! own children, with `//` comments and the trailing `mod tests` cut off; a path lands in the longest
//! prefix that is a module file. Test-only files are left out on both ends of an edge.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 520;

type Module = Vec<String>;

/// `*_tests.rs` (so `pg_tests.rs`), `test_pg.rs`, `test_fixtures.rs`, `tests.rs` and all of `tests/`.
fn is_test_only(module: &[String]) -> bool {
    module.iter().any(|s| {
        s.contains("_tests") || s.starts_with("tests") || s.contains("test_pg") || s.contains("test_fixtures")
    })
}

fn name(module: &[String]) -> String {
    if module.is_empty() { "crate".to_string() } else { module.join("/") }
}

/// The src dir, and every `.rs` file under it with the module it defines.
fn source_tree() -> (PathBuf, Vec<(Module, PathBuf)>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let (mut dirs, mut files) = (vec![root.clone()], Vec::new());
    while let Some(dir) = dirs.pop() {
        for path in std::fs::read_dir(dir).unwrap().map(|entry| entry.unwrap().path()) {
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(&root).unwrap().with_extension("");
                let mut module: Module = rel.iter().map(|s| s.to_string_lossy().into_owned()).collect();
                if module.last().is_some_and(|s| s == "mod") || module == ["lib"] || module == ["main"] {
                    module.pop();
                }
                files.push((module, path));
            }
        }
    }
    files.sort();
    (root, files)
}

/// The source without its trailing `#[cfg(test)] mod tests` block and without `//` comments.
fn strip(src: &str) -> String {
    let src = src.find("#[cfg(test)]\nmod tests {").map_or(src, |i| &src[..i]);
    src.lines().map(|line| line.find("//").map_or(line, |i| &line[..i])).collect::<Vec<_>>().join("\n")
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The leaves of a `use` tree: `a::{b, c::{d, e as f}}` is `a::b`, `a::c::d`, `a::c::e`.
fn expand(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        return vec![tree.split(" as ").next().unwrap().replace(' ', "")];
    };
    let prefix = tree[..open].replace(' ', "");
    let inner = &tree[open + 1..tree.rfind('}').filter(|&c| c > open).unwrap_or(tree.len())];
    let mut depth = 0;
    let parts = inner.split(|c| {
        depth += i32::from(c == '{') - i32::from(c == '}');
        c == ',' && depth == 0
    });
    let leaves = parts.filter(|p| !p.trim().is_empty()).flat_map(expand);
    leaves.map(|leaf| format!("{prefix}{leaf}")).collect()
}

/// Every path a (stripped) source names: the leaves of its `use` trees and its inline paths
/// that start with `crate::`, `super::` or `self::`.
fn paths(src: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in src.match_indices("use") {
        let rest = &src[i + 3..];
        let word_start = src[..i].chars().next_back().is_none_or(|c| !is_ident(c));
        if word_start
            && rest.starts_with(char::is_whitespace)
            && let Some(end) = rest.find(';').filter(|&end| !rest[..end].trim().is_empty())
        {
            out.extend(expand(&rest[..end].split_whitespace().collect::<Vec<_>>().join(" ")));
        }
    }
    for token in src.split(|c: char| !is_ident(c) && c != ':') {
        if ["crate::", "super::", "self::"].iter().any(|k| token.starts_with(k)) {
            let segments: Vec<&str> =
                token.split("::").take_while(|s| !s.is_empty() && !s.contains(':')).collect();
            if segments.len() > 1 {
                out.push(segments.join("::"));
            }
        }
    }
    out
}

/// The module `path`, written in module `from`, lands in: the longest prefix that is a module file.
fn target(from: &[String], path: &str, modules: &BTreeSet<Module>) -> Option<Module> {
    let segments: Vec<&str> = path.split("::").collect();
    let child = [from, &[segments[0].to_string()]].concat();
    let mut full = match segments[0] {
        "crate" => Vec::new(),
        "super" | "self" => from.to_vec(),
        _ if modules.contains(&child) => from.to_vec(),
        _ => return None,
    };
    let mut rest = &segments[usize::from(segments[0] == "crate")..];
    while let Some((&first, tail)) = rest.split_first().filter(|(s, _)| **s == "super" || **s == "self") {
        if first == "super" {
            full.pop();
        }
        rest = tail;
    }
    full.extend(rest.iter().map(|s| s.to_string()));
    (1..=full.len()).rev().map(|n| full[..n].to_vec()).find(|prefix| modules.contains(prefix))
}

/// The strongly connected components of more than one node (Tarjan), each sorted.
fn cycles(adj: &[BTreeSet<usize>]) -> Vec<Vec<usize>> {
    struct Walk<'a> {
        adj: &'a [BTreeSet<usize>],
        index: Vec<usize>,
        low: Vec<usize>,
        next: usize,
        stack: Vec<usize>,
        out: Vec<Vec<usize>>,
    }
    fn visit(t: &mut Walk, v: usize) {
        if t.index[v] != usize::MAX {
            return;
        }
        (t.index[v], t.low[v], t.next) = (t.next, t.next, t.next + 1);
        t.stack.push(v);
        let adj = t.adj;
        for &w in &adj[v] {
            visit(t, w);
            if t.stack.contains(&w) {
                t.low[v] = t.low[v].min(t.low[w]);
            }
        }
        if t.low[v] == t.index[v] {
            let mut component = t.stack.split_off(t.stack.iter().rposition(|&w| w == v).unwrap());
            if component.len() > 1 {
                component.sort();
                t.out.push(component);
            }
        }
    }
    let (n, stack, out) = (adj.len(), Vec::new(), Vec::new());
    let mut t = Walk { adj, index: vec![usize::MAX; n], low: vec![0; n], next: 0, stack, out };
    (0..n).for_each(|v| visit(&mut t, v));
    t.out
}

/// One shortest cycle through the first node of `component`, that node first and last.
fn cycle_through(adj: &[BTreeSet<usize>], component: &[usize]) -> Vec<usize> {
    let start = component[0];
    let mut parent = BTreeMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(u) = queue.pop_front() {
        for &w in adj[u].iter().filter(|w| component.contains(w)) {
            if w == start {
                let back: Vec<usize> = std::iter::successors(Some(u), |x| parent.get(x).copied()).collect();
                return back.into_iter().rev().chain([start]).collect();
            }
            if let Entry::Vacant(entry) = parent.entry(w) {
                entry.insert(u);
                queue.push_back(w);
            }
        }
    }
    unreachable!("a component of more than one node has a cycle through each of them")
}

#[test]
fn no_module_cycle() {
    let (_, files) = source_tree();
    let modules: BTreeSet<Module> = files.iter().map(|(m, _)| m.clone()).collect();
    let nodes: Vec<&Module> = modules.iter().filter(|m| !is_test_only(m)).collect();
    let id: BTreeMap<&Module, usize> = nodes.iter().enumerate().map(|(i, &m)| (m, i)).collect();
    let mut adj = vec![BTreeSet::new(); nodes.len()];
    for (module, path) in files.iter().filter(|(m, _)| !is_test_only(m)) {
        let src = strip(&std::fs::read_to_string(path).unwrap());
        for to in paths(&src).iter().filter_map(|p| target(module, p, &modules)) {
            if &to != module && !is_test_only(&to) {
                adj[id[module]].insert(id[&to]);
            }
        }
    }
    let names: Vec<String> = nodes.iter().map(|m| name(m)).collect();
    let mut report = String::new();
    for comp in cycles(&adj) {
        let cycle: Vec<&str> = cycle_through(&adj, &comp).iter().map(|&i| names[i].as_str()).collect();
        report += &format!("cycle: {}\n", cycle.join(" -> "));
        for &a in &comp {
            for &b in adj[a].iter().filter(|b| comp.contains(b)) {
                report += &format!("    {} -> {}\n", names[a], names[b]);
            }
        }
    }
    assert!(report.is_empty(), "module cycles in operator/src:\n{report}");
}

#[test]
fn no_source_file_is_over_the_line_limit() {
    let (root, files) = source_tree();
    let mut report = String::new();
    for (_, path) in files.iter().filter(|(m, _)| !is_test_only(m)) {
        let lines = std::fs::read_to_string(path).unwrap().lines().count();
        if lines > MAX_LINES {
            report += &format!("src/{}: {lines} lines\n", path.strip_prefix(&root).unwrap().display());
        }
    }
    assert!(report.is_empty(), "files over {MAX_LINES} lines, to split:\n{report}");
}

#[test]
fn use_trees_expand_to_their_leaves() {
    let leaves = expand("super::{a, b::{c, d as e}, self, }");
    assert_eq!(leaves, ["super::a", "super::b::c", "super::b::d", "super::self"]);
    assert_eq!(expand("crate::x::Y as Z"), ["crate::x::Y"]);
}

#[test]
fn paths_skip_comments_and_the_tests_module() {
    let src = "pub use self::{a::A,\n b};\n// use crate::gone;\nfn f() { crate::c::f(); super::super::d::D; }\n\
               #[cfg(test)]\nmod tests {\n    use crate::t;\n}\n";
    let found = paths(&strip(src));
    assert_eq!(found, ["self::a::A", "self::b", "crate::c::f", "super::super::d::D"]);
}

#[test]
fn paths_resolve_to_the_longest_module_prefix() {
    let module = |path: &str| -> Module { path.split('/').map(str::to_string).collect() };
    let modules: BTreeSet<Module> = ["a", "a/b", "a/b/c", "a/kid", "d"].into_iter().map(module).collect();
    let to = |from: &str, path: &str| target(&module(from), path, &modules).map_or("-".into(), |m| name(&m));
    assert_eq!(to("a/b", "super::super::d::X"), "d");
    assert_eq!(to("a/b", "self::c::f"), "a/b/c");
    assert_eq!(to("a/b", "super::Thing"), "a");
    assert_eq!(to("d", "crate::a::b::Thing"), "a/b");
    assert_eq!(to("a", "kid::Thing"), "a/kid");
    assert_eq!(to("d", "kid::Thing"), "-");
    assert_eq!(to("a", "std::fmt"), "-");
    assert_eq!(to("d", "super::Root"), "-");
}

#[test]
fn cycles_are_found_with_a_path_through_them() {
    let edges = [(0, 1), (1, 2), (2, 0), (2, 3), (3, 4), (4, 3), (4, 5)];
    let mut adj = vec![BTreeSet::new(); 6];
    for (a, b) in edges {
        adj[a].insert(b);
    }
    assert_eq!(cycles(&adj), [vec![3, 4], vec![0, 1, 2]]);
    assert_eq!(cycle_through(&adj, &[0, 1, 2]), [0, 1, 2, 0]);
    assert_eq!(cycle_through(&adj, &[3, 4]), [3, 4, 3]);
    adj[2].remove(&0);
    assert_eq!(cycles(&adj), [vec![3, 4]]);
}
