//! Watching an environment: `sprout health`, `sprout events` and `sprout logs`, each once
//! or following.

use super::connect::client;
use crate::args::GlobalArgs;
use crate::error::CliError;
use crate::output::{self, listing, View};
use std::io::Write;
use std::time::Duration;

/// ANSI: clear the screen and home the cursor.
const CLEAR_SCREEN: &str = "\x1b[2J\x1b[H";

pub(super) async fn health(
    global: &GlobalArgs,
    env: String,
    json: bool,
    refresh: bool,
) -> Result<(), CliError> {
    use std::io::IsTerminal;
    let c = client(global);
    let tty = std::io::stdout().is_terminal();
    let mut first = true;
    let mut failures = 0;
    loop {
        let text = match c.health_report(&env).await {
            Ok(h) => {
                failures = 0;
                match output::view(json, &h, output::health_text) {
                    View::Text(t) | View::Empty(t) => t,
                }
            }
            Err(e @ CliError::Http(_)) if refresh && !first && failures < 10 => {
                failures += 1;
                eprintln!("warning: {e}");
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        if !refresh {
            println!("{text}");
            return Ok(());
        }
        let mut out = std::io::stdout().lock();
        if tty {
            let now = chrono::Utc::now().format("%H:%M:%S");
            let _ = write!(
                out,
                "{CLEAR_SCREEN}{text}\n\n{now}  refreshing every 2 s; Ctrl-C to stop\n"
            );
        } else {
            if !first && !json {
                let _ = writeln!(out);
            }
            let _ = writeln!(out, "{text}");
        }
        let _ = out.flush();
        drop(out);
        first = false;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

pub(super) async fn events(
    global: &GlobalArgs,
    env: String,
    json: bool,
    follow: bool,
    limit: u32,
) -> Result<(), CliError> {
    let c = client(global);
    let first = c.events(&env, Some(limit)).await?;
    if !follow {
        output::show(json, &first, |events| {
            listing(events, "no events", output::events_table)
        });
        return Ok(());
    }
    let mut last_id = first.iter().map(|e| e.id).max().unwrap_or(0);
    let print = |e: &sprout_core::api::Event| {
        if json {
            println!("{}", serde_json::to_string(e).unwrap_or_default());
        } else {
            println!("{}", output::event_line(e));
        }
    };
    first.iter().for_each(print);
    let mut failures = 0;
    loop {
        let _ = std::io::stdout().flush();
        tokio::time::sleep(Duration::from_secs(1)).await;
        match c.events(&env, Some(limit.max(100))).await {
            Ok(batch) => {
                failures = 0;
                let seen = last_id;
                for e in batch.iter().filter(|e| e.id > seen) {
                    print(e);
                    last_id = last_id.max(e.id);
                }
            }
            Err(e @ CliError::Http(_)) => {
                failures += 1;
                if failures > 10 {
                    return Err(e);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

pub(super) async fn logs(
    global: &GlobalArgs,
    env: String,
    tail: Option<u32>,
    follow: bool,
) -> Result<(), CliError> {
    let c = client(global);
    let text = c.logs(&env, tail).await?;
    print!("{text}");
    if !text.is_empty() && !text.ends_with('\n') {
        println!();
    }
    if !follow {
        return Ok(());
    }
    let mut previous: Vec<String> = text.lines().map(str::to_string).collect();
    let mut failures = 0;
    loop {
        let _ = std::io::stdout().flush();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let text = match c.logs(&env, tail).await {
            Ok(t) => {
                failures = 0;
                t
            }
            Err(e @ CliError::Http(_)) => {
                failures += 1;
                if failures > 10 {
                    return Err(e);
                }
                continue;
            }
            Err(e) => return Err(e),
        };
        let current: Vec<String> = text.lines().map(str::to_string).collect();
        for line in new_lines(&previous, &current) {
            println!("{line}");
        }
        previous = current;
    }
}

/// The lines of `current` that follow what `previous` already showed: after the last place
/// where `previous`'s final lines appear in `current`; all of `current` if they do not.
pub(crate) fn new_lines<'a>(previous: &[String], current: &'a [String]) -> &'a [String] {
    if previous.is_empty() {
        return current;
    }
    // Longest anchor first (at most 3 lines), so repeated lines rarely mislead.
    for k in (1..=previous.len().min(3)).rev() {
        let anchor = &previous[previous.len() - k..];
        if current.len() >= k {
            for end in (k..=current.len()).rev() {
                if &current[end - k..end] == anchor {
                    return &current[end..];
                }
            }
        }
    }
    // The anchor scrolled out of the window (or logs restarted): show everything new.
    if current == previous {
        &current[current.len()..]
    } else {
        current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_follow_prints_only_new_lines() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            new_lines(&v(&[]), &v(&["a", "b"])),
            v(&["a", "b"]).as_slice()
        );
        assert_eq!(
            new_lines(&v(&["a", "b", "c"]), &v(&["b", "c", "d", "e"])),
            v(&["d", "e"]).as_slice()
        );
        assert_eq!(
            new_lines(&v(&["a", "b"]), &v(&["a", "b"])),
            v(&[]).as_slice()
        );
        assert_eq!(
            new_lines(&v(&["x", "x", "x"]), &v(&["x", "x", "x", "x"])),
            v(&[]).as_slice()
        );
        assert_eq!(
            new_lines(&v(&["p", "q", "r"]), &v(&["s", "t"])),
            v(&["s", "t"]).as_slice()
        );
    }
}
