//! The shipped configs (the embedded default and config/examples/*.toml) stay valid.

use sonde_tests::run;

#[test]
fn every_shipped_config_passes_config_check() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let mut files = vec![format!("{root}/config/sonde.toml")];
    for e in std::fs::read_dir(format!("{root}/config/examples")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            files.push(p.display().to_string());
        }
    }
    assert!(files.len() >= 3, "examples are missing: {files:?}");
    for f in &files {
        let r = run(&["config", "check", "--config", f]);
        assert_eq!(r.code, Some(0), "{f}: {}{}", r.stdout, r.stderr);
    }
}
