//! The engine is a storage library without the Kafka protocol crate, so it keeps the few Kafka
//! error codes its state machine answers with as numbers (`sluice_engine::metadata::kafka_code`).
//! Every other code in the agent is taken from `kafka_protocol::ResponseError`; this checks the
//! engine's numbers against it, so neither can drift from Kafka's `Errors`.

use kafka_protocol::ResponseError;
use sluice_engine::metadata::kafka_code;

#[test]
fn the_engines_error_codes_are_kafkas() {
    let pairs = [
        (
            kafka_code::OFFSET_OUT_OF_RANGE,
            ResponseError::OffsetOutOfRange,
        ),
        (
            kafka_code::UNKNOWN_TOPIC_OR_PARTITION,
            ResponseError::UnknownTopicOrPartition,
        ),
        (
            kafka_code::INVALID_TOPIC_EXCEPTION,
            ResponseError::InvalidTopicException,
        ),
        (
            kafka_code::TOPIC_ALREADY_EXISTS,
            ResponseError::TopicAlreadyExists,
        ),
        (
            kafka_code::INVALID_PARTITIONS,
            ResponseError::InvalidPartitions,
        ),
        (kafka_code::INVALID_CONFIG, ResponseError::InvalidConfig),
        (kafka_code::INVALID_REQUEST, ResponseError::InvalidRequest),
        (kafka_code::POLICY_VIOLATION, ResponseError::PolicyViolation),
        (
            kafka_code::KAFKA_STORAGE_ERROR,
            ResponseError::KafkaStorageError,
        ),
        (kafka_code::INVALID_RECORD, ResponseError::InvalidRecord),
        (kafka_code::UNKNOWN_TOPIC_ID, ResponseError::UnknownTopicId),
        (
            kafka_code::OUT_OF_ORDER_SEQUENCE_NUMBER,
            ResponseError::OutOfOrderSequenceNumber,
        ),
        (
            kafka_code::INVALID_PRODUCER_EPOCH,
            ResponseError::InvalidProducerEpoch,
        ),
        (
            kafka_code::TRANSACTIONS_UNSUPPORTED,
            ResponseError::TransactionalIdAuthorizationFailed,
        ),
        (
            kafka_code::UNKNOWN_SERVER_ERROR,
            ResponseError::UnknownServerError,
        ),
        (
            kafka_code::OFFSET_METADATA_TOO_LARGE,
            ResponseError::OffsetMetadataTooLarge,
        ),
        (kafka_code::INVALID_GROUP_ID, ResponseError::InvalidGroupId),
        (
            kafka_code::RESOURCE_NOT_FOUND,
            ResponseError::ResourceNotFound,
        ),
        (
            kafka_code::UNACCEPTABLE_CREDENTIAL,
            ResponseError::UnacceptableCredential,
        ),
    ];
    for (engine, kafka) in pairs {
        assert_eq!(engine, kafka.code(), "{kafka:?}");
    }
}
