-- SPDX-License-Identifier: MIT
-- wrk script: HTTP/1.1 pipelining, as TechEmpower's plaintext test does it.
-- Each write carries DEPTH requests back to back (default 16):
--   wrk -s bench/pipeline.lua http://127.0.0.1:PORT/ -- 16
-- wrk counts every response, so requests/s is per request, not per batch.
init = function(args)
   local depth = tonumber(args[1]) or 16
   local r = {}
   for i = 1, depth do
      r[i] = wrk.format()
   end
   req = table.concat(r)
end

request = function()
   return req
end
