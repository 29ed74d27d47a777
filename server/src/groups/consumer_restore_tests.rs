//! A KIP-848 group stored and restored by a restarted coordinator: same epochs, members,
//! assignments and targets; members carry on with their epochs and a full session from the
//! restore; a plain heartbeat files nothing to write; a silent member is removed and told
//! UNKNOWN_MEMBER_ID.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::BTreeSet;

use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions as OwnedTopicPartitions;
use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, GroupId, TopicName};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::*;

const GROUP: &str = "g";
const SESSION_MS: u64 = 45_000;
const UNKNOWN_MEMBER_ID: i16 = 25;

fn config() -> ConsumerConfig {
    ConsumerConfig {
        heartbeat_interval_ms: 5_000,
        session_timeout_ms: SESSION_MS as i32,
        assignors: vec!["uniform".to_string()],
        max_size: None,
    }
}

fn topics() -> TopicsView {
    TopicsView::new([("t".to_string(), Uuid::from_u128(7), 4)])
}

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

/// A member as its client keeps it.
struct Client {
    id: &'static str,
    epoch: i32,
    owned: Assignment,
}

impl Client {
    fn heartbeat(&mut self, groups: &mut ConsumerGroups, now_ms: u64) -> i16 {
        let mut request = ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId::from(s(GROUP)))
            .with_member_id(s(self.id))
            .with_member_epoch(self.epoch);
        if self.epoch == 0 {
            request = request
                .with_rebalance_timeout_ms(30_000)
                .with_subscribed_topic_names(Some(vec![TopicName::from(s("t"))]))
                .with_topic_partitions(Some(Vec::new()));
        } else {
            request = request.with_topic_partitions(Some(
                self.owned
                    .iter()
                    .map(|(topic, set)| {
                        OwnedTopicPartitions::default()
                            .with_topic_id(*topic)
                            .with_partitions(set.iter().map(|p| *p as i32).collect())
                    })
                    .collect(),
            ));
        }
        let response = groups.heartbeat(&request, 1, &topics(), now_ms);
        if response.error_code == 0 {
            self.epoch = response.member_epoch;
            if let Some(assignment) = &response.assignment {
                self.owned = assignment
                    .topic_partitions
                    .iter()
                    .filter(|topic| !topic.partitions.is_empty())
                    .map(|topic| {
                        let set: BTreeSet<u32> =
                            topic.partitions.iter().map(|p| *p as u32).collect();
                        (topic.topic_id, set)
                    })
                    .collect();
            }
        }
        response.error_code
    }
}

/// Two members reconciled to their shares of 4 partitions.
fn settled_group(groups: &mut ConsumerGroups) -> (Client, Client) {
    let mut a = Client {
        id: "a",
        epoch: 0,
        owned: Assignment::new(),
    };
    let mut b = Client {
        id: "b",
        epoch: 0,
        owned: Assignment::new(),
    };
    for round in 0..10 {
        assert_eq!(a.heartbeat(groups, round), 0);
        assert_eq!(b.heartbeat(groups, round), 0);
    }
    let count = |client: &Client| client.owned.values().map(BTreeSet::len).sum::<usize>();
    assert_eq!((count(&a), count(&b)), (2, 2));
    assert_eq!(a.epoch, b.epoch);
    (a, b)
}

#[test]
fn a_restored_group_keeps_its_epochs_and_its_members_carry_on() {
    let mut groups = ConsumerGroups::new(config());
    let (mut a, mut b) = settled_group(&mut groups);
    assert!(groups.take_dirty().contains(GROUP));
    let stored = groups.record(GROUP).unwrap();
    assert_eq!(stored.members.len(), 2);
    assert!(
        stored
            .members
            .iter()
            .all(|member| !member.target.is_empty())
    );

    let restart_ms = 1_000_000;
    let mut restored = ConsumerGroups::new(config());
    restored.restore(GROUP, &stored, restart_ms);
    restored.assert_consistent();
    assert_eq!(restored.record(GROUP).unwrap(), stored);
    assert!(restored.take_dirty().is_empty(), "loading writes nothing");
    let before = groups.describe(GROUP, &topics(), false);
    let after = restored.describe(GROUP, &topics(), false);
    assert_eq!(after, before);

    // Each member heartbeats as before: same epoch, same partitions, nothing to write.
    let (epoch, owned) = (a.epoch, a.owned.clone());
    assert_eq!(a.heartbeat(&mut restored, restart_ms + 1), 0);
    assert_eq!((a.epoch, &a.owned), (epoch, &owned));
    assert_eq!(b.heartbeat(&mut restored, restart_ms + 1), 0);
    assert!(
        restored.take_dirty().is_empty(),
        "a plain heartbeat writes nothing"
    );
    assert_eq!(
        restored.check_commit(GROUP, b.epoch, "b", restart_ms + 2),
        Ok(())
    );

    // b goes silent: a full session after its last heartbeat it is removed, the epoch moves on,
    // and b is told to rejoin.
    let mut now_ms = restart_ms + 1;
    while now_ms < restart_ms + SESSION_MS + 10_000 {
        now_ms += 5_000;
        assert_eq!(a.heartbeat(&mut restored, now_ms), 0);
        restored.tick(now_ms, &topics());
    }
    assert!(restored.take_dirty().contains(GROUP));
    assert!(a.epoch > epoch);
    assert_eq!(b.heartbeat(&mut restored, now_ms), UNKNOWN_MEMBER_ID);
    assert_eq!(
        restored.check_commit(GROUP, b.epoch, "b", now_ms),
        Err(UNKNOWN_MEMBER_ID)
    );
    restored.assert_consistent();
}
