//! The hash behind Maintenance.Hash and HashKV: CRC-32C (Castagnoli, as etcd uses) over
//! every live key-value at one revision, in key order. Members that applied the same log
//! agree on it, so `etcdctl endpoint hashkv` can compare them. (etcd hashes every
//! revision kept since the last compaction; raftgres hashes the live key space only.)

use raftgres_proto::mvccpb::KeyValue;

const fn crc32c_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0x82F6_3B78 } else { crc >> 1 };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
}

static TABLE: [u32; 256] = crc32c_table();

/// A running CRC-32C.
#[derive(Debug, Clone, Copy)]
pub struct Crc32c(u32);

impl Default for Crc32c {
    fn default() -> Self {
        Self(!0)
    }
}

impl Crc32c {
    pub fn update(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = TABLE[usize::from((self.0 as u8) ^ *b)] ^ (self.0 >> 8);
        }
    }

    pub fn finish(self) -> u32 {
        !self.0
    }
}

/// The hash of a key space (key-values in key order).
pub fn hash_kvs(kvs: &[KeyValue]) -> u32 {
    let mut crc = Crc32c::default();
    for kv in kvs {
        for field in [&kv.key, &kv.value] {
            crc.update(&(field.len() as u64).to_be_bytes());
            crc.update(field);
        }
        for n in [kv.create_revision, kv.mod_revision, kv.version, kv.lease] {
            crc.update(&n.to_be_bytes());
        }
    }
    crc.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_check_value() {
        // The standard check value of CRC-32C.
        let mut crc = Crc32c::default();
        crc.update(b"123456789");
        assert_eq!(crc.finish(), 0xE306_9283);
    }

    #[test]
    fn hash_depends_on_every_field() {
        let kv = KeyValue { key: b"k".to_vec(), value: b"v".to_vec(), create_revision: 2, mod_revision: 3, version: 1, lease: 0 };
        let base = hash_kvs(std::slice::from_ref(&kv));
        assert_eq!(base, hash_kvs(std::slice::from_ref(&kv)));
        for changed in [
            KeyValue { value: b"w".to_vec(), ..kv.clone() },
            KeyValue { mod_revision: 4, ..kv.clone() },
            KeyValue { lease: 9, ..kv.clone() },
            KeyValue { key: b"kv".to_vec(), value: Vec::new(), ..kv.clone() },
        ] {
            assert_ne!(base, hash_kvs(&[changed]));
        }
        assert_ne!(hash_kvs(&[]), base);
    }
}
