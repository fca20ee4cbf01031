//! `inputs.postgresql`: one metric per `pg_stat_database` row and one for the background
//! writer and checkpointer, as Telegraf's plugin reports them — and the checkpoint counters kept
//! under their old names on PostgreSQL 17, where they moved to `pg_stat_checkpointer`.

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
    databases: Vec<String>,
    ignored_databases: Vec<String>,
    max_lifetime: Duration,
    max_idle: i64,
    max_open: i64,
    prepared_statements: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            address: String::new(),
            outputaddress: String::new(),
            databases: Vec::new(),
            ignored_databases: Vec::new(),
            max_lifetime: Duration::default(),
            max_idle: 1,
            max_open: 1,
            prepared_statements: true,
        }
    }
}

/// Columns never reported (a timestamp, as in Telegraf).
const IGNORED_COLUMNS: &[&str] = &["stats_reset"];

/// The query of the background writer and checkpoint counters for a server version
/// (`server_version_num`). PostgreSQL 17 moved the checkpoint counters to
/// `pg_stat_checkpointer` under new names; they are read there and reported under the names
/// `pg_stat_bgwriter` had, so a dashboard keeps working across the upgrade.
pub fn bgwriter_query(version: i32) -> &'static str {
    if version >= 170000 {
        "SELECT c.num_timed AS checkpoints_timed, c.num_requested AS checkpoints_req, \
         c.write_time AS checkpoint_write_time, c.sync_time AS checkpoint_sync_time, \
         c.buffers_written AS buffers_checkpoint, b.buffers_clean, b.maxwritten_clean, \
         b.buffers_alloc FROM pg_stat_bgwriter b CROSS JOIN pg_stat_checkpointer c"
    } else {
        "SELECT * FROM pg_stat_bgwriter"
    }
}

/// The `pg_stat_database` query with the database filter, names quoted as literals.
fn database_query(databases: &[String], ignored: &[String]) -> String {
    let list = |names: &[String]| {
        names
            .iter()
            .map(|n| quote_literal(n))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !ignored.is_empty() {
        format!(
            "SELECT * FROM pg_stat_database WHERE datname NOT IN ({})",
            list(ignored)
        )
    } else if !databases.is_empty() {
        format!(
            "SELECT * FROM pg_stat_database WHERE datname IN ({})",
            list(databases)
        )
    } else {
        "SELECT * FROM pg_stat_database".into()
    }
}

pub struct Postgresql {
    conn: Connection,
    server: String,
    db_query: String,
    /// `max_idle = 0`: close the connection after every gather.
    keep_open: bool,
    /// The name log lines carry.
    id: String,
    outage: Outage,
}

impl Postgresql {
    fn add_rows(
        &self,
        acc: &mut Accumulator,
        rows: &[tokio_postgres::Row],
        db_of: impl Fn(Option<&PgValue>) -> String,
    ) {
        let mut bad = Vec::new();
        for row in rows {
            let values = row_values(row, &mut bad);
            let datname = values
                .iter()
                .find(|(k, _)| k == "datname")
                .and_then(|(_, v)| v.as_ref());
            let mut m = Metric::new("postgresql", acc.time()).with_kind(ValueType::Untyped);
            m.add_tag("server", self.server.as_str());
            m.add_tag("db", db_of(datname));
            for (k, v) in values {
                if IGNORED_COLUMNS.contains(&k.as_str()) {
                    continue;
                }
                if let Some(f) = v.and_then(PgValue::field) {
                    m.add_field(k, f);
                }
            }
            acc.add(m);
        }
        if let Some(first) = bad.first() {
            acc.add_error(format!(
                "{}: {} value(s) not decoded, first: {first}",
                self.server,
                bad.len()
            ));
        }
    }

    async fn collect(&mut self, acc: &mut Accumulator) -> anyhow::Result<()> {
        let version = self
            .conn
            .ensure()
            .await
            .map_err(|e| anyhow::anyhow!("connecting to {}: {e}", self.server))?;
        let rows = self
            .conn
            .query(&self.db_query)
            .await
            .map_err(|e| anyhow::anyhow!("{}: pg_stat_database: {e}", self.server))?;
        self.add_rows(acc, &rows, |d| match d {
            Some(PgValue::Text(name)) => name.clone(),
            // PostgreSQL 12+ has a row for shared objects, with no database.
            _ => "postgres_global".into(),
        });
        let rows = self
            .conn
            .query(bgwriter_query(version))
            .await
            .map_err(|e| anyhow::anyhow!("{}: background writer: {e}", self.server))?;
        self.add_rows(acc, &rows, |_| "postgres".into());
        Ok(())
    }
}

#[async_trait]
impl Input for Postgresql {
    async fn gather(&mut self, acc: &mut Accumulator) -> anyhow::Result<()> {
        let res = self.collect(acc).await;
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

fn bad(key: &str, message: String) -> BuildError {
    BuildError::Config(ConfigError {
        path: vec![key.into()],
        message,
    })
}

fn build(table: toml::Table, ctx: &BuildContext) -> Result<InputPlugin, BuildError> {
    let cfg: Config = parse_config(table)?;
    let id = input_id(&ctx.id, "inputs.postgresql");
    let mut warnings = Vec::new();
    if !cfg.databases.is_empty() && !cfg.ignored_databases.is_empty() {
        warnings.push(
            "databases and ignored_databases are both set: ignored_databases wins (as in Telegraf)"
                .into(),
        );
    }
    let (addr, conn) = connection(
        &cfg.address,
        cfg.prepared_statements,
        cfg.max_lifetime.get(),
        cfg.max_idle,
        cfg.max_open,
        &mut warnings,
    )
    .map_err(|(key, e)| bad(key, e))?;
    let server = if cfg.outputaddress.is_empty() {
        addr.server_tag()
    } else {
        cfg.outputaddress
    };
    // The agent captures warnings raised while building: shown at startup and by `config check`.
    for w in &warnings {
        tracing::warn!(input = %id, "{w}");
    }
    Ok(InputPlugin::Polled(Box::new(Postgresql {
        conn,
        server,
        db_query: database_query(&cfg.databases, &cfg.ignored_databases),
        keep_open: cfg.max_idle != 0,
        id,
        outage: Outage::default(),
    })))
}

pub const SPEC: InputSpec = InputSpec {
    name: "postgresql",
    description: "Read pg_stat_database and background writer / checkpointer statistics from PostgreSQL",
    sample: include_str!("sample.toml"),
    format: Format::None,
    build,
};

#[cfg(test)]
mod tests {
    use super::*;

    fn build_err(text: &str) -> String {
        match build(toml::from_str(text).unwrap(), &BuildContext::default()) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{text}: built"),
        }
    }

    #[test]
    fn bgwriter_query_follows_the_server_version() {
        // PostgreSQL 15 and 16: everything is in pg_stat_bgwriter.
        for v in [150004, 160002] {
            assert_eq!(bgwriter_query(v), "SELECT * FROM pg_stat_bgwriter");
        }
        // PostgreSQL 17+: the checkpoint counters come from pg_stat_checkpointer, renamed back.
        for v in [170000, 170002, 180001] {
            let q = bgwriter_query(v);
            assert!(q.contains("pg_stat_checkpointer"), "{q}");
            for (new, old) in [
                ("num_timed", "checkpoints_timed"),
                ("num_requested", "checkpoints_req"),
                ("write_time", "checkpoint_write_time"),
                ("sync_time", "checkpoint_sync_time"),
                ("buffers_written", "buffers_checkpoint"),
            ] {
                assert!(q.contains(&format!("c.{new} AS {old}")), "{q}");
            }
            for kept in ["b.buffers_clean", "b.maxwritten_clean", "b.buffers_alloc"] {
                assert!(q.contains(kept), "{q}");
            }
        }
    }

    #[test]
    fn database_filters_are_quoted() {
        assert_eq!(database_query(&[], &[]), "SELECT * FROM pg_stat_database");
        assert_eq!(
            database_query(&["app".into(), "o'brien".into()], &[]),
            "SELECT * FROM pg_stat_database WHERE datname IN ('app', 'o''brien')"
        );
        assert_eq!(
            database_query(&["x".into()], &["template0".into()]),
            "SELECT * FROM pg_stat_database WHERE datname NOT IN ('template0')"
        );
    }

    #[test]
    fn config_is_checked() {
        assert!(build_err("address = 'host=h sslmode=maybe'").contains("sslmode"));
        assert!(build_err("address = 'mysql://h'").contains("postgres://"));
        assert!(build_err("max_open = -1").contains("negative"));
        assert!(build_err("adress = 'x'").contains("unknown field"));
        assert!(
            build(
                toml::from_str("address = 'postgres://u:pw@h/db'\nmax_lifetime = '1m'\nprepared_statements = false\nmax_idle = 0").unwrap(),
                &BuildContext::default()
            )
            .is_ok()
        );
    }

    #[tokio::test]
    async fn a_server_that_is_down_is_a_gather_error_without_the_password() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let text = format!(
            "address = 'host=127.0.0.1 port={port} user=u password=hunter2 sslmode=disable connect_timeout=2'"
        );
        let InputPlugin::Polled(mut p) =
            build(toml::from_str(&text).unwrap(), &BuildContext::default()).unwrap()
        else {
            panic!("not polled")
        };
        let mut acc = Accumulator::new(0);
        let first = p.gather(&mut acc).await.unwrap_err();
        let err = format!("{first:#}");
        assert!(err.contains(&format!("port={port}")), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        assert!(acc.metrics.is_empty());
        // The same outage: still an error (counted), marked so that it is not logged again.
        assert!(
            first
                .downcast_ref::<crate::plugin::RepeatedError>()
                .is_none()
        );
        let second = p.gather(&mut acc).await.unwrap_err();
        assert!(
            second
                .downcast_ref::<crate::plugin::RepeatedError>()
                .is_some()
        );
        assert!(format!("{second:#}").contains("2 in a row"), "{second:#}");
    }
}
