//! Enforces the dependency table of docs/architecture.md: every path in `src/`
//! (`use` trees, and paths in code, types and macro names) is parsed with `syn`,
//! resolved (`crate::`, `super::`, `self::`, external crates) and checked against
//! an allow-list per layer: which of our modules and which crates it may name.
//! `std` is open but for the parts that do I/O, read clocks or spawn threads,
//! which the sans-IO layers may not touch. Code under `#[cfg(test)]` may use
//! anything.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use syn::visit::Visit;

/// A layer, what of ours and which crates it may name, and the `std` paths it
/// must not.
struct Rule {
    layer: &'static str,
    modules: &'static [&'static str],
    crates: &'static [&'static str],
    std_denied: &'static [&'static str],
}

/// What a sans-IO layer must not reach for in `std`.
const NO_IO: &[&str] = &[
    "std::net",
    "std::io",
    "std::fs",
    "std::thread",
    "std::process",
    "std::env",
    "std::time::Instant",
    "std::time::SystemTime",
];

const RULES: &[Rule] = &[
    Rule {
        layer: "protocol",
        modules: &["protocol", "mutant"],
        crates: &[
            "bytes",
            "memchr",
            "thiserror",
            "base64",
            "hmac",
            "sha2",
            "md5",
            "stringprep",
        ],
        std_denied: NO_IO,
    },
    Rule {
        layer: "buffer",
        modules: &["buffer", "mutant"],
        crates: &["bytes"],
        std_denied: NO_IO,
    },
    Rule {
        layer: "session",
        modules: &["session", "protocol", "buffer", "error", "mutant"],
        crates: &["bytes", "tracing"],
        std_denied: NO_IO,
    },
    Rule {
        layer: "error",
        modules: &["error", "protocol"],
        crates: &["thiserror"],
        std_denied: &[],
    },
    Rule {
        layer: "transport",
        modules: &["transport", "mutant"],
        crates: &[
            "tokio",
            "tokio_rustls",
            "rustls",
            "socket2",
            "libc",
            "turmoil",
            "tracing",
        ],
        std_denied: &[],
    },
    Rule {
        layer: "trace",
        modules: &["trace", "error", "protocol"],
        crates: &["tracing"],
        std_denied: NO_IO,
    },
    Rule {
        layer: "mutant",
        modules: &["mutant"],
        crates: &[],
        std_denied: NO_IO,
    },
];

/// Every crate this package depends on: a first path segment that is none of
/// these (nor `crate`, `super`, `self`, `std`, `core`, `alloc`) is a local name.
const EXTERNAL: &[&str] = &[
    "base64",
    "bytes",
    "hmac",
    "libc",
    "md5",
    "memchr",
    "rand",
    "rustls",
    "rustls_native_certs",
    "webpki",
    "sha2",
    "socket2",
    "stringprep",
    "thiserror",
    "tokio",
    "tokio_rustls",
    "tokio_util",
    "futures_core",
    "tracing",
    "turmoil",
];

/// One use of a path, resolved: `crate::a::b` for ours, `tokio::…` or
/// `std::…` for the rest.
#[derive(Debug)]
struct Use {
    path: String,
    line: usize,
}

/// Collects resolved paths from one file, skipping `#[cfg(test)]` items.
struct Collector {
    /// The module the visitor is in, as segments under `crate`.
    module: Vec<String>,
    uses: Vec<Use>,
}

fn is_cfg_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && a.parse_args::<syn::Meta>()
                .is_ok_and(|m| m.path().is_ident("test"))
    })
}

impl Collector {
    /// Resolves `segments` (as written) against the current module; `None`
    /// for a local name (a type, a variable, a child module used bare).
    fn resolve(&self, segments: &[String]) -> Option<String> {
        let first = segments.first()?;
        let mut absolute: Vec<String> = match first.as_str() {
            "crate" => vec!["crate".to_owned()],
            "self" => std::iter::once("crate".to_owned())
                .chain(self.module.iter().cloned())
                .collect(),
            "super" => {
                let mut at = self.module.clone();
                let mut rest = segments;
                while rest.first().is_some_and(|s| s == "super") {
                    at.pop();
                    rest = &rest[1..];
                }
                let path: Vec<String> = std::iter::once("crate".to_owned())
                    .chain(at)
                    .chain(rest.iter().cloned())
                    .collect();
                return Some(path.join("::"));
            }
            name if EXTERNAL.contains(&name) || ["std", "core", "alloc"].contains(&name) => {
                return Some(segments.join("::"));
            }
            _ => return None,
        };
        absolute.extend(segments.iter().skip(1).cloned());
        Some(absolute.join("::"))
    }

    fn record(&mut self, segments: &[String], line: usize) {
        if let Some(path) = self.resolve(segments) {
            self.uses.push(Use { path, line });
        }
    }

    /// Flattens a `use` tree into every path it names.
    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree, line: usize) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree, line);
                prefix.pop();
            }
            syn::UseTree::Name(n) => {
                prefix.push(n.ident.to_string());
                self.record(&prefix.clone(), line);
                prefix.pop();
            }
            syn::UseTree::Rename(r) => {
                prefix.push(r.ident.to_string());
                self.record(&prefix.clone(), line);
                prefix.pop();
            }
            syn::UseTree::Glob(_) => self.record(&prefix.clone(), line),
            syn::UseTree::Group(g) => {
                for t in &g.items {
                    self.use_tree(prefix, t, line);
                }
            }
        }
    }
}

impl<'ast> Visit<'ast> for Collector {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        let attrs = match item {
            syn::Item::Mod(m) => &m.attrs,
            syn::Item::Fn(f) => &f.attrs,
            syn::Item::Impl(i) => &i.attrs,
            syn::Item::Use(u) => &u.attrs,
            syn::Item::Struct(s) => &s.attrs,
            syn::Item::Enum(e) => &e.attrs,
            syn::Item::Const(c) => &c.attrs,
            syn::Item::Static(s) => &s.attrs,
            syn::Item::Trait(t) => &t.attrs,
            syn::Item::Type(t) => &t.attrs,
            syn::Item::Macro(m) => &m.attrs,
            _ => return syn::visit::visit_item(self, item),
        };
        if !is_cfg_test(attrs) {
            syn::visit::visit_item(self, item);
        }
    }

    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        // An inline module is a level deeper; an out-of-line one is its own file.
        if m.content.is_some() {
            self.module.push(m.ident.to_string());
            syn::visit::visit_item_mod(self, m);
            self.module.pop();
        }
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        let line = u.use_token.span.start().line;
        self.use_tree(&mut Vec::new(), &u.tree, line);
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        let segments: Vec<String> = p.segments.iter().map(|s| s.ident.to_string()).collect();
        let line = p
            .segments
            .first()
            .map_or(0, |s| s.ident.span().start().line);
        // One segment is a local name (a variable may be called `bytes`);
        // a crate used in code is always followed by what is taken from it.
        if segments.len() > 1 {
            self.record(&segments, line);
        }
        syn::visit::visit_path(self, p);
    }
}

/// The module path of a file under `src/`: `session/mod.rs` → `[session]`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts
}

/// A `*_tests.rs` file is a `#[cfg(test)]` module kept in its own file (as
/// `tests/size.rs` expects of long test tables): exempt like inline
/// `#[cfg(test)]` code, but only if a sibling file really declares it that way
/// (`#[cfg(test)] #[path = "x_tests.rs"] mod tests;`), so the name alone
/// exempts nothing.
fn is_test_only_file(file: &Path) -> bool {
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    if !name.ends_with("_tests.rs") {
        return false;
    }
    let dir = file.parent().unwrap();
    let declared = fs::read_dir(dir).unwrap().any(|entry| {
        let sibling = entry.unwrap().path();
        if sibling == file || sibling.extension().is_none_or(|e| e != "rs") {
            return false;
        }
        let Ok(parsed) = syn::parse_file(&fs::read_to_string(&sibling).unwrap()) else {
            return false;
        };
        parsed.items.iter().any(|item| {
            let syn::Item::Mod(m) = item else { return false };
            is_cfg_test(&m.attrs)
                && m.attrs.iter().any(|a| {
                    a.path().is_ident("path")
                        && matches!(&a.meta, syn::Meta::NameValue(nv)
                            if matches!(&nv.value, syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(s), .. }) if s.value() == name))
                })
        })
    });
    assert!(
        declared,
        "{}: a *_tests.rs file must be declared by a #[cfg(test)] #[path] mod beside it",
        file.display()
    );
    true
}

fn rust_files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        for entry in fs::read_dir(path).unwrap() {
            rust_files(&entry.unwrap().path(), out);
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        out.push(path.to_owned());
    }
}

/// Every rule broken by `code`, a file at `module` (segments under `crate`).
fn violations(module: &[String], code: &str, name: &str) -> Vec<String> {
    let Some(rule) = RULES
        .iter()
        .find(|r| module.first().is_some_and(|m| m == r.layer))
    else {
        return Vec::new();
    };
    let file = syn::parse_file(code).unwrap_or_else(|e| panic!("{name}: {e}"));
    if is_cfg_test(&file.attrs) {
        return Vec::new();
    }
    let mut c = Collector {
        module: module.to_vec(),
        uses: Vec::new(),
    };
    c.visit_file(&file);
    let mut out = Vec::new();
    for Use { path, line } in c.uses {
        let segments: Vec<&str> = path.split("::").collect();
        let broken = match segments[0] {
            "crate" => segments.get(1).is_some_and(|m| !rule.modules.contains(m)),
            "std" | "core" | "alloc" => {
                let std_path = format!("std::{}", segments[1..].join("::"));
                rule.std_denied
                    .iter()
                    .any(|d| std_path == *d || std_path.starts_with(&format!("{d}::")))
            }
            krate => !rule.crates.contains(&krate),
        };
        if broken {
            out.push(format!("{name}:{line}: `{path}` in layer {}", rule.layer));
        }
    }
    out
}

#[test]
fn layers_respect_the_dependency_table() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut broken = Vec::new();
    let mut checked = BTreeSet::new();
    for file in &files {
        if is_test_only_file(file) {
            continue;
        }
        let module = module_of(&src, file);
        if let Some(layer) = module
            .first()
            .filter(|m| RULES.iter().any(|r| r.layer == *m))
        {
            checked.insert(layer.clone());
        }
        let code = fs::read_to_string(file).unwrap();
        broken.extend(violations(&module, &code, &file.display().to_string()));
    }
    assert_eq!(
        checked.len(),
        RULES.len(),
        "every layer has files ({checked:?}): is the layout as documented?"
    );
    assert!(
        broken.is_empty(),
        "dependency rule broken:\n{}",
        broken.join("\n")
    );
}

/// The forms a substring check missed are caught, and the allowed ones pass.
#[test]
fn planted_violations_are_caught() {
    let session = |s: &str| vec!["session".to_owned(), s.to_owned()];
    let cases: &[(&[String], &str, &str)] = &[
        (
            &session("x"),
            "use crate::{error::Error, transport::Transport};",
            "crate::transport::Transport",
        ),
        (
            &session("x"),
            "fn f() { super::super::transport::TcpTransport::new(); }",
            "crate::transport::TcpTransport::new",
        ),
        (
            &session("x"),
            "use std::{io, net::TcpStream};",
            "std::net::TcpStream",
        ),
        (
            &session("x"),
            "fn f() { let _ = tokio::spawn(async {}); }",
            "tokio::spawn",
        ),
        (
            &session("x"),
            "fn f() -> std::time::Instant { std::time::Instant::now() }",
            "std::time::Instant",
        ),
        (
            &["protocol".to_owned()],
            "use crate::session::Session;",
            "crate::session::Session",
        ),
        (
            &["transport".to_owned(), "tcp".to_owned()],
            "use super::super::protocol::Message;",
            "crate::protocol::Message",
        ),
    ];
    for (module, code, expected) in cases {
        let found = violations(module, code, "planted.rs");
        assert!(
            found.iter().any(|v| v.contains(&format!("`{expected}`"))),
            "{code}: {found:?}"
        );
    }
    let allowed = [
        "use crate::{error::Error, protocol::Message}; use super::state::State;",
        "use std::{fmt, task::Context}; fn f() { let _ = bytes::Bytes::new(); }",
        "#[cfg(test)] mod tests { use tokio::net::TcpStream; }",
    ];
    for code in allowed {
        assert_eq!(
            violations(&session("x"), code, "allowed.rs"),
            Vec::<String>::new(),
            "{code}"
        );
    }
}
