//! Container ids (SPEC 3.2): a process-wide counter seeded once with the time in µs and
//! incremented per container, written as 11 characters: the low 55 bits in 5-bit groups,
//! most significant first, each a digit of `0-9a-v`. Interface names `w-<id>-N` then fit
//! Linux's 15 bytes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

static NEXT: AtomicU64 = AtomicU64::new(0);

/// The next container id.
pub fn next() -> String {
    let _ = NEXT.compare_exchange(
        0,
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(1),
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    encode(NEXT.fetch_add(1, Ordering::SeqCst))
}

/// The 11-character form of the low 55 bits of `n`.
pub fn encode(n: u64) -> String {
    const DIGITS: &[u8; 32] = b"0123456789abcdefghijklmnopqrstuv";
    (0..11)
        .rev()
        .map(|i| DIGITS[((n >> (5 * i)) & 31) as usize] as char)
        .collect()
}

/// Whether `s` looks like an id this module makes (used to skip foreign depot entries).
pub fn is_valid(s: &str) -> bool {
    s.len() == 11
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'v').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_55_bits_in_base32() {
        assert_eq!(encode(0), "00000000000");
        assert_eq!(encode(31), "0000000000v");
        assert_eq!(encode(32), "00000000010");
        assert_eq!(encode(u64::MAX), "vvvvvvvvvvv");
        let a = next();
        let b = next();
        assert!(is_valid(&a) && is_valid(&b) && a < b, "{a} {b}");
    }
}
