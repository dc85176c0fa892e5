//! CPU time of a process, for the benchmark examples (included with `#[path]`).

/// User + system CPU seconds process `pid` has used, from `/proc/PID/stat`; 0 when it is gone.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_default()
    };
    // After the command name: state is field 0, utime 11, stime 12, in clock ticks (100/s).
    (ticks(11) + ticks(12)) / 100.0
}
