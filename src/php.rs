//! Just enough of PHP's `unserialize` to read what WordPress keeps serialized in usermeta:
//! the roles (`wp_capabilities`) and login sessions (`session_tokens`). Objects are refused:
//! WordPress never stores them there, and a reader that stops at them cannot be tricked.

/// A PHP value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Vec<u8>),
    Array(Vec<(Value, Value)>),
}

/// Where and why a serialized string did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("broken serialized PHP at byte {at}: {what}")]
pub struct Broken {
    pub at: usize,
    pub what: &'static str,
}

/// Parses one serialized value that must span the whole input.
pub fn unserialize(input: &[u8]) -> Result<Value, Broken> {
    let mut p = Parser { s: input, at: 0 };
    let v = p.value(0)?;
    if p.at != input.len() {
        return Err(p.broken("trailing bytes"));
    }
    Ok(v)
}

/// WordPress roles from a `wp_capabilities` value: the keys whose value is true.
pub fn roles(capabilities: &[u8]) -> Result<Vec<String>, Broken> {
    match unserialize(capabilities)? {
        Value::Array(entries) => Ok(entries
            .into_iter()
            .filter(|(_, v)| matches!(v, Value::Bool(true) | Value::Int(1)))
            .filter_map(|(k, _)| match k {
                Value::Str(s) => Some(String::from_utf8_lossy(&s).into_owned()),
                _ => None,
            })
            .collect()),
        _ => Err(Broken {
            at: 0,
            what: "capabilities are not an array",
        }),
    }
}

/// The latest `login` time (unix seconds) in a `session_tokens` value.
pub fn latest_login(session_tokens: &[u8]) -> Result<Option<i64>, Broken> {
    let Value::Array(sessions) = unserialize(session_tokens)? else {
        return Ok(None);
    };
    Ok(sessions
        .iter()
        .filter_map(|(_, s)| match s {
            Value::Array(fields) => fields.iter().find_map(|(k, v)| match (k, v) {
                (Value::Str(k), Value::Int(t)) if k == b"login" => Some(*t),
                _ => None,
            }),
            _ => None,
        })
        .max())
}

struct Parser<'a> {
    s: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn broken(&self, what: &'static str) -> Broken {
        Broken { at: self.at, what }
    }

    fn expect(&mut self, byte: u8) -> Result<(), Broken> {
        if self.s.get(self.at) == Some(&byte) {
            self.at += 1;
            Ok(())
        } else {
            Err(self.broken("unexpected byte"))
        }
    }

    /// Bytes up to (not including) `end`, which is consumed.
    fn until(&mut self, end: u8) -> Result<&[u8], Broken> {
        let start = self.at;
        let len = self.s[start..]
            .iter()
            .position(|b| *b == end)
            .ok_or_else(|| self.broken("unterminated value"))?;
        self.at = start + len + 1;
        Ok(&self.s[start..start + len])
    }

    fn number<T: std::str::FromStr>(&mut self, end: u8) -> Result<T, Broken> {
        let at = self.at;
        let raw = self.until(end)?;
        std::str::from_utf8(raw)
            .ok()
            .and_then(|t| t.parse().ok())
            .ok_or(Broken { at, what: "bad number" })
    }

    fn value(&mut self, depth: usize) -> Result<Value, Broken> {
        if depth > 32 {
            return Err(self.broken("nested too deeply"));
        }
        let kind = *self.s.get(self.at).ok_or_else(|| self.broken("unexpected end"))?;
        self.at += 1;
        if kind == b'N' {
            self.expect(b';')?;
            return Ok(Value::Null);
        }
        self.expect(b':')?;
        match kind {
            b'b' => match self.number::<u8>(b';')? {
                0 => Ok(Value::Bool(false)),
                1 => Ok(Value::Bool(true)),
                _ => Err(self.broken("bad boolean")),
            },
            b'i' => Ok(Value::Int(self.number(b';')?)),
            b'd' => Ok(Value::Float(self.number(b';')?)),
            b's' => {
                let len: usize = self.number(b':')?;
                self.expect(b'"')?;
                let end = self
                    .at
                    .checked_add(len)
                    .filter(|e| *e <= self.s.len())
                    .ok_or_else(|| self.broken("string longer than the value"))?;
                let bytes = self.s[self.at..end].to_vec();
                self.at = end;
                self.expect(b'"')?;
                self.expect(b';')?;
                Ok(Value::Str(bytes))
            }
            b'a' => {
                let n: usize = self.number(b':')?;
                self.expect(b'{')?;
                let mut entries = Vec::with_capacity(n.min(64));
                for _ in 0..n {
                    let k = self.value(depth + 1)?;
                    if !matches!(k, Value::Int(_) | Value::Str(_)) {
                        return Err(self.broken("array key is not an int or string"));
                    }
                    let v = self.value(depth + 1)?;
                    entries.push((k, v));
                }
                self.expect(b'}')?;
                Ok(Value::Array(entries))
            }
            _ => Err(Broken {
                at: self.at - 2,
                what: "unsupported type (objects are refused)",
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_roles() {
        assert_eq!(roles(b"a:1:{s:8:\"customer\";b:1;}").unwrap(), vec!["customer"]);
        assert_eq!(
            roles(b"a:2:{s:13:\"administrator\";b:1;s:10:\"subscriber\";b:0;}").unwrap(),
            vec!["administrator"]
        );
        assert_eq!(roles(b"a:0:{}").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn broken_values_are_errors_not_panics() {
        for bad in [
            &b""[..],
            b"a:1:{s:8:\"customer\";b:1;",
            b"a:1:{s:80:\"customer\";b:1;}",
            b"a:9999999999999999999:{}",
            b"s:-1:\"\";",
            b"O:8:\"stdClass\":0:{}",
            b"a:1:{s:8:\"customer\";b:1;}trailing",
            b"b:2;",
            b"i:12x;",
            b"a:1:{a:0:{}b:1;}",
        ] {
            assert!(unserialize(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let deep = "a:1:{i:0;".repeat(100);
        assert!(unserialize(deep.as_bytes()).is_err());
    }

    #[test]
    fn reads_the_latest_login() {
        let tokens = b"a:2:{s:64:\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\";a:4:{s:10:\"expiration\";i:1700000000;s:2:\"ip\";s:9:\"192.0.2.1\";s:2:\"ua\";s:1:\"x\";s:5:\"login\";i:1690000000;}s:1:\"b\";a:1:{s:5:\"login\";i:1695000000;}}";
        assert_eq!(latest_login(tokens).unwrap(), Some(1_695_000_000));
        assert_eq!(latest_login(b"a:0:{}").unwrap(), None);
        // Multi-byte text is counted in bytes, as PHP does.
        assert_eq!(
            unserialize("s:2:\"é\";".as_bytes()).unwrap(),
            Value::Str("é".as_bytes().to_vec())
        );
    }
}
