//! Checkpoint codec: the complete state as one flat, little-endian byte string.
//!
//! Recovery decodes the newest checkpoint, then replays only the log after it, so decode speed is
//! recovery time. A hand-written flat layout was chosen over rkyv: the bulk of a checkpoint is index
//! entries, which here are six fixed-width words read in one linear pass (about as fast as memory
//! bandwidth allows, one CRC-32C pass included), and the decoder rebuilds the in-memory maps directly
//! instead of going through an archived `HashMap` and a second deserialisation. It also lets the
//! decoder check every invariant of the state (contiguous indexes, limits, config values) so that a
//! checkpoint written by a buggy build is refused rather than trusted. Encoding sorts topics by id
//! (and producers by producer id; committed offsets are in ordered maps), so equal states give equal
//! bytes. Layout, v7 (byte-exact spec: `docs/metadata.md`). Older versions still decode: v6 is v7
//! without `scram` (a v6 build kept no SCRAM credentials, so none are stored); v5 is v6
//! without `quotas` (a v5 build had no client quotas, so none are stored); v4 is v5
//! without `acls` (a v4 build had no ACLs, so none are stored); v3 is v4
//! without `stored_groups` (a v3 build kept group membership in memory only, so no group state is
//! stored); v2 is v3 without `groups` (a v2 build kept no committed offsets, so they start
//! empty); v1 is v2 without `next_producer_id` and `producers` (a v1 build never handed out a
//! producer id nor kept producer state, so both start empty):
//!
//! ```text
//! | magic "SLUICECK" 8 | version u16 | reserved u16 = 0 | body_len u64 | body | crc32c u32 |
//! body  = writer_epoch u64 | last_valid_seq opt_u64 | last_offered_seq opt_u64 | next_producer_id u64
//!         | topic_count u32 | topic* | groups | stored_groups | acls | quotas | scram
//! opt_u64 = present u8 (0|1) | value u64 (0 when absent)
//! topic = id [16] | name_len u16 | name | config_count u16 | (name_len u16 | name | value_len u16 | value)*
//!         | partition_count u32 | partition*
//! partition = log_start_offset u64 | high_watermark u64 | entry_count u32 | entry* | producers
//! entry = base_offset u64 | end_offset u64 | seq u64 | byte_start u64 | byte_len u64 | max_timestamp i64
//! producers = producer_count u32 | (producer_id i64 | epoch i16 | batch_count u8
//!             | (base_sequence i32 | last_sequence i32 | base_offset u64)*)*
//! groups = group_count u32 | (id_len u16 | id | topic_count u32
//!          | (name_len u16 | name | partition_count u32 | committed*)*)*
//! committed = partition u32 | offset i64 | leader_epoch i32 | commit_timestamp_ms i64
//!             | metadata_present u8 (0|1) | metadata_len u16 (0 when absent) | metadata
//! stored_groups = stored_count u32 | (id_len u16 | id | record)*     (record: `group_codec.rs`)
//! acls = acl_count u32 | (resource_type i8 | pattern_type i8 | name_len u16 | name
//!        | principal_len u16 | principal | host_len u16 | host | operation i8 | permission i8)*
//! quotas = entity_count u32 | (user quota_name | client_id quota_name
//!          | value_count u8 | (key u8 | value f64 as u64 bits)*)*
//! quota_name = kind u8 (0 absent, 1 <default>, 2 named) | [name_len u16 | name when named]
//! scram = credential_count u32 | (user_len u16 | user | mechanism i8 | iterations u32
//!         | salt_len u16 | salt | key_len u8 | stored_key | server_key (key_len bytes each))*
//! ```
//! Groups, a group's topics and a topic's partitions are in strictly increasing order (bytes of
//! the id or name; partition number), and none is empty; so are the stored groups, and the ACL
//! bindings (by resource type, pattern type, name, principal, host, operation, permission; codes
//! are Kafka's); so are the quota entities (absent < `<default>` < named, user first) and each
//! entity's keys (codes: 0 producer_byte_rate, 1 consumer_byte_rate, 2 request_percentage),
//! whose values are finite and above zero; so are the SCRAM credentials (by user bytes, then
//! mechanism code: 1 SCRAM-SHA-256, 2 SCRAM-SHA-512).
//! The CRC covers every byte before it.

use std::collections::BTreeMap;

use super::acl::{
    ACL_BINDINGS_MAX, AclBinding, AclEntry, AclOperation, AclPatternType, AclPermission,
    AclResource, AclResourceType, AclSet,
};
use super::config::validate_config;
use super::error::CheckpointError;
use super::group_codec::{put_group_record, read_group_record};
use super::groups::{
    GROUP_STATE_BYTES_MAX, GROUP_STATE_BYTES_TOTAL_MAX, GROUPS_STORED_MAX, StoredGroup,
    validate_group_record,
};
use super::index::{IndexEntry, PartitionIndex};
use super::offsets::{
    COMMITTED_OFFSETS_MAX, CommittedOffset, GroupOffsets, OFFSET_GROUPS_MAX,
    OFFSET_METADATA_LEN_MAX, validate_group_id,
};
use super::partition::{INDEX_ENTRIES_PER_PARTITION_MAX, PartitionState};
use super::producer::{
    PRODUCER_BATCHES_RETAINED, PRODUCERS_PER_PARTITION_MAX, ProducerEntry, ProducerMap,
    SequenceRange,
};
use super::quota::{QUOTA_ENTITIES_MAX, QuotaEntity, QuotaKey, QuotaName, QuotaSet, QuotaValue};
use super::scram::{SCRAM_CREDENTIALS_MAX, ScramCredential, ScramCredentialSet, ScramMechanism};
use super::state::{MetadataState, TopicMap};
use super::topic::{
    PARTITIONS_PER_TOPIC_MAX, PARTITIONS_TOTAL_MAX, TOPICS_MAX, Topic, validate_topic_name,
};
use crate::types::{LogSeq, TopicId};

const CHECKPOINT_MAGIC: [u8; 8] = *b"SLUICECK";
/// The version this code writes and the newest it reads.
pub const CHECKPOINT_VERSION: u16 = 7;
/// The first version with committed offsets.
const CHECKPOINT_VERSION_OFFSETS: u16 = 3;
/// The first version with stored group state.
const CHECKPOINT_VERSION_GROUP_STATES: u16 = 4;
/// The first version with ACL bindings.
const CHECKPOINT_VERSION_ACLS: u16 = 5;
/// The first version with client quotas.
const CHECKPOINT_VERSION_QUOTAS: u16 = 6;
/// The first version with SCRAM credentials.
const CHECKPOINT_VERSION_SCRAM: u16 = 7;
/// The oldest version still decoded (migrated: no producer state, no committed offsets).
const CHECKPOINT_VERSION_MIN: u16 = 1;
const HEADER_LEN: usize = 20;
const CRC_LEN: usize = 4;
const INDEX_ENTRY_LEN: usize = 48;

impl MetadataState {
    /// The complete state (chain position included) as a self-describing byte string.
    pub fn encode_checkpoint(&self) -> Vec<u8> {
        let entry_count: usize = self
            .topics
            .values()
            .flat_map(|topic| &topic.partitions)
            .map(|partition| partition.index().len())
            .sum();
        let mut out = Vec::with_capacity(
            HEADER_LEN + 64 + self.topics.len() * 512 + entry_count * INDEX_ENTRY_LEN,
        );
        out.extend_from_slice(&CHECKPOINT_MAGIC);
        out.extend_from_slice(&CHECKPOINT_VERSION.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&0u64.to_le_bytes()); // body_len, patched below
        out.extend_from_slice(&self.writer_epoch.to_le_bytes());
        put_optional_seq(&mut out, self.last_valid_seq);
        put_optional_seq(&mut out, self.last_offered_seq);
        out.extend_from_slice(&self.next_producer_id.to_le_bytes());
        let mut topics: Vec<(&TopicId, &Topic)> = self.topics.iter().collect();
        topics.sort_unstable_by_key(|(topic_id, _)| **topic_id);
        // Bounded by TOPICS_MAX, and every length below by its own limit, so the casts are lossless.
        out.extend_from_slice(&(topics.len() as u32).to_le_bytes());
        for (topic_id, topic) in topics {
            out.extend_from_slice(&topic_id.0);
            put_short_bytes(&mut out, topic.name.as_bytes());
            out.extend_from_slice(&(topic.configs.len() as u16).to_le_bytes());
            for (name, value) in &topic.configs {
                put_short_bytes(&mut out, name.as_bytes());
                put_short_bytes(&mut out, value.as_bytes());
            }
            out.extend_from_slice(&topic.partition_count().to_le_bytes());
            for partition in &topic.partitions {
                out.extend_from_slice(&partition.log_start_offset().to_le_bytes());
                out.extend_from_slice(&partition.high_watermark().to_le_bytes());
                out.extend_from_slice(&(partition.index().len() as u32).to_le_bytes());
                for entry in partition.index().iter() {
                    out.extend_from_slice(&entry.base_offset.to_le_bytes());
                    out.extend_from_slice(&entry.end_offset.to_le_bytes());
                    out.extend_from_slice(&entry.seq.0.to_le_bytes());
                    out.extend_from_slice(&entry.byte_start.to_le_bytes());
                    out.extend_from_slice(&entry.byte_len.to_le_bytes());
                    out.extend_from_slice(&entry.max_timestamp.to_le_bytes());
                }
                put_producers(&mut out, partition.producers());
            }
        }
        put_group_offsets(&mut out, &self.group_offsets);
        put_group_states(&mut out, &self.group_states);
        put_acls(&mut out, &self.acls);
        put_quotas(&mut out, &self.quotas);
        put_scram_credentials(&mut out, &self.scram_credentials);
        let body_len = (out.len() - HEADER_LEN) as u64;
        if let Some(field) = out.get_mut(12..HEADER_LEN) {
            field.copy_from_slice(&body_len.to_le_bytes());
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes and fully validates a checkpoint written by [`MetadataState::encode_checkpoint`].
    /// Never panics on any input.
    pub fn decode_checkpoint(bytes: &[u8]) -> Result<MetadataState, CheckpointError> {
        let (version, body) = verified_body(bytes)?;
        let mut reader = Reader {
            bytes: body,
            version,
        };
        let writer_epoch = reader.u64("writer_epoch")?;
        let last_valid_seq = reader.optional_seq("last_valid_seq")?;
        let last_offered_seq = reader.optional_seq("last_offered_seq")?;
        if last_valid_seq > last_offered_seq {
            return Err(invalid(
                "last_valid_seq is after last_offered_seq".to_owned(),
            ));
        }
        if last_valid_seq.is_some() != (writer_epoch > 0) {
            return Err(invalid(
                "a valid entry exists iff a writer has claimed the log".to_owned(),
            ));
        }
        let next_producer_id = if version >= 2 {
            reader.u64("next_producer_id")?
        } else {
            0
        };
        let topic_count = reader.u32("topic_count")? as usize;
        if topic_count > TOPICS_MAX {
            return Err(invalid(format!(
                "{topic_count} topics (limit {TOPICS_MAX})"
            )));
        }
        let mut topics = TopicMap::with_capacity_and_hasher(topic_count, ahash::RandomState::new());
        let mut topic_ids_by_name = BTreeMap::new();
        let mut partition_count_total = 0u64;
        for _ in 0..topic_count {
            let topic_id = TopicId(reader.array::<16>("topic id")?);
            let (name, topic) = read_topic(&mut reader)?;
            partition_count_total += u64::from(topic.partition_count());
            if partition_count_total > PARTITIONS_TOTAL_MAX {
                return Err(invalid(format!(
                    "more than {PARTITIONS_TOTAL_MAX} partitions"
                )));
            }
            if topic_ids_by_name.insert(name, topic_id).is_some()
                || topics.insert(topic_id, topic).is_some()
            {
                return Err(invalid(format!("duplicate topic {topic_id}")));
            }
        }
        let (group_offsets, committed_offset_count) = if version >= CHECKPOINT_VERSION_OFFSETS {
            read_group_offsets(&mut reader, &topics, &topic_ids_by_name)?
        } else {
            (BTreeMap::new(), 0)
        };
        let (group_states, group_state_bytes) = if version >= CHECKPOINT_VERSION_GROUP_STATES {
            read_group_states(&mut reader)?
        } else {
            (BTreeMap::new(), 0)
        };
        let acls = if version >= CHECKPOINT_VERSION_ACLS {
            read_acls(&mut reader)?
        } else {
            AclSet::new()
        };
        let quotas = if version >= CHECKPOINT_VERSION_QUOTAS {
            read_quotas(&mut reader)?
        } else {
            QuotaSet::new()
        };
        let scram_credentials = if version >= CHECKPOINT_VERSION_SCRAM {
            read_scram_credentials(&mut reader)?
        } else {
            ScramCredentialSet::new()
        };
        if !reader.bytes.is_empty() {
            return Err(invalid(format!(
                "{} bytes after the last section",
                reader.bytes.len()
            )));
        }
        Ok(MetadataState {
            writer_epoch,
            last_valid_seq,
            last_offered_seq,
            topics,
            topic_ids_by_name,
            partition_count_total,
            next_producer_id,
            group_offsets,
            committed_offset_count,
            group_states,
            group_state_bytes,
            acls: std::sync::Arc::new(acls),
            quotas: std::sync::Arc::new(quotas),
            scram_credentials: std::sync::Arc::new(scram_credentials),
        })
    }
}

/// Bounded by `SCRAM_CREDENTIALS_MAX`; user names and salts by their limits, below `u16::MAX`;
/// keys are 32 or 64 bytes (checked when stored).
fn put_scram_credentials(out: &mut Vec<u8>, credentials: &ScramCredentialSet) {
    out.extend_from_slice(&(credentials.len() as u32).to_le_bytes());
    for ((user, mechanism), credential) in credentials.iter() {
        put_short_bytes(out, user.as_bytes());
        out.extend_from_slice(&mechanism.code().to_le_bytes());
        out.extend_from_slice(&credential.iterations.to_le_bytes());
        put_short_bytes(out, &credential.salt);
        out.push(credential.stored_key.len() as u8);
        out.extend_from_slice(&credential.stored_key);
        out.extend_from_slice(&credential.server_key);
    }
}

/// Reads the SCRAM credentials and checks what the state machine checks when it stores them
/// (user, iterations, salt and key sizes, the cap) and the canonical order.
fn read_scram_credentials(reader: &mut Reader<'_>) -> Result<ScramCredentialSet, CheckpointError> {
    let count = reader.u32("SCRAM credential count")? as usize;
    if count > SCRAM_CREDENTIALS_MAX {
        return Err(invalid(format!(
            "{count} SCRAM credentials (limit {SCRAM_CREDENTIALS_MAX})"
        )));
    }
    let mut credentials = ScramCredentialSet::new();
    for _ in 0..count {
        let user = reader.short_string("SCRAM user")?;
        let [code] = reader.array::<1>("SCRAM mechanism")?;
        let code = i8::from_le_bytes([code]);
        let mechanism = ScramMechanism::from_code(code)
            .ok_or_else(|| invalid(format!("unknown SCRAM mechanism {code}")))?;
        let iterations = reader.u32("SCRAM iterations")?;
        let salt_len = reader.u16("SCRAM salt")?;
        let salt = reader.take(usize::from(salt_len), "SCRAM salt")?.to_vec();
        let [key_len] = reader.array::<1>("SCRAM key length")?;
        let stored_key = reader
            .take(usize::from(key_len), "SCRAM stored key")?
            .to_vec();
        let server_key = reader
            .take(usize::from(key_len), "SCRAM server key")?
            .to_vec();
        let credential = ScramCredential {
            salt,
            iterations,
            stored_key,
            server_key,
        };
        credentials
            .insert_decoded(user, mechanism, credential)
            .map_err(invalid)?;
    }
    Ok(credentials)
}

fn put_quota_name(out: &mut Vec<u8>, name: Option<&QuotaName>) {
    match name {
        None => out.push(0),
        Some(QuotaName::Default) => out.push(1),
        Some(QuotaName::Named(name)) => {
            out.push(2);
            put_short_bytes(out, name.as_bytes());
        }
    }
}

/// Bounded by `QUOTA_ENTITIES_MAX`; names by `QUOTA_NAME_LEN_MAX`, below `u16::MAX`; at most
/// three keys an entity.
fn put_quotas(out: &mut Vec<u8>, quotas: &QuotaSet) {
    out.extend_from_slice(&(quotas.len() as u32).to_le_bytes());
    for (entity, values) in quotas.iter() {
        put_quota_name(out, entity.user.as_ref());
        put_quota_name(out, entity.client_id.as_ref());
        out.push(values.len() as u8);
        for (key, value) in values {
            out.push(key.code());
            out.extend_from_slice(&value.to_bits().to_le_bytes());
        }
    }
}

fn read_quota_name(
    reader: &mut Reader<'_>,
    what: &'static str,
) -> Result<Option<QuotaName>, CheckpointError> {
    let [kind] = reader.array::<1>(what)?;
    match kind {
        0 => Ok(None),
        1 => Ok(Some(QuotaName::Default)),
        2 => Ok(Some(QuotaName::Named(reader.short_string(what)?))),
        other => Err(invalid(format!("{what}: unknown kind {other}"))),
    }
}

/// Reads the client quotas and checks what the state machine checks when it stores them (the
/// entity's rules, the cap, values above zero) and the canonical order.
fn read_quotas(reader: &mut Reader<'_>) -> Result<QuotaSet, CheckpointError> {
    let count = reader.u32("quota entity count")? as usize;
    if count > QUOTA_ENTITIES_MAX {
        return Err(invalid(format!(
            "{count} quota entities (limit {QUOTA_ENTITIES_MAX})"
        )));
    }
    let mut quotas = QuotaSet::new();
    let mut previous: Option<QuotaEntity> = None;
    for _ in 0..count {
        let entity = QuotaEntity {
            user: read_quota_name(reader, "quota user")?,
            client_id: read_quota_name(reader, "quota client id")?,
        };
        let [value_count] = reader.array::<1>("quota value count")?;
        let mut values = BTreeMap::new();
        let mut previous_key: Option<QuotaKey> = None;
        for _ in 0..value_count {
            let [code] = reader.array::<1>("quota key")?;
            let key = QuotaKey::from_code(code)
                .ok_or_else(|| invalid(format!("unknown quota key {code}")))?;
            let bits = reader.u64("quota value")?;
            let value = QuotaValue::from_bits(bits)
                .ok_or_else(|| invalid(format!("quota {} is not above zero", key.name())))?;
            if previous_key.is_some_and(|previous| previous >= key) {
                return Err(invalid(format!("quota key {} out of order", key.name())));
            }
            previous_key = Some(key);
            values.insert(key, value);
        }
        if previous
            .as_ref()
            .is_some_and(|previous| *previous >= entity)
        {
            return Err(invalid(format!("quota entity {entity:?} out of order")));
        }
        previous = Some(entity.clone());
        quotas.insert_decoded(entity, values).map_err(invalid)?;
    }
    Ok(quotas)
}

/// Bounded by `ACL_BINDINGS_MAX`; strings by `ACL_STRING_LEN_MAX`, below `u16::MAX`.
fn put_acls(out: &mut Vec<u8>, acls: &AclSet) {
    out.extend_from_slice(&(acls.len() as u32).to_le_bytes());
    for (resource, entry) in acls.iter() {
        out.extend_from_slice(&resource.resource_type.code().to_le_bytes());
        out.extend_from_slice(&resource.pattern_type.code().to_le_bytes());
        put_short_bytes(out, resource.name.as_bytes());
        put_short_bytes(out, entry.principal.as_bytes());
        put_short_bytes(out, entry.host.as_bytes());
        out.extend_from_slice(&entry.operation.code().to_le_bytes());
        out.extend_from_slice(&entry.permission.code().to_le_bytes());
    }
}

/// Reads the ACL bindings and checks what the state machine checks when it stores one (the
/// binding's rules, the cap) and the canonical order.
fn read_acls(reader: &mut Reader<'_>) -> Result<AclSet, CheckpointError> {
    let count = reader.u32("acl count")? as usize;
    if count > ACL_BINDINGS_MAX {
        return Err(invalid(format!(
            "{count} ACL bindings (limit {ACL_BINDINGS_MAX})"
        )));
    }
    let mut acls = AclSet::new();
    let mut previous: Option<AclBinding> = None;
    for _ in 0..count {
        let code = |reader: &mut Reader<'_>, what| {
            reader
                .array::<1>(what)
                .map(|[byte]| i8::from_le_bytes([byte]))
        };
        let resource_type = code(reader, "acl resource type")?;
        let pattern_type = code(reader, "acl pattern type")?;
        let name = reader.short_string("acl resource name")?;
        let principal = reader.short_string("acl principal")?;
        let host = reader.short_string("acl host")?;
        let operation = code(reader, "acl operation")?;
        let permission = code(reader, "acl permission")?;
        let bad = |what: &str, code: i8| invalid(format!("ACL binding: unknown {what} {code}"));
        let binding = AclBinding {
            resource: AclResource {
                resource_type: AclResourceType::from_code(resource_type)
                    .ok_or_else(|| bad("resource type", resource_type))?,
                pattern_type: AclPatternType::from_code(pattern_type)
                    .ok_or_else(|| bad("pattern type", pattern_type))?,
                name,
            },
            entry: AclEntry {
                principal,
                host,
                operation: AclOperation::from_code(operation)
                    .ok_or_else(|| bad("operation", operation))?,
                permission: AclPermission::from_code(permission)
                    .ok_or_else(|| bad("permission", permission))?,
            },
        };
        if previous
            .as_ref()
            .is_some_and(|previous| *previous >= binding)
        {
            return Err(invalid(format!("ACL binding {binding:?} out of order")));
        }
        acls.insert(binding.clone())
            .map_err(|error| invalid(error.to_string()))?;
        previous = Some(binding);
    }
    Ok(acls)
}

/// Checks magic, version, length and CRC; returns the version and the body.
fn verified_body(bytes: &[u8]) -> Result<(u16, &[u8]), CheckpointError> {
    let too_short = || CheckpointError::TooShort { len: bytes.len() };
    let (covered, crc_bytes) = bytes.split_last_chunk::<CRC_LEN>().ok_or_else(too_short)?;
    let (header, body) = covered
        .split_first_chunk::<HEADER_LEN>()
        .ok_or_else(too_short)?;
    let mut header_reader = Reader {
        bytes: header,
        version: CHECKPOINT_VERSION,
    };
    let magic = header_reader.array::<8>("magic")?;
    if magic != CHECKPOINT_MAGIC {
        return Err(CheckpointError::BadMagic { found: magic });
    }
    let version = header_reader.u16("version")?;
    if !(CHECKPOINT_VERSION_MIN..=CHECKPOINT_VERSION).contains(&version) {
        return Err(CheckpointError::UnsupportedVersion {
            version,
            supported: CHECKPOINT_VERSION,
        });
    }
    let _reserved = header_reader.u16("reserved")?;
    let declared = header_reader.u64("body_len")?;
    if declared != body.len() as u64 {
        return Err(CheckpointError::LengthMismatch {
            declared,
            actual: body.len() as u64,
        });
    }
    let expected = u32::from_le_bytes(*crc_bytes);
    let got = crc32c::crc32c(covered);
    if expected != got {
        return Err(CheckpointError::ChecksumMismatch { expected, got });
    }
    Ok((version, body))
}

fn read_topic(reader: &mut Reader<'_>) -> Result<(String, Topic), CheckpointError> {
    let name = reader.short_string("topic name")?;
    validate_topic_name(&name).map_err(|error| invalid(error.to_string()))?;
    let config_count = reader.u16("config_count")?;
    let mut configs = BTreeMap::new();
    for _ in 0..config_count {
        let config_name = reader.short_string("config name")?;
        let value = reader.short_string("config value")?;
        validate_config(&config_name, &value).map_err(|error| invalid(error.to_string()))?;
        if configs.insert(config_name, value).is_some() {
            return Err(invalid(format!("duplicate config in topic '{name}'")));
        }
    }
    let partition_count = reader.u32("partition_count")?;
    if partition_count == 0 || partition_count > PARTITIONS_PER_TOPIC_MAX {
        return Err(invalid(format!(
            "topic '{name}' has {partition_count} partitions"
        )));
    }
    let mut partitions = Vec::with_capacity(partition_count as usize);
    for _ in 0..partition_count {
        partitions.push(read_partition(reader)?);
    }
    Ok((
        name.clone(),
        Topic {
            name,
            configs,
            partitions,
        },
    ))
}

fn read_partition(reader: &mut Reader<'_>) -> Result<PartitionState, CheckpointError> {
    let log_start_offset = reader.u64("log_start_offset")?;
    let high_watermark = reader.u64("high_watermark")?;
    let entry_count = reader.u32("entry_count")? as usize;
    if entry_count > INDEX_ENTRIES_PER_PARTITION_MAX {
        return Err(invalid(format!(
            "{entry_count} index entries (limit {INDEX_ENTRIES_PER_PARTITION_MAX})"
        )));
    }
    // Take the bytes first, so a corrupt count cannot make us allocate more than the input holds.
    let entry_bytes = reader.take(entry_count * INDEX_ENTRY_LEN, "index entries")?;
    let (entries, _) = entry_bytes.as_chunks::<INDEX_ENTRY_LEN>();
    let index = PartitionIndex::from_entries(entries.len(), entries.iter().map(decode_index_entry));
    let producers = if reader.version >= 2 {
        read_producers(reader)?
    } else {
        ProducerMap::new()
    };
    PartitionState::from_parts(log_start_offset, high_watermark, index, producers).map_err(invalid)
}

/// Counts are bounded by [`PRODUCERS_PER_PARTITION_MAX`] and [`PRODUCER_BATCHES_RETAINED`].
fn put_producers(out: &mut Vec<u8>, producers: &ProducerMap) {
    out.extend_from_slice(&(producers.len() as u32).to_le_bytes());
    for (producer_id, entry) in producers {
        out.extend_from_slice(&producer_id.to_le_bytes());
        out.extend_from_slice(&entry.epoch.to_le_bytes());
        out.push(entry.batches.len() as u8);
        for batch in &entry.batches {
            out.extend_from_slice(&batch.base_sequence.to_le_bytes());
            out.extend_from_slice(&batch.last_sequence.to_le_bytes());
            out.extend_from_slice(&batch.base_offset.to_le_bytes());
        }
    }
}

fn read_producers(reader: &mut Reader<'_>) -> Result<ProducerMap, CheckpointError> {
    let producer_count = reader.u32("producer_count")? as usize;
    if producer_count > PRODUCERS_PER_PARTITION_MAX {
        return Err(invalid(format!(
            "{producer_count} producers (limit {PRODUCERS_PER_PARTITION_MAX})"
        )));
    }
    let mut producers = ProducerMap::new();
    let mut previous_id = -1i64;
    for _ in 0..producer_count {
        let producer_id = i64::from_le_bytes(reader.array::<8>("producer_id")?);
        let epoch = i16::from_le_bytes(reader.array::<2>("producer epoch")?);
        let [batch_count] = reader.array::<1>("producer batch_count")?;
        if producer_id <= previous_id || epoch < 0 {
            return Err(invalid(format!(
                "producer {producer_id} (epoch {epoch}) out of order or negative"
            )));
        }
        previous_id = producer_id;
        let batch_count = usize::from(batch_count);
        if batch_count == 0 || batch_count > PRODUCER_BATCHES_RETAINED {
            return Err(invalid(format!(
                "producer {producer_id} keeps {batch_count} batches"
            )));
        }
        let mut batches = Vec::with_capacity(batch_count);
        for _ in 0..batch_count {
            let base_sequence = i32::from_le_bytes(reader.array::<4>("base_sequence")?);
            let last_sequence = i32::from_le_bytes(reader.array::<4>("last_sequence")?);
            let base_offset = reader.u64("producer base_offset")?;
            if base_sequence < 0 || last_sequence < 0 {
                return Err(invalid(format!(
                    "producer {producer_id} has a negative sequence"
                )));
            }
            batches.push(SequenceRange {
                base_sequence,
                last_sequence,
                base_offset,
            });
        }
        producers.insert(producer_id, ProducerEntry { epoch, batches });
    }
    Ok(producers)
}

/// Ids, names and metadata are bounded by [`GROUP_ID_LEN_MAX`](super::GROUP_ID_LEN_MAX),
/// `TOPIC_NAME_LEN_MAX` and [`OFFSET_METADATA_LEN_MAX`], all below `u16::MAX`; counts by
/// [`OFFSET_GROUPS_MAX`] and [`COMMITTED_OFFSETS_MAX`].
fn put_group_offsets(
    out: &mut Vec<u8>,
    group_offsets: &BTreeMap<String, std::sync::Arc<GroupOffsets>>,
) {
    out.extend_from_slice(&(group_offsets.len() as u32).to_le_bytes());
    for (group, topics) in group_offsets {
        put_short_bytes(out, group.as_bytes());
        out.extend_from_slice(&(topics.len() as u32).to_le_bytes());
        for (topic, partitions) in topics.iter() {
            put_short_bytes(out, topic.as_bytes());
            out.extend_from_slice(&(partitions.len() as u32).to_le_bytes());
            for (partition, committed) in partitions {
                out.extend_from_slice(&partition.to_le_bytes());
                out.extend_from_slice(&committed.offset.to_le_bytes());
                out.extend_from_slice(&committed.leader_epoch.to_le_bytes());
                out.extend_from_slice(&committed.commit_timestamp_ms.to_le_bytes());
                out.push(u8::from(committed.metadata.is_some()));
                put_short_bytes(out, committed.metadata.as_deref().unwrap_or("").as_bytes());
            }
        }
    }
}

/// Reads the committed offsets and checks every invariant the state machine keeps: canonical
/// order, no empty maps, only existing topics and partitions, offsets >= -1, the limits.
fn read_group_offsets(
    reader: &mut Reader<'_>,
    topics: &TopicMap,
    topic_ids_by_name: &BTreeMap<String, TopicId>,
) -> Result<(BTreeMap<String, std::sync::Arc<GroupOffsets>>, usize), CheckpointError> {
    let group_count = reader.u32("group_count")? as usize;
    if group_count > OFFSET_GROUPS_MAX {
        return Err(invalid(format!(
            "{group_count} offset groups (limit {OFFSET_GROUPS_MAX})"
        )));
    }
    let mut group_offsets = BTreeMap::new();
    let mut committed_offset_count = 0usize;
    for _ in 0..group_count {
        let group = reader.short_string("group id")?;
        validate_group_id(&group).map_err(|error| invalid(error.to_string()))?;
        if group_offsets
            .last_key_value()
            .is_some_and(|(previous, _)| *previous >= group)
        {
            return Err(invalid(format!("group '{group}' out of order")));
        }
        let topic_count = reader.u32("group topic_count")?;
        if topic_count == 0 {
            return Err(invalid(format!("group '{group}' has no offsets")));
        }
        let mut group_topics = GroupOffsets::new();
        for _ in 0..topic_count {
            let topic = reader.short_string("offset topic name")?;
            if group_topics
                .last_key_value()
                .is_some_and(|(previous, _)| *previous >= topic)
            {
                return Err(invalid(format!(
                    "group '{group}': topic '{topic}' out of order"
                )));
            }
            let partition_count = topic_ids_by_name
                .get(&topic)
                .and_then(|topic_id| topics.get(topic_id))
                .map(Topic::partition_count)
                .ok_or_else(|| invalid(format!("group '{group}': unknown topic '{topic}'")))?;
            let offset_count = reader.u32("offset partition_count")?;
            if offset_count == 0 {
                return Err(invalid(format!(
                    "group '{group}': topic '{topic}' has no offsets"
                )));
            }
            committed_offset_count = committed_offset_count.saturating_add(offset_count as usize);
            if committed_offset_count > COMMITTED_OFFSETS_MAX {
                return Err(invalid(format!(
                    "more than {COMMITTED_OFFSETS_MAX} committed offsets"
                )));
            }
            let mut partitions = BTreeMap::new();
            for _ in 0..offset_count {
                let (partition, committed) = read_committed(reader)?;
                let in_order = partitions
                    .last_key_value()
                    .is_none_or(|(previous, _)| *previous < partition);
                if !in_order || partition >= partition_count {
                    return Err(invalid(format!(
                        "group '{group}': partition {partition} of '{topic}' out of order or unknown"
                    )));
                }
                partitions.insert(partition, committed);
            }
            group_topics.insert(topic, partitions);
        }
        group_offsets.insert(group, std::sync::Arc::new(group_topics));
    }
    Ok((group_offsets, committed_offset_count))
}

fn put_group_states(out: &mut Vec<u8>, group_states: &BTreeMap<String, StoredGroup>) {
    // Bounded by GROUPS_STORED_MAX; ids by GROUP_ID_LEN_MAX.
    out.extend_from_slice(&(group_states.len() as u32).to_le_bytes());
    for (group, stored) in group_states {
        put_short_bytes(out, group.as_bytes());
        put_group_record(out, &stored.record);
    }
}

/// Reads the stored group records and checks what the state machine checks when it stores one:
/// the id, the record's rules, its size, the count and the total.
fn read_group_states(
    reader: &mut Reader<'_>,
) -> Result<(BTreeMap<String, StoredGroup>, usize), CheckpointError> {
    let count = reader.u32("stored group count")? as usize;
    if count > GROUPS_STORED_MAX {
        return Err(invalid(format!(
            "{count} stored groups (limit {GROUPS_STORED_MAX})"
        )));
    }
    let mut group_states: BTreeMap<String, StoredGroup> = BTreeMap::new();
    let mut total = 0usize;
    for _ in 0..count {
        let group = reader.short_string("stored group id")?;
        validate_group_id(&group).map_err(|error| invalid(error.to_string()))?;
        if group_states
            .last_key_value()
            .is_some_and(|(previous, _)| *previous >= group)
        {
            return Err(invalid(format!("stored group '{group}' out of order")));
        }
        let record = read_group_record(reader)?;
        let encoded_len = validate_group_record(&record)
            .map_err(|reason| invalid(format!("stored group '{group}': {reason}")))?;
        if encoded_len > GROUP_STATE_BYTES_MAX {
            return Err(invalid(format!(
                "stored group '{group}' is {encoded_len} bytes (limit {GROUP_STATE_BYTES_MAX})"
            )));
        }
        total += encoded_len;
        if total > GROUP_STATE_BYTES_TOTAL_MAX {
            return Err(invalid(format!(
                "more than {GROUP_STATE_BYTES_TOTAL_MAX} bytes of group state"
            )));
        }
        group_states.insert(
            group,
            StoredGroup {
                record: std::sync::Arc::new(record),
                encoded_len,
            },
        );
    }
    Ok((group_states, total))
}

fn read_committed(reader: &mut Reader<'_>) -> Result<(u32, CommittedOffset), CheckpointError> {
    let partition = reader.u32("offset partition")?;
    let offset = i64::from_le_bytes(reader.array::<8>("committed offset")?);
    let leader_epoch = i32::from_le_bytes(reader.array::<4>("leader_epoch")?);
    let commit_timestamp_ms = i64::from_le_bytes(reader.array::<8>("commit_timestamp_ms")?);
    let [metadata_present] = reader.array::<1>("metadata_present")?;
    let metadata = reader.short_string("offset metadata")?;
    if offset < -1 {
        return Err(invalid(format!("committed offset {offset} is below -1")));
    }
    if metadata.len() > OFFSET_METADATA_LEN_MAX {
        return Err(invalid(format!(
            "offset metadata of {} bytes (limit {OFFSET_METADATA_LEN_MAX})",
            metadata.len()
        )));
    }
    let metadata = match metadata_present {
        0 if metadata.is_empty() => None,
        1 => Some(metadata),
        _ => {
            return Err(invalid(format!(
                "offset metadata: bad option tag {metadata_present}"
            )));
        }
    };
    Ok((
        partition,
        CommittedOffset {
            offset,
            leader_epoch,
            metadata,
            commit_timestamp_ms,
        },
    ))
}

fn decode_index_entry(bytes: &[u8; INDEX_ENTRY_LEN]) -> IndexEntry {
    let (words, _) = bytes.as_chunks::<8>();
    let mut words = words.iter().map(|word| u64::from_le_bytes(*word));
    // Exactly six words: the defaults are never used.
    let mut next = move || words.next().unwrap_or_default();
    IndexEntry {
        base_offset: next(),
        end_offset: next(),
        seq: LogSeq(next()),
        byte_start: next(),
        byte_len: next(),
        max_timestamp: i64::from_le_bytes(next().to_le_bytes()),
    }
}

fn invalid(reason: String) -> CheckpointError {
    CheckpointError::Invalid { reason }
}

fn put_optional_seq(out: &mut Vec<u8>, seq: Option<LogSeq>) {
    out.push(u8::from(seq.is_some()));
    out.extend_from_slice(&seq.map_or(0, |seq| seq.0).to_le_bytes());
}

/// Names and config values are bounded well below `u16::MAX` by validation.
fn put_short_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// A cursor over untrusted bytes: every read is checked.
pub(super) struct Reader<'a> {
    bytes: &'a [u8],
    /// The checkpoint's format version, for fields that only later versions have.
    version: u16,
}

impl<'a> Reader<'a> {
    pub(super) fn i32(&mut self, what: &'static str) -> Result<i32, CheckpointError> {
        self.array(what).map(i32::from_le_bytes)
    }

    /// `present u8 (0|1) | len u16 | bytes`, empty when absent.
    pub(super) fn optional_string(
        &mut self,
        what: &'static str,
    ) -> Result<Option<String>, CheckpointError> {
        let [present] = self.array::<1>(what)?;
        let value = self.short_string(what)?;
        match present {
            0 if value.is_empty() => Ok(None),
            1 => Ok(Some(value)),
            _ => Err(invalid(format!("{what}: bad option tag {present}"))),
        }
    }

    /// `len u32 | bytes`.
    pub(super) fn long_bytes(&mut self, what: &'static str) -> Result<Vec<u8>, CheckpointError> {
        let len = self.u32(what)? as usize;
        self.take(len, what).map(<[u8]>::to_vec)
    }

    fn take(&mut self, len: usize, what: &'static str) -> Result<&'a [u8], CheckpointError> {
        let (taken, rest) = self
            .bytes
            .split_at_checked(len)
            .ok_or(CheckpointError::Truncated { what })?;
        self.bytes = rest;
        Ok(taken)
    }

    pub(super) fn array<const N: usize>(
        &mut self,
        what: &'static str,
    ) -> Result<[u8; N], CheckpointError> {
        let (taken, rest) = self
            .bytes
            .split_first_chunk::<N>()
            .ok_or(CheckpointError::Truncated { what })?;
        self.bytes = rest;
        Ok(*taken)
    }

    pub(super) fn u16(&mut self, what: &'static str) -> Result<u16, CheckpointError> {
        self.array(what).map(u16::from_le_bytes)
    }

    pub(super) fn u32(&mut self, what: &'static str) -> Result<u32, CheckpointError> {
        self.array(what).map(u32::from_le_bytes)
    }

    pub(super) fn u64(&mut self, what: &'static str) -> Result<u64, CheckpointError> {
        self.array(what).map(u64::from_le_bytes)
    }

    fn optional_seq(&mut self, what: &'static str) -> Result<Option<LogSeq>, CheckpointError> {
        let [present] = self.array::<1>(what)?;
        let value = self.u64(what)?;
        match present {
            0 if value == 0 => Ok(None),
            1 => Ok(Some(LogSeq(value))),
            _ => Err(invalid(format!("{what}: bad option tag {present}"))),
        }
    }

    pub(super) fn short_string(&mut self, what: &'static str) -> Result<String, CheckpointError> {
        let len = self.u16(what)?;
        let bytes = self.take(usize::from(len), what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| invalid(format!("{what} is not UTF-8")))
    }
}
