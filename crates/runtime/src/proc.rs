//! Facts about processes read from /proc: a pid's start time and state, so that a pid counts
//! as a container's only while its start time matches the one recorded at create.

use std::fs;

/// The fields of /proc/<pid>/stat we need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// One-letter state: R, S, D, Z, T, t, X, I...
    pub state: char,
    pub ppid: i32,
    /// Start time in clock ticks since boot (field 22).
    pub start_time: u64,
}

impl ProcStat {
    pub fn is_zombie_or_dead(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// Parses the text of /proc/<pid>/stat. The command name (field 2) may contain spaces and
/// parentheses, so parsing starts after its last ')'.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    // Fields 5..=21 lie between ppid (4) and starttime (22).
    let start_time = fields.nth(17)?.parse().ok()?;
    Some(ProcStat {
        state,
        ppid,
        start_time,
    })
}

pub fn stat(pid: i32) -> Option<ProcStat> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// True when `pid` is alive (not a zombie) and started at `start_time`.
pub fn is_alive(pid: i32, start_time: u64) -> bool {
    match stat(pid) {
        Some(s) => s.start_time == start_time && !s.is_zombie_or_dead(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_hostile_comm() {
        let line =
            "4242 (a) b) (c) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1234 56 \
                    18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        let s = parse_stat(line).unwrap();
        assert_eq!(s.state, 'S');
        assert_eq!(s.ppid, 1);
        assert_eq!(s.start_time, 987654);
    }

    #[test]
    fn own_process_is_alive() {
        let me = std::process::id() as i32;
        let s = stat(me).unwrap();
        assert!(is_alive(me, s.start_time));
        assert!(!is_alive(me, s.start_time + 1));
    }

    #[test]
    fn garbage_is_none() {
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) S"), None);
    }
}
