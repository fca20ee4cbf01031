//! outputs.cloudwatch against moto's server (the AWS API from PyPI): metrics read back with
//! GetMetricStatistics / GetMetricData / ListMetrics, request limits seen by a recording proxy
//! in front of moto, every source of the credential chain, and alarms.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use sonde_tests::cloudwatch::{Exchange, Fixture, Moto, Recorder, Sonde, once};
use sonde_tests::{TempDir, wait_until};

/// A minute-aligned time two minutes ago, in seconds.
fn base_time() -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    now - now % 60 - 120
}

/// A config that runs `exec` on `lp_file` once and writes to CloudWatch through `rec`.
fn config(dir: &TempDir, lines: &str, rec: &Recorder, output_extra: &str) -> std::path::PathBuf {
    let lp = dir.write("metrics.lp", lines);
    dir.write(
        "sonde.toml",
        &format!(
            r#"[agent]
  hostname = "web1"
  precision = "1ms"
  metric_batch_size = 5000
  metric_buffer_limit = 20000
  shutdown_timeout = "60s"
[[inputs.exec]]
  commands = ["cat {lp}"]
  data_format = "influx"
  timeout = "30s"
[[outputs.cloudwatch]]
  endpoint_url = "{url}"
  namespace = "Sonde/E2E"
  timeout = "300s"
{output_extra}
"#,
            lp = lp.display(),
            url = rec.url(),
        ),
    )
}

const STATIC: &str = r#"  region = "us-east-1"
  access_key = "AKIDSTATIC0000000001"
  secret_key = "static-secret-do-not-log"
"#;

fn stats(moto: &Moto, name: &str, dims: Value, t0: i64, stats: &[&str]) -> Vec<Value> {
    let v = moto.call(
        "cloudwatch",
        "get_metric_statistics",
        json!({
            "Namespace": "Sonde/E2E",
            "MetricName": name,
            "Dimensions": dims,
            "StartTime": t0 - 300,
            "EndTime": t0 + 300,
            "Period": 60,
            "Statistics": stats,
        }),
    );
    v["Datapoints"].as_array().cloned().unwrap_or_default()
}

fn host_dims() -> Value {
    json!([{"Name": "host", "Value": "web1"}])
}

#[test]
fn metrics_are_read_back_with_names_dimensions_values_units_and_statistic_sets() {
    let moto = Moto::start();
    let rec = Recorder::start(&moto.addr);
    let dir = TempDir::new("cw-readback");
    let t0 = base_time();
    let ns = |s: i64| s * 1_000_000_000;
    let lines = format!(
        "mem,host=web1,zone=b,az=eu-1a used_percent=42.5,available_bytes=1024i,state=\"ok\" {}\n\
         mem,host=web1,zone=b,az=eu-1a used_percent=43.5,available_bytes=2048i {}\n\
         net_response,host=web1,server=db result_ok=true {}\n\
         rt,host=web1 latency_seconds_min=0.1,latency_seconds_max=0.9,latency_seconds_sum=3,latency_seconds_count=10i {}\n",
        ns(t0) + 250_000_000,
        ns(t0 + 10),
        ns(t0),
        ns(t0),
    );
    let cfg = config(
        &dir,
        &lines,
        &rec,
        &format!("{STATIC}  write_statistics = true\n  high_resolution_metrics = true"),
    );
    let (code, log) = once(&dir, &cfg, &[]);
    assert_eq!(code, Some(0), "{log}");
    assert!(
        !log.contains("static-secret-do-not-log"),
        "secret in the log"
    );

    // What went over the wire: one signed request with the static key.
    let puts = rec.of("PutMetricData");
    assert_eq!(puts.len(), 1, "{puts:?}");
    assert_eq!(puts[0].status, 200, "{}", puts[0].response);
    assert_eq!(
        puts[0].access_key().as_deref(),
        Some("AKIDSTATIC0000000001")
    );
    assert_eq!(puts[0].datums(), 6);
    let stamps: Vec<String> = (1..=6)
        .filter_map(|i| puts[0].param(&format!("MetricData.member.{i}.Timestamp")))
        .collect();
    assert!(
        stamps.iter().any(|s| s.ends_with(".250Z")),
        "millisecond timestamps: {stamps:?}"
    );

    // ListMetrics: the names, and the dimensions host first, then by name.
    let listed = moto.call(
        "cloudwatch",
        "list_metrics",
        json!({"Namespace": "Sonde/E2E"}),
    );
    let mut names: Vec<String> = listed["Metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["MetricName"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names.dedup();
    assert_eq!(
        names,
        [
            "mem_available_bytes",
            "mem_used_percent",
            "net_response_result_ok",
            "rt_latency_seconds"
        ]
    );
    let mem = listed["Metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["MetricName"] == "mem_used_percent")
        .unwrap();
    assert_eq!(
        mem["Dimensions"],
        json!([
            {"Name": "host", "Value": "web1"},
            {"Name": "az", "Value": "eu-1a"},
            {"Name": "zone", "Value": "b"}
        ])
    );
    let mem_dims = mem["Dimensions"].clone();

    // Values and units.
    let dp = stats(
        &moto,
        "mem_used_percent",
        mem_dims.clone(),
        t0,
        &["Average", "SampleCount", "Maximum", "Minimum"],
    );
    assert_eq!(dp.len(), 1, "{dp:?}");
    assert_eq!(dp[0]["SampleCount"], 2.0);
    assert_eq!(dp[0]["Average"], 43.0);
    assert_eq!(dp[0]["Minimum"], 42.5);
    assert_eq!(dp[0]["Maximum"], 43.5);
    assert_eq!(dp[0]["Unit"], "Percent");
    // moto starts the period at the first sample: the metric's own time, to the millisecond.
    assert!(
        dp[0]["Timestamp"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}:00.250", iso_minute(t0))),
        "{dp:?}"
    );
    let bytes = stats(&moto, "mem_available_bytes", mem_dims.clone(), t0, &["Sum"]);
    assert_eq!(bytes[0]["Sum"], 3072.0);
    assert_eq!(bytes[0]["Unit"], "Bytes");
    let ok = stats(
        &moto,
        "net_response_result_ok",
        json!([{"Name": "host", "Value": "web1"}, {"Name": "server", "Value": "db"}]),
        t0,
        &["Maximum"],
    );
    assert_eq!(ok[0]["Maximum"], 1.0);

    // The statistic set comes back as such: 10 samples, not one value.
    let rt = stats(
        &moto,
        "rt_latency_seconds",
        host_dims(),
        t0,
        &["SampleCount", "Sum", "Minimum", "Maximum", "Average"],
    );
    assert_eq!(rt.len(), 1, "{rt:?}");
    assert_eq!(rt[0]["SampleCount"], 10.0);
    assert_eq!(rt[0]["Sum"], 3.0);
    assert_eq!(rt[0]["Minimum"], 0.1);
    assert_eq!(rt[0]["Maximum"], 0.9);
    assert_eq!(rt[0]["Unit"], "Seconds");

    // GetMetricData: both samples, at their own (high-resolution) timestamps.
    let data = moto.call(
        "cloudwatch",
        "get_metric_data",
        json!({
            "MetricDataQueries": [{
                "Id": "m1",
                "MetricStat": {
                    "Metric": {"Namespace": "Sonde/E2E", "MetricName": "mem_available_bytes", "Dimensions": mem_dims},
                    "Period": 1,
                    "Stat": "Sum"
                }
            }],
            "StartTime": t0 - 60,
            "EndTime": t0 + 60,
        }),
    );
    let r = &data["MetricDataResults"][0];
    let mut pairs: Vec<(String, f64)> = r["Timestamps"]
        .as_array()
        .unwrap()
        .iter()
        .zip(r["Values"].as_array().unwrap())
        .map(|(t, v)| (t.as_str().unwrap().to_string(), v.as_f64().unwrap()))
        .collect();
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    let values: Vec<f64> = pairs.iter().map(|p| p.1).collect();
    assert_eq!(values, [1024.0, 2048.0], "{data}");
}

/// `2024-01-02 03:04` of a time in seconds, as boto3 prints datapoint timestamps.
fn iso_minute(t: i64) -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "-d", &format!("@{t}"), "+%Y-%m-%d %H:%M"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn five_thousand_metrics_arrive_in_requests_within_both_limits() {
    let moto = Moto::start();
    let rec = Recorder::start(&moto.addr);
    let dir = TempDir::new("cw-big");
    let t0 = base_time();
    let long = "x".repeat(300);
    let mut lines = String::new();
    for i in 0..5000 {
        lines.push_str(&format!(
            "app,host=web1,service=svc{long}{i},route=r{long},version=v{long} latency={i} {}\n",
            (t0 + (i % 60) as i64) * 1_000_000_000
        ));
    }
    let cfg = config(&dir, &lines, &rec, STATIC);
    // moto takes ~20 s per 1,000 datums: give the whole write ten minutes.
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace("shutdown_timeout = \"60s\"", "shutdown_timeout = \"600s\""),
    )
    .unwrap();
    let (code, log) = once(&dir, &cfg, &[]);
    assert_eq!(code, Some(0), "{}", &log[log.len().saturating_sub(3000)..]);
    let puts = rec.of("PutMetricData");
    let mut total = 0;
    let mut biggest = 0;
    for p in &puts {
        assert_eq!(p.status, 200, "{}", p.response);
        assert!(p.body.len() <= 1_000_000, "body of {} bytes", p.body.len());
        assert!(p.datums() <= 1000, "{} datums", p.datums());
        assert_eq!(p.header("content-encoding"), Some("gzip"));
        assert!(p.wire_len < p.body.len());
        total += p.datums();
        biggest = biggest.max(p.body.len());
    }
    assert_eq!(total, 5000);
    // The byte limit is what split this batch (at 1,000 datums a request would be ~1.3 MB).
    assert!(puts.len() >= 6, "{} requests", puts.len());
    assert!(biggest > 900_000, "largest body {biggest}");
    let listed = moto.call(
        "cloudwatch",
        "paginate:list_metrics",
        json!({"Namespace": "Sonde/E2E", "MetricName": "app_latency"}),
    );
    assert_eq!(listed["Metrics"].as_array().unwrap().len(), 5000);
}

// ---- the credential chain ----

/// Runs sonde once with one metric and the given env and output options; returns what the
/// proxy saw and the log, after checking the write went through and no secret was logged.
fn with_credentials(
    env: &[(&str, &str)],
    output_extra: &str,
    secrets: &[&str],
) -> (Vec<Exchange>, String) {
    let moto = Moto::start();
    let rec = Recorder::start(&moto.addr);
    let dir = TempDir::new("cw-creds");
    let lines = format!("m,host=web1 v=1 {}\n", base_time() * 1_000_000_000);
    let mut env = env.to_vec();
    let sts = rec.url();
    env.push(("AWS_ENDPOINT_URL_STS", &sts));
    let cfg = config(&dir, &lines, &rec, output_extra);
    let cfg_text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("{dir}", &dir.path().display().to_string());
    std::fs::write(&cfg, cfg_text).unwrap();
    for (name, text) in [
        ("credentials", CREDENTIALS_FILE),
        ("token", "eyJ.web-identity.token"),
    ] {
        dir.write(name, text);
    }
    let (code, log) = once(&dir, &cfg, &env);
    assert_eq!(code, Some(0), "{log}");
    for s in secrets {
        assert!(!log.contains(s), "secret {s:?} in the log:\n{log}");
    }
    let puts = rec.of("PutMetricData");
    assert!(!puts.is_empty(), "nothing written; log:\n{log}");
    for p in &puts {
        assert_eq!(p.status, 200, "{}", p.response);
    }
    (rec.exchanges(), log)
}

const CREDENTIALS_FILE: &str = "[default]\naws_access_key_id = AKIDDEFAULTPROFILE01\naws_secret_access_key = default-profile-secret\n\n\
[prod]\naws_access_key_id = AKIDPRODPROFILE00001\naws_secret_access_key = prod-profile-secret\n";

fn puts(ex: &[Exchange]) -> Vec<&Exchange> {
    ex.iter()
        .filter(|e| e.action() == "PutMetricData")
        .collect()
}

/// The text of `<tag>` in an XML answer.
fn xml_text(doc: &str, tag: &str) -> String {
    let open = format!("<{tag}>");
    let start = doc
        .find(&open)
        .unwrap_or_else(|| panic!("no <{tag}> in {doc}"))
        + open.len();
    let end = doc[start..].find(&format!("</{tag}>")).unwrap() + start;
    doc[start..end].to_string()
}

#[test]
fn credentials_from_the_environment() {
    let (ex, _) = with_credentials(
        &[
            ("AWS_ACCESS_KEY_ID", "AKIDFROMENVIRONMENT1"),
            ("AWS_SECRET_ACCESS_KEY", "env-secret-do-not-log"),
            ("AWS_SESSION_TOKEN", "env-session-token-do-not-log"),
            ("AWS_REGION", "eu-west-1"),
        ],
        "",
        &["env-secret-do-not-log", "env-session-token-do-not-log"],
    );
    for p in puts(&ex) {
        assert_eq!(p.access_key().as_deref(), Some("AKIDFROMENVIRONMENT1"));
        assert_eq!(
            p.header("x-amz-security-token"),
            Some("env-session-token-do-not-log")
        );
        // The region came from AWS_REGION too.
        assert!(
            p.header("authorization")
                .unwrap()
                .contains("/eu-west-1/monitoring/")
        );
    }
}

#[test]
fn credentials_from_a_profile_in_a_shared_credentials_file() {
    let (ex, _) = with_credentials(
        &[],
        "  region = \"us-east-1\"\n  profile = \"prod\"\n  shared_credential_file = \"{dir}/credentials\"",
        &["prod-profile-secret", "default-profile-secret"],
    );
    for p in puts(&ex) {
        assert_eq!(p.access_key().as_deref(), Some("AKIDPRODPROFILE00001"));
        assert_eq!(p.header("x-amz-security-token"), None);
    }
}

#[test]
fn credentials_from_a_web_identity_token_exchanged_with_sts() {
    let role = "arn:aws:iam::123456789012:role/sonde-web-identity";
    let (ex, log) = with_credentials(
        &[],
        &format!(
            "  region = \"us-east-1\"\n  role_arn = \"{role}\"\n  web_identity_token_file = \"{{dir}}/token\"\n  role_session_name = \"sonde-e2e\""
        ),
        &[],
    );
    let sts: Vec<&Exchange> = ex
        .iter()
        .filter(|e| e.action() == "AssumeRoleWithWebIdentity")
        .collect();
    assert_eq!(sts.len(), 1, "{ex:?}");
    assert_eq!(sts[0].param("RoleArn").as_deref(), Some(role));
    assert_eq!(
        sts[0].param("RoleSessionName").as_deref(),
        Some("sonde-e2e")
    );
    assert_eq!(
        sts[0].param("WebIdentityToken").as_deref(),
        Some("eyJ.web-identity.token")
    );
    assert_eq!(sts[0].status, 200, "{}", sts[0].response);
    let key = xml_text(&sts[0].response, "AccessKeyId");
    let secret = xml_text(&sts[0].response, "SecretAccessKey");
    let token = xml_text(&sts[0].response, "SessionToken");
    assert!(
        !log.contains(&secret) && !log.contains(&token),
        "STS secret in the log"
    );
    for p in puts(&ex) {
        assert_eq!(p.access_key(), Some(key.clone()));
        assert_eq!(p.header("x-amz-security-token"), Some(token.as_str()));
    }
}

#[test]
fn role_arn_is_assumed_with_the_chain_credentials_as_the_source() {
    let role = "arn:aws:iam::123456789012:role/sonde-writer";
    let (ex, log) = with_credentials(
        &[
            ("AWS_ACCESS_KEY_ID", "AKIDSOURCEFORROLE001"),
            ("AWS_SECRET_ACCESS_KEY", "source-secret-do-not-log"),
        ],
        &format!(
            "  region = \"us-east-1\"\n  role_arn = \"{role}\"\n  role_session_name = \"sonde-e2e\""
        ),
        &["source-secret-do-not-log"],
    );
    let sts: Vec<&Exchange> = ex.iter().filter(|e| e.action() == "AssumeRole").collect();
    assert_eq!(sts.len(), 1, "{ex:?}");
    assert_eq!(sts[0].param("RoleArn").as_deref(), Some(role));
    assert_eq!(sts[0].access_key().as_deref(), Some("AKIDSOURCEFORROLE001"));
    let key = xml_text(&sts[0].response, "AccessKeyId");
    let token = xml_text(&sts[0].response, "SessionToken");
    assert_ne!(key, "AKIDSOURCEFORROLE001");
    assert!(!log.contains(&xml_text(&sts[0].response, "SecretAccessKey")));
    for p in puts(&ex) {
        assert_eq!(p.access_key(), Some(key.clone()));
        assert_eq!(p.header("x-amz-security-token"), Some(token.as_str()));
    }
}

fn creds_json(key: &str, secret: &str, token: &str, expires_in: u64) -> String {
    let exp = SystemTime::now() + Duration::from_secs(expires_in);
    let secs = exp.duration_since(UNIX_EPOCH).unwrap().as_secs();
    let out = std::process::Command::new("date")
        .args(["-u", "-d", &format!("@{secs}"), "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .unwrap();
    let exp = String::from_utf8(out.stdout).unwrap().trim().to_string();
    json!({
        "Code": "Success",
        "Type": "AWS-HMAC",
        "AccessKeyId": key,
        "SecretAccessKey": secret,
        "Token": token,
        "Expiration": exp,
        "LastUpdated": "2024-01-01T00:00:00Z",
        "RoleArn": "arn:aws:iam::123456789012:role/sonde"
    })
    .to_string()
}

#[test]
fn credentials_from_ec2_instance_metadata_with_imdsv2() {
    let imds = Fixture::start(|r| {
        if r.method == "PUT" && r.path == "/latest/api/token" {
            return match r.header("x-aws-ec2-metadata-token-ttl-seconds") {
                Some(ttl) => (
                    200,
                    vec![("x-aws-ec2-metadata-token-ttl-seconds", ttl.to_string())],
                    "imds-session-token".into(),
                ),
                None => (400, vec![], String::new()),
            };
        }
        if r.header("x-aws-ec2-metadata-token") != Some("imds-session-token") {
            return (401, vec![], String::new());
        }
        match r.path.as_str() {
            "/latest/meta-data/iam/security-credentials/"
            | "/latest/meta-data/iam/security-credentials-extended/" => {
                (200, vec![], "sonde-role".into())
            }
            "/latest/meta-data/iam/security-credentials/sonde-role"
            | "/latest/meta-data/iam/security-credentials-extended/sonde-role" => (
                200,
                vec![],
                creds_json(
                    "ASIAFROMIMDS00000001",
                    "imds-secret-do-not-log",
                    "imds-token-do-not-log",
                    3600,
                ),
            ),
            _ => (404, vec![], String::new()),
        }
    });
    let endpoint = imds.url("");
    let (ex, _) = with_credentials(
        &[
            ("AWS_EC2_METADATA_DISABLED", "false"),
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", &endpoint),
        ],
        "  region = \"us-east-1\"",
        &["imds-secret-do-not-log", "imds-token-do-not-log"],
    );
    for p in puts(&ex) {
        assert_eq!(p.access_key().as_deref(), Some("ASIAFROMIMDS00000001"));
        assert_eq!(
            p.header("x-amz-security-token"),
            Some("imds-token-do-not-log")
        );
    }
    // IMDSv2: a session token first, and every read carries it.
    let reqs = imds.requests();
    assert_eq!(reqs[0].method, "PUT", "{reqs:?}");
    assert!(
        reqs.iter()
            .filter(|r| r.method == "GET")
            .all(|r| r.header("x-aws-ec2-metadata-token") == Some("imds-session-token")),
        "{reqs:?}"
    );
}

#[test]
fn credentials_from_the_ecs_endpoint_are_refreshed_before_they_expire() {
    let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let n = served.clone();
    let ecs = Fixture::start(move |r| {
        if r.path != "/creds" || r.header("authorization") != Some("ecs-auth-do-not-log") {
            return (403, vec![], String::new());
        }
        let i = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        // Short-lived: sonde must fetch new ones before they run out.
        (
            200,
            vec![],
            creds_json(
                &format!("ASIAFROMECS000000{i:03}"),
                "ecs-secret-do-not-log",
                &format!("ecs-token-{i}-do-not-log"),
                8,
            ),
        )
    });
    let moto = Moto::start();
    let rec = Recorder::start(&moto.addr);
    let dir = TempDir::new("cw-ecs");
    let lp = dir.write("metrics.lp", "m,host=web1 v=1\n");
    let cfg = dir.write(
        "sonde.toml",
        &format!(
            r#"[agent]
  hostname = "web1"
  interval = "1s"
  flush_interval = "1s"
[[inputs.exec]]
  commands = ["cat {}"]
  data_format = "influx"
[[outputs.cloudwatch]]
  region = "us-east-1"
  endpoint_url = "{}"
  namespace = "Sonde/E2E"
  timeout = "30s"
"#,
            lp.display(),
            rec.url()
        ),
    );
    let full_uri = ecs.url("/creds");
    let sonde = Sonde::start(
        &dir,
        &cfg,
        &[
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", &full_uri),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "ecs-auth-do-not-log"),
        ],
    );
    let keys = || -> Vec<String> {
        let mut k: Vec<String> = rec
            .of("PutMetricData")
            .iter()
            .filter(|p| p.status == 200)
            .filter_map(|p| p.access_key())
            .collect();
        k.dedup();
        k
    };
    let ok = wait_until(Duration::from_secs(40), || keys().len() >= 2);
    assert!(ok, "keys used: {:?}; log:\n{}", keys(), sonde.log());
    let k = keys();
    assert_eq!(k[0], "ASIAFROMECS000000001");
    assert_eq!(k[1], "ASIAFROMECS000000002");
    // Every request was signed with credentials that had not expired: none was refused.
    assert!(rec.of("PutMetricData").iter().all(|p| p.status == 200));
    let log = sonde.log();
    for s in [
        "ecs-secret-do-not-log",
        "ecs-token-1-do-not-log",
        "ecs-auth-do-not-log",
    ] {
        assert!(!log.contains(s), "secret {s:?} in the log");
    }
}

// ---- alarms ----

fn alarm_config(topic: &str, mem_threshold: f64) -> String {
    format!(
        r#"  region = "us-east-1"
  access_key = "AKIDSTATIC0000000001"
  secret_key = "static-secret-do-not-log"
  [[outputs.cloudwatch.alarm]]
    name = "{{host}} server down"
    description = "No uptime reported by {{host}}"
    metric_name = "system_uptime"
    statistic = "SampleCount"
    period = "60s"
    comparison_operator = "LessThanThreshold"
    threshold = 1.0
    evaluation_periods = 3
    treat_missing_data = "breaching"
    alarm_actions = ["{topic}"]
    ok_actions = ["{topic}"]
  [[outputs.cloudwatch.alarm]]
    name = "{{host}} memory high"
    metric_name = "mem_used_percent"
    statistic = "Average"
    period = "300s"
    comparison_operator = "GreaterThanThreshold"
    threshold = {mem_threshold:?}
    evaluation_periods = 2
    datapoints_to_alarm = 2
    unit = "Percent"
    alarm_actions = ["{topic}"]
    [outputs.cloudwatch.alarm.dimensions]
      host = "{{host}}"
      role = "web"
"#
    )
}

#[test]
fn alarms_are_created_with_their_actions_and_left_alone_when_unchanged() {
    let moto = Moto::start();
    let rec = Recorder::start(&moto.addr);
    let dir = TempDir::new("cw-alarms");
    let topic = moto.call("sns", "create_topic", json!({"Name": "ops-chat"}))["TopicArn"]
        .as_str()
        .unwrap()
        .to_string();
    let lines = format!(
        "system,host=web1 uptime=100i {}\n",
        base_time() * 1_000_000_000
    );
    let run = |threshold: f64| {
        let cfg = config(&dir, &lines, &rec, &alarm_config(&topic, threshold));
        let (code, log) = once(&dir, &cfg, &[]);
        assert_eq!(code, Some(0), "{log}");
        log
    };
    let describe = || {
        let mut a = moto.call(
            "cloudwatch",
            "describe_alarms",
            json!({"AlarmNamePrefix": "web1 "}),
        )["MetricAlarms"]
            .as_array()
            .unwrap()
            .clone();
        a.sort_by_key(|x| x["AlarmName"].as_str().unwrap().to_string());
        a
    };

    let log = run(90.0);
    assert!(log.contains("alarm created"), "{log}");
    let first = describe();
    assert_eq!(first.len(), 2, "{first:?}");
    let (mem, down) = (&first[0], &first[1]);
    assert_eq!(down["AlarmName"], "web1 server down");
    assert_eq!(down["AlarmDescription"], "No uptime reported by web1");
    assert_eq!(down["AlarmActions"], json!([topic]));
    assert_eq!(down["OKActions"], json!([topic]));
    assert_eq!(down["Namespace"], "Sonde/E2E");
    assert_eq!(down["MetricName"], "system_uptime");
    assert_eq!(down["Statistic"], "SampleCount");
    assert_eq!(down["ComparisonOperator"], "LessThanThreshold");
    assert_eq!(down["TreatMissingData"], "breaching");
    assert_eq!(down["EvaluationPeriods"], 3);
    assert_eq!(
        down["Dimensions"],
        json!([{"Name": "host", "Value": "web1"}])
    );
    assert_eq!(mem["AlarmName"], "web1 memory high");
    assert_eq!(mem["Threshold"], 90.0);
    assert_eq!(mem["Period"], 300);
    assert_eq!(mem["DatapointsToAlarm"], 2);
    assert_eq!(mem["Unit"], "Percent");
    assert_eq!(mem["AlarmActions"], json!([topic]));
    assert_eq!(rec.of("PutMetricAlarm").len(), 2);

    // A second start with the same config reads the alarms and writes nothing.
    let log = run(90.0);
    assert_eq!(log.matches("alarm unchanged").count(), 2, "{log}");
    assert_eq!(rec.of("PutMetricAlarm").len(), 2);
    assert_eq!(rec.of("DescribeAlarms").len(), 2);
    let second = describe();
    for (a, b) in first.iter().zip(&second) {
        assert_eq!(
            a["AlarmConfigurationUpdatedTimestamp"],
            b["AlarmConfigurationUpdatedTimestamp"]
        );
    }

    // A changed threshold rewrites that alarm only.
    let log = run(75.0);
    assert!(log.contains("alarm updated"), "{log}");
    let puts = rec.of("PutMetricAlarm");
    assert_eq!(puts.len(), 3);
    assert_eq!(
        puts[2].param("AlarmName").as_deref(),
        Some("web1 memory high")
    );
    assert_eq!(describe()[0]["Threshold"], 75.0);
}

#[test]
fn a_reload_with_a_changed_alarm_updates_it() {
    let moto = Moto::start();
    let rec = Recorder::start(&moto.addr);
    let dir = TempDir::new("cw-alarm-reload");
    let topic = "arn:aws:sns:us-east-1:123456789012:ops";
    let lines = format!(
        "system,host=web1 uptime=100i {}\n",
        base_time() * 1_000_000_000
    );
    let cfg = config(&dir, &lines, &rec, &alarm_config(topic, 90.0));
    let sonde = Sonde::start(&dir, &cfg, &[]);
    let created = |n: usize| {
        wait_until(Duration::from_secs(30), || {
            sonde.log().matches("alarm created").count() >= n
        })
    };
    assert!(created(2), "{}", sonde.log());
    config(&dir, &lines, &rec, &alarm_config(topic, 60.0));
    sonde.signal(sonde_tests::SIGHUP);
    let ok = wait_until(Duration::from_secs(30), || {
        sonde.log().contains("alarm updated") && sonde.log().contains("alarm unchanged")
    });
    assert!(ok, "{}", sonde.log());
    let puts = rec.of("PutMetricAlarm");
    assert_eq!(puts.len(), 3);
    assert_eq!(puts[2].param("Threshold").as_deref(), Some("60"));
    let alarms = moto.call(
        "cloudwatch",
        "describe_alarms",
        json!({"AlarmNames": ["web1 memory high"]}),
    );
    assert_eq!(alarms["MetricAlarms"][0]["Threshold"], 60.0);
}
