//! XOR masking of payload bytes (RFC 6455 section 5.3).
//!
//! "Octet i of the transformed data is the XOR of octet i of the original data with octet at index
//! i modulo 4 of the masking key." Done a 64-bit word at a time: the byte loop is only for the
//! unaligned edges, and the compiler turns the word loop into SIMD.

/// XORs `data` with `key`, where `data[0]` sits at position `offset` of the payload (payloads may
/// arrive in pieces, so the key phase carries over). Returns the offset after `data`.
pub fn apply_mask(data: &mut [u8], key: [u8; 4], offset: usize) -> usize {
    // Rotate the key so that key[0] lines up with data[0].
    let phase = offset % 4;
    let rotated = [
        key[phase],
        key[(phase + 1) % 4],
        key[(phase + 2) % 4],
        key[(phase + 3) % 4],
    ];
    let k32 = u32::from_ne_bytes(rotated);
    let k64 = u64::from(k32) | (u64::from(k32) << 32);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_ne_bytes(word) ^ k64;
        chunk.copy_from_slice(&x.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= rotated[i % 4];
    }
    offset + data.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(data: &mut [u8], key: [u8; 4], offset: usize) {
        for (i, b) in data.iter_mut().enumerate() {
            *b ^= key[(offset + i) % 4];
        }
    }

    #[test]
    fn matches_the_byte_loop_for_every_length_and_phase() {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        for len in 0..40 {
            for offset in 0..8 {
                let orig: Vec<u8> = (0..len as u8).map(|x| x.wrapping_mul(31)).collect();
                let mut fast = orig.clone();
                let mut slow = orig.clone();
                assert_eq!(apply_mask(&mut fast, key, offset), offset + len);
                naive(&mut slow, key, offset);
                assert_eq!(fast, slow, "len {len} offset {offset}");
            }
        }
    }

    #[test]
    fn masking_twice_round_trips_and_pieces_equal_whole() {
        let key = [1, 2, 3, 4];
        let orig: Vec<u8> = (0..=255u8).collect();
        let mut whole = orig.clone();
        apply_mask(&mut whole, key, 0);
        let mut pieces = orig.clone();
        let (a, rest) = pieces.split_at_mut(5);
        let (b, c) = rest.split_at_mut(77);
        let off = apply_mask(a, key, 0);
        let off = apply_mask(b, key, off);
        apply_mask(c, key, off);
        assert_eq!(whole, pieces);
        apply_mask(&mut whole, key, 0);
        assert_eq!(whole, orig);
    }

    #[test]
    fn rfc_example_hello() {
        // RFC 6455 5.7: a masked "Hello" with key 37 fa 21 3d.
        let mut masked = [0x7f, 0x9f, 0x4d, 0x51, 0x58];
        apply_mask(&mut masked, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(&masked, b"Hello");
    }
}
