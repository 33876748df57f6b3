-- wrk script: the same work as accounts.lua (one formatted request with a
-- rotating header), but the header is not the account header, so the gate
-- resolves no account. Comparing the two isolates the gate's own cost from
-- the cost of running a Lua script in wrk.
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "/api/ping", { ["X-Request-Tag"] = "acct-" .. (n % 10000) })
end
