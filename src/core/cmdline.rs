//! Kernel command lines, split into words the way the kernel splits them, and edited the way each distro's kdump
//! tool edits them.
//!
//! The kernel's own rule is `next_arg()` (lib/cmdline.c), used by `parse_args()` (kernel/params.c): words are
//! separated by `isspace()` characters outside double quotes; a double quote toggles quoting wherever it appears,
//! so `dyndbg="file foo.c +p"` and `foo="a b"` are one word each, and an unterminated quote runs to the end. A
//! word's name ends at its first `=`; quotes around the value (and around a word that starts with one) are not
//! part of the name or value. `--` on its own ends the kernel's words: the rest belongs to init.
//!
//! Every word keeps its raw text, so a line split and joined again keeps its quoting byte for byte.
//!
//! The distro tools do not use the kernel's rule; each has its own, reproduced here because the plan must say what
//! the tool would really pass:
//! - Debian kdump-tools `kdump_load()`: a `sed` that deletes `(^| )NAME=[^ ]*` (not quote-aware): [`sed_remove`].
//! - Fedora kdump-utils `prepare_cmdline()`: words from `xargs -n 1` (which drops quotes), re-quoted when the
//!   value holds a space: [`xargs_words`].
//! - openSUSE kdump `remove_from_commandline()` (init/load.sh): a quote-aware awk that drops words whose unquoted
//!   text matches `^(NAMES)(=|$)`: [`awk_remove`].

use std::fmt;

/// One word of a kernel command line, with its raw text (quotes included).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Arg {
    raw: String,
}

impl Arg {
    /// The word as written. Panics in debug builds if `raw` would not split back into this one word.
    pub fn new(raw: impl Into<String>) -> Self {
        let raw = raw.into();
        debug_assert_eq!(split(&raw).len(), 1, "not one kernel word: {raw:?}");
        Arg { raw }
    }

    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// The parameter name, as `next_arg()` returns it: up to the first `=`, without a leading quote (and, for a
    /// word without `=`, without the closing quote).
    pub fn name(&self) -> &str {
        self.parts().0
    }

    /// The value after the first `=`, without the quotes `next_arg()` strips; `None` for a word without `=`.
    pub fn value(&self) -> Option<&str> {
        self.parts().1
    }

    /// `next_arg()`'s result for this word. It records the first `=` at a position after 0 (a word starting with
    /// `=` has no value), strips a leading quote of the word and a leading quote of the value, and then a final
    /// quote if either was stripped.
    fn parts(&self) -> (&str, Option<&str>) {
        let mut args = self.raw.as_str();
        let quoted = args.starts_with('"');
        if quoted {
            args = &args[1..];
        }
        let equals = args.find('=').filter(|&at| at > 0);
        match equals {
            None => {
                let name = if quoted {
                    args.strip_suffix('"').unwrap_or(args)
                } else {
                    args
                };
                (name, None)
            }
            Some(at) => {
                let name = &args[..at];
                let mut value = &args[at + 1..];
                let value_quoted = value.starts_with('"');
                if value_quoted {
                    value = &value[1..];
                }
                if value_quoted || quoted {
                    value = value.strip_suffix('"').unwrap_or(value);
                }
                (name, Some(value))
            }
        }
    }
}

impl fmt::Display for Arg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

/// The kernel's `isspace()` (lib/ctype.c): space, \t, \n, \v, \f, \r.
fn is_kernel_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

/// Splits `line` into words exactly as repeated `next_arg()` calls do (after `parse_args()`' `skip_spaces()`).
pub fn split(line: &str) -> Vec<Arg> {
    let mut words = Vec::new();
    let mut rest = line.trim_start_matches(is_kernel_space);
    while !rest.is_empty() {
        let mut in_quote = false;
        let mut end = rest.len();
        for (i, c) in rest.char_indices() {
            if is_kernel_space(c) && !in_quote {
                end = i;
                break;
            }
            if c == '"' {
                in_quote = !in_quote;
            }
        }
        words.push(Arg {
            raw: rest[..end].to_owned(),
        });
        rest = rest[end..].trim_start_matches(is_kernel_space);
    }
    words
}

/// Joins words with one space each, keeping their raw text (quotes included).
pub fn join<'a>(args: impl IntoIterator<Item = &'a Arg>) -> String {
    let mut out = String::new();
    for arg in args {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&arg.raw);
    }
    out
}

/// A command line as a list of words, with the kernel's `--` boundary between kernel and init arguments.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cmdline {
    /// All words, `--` and init's words included.
    pub args: Vec<Arg>,
}

impl Cmdline {
    pub fn parse(line: &str) -> Self {
        Cmdline { args: split(line) }
    }

    /// Index of the `--` that ends the kernel's words (`parse_args()` stops at a bare `--`), or the length.
    fn kernel_end(&self) -> usize {
        self.args
            .iter()
            .position(|a| a.raw == "--")
            .unwrap_or(self.args.len())
    }

    /// The kernel's words (before `--`).
    pub fn kernel_args(&self) -> &[Arg] {
        &self.args[..self.kernel_end()]
    }

    /// The first kernel word with this exact name (the kernel compares `-` and `_` as equal in module
    /// parameters, the distro tools do not: names here are exact).
    pub fn get(&self, name: &str) -> Option<&Arg> {
        self.kernel_args().iter().find(|a| a.name() == name)
    }

    /// Drops every kernel word (before `--`) whose name is one of `names`.
    pub fn remove(&mut self, names: &[&str]) {
        let end = self.kernel_end();
        let mut index = 0;
        self.args.retain(|a| {
            let keep = index >= end || !names.contains(&a.name());
            index += 1;
            keep
        });
    }

    /// Appends the words of `text` to the kernel's words (before a `--`, so init's words stay last).
    pub fn append(&mut self, text: &str) {
        let end = self.kernel_end();
        let tail = self.args.split_off(end);
        self.args.extend(split(text));
        self.args.extend(tail);
    }
}

impl fmt::Display for Cmdline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&join(&self.args))
    }
}

/// Debian kdump-tools `kdump_load()`: `sed -re 's/(^| )(NAMES)=[^ ]*//g'` on /proc/cmdline. Not quote-aware: the
/// match ends at the next space even inside quotes; only words with `=` match; the space before a match goes
/// with it (so a match at the very start leaves the following space). Only the first line is edited here, as
/// /proc/cmdline has one.
pub fn sed_remove(line: &str, names: &[&str]) -> String {
    // The match of `(^| )NAME=[^ ]*` at byte `at`, as its length.
    let match_at = |at: usize| -> Option<usize> {
        let lead = if at == 0 && !line.starts_with(' ') {
            0
        } else if line[at..].starts_with(' ') {
            1
        } else {
            return None;
        };
        let rest = &line[at + lead..];
        names.iter().find_map(|name| {
            let value = rest.strip_prefix(name)?.strip_prefix('=')?;
            let value_len = value.find(' ').unwrap_or(value.len());
            Some(lead + name.len() + 1 + value_len)
        })
    };
    let mut out = String::with_capacity(line.len());
    let mut at = 0;
    // `g`: leftmost match, then resume scanning where it ended.
    while at < line.len() {
        if let Some(len) = match_at(at) {
            at += len;
            continue;
        }
        let c = line[at..].chars().next().expect("in bounds");
        out.push(c);
        at += c.len_utf8();
    }
    out
}

/// The words GNU `xargs -n 1 echo` prints for `text` (Fedora kdump-utils `_cmdline_parse()` reads the command
/// line through it): blanks separate words; single and double quotes group and are removed; a backslash outside
/// quotes escapes the next character. `Err` for an unmatched quote (xargs stops with an error).
pub fn xargs_words(text: &str) -> Result<Vec<String>, &'static str> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' | '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some(q) if q == c => break,
                        // GNU xargs refuses a newline inside quotes too.
                        Some('\n') | None => {
                            return Err(if c == '"' {
                                "unmatched double quote"
                            } else {
                                "unmatched single quote"
                            })
                        }
                        Some(other) => word.push(other),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(next) = chars.next() {
                    word.push(next);
                }
            }
            other => {
                in_word = true;
                word.push(other);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// openSUSE kdump `remove_from_commandline()` (init/load.sh): walks the line as runs of blanks and words, where a
/// word is a run of `"…"` groups (an unterminated one runs to the end) and other non-blank characters; a word
/// whose text without quotes is a name in `names` alone or followed by `=` is dropped with the blanks before it;
/// everything else, blanks included, is kept as it was. `names` are literal (the tool writes them as a regex
/// alternation with `.` escaped; `console=hvc0` is matched as written).
pub fn awk_remove(line: &str, names: &[&str]) -> String {
    let mut out = String::new();
    let mut rest = line;
    while !rest.is_empty() {
        let blank_end = rest
            .find(|c: char| !c.is_whitespace())
            .unwrap_or(rest.len());
        let (blanks, after) = rest.split_at(blank_end);
        // A word: `"` opens a group up to the next `"` (or the end); other characters up to a blank.
        let mut end = 0;
        let mut in_quote = false;
        for (i, c) in after.char_indices() {
            if in_quote {
                if c == '"' {
                    in_quote = false;
                }
            } else if c == '"' {
                in_quote = true;
            } else if c.is_whitespace() {
                end = i;
                break;
            }
            end = i + c.len_utf8();
        }
        let word = &after[..end];
        let unquoted: String = word.chars().filter(|&c| c != '"').collect();
        let dropped = !word.is_empty()
            && names.iter().any(|n| {
                unquoted
                    .strip_prefix(n)
                    .is_some_and(|tail| tail.is_empty() || tail.starts_with('='))
            });
        if !dropped {
            out.push_str(blanks);
            out.push_str(word);
        }
        rest = &after[end..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn raws(line: &str) -> Vec<String> {
        split(line).into_iter().map(|a| a.raw).collect()
    }

    #[test]
    fn quotes_group_values_with_spaces() {
        assert_eq!(
            raws(r#"root=/dev/vda  dyndbg="file foo.c +p" quiet"#),
            vec!["root=/dev/vda", r#"dyndbg="file foo.c +p""#, "quiet"]
        );
        assert_eq!(raws(r#"foo="a b"c d"#), vec![r#"foo="a b"c"#, "d"]);
        assert_eq!(raws(r#"x=a"b c"d e"#), vec![r#"x=a"b c"d"#, "e"]);
        assert_eq!(raws("\t a \n b  "), vec!["a", "b"]);
        assert_eq!(
            raws(r#"a "unterminated b c"#),
            vec!["a", r#""unterminated b c"#]
        );
    }

    #[test]
    fn names_and_values_as_next_arg_returns_them() {
        let w = split(r#"dyndbg="file foo.c +p" "quoted word" "q=v w" flag =x a=b=c x="#);
        let got: Vec<(&str, Option<&str>)> = w.iter().map(|a| (a.name(), a.value())).collect();
        assert_eq!(
            got,
            vec![
                ("dyndbg", Some("file foo.c +p")),
                ("quoted word", None),
                ("q", Some("v w")),
                ("flag", None),
                ("=x", None),
                ("a", Some("b=c")),
                ("x", Some("")),
            ]
        );
        // A quote in the middle of a value is the kernel's business, not stripped.
        assert_eq!(split(r#"x=a"b c""#)[0].value(), Some(r#"a"b c""#));
    }

    #[test]
    fn remove_and_append_respect_the_init_boundary() {
        let mut c = Cmdline::parse(
            r#"BOOT_IMAGE=/vmlinuz crashkernel=256M dyndbg="a b" -- crashkernel=keep"#,
        );
        c.remove(&["crashkernel", "BOOT_IMAGE"]);
        c.append("nr_cpus=1 reset_devices");
        assert_eq!(
            c.to_string(),
            r#"dyndbg="a b" nr_cpus=1 reset_devices -- crashkernel=keep"#
        );
        assert_eq!(c.get("dyndbg").and_then(Arg::value), Some("a b"));
    }

    #[test]
    fn sed_remove_is_debians_regex() {
        let names = &["crashkernel", "hugepages", "hugepagesz", "abm"];
        assert_eq!(
            sed_remove("crashkernel=384M root=/dev/vda", names),
            " root=/dev/vda"
        );
        assert_eq!(
            sed_remove(
                "root=/dev/vda crashkernel=1G-:256M hugepages=4 hugepagesz=2M quiet",
                names
            ),
            "root=/dev/vda quiet"
        );
        // Without `=` nothing matches; a prefix of another name does not match.
        assert_eq!(
            sed_remove("crashkernel abm default_hugepagesz=1G xhugepages=1", names),
            "crashkernel abm default_hugepagesz=1G xhugepages=1"
        );
        // Not quote-aware: the match stops at the space inside the quotes.
        assert_eq!(sed_remove(r#"a abm="x y" b"#, names), r#"a y" b"#);
        assert_eq!(sed_remove("a hugepages=1", names), "a");
        assert_eq!(sed_remove("crashkernel=1 crashkernel=2 x", names), " x");
    }

    #[test]
    fn xargs_words_drop_quotes() {
        assert_eq!(
            xargs_words(r#"a dyndbg="file foo.c +p" 'b c' d\ e"#).unwrap(),
            vec!["a", "dyndbg=file foo.c +p", "b c", "d e"]
        );
        assert_eq!(xargs_words(r#"a "b"#), Err("unmatched double quote"));
    }

    #[test]
    fn awk_remove_is_suses_loop() {
        let names = &["root", "crashkernel", "BOOT_IMAGE", "console=hvc0"];
        assert_eq!(
            awk_remove(
                r#"BOOT_IMAGE=/boot/vmlinuz root=UUID=1 dyndbg="a b"  crashkernel=1 quiet "#,
                names
            ),
            r#" dyndbg="a b" quiet "#
        );
        assert_eq!(
            awk_remove(r#""root=x y" rootfoo=1 console=hvc0 console=ttyS0"#, names),
            " rootfoo=1 console=ttyS0"
        );
    }

    proptest! {
        #[test]
        fn split_join_round_trips(line in r#"[ a-z="\t-]{0,40}"#) {
            let words = split(&line);
            let joined = join(&words);
            prop_assert_eq!(split(&joined), words.clone());
            // Joining again is stable, and only whitespace between words changed.
            prop_assert_eq!(join(&split(&joined)), joined.clone());
            let squeezed: String = line.chars().filter(|c| !is_kernel_space(*c)).collect();
            let joined_squeezed: String = joined.chars().filter(|c| !is_kernel_space(*c)).collect();
            prop_assert_eq!(squeezed, joined_squeezed);
        }

        #[test]
        fn name_and_value_rebuild_the_word(name in "[a-z_.]{1,8}", value in "[a-z ,=]{0,8}") {
            let raw = if value.contains(' ') { format!("{name}=\"{value}\"") } else { format!("{name}={value}") };
            let words = split(&raw);
            prop_assert_eq!(words.len(), 1);
            prop_assert_eq!(words[0].name(), name.as_str());
            prop_assert_eq!(words[0].value(), Some(value.as_str()));
        }
    }
}
