//! The `Sec-WebSocket-Extensions` header's grammar (RFC 6455 9.1): a client's offers, each an
//! extension name with `;` parameters, comma-separated, over any number of header lines. What
//! an offer means is the extension's business ([`super::deflate`] for permessage-deflate).
//!
//! ```text
//! Sec-WebSocket-Extensions = extension-list
//! extension-list = 1#extension
//! extension = extension-token *( ";" extension-param )
//! extension-param = token [ "=" (token | quoted-string) ]
//! ```
//!
//! A broken offer (a missing name, a stray character, an unterminated quote) is reported as
//! such rather than failing the handshake: the extension declines it and the connection goes on
//! without it, which is what declining an offer means anyway. Parsing goes on at the next comma
//! outside quotes.

use std::borrow::Cow;

/// One offered extension: its name and parameters, in the order sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer<'a> {
    pub name: &'a str,
    pub params: Vec<Param<'a>>,
}

/// One `name[=value]` parameter. A quoted value is unquoted ("When using the quoted-string
/// syntax variant, the value after quoted-string unescaping MUST conform to the 'token' ABNF":
/// checking that is the extension's business, as it checks every value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param<'a> {
    pub name: &'a str,
    pub value: Option<Cow<'a, str>>,
}

/// Every element of every `Sec-WebSocket-Extensions` value, in order: `Ok` for a well-formed
/// offer, `Err(())` for one that breaks the grammar. Empty elements (`a, , b`) are skipped, as
/// RFC 7230 7 asks of list recipients.
pub fn parse<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<Result<Offer<'a>, ()>> {
    let mut out = Vec::new();
    for value in values {
        let mut s = Scanner {
            text: value,
            pos: 0,
        };
        loop {
            s.skip_ows();
            match s.peek() {
                None => break,
                Some(b',') => {
                    s.pos += 1;
                    continue;
                }
                Some(_) => {}
            }
            match s.offer() {
                Some(offer) => out.push(Ok(offer)),
                None => {
                    out.push(Err(()));
                    s.skip_to_next_element();
                }
            }
        }
    }
    out
}

struct Scanner<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    /// Optional whitespace: spaces and tabs (RFC 7230 3.2.3).
    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    /// A token (RFC 7230 3.2.6), or `None` if there is none here.
    fn token(&mut self) -> Option<&'a str> {
        let start = self.pos;
        while self.peek().is_some_and(is_tchar) {
            self.pos += 1;
        }
        (self.pos > start).then(|| &self.text[start..self.pos])
    }

    /// `DQUOTE *( qdtext / quoted-pair ) DQUOTE`, unescaped; the scanner is at the opening quote.
    fn quoted(&mut self) -> Option<Cow<'a, str>> {
        self.pos += 1;
        let start = self.pos;
        let mut escaped: Option<String> = None;
        loop {
            let c = self.peek()?;
            match c {
                b'"' => {
                    let raw = &self.text[start..self.pos];
                    self.pos += 1;
                    return Some(escaped.map_or(Cow::Borrowed(raw), Cow::Owned));
                }
                b'\\' => {
                    // quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text ): the next character.
                    let owned =
                        escaped.get_or_insert_with(|| self.text[start..self.pos].to_owned());
                    let next = self.text[self.pos + 1..].chars().next()?;
                    if next.is_ascii_control() && next != '\t' {
                        return None;
                    }
                    owned.push(next);
                    self.pos += 1 + next.len_utf8();
                }
                _ => {
                    let ch = self.text[self.pos..].chars().next()?;
                    if ch.is_ascii_control() && ch != '\t' {
                        return None;
                    }
                    if let Some(owned) = escaped.as_mut() {
                        owned.push(ch);
                    }
                    self.pos += ch.len_utf8();
                }
            }
        }
    }

    /// `extension-token *( ";" extension-param )`, ending before a comma or at the end.
    fn offer(&mut self) -> Option<Offer<'a>> {
        let name = self.token()?;
        let mut params = Vec::new();
        loop {
            self.skip_ows();
            match self.peek() {
                None | Some(b',') => return Some(Offer { name, params }),
                Some(b';') => self.pos += 1,
                Some(_) => return None,
            }
            self.skip_ows();
            let pname = self.token()?;
            self.skip_ows();
            let value = if self.peek() == Some(b'=') {
                self.pos += 1;
                self.skip_ows();
                if self.peek() == Some(b'"') {
                    Some(self.quoted()?)
                } else {
                    Some(Cow::Borrowed(self.token()?))
                }
            } else {
                None
            };
            params.push(Param { name: pname, value });
        }
    }

    /// After a broken offer: on to the next comma that is not inside quotes.
    fn skip_to_next_element(&mut self) {
        let bytes = self.text.as_bytes();
        let mut in_quotes = false;
        while let Some(&c) = bytes.get(self.pos) {
            self.pos += 1;
            match c {
                b'\\' if in_quotes => self.pos += 1,
                b'"' => in_quotes = !in_quotes,
                b',' if !in_quotes => return,
                _ => {}
            }
        }
    }
}

/// `tchar` (RFC 7230 3.2.6).
fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p<'a>(name: &'a str, value: Option<&'a str>) -> Param<'a> {
        Param {
            name,
            value: value.map(Cow::Borrowed),
        }
    }

    #[test]
    fn offers_params_and_several_headers() {
        let got = parse([
            "permessage-deflate; client_max_window_bits, permessage-deflate ;server_max_window_bits = 10",
            "x-webkit-deflate-frame",
        ]);
        assert_eq!(
            got,
            vec![
                Ok(Offer {
                    name: "permessage-deflate",
                    params: vec![p("client_max_window_bits", None)],
                }),
                Ok(Offer {
                    name: "permessage-deflate",
                    params: vec![p("server_max_window_bits", Some("10"))],
                }),
                Ok(Offer {
                    name: "x-webkit-deflate-frame",
                    params: vec![],
                }),
            ]
        );
    }

    #[test]
    fn quoted_values_are_unescaped() {
        let got = parse([r#"e; a="10"; b="1\0"; c="x,y;z", f"#]);
        let Ok(offer) = &got[0] else {
            panic!("{got:?}")
        };
        assert_eq!(offer.params[0].value.as_deref(), Some("10"));
        assert_eq!(offer.params[1].value.as_deref(), Some("10"));
        // Commas and semicolons inside quotes belong to the value.
        assert_eq!(offer.params[2].value.as_deref(), Some("x,y;z"));
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].as_ref().map(|o| o.name), Ok("f"));
    }

    #[test]
    fn empty_elements_are_skipped() {
        let got = parse([" , a ,, b,", ""]);
        let names: Vec<_> = got.iter().map(|o| o.as_ref().map(|o| o.name)).collect();
        assert_eq!(names, [Ok("a"), Ok("b")]);
    }

    #[test]
    fn broken_offers_are_reported_and_parsing_goes_on() {
        for bad in [
            "a; ",   // a parameter without a name
            "a; =1", // the same
            "a b",   // two tokens
            "a; b=", // `=` without a value
            "a; b=\"unterminated",
            "a; b=\"x\"y",     // something after the quoted value
            "a; b=@",          // not a token
            ";b",              // no extension name
            "a; b=\"x\u{1}\"", // a control character in quotes
        ] {
            let got = parse([bad]);
            assert_eq!(got.first(), Some(&Err(())), "{bad:?}: {got:?}");
        }
        let got = parse(["a b, c; d=\"1,2\" e, f"]);
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(got[0], Err(()));
        assert_eq!(got[1], Err(()));
        assert_eq!(got[2].as_ref().map(|o| o.name), Ok("f"));
    }
}
