//! [`Checkpoint`] for standard types: scalars and strings as serde leaves; options, boxes,
//! tuples, arrays and collections by their elements' own `Checkpoint`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, Hash};
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use super::{Checkpoint, StateError, StateReader, StateWriter};

macro_rules! leaf {
    ($($t:ty),* $(,)?) => {$(
        impl Checkpoint for $t {
            #[inline]
            fn save(&self, w: &mut StateWriter) -> Result<(), StateError> {
                w.put(self)
            }
            #[inline]
            fn load(r: &mut StateReader<'_>) -> Result<Self, StateError> {
                r.take()
            }
        }
    )*};
}

leaf!(
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    f32,
    f64,
    bool,
    char,
    String,
    (),
    Duration,
);

impl<T> Checkpoint for PhantomData<T> {
    fn save(&self, _: &mut StateWriter) -> Result<(), StateError> {
        Ok(())
    }
    fn load(_: &mut StateReader<'_>) -> Result<Self, StateError> {
        Ok(PhantomData)
    }
}

impl<T: Checkpoint> Checkpoint for Option<T> {
    fn save(&self, w: &mut StateWriter) -> Result<(), StateError> {
        w.put(&self.is_some())?;
        match self {
            Some(v) => v.save(w),
            None => Ok(()),
        }
    }
    fn load(r: &mut StateReader<'_>) -> Result<Self, StateError> {
        if r.take::<bool>()? {
            T::load(r).map(Some)
        } else {
            Ok(None)
        }
    }
}

impl<T: Checkpoint> Checkpoint for Box<T> {
    fn save(&self, w: &mut StateWriter) -> Result<(), StateError> {
        (**self).save(w)
    }
    fn load(r: &mut StateReader<'_>) -> Result<Self, StateError> {
        T::load(r).map(Box::new)
    }
}

/// Restored as a new, unshared `Arc` holding the saved value.
impl<T: Checkpoint> Checkpoint for Arc<T> {
    fn save(&self, w: &mut StateWriter) -> Result<(), StateError> {
        (**self).save(w)
    }
    fn load(r: &mut StateReader<'_>) -> Result<Self, StateError> {
        T::load(r).map(Arc::new)
    }
}

/// Saves a length and then each element.
fn save_all<'a, T: Checkpoint + 'a>(
    w: &mut StateWriter,
    len: usize,
    items: impl IntoIterator<Item = &'a T>,
) -> Result<(), StateError> {
    w.len_prefix(len)?;
    items.into_iter().try_for_each(|x| x.save(w))
}

/// Reads a length and then that many elements into `C`.
fn load_all<T: Checkpoint, C: FromIterator<T>>(r: &mut StateReader<'_>) -> Result<C, StateError> {
    let len = r.len_prefix()?;
    (0..len).map(|_| T::load(r)).collect()
}

impl<T: Checkpoint> Checkpoint for Vec<T> {
    fn save(&self, w: &mut StateWriter) -> Result<(), StateError> {
        save_all(w, self.len(), self)
    }
    fn load(r: &mut StateReader<'_>) -> Result<Self, StateError> {
        let len = r.len_prefix()?;
        let mut v = Vec::with_capacity(r.capacity_for(len));
        for _ in 0..len {
            v.push(T::load(r)?);
        }
        Ok(v)
    }
}

impl<T: Checkpoint> Checkpoint for VecDeque<T> {
    fn save(&self, w: &mut StateWriter) -> Result<(), StateError> {
        save_all(w, self.len(), self)
    }
    fn load(r: &mut StateReader<'_>) -> Result<Self, StateError> {
        Vec::<T>::load(r).map(VecDeque::from)
    }
}

impl<T: Checkpoint, const N: usize> Checkpoint for [T; N] {
    fn save(&self, w: &mut StateWriter) -> Result<(), StateError> {
        self.iter().try_for_each(|x| x.save(w))
    }
    fn load(r: &mut StateReader<'_>) -> Result<Self, StateError> {
        let items = (0..N).map(|_| T::load(r)).collect::<Result<Vec<T>, _>>()?;
        // Exactly N were read, so the conversion cannot fail; an error is still reported
        // rather than assumed away.
        items.try_into().map_err(|_| StateError::Truncated {
            ty: std::any::type_name::<Self>(),
        })
    }
}

/// Saves a length and then each key and value.
fn save_pairs<'a, K: Checkpoint + 'a, V: Checkpoint + 'a>(
    w: &mut StateWriter,
    len: usize,
    pairs: impl IntoIterator<Item = (&'a K, &'a V)>,
) -> Result<(), StateError> {
    w.len_prefix(len)?;
    pairs.into_iter().try_for_each(|(k, v)| {
        k.save(w)?;
        v.save(w)
    })
}

/// Reads a length and then that many keys and values into the map `make` builds for a
/// capacity (never more than the bytes left).
fn load_pairs<K: Checkpoint, V: Checkpoint, M: Extend<(K, V)>>(
    r: &mut StateReader<'_>,
    make: impl FnOnce(usize) -> M,
) -> Result<M, StateError> {
    let len = r.len_prefix()?;
    let mut m = make(r.capacity_for(len));
    for _ in 0..len {
        let k = K::load(r)?;
        m.extend([(k, V::load(r)?)]);
    }
    Ok(m)
}

impl<K: Checkpoint + Eq + Hash, V: Checkpoint, S: BuildHasher + Default> Checkpoint
    for HashMap<K, V, S>
{
    fn save(&self, w: &mut StateWriter) -> Result<(), StateError> {
        save_pairs(w, self.len(), self)
    }
    fn load(r: &mut StateReader<'_>) -> Result<Self, StateError> {
        load_pairs(r, |n| HashMap::with_capacity_and_hasher(n, S::default()))
    }
}

impl<K: Checkpoint + Ord, V: Checkpoint> Checkpoint for BTreeMap<K, V> {
    fn save(&self, w: &mut StateWriter) -> Result<(), StateError> {
        save_pairs(w, self.len(), self)
    }
    fn load(r: &mut StateReader<'_>) -> Result<Self, StateError> {
        load_pairs(r, |_| BTreeMap::new())
    }
}

impl<T: Checkpoint + Eq + Hash, S: BuildHasher + Default> Checkpoint for HashSet<T, S> {
    fn save(&self, w: &mut StateWriter) -> Result<(), StateError> {
        save_all(w, self.len(), self)
    }
    fn load(r: &mut StateReader<'_>) -> Result<Self, StateError> {
        load_all(r)
    }
}

impl<T: Checkpoint + Ord> Checkpoint for BTreeSet<T> {
    fn save(&self, w: &mut StateWriter) -> Result<(), StateError> {
        save_all(w, self.len(), self)
    }
    fn load(r: &mut StateReader<'_>) -> Result<Self, StateError> {
        load_all(r)
    }
}

macro_rules! tuple {
    ($($name:ident)+) => {
        impl<$($name: Checkpoint),+> Checkpoint for ($($name,)+) {
            #[allow(non_snake_case)]
            fn save(&self, w: &mut StateWriter) -> Result<(), StateError> {
                let ($($name,)+) = self;
                $($name.save(w)?;)+
                Ok(())
            }
            fn load(r: &mut StateReader<'_>) -> Result<Self, StateError> {
                Ok(($($name::load(r)?,)+))
            }
        }
    };
}

tuple!(A);
tuple!(A B);
tuple!(A B C);
tuple!(A B C D);
tuple!(A B C D E);
tuple!(A B C D E F);
tuple!(A B C D E F G);
tuple!(A B C D E F G H);
tuple!(A B C D E F G H I);
tuple!(A B C D E F G H I J);
tuple!(A B C D E F G H I J K);
tuple!(A B C D E F G H I J K L);

#[cfg(test)]
mod tests {
    use super::super::{Compression, from_bytes, to_bytes};
    use super::*;

    fn round_trip<T: Checkpoint + PartialEq + std::fmt::Debug>(v: T) {
        for c in [Compression::None, Compression::Lz4] {
            let bytes = to_bytes(&v, c).unwrap_or_else(|e| panic!("save {v:?}: {e}"));
            let back: T = from_bytes(&bytes).unwrap_or_else(|e| panic!("load {v:?}: {e}"));
            assert_eq!(back, v);
        }
    }

    #[test]
    fn standard_types_round_trip_exactly() {
        round_trip(0u8);
        round_trip(u64::MAX);
        round_trip(i128::MIN);
        round_trip(-0.0f64);
        round_trip(f64::MIN_POSITIVE);
        round_trip('é');
        round_trip(String::from("trade"));
        round_trip(Some((1u32, -2i64, String::new())));
        round_trip(None::<u8>);
        round_trip(vec![Some(1.5f32), None]);
        round_trip(VecDeque::from([3u16, 1, 2]));
        round_trip([[1u8, 2], [3, 4]]);
        round_trip(Duration::from_nanos(1_234_567_891));
        round_trip(Box::new(vec![String::from("x")]));
        round_trip((
            1u8, 2u16, 3u32, 4u64, 5u128, 6i8, 7i16, 8i32, 9i64, 10i128, 11usize, true,
        ));
        let m: HashMap<String, Vec<u64>> =
            (0..100).map(|i| (format!("k{i}"), vec![i; 3])).collect();
        round_trip(m);
        let b: BTreeMap<i32, BTreeSet<u8>> = (0..10).map(|i| (i, (0..i as u8).collect())).collect();
        round_trip(b);
        round_trip((0..50u64).collect::<HashSet<u64>>());
    }

    #[test]
    fn nan_payloads_are_kept_bit_for_bit() {
        let nan = f64::from_bits(0x7ff8_0000_dead_beef);
        let back: f64 = from_bytes(&to_bytes(&nan, Compression::None).unwrap()).unwrap();
        assert_eq!(back.to_bits(), nan.to_bits());
    }

    #[test]
    fn damaged_bytes_are_errors_never_panics() {
        let bytes = to_bytes(&vec![String::from("abc"); 20], Compression::None).unwrap();
        // Every truncation and every single-byte corruption is rejected with an error.
        for n in 0..bytes.len() {
            assert!(
                from_bytes::<Vec<String>>(&bytes[..n]).is_err(),
                "prefix {n}"
            );
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            assert!(from_bytes::<Vec<String>>(&b).is_err(), "flip at {i}");
        }
        // A valid frame around a value of another type: decoding reports it.
        let other = to_bytes(&(1u8, 2u8), Compression::None).unwrap();
        assert!(matches!(
            from_bytes::<(u8, u8, u8)>(&other),
            Err(StateError::Truncated { .. })
        ));
        assert!(matches!(
            from_bytes::<u8>(&other),
            Err(StateError::TrailingBytes { extra: 1, .. })
        ));
    }

    #[test]
    fn a_damaged_length_does_not_allocate_without_bound() {
        // A frame whose payload claims u64::MAX elements but holds none.
        let mut w = StateWriter::new();
        w.len_prefix(usize::MAX).unwrap();
        let bytes = super::super::frame(&w.into_bytes(), Compression::None);
        assert!(matches!(
            from_bytes::<Vec<u64>>(&bytes),
            Err(StateError::Truncated { .. })
        ));
    }
}
