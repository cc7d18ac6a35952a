//! A minimal HTTP/1.0 client for talking to other members' REST APIs (the election's
//! probes, `raftctl`'s restart/reload/reinit and `--wait`): one request per connection,
//! bodies up to 1 MiB. No TLS yet.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends `METHOD url` with an optional JSON body and Basic credentials (`user:password`);
/// returns the status code and the body.
pub async fn request(method: &str, url: &str, body: Option<&str>, basic: Option<&str>) -> std::io::Result<(u16, String)> {
    let rest = url.strip_prefix("http://").ok_or_else(|| std::io::Error::other(format!("only http:// URLs, not {url}")))?;
    let (hostport, path) = rest.split_once('/').map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
    let mut stream = tokio::net::TcpStream::connect(hostport).await?;
    let mut head = format!("{method} {path} HTTP/1.0\r\nHost: {hostport}\r\nConnection: close\r\n");
    if let Some(credentials) = basic {
        head.push_str(&format!("Authorization: Basic {}\r\n", base64(credentials.as_bytes())));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() {
        head.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.take(1 << 20).read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw);
    let (status_line, rest) = text.split_once("\r\n").ok_or_else(|| std::io::Error::other("malformed HTTP answer"))?;
    let code = status_line.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or_else(|| std::io::Error::other("malformed HTTP status line"))?;
    let body = rest.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_string();
    Ok((code, body))
}

/// `GET url`: the body of any answer.
pub async fn get(url: &str) -> std::io::Result<String> {
    request("GET", url, None, None).await.map(|(_, body)| body)
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
        for (plain, encoded) in [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foobar", "Zm9vYmFy"), ("admin:s3cr:t", "YWRtaW46czNjcjp0")] {
            assert_eq!(super::base64(plain.as_bytes()), encoded);
        }
    }
}
