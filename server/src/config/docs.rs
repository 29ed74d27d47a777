//! The reference part of `docs/configuration.md` — the sample file with every key and the table
//! of keys — generated from the declarations ([`SETTINGS`]), so that the documentation cannot
//! drift from the code. The prose around them is written by hand; the generated parts sit between
//! `<!-- BEGIN GENERATED: NAME … -->` and `<!-- END GENERATED: NAME -->` lines, and a test fails
//! when the checked-in file differs from what the declarations generate (run it with
//! `SLUICE_UPDATE_DOCS=1` to rewrite the file).

use super::{Config, SETTINGS, Setting};

/// The command that rewrites the generated parts.
pub const UPDATE_COMMAND: &str =
    "SLUICE_UPDATE_DOCS=1 cargo test -p sluice-server --lib -- config::docs";

/// The defaults, as TOML values by key (an unset optional setting is absent).
fn defaults() -> toml::Table {
    // Every field of Config is a TOML value; this cannot fail for the default configuration,
    // and an empty table would show up in the documentation test at once.
    toml::Table::try_from(Config::default()).unwrap_or_default()
}

/// `n` in the largest unit that divides it exactly (`8 MiB`, `7 days`), if any.
fn in_words(value: i64, value_name: &str) -> Option<String> {
    let units: &[(i64, &str, &str)] = match value_name {
        "BYTES" => &[
            (1 << 30, "GiB", "GiB"),
            (1 << 20, "MiB", "MiB"),
            (1 << 10, "KiB", "KiB"),
        ],
        "MS" => &[
            (86_400_000, "day", "days"),
            (3_600_000, "hour", "hours"),
            (60_000, "minute", "minutes"),
        ],
        "HOURS" => &[(24, "day", "days")],
        _ => &[],
    };
    units
        .iter()
        .find(|(size, _, _)| value >= *size && value % size == 0)
        .map(|(size, one, many)| {
            let count = value / size;
            format!("{count} {}", if count == 1 { one } else { many })
        })
}

/// The default column: the declaration's words, else the value.
fn default_text(setting: &Setting, defaults: &toml::Table) -> String {
    if let Some(words) = setting.default_doc {
        return words.to_owned();
    }
    match defaults.get(setting.key) {
        None => "unset".to_owned(),
        Some(toml::Value::String(text)) if text.is_empty() => "empty".to_owned(),
        Some(toml::Value::String(text)) => format!("`{text}`"),
        Some(toml::Value::Array(items)) if items.is_empty() => "empty".to_owned(),
        Some(toml::Value::Integer(value)) => match in_words(*value, setting.value_name) {
            Some(words) => format!("{value} ({words})"),
            None => value.to_string(),
        },
        Some(value) => format!("`{value}`"),
    }
}

/// `bound`, with its unit in words where it has one (`1048576 (1 MiB)`).
fn bound_text(bound: i128, value_name: &str) -> String {
    match i64::try_from(bound)
        .ok()
        .and_then(|bound| in_words(bound, value_name))
    {
        Some(words) => format!("{bound} ({words})"),
        None => bound.to_string(),
    }
}

/// The meaning column: the documentation, then the declared range.
fn meaning(setting: &Setting) -> String {
    let bound = |bound| bound_text(bound, setting.value_name);
    let range = match (setting.min, setting.max) {
        (Some(min), Some(max)) => format!(" Range: {} to {}.", bound(min), bound(max)),
        (Some(min), None) => format!(" At least {}.", bound(min)),
        (None, Some(max)) => format!(" At most {}.", bound(max)),
        (None, None) => String::new(),
    };
    format!("{}{range}", setting.doc_paragraph())
}

/// The table of every key: default, variable, flag and meaning.
pub fn reference_table() -> String {
    let defaults = defaults();
    let mut text = String::from(
        "| key | default | env var | flag | meaning |\n| --- | --- | --- | --- | --- |\n",
    );
    for setting in SETTINGS {
        let key = if setting.layered {
            format!("`{}`", setting.key)
        } else {
            format!("`[{}.NAME]`", setting.key)
        };
        let variable = setting
            .environment_variable()
            .map_or_else(|| "—".to_owned(), |variable| format!("`{variable}`"));
        let flag = setting.flag().map_or_else(
            || "—".to_owned(),
            |flag| format!("`{flag} {}`", setting.value_name),
        );
        text.push_str(&format!(
            "| {key} | {} | {variable} | {flag} | {} |\n",
            default_text(setting, &defaults).replace('|', "\\|"),
            meaning(setting).replace('|', "\\|"),
        ));
    }
    text
}

/// A sample file: every key with its default and its help line; unset keys commented out.
pub fn sample_file() -> String {
    let defaults = defaults();
    let mut lines: Vec<(String, String)> = Vec::new();
    for setting in SETTINGS {
        let (line, comment) = match defaults.get(setting.key) {
            _ if !setting.layered => (
                format!("# [{}.NAME]", setting.key),
                format!("{} (a table, at the end of the file)", setting.help),
            ),
            Some(value) => (
                format!("{} = {value}", setting.key),
                setting.help.to_owned(),
            ),
            None => (
                format!("# {} = {}", setting.key, setting.value_name),
                format!(
                    "{}; default: {}",
                    setting.help,
                    default_text(setting, &defaults)
                ),
            ),
        };
        lines.push((line, comment));
    }
    let width = lines
        .iter()
        .map(|(line, _)| line.chars().count())
        .filter(|width| *width <= 48)
        .max()
        .unwrap_or(0);
    let mut text = String::from("```toml\n# sluice.toml: every key, with its default\n");
    for (line, comment) in lines {
        let padding = width.saturating_sub(line.chars().count());
        text.push_str(&format!("{line}{:padding$}  # {comment}\n", ""));
    }
    text.push_str("```\n");
    text
}

/// `document` with the part between the markers of `name` replaced by `generated`; `None` when
/// the markers are missing.
pub fn replace_generated(document: &str, name: &str, generated: &str) -> Option<String> {
    let begin = format!("<!-- BEGIN GENERATED: {name}");
    let end = format!("<!-- END GENERATED: {name} -->");
    let start = document.find(&begin)?;
    let body = start + document[start..].find('\n')? + 1;
    let stop = body + document[body..].find(&end)?;
    Some(format!(
        "{}{generated}{}",
        &document[..body],
        &document[stop..]
    ))
}

/// `docs/configuration.md` as the declarations generate it, from its current text.
pub fn regenerate(document: &str) -> Result<String, String> {
    let document = replace_generated(document, "sample", &sample_file())
        .ok_or("the GENERATED: sample markers are missing")?;
    replace_generated(&document, "settings", &reference_table())
        .ok_or_else(|| "the GENERATED: settings markers are missing".to_owned())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn the_checked_in_reference_is_what_the_declarations_generate() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("docs")
            .join("configuration.md");
        let checked_in = std::fs::read_to_string(&path).unwrap();
        let generated = regenerate(&checked_in).unwrap();
        if std::env::var_os("SLUICE_UPDATE_DOCS").is_some() {
            if generated != checked_in {
                std::fs::write(&path, &generated).unwrap();
            }
            return;
        }
        assert!(
            generated == checked_in,
            "docs/configuration.md differs from what the setting declarations \
             (server/src/config/declarations.rs) generate; regenerate it with\n    {UPDATE_COMMAND}\n\
             and review the diff"
        );
    }

    #[test]
    fn every_setting_has_a_row_with_its_names() {
        let table = reference_table();
        for setting in SETTINGS.iter().filter(|setting| setting.layered) {
            let row = table
                .lines()
                .find(|line| line.starts_with(&format!("| `{}` |", setting.key)))
                .unwrap();
            assert!(
                row.contains(&setting.environment_variable().unwrap()),
                "{row}"
            );
            assert!(row.contains(&setting.flag().unwrap()), "{row}");
        }
        assert!(table.contains("| `[listener_name.NAME]` | none | — | — |"));
    }

    #[test]
    fn defaults_are_shown_in_words_where_the_value_alone_is_unclear() {
        let defaults = defaults();
        let row = |key: &str| default_text(Setting::find(key).unwrap(), &defaults);
        assert_eq!(row("flush_bytes_max"), "8388608 (8 MiB)");
        assert_eq!(row("offsets_retention_ms"), "604800000 (7 days)");
        assert_eq!(row("log_retention_hours"), "168 (7 days)");
        assert_eq!(row("flush_interval_ms"), "10");
        assert_eq!(row("listen"), "`127.0.0.1:9092`");
        assert_eq!(row("auto_create_topics"), "`true`");
        assert_eq!(row("zone"), "empty");
        assert_eq!(row("log_retention_ms"), "unset");
    }

    #[test]
    fn generated_parts_are_replaced_between_their_markers_only() {
        let document = "a\n<!-- BEGIN GENERATED: x (how) -->\nold\n<!-- END GENERATED: x -->\nb\n";
        assert_eq!(
            replace_generated(document, "x", "new\n").unwrap(),
            "a\n<!-- BEGIN GENERATED: x (how) -->\nnew\n<!-- END GENERATED: x -->\nb\n"
        );
        assert_eq!(replace_generated(document, "y", "new\n"), None);
    }
}
