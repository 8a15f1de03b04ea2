//! A throwaway virtual machine on an old kernel, for what only a kernel
//! can show (Debian 11's 5.10, which drops `IFA_PROTO`; see
//! `scripts/old-kernel.sh`): qemu-system-x86_64 (TCG: no KVM needed),
//! no network device at all, an initramfs of our making (busybox from
//! Debian's `busybox-static`, the binary under test with the shared
//! libraries it needs, a config and a script), and the serial console as
//! the only output. The guest's script prints lines the test reads; the
//! guest powers itself off, or is killed at the deadline.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The script, in the checkout this crate was built from.
const KERNEL_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/old-kernel.sh");
/// `busybox-static`'s binary (scripts/deps.sh installs the package).
const BUSYBOX: &str = "/bin/busybox";
const QEMU: &str = "qemu-system-x86_64";

/// One file of the guest's root.
pub enum Entry {
    Dir(&'static str),
    /// A character device (major, minor): `/dev/console`, which the kernel
    /// opens for `/init` before anything could mount devtmpfs.
    CharDev(&'static str, u32, u32),
    /// A file with its contents and mode.
    File(String, Vec<u8>, u32),
}

/// The old kernel: `vmlinuz` and `dummy.ko`, or one line saying why not.
pub fn old_kernel() -> Result<(PathBuf, PathBuf), String> {
    let out = Command::new(KERNEL_SCRIPT)
        .output()
        .map_err(|e| format!("cannot run {KERNEL_SCRIPT}: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(err.trim().lines().last().unwrap_or("failed").to_string());
    }
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    Ok((dir.join("vmlinuz"), dir.join("dummy.ko")))
}

/// Whether qemu and busybox are here, or one line saying what is missing.
pub fn tools() -> Result<(), String> {
    let qemu = Command::new(QEMU).arg("--version").output();
    if !qemu.is_ok_and(|o| o.status.success()) {
        return Err(format!(
            "{QEMU} is missing: apt-get install qemu-system-x86 (scripts/deps.sh does)"
        ));
    }
    let bb = Command::new(BUSYBOX).arg("true").output();
    if !bb.is_ok_and(|o| o.status.success()) {
        return Err(format!(
            "{BUSYBOX} is missing: apt-get install busybox-static (scripts/deps.sh does)"
        ));
    }
    Ok(())
}

/// `bin` (stripped of debug information, a tenth of the size) and the
/// shared libraries `ldd` names for it, as guest files under `/sv` and at
/// their own paths.
pub fn program(bin: &Path, scratch: &Path) -> Result<Vec<Entry>, String> {
    let stripped = scratch.join("sentinel-vip");
    let o = Command::new("objcopy")
        .arg("--strip-debug")
        .arg(bin)
        .arg(&stripped)
        .output()
        .map_err(|e| format!("cannot run objcopy (binutils): {e}"))?;
    if !o.status.success() {
        return Err(format!(
            "objcopy: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ));
    }
    let read = |p: &Path| fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let mut files = vec![Entry::File(
        "sv/sentinel-vip".into(),
        read(&stripped)?,
        0o755,
    )];
    let ldd = Command::new("ldd")
        .arg(bin)
        .output()
        .map_err(|e| format!("cannot run ldd: {e}"))?;
    // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" and
    // "/lib64/ld-linux-x86-64.so.2 (0x…)": every absolute path.
    for word in String::from_utf8_lossy(&ldd.stdout).split_whitespace() {
        if word.starts_with('/') {
            let real = fs::canonicalize(word).map_err(|e| format!("{word}: {e}"))?;
            files.push(Entry::File(
                word.trim_start_matches('/').into(),
                read(&real)?,
                0o755,
            ));
        }
    }
    Ok(files)
}

/// The guest's root: busybox as `/bin/busybox` and `/init` running
/// `script` (busybox sh), plus `files`.
pub fn initramfs(script: &str, files: Vec<Entry>) -> Result<Vec<u8>, String> {
    let bb = fs::read(BUSYBOX).map_err(|e| format!("{BUSYBOX}: {e}"))?;
    let init = format!("#!/bin/busybox sh\n/bin/busybox --install -s /bin\n{script}");
    let mut all = vec![
        Entry::Dir("bin"),
        Entry::Dir("dev"),
        Entry::CharDev("dev/console", 5, 1),
        Entry::Dir("proc"),
        Entry::Dir("sys"),
        Entry::Dir("run"),
        Entry::Dir("tmp"),
        Entry::Dir("sv"),
        Entry::Dir("lib"),
        Entry::Dir("lib64"),
        Entry::Dir("lib/x86_64-linux-gnu"),
        Entry::File("bin/busybox".into(), bb, 0o755),
        Entry::File("init".into(), init.into_bytes(), 0o755),
    ];
    all.extend(files);
    let mut out = Vec::new();
    for (i, e) in all.iter().enumerate() {
        match e {
            Entry::Dir(name) => cpio_entry(&mut out, i, name, 0o040755, &[], (0, 0)),
            Entry::CharDev(name, ma, mi) => {
                cpio_entry(&mut out, i, name, 0o020600, &[], (*ma, *mi))
            }
            Entry::File(name, data, mode) => {
                cpio_entry(&mut out, i, name, 0o100000 | mode, data, (0, 0))
            }
        }
    }
    cpio_entry(&mut out, all.len(), "TRAILER!!!", 0, &[], (0, 0));
    Ok(out)
}

/// One "newc" cpio record, as the kernel's initramfs unpacker reads it.
fn cpio_entry(out: &mut Vec<u8>, ino: usize, name: &str, mode: u32, data: &[u8], rdev: (u32, u32)) {
    let pad = |out: &mut Vec<u8>| {
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
    };
    let fields = [
        ino as u32 + 1,
        mode,
        0, // uid
        0, // gid
        1, // nlink
        0, // mtime
        data.len() as u32,
        0, // devmajor
        0, // devminor
        rdev.0,
        rdev.1,
        name.len() as u32 + 1,
        0,
    ];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08x}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad(out);
    out.extend_from_slice(data);
    pad(out);
}

/// Boots `kernel` with `initrd` (no network device, serial console) and
/// returns the console's output once the guest powers off; an error with
/// the output so far at `deadline`.
pub fn boot(
    kernel: &Path,
    initrd: &[u8],
    scratch: &Path,
    deadline: Duration,
) -> Result<String, String> {
    let image = scratch.join("initrd.cpio");
    fs::write(&image, initrd).map_err(|e| format!("{}: {e}", image.display()))?;
    // TCG always: where /dev/kvm exists but cannot run a guest (nested
    // virtualisation refused, as on the suite's machine), `-accel kvm`
    // hangs instead of failing over; TCG boots this kernel in seconds.
    let mut child = Command::new(QEMU)
        .args([
            "-accel",
            "tcg",
            "-m",
            "512",
            "-smp",
            "1",
            "-nographic",
            "-no-reboot",
        ])
        .args(["-nic", "none", "-monitor", "none", "-serial", "stdio"])
        .arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(&image)
        .args(["-append", "console=ttyS0 panic=-1 quiet"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {QEMU}: {e}"))?;
    let mut stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stdout.read_to_end(&mut s);
        s
    });
    let t = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().map_err(|e| e.to_string())? {
            break Some(st);
        }
        if t.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = String::from_utf8_lossy(&reader.join().unwrap_or_default()).replace('\r', "");
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    match status {
        Some(st) if st.success() => Ok(out),
        Some(st) => Err(format!("{QEMU} exited {st}: {}\n{out}", err.trim())),
        None => Err(format!(
            "the guest did not power off within {} s; console:\n{out}",
            deadline.as_secs()
        )),
    }
}

/// Writes `text` to the test's own output as it goes (the console of a
/// failed boot is the only trace of what happened).
pub fn show(text: &str) {
    let mut e = io::stderr().lock();
    let _ = e.write_all(text.as_bytes());
}
