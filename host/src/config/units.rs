//! Human-friendly units in the config: durations ("250ms", "1h") and sizes ("16MiB").

use serde::{Deserialize, Deserializer, de};
use std::fmt;
use std::str::FromStr;

/// A duration written as a string with a unit, e.g. `"250ms"`, `"10s"`, `"1h"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Duration(pub std::time::Duration);

impl FromStr for Duration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        humantime::parse_duration(s.trim()).map(Duration).map_err(|_| {
            format!("invalid duration \"{s}\": expected a number and a unit, e.g. \"250ms\", \"10s\", \"1h\"")
        })
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = StringOnly::deserialize(d)?;
        s.0.parse().map_err(de::Error::custom)
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

/// A size in bytes written with a unit, e.g. `"16MiB"`, `"512KiB"`, `"1MB"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Size(pub u64);

impl FromStr for Size {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        // A bare number would be ambiguous to a reader: require the unit.
        if t.is_empty() || t.chars().all(|c| c.is_ascii_digit()) {
            return Err(format!(
                "invalid size \"{s}\": expected a number and a unit, e.g. \"16MiB\", \"512KiB\""
            ));
        }
        bytesize::ByteSize::from_str(t)
            .map(|b| Size(b.as_u64()))
            .map_err(|_| {
                format!(
                    "invalid size \"{s}\": expected a number and a unit, e.g. \"16MiB\", \"512KiB\""
                )
            })
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = StringOnly::deserialize(d)?;
        s.0.parse().map_err(de::Error::custom)
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", bytesize::ByteSize(self.0).display().iec())
    }
}

/// Accepts only a string, with a message that says so for any other type.
struct StringOnly(String);

impl<'de> Deserialize<'de> for StringOnly {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = StringOnly;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string with a unit, e.g. \"10s\" or \"16MiB\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<StringOnly, E> {
                Ok(StringOnly(v.to_owned()))
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!("250ms".parse::<Duration>().unwrap().0.as_millis(), 250);
        assert_eq!("1h".parse::<Duration>().unwrap().0.as_secs(), 3600);
        assert!("10".parse::<Duration>().is_err());
        assert!("ten seconds".parse::<Duration>().is_err());
    }

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!("16MiB".parse::<Size>().unwrap().0, 16 * 1024 * 1024);
        assert_eq!("1KB".parse::<Size>().unwrap().0, 1000);
        assert!("16".parse::<Size>().is_err());
        assert!("lots".parse::<Size>().is_err());
    }
}
