//! Kafka's zig-zag varints (`ByteUtils.writeVarint` / `writeVarlong`): the
//! signed value is zig-zag mapped, then written as unsigned LEB128.

/// Longest varlong: 64 bits in 7-bit groups.
const MAX_VARLONG_BYTES: usize = 10;

fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn unzigzag(raw: u64) -> i64 {
    ((raw >> 1) as i64) ^ -((raw & 1) as i64)
}

/// Bytes `write_varlong(value)` takes. Varints are varlongs restricted to i32.
pub(super) fn varlong_len(value: i64) -> usize {
    let bits = 64 - zigzag(value).leading_zeros() as usize;
    bits.max(1).div_ceil(7)
}

pub(super) fn write_varlong(out: &mut Vec<u8>, value: i64) {
    let mut raw = zigzag(value);
    while raw >= 0x80 {
        out.push((raw as u8) | 0x80);
        raw >>= 7;
    }
    out.push(raw as u8);
}

/// Reads a varlong at `*pos`, advancing it. `None` if the buffer ends first or
/// the encoding is longer than any i64 needs.
pub(super) fn read_varlong(buf: &[u8], pos: &mut usize) -> Option<i64> {
    let mut raw: u64 = 0;
    for i in 0..MAX_VARLONG_BYTES {
        let byte = *buf.get(*pos)?;
        *pos += 1;
        if i == MAX_VARLONG_BYTES - 1 && byte > 1 {
            return None; // bits beyond the 64th
        }
        raw |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some(unzigzag(raw));
        }
    }
    None
}

/// Reads a varint (a varlong that must fit in i32, as Kafka's `readVarint`).
pub(super) fn read_varint(buf: &[u8], pos: &mut usize) -> Option<i32> {
    read_varlong(buf, pos).and_then(|v| i32::try_from(v).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_kafka_encodings() {
        // Values and bytes from Kafka's ByteUtilsTest.
        let cases: &[(i64, &[u8])] = &[
            (0, &[0x00]),
            (-1, &[0x01]),
            (1, &[0x02]),
            (63, &[0x7e]),
            (-64, &[0x7f]),
            (64, &[0x80, 0x01]),
            (300, &[0xd8, 0x04]),
            (i32::MAX as i64, &[0xfe, 0xff, 0xff, 0xff, 0x0f]),
            (i32::MIN as i64, &[0xff, 0xff, 0xff, 0xff, 0x0f]),
        ];
        for &(value, bytes) in cases {
            let mut out = Vec::new();
            write_varlong(&mut out, value);
            assert_eq!(out, bytes, "encoding {value}");
            assert_eq!(varlong_len(value), bytes.len());
            let mut pos = 0;
            assert_eq!(read_varlong(&out, &mut pos), Some(value));
            assert_eq!(pos, bytes.len());
        }
    }

    #[test]
    fn round_trips_extremes_and_rejects_truncation() {
        for value in [i64::MIN, i64::MAX, -300, 1 << 35] {
            let mut out = Vec::new();
            write_varlong(&mut out, value);
            assert_eq!(out.len(), varlong_len(value));
            let mut pos = 0;
            assert_eq!(read_varlong(&out, &mut pos), Some(value));
            let mut pos = 0;
            assert_eq!(read_varlong(&out[..out.len() - 1], &mut pos), None);
        }
        let mut pos = 0;
        assert_eq!(read_varint(&[0x80, 0x80, 0x80, 0x80, 0x20], &mut pos), None);
    }
}
