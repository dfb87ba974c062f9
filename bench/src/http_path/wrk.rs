//! Rows H1w–H4w: the HTTP path's targets under `wrk -t1`, in one-second
//! slices taken in turn.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::Target;
use crate::load;

/// One round of `wrk` at every target: the round's duration cut into
/// one-second slices (`wrk -d` takes whole seconds), the targets taking
/// turns slice by slice, every other slice in reverse order; answers each
/// target's req/s over its slices.
///
/// Run one after the other for the whole duration each, the targets were
/// measured up to 20 s apart, and nginx alone read 121 k, 107 k and 93 k
/// req/s in one run's three rounds on a noisy machine: a ratio then says
/// as much about the machine's minute as about the servers. Side by side,
/// each target sees the same minute (rows 1–3 do the same, "Rows 1–3 side
/// by side" in bench/README.md).
pub(super) fn wrk_round(
    wrk: &Path,
    targets: &[Target],
    bounds: load::Bounds,
    dir: &Path,
) -> Result<Vec<f64>, String> {
    let scripts = targets
        .iter()
        .enumerate()
        .map(|(index, target)| script(target, &dir.join(format!("wrk-{index}.lua"))))
        .collect::<Result<Vec<_>, _>>()?;
    let slices = bounds.duration.as_secs().max(1);
    let mut order: Vec<usize> = (0..targets.len()).collect();
    let mut totals = vec![(0_u64, 0.0_f64); targets.len()];
    for _ in 0..slices {
        for &index in &order {
            let (requests, seconds) =
                run_wrk(wrk, &targets[index], &scripts[index], bounds.concurrency)?;
            totals[index].0 += requests;
            totals[index].1 += seconds;
        }
        order.reverse();
    }
    Ok(totals
        .into_iter()
        .map(|(requests, seconds)| {
            if seconds > 0.0 {
                requests as f64 / seconds
            } else {
                0.0
            }
        })
        .collect())
}

/// Writes `target`'s request as a `wrk` Lua script at `path`.
fn script(target: &Target, path: &Path) -> Result<PathBuf, String> {
    let shape = &target.request;
    let mut lua = format!(
        "wrk.method = \"{}\"\n",
        if shape.post { "POST" } else { "GET" }
    );
    for (name, value) in &shape.headers {
        lua.push_str(&format!("wrk.headers[\"{name}\"] = \"{value}\"\n"));
    }
    if !shape.body.is_empty() {
        lua.push_str(&format!("wrk.body = \"{}\"\n", shape.body));
    }
    std::fs::write(path, lua).map_err(|error| error.to_string())?;
    Ok(path.to_path_buf())
}

/// `wrk -t1 -c<concurrency> -d1s` at `target` with its `script`; answers
/// the requests it completed and the seconds it took, as it prints them
/// (`  123456 requests in 1.00s, 9.87MB read`).
fn run_wrk(
    wrk: &Path,
    target: &Target,
    script: &Path,
    concurrency: usize,
) -> Result<(u64, f64), String> {
    let output = Command::new(wrk)
        .arg("-t1")
        .arg(format!("-c{concurrency}"))
        .arg("-d1s")
        .arg("-s")
        .arg(script)
        .arg(format!("http://{}{}", target.addr, target.request.path))
        .output()
        .map_err(|error| format!("wrk: {error}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    if text.contains("Non-2xx or 3xx responses") {
        return Err(format!(
            "wrk at {}: unexpected answers:\n{text}",
            target.name
        ));
    }
    text.lines()
        .find_map(parse_wrk_total)
        .ok_or_else(|| format!("wrk printed no total:\n{text}"))
}

/// `  123456 requests in 1.00s, 9.87MB read` as (123456, 1.0).
fn parse_wrk_total(line: &str) -> Option<(u64, f64)> {
    let (requests, rest) = line.trim().split_once(" requests in ")?;
    let (elapsed, _) = rest.split_once(',')?;
    let requests = requests.parse().ok()?;
    let seconds = if let Some(ms) = elapsed.strip_suffix("ms") {
        ms.parse::<f64>().ok()? / 1000.0
    } else if let Some(m) = elapsed.strip_suffix('m') {
        m.parse::<f64>().ok()? * 60.0
    } else {
        elapsed.strip_suffix('s')?.parse().ok()?
    };
    Some((requests, seconds))
}

#[cfg(test)]
mod tests {
    use super::parse_wrk_total;

    #[test]
    fn wrk_totals_are_read_in_every_unit_it_prints() {
        let line = "  123456 requests in 1.00s, 9.87MB read";
        assert_eq!(parse_wrk_total(line), Some((123_456, 1.0)));
        assert_eq!(
            parse_wrk_total("  12 requests in 998.50ms, 1.00KB read"),
            Some((12, 0.9985))
        );
        assert_eq!(
            parse_wrk_total("  7 requests in 1.50m, 1.00KB read"),
            Some((7, 90.0))
        );
        assert_eq!(parse_wrk_total("Requests/sec: 123456.00"), None);
        assert_eq!(parse_wrk_total("  Latency   1.00ms"), None);
    }
}
