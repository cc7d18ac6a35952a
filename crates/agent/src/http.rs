//! A minimal HTTP/1.0 client for talking to other members' REST APIs (the election's
//! probes, the failsafe confirmations, `raftctl`'s restart/reload/reinit and `--wait`):
//! one request per connection, bodies up to 1 MiB; `https://` URLs with the
//! [`Client`]'s TLS config (the CA to trust, the certificate to present).

use std::sync::Arc;

use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::TlsConnector;

/// The largest answer read.
const MAX_ANSWER: u64 = 1 << 20;

/// Plain HTTP, plus HTTPS when built with a TLS config.
#[derive(Clone, Default)]
pub struct Client {
    tls: Option<TlsConnector>,
}

impl Client {
    pub fn new(tls: Option<Arc<ClientConfig>>) -> Self {
        Self { tls: tls.map(TlsConnector::from) }
    }

    /// Sends `METHOD url` with an optional JSON body and Basic credentials
    /// (`user:password`); returns the status code and the body.
    pub async fn request(&self, method: &str, url: &str, body: Option<&str>, basic: Option<&str>) -> std::io::Result<(u16, String)> {
        let (https, rest) = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
            (Some(rest), _) => (true, rest),
            (None, Some(rest)) => (false, rest),
            _ => return Err(std::io::Error::other(format!("only http:// and https:// URLs, not {url}"))),
        };
        let (hostport, path) = rest.split_once('/').map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
        let mut head = format!("{method} {path} HTTP/1.0\r\nHost: {hostport}\r\nConnection: close\r\n");
        if let Some(credentials) = basic {
            head.push_str(&format!("Authorization: Basic {}\r\n", base64(credentials.as_bytes())));
        }
        let body = body.unwrap_or("");
        if !body.is_empty() {
            head.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let stream = tokio::net::TcpStream::connect(hostport).await?;
        if !https {
            return exchange(stream, &head, body).await;
        }
        let connector = self.tls.as_ref().ok_or_else(|| {
            std::io::Error::other(format!("{url}: HTTPS needs the CA that signed the server's certificate (raftctl --cacert)"))
        })?;
        let host = hostport.rsplit_once(':').map_or(hostport, |(h, _)| h).trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(host.to_string()).map_err(|e| std::io::Error::other(format!("{url}: {e}")))?;
        exchange(connector.connect(name, stream).await?, &head, body).await
    }

    /// `GET url`: the body of any answer.
    pub async fn get(&self, url: &str) -> std::io::Result<String> {
        self.request("GET", url, None, None).await.map(|(_, body)| body)
    }
}

/// Writes the request, reads the answer until the server closes the connection.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, head: &str, body: &str) -> std::io::Result<(u16, String)> {
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.flush().await?;
    let mut raw = Vec::new();
    match stream.take(MAX_ANSWER).read_to_end(&mut raw).await {
        // A TLS server may close without close_notify after a complete answer.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        result => {
            result?;
        }
    }
    let text = String::from_utf8_lossy(&raw);
    let (status_line, rest) = text.split_once("\r\n").ok_or_else(|| std::io::Error::other("malformed HTTP answer"))?;
    let code = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other("malformed HTTP status line"))?;
    let body = rest.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_string();
    Ok((code, body))
}

/// Standard base64 (for Basic auth).
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_rfc4648() {
        for (plain, encoded) in
            [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foobar", "Zm9vYmFy"), ("admin:s3cr:t", "YWRtaW46czNjcjp0")]
        {
            assert_eq!(super::base64(plain.as_bytes()), encoded);
        }
    }
}
