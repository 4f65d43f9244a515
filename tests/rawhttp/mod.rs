//! A hand-rolled HTTP/1.1 endpoint that answers whatever a test sets, framed
//! however the test likes (lying `Content-Length`, close-delimited, chunked,
//! endless, dripping, silent), for tests of what a client does with answers no
//! real server library would produce.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

/// How the body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// A correct `Content-Length`.
    Length,
    /// No length: the body ends when the connection closes.
    Close,
    /// `Transfer-Encoding: chunked`, in chunks of this many bytes (at least 1).
    Chunked(usize),
    /// `Content-Length` claims this many bytes more than are sent, then the
    /// connection closes: a truncated answer.
    Short(usize),
}

/// What the endpoint does with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behaviour {
    /// Answers with the status, headers and body.
    Answer,
    /// Reads the request and never answers (the connection stays open).
    Silent,
    /// Sends the status line and headers, then body bytes without end.
    Endless,
    /// Sends the status line and headers, then one body byte per period.
    Drip(Duration),
}

#[derive(Debug, Clone)]
pub struct Answer {
    pub behaviour: Behaviour,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub framing: Framing,
}

impl Answer {
    pub fn json(status: u16, body: impl Into<Vec<u8>>) -> Answer {
        Answer {
            behaviour: Behaviour::Answer,
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.into(),
            framing: Framing::Length,
        }
    }

    pub fn with(behaviour: Behaviour) -> Answer {
        Answer {
            behaviour,
            ..Answer::json(200, "")
        }
    }

    /// The status line and headers, as sent.
    fn head(&self) -> Vec<u8> {
        let mut head = format!("HTTP/1.1 {} X\r\nconnection: close\r\n", self.status);
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        match (&self.behaviour, self.framing) {
            (Behaviour::Drip(_), _) => head.push_str("content-length: 1000000\r\n"),
            (Behaviour::Endless, _) | (_, Framing::Close) => {}
            (_, Framing::Length) => {
                head.push_str(&format!("content-length: {}\r\n", self.body.len()))
            }
            (_, Framing::Short(more)) => head.push_str(&format!(
                "content-length: {}\r\n",
                self.body.len() + more.max(1)
            )),
            (_, Framing::Chunked(_)) => head.push_str("transfer-encoding: chunked\r\n"),
        }
        head.push_str("\r\n");
        head.into_bytes()
    }
}

/// A running endpoint: the n-th request gets the n-th answer of the current
/// list (the last one once the list runs out), then the connection is closed.
pub struct Endpoint {
    pub addr: std::net::SocketAddr,
    answer: Arc<Mutex<Vec<Answer>>>,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Endpoint {
    pub async fn start(answer: Answer) -> Endpoint {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let answer = Arc::new(Mutex::new(vec![answer]));
        let requests = Arc::new(AtomicUsize::new(0));
        let (a, r) = (answer.clone(), requests.clone());
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (a, r) = (a.clone(), r.clone());
                tokio::spawn(async move {
                    serve(socket, a, r).await;
                });
            }
        });
        Endpoint {
            addr,
            answer,
            requests,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set(&self, answer: Answer) {
        self.set_all(vec![answer]);
    }

    /// Answers for the next requests, in order; the count of requests restarts.
    pub fn set_all(&self, answers: Vec<Answer>) {
        assert!(!answers.is_empty());
        *self.answer.lock().unwrap() = answers;
        self.requests.store(0, Ordering::SeqCst);
    }

    /// Requests read so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// Serves one connection (plain or TLS): reads one request, answers, closes.
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut socket: S,
    answers: Arc<Mutex<Vec<Answer>>>,
    requests: Arc<AtomicUsize>,
) {
    if read_request(&mut socket).await.is_none() {
        return;
    }
    let n = requests.fetch_add(1, Ordering::SeqCst);
    let answer = {
        let all = answers.lock().unwrap();
        all[n.min(all.len() - 1)].clone()
    };
    let _ = respond(&mut socket, &answer).await;
    let _ = socket.shutdown().await;
}

async fn respond<S: AsyncWrite + AsyncRead + Unpin>(
    socket: &mut S,
    answer: &Answer,
) -> std::io::Result<()> {
    match &answer.behaviour {
        Behaviour::Silent => {
            // Hold the connection until the client gives up on it.
            let mut sink = [0u8; 1024];
            while socket.read(&mut sink).await? > 0 {}
            return Ok(());
        }
        Behaviour::Endless => {
            socket.write_all(&answer.head()).await?;
            let block = vec![b' '; 64 * 1024];
            loop {
                socket.write_all(&block).await?;
            }
        }
        Behaviour::Drip(period) => {
            socket.write_all(&answer.head()).await?;
            loop {
                socket.write_all(b" ").await?;
                socket.flush().await?;
                tokio::time::sleep(*period).await;
            }
        }
        Behaviour::Answer => {}
    }
    socket.write_all(&answer.head()).await?;
    match answer.framing {
        Framing::Chunked(size) => {
            for chunk in answer.body.chunks(size.max(1)) {
                socket
                    .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                    .await?;
                socket.write_all(chunk).await?;
                socket.write_all(b"\r\n").await?;
            }
            socket.write_all(b"0\r\n\r\n").await?;
        }
        _ => socket.write_all(&answer.body).await?,
    }
    socket.flush().await
}

/// Reads one request (head and `Content-Length` body); `None` at EOF or on
/// a request too large to be one of the client's.
pub async fn read_request<S: AsyncRead + Unpin>(socket: &mut S) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 1 << 20 {
            return None;
        }
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(buf)
}
