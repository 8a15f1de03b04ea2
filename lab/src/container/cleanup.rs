//! Finding and removing what containers leave behind: their cgroups (and
//! anything still running in them) and mounts. Touches only cgroups named
//! with [`CGROUP_PREFIX`] and mounts under a container's own directory.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{CGROUP_PREFIX, HIERARCHIES};

/// What a container named `name` left behind in `dir`: cgroups, processes,
/// mounts, nspawn's per-machine directories, files. Empty when clean.
pub fn leftovers(name: &str, dir: &Path) -> Vec<String> {
    let mut left = Vec::new();
    let suffix = format!(".{name}");
    for h in HIERARCHIES {
        for e in fs::read_dir(h).into_iter().flatten().flatten() {
            let n = e.file_name().to_string_lossy().to_string();
            if n.starts_with(CGROUP_PREFIX) && n.ends_with(&suffix) {
                left.push(format!("cgroup {}", e.path().display()));
            }
        }
    }
    for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let pid = e.file_name().to_string_lossy().to_string();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let cg = fs::read_to_string(e.path().join("cgroup")).unwrap_or_default();
        if cg.contains(CGROUP_PREFIX) && cg.contains(&suffix) {
            let comm = fs::read_to_string(e.path().join("comm")).unwrap_or_default();
            left.push(format!("process {pid} ({})", comm.trim()));
        }
    }
    let d = dir.display().to_string();
    for m in mounts() {
        if m.starts_with(&d) {
            left.push(format!("mount {m}"));
        }
    }
    for sub in ["propagate", "unix-export", "incoming"] {
        let p = Path::new("/run/systemd/nspawn").join(sub).join(name);
        if p.exists() {
            left.push(format!("nspawn directory {}", p.display()));
        }
    }
    if dir.exists() {
        left.push(format!("directory {}", dir.display()));
    }
    left
}

/// Removes the cgroups (and whatever still runs in them) of containers
/// whose test process is gone: a test killed without unwinding leaves them.
pub fn reap_stale() {
    for h in HIERARCHIES {
        for e in fs::read_dir(h).into_iter().flatten().flatten() {
            let n = e.file_name().to_string_lossy().to_string();
            let Some(owner) = n
                .strip_prefix(CGROUP_PREFIX)
                .and_then(|r| r.strip_prefix('.'))
                .and_then(|r| r.split('.').next())
            else {
                continue;
            };
            if owner.is_empty() || Path::new("/proc").join(owner).exists() {
                continue;
            }
            eprintln!(
                "container: removing abandoned cgroup {} (test process {owner} is gone)",
                e.path().display()
            );
            remove_cgroups(&[e.path()]);
        }
    }
}

/// Every pid in the cgroup trees.
pub(super) fn cgroup_pids(cgroups: &[PathBuf]) -> Vec<u32> {
    let mut pids = Vec::new();
    let mut stack: Vec<PathBuf> = cgroups.to_vec();
    while let Some(d) = stack.pop() {
        if let Ok(t) = fs::read_to_string(d.join("cgroup.procs")) {
            pids.extend(t.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
        }
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            }
        }
    }
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// Whether `pid` is PID 1 of a nested pid namespace.
pub(super) fn ns_pid_is_1(pid: u32) -> bool {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .map(|v| v.split_whitespace().collect::<Vec<_>>())
        .is_some_and(|v| v.len() >= 2 && v.last() == Some(&"1"))
}

/// Kills everything in the cgroup trees, then removes them, deepest first.
pub(super) fn remove_cgroups(cgroups: &[PathBuf]) {
    for _ in 0..100 {
        let pids = cgroup_pids(cgroups);
        if pids.is_empty() {
            break;
        }
        let _ = Command::new("kill")
            .arg("-KILL")
            .args(pids.iter().map(u32::to_string))
            .stderr(Stdio::null())
            .status();
        std::thread::sleep(Duration::from_millis(50));
    }
    for cg in cgroups {
        let mut dirs = Vec::new();
        let mut stack = vec![cg.clone()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).into_iter().flatten().flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                }
            }
            dirs.push(d);
        }
        // Children were pushed after their parents.
        for d in dirs.iter().rev() {
            if let Err(e) = fs::remove_dir(d) {
                if d.exists() {
                    eprintln!("container: cannot remove cgroup {}: {e}", d.display());
                }
            }
        }
    }
}

/// Mount points, from the host's mount table.
fn mounts() -> Vec<String> {
    let t = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    t.lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
        .collect()
}

/// Lazily unmounts anything mounted under `dir` (nspawn mounts in its own
/// namespace, so normally nothing is), so that removing it never reaches
/// into another file system.
pub(super) fn unmount_under(dir: &Path) {
    let d = dir.display().to_string();
    let mut under: Vec<String> = mounts().into_iter().filter(|m| m.starts_with(&d)).collect();
    under.sort_unstable_by_key(|m| std::cmp::Reverse(m.len()));
    for m in under {
        let _ = Command::new("umount").args(["-l", &m]).status();
    }
}
