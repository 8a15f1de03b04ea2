//! A real Prometheus server (Debian's `prometheus`) in the client
//! namespace, scraping the watchers' `/metrics` as a monitoring host would:
//! its own config, rules and TSDB in the lab's dir, listening on the
//! client's lab address. Tests ask it through its HTTP API. It observes
//! only; dropping it stops it (the namespace's removal would too).

use std::collections::BTreeMap;
use std::fs;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::command::{find_in_path, write_file};
use crate::http::{get_in, urlencode};
use crate::{wait_until, Lab, CLIENT_IP};

/// Where it listens, inside the client namespace.
const PORT: u16 = 9090;

/// One series of an instant query's answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Series {
    /// A label's value ("" when absent).
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map_or("", String::as_str)
    }
}

pub struct Prometheus {
    child: Option<Child>,
    ns: String,
    addr: SocketAddr,
    out: PathBuf,
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` (`ip:port`) every `interval`,
    /// evaluating `rules` (a rule file's YAML, may be empty) as often, and
    /// returns once it answers `/-/ready`.
    pub fn start(lab: &Lab, targets: &[String], interval: Duration, rules: &str) -> Prometheus {
        assert!(
            find_in_path("prometheus").is_some(),
            "`prometheus` in PATH is needed (Debian package prometheus; scripts/deps.sh installs it)"
        );
        let dir = lab.dir.join("prometheus");
        fs::create_dir_all(dir.join("tsdb"))
            .unwrap_or_else(|e| panic!("lab: cannot create {}: {e}", dir.display()));
        let secs = format!("{}ms", interval.as_millis());
        let list = targets
            .iter()
            .map(|t| format!("\"{t}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let rule_file = dir.join("rules.yml");
        write_file(
            &rule_file,
            if rules.is_empty() {
                "groups: []\n"
            } else {
                rules
            },
        );
        let config = dir.join("prometheus.yml");
        write_file(
            &config,
            &format!(
                "global:\n  scrape_interval: {secs}\n  scrape_timeout: {secs}\n  evaluation_interval: {secs}\n\
                 rule_files: [\"{}\"]\n\
                 scrape_configs:\n  - job_name: sentinel-vip\n    static_configs:\n      - targets: [{list}]\n",
                rule_file.display()
            ),
        );
        let addr: SocketAddr = format!("{CLIENT_IP}:{PORT}").parse().expect("address");
        let out = dir.join("prometheus.out");
        let f = fs::File::create(&out).expect("lab: create prometheus.out");
        let f2 = f.try_clone().expect("lab: dup prometheus.out");
        let child = Command::new("ip")
            .args(["netns", "exec", &lab.ns_client(), "prometheus"])
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(f)
            .stderr(f2)
            .spawn()
            .unwrap_or_else(|e| panic!("lab: cannot start prometheus: {e}"));
        let mut p = Prometheus {
            child: Some(child),
            ns: lab.ns_client(),
            addr,
            out,
        };
        let ready = wait_until(Duration::from_secs(30), Duration::from_millis(100), || {
            p.get("/-/ready").is_ok_and(|(code, _)| code == 200)
        });
        if !ready {
            let log = fs::read_to_string(&p.out).unwrap_or_default();
            p.stop();
            panic!("lab: prometheus not ready within 30 s: {log}");
        }
        p
    }

    fn get(&self, target: &str) -> Result<(u16, String), String> {
        get_in(&self.ns, self.addr, target)
    }

    /// An instant query (`/api/v1/query`) now: every series of the vector
    /// answer (a scalar answer is one series without labels).
    pub fn query(&self, expr: &str) -> Result<Vec<Series>, String> {
        let (code, body) = self.get(&format!("/api/v1/query?query={}", urlencode(expr)))?;
        let v: Value = serde_json::from_str(&body)
            .map_err(|e| format!("query {expr:?}: HTTP {code}, unparsable {body:?}: {e}"))?;
        if v["status"] != "success" {
            return Err(format!("query {expr:?}: HTTP {code}: {body}"));
        }
        let data = &v["data"];
        let one = |labels: &Value, value: &Value| -> Result<Series, String> {
            let value = value[1]
                .as_str()
                .and_then(|s| s.parse::<f64>().ok())
                .ok_or_else(|| format!("query {expr:?}: bad sample {value}"))?;
            let labels = labels
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                        .collect()
                })
                .unwrap_or_default();
            Ok(Series { labels, value })
        };
        match data["resultType"].as_str() {
            Some("vector") => data["result"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| one(&s["metric"], &s["value"]))
                .collect(),
            Some("scalar") => Ok(vec![one(&Value::Null, &data["result"])?]),
            other => Err(format!("query {expr:?}: unexpected result type {other:?}")),
        }
    }

    /// Waits until every target has been scraped successfully (`up` is 1
    /// for `want` targets); panics with the last answer otherwise.
    pub fn wait_up(&self, want: usize, timeout: Duration) {
        let mut last = Err(String::new());
        let ok = wait_until(timeout, Duration::from_millis(200), || {
            last = self.query("up == 1");
            last.as_ref().is_ok_and(|v| v.len() == want)
        });
        assert!(
            ok,
            "prometheus: {want} targets not up within {timeout:?}: {last:?}; log: {}",
            fs::read_to_string(&self.out).unwrap_or_default()
        );
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.stop();
    }
}
