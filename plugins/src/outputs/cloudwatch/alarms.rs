//! `[[outputs.cloudwatch.alarm]]`: metric alarms that sonde keeps in place, one set per host.
//!
//! At connect (start, and again after a config reload) the configured alarms are read back with
//! DescribeAlarms; only those missing or different are written with PutMetricAlarm, so an
//! unchanged alarm is never rewritten (its state and history stay as they are).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::encode::form_encode;
use super::xml::Element;
use crate::config_types::Duration;

const STATISTICS: &[&str] = &["SampleCount", "Average", "Sum", "Minimum", "Maximum"];
const COMPARISONS: &[&str] = &[
    "GreaterThanOrEqualToThreshold",
    "GreaterThanThreshold",
    "LessThanThreshold",
    "LessThanOrEqualToThreshold",
];
const MISSING: &[&str] = &["breaching", "notBreaching", "ignore", "missing"];
const UNITS: &[&str] = &[
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

/// One `[[outputs.cloudwatch.alarm]]` table.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlarmConfig {
    /// The alarm's name; `{host}` is replaced by the agent's hostname.
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// The metric, as this output names it (`<measurement>_<field>`).
    pub metric_name: String,
    /// Defaults to the output's namespace.
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default = "default_statistic")]
    pub statistic: String,
    #[serde(default = "default_period")]
    pub period: Duration,
    pub comparison_operator: String,
    pub threshold: f64,
    #[serde(default = "one")]
    pub evaluation_periods: u32,
    #[serde(default)]
    pub datapoints_to_alarm: Option<u32>,
    #[serde(default = "default_missing")]
    pub treat_missing_data: String,
    #[serde(default)]
    pub unit: Option<String>,
    #[serde(default = "yes")]
    pub actions_enabled: bool,
    /// SNS topic (or other action) ARNs.
    #[serde(default)]
    pub alarm_actions: Vec<String>,
    #[serde(default)]
    pub ok_actions: Vec<String>,
    #[serde(default)]
    pub insufficient_data_actions: Vec<String>,
    /// Dimensions of the metric; `{host}` in a value is replaced by the hostname. Default:
    /// `host = "{host}"`, the dimension this output writes for the host tag.
    #[serde(default)]
    pub dimensions: Option<BTreeMap<String, String>>,
}

fn default_statistic() -> String {
    "Average".into()
}
fn default_period() -> Duration {
    Duration::from_secs(60)
}
fn one() -> u32 {
    1
}
fn yes() -> bool {
    true
}
fn default_missing() -> String {
    "missing".into()
}

/// An alarm as CloudWatch holds it: what is compared to decide whether to write it.
#[derive(Clone, Debug, PartialEq)]
pub struct Alarm {
    pub name: String,
    pub description: String,
    pub namespace: String,
    pub metric_name: String,
    pub statistic: String,
    pub period: u64,
    pub evaluation_periods: u32,
    pub datapoints_to_alarm: Option<u32>,
    pub threshold: f64,
    pub comparison_operator: String,
    pub treat_missing_data: String,
    pub unit: Option<String>,
    pub actions_enabled: bool,
    /// Sorted by name.
    pub dimensions: Vec<(String, String)>,
    /// Each sorted (CloudWatch keeps them as a set).
    pub alarm_actions: Vec<String>,
    pub ok_actions: Vec<String>,
    pub insufficient_data_actions: Vec<String>,
}

fn one_of(what: &str, v: &str, allowed: &[&str]) -> Result<(), String> {
    if allowed.contains(&v) {
        Ok(())
    } else {
        Err(format!("{what} {v:?} is not one of {}", allowed.join(", ")))
    }
}

impl AlarmConfig {
    /// The alarm for this host, checked as CloudWatch would check it.
    pub fn resolve(&self, hostname: &str, default_namespace: &str) -> Result<Alarm, String> {
        let t = |s: &str| s.replace("{host}", hostname);
        let name = t(&self.name);
        if name.is_empty() || name.len() > 255 {
            return Err(format!("name {name:?} must be 1 to 255 characters"));
        }
        one_of("statistic", &self.statistic, STATISTICS)?;
        one_of(
            "comparison_operator",
            &self.comparison_operator,
            COMPARISONS,
        )?;
        one_of("treat_missing_data", &self.treat_missing_data, MISSING)?;
        if let Some(u) = &self.unit {
            one_of("unit", u, UNITS)?;
        }
        let period = self.period.get().as_secs();
        if self.period.get().subsec_nanos() != 0
            || !(period == 10 || period == 30 || (period >= 60 && period.is_multiple_of(60)))
        {
            return Err(format!(
                "period {:?} must be 10s, 30s or a multiple of 60s",
                self.period.get()
            ));
        }
        if self.evaluation_periods == 0 {
            return Err("evaluation_periods must be at least 1".into());
        }
        if let Some(d) = self.datapoints_to_alarm
            && (d == 0 || d > self.evaluation_periods)
        {
            return Err("datapoints_to_alarm must be between 1 and evaluation_periods".into());
        }
        if !self.threshold.is_finite() {
            return Err("threshold must be a finite number".into());
        }
        if self.metric_name.is_empty() || self.metric_name.len() > 255 {
            return Err("metric_name must be 1 to 255 characters".into());
        }
        let mut actions = Vec::new();
        for list in [
            &self.alarm_actions,
            &self.ok_actions,
            &self.insufficient_data_actions,
        ] {
            if list.len() > 5 {
                return Err("at most 5 actions per state".into());
            }
            for a in list {
                if !a.starts_with("arn:") {
                    return Err(format!("action {a:?} is not an ARN"));
                }
            }
            let mut l = list.clone();
            l.sort();
            l.dedup();
            actions.push(l);
        }
        let dims: Vec<(String, String)> = match &self.dimensions {
            Some(d) => d.iter().map(|(k, v)| (k.clone(), t(v))).collect(),
            None => vec![("host".into(), hostname.to_string())],
        };
        if dims.len() > 30 {
            return Err("at most 30 dimensions".into());
        }
        if let Some((k, _)) = dims.iter().find(|(_, v)| v.is_empty()) {
            return Err(format!("dimension {k:?} has an empty value"));
        }
        let [alarm_actions, ok_actions, insufficient_data_actions] =
            <[Vec<String>; 3]>::try_from(actions).map_err(|_| "actions".to_string())?;
        Ok(Alarm {
            name,
            description: self.description.as_deref().map(t).unwrap_or_default(),
            namespace: self
                .namespace
                .clone()
                .unwrap_or_else(|| default_namespace.to_string()),
            metric_name: self.metric_name.clone(),
            statistic: self.statistic.clone(),
            period,
            evaluation_periods: self.evaluation_periods,
            datapoints_to_alarm: self.datapoints_to_alarm,
            threshold: self.threshold,
            comparison_operator: self.comparison_operator.clone(),
            treat_missing_data: self.treat_missing_data.clone(),
            unit: self.unit.clone(),
            actions_enabled: self.actions_enabled,
            dimensions: dims,
            alarm_actions,
            ok_actions,
            insufficient_data_actions,
        })
    }
}

fn param(out: &mut Vec<u8>, k: &str, v: &str) {
    out.push(b'&');
    out.extend_from_slice(k.as_bytes());
    out.push(b'=');
    form_encode(out, v);
}

/// The DescribeAlarms request for these names (at most 100).
pub fn describe_body(names: &[&str]) -> Vec<u8> {
    let mut b = b"Action=DescribeAlarms&Version=2010-08-01".to_vec();
    for (i, n) in names.iter().enumerate() {
        param(&mut b, &format!("AlarmNames.member.{}", i + 1), n);
    }
    param(&mut b, "MaxRecords", "100");
    b
}

/// The PutMetricAlarm request of an alarm.
pub fn put_body(a: &Alarm) -> Vec<u8> {
    let mut b = b"Action=PutMetricAlarm&Version=2010-08-01".to_vec();
    param(&mut b, "AlarmName", &a.name);
    if !a.description.is_empty() {
        param(&mut b, "AlarmDescription", &a.description);
    }
    param(
        &mut b,
        "ActionsEnabled",
        if a.actions_enabled { "true" } else { "false" },
    );
    for (key, list) in [
        ("AlarmActions", &a.alarm_actions),
        ("OKActions", &a.ok_actions),
        ("InsufficientDataActions", &a.insufficient_data_actions),
    ] {
        for (i, x) in list.iter().enumerate() {
            param(&mut b, &format!("{key}.member.{}", i + 1), x);
        }
    }
    param(&mut b, "MetricName", &a.metric_name);
    param(&mut b, "Namespace", &a.namespace);
    param(&mut b, "Statistic", &a.statistic);
    for (i, (k, v)) in a.dimensions.iter().enumerate() {
        param(&mut b, &format!("Dimensions.member.{}.Name", i + 1), k);
        param(&mut b, &format!("Dimensions.member.{}.Value", i + 1), v);
    }
    param(&mut b, "Period", &a.period.to_string());
    if let Some(u) = &a.unit {
        param(&mut b, "Unit", u);
    }
    param(
        &mut b,
        "EvaluationPeriods",
        &a.evaluation_periods.to_string(),
    );
    if let Some(d) = a.datapoints_to_alarm {
        param(&mut b, "DatapointsToAlarm", &d.to_string());
    }
    param(&mut b, "Threshold", &a.threshold.to_string());
    param(&mut b, "ComparisonOperator", &a.comparison_operator);
    param(&mut b, "TreatMissingData", &a.treat_missing_data);
    b
}

/// Reads the alarms of a DescribeAlarms answer.
pub fn parse_described(doc: &Element) -> Vec<Alarm> {
    let Some(list) = doc.find("MetricAlarms") else {
        return Vec::new();
    };
    list.all("member")
        .map(|m| {
            let s = |k: &str| m.text_at(&[k]).unwrap_or("").trim().to_string();
            let members = |k: &str| {
                let mut v: Vec<String> = m
                    .child(k)
                    .map(|l| l.all("member").map(|x| x.text.trim().to_string()).collect())
                    .unwrap_or_default();
                v.sort();
                v
            };
            let mut dims: Vec<(String, String)> = m
                .child("Dimensions")
                .map(|l| {
                    l.all("member")
                        .map(|d| {
                            (
                                d.text_at(&["Name"]).unwrap_or("").trim().to_string(),
                                d.text_at(&["Value"]).unwrap_or("").trim().to_string(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            dims.sort();
            let opt = |k: &str| Some(s(k)).filter(|x| !x.is_empty());
            Alarm {
                name: s("AlarmName"),
                description: s("AlarmDescription"),
                namespace: s("Namespace"),
                metric_name: s("MetricName"),
                statistic: s("Statistic"),
                period: s("Period").parse().unwrap_or(0),
                evaluation_periods: s("EvaluationPeriods").parse().unwrap_or(0),
                datapoints_to_alarm: opt("DatapointsToAlarm").and_then(|x| x.parse().ok()),
                threshold: s("Threshold").parse().unwrap_or(f64::NAN),
                comparison_operator: s("ComparisonOperator"),
                // CloudWatch reports "missing" when it was never set.
                treat_missing_data: opt("TreatMissingData").unwrap_or_else(|| "missing".into()),
                unit: opt("Unit"),
                actions_enabled: s("ActionsEnabled") != "false",
                dimensions: dims,
                alarm_actions: members("AlarmActions"),
                ok_actions: members("OKActions"),
                insufficient_data_actions: members("InsufficientDataActions"),
            }
        })
        .collect()
}

/// What differs between the wanted alarm and the one CloudWatch has (field names), empty when
/// they are the same.
pub fn differences(want: &Alarm, have: &Alarm) -> Vec<&'static str> {
    let mut d = Vec::new();
    let mut check = |same: bool, name| {
        if !same {
            d.push(name)
        }
    };
    let mut dims = want.dimensions.clone();
    dims.sort();
    check(want.description == have.description, "description");
    check(want.namespace == have.namespace, "namespace");
    check(want.metric_name == have.metric_name, "metric_name");
    check(want.statistic == have.statistic, "statistic");
    check(want.period == have.period, "period");
    check(
        want.evaluation_periods == have.evaluation_periods,
        "evaluation_periods",
    );
    check(
        want.datapoints_to_alarm
            .is_none_or(|x| Some(x) == have.datapoints_to_alarm),
        "datapoints_to_alarm",
    );
    check(want.threshold == have.threshold, "threshold");
    check(
        want.comparison_operator == have.comparison_operator,
        "comparison_operator",
    );
    check(
        want.treat_missing_data == have.treat_missing_data,
        "treat_missing_data",
    );
    check(want.unit == have.unit, "unit");
    check(
        want.actions_enabled == have.actions_enabled,
        "actions_enabled",
    );
    check(dims == have.dimensions, "dimensions");
    check(want.alarm_actions == have.alarm_actions, "alarm_actions");
    check(want.ok_actions == have.ok_actions, "ok_actions");
    check(
        want.insufficient_data_actions == have.insufficient_data_actions,
        "insufficient_data_actions",
    );
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra: &str) -> AlarmConfig {
        toml::from_str(&format!(
            "name = '{{host}}-cpu-high'\nmetric_name = 'cpu_usage_user'\n\
             comparison_operator = 'GreaterThanThreshold'\nthreshold = 90.0\n{extra}"
        ))
        .unwrap()
    }

    #[test]
    fn resolves_templates_and_defaults() {
        let a = cfg("alarm_actions = ['arn:aws:sns:us-east-1:123456789012:b', 'arn:aws:sns:us-east-1:123456789012:a']")
            .resolve("web1", "Sonde")
            .unwrap();
        assert_eq!(a.name, "web1-cpu-high");
        assert_eq!(a.namespace, "Sonde");
        assert_eq!(a.dimensions, [("host".to_string(), "web1".to_string())]);
        assert_eq!(a.statistic, "Average");
        assert_eq!(a.period, 60);
        assert_eq!(a.treat_missing_data, "missing");
        assert_eq!(
            a.alarm_actions,
            [
                "arn:aws:sns:us-east-1:123456789012:a",
                "arn:aws:sns:us-east-1:123456789012:b"
            ]
        );
        let b = cfg("[dimensions]\ncpu = 'cpu-total'\nhost = '{host}'")
            .resolve("web1", "Sonde")
            .unwrap();
        assert_eq!(b.dimensions.len(), 2);
    }

    #[test]
    fn refuses_what_cloudwatch_would() {
        for (extra, want) in [
            ("statistic = 'Mean'", "statistic"),
            ("period = '45s'", "period"),
            ("treat_missing_data = 'sometimes'", "treat_missing_data"),
            ("evaluation_periods = 0", "evaluation_periods"),
            (
                "evaluation_periods = 2\ndatapoints_to_alarm = 3",
                "datapoints_to_alarm",
            ),
            ("alarm_actions = ['my-topic']", "ARN"),
            ("unit = 'Parsecs'", "unit"),
        ] {
            let err = cfg(extra).resolve("h", "N").unwrap_err();
            assert!(err.contains(want), "{extra}: {err}");
        }
        let bad: Result<AlarmConfig, _> = toml::from_str("name = 'x'\nmetric = 'm'");
        assert!(bad.is_err());
    }

    #[test]
    fn put_body_and_described_alarm_compare_equal() {
        let a = cfg("description = 'CPU on {host}'\nalarm_actions = ['arn:aws:sns:r:1:t']\nok_actions = ['arn:aws:sns:r:1:t']\nunit = 'Percent'\nevaluation_periods = 3\ndatapoints_to_alarm = 2")
            .resolve("web1", "Sonde")
            .unwrap();
        let body = String::from_utf8(put_body(&a)).unwrap();
        assert!(body.contains("AlarmName=web1-cpu-high"), "{body}");
        assert!(body.contains("AlarmActions.member.1=arn%3Aaws%3Asns%3Ar%3A1%3At"));
        assert!(body.contains("Dimensions.member.1.Name=host&Dimensions.member.1.Value=web1"));
        assert!(body.contains("Threshold=90&"));
        let doc = r#"<DescribeAlarmsResponse><DescribeAlarmsResult><MetricAlarms><member>
            <AlarmName>web1-cpu-high</AlarmName><AlarmDescription>CPU on web1</AlarmDescription>
            <Namespace>Sonde</Namespace><MetricName>cpu_usage_user</MetricName>
            <Statistic>Average</Statistic><Period>60</Period><EvaluationPeriods>3</EvaluationPeriods>
            <DatapointsToAlarm>2</DatapointsToAlarm><Threshold>90.0</Threshold>
            <ComparisonOperator>GreaterThanThreshold</ComparisonOperator>
            <TreatMissingData>missing</TreatMissingData><Unit>Percent</Unit>
            <ActionsEnabled>true</ActionsEnabled>
            <Dimensions><member><Name>host</Name><Value>web1</Value></member></Dimensions>
            <AlarmActions><member>arn:aws:sns:r:1:t</member></AlarmActions>
            <OKActions><member>arn:aws:sns:r:1:t</member></OKActions><InsufficientDataActions/>
            </member></MetricAlarms></DescribeAlarmsResult></DescribeAlarmsResponse>"#;
        let have = parse_described(&super::super::xml::parse(doc).unwrap());
        assert_eq!(have.len(), 1);
        assert_eq!(differences(&a, &have[0]), Vec::<&str>::new());
        let mut changed = a.clone();
        changed.threshold = 80.0;
        changed.ok_actions.clear();
        assert_eq!(differences(&changed, &have[0]), ["threshold", "ok_actions"]);
    }
}
