//! Filler keys written straight into the store while the daemon is
//! stopped: a million keys through Generate would take hours of fsyncs.
//! They belong to synthetic owners that no account has and are never
//! verified; they only make the store as big as a large site's.

use std::path::Path;
use std::time::Instant;

use apikeyd::store::{KeyKind, KeyRecord, SqliteStore};
use sha2::{Digest, Sha256};

/// Owner uids of filler keys: far above any UID_MAX, so no account has one.
const FILLER_UID_BASE: u32 = 3_000_000_000;
/// Owners the filler keys are spread over, as keys are over real users.
const FILLER_OWNERS: u32 = 10_000;
/// Keys per transaction: one fsync per batch, and memory stays small.
const BATCH: usize = 25_000;

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The public id of filler key `n`: a valid key id (12 base62 characters)
/// that grows with `n`, so the id index is appended to rather than split
/// at random, and the bench can name filler keys to revoke them.
pub fn filler_id(n: u64) -> String {
    let mut digits = [b'0'; 10];
    let mut rest = n;
    for d in digits.iter_mut().rev() {
        *d = BASE62[(rest % 62) as usize];
        rest /= 62;
    }
    format!("zz{}", std::str::from_utf8(&digits).expect("ascii"))
}

fn filler(n: u64, now: i64) -> KeyRecord {
    let owner = FILLER_UID_BASE + (n % u64::from(FILLER_OWNERS)) as u32;
    // Never verified, so no token is needed: any 32 distinct bytes will
    // do, and SHA-256 of a counter is distinct and cheap.
    let hash: [u8; 32] = Sha256::digest(format!("apikey-bench filler {n}")).into();
    KeyRecord {
        id: filler_id(n),
        hash,
        kind: KeyKind::LongLived,
        owner_uid: owner,
        owner_name: format!("filler{owner}"),
        created_by_uid: 0,
        created_by_loginuid: Some(0),
        name: "bench filler".into(),
        services: Vec::new(),
        hosts: vec![],
        sources: vec![],
        made_on: String::new(),
        created: now,
        expires: None,
        last_used: None,
        revoked: None,
        binding: None,
    }
}

/// Adds filler keys `0..count` to the store at `db`; returns the seconds
/// it took, store opening (integrity check) included.
pub fn seed(db: &Path, count: u64) -> Result<f64, String> {
    let started = Instant::now();
    let store = SqliteStore::open(db).map_err(|e| e.to_string())?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let mut n = 0;
    let mut batch = Vec::with_capacity(BATCH);
    while n < count {
        batch.clear();
        let end = count.min(n + BATCH as u64);
        batch.extend((n..end).map(|i| filler(i, now)));
        store
            .insert_batch(&batch)
            .map_err(|e| format!("seeding keys {n}..{end}: {e}"))?;
        n = end;
    }
    drop(store);
    Ok(started.elapsed().as_secs_f64())
}

/// Bytes of the store: the database file and its write-ahead log.
pub fn store_bytes(db: &Path) -> u64 {
    let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    size(db) + size(Path::new(&wal))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filler_ids_are_key_ids_in_counter_order() {
        let ids: Vec<String> = [0, 1, 61, 62, 1_000_000, 62u64.pow(10) - 1]
            .into_iter()
            .map(filler_id)
            .collect();
        for id in &ids {
            assert!(apikey_proto::token::is_key_id(id), "{id}");
        }
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(sorted, ids);
        assert_eq!(ids[0], "zz0000000000");
    }
}
