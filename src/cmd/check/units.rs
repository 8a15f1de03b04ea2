//! `check`'s Sentinel units: finds the Sentinel services systemd would run
//! on this host (Redis' and Valkey's, and the enabled instances of their
//! templates), and says for each which user runs it, whether it may
//! execute the `client-reconfig-script` its config names and connect to the
//! watcher's socket, and, when not, the one-line fix. It only reads files.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::unit_file::{reconfig_scripts, Service};
use crate::users;

/// Where systemd looks for units, most important first.
const UNIT_DIRS: [&str; 5] = [
    "etc/systemd/system",
    "run/systemd/system",
    "usr/local/lib/systemd/system",
    "usr/lib/systemd/system",
    "lib/systemd/system",
];
/// The Sentinel services of the distributions' packages.
const SENTINELS: [&str; 2] = ["redis-sentinel", "valkey-sentinel"];

/// How `check` prints a finding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Ok,
    Note,
    Fail,
}

/// What the watcher side looks like to a unit: its socket and who it
/// serves, and the hook binary `check` itself is.
pub struct Watcher<'a> {
    pub socket: &'a Path,
    pub users: &'a [String],
    pub group: Option<&'a str>,
    /// The masters the config follows (`None`: the config was unreadable,
    /// every `client-reconfig-script` line counts).
    pub masters: Option<Vec<&'a str>>,
    pub hook: PathBuf,
}

/// One unit systemd would run: its name, instance and files in the order
/// systemd reads them (unit file, then drop-ins).
#[derive(Debug, PartialEq, Eq)]
pub struct UnitFiles {
    pub name: String,
    pub instance: String,
    pub files: Vec<PathBuf>,
    pub enabled: bool,
}

/// The Sentinel units under `root` (`/` on a host): plain services, and
/// each enabled instance of a template. A masked unit is left out.
pub fn discover(root: &Path) -> Vec<UnitFiles> {
    let mut out = Vec::new();
    for base in SENTINELS {
        let plain = format!("{base}.service");
        if let Some(u) = unit(root, &plain, &plain, "") {
            out.push(u);
        }
        let template = format!("{base}@.service");
        for instance in instances(root, base) {
            let name = format!("{base}@{instance}.service");
            if let Some(u) = unit(root, &name, &template, &instance) {
                out.push(u);
            }
        }
    }
    out
}

/// The unit `name` whose file is `file` (the template for an instance).
fn unit(root: &Path, name: &str, file: &str, instance: &str) -> Option<UnitFiles> {
    let main = UNIT_DIRS
        .iter()
        .map(|d| root.join(d).join(file))
        .find(|p| p.exists() || p.is_symlink())?;
    // Masked: a link to /dev/null (or an empty file) shadowing the unit.
    if fs::read_link(&main).is_ok_and(|t| t == Path::new("/dev/null"))
        || fs::metadata(&main).is_ok_and(|m| m.len() == 0)
    {
        return None;
    }
    let mut dropins: Vec<(String, PathBuf)> = Vec::new();
    // Earlier directories override drop-ins of the same name in later ones.
    for d in UNIT_DIRS {
        for dir_name in [format!("{file}.d"), format!("{name}.d")] {
            let dir = root.join(d).join(&dir_name);
            for e in fs::read_dir(&dir).into_iter().flatten().flatten() {
                let fname = e.file_name().to_string_lossy().into_owned();
                if fname.ends_with(".conf") && !dropins.iter().any(|(n, _)| *n == fname) {
                    dropins.push((fname, e.path()));
                }
            }
        }
    }
    dropins.sort();
    let mut files = vec![main];
    files.extend(dropins.into_iter().map(|(_, p)| p));
    let wants = root.join("etc/systemd/system");
    let enabled = fs::read_dir(&wants)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".wants"))
        .any(|e| e.path().join(name).is_symlink());
    Some(UnitFiles {
        name: name.to_string(),
        instance: instance.to_string(),
        files,
        enabled,
    })
}

/// Instances of `base@.service` that are enabled (linked from a target's
/// `.wants` directory).
fn instances(root: &Path, base: &str) -> Vec<String> {
    let prefix = format!("{base}@");
    let mut found: Vec<String> = fs::read_dir(root.join("etc/systemd/system"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".wants"))
        .flat_map(|e| fs::read_dir(e.path()).into_iter().flatten().flatten())
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            let inst = n.strip_prefix(&prefix)?.strip_suffix(".service")?;
            (!inst.is_empty()).then(|| inst.to_string())
        })
        .collect();
    found.sort();
    found.dedup();
    found
}

/// Every finding for every Sentinel unit on this host.
pub fn findings(w: &Watcher) -> Vec<(Level, String)> {
    let units = discover(Path::new("/"));
    if units.is_empty() {
        return vec![(
            Level::Note,
            "no Sentinel unit (redis-sentinel, valkey-sentinel) found; a Sentinel run otherwise needs to execute the hook and reach the socket itself".into(),
        )];
    }
    units.iter().flat_map(|u| one_unit(u, w)).collect()
}

fn one_unit(u: &UnitFiles, w: &Watcher) -> Vec<(Level, String)> {
    let mut s = Service::default();
    for f in &u.files {
        s.apply(&fs::read_to_string(f).unwrap_or_default(), &u.instance);
    }
    let user = s.user_name().to_string();
    let head = format!(
        "unit {} ({}, runs as {user})",
        u.name,
        if u.enabled { "enabled" } else { "not enabled" }
    );
    let mut out = Vec::new();
    // What keeps its hooks from the watcher: a problem if it runs one
    // (its config names a client-reconfig-script), else only a note.
    let mut reach = Vec::new();
    if s.dynamic_user {
        reach.push(
            "DynamicUser=yes: its uid is not known ahead, so name the user with User= in a drop-in"
                .to_string(),
        );
    }
    if !s.unix_sockets() {
        reach.push("RestrictAddressFamilies= forbids AF_UNIX, so its hook cannot reach the watcher; fix: a drop-in with RestrictAddressFamilies=AF_UNIX".into());
    }
    if s.hides(w.socket) {
        reach.push(format!(
            "InaccessiblePaths= hides {}; fix: remove it from the unit",
            w.socket.display()
        ));
    }
    let ids = users::user_ids(&user);
    let group = w.group.and_then(|g| users::group(g).ok().flatten());
    let allowed = users::Allowed {
        users: w.users,
        group: group.as_ref(),
    };
    let (uid, gid) = ids.unwrap_or((u32::MAX, u32::MAX));
    if ids.is_none() && user != "root" {
        reach.push(format!(
            "user {user} does not exist (is its package installed?)"
        ));
    } else if !users::peer_allowed(uid, gid, Some(&user), u32::MAX, &allowed) {
        reach.push(format!(
            "the watcher does not serve user {user}; fix: add \"{user}\" to control_socket_users"
        ));
    }
    let unknown = |out: &mut Vec<(Level, String)>, reach: &[String]| {
        for r in reach {
            out.push((Level::Note, format!("{head}: if it runs the hook: {r}")));
        }
    };
    // The script lines of its Sentinel config.
    let Some(conf) = s.config_file().map(str::to_string) else {
        out.push((
            Level::Note,
            format!("{head}: its ExecStart= names no Sentinel config"),
        ));
        unknown(&mut out, &reach);
        return out;
    };
    let text = match fs::read_to_string(&conf) {
        Ok(t) => t,
        Err(e) => {
            out.push((
                Level::Note,
                format!("{head}: cannot read {conf} ({e}); run check as root or as {user} to see its client-reconfig-script lines"),
            ));
            unknown(&mut out, &reach);
            return out;
        }
    };
    let fix_line = |m: &str| format!("sentinel client-reconfig-script {m} {}", w.hook.display());
    let scripts: Vec<(String, String)> = reconfig_scripts(&text)
        .into_iter()
        .filter(|(m, _)| w.masters.as_ref().is_none_or(|ms| ms.contains(&m.as_str())))
        .collect();
    for m in w.masters.iter().flatten() {
        if !scripts.iter().any(|(sm, _)| sm == m) {
            out.push((
                Level::Note,
                format!("{head}: {conf} has no client-reconfig-script for {m} (the watcher still follows it); to hand its failovers over at once add: {}", fix_line(m)),
            ));
        }
    }
    if scripts.is_empty() {
        unknown(&mut out, &reach);
    } else {
        out.extend(reach.iter().map(|r| (Level::Fail, format!("{head}: {r}"))));
    }
    if scripts.is_empty() && w.masters.is_none() {
        out.push((
            Level::Note,
            format!("{head}: {conf} has no client-reconfig-script line; to hand failovers to the watcher add: {}", fix_line("<master>")),
        ));
    }
    let mut good = Vec::new();
    for (m, script) in &scripts {
        match script_problem(&s, script, uid, gid) {
            Some(p) => out.push((
                Level::Fail,
                format!(
                    "{head}: client-reconfig-script {script} for {m} in {conf}: {p}; fix: {}",
                    fix_line(m)
                ),
            )),
            None => good.push(format!("{script} for {m}")),
        }
    }
    if !good.is_empty() && !out.iter().any(|(l, _)| *l == Level::Fail) {
        out.push((
            Level::Ok,
            format!(
                "{head}: {conf} runs {}; it may execute it and connect to {}",
                good.join(", "),
                w.socket.display()
            ),
        ));
    }
    out
}

/// Why the service could not run `script` as its hook, if it could not.
fn script_problem(s: &Service, script: &str, uid: u32, gid: u32) -> Option<String> {
    let real = match fs::canonicalize(script) {
        Ok(p) => p,
        Err(e) => return Some(format!("{e} (Sentinel refuses to start without it)")),
    };
    if !s.may_exec(&real) {
        let list = |v: &[PathBuf]| {
            v.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" ")
        };
        return Some(format!(
            "{} is outside its ExecPaths={} under NoExecPaths={} (Sentinel refuses to start)",
            real.display(),
            list(&s.exec_paths),
            list(&s.no_exec_paths)
        ));
    }
    let meta = fs::metadata(&real).ok()?;
    let mode = meta.permissions().mode();
    let bit = if uid == 0 {
        0o111
    } else if meta.uid() == uid {
        0o100
    } else if meta.gid() == gid {
        0o010
    } else {
        0o001
    };
    (mode & bit == 0).then(|| {
        format!(
            "{} is not executable by its user (mode {:o})",
            real.display(),
            mode & 0o7777
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    #[test]
    fn finds_units_instances_and_dropins() {
        let dir = std::env::temp_dir().join(format!("sv-units-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let root = dir.as_path();
        write(
            root,
            "usr/lib/systemd/system/valkey-sentinel.service",
            "[Service]\nUser=valkey\n",
        );
        write(
            root,
            "usr/lib/systemd/system/redis-sentinel@.service",
            "[Service]\nUser=redis\n",
        );
        write(
            root,
            "usr/lib/systemd/system/redis-sentinel.service",
            "[Service]\nUser=redis\n",
        );
        // Masked by the admin.
        fs::create_dir_all(root.join("etc/systemd/system")).unwrap();
        std::os::unix::fs::symlink(
            "/dev/null",
            root.join("etc/systemd/system/redis-sentinel.service"),
        )
        .unwrap();
        write(
            root,
            "etc/systemd/system/valkey-sentinel.service.d/10-x.conf",
            "[Service]\nExecPaths=/opt\n",
        );
        write(
            root,
            "usr/lib/systemd/system/valkey-sentinel.service.d/10-x.conf",
            "shadowed",
        );
        write(
            root,
            "usr/lib/systemd/system/valkey-sentinel.service.d/05-y.conf",
            "",
        );
        let wants = root.join("etc/systemd/system/multi-user.target.wants");
        fs::create_dir_all(&wants).unwrap();
        for l in ["redis-sentinel@eu.service", "valkey-sentinel.service"] {
            std::os::unix::fs::symlink("/x", wants.join(l)).unwrap();
        }
        let found = discover(root);
        let _ = fs::remove_dir_all(&dir);
        let names: Vec<(&str, bool)> = found.iter().map(|u| (u.name.as_str(), u.enabled)).collect();
        assert_eq!(
            names,
            [
                ("redis-sentinel@eu.service", true),
                ("valkey-sentinel.service", true)
            ]
        );
        assert_eq!(found[0].instance, "eu");
        let v: Vec<String> = found[1]
            .files
            .iter()
            .map(|p| p.strip_prefix(root).unwrap().display().to_string())
            .collect();
        assert_eq!(
            v,
            [
                "usr/lib/systemd/system/valkey-sentinel.service",
                "usr/lib/systemd/system/valkey-sentinel.service.d/05-y.conf",
                "etc/systemd/system/valkey-sentinel.service.d/10-x.conf",
            ]
        );
    }
}
