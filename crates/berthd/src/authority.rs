//! The HTTP/2 `:authority` of requests on berthd's unix socket, made one that `h2` accepts.
//!
//! Go gRPC clients of Kubernetes' age (crictl and critest v1.26, kubelets up to 1.25) send the
//! socket's path (`/run/berth/berthd.sock`) as the request's `:authority`. containerd's Go
//! server takes it; hyper's `h2` refuses it as a malformed URI and resets the stream
//! (`PROTOCOL_ERROR`) before any service sees the call. On a unix socket the authority means
//! nothing, so berthd rewrites it to `localhost` in the bytes a client sends, before `h2`
//! reads them: in each complete HEADERS frame's header block (HPACK, RFC 7541), every literal
//! `:authority` value becomes `localhost`. A value stored in the HPACK dynamic table is stored
//! rewritten too, so later requests that refer to it by index read `localhost` as well; the
//! rewritten entries are never larger than the client's, so both ends' tables stay aligned.
//! Header blocks split over CONTINUATION frames pass unchanged.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UnixStream;

/// The HTTP/2 client connection preface.
const PREFACE_LEN: usize = 24;
const FRAME_HEADER_LEN: usize = 9;
const HEADERS: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
const AUTHORITY: &[u8] = b":authority";
const LOCALHOST: &[u8] = b"localhost";

/// Decode an HPACK integer with an `n`-bit prefix at `b[*i]`; None when truncated.
fn int(b: &[u8], i: &mut usize, n: u8) -> Option<usize> {
    let mask = (1u16 << n) as usize - 1;
    let mut v = (*b.get(*i)? as usize) & mask;
    *i += 1;
    if v < mask {
        return Some(v);
    }
    let mut shift = 0u32;
    loop {
        let byte = *b.get(*i)?;
        *i += 1;
        v = v.checked_add(((byte & 0x7f) as usize).checked_shl(shift)?)?;
        if byte & 0x80 == 0 {
            return Some(v);
        }
        shift += 7;
        if shift > 28 {
            return None;
        }
    }
}

/// A string's (Huffman flag, bytes) at `b[*i]`.
fn string<'a>(b: &'a [u8], i: &mut usize) -> Option<(bool, &'a [u8])> {
    let huffman = *b.get(*i)? & 0x80 != 0;
    let len = int(b, i, 7)?;
    let s = b.get(*i..i.checked_add(len)?)?;
    *i += len;
    Some((huffman, s))
}

/// The header block `block` with every literal `:authority` value replaced by `localhost`;
/// None when it cannot be parsed (it is then passed on unchanged, for `h2` to judge).
pub fn rewrite_block(block: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(block.len());
    let mut i = 0;
    while i < block.len() {
        let start = i;
        let first = block[i];
        let prefix = if first & 0x80 != 0 {
            int(block, &mut i, 7)?;
            out.extend_from_slice(&block[start..i]);
            continue;
        } else if first & 0xc0 == 0x40 {
            6
        } else if first & 0xe0 == 0x20 {
            int(block, &mut i, 5)?;
            out.extend_from_slice(&block[start..i]);
            continue;
        } else {
            4
        };
        let index = int(block, &mut i, prefix)?;
        let is_authority = if index == 0 {
            let (huffman, name) = string(block, &mut i)?;
            !huffman && name == AUTHORITY
        } else {
            index == 1
        };
        let value_at = i;
        string(block, &mut i)?;
        out.extend_from_slice(&block[start..value_at]);
        if is_authority {
            out.push(LOCALHOST.len() as u8); // not Huffman; 9 < 127 fits the prefix
            out.extend_from_slice(LOCALHOST);
        } else {
            out.extend_from_slice(&block[value_at..i]);
        }
    }
    Some(out)
}

/// A HEADERS frame (`flags`, `payload`) rewritten: (flags, payload); padding is dropped.
fn rewrite_headers(flags: u8, payload: &[u8]) -> Option<(u8, Vec<u8>)> {
    if flags & END_HEADERS == 0 {
        return None;
    }
    let mut at = 0;
    let mut end = payload.len();
    if flags & PADDED != 0 {
        let pad = *payload.first()? as usize;
        at = 1;
        end = end.checked_sub(pad)?;
    }
    let mut out = Vec::with_capacity(payload.len());
    if flags & PRIORITY != 0 {
        out.extend_from_slice(payload.get(at..at + 5)?);
        at += 5;
    }
    out.extend_from_slice(&rewrite_block(payload.get(at..end)?)?);
    Some((flags & !PADDED, out))
}

/// A client connection whose requests' `:authority` is rewritten as the module says.
#[derive(Debug)]
pub struct AuthorityFix {
    inner: UnixStream,
    /// Bytes read from the client, not yet a complete frame.
    pending: Vec<u8>,
    /// Bytes ready for the server, from `ready[at..]`.
    ready: Vec<u8>,
    at: usize,
    preface_left: usize,
    eof: bool,
}

impl AuthorityFix {
    pub fn new(inner: UnixStream) -> AuthorityFix {
        AuthorityFix {
            inner,
            pending: Vec::new(),
            ready: Vec::new(),
            at: 0,
            preface_left: PREFACE_LEN,
            eof: false,
        }
    }

    /// Move every complete frame (and the preface) of `pending` to `ready`.
    fn process(&mut self) {
        if self.preface_left > 0 {
            let n = self.preface_left.min(self.pending.len());
            self.ready.extend(self.pending.drain(..n));
            self.preface_left -= n;
            if self.preface_left > 0 {
                return;
            }
        }
        let mut i = 0;
        while self.pending.len() - i >= FRAME_HEADER_LEN {
            let h = &self.pending[i..i + FRAME_HEADER_LEN];
            let len = (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
            let end = i + FRAME_HEADER_LEN + len;
            if self.pending.len() < end {
                break;
            }
            let (kind, flags) = (h[3], h[4]);
            let payload = &self.pending[i + FRAME_HEADER_LEN..end];
            match (kind == HEADERS)
                .then(|| rewrite_headers(flags, payload))
                .flatten()
                .filter(|(_, p)| p.len() < 1 << 24)
            {
                Some((flags, p)) => {
                    let n = p.len();
                    self.ready.extend_from_slice(&[
                        (n >> 16) as u8,
                        (n >> 8) as u8,
                        n as u8,
                        kind,
                        flags,
                    ]);
                    self.ready
                        .extend_from_slice(&self.pending[i + 5..i + FRAME_HEADER_LEN]);
                    self.ready.extend_from_slice(&p);
                }
                None => self.ready.extend_from_slice(&self.pending[i..end]),
            }
            i = end;
        }
        self.pending.drain(..i);
    }
}

impl AsyncRead for AuthorityFix {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.at < this.ready.len() {
                let n = buf.remaining().min(this.ready.len() - this.at);
                buf.put_slice(&this.ready[this.at..this.at + n]);
                this.at += n;
                if this.at == this.ready.len() {
                    this.ready.clear();
                    this.at = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; 16 * 1024];
            let mut rb = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {
                    if rb.filled().is_empty() {
                        // The client is done: whatever is left goes on as it is.
                        this.eof = true;
                        let rest = std::mem::take(&mut this.pending);
                        this.ready.extend_from_slice(&rest);
                    } else {
                        this.pending.extend_from_slice(rb.filled());
                        this.process();
                    }
                }
            }
        }
    }
}

impl AsyncWrite for AuthorityFix {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for AuthorityFix {
    type ConnectInfo = <UnixStream as tonic::transport::server::Connected>::ConnectInfo;
    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A literal with incremental indexing of `:authority` (static index 1) holding the
    /// socket path, between an indexed `:method: POST` (3) and a literal-name header.
    #[test]
    fn a_literal_authority_becomes_localhost_and_the_rest_is_kept() {
        let path = b"/run/berth/berthd.sock";
        let mut block = vec![0x83, 0x41, path.len() as u8];
        block.extend_from_slice(path);
        block.extend_from_slice(&[0x00, 0x02, b't', b'e', 0x08]);
        block.extend_from_slice(b"trailers");
        let out = rewrite_block(&block).unwrap();
        let mut want = vec![0x83, 0x41, 9];
        want.extend_from_slice(b"localhost");
        want.extend_from_slice(&[0x00, 0x02, b't', b'e', 0x08]);
        want.extend_from_slice(b"trailers");
        assert_eq!(out, want);
        // A literal name `:authority`, never indexed, long value (multi-byte length).
        let long = vec![b'/'; 200];
        let mut block = vec![0x10, 10];
        block.extend_from_slice(AUTHORITY);
        block.extend_from_slice(&[0x7f, 200 - 127]); // 127 + 73
        block.extend_from_slice(&long);
        let out = rewrite_block(&block).unwrap();
        let mut want = vec![0x10, 10];
        want.extend_from_slice(AUTHORITY);
        want.push(9);
        want.extend_from_slice(b"localhost");
        assert_eq!(out, want);
        // Truncated: left to h2.
        assert_eq!(rewrite_block(&[0x41, 30, b'/']), None);
        // A table size update and an indexed field pass.
        assert_eq!(
            rewrite_block(&[0x3f, 0xe1, 0x1f, 0xbe]).unwrap(),
            [0x3f, 0xe1, 0x1f, 0xbe]
        );
    }

    #[test]
    fn padded_and_prioritized_headers_frames_are_rewritten_without_padding() {
        let mut payload = vec![2u8]; // pad length
        payload.extend_from_slice(&[0, 0, 0, 0, 15]); // priority
        payload.extend_from_slice(&[0x41, 2, b'/', b'x']);
        payload.extend_from_slice(&[0, 0]);
        let (flags, p) = rewrite_headers(END_HEADERS | PADDED | PRIORITY, &payload).unwrap();
        assert_eq!(flags, END_HEADERS | PRIORITY);
        let mut want = vec![0, 0, 0, 0, 15, 0x41, 9];
        want.extend_from_slice(b"localhost");
        assert_eq!(p, want);
        assert!(
            rewrite_headers(0, &payload).is_none(),
            "continued: left alone"
        );
    }
}
