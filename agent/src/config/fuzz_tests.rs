//! Hostile input for the config loader: `${VAR}` substitution on arbitrary text with hostile
//! variable values, and whole configs (mutated valid ones and arbitrary bytes) through TOML
//! parsing, plugin building and the diagnostics that point at a line and column. The loader
//! must answer with a config or an error, never a panic, and every offset it reports must lie
//! inside the text.
//!
//! The case count is proptest's: `PROPTEST_CASES` (256 by default); CI's fuzz step raises it.

use super::env::{line_col, substitute};
use super::{Registry, Selection, load_str};
use proptest::prelude::*;

/// Valid configs of plugins whose building has no side effect outside the process.
const BASES: &[&str] = &[
    r#"[agent]
  interval = "10s"
  flush_interval = "${FLUSH:-5s}"
  omit_hostname = true
[global_tags]
  dc = "${DC}"
[[inputs.cpu]]
  percpu = true
  namepass = ["cpu*"]
  [inputs.cpu.tagpass]
    cpu = ["cpu[0-3]", "*a*a*b"]
[[processors.rename]]
  [[processors.rename.replace]]
    measurement = "cpu"
    dest = "processor"
[[aggregators.minmax]]
  period = "30s"
[[outputs.discard]]
"#,
    r#"[[inputs.statsd]]
  protocol = "tcp"
  service_address = "127.0.0.1:0"
  templates = ["cpu.* measurement.measurement.region", "measurement.field*"]
[[inputs.influxdb_listener]]
  service_address = ":0"
  max_body_size = "1MiB"
  basic_username = '''u'''
  basic_password = """${PASS:?set PASS}"""
[[outputs.http]]
  url = "http://127.0.0.1:1/write"
  data_format = "json"
  [outputs.http.headers]
    X-Token = "$TOKEN"
"#,
    r#"[[inputs.mem]]
  fieldinclude = ["used*", "available"]
[[processors.converter]]
  [processors.converter.fields]
    integer = ["*_bytes"]
[[processors.override]]
  name_override = "m"
  [processors.override.tags]
    a = "${A:+set}"
[[aggregators.basicstats]]
  stats = ["mean", "s2"]
[[outputs.prometheus_client]]
  listen = "127.0.0.1:0"
  ip_range = ["::ffff:10.0.0.0/104"]
"#,
];

fn lookup(name: &str) -> Option<String> {
    match name {
        "FLUSH" => Some("1s\"\n[[inputs.mem]]\n#".into()),
        "DC" => Some("${DC}".into()),
        "PASS" => Some("'''\"\"\"$$\\".into()),
        "TOKEN" => Some("\u{0}\u{7f}\u{ffff}".into()),
        "A" => Some(String::new()),
        "LONG" => Some("x".repeat(10_000)),
        _ => None,
    }
}

fn mutate(mut bytes: Vec<u8>, edits: &[(prop::sample::Index, u8, u8)]) -> Vec<u8> {
    for (at, byte, op) in edits {
        let i = at.index(bytes.len() + 1);
        match op % 3 {
            0 if i < bytes.len() => bytes[i] = *byte,
            1 => bytes.insert(i, *byte),
            _ if i < bytes.len() => {
                bytes.remove(i);
            }
            _ => {}
        }
    }
    bytes
}

/// Substitution and line/column mapping on `text`: never panics, offsets stay in range.
fn check_substitute(text: &str) -> Result<(), TestCaseError> {
    let (out, map, errors) = substitute(text, &lookup);
    for e in &errors {
        prop_assert!(e.offset <= text.len(), "{e:?} beyond {}", text.len());
        let _ = line_col(text, e.offset);
    }
    for off in (0..=out.len()).step_by(7).chain([out.len()]) {
        let o = map.to_original(off);
        prop_assert!(
            o <= text.len(),
            "offset {off} maps to {o} beyond {}",
            text.len()
        );
        let _ = line_col(text, o);
    }
    Ok(())
}

fn check_load(text: &str) {
    let registry = Registry::builtin();
    match load_str(text, "fuzz.toml", &Selection::default(), &registry) {
        Ok(_) => {}
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.is_empty());
        }
    }
}

proptest! {
    #[test]
    fn substitution_on_arbitrary_text(
        text in "([$]|[{}:?+#'\"=\\\\\n-]|[A-Z]{1,5}|[a-z ]{1,3}|'''|\"\"\"|\\$\\{|\\$\\$){0,40}",
    ) {
        check_substitute(&text)?;
    }

    #[test]
    fn substitution_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        check_substitute(&String::from_utf8_lossy(&bytes))?;
    }

    #[test]
    fn loader_on_mutated_configs(
        base in prop::sample::select(BASES),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), any::<u8>()), 1..6),
    ) {
        let bytes = mutate(base.as_bytes().to_vec(), &edits);
        let text = String::from_utf8_lossy(&bytes);
        check_substitute(&text)?;
        check_load(&text);
    }

    #[test]
    fn loader_on_arbitrary_toml_shaped_text(
        text in "(\\[{1,2}[a-z._\"]{0,12}\\]{0,2}\n|[a-z_\"]{1,10} ?= ?(\"[^\"\n]{0,8}\"?|[0-9.e+-]{1,6}|true|\\[[^\n]{0,10}\\]?|\\{[^\n]{0,10}\\}?|'''|\"\"\")\n|#[^\n]{0,8}\n|\\$\\{[A-Z]{0,4}(:?[-?+][^}\n]{0,5})?\\}?){0,12}",
    ) {
        check_substitute(&text)?;
        check_load(&text);
    }
}

#[test]
fn found_by_fuzzing() {
    // line_col sliced the text at any offset it was given and panicked inside a multi-byte
    // character (found by check_substitute). The loader's own offsets are char boundaries,
    // so this input loaded fine; line_col now rounds down instead of trusting its callers.
    let registry = Registry::builtin();
    let e = load_str(
        "aa\"a_ = \"\0a\u{10000}\n",
        "fuzz.toml",
        &Selection::default(),
        &registry,
    )
    .expect_err("invalid TOML");
    assert!(e.to_string().starts_with("fuzz.toml:1:"), "{e}");
    assert_eq!(line_col("a\u{10000}", 3), (1, 2));
    assert_eq!(line_col("\u{fffd}\n\u{fffd}", 6), (2, 1));
}

#[test]
fn the_bases_are_valid() {
    // The mutated corpus starts from configs that load (given their variables).
    for (i, base) in BASES.iter().enumerate() {
        let (text, _, errors) = substitute(base, &|k| match k {
            "PASS" => Some("p".into()),
            "TOKEN" => Some("t".into()),
            _ => lookup(k),
        });
        assert!(errors.is_empty(), "base {i}: {errors:?}");
        let text = text.replace("1s\"\n[[inputs.mem]]\n#", "1s");
        let registry = Registry::builtin();
        if let Err(e) = load_str(&text, "base.toml", &Selection::default(), &registry) {
            panic!("base {i} does not load: {e}\n{text}");
        }
    }
}
