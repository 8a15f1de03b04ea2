//! The table printed at the end of a chaos run: one line per case and
//! server, sorted by case number, with the windows the monitor measured.
//! Only printing; what the cases assert decides pass or fail.

use std::time::Duration;

use sentinel_vip_lab::monitor::PERIOD;
use sentinel_vip_lab::Family;

use crate::{case_id, Ran};

pub fn print_table(results: &mut [Ran], took: Duration) {
    // By scenario number, whichever lab ran it; Redis before Valkey.
    let key = |family: Family, name: &str| {
        let id = case_id(name);
        let digits: String = id.chars().take_while(char::is_ascii_digit).collect();
        let server = Family::ALL.iter().position(|&f| f == family);
        (digits.parse::<u32>().unwrap_or(99), id.to_string(), server)
    };
    results.sort_by_key(|(f, o, _)| key(*f, o.name));
    let secs = |d: Duration| format!("{:.2}", d.as_secs_f64());
    let until = |v: Option<Duration>| v.map_or("never".to_string(), secs);
    println!();
    println!(
        "{:<46} {:<7} {:<6} {:>9} {:>9} {:>9} {:>9} {:>7}  notes",
        "scenario", "server", "result", "2 holders", "no holder", "converge", "client", "case"
    );
    println!("{}", "-".repeat(125));
    for (family, o, row) in results.iter() {
        let (two, none, conv, client) = match &row.windows {
            Some(w) => (
                secs(w.two_holders),
                secs(w.no_holder),
                until(w.converge),
                until(w.client),
            ),
            None => ("-".into(), "-".into(), "-".into(), "-".into()),
        };
        println!(
            "{:<46} {:<7} {:<6} {two:>9} {none:>9} {conv:>9} {client:>9} {:>6.0}s  {}",
            o.name,
            family.name(),
            if o.error.is_none() { "pass" } else { "FAIL" },
            o.took.as_secs_f64(),
            row.note
        );
    }
    println!("{}", "-".repeat(125));
    println!(
        "Seconds. 2 holders / no holder: total time two or more / no node held the VIP;\n\
         converge: fault injected -> exactly one holder, Sentinel's master, for good;\n\
         client: fault injected -> the client's neighbour entry on that holder, for good.\n\
         Sampled every {} ms from fault injection to the end of the case.",
        PERIOD.as_millis()
    );
    for (family, o, _) in results.iter() {
        if let Some(e) = &o.error {
            println!("FAIL {} ({}): {e}", o.name, family.name());
        }
    }
    println!("total run time {:.0} s", took.as_secs_f64());
}
