//! The upgrade from 0.1's layout: the config `root:redis 0640` (a
//! statoverride the 0.1 postinst made) and the watcher's user a member of
//! group `redis` (its sysusers.d line). The 0.1 package is this build's
//! .deb repacked with 0.1's version, postinst and sysusers.d file, so that
//! the upgrade exercises exactly what changed in the layout; the binary
//! inside is the same either way.

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::host::Host;
use crate::phases::{failover_to, hook_answered};
use crate::CT;
use sentinel_vip_lab::Lab;

/// 0.1's statoverride, from its postinst.
const OLD_STATOVERRIDE: &str = r#"    if [ -z "$2" ] && ! dpkg-statoverride --list "$CONFIG" >/dev/null 2>&1; then
        dpkg-statoverride --update --add root redis 0640 "$CONFIG"
    fi
"#;
/// 0.1's sysusers.d line putting the watcher into Sentinel's group.
const OLD_MEMBERSHIP: &str = "m sentinel-vip redis\n";
const CONFIG: &str = "/etc/sentinel-vip/sentinel-vip.toml";

/// Installs the 0.1-layout package (see the module doc).
pub fn install_old_layout(host: &Host, deb: &Path) {
    let work = tempdir();
    let tree = work.join("tree");
    run(Command::new("dpkg-deb").arg("-R").arg(deb).arg(&tree));
    let control = tree.join("DEBIAN/control");
    let text = fs::read_to_string(&control).expect("control");
    let text: String = text
        .lines()
        .map(|l| {
            if l.starts_with("Version:") {
                "Version: 0.1.0-1".to_string()
            } else {
                l.to_string()
            }
        })
        .map(|l| l + "\n")
        .collect();
    fs::write(&control, text).expect("write control");
    // The postinst's statoverride block, as 0.1 had it.
    let postinst = tree.join("DEBIAN/postinst");
    let p = fs::read_to_string(&postinst).expect("postinst");
    let (start, end) = (
        p.find("    current=$(dpkg-statoverride")
            .expect("new statoverride block"),
        p.find("fi\n\ncase").expect("end of the configure block"),
    );
    let old = format!("{}{OLD_STATOVERRIDE}{}", &p[..start], &p[end..]);
    fs::write(&postinst, old).expect("write postinst");
    let sysusers = tree.join("usr/lib/sysusers.d/sentinel-vip.conf");
    let mut s = fs::read_to_string(&sysusers).expect("sysusers");
    s.push_str(OLD_MEMBERSHIP);
    fs::write(&sysusers, &s).expect("write sysusers");
    // Its checksum, where the package lists them, so that dpkg --verify
    // stays clean.
    let md5 = tree.join("DEBIAN/md5sums");
    if let Ok(text) = fs::read_to_string(&md5) {
        let sum = run(Command::new("md5sum").arg(&sysusers));
        let sum = sum
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
        let sums: String = text
            .lines()
            .map(|l| {
                if l.ends_with("usr/lib/sysusers.d/sentinel-vip.conf") {
                    format!("{sum}  usr/lib/sysusers.d/sentinel-vip.conf\n")
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        fs::write(&md5, sums).expect("write md5sums");
    }
    let old_deb = work.join("sentinel-vip_0.1.0-1.deb");
    run(Command::new("dpkg-deb")
        .args(["--root-owner-group", "-b"])
        .arg(&tree)
        .arg(&old_deb));
    let inside = "/var/tmp/sentinel-vip_0.1.0-1.deb";
    fs::copy(&old_deb, host.ct.path(inside)).expect("copy the 0.1 .deb in");
    let _ = fs::remove_dir_all(&work);
    host.apt_install(&[inside.to_string()]);
    assert_eq!(
        host.sh(&format!("stat -c '%U:%G %a' {CONFIG}")),
        "root:redis 640",
        "0.1's layout"
    );
    assert!(
        host.sh("id -nG sentinel-vip")
            .split_whitespace()
            .any(|g| g == "redis"),
        "0.1's watcher user is in group redis"
    );
}

/// (0) With 0.1's layout running and handing off, `apt install` of this
/// package: the config becomes the watcher's, the running watcher is
/// restarted on the new binary and keeps the VIP, hooks still hand off.
pub fn upgrade(lab: &Lab, host: &Host, deb: &Path) {
    failover_to(lab, CT);
    let before = hook_answered(host);
    let pid = host.prop("sentinel-vip", "MainPID");
    let inside = "/var/tmp/sentinel-vip.deb";
    fs::copy(deb, host.ct.path(inside)).expect("copy the .deb in");
    host.apt_install(&[inside.to_string()]);
    assert_eq!(
        host.sh("dpkg-query -W -f='${Version}' sentinel-vip"),
        env!("CARGO_PKG_VERSION").to_string() + "-1"
    );
    assert_eq!(
        host.sh(&format!("stat -c '%U:%G %a' {CONFIG}")),
        "root:sentinel-vip 640",
        "the upgrade makes the config the watcher's"
    );
    assert_eq!(
        host.sh(&format!("dpkg-statoverride --list {CONFIG}")),
        format!("root sentinel-vip 640 {CONFIG}")
    );
    assert_eq!(host.sh("systemctl is-active sentinel-vip"), "active");
    assert_ne!(
        host.prop("sentinel-vip", "MainPID"),
        pid,
        "restarted on the new binary"
    );
    lab.expect_vip_still_on(CT, std::time::Duration::from_secs(10), "after the upgrade");
    failover_to(lab, 1);
    crate::phases::wait_hook_line(
        host,
        crate::phases::ANSWERED,
        before,
        std::time::Duration::from_secs(10),
    );
}

fn tempdir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("sv-upgrade-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).expect("temp dir");
    d
}

fn run(c: &mut Command) -> String {
    let o = c.output().unwrap_or_else(|e| panic!("{c:?}: {e}"));
    assert!(
        o.status.success(),
        "{c:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}
