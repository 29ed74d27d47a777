#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions as OwnedTopicPartitions;
use kafka_protocol::messages::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, GroupId, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::*;

const GROUP: &str = "g";
const SESSION_MS: u64 = 45_000;
const REBALANCE_MS: i32 = 30_000;

const NONE: i16 = 0;
const UNKNOWN_MEMBER_ID: i16 = 25;
const INVALID_REQUEST: i16 = 42;
const NON_EMPTY_GROUP: i16 = 68;
const GROUP_ID_NOT_FOUND: i16 = 69;
const GROUP_MAX_SIZE_REACHED: i16 = 81;
const FENCED_INSTANCE_ID: i16 = 82;
const FENCED_MEMBER_EPOCH: i16 = 110;
const UNRELEASED_INSTANCE_ID: i16 = 111;
const UNSUPPORTED_ASSIGNOR: i16 = 112;
const STALE_MEMBER_EPOCH: i16 = 113;
const INVALID_REGULAR_EXPRESSION: i16 = 128;

fn config() -> ConsumerConfig {
    ConsumerConfig {
        heartbeat_interval_ms: 5_000,
        session_timeout_ms: SESSION_MS as i32,
        assignors: vec!["uniform".to_string(), "range".to_string()],
        max_size: None,
    }
}

fn topic_id(name: &str) -> Uuid {
    Uuid::from_u128(
        name.bytes()
            .fold(7u128, |h, b| h.wrapping_mul(31).wrapping_add(u128::from(b))),
    )
}

fn view(topics: &[(&str, u32)]) -> TopicsView {
    TopicsView::new(
        topics
            .iter()
            .map(|(name, count)| (name.to_string(), topic_id(name), *count)),
    )
}

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

fn join_request(member: &str, topics: &[&str]) -> ConsumerGroupHeartbeatRequest {
    ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId::from(s(GROUP)))
        .with_member_id(s(member))
        .with_member_epoch(0)
        .with_rebalance_timeout_ms(REBALANCE_MS)
        .with_subscribed_topic_names(Some(topics.iter().map(|t| TopicName::from(s(t))).collect()))
        .with_topic_partitions(Some(Vec::new()))
}

fn heartbeat_request(
    member: &str,
    epoch: i32,
    owned: Option<&Assignment>,
) -> ConsumerGroupHeartbeatRequest {
    ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId::from(s(GROUP)))
        .with_member_id(s(member))
        .with_member_epoch(epoch)
        .with_topic_partitions(owned.map(owned_list))
}

fn owned_list(owned: &Assignment) -> Vec<OwnedTopicPartitions> {
    owned
        .iter()
        .map(|(topic, set)| {
            OwnedTopicPartitions::default()
                .with_topic_id(*topic)
                .with_partitions(set.iter().map(|p| *p as i32).collect())
        })
        .collect()
}

fn assignment_of(response: &ConsumerGroupHeartbeatResponse) -> Option<Assignment> {
    response.assignment.as_ref().map(|assignment| {
        let mut out = Assignment::new();
        for topic in &assignment.topic_partitions {
            let set: BTreeSet<u32> = topic.partitions.iter().map(|p| *p as u32).collect();
            if !set.is_empty() {
                out.insert(topic.topic_id, set);
            }
        }
        out
    })
}

/// What ConsumerGroupDescribe says member "a" holds now.
fn assignment_of_kept(groups: &ConsumerGroups, topics: &TopicsView) -> Assignment {
    let described = groups.describe(GROUP, topics, false);
    let member = described
        .members
        .iter()
        .find(|m| m.member_id.as_str() == "a")
        .unwrap();
    let mut out = Assignment::new();
    for topic in &member.assignment.topic_partitions {
        out.insert(
            topic.topic_id,
            topic.partitions.iter().map(|p| *p as u32).collect(),
        );
    }
    out
}

fn count(assignment: &Assignment) -> usize {
    assignment.values().map(BTreeSet::len).sum()
}

/// A member as the Java client (`ConsumerMembershipManager`) behaves: it takes every assignment
/// it receives at once (revoking what is gone, adding what is new), reports its owned partitions
/// on the next heartbeat only when they changed, and on UNKNOWN_MEMBER_ID / FENCED_MEMBER_EPOCH
/// drops everything and rejoins with epoch 0 and the same member id.
#[derive(Debug, Clone)]
struct Client {
    member_id: String,
    instance_id: Option<String>,
    topics: Vec<String>,
    epoch: i32,
    owned: Assignment,
    reported: Option<Assignment>,
    joined: bool,
}

impl Client {
    fn new(member_id: &str, topics: &[&str]) -> Self {
        Self {
            member_id: member_id.to_string(),
            instance_id: None,
            topics: topics.iter().map(|t| t.to_string()).collect(),
            epoch: 0,
            owned: Assignment::new(),
            reported: None,
            joined: false,
        }
    }

    fn request(&self) -> ConsumerGroupHeartbeatRequest {
        let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        let request = if self.joined {
            let owned = (self.reported.as_ref() != Some(&self.owned)).then_some(&self.owned);
            heartbeat_request(&self.member_id, self.epoch, owned)
        } else {
            join_request(&self.member_id, &topics)
        };
        request.with_instance_id(self.instance_id.as_deref().map(s))
    }

    fn heartbeat(&mut self, groups: &mut ConsumerGroups, topics: &TopicsView, now_ms: u64) -> i16 {
        let request = self.request();
        let response = groups.heartbeat(&request, 1, topics, now_ms);
        match response.error_code {
            NONE => {
                self.joined = true;
                if request.topic_partitions.is_some() {
                    self.reported = Some(self.owned.clone());
                }
                self.epoch = response.member_epoch;
                if let Some(assignment) = assignment_of(&response) {
                    self.owned = assignment;
                }
            }
            UNKNOWN_MEMBER_ID | FENCED_MEMBER_EPOCH => {
                self.owned.clear();
                self.reported = None;
                self.epoch = 0;
                self.joined = false;
            }
            _ => {}
        }
        response.error_code
    }
}

/// Panics if two live clients own the same partition.
fn assert_disjoint<'a>(clients: impl IntoIterator<Item = &'a Client>) {
    let mut seen: BTreeMap<(Uuid, u32), &str> = BTreeMap::new();
    for client in clients {
        for (topic, set) in &client.owned {
            for partition in set {
                if let Some(other) = seen.insert((*topic, *partition), &client.member_id) {
                    panic!(
                        "{topic}-{partition} owned by {other} and {}",
                        client.member_id
                    );
                }
            }
        }
    }
}

/// Heartbeats every client in turn until a full round changes nothing, checking safety after
/// every heartbeat. Returns the number of rounds.
fn converge(
    groups: &mut ConsumerGroups,
    clients: &mut [Client],
    topics: &TopicsView,
    now_ms: &mut u64,
) -> usize {
    for round in 1..=50 {
        let before: Vec<(i32, Assignment)> =
            clients.iter().map(|c| (c.epoch, c.owned.clone())).collect();
        for index in 0..clients.len() {
            assert_eq!(clients[index].heartbeat(groups, topics, *now_ms), NONE);
            assert_disjoint(clients.iter());
            groups.assert_consistent();
        }
        *now_ms += 1_000;
        groups.tick(*now_ms, topics);
        let after: Vec<(i32, Assignment)> =
            clients.iter().map(|c| (c.epoch, c.owned.clone())).collect();
        if before == after
            && clients
                .iter()
                .all(|c| c.reported.as_ref() == Some(&c.owned))
        {
            return round;
        }
    }
    panic!("group did not settle");
}

fn assert_covers(clients: &[Client], topics: &TopicsView, names: &[&str]) {
    assert_disjoint(clients.iter());
    let total: usize = clients.iter().map(|c| count(&c.owned)).sum();
    let expected: u32 = names
        .iter()
        .map(|name| topics.by_name(name).unwrap().1)
        .sum();
    assert_eq!(
        total, expected as usize,
        "every partition owned by exactly one member"
    );
}

#[test]
fn three_members_settle_with_four_partitions_each() {
    let topics = view(&[("orders", 12)]);
    let mut groups = ConsumerGroups::new(config());
    let mut clients: Vec<Client> = ["a", "b", "c"]
        .iter()
        .map(|id| Client::new(id, &["orders"]))
        .collect();
    let mut now = 0;
    converge(&mut groups, &mut clients, &topics, &mut now);
    assert_covers(&clients, &topics, &["orders"]);
    for client in &clients {
        assert_eq!(count(&client.owned), 4, "{client:?}");
        assert_eq!(client.epoch, 3, "three joins, three group epochs");
    }
    let described = groups.describe(GROUP, &topics, false);
    assert_eq!(described.error_code, NONE);
    assert_eq!(described.group_state.as_str(), "Stable");
    assert_eq!(described.group_epoch, 3);
    assert_eq!(described.assignment_epoch, 3);
    assert_eq!(described.assignor_name.as_str(), "uniform");
    assert_eq!(described.members.len(), 3);
    for member in &described.members {
        assert_eq!(member.member_epoch, 3);
        assert_eq!(member.member_type, 1);
        assert_eq!(member.subscribed_topic_names.len(), 1);
        assert_eq!(member.assignment, member.target_assignment);
        assert_eq!(
            member.assignment.topic_partitions[0].topic_name.as_str(),
            "orders"
        );
        assert_eq!(member.assignment.topic_partitions[0].partitions.len(), 4);
    }
    assert_eq!(
        groups.list(),
        vec![ListedConsumerGroup {
            group_id: GROUP.to_string(),
            state: "Stable"
        }]
    );
}

#[test]
fn a_fourth_member_joins_then_leaves_cleanly() {
    let topics = view(&[("orders", 12)]);
    let mut groups = ConsumerGroups::new(config());
    let mut clients: Vec<Client> = ["a", "b", "c"]
        .iter()
        .map(|id| Client::new(id, &["orders"]))
        .collect();
    let mut now = 0;
    converge(&mut groups, &mut clients, &topics, &mut now);
    let before: Vec<Assignment> = clients.iter().map(|c| c.owned.clone()).collect();

    clients.push(Client::new("d", &["orders"]));
    converge(&mut groups, &mut clients, &topics, &mut now);
    assert_covers(&clients, &topics, &["orders"]);
    for (index, client) in clients.iter().enumerate() {
        assert_eq!(count(&client.owned), 3);
        if index < 3 {
            // Sticky: the old members only gave partitions up.
            assert!(
                is_subset(&client.owned, &before[index]),
                "{} kept its own",
                client.member_id
            );
        }
    }

    let d = clients.pop().unwrap();
    let response = groups.heartbeat(
        &heartbeat_request(&d.member_id, LEAVE_GROUP_MEMBER_EPOCH, None),
        1,
        &topics,
        now,
    );
    assert_eq!(response.error_code, NONE);
    assert_eq!(response.member_epoch, LEAVE_GROUP_MEMBER_EPOCH);
    converge(&mut groups, &mut clients, &topics, &mut now);
    assert_covers(&clients, &topics, &["orders"]);
    assert!(clients.iter().all(|c| count(&c.owned) == 4));
    assert_eq!(groups.describe(GROUP, &topics, false).group_epoch, 5);
}

#[test]
fn a_crashed_member_is_expired_and_its_partitions_move() {
    let topics = view(&[("orders", 12)]);
    let mut groups = ConsumerGroups::new(config());
    let mut clients: Vec<Client> = ["a", "b", "c"]
        .iter()
        .map(|id| Client::new(id, &["orders"]))
        .collect();
    let mut now = 0;
    converge(&mut groups, &mut clients, &topics, &mut now);
    let crashed = clients.pop().unwrap();
    // `converge` heartbeats everyone, then advances the clock by a second.
    let last_heartbeat = now - 1_000;

    // The survivors keep heartbeating; "c" is silent. Nothing moves before its session ends.
    let deadline = groups.next_deadline_ms().unwrap();
    assert!(deadline > now && deadline <= now + SESSION_MS);
    while now < last_heartbeat + SESSION_MS - 1_000 {
        for client in &mut clients {
            assert_eq!(client.heartbeat(&mut groups, &topics, now), NONE);
        }
        now += 1_000;
        groups.tick(now, &topics);
    }
    assert_eq!(groups.describe(GROUP, &topics, false).members.len(), 3);
    now = last_heartbeat + SESSION_MS;
    groups.tick(now, &topics);
    let described = groups.describe(GROUP, &topics, false);
    assert_eq!(described.members.len(), 2);
    assert!(
        described
            .members
            .iter()
            .all(|m| m.member_id.as_str() != crashed.member_id)
    );
    converge(&mut groups, &mut clients, &topics, &mut now);
    assert_covers(&clients, &topics, &["orders"]);
    assert!(clients.iter().all(|c| count(&c.owned) == 6));
    // The crashed member coming back is told it is unknown.
    let response = groups.heartbeat(
        &heartbeat_request(&crashed.member_id, crashed.epoch, None),
        1,
        &topics,
        now,
    );
    assert_eq!(response.error_code, UNKNOWN_MEMBER_ID);
}

#[test]
fn added_partitions_bump_the_epoch_and_are_spread() {
    let mut topics = view(&[("orders", 12)]);
    let mut groups = ConsumerGroups::new(config());
    let mut clients: Vec<Client> = ["a", "b", "c"]
        .iter()
        .map(|id| Client::new(id, &["orders"]))
        .collect();
    let mut now = 0;
    converge(&mut groups, &mut clients, &topics, &mut now);
    topics = view(&[("orders", 18)]);
    groups.topics_changed(&topics);
    assert_eq!(groups.describe(GROUP, &topics, false).group_epoch, 4);
    converge(&mut groups, &mut clients, &topics, &mut now);
    assert_covers(&clients, &topics, &["orders"]);
    assert!(clients.iter().all(|c| count(&c.owned) == 6 && c.epoch == 4));

    // Without `topics_changed`, the next heartbeat notices the new metadata by its fingerprint.
    topics = view(&[("orders", 21)]);
    converge(&mut groups, &mut clients, &topics, &mut now);
    assert_covers(&clients, &topics, &["orders"]);
    assert!(clients.iter().all(|c| count(&c.owned) == 7 && c.epoch == 5));
}

#[test]
fn a_topic_created_later_is_assigned_when_it_appears_and_dropped_when_deleted() {
    let mut topics = view(&[("orders", 4)]);
    let mut groups = ConsumerGroups::new(config());
    let mut clients: Vec<Client> = ["a", "b"]
        .iter()
        .map(|id| Client::new(id, &["orders", "payments"]))
        .collect();
    let mut now = 0;
    converge(&mut groups, &mut clients, &topics, &mut now);
    assert_covers(&clients, &topics, &["orders"]);
    topics = view(&[("orders", 4), ("payments", 2)]);
    converge(&mut groups, &mut clients, &topics, &mut now);
    assert_covers(&clients, &topics, &["orders", "payments"]);
    topics = view(&[("payments", 2)]);
    groups.topics_changed(&topics);
    converge(&mut groups, &mut clients, &topics, &mut now);
    assert_covers(&clients, &topics, &["payments"]);
}

#[test]
fn range_assignor_chosen_by_the_members() {
    let topics = view(&[("orders", 7)]);
    let mut groups = ConsumerGroups::new(config());
    let mut now = 0;
    for id in ["m1", "m2", "m3"] {
        let request = join_request(id, &["orders"]).with_server_assignor(Some(s("range")));
        assert_eq!(groups.heartbeat(&request, 1, &topics, now).error_code, NONE);
        now += 10;
    }
    let described = groups.describe(GROUP, &topics, false);
    assert_eq!(described.assignor_name.as_str(), "range");
    let target: BTreeMap<String, Vec<i32>> = described
        .members
        .iter()
        .map(|m| {
            (
                m.member_id.to_string(),
                m.target_assignment.topic_partitions[0].partitions.clone(),
            )
        })
        .collect();
    assert_eq!(target["m1"], [0, 1, 2]);
    assert_eq!(target["m2"], [3, 4]);
    assert_eq!(target["m3"], [5, 6]);
}

#[test]
fn unknown_server_assignor_is_refused() {
    let topics = view(&[("orders", 1)]);
    let mut groups = ConsumerGroups::new(config());
    let request = join_request("a", &["orders"]).with_server_assignor(Some(s("sticky")));
    let response = groups.heartbeat(&request, 1, &topics, 0);
    assert_eq!(response.error_code, UNSUPPORTED_ASSIGNOR);
    assert_eq!(
        response.error_message.as_deref(),
        Some("ServerAssignor sticky is not supported. Supported assignors: uniform, range.")
    );
    assert!(!groups.contains(GROUP), "a refused join creates no group");
}

#[test]
fn invalid_requests_get_kafkas_messages() {
    let topics = view(&[("orders", 1)]);
    let mut groups = ConsumerGroups::new(config());
    let cases: Vec<(ConsumerGroupHeartbeatRequest, i16, &str)> = vec![
        (join_request("", &["orders"]), 1, "MemberId can't be empty."),
        (
            join_request("a", &["orders"]).with_group_id(GroupId::from(s(""))),
            1,
            "GroupId can't be empty.",
        ),
        (
            join_request("a", &["orders"]).with_instance_id(Some(s(""))),
            1,
            "InstanceId can't be empty.",
        ),
        (
            join_request("a", &["orders"]).with_rack_id(Some(s(""))),
            1,
            "RackId can't be empty.",
        ),
        (
            join_request("a", &["orders"]).with_rebalance_timeout_ms(-1),
            1,
            "RebalanceTimeoutMs must be provided in first request.",
        ),
        (
            join_request("a", &["orders"]).with_topic_partitions(None),
            1,
            "TopicPartitions must be empty when (re-)joining.",
        ),
        (
            join_request("a", &["orders"]).with_subscribed_topic_names(None),
            1,
            "Either SubscribedTopicNames or SubscribedTopicRegex must be non-null when (re-)joining.",
        ),
        (
            heartbeat_request("a", -2, None),
            1,
            "InstanceId can't be null.",
        ),
        (
            heartbeat_request("a", -3, None),
            1,
            "MemberEpoch is invalid.",
        ),
        (
            heartbeat_request("", 4, None),
            0,
            "MemberId can't be empty.",
        ),
    ];
    for (request, version, message) in cases {
        let response = groups.heartbeat(&request, version, &topics, 0);
        assert_eq!(response.error_code, INVALID_REQUEST, "{message}");
        assert_eq!(response.error_message.as_deref(), Some(message));
    }
    assert!(!groups.contains(GROUP));
}

#[test]
fn version_zero_gets_a_server_generated_member_id() {
    let topics = view(&[("orders", 2)]);
    let mut groups = ConsumerGroups::new(config());
    let response = groups.heartbeat(&join_request("", &["orders"]), 0, &topics, 0);
    assert_eq!(response.error_code, NONE);
    let id = response.member_id.clone().unwrap().to_string();
    assert_eq!(id.len(), 22);
    assert!(!id.starts_with('-'));
    assert!(
        id.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
    assert_eq!(response.member_epoch, 1);
    assert_eq!(count(&assignment_of(&response).unwrap()), 2);
    // The id is the member's from now on.
    let again = groups.heartbeat(&heartbeat_request(&id, 1, None), 0, &topics, 10);
    assert_eq!(again.error_code, NONE);
    assert_eq!(again.member_id.as_deref(), Some(id.as_str()));
}

#[test]
fn base64_matches_kafkas_uuid_strings() {
    // Kafka's Uuid(0x0123456789abcdef, 0xfedcba9876543210).toString()
    let bytes: Vec<u8> = (0x0123_4567_89ab_cdef_u64.to_be_bytes().into_iter())
        .chain(0xfedc_ba98_7654_3210_u64.to_be_bytes())
        .collect();
    assert_eq!(base64_url(&bytes), "ASNFZ4mrze_-3LqYdlQyEA");
}

#[test]
fn heartbeat_errors_match_the_java_broker() {
    let topics = view(&[("orders", 4)]);
    let mut groups = ConsumerGroups::new(config());
    let mut now = 0;
    // A group this core does not know: rejoin (see the module doc for why not GROUP_ID_NOT_FOUND).
    assert_eq!(
        groups
            .heartbeat(&heartbeat_request("a", 3, None), 1, &topics, now)
            .error_code,
        UNKNOWN_MEMBER_ID
    );
    assert_eq!(
        groups
            .heartbeat(&heartbeat_request("a", -1, None), 1, &topics, now)
            .error_code,
        UNKNOWN_MEMBER_ID
    );

    let mut a = Client::new("a", &["orders"]);
    a.heartbeat(&mut groups, &topics, now);
    a.heartbeat(&mut groups, &topics, now);
    assert_eq!(a.epoch, 1);
    let mut b = Client::new("b", &["orders"]);
    b.heartbeat(&mut groups, &topics, now);
    now += 100;
    a.heartbeat(&mut groups, &topics, now); // a moves to epoch 2 (revokes first)
    a.heartbeat(&mut groups, &topics, now);
    assert_eq!(a.epoch, 2);

    // Unknown member of a known group.
    assert_eq!(
        groups
            .heartbeat(&heartbeat_request("zz", 2, None), 1, &topics, now)
            .error_code,
        UNKNOWN_MEMBER_ID
    );
    // Ahead of the server.
    assert_eq!(
        groups
            .heartbeat(&heartbeat_request("a", 3, None), 1, &topics, now)
            .error_code,
        FENCED_MEMBER_EPOCH
    );
    // The previous epoch with owned partitions inside the assignment: a lost response, accepted.
    let response = groups.heartbeat(&heartbeat_request("a", 1, Some(&a.owned)), 1, &topics, now);
    assert_eq!(response.error_code, NONE);
    assert_eq!(response.member_epoch, 2);
    // The previous epoch without owned partitions, or owning more than assigned: fenced.
    assert_eq!(
        groups
            .heartbeat(&heartbeat_request("a", 1, None), 1, &topics, now)
            .error_code,
        FENCED_MEMBER_EPOCH
    );
    let mut too_much = a.owned.clone();
    too_much
        .entry(topic_id("orders"))
        .or_default()
        .extend([0, 1, 2, 3]);
    assert_eq!(
        groups
            .heartbeat(&heartbeat_request("a", 1, Some(&too_much)), 1, &topics, now)
            .error_code,
        FENCED_MEMBER_EPOCH
    );
}

#[test]
fn a_fenced_member_rejoins_with_its_id_and_epoch_zero() {
    let topics = view(&[("orders", 4)]);
    let mut groups = ConsumerGroups::new(config());
    let mut clients: Vec<Client> = ["a", "b"]
        .iter()
        .map(|id| Client::new(id, &["orders"]))
        .collect();
    let mut now = 0;
    converge(&mut groups, &mut clients, &topics, &mut now);
    let epoch = clients[0].epoch;
    // A stale epoch fences it; the client drops its partitions and rejoins under the same id.
    assert_eq!(
        groups
            .heartbeat(&heartbeat_request("a", epoch + 1, None), 1, &topics, now)
            .error_code,
        FENCED_MEMBER_EPOCH
    );
    clients[0].owned.clear();
    clients[0].joined = false;
    clients[0].reported = None;
    converge(&mut groups, &mut clients, &topics, &mut now);
    assert_covers(&clients, &topics, &["orders"]);
    assert_eq!(count(&clients[0].owned), 2, "it got its partitions back");
    assert_eq!(
        groups.describe(GROUP, &topics, false).group_epoch,
        2,
        "no rebalance for a rejoin"
    );
}

#[test]
fn revocation_comes_before_reassignment() {
    let topics = view(&[("orders", 4)]);
    let mut groups = ConsumerGroups::new(config());
    let mut a = Client::new("a", &["orders"]);
    a.heartbeat(&mut groups, &topics, 0);
    assert_eq!(count(&a.owned), 4);
    a.heartbeat(&mut groups, &topics, 0);

    // b joins: its target is two of a's partitions, which a still holds.
    let mut b = Client::new("b", &["orders"]);
    assert_eq!(b.heartbeat(&mut groups, &topics, 1), NONE);
    assert_eq!(b.epoch, 2);
    assert!(b.owned.is_empty(), "nothing free yet");
    assert_eq!(
        groups.describe(GROUP, &topics, false).group_state.as_str(),
        "Reconciling"
    );

    // a is told to keep two; it stays at epoch 1 until it reports the other two released.
    a.heartbeat(&mut groups, &topics, 2);
    assert_eq!(a.epoch, 1);
    assert_eq!(count(&a.owned), 2);
    // b still gets nothing: a has not acknowledged.
    b.heartbeat(&mut groups, &topics, 3);
    assert!(b.owned.is_empty());
    // a acknowledges (owned = its two) and moves to epoch 2.
    a.heartbeat(&mut groups, &topics, 4);
    assert_eq!(a.epoch, 2);
    b.heartbeat(&mut groups, &topics, 5);
    assert_eq!(count(&b.owned), 2);
    assert_disjoint([&a, &b]);
}

#[test]
fn a_member_that_never_revokes_is_removed_after_its_rebalance_timeout() {
    let topics = view(&[("orders", 4)]);
    let mut groups = ConsumerGroups::new(config());
    let mut a = Client::new("a", &["orders"]);
    a.heartbeat(&mut groups, &topics, 0);
    a.heartbeat(&mut groups, &topics, 0);
    let mut b = Client::new("b", &["orders"]);
    b.heartbeat(&mut groups, &topics, 0);
    // a hears of the revocation but keeps heartbeating without releasing (owned unchanged).
    let response = groups.heartbeat(
        &heartbeat_request("a", 1, Some(&a.owned)),
        1,
        &topics,
        1_000,
    );
    assert_eq!(count(&assignment_of(&response).unwrap()), 2);
    let mut now = 1_000;
    while now < 1_000 + REBALANCE_MS as u64 - 5_000 {
        now += 5_000;
        assert_eq!(
            groups
                .heartbeat(&heartbeat_request("a", 1, None), 1, &topics, now)
                .error_code,
            NONE
        );
        b.heartbeat(&mut groups, &topics, now);
        assert!(b.owned.is_empty());
        groups.tick(now, &topics);
    }
    assert_eq!(groups.next_deadline_ms(), Some(1_000 + REBALANCE_MS as u64));
    groups.tick(1_000 + REBALANCE_MS as u64, &topics);
    assert_eq!(
        groups
            .heartbeat(&heartbeat_request("a", 1, None), 1, &topics, now)
            .error_code,
        UNKNOWN_MEMBER_ID
    );
    b.heartbeat(&mut groups, &topics, now + 1);
    b.heartbeat(&mut groups, &topics, now + 2);
    assert_eq!(count(&b.owned), 4);
}

#[test]
fn a_static_member_restarted_within_its_session_gets_its_partitions_back() {
    let topics = view(&[("orders", 12)]);
    let mut groups = ConsumerGroups::new(config());
    let mut clients: Vec<Client> = ["a", "b", "c"]
        .iter()
        .map(|id| {
            let mut client = Client::new(id, &["orders"]);
            client.instance_id = Some(format!("instance-{id}"));
            client
        })
        .collect();
    let mut now = 0;
    converge(&mut groups, &mut clients, &topics, &mut now);
    let epoch = groups.describe(GROUP, &topics, false).group_epoch;
    let before = clients[1].owned.clone();

    // b closes (epoch -2), keeps its place; a new process rejoins with a new member id.
    let leave = heartbeat_request("b", LEAVE_GROUP_STATIC_MEMBER_EPOCH, None)
        .with_instance_id(Some(s("instance-b")));
    let response = groups.heartbeat(&leave, 1, &topics, now);
    assert_eq!(
        (response.error_code, response.member_epoch),
        (NONE, LEAVE_GROUP_STATIC_MEMBER_EPOCH)
    );
    now += 10_000;
    for index in [0, 2] {
        clients[index].heartbeat(&mut groups, &topics, now);
    }
    let mut restarted = Client::new("b2", &["orders"]);
    restarted.instance_id = Some("instance-b".to_string());
    assert_eq!(restarted.heartbeat(&mut groups, &topics, now), NONE);
    assert_eq!(restarted.owned, before, "same partitions, at once");
    assert_eq!(restarted.epoch, epoch);
    clients[1] = restarted;
    converge(&mut groups, &mut clients, &topics, &mut now);
    assert_eq!(
        groups.describe(GROUP, &topics, false).group_epoch,
        epoch,
        "no rebalance"
    );
    // The old member id is fenced now.
    let stale = heartbeat_request("b", epoch, None).with_instance_id(Some(s("instance-b")));
    assert_eq!(
        groups.heartbeat(&stale, 1, &topics, now).error_code,
        FENCED_INSTANCE_ID
    );
}

#[test]
fn a_static_member_not_back_in_time_loses_its_partitions() {
    let topics = view(&[("orders", 12)]);
    let mut groups = ConsumerGroups::new(config());
    let mut clients: Vec<Client> = ["a", "b"]
        .iter()
        .map(|id| {
            let mut client = Client::new(id, &["orders"]);
            client.instance_id = Some(format!("instance-{id}"));
            client
        })
        .collect();
    let mut now = 0;
    converge(&mut groups, &mut clients, &topics, &mut now);
    let leave = heartbeat_request("b", LEAVE_GROUP_STATIC_MEMBER_EPOCH, None)
        .with_instance_id(Some(s("instance-b")));
    groups.heartbeat(&leave, 1, &topics, now);
    clients.pop();
    let left_at = now;
    while now <= left_at + SESSION_MS {
        clients[0].heartbeat(&mut groups, &topics, now);
        now += 1_000;
        groups.tick(now, &topics);
    }
    converge(&mut groups, &mut clients, &topics, &mut now);
    assert_eq!(count(&clients[0].owned), 12);
}

#[test]
fn static_membership_errors() {
    let topics = view(&[("orders", 2)]);
    let mut groups = ConsumerGroups::new(config());
    let join = join_request("a", &["orders"]).with_instance_id(Some(s("i")));
    assert_eq!(groups.heartbeat(&join, 1, &topics, 0).error_code, NONE);
    // Another member wants the instance id while "a" is active.
    let other = join_request("x", &["orders"]).with_instance_id(Some(s("i")));
    assert_eq!(
        groups.heartbeat(&other, 1, &topics, 0).error_code,
        UNRELEASED_INSTANCE_ID
    );
    // A heartbeat for an instance id nobody has.
    let unknown = heartbeat_request("a", 1, None).with_instance_id(Some(s("nobody")));
    assert_eq!(
        groups.heartbeat(&unknown, 1, &topics, 0).error_code,
        UNKNOWN_MEMBER_ID
    );
    // A heartbeat with the instance id but another member id.
    let fenced = heartbeat_request("x", 1, None).with_instance_id(Some(s("i")));
    assert_eq!(
        groups.heartbeat(&fenced, 1, &topics, 0).error_code,
        FENCED_INSTANCE_ID
    );
    let leave = heartbeat_request("x", -2, None).with_instance_id(Some(s("i")));
    assert_eq!(
        groups.heartbeat(&leave, 1, &topics, 0).error_code,
        FENCED_INSTANCE_ID
    );
}

#[test]
fn group_max_size_is_enforced_for_new_members_only() {
    let topics = view(&[("orders", 2)]);
    let mut groups = ConsumerGroups::new(ConsumerConfig {
        max_size: Some(2),
        ..config()
    });
    for id in ["a", "b"] {
        assert_eq!(
            groups
                .heartbeat(&join_request(id, &["orders"]), 1, &topics, 0)
                .error_code,
            NONE
        );
    }
    assert_eq!(
        groups
            .heartbeat(&join_request("c", &["orders"]), 1, &topics, 0)
            .error_code,
        GROUP_MAX_SIZE_REACHED
    );
    assert_eq!(
        groups
            .heartbeat(&join_request("a", &["orders"]), 1, &topics, 0)
            .error_code,
        NONE,
        "a rejoin is fine"
    );
}

#[test]
fn regex_subscriptions_follow_the_topics_that_match() {
    let mut topics = view(&[("orders-eu", 2), ("orders-us", 2), ("payments", 3)]);
    let mut groups = ConsumerGroups::new(config());
    let join = join_request("a", &[])
        .with_subscribed_topic_names(None)
        .with_subscribed_topic_regex(Some(s("orders-.*")));
    let response = groups.heartbeat(&join, 1, &topics, 0);
    assert_eq!(response.error_code, NONE);
    assert_eq!(
        count(&assignment_of(&response).unwrap()),
        4,
        "full match: payments excluded"
    );
    assert_eq!(
        groups.subscribed_topics(GROUP, &topics),
        BTreeSet::from(["orders-eu".to_string(), "orders-us".to_string()])
    );
    // A matching topic appears: the group epoch bumps and the member gets it.
    topics = view(&[
        ("orders-eu", 2),
        ("orders-us", 2),
        ("payments", 3),
        ("orders-asia", 1),
    ]);
    let owned = assignment_of(&response).unwrap();
    let response = groups.heartbeat(&heartbeat_request("a", 1, Some(&owned)), 1, &topics, 10);
    assert_eq!(response.member_epoch, 2);
    assert_eq!(count(&assignment_of(&response).unwrap()), 5);
    // "ordersX" does not match "orders-.*" and a prefix is not a match.
    let described = groups.describe(GROUP, &topics, false);
    assert_eq!(
        described.members[0].subscribed_topic_regex.as_deref(),
        Some("orders-.*")
    );

    let bad = join_request("b", &[]).with_subscribed_topic_regex(Some(s("orders-(")));
    assert_eq!(
        groups.heartbeat(&bad, 1, &topics, 20).error_code,
        INVALID_REGULAR_EXPRESSION
    );
}

#[test]
fn assignment_is_sent_only_when_needed() {
    let topics = view(&[("orders", 2)]);
    let mut groups = ConsumerGroups::new(config());
    let response = groups.heartbeat(&join_request("a", &["orders"]), 1, &topics, 0);
    let owned = assignment_of(&response).unwrap();
    assert_eq!(count(&owned), 2);
    // Acknowledging: owned equals the assignment, nothing changed → no assignment.
    let response = groups.heartbeat(&heartbeat_request("a", 1, Some(&owned)), 1, &topics, 1);
    assert!(response.assignment.is_none());
    let response = groups.heartbeat(&heartbeat_request("a", 1, None), 1, &topics, 2);
    assert!(response.assignment.is_none());
    assert_eq!(response.heartbeat_interval_ms, 5_000);
    // Owned partitions that differ from the assignment: the member is told again.
    let response = groups.heartbeat(
        &heartbeat_request("a", 1, Some(&Assignment::new())),
        1,
        &topics,
        3,
    );
    assert_eq!(assignment_of(&response), Some(owned.clone()));
    // A full request (what the Java client sends after an error) always gets it.
    let full = heartbeat_request("a", 1, Some(&owned))
        .with_rebalance_timeout_ms(REBALANCE_MS)
        .with_subscribed_topic_names(Some(vec![TopicName::from(s("orders"))]));
    assert_eq!(
        assignment_of(&groups.heartbeat(&full, 1, &topics, 4)),
        Some(owned)
    );
}

#[test]
fn commits_and_fetches_need_the_current_member_epoch() {
    let topics = view(&[("orders", 2)]);
    let mut groups = ConsumerGroups::new(config());
    assert_eq!(
        groups.check_commit(GROUP, 1, "a", 0),
        Err(GROUP_ID_NOT_FOUND)
    );
    groups.heartbeat(&join_request("a", &["orders"]), 1, &topics, 0);
    assert_eq!(groups.check_commit(GROUP, 1, "a", 0), Ok(()));
    assert_eq!(
        groups.check_commit(GROUP, 0, "a", 0),
        Err(STALE_MEMBER_EPOCH)
    );
    assert_eq!(
        groups.check_commit(GROUP, 2, "a", 0),
        Err(STALE_MEMBER_EPOCH)
    );
    assert_eq!(
        groups.check_commit(GROUP, 1, "zz", 0),
        Err(UNKNOWN_MEMBER_ID)
    );
    assert_eq!(
        groups.check_commit(GROUP, -1, "", 0),
        Err(UNKNOWN_MEMBER_ID),
        "not while it has members"
    );
    assert_eq!(groups.check_fetch(GROUP, -1, ""), Ok(()), "admin fetch");
    assert_eq!(groups.check_fetch(GROUP, 1, "a"), Ok(()));
    assert_eq!(groups.check_fetch(GROUP, 0, "a"), Err(STALE_MEMBER_EPOCH));
    assert_eq!(groups.check_fetch(GROUP, 1, "zz"), Err(UNKNOWN_MEMBER_ID));
    // A second member moves "a" to epoch 2 (after it releases a partition): a commit under its
    // older epoch 1 is still accepted, a fetch is not.
    groups.heartbeat(&join_request("b", &["orders"]), 1, &topics, 1);
    let owned = BTreeMap::from([(topic_id("orders"), BTreeSet::from([0u32, 1]))]);
    groups.heartbeat(&heartbeat_request("a", 1, Some(&owned)), 1, &topics, 1);
    let response = groups.heartbeat(
        &heartbeat_request("a", 1, Some(&assignment_of_kept(&groups, &topics))),
        1,
        &topics,
        1,
    );
    assert_eq!(response.member_epoch, 2);
    assert_eq!(groups.check_commit(GROUP, 1, "a", 1), Ok(()));
    assert_eq!(groups.check_commit(GROUP, 2, "a", 1), Ok(()));
    assert_eq!(
        groups.check_commit(GROUP, 3, "a", 1),
        Err(STALE_MEMBER_EPOCH)
    );
    assert_eq!(groups.check_fetch(GROUP, 1, "a"), Err(STALE_MEMBER_EPOCH));
    groups.heartbeat(&heartbeat_request("b", -1, None), 1, &topics, 1);
    groups.heartbeat(&heartbeat_request("a", -1, None), 1, &topics, 1);
    assert_eq!(
        groups.check_commit(GROUP, -1, "", 1),
        Ok(()),
        "empty group: manual commits allowed"
    );
}

#[test]
fn describe_list_and_delete() {
    let topics = view(&[("orders", 2)]);
    let mut groups = ConsumerGroups::new(config());
    let unknown = groups.describe("nope", &topics, true);
    assert_eq!(unknown.error_code, GROUP_ID_NOT_FOUND);
    assert_eq!(groups.delete("nope"), Err(GROUP_ID_NOT_FOUND));
    assert!(groups.is_empty("nope") && !groups.contains("nope"));

    let client = ClientInfo {
        client_id: "consumer-g-1".to_string(),
        client_host: "/127.0.0.1".to_string(),
    };
    let join = join_request("a", &["orders"]).with_rack_id(Some(s("rack-1")));
    groups.heartbeat_from(&join, 1, &client, &topics, 0);
    let described = groups.describe(GROUP, &topics, true);
    assert_eq!(described.authorized_operations, GROUP_AUTHORIZED_OPERATIONS);
    assert_eq!(
        groups.describe(GROUP, &topics, false).authorized_operations,
        i32::MIN
    );
    let member = &described.members[0];
    assert_eq!(member.client_id.as_str(), "consumer-g-1");
    assert_eq!(member.client_host.as_str(), "/127.0.0.1");
    assert_eq!(member.rack_id.as_deref(), Some("rack-1"));
    assert_eq!(described.group_state.as_str(), "Stable");
    assert_eq!(groups.delete(GROUP), Err(NON_EMPTY_GROUP));
    assert!(!groups.is_empty(GROUP));

    groups.heartbeat(&heartbeat_request("a", -1, None), 1, &topics, 1);
    assert_eq!(
        groups.list(),
        vec![ListedConsumerGroup {
            group_id: GROUP.to_string(),
            state: "Empty"
        }]
    );
    assert!(groups.is_empty(GROUP) && groups.contains(GROUP));
    assert_eq!(groups.next_deadline_ms(), None, "no members, no deadlines");
    assert_eq!(groups.delete(GROUP), Ok(()));
    assert!(!groups.contains(GROUP));
    assert!(groups.list().is_empty());
}

#[test]
fn many_groups_share_one_deadline_index() {
    let topics = view(&[("orders", 3)]);
    let mut groups = ConsumerGroups::new(config());
    for index in 0..50u64 {
        let request =
            join_request("m", &["orders"]).with_group_id(GroupId::from(s(&format!("g{index}"))));
        assert_eq!(
            groups.heartbeat(&request, 1, &topics, index).error_code,
            NONE
        );
    }
    assert_eq!(groups.next_deadline_ms(), Some(SESSION_MS));
    groups.tick(SESSION_MS + 24, &topics);
    assert_eq!(groups.members_count(), 25);
    assert_eq!(groups.next_deadline_ms(), Some(SESSION_MS + 25));
    groups.assert_consistent();
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Op {
        Join(usize),
        Leave(usize),
        Crash(usize),
        /// A static member leaving temporarily (-2) and coming back under a new member id.
        Bounce(usize),
        AddPartitions(u32),
        Wait(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..6usize).prop_map(Op::Join),
            2 => (0..6usize).prop_map(Op::Leave),
            2 => (0..6usize).prop_map(Op::Crash),
            1 => (0..6usize).prop_map(Op::Bounce),
            1 => (1..4u32).prop_map(Op::AddPartitions),
            2 => (1..20u64).prop_map(Op::Wait),
        ]
    }

    struct World {
        groups: ConsumerGroups,
        topics: TopicsView,
        partitions: u32,
        now: u64,
        live: Vec<Option<Client>>,
        generation: usize,
    }

    impl World {
        fn round(&mut self) {
            for index in 0..self.live.len() {
                if let Some(client) = self.live[index].as_mut() {
                    client.heartbeat(&mut self.groups, &self.topics, self.now);
                    assert_disjoint(self.live.iter().flatten());
                    self.groups.assert_consistent();
                }
            }
            self.now += 1_000;
            self.groups.tick(self.now, &self.topics);
            self.groups.assert_consistent();
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

        /// Whatever members do, two live members never own the same partition, the server never
        /// hands one partition to two members, and once members just heartbeat, every partition
        /// is owned by exactly one of them.
        #[test]
        fn no_partition_is_ever_owned_twice(ops in proptest::collection::vec(op(), 1..40), range in any::<bool>()) {
            let mut config = config();
            if range {
                config.assignors.reverse();
            }
            let mut world = World {
                groups: ConsumerGroups::new(config),
                topics: view(&[("orders", 12), ("other", 3)]),
                partitions: 12,
                now: 0,
                live: vec![None; 6],
                generation: 0,
            };
            for op in ops {
                match op {
                    Op::Join(k) => {
                        if world.live[k].is_none() {
                            world.generation += 1;
                            let mut client = Client::new(&format!("m{k}-{}", world.generation), &["orders"]);
                            if k % 2 == 0 {
                                client.instance_id = Some(format!("instance-{k}"));
                            }
                            world.live[k] = Some(client);
                        }
                    }
                    Op::Leave(k) => {
                        if let Some(client) = world.live[k].take() {
                            let request = heartbeat_request(&client.member_id, LEAVE_GROUP_MEMBER_EPOCH, None)
                                .with_instance_id(client.instance_id.as_deref().map(s));
                            world.groups.heartbeat(&request, 1, &world.topics, world.now);
                        }
                    }
                    Op::Crash(k) => {
                        world.live[k] = None;
                    }
                    Op::Bounce(k) => {
                        if let Some(client) = world.live[k].take()
                            && let Some(instance) = client.instance_id.clone()
                        {
                            let request = heartbeat_request(&client.member_id, LEAVE_GROUP_STATIC_MEMBER_EPOCH, None)
                                .with_instance_id(Some(s(&instance)));
                            world.groups.heartbeat(&request, 1, &world.topics, world.now);
                            world.generation += 1;
                            let mut restarted = Client::new(&format!("m{k}-{}", world.generation), &["orders"]);
                            restarted.instance_id = Some(instance);
                            world.live[k] = Some(restarted);
                        }
                    }
                    Op::AddPartitions(n) => {
                        world.partitions += n;
                        world.topics = view(&[("orders", world.partitions), ("other", 3)]);
                        world.groups.topics_changed(&world.topics);
                    }
                    Op::Wait(seconds) => {
                        for _ in 0..seconds {
                            world.round();
                        }
                    }
                }
                world.round();
            }
            // Quiescence: crashed members expire, the rest settle.
            for _ in 0..(SESSION_MS / 1_000 + 20) {
                world.round();
            }
            let live: Vec<Client> = world.live.iter().flatten().cloned().collect();
            if live.is_empty() {
                let listed = world.groups.list();
                prop_assert!(listed.iter().all(|g| g.state == "Empty"), "{listed:?}");
            } else {
                assert_covers(&live, &world.topics, &["orders"]);
                let described = world.groups.describe(GROUP, &world.topics, false);
                prop_assert_eq!(described.group_state.as_str(), "Stable");
                prop_assert_eq!(described.members.len(), live.len());
            }
        }
    }
}
