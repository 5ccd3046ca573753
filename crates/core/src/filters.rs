//! containerd's filter syntax, as taken by `ctr ... ls <filters>` and by the `filters` fields of
//! containerd's gRPC `List` requests.
//!
//! A filter string is a comma-separated list of selectors, all of which must match (AND):
//!
//! ```text
//! selectors := selector ("," selector)*
//! selector  := fieldpath (operator value)?
//! fieldpath := field ("." field)*
//! field     := quoted | [A-Za-z0-9_-]+
//! operator  := "==" | "!=" | "~="
//! value     := quoted | [^\s,]+
//! quoted    := a Go-style "double-quoted" string; after "~=" also /slashed/ or |piped|
//! ```
//!
//! Several filter strings given together ([`Filter::parse_all`]) are ORed. There is no OR
//! operator inside one string: `|` is a quote character, as in containerd's scanner.
//!
//! Matching follows containerd's `selector.Match`: a selector without operator matches when the
//! adaptor reports the field present; `==` matches when the field is present and equal; `!=` and
//! `~=` compare against the empty string when the field is absent (so `labels.x!=y` matches objects
//! without the label `x`, and `labels.x!=""` does not).

use std::collections::BTreeMap;

use regex::Regex;

use crate::error::{Error, Result};

/// Something a filter can look at: maps a field path to a value, as containerd's `Adaptor` does.
///
/// containerd's adaptors report scalar fields present only when non-empty (`len(x) > 0`) and
/// labels present when the key exists (even with an empty value); do the same to match its
/// behavior for presence selectors.
pub trait Adaptor {
    /// The value at `fieldpath` (e.g. `["labels", "foo.bar"]`), or `None` if absent.
    fn field(&self, fieldpath: &[String]) -> Option<String>;
}

impl<F> Adaptor for F
where
    F: Fn(&[String]) -> Option<String>,
{
    fn field(&self, fieldpath: &[String]) -> Option<String> {
        self(fieldpath)
    }
}

/// Helper for adaptors: look up `fieldpath` (the part after `labels`) in a label map, joining the
/// remaining components with `.` as containerd's `checkMap` does, so that `labels.foo.bar` and
/// `labels."foo.bar"` both find the label `foo.bar`.
pub fn map_field(fieldpath: &[String], map: &BTreeMap<String, String>) -> Option<String> {
    if map.is_empty() {
        return None;
    }
    map.get(&fieldpath.join(".")).cloned()
}

/// A parsed filter: OR of alternatives, each an AND of selectors.
#[derive(Debug, Clone)]
pub struct Filter {
    alternatives: Vec<Vec<Selector>>,
}

impl Filter {
    /// Parse one filter string; the empty string matches everything.
    ///
    /// Errors are invalid-argument errors worded as containerd's, e.g.
    /// `filters: parse error: [name== >|,|< x]: expected value or quoted: invalid argument`.
    pub fn parse(s: &str) -> Result<Filter> {
        if s.is_empty() {
            return Ok(Filter::always());
        }
        let mut parser = Parser {
            scanner: Scanner { input: s, pos: 0 },
        };
        let selectors = parser.selectors().map_err(|e| e.into_error(s))?;
        Ok(Filter {
            alternatives: vec![selectors],
        })
    }

    /// Parse several filter strings, ORed together (containerd's `ParseAll`); an empty slice, or
    /// any empty string among them, yields a filter matching everything.
    pub fn parse_all<S: AsRef<str>>(filters: &[S]) -> Result<Filter> {
        if filters.is_empty() {
            return Ok(Filter::always());
        }
        let mut alternatives = Vec::with_capacity(filters.len());
        for filter in filters {
            alternatives.extend(Filter::parse(filter.as_ref())?.alternatives);
        }
        Ok(Filter { alternatives })
    }

    /// A filter that matches everything.
    pub fn always() -> Filter {
        Filter {
            alternatives: vec![Vec::new()],
        }
    }

    /// True when this filter matches everything without looking at the object.
    pub fn is_always(&self) -> bool {
        self.alternatives.iter().any(Vec::is_empty)
    }

    /// True when the object behind `adaptor` satisfies the filter.
    pub fn matches(&self, adaptor: &dyn Adaptor) -> bool {
        self.alternatives
            .iter()
            .any(|all| all.iter().all(|selector| selector.matches(adaptor)))
    }
}

impl Default for Filter {
    fn default() -> Self {
        Filter::always()
    }
}

#[derive(Debug, Clone)]
enum Operator {
    Present,
    Equal(String),
    NotEqual(String),
    Matches(Regex),
}

#[derive(Debug, Clone)]
struct Selector {
    fieldpath: Vec<String>,
    operator: Operator,
}

impl Selector {
    fn matches(&self, adaptor: &dyn Adaptor) -> bool {
        let value = adaptor.field(&self.fieldpath);
        match &self.operator {
            Operator::Present => value.is_some(),
            Operator::Equal(want) => value.as_deref() == Some(want.as_str()),
            Operator::NotEqual(want) => value.as_deref().unwrap_or("") != want,
            Operator::Matches(re) => re.is_match(value.as_deref().unwrap_or("")),
        }
    }
}

/// A parse failure at byte offset `pos` of the input.
#[derive(Debug)]
struct SyntaxError {
    pos: usize,
    msg: String,
}

fn syntax(pos: usize, msg: impl Into<String>) -> SyntaxError {
    SyntaxError {
        pos,
        msg: msg.into(),
    }
}

impl SyntaxError {
    /// containerd's `parseError` layout: the input with the offending character marked.
    fn into_error(self, input: &str) -> Error {
        let at = input.get(self.pos..).and_then(|rest| rest.chars().next());
        let location = match at {
            Some(c) => format!(
                "[{} >|{}|< {}]",
                &input[..self.pos],
                c,
                &input[self.pos + c.len_utf8()..]
            ),
            None => format!("[{input}]"),
        };
        Error::invalid_argument(format!("filters: parse error: {location}: {}", self.msg))
    }
}

#[derive(Debug)]
enum Token {
    /// A field name, or (right after an operator) an unquoted value.
    Word(String),
    /// A quoted literal, already unquoted, with its quote character.
    Quoted(char, String),
    Operator(String),
    /// End of input, a separator or anything else: only ever an error where `scan` is called.
    Other,
}

fn is_field_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

fn is_operator_char(c: char) -> bool {
    matches!(c, '=' | '!' | '~')
}

fn is_value_char(c: char) -> bool {
    c != ',' && !c.is_whitespace() && !c.is_control()
}

/// containerd's scanner: whitespace between tokens is skipped by `scan`, never by `peek`.
struct Scanner<'a> {
    input: &'a str,
    pos: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<char> {
        self.input[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn eat_while(&mut self, accept: impl Fn(char) -> bool) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(&accept) {
            self.bump();
        }
        &self.input[start..self.pos]
    }

    /// The next token and where it starts; `value` is set right after an operator.
    fn scan(&mut self, value: bool) -> Result<(usize, Token), SyntaxError> {
        self.eat_while(char::is_whitespace);
        let start = self.pos;
        let token = match self.bump() {
            None | Some(',' | '.') => Token::Other,
            Some('\0') => return Err(syntax(start, "unexpected null")),
            Some(c @ ('"' | '/' | '|')) => Token::Quoted(c, self.scan_quoted(start, c)?),
            Some(c) if is_operator_char(c) => {
                self.eat_while(is_operator_char);
                Token::Operator(self.input[start..self.pos].to_owned())
            }
            Some(c) if value || is_field_char(c) => {
                self.eat_while(if value { is_value_char } else { is_field_char });
                Token::Word(self.input[start..self.pos].to_owned())
            }
            Some(_) => Token::Other,
        };
        Ok((start, token))
    }

    /// Scan and unquote a literal whose opening `quote` was at `start`.
    fn scan_quoted(&mut self, start: usize, quote: char) -> Result<String, SyntaxError> {
        let mut out = Vec::new();
        loop {
            match self.bump() {
                None | Some('\n') => return Err(syntax(start, "quoted literal not terminated")),
                Some('\0') => return Err(syntax(start, "unexpected null")),
                Some(c) if c == quote => break,
                Some('\\') => self
                    .scan_escape(quote, &mut out)
                    .map_err(|msg| syntax(start, msg))?,
                Some(c) => push_char(&mut out, c),
            }
        }
        String::from_utf8(out).map_err(|_| syntax(start, "unquoting failed: not valid utf-8"))
    }

    /// Decode one escape sequence (the backslash already consumed) into `out`.
    fn scan_escape(&mut self, quote: char, out: &mut Vec<u8>) -> Result<(), &'static str> {
        let c = self.bump().ok_or("illegal escape sequence")?;
        let byte = match c {
            'a' => 0x07,
            'b' => 0x08,
            'f' => 0x0c,
            'n' => b'\n',
            'r' => b'\r',
            't' => b'\t',
            'v' => 0x0b,
            '\\' => b'\\',
            c if c == quote => {
                push_char(out, c);
                return Ok(());
            }
            '0'..='7' => {
                let value = (c as u32 - '0' as u32) * 64 + self.scan_digits(8, 2)?;
                u8::try_from(value).map_err(|_| "octal escape value out of range")?
            }
            'x' => self.scan_digits(16, 2)? as u8,
            'u' | 'U' => {
                let value = self.scan_digits(16, if c == 'u' { 4 } else { 8 })?;
                if value > char::MAX as u32 {
                    return Err("unicode escape value out of range");
                }
                // Go encodes surrogates as U+FFFD; do the same.
                push_char(
                    out,
                    char::from_u32(value).unwrap_or(char::REPLACEMENT_CHARACTER),
                );
                return Ok(());
            }
            _ => return Err("illegal escape sequence"),
        };
        out.push(byte);
        Ok(())
    }

    fn scan_digits(&mut self, radix: u32, count: usize) -> Result<u32, &'static str> {
        let mut value = 0;
        for _ in 0..count {
            let digit = self.bump().and_then(|c| c.to_digit(radix));
            value = value * radix + digit.ok_or("illegal numeric escape sequence")?;
        }
        Ok(value)
    }
}

fn push_char(out: &mut Vec<u8>, c: char) {
    out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
}

/// Summarize a regex error on one line (the `regex` crate's syntax errors span several).
fn regex_error_summary(err: &regex::Error) -> String {
    let text = err.to_string();
    text.lines()
        .rev()
        .find_map(|line| line.trim().strip_prefix("error: "))
        .map(str::to_owned)
        .unwrap_or_else(|| text.split_whitespace().collect::<Vec<_>>().join(" "))
}

struct Parser<'a> {
    scanner: Scanner<'a>,
}

impl Parser<'_> {
    fn selectors(&mut self) -> Result<Vec<Selector>, SyntaxError> {
        let mut selectors = vec![self.selector()?];
        loop {
            match self.scanner.peek() {
                None => return Ok(selectors),
                Some(',') => {
                    self.scanner.scan(false)?;
                    selectors.push(self.selector()?);
                }
                Some(c) => {
                    return Err(syntax(self.scanner.pos, format!("unexpected input: {c:?}")))
                }
            }
        }
    }

    fn selector(&mut self) -> Result<Selector, SyntaxError> {
        let fieldpath = self.fieldpath()?;
        if matches!(self.scanner.peek(), None | Some(',')) {
            return Ok(Selector {
                fieldpath,
                operator: Operator::Present,
            });
        }
        let (pos, token) = self.scanner.scan(false)?;
        let operator = match token {
            Token::Operator(op) => op,
            _ => return Err(syntax(pos, r#"expected an operator ("=="|"!="|"~=")"#)),
        };
        let regexp = operator == "~=";
        if !regexp && operator != "==" && operator != "!=" {
            return Err(syntax(pos, format!("unsupported operator {operator:?}")));
        }
        let (pos, value) = self.value(regexp)?;
        let operator = match operator.as_str() {
            "==" => Operator::Equal(value),
            "!=" => Operator::NotEqual(value),
            _ => Operator::Matches(Regex::new(&value).map_err(|e| {
                let summary = regex_error_summary(&e);
                syntax(
                    pos,
                    format!("failed to parse regular expression: {summary}"),
                )
            })?),
        };
        Ok(Selector {
            fieldpath,
            operator,
        })
    }

    fn fieldpath(&mut self) -> Result<Vec<String>, SyntaxError> {
        let mut fields = vec![self.field()?];
        while self.scanner.peek() == Some('.') {
            self.scanner.scan(false)?;
            fields.push(self.field()?);
        }
        Ok(fields)
    }

    fn field(&mut self) -> Result<String, SyntaxError> {
        match self.scanner.scan(false)? {
            (_, Token::Word(field) | Token::Quoted('"', field)) => Ok(field),
            (pos, Token::Quoted(..)) => Err(syntax(pos, "invalid quote encountered")),
            (pos, _) => Err(syntax(pos, "expected field or quoted")),
        }
    }

    /// The value after an operator; `/` and `|` quoting is allowed only for regexps.
    fn value(&mut self, alt_quotes: bool) -> Result<(usize, String), SyntaxError> {
        match self.scanner.scan(true)? {
            (pos, Token::Word(v)) => Ok((pos, v)),
            (pos, Token::Quoted(q, v)) if q == '"' || alt_quotes => Ok((pos, v)),
            (pos, Token::Quoted(..)) => Err(syntax(pos, "invalid quote encountered")),
            (pos, _) => Err(syntax(pos, "expected value or quoted")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    /// A test object: scalar fields present when non-empty, labels looked up with `map_field`.
    struct Entry {
        fields: BTreeMap<String, String>,
        labels: BTreeMap<String, String>,
    }

    impl Adaptor for Entry {
        fn field(&self, fieldpath: &[String]) -> Option<String> {
            match fieldpath.first()?.as_str() {
                "labels" => map_field(&fieldpath[1..], &self.labels),
                f if fieldpath.len() == 1 => self.fields.get(f).filter(|v| !v.is_empty()).cloned(),
                _ => None,
            }
        }
    }

    fn map(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn entry(name: &str, other: &str, labels: &[(&str, &str)]) -> Entry {
        let fields = map(&[("name", name), ("other", other)]);
        Entry {
            fields,
            labels: map(labels),
        }
    }

    const COMPLEX: &str = "more complex label with \\ and \"";
    const COMPLEX_POST: &str = "more complex label with \\ and \".post";

    /// containerd's filter_test.go corpus.
    fn corpus() -> Vec<Entry> {
        vec![
            entry("foo", "", &[("foo", "true")]),
            entry("bar", "", &[]),
            entry(
                "foo",
                "",
                &[("foo", "present"), ("more complex label", "present")],
            ),
            entry("bar", "", &[("bar", "true")]),
            entry("fooer", "", &[(COMPLEX, "present")]),
            entry("fooer", "", &[(COMPLEX_POST, "present")]),
            entry("baz", "too complex, yo", &[]),
            entry("bazo", "abc", &[]),
            entry("compound", "", &[("foo", "omg_asdf.asdf-qwer")]),
        ]
    }

    const ALL: &[usize] = &[0, 1, 2, 3, 4, 5, 6, 7, 8];

    fn matching(filter: &Filter) -> Vec<usize> {
        let corpus = corpus();
        (0..corpus.len())
            .filter(|&i| filter.matches(&corpus[i]))
            .collect()
    }

    fn check(input: &str, expected: &[usize]) {
        let filter = Filter::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
        assert_eq!(matching(&filter), expected, "input {input:?}");
    }

    /// The full message, as containerd words it, plus our error class.
    fn check_err(input: &str, expected: &str) {
        let err = Filter::parse(input).expect_err(input);
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "input {input:?}");
        let want = format!("filters: parse error: {expected}: invalid argument");
        assert_eq!(err.to_string(), want);
    }

    /// Only what failed, after the marked input.
    fn check_err_msg(input: &str, msg: &str) {
        let err = Filter::parse(input).expect_err(input);
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "input {input:?}");
        let text = err.to_string();
        assert!(text.starts_with("filters: parse error: ["), "{text}");
        assert!(
            text.ends_with(&format!("]: {msg}: invalid argument")),
            "{text}"
        );
    }

    #[test]
    fn containerd_matching_cases() {
        check("", ALL);
        check("name", ALL);
        check("labels.foo", &[0, 2, 8]);
        check("labels.foo,name", &[0, 2, 8]);
        check("labels.foo==true", &[0]);
        check("labels.foo==omg_asdf.asdf-qwer", &[8]);
        check("name==bar", &[1, 3]);
        check("name!=bar", &[0, 2, 4, 5, 6, 7, 8]);
        check("name==bar,labels.bar", &[3]);
        check(r#"other=="too complex, yo""#, &[6]);
        check("other~=[abc]+,name!=foo", &[6, 7]);
        check("other~=/[abc]+/,name!=foo", &[6, 7]);
        check("other~=/[abc]{1,2}/,name!=foo", &[6, 7]);
        check("other~=/[abc]{0,1}\"\\//,name!=foo", &[]);
        check("name==bar,labels.bar==true", &[3]);
        check("name==bar,labels.bar==wrong", &[]);
        check(r#"name==foo,labels."more complex label""#, &[2]);
        check(
            r#"labels."more complex label with \\ and \""==present"#,
            &[4],
        );
        check(
            r#"labels."more complex label with \\ and \"".post==present"#,
            &[5],
        );
    }

    #[test]
    fn containerd_error_cases() {
        // "<input> => <what containerd prints after `filters: parse error: `>"
        for case in [
            "labels.|foo|==x => [labels. >|||< foo|==x]: invalid quote encountered",
            r#"labels.?"a\\b".c => [labels. >|?|< "a\\b".c]: expected field or quoted"#,
            "name==foo, => [name==foo,]: expected field or quoted",
            "labels. => [labels.]: expected field or quoted",
            "image~=,id?=?fbaq => [image~= >|,|< id?=?fbaq]: expected value or quoted",
            "labels.ns/key==v => [labels.ns >|/|< key==v]: quoted literal not terminated",
            "labels.key==/value => [labels.key== >|/|< value]: quoted literal not terminated",
            "name== => [name==]: expected value or quoted",
            "==foo => [ >|=|< =foo]: expected field or quoted",
            r#"name foo => [name  >|f|< oo]: expected an operator ("=="|"!="|"~=")"#,
            "name==föö bar => [name==föö >| |< bar]: unexpected input: ' '",
            "name==\0 => [name== >|\0|< ]: unexpected null",
        ] {
            let (input, expected) = case.split_once(" => ").unwrap();
            check_err(input, expected);
        }
    }

    #[test]
    fn syntax_errors() {
        for (input, msg) in [
            (r#"name=="foo"#, "quoted literal not terminated"),
            ("labels.\"foo==bar", "quoted literal not terminated"),
            ("name==\"a\nb\"", "quoted literal not terminated"),
            ("name=foo", r#"unsupported operator "=""#),
            ("name!~=foo", r#"unsupported operator "!~=""#),
            (r#"name=="foo"x"#, "unexpected input: 'x'"),
            ("name==.foo", "expected value or quoted"),
            ("name==,", "expected value or quoted"),
            ("name==/foo/", "invalid quote encountered"),
            ("name!=|foo|", "invalid quote encountered"),
            (r#"name=="\q""#, "illegal escape sequence"),
            (r#"name~=/\d+/"#, "illegal escape sequence"),
            (r#"name=="\'""#, "illegal escape sequence"),
            (r#"name=="\x4""#, "illegal numeric escape sequence"),
            (r#"name=="\777""#, "octal escape value out of range"),
            (r#"name=="\U00110000""#, "unicode escape value out of range"),
            (r#"name=="\xff""#, "unquoting failed: not valid utf-8"),
            ("   ", "expected field or quoted"),
            ("a,,b", "expected field or quoted"),
            (",a", "expected field or quoted"),
            ("name ,a", r#"expected an operator ("=="|"!="|"~=")"#),
            ("labels .a", r#"expected an operator ("=="|"!="|"~=")"#),
        ] {
            check_err_msg(input, msg);
        }
    }

    #[test]
    fn bad_regex_is_a_parse_error() {
        let err = Filter::parse("name~=[").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        let msg = err.to_string();
        let prefix = "filters: parse error: [name~= >|[|< ]: failed to parse regular expression: ";
        assert!(msg.starts_with(prefix), "{msg}");
        assert!(msg.len() > prefix.len() + 20, "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
        assert!(msg.ends_with(": invalid argument"), "{msg}");
        assert!(Filter::parse("name~=/(/").is_err());
        assert!(Filter::parse_all(&["name", "x~=a{2,1}"]).is_err());
    }

    #[test]
    fn regex_matching() {
        check("name~=/foo.*/", &[0, 2, 4, 5]);
        check("name~=^foo$", &[0, 2]);
        check("name~=oo", &[0, 2, 4, 5]);
        check("name~=|^ba.$|", &[1, 3, 6]);
        check(r#"name~="^(foo|bar)$""#, &[0, 1, 2, 3]);
        check(r"name~=\w+er$", &[4, 5]);
        check(r"name~=/\\w+er$/", &[4, 5]);
        check(r"name~=/ba[rz]\/?/", &[1, 3, 6, 7]);
        check("labels.foo~=^(true|present)$", &[0, 2]);
    }

    #[test]
    fn absent_fields_compare_as_empty() {
        // containerd compares the adaptor's value ("" when absent) for != and ~=.
        check("other!=abc", &[0, 1, 2, 3, 4, 5, 6, 8]);
        check(r#"other!="""#, &[6, 7]);
        check("other~=^$", &[0, 1, 2, 3, 4, 5, 8]);
        check("labels.foo!=true", &[1, 2, 3, 4, 5, 6, 7, 8]);
        check("other==\"\"", &[]);
        check("missing", &[]);
        check("name.sub", &[]);
    }

    #[test]
    fn values_quoting_and_fields() {
        let obj = entry("x", "", &[("a=b", "c=d"), ("k", "v,w"), ("q", "a\"b")]);
        let matches = |s: &str| Filter::parse(s).unwrap().matches(&obj);
        assert!(matches(r#"labels."a=b"==c=d"#));
        assert!(matches(r#"labels.k=="v,w""#));
        assert!(!matches("labels.k==v"));
        assert!(matches(r#"labels.q==a"b"#));
        assert!(matches(r#"labels.q=="a\"b""#));
        assert!(matches(r#"labels.q~=/a"b/"#));
        assert!(matches("  name ==  x"));
        assert!(matches("name==x,labels.k"));
        assert!(matches("name==x,  labels. k"));

        let obj = entry("café", "", &[("aAéA\tb\u{1F600}", "1"), ("", "empty")]);
        let matches = |s: &str| Filter::parse(s).unwrap().matches(&obj);
        assert!(matches("name==café"));
        assert!(matches(r#"name=="caf\u00e9""#));
        assert!(matches(r#"labels."a\x41\u00e9\101\tb\U0001F600"==1"#));
        assert!(matches(r#"labels.""==empty"#));

        // Fields allow dashes and digits; dotted label keys need no quoting.
        let obj = entry("x", "", &[("io.cri-containerd.kind", "sandbox"), ("9", "")]);
        let matches = |s: &str| Filter::parse(s).unwrap().matches(&obj);
        assert!(matches("labels.io.cri-containerd.kind==sandbox"));
        assert!(matches(r#"labels."io.cri-containerd.kind"==sandbox"#));
        assert!(matches(r#"labels.io."cri-containerd".kind"#));
        assert!(matches("labels.9")); // a label with an empty value is present
        assert!(!matches("labels.io"));
    }

    #[test]
    fn parse_all_ors_filters() {
        let f = Filter::parse_all(&["name==foo", "name==bar"]).unwrap();
        assert_eq!(matching(&f), &[0, 1, 2, 3]);
        let f = Filter::parse_all(&["name==foo,labels.foo==true", "other"]).unwrap();
        assert_eq!(matching(&f), &[0, 6, 7]);
        let f = Filter::parse_all(&[String::from("labels.bar")]).unwrap();
        assert_eq!(matching(&f), &[3]);
        assert!(!f.is_always());

        let everything: [&[&str]; 4] = [&[], &[""], &["", ""], &["", "name==zzz"]];
        for filters in everything {
            let f = Filter::parse_all(filters).unwrap();
            assert!(f.is_always() && matching(&f) == ALL, "{filters:?}");
        }

        let err = Filter::parse_all(&["name==foo", "name=="]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        let want = "filters: parse error: [name==]: expected value or quoted: invalid argument";
        assert_eq!(err.to_string(), want);
    }

    #[test]
    fn always_default_and_closure_adaptors() {
        assert_eq!(matching(&Filter::always()), ALL);
        assert_eq!(matching(&Filter::default()), ALL);
        assert!(Filter::always().is_always());
        assert!(Filter::parse("").unwrap().is_always());
        assert!(!Filter::parse("name").unwrap().is_always());
        let adaptor = |path: &[String]| (path == ["id"]).then(|| "abc".to_string());
        assert!(Filter::parse("id==abc").unwrap().matches(&adaptor));
        assert!(!Filter::parse("id==abd").unwrap().matches(&adaptor));
        assert!(!Filter::parse("labels.x").unwrap().matches(&adaptor));
    }

    #[test]
    fn map_field_joins_components() {
        let labels = map(&[("foo.bar", "1"), ("", "2")]);
        let get = |p: &[&str]| {
            let path: Vec<String> = p.iter().map(|s| s.to_string()).collect();
            map_field(&path, &labels)
        };
        assert_eq!(get(&["foo", "bar"]).as_deref(), Some("1"));
        assert_eq!(get(&["foo.bar"]).as_deref(), Some("1"));
        assert_eq!(get(&[]).as_deref(), Some("2"));
        assert_eq!(get(&["foo"]), None);
        assert_eq!(map_field(&["foo".to_string()], &BTreeMap::new()), None);
    }
}
