//! Running named steps on one lab, each isolated with `catch_unwind` so
//! that every step reports (building a lab is the slow part), one lab at a
//! time per test target, and how results are shown: one line per step and
//! per command outcome.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::Output;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::Lab;

/// One step of a suite, with state `C` shared along the run.
pub type Step<C> = fn(&mut Lab, &mut C);

/// How one step ended.
pub struct Outcome {
    pub name: &'static str,
    /// The panic message on one line; `None` if the step passed.
    pub error: Option<String>,
    pub took: Duration,
}

/// Runs each step in order on one lab. After a failed step, `recover` puts
/// the lab back in shape for the next; if that fails too, the steps left
/// are reported as not run. `finished` sees each outcome as it comes.
pub fn run_steps<C>(
    lab: &mut Lab,
    ctx: &mut C,
    steps: &[(&'static str, Step<C>)],
    recover: Step<C>,
    mut finished: impl FnMut(&mut C, &Outcome),
) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    let mut unusable: Option<String> = None;
    for &(name, step) in steps {
        let outcome = match &unusable {
            Some(why) => Outcome {
                name,
                error: Some(format!("not run: {why}")),
                took: Duration::ZERO,
            },
            None => {
                eprintln!("\n--- {name}");
                let t = Instant::now();
                let error = catch(|| step(lab, ctx)).err();
                let took = t.elapsed();
                match &error {
                    None => eprintln!("--- {name}: pass ({:.1} s)", took.as_secs_f64()),
                    Some(e) => {
                        eprintln!("--- {name}: FAIL ({:.1} s): {e}", took.as_secs_f64());
                        if let Err(e) = catch(|| recover(lab, ctx)) {
                            let why = format!("lab not recovered after {name}: {e}");
                            eprintln!("{why}");
                            unusable = Some(why);
                        }
                    }
                }
                Outcome { name, error, took }
            }
        };
        finished(ctx, &outcome);
        outcomes.push(outcome);
    }
    // Step panics were caught, so Drop will not show the logs by itself.
    if outcomes.iter().any(|o| o.error.is_some()) {
        lab.dump_logs();
    }
    outcomes
}

/// [`run_steps`] for an end-to-end test: no recovery between steps (each
/// checks its own preconditions), the lab dropped at the end, and one
/// failure listing the steps that failed.
pub fn run_scenarios<S>(
    mut lab: Lab,
    shared: &mut S,
    scenarios: &[(&'static str, Step<S>)],
    started: Instant,
) {
    let outcomes = run_steps(&mut lab, shared, scenarios, |_, _| {}, |_, _| {});
    drop(lab);
    eprintln!("took {:.1} s", started.elapsed().as_secs_f64());
    let failed: Vec<&str> = outcomes
        .iter()
        .filter(|o| o.error.is_some())
        .map(|o| o.name)
        .collect();
    assert!(failed.is_empty(), "failed scenarios: {failed:?}");
}

/// Held by each test of a target while its lab runs: libtest runs a
/// target's tests on parallel threads, and two labs at once would skew
/// each other's timing (one per server family in a target, for example).
pub fn one_lab_at_a_time() -> MutexGuard<'static, ()> {
    static LAB: Mutex<()> = Mutex::new(());
    // A test that failed while holding it leaves it poisoned; the next
    // test's lab is a new one, so the lock still means what it meant.
    LAB.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `f`, turning a panic into its message on one line.
pub fn catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|p| panic_message(&*p).replace('\n', " "))
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic".to_string()
    }
}

/// Asserts that a command exited with `code`.
pub fn expect_exit(o: &Output, code: i32, what: &str) {
    assert_eq!(o.status.code(), Some(code), "{what}: {}", show(o));
}

/// A command's outcome for messages, with long output cut.
pub fn show(o: &Output) -> String {
    let cut = |b: &[u8]| {
        let s = String::from_utf8_lossy(b).trim().to_string();
        if s.chars().count() > 300 {
            format!("{}...", s.chars().take(300).collect::<String>())
        } else {
            s
        }
    };
    format!(
        "exit {:?}, stdout {:?}, stderr {:?}",
        o.status.code(),
        cut(&o.stdout),
        cut(&o.stderr)
    )
}
