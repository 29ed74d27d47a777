//! The topics a classic `consumer` member subscribes to, read from its JoinGroup metadata.
//!
//! Classic groups treat member metadata as opaque bytes, but OffsetDelete must refuse partitions
//! of topics the group consumes (GROUP_SUBSCRIBED_TO_TOPIC), and for protocol type `consumer`
//! Kafka reads them from the members' `ConsumerProtocolSubscription` (every version starts with
//! `version: int16, topics: [string]`, never flexible). This reads only that prefix, bounded by
//! the bytes present; anything malformed is `None` ("cannot tell"), as Kafka's parse failure.

use std::collections::BTreeSet;

/// The subscribed topic names in `metadata`, or `None` if it is not a readable subscription.
pub fn subscribed_topics(metadata: &[u8]) -> Option<BTreeSet<String>> {
    let (version, rest) = split_i16(metadata)?;
    if version < 0 {
        return None;
    }
    let (count, mut rest) = split_i32(rest)?;
    let count = usize::try_from(count).ok()?;
    // Each name takes at least its two length bytes.
    if count > rest.len() / 2 {
        return None;
    }
    let mut topics = BTreeSet::new();
    for _ in 0..count {
        let (length, after) = split_i16(rest)?;
        let length = usize::try_from(length).ok()?;
        let name = after.get(..length)?;
        topics.insert(std::str::from_utf8(name).ok()?.to_owned());
        rest = after.get(length..)?;
    }
    Some(topics)
}

fn split_i16(bytes: &[u8]) -> Option<(i16, &[u8])> {
    let (head, rest) = bytes.split_first_chunk::<2>()?;
    Some((i16::from_be_bytes(*head), rest))
}

fn split_i32(bytes: &[u8]) -> Option<(i32, &[u8])> {
    let (head, rest) = bytes.split_first_chunk::<4>()?;
    Some((i32::from_be_bytes(*head), rest))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn subscription(version: i16, topics: &[&str], user_data: &[u8]) -> Vec<u8> {
        let mut bytes = version.to_be_bytes().to_vec();
        bytes.extend_from_slice(&(topics.len() as i32).to_be_bytes());
        for topic in topics {
            bytes.extend_from_slice(&(topic.len() as i16).to_be_bytes());
            bytes.extend_from_slice(topic.as_bytes());
        }
        bytes.extend_from_slice(&(user_data.len() as i32).to_be_bytes());
        bytes.extend_from_slice(user_data);
        bytes
    }

    #[test]
    fn reads_the_topics_of_every_version() {
        for version in 0..=3 {
            let bytes = subscription(version, &["orders", "audit"], b"x");
            let topics = subscribed_topics(&bytes).unwrap();
            assert_eq!(
                topics.into_iter().collect::<Vec<_>>(),
                ["audit", "orders"],
                "v{version}"
            );
        }
    }

    #[test]
    fn malformed_metadata_is_none_and_never_panics() {
        assert!(subscribed_topics(&[]).is_none());
        assert!(subscribed_topics(&[0, 1, 0x7f, 0xff, 0xff, 0xff]).is_none());
        let mut bytes = subscription(1, &["orders"], b"");
        bytes.truncate(9);
        assert!(subscribed_topics(&bytes).is_none());
        let mut state: u32 = 7;
        for _ in 0..5_000 {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let length = (state >> 24) as usize % 24;
            let bytes: Vec<u8> = (0..length).map(|i| (state >> (i % 24)) as u8).collect();
            let _ = subscribed_topics(&bytes);
        }
    }
}
