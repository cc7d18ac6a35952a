//! Range reads as etcd's applier does them: pick the read revision, take the live keys
//! of the interval at that revision, count them, then filter by mod/create revision,
//! sort, cut at the limit, and drop values (`keys_only`) or kvs (`count_only`).

use std::cmp::Ordering;

use raftgres_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use raftgres_proto::etcdserverpb::{RangeRequest, RangeResponse};
use raftgres_proto::mvccpb::KeyValue;

use crate::keyspace::KeySpace;
use crate::{header, MvccError};

/// The sort order and target of a request; unknown enum values are an error (etcd
/// 3.5's `checkRangeRequest`).
pub(crate) fn sort_options(req: &RangeRequest) -> Result<(SortOrder, SortTarget), MvccError> {
    let order = SortOrder::try_from(req.sort_order).map_err(|_| MvccError::InvalidSortOption)?;
    let target = SortTarget::try_from(req.sort_target).map_err(|_| MvccError::InvalidSortOption)?;
    Ok((order, target))
}

/// The revision a read at `requested` sees (0 or less = `current`): above `current` is a
/// future revision; below the compaction point is compacted (the compaction point
/// itself is still readable, as in etcd's `rangeKeys`).
pub(crate) fn read_revision(requested: i64, current: i64, compacted: i64) -> Result<i64, MvccError> {
    if requested > current {
        return Err(MvccError::FutureRevision);
    }
    let rev = if requested <= 0 { current } else { requested };
    if rev < compacted {
        return Err(MvccError::Compacted);
    }
    Ok(rev)
}

/// Checks everything about a range that can fail, against a store at `current`.
pub(crate) fn check(req: &RangeRequest, current: i64, compacted: i64) -> Result<i64, MvccError> {
    if req.key.is_empty() {
        return Err(MvccError::KeyNotProvided);
    }
    sort_options(req)?;
    read_revision(req.revision, current, compacted)
}

/// A checked range: read at `rev`, answered with `header_rev` in the header. (Should an
/// unchecked request get here, unknown sort options mean key order: never a panic.)
pub(crate) fn run(keys: &KeySpace, req: &RangeRequest, rev: i64, header_rev: i64) -> RangeResponse {
    let (order, target) = sort_options(req).unwrap_or((SortOrder::None, SortTarget::Key));
    let mut kvs = keys.live_in(&req.key, &req.range_end, rev);
    // etcd counts every key of the interval, before filters and limit.
    let count = i64::try_from(kvs.len()).unwrap_or(i64::MAX);
    // A filter of 0 is off; any other value (negative included) applies, as in etcd.
    kvs.retain(|kv| {
        (req.max_mod_revision == 0 || kv.mod_revision <= req.max_mod_revision)
            && (req.min_mod_revision == 0 || kv.mod_revision >= req.min_mod_revision)
            && (req.max_create_revision == 0 || kv.create_revision <= req.max_create_revision)
            && (req.min_create_revision == 0 || kv.create_revision >= req.min_create_revision)
    });
    sort(&mut kvs, order, target);
    let mut more = false;
    if req.limit > 0 {
        let limit = usize::try_from(req.limit).unwrap_or(usize::MAX);
        if kvs.len() > limit {
            kvs.truncate(limit);
            more = true;
        }
    }
    let kvs = if req.count_only {
        // etcd fetches no kvs for count_only, so nothing is ever cut.
        more = false;
        Vec::new()
    } else {
        kvs.into_iter()
            .map(|kv| {
                let mut kv = kv.clone();
                if req.keys_only {
                    kv.value = Vec::new();
                }
                kv
            })
            .collect()
    };
    RangeResponse { header: header(header_rev), kvs, more, count }
}

/// Sorts as etcd does: order NONE with a target other than KEY means ascending; keys
/// already come in ascending key order. Ties keep key order (the sort is stable), so
/// every replica answers alike.
fn sort(kvs: &mut [&KeyValue], order: SortOrder, target: SortTarget) {
    let order = match (order, target) {
        (SortOrder::None, SortTarget::Key) => return,
        (SortOrder::None, _) => SortOrder::Ascend,
        (o, _) => o,
    };
    let by = |a: &&KeyValue, b: &&KeyValue| -> Ordering {
        match target {
            SortTarget::Key => a.key.cmp(&b.key),
            SortTarget::Version => a.version.cmp(&b.version),
            SortTarget::Create => a.create_revision.cmp(&b.create_revision),
            SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
            SortTarget::Value => a.value.cmp(&b.value),
        }
    };
    match order {
        SortOrder::Descend => kvs.sort_by(|a, b| by(b, a)),
        _ => kvs.sort_by(by),
    }
}
