//! The JSON-lines report a client writes (docs/testing.md, "Reports"): `ack` lines as the producer
//! learns offsets, `rec` lines as the consumer reads records, an `error` line if the client failed,
//! and one `done` line at the end. Bytes travel as lowercase hex.

use std::path::Path;

use serde::Deserialize;

use crate::HarnessError;

/// A line of the report, as the clients write it.
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum Line {
    Ack {
        i: u64,
        p: i32,
        o: i64,
    },
    Rec {
        p: i32,
        o: i64,
        k: Option<String>,
        v: String,
        h: Vec<(String, String)>,
        ts: i64,
    },
    Error {
        message: String,
    },
    Done {
        produced: u64,
        consumed: u64,
        elapsed_ms: u64,
    },
}

/// The producer's acknowledgement of record `index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    pub index: u64,
    pub partition: i32,
    pub offset: i64,
}

/// A record as the consumer read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedRecord {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    /// A null header value and an empty one both read as empty: clients disagree on which they
    /// return for an empty value, and the generator never sends null.
    pub headers: Vec<(String, Vec<u8>)>,
    pub timestamp_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Done {
    pub produced: u64,
    pub consumed: u64,
    pub elapsed_ms: u64,
}

#[derive(Debug, Default)]
pub struct Report {
    pub acks: Vec<Ack>,
    pub records: Vec<ConsumedRecord>,
    pub errors: Vec<String>,
    /// `None` when the client died before finishing (its last line is then something else).
    pub done: Option<Done>,
}

impl Report {
    pub fn read(path: &Path) -> Result<Report, HarnessError> {
        let text = std::fs::read_to_string(path)
            .map_err(HarnessError::io(format!("read report {}", path.display())))?;
        Report::parse(&text).map_err(|(line, message)| HarnessError::Report {
            path: path.to_path_buf(),
            line,
            message,
        })
    }

    /// Parses a whole report; on error returns the 1-based line number and what is wrong. A torn
    /// last line (a client killed mid-write) is ignored: everything before it still counts.
    pub fn parse(text: &str) -> Result<Report, (usize, String)> {
        let mut report = Report::default();
        let line_count = text.lines().count();
        for (number, line) in text.lines().enumerate() {
            let line_number = number + 1;
            if line.trim().is_empty() {
                continue;
            }
            let parsed: Line = match serde_json::from_str(line) {
                Ok(parsed) => parsed,
                Err(_) if line_number == line_count && !text.ends_with('\n') => break,
                Err(error) => return Err((line_number, error.to_string())),
            };
            match parsed {
                Line::Ack { i, p, o } => report.acks.push(Ack {
                    index: i,
                    partition: p,
                    offset: o,
                }),
                Line::Rec { p, o, k, v, h, ts } => {
                    let decode = |field: &str, hex: &str| {
                        decode_hex(hex)
                            .ok_or_else(|| (line_number, format!("{field} is not hex: {hex:?}")))
                    };
                    let key = match k {
                        Some(k) => Some(decode("key", &k)?),
                        None => None,
                    };
                    let value = decode("value", &v)?;
                    let mut headers = Vec::with_capacity(h.len());
                    for (name, data) in h {
                        let data = decode("header", &data)?;
                        headers.push((name, data));
                    }
                    report.records.push(ConsumedRecord {
                        partition: p,
                        offset: o,
                        key,
                        value,
                        headers,
                        timestamp_ms: ts,
                    });
                }
                Line::Error { message } => report.errors.push(message),
                Line::Done {
                    produced,
                    consumed,
                    elapsed_ms,
                } => {
                    report.done = Some(Done {
                        produced,
                        consumed,
                        elapsed_ms,
                    });
                }
            }
        }
        Ok(report)
    }
}

/// Lowercase or uppercase hex to bytes; `None` for an odd length or a non-hex digit.
pub fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    let digits = hex.as_bytes();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    let nibble = |digit: u8| -> Option<u8> {
        match digit {
            b'0'..=b'9' => Some(digit - b'0'),
            b'a'..=b'f' => Some(digit - b'a' + 10),
            b'A'..=b'F' => Some(digit - b'A' + 10),
            _ => None,
        }
    };
    digits
        .chunks_exact(2)
        .map(|pair| match pair {
            [high, low] => Some(nibble(*high)? << 4 | nibble(*low)?),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_kind_of_line() {
        let text = concat!(
            r#"{"kind":"ack","i":3,"p":3,"o":0}"#,
            "\n",
            r#"{"h":[["seq","33"],["empty",""]],"k":null,"kind":"rec","o":0,"p":3,"ts":17,"v":"6162"}"#,
            "\n",
            r#"{"kind":"error","message":"boom"}"#,
            "\n",
            r#"{"kind":"done","produced":1,"consumed":1,"elapsed_ms":9}"#,
            "\n",
        );
        let report = Report::parse(text).unwrap();
        assert_eq!(
            report.acks,
            vec![Ack {
                index: 3,
                partition: 3,
                offset: 0
            }]
        );
        assert_eq!(report.records.len(), 1);
        let record = &report.records[0];
        assert_eq!(record.key, None);
        assert_eq!(record.value, b"ab");
        assert_eq!(
            record.headers,
            vec![("seq".into(), b"3".to_vec()), ("empty".into(), vec![])]
        );
        assert_eq!(report.errors, vec!["boom".to_string()]);
        assert_eq!(report.done.unwrap().produced, 1);
    }

    #[test]
    fn a_torn_last_line_is_ignored_but_a_bad_middle_line_is_an_error() {
        let torn = "{\"kind\":\"ack\",\"i\":0,\"p\":0,\"o\":0}\n{\"kind\":\"ack\",\"i\":1,";
        let report = Report::parse(torn).unwrap();
        assert_eq!(report.acks.len(), 1);
        assert!(report.done.is_none());
        let bad = "{\"kind\":\"ack\",\"i\":1,\n{\"kind\":\"ack\",\"i\":0,\"p\":0,\"o\":0}\n";
        assert_eq!(Report::parse(bad).unwrap_err().0, 1);
    }

    #[test]
    fn bad_hex_is_reported() {
        let line = r#"{"h":[],"k":"zz","kind":"rec","o":0,"p":0,"ts":0,"v":""}"#.to_string() + "\n";
        let error = Report::parse(&line).unwrap_err();
        assert!(error.1.contains("key"), "{error:?}");
        assert_eq!(decode_hex("0aFf"), Some(vec![0x0a, 0xff]));
        assert_eq!(decode_hex("abc"), None);
    }
}
