//! For tests: a temp dir with scripts that is removed, and whose recorded
//! processes are killed, when dropped; whether a process is gone.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

static DIRS: AtomicUsize = AtomicUsize::new(0);

/// A temp dir for one test, removed on drop; kills the pids its scripts
/// recorded in `*.pid` files, so nothing outlives a failed test.
pub struct Dir(PathBuf);

impl Dir {
    pub fn new(tag: &str) -> Dir {
        let n = DIRS.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!(
            "sentinel-vip-notify-{tag}-{}-{n}",
            std::process::id()
        ));
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }

    pub fn path(&self, name: &str) -> String {
        self.0.join(name).to_str().unwrap().to_string()
    }

    /// Writes `body` as a script; the argv that runs it with `args`.
    pub fn script(&self, name: &str, body: &str, args: &[&str]) -> Vec<String> {
        let p = self.path(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        let mut argv = vec!["/bin/sh".to_string(), p];
        argv.extend(args.iter().map(|a| a.to_string()));
        argv
    }

    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap_or_default()
    }

    pub fn pid(&self, name: &str) -> i32 {
        self.read(name)
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        for e in std::fs::read_dir(&self.0).into_iter().flatten().flatten() {
            if e.path().extension().is_some_and(|x| x == "pid") {
                if let Ok(pid) = std::fs::read_to_string(e.path())
                    .unwrap_or_default()
                    .trim()
                    .parse::<i32>()
                {
                    // SAFETY: plain kill(2) of a pid this test's script wrote.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Gone or a zombie (PID 1 here may not reap): no longer running.
pub fn dead(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

pub async fn dies(pid: i32) -> bool {
    for _ in 0..100 {
        if dead(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}
