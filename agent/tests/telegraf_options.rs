//! Every option key of Telegraf's sample config, for each plugin sonde has, is known to sonde:
//! accepted (and implemented, or warned about when it cannot apply), or, for the few features
//! not built yet, refused with "not supported yet" — never rejected as an unknown key.
//!
//! The option names are listed in `telegraf_options.toml` next to this file. The test prints
//! the figure "known / total"; run with `--nocapture` to see it.

use sonde::config::{self, Registry, Selection};

const TABLE: &str = include_str!("telegraf_options.toml");

/// Options refused on purpose with a clear "not supported yet": service discovery for the
/// prometheus input (Kubernetes, Consul, HTTP), Google credentials for outputs.http.
const NOT_SUPPORTED_YET: &[&str] = &[
    "inputs.prometheus.kubernetes_services",
    "inputs.prometheus.kube_config",
    "inputs.prometheus.monitor_kubernetes_pods",
    "inputs.prometheus.monitor_kubernetes_pods_method",
    "inputs.prometheus.monitor_kubernetes_pods_scheme",
    "inputs.prometheus.monitor_kubernetes_pods_port",
    "inputs.prometheus.monitor_kubernetes_pods_path",
    "inputs.prometheus.monitor_kubernetes_pods_namespace",
    "inputs.prometheus.pod_scrape_scope",
    "inputs.prometheus.node_ip",
    "inputs.prometheus.pod_scrape_interval",
    "inputs.prometheus.pod_namespace_label_name",
    "inputs.prometheus.kubernetes_label_selector",
    "inputs.prometheus.kubernetes_field_selector",
    "inputs.prometheus.pod_annotation_include",
    "inputs.prometheus.pod_annotation_exclude",
    "inputs.prometheus.pod_label_include",
    "inputs.prometheus.pod_label_exclude",
    "inputs.prometheus.cache_refresh_interval",
    "inputs.prometheus.consul.enabled",
    "inputs.prometheus.consul.agent",
    "inputs.prometheus.consul.query_interval",
    "inputs.prometheus.consul.query.name",
    "inputs.prometheus.consul.query.tag",
    "inputs.prometheus.consul.query.url",
    "inputs.prometheus.consul.query.tags.host",
    "inputs.prometheus.http_service_discovery.enabled",
    "inputs.prometheus.http_service_discovery.url",
    "inputs.prometheus.http_service_discovery.query_interval",
    "inputs.prometheus.namespace_annotation_pass.annotation_key",
    "inputs.prometheus.namespace_annotation_drop.some_annotation_key",
    "outputs.http.google_application_credentials",
];

/// Puts `value` at the dotted `key` of `table`; under a prefix named in `arrays`, as the one
/// element of an array of tables.
fn insert(table: &mut toml::Table, key: &str, value: toml::Value, arrays: &[String]) {
    if let Some(prefix) = arrays.iter().find(|a| key.starts_with(&format!("{a}."))) {
        let rest = &key[prefix.len() + 1..];
        let mut inner = toml::Table::new();
        insert(&mut inner, rest, value, &[]);
        let mut path: Vec<&str> = prefix.split('.').collect();
        let last = path.pop().unwrap();
        let mut t = table;
        for seg in path {
            t = t
                .entry(seg)
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                .as_table_mut()
                .unwrap();
        }
        t.insert(
            last.into(),
            toml::Value::Array(vec![toml::Value::Table(inner)]),
        );
        return;
    }
    match key.split_once('.') {
        Some((head, rest)) => {
            let sub = table
                .entry(head)
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            insert(sub.as_table_mut().unwrap(), rest, value, &[]);
        }
        None => {
            table.insert(key.into(), value);
        }
    }
}

#[test]
fn sonde_knows_every_telegraf_option() {
    let table: toml::Table = toml::from_str(TABLE).expect("telegraf_options.toml");
    let registry = Registry::builtin();
    let (mut total, mut known) = (0, 0);
    let mut unknown = Vec::new();
    let mut refused = Vec::new();
    let mut value_errors = Vec::new();
    for (key, value) in table["agent"]["options"].as_table().unwrap() {
        total += 1;
        let mut agent = toml::Table::new();
        agent.insert(key.clone(), value.clone());
        let mut doc = toml::Table::new();
        doc.insert("agent".into(), agent.into());
        let text = format!(
            "{}\n[[inputs.mem]]\n[[outputs.discard]]\n",
            toml::to_string(&doc).unwrap()
        );
        match config::load_str(&text, "telegraf.toml", &Selection::default(), &registry) {
            Ok(_) => known += 1,
            Err(e) => unknown.push(format!("agent.{key}: {e}")),
        }
    }
    for (kind, plugins) in table.iter().filter(|(k, _)| *k != "agent") {
        for (name, spec) in plugins.as_table().unwrap() {
            let base = spec.get("base").and_then(|b| b.as_str()).unwrap_or("");
            let arrays: Vec<String> = spec
                .get("arrays")
                .and_then(|a| a.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            let options = spec["options"].as_table().unwrap();
            for (key, value) in options {
                total += 1;
                let id = format!("{kind}.{name}.{key}");
                let mut plugin: toml::Table = toml::from_str(base).unwrap();
                insert(&mut plugin, key, value.clone(), &arrays);
                let mut doc = toml::Table::new();
                let mut section = toml::Table::new();
                section.insert(name.clone(), toml::Value::Array(vec![plugin.into()]));
                doc.insert(kind.clone(), section.into());
                // A config needs an input and an output to load.
                let mut text = toml::to_string(&doc).unwrap();
                if kind != "inputs" {
                    text.push_str("\n[[inputs.mem]]\n");
                }
                if kind != "outputs" {
                    text.push_str("\n[[outputs.discard]]\n");
                }
                match config::load_str(&text, "telegraf.toml", &Selection::default(), &registry) {
                    Ok(_) => known += 1,
                    Err(e) => {
                        let msg = e.to_string();
                        // An unknown key, or a plugin sonde does not have at all.
                        if msg.contains("unknown key")
                            || msg.contains("unknown field")
                            || msg.contains(" plugin \"")
                        {
                            unknown.push(format!("{id}: {msg}"));
                        } else if msg.contains("not supported yet") {
                            refused.push(id);
                        } else {
                            // Known, but this value is refused (a file that does not exist here).
                            known += 1;
                            value_errors.push(format!("{id}: {msg}"));
                        }
                    }
                }
            }
        }
    }
    println!(
        "Telegraf option keys known to sonde: {} / {total} ({:.1}%): {known} accepted, {} refused \
         as not supported yet; {} unknown",
        known + refused.len(),
        100.0 * (known + refused.len()) as f64 / total as f64,
        refused.len(),
        unknown.len()
    );
    for r in &refused {
        println!("  refused as not supported yet: {r}");
    }
    for v in &value_errors {
        println!("  known, value refused here: {v}");
    }
    assert!(
        unknown.is_empty(),
        "{} of {total} Telegraf options are unknown keys:\n{}",
        unknown.len(),
        unknown.join("\n")
    );
    let unexpected: Vec<_> = refused
        .iter()
        .filter(|r| !NOT_SUPPORTED_YET.contains(&r.as_str()))
        .collect();
    assert!(
        unexpected.is_empty(),
        "refused as not supported yet: {unexpected:?}"
    );
    assert_eq!(known + refused.len(), total);
}
