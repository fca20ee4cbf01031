//! Per-plugin metric filters: namepass/namedrop, fieldinclude/fieldexclude (and the old
//! fieldpass/fielddrop), tagpass/tagdrop, taginclude/tagexclude, with glob patterns.

use sonde_plugins::Metric;

#[derive(Clone, Debug, Default)]
pub struct Filter {}

impl Filter {
    /// True when the filter has no conditions at all (the common case: skip work).
    pub fn is_empty(&self) -> bool {
        true
    }

    /// namepass/namedrop/tagpass/tagdrop: does the metric pass to this plugin?
    pub fn selects(&self, metric: &Metric) -> bool {
        let _ = metric;
        true
    }

    /// fieldinclude/fieldexclude/taginclude/tagexclude: trims the metric in place. Returns
    /// false when no field is left (the metric must then be dropped).
    pub fn trim(&self, metric: &mut Metric) -> bool {
        !metric.fields.is_empty()
    }
}
