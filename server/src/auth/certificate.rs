//! The principal of an mTLS client: `User:` and its certificate's subject, written as Kafka
//! writes it (the default `ssl.principal.mapping.rules`, Java's `X500Principal.getName()`,
//! RFC 2253): the relative distinguished names last-first, joined by `,`, multi-valued ones by
//! `+`, known attribute types by name (`CN=alice,OU=payments,O=Acme,C=DE`), others by their
//! dotted OID with the value as `#` and its DER in hex.
//!
//! A small DER walk rather than an X.509 crate: only the subject is read, the certificate was
//! already verified by rustls against the configured CAs, and every read is bounds-checked, so a
//! certificate this cannot read gives no principal (the connection is ANONYMOUS), never a panic.

/// DER tags read here.
const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const VERSION: u8 = 0xa0;
const INTEGER: u8 = 0x02;
/// Attribute types X500Principal names in RFC 2253 output.
const KNOWN_TYPES: &[(&str, &str)] = &[
    ("2.5.4.3", "CN"),
    ("2.5.4.6", "C"),
    ("2.5.4.7", "L"),
    ("2.5.4.8", "ST"),
    ("2.5.4.9", "STREET"),
    ("2.5.4.10", "O"),
    ("2.5.4.11", "OU"),
    ("0.9.2342.19200300.100.1.1", "UID"),
    ("0.9.2342.19200300.100.1.25", "DC"),
];

/// One DER element: its tag, its content, the whole encoding, and what follows it.
struct Element<'a> {
    tag: u8,
    content: &'a [u8],
    encoded: &'a [u8],
}

/// Reads one element (single-byte tags, definite lengths of at most four bytes).
fn read(bytes: &[u8]) -> Option<(Element<'_>, &[u8])> {
    let (&tag, rest) = bytes.split_first()?;
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (length, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 {
            return None;
        }
        let (digits, rest) = rest.split_at_checked(count)?;
        let length = digits
            .iter()
            .fold(0usize, |length, digit| (length << 8) | usize::from(*digit));
        (length, rest)
    };
    let header = bytes.len() - rest.len();
    let (content, after) = rest.split_at_checked(length)?;
    let encoded = bytes.get(..header + length)?;
    Some((
        Element {
            tag,
            content,
            encoded,
        },
        after,
    ))
}

/// Reads one element with tag `tag`.
fn expect(bytes: &[u8], tag: u8) -> Option<(Element<'_>, &[u8])> {
    read(bytes).filter(|(element, _)| element.tag == tag)
}

/// The subject of a DER certificate in RFC 2253 form; `None` if it cannot be read.
pub fn subject_dn(certificate: &[u8]) -> Option<String> {
    let (certificate, _) = expect(certificate, SEQUENCE)?;
    let (tbs, _) = expect(certificate.content, SEQUENCE)?;
    let mut rest = tbs.content;
    if rest.first() == Some(&VERSION) {
        rest = read(rest)?.1;
    }
    let (_, rest) = expect(rest, INTEGER)?; // serial number
    let (_, rest) = expect(rest, SEQUENCE)?; // signature algorithm
    let (_, rest) = expect(rest, SEQUENCE)?; // issuer
    let (_, rest) = expect(rest, SEQUENCE)?; // validity
    let (subject, _) = expect(rest, SEQUENCE)?;
    format_name(subject.content)
}

fn format_name(mut rdns: &[u8]) -> Option<String> {
    let mut formatted = Vec::new();
    while !rdns.is_empty() {
        let (rdn, rest) = expect(rdns, SET)?;
        rdns = rest;
        let mut attributes = Vec::new();
        let mut values = rdn.content;
        while !values.is_empty() {
            let (attribute, rest) = expect(values, SEQUENCE)?;
            values = rest;
            let (oid, rest) = expect(attribute.content, OID)?;
            let (value, _) = read(rest)?;
            let oid = dotted(oid.content)?;
            let name = KNOWN_TYPES
                .iter()
                .find(|(known, _)| *known == oid)
                .map(|(_, name)| (*name).to_owned());
            let text = match (&name, string_value(&value)) {
                (Some(_), Some(text)) => escape(&text),
                _ => format!("#{}", hex(value.encoded)),
            };
            attributes.push(format!("{}={text}", name.unwrap_or(oid)));
        }
        formatted.push(attributes.join("+"));
    }
    formatted.reverse();
    Some(formatted.join(","))
}

/// The text of a directory string.
fn string_value(value: &Element<'_>) -> Option<String> {
    match value.tag {
        // UTF8String, PrintableString, IA5String, NumericString, VisibleString.
        0x0c | 0x13 | 0x16 | 0x12 | 0x1a => String::from_utf8(value.content.to_vec()).ok(),
        // TeletexString, read as Latin-1 as Java does in practice.
        0x14 => Some(value.content.iter().map(|byte| char::from(*byte)).collect()),
        // BMPString: UTF-16 big-endian.
        0x1e => {
            let (units, rest) = value.content.as_chunks::<2>();
            if !rest.is_empty() {
                return None;
            }
            String::from_utf16(
                &units
                    .iter()
                    .map(|unit| u16::from_be_bytes(*unit))
                    .collect::<Vec<_>>(),
            )
            .ok()
        }
        _ => None,
    }
}

/// RFC 2253 escaping: `,+"\<>;` anywhere, `#` or a space first, a space last.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    let last = text.chars().count().saturating_sub(1);
    for (index, character) in text.chars().enumerate() {
        let special = matches!(character, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (index == 0 && matches!(character, '#' | ' '))
            || (index == last && character == ' ');
        if special {
            escaped.push('\\');
        }
        escaped.push(character);
    }
    escaped
}

/// An OID's content as `1.2.840...`.
fn dotted(content: &[u8]) -> Option<String> {
    let mut arcs: Vec<u64> = Vec::new();
    let mut value: u64 = 0;
    for byte in content {
        value = value
            .checked_mul(128)?
            .checked_add(u64::from(byte & 0x7f))?;
        if byte & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (value / 40).min(2);
                arcs.push(first);
                arcs.push(value - first * 40);
            } else {
                arcs.push(value);
            }
            value = 0;
        }
    }
    if arcs.is_empty() || content.last().is_some_and(|byte| byte & 0x80 != 0) {
        return None;
    }
    Some(
        arcs.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("."),
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn certificate(names: &[(rcgen::DnType, &str)]) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        for (kind, value) in names {
            params.distinguished_name.push(kind.clone(), *value);
        }
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn the_subject_reads_as_java_writes_it() {
        let der = certificate(&[
            (rcgen::DnType::CountryName, "DE"),
            (rcgen::DnType::OrganizationName, "Acme, Inc."),
            (rcgen::DnType::OrganizationalUnitName, "payments"),
            (rcgen::DnType::CommonName, "alice"),
        ]);
        assert_eq!(
            subject_dn(&der).unwrap(),
            "CN=alice,OU=payments,O=Acme\\, Inc.,C=DE"
        );
        let der = certificate(&[(rcgen::DnType::CommonName, "bob")]);
        assert_eq!(subject_dn(&der).unwrap(), "CN=bob");
    }

    #[test]
    fn unknown_types_are_oids_with_hex_values_and_bad_input_is_none() {
        let der = certificate(&[(
            rcgen::DnType::CustomDnType(vec![1, 2, 840, 113_549, 1, 9, 1]),
            "a@b",
        )]);
        let subject = subject_dn(&der).unwrap();
        assert!(subject.starts_with("1.2.840.113549.1.9.1=#"), "{subject}");
        assert_eq!(escape(" #a+b "), "\\ #a\\+b\\ ");
        assert_eq!(subject_dn(b""), None);
        assert_eq!(subject_dn(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        // Every truncation of a real certificate is refused or read, never a panic.
        let der = certificate(&[(rcgen::DnType::CommonName, "carol")]);
        for cut in 0..der.len() {
            let _ = subject_dn(&der[..cut]);
        }
    }
}
