//! A job's output copied to syslog (`log_tag`, SPEC 3.5): the original piped it through
//! `logger -t warden.<tag> -u <syslog_socket>`, stdout at `user.info` (`<14>`) and stderr at
//! `user.err` (`<11>`), one message per line. The keeper does the same itself, so it goes on
//! for a job that outlives a daemon restart and costs no process per job.
//!
//! Messages are in the local syslog format `logger` writes to a unix socket:
//! `<PRI>Mmm dd hh:mm:ss warden.TAG: LINE`. Syslog is best effort, as it is for `logger`: the
//! job's output is kept in its files whatever happens here. A socket that is missing, refuses
//! or is full drops the line (a full syslog never blocks the job); a socket that went away
//! (the syslog daemon restarted) is connected again at the next line.

use std::io::Write as _;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The socket the original's `logger` wrote to when `syslog_socket` is not configured.
pub const DEFAULT_SOCKET: &str = "/dev/log";
/// The longest line sent as one message; a longer one is cut into pieces this long.
pub const MAX_LINE: usize = 4096;

/// Where a job's lines go (in [`super::JobSpec`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogTarget {
    /// The syslog socket (`syslog_socket`, else [`DEFAULT_SOCKET`]).
    pub socket: PathBuf,
    /// The request's `log_tag`: messages are tagged `warden.<tag>`.
    pub tag: String,
}

/// Which of the job's streams a line came from: its syslog priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// `user.info`: `<14>`.
    Stdout,
    /// `user.err`: `<11>`.
    Stderr,
}

impl Stream {
    fn priority(self) -> u8 {
        match self {
            Stream::Stdout => 14,
            Stream::Stderr => 11,
        }
    }
}

enum Conn {
    Datagram(UnixDatagram),
    Stream(UnixStream),
}

/// The keeper's syslog writer: splits each stream into lines and sends one message per line.
pub struct Syslog {
    target: LogTarget,
    conn: Option<Conn>,
    /// The unfinished last line of stdout and of stderr.
    partial: [Vec<u8>; 2],
}

impl Syslog {
    pub fn new(target: LogTarget) -> Syslog {
        Syslog {
            target,
            conn: None,
            partial: [Vec::new(), Vec::new()],
        }
    }

    /// Output of `stream` as it came from the job: whole lines are sent, the rest kept for
    /// the next call (or [`Syslog::finish`]).
    pub fn write(&mut self, stream: Stream, data: &[u8]) {
        let i = stream as usize;
        let mut rest = data;
        while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            let mut line = std::mem::take(&mut self.partial[i]);
            line.extend_from_slice(&rest[..nl]);
            self.send_line(stream, &line);
            rest = &rest[nl + 1..];
        }
        self.partial[i].extend_from_slice(rest);
        while self.partial[i].len() >= MAX_LINE {
            let piece: Vec<u8> = self.partial[i].drain(..MAX_LINE).collect();
            self.send_line(stream, &piece);
        }
    }

    /// The stream ended: its unfinished last line is sent as it is.
    pub fn finish(&mut self, stream: Stream) {
        let line = std::mem::take(&mut self.partial[stream as usize]);
        if !line.is_empty() {
            self.send_line(stream, &line);
        }
    }

    fn send_line(&mut self, stream: Stream, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        for piece in line.chunks(MAX_LINE) {
            let mut msg = format!(
                "<{}>{} warden.{}: ",
                stream.priority(),
                timestamp(),
                self.target.tag
            )
            .into_bytes();
            msg.extend_from_slice(piece);
            // One reconnect: the syslog daemon may have restarted since the last line.
            for _ in 0..2 {
                if self.conn.is_none() {
                    self.conn = connect(&self.target.socket);
                }
                match self.conn.as_mut().map(|c| send(c, &msg)) {
                    Some(Ok(())) | None => break,
                    Some(Err(e)) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Some(Err(_)) => self.conn = None,
                }
            }
        }
    }
}

/// A datagram socket (rsyslog's and journald's /dev/log), else a stream one (syslog-ng's
/// may be); None if there is neither.
fn connect(path: &Path) -> Option<Conn> {
    if let Ok(s) = UnixDatagram::unbound() {
        if s.connect(path).is_ok() && s.set_nonblocking(true).is_ok() {
            return Some(Conn::Datagram(s));
        }
    }
    let s = UnixStream::connect(path).ok()?;
    s.set_nonblocking(true).ok()?;
    Some(Conn::Stream(s))
}

fn send(conn: &mut Conn, msg: &[u8]) -> std::io::Result<()> {
    match conn {
        Conn::Datagram(s) => s.send(msg).map(drop),
        // On a stream, messages end with a newline (RFC 6587's non-transparent framing, which
        // logger uses too).
        Conn::Stream(s) => {
            let mut framed = msg.to_vec();
            framed.push(b'\n');
            s.write_all(&framed)
        }
    }
}

/// The local time as syslog writes it: `Dec  6 22:05:09`.
fn timestamp() -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    // SAFETY: time(NULL) and localtime_r with a zeroed tm that it fills in; both are
    // thread-safe and touch nothing else.
    let tm = unsafe {
        let now = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&now, &mut tm).is_null() {
            return "Jan  1 00:00:00".into();
        }
        tm
    };
    format!(
        "{} {:>2} {:02}:{:02}:{:02}",
        MONTHS[tm.tm_mon.clamp(0, 11) as usize],
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn received(server: &UnixDatagram) -> Vec<String> {
        server.set_nonblocking(true).unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 8192];
        while let Ok(n) = server.recv(&mut buf) {
            out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        out
    }

    /// Strips the timestamp: `<14>Dec  6 22:05:09 warden.t: x` → `<14> warden.t: x`.
    fn without_time(msg: &str) -> String {
        let (pri, rest) = msg.split_at(msg.find('>').unwrap() + 1);
        format!("{pri}{}", &rest[15..])
    }

    #[test]
    fn lines_become_messages_with_the_streams_priority() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let server = UnixDatagram::bind(&path).unwrap();
        let mut log = Syslog::new(LogTarget {
            socket: path,
            tag: "t".into(),
        });
        log.write(Stream::Stdout, b"one\ntw");
        log.write(Stream::Stderr, b"err\r\n");
        log.write(Stream::Stdout, b"o\nthree");
        log.finish(Stream::Stdout);
        log.finish(Stream::Stderr);
        let got: Vec<String> = received(&server).iter().map(|m| without_time(m)).collect();
        assert_eq!(
            got,
            [
                "<14> warden.t: one",
                "<11> warden.t: err",
                "<14> warden.t: two",
                "<14> warden.t: three"
            ]
        );
    }

    #[test]
    fn a_long_line_is_cut_and_a_missing_socket_drops_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut log = Syslog::new(LogTarget {
            socket: path.clone(),
            tag: "t".into(),
        });
        log.write(Stream::Stdout, b"lost\n");
        let server = UnixDatagram::bind(&path).unwrap();
        log.write(Stream::Stdout, &vec![b'x'; MAX_LINE + 10]);
        log.write(Stream::Stdout, b"\n");
        let got = received(&server);
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[0].ends_with(&"x".repeat(MAX_LINE)), "{}", got[0]);
        assert!(without_time(&got[1]) == format!("<14> warden.t: {}", "x".repeat(10)));
    }
}
