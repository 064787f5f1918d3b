//! A small, strict JSON scanner for the one large file lofi reads: predictions.
//!
//! An ActivityNet-sized detection file is about 80 MB of one fixed shape. A general JSON
//! deserializer spends most of its time on machinery this shape does not need, and the fast path
//! of the common one is not correctly rounded for 17-digit numbers (what Python's `repr` writes).
//! This scanner walks the bytes once, borrows strings from the input where they have no escapes,
//! parses numbers with the standard library's correctly rounded parser after checking JSON's
//! number grammar, and reports errors with line and column. It accepts exactly RFC 8259 JSON:
//! anything else (NaN, trailing commas, comments, bad escapes) is an error.

use crate::error::EvalError;
use std::borrow::Cow;
use std::path::Path;

/// Deepest nesting accepted in skipped values; deeper input is refused rather than recursed into.
const MAX_DEPTH: usize = 256;

pub(crate) struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Scanner<'a> {
    /// A scanner over `bytes`, which must be UTF-8.
    pub fn new(bytes: &'a [u8], path: &'a Path) -> Result<Self, EvalError> {
        let text = std::str::from_utf8(bytes).map_err(|e| {
            EvalError::format(
                path,
                format!(
                    "byte {} is not valid UTF-8 (JSON text must be)",
                    e.valid_up_to()
                ),
            )
        })?;
        Ok(Scanner {
            text,
            bytes,
            pos: 0,
            path,
        })
    }

    /// An error at the current position, with its line and column.
    pub fn error(&self, message: impl AsRef<str>) -> EvalError {
        let before = &self.bytes[..self.pos.min(self.bytes.len())];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let column = before.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
        EvalError::format(
            self.path,
            format!("line {line} column {column}: {}", message.as_ref()),
        )
    }

    pub fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    /// The next non-whitespace byte, not consumed.
    pub fn peek(&mut self) -> Option<u8> {
        self.skip_whitespace();
        self.bytes.get(self.pos).copied()
    }

    fn describe_next(&mut self) -> String {
        match self.peek() {
            None => "the end of the file".to_string(),
            Some(b) if b.is_ascii_graphic() => format!("'{}'", b as char),
            Some(b) => format!("byte 0x{b:02x}"),
        }
    }

    pub fn expect(&mut self, byte: u8, what: &str) -> Result<(), EvalError> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            let found = self.describe_next();
            Err(self.error(format!("expected {what}, found {found}")))
        }
    }

    /// Checks that only whitespace is left.
    pub fn finish(&mut self) -> Result<(), EvalError> {
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(self.error("unexpected content after the end of the JSON value")),
        }
    }

    /// Visits each entry of an object; `visit` must consume the value.
    pub fn object(
        &mut self,
        what: &str,
        mut visit: impl FnMut(&mut Self, Cow<'a, str>) -> Result<(), EvalError>,
    ) -> Result<(), EvalError> {
        self.expect(b'{', what)?;
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            if self.peek() != Some(b'"') {
                let found = self.describe_next();
                return Err(self.error(format!("expected a quoted key, found {found}")));
            }
            let key = self.string()?;
            self.expect(b':', "':' after a key")?;
            visit(self, key)?;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => {
                    let found = self.describe_next();
                    return Err(self.error(format!("expected ',' or '}}', found {found}")));
                }
            }
        }
    }

    /// Visits each element of an array; `visit` gets the index and must consume the element.
    pub fn array(
        &mut self,
        what: &str,
        mut visit: impl FnMut(&mut Self, usize) -> Result<(), EvalError>,
    ) -> Result<(), EvalError> {
        self.expect(b'[', what)?;
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(());
        }
        let mut index = 0;
        loop {
            visit(self, index)?;
            index += 1;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => {
                    let found = self.describe_next();
                    return Err(self.error(format!("expected ',' or ']', found {found}")));
                }
            }
        }
    }

    /// A string value, borrowed from the input unless it has escapes.
    pub fn string(&mut self) -> Result<Cow<'a, str>, EvalError> {
        self.expect(b'"', "a string")?;
        let start = self.pos;
        loop {
            match self.bytes.get(self.pos) {
                None => return Err(self.error("unterminated string")),
                Some(b'"') => {
                    let text = &self.text[start..self.pos];
                    self.pos += 1;
                    return Ok(Cow::Borrowed(text));
                }
                Some(b'\\') => break,
                Some(&b) if b < 0x20 => return Err(self.error("control character inside a string")),
                Some(_) => self.pos += 1,
            }
        }
        // Slow path: the string has escapes.
        let mut out = String::from(&self.text[start..self.pos]);
        loop {
            match self.bytes.get(self.pos) {
                None => return Err(self.error("unterminated string")),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(Cow::Owned(out));
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let escaped = match self.bytes.get(self.pos) {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => {
                            self.pos += 1;
                            let c = self.unicode_escape()?;
                            out.push(c);
                            continue;
                        }
                        _ => return Err(self.error("invalid escape in a string")),
                    };
                    out.push(escaped);
                    self.pos += 1;
                }
                Some(&b) if b < 0x20 => return Err(self.error("control character inside a string")),
                Some(_) => {
                    // Copy one UTF-8 character.
                    let rest = &self.text[self.pos..];
                    let c = rest
                        .chars()
                        .next()
                        .ok_or_else(|| self.error("unterminated string"))?;
                    out.push(c);
                    self.pos += c.len_utf8();
                }
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, EvalError> {
        let digits = self
            .text
            .get(self.pos..self.pos + 4)
            .ok_or_else(|| self.error("truncated \\u escape"))?;
        let value =
            u32::from_str_radix(digits, 16).map_err(|_| self.error("invalid \\u escape"))?;
        if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(self.error("invalid \\u escape"));
        }
        self.pos += 4;
        Ok(value)
    }

    /// After `\u`: one code point, joining a surrogate pair.
    fn unicode_escape(&mut self) -> Result<char, EvalError> {
        let first = self.hex4()?;
        let code = if (0xD800..0xDC00).contains(&first) {
            if self.bytes.get(self.pos..self.pos + 2) != Some(b"\\u") {
                return Err(self.error("unpaired surrogate in a \\u escape"));
            }
            self.pos += 2;
            let second = self.hex4()?;
            if !(0xDC00..0xE000).contains(&second) {
                return Err(self.error("unpaired surrogate in a \\u escape"));
            }
            0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
        } else {
            first
        };
        char::from_u32(code).ok_or_else(|| self.error("invalid code point in a \\u escape"))
    }

    /// A number, checked against JSON's grammar and parsed with correct rounding. Too large a
    /// magnitude gives an infinity, which callers reject with their own message.
    pub fn number(&mut self) -> Result<f64, EvalError> {
        self.skip_whitespace();
        let start = self.pos;
        let digits = |s: &mut Self| {
            let from = s.pos;
            while s.bytes.get(s.pos).is_some_and(u8::is_ascii_digit) {
                s.pos += 1;
            }
            s.pos - from
        };
        if self.bytes.get(self.pos) == Some(&b'-') {
            self.pos += 1;
        }
        let integer_start = self.pos;
        let integer = digits(self);
        if integer == 0 || (integer > 1 && self.bytes[integer_start] == b'0') {
            let non_finite = matches!(self.bytes.get(self.pos), Some(b'N' | b'I'));
            self.pos = start;
            let found = self.describe_next();
            let hint = if non_finite {
                " (NaN and Infinity are not JSON: Python's json module writes them for \
                 non-finite numbers; fix the values at their source)"
            } else {
                ""
            };
            return Err(self.error(format!("expected a number, found {found}{hint}")));
        }
        if self.bytes.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            if digits(self) == 0 {
                return Err(self.error("expected digits after the decimal point"));
            }
        }
        if let Some(b'e' | b'E') = self.bytes.get(self.pos) {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.bytes.get(self.pos) {
                self.pos += 1;
            }
            if digits(self) == 0 {
                return Err(self.error("expected digits in the exponent"));
            }
        }
        self.text[start..self.pos]
            .parse()
            .map_err(|_| self.error("invalid number"))
    }

    /// Skips any JSON value, checking its syntax, and returns its text.
    pub fn raw_value(&mut self) -> Result<&'a str, EvalError> {
        self.skip_whitespace();
        let start = self.pos;
        self.skip_value()?;
        Ok(&self.text[start..self.pos])
    }

    /// Skips any JSON value, checking its syntax.
    pub fn skip_value(&mut self) -> Result<(), EvalError> {
        self.skip_value_at(0)
    }

    fn skip_value_at(&mut self, depth: usize) -> Result<(), EvalError> {
        if depth > MAX_DEPTH {
            return Err(self.error("values nested too deeply"));
        }
        match self.peek() {
            Some(b'{') => self.object("an object", |s, _| s.skip_value_at(depth + 1)),
            Some(b'[') => self.array("an array", |s, _| s.skip_value_at(depth + 1)),
            Some(b'"') => self.string().map(drop),
            Some(b't') => self.literal("true"),
            Some(b'f') => self.literal("false"),
            Some(b'n') => self.literal("null"),
            _ => self.number().map(drop),
        }
    }

    fn literal(&mut self, word: &str) -> Result<(), EvalError> {
        if self.bytes[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(())
        } else {
            let found = self.describe_next();
            Err(self.error(format!("expected a JSON value, found {found}")))
        }
    }

    /// Consumes `null` if it is next.
    pub fn null(&mut self) -> bool {
        if self.peek() == Some(b'n') && self.bytes[self.pos..].starts_with(b"null") {
            self.pos += 4;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(text: &str) -> Scanner<'_> {
        Scanner::new(text.as_bytes(), Path::new("t.json")).expect("utf-8")
    }

    #[test]
    fn numbers_follow_json_grammar_and_round_correctly() {
        for (text, value) in [
            ("0", 0.0),
            ("-0.5", -0.5),
            ("1e3", 1000.0),
            ("2.5E-1", 0.25),
            ("0.30000000000000004", 0.30000000000000004),
            // 17 significant digits: the case a fast path gets wrong.
            ("0.12345678901234567", 0.12345678901234567),
            ("9007199254740993", 9007199254740992.0),
        ] {
            assert_eq!(scan(text).number().expect(text), value, "{text}");
        }
        assert_eq!(scan("1e999").number().expect("overflow"), f64::INFINITY);
        for bad in ["01", "1.", ".5", "+1", "-", "1e", "NaN", "Infinity", "0x10"] {
            let mut s = scan(bad);
            let ok = s.number().is_ok() && s.finish().is_ok();
            assert!(!ok, "{bad} must be rejected");
        }
    }

    #[test]
    fn strings_borrow_unless_escaped() {
        assert!(matches!(
            scan(r#""abc""#).string().expect("ok"),
            Cow::Borrowed("abc")
        ));
        let escaped = scan(r#""a\"b\\c\u00e9\ud83d\ude00\n""#)
            .string()
            .expect("ok");
        assert_eq!(escaped, "a\"b\\cé😀\n");
        for bad in [r#""abc"#, r#""\x""#, r#""\ud800""#, "\"a\u{1}\""] {
            assert!(scan(bad).string().is_err(), "{bad:?} must be rejected");
        }
    }

    #[test]
    fn skipping_validates_and_errors_have_positions() {
        let mut s = scan(r#" {"a": [1, true, null, {"b": "c"}], "d": -2.5e+3} "#);
        s.skip_value().expect("valid");
        s.finish().expect("nothing left");
        let mut s = scan("{\"a\": [1,\n 2,]}");
        let message = s.skip_value().expect_err("trailing comma").to_string();
        assert!(message.starts_with("t.json: line 2 column"), "{message}");
        let deep = "[".repeat(1000) + &"]".repeat(1000);
        assert!(scan(&deep).skip_value().is_err());
        let mut s = scan("{} x");
        s.skip_value().expect("object");
        assert!(s.finish().is_err());
        assert!(Scanner::new(&[b'"', 0xff, b'"'], Path::new("t.json")).is_err());
    }
}
