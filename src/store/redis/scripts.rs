//! The Lua scripts every write runs, each touching one slot.

/// Compare-and-set with dedupe, audit and recovery figures. KEYS: state,
/// event marker, account audit stream, then one recovery day hash per
/// counter to add to (single node only: on a Cluster they live in another
/// slot and are posted after). ARGV: expected version, new doc ("" = no
/// change), event id ("" = none), dedupe TTL seconds, channel, account,
/// audit entry JSON ("" = none), audit max length, the episode records
/// JSON ("-" = unchanged), then a field and an increment per day hash.
/// Returns {0 written | 1 duplicate | 2 conflict, audit entry id or ""}.
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
  if ARGV[9] ~= '-' then redis.call('HSET', KEYS[1], 'fig', ARGV[9], 'figv', v + 1) end
  for i = 4, #KEYS do
    local f, n = ARGV[10 + (i - 4) * 2], ARGV[11 + (i - 4) * 2]
    if redis.call('HINCRBY', KEYS[i], f, n) == 0 then redis.call('HDEL', KEYS[i], f) end
  end
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


/// Posts an account's episode records to the recovery counters (Cluster:
/// they live in their own slot). KEYS: posted records hash, dirty set,
/// then one day hash per counter. ARGV: account, the posted value expected
/// ("" = none), the new one ("<version>|<records JSON>", "" = none), the
/// dirty entry's score to clear ("" = none), then a field and an increment
/// per day hash. Returns 0 posted (or a newer version already was), 1 the
/// posted value was not the expected one.
pub(super) const POST: &str = r#"
local cur = redis.call('HGET', KEYS[1], ARGV[1]) or ''
local cv = tonumber(string.match(cur, '^(%d+)|'))
local nv = tonumber(string.match(ARGV[3], '^(%d+)|'))
local function clear()
  local s = redis.call('ZSCORE', KEYS[2], ARGV[1])
  if ARGV[4] ~= '' and s and tonumber(s) == tonumber(ARGV[4]) then redis.call('ZREM', KEYS[2], ARGV[1]) end
end
-- A newer version is already posted: it includes this write; nothing to do.
if cv and nv and nv <= cv then clear() return 0 end
if cur ~= ARGV[2] then return 1 end
for i = 3, #KEYS do
  local f, n = ARGV[5 + (i - 3) * 2], ARGV[6 + (i - 3) * 2]
  if redis.call('HINCRBY', KEYS[i], f, n) == 0 then redis.call('HDEL', KEYS[i], f) end
end
if ARGV[3] == '' then redis.call('HDEL', KEYS[1], ARGV[1]) else redis.call('HSET', KEYS[1], ARGV[1], ARGV[3]) end
clear()
return 0
"#;
