//! InfluxDB line protocol: parser and serializer.

use crate::model::Metric;

/// Serializer options (Telegraf's `influx_*` keys).
#[derive(Clone, Debug)]
pub struct InfluxOptions {
    pub sort_fields: bool,
    /// Write unsigned fields with the `u` suffix; otherwise as signed integers (clamped).
    pub uint_support: bool,
    /// Split lines longer than this into several (0 = no limit).
    pub max_line_bytes: usize,
}

impl Default for InfluxOptions {
    fn default() -> Self {
        InfluxOptions {
            sort_fields: false,
            uint_support: true,
            max_line_bytes: 0,
        }
    }
}

/// Appends one metric as a line (with trailing `\n`).
pub fn write_metric(out: &mut Vec<u8>, metric: &Metric, opts: &InfluxOptions) {
    let _ = (out, metric, opts);
    todo!("codec helper")
}
