//! Who is in the cluster and who serves what: the live agents as brokers, and rendezvous hashing
//! to name one of them for a partition (its "leader" in Metadata) or a group (its coordinator).
//!
//! # Why rendezvous hashing
//!
//! Every agent can serve every partition, so a leader is only advice to clients about where to
//! send a partition's traffic; what matters is that every agent names the *same* one from the same
//! membership, without talking to each other, and that an agent leaving moves only its own share.
//! Highest-random-weight hashing over the live agents gives both: each (key, agent) pair gets a
//! score, the highest wins, and removing an agent changes only the keys it won. A group's
//! coordinator must be one agent at a time (two coordinators of one group would hand out
//! generations independently), so it is chosen over *all* live agents; a partition's leader is
//! chosen among the agents of the client's zone when there are any (clients stay in their zone),
//! else among all.
//!
//! Pure: no I/O, no clock. The lease loop publishes a new view on a [`ClusterBoard`] after every
//! renewal (`live_agents()`), and network cores read the newest.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// One live agent, as clients are told of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterMember {
    pub node_id: i32,
    pub agent_id: String,
    /// Its registration's one address (its first listener's advertised address).
    pub host: String,
    pub port: u16,
    pub zone: String,
    /// Its listeners by name, with their advertised addresses. Empty for an agent registered by
    /// a version that announced none: it is reached at `host:port` on every listener.
    pub listeners: Vec<ListenerAddress>,
}

/// One named listener of an agent and the address clients of that listener are told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerAddress {
    pub name: String,
    pub host: String,
    pub port: u16,
}

/// How an agent's registration announces a listener: a role `listener:NAME=HOST:PORT`. Roles are
/// free text to the sequencer and ignored by agents that do not know this one, so rows written by
/// older agents (no such role) and newer ones (more roles) are read by both.
const LISTENER_ROLE_PREFIX: &str = "listener:";

/// The role announcing listener `name` at `host:port`.
pub fn listener_role(name: &str, host: &str, port: u16) -> String {
    format!("{LISTENER_ROLE_PREFIX}{name}={host}:{port}")
}

/// The listeners a registration's roles announce (malformed ones are skipped).
pub fn listeners_of_roles(roles: &[String]) -> Vec<ListenerAddress> {
    roles
        .iter()
        .filter_map(|role| {
            let (name, address) = role.strip_prefix(LISTENER_ROLE_PREFIX)?.split_once('=')?;
            let (host, port) = address.rsplit_once(':')?;
            Some(ListenerAddress {
                name: name.to_owned(),
                host: host.to_owned(),
                port: port.parse().ok()?,
            })
        })
        .collect()
}

impl ClusterMember {
    /// Where a client that came in on `listener` reaches this agent (Kafka's rule: the advertised
    /// address of the listener of the same name). `None` when the agent has no listener of that
    /// name: it is left out of that client's answers, as Kafka leaves such a broker out. An agent
    /// that announced no listeners is reached at its one address whatever the listener; so is
    /// every agent when `listener` is `None` (a dispatcher with no listener name).
    pub fn address_on(&self, listener: Option<&str>) -> Option<(&str, u16)> {
        match listener {
            Some(name) if !self.listeners.is_empty() => self
                .listeners
                .iter()
                .find(|candidate| candidate.name == name)
                .map(|found| (found.host.as_str(), found.port)),
            _ => Some((self.host.as_str(), self.port)),
        }
    }
}

/// The live agents of the cluster, sorted by node id, and which one this is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterView {
    members: Vec<ClusterMember>,
    self_node_id: i32,
}

/// The node id clients know an agent by: a hash of its agent id, the same on every agent, stable
/// across restarts (0 to `i32::MAX`).
pub fn node_id_of(agent_id: &str) -> i32 {
    (hash64(agent_id.as_bytes(), 0) & 0x7fff_ffff) as i32
}

impl ClusterView {
    /// A view of `members` (any order; duplicates of a node id keep the first) seen by
    /// `self_node_id`.
    pub fn new(mut members: Vec<ClusterMember>, self_node_id: i32) -> ClusterView {
        members.sort_by(|a, b| a.node_id.cmp(&b.node_id).then(a.agent_id.cmp(&b.agent_id)));
        members.dedup_by_key(|member| member.node_id);
        ClusterView {
            members,
            self_node_id,
        }
    }

    pub fn members(&self) -> &[ClusterMember] {
        &self.members
    }

    pub fn self_node_id(&self) -> i32 {
        self.self_node_id
    }

    /// The members reachable on `listener` ([`ClusterMember::address_on`]), as a view of its own
    /// (`None` when every member is: the view itself serves).
    pub fn reachable_on(&self, listener: Option<&str>) -> Option<ClusterView> {
        if self
            .members
            .iter()
            .all(|member| member.address_on(listener).is_some())
        {
            return None;
        }
        Some(ClusterView {
            members: self
                .members
                .iter()
                .filter(|member| member.address_on(listener).is_some())
                .cloned()
                .collect(),
            self_node_id: self.self_node_id,
        })
    }

    /// The agent that leads `partition` of `topic` for a client in `client_zone`: chosen among
    /// the live agents of that zone if there are any, else among all. `None` with no live agent.
    pub fn partition_leader(
        &self,
        topic: &str,
        partition: i32,
        client_zone: Option<&str>,
    ) -> Option<&ClusterMember> {
        let mut key = Vec::with_capacity(topic.len() + 5);
        key.extend_from_slice(topic.as_bytes());
        key.push(0);
        key.extend_from_slice(&partition.to_be_bytes());
        let in_zone = client_zone.filter(|zone| {
            !zone.is_empty() && self.members.iter().any(|member| member.zone == *zone)
        });
        rendezvous(
            &key,
            self.members
                .iter()
                .filter(|member| in_zone.is_none_or(|zone| member.zone == zone)),
        )
    }

    /// The agent that coordinates group (or transactional id) `key`, among all live agents.
    pub fn coordinator(&self, key: &str) -> Option<&ClusterMember> {
        rendezvous(key.as_bytes(), self.members.iter())
    }

    /// Whether this agent coordinates `key`. With no live agent known (the first renewal has not
    /// listed any yet) this agent answers for itself.
    pub fn coordinates(&self, key: &str) -> bool {
        self.coordinator(key)
            .is_none_or(|member| member.node_id == self.self_node_id)
    }
}

/// The highest score wins; ties (never expected from 64-bit scores) go to the lower node id.
fn rendezvous<'a>(
    key: &[u8],
    members: impl Iterator<Item = &'a ClusterMember>,
) -> Option<&'a ClusterMember> {
    members.max_by_key(|member| {
        (
            hash64(key, hash64(member.agent_id.as_bytes(), 1)),
            -i64::from(member.node_id),
        )
    })
}

/// FNV-1a over `bytes` from `seed`, finished with SplitMix64: stable across builds and machines
/// (unlike the standard library's hasher), which is what every agent agreeing needs.
fn hash64(bytes: &[u8], seed: u64) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325_u64 ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut z = hash.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The zone a client names in its `client.id` (`…sluice_az=ZONE…`, up to the next `,`, `;`,
/// space or the end), as the routing rule asks.
pub fn client_zone(client_id: &str) -> Option<&str> {
    let (_, rest) = client_id.split_once("sluice_az=")?;
    let zone = rest
        .split([',', ';', ' ', '&'])
        .next()
        .filter(|zone| !zone.is_empty())?;
    Some(zone)
}

/// The agent's newest view, shared with every network core (read per Metadata or group request;
/// written after each lease renewal, each announced join, and a fence).
///
/// Listings of the live agents run concurrently (the renewal's and the join watch's), and one
/// begun earlier may finish later: each takes a ticket as it begins ([`ClusterBoard::begin_listing`])
/// and is published only if nothing begun after it has been ([`ClusterBoard::publish_listing`]),
/// so an older listing never replaces a newer one (it could bring back an agent that has left).
/// A view published without a listing (the fence's) supersedes every listing begun before it.
#[derive(Debug, Default)]
pub struct ClusterBoard {
    version: AtomicU64,
    /// Tickets handed to listings so far.
    listings: AtomicU64,
    /// The view, and the newest ticket it supersedes.
    view: RwLock<(u64, Arc<ClusterView>)>,
}

impl ClusterBoard {
    pub fn new(view: ClusterView) -> ClusterBoard {
        ClusterBoard {
            version: AtomicU64::new(1),
            listings: AtomicU64::new(0),
            view: RwLock::new((0, Arc::new(view))),
        }
    }

    /// A ticket for a listing of the live agents about to begin.
    pub fn begin_listing(&self) -> u64 {
        self.listings
            .fetch_add(1, Ordering::AcqRel)
            .saturating_add(1)
    }

    /// Publishes the view a listing with `ticket` read, unless a listing begun after it (or a
    /// view published since it began) is already there.
    pub fn publish_listing(&self, ticket: u64, view: ClusterView) {
        let Ok(mut current) = self.view.write() else {
            return;
        };
        if ticket <= current.0 {
            return;
        }
        current.0 = ticket;
        if *current.1 != view {
            current.1 = Arc::new(view);
            self.version.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Publishes `view` (when it differs from the current one); listings begun before this call
    /// are not published after it.
    pub fn publish(&self, view: ClusterView) {
        let Ok(mut current) = self.view.write() else {
            return;
        };
        current.0 = current.0.max(self.listings.load(Ordering::Acquire));
        if *current.1 != view {
            current.1 = Arc::new(view);
            self.version.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// The newest view.
    pub fn view(&self) -> Arc<ClusterView> {
        match self.view.read() {
            Ok(view) => Arc::clone(&view.1),
            Err(_) => Arc::new(ClusterView::default()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn an_older_listing_never_replaces_a_newer_one() {
        let view = |agents: &[&str]| {
            ClusterView::new(
                agents.iter().map(|agent| member(agent, "")).collect(),
                node_id_of("a"),
            )
        };
        let board = ClusterBoard::new(view(&["a"]));
        // The renewal's listing begins, then a join's; the join's (which saw b leave) ends first.
        let renewal = board.begin_listing();
        let join = board.begin_listing();
        board.publish_listing(join, view(&["a"]));
        board.publish_listing(renewal, view(&["a", "b"]));
        assert_eq!(board.view().members().len(), 1, "b is not brought back");
        // A listing begun later is published.
        let next = board.begin_listing();
        board.publish_listing(next, view(&["a", "c"]));
        assert_eq!(board.view().members().len(), 2);
        // A view published without a listing (the fence's) supersedes those begun before it.
        let before_fence = board.begin_listing();
        board.publish(view(&["c"]));
        board.publish_listing(before_fence, view(&["a", "c"]));
        assert_eq!(board.view().members().len(), 1);
        let after_fence = board.begin_listing();
        board.publish_listing(after_fence, view(&["a", "c"]));
        assert_eq!(board.view().members().len(), 2);
    }

    fn member(agent_id: &str, zone: &str) -> ClusterMember {
        ClusterMember {
            node_id: node_id_of(agent_id),
            agent_id: agent_id.to_owned(),
            host: "127.0.0.1".to_owned(),
            port: 9092,
            zone: zone.to_owned(),
            listeners: Vec::new(),
        }
    }

    fn view(agents: &[(&str, &str)]) -> ClusterView {
        let members = agents.iter().map(|(id, zone)| member(id, zone)).collect();
        ClusterView::new(members, node_id_of(agents[0].0))
    }

    #[test]
    fn every_agent_names_the_same_owner_whatever_order_it_lists_members_in() {
        let forward = view(&[("a", "x"), ("b", "y"), ("c", "z")]);
        let backward = ClusterView::new(
            vec![member("c", "z"), member("b", "y"), member("a", "x")],
            node_id_of("c"),
        );
        for group in 0..200 {
            let key = format!("group-{group}");
            assert_eq!(forward.coordinator(&key), backward.coordinator(&key));
            assert_eq!(
                forward.partition_leader("t", group, None),
                backward.partition_leader("t", group, None)
            );
        }
    }

    #[test]
    fn keys_spread_over_agents_and_a_leaving_agent_moves_only_its_own() {
        let three = view(&[("a", ""), ("b", ""), ("c", "")]);
        let two = view(&[("a", ""), ("b", "")]);
        let mut won = std::collections::BTreeMap::<String, usize>::new();
        for group in 0..3_000 {
            let key = format!("g{group}");
            let owner = three.coordinator(&key).unwrap();
            *won.entry(owner.agent_id.clone()).or_default() += 1;
            if owner.agent_id != "c" {
                assert_eq!(two.coordinator(&key), Some(owner), "{key} moved");
            }
        }
        for (agent, count) in &won {
            assert!((800..1_200).contains(count), "{agent} won {count} of 3,000");
        }
    }

    #[test]
    fn a_client_zone_picks_a_leader_in_that_zone_and_an_unknown_one_picks_among_all() {
        let view = view(&[("a1", "a"), ("a2", "a"), ("b1", "b"), ("c1", "c")]);
        for partition in 0..100 {
            let leader = view.partition_leader("t", partition, Some("a")).unwrap();
            assert_eq!(leader.zone, "a");
            let leader = view.partition_leader("t", partition, Some("b")).unwrap();
            assert_eq!(leader.agent_id, "b1");
            assert!(
                view.partition_leader("t", partition, Some("nowhere"))
                    .is_some()
            );
        }
    }

    #[test]
    fn listeners_ride_the_roles_and_an_agent_without_them_is_reached_everywhere() {
        let roles = vec![
            "broker".to_owned(),
            listener_role("CLIENT", "kafka-1.example.com", 9094),
            listener_role("INTERNAL", "10.0.0.1", 9092),
            "listener:broken".to_owned(),
            "listener:BAD=host:port".to_owned(),
            "data-token:0000000042".to_owned(),
        ];
        let listeners = listeners_of_roles(&roles);
        assert_eq!(
            listeners,
            vec![
                ListenerAddress {
                    name: "CLIENT".to_owned(),
                    host: "kafka-1.example.com".to_owned(),
                    port: 9094
                },
                ListenerAddress {
                    name: "INTERNAL".to_owned(),
                    host: "10.0.0.1".to_owned(),
                    port: 9092
                },
            ]
        );
        let new = ClusterMember {
            listeners,
            ..member("new", "")
        };
        assert_eq!(
            new.address_on(Some("CLIENT")),
            Some(("kafka-1.example.com", 9094))
        );
        assert_eq!(new.address_on(Some("REPLAY")), None);
        assert_eq!(new.address_on(None), Some(("127.0.0.1", 9092)));
        // A row written by an older agent: one address, served on every listener.
        let old = member("old", "");
        assert_eq!(old.address_on(Some("REPLAY")), Some(("127.0.0.1", 9092)));
        let view = ClusterView::new(vec![new, old], node_id_of("new"));
        assert!(
            view.reachable_on(Some("CLIENT")).is_none(),
            "both reachable"
        );
        let replay = view.reachable_on(Some("REPLAY")).unwrap();
        assert_eq!(replay.members().len(), 1);
        assert_eq!(replay.members()[0].agent_id, "old");
    }

    #[test]
    fn the_zone_comes_from_the_client_id() {
        assert_eq!(client_zone("app,sluice_az=eu-1a"), Some("eu-1a"));
        assert_eq!(client_zone("sluice_az=b;x=y"), Some("b"));
        assert_eq!(client_zone("rdkafka"), None);
        assert_eq!(client_zone("sluice_az="), None);
    }

    #[test]
    fn an_agent_that_knows_no_members_yet_coordinates_for_itself() {
        let empty = ClusterView::new(Vec::new(), 7);
        assert!(empty.coordinates("g"));
        let view = view(&[("a", ""), ("b", "")]);
        let owned = (0..100)
            .filter(|group| view.coordinates(&format!("g{group}")))
            .count();
        assert!((20..80).contains(&owned), "a coordinates {owned} of 100");
    }
}
