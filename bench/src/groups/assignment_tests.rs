#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;

use super::*;

fn subscriptions(members: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
    members
        .iter()
        .map(|(member, topics)| {
            (
                (*member).to_owned(),
                topics.iter().map(|t| (*t).to_owned()).collect(),
            )
        })
        .collect()
}

fn counts(topics: &[(&str, i32)]) -> BTreeMap<String, i32> {
    topics.iter().map(|(t, n)| ((*t).to_owned(), *n)).collect()
}

#[test]
fn twelve_partitions_split_in_member_id_order() {
    // Inserted out of order: the split follows sorted member ids, not arrival.
    let subs = subscriptions(&[("c-3", &["t"]), ("a-1", &["t"]), ("b-2", &["t"])]);
    let assigned = range_assign(&subs, &counts(&[("t", 12)]));
    assert_eq!(assigned["a-1"], vec![("t".to_owned(), vec![0, 1, 2, 3])]);
    assert_eq!(assigned["b-2"], vec![("t".to_owned(), vec![4, 5, 6, 7])]);
    assert_eq!(assigned["c-3"], vec![("t".to_owned(), vec![8, 9, 10, 11])]);
}

#[test]
fn remainder_goes_to_the_first_members_and_nobody_is_left_out() {
    let subs = subscriptions(&[("a", &["t"]), ("b", &["t"]), ("c", &["t"])]);
    let assigned = range_assign(&subs, &counts(&[("t", 10)]));
    assert_eq!(assigned["a"][0].1, vec![0, 1, 2, 3]);
    assert_eq!(assigned["b"][0].1, vec![4, 5, 6]);
    assert_eq!(assigned["c"][0].1, vec![7, 8, 9]);

    let assigned = range_assign(&subs, &counts(&[("t", 2)]));
    assert_eq!(assigned["a"][0].1, vec![0]);
    assert_eq!(assigned["b"][0].1, vec![1]);
    assert!(
        assigned["c"].is_empty(),
        "a member past the partitions gets an empty assignment"
    );
}

#[test]
fn only_subscribers_of_a_topic_share_it() {
    let subs = subscriptions(&[("a", &["t", "u"]), ("b", &["u"])]);
    let assigned = range_assign(&subs, &counts(&[("t", 3), ("u", 2), ("unsubscribed", 5)]));
    assert_eq!(
        assigned["a"],
        vec![("t".to_owned(), vec![0, 1, 2]), ("u".to_owned(), vec![0])]
    );
    assert_eq!(assigned["b"], vec![("u".to_owned(), vec![1])]);
    // Every partition of a subscribed topic is owned exactly once.
    let mut owned: Vec<(String, i32)> = assigned
        .values()
        .flatten()
        .flat_map(|(t, ps)| ps.iter().map(move |p| (t.clone(), *p)))
        .collect();
    owned.sort();
    owned.dedup();
    assert_eq!(owned.len(), 5);
}

#[test]
fn subscription_bytes_are_the_java_v3_layout() {
    let bytes = encode_subscription(&["t"], -1).unwrap();
    let expected: Vec<u8> = [
        &[0, 3][..],               // version 3
        &[0, 0, 0, 1],             // one topic
        &[0, 1, b't'],             // "t"
        &[0xff, 0xff, 0xff, 0xff], // user data: null
        &[0, 0, 0, 0],             // owned partitions: none
        &[0xff, 0xff, 0xff, 0xff], // generation id -1
        &[0xff, 0xff],             // rack id: null
    ]
    .concat();
    assert_eq!(bytes.as_ref(), expected.as_slice());
    assert_eq!(decode_subscription(bytes).unwrap(), vec!["t".to_owned()]);
}

#[test]
fn assignment_bytes_are_the_java_v3_layout_and_round_trip() {
    let partitions = vec![("t".to_owned(), vec![4, 5])];
    let bytes = encode_assignment(&partitions).unwrap();
    let expected: Vec<u8> = [
        &[0, 3][..],
        &[0, 0, 0, 1],
        &[0, 1, b't'],
        &[0, 0, 0, 2, 0, 0, 0, 4, 0, 0, 0, 5],
        &[0xff, 0xff, 0xff, 0xff], // user data: null
    ]
    .concat();
    assert_eq!(bytes.as_ref(), expected.as_slice());
    assert_eq!(decode_assignment(bytes).unwrap(), partitions);
}

#[test]
fn newer_versions_are_read_as_ours_and_garbage_is_an_error() {
    // A version-4 subscription: version 3's fields, then something we do not know.
    let mut bytes = encode_subscription(&["t", "u"], 7).unwrap().to_vec();
    bytes[1] = 4;
    bytes.extend_from_slice(&[1, 2, 3]);
    assert_eq!(
        decode_subscription(Bytes::from(bytes)).unwrap(),
        vec!["t".to_owned(), "u".to_owned()]
    );
    assert!(decode_assignment(Bytes::new()).unwrap().is_empty());
    assert!(decode_assignment(Bytes::from_static(&[0])).is_err());
    assert!(decode_subscription(Bytes::from_static(&[0, 3, 0, 0, 0, 9])).is_err());
    assert!(decode_subscription(Bytes::from_static(&[0xff, 0xff])).is_err());
}
