//! A structural pre-check of request bodies: every array length is checked against the bytes that
//! are actually present before `kafka-protocol` decodes the body.
//!
//! Why: `kafka-protocol` 0.18 calls `Vec::with_capacity(n)` with `n` straight from the wire, for
//! every array at every nesting level, so a 40-byte Produce claiming two billion partitions inside
//! its first topic asks the allocator for ~100 GB and aborts the process (see the module docs of
//! [`super::codec`]). Rather than hand-write a guard per array, each API's body is described once
//! as a [`Shape`] and [`check_body`] walks it: it reads lengths, skips payloads (records stay
//! unread), and refuses any array whose claimed count times the smallest encoding of one element
//! exceeds the bytes left. The walk is O(number of fields), never allocates, and never panics.

/// One field of a request body, as laid out on the wire.
#[derive(Debug, Clone, Copy)]
pub enum Shape {
    I8,
    I16,
    I32,
    I64,
    Uuid,
    /// A (nullable) string: i16 length, or a compact varint length in flexible versions.
    Str,
    /// (Nullable) bytes: i32 length, or a compact varint length in flexible versions.
    Bytes,
    /// A (nullable) array of structs; each element ends with tagged fields in flexible versions.
    Structs(&'static [Shape]),
    /// A (nullable) array of single values (no tagged fields per element).
    Values(&'static Shape),
}

/// Why a body was refused before decoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShapeError {
    #[error("body truncated at byte {position}")]
    Truncated { position: usize },
    #[error("array at byte {position} claims {count} entries but only {remaining} bytes follow")]
    ArrayTooLong {
        position: usize,
        count: u64,
        remaining: usize,
    },
}

/// Nested arrays deeper than this are refused (no Kafka request comes close).
const DEPTH_MAX: usize = 8;

struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
    flexible: bool,
}

impl Reader<'_> {
    fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.position)
    }

    fn skip(&mut self, count: usize) -> Result<(), ShapeError> {
        if count > self.remaining() {
            return Err(ShapeError::Truncated {
                position: self.position,
            });
        }
        self.position += count;
        Ok(())
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], ShapeError> {
        let truncated = ShapeError::Truncated {
            position: self.position,
        };
        let bytes = self
            .bytes
            .get(self.position..)
            .and_then(|rest| rest.first_chunk::<N>())
            .ok_or(truncated)?;
        self.position += N;
        Ok(*bytes)
    }

    fn varint(&mut self) -> Result<u64, ShapeError> {
        let mut value: u64 = 0;
        for index in 0..5_u32 {
            let [byte] = self.fixed::<1>()?;
            value |= u64::from(byte & 0x7f) << (7 * index);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(ShapeError::Truncated {
            position: self.position,
        })
    }

    /// A length prefix: `None` for null. Compact forms store length + 1.
    fn length(&mut self, wide: bool) -> Result<Option<u64>, ShapeError> {
        if self.flexible {
            let raw = self.varint()?;
            return Ok(raw.checked_sub(1));
        }
        let length = if wide {
            i64::from(i32::from_be_bytes(self.fixed::<4>()?))
        } else {
            i64::from(i16::from_be_bytes(self.fixed::<2>()?))
        };
        Ok(u64::try_from(length).ok())
    }

    fn tagged_fields(&mut self) -> Result<(), ShapeError> {
        let count = self.varint()?;
        for _ in 0..count {
            self.varint()?;
            let size = self.varint()?;
            self.skip(usize::try_from(size).unwrap_or(usize::MAX))?;
        }
        Ok(())
    }

    fn field(&mut self, shape: &Shape, depth: usize) -> Result<(), ShapeError> {
        match shape {
            Shape::I8 => self.skip(1),
            Shape::I16 => self.skip(2),
            Shape::I32 => self.skip(4),
            Shape::I64 => self.skip(8),
            Shape::Uuid => self.skip(16),
            Shape::Str | Shape::Bytes => {
                let wide = matches!(shape, Shape::Bytes);
                match self.length(wide)? {
                    Some(length) => self.skip(usize::try_from(length).unwrap_or(usize::MAX)),
                    None => Ok(()),
                }
            }
            Shape::Structs(fields) => {
                self.array(depth, min_struct_bytes(fields, self.flexible), |reader| {
                    reader.structure(fields, depth + 1)
                })
            }
            Shape::Values(value) => self.array(depth, min_bytes(value, self.flexible), |reader| {
                reader.field(value, depth + 1)
            }),
        }
    }

    fn array(
        &mut self,
        depth: usize,
        element_bytes_min: usize,
        mut element: impl FnMut(&mut Self) -> Result<(), ShapeError>,
    ) -> Result<(), ShapeError> {
        let position = self.position;
        if depth >= DEPTH_MAX {
            return Err(ShapeError::Truncated { position });
        }
        let Some(count) = self.length(true)? else {
            return Ok(());
        };
        let remaining = self.remaining();
        if count.saturating_mul(element_bytes_min.max(1) as u64) > remaining as u64 {
            return Err(ShapeError::ArrayTooLong {
                position,
                count,
                remaining,
            });
        }
        for _ in 0..count {
            element(self)?;
        }
        Ok(())
    }

    fn structure(&mut self, fields: &[Shape], depth: usize) -> Result<(), ShapeError> {
        for field in fields {
            self.field(field, depth)?;
        }
        if self.flexible {
            self.tagged_fields()?;
        }
        Ok(())
    }
}

fn min_bytes(shape: &Shape, flexible: bool) -> usize {
    match shape {
        Shape::I8 => 1,
        Shape::I16 => 2,
        Shape::I32 => 4,
        Shape::I64 => 8,
        Shape::Uuid => 16,
        Shape::Str if !flexible => 2,
        Shape::Bytes | Shape::Structs(_) | Shape::Values(_) if !flexible => 4,
        _ => 1,
    }
}

fn min_struct_bytes(fields: &[Shape], flexible: bool) -> usize {
    let tagged = usize::from(flexible);
    fields
        .iter()
        .map(|field| min_bytes(field, flexible))
        .sum::<usize>()
        + tagged
}

/// Walks `body` (the bytes after the request header) as `fields`; a flexible version ends the
/// body with tagged fields. Bytes after the described fields are left to the real decoder.
pub fn check_body(body: &[u8], fields: &[Shape], flexible: bool) -> Result<(), ShapeError> {
    let mut reader = Reader {
        bytes: body,
        position: 0,
        flexible,
    };
    reader.structure(fields, 0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    const TOPICS: &[Shape] = &[Shape::Structs(&[
        Shape::Str,
        Shape::Structs(&[Shape::I32, Shape::Bytes]),
    ])];

    #[test]
    fn a_nested_count_beyond_the_body_is_refused() {
        // One topic "t", whose partition array claims 2^31-1 entries.
        let mut body = vec![0, 0, 0, 1, 0, 1, b't'];
        body.extend_from_slice(&i32::MAX.to_be_bytes());
        let error = check_body(&body, TOPICS, false).unwrap_err();
        assert!(
            matches!(
                error,
                ShapeError::ArrayTooLong {
                    count: 2147483647,
                    ..
                }
            ),
            "{error}"
        );
        // The same with a real partition passes.
        let mut body = vec![
            0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 1, 0, 0, 0, 5, 0, 0, 0, 2, 9, 9,
        ];
        check_body(&body, TOPICS, false).unwrap();
        body.pop();
        assert!(matches!(
            check_body(&body, TOPICS, false),
            Err(ShapeError::Truncated { .. })
        ));
    }

    #[test]
    fn compact_encodings_and_nulls_are_understood() {
        // Compact: one topic (2), name "t" (2, 't'), one partition (2), index, bytes of 1 (2, x),
        // partition tags, topic tags, body tags.
        let body = vec![2, 2, b't', 2, 0, 0, 0, 3, 2, 0xaa, 0, 0, 0];
        check_body(&body, TOPICS, true).unwrap();
        // A null array (compact 0) is fine; a huge compact count is not.
        check_body(&[0, 0], TOPICS, true).unwrap();
        assert!(check_body(&[0xff, 0xff, 0xff, 0xff, 0x07], TOPICS, true).is_err());
    }

    #[test]
    fn garbage_never_panics() {
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        for round in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let body: Vec<u8> = (0..(state % 48))
                .map(|i| (state >> (i % 56)) as u8)
                .collect();
            let _ = check_body(&body, TOPICS, round % 2 == 0);
        }
    }
}
