//! The Lua scripts every write runs, each touching one slot.

/// Compare-and-set with dedupe and audit. KEYS: state, event marker,
/// account audit stream. ARGV: expected version, new doc ("" = no change),
/// event id ("" = none), dedupe TTL seconds, channel, account, audit entry
/// JSON ("" = none), audit max length. Returns {0 written | 1 duplicate |
/// 2 conflict, audit entry id or ""}.
pub(super) const COMMIT: &str = r#"
if ARGV[3] ~= '' and redis.call('EXISTS', KEYS[2]) == 1 then return {1, ''} end
local v = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if v ~= tonumber(ARGV[1]) then return {2, ''} end
-- The audit entry first: Redis does not roll a script back, so a failing
-- XADD must come before any write (no entry, no change).
local id = ''
if ARGV[7] ~= '' then id = redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[8], '*', 'e', ARGV[7]) end
if ARGV[2] ~= '' then
  redis.call('HSET', KEYS[1], 'v', v + 1, 'doc', ARGV[2])
  redis.call('PUBLISH', ARGV[5], ARGV[6])
end
if ARGV[3] ~= '' then redis.call('SET', KEYS[2], '1', 'EX', ARGV[4]) end
return {0, id}
"#;

/// Links a customer, moving it atomically; mirrors `store::decide_link`.
/// KEYS: link. ARGV: new value, account, "1" when an admin links. Returns
/// the previous value ("" = none).
pub(super) const LINK: &str = r#"
local cur = redis.call('GET', KEYS[1])
if cur then
  local admin = string.sub(cur, 1, 6) == 'admin|'
  local acct = cur
  if admin then acct = string.sub(cur, 7) end
  if acct == ARGV[2] then
    if ARGV[3] == '1' and not admin then redis.call('SET', KEYS[1], ARGV[1]) end
    return cur
  end
  if admin and ARGV[3] ~= '1' then return cur end
end
redis.call('SET', KEYS[1], ARGV[1])
return cur or ''
"#;

/// Extends a claim only for its holder. KEYS: claim. ARGV: holder, lease ms.
pub(super) const RENEW: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"#;

