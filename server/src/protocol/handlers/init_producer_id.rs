//! InitProducerId: hand an idempotent producer a fresh producer id, with epoch 0.
//!
//! The id comes from the metadata state machine (a counter applied in log order, kept in the
//! checkpoint), so it is unique across agent restarts and takeovers; see
//! [`crate::metadata_core::producer_ids`]. Like the Java broker, a request without a transactional
//! id always gets a *new* id, even when it names its current id and epoch (KIP-360, v3+): the
//! broker's `TransactionCoordinator.handleInitProducerId` does exactly that for a null
//! transactional id, and the Java idempotent producer bumps its epoch locally anyway.
//!
//! A transactional id is refused with the code the produce path uses for transactional requests
//! (TRANSACTIONAL_ID_AUTHORIZATION_FAILED, fatal and clearly worded in the clients) until
//! transactions exist; the state machine refuses the command too, so the check holds either way.

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use sluice_engine::metadata::kafka_code;

use crate::metadata_core::window::error_code;
use crate::metadata_core::{CommandFailure, CoreHandle};

/// Handles one InitProducerId request.
pub async fn handle(core: &CoreHandle, request: InitProducerIdRequest) -> InitProducerIdResponse {
    if request.transactional_id.is_some() {
        return refusal(kafka_code::TRANSACTIONS_UNSUPPORTED);
    }
    match core.init_producer_id(None).await {
        Ok(Ok((producer_id, producer_epoch))) => InitProducerIdResponse::default()
            .with_error_code(0)
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(producer_epoch),
        Ok(Err(CommandFailure::Rejected(error))) => refusal(error.kafka_error_code()),
        Ok(Err(CommandFailure::LogFailed { code, .. })) => refusal(code),
        // The client retries NOT_LEADER_OR_FOLLOWER after a metadata refresh.
        Err(_) => refusal(error_code::NOT_LEADER_OR_FOLLOWER),
    }
}

fn refusal(code: i16) -> InitProducerIdResponse {
    InitProducerIdResponse::default()
        .with_error_code(code)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1)
}
