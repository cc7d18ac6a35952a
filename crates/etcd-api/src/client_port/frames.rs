//! The client side of a client-port connection, read through [`FixAuthority`]: HTTP/2
//! frames from the client pass on unchanged except header blocks with a bad
//! `:authority` (`authority` fixes them); anything that does not start with the HTTP/2
//! preface (HTTP/1.1) passes on untouched. Writes go straight to the connection.
//!
//! Cost on the gRPC path: one copy of the bytes read, and one scan of each header
//! block; DATA frames are not looked into.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::authority;

/// What every HTTP/2 client sends first.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// The largest frame a client may send us (HTTP/2's default SETTINGS_MAX_FRAME_SIZE,
/// which the client port keeps): a fixed block that would not fit is left as it was.
const MAX_FRAME: usize = 16_384;
/// Header blocks longer than this are passed on unread (h2 refuses them anyway).
const MAX_BLOCK: usize = 64 * 1024;
const READ_CHUNK: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Not yet known whether the client speaks HTTP/2.
    Preface,
    /// HTTP/2: header blocks are looked at.
    Frames,
    /// Anything else: bytes pass on untouched.
    Passthrough,
}

/// A connection whose HTTP/2 header blocks get acceptable `:authority` values.
pub struct FixAuthority<T> {
    inner: T,
    mode: Mode,
    /// Bytes read from `inner` are `buf[head..tail]`; the first `ready` of them are
    /// processed and may be handed out. `buf` beyond `tail` is room for the next read.
    buf: Vec<u8>,
    head: usize,
    tail: usize,
    ready: usize,
    /// Bytes of the current non-header frame's payload still to pass on unread.
    skip: usize,
    eof: bool,
}

impl<T> FixAuthority<T> {
    pub fn new(inner: T) -> Self {
        Self { inner, mode: Mode::Preface, buf: Vec::new(), head: 0, tail: 0, ready: 0, skip: 0, eof: false }
    }

    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// At least [`READ_CHUNK`] bytes of room after `tail`: unread bytes move to the front,
    /// and the buffer grows only when they fill it.
    fn make_room(&mut self) {
        if self.buf.len() - self.tail >= READ_CHUNK {
            return;
        }
        self.buf.copy_within(self.head..self.tail, 0);
        (self.head, self.tail) = (0, self.tail - self.head);
        if self.buf.len() - self.tail < READ_CHUNK {
            self.buf.resize(self.tail + READ_CHUNK, 0);
        }
    }

    /// Moves as many buffered bytes as can be processed into the ready prefix.
    fn process(&mut self) {
        loop {
            let processed = self.head + self.ready;
            let pending = &self.buf[processed..self.tail];
            match self.mode {
                Mode::Preface => {
                    let n = pending.len().min(PREFACE.len());
                    if pending[..n] != PREFACE[..n] {
                        self.mode = Mode::Passthrough;
                    } else if n == PREFACE.len() {
                        self.ready += n;
                        self.mode = Mode::Frames;
                    } else if self.eof {
                        self.mode = Mode::Passthrough;
                    } else {
                        return;
                    }
                }
                Mode::Passthrough => {
                    self.ready = self.tail - self.head;
                    return;
                }
                Mode::Frames if self.skip > 0 => {
                    let n = self.skip.min(pending.len());
                    self.ready += n;
                    self.skip -= n;
                    if n == 0 {
                        return;
                    }
                }
                Mode::Frames => match header_block_end(pending) {
                    Scan::NeedMore if self.eof => {
                        self.ready = self.tail - self.head;
                        return;
                    }
                    Scan::NeedMore => return,
                    Scan::Other { payload } => {
                        self.ready += FRAME_HEADER;
                        self.skip = payload;
                    }
                    Scan::Block { len } => match fix_frames(&pending[..len]) {
                        Some(fixed) => {
                            self.buf.splice(processed..processed + len, fixed.iter().copied());
                            self.tail = self.tail + fixed.len() - len;
                            self.ready += fixed.len();
                        }
                        None => self.ready += len,
                    },
                },
            }
        }
    }
}

/// What starts the unprocessed bytes of an HTTP/2 stream.
#[derive(Debug, PartialEq, Eq)]
enum Scan {
    NeedMore,
    /// A frame other than a header block (or one too large to look at).
    Other {
        payload: usize,
    },
    /// A whole header block: HEADERS and its CONTINUATIONs, `len` bytes of frames.
    Block {
        len: usize,
    },
}

fn frame_header(bytes: &[u8]) -> Option<(usize, u8, u8)> {
    let h = bytes.get(..FRAME_HEADER)?;
    let len = usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
    Some((len, h[3], h[4]))
}

fn header_block_end(bytes: &[u8]) -> Scan {
    let Some((len, kind, flags)) = frame_header(bytes) else { return Scan::NeedMore };
    if kind != HEADERS {
        return Scan::Other { payload: len };
    }
    let (mut end, mut flags) = (FRAME_HEADER + len, flags);
    while flags & END_HEADERS == 0 {
        if end > MAX_BLOCK {
            return Scan::Other { payload: len };
        }
        match frame_header(&bytes[end.min(bytes.len())..]) {
            None => return Scan::NeedMore,
            Some((_, kind, _)) if kind != CONTINUATION => return Scan::Other { payload: len },
            Some((next, _, next_flags)) => {
                end += FRAME_HEADER + next;
                flags = next_flags;
            }
        }
    }
    if end > MAX_BLOCK {
        Scan::Other { payload: len }
    } else if end > bytes.len() {
        Scan::NeedMore
    } else {
        Scan::Block { len: end }
    }
}

/// The frames of one header block rewritten as a single HEADERS frame with fixed
/// authorities, or `None` to keep them as they are.
fn fix_frames(frames: &[u8]) -> Option<Vec<u8>> {
    let (len, _, flags) = frame_header(frames)?;
    let stream_id = &frames[5..FRAME_HEADER];
    let payload = &frames[FRAME_HEADER..FRAME_HEADER + len];
    let mut start = 0;
    let mut pad = 0;
    if flags & PADDED != 0 {
        pad = usize::from(*payload.first()?);
        start = 1;
    }
    let priority = if flags & PRIORITY != 0 { payload.get(start..start + 5)? } else { &[] };
    start += priority.len();
    let mut block = payload.get(start..payload.len().checked_sub(pad)?)?.to_vec();
    let mut pos = FRAME_HEADER + len;
    while pos < frames.len() {
        let (next, _, _) = frame_header(&frames[pos..])?;
        block.extend_from_slice(frames.get(pos + FRAME_HEADER..pos + FRAME_HEADER + next)?);
        pos += FRAME_HEADER + next;
    }
    let block = authority::fix(&block)?;
    let new_len = priority.len() + block.len();
    if new_len > MAX_FRAME {
        return None;
    }
    let mut out = Vec::with_capacity(FRAME_HEADER + new_len);
    out.extend_from_slice(&[(new_len >> 16) as u8, (new_len >> 8) as u8, new_len as u8, HEADERS]);
    out.push((flags & !PADDED) | END_HEADERS);
    out.extend_from_slice(stream_id);
    out.extend_from_slice(priority);
    out.extend_from_slice(&block);
    Some(out)
}

impl<T: AsyncRead + Unpin> AsyncRead for FixAuthority<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.mode == Mode::Passthrough && this.head == this.tail {
            return Pin::new(&mut this.inner).poll_read(cx, out);
        }
        while this.ready == 0 && !this.eof {
            this.make_room();
            let mut read = ReadBuf::new(&mut this.buf[this.tail..]);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            let n = read.filled().len();
            this.tail += n;
            this.eof = n == 0;
            this.process();
        }
        let n = this.ready.min(out.remaining());
        out.put_slice(&this.buf[this.head..this.head + n]);
        this.head += n;
        this.ready -= n;
        if this.head == this.tail {
            (this.head, this.tail) = (0, 0);
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for FixAuthority<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    fn frame(kind: u8, flags: u8, stream: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags, 0, 0, 0, stream];
        out.extend_from_slice(payload);
        out
    }

    /// `:authority: <value>` as a literal without indexing, plain.
    fn authority(value: &str) -> Vec<u8> {
        let mut out = vec![0x01, value.len() as u8];
        out.extend_from_slice(value.as_bytes());
        out
    }

    async fn read_all(input: Vec<u8>, chunk: usize) -> Vec<u8> {
        let (mut client, server) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            for piece in input.chunks(chunk) {
                client.write_all(piece).await.expect("write");
            }
        });
        let mut out = Vec::new();
        FixAuthority::new(server).read_to_end(&mut out).await.expect("read");
        writer.await.expect("writer");
        out
    }

    #[tokio::test]
    async fn fixes_split_header_blocks_and_keeps_every_other_byte() {
        let settings = frame(0x4, 0, 0, &[0, 3, 0, 0, 0, 100]);
        let mut block = vec![0x83, 0x86];
        block.extend(authority("http://127.0.0.1:2379"));
        let (first, second) = block.split_at(5);
        let mut padded = vec![2];
        padded.extend_from_slice(first);
        padded.extend_from_slice(&[0, 0]);
        let data = frame(0x0, 0x1, 1, &[7; 300]);
        let mut input = PREFACE.to_vec();
        input.extend(&settings);
        input.extend(frame(HEADERS, PADDED, 1, &padded));
        input.extend(frame(CONTINUATION, END_HEADERS, 1, second));
        input.extend(&data);
        let mut want = PREFACE.to_vec();
        want.extend(&settings);
        let mut fixed = vec![0x83, 0x86];
        fixed.extend(authority("http--@127.0.0.1:2379"));
        want.extend(frame(HEADERS, END_HEADERS, 1, &fixed));
        want.extend(&data);
        for chunk in [1, 7, 1000] {
            assert_eq!(read_all(input.clone(), chunk).await, want, "written {chunk} bytes at a time");
        }
    }

    #[tokio::test]
    async fn good_blocks_and_http1_pass_unchanged() {
        let mut input = PREFACE.to_vec();
        let mut block = vec![0x83];
        block.extend(authority("127.0.0.1:2379"));
        input.extend(frame(HEADERS, END_HEADERS | 0x1, 3, &block));
        assert_eq!(read_all(input.clone(), 5).await, input);
        let http1 = b"GET /health HTTP/1.1\r\nHost: http://x\r\n\r\n".to_vec();
        assert_eq!(read_all(http1.clone(), 3).await, http1);
        assert_eq!(read_all(b"PRI".to_vec(), 1).await, b"PRI", "a short stream ends");
    }
}
