//! End-to-end: `inputs.postgresql`, `inputs.postgresql_extensible` and `inputs.apache` through
//! the real binary against a real PostgreSQL 15 and a real Apache with mod_status, started by
//! the test in temp dirs on free loopback ports. What sonde reports is compared with what
//! `psql` and `/server-status?auto` show in the same moment.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use sonde_tests::pgapache::{APACHE_PASSWORD, Apache, PG_PASSWORD, Postgres};
use sonde_tests::servers::request;
use sonde_tests::{Agent, TempDir, run, wait_until};

/// One line-protocol line, values kept as written (`12i`, `0.5`, `"text"`).
#[derive(Debug, Clone)]
struct Line {
    name: String,
    tags: BTreeMap<String, String>,
    fields: BTreeMap<String, String>,
    time: i64,
}

impl Line {
    fn tag(&self, k: &str) -> Option<&str> {
        self.tags.get(k).map(String::as_str)
    }
    fn raw(&self, k: &str) -> &str {
        self.fields
            .get(k)
            .unwrap_or_else(|| panic!("no field {k} in {self:?}"))
    }
    /// A float field (no suffix) as f64.
    fn float(&self, k: &str) -> f64 {
        let v = self.raw(k);
        assert!(!v.ends_with(['i', 'u', '"']), "{k}={v} is not a float");
        v.parse().unwrap()
    }
    /// An integer field (`i` suffix).
    fn int(&self, k: &str) -> i64 {
        let v = self.raw(k);
        assert!(v.ends_with('i'), "{k}={v} is not an integer");
        v[..v.len() - 1].parse().unwrap()
    }
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut esc = false;
    for c in s.chars() {
        if esc || c != '\\' {
            out.push(c);
            esc = false;
        } else {
            esc = true;
        }
    }
    out
}

fn parse(out: &str) -> Vec<Line> {
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let parts = sonde_tests::split_lp(l, ' ');
            assert!(parts.len() >= 2, "bad line {l:?}");
            let mut head = sonde_tests::split_lp(&parts[0], ',').into_iter();
            let name = unescape(&head.next().unwrap());
            let kv = |s: String| {
                let (k, v) = s.split_once('=').unwrap();
                (unescape(k), v.to_string())
            };
            let tags = head.map(|s| {
                let (k, v) = kv(s);
                (k, unescape(&v))
            });
            Line {
                name,
                tags: tags.collect(),
                fields: sonde_tests::split_lp(&parts[1], ',')
                    .into_iter()
                    .map(kv)
                    .collect(),
                time: parts.get(2).and_then(|t| t.parse().ok()).unwrap_or(0),
            }
        })
        .collect()
}

fn one<'a>(lines: &'a [Line], name: &str, tags: &[(&str, &str)]) -> &'a Line {
    let found: Vec<_> = lines
        .iter()
        .filter(|l| l.name == name && tags.iter().all(|(k, v)| l.tag(k) == Some(*v)))
        .collect();
    assert_eq!(found.len(), 1, "{name} {tags:?}: {found:#?}");
    found[0]
}

fn config(dir: &TempDir, body: &str) -> PathBuf {
    dir.write(
        "sonde.toml",
        &format!("[agent]\n  omit_hostname = true\n  interval = \"1h\"\n\n{body}\n"),
    )
}

/// `sonde --test` with one plugin table; returns (stdout lines, stderr).
fn test_run(dir: &TempDir, body: &str) -> (Vec<Line>, String) {
    let cfg = config(dir, body);
    let out = run(&["--test", "--config", cfg.to_str().unwrap()]);
    assert_eq!(out.code, Some(0), "stderr:\n{}", out.stderr);
    assert!(!out.stdout.contains(PG_PASSWORD), "{}", out.stdout);
    assert!(!out.stderr.contains(PG_PASSWORD), "{}", out.stderr);
    (parse(&out.stdout), out.stderr)
}

/// A view's rows as JSON objects, read with psql.
fn psql_rows(pg: &Postgres, sql: &str) -> Vec<serde_json::Map<String, serde_json::Value>> {
    pg.psql("postgres", &format!("SELECT row_to_json(x) FROM ({sql}) x"))
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| match serde_json::from_str(l).unwrap() {
            serde_json::Value::Object(m) => m,
            v => panic!("{v}"),
        })
        .collect()
}

/// sonde's field equals psql's column exactly (integers, floats, strings); NULLs and
/// timestamps are not reported.
fn assert_same(line: &Line, row: &serde_json::Map<String, serde_json::Value>, skip: &[&str]) {
    for (k, v) in row {
        if skip.contains(&k.as_str()) || k == "stats_reset" || k.ends_with("_failure") {
            assert!(!line.fields.contains_key(k), "{k} must not be reported");
            continue;
        }
        match v {
            serde_json::Value::Null => assert!(!line.fields.contains_key(k), "{k} is NULL"),
            // row_to_json writes an oid as a string.
            serde_json::Value::String(s) if line.raw(k).ends_with('i') => {
                assert_eq!(line.int(k).to_string(), *s, "{k}")
            }
            serde_json::Value::String(s) => assert_eq!(line.raw(k), format!("\"{s}\""), "{k}"),
            // The type is checked against the catalogue in `assert_types`.
            serde_json::Value::Number(n) if line.raw(k).ends_with('i') => {
                assert_eq!(line.int(k), n.as_i64().unwrap(), "{k}")
            }
            serde_json::Value::Number(n) => assert_eq!(line.float(k), n.as_f64().unwrap(), "{k}"),
            other => panic!("{k}: unexpected {other}"),
        }
    }
    let extra: Vec<_> = line
        .fields
        .keys()
        .filter(|k| !row.contains_key(*k))
        .collect();
    assert!(extra.is_empty(), "fields psql does not show: {extra:?}");
}

/// Every field has the type of its column: bigint/integer/oid → integer, double → float,
/// name/text → string.
fn assert_types(pg: &Postgres, view: &str, line: &Line) {
    let types = pg.psql(
        "postgres",
        &format!(
            "SELECT attname, format_type(atttypid, NULL) FROM pg_attribute \
             WHERE attrelid = '{view}'::regclass AND attnum > 0"
        ),
    );
    for l in types.lines() {
        let (col, ty) = l.split_once('|').unwrap();
        let Some(v) = line.fields.get(col) else {
            continue;
        };
        let ok = match ty {
            "bigint" | "integer" | "oid" => v.ends_with('i'),
            "double precision" => !v.ends_with(['i', 'u', '"']),
            "name" | "text" => v.starts_with('"'),
            other => panic!("{col}: a column of type {other} must not be a field"),
        };
        assert!(ok, "{view}.{col} is {ty} but sonde wrote {v}");
    }
}

/// `before <= sonde <= after` for every numeric column: counters read by psql just before and
/// just after sonde's gather (sonde's own connection adds to the `postgres` database's).
fn assert_between(
    line: &Line,
    before: &serde_json::Map<String, serde_json::Value>,
    after: &serde_json::Map<String, serde_json::Value>,
) {
    for (k, b) in before {
        let (Some(b), Some(a)) = (b.as_f64(), after[k].as_f64()) else {
            continue;
        };
        if k == "numbackends" {
            continue; // a gauge: psql's own session comes and goes
        }
        let v: f64 = line.raw(k).trim_end_matches('i').parse().unwrap();
        assert!(b <= v && v <= a, "{k}: {b} <= {v} <= {a} does not hold");
    }
}

/// Waits until the `app` database's statistics stop moving (the workload's sessions have
/// flushed theirs); returns its row.
fn settled_app_row(pg: &Postgres) -> serde_json::Map<String, serde_json::Value> {
    let q = "SELECT * FROM pg_stat_database WHERE datname = 'app'";
    let mut last = psql_rows(pg, q).remove(0);
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(700));
        let now = psql_rows(pg, q).remove(0);
        if now == last {
            return now;
        }
        last = now;
    }
    panic!("app statistics did not settle: {last:?}");
}

#[test]
fn postgresql_matches_psql_over_tcp_socket_and_tls() {
    let pg = Postgres::start();
    let port = pg.port;
    pg.psql(
        "app",
        "CREATE TABLE t (x int); INSERT INTO t SELECT generate_series(1, 100); \
         UPDATE t SET x = x + 1 WHERE x < 10; DELETE FROM t WHERE x > 90; SELECT count(*) FROM t;",
    );
    let app = settled_app_row(&pg);
    assert!(app["tup_inserted"].as_i64().unwrap() >= 100, "{app:?}");
    let dir = TempDir::new("pg-e2e");
    let sock = pg.socket_dir();
    let ca = pg.certs.ca.display().to_string();
    let tag = format!("dbname=postgres host=127.0.0.1 port={port} user=postgres");
    let cases = [
        (
            "tcp",
            format!(
                "address = \"postgres://postgres:{PG_PASSWORD}@127.0.0.1:{port}/postgres?sslmode=disable\""
            ),
            tag.clone(),
        ),
        (
            "unix socket",
            format!(
                "address = \"host={} port={port} user=postgres dbname=postgres\"",
                sock.display()
            ),
            format!(
                "host={} port={port} user=postgres dbname=postgres",
                sock.display()
            ),
        ),
        (
            "tls verify-full, no prepared statements",
            format!(
                "address = \"host=127.0.0.1 port={port} user=tls_only password={PG_PASSWORD} dbname=postgres sslmode=verify-full sslrootcert={ca} channel_binding=require\"\n  prepared_statements = false"
            ),
            format!(
                "host=127.0.0.1 port={port} user=tls_only dbname=postgres channel_binding=require"
            ),
        ),
    ];
    for (what, opts, want_tag) in &cases {
        let q_db = "SELECT * FROM pg_stat_database";
        let q_bg = "SELECT * FROM pg_stat_bgwriter";
        let (db_before, bg_before) = (psql_rows(&pg, q_db), psql_rows(&pg, q_bg).remove(0));
        let (lines, stderr) = test_run(&dir, &format!("[[inputs.postgresql]]\n  {opts}\n"));
        let (db_after, bg_after) = (psql_rows(&pg, q_db), psql_rows(&pg, q_bg).remove(0));
        assert!(!stderr.contains("gather failed"), "{what}: {stderr}");
        assert!(
            lines
                .iter()
                .all(|l| l.name == "postgresql" && l.tag("server") == Some(want_tag)),
            "{what}: {lines:#?}"
        );
        // One metric per pg_stat_database row, plus the background writer's.
        assert_eq!(lines.len(), db_before.len() + 1, "{what}: {lines:#?}");
        // The app database: no one touches it, so every column is equal.
        let app_line = one(&lines, "postgresql", &[("db", "app")]);
        assert_same(app_line, &app, &[]);
        assert_types(&pg, "pg_stat_database", app_line);
        // The rest: sonde's value lies between psql's readings before and after.
        for (b, a) in db_before.iter().zip(&db_after) {
            let db = b["datname"].as_str().unwrap_or("postgres_global");
            let rows: Vec<&Line> = lines
                .iter()
                .filter(|l| l.tag("db") == Some(db) && l.fields.contains_key("datid"))
                .collect();
            assert_eq!(rows.len(), 1, "{what}: {db}");
            let line = rows[0];
            if db == "postgres_global" {
                assert_eq!(line.int("datid"), 0, "{what}");
                assert!(!line.fields.contains_key("datname"), "{what}");
            } else {
                assert_eq!(line.raw("datname"), format!("\"{db}\""));
            }
            assert_between(line, b, a);
        }
        let bg = lines
            .iter()
            .find(|l| l.fields.contains_key("checkpoints_timed"))
            .unwrap_or_else(|| panic!("{what}: no background writer metric"));
        assert_eq!(bg.tag("db"), Some("postgres"));
        assert_between(bg, &bg_before, &bg_after);
        assert_types(&pg, "pg_stat_bgwriter", bg);
        let want: Vec<_> = bg_before.keys().filter(|k| *k != "stats_reset").collect();
        assert_eq!(bg.fields.keys().collect::<Vec<_>>(), want, "{what}");
        assert!(!bg.raw("checkpoint_write_time").contains('i'));
    }

    // The TLS-only role cannot log in without TLS: the case above really used TLS.
    let (lines, stderr) = test_run(
        &dir,
        &format!(
            "[[inputs.postgresql]]\n  address = \"host=127.0.0.1 port={port} user=tls_only password={PG_PASSWORD} sslmode=disable\"\n"
        ),
    );
    assert!(lines.is_empty());
    assert!(stderr.contains("no pg_hba.conf entry"), "{stderr}");
    // A certificate from another CA is refused by verify-full.
    let (lines, stderr) = test_run(
        &dir,
        &format!(
            "[[inputs.postgresql]]\n  address = \"host=127.0.0.1 port={port} user=tls_only password={PG_PASSWORD} sslmode=verify-full sslrootcert={}\"\n",
            pg.certs.other_ca.display()
        ),
    );
    assert!(lines.is_empty());
    assert!(stderr.contains("certificate"), "{stderr}");
    // verify-ca checks the chain only; verify-full also the name (here one the certificate
    // does not have, with hostaddr giving the address).
    let named = |mode: &str| {
        format!(
            "[[inputs.postgresql]]\n  address = \"host=db.invalid hostaddr=127.0.0.1 port={port} user=tls_only password={PG_PASSWORD} dbname=postgres sslmode={mode} sslrootcert={ca}\"\n"
        )
    };
    let (lines, stderr) = test_run(&dir, &named("verify-ca"));
    assert!(!lines.is_empty(), "{stderr}");
    let (lines, stderr) = test_run(&dir, &named("verify-full"));
    assert!(lines.is_empty());
    assert!(stderr.contains("certificate"), "{stderr}");
    // A wrong password: an error that names the server, not the password.
    let (lines, stderr) = test_run(
        &dir,
        &format!(
            "[[inputs.postgresql]]\n  address = \"host=127.0.0.1 port={port} user=postgres password=wrong-{PG_PASSWORD} sslmode=disable\"\n"
        ),
    );
    assert!(lines.is_empty());
    assert!(
        stderr.contains("password authentication failed"),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("port={port}")), "{stderr}");

    // databases / ignored_databases, with a name that needs quoting.
    pg.psql("postgres", "CREATE DATABASE \"o'brien\"");
    let addr = format!("host={} port={port} user=postgres", sock.display());
    let (lines, _) = test_run(
        &dir,
        &format!(
            "[[inputs.postgresql]]\n  address = \"{addr}\"\n  databases = [\"o'brien\", \"app\"]\n"
        ),
    );
    let mut dbs: Vec<_> = lines.iter().filter_map(|l| l.tag("db")).collect();
    dbs.sort();
    assert_eq!(dbs, ["app", "o'brien", "postgres"]); // postgres: the background writer
    let (lines, _) = test_run(
        &dir,
        &format!(
            "[[inputs.postgresql]]\n  address = \"{addr}\"\n  ignored_databases = [\"o'brien\", \"template0\"]\n  outputaddress = \"db01\"\n"
        ),
    );
    assert!(lines.iter().all(|l| l.tag("server") == Some("db01")));
    assert!(
        !lines
            .iter()
            .any(|l| matches!(l.tag("db"), Some("o'brien" | "template0")))
    );
    assert!(lines.iter().any(|l| l.tag("db") == Some("template1")));
}

#[test]
fn postgresql_outage_is_counted_and_gathering_recovers() {
    let mut pg = Postgres::start();
    let dir = TempDir::new("pg-outage");
    let out = dir.join("out.lp");
    let cfg = dir.write(
        "sonde.toml",
        &format!(
            r#"[agent]
  omit_hostname = true
  interval = "500ms"
  round_interval = false
  flush_interval = "200ms"
[[inputs.postgresql]]
  address = "postgres://postgres:{PG_PASSWORD}@127.0.0.1:{}/postgres?sslmode=prefer&connect_timeout=2"
  databases = ["app"]
[[inputs.internal]]
  collect_memstats = false
[[outputs.file]]
  files = ["{}"]
"#,
            pg.port,
            out.display()
        ),
    );
    let agent = Agent::start(&dir, &cfg);
    let count = || {
        std::fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("postgresql,db=app,"))
            .count()
    };
    assert!(
        wait_until(Duration::from_secs(20), || count() >= 2),
        "no metrics; log:\n{}",
        agent.log()
    );
    // The connection is kept: the server saw one sonde session, however many gathers.
    let sessions = pg.psql(
        "postgres",
        "SELECT count(*) FROM pg_stat_activity WHERE client_addr = '127.0.0.1'",
    );
    assert_eq!(sessions.trim(), "1");
    pg.stop();
    agent.wait_log("gather failed again", 2, Duration::from_secs(20));
    let before = count();
    pg.run();
    assert!(
        wait_until(Duration::from_secs(20), || count() >= before + 2),
        "metrics did not come back; log:\n{}",
        agent.log()
    );
    // The errors were counted in the agent's own metrics.
    let errors = || {
        parse(&std::fs::read_to_string(&out).unwrap_or_default())
            .iter()
            .filter(|l| l.name == "internal_gather" && l.tag("input") == Some("postgresql"))
            .map(|l| l.int("errors"))
            .max()
            .unwrap_or(0)
    };
    assert!(
        wait_until(Duration::from_secs(10), || errors() >= 3),
        "errors not counted: {}",
        errors()
    );
    agent.wait_log("gathering again after", 1, Duration::from_secs(10));
    let log = agent.log();
    // The outage is logged once as an error; the repeats only at debug level.
    let logged_errors = log
        .lines()
        .filter(|l| l.contains("ERROR") && l.contains("inputs.postgresql"))
        .count();
    assert_eq!(logged_errors, 1, "{log}");
    assert!(
        log.contains("connecting to connect_timeout=2 dbname=postgres host=127.0.0.1 port="),
        "{log}"
    );
    assert!(
        !log.contains(PG_PASSWORD),
        "the password is in the log:\n{log}"
    );
    assert!(!std::fs::read_to_string(&out).unwrap().contains(PG_PASSWORD));
}

/// `key: value` lines of a `?auto` page.
fn auto_page(addr: &str, path: &str) -> BTreeMap<String, String> {
    let (status, body) = request(addr, "GET", path, &[], b"").unwrap();
    assert_eq!(status, 200, "{body}");
    body.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.replace(' ', ""), v.trim().to_string()))
        .collect()
}

#[test]
fn apache_fields_match_server_status() {
    let apache = Apache::start();
    let addr = apache.addr();
    let dir = TempDir::new("apache-e2e");
    // A fresh Apache leaves out ReqPerSec and BytesPerSec until it has been up a second, and
    // CPULoad until its processes have used CPU: wait for them, so that sonde's page and the
    // one read after it have the same lines.
    let mut before = BTreeMap::new();
    let complete = wait_until(Duration::from_secs(30), || {
        before = auto_page(&addr, "/server-status?auto");
        ["ReqPerSec", "BytesPerSec", "CPULoad"]
            .iter()
            .all(|k| before.contains_key(*k))
    });
    assert!(complete, "status page never complete: {before:?}");
    let accesses: u64 = before["TotalAccesses"].parse().unwrap();
    const N: u64 = 7;
    for _ in 0..N {
        let (status, body) = request(&addr, "GET", "/hello.txt", &[], b"").unwrap();
        assert_eq!((status, body.as_str()), (200, "hello\n"));
    }
    let url = format!("http://{addr}/server-status?auto");
    let (lines, stderr) = test_run(&dir, &format!("[[inputs.apache]]\n  urls = [\"{url}\"]\n"));
    let after = auto_page(&addr, "/server-status?auto");
    assert!(!stderr.contains("gather"), "{stderr}");
    assert_eq!(lines.len(), 1, "{lines:#?}");
    let m = &lines[0];
    assert_eq!(m.name, "apache");
    assert_eq!(m.tag("server"), Some("127.0.0.1"));
    assert_eq!(m.tag("port"), Some(apache.port.to_string().as_str()));
    // Our first status request, then N requests: exactly that many more accesses; and the
    // status request after sonde's sees sonde's as one more.
    assert_eq!(m.float("TotalAccesses"), (accesses + 1 + N) as f64);
    assert_eq!(after["TotalAccesses"], (accesses + 2 + N).to_string());
    // Every numeric line of the page is a float field, under its name without spaces.
    for (k, v) in &after {
        if v.parse::<f64>().is_ok() {
            assert!(m.fields.contains_key(k), "{k} missing: {m:?}");
            m.float(k);
        }
    }
    for k in [
        "DurationPerReq",
        "Processes",
        "Stopping",
        "ServerUptimeSeconds",
    ] {
        assert!(m.fields.contains_key(k), "{k} missing");
    }
    // Values that do not move between two requests are equal.
    for k in ["ServerUptimeSeconds", "Processes", "Total Duration"] {
        let k = k.replace(' ', "");
        let diff = (m.float(&k) - after[&k].parse::<f64>().unwrap()).abs();
        assert!(
            diff <= 1.0 + m.float(&k) * 0.5,
            "{k}: {} vs {}",
            m.float(&k),
            after[&k]
        );
    }
    // The scoreboard: the eleven counts sum to its length, the slot count (2 × 5).
    let scb = [
        "waiting",
        "starting",
        "reading",
        "sending",
        "keepalive",
        "dnslookup",
        "closing",
        "logging",
        "finishing",
        "idle_cleanup",
        "open",
    ];
    let sum: f64 = scb.iter().map(|s| m.float(&format!("scboard_{s}"))).sum();
    assert_eq!(sum, 10.0);
    assert_eq!(after["Scoreboard"].len(), 10);
    // sonde's own request was being served: one slot sending.
    assert!(m.float("scboard_sending") >= 1.0);

    // Basic auth: the right password, then a wrong one (a clear error, no metric, no
    // password in the output).
    let private = format!("http://{addr}/private-status?auto");
    let (lines, stderr) = test_run(
        &dir,
        &format!(
            "[[inputs.apache]]\n  urls = [\"{private}\"]\n  username = \"monitor\"\n  password = \"{APACHE_PASSWORD}\"\n"
        ),
    );
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].float("TotalAccesses") > (accesses + N) as f64);
    let (lines, stderr) = test_run(
        &dir,
        &format!(
            "[[inputs.apache]]\n  urls = [\"{private}\", \"{url}\"]\n  username = \"monitor\"\n  password = \"wrong-{APACHE_PASSWORD}\"\n"
        ),
    );
    assert!(stderr.contains("401"), "{stderr}");
    assert!(!stderr.contains(APACHE_PASSWORD), "{stderr}");
    // The other URL still reports.
    assert_eq!(lines.len(), 1, "{lines:#?}");
    // HTTPS, checked against the test CA; mod_ssl adds its TLS session cache counters.
    let https = format!("https://127.0.0.1:{}/server-status?auto", apache.https_port);
    let (lines, stderr) = test_run(
        &dir,
        &format!(
            "[[inputs.apache]]\n  urls = [\"{https}\"]\n  tls_ca = \"{}\"\n",
            apache.certs.ca.display()
        ),
    );
    assert_eq!(lines.len(), 1, "{stderr}");
    let m = &lines[0];
    assert_eq!(m.tag("port"), Some(apache.https_port.to_string().as_str()));
    for k in [
        "CacheSharedMemory",
        "CacheCurrentEntries",
        "CacheStoreCount",
        "CacheRetrieveMissCount",
    ] {
        m.float(k);
    }
    assert!(m.float("CacheSharedMemory") > 0.0);
    // Another CA: refused.
    let (lines, stderr) = test_run(
        &dir,
        &format!(
            "[[inputs.apache]]\n  urls = [\"{https}\"]\n  tls_ca = \"{}\"\n",
            apache.certs.other_ca.display()
        ),
    );
    assert!(lines.is_empty());
    assert!(stderr.contains("certificate"), "{stderr}");
    // A page that is not mod_status output is an error.
    let (lines, stderr) = test_run(
        &dir,
        &format!("[[inputs.apache]]\n  urls = [\"http://{addr}/hello.txt\"]\n"),
    );
    assert!(lines.is_empty());
    assert!(stderr.contains("not mod_status"), "{stderr}");
}

#[test]
fn postgresql_extensible_queries_fail_alone() {
    let pg = Postgres::start();
    let port = pg.port;
    pg.psql(
        "app",
        "CREATE TABLE jobs (queue text, state text, n int, seen timestamptz, note text); \
         INSERT INTO jobs VALUES ('mail', 'done', 3, '2026-01-02 03:04:05+00', NULL), \
                                 ('sms', 'failed', 1, '2026-01-02 03:04:06+00', 'x');",
    );
    let dir = TempDir::new("pgext-e2e");
    let script = dir.write(
        "q.sql",
        "SELECT 42::int8 AS answer, 'from-file'::text AS origin",
    );
    let (lines, stderr) = test_run(
        &dir,
        &format!(
            r#"[[inputs.postgresql_extensible]]
  address = "host={sock} port={port} user=postgres dbname=app"
  databases = ["app"]
  [[inputs.postgresql_extensible.query]]
    sqlquery = "SELECT queue, state, n, seen, note FROM jobs"
    measurement = "jobs"
    tagvalue = "queue,state"
    timestamp = "seen"
  [[inputs.postgresql_extensible.query]]
    sqlquery = "SELECT 1 AS never"
    measurement = "too_old"
    max_version = 900
  [[inputs.postgresql_extensible.query]]
    sqlquery = "SELECT 1 AS never"
    measurement = "too_new"
    minversion = 9900
  [[inputs.postgresql_extensible.query]]
    sqlquery = "SELECT * FROM no_such_table"
    measurement = "broken"
  [[inputs.postgresql_extensible.query]]
    script = "{script}"
    measurement = "scripted"
  [[inputs.postgresql_extensible.query]]
    sqlquery = "SELECT count(*) AS total FROM jobs"
"#,
            sock = pg.socket_dir().display(),
            script = script.display()
        ),
    );
    let server = format!(
        "host={} port={port} user=postgres dbname=app",
        pg.socket_dir().display()
    );
    // The broken query fails alone, with the server's message.
    assert!(stderr.contains("no_such_table"), "{stderr}");
    assert!(stderr.contains("does not exist"), "{stderr}");
    let mail = one(&lines, "jobs", &[("queue", "mail")]);
    assert_eq!(mail.tag("state"), Some("done"));
    assert_eq!(mail.tag("db"), Some("app"));
    assert_eq!(mail.tag("server"), Some(server.as_str()));
    assert_eq!(mail.int("n"), 3);
    assert!(!mail.fields.contains_key("note"), "NULL must be skipped");
    assert!(!mail.fields.contains_key("seen"));
    assert_eq!(mail.time, 1_767_323_045_000_000_000);
    let sms = one(&lines, "jobs", &[("queue", "sms")]);
    assert_eq!(sms.raw("note"), "\"x\"");
    assert_eq!(sms.time, 1_767_323_046_000_000_000);
    assert!(
        !lines
            .iter()
            .any(|l| l.name.starts_with("too_") || l.name == "broken")
    );
    let s = one(&lines, "scripted", &[]);
    assert_eq!(s.int("answer"), 42);
    assert_eq!(s.raw("origin"), "\"from-file\"");
    let total = one(&lines, "postgresql", &[]);
    assert_eq!(total.int("total"), 2);
    assert_eq!(total.tag("db"), Some("app"));
    assert!(
        stderr.contains("deprecated"),
        "databases must warn: {stderr}"
    );
}

#[test]
fn postgresql_extensible_builtin_collections() {
    let pg = Postgres::start();
    let port = pg.port;
    let dir = TempDir::new("pgext-builtin");
    let (lines, stderr) = test_run(
        &dir,
        &format!(
            r#"[[inputs.postgresql_extensible]]
  address = "postgres://postgres:{PG_PASSWORD}@127.0.0.1:{port}/postgres?sslmode=disable"
  database_size = true
  locks = true
  activity = true
  replication = true
  settings = ["max_connections", "shared_buffers", "work_mem"]
"#
        ),
    );
    assert!(!stderr.contains("gather"), "{stderr}");
    let sizes: BTreeMap<String, i64> = pg
        .psql(
            "postgres",
            "SELECT datname, pg_database_size(datname) FROM pg_database WHERE datallowconn",
        )
        .lines()
        .map(|l| {
            let (d, s) = l.split_once('|').unwrap();
            (d.to_string(), s.parse().unwrap())
        })
        .collect();
    for (db, size) in &sizes {
        let l = one(&lines, "postgresql_database", &[("db", db)]);
        assert_eq!(l.int("size_bytes"), *size, "{db}");
    }
    // Our own session holds an AccessShareLock (at least on the relations it reads).
    // Our own query holds an AccessShareLock on the pg_locks view, in the postgres database;
    // every database has a count for every mode, zero when none is held.
    let locks = one(
        &lines,
        "postgresql_locks",
        &[("db", "postgres"), ("mode", "AccessShareLock")],
    );
    assert!(locks.int("count") >= 1);
    let none = one(
        &lines,
        "postgresql_locks",
        &[("db", "template1"), ("mode", "AccessExclusiveLock")],
    );
    assert_eq!(none.int("count"), 0);
    // sonde's own session is the active one.
    let active = one(
        &lines,
        "postgresql_activity",
        &[("db", "postgres"), ("state", "active")],
    );
    assert_eq!(active.int("count"), 1);
    assert!(active.int("count") >= 1);
    active.float("max_tx_duration_seconds");
    let repl = one(&lines, "postgresql_replication", &[("role", "primary")]);
    assert_eq!(repl.raw("is_in_recovery"), "false");
    assert_eq!(repl.int("replicas"), 0);
    let mc = one(
        &lines,
        "postgresql_settings",
        &[("name", "max_connections")],
    );
    assert_eq!(
        mc.float("value"),
        pg.psql("postgres", "SHOW max_connections")
            .trim()
            .parse::<f64>()
            .unwrap()
    );
    let sb = one(&lines, "postgresql_settings", &[("name", "shared_buffers")]);
    assert_eq!(sb.tag("unit"), Some("8kB"));
}

#[test]
fn a_slow_query_is_cut_off_by_the_gather_timeout_and_the_next_gathers_recover() {
    let pg = Postgres::start();
    pg.psql(
        "app",
        "CREATE TABLE slow (on_ boolean); INSERT INTO slow VALUES (true)",
    );
    let dir = TempDir::new("pg-slow");
    let out = dir.join("out.lp");
    // The gather timeout is the interval (1s); the query sleeps 3s while `slow` has a row.
    let cfg = dir.write(
        "sonde.toml",
        &format!(
            r#"[agent]
  omit_hostname = true
  interval = "1s"
  round_interval = false
  flush_interval = "200ms"
[[inputs.postgresql_extensible]]
  address = "host={} port={} user=postgres dbname=app"
  [[inputs.postgresql_extensible.query]]
    sqlquery = "SELECT 1 AS ok FROM (SELECT pg_sleep(CASE WHEN EXISTS (SELECT 1 FROM slow) THEN 3 ELSE 0 END)) s"
    measurement = "probe"
[[outputs.file]]
  files = ["{}"]
"#,
            pg.socket_dir().display(),
            pg.port,
            out.display()
        ),
    );
    let agent = Agent::start(&dir, &cfg);
    agent.wait_log("gather timed out", 2, Duration::from_secs(20));
    assert!(!out.exists() || !std::fs::read_to_string(&out).unwrap().contains("probe"));
    pg.psql("app", "DELETE FROM slow");
    let ok = wait_until(Duration::from_secs(20), || {
        std::fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("probe,"))
            .count()
            >= 2
    });
    assert!(ok, "gathers did not recover; log:\n{}", agent.log());
    // Each cut-off gather left its connection in an unknown state: it was replaced, so at most
    // the one current sonde session remains once the old sleeps have ended.
    std::thread::sleep(Duration::from_secs(3));
    let sessions = pg.psql(
        "postgres",
        "SELECT count(*) FROM pg_stat_activity WHERE datname = 'app' AND backend_type = 'client backend'",
    );
    assert_eq!(sessions.trim(), "1", "{}", agent.log());
}

#[test]
fn connections_are_kept_renewed_after_max_lifetime_or_closed_with_max_idle_zero() {
    let pg = Postgres::start();
    let dir = TempDir::new("pg-lifetime");
    let out = dir.join("out.lp");
    let addr = format!(
        "host={} port={} user=postgres dbname=postgres",
        pg.socket_dir().display(),
        pg.port
    );
    let input = |name: &str, extra: &str| {
        format!(
            "[[inputs.postgresql_extensible]]\n  address = \"{addr}\"\n  {extra}\n  [[inputs.postgresql_extensible.query]]\n    sqlquery = \"SELECT pg_backend_pid() AS pid\"\n    measurement = \"{name}\"\n"
        )
    };
    let cfg = dir.write(
        "sonde.toml",
        &format!(
            "[agent]\n  omit_hostname = true\n  interval = \"250ms\"\n  round_interval = false\n  flush_interval = \"100ms\"\n{}{}{}[[outputs.file]]\n  files = [\"{}\"]\n",
            input("kept", ""),
            input("renewed", "max_lifetime = \"1s\""),
            input("closed", "max_idle = 0"),
            out.display()
        ),
    );
    let agent = Agent::start(&dir, &cfg);
    let pids = |name: &str| -> Vec<i64> {
        parse(&std::fs::read_to_string(&out).unwrap_or_default())
            .iter()
            .filter(|l| l.name == name)
            .map(|l| l.int("pid"))
            .collect()
    };
    assert!(
        wait_until(Duration::from_secs(20), || pids("kept").len() >= 12),
        "{}",
        agent.log()
    );
    let distinct = |v: Vec<i64>| {
        let mut v = v;
        v.sort();
        v.dedup();
        v.len()
    };
    let kept = pids("kept");
    assert_eq!(distinct(kept.clone()), 1, "{kept:?}");
    let renewed = pids("renewed");
    let n = distinct(renewed.clone());
    assert!(n >= 2 && n < renewed.len(), "{renewed:?}");
    let closed = pids("closed");
    assert_eq!(distinct(closed.clone()), closed.len(), "{closed:?}");
}
