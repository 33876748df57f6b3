-- wrk script: rotate X-Account-Id over 10,000 accounts (acct-0 … acct-9999).
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "/api/ping", { ["X-Account-Id"] = "acct-" .. (n % 10000) })
end
