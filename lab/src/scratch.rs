//! A scratch network namespace for tests that need one host and nothing
//! else (no Redis, no Sentinel): a loopback, an interface `d0` with the
//! lab's addresses, and its own `/etc` files (`ip netns exec` bind-mounts
//! `/etc/netns/NAME/*` over `/etc`, so a test can give the namespace its
//! own `resolv.conf`, `hosts` and `nsswitch.conf`). Everything it creates,
//! namespace, temp dir and `/etc/netns/NAME`, goes on drop, or with the
//! next lab if the test process was killed.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::command::{ip, ip_in, must, write_file};
use crate::topology::OWNER_FILE;
use crate::topology::{delete_ns, kill_all_in, lab_dir, reap_stale_labs, unique_prefix};

pub struct Scratch {
    pub name: String,
    /// The temp dir for the test's files.
    pub dir: PathBuf,
    etc: PathBuf,
}

impl Scratch {
    /// A namespace with `lo` up and `d0` holding `addrs` (CIDRs).
    pub fn new(addrs: &[&str]) -> Scratch {
        reap_stale_labs();
        let prefix = unique_prefix();
        let name = format!("{prefix}sc");
        let dir = lab_dir(&prefix);
        fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("lab: cannot create {}: {e}", dir.display()));
        write_file(&dir.join(OWNER_FILE), &std::process::id().to_string());
        must(ip(&["netns", "add", &name]));
        let s = Scratch {
            etc: Path::new("/etc/netns").join(&name),
            name,
            dir,
        };
        ip_in(&s.name, &["link", "set", "lo", "up"]);
        // A veth pair, not a dummy: not every kernel the suite runs on has
        // the dummy driver. The peer holds no address, so what is routed
        // out of d0 goes nowhere.
        ip_in(
            &s.name,
            &["link", "add", "d0", "type", "veth", "peer", "name", "d0p"],
        );
        ip_in(&s.name, &["link", "set", "d0p", "up"]);
        ip_in(&s.name, &["link", "set", "d0", "up"]);
        for a in addrs {
            ip_in(&s.name, &["addr", "add", a, "dev", "d0", "nodad"]);
        }
        s
    }

    /// Gives the namespace its own `/etc/<file>` (for the commands run
    /// through [`Scratch::run`] from now on).
    pub fn etc_file(&self, file: &str, text: &str) {
        fs::create_dir_all(&self.etc)
            .unwrap_or_else(|e| panic!("lab: cannot create {}: {e}", self.etc.display()));
        write_file(&self.etc.join(file), text);
    }

    /// Runs `program args` in the namespace (`ip netns exec`), as root.
    pub fn run(&self, program: &Path, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "lab: cannot run {} in {}: {e}",
                    program.display(),
                    self.name
                )
            })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        kill_all_in(&self.name);
        delete_ns(&self.name);
        let _ = fs::remove_dir_all(&self.etc);
        let _ = fs::remove_dir_all(&self.dir);
    }
}
