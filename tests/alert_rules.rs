//! The README's example alert rules are `sentinel/alerts.yml`, word for
//! word, and Prometheus' own `promtool` accepts them and fires each alert
//! on the synthetic series of `sentinel/alerts-test.yml` exactly when
//! expected. Needs `promtool` (Debian's `prometheus`, which `make deps`
//! installs); without it the test fails and says so.

use std::path::Path;
use std::process::Command;

fn promtool(args: &[&str]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("sentinel");
    let o = Command::new("promtool")
        .args(args)
        .current_dir(&dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run promtool ({e}): install Debian's prometheus (make deps)")
        });
    assert!(
        o.status.success(),
        "promtool {args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn rules_pass_promtool() {
    promtool(&["check", "rules", "alerts.yml"]);
    promtool(&["test", "rules", "alerts-test.yml"]);
}

#[test]
fn readme_shows_the_checked_rules() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let rules = std::fs::read_to_string(root.join("sentinel/alerts.yml")).unwrap();
    let rules = &rules[rules.find("groups:").expect("alerts.yml has groups")..];
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let start = readme
        .find("#### Example alert rules")
        .expect("README has its alert rules");
    let block = &readme[start..];
    let block = &block[block.find("groups:").unwrap()..];
    let block = &block[..block.find("```").unwrap()];
    assert_eq!(
        block, rules,
        "README's alert rules differ from sentinel/alerts.yml"
    );
}
