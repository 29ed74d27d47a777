//! Property tests: random interleavings of clients (dynamic and static, every JoinGroup version)
//! and clock advances. After every step the group's invariants hold and generations never go
//! back; once the clients fall silent, every parked request is answered and the group empties.

use proptest::prelude::*;

use super::*;

const CLIENTS: usize = 4;
/// Clients below this index use a group instance id when their version allows it.
const STATIC_CLIENTS: usize = 2;

#[derive(Debug, Clone)]
enum Op {
    /// What a well-behaved client does next: join until it has a generation, then sync until
    /// it has an assignment, then heartbeat (and rejoin when told to).
    Act {
        client: usize,
        version: i16,
    },
    /// JoinGroup with the client's member id, or with none (a restart).
    Join {
        client: usize,
        restart: bool,
        version: i16,
        protocols: usize,
    },
    Sync {
        client: usize,
    },
    Heartbeat {
        client: usize,
    },
    Leave {
        client: usize,
    },
    Commit {
        client: usize,
    },
    Advance {
        ms: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let client = 0..CLIENTS;
    prop_oneof![
        12 => (client.clone(), 0i16..=9).prop_map(|(client, version)| Op::Act { client, version }),
        4 => (client.clone(), any::<bool>(), 0i16..=9, 0usize..3).prop_map(
            |(client, restart, version, protocols)| Op::Join { client, restart, version, protocols }
        ),
        3 => client.clone().prop_map(|client| Op::Sync { client }),
        3 => client.clone().prop_map(|client| Op::Heartbeat { client }),
        1 => client.clone().prop_map(|client| Op::Leave { client }),
        1 => client.prop_map(|client| Op::Commit { client }),
        4 => (0u64..4_000).prop_map(|ms| Op::Advance { ms }),
        1 => (0u64..40_000).prop_map(|ms| Op::Advance { ms }),
    ]
}

/// What a client knows, as a real one would track it.
#[derive(Default)]
struct Client {
    member_id: String,
    generation: i32,
    version: i16,
    members: Vec<String>,
    join: Option<Receiver<JoinGroupResponse>>,
    sync: Option<Receiver<SyncGroupResponse>>,
    /// Has the assignment of `generation`.
    synced: bool,
    /// Was told to rejoin.
    rejoin: bool,
}

impl Client {
    fn instance_id(&self, index: usize) -> Option<String> {
        (index < STATIC_CLIENTS && self.version >= 5).then(|| format!("instance-{index}"))
    }

    fn take_join(&mut self, response: JoinGroupResponse) {
        match response.error_code {
            NONE => {
                self.member_id = response.member_id.to_string();
                self.generation = response.generation_id;
                self.synced = false;
                self.rejoin = false;
                self.members = response
                    .members
                    .iter()
                    .map(|member| member.member_id.to_string())
                    .collect();
            }
            MEMBER_ID_REQUIRED => self.member_id = response.member_id.to_string(),
            UNKNOWN_MEMBER_ID | FENCED_INSTANCE_ID => {
                self.member_id.clear();
                self.generation = -1;
                self.rejoin = true;
            }
            _ => {}
        }
    }

    /// Collects answers that arrived; a canceled request is simply gone.
    fn poll(&mut self) {
        if let Some(receiver) = &mut self.join {
            match receiver.try_recv() {
                Ok(Some(response)) => {
                    self.join = None;
                    self.take_join(response);
                }
                Ok(None) => {}
                Err(_) => self.join = None,
            }
        }
        if let Some(receiver) = &mut self.sync {
            match receiver.try_recv() {
                Ok(Some(response)) => {
                    self.sync = None;
                    self.take_sync_or_heartbeat(response.error_code);
                }
                Ok(None) => {}
                Err(_) => self.sync = None,
            }
        }
    }

    fn take_sync_or_heartbeat(&mut self, error_code: i16) {
        match error_code {
            NONE => self.synced = true,
            UNKNOWN_MEMBER_ID | FENCED_INSTANCE_ID => {
                self.member_id.clear();
                self.generation = -1;
                self.rejoin = true;
            }
            _ => self.rejoin = true,
        }
    }
}

const PROTOCOL_SETS: [&[&str]; 3] = [
    &["range"],
    &["range", "roundrobin"],
    &["roundrobin", "range"],
];

fn step(groups: &mut ClassicGroups, clients: &mut [Client], op: &Op, now_ms: &mut u64) {
    match *op {
        Op::Act { client, version } => {
            let state = &clients[client];
            if state.join.is_some() || state.sync.is_some() {
                // Waiting for an answer.
            } else if state.generation <= 0 || state.rejoin {
                let version = if state.member_id.is_empty() {
                    version
                } else {
                    state.version
                };
                let join = Op::Join {
                    client,
                    restart: false,
                    version,
                    protocols: 1,
                };
                return step(groups, clients, &join, now_ms);
            } else if !state.synced {
                return step(groups, clients, &Op::Sync { client }, now_ms);
            } else {
                return step(groups, clients, &Op::Heartbeat { client }, now_ms);
            }
        }
        Op::Join {
            client,
            restart,
            version,
            protocols,
        } => {
            let state = &mut clients[client];
            state.version = version;
            let member_id = if restart {
                String::new()
            } else {
                state.member_id.clone()
            };
            let instance_id = state.instance_id(client);
            let metadata = format!("{client}-{protocols}");
            let protocols: Vec<(&str, &[u8])> = PROTOCOL_SETS[protocols]
                .iter()
                .map(|name| (*name, metadata.as_bytes()))
                .collect();
            let request = join_request(&member_id, instance_id.as_deref(), &protocols);
            match groups.join(&request, version, "client", "host", *now_ms) {
                Reply::Now(response) => state.take_join(response),
                Reply::Later(receiver) => state.join = Some(receiver),
            }
        }
        Op::Sync { client } => {
            let state = &mut clients[client];
            let assignments: Vec<(&str, &[u8])> = state
                .members
                .iter()
                .map(|member| (member.as_str(), &b"p"[..]))
                .collect();
            let request = sync_request(&state.member_id, state.generation, &assignments)
                .with_group_instance_id(state.instance_id(client).map(|id| s(&id)));
            match groups.sync(&request, 5, *now_ms) {
                Reply::Now(response) => state.take_sync_or_heartbeat(response.error_code),
                Reply::Later(receiver) => state.sync = Some(receiver),
            }
        }
        Op::Heartbeat { client } => {
            let state = &mut clients[client];
            let request = heartbeat_request(&state.member_id, state.generation)
                .with_group_instance_id(state.instance_id(client).map(|id| s(&id)));
            let error_code = groups.heartbeat(&request, 4, *now_ms).error_code;
            if error_code != NONE {
                state.take_sync_or_heartbeat(error_code);
            }
        }
        Op::Leave { client } => {
            let state = &clients[client];
            let request = LeaveGroupRequest::default()
                .with_group_id(GroupId(s(GROUP)))
                .with_members(vec![
                    MemberIdentity::default()
                        .with_member_id(s(&state.member_id))
                        .with_group_instance_id(state.instance_id(client).map(|id| s(&id))),
                ]);
            groups.leave(&request, 5, *now_ms);
        }
        Op::Commit { client } => {
            let state = &clients[client];
            let instance_id = state.instance_id(client);
            let _ = groups.check_commit(
                GROUP,
                state.generation,
                &state.member_id,
                instance_id.as_deref(),
                *now_ms,
            );
        }
        Op::Advance { ms } => {
            *now_ms += ms;
            advance(groups, *now_ms);
        }
    }
    for client in clients.iter_mut() {
        client.poll();
    }
}

fn check(groups: &ClassicGroups, generation_before: &mut i32) -> Result<(), TestCaseError> {
    let mut indexed = std::collections::BTreeSet::new();
    for (group_id, slot) in &groups.groups {
        slot.group
            .check_invariants()
            .map_err(|error| TestCaseError::fail(format!("{group_id}: {error}")))?;
        prop_assert_eq!(slot.indexed_deadline_ms, slot.group.next_deadline_ms());
        if let Some(deadline_ms) = slot.indexed_deadline_ms {
            indexed.insert((deadline_ms, group_id.clone()));
        }
        prop_assert!(
            slot.group.generation >= *generation_before,
            "generation went back"
        );
        *generation_before = slot.group.generation;
    }
    prop_assert_eq!(&indexed, &groups.deadlines);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn invariants_hold_and_silence_empties_the_group(ops in proptest::collection::vec(op(), 1..80)) {
        let mut groups = ClassicGroups::new(config());
        let mut clients: Vec<Client> = (0..CLIENTS).map(|_| Client::default()).collect();
        let mut now_ms = 0;
        let mut generation = 0;
        for op in &ops {
            step(&mut groups, &mut clients, op, &mut now_ms);
            check(&groups, &mut generation)?;
            if let Some(deadline_ms) = groups.next_deadline_ms() {
                let advanced = matches!(op, Op::Advance { .. });
                prop_assert!(deadline_ms > now_ms || !advanced, "a due timer was left");
            }
        }
        // Everyone falls silent for longer than any timeout.
        now_ms += 3_600_000;
        advance(&mut groups, now_ms);
        for client in &mut clients {
            client.poll();
            prop_assert!(client.join.is_none(), "a JoinGroup was never answered");
            prop_assert!(client.sync.is_none(), "a SyncGroup was never answered");
        }
        check(&groups, &mut generation)?;
        prop_assert!(groups.is_empty(GROUP));
        prop_assert_eq!(groups.next_deadline_ms(), None);
    }
}
