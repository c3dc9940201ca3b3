//! Keeps the code readable in one sitting: no source file in `src/` or
//! `sim/src/` over 600 lines, no function (free, inherent, trait or nested)
//! over 80. Lengths come from `syn`'s spans, so a function counts from its
//! signature to its closing brace, doc comments excluded. Tests (`*_tests.rs`
//! files and `#[cfg(test)]` modules) are exempt: a table of cases is long by
//! nature. So is a generated file, one whose first line starts with `// @generated`
//! (`src/protocol/sqlstate_codes.rs`), from the file limit only: it is a table nobody
//! reads in one sitting, but a long function in it is still reported.

use std::fs;
use std::path::{Path, PathBuf};

use syn::spanned::Spanned;
use syn::visit::Visit;

const MAX_FILE_LINES: usize = 600;
const MAX_FN_LINES: usize = 80;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn sources() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    rust_files(&root.join("sim/src"), &mut files);
    files.retain(|p| !p.to_string_lossy().ends_with("_tests.rs"));
    files
}

/// Functions longer than the limit, as `name (lines)`.
/// A generated file: its first line says so (the `@generated` marker tools know).
fn is_generated(text: &str) -> bool {
    text.lines()
        .next()
        .is_some_and(|first| first.starts_with("// @generated"))
}

#[derive(Default)]
struct LongFns {
    found: Vec<String>,
}

fn is_cfg_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && a.parse_args::<syn::Meta>()
                .is_ok_and(|m| m.path().is_ident("test"))
    })
}

impl LongFns {
    /// Measures a function from its signature to its closing brace: the doc
    /// comment is not code.
    fn check(&mut self, sig: &syn::Signature, block: &syn::Block) {
        let span = sig
            .span()
            .join(block.span())
            .unwrap_or_else(|| block.span());
        let name = &sig.ident;
        let lines = span.end().line - span.start().line + 1;
        if lines > MAX_FN_LINES {
            self.found.push(format!("{name} ({lines} lines)"));
        }
    }
}

impl<'ast> Visit<'ast> for LongFns {
    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        if !is_cfg_test(&m.attrs) {
            syn::visit::visit_item_mod(self, m);
        }
    }
    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        self.check(&f.sig, &f.block);
        syn::visit::visit_item_fn(self, f);
    }
    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        self.check(&f.sig, &f.block);
        syn::visit::visit_impl_item_fn(self, f);
    }
    fn visit_trait_item_fn(&mut self, f: &'ast syn::TraitItemFn) {
        if let Some(block) = &f.default {
            self.check(&f.sig, block);
        }
        syn::visit::visit_trait_item_fn(self, f);
    }
}

#[test]
fn no_file_over_600_lines_and_no_function_over_80() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut problems = Vec::new();
    for path in sources() {
        let text = fs::read_to_string(&path).expect("source file");
        let rel = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .display()
            .to_string();
        let lines = text.lines().count();
        if lines > MAX_FILE_LINES && !is_generated(&text) {
            problems.push(format!("{rel}: {lines} lines (at most {MAX_FILE_LINES})"));
        }
        let file = syn::parse_file(&text).unwrap_or_else(|e| panic!("{rel}: {e}"));
        let mut long = LongFns::default();
        long.visit_file(&file);
        for f in long.found {
            problems.push(format!("{rel}: fn {f} (at most {MAX_FN_LINES})"));
        }
    }
    assert!(problems.is_empty(), "too long:\n{}", problems.join("\n"));
}

/// The checker itself: a planted long function and a long file are reported.
#[test]
fn the_size_check_catches_a_long_function() {
    let body = "    let x = 1;\n".repeat(MAX_FN_LINES);
    let text = format!("/// Doc.\nfn long() {{\n{body}}}\nfn short() {{}}\n");
    let file = syn::parse_file(&text).expect("planted file");
    let mut long = LongFns::default();
    long.visit_file(&file);
    assert_eq!(
        long.found,
        vec![format!("long ({} lines)", MAX_FN_LINES + 2)]
    );

    let nested = format!("impl S {{\n    fn m() {{\n{body}    }}\n}}\n");
    let mut long = LongFns::default();
    long.visit_file(&syn::parse_file(&nested).expect("planted impl"));
    assert_eq!(long.found, vec![format!("m ({} lines)", MAX_FN_LINES + 2)]);
}

/// Only a first line marks a file generated: the marker further down, or a file that
/// merely mentions it, is still held to the limit.
#[test]
fn only_a_first_line_marker_exempts_a_file() {
    assert!(is_generated(
        "// @generated by x; do not edit.\nfn f() {}\n"
    ));
    assert!(!is_generated("//! Docs.\n// @generated by x\n"));
    assert!(!is_generated("// see @generated\n"));
    assert!(!is_generated(""));
}
