//! Each command, and each of its rejections with its Kafka code.

use super::*;

#[test]
fn create_topic_and_queries() {
    let mut harness = Harness::new();
    let configs = BTreeMap::from([("retention.ms".to_owned(), "1000".to_owned())]);
    let event = harness.command(Command::CreateTopic {
        name: "orders".into(),
        topic_id: id(7),
        partition_count: 3,
        configs,
    });
    assert_eq!(
        event,
        Event::TopicCreated {
            index: 0,
            topic_id: id(7),
            name: "orders".into(),
            partition_count: 3
        }
    );
    let state = &harness.state;
    assert_eq!(state.topic_id_by_name("orders"), Some(id(7)));
    assert_eq!(state.topic_by_name("orders").unwrap().1.name(), "orders");
    assert_eq!(state.partition_count(id(7)), Some(3));
    assert_eq!(state.partition_count_total(), 3);
    assert_eq!(state.topics().collect::<Vec<_>>(), vec![("orders", id(7))]);
    let configs = state.topic_configs(id(7)).unwrap();
    let retention = configs
        .iter()
        .find(|entry| entry.name == "retention.ms")
        .unwrap();
    assert_eq!(
        (retention.value.as_str(), retention.is_default),
        ("1000", false)
    );
    let policy = configs
        .iter()
        .find(|entry| entry.name == "cleanup.policy")
        .unwrap();
    assert_eq!((policy.value.as_str(), policy.is_default), ("delete", true));
    for partition in 0..3 {
        let tp = TopicPartition::new(id(7), partition);
        assert_eq!(
            (
                state.high_watermark(tp).unwrap(),
                state.log_start_offset(tp).unwrap()
            ),
            (0, 0)
        );
    }
    let missing = TopicPartition::new(id(7), 3);
    assert_eq!(
        state.high_watermark(missing),
        Err(MetadataError::UnknownPartition { tp: missing })
    );
    assert_eq!(
        state
            .high_watermark(TopicPartition::new(id(7), -1))
            .unwrap_err()
            .kafka_error_code(),
        3
    );
}

#[test]
fn create_topic_rejections() {
    let mut harness = Harness::new();
    harness.create("a", id(1), 1);
    let long = "x".repeat(250);
    let cases: Vec<(Command, i16)> = vec![
        (create_topic("a", id(2), 1), 36),
        (create_topic("b", id(1), 1), 36),
        (create_topic("", id(2), 1), 17),
        (create_topic(".", id(2), 1), 17),
        (create_topic("..", id(2), 1), 17),
        (create_topic("bad name", id(2), 1), 17),
        (create_topic("ünïcode", id(2), 1), 17),
        (create_topic(&long, id(2), 1), 17),
        (create_topic("b", TopicId::ZERO, 1), 17),
        (create_topic("b", id(2), 0), 37),
        (create_topic("b", id(2), PARTITIONS_PER_TOPIC_MAX + 1), 37),
        (
            Command::CreateTopic {
                name: "b".into(),
                topic_id: id(2),
                partition_count: 1,
                configs: BTreeMap::from([("no.such.config".into(), "1".into())]),
            },
            40,
        ),
    ];
    for (command, code) in cases {
        let event = harness.command(command.clone());
        assert_eq!(rejected_code(&event), code, "{command:?} -> {event:?}");
    }
    assert_eq!(harness.state.topic_count(), 1);
    // The longest legal name is fine.
    harness.create(&"y".repeat(249), id(3), 1);
}

#[test]
fn config_value_checks() {
    let good = [
        ("retention.ms", "-1"),
        ("retention.bytes", "1073741824"),
        ("cleanup.policy", "compact,delete"),
        ("max.message.bytes", "0"),
        ("segment.bytes", "14"),
        ("message.timestamp.type", "LogAppendTime"),
        ("compression.type", "zstd"),
    ];
    for (name, value) in good {
        assert_eq!(validate_config(name, value), Ok(()), "{name}={value}");
    }
    let bad = [
        ("retention.ms", "-2"),
        ("retention.ms", "soon"),
        ("retention.bytes", ""),
        ("cleanup.policy", "forever"),
        ("max.message.bytes", "2147483648"),
        ("segment.bytes", "13"),
        ("message.timestamp.type", "createtime"),
        ("compression.type", "brotli"),
    ];
    for (name, value) in bad {
        let error = validate_config(name, value).unwrap_err();
        assert!(
            matches!(error, MetadataError::InvalidConfig { .. }),
            "{name}={value}: {error:?}"
        );
        assert_eq!(error.kafka_error_code(), 40);
    }
    let huge = "1".repeat(CONFIG_VALUE_LEN_MAX + 1);
    assert!(validate_config("retention.ms", &huge).is_err());
    assert_eq!(
        validate_config("retention", "1")
            .unwrap_err()
            .kafka_error_code(),
        40
    );
}

#[test]
fn alter_configs_is_incremental_and_all_or_nothing() {
    let mut harness = Harness::new();
    harness.create("t", id(1), 1);
    let set = vec![
        ("retention.ms".to_owned(), Some("5".to_owned())),
        ("compression.type".into(), Some("lz4".into())),
    ];
    let event = harness.command(Command::AlterTopicConfigs {
        topic_id: id(1),
        set,
    });
    assert_eq!(
        event,
        Event::TopicConfigsAltered {
            index: 0,
            topic_id: id(1)
        }
    );
    // One bad value rejects the whole command: retention.ms stays 5.
    let set = vec![
        ("retention.ms".to_owned(), None),
        ("compression.type".into(), Some("brotli".into())),
    ];
    assert_eq!(
        rejected_code(&harness.command(Command::AlterTopicConfigs {
            topic_id: id(1),
            set
        })),
        40
    );
    let overrides = harness
        .state
        .topic(id(1))
        .unwrap()
        .config_overrides()
        .clone();
    assert_eq!(overrides.get("retention.ms").map(String::as_str), Some("5"));
    // Deleting an override returns to the default; deleting an unknown name is rejected.
    let set = vec![("retention.ms".to_owned(), None)];
    assert!(matches!(
        harness.command(Command::AlterTopicConfigs {
            topic_id: id(1),
            set
        }),
        Event::TopicConfigsAltered { .. }
    ));
    let retention = harness
        .state
        .topic_configs(id(1))
        .unwrap()
        .into_iter()
        .find(|e| e.name == "retention.ms")
        .unwrap();
    assert_eq!(
        (retention.value.as_str(), retention.is_default),
        ("604800000", true)
    );
    let set = vec![("nope".to_owned(), None)];
    assert_eq!(
        rejected_code(&harness.command(Command::AlterTopicConfigs {
            topic_id: id(1),
            set
        })),
        40
    );
    let set = vec![];
    assert_eq!(
        rejected_code(&harness.command(Command::AlterTopicConfigs {
            topic_id: id(9),
            set
        })),
        100
    );
}

#[test]
fn delete_topic_frees_name_and_rejects_later_segments() {
    let mut harness = Harness::new();
    harness.create("t", id(1), 2);
    let event = harness.command(Command::DeleteTopic { topic_id: id(1) });
    assert_eq!(
        event,
        Event::TopicDeleted {
            index: 0,
            topic_id: id(1),
            name: "t".into()
        }
    );
    assert_eq!(harness.state.topic_id_by_name("t"), None);
    assert_eq!(harness.state.partition_count_total(), 0);
    assert_eq!(
        rejected_code(&harness.command(Command::DeleteTopic { topic_id: id(1) })),
        100
    );
    let events = harness.commit(vec![segment(TopicPartition::new(id(1), 0), 1, 0)]);
    assert_eq!(rejected_code(&events[0]), 100);
    harness.create("t", id(2), 1);
}

#[test]
fn create_partitions_must_grow() {
    let mut harness = Harness::new();
    harness.create("t", id(1), 2);
    let event = harness.command(Command::CreatePartitions {
        topic_id: id(1),
        partition_count: 5,
    });
    assert_eq!(
        event,
        Event::PartitionsCreated {
            index: 0,
            topic_id: id(1),
            previous_count: 2,
            partition_count: 5
        }
    );
    assert_eq!(
        harness.state.high_watermark(TopicPartition::new(id(1), 4)),
        Ok(0)
    );
    for count in [5, 3, 0, PARTITIONS_PER_TOPIC_MAX + 1] {
        let event = harness.command(Command::CreatePartitions {
            topic_id: id(1),
            partition_count: count,
        });
        assert_eq!(rejected_code(&event), 37, "{count}");
    }
    let event = harness.command(Command::CreatePartitions {
        topic_id: id(2),
        partition_count: 9,
    });
    assert_eq!(rejected_code(&event), 100);
    assert_eq!(harness.state.partition_count_total(), 5);
}

#[test]
fn partition_total_limit_is_enforced() {
    let mut harness = Harness::new();
    let per_topic = PARTITIONS_PER_TOPIC_MAX;
    let full_topics = (PARTITIONS_TOTAL_MAX / u64::from(per_topic)) as u8;
    for n in 0..full_topics {
        harness.create(&format!("t{n}"), id(n + 1), per_topic);
    }
    let event = harness.command(create_topic("over", id(200), 1));
    assert!(matches!(
        event,
        Event::CommandRejected {
            error: MetadataError::TooManyPartitions { .. },
            ..
        }
    ));
    assert_eq!(rejected_code(&event), 37);
}

#[test]
fn delete_records_raises_log_start_and_drops_whole_entries() {
    let mut harness = Harness::new();
    harness.create("t", id(1), 1);
    let tp = TopicPartition::new(id(1), 0);
    harness.commit(vec![
        segment(tp, 10, 5),
        segment(tp, 10, 7),
        segment(tp, 10, 6),
    ]);
    assert_eq!(harness.state.partition(tp).unwrap().index().len(), 3);
    let event = harness.command(Command::DeleteRecords {
        tp,
        before_offset: 15,
    });
    assert_eq!(
        event,
        Event::RecordsDeleted {
            index: 0,
            tp,
            log_start_offset: 15
        }
    );
    let partition = harness.state.partition(tp).unwrap();
    assert_eq!(
        (partition.log_start_offset(), partition.index().len()),
        (15, 2)
    );
    assert_eq!(
        partition.index().first().unwrap().base_offset,
        10,
        "the entry holding the new start stays"
    );
    // Lowering is a no-op answered with the current start; past the hw is out of range.
    assert_eq!(
        harness.command(Command::DeleteRecords {
            tp,
            before_offset: 3
        }),
        Event::RecordsDeleted {
            index: 0,
            tp,
            log_start_offset: 15
        }
    );
    assert_eq!(
        rejected_code(&harness.command(Command::DeleteRecords {
            tp,
            before_offset: 31
        })),
        1
    );
    assert_eq!(
        harness
            .state
            .find_from(tp, 14, 10)
            .unwrap_err()
            .kafka_error_code(),
        1
    );
    // The prefix max was rebuilt: the dropped entry (ts 5) no longer counts.
    assert_eq!(
        harness
            .state
            .offset_for_timestamp(tp, 7)
            .unwrap()
            .unwrap()
            .base_offset,
        10
    );
    let event = harness.command(Command::DeleteRecords {
        tp,
        before_offset: 30,
    });
    assert_eq!(
        event,
        Event::RecordsDeleted {
            index: 0,
            tp,
            log_start_offset: 30
        }
    );
    assert!(harness.state.partition(tp).unwrap().index().is_empty());
    assert_eq!(harness.state.find_from(tp, 30, 10).unwrap(), &[]);
    let unknown = TopicPartition::new(id(1), 1);
    assert_eq!(
        rejected_code(&harness.command(Command::DeleteRecords {
            tp: unknown,
            before_offset: 0
        })),
        3
    );
}

#[test]
fn a_rejected_command_does_not_stop_the_next() {
    let mut harness = Harness::new();
    let events = harness.commands(&[
        create_topic("a", id(1), 1),
        create_topic("a", id(2), 1),
        create_topic("b", id(2), 1),
    ]);
    assert!(matches!(events[0], Event::TopicCreated { index: 0, .. }));
    assert!(matches!(events[1], Event::CommandRejected { index: 1, .. }));
    assert!(matches!(events[2], Event::TopicCreated { index: 2, .. }));
}

#[test]
fn commands_beyond_the_limit_are_rejected() {
    let mut harness = Harness::new();
    let commands = vec![Command::DeleteTopic { topic_id: id(1) }; COMMANDS_PER_ENTRY_MAX + 1];
    let events = harness.commands(&commands);
    assert_eq!(events.len(), COMMANDS_PER_ENTRY_MAX + 1);
    assert!(matches!(
        events[COMMANDS_PER_ENTRY_MAX],
        Event::CommandRejected {
            error: MetadataError::TooManyCommands { .. },
            ..
        }
    ));
}

#[test]
fn commands_section_round_trips_and_rejects_corruption() {
    let commands = vec![
        Command::CreateTopic {
            name: "t".into(),
            topic_id: id(1),
            partition_count: 3,
            configs: BTreeMap::from([("cleanup.policy".into(), "compact".into())]),
        },
        Command::DeleteTopic { topic_id: id(2) },
        Command::CreatePartitions {
            topic_id: id(1),
            partition_count: 4,
        },
        Command::AlterTopicConfigs {
            topic_id: id(1),
            set: vec![
                ("retention.ms".into(), None),
                ("segment.ms".into(), Some("9".into())),
            ],
        },
        Command::DeleteRecords {
            tp: TopicPartition::new(id(1), 2),
            before_offset: 77,
        },
    ];
    let bytes = encode_commands(&commands).unwrap();
    assert_eq!(decode_commands(&bytes).unwrap(), commands);
    assert_eq!(
        decode_commands(&encode_commands(&[]).unwrap()).unwrap(),
        vec![]
    );
    for cut in 1..bytes.len() {
        assert!(
            decode_commands(&bytes[..cut]).is_err(),
            "truncated at {cut}"
        );
    }
    for at in 0..bytes.len() {
        let mut corrupt = bytes.clone();
        corrupt[at] ^= 0x40;
        assert!(decode_commands(&corrupt).is_err(), "bit flip at {at}");
    }
}
