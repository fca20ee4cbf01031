use super::*;
use std::io::{BufRead, BufReader, Read};
use std::sync::{Arc, Mutex};

/// A request as the test server saw it: headers (lowercase names) and the body, unzipped.
#[derive(Clone, Debug)]
struct Seen {
    headers: Vec<(String, String)>,
    body: String,
    wire_len: usize,
}

impl Seen {
    fn header(&self, k: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }
}

type Reply = Box<dyn Fn(&Seen) -> String + Send>;

/// Serves each request with `reply`, one request per connection, on a thread.
fn server(reply: Reply) -> (u16, Arc<Mutex<Vec<Seen>>>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut headers = Vec::new();
            let mut len = 0;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                if let Some((k, v)) = line.split_once(": ") {
                    if k.eq_ignore_ascii_case("content-length") {
                        len = v.parse().unwrap();
                    }
                    headers.push((k.to_ascii_lowercase(), v.to_string()));
                }
            }
            let mut raw = vec![0; len];
            if r.read_exact(&mut raw).is_err() {
                continue;
            }
            let gz = headers
                .iter()
                .any(|(k, v)| k == "content-encoding" && v == "gzip");
            let body = if gz {
                let mut out = String::new();
                flate2::read::GzDecoder::new(&raw[..])
                    .read_to_string(&mut out)
                    .unwrap();
                out
            } else {
                String::from_utf8(raw).unwrap()
            };
            let seen = Seen {
                headers,
                body,
                wire_len: len,
            };
            let answer = reply(&seen);
            log.lock().unwrap().push(seen);
            let _ = s.write_all(answer.as_bytes());
        }
    });
    (port, seen)
}

fn http(status: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

const OK: &str = "<PutMetricDataResponse><ResponseMetadata><RequestId>1</RequestId></ResponseMetadata></PutMetricDataResponse>";

fn error(code: &str, msg: &str) -> String {
    format!(
        "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{msg}</Message></Error></ErrorResponse>"
    )
}

async fn output(port: u16, extra: &str) -> Box<dyn Output> {
    let t = format!(
        "region = 'eu-west-1'\naccess_key = 'AKIDTEST'\nsecret_key = 'sekrit'\n\
         endpoint_url = 'http://127.0.0.1:{port}/'\nnamespace = 'Test/NS'\n{extra}"
    );
    let ctx = BuildContext {
        hostname: "web1".into(),
        id: "cloudwatch".into(),
        ..Default::default()
    };
    let mut out = build(toml::from_str(&t).unwrap(), &ctx).unwrap();
    out.connect().await.unwrap();
    out
}

fn members(body: &str) -> usize {
    body.matches(".MetricName=").count()
}

#[tokio::test]
async fn signs_and_sends_query_requests() {
    let (port, seen) = server(Box::new(|_| http("200 OK", OK)));
    let mut out = output(port, "token = 'sess'").await;
    out.write(&[Metric::new("cpu", 1_700_000_000_000_000_000)
        .with_tag("host", "web1")
        .with_field("usage_idle", 97.5)])
        .await
        .unwrap();
    let s = seen.lock().unwrap()[0].clone();
    assert!(
        s.body
            .starts_with("Action=PutMetricData&Version=2010-08-01&Namespace=Test%2FNS&")
    );
    assert!(
        s.body
            .contains("MetricData.member.1.MetricName=cpu_usage_idle")
    );
    let auth = s.header("authorization").unwrap();
    assert!(
        auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDTEST/"),
        "{auth}"
    );
    assert!(
        auth.contains("/eu-west-1/monitoring/aws4_request"),
        "{auth}"
    );
    assert!(
        auth.contains("SignedHeaders=content-type;host;x-amz-date"),
        "{auth}"
    );
    assert!(!auth.contains("sekrit"));
    assert_eq!(s.header("x-amz-security-token"), Some("sess"));
    assert!(s.header("x-amz-date").is_some());
    assert!(
        s.header("content-type")
            .unwrap()
            .starts_with("application/x-www-form-urlencoded")
    );
    assert_eq!(s.header("content-encoding"), None);
}

#[tokio::test]
async fn large_bodies_are_gzipped_and_split() {
    let (port, seen) = server(Box::new(|_| http("200 OK", OK)));
    let mut out = output(port, "").await;
    let batch: Vec<Metric> = (0..2500)
        .map(|i| {
            Metric::new("m", i)
                .with_tag("host", "web1")
                .with_field("v", i as f64)
        })
        .collect();
    out.write(&batch).await.unwrap();
    let seen = seen.lock().unwrap();
    let counts: Vec<usize> = seen.iter().map(|s| members(&s.body)).collect();
    assert_eq!(counts, [1000, 1000, 500]);
    for s in seen.iter() {
        assert_eq!(s.header("content-encoding"), Some("gzip"));
        assert!(
            s.wire_len < s.body.len() / 3,
            "{} vs {}",
            s.wire_len,
            s.body.len()
        );
        assert!(
            s.header("authorization")
                .unwrap()
                .contains("content-encoding")
        );
    }
}

#[tokio::test]
async fn throttling_is_retried_then_succeeds() {
    let n = Arc::new(Mutex::new(0));
    let c = n.clone();
    let (port, seen) = server(Box::new(move |_| {
        let mut n = c.lock().unwrap();
        *n += 1;
        if *n == 1 {
            http("400 Bad Request", &error("Throttling", "Rate exceeded"))
        } else if *n == 2 {
            http("503 Service Unavailable", "")
        } else {
            http("200 OK", OK)
        }
    }));
    let mut out = output(port, "").await;
    out.write(&[Metric::new("m", 0).with_field("v", 1.0)])
        .await
        .unwrap();
    assert_eq!(seen.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn persistent_5xx_is_a_retry_and_the_sent_part_is_not_sent_again() {
    // The first request (1000 datums) is taken, the second keeps failing.
    let n = Arc::new(Mutex::new(0));
    let c = n.clone();
    let (port, seen) = server(Box::new(move |_| {
        let mut n = c.lock().unwrap();
        *n += 1;
        if *n == 1 || *n > 4 {
            http("200 OK", OK)
        } else {
            http("500 Internal Server Error", "")
        }
    }));
    let mut out = output(port, "").await;
    let batch: Vec<Metric> = (0..1500)
        .map(|i| Metric::new("m", i).with_field("v", i as f64))
        .collect();
    match out.write(&batch).await {
        Err(WriteError::Retry { .. }) => {}
        other => panic!("expected a retry: {other:?}"),
    }
    assert_eq!(seen.lock().unwrap().len(), 4);
    // The agent hands the same batch back: only the unsent 500 datums go.
    out.write(&batch).await.unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 5);
    assert_eq!(members(&seen[4].body), 500);
    assert!(seen[4].body.contains("MetricData.member.1.Value=1000&"));
}

#[tokio::test]
async fn validation_errors_drop_only_the_offending_datum() {
    let (port, seen) = server(Box::new(|s| {
        if s.body.contains("MetricName=m_bad") {
            http(
                "400 Bad Request",
                &error(
                    "InvalidParameterValue",
                    "The value for m_bad is out of range",
                ),
            )
        } else {
            http("200 OK", OK)
        }
    }));
    let mut out = output(port, "").await;
    let mut batch: Vec<Metric> = (0..10)
        .map(|i| Metric::new("m", i).with_field("good", i as f64))
        .collect();
    batch[6].add_field("bad", 1.0);
    batch.push(Metric::new("s", 0).with_field("text", "only a string"));
    match out.write(&batch).await {
        Err(WriteError::Partial { rejected, reason }) => {
            assert_eq!(rejected, 2, "{reason}");
            assert!(reason.contains("m_bad refused"), "{reason}");
            assert!(reason.contains("out of range"), "{reason}");
            assert!(reason.contains("without a numeric field"), "{reason}");
        }
        other => panic!("expected a partial rejection: {other:?}"),
    }
    // Every good datum arrived exactly once.
    let seen = seen.lock().unwrap();
    let mut good = 0;
    for s in seen.iter() {
        if !s.body.contains("m_bad") {
            good += s.body.matches("MetricName=m_good").count();
        }
    }
    assert_eq!(good, 10);
}

#[tokio::test]
async fn expired_credentials_are_a_retry() {
    let (port, _seen) = server(Box::new(|_| {
        http(
            "403 Forbidden",
            &error(
                "ExpiredToken",
                "The security token included in the request is expired",
            ),
        )
    }));
    let mut out = output(port, "").await;
    match out.write(&[Metric::new("m", 0).with_field("v", 1.0)]).await {
        Err(WriteError::Retry { reason, .. }) => {
            assert!(reason.contains("ExpiredToken"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn alarms_are_created_once_and_not_rewritten() {
    // A tiny alarm store: DescribeAlarms answers what PutMetricAlarm stored.
    let store: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let st = store.clone();
    let (port, seen) = server(Box::new(move |s| {
        if s.body.starts_with("Action=DescribeAlarms") {
            let member = st.lock().unwrap().clone().unwrap_or_default();
            http(
                "200 OK",
                &format!(
                    "<DescribeAlarmsResponse><DescribeAlarmsResult><MetricAlarms>{member}</MetricAlarms></DescribeAlarmsResult></DescribeAlarmsResponse>"
                ),
            )
        } else if s.body.starts_with("Action=PutMetricAlarm") {
            assert!(s.body.contains("AlarmName=web1-down"), "{}", s.body);
            *st.lock().unwrap() = Some(
                "<member><AlarmName>web1-down</AlarmName><Namespace>Test/NS</Namespace>\
                 <MetricName>system_uptime</MetricName><Statistic>SampleCount</Statistic>\
                 <Period>60</Period><EvaluationPeriods>2</EvaluationPeriods><Threshold>1.0</Threshold>\
                 <ComparisonOperator>LessThanThreshold</ComparisonOperator>\
                 <TreatMissingData>breaching</TreatMissingData><ActionsEnabled>true</ActionsEnabled>\
                 <Dimensions><member><Name>host</Name><Value>web1</Value></member></Dimensions>\
                 <AlarmActions><member>arn:aws:sns:eu-west-1:123456789012:ops</member></AlarmActions>\
                 <OKActions/><InsufficientDataActions/></member>"
                    .into(),
            );
            http("200 OK", "<PutMetricAlarmResponse/>")
        } else {
            http("200 OK", OK)
        }
    }));
    let alarm = "[[alarm]]\nname = '{host}-down'\nmetric_name = 'system_uptime'\nstatistic = 'SampleCount'\n\
                 comparison_operator = 'LessThanThreshold'\nthreshold = 1.0\nevaluation_periods = 2\n\
                 treat_missing_data = 'breaching'\nalarm_actions = ['arn:aws:sns:eu-west-1:123456789012:ops']";
    let _first = output(port, alarm).await;
    let _second = output(port, alarm).await;
    let actions: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.body.split('&').next().unwrap().to_string())
        .collect();
    assert_eq!(
        actions,
        [
            "Action=DescribeAlarms",
            "Action=PutMetricAlarm",
            "Action=DescribeAlarms"
        ]
    );
}

#[test]
fn config_errors_name_the_key() {
    let ctx = BuildContext::default();
    for (t, key) in [
        ("access_key = 'a'", "secret_key"),
        ("web_identity_token_file = '/t'", "web_identity_token_file"),
        ("max_dimensions = 31", "max_dimensions"),
        ("namespace = ''", "namespace"),
        ("namespace = 'AWS/EC2'", "namespace"),
        ("endpoint_url = 'ftp://x'", "endpoint_url"),
        ("regoin = 'x'", "regoin"),
        (
            "[[alarm]]\nname = 'a'\nmetric_name = 'm'\ncomparison_operator = 'Bigger'\nthreshold = 1",
            "alarm",
        ),
    ] {
        match build(toml::from_str(t).unwrap(), &ctx) {
            Err(BuildError::Config(c)) => assert_eq!(c.path[0], key, "{t}: {c}"),
            Err(e) => panic!("{t}: {e}"),
            Ok(_) => panic!("{t}: accepted"),
        }
    }
}

#[test]
fn signing_is_deterministic_for_a_fixed_time() {
    let c = Credentials::new("AKID", "secret", None, None, "t");
    let t = SystemTime::UNIX_EPOCH + StdDuration::from_secs(1_700_000_000);
    let a = sign_request(
        &c,
        "us-east-1",
        "https://monitoring.us-east-1.amazonaws.com/",
        b"x=1",
        false,
        t,
    )
    .unwrap();
    let b = sign_request(
        &c,
        "us-east-1",
        "https://monitoring.us-east-1.amazonaws.com/",
        b"x=1",
        false,
        t,
    )
    .unwrap();
    assert_eq!(a, b);
    let other = sign_request(
        &c,
        "us-east-1",
        "https://monitoring.us-east-1.amazonaws.com/",
        b"x=2",
        false,
        t,
    )
    .unwrap();
    assert_ne!(a, other);
    let date = a.iter().find(|(k, _)| *k == "x-amz-date").unwrap();
    assert_eq!(date.1, "20231114T221320Z");
}

#[tokio::test]
async fn a_request_refused_as_a_whole_is_not_probed_datum_by_datum() {
    let (port, seen) = server(Box::new(|_| {
        http(
            "400 Bad Request",
            &error("InvalidParameterValue", "nothing goes"),
        )
    }));
    let mut out = output(port, "").await;
    let batch: Vec<Metric> = (0..1000)
        .map(|i| Metric::new("m", i).with_field("v", i as f64))
        .collect();
    match out.write(&batch).await {
        Err(WriteError::Reject { reason }) => assert!(reason.contains("nothing goes"), "{reason}"),
        other => panic!("{other:?}"),
    }
    // One request, then halving down to ten single datums: far fewer than 1,000 requests.
    let n = seen.lock().unwrap().len();
    assert!(n < 60, "{n} requests");
}
