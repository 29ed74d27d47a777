//! CreateTopics, DeleteTopics, CreatePartitions and ListOffsets over a real socket.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::common;

use common::{
    RawClient, batch, create_topics_request, produce_request, produce_results, topic_name,
};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::CreatableTopicConfig;
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{
    ApiKey, CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest,
    CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse, ListOffsetsRequest,
    ListOffsetsResponse, MetadataRequest, MetadataResponse, ProduceResponse,
};
use kafka_protocol::protocol::StrBytes;

fn topic_names(client: &mut RawClient) -> Vec<String> {
    let metadata: MetadataResponse = client.call(
        ApiKey::Metadata,
        12,
        &MetadataRequest::default().with_topics(None),
    );
    let mut names: Vec<String> = metadata
        .topics
        .iter()
        .map(|topic| topic.name.as_ref().unwrap().as_str().to_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn create_topics_validates_and_reports_ids() {
    let agent = common::start_agent(|config| config.default_partitions = 3);
    let mut client = RawClient::connect(agent.addr());
    // validate_only appends nothing.
    let request = create_topics_request(&[("dry", 2)]).with_validate_only(true);
    let response: CreateTopicsResponse = client.call(ApiKey::CreateTopics, 7, &request);
    assert_eq!(response.topics[0].error_code, 0);
    assert!(topic_names(&mut client).is_empty());

    let mut request =
        create_topics_request(&[("a", 2), ("b", -1), ("bad name", 1), ("rf3", 1), ("cfg", 1)]);
    request.topics[3].replication_factor = 3;
    request.topics[4].configs = vec![
        CreatableTopicConfig::default()
            .with_name(StrBytes::from_static_str("retention.ms"))
            .with_value(Some(StrBytes::from_static_str("soon"))),
    ];
    let response: CreateTopicsResponse = client.call(ApiKey::CreateTopics, 7, &request);
    let codes: Vec<i16> = response
        .topics
        .iter()
        .map(|topic| topic.error_code)
        .collect();
    assert_eq!(codes, vec![0, 0, 17, 38, 40]);
    assert_eq!(response.topics[0].num_partitions, 2);
    assert_eq!(
        response.topics[1].num_partitions, 3,
        "-1 means default_partitions"
    );
    assert!(!response.topics[0].topic_id.is_nil());
    assert_ne!(response.topics[0].topic_id, response.topics[1].topic_id);
    assert_eq!(topic_names(&mut client), vec!["a", "b"]);

    // Again: already exists (36), also under validate_only; an older version works too.
    let response: CreateTopicsResponse =
        client.call(ApiKey::CreateTopics, 2, &create_topics_request(&[("a", 1)]));
    assert_eq!(response.topics[0].error_code, 36);
    let request: CreateTopicsRequest = create_topics_request(&[("a", 1)]).with_validate_only(true);
    let response: CreateTopicsResponse = client.call(ApiKey::CreateTopics, 5, &request);
    assert_eq!(response.topics[0].error_code, 36);
}

#[test]
fn delete_topics_by_name_and_by_id() {
    let agent = common::start_agent(|config| config.auto_create_topics = false);
    let mut client = RawClient::connect(agent.addr());
    let created: CreateTopicsResponse = client.call(
        ApiKey::CreateTopics,
        7,
        &create_topics_request(&[("x", 1), ("y", 1), ("z", 1)]),
    );
    let y_id = created.topics[1].topic_id;

    let by_name = DeleteTopicsRequest::default()
        .with_topic_names(vec![topic_name("x"), topic_name("missing")]);
    let response: DeleteTopicsResponse = client.call(ApiKey::DeleteTopics, 5, &by_name);
    let codes: Vec<i16> = response
        .responses
        .iter()
        .map(|topic| topic.error_code)
        .collect();
    assert_eq!(codes, vec![0, 3]);

    let by_id = DeleteTopicsRequest::default().with_topics(vec![
        DeleteTopicState::default().with_topic_id(y_id),
        DeleteTopicState::default().with_topic_id(uuid::Uuid::from_u128(42)),
    ]);
    let response: DeleteTopicsResponse = client.call(ApiKey::DeleteTopics, 6, &by_id);
    assert_eq!(response.responses[0].error_code, 0);
    assert_eq!(response.responses[0].name.as_ref().unwrap().as_str(), "y");
    assert_eq!(response.responses[1].error_code, 100);
    assert_eq!(topic_names(&mut client), vec!["z"]);

    // A deleted topic takes no more produces.
    let response: ProduceResponse = client.call(
        ApiKey::Produce,
        9,
        &produce_request(1, &[("x", 0, batch(1, 1))]),
    );
    assert_eq!(produce_results(&response)[0].2, 3);
}

#[test]
fn create_partitions_grows_a_topic() {
    let agent = common::start_agent(|_| {});
    agent.create_topic("grow", 2);
    let mut client = RawClient::connect(agent.addr());
    let request = |count| {
        CreatePartitionsRequest::default()
            .with_timeout_ms(5_000)
            .with_topics(vec![
                CreatePartitionsTopic::default()
                    .with_name(topic_name("grow"))
                    .with_count(count),
                CreatePartitionsTopic::default()
                    .with_name(topic_name("nope"))
                    .with_count(count),
            ])
    };
    let response: CreatePartitionsResponse = client.call(ApiKey::CreatePartitions, 3, &request(5));
    assert_eq!(response.results[0].error_code, 0);
    assert_eq!(response.results[1].error_code, 3);
    let response: CreatePartitionsResponse = client.call(ApiKey::CreatePartitions, 1, &request(4));
    assert_eq!(response.results[0].error_code, 37, "cannot shrink");
    let response: ProduceResponse = client.call(
        ApiKey::Produce,
        9,
        &produce_request(1, &[("grow", 4, batch(2, 1))]),
    );
    assert_eq!(produce_results(&response)[0].2, 0);
}

fn list_offsets(
    client: &mut RawClient,
    version: i16,
    timestamps: &[(i32, i64)],
) -> Vec<(i16, i64, i64)> {
    let request = ListOffsetsRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_topics(vec![
            ListOffsetsTopic::default()
                .with_name(topic_name("log"))
                .with_partitions(
                    timestamps
                        .iter()
                        .map(|(partition, timestamp)| {
                            ListOffsetsPartition::default()
                                .with_partition_index(*partition)
                                .with_timestamp(*timestamp)
                        })
                        .collect(),
                ),
        ]);
    let response: ListOffsetsResponse = client.call(ApiKey::ListOffsets, version, &request);
    response.topics[0]
        .partitions
        .iter()
        .map(|partition| (partition.error_code, partition.offset, partition.timestamp))
        .collect()
}

#[test]
fn list_offsets_earliest_latest_and_by_timestamp() {
    let agent = common::start_agent(|_| {});
    agent.create_topic("log", 1);
    let mut client = RawClient::connect(agent.addr());
    // Three windows (one request each): 4 records at 1000.., 2 at 2000.., 3 at 3000...
    for (records, timestamp) in [(4, 1_000), (2, 2_000), (3, 3_000)] {
        let response: ProduceResponse = client.call(
            ApiKey::Produce,
            9,
            &produce_request(1, &[("log", 0, batch(records, timestamp))]),
        );
        assert_eq!(produce_results(&response)[0].2, 0);
    }
    for version in [1, 4, 6] {
        let answers = list_offsets(
            &mut client,
            version,
            &[
                (0, -2),
                (0, -1),
                (0, 1_500),
                (0, 3_001),
                (0, 9_999),
                (3, -1),
            ],
        );
        assert_eq!(answers[0], (0, 0, -1), "earliest, v{version}");
        assert_eq!(answers[1], (0, 9, -1), "latest, v{version}");
        assert_eq!(
            answers[2],
            (0, 4, 2_001),
            "first batch at or after 1500, v{version}"
        );
        assert_eq!(answers[3], (0, 6, 3_002), "v{version}");
        assert_eq!(answers[4], (0, -1, -1), "nothing that late, v{version}");
        assert_eq!(answers[5].0, 3, "unknown partition, v{version}");
    }
}

#[test]
fn list_offsets_max_timestamp_earliest_local_and_latest_tiered() {
    let agent = common::start_agent(|_| {});
    agent.create_topic("log", 2);
    let mut client = RawClient::connect(agent.addr());
    // Offsets 0-3 at 1000..1003; 4-6 at 4000, 4007, 4003 (the largest in the middle of its
    // batch); 7-8 at 500..501 (older, later offsets).
    let middle = sluice_engine::batch::BatchBuilder::new(4_000)
        .record(0, None, b"a")
        .record(7, None, b"b")
        .record(3, None, b"c")
        .encode();
    for records in [batch(4, 1_000), middle, batch(2, 500)] {
        let response: ProduceResponse = client.call(
            ApiKey::Produce,
            9,
            &produce_request(1, &[("log", 0, records)]),
        );
        assert_eq!(produce_results(&response)[0].2, 0);
    }
    for version in [7, 8, 9, 10] {
        let answers = list_offsets(
            &mut client,
            version,
            &[(0, -3), (0, -4), (0, -5), (1, -3), (1, -4), (5, -3)],
        );
        assert_eq!(answers[0], (0, 5, 4_007), "max timestamp, v{version}");
        assert_eq!(answers[1], (0, 0, -1), "earliest local, v{version}");
        assert_eq!(answers[2], (0, -1, -1), "latest tiered: none, v{version}");
        assert_eq!(
            answers[3],
            (0, -1, -1),
            "max timestamp of an empty partition"
        );
        assert_eq!(
            answers[4],
            (0, 0, -1),
            "earliest local of an empty partition"
        );
        assert_eq!(answers[5].0, 3, "unknown partition, v{version}");
    }
}

#[test]
fn log_dirs_quorum_and_leader_election_answer_as_a_leaderless_agent() {
    use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
    use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
    use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
    use kafka_protocol::messages::{
        DescribeLogDirsRequest, DescribeLogDirsResponse, DescribeQuorumRequest,
        DescribeQuorumResponse, ElectLeadersRequest, ElectLeadersResponse,
    };

    let agent = common::start_agent(|_| {});
    agent.create_topic("log", 2);
    agent.create_topic("other", 1);
    let mut client = RawClient::connect(agent.addr());
    let response: ProduceResponse = client.call(
        ApiKey::Produce,
        9,
        &produce_request(1, &[("log", 1, batch(5, 1_000))]),
    );
    assert_eq!(produce_results(&response)[0].2, 0);

    // DescribeLogDirs: one directory, every partition, sizes from the index.
    for version in [1, 2, 3, 4] {
        let response: DescribeLogDirsResponse = client.call(
            ApiKey::DescribeLogDirs,
            version,
            &DescribeLogDirsRequest::default().with_topics(None),
        );
        assert_eq!(response.results.len(), 1, "v{version}");
        let dir = &response.results[0];
        assert_eq!(dir.error_code, 0);
        assert_eq!(dir.log_dir.as_str(), "object-store");
        let sizes: Vec<(String, i32, i64)> = dir
            .topics
            .iter()
            .flat_map(|topic| {
                topic.partitions.iter().map(|partition| {
                    (
                        topic.name.as_str().to_owned(),
                        partition.partition_index,
                        partition.partition_size,
                    )
                })
            })
            .collect();
        assert_eq!(sizes.len(), 3, "{sizes:?}");
        assert_eq!((sizes[0].0.as_str(), sizes[0].1, sizes[0].2), ("log", 0, 0));
        assert_eq!((sizes[1].0.as_str(), sizes[1].1), ("log", 1));
        assert_eq!(
            sizes[1].2,
            i64::try_from(batch(5, 1_000).len()).unwrap(),
            "the produced batch's bytes"
        );
        assert_eq!((sizes[2].0.as_str(), sizes[2].2), ("other", 0));
    }
    // Only what was asked; an unknown topic is left out, as Kafka does.
    let asked = DescribeLogDirsRequest::default().with_topics(Some(vec![
        DescribableLogDirTopic::default()
            .with_topic(topic_name("log"))
            .with_partitions(vec![1]),
        DescribableLogDirTopic::default()
            .with_topic(topic_name("missing"))
            .with_partitions(vec![0]),
    ]));
    let response: DescribeLogDirsResponse = client.call(ApiKey::DescribeLogDirs, 4, &asked);
    let topics = &response.results[0].topics;
    assert_eq!(topics.len(), 1);
    assert_eq!(topics[0].partitions.len(), 1);
    assert_eq!(topics[0].partitions[0].partition_index, 1);

    // DescribeQuorum: this agent leads the metadata log, whose position moved with the writes.
    let quorum = DescribeQuorumRequest::default().with_topics(vec![
        TopicData::default()
            .with_topic_name(topic_name("__cluster_metadata"))
            .with_partitions(vec![PartitionData::default().with_partition_index(0)]),
    ]);
    for version in [0, 1, 2] {
        let response: DescribeQuorumResponse =
            client.call(ApiKey::DescribeQuorum, version, &quorum);
        assert_eq!(response.error_code, 0);
        let partition = &response.topics[0].partitions[0];
        assert_eq!(partition.error_code, 0);
        assert_eq!(partition.leader_id.0, 0);
        assert!(partition.leader_epoch >= 1);
        // The first claim, two topics and one produce at least.
        assert!(partition.high_watermark >= 4, "{partition:?}");
        assert_eq!(partition.current_voters.len(), 1);
        assert_eq!(
            partition.current_voters[0].log_end_offset,
            partition.high_watermark
        );
        if version >= 2 {
            assert_eq!(response.nodes.len(), 1);
            assert_eq!(
                i32::from(response.nodes[0].listeners[0].port),
                i32::from(agent.addr().port())
            );
        }
    }

    // ElectLeaders: nothing to elect; unknown partitions are named.
    let elect = ElectLeadersRequest::default()
        .with_election_type(0)
        .with_topic_partitions(Some(vec![
            TopicPartitions::default()
                .with_topic(topic_name("log"))
                .with_partitions(vec![0, 1, 2]),
            TopicPartitions::default()
                .with_topic(topic_name("missing"))
                .with_partitions(vec![0]),
        ]));
    for version in [0, 1, 2] {
        let response: ElectLeadersResponse = client.call(ApiKey::ElectLeaders, version, &elect);
        assert_eq!(response.error_code, 0);
        let codes: Vec<Vec<i16>> = response
            .replica_election_results
            .iter()
            .map(|topic| {
                topic
                    .partition_result
                    .iter()
                    .map(|partition| partition.error_code)
                    .collect()
            })
            .collect();
        assert_eq!(codes, vec![vec![84, 84, 3], vec![3]], "v{version}");
    }
    let all = ElectLeadersRequest::default().with_topic_partitions(None);
    let response: ElectLeadersResponse = client.call(ApiKey::ElectLeaders, 2, &all);
    assert_eq!(response.error_code, 0);
    assert!(response.replica_election_results.is_empty());
}
