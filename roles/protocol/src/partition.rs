//! Which partition a node belongs to.

/// The default partition count of a new deployment (`GORGON_PARTITIONS`).
pub const DEFAULT_PARTITIONS: u32 = 64;

/// The partition of node `node` of topology `topology` among `partitions`.
///
/// The hash is FNV-1a, 64-bit, of the UTF-8 bytes of `"<topology>/<node>"`, modulo the
/// partition count. It is part of the on-disk format: changing it would move nodes away from
/// their queued messages and state, so it must never change.
pub fn partition_of(topology: &str, node: &str, partitions: u32) -> u32 {
    assert!(partitions > 0, "the partition count must be at least 1");
    let mut hash = fnv1a(0xcbf2_9ce4_8422_2325, topology.as_bytes());
    hash = fnv1a(hash, b"/");
    hash = fnv1a(hash, node.as_bytes());
    (hash % u64::from(partitions)) as u32
}

fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hash is the documented FNV-1a: fixed values that must never change.
    #[test]
    fn hash_is_stable() {
        // FNV-1a 64 of "a" is 0xaf63dc4c8601ec8c (the published test vector).
        assert_eq!(fnv1a(0xcbf2_9ce4_8422_2325, b"a"), 0xaf63_dc4c_8601_ec8c);
        let fixed: Vec<u32> = ["a", "b", "temp-in", "too-hot"]
            .iter()
            .map(|node| partition_of("sensors", node, 64))
            .collect();
        // Computed independently (Python) from the definition above.
        assert_eq!(fixed, [28, 53, 49, 63]);
        assert_eq!(partition_of("sensors", "temp-in", 1), 0);
    }

    /// Ten thousand nodes spread over 64 partitions within ±30 % of the mean.
    #[test]
    fn spreads_nodes_evenly() {
        let mut counts = [0u32; 64];
        for i in 0..10_000 {
            counts[partition_of("t", &format!("n{i}"), 64) as usize] += 1;
        }
        let mean = 10_000 / 64;
        assert!(
            counts
                .iter()
                .all(|&c| c > mean * 7 / 10 && c < mean * 13 / 10),
            "{counts:?}"
        );
    }
}
