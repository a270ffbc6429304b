//! Types for plugin configs, written the way the gateway's own config is.

use serde::{Deserialize, Deserializer, de};
use std::fmt;

/// A duration written as a number and a unit: `"250ms"`, `"30s"`, `"10m"`,
/// `"1h"`, `"7d"`. Derefs to [`std::time::Duration`].
///
/// ```
/// use gatehouse_sdk::config::Duration;
/// #[derive(serde::Deserialize)]
/// struct Config { window: Duration }
/// let c: Config = serde_json::from_str(r#"{"window": "1h"}"#)?;
/// assert_eq!(c.window.as_secs(), 3600);
/// assert!(serde_json::from_str::<Config>(r#"{"window": "1 fortnight"}"#).is_err());
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Duration(pub std::time::Duration);

impl std::ops::Deref for Duration {
    type Target = std::time::Duration;
    fn deref(&self) -> &std::time::Duration {
        &self.0
    }
}

impl std::str::FromStr for Duration {
    type Err = String;

    fn from_str(s: &str) -> Result<Duration, String> {
        let t = s.trim();
        let split = t
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(t.len());
        let (number, unit) = t.split_at(split);
        let n: f64 = number.parse().map_err(|_| expected(s))?;
        let unit_secs = match unit.trim() {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            _ => return Err(expected(s)),
        };
        let secs = n * unit_secs;
        if !secs.is_finite() || secs < 0.0 {
            return Err(expected(s));
        }
        Ok(Duration(std::time::Duration::from_secs_f64(secs)))
    }
}

fn expected(s: &str) -> String {
    format!("invalid duration \"{s}\": expected a number and a unit (ms, s, m, h, d), e.g. \"30s\"")
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"30s\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

/// A size written as a number and a unit: `"512KiB"`, `"1MiB"`, `"64KB"`,
/// `"100B"`. Derefs to the number of bytes.
///
/// ```
/// use gatehouse_sdk::config::Size;
/// #[derive(serde::Deserialize)]
/// struct Config { max_body: Size }
/// let c: Config = serde_json::from_str(r#"{"max_body": "1MiB"}"#)?;
/// assert_eq!(*c.max_body, 1024 * 1024);
/// assert!(serde_json::from_str::<Config>(r#"{"max_body": "lots"}"#).is_err());
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Size(pub usize);

impl std::ops::Deref for Size {
    type Target = usize;
    fn deref(&self) -> &usize {
        &self.0
    }
}

impl std::str::FromStr for Size {
    type Err = String;

    fn from_str(s: &str) -> Result<Size, String> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (number, unit) = t.split_at(split);
        let bad = || {
            format!(
                "invalid size \"{s}\": expected a number and a unit (B, KB, MB, KiB, MiB, GiB), e.g. \"1MiB\""
            )
        };
        let n: usize = number.parse().map_err(|_| bad())?;
        let unit_bytes: usize = match unit.trim() {
            "B" => 1,
            "KB" => 1000,
            "MB" => 1_000_000,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            _ => return Err(bad()),
        };
        Ok(Size(n.saturating_mul(unit_bytes)))
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Size, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as \"1MiB\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Size, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}
