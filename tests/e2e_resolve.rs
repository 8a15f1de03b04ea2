//! Name resolution in a pass (issue 22, defect 5), on one scratch host in
//! a network namespace of its own, whose `/etc/hosts`, `nsswitch.conf` and
//! `resolv.conf` the test writes: a hook trusting its arguments
//! (`sentinels = []`) with a host name as `TO_IP`. A name that does not
//! exist is permanent (exit 2); a resolver that refuses or does not
//! answer is temporary (exit 1, Sentinel retries), and a pass never waits
//! for it longer than `sentinel_timeout_ms`.

use std::path::Path;
use std::time::{Duration, Instant};

use sentinel_vip_lab::e2e_enabled;
use sentinel_vip_lab::scratch::Scratch;

const TIMEOUT_MS: u64 = 300;

#[test]
fn hook_to_ip_resolution_is_bounded_and_classified() {
    if !e2e_enabled() {
        return;
    }
    let bin = Path::new(env!("CARGO_BIN_EXE_sentinel-vip"));
    // 198.18.0.0/24 on the dummy: a name server there is routed into
    // the dummy, which drops everything; 127.0.0.1:53 refuses at once.
    let s = Scratch::new(&["192.0.2.11/24", "198.18.0.1/24"]);
    let cfg = s.dir.join("sentinel-vip.toml");
    std::fs::write(
        &cfg,
        format!(
            "sentinels = []\nsentinel_timeout_ms = {TIMEOUT_MS}\nlock_file = \"{dir}/lock\"\n\
             control_socket = \"{dir}/control.sock\"\n[announce]\ncount = 1\n\
             [[vip]]\nmaster = \"mymaster\"\naddress = \"192.0.2.100/24\"\ninterface = \"d0\"\n",
            dir = s.dir.display()
        ),
    )
    .unwrap();
    s.etc_file("hosts", "127.0.0.1 localhost\n192.0.2.11 redis-a.test\n");
    let hook = |to: &str| {
        let t = Instant::now();
        let o = s.run(
            bin,
            &[
                "--config",
                cfg.to_str().unwrap(),
                "hook",
                "mymaster",
                "leader",
                "start",
                "192.0.2.12",
                "6379",
                to,
                "6379",
            ],
        );
        (o, t.elapsed())
    };
    let files_only = "hosts: files\n";
    let dns = "hosts: files dns\n";
    #[rustfmt::skip]
    let cases: [(&str, &str, &str, &str, i32); 5] = [
        ("in /etc/hosts", files_only, "", "redis-a.test", 0),
        ("no such name", files_only, "", "nowhere.test", 2),
        ("name server refuses", dns, "nameserver 127.0.0.1\n", "nowhere.test", 1),
        ("name server silent", dns, "nameserver 198.18.0.53\noptions timeout:3 attempts:2\n", "nowhere.test", 1),
        ("back to the host's own", files_only, "", "192.0.2.12", 0),
    ];
    let mut problems = Vec::new();
    for (what, nsswitch, resolv, to, want) in cases {
        s.etc_file("nsswitch.conf", nsswitch);
        s.etc_file("resolv.conf", resolv);
        let (o, took) = hook(to);
        let err = String::from_utf8_lossy(&o.stderr);
        let last = err.trim().lines().last().unwrap_or("").to_string();
        eprintln!(
            "  {what}: TO_IP {to}: exit {:?} in {} ms: {last}",
            o.status.code(),
            took.as_millis()
        );
        if o.status.code() != Some(want) {
            problems.push(format!(
                "{what}: exit {:?}, want {want}: {last}",
                o.status.code()
            ));
        }
        // The bound: the timeout, plus a process start and a Sentinel-less
        // pass (generous: the machine is shared).
        if took > Duration::from_millis(TIMEOUT_MS + 1500) {
            problems.push(format!("{what}: took {} ms", took.as_millis()));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("; "));
}
