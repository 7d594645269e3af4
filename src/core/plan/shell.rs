//! The part of the POSIX shell language that kdump configuration files are written in: variable assignments.
//!
//! `/etc/default/kdump-tools` and `/etc/sysconfig/kdump` are sourced by shell scripts (`. FILE`), so what they
//! set is whatever the shell would set. Evaluated here: `NAME=value` and `export NAME=value` (several per
//! line, `;`-separated or not), `: ${NAME:=default}`, comments, blank lines, single quotes, double quotes with
//! their four backslash escapes, backslashes and line continuations outside quotes, `$NAME`, `${NAME}`,
//! `${NAME:-w}`/`${NAME-w}`, `${NAME:=w}`/`${NAME=w}` and `${NAME:+w}`/`${NAME+w}` of variables already set.
//! Anything else (command substitution, arithmetic, other expansions, a variable nobody set, tilde, commands,
//! conditionals, functions, `.`/`source`, redirections, pipes) is an [`ShellError`] naming the file, the line
//! and the variable being assigned: the plan never guesses what a shell would have made of it.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

/// Where a variable's value came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Origin {
    /// Assigned in a configuration file, at this line.
    File { file: String, line: u32 },
    /// Set by the tool itself before or after reading the file (its built-in default).
    Tool { tool: String, rule: String },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File { file, line } => write!(f, "{file}:{line}"),
            Origin::Tool { tool, rule } => write!(f, "{tool} default ({rule})"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Var {
    pub value: String,
    pub origin: Origin,
}

/// Shell variables, as the tool's shell holds them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Env {
    vars: BTreeMap<String, Var>,
}

impl Env {
    pub fn new() -> Self {
        Env::default()
    }

    /// Sets a variable the way the tool does in its own code.
    pub fn set_by_tool(&mut self, name: &str, value: &str, tool: &str, rule: &str) {
        self.vars.insert(
            name.to_owned(),
            Var {
                value: value.to_owned(),
                origin: Origin::Tool {
                    tool: tool.to_owned(),
                    rule: rule.to_owned(),
                },
            },
        );
    }

    /// The tool's `NAME=${NAME:=default}`: an unset or empty variable gets the tool's default.
    pub fn default_if_empty(&mut self, name: &str, value: &str, tool: &str, rule: &str) {
        if self.value(name).is_empty() {
            self.set_by_tool(name, value, tool, rule);
        }
    }

    pub fn get(&self, name: &str) -> Option<&Var> {
        self.vars.get(name)
    }

    /// The value, empty when unset (as `$NAME` in the tool's script, where unset variables expand to nothing).
    pub fn value(&self, name: &str) -> &str {
        self.vars.get(name).map_or("", |v| v.value.as_str())
    }

    fn assign(&mut self, name: &str, value: String, file: &str, line: u32) {
        self.vars.insert(
            name.to_owned(),
            Var {
                value,
                origin: Origin::File {
                    file: file.to_owned(),
                    line,
                },
            },
        );
    }
}

/// A construct the evaluator does not evaluate, or a syntax error.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ShellError {
    pub file: String,
    pub line: u32,
    /// The variable whose assignment contains it, when there is one.
    pub variable: Option<String>,
    pub problem: String,
}

impl fmt::Display for ShellError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.file, self.line)?;
        if let Some(variable) = &self.variable {
            write!(f, "{variable}: ")?;
        }
        write!(f, "{}", self.problem)
    }
}

impl std::error::Error for ShellError {}

/// Evaluates the assignments of `text` (the file `file`) into `env`, as `. file` would.
pub fn source(env: &mut Env, file: &str, text: &str) -> Result<(), ShellError> {
    let mut parser = Parser::new(file, text, Some(env));
    parser.script()
}

/// The words a shell makes of `text` when it runs it as one simple command, with no expansions allowed (the
/// command lines the tools build and `eval`, and the `kexec_cmd` record). `Err` names the problem.
pub fn words(text: &str) -> Result<Vec<String>, String> {
    let mut parser = Parser::new("", text, None);
    let mut out = Vec::new();
    loop {
        parser.skip_blanks();
        match parser.peek() {
            None => return Ok(out),
            Some('\n') => {
                parser.bump();
            }
            Some(_) => match parser.word() {
                Ok(Some(word)) => out.push(word.value),
                Ok(None) => {
                    return Err(format!(
                        "unexpected {:?}",
                        parser.peek().map(String::from).unwrap_or_default()
                    ))
                }
                Err(e) => return Err(e.problem),
            },
        }
    }
}

/// `$VAR` unquoted, as `eval $VAR` sees it: split on blanks and newlines (the default IFS), rejoined by single
/// spaces. Globbing is not modelled: callers reject words with glob characters where it matters.
pub fn field_join(text: &str) -> String {
    text.split([' ', '\t', '\n'])
        .filter(|f| !f.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

struct Word {
    value: String,
    /// `NAME` when the word is an assignment `NAME=…` (the name unquoted, as the shell requires).
    assigns: Option<String>,
}

struct Parser<'a> {
    file: &'a str,
    chars: Vec<char>,
    pos: usize,
    line: u32,
    env: Option<&'a mut Env>,
    /// The variable being assigned, for errors.
    current: Option<String>,
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn is_valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(is_name_start) && chars.all(is_name_char)
}

impl<'a> Parser<'a> {
    fn new(file: &'a str, text: &str, env: Option<&'a mut Env>) -> Self {
        Parser {
            file,
            chars: text.chars().collect(),
            pos: 0,
            line: 1,
            env,
            current: None,
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_at(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.pos + ahead).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }

    fn error(&self, problem: impl Into<String>) -> ShellError {
        ShellError {
            file: self.file.to_owned(),
            line: self.line,
            variable: self.current.clone(),
            problem: problem.into(),
        }
    }

    /// Blanks and backslash-newline continuations.
    fn skip_blanks(&mut self) {
        loop {
            match (self.peek(), self.peek_at(1)) {
                (Some(' ' | '\t'), _) => {
                    self.bump();
                }
                (Some('\\'), Some('\n')) => {
                    self.bump();
                    self.bump();
                }
                _ => return,
            }
        }
    }

    fn script(&mut self) -> Result<(), ShellError> {
        loop {
            self.skip_blanks();
            match self.peek() {
                None => return Ok(()),
                Some('\n' | ';') => {
                    self.bump();
                }
                Some('#') => {
                    while !matches!(self.peek(), None | Some('\n')) {
                        self.bump();
                    }
                }
                Some(_) => self.command()?,
            }
        }
    }

    /// One simple command: its words up to a newline, `;` or comment.
    fn command(&mut self) -> Result<(), ShellError> {
        let start_line = self.line;
        let mut first: Option<String> = None;
        let mut words = 0usize;
        loop {
            self.skip_blanks();
            match self.peek() {
                None | Some('\n' | ';' | '#') => break,
                _ => {}
            }
            let word_line = self.line;
            // Peek at the raw start of the word: the command name decides how the rest is read.
            if words == 0 {
                let raw = self.raw_word_preview();
                match raw.as_str() {
                    "export" | ":" => {
                        self.word()?;
                        first = Some(raw);
                        words += 1;
                        continue;
                    }
                    "if" | "then" | "else" | "elif" | "fi" | "case" | "esac" | "for" | "while" | "until"
                    | "do" | "done" | "function" | "{" | "}" | "[" | "[[" | "." | "source" | "eval"
                    | "exec" | "set" | "unset" | "readonly" | "local" | "declare" | "typeset" | "alias"
                    | "test" | "return" | "exit" | "shift" | "trap" => {
                        return Err(self.error(format!(
                            "`{raw}` is a shell command the plan does not run (only assignments are evaluated)"
                        )))
                    }
                    _ => {}
                }
            }
            let Some(word) = self.word()? else {
                let c = self.peek().unwrap_or(' ');
                return Err(self.error(format!(
                    "`{c}` (a pipe, list, redirection or subshell) is not evaluated"
                )));
            };
            words += 1;
            match (&word.assigns, first.as_deref()) {
                (Some(name), None | Some("export")) => {
                    let name = name.clone();
                    if let Some(env) = self.env.as_deref_mut() {
                        env.assign(&name, word.value, self.file, word_line);
                    }
                    self.current = None;
                }
                (_, Some(":")) => {} // `: ${X:=y}`: the expansion's side effect is all that counts.
                (None, Some("export")) if is_valid_name(&word.value) => {} // `export NAME`: no value.
                _ => {
                    self.line = start_line;
                    return Err(self.error(format!(
                        "`{}` is a command, not an assignment (only assignments are evaluated)",
                        word.value
                    )));
                }
            }
        }
        Ok(())
    }

    /// The word's characters up to the next blank or metacharacter, unevaluated (to recognise keywords).
    fn raw_word_preview(&self) -> String {
        self.chars[self.pos..]
            .iter()
            .take_while(|c| {
                !matches!(
                    c,
                    ' ' | '\t' | '\n' | ';' | '&' | '|' | '<' | '>' | '(' | ')'
                )
            })
            .collect()
    }

    /// One word, evaluated; `None` at a metacharacter. Recognises an assignment `NAME=` at its start.
    fn word(&mut self) -> Result<Option<Word>, ShellError> {
        let mut assigns = None;
        // NAME= with NAME unquoted and valid makes the word an assignment.
        let mut len = 0;
        while self.peek_at(len).is_some_and(if len == 0 {
            is_name_start
        } else {
            is_name_char
        }) {
            len += 1;
        }
        if len > 0 && self.peek_at(len) == Some('=') {
            let name: String = self.chars[self.pos..self.pos + len].iter().collect();
            self.pos += len + 1;
            self.current = Some(name.clone());
            assigns = Some(name);
            if self.peek() == Some('~') {
                return Err(self.error("tilde expansion is not evaluated"));
            }
        }
        let mut value = String::new();
        let mut any = assigns.is_some();
        loop {
            match self.peek() {
                None | Some(' ' | '\t' | '\n' | ';') => break,
                Some('&' | '|' | '<' | '>' | '(' | ')') => {
                    if !any {
                        return Ok(None);
                    }
                    let c = self.peek().unwrap_or(' ');
                    return Err(self.error(format!(
                        "`{c}` (a pipe, list, redirection or subshell) is not evaluated"
                    )));
                }
                Some('\\') => {
                    self.bump();
                    match self.bump() {
                        Some('\n') => {}
                        Some(c) => value.push(c),
                        None => {}
                    }
                }
                Some('\'') => {
                    self.bump();
                    loop {
                        match self.bump() {
                            Some('\'') => break,
                            Some(c) => value.push(c),
                            None => return Err(self.error("unterminated single quote")),
                        }
                    }
                }
                Some('"') => {
                    self.bump();
                    self.double_quoted(&mut value)?;
                }
                Some('`') => return Err(self.error("command substitution (`…`) is not evaluated")),
                Some('$') => self.dollar(&mut value, false)?,
                Some(c) => {
                    self.bump();
                    value.push(c);
                }
            }
            any = true;
        }
        Ok(any.then_some(Word { value, assigns }))
    }

    fn double_quoted(&mut self, value: &mut String) -> Result<(), ShellError> {
        loop {
            match self.peek() {
                None => return Err(self.error("unterminated double quote")),
                Some('"') => {
                    self.bump();
                    return Ok(());
                }
                Some('\\') => {
                    self.bump();
                    match self.bump() {
                        Some('\n') => {}
                        Some(c @ ('$' | '`' | '"' | '\\')) => value.push(c),
                        Some(c) => {
                            value.push('\\');
                            value.push(c);
                        }
                        None => return Err(self.error("unterminated double quote")),
                    }
                }
                Some('`') => return Err(self.error("command substitution (`…`) is not evaluated")),
                Some('$') => self.dollar(value, true)?,
                Some(c) => {
                    self.bump();
                    value.push(c);
                }
            }
        }
    }

    fn lookup(&self, name: &str) -> Result<Option<String>, ShellError> {
        match &self.env {
            None => Err(self.error(format!("${name}: expansions are not evaluated here"))),
            Some(env) => Ok(env.get(name).map(|v| v.value.clone())),
        }
    }

    /// `$…` at the cursor.
    fn dollar(&mut self, value: &mut String, quoted: bool) -> Result<(), ShellError> {
        self.bump(); // $
        match self.peek() {
            Some('(') => {
                if self.peek_at(1) == Some('(') {
                    Err(self.error("arithmetic expansion $((…)) is not evaluated"))
                } else {
                    Err(self.error("command substitution $(…) is not evaluated"))
                }
            }
            Some('{') => {
                self.bump();
                self.braced(value, quoted)
            }
            Some(c) if is_name_start(c) => {
                let mut name = String::new();
                while self.peek().is_some_and(is_name_char) {
                    name.push(self.bump().unwrap_or_default());
                }
                match self.lookup(&name)? {
                    Some(v) => {
                        value.push_str(&v);
                        Ok(())
                    }
                    None => Err(self.unset(&name)),
                }
            }
            Some(c) if c.is_ascii_digit() || "@*#?-$!".contains(c) => {
                Err(self.error(format!("special parameter ${c} is not evaluated")))
            }
            // A `$` not followed by a name is literal.
            _ => {
                value.push('$');
                Ok(())
            }
        }
    }

    fn unset(&self, name: &str) -> ShellError {
        self.error(format!(
            "${name} is not set by this file or by the tool before it reads the file (its value would come \
             from the environment, which the plan does not know)"
        ))
    }

    /// `${NAME}`, `${NAME[:]-w}`, `${NAME[:]=w}`, `${NAME[:]+w}`; the cursor is after `{`.
    fn braced(&mut self, value: &mut String, quoted: bool) -> Result<(), ShellError> {
        let mut name = String::new();
        while self.peek().is_some_and(is_name_char) {
            name.push(self.bump().unwrap_or_default());
        }
        if !is_valid_name(&name) {
            return Err(self.error(
                "this ${…} expansion is not evaluated (only ${NAME} and its :- := :+ forms)",
            ));
        }
        let colon = self.peek() == Some(':');
        if colon {
            self.bump();
        }
        let op = self.peek();
        if op == Some('}') && !colon {
            self.bump();
            return match self.lookup(&name)? {
                Some(v) => {
                    value.push_str(&v);
                    Ok(())
                }
                None => Err(self.unset(&name)),
            };
        }
        let Some(op @ ('-' | '=' | '+')) = op else {
            return Err(self.error(format!(
                "${{{name}…}}: this expansion is not evaluated (only ${{NAME}} and its :- := :+ forms)"
            )));
        };
        self.bump();
        let word = self.brace_word(quoted)?;
        let current = self.lookup(&name)?;
        // With `:`, empty counts as unset (POSIX 2.6.2).
        let set = match &current {
            Some(v) => !colon || !v.is_empty(),
            None => false,
        };
        match op {
            '-' => value.push_str(if set {
                current.as_deref().unwrap_or("")
            } else {
                &word
            }),
            '+' => {
                if set {
                    value.push_str(&word)
                }
            }
            _ => {
                if set {
                    value.push_str(current.as_deref().unwrap_or(""));
                } else {
                    let line = self.line;
                    if let Some(env) = self.env.as_deref_mut() {
                        env.assign(&name, word.clone(), self.file, line);
                    }
                    value.push_str(&word);
                }
            }
        }
        Ok(())
    }

    /// The word of `${NAME:-word}` up to its `}`, evaluated like the text around it.
    fn brace_word(&mut self, quoted: bool) -> Result<String, ShellError> {
        let mut word = String::new();
        loop {
            match self.peek() {
                None => return Err(self.error("unterminated ${")),
                Some('}') => {
                    self.bump();
                    return Ok(word);
                }
                Some('\\') => {
                    self.bump();
                    match self.bump() {
                        Some('\n') => {}
                        Some(c) if !quoted || "$`\"\\}".contains(c) => word.push(c),
                        Some(c) => {
                            word.push('\\');
                            word.push(c);
                        }
                        None => return Err(self.error("unterminated ${")),
                    }
                }
                Some('\'') if !quoted => {
                    self.bump();
                    loop {
                        match self.bump() {
                            Some('\'') => break,
                            Some(c) => word.push(c),
                            None => return Err(self.error("unterminated single quote")),
                        }
                    }
                }
                Some('"') if !quoted => {
                    self.bump();
                    self.double_quoted(&mut word)?;
                }
                Some('`') => return Err(self.error("command substitution (`…`) is not evaluated")),
                Some('$') => self.dollar(&mut word, quoted)?,
                Some(c) => {
                    self.bump();
                    word.push(c);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(text: &str) -> Result<Env, ShellError> {
        let mut env = Env::new();
        env.set_by_tool("PRESET", "p", "tool", "before sourcing");
        source(&mut env, "/etc/x", text)?;
        Ok(env)
    }

    fn val(env: &Env, name: &str) -> (String, String) {
        let v = env.get(name).expect(name);
        (v.value.clone(), v.origin.to_string())
    }

    #[test]
    fn assignments_quotes_and_comments() {
        let env = eval(concat!(
            "# comment\n",
            "A=plain # trailing comment\n",
            "export B=\"double $A \\\"q\\\" \\x\"\n",
            "C='single $A \"x\"'\n",
            "D=a\\ b E=\"multi\n",
            "line\"; F=${A}-$PRESET\n",
            "G=${UNSET:-dflt} H=${A:+set} I=${EMPTY-} \n",
            ": ${J:=from_colon}\n",
            "K=${J:=ignored}x\n",
            "L=cont\\\n",
            "inued\n",
            "M=$ N=a$\n",
            "export A\n",
        ))
        .unwrap();
        assert_eq!(val(&env, "A"), ("plain".into(), "/etc/x:2".into()));
        assert_eq!(
            val(&env, "B"),
            ("double plain \"q\" \\x".into(), "/etc/x:3".into())
        );
        assert_eq!(
            val(&env, "C"),
            ("single $A \"x\"".into(), "/etc/x:4".into())
        );
        assert_eq!(val(&env, "D"), ("a b".into(), "/etc/x:5".into()));
        assert_eq!(val(&env, "E"), ("multi\nline".into(), "/etc/x:5".into()));
        assert_eq!(val(&env, "F"), ("plain-p".into(), "/etc/x:6".into()));
        assert_eq!(val(&env, "G"), ("dflt".into(), "/etc/x:7".into()));
        assert_eq!(val(&env, "H").0, "set");
        assert_eq!(val(&env, "I").0, "");
        assert_eq!(val(&env, "J"), ("from_colon".into(), "/etc/x:8".into()));
        assert_eq!(val(&env, "K").0, "from_colonx");
        assert_eq!(val(&env, "L"), ("continued".into(), "/etc/x:10".into()));
        assert_eq!(val(&env, "M").0, "$");
        assert_eq!(val(&env, "N").0, "a$");
        assert_eq!(val(&env, "PRESET").1, "tool default (before sourcing)");
    }

    #[test]
    fn what_is_not_evaluated_is_an_error_with_file_line_and_variable() {
        let err = |text: &str| eval(text).unwrap_err().to_string();
        assert_eq!(
            err("A=1\nKDUMP_KERNEL=/boot/vmlinuz-$(uname -r)\n"),
            "/etc/x:2: KDUMP_KERNEL: command substitution $(…) is not evaluated"
        );
        assert_eq!(
            err("X=`date`"),
            "/etc/x:1: X: command substitution (`…`) is not evaluated"
        );
        assert_eq!(
            err("X=$((1+2))"),
            "/etc/x:1: X: arithmetic expansion $((…)) is not evaluated"
        );
        assert_eq!(
            err("\n\nX=\"$HOME/x\""),
            "/etc/x:3: X: $HOME is not set by this file or by the tool before it reads the file (its value \
             would come from the environment, which the plan does not know)"
        );
        assert_eq!(
            err("X=${A#b}"),
            "/etc/x:1: X: ${A…}: this expansion is not evaluated (only ${NAME} and its :- := :+ forms)"
        );
        assert_eq!(
            err("if [ -e /x ]; then A=1; fi"),
            "/etc/x:1: `if` is a shell command the plan does not run (only assignments are evaluated)"
        );
        assert_eq!(
            err(". /etc/other"),
            "/etc/x:1: `.` is a shell command the plan does not run (only assignments are evaluated)"
        );
        assert_eq!(
            err("A=1\nfoo() { A=2; }"),
            "/etc/x:2: `(` (a pipe, list, redirection or subshell) is not evaluated"
        );
        assert_eq!(
            err("A=1 && B=2"),
            "/etc/x:1: `&` (a pipe, list, redirection or subshell) is not evaluated"
        );
        assert_eq!(
            err("echo hi"),
            "/etc/x:1: `echo` is a command, not an assignment (only assignments are evaluated)"
        );
        assert_eq!(err("X=\"abc\n\n"), "/etc/x:3: X: unterminated double quote");
        assert_eq!(
            err("X=~/dump"),
            "/etc/x:1: X: tilde expansion is not evaluated"
        );
        assert_eq!(
            err("X=$1"),
            "/etc/x:1: X: special parameter $1 is not evaluated"
        );
    }

    #[test]
    fn words_of_a_built_command() {
        assert_eq!(
            words(r#"/sbin/kexec -p --command-line="a b \"c\"" --initrd=/x k"#).unwrap(),
            vec![
                "/sbin/kexec",
                "-p",
                "--command-line=a b \"c\"",
                "--initrd=/x",
                "k"
            ]
        );
        assert!(words("a $X").is_err());
        assert_eq!(field_join("  a \t b\n"), "a b");
    }
}
