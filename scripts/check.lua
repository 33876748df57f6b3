-- wrk script: GET /check as a proxy would ask it, for GET /api/ping, rotating
-- X-Account-Id over 10,000 accounts.
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "/check", {
    ["X-Original-Method"] = "GET",
    ["X-Original-URI"] = "/api/ping",
    ["X-Account-Id"] = "acct-" .. (n % 10000),
  })
end
