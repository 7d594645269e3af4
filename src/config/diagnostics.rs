//! Turns toml's errors into `file:line: key: message`, with messages written for the person editing the file.
//!
//! toml reports a byte span but no key; the key is found by walking the file's syntax tree (which keeps the span
//! of every key and value) for the innermost entry at that span. serde's message only decides which kind of
//! mistake it was; the words (expected type, valid keys, valid values) come from [`super::schema`].

use std::ops::Range;

use toml_edit::{ImDocument, Item, TableLike, Value};

use super::schema;
use super::ConfigError;

/// Shown in place of a key when the error is not at any key (a syntax error, for instance).
pub(crate) const NO_KEY: &str = "-";

/// The 1-based line holding byte `offset`, clamped to the file's last line so that an error at the very end
/// (after the final newline) still names a line that exists.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    let line = text.as_bytes()[..end]
        .iter()
        .filter(|&&byte| byte == b'\n')
        .count()
        + 1;
    line.min(text.lines().count().max(1))
}

pub(crate) fn syntax_error(file: &str, text: &str, error: &toml_edit::TomlError) -> ConfigError {
    let detail = error
        .message()
        .lines()
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    ConfigError::Invalid {
        file: file.to_owned(),
        line: error.span().map_or(1, |span| line_of(text, span.start)),
        key: NO_KEY.to_owned(),
        message: format!("TOML syntax error: {detail}"),
    }
}

pub(crate) fn data_error(
    file: &str,
    text: &str,
    document: &ImDocument<&str>,
    error: &toml::de::Error,
) -> ConfigError {
    let position = error.span().map(|span| span.start);
    let located = position.and_then(|pos| locate(document.as_table(), pos));
    let (key, message) = match &located {
        Some(located) => (
            dotted_key(&located.path),
            explain(error.message(), located).unwrap_or_else(|| error.message().to_owned()),
        ),
        None => (NO_KEY.to_owned(), error.message().to_owned()),
    };
    ConfigError::Invalid {
        file: file.to_owned(),
        line: position.map_or(1, |pos| line_of(text, pos)),
        key,
        message,
    }
}

/// Joins key segments the way TOML would write them: bare where possible, quoted otherwise (an empty or
/// spaced key must still be visible in the message).
fn dotted_key(path: &[String]) -> String {
    let bare = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    path.iter()
        .map(|segment| {
            if bare(segment) {
                segment.clone()
            } else {
                format!("{segment:?}")
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// The entry an error points at.
#[derive(Debug)]
struct Located {
    /// Dotted key, one element per table level.
    path: Vec<String>,
    /// "a string", "an integer", …
    found: &'static str,
    /// The string's value, when the entry is a string.
    string: Option<String>,
    /// The error is at an element of an array rather than at the array.
    in_array: bool,
}

/// Words for serde's kinds of error; `None` keeps serde's own text (a kind this module does not know).
fn explain(serde_message: &str, located: &Located) -> Option<String> {
    let section = located.path.first()?.as_str();
    let name = located.path.get(1).map(String::as_str);
    if serde_message.starts_with("unknown field") {
        return Some(match name {
            None => unknown_section(section),
            Some(name) => unknown_key(section, name),
        });
    }
    let spec = name.and_then(|name| schema::find(section, name));
    if serde_message.starts_with("unknown variant") {
        let spec = spec?;
        return Some(format!(
            "invalid value \"{}\"; expected {}",
            located.string.as_deref().unwrap_or_default(),
            spec.expect.describe()
        ));
    }
    // toml says "wanted string or table" when an enum is given a number, boolean or array.
    if serde_message.starts_with("invalid type")
        || serde_message.starts_with("wanted string or table")
    {
        let expected = match (spec, name) {
            (Some(spec), _) => spec.expect.describe(),
            (None, None) if schema::SECTIONS.contains(&section) => format!("a table ([{section}])"),
            _ => return None,
        };
        return Some(if located.in_array {
            format!(
                "expected {expected}, found an array holding {}",
                located.found
            )
        } else {
            format!("expected {expected}, found {}", located.found)
        });
    }
    None
}

fn unknown_section(name: &str) -> String {
    // A key written above every section header lands at the top level; say where it belongs.
    if let Some(spec) = schema::KEYS.iter().find(|spec| spec.name == name) {
        return format!(
            "unknown key \"{name}\" outside any section; it belongs in [{}]",
            spec.section
        );
    }
    format!(
        "unknown section \"{name}\"; valid sections: {}",
        schema::SECTIONS.join(", ")
    )
}

fn unknown_key(section: &str, name: &str) -> String {
    if !schema::SECTIONS.contains(&section) {
        return format!("unknown key \"{name}\"");
    }
    let valid = schema::keys_in(section)
        .map(|spec| spec.name)
        .collect::<Vec<_>>()
        .join(", ");
    let mut message = format!("unknown key \"{name}\" in [{section}]; valid keys: {valid}");
    if let Some(elsewhere) = schema::KEYS.iter().find(|spec| spec.name == name) {
        message.push_str(&format!("; \"{name}\" belongs in [{}]", elsewhere.section));
    }
    message
}

fn contains(span: &Range<usize>, pos: usize) -> bool {
    span.contains(&pos) || (span.is_empty() && span.start == pos)
}

fn locate(root: &toml_edit::Table, pos: usize) -> Option<Located> {
    let mut path = Vec::new();
    let found = locate_in_table(root, pos, &mut path)?;
    Some(Located { path, ..found })
}

/// Searches `table`'s entries, leaving the matching entry's key path in `path`.
fn locate_in_table(table: &dyn TableLike, pos: usize, path: &mut Vec<String>) -> Option<Located> {
    for (name, item) in table.iter() {
        path.push(name.to_owned());
        let at_key = table
            .key(name)
            .and_then(|key| key.span())
            .is_some_and(|span| contains(&span, pos));
        let found = if at_key {
            Some(describe_item(item))
        } else {
            locate_in_item(item, pos, path)
        };
        if found.is_some() {
            return found;
        }
        path.pop();
    }
    None
}

fn locate_in_item(item: &Item, pos: usize, path: &mut Vec<String>) -> Option<Located> {
    match item {
        Item::None => None,
        Item::Value(value) => locate_in_value(value, pos, path),
        Item::Table(table) => locate_in_table(table, pos, path).or_else(|| {
            // A standard table's span is its header.
            table
                .span()
                .filter(|span| contains(span, pos))
                .map(|_| describe_item(item))
        }),
        Item::ArrayOfTables(tables) => tables
            .iter()
            .find_map(|table| locate_in_table(table, pos, path))
            .or_else(|| {
                tables
                    .span()
                    .filter(|span| contains(span, pos))
                    .map(|_| describe_item(item))
            }),
    }
}

fn locate_in_value(value: &Value, pos: usize, path: &mut Vec<String>) -> Option<Located> {
    if let Value::InlineTable(table) = value {
        if let Some(found) = locate_in_table(table, pos, path) {
            return Some(found);
        }
    }
    if !value.span().is_some_and(|span| contains(&span, pos)) {
        return None;
    }
    if let Value::Array(array) = value {
        let element = array
            .iter()
            .find(|element| element.span().is_some_and(|span| contains(&span, pos)));
        if let Some(element) = element {
            return Some(Located {
                in_array: true,
                ..describe_value(element)
            });
        }
    }
    Some(describe_value(value))
}

fn describe_item(item: &Item) -> Located {
    match item {
        Item::Value(value) => describe_value(value),
        Item::Table(_) => kind("a table"),
        Item::ArrayOfTables(_) => kind("an array of tables"),
        Item::None => kind("nothing"),
    }
}

fn describe_value(value: &Value) -> Located {
    match value {
        Value::String(string) => Located {
            string: Some(string.value().clone()),
            ..kind("a string")
        },
        Value::Integer(_) => kind("an integer"),
        Value::Float(_) => kind("a float"),
        Value::Boolean(_) => kind("a boolean"),
        Value::Datetime(_) => kind("a date-time"),
        Value::Array(_) => kind("an array"),
        Value::InlineTable(_) => kind("a table"),
    }
}

fn kind(found: &'static str) -> Located {
    Located {
        path: Vec::new(),
        found,
        string: None,
        in_array: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_of_counts_from_one_and_stays_inside_the_file() {
        let text = "a = 1\nb = 2\n";
        assert_eq!(line_of(text, 0), 1);
        assert_eq!(line_of(text, 5), 1);
        assert_eq!(line_of(text, 6), 2);
        assert_eq!(line_of(text, text.len()), 2);
        assert_eq!(line_of(text, usize::MAX), 2);
        assert_eq!(line_of("", 0), 1);
    }
}
