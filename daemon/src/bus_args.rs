//! Method arguments with their size limits applied while they are decoded.
//!
//! zbus decodes every argument of a call before the method runs, so a
//! check in the method comes after the memory is spent: an `as` of 2.7
//! million strings cost 150 MB before any caller check, and four at once
//! took the daemon past half a gigabyte. These types refuse an argument
//! the moment it passes its limit, while the bytes are still the
//! message's: a string longer than its limit is never copied, a list
//! never grows past its count. The call is then answered with the bus's
//! InvalidArgs error without reaching the daemon's code.

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use std::fmt;
use zbus::wire::signature::Child;
use zbus::Signature;

/// Bytes in a short field: names, user names, services, remote hosts,
/// ids, choices. The daemon's own checks are stricter still.
pub const SHORT: usize = 1024;
/// Items in a list argument (key ids, services).
pub const ITEMS: usize = 1024;

/// A string argument of at most `N` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text<const N: usize>(pub String);

impl<const N: usize> zbus::Type for Text<N> {
    const SIGNATURE: &'static Signature = &Signature::Str;
}

struct TextVisitor<const N: usize>;

impl<const N: usize> Visitor<'_> for TextVisitor<N> {
    type Value = Text<N>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a string of at most {N} bytes")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Text<N>, E> {
        if s.len() > N {
            return Err(E::custom(format!(
                "a string argument of {} bytes; at most {N} are taken",
                s.len()
            )));
        }
        Ok(Text(s.to_owned()))
    }
}

impl<'de, const N: usize> Deserialize<'de> for Text<N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(TextVisitor::<N>)
    }
}

/// A list argument (`as`) of at most `M` strings of at most `N` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct List<const M: usize, const N: usize>(pub Vec<String>);

impl<const M: usize, const N: usize> zbus::Type for List<M, N> {
    const SIGNATURE: &'static Signature = &Signature::Array(Child::Static {
        child: &Signature::Str,
    });
}

struct ListVisitor<const M: usize, const N: usize>;

impl<'de, const M: usize, const N: usize> Visitor<'de> for ListVisitor<M, N> {
    type Value = List<M, N>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "at most {M} strings")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<List<M, N>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(M));
        while let Some(Text::<N>(s)) = seq.next_element()? {
            if items.len() == M {
                return Err(de::Error::custom(format!(
                    "a list argument of more than {M} items"
                )));
            }
            items.push(s);
        }
        Ok(List(items))
    }
}

impl<'de, const M: usize, const N: usize> Deserialize<'de> for List<M, N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_seq(ListVisitor::<M, N>)
    }
}

impl<const N: usize> std::ops::Deref for Text<N> {
    type Target = String;
    fn deref(&self) -> &String {
        &self.0
    }
}

impl<const M: usize, const N: usize> std::ops::Deref for List<M, N> {
    type Target = Vec<String>;
    fn deref(&self) -> &Vec<String> {
        &self.0
    }
}

/// The short text argument most methods take.
pub type Short = Text<SHORT>;
/// The list arguments (ids, services).
pub type Ids = List<ITEMS, SHORT>;

/// A dictionary argument (`a{ss}`) of at most `M` entries whose keys and
/// values are at most `N` bytes, in the order sent; a key given twice is
/// refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pairs<const M: usize, const N: usize>(pub Vec<(String, String)>);

impl<const M: usize, const N: usize> zbus::Type for Pairs<M, N> {
    const SIGNATURE: &'static Signature = &Signature::Dict {
        key: Child::Static {
            child: &Signature::Str,
        },
        value: Child::Static {
            child: &Signature::Str,
        },
    };
}

struct PairsVisitor<const M: usize, const N: usize>;

impl<'de, const M: usize, const N: usize> Visitor<'de> for PairsVisitor<M, N> {
    type Value = Pairs<M, N>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "at most {M} entries")
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Pairs<M, N>, A::Error> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        while let Some((Text::<N>(k), Text::<N>(v))) = map.next_entry()? {
            if pairs.len() == M {
                return Err(de::Error::custom(format!("more than {M} entries")));
            }
            if pairs.iter().any(|(seen, _)| *seen == k) {
                return Err(de::Error::custom("a key given twice"));
            }
            pairs.push((k, v));
        }
        Ok(Pairs(pairs))
    }
}

impl<'de, const M: usize, const N: usize> Deserialize<'de> for Pairs<M, N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(PairsVisitor::<M, N>)
    }
}

/// Settings changed by name: far more entries than there are settings.
pub type SettingChanges = Pairs<32, SHORT>;

#[cfg(test)]
mod tests {
    use super::*;
    use zbus::wire::serialized::{Context, Data};
    use zbus::wire::Endian;

    fn encode<T: serde::Serialize + zbus::Type>(value: &T) -> Data<'static, 'static> {
        let ctxt = Context::new(Endian::Little, 0);
        zbus::wire::to_bytes(ctxt, value).unwrap()
    }

    #[test]
    fn strings_up_to_the_limit_pass_and_longer_ones_are_refused() {
        let ok = encode(&"x".repeat(8));
        let (text, _): (Text<8>, _) = ok.deserialize().unwrap();
        assert_eq!(text.0, "x".repeat(8));
        let long = encode(&"x".repeat(9));
        assert!(long.deserialize::<Text<8>>().is_err());
    }

    #[test]
    fn lists_stop_at_their_count_and_their_strings_at_their_length() {
        let three = encode(&vec!["a", "b", "c"]);
        let (list, _): (List<3, 4>, _) = three.deserialize().unwrap();
        assert_eq!(list.0, vec!["a", "b", "c"]);
        assert!(three.deserialize::<List<2, 4>>().is_err());
        let long = encode(&vec!["a", "bcdef"]);
        assert!(long.deserialize::<List<3, 4>>().is_err());
        let empty = encode(&Vec::<String>::new());
        assert_eq!(
            empty.deserialize::<List<3, 4>>().unwrap().0 .0,
            Vec::<String>::new()
        );
    }

    #[test]
    fn dictionaries_stop_at_their_count_and_their_strings_at_their_length() {
        use std::collections::BTreeMap;
        let two: BTreeMap<&str, &str> = [("a", "yes"), ("b", "30d")].into_iter().collect();
        let (pairs, _): (Pairs<2, 4>, _) = encode(&two).deserialize().unwrap();
        assert_eq!(
            pairs.0,
            [
                ("a".to_string(), "yes".to_string()),
                ("b".into(), "30d".into())
            ]
        );
        assert!(encode(&two).deserialize::<Pairs<1, 4>>().is_err());
        let long: BTreeMap<&str, &str> = [("a", "never!")].into_iter().collect();
        assert!(encode(&long).deserialize::<Pairs<2, 4>>().is_err());
        assert_eq!(
            <SettingChanges as zbus::Type>::SIGNATURE,
            <std::collections::HashMap<String, String> as zbus::Type>::SIGNATURE
        );
    }

    #[test]
    fn the_signatures_are_the_plain_ones() {
        assert_eq!(
            <Short as zbus::Type>::SIGNATURE,
            <String as zbus::Type>::SIGNATURE
        );
        assert_eq!(
            <Ids as zbus::Type>::SIGNATURE,
            <Vec<String> as zbus::Type>::SIGNATURE
        );
    }
}
