//! `inputs.postgresql_extensible`: the metrics of your own SQL queries, as Telegraf's plugin
//! makes them (tags from chosen columns, an optional timestamp column, version guards), each
//! query failing on its own; plus built-in collections (database size, locks, activity,
//! replication, settings) that make postgres_exporter unnecessary.

use async_trait::async_trait;
use serde::Deserialize;

use crate::common::postgres::{
    Connection, Outage, PgValue, connection, input_id, quote_literal, row_values,
};
use crate::config_types::Duration;
use crate::model::{Metric, ValueType};
use crate::plugin::{Accumulator, BuildContext, Input, InputPlugin};
use crate::registry::{BuildError, ConfigError, Format, InputSpec, parse_config};

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Config {
    address: String,
    outputaddress: String,
    max_lifetime: Duration,
    max_idle: i64,
    max_open: i64,
    prepared_statements: bool,
    /// Deprecated (Telegraf 1.22.4): only used by queries with `withdbname`.
    databases: Vec<String>,
    query: Vec<QueryConfig>,
    database_size: bool,
    locks: bool,
    activity: bool,
    replication: bool,
    settings: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            address: String::new(),
            outputaddress: String::new(),
            max_lifetime: Duration::default(),
            max_idle: 1,
            max_open: 1,
            prepared_statements: true,
            databases: Vec::new(),
            query: Vec::new(),
            database_size: false,
            locks: false,
            activity: false,
            replication: false,
            settings: Vec::new(),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct QueryConfig {
    sqlquery: String,
    script: String,
    measurement: String,
    tagvalue: String,
    timestamp: String,
    #[serde(alias = "min_version")]
    minversion: i64,
    #[serde(alias = "max_version")]
    maxversion: i64,
    /// Deprecated (Telegraf 1.28): `minversion`.
    version: i64,
    /// Deprecated (Telegraf 1.22.4): put the database condition in the query.
    withdbname: bool,
}

/// One query, ready to run.
#[derive(Debug, Clone, PartialEq)]
struct Query {
    sql: String,
    measurement: String,
    tags: Vec<String>,
    timestamp: String,
    /// Runs when `min <= version < max` (`max` 0: no upper bound); versions as
    /// `server_version_num / 100` (15.4 → 1500).
    min: i64,
    max: i64,
}

impl Query {
    fn runs_on(&self, version: i64) -> bool {
        self.min <= version && (self.max == 0 || self.max > version)
    }
}

/// Columns never reported (as in Telegraf).
const IGNORED_COLUMNS: &[&str] = &["stats_reset"];

/// The built-in collections, as queries (see the README for what they report).
fn builtin_queries(cfg: &Config) -> Vec<Query> {
    let q = |measurement: &str, tags: &[&str], min: i64, sql: String| Query {
        sql,
        measurement: measurement.into(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        timestamp: String::new(),
        min,
        max: 0,
    };
    let mut out = Vec::new();
    if cfg.database_size {
        out.push(q(
            "postgresql_database",
            &["db"],
            0,
            "SELECT datname AS db, pg_database_size(oid) AS size_bytes \
             FROM pg_database WHERE datallowconn"
                .into(),
        ));
    }
    if cfg.locks {
        out.push(q(
            "postgresql_locks",
            &["db", "mode"],
            0,
            "SELECT d.datname AS db, m.mode, count(l.mode) AS count \
             FROM pg_database d CROSS JOIN (VALUES ('AccessShareLock'), ('RowShareLock'), \
             ('RowExclusiveLock'), ('ShareUpdateExclusiveLock'), ('ShareLock'), \
             ('ShareRowExclusiveLock'), ('ExclusiveLock'), ('AccessExclusiveLock'), \
             ('SIReadLock')) AS m(mode) \
             LEFT JOIN pg_locks l ON l.database = d.oid AND l.mode = m.mode \
             WHERE d.datallowconn GROUP BY d.datname, m.mode"
                .into(),
        ));
    }
    if cfg.activity {
        out.push(q(
            "postgresql_activity",
            &["db", "state"],
            1000,
            "SELECT d.datname AS db, s.state, count(a.pid) AS count, \
             COALESCE(max(EXTRACT(EPOCH FROM clock_timestamp() - a.xact_start)), 0)::float8 \
             AS max_tx_duration_seconds \
             FROM pg_database d CROSS JOIN (VALUES ('active'), ('idle'), \
             ('idle in transaction'), ('idle in transaction (aborted)'), \
             ('fastpath function call'), ('disabled')) AS s(state) \
             LEFT JOIN pg_stat_activity a ON a.datid = d.oid AND a.state = s.state \
             AND a.backend_type = 'client backend' \
             WHERE d.datallowconn GROUP BY d.datname, s.state"
                .into(),
        ));
    }
    if cfg.replication {
        out.push(q(
            "postgresql_replication",
            &["role"],
            1000,
            "SELECT CASE WHEN pg_is_in_recovery() THEN 'replica' ELSE 'primary' END AS role, \
             pg_is_in_recovery() AS is_in_recovery, \
             (SELECT count(*) FROM pg_stat_replication) AS replicas, \
             CASE WHEN pg_is_in_recovery() THEN \
             COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0)::float8 \
             END AS lag_seconds"
                .into(),
        ));
        out.push(q(
            "postgresql_replication_replica",
            &["application_name", "client_addr", "state", "sync_state"],
            1000,
            "SELECT application_name, COALESCE(host(client_addr), 'local') AS client_addr, \
             state, sync_state, \
             EXTRACT(EPOCH FROM write_lag)::float8 AS write_lag_seconds, \
             EXTRACT(EPOCH FROM flush_lag)::float8 AS flush_lag_seconds, \
             EXTRACT(EPOCH FROM replay_lag)::float8 AS replay_lag_seconds, \
             CASE WHEN pg_is_in_recovery() THEN NULL \
             ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::int8 END AS replay_lag_bytes \
             FROM pg_stat_replication"
                .into(),
        ));
    }
    if !cfg.settings.is_empty() {
        let names: Vec<String> = cfg.settings.iter().map(|s| quote_literal(s)).collect();
        out.push(q(
            "postgresql_settings",
            &["name", "unit"],
            0,
            format!(
                "SELECT name, unit, \
                 CASE WHEN vartype IN ('integer', 'real') THEN setting::float8 \
                 WHEN vartype = 'bool' THEN (setting = 'on')::int::float8 END AS value, \
                 CASE WHEN vartype IN ('string', 'enum') THEN setting END AS setting \
                 FROM pg_settings WHERE name IN ({})",
                names.join(", ")
            ),
        ));
    }
    out
}

pub struct PostgresqlExtensible {
    conn: Connection,
    server: String,
    /// The database connected to: the `db` tag of rows without a `datname` column.
    database: String,
    queries: Vec<Query>,
    keep_open: bool,
    /// The name log lines carry.
    id: String,
    outage: Outage,
}

impl PostgresqlExtensible {
    fn add_rows(&self, acc: &mut Accumulator, q: &Query, rows: &[tokio_postgres::Row]) {
        let mut bad = Vec::new();
        for row in rows {
            let mut m =
                Metric::new(q.measurement.as_str(), acc.time()).with_kind(ValueType::Untyped);
            m.add_tag("server", self.server.as_str());
            let mut db = self.database.clone();
            for (col, v) in row_values(row, &mut bad) {
                let Some(v) = v else { continue };
                if IGNORED_COLUMNS.contains(&col.as_str()) {
                    continue;
                }
                if col == "datname"
                    && let PgValue::Text(name) = &v
                {
                    db = name.clone();
                }
                if !q.timestamp.is_empty() && col == q.timestamp {
                    if let PgValue::Time(ns) = v {
                        m.time = ns;
                    }
                    continue;
                }
                if q.tags.contains(&col) {
                    if let Some(t) = v.tag().filter(|t| !t.is_empty()) {
                        m.add_tag(col, t);
                    }
                    continue;
                }
                if let Some(f) = v.field() {
                    m.add_field(col, f);
                }
            }
            if m.tag("db").is_none() {
                m.add_tag("db", db);
            }
            acc.add(m);
        }
        if let Some(first) = bad.first() {
            acc.add_error(format!(
                "{}: query for {}: {} value(s) not decoded, first: {first}",
                self.server,
                q.measurement,
                bad.len()
            ));
        }
    }
}

#[async_trait]
impl Input for PostgresqlExtensible {
    async fn gather(&mut self, acc: &mut Accumulator) -> anyhow::Result<()> {
        let res = async {
            let version = self
                .conn
                .ensure()
                .await
                .map_err(|e| anyhow::anyhow!("connecting to {}: {e}", self.server))?;
            let version = i64::from(version) / 100;
            for i in 0..self.queries.len() {
                if !self.queries[i].runs_on(version) {
                    continue;
                }
                let sql = self.queries[i].sql.clone();
                match self.conn.query(&sql).await {
                    Ok(rows) => self.add_rows(acc, &self.queries[i], &rows),
                    Err(e) => {
                        acc.add_error(format!(
                            "{}: query {} ({}): {e}",
                            self.server,
                            i + 1,
                            self.queries[i].measurement
                        ));
                        if !self.conn.is_open() {
                            anyhow::bail!("{}: connection lost: {e}", self.server);
                        }
                    }
                }
            }
            Ok(())
        }
        .await;
        if !self.keep_open {
            self.conn.close();
        }
        match res {
            Ok(()) => {
                self.outage.ok(&self.id, &self.server);
                Ok(())
            }
            Err(e) => Err(self.outage.failed(e)),
        }
    }
}

fn bad(path: Vec<String>, message: String) -> BuildError {
    BuildError::Config(ConfigError { path, message })
}

/// The configured queries (with `script` read and deprecated options applied), then the
/// built-in collections.
fn make_queries(cfg: &Config, warnings: &mut Vec<String>) -> Result<Vec<Query>, BuildError> {
    let mut queries = Vec::new();
    for (i, qc) in cfg.query.iter().enumerate() {
        let path = |k: &str| vec!["query".to_string(), i.to_string(), k.to_string()];
        let mut sql = if !qc.sqlquery.is_empty() {
            qc.sqlquery.clone()
        } else if !qc.script.is_empty() {
            std::fs::read_to_string(&qc.script)
                .map_err(|e| bad(path("script"), format!("reading {}: {e}", qc.script)))?
        } else {
            return Err(bad(path("sqlquery"), "sqlquery or script is needed".into()));
        };
        if qc.version != 0 {
            warnings.push(format!(
                "query {}: version is deprecated (Telegraf 1.28): use minversion",
                i + 1
            ));
        }
        if qc.withdbname {
            warnings.push(format!(
                "query {}: withdbname is deprecated (Telegraf 1.22.4): put the database condition in the query",
                i + 1
            ));
            if cfg.databases.is_empty() {
                sql.push_str(" is not null");
            } else {
                let names: Vec<String> = cfg.databases.iter().map(|d| quote_literal(d)).collect();
                sql.push_str(&format!(" IN ({})", names.join(", ")));
            }
        }
        queries.push(Query {
            sql,
            measurement: if qc.measurement.is_empty() {
                "postgresql".into()
            } else {
                qc.measurement.clone()
            },
            tags: qc
                .tagvalue
                .split(',')
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
                .collect(),
            timestamp: qc.timestamp.clone(),
            min: if qc.minversion == 0 {
                qc.version
            } else {
                qc.minversion
            },
            max: qc.maxversion,
        });
    }
    queries.extend(builtin_queries(cfg));
    Ok(queries)
}

fn build(table: toml::Table, ctx: &BuildContext) -> Result<InputPlugin, BuildError> {
    let cfg: Config = parse_config(table)?;
    let id = input_id(&ctx.id, "inputs.postgresql_extensible");
    let mut warnings = Vec::new();
    let (addr, conn) = connection(
        &cfg.address,
        cfg.prepared_statements,
        cfg.max_lifetime.get(),
        cfg.max_idle,
        cfg.max_open,
        &mut warnings,
    )
    .map_err(|(key, e)| bad(vec![key.into()], e))?;
    if !cfg.databases.is_empty() {
        warnings.push(
            "databases is deprecated (Telegraf 1.22.4): put the database condition in the query; it only applies to queries with withdbname"
                .into(),
        );
    }
    let queries = make_queries(&cfg, &mut warnings)?;
    if queries.is_empty() {
        warnings.push(
            "no query and no built-in collection is enabled: nothing will be reported".into(),
        );
    }
    let server = if cfg.outputaddress.is_empty() {
        addr.server_tag()
    } else {
        cfg.outputaddress
    };
    // The agent captures warnings raised while building: shown at startup and by `config check`.
    for w in &warnings {
        tracing::warn!(input = %id, "{w}");
    }
    Ok(InputPlugin::Polled(Box::new(PostgresqlExtensible {
        conn,
        server,
        database: addr.database(),
        queries,
        keep_open: cfg.max_idle != 0,
        id,
        outage: Outage::default(),
    })))
}

pub const SPEC: InputSpec = InputSpec {
    name: "postgresql_extensible",
    description: "Report the results of your own SQL queries, and built-in PostgreSQL collections",
    sample: include_str!("sample.toml"),
    format: Format::None,
    build,
};

#[cfg(test)]
mod tests {
    use super::*;

    fn queries(text: &str) -> Vec<Query> {
        let cfg: Config = parse_config(toml::from_str(text).unwrap()).unwrap();
        make_queries(&cfg, &mut Vec::new()).unwrap()
    }

    #[test]
    fn version_guards_follow_telegraf() {
        let q = |min, max| Query {
            sql: String::new(),
            measurement: String::new(),
            tags: vec![],
            timestamp: String::new(),
            min,
            max,
        };
        assert!(q(0, 0).runs_on(1500));
        assert!(q(1500, 0).runs_on(1500));
        assert!(!q(1501, 0).runs_on(1500));
        assert!(!q(0, 1500).runs_on(1500)); // maxversion is exclusive
        assert!(q(0, 1700).runs_on(1500));
        // min_version and the deprecated version are other names for minversion.
        let qs = queries(
            "[[query]]\nsqlquery = 'a'\nmin_version = 1200\nmax_version = 1700\n[[query]]\nsqlquery = 'b'\nversion = 901",
        );
        assert_eq!((qs[0].min, qs[0].max), (1200, 1700));
        assert_eq!(qs[1].min, 901);
    }

    #[test]
    fn builtins_are_off_by_default_and_each_one_switch() {
        assert!(queries("").is_empty());
        let qs = queries("database_size = true\nsettings = ['work_mem', \"it's\"]");
        let names: Vec<_> = qs.iter().map(|q| q.measurement.as_str()).collect();
        assert_eq!(names, ["postgresql_database", "postgresql_settings"]);
        assert!(
            qs[1].sql.contains("IN ('work_mem', 'it''s')"),
            "{}",
            qs[1].sql
        );
        let qs = queries("locks = true\nactivity = true\nreplication = true");
        let names: Vec<_> = qs.iter().map(|q| q.measurement.as_str()).collect();
        assert_eq!(
            names,
            [
                "postgresql_locks",
                "postgresql_activity",
                "postgresql_replication",
                "postgresql_replication_replica"
            ]
        );
    }

    #[test]
    fn deprecated_withdbname_appends_the_databases() {
        let mut warnings = Vec::new();
        let cfg: Config = parse_config(
            toml::from_str(
                "databases = ['app', \"o'brien\"]\n[[query]]\nsqlquery = 'SELECT * FROM pg_stat_database WHERE datname'\nwithdbname = true\nversion = 901",
            )
            .unwrap(),
        )
        .unwrap();
        let qs = make_queries(&cfg, &mut warnings).unwrap();
        assert_eq!(
            qs[0].sql,
            "SELECT * FROM pg_stat_database WHERE datname IN ('app', 'o''brien')"
        );
        assert_eq!(qs[0].min, 901);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings.iter().all(|w| w.contains("deprecated")));
        let cfg: Config = parse_config(
            toml::from_str(
                "[[query]]\nsqlquery = 'SELECT 1 WHERE current_database()'\nwithdbname = true",
            )
            .unwrap(),
        )
        .unwrap();
        let qs = make_queries(&cfg, &mut Vec::new()).unwrap();
        assert_eq!(qs[0].sql, "SELECT 1 WHERE current_database() is not null");
    }

    #[test]
    fn config_errors() {
        let err = |text: &str| match build(toml::from_str(text).unwrap(), &BuildContext::default())
        {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{text}: built"),
        };
        assert!(err("[[query]]\nmeasurement = 'x'").contains("sqlquery or script"));
        assert!(err("[[query]]\nscript = '/nonexistent.sql'").contains("/nonexistent.sql"));
        assert!(err("[[query]]\nsqlquery = 'x'\nsql = 'y'").contains("unknown field"));
        assert!(err("address = 'host=h sslmode=nope'").contains("sslmode"));
    }
}
