//! Making an HTTP/2 request's `:authority` acceptable to our server, in one HPACK header
//! block (RFC 7541).
//!
//! etcdctl 3.4 dials the endpoint of `endpoint status`, `endpoint hashkv`, ... with the
//! endpoint string as the gRPC target, so a `--endpoints http://127.0.0.1:2379` request
//! carries `:authority: http://127.0.0.1:2379`. etcd (Go) takes any authority; h2, the
//! HTTP/2 server under tonic, resets such a stream with PROTOCOL_ERROR before any
//! service sees it (`uri::Authority` refuses `/`). So the bytes are fixed before h2
//! reads them: an `:authority` literal whose value is not a valid authority gets a
//! value of the same length that is (`scheme://host:port` becomes `scheme--@host:port`,
//! the scheme kept as user info), sent as a plain (not Huffman) literal of the same
//! kind. Same kind and same length keep the HPACK dynamic table, whose entry sizes count
//! decoded lengths, identical on both sides. Nothing else in the block changes, and a
//! block with no bad authority is left alone (the common case costs one scan).
//!
//! Only a `:authority` named by the static table (index 1) or spelled out is
//! recognised: a client naming it through its dynamic table is passed through as is.

use tonic::codegen::http::uri::Authority;

use super::huffman;

/// The static table index of `:authority`.
const AUTHORITY_INDEX: u64 = 1;
const AUTHORITY: &[u8] = b":authority";
/// The length of `:authority` Huffman-coded (57 bits).
const AUTHORITY_HUFFMAN_LEN: usize = 8;

/// Reads an HPACK integer with an `n`-bit prefix at `*pos`.
fn integer(block: &[u8], pos: &mut usize, n: u8) -> Option<u64> {
    let mask = (1u16 << n) - 1;
    let first = u64::from(u16::from(*block.get(*pos)?) & mask);
    *pos += 1;
    if first < u64::from(mask) {
        return Some(first);
    }
    let mut value = first;
    let mut shift = 0u32;
    loop {
        let byte = *block.get(*pos)?;
        *pos += 1;
        value = value.checked_add(u64::from(byte & 0x7f).checked_shl(shift)?)?;
        if byte & 0x80 == 0 {
            return Some(value);
        }
        shift += 7;
        if shift > 56 {
            return None;
        }
    }
}

/// Writes an HPACK integer with an `n`-bit prefix, the prefix byte's high bits `flags`.
fn write_integer(out: &mut Vec<u8>, flags: u8, n: u8, mut value: u64) {
    let mask = (1u64 << n) - 1;
    if value < mask {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | mask as u8);
    value -= mask;
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A string literal at `*pos`: whether it is Huffman-coded, and its bytes.
fn string<'a>(block: &'a [u8], pos: &mut usize) -> Option<(bool, &'a [u8])> {
    let huffman = *block.get(*pos)? & 0x80 != 0;
    let len = usize::try_from(integer(block, pos, 7)?).ok()?;
    let bytes = block.get(*pos..pos.checked_add(len)?)?;
    *pos += len;
    Some((huffman, bytes))
}

fn decoded(huffman: bool, bytes: &[u8]) -> Option<Vec<u8>> {
    if huffman {
        huffman::decode(bytes).ok()
    } else {
        Some(bytes.to_vec())
    }
}

/// A valid authority of the same length as `value` (which is not one), if there is one.
pub fn replacement(value: &[u8]) -> Option<Vec<u8>> {
    if value.is_empty() {
        return None;
    }
    let scheme_kept = String::from_utf8_lossy(value).replacen("://", "--@", 1).into_bytes();
    if scheme_kept.len() == value.len() && Authority::try_from(scheme_kept.as_slice()).is_ok() {
        return Some(scheme_kept);
    }
    Some(vec![b'x'; value.len()])
}

/// The block with every bad `:authority` value replaced, or `None` when it needs no
/// change (or is not valid HPACK: h2 then refuses it as it would have).
pub fn fix(block: &[u8]) -> Option<Vec<u8>> {
    let mut fixed: Option<Vec<u8>> = None;
    // How far `block` has been copied into `fixed`.
    let mut copied = 0;
    let mut pos = 0;
    while pos < block.len() {
        let start = pos;
        let first = block[pos];
        // (prefix bits of the name index, the representation's flag bits)
        let (n, flags) = match first {
            b if b & 0x80 != 0 => {
                integer(block, &mut pos, 7)?;
                continue;
            }
            b if b & 0xc0 == 0x40 => (6, 0x40),
            b if b & 0xe0 == 0x20 => {
                integer(block, &mut pos, 5)?;
                continue;
            }
            b => (4, b & 0xf0),
        };
        let index = integer(block, &mut pos, n)?;
        let is_authority = match index {
            0 => {
                let (huffman, name) = string(block, &mut pos)?;
                // Decode only a name as long as `:authority` coded this way.
                let len = if huffman { AUTHORITY_HUFFMAN_LEN } else { AUTHORITY.len() };
                name.len() == len && decoded(huffman, name)?.as_slice() == AUTHORITY
            }
            i => i == AUTHORITY_INDEX,
        };
        let (huffman, value) = string(block, &mut pos)?;
        if !is_authority {
            continue;
        }
        let value = decoded(huffman, value)?;
        if Authority::try_from(value.as_slice()).is_ok() {
            continue;
        }
        let Some(new_value) = replacement(&value) else { continue };
        let out = fixed.get_or_insert_with(|| Vec::with_capacity(block.len() + 16));
        out.extend_from_slice(&block[copied..start]);
        write_integer(out, flags, n, AUTHORITY_INDEX);
        write_integer(out, 0, 7, new_value.len() as u64);
        out.extend_from_slice(&new_value);
        copied = pos;
    }
    let mut out = fixed?;
    out.extend_from_slice(&block[copied..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A literal field with a static name index and a plain value.
    fn literal(flags: u8, n: u8, index: u64, value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        write_integer(&mut out, flags, n, index);
        write_integer(&mut out, 0, 7, value.len() as u64);
        out.extend_from_slice(value);
        out
    }

    #[test]
    fn integers_round_trip() {
        for (n, value) in [(5u8, 10u64), (5, 1337), (7, 127), (4, 15), (6, 1 << 20)] {
            let mut out = Vec::new();
            write_integer(&mut out, 0, n, value);
            assert_eq!(integer(&out, &mut 0, n), Some(value), "{n} {value}");
        }
        // RFC 7541 C.1.2: 1337 with a 5-bit prefix.
        assert_eq!(integer(&[0x1f, 0x9a, 0x0a], &mut 0, 5), Some(1337));
        assert_eq!(integer(&[0x1f, 0xff], &mut 0, 5), None, "truncated");
    }

    #[test]
    fn a_scheme_prefixed_authority_is_replaced_in_place() {
        // :method POST (indexed 3), :scheme http (6), :path, :authority with incremental
        // indexing, Huffman-coded as grpc-go sends it, then a header that must survive.
        let huffman_authority = [0x9d, 0x29, 0xad, 0x17, 0x18, 0x63, 0xc7, 0x8f, 0x0b, 0x97, 0xc8, 0xe9, 0xae, 0x82, 0xae, 0x43, 0xd3];
        let mut block = vec![0x83, 0x86];
        block.extend(literal(0x00, 4, 4, b"/etcdserverpb.Maintenance/Status"));
        block.push(0x41);
        block.push(0x80 | huffman_authority.len() as u8);
        block.extend_from_slice(&huffman_authority);
        let tail = literal(0x00, 4, 31, b"application/grpc");
        block.extend(&tail);
        let fixed = fix(&block).expect("a bad authority is fixed");
        let mut want = vec![0x83, 0x86];
        want.extend(literal(0x00, 4, 4, b"/etcdserverpb.Maintenance/Status"));
        want.extend(literal(0x40, 6, 1, b"https--@www.example.com"));
        want.extend(&tail);
        assert_eq!(fixed, want);
    }

    #[test]
    fn other_representations_keep_their_kind() {
        let never = literal(0x10, 4, 1, b"http://127.0.0.1:2379");
        assert_eq!(fix(&never), Some(literal(0x10, 4, 1, b"http--@127.0.0.1:2379")));
        let mut named = vec![0x00, 10];
        named.extend_from_slice(b":authority");
        named.extend(literal(0, 7, 0, b"a/b").split_off(1));
        assert_eq!(fix(&named), Some(literal(0x00, 4, 1, b"xxx")));
    }

    #[test]
    fn good_authorities_and_bad_input_are_left_alone() {
        assert_eq!(fix(&literal(0x40, 6, 1, b"127.0.0.1:2379")), None);
        assert_eq!(fix(&literal(0x00, 4, 1, b"[::1]:2379")), None);
        assert_eq!(fix(&[0x82, 0x20, 0x3f, 0xe1, 0x1f]), None, "indexed fields and a table size update");
        assert_eq!(fix(&[0x41, 0x85, 0x01]), None, "a truncated literal");
        assert_eq!(fix(&[]), None);
    }

    #[test]
    fn replacements_are_valid_and_keep_the_length() {
        for bad in ["http://127.0.0.1:2379", "https://node1:2379", "unix://a/b", "a b", "http://x/y/z"] {
            let new = replacement(bad.as_bytes()).expect("a replacement");
            assert_eq!(new.len(), bad.len(), "{bad}");
            assert!(Authority::try_from(new.as_slice()).is_ok(), "{bad} -> {}", String::from_utf8_lossy(&new));
        }
        assert_eq!(replacement(b"https://node1:2379").as_deref(), Some(&b"https--@node1:2379"[..]));
        assert_eq!(replacement(b""), None);
    }
}
