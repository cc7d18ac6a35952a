//! Decoding HPACK's Huffman-coded strings (RFC 7541 §5.2, Appendix B). The code is
//! canonical: codes of one length are consecutive and follow symbol order, so the code
//! lengths alone define it, and decoding walks one bit at a time (used only for the few
//! `:authority` values `authority` looks at, never on bulk data).

use std::sync::OnceLock;

/// The code length of each symbol 0..=255 and of EOS (256), from RFC 7541 Appendix B.
#[rustfmt::skip]
const LENGTHS: [u8; 257] = [
    // 0..=31: control characters
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28,
    28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28,
    // ' ' ! " # $ % & ' ( ) * + , - . /
    6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6,
    // 0..9 : ; < = > ?
    5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10,
    // @ A..O
    13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    // P..Z [ \ ] ^ _
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6,
    // ` a..o
    15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5,
    // p..z { | } ~ DEL
    6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28,
    // 128..=255
    20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23,
    24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24,
    22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23,
    21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23,
    26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25,
    19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27,
    20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23,
    26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26,
    // EOS
    30,
];

const MAX_LEN: usize = 30;
const EOS: u16 = 256;

/// The canonical code: how many codes each length has, and the symbols in code order.
struct Code {
    counts: [u32; MAX_LEN + 1],
    symbols: Vec<u16>,
}

fn code() -> &'static Code {
    static CODE: OnceLock<Code> = OnceLock::new();
    CODE.get_or_init(|| {
        let mut counts = [0u32; MAX_LEN + 1];
        for &len in &LENGTHS {
            counts[usize::from(len)] += 1;
        }
        let mut symbols: Vec<u16> = (0..=EOS).collect();
        symbols.sort_by_key(|&s| LENGTHS[usize::from(s)]);
        Code { counts, symbols }
    })
}

/// Why a Huffman string did not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HuffmanError {
    /// EOS appears in the data, or a code is longer than any in the table.
    InvalidCode,
    /// The string ends with more than 7 padding bits, or padding that is not all ones.
    InvalidPadding,
}

/// Decodes a Huffman-coded string.
pub fn decode(data: &[u8]) -> Result<Vec<u8>, HuffmanError> {
    let code = code();
    let mut out = Vec::with_capacity(data.len() * 8 / 5);
    // The code being read: its value, its length, and the padding seen (all ones so far).
    let (mut value, mut len, mut first, mut index) = (0u32, 0usize, 0u32, 0u32);
    let mut ones = true;
    for byte in data {
        for shift in (0..8).rev() {
            let bit = u32::from((byte >> shift) & 1);
            value = (value << 1) | bit;
            len += 1;
            ones &= bit == 1;
            if len > MAX_LEN {
                return Err(HuffmanError::InvalidCode);
            }
            let count = code.counts[len];
            if value - first < count {
                let symbol = code.symbols[(index + value - first) as usize];
                if symbol == EOS {
                    return Err(HuffmanError::InvalidCode);
                }
                out.push(symbol as u8);
                (value, len, first, index, ones) = (0, 0, 0, 0, true);
            } else {
                index += count;
                first = (first + count) << 1;
            }
        }
    }
    if len > 7 || !ones {
        return Err(HuffmanError::InvalidPadding);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lengths_make_a_complete_code() {
        // Kraft's equality: a complete prefix code (EOS fills the last leaf).
        let sum: f64 = LENGTHS.iter().map(|&l| 0.5f64.powi(i32::from(l))).sum();
        assert_eq!(sum, 1.0);
        let per_length: Vec<(usize, u32)> = code().counts.iter().enumerate().filter(|(_, &c)| c > 0).map(|(l, &c)| (l, c)).collect();
        let rfc = [
            (5, 10),
            (6, 26),
            (7, 32),
            (8, 6),
            (10, 5),
            (11, 3),
            (12, 2),
            (13, 6),
            (14, 2),
            (15, 3),
            (19, 3),
            (20, 8),
            (21, 13),
            (22, 26),
            (23, 29),
            (24, 12),
            (25, 4),
            (26, 15),
            (27, 19),
            (28, 29),
            (30, 4),
        ];
        assert_eq!(per_length, rfc);
    }

    #[test]
    fn decodes_the_rfc_examples() {
        // RFC 7541 C.4.1, C.4.2, C.6.1.
        assert_eq!(
            decode(&[0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff]).as_deref(),
            Ok(&b"www.example.com"[..])
        );
        assert_eq!(decode(&[0xa8, 0xeb, 0x10, 0x64, 0x9c, 0xbf]).as_deref(), Ok(&b"no-cache"[..]));
        assert_eq!(decode(&[0x64, 0x02]).as_deref(), Ok(&b"302"[..]));
        assert_eq!(decode(&[0xae, 0xc3, 0x77, 0x1a, 0x4b]).as_deref(), Ok(&b"private"[..]));
        let date = [
            0xd0, 0x7a, 0xbe, 0x94, 0x10, 0x54, 0xd4, 0x44, 0xa8, 0x20, 0x05, 0x95, 0x04, 0x0b, 0x81, 0x66, 0xe0, 0x82, 0xa6, 0x2d, 0x1b,
            0xff,
        ];
        assert_eq!(decode(&date).as_deref(), Ok(&b"Mon, 21 Oct 2013 20:13:21 GMT"[..]));
        let url = [0x9d, 0x29, 0xad, 0x17, 0x18, 0x63, 0xc7, 0x8f, 0x0b, 0x97, 0xc8, 0xe9, 0xae, 0x82, 0xae, 0x43, 0xd3];
        assert_eq!(decode(&url).as_deref(), Ok(&b"https://www.example.com"[..]));
    }

    #[test]
    fn refuses_bad_padding_and_eos() {
        assert_eq!(decode(&[0x00]), Err(HuffmanError::InvalidPadding), "'0' then three zero bits");
        assert_eq!(decode(&[0xff, 0xff]), Err(HuffmanError::InvalidPadding), "16 bits of ones");
        assert_eq!(decode(&[0xff, 0xff, 0xff, 0xff]), Err(HuffmanError::InvalidCode), "EOS");
        assert_eq!(decode(&[]), Ok(Vec::new()));
    }
}
