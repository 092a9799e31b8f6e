//! limit_bandwidth with real packets over the container's veth: the rate measured at the
//! receiving end in each direction is the configured one, a container without a limit is not
//! slowed, info reports the limits (also after a kill -9 of the daemon), and bad values are
//! refused by name.

mod wardend;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use warden_protocol::{DestroyRequest, InfoRequest, LimitBandwidthRequest, SpawnRequest};
use wardend::*;

const RATE: u64 = 256 * 1024;
const BURST: u64 = 16 * 1024;
/// Four seconds' worth at RATE.
const BYTES: usize = 1 << 20;

fn bandwidth(c: &mut warden_client::Client, h: &str) -> (u64, u64, u64, u64) {
    let b = c
        .info(InfoRequest { handle: h.into() })
        .unwrap()
        .bandwidth_stat
        .expect("info has bandwidth_stat");
    (
        b.in_rate.unwrap(),
        b.in_burst.unwrap(),
        b.out_rate.unwrap(),
        b.out_burst.unwrap(),
    )
}

/// Bytes per second of BYTES sent by the container to a listener on the host's end of its
/// veth, timed from the first byte received to the last.
fn rate_out(c: &mut warden_client::Client, h: &str, host_ip: &str) -> f64 {
    let listener = TcpListener::bind((host_ip, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let job = c
        .spawn(SpawnRequest {
            handle: h.into(),
            script: format!("head -c {BYTES} /dev/zero | nc -w 30 {host_ip} {port}"),
            ..Default::default()
        })
        .unwrap()
        .job_id;
    let (mut s, _) = listener.accept().unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = s.read(&mut buf).unwrap();
    let start = Instant::now();
    let first = got;
    while got < BYTES {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "the container stopped sending at {got} bytes");
        got += n;
    }
    let took = start.elapsed().as_secs_f64();
    // nc ends once this end closes too.
    drop(s);
    link(c, h, job);
    (got - first) as f64 / took
}

/// Bytes per second of BYTES the host sends to a listener in the container, timed by the
/// container from the first byte it reads to the last (/proc/uptime, 10 ms steps): the
/// host's writes return once the socket buffers hold the data, and the job's end comes later
/// than its last read (much later in the emulated guest).
fn rate_in(c: &mut warden_client::Client, h: &str, container_ip: &str) -> f64 {
    let port = 7100;
    let job = c
        .spawn(SpawnRequest {
            handle: h.into(),
            script: format!(
                "nc -l -p {port} | {{ head -c 1 > /dev/null; cat /proc/uptime; wc -c; \
                 cat /proc/uptime; }}"
            ),
            ..Default::default()
        })
        .unwrap()
        .job_id;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut s = loop {
        match TcpStream::connect((container_ip, port)) {
            Ok(s) => break s,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => panic!("connect to the container's listener: {e}"),
        }
    };
    s.write_all(&vec![0u8; BYTES]).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let out = link(c, h, job);
    drop(s);
    let lines: Vec<&str> = out.lines().collect();
    let uptime = |l: &str| -> f64 { l.split_whitespace().next().unwrap().parse().unwrap() };
    let (t0, rest, t1) = (
        uptime(lines[0]),
        lines[1].trim().parse::<usize>().unwrap(),
        uptime(lines[2]),
    );
    // head read the first byte and perhaps a little more: what wc counted came after t0.
    assert!(
        (BYTES - 64 * 1024..BYTES).contains(&rest),
        "the container read {rest} bytes after the first: {out}"
    );
    rest as f64 / (t1 - t0)
}

/// The job's stdout, once it exited 0.
fn link(c: &mut warden_client::Client, h: &str, job: u32) -> String {
    let l = c
        .link(warden_protocol::LinkRequest {
            handle: h.into(),
            job_id: job,
        })
        .unwrap();
    assert_eq!(l.exit_status, Some(0), "{l:?}");
    String::from_utf8_lossy(&l.stdout.unwrap_or_default()).into_owned()
}

fn within(measured: f64, want: u64, percent: f64) -> bool {
    (measured - want as f64).abs() <= want as f64 * percent / 100.0
}

#[test]
fn limit_bandwidth_shapes_both_directions_and_spares_the_others() {
    let mut w = Wardend::start_net("allow_host_access: true");
    let mut c = w.client();
    let limited = create(&mut c);
    let free = create(&mut c);
    // No limit: the original's 0xffffffff in every field.
    let none = u64::from(u32::MAX);
    assert_eq!(bandwidth(&mut c, &limited), (none, none, none, none));

    let r = c
        .limit_bandwidth(LimitBandwidthRequest {
            handle: limited.clone(),
            rate: RATE,
            burst: BURST,
        })
        .unwrap();
    assert_eq!((r.rate, r.burst), (RATE, BURST));
    assert_eq!(bandwidth(&mut c, &limited), (RATE, BURST, RATE, BURST));

    let info = c
        .info(InfoRequest {
            handle: limited.clone(),
        })
        .unwrap();
    let (host_ip, ip) = (info.host_ip.unwrap(), info.container_ip.unwrap());
    let out = rate_out(&mut c, &limited, &host_ip);
    assert!(
        within(out, RATE, 10.0),
        "out of the container: {out:.0} B/s for {RATE}"
    );
    let into = rate_in(&mut c, &limited, &ip);
    assert!(
        within(into, RATE, 10.0),
        "into the container: {into:.0} B/s for {RATE}"
    );

    // The other container is not slowed: both ways well past the limit.
    let info = c
        .info(InfoRequest {
            handle: free.clone(),
        })
        .unwrap();
    let (free_host, free_ip) = (info.host_ip.unwrap(), info.container_ip.unwrap());
    let out = rate_out(&mut c, &free, &free_host);
    let into = rate_in(&mut c, &free, &free_ip);
    assert!(
        out > 4.0 * RATE as f64 && into > 4.0 * RATE as f64,
        "unlimited: out {out:.0}, in {into:.0} B/s"
    );
    assert_eq!(bandwidth(&mut c, &free), (none, none, none, none));

    // A new limit replaces the old one; bad values change nothing.
    let r = c
        .limit_bandwidth(LimitBandwidthRequest {
            handle: limited.clone(),
            rate: 100_000,
            burst: 1000,
        })
        .unwrap();
    assert_eq!((r.rate, r.burst), (100_000, 1000));
    for (rate, burst, word) in [(0, 1000, "rate"), (1000, 0, "burst")] {
        let e = server_error(c.limit_bandwidth(LimitBandwidthRequest {
            handle: limited.clone(),
            rate,
            burst,
        }));
        assert!(e.contains(word), "{e}");
    }
    assert_eq!(bandwidth(&mut c, &limited), (100_000, 1000, 100_000, 1000));

    // The limits are the kernel's: a restarted daemon reports them.
    drop(c);
    w.kill9();
    w.spawn();
    let mut c = w.client();
    assert_eq!(bandwidth(&mut c, &limited), (100_000, 1000, 100_000, 1000));
    for h in [limited, free] {
        c.destroy(DestroyRequest { handle: h }).unwrap();
    }
    w.assert_clean();
}
