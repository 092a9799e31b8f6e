//! Where an operation's time goes: named steps timed one after another. wardend logs them
//! with a request's closing line (`steps="pools=0.011 dir=0.034 ... total=7.102"`,
//! milliseconds) so an operator sees which step is slow, and the containers bench prints a
//! breakdown per step from the daemon's own log; the runtime's create times its own steps
//! the same way ([`crate::container::Created::steps`]).

use std::fmt;
use std::time::{Duration, Instant};

pub struct Steps {
    start: Instant,
    last: Instant,
    marks: Vec<(&'static str, Duration)>,
}

impl Default for Steps {
    fn default() -> Steps {
        Steps::new()
    }
}

impl Steps {
    pub fn new() -> Steps {
        let now = Instant::now();
        Steps {
            start: now,
            last: now,
            marks: Vec::with_capacity(12),
        }
    }

    /// Ends the step called `name`: the time since the previous mark (or the start).
    pub fn mark(&mut self, name: &'static str) {
        let now = Instant::now();
        self.marks.push((name, now - self.last));
        self.last = now;
    }

    pub fn marks(&self) -> &[(&'static str, Duration)] {
        &self.marks
    }

    /// Appends the steps of `other`, timed after these (a callee's own): the total runs on
    /// to its end.
    pub fn append(&mut self, other: &Steps) {
        self.marks.extend_from_slice(&other.marks);
        self.last = self.last.max(other.last);
    }
}

impl fmt::Display for Steps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, d) in &self.marks {
            write!(f, "{name}={:.3} ", d.as_secs_f64() * 1e3)?;
        }
        write!(
            f,
            "total={:.3}",
            (self.last - self.start).as_secs_f64() * 1e3
        )
    }
}

/// `steps="a=1.000 b=2.000 total=3.000"` in a log line → `[("a", 1.0), ("b", 2.0), ("total",
/// 3.0)]` (for the bench).
pub fn parse(line: &str) -> Option<Vec<(String, f64)>> {
    parse_field(line, "steps")
}

/// [`parse`] of the field called `field` (` field="..."`).
pub fn parse_field(line: &str, field: &str) -> Option<Vec<(String, f64)>> {
    let key = format!(" {field}=\"");
    let rest = &line[line.find(&key)? + key.len()..];
    let text = &rest[..rest.find('"')?];
    text.split(' ')
        .map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_sum_to_the_total_and_read_back() {
        let mut s = Steps::new();
        std::thread::sleep(Duration::from_millis(2));
        s.mark("a");
        s.mark("b");
        let sum: Duration = s.marks().iter().map(|m| m.1).sum();
        assert_eq!(sum, s.last - s.start);
        let line = format!("INFO container created id=x steps=\"{s}\" more=1");
        let got = parse(&line).unwrap();
        assert_eq!(
            got.iter().map(|g| g.0.as_str()).collect::<Vec<_>>(),
            ["a", "b", "total"]
        );
        assert!(got[0].1 >= 2.0, "{got:?}");
        assert!(parse("no steps here").is_none());
        let line = format!("created steps=\"{s}\" init_steps=\"x=1.500 total=1.500\"");
        assert_eq!(parse(&line).unwrap().len(), 3);
        assert_eq!(
            parse_field(&line, "init_steps").unwrap(),
            [("x".to_string(), 1.5), ("total".to_string(), 1.5)]
        );
    }
}
