//! The health check (SPEC 3.1): a TCP listener on 127.0.0.1 that answers any bytes with
//! `HTTP/1.1 200 OK\r\n` and closes.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The whole answer.
pub const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\n";

/// A client that sends nothing for this long is dropped unanswered.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds 127.0.0.1:`port` (0: an ephemeral port).
pub async fn bind(port: u16) -> io::Result<TcpListener> {
    TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await
}

/// Answers health checks on `listener` forever (abort the task to stop).
pub async fn serve(listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(answer(stream));
            }
            Err(e) => {
                tracing::warn!(error = %e, "health check accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn answer(mut stream: TcpStream) {
    let mut buf = [0u8; 1024];
    match tokio::time::timeout(READ_TIMEOUT, stream.read(&mut buf)).await {
        Ok(Ok(n)) if n > 0 => {
            let _ = stream.write_all(RESPONSE).await;
            let _ = stream.shutdown().await;
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_any_bytes_then_closes() {
        let listener = bind(0).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(serve(listener));
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
        let mut out = Vec::new();
        c.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, RESPONSE);
        task.abort();
    }
}
