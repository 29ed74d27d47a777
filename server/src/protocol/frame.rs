//! Kafka's framing: every request is a big-endian `i32` byte count followed by that many bytes.
//!
//! The size is checked before a single body byte is buffered, so an oversized or negative size
//! costs four bytes of memory, not `request_bytes_max`; the caller closes the connection, as the
//! Java broker does when `socket.request.max.bytes` is exceeded.

use bytes::{Buf, Bytes, BytesMut};

/// Bytes of the size prefix.
pub const FRAME_SIZE_PREFIX_BYTES: usize = 4;

/// A size prefix that can never be a valid request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    #[error("negative frame size {size_bytes}")]
    NegativeSize { size_bytes: i32 },
    #[error("frame of {size_bytes} bytes exceeds request_bytes_max ({request_bytes_max})")]
    TooLarge {
        size_bytes: u32,
        request_bytes_max: u32,
    },
}

/// Takes one complete frame (without its size prefix) off the front of `buffer`.
///
/// Returns `Ok(None)` when more bytes are needed; in that case nothing is consumed. The size is
/// validated as soon as the prefix is present, even if the body is not.
pub fn split_frame(
    buffer: &mut BytesMut,
    request_bytes_max: u32,
) -> Result<Option<Bytes>, FrameError> {
    let Some(size_bytes) = announced_size(buffer, request_bytes_max)? else {
        return Ok(None);
    };
    let frame_bytes = size_bytes as usize;
    if buffer.len() < FRAME_SIZE_PREFIX_BYTES + frame_bytes {
        // No reserve for the announced size here: four bytes from a client must not make the
        // agent allocate `request_bytes_max`; the buffer grows as the bytes actually arrive.
        return Ok(None);
    }
    buffer.advance(FRAME_SIZE_PREFIX_BYTES);
    Ok(Some(buffer.split_to(frame_bytes).freeze()))
}

/// The bytes still to arrive of the frame at the front of `buffer`, once its size prefix has
/// arrived and announces an acceptable size (`None` before that, or when [`split_frame`] will
/// refuse the frame). The connection reserves room for them as they come, so a large frame is
/// not copied again each time its buffer grows.
pub fn frame_rest(buffer: &[u8], request_bytes_max: u32) -> Option<usize> {
    let size_bytes = announced_size(buffer, request_bytes_max).ok()??;
    Some((FRAME_SIZE_PREFIX_BYTES + size_bytes as usize).saturating_sub(buffer.len()))
}

/// The body size the prefix at the front of `buffer` announces: `Ok(None)` until all four prefix
/// bytes are there, an error when the size can never be a valid request (negative, or above
/// `request_bytes_max`). The one place [`split_frame`] and [`frame_rest`] read the prefix, so they
/// agree on which frames are refused.
fn announced_size(buffer: &[u8], request_bytes_max: u32) -> Result<Option<u32>, FrameError> {
    let Some(prefix) = buffer.first_chunk::<FRAME_SIZE_PREFIX_BYTES>() else {
        return Ok(None);
    };
    let size_bytes = i32::from_be_bytes(*prefix);
    let size_bytes =
        u32::try_from(size_bytes).map_err(|_| FrameError::NegativeSize { size_bytes })?;
    if size_bytes > request_bytes_max {
        return Err(FrameError::TooLarge {
            size_bytes,
            request_bytes_max,
        });
    }
    Ok(Some(size_bytes))
}

/// The size prefix for a message body of `body_bytes`, or `None` if it cannot be framed.
pub fn size_prefix(body_bytes: usize) -> Option<[u8; FRAME_SIZE_PREFIX_BYTES]> {
    i32::try_from(body_bytes).ok().map(i32::to_be_bytes)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn frame_rest_counts_what_is_still_to_arrive() {
        let mut buffer = 100i32.to_be_bytes().to_vec();
        assert_eq!(frame_rest(&buffer[..3], 1_000), None, "no prefix yet");
        assert_eq!(frame_rest(&buffer, 1_000), Some(100));
        buffer.extend_from_slice(&[0; 60]);
        assert_eq!(frame_rest(&buffer, 1_000), Some(40));
        buffer.extend_from_slice(&[0; 50]);
        assert_eq!(
            frame_rest(&buffer, 1_000),
            Some(0),
            "the next frame's bytes too"
        );
        assert_eq!(
            frame_rest(&100i32.to_be_bytes(), 99),
            None,
            "too large: refused"
        );
        assert_eq!(
            frame_rest(&(-1i32).to_be_bytes(), 1_000),
            None,
            "negative: refused"
        );
    }

    fn framed(bodies: &[&[u8]]) -> BytesMut {
        let mut buffer = BytesMut::new();
        for body in bodies {
            buffer.extend_from_slice(&(body.len() as i32).to_be_bytes());
            buffer.extend_from_slice(body);
        }
        buffer
    }

    #[test]
    fn splits_pipelined_frames_in_order() {
        let mut buffer = framed(&[b"one", b"", b"three"]);
        assert_eq!(split_frame(&mut buffer, 100).unwrap().unwrap(), &b"one"[..]);
        assert_eq!(split_frame(&mut buffer, 100).unwrap().unwrap(), &b""[..]);
        assert_eq!(
            split_frame(&mut buffer, 100).unwrap().unwrap(),
            &b"three"[..]
        );
        assert_eq!(split_frame(&mut buffer, 100).unwrap(), None);
        assert!(buffer.is_empty());
    }

    #[test]
    fn partial_frames_consume_nothing() {
        let whole = framed(&[b"hello"]);
        for cut in 0..whole.len() {
            let mut buffer = BytesMut::from(&whole[..cut]);
            assert_eq!(split_frame(&mut buffer, 100).unwrap(), None, "cut at {cut}");
            assert_eq!(&buffer[..], &whole[..cut]);
        }
    }

    #[test]
    fn rejects_negative_and_oversized_sizes_from_the_prefix_alone() {
        let mut buffer = BytesMut::from(&(-1_i32).to_be_bytes()[..]);
        assert_eq!(
            split_frame(&mut buffer, 100),
            Err(FrameError::NegativeSize { size_bytes: -1 })
        );
        let mut buffer = BytesMut::from(&101_i32.to_be_bytes()[..]);
        assert_eq!(
            split_frame(&mut buffer, 100),
            Err(FrameError::TooLarge {
                size_bytes: 101,
                request_bytes_max: 100
            })
        );
        let mut buffer = framed(&[&[7; 100]]);
        assert_eq!(split_frame(&mut buffer, 100).unwrap().unwrap().len(), 100);
    }

    #[test]
    fn frame_rest_refuses_exactly_what_split_frame_refuses() {
        for size_bytes in [i32::MIN, -1, 0, 1, 99, 100, 101, i32::MAX] {
            let prefix = size_bytes.to_be_bytes();
            for cut in 0..=prefix.len() {
                let refused = split_frame(&mut BytesMut::from(&prefix[..cut]), 100).is_err();
                let rest = frame_rest(&prefix[..cut], 100);
                if cut < prefix.len() {
                    assert_eq!((refused, rest), (false, None), "{size_bytes} cut at {cut}");
                } else {
                    assert_eq!(refused, rest.is_none(), "{size_bytes}");
                }
            }
        }
    }

    #[test]
    fn size_prefix_round_trips() {
        assert_eq!(size_prefix(5), Some([0, 0, 0, 5]));
        assert_eq!(size_prefix(usize::MAX), None);
    }
}
