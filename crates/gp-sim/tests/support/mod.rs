//! A tiny raw HTTP/1.1 client: a black-box view of exactly the bytes on the wire.
#![allow(dead_code)] // each test binary uses a different subset

use std::net::SocketAddr;
use std::time::Duration;

use gp_sim::{Population, PopulationSpec, SimStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }
}

pub fn store() -> SimStore {
    SimStore::new(Population::generate(1, &PopulationSpec::sandbox()))
}

pub async fn loopback() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

/// Sends a GET and reads until the server closes; `Err` when the connection closed
/// without any response, or on timeout.
pub async fn get_with(
    addr: SocketAddr,
    path: &str,
    extra: &str,
    timeout: Duration,
) -> Result<Answer, String> {
    let fut = async {
        let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let req =
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{extra}\r\n");
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.map_err(|e| e.to_string())?;
        if buf.is_empty() {
            return Err("connection closed without a response".to_owned());
        }
        let split = buf
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or("no header end")?;
        let head = String::from_utf8_lossy(&buf[..split]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or("bad status line")?;
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        Ok(Answer {
            status,
            headers,
            body: buf[split + 4..].to_vec(),
        })
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| "timed out".to_owned())?
}

pub async fn get(addr: SocketAddr, path: &str) -> Answer {
    get_with(addr, path, "", Duration::from_secs(5))
        .await
        .unwrap()
}
