//! Everything that knows Odoo's JSON, over JSON-RPC or JSON-2: the transport ([`client`]) with
//! its circuit breaker ([`breaker`]), the error classification ([`error`]), and typed calls for
//! what the merge needs ([`api`]). What these rely on of Odoo's behaviour, version by version,
//! is written down in `docs/odoo.md`.
//!
//! Architecture invariant: only `central::odoo` builds or parses Odoo's JSON.

pub mod answers;
pub mod api;
pub mod breaker;
pub mod client;
pub mod error;
pub mod settings;
pub mod stock_levels;

pub use client::{Api, Call, OdooClient, OdooConfig, Transport};
pub use error::{ErrorKind, OdooError};

#[cfg(test)]
mod docs {
    //! Code, tests and docs cite the sections of `docs/odoo.md` by anchor (the file name, `#`,
    //! the anchor); a renamed heading would leave them pointing nowhere.

    use std::collections::BTreeSet;
    use std::path::{Path, PathBuf};

    const DOC: &str = "docs/odoo.md";

    /// GitHub's anchor of a heading: lower case, punctuation dropped, spaces as dashes.
    fn slug(heading: &str) -> String {
        heading
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
            .map(|c| if c == ' ' { '-' } else { c })
            .collect()
    }

    fn anchors(markdown: &str) -> BTreeSet<String> {
        let mut fenced = false;
        let mut found = BTreeSet::new();
        for line in markdown.lines() {
            if line.starts_with("```") {
                fenced = !fenced;
            } else if !fenced && line.starts_with('#') {
                found.insert(slug(line.trim_start_matches('#')));
            }
        }
        found
    }

    /// The anchors `text` cites after the doc's file name and `#`; for the doc itself, those
    /// of its own links (`](#` and the anchor).
    fn citations(text: &str, own: bool) -> Vec<String> {
        let marker = if own { "](#" } else { "docs/odoo.md#" };
        text.match_indices(marker)
            .map(|(at, _)| {
                text[at + marker.len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                    .collect::<String>()
            })
            .filter(|anchor| !anchor.is_empty())
            .collect()
    }

    fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || name == "target" {
                continue;
            }
            if path.is_dir() {
                sources(&path, out);
            } else if ["rs", "md", "toml", "sh"]
                .iter()
                .any(|ext| path.extension().is_some_and(|e| e == *ext))
            {
                out.push(path);
            }
        }
    }

    #[test]
    fn slugs_are_githubs() {
        assert_eq!(slug(" Exactly once"), "exactly-once");
        assert_eq!(slug("The merge's calls"), "the-merges-calls");
        assert_eq!(
            slug("Differences between 17, 18 and 19"),
            "differences-between-17-18-and-19"
        );
    }

    #[test]
    fn every_citation_of_the_odoo_doc_names_one_of_its_sections() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let doc = std::fs::read_to_string(root.join(DOC)).expect("docs/odoo.md");
        let known = anchors(&doc);
        assert!(known.contains("reservations"), "headings found: {known:?}");
        let mut files = Vec::new();
        sources(&root, &mut files);
        let mut cited = 0;
        let mut broken = Vec::new();
        for file in &files {
            let Ok(text) = std::fs::read_to_string(file) else {
                continue;
            };
            let own = file.ends_with(DOC);
            for anchor in citations(&text, false).into_iter().chain(if own {
                citations(&text, true)
            } else {
                Vec::new()
            }) {
                cited += 1;
                if !known.contains(&anchor) {
                    broken.push(format!("{}: #{anchor}", file.display()));
                }
            }
        }
        assert!(
            cited > 20,
            "only {cited} citations found under {}",
            root.display()
        );
        assert!(
            broken.is_empty(),
            "citations of sections docs/odoo.md does not have: {broken:#?}"
        );
    }
}
