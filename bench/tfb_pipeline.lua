-- SPDX-License-Identifier: MIT
-- wrk script for the plaintext test type: each write carries `depth`
-- requests (the argument after --, default 1), as TechEmpower's pipeline.lua
-- does; wrk counts every response.
init = function(args)
   local depth = tonumber(args[1]) or 1
   local r = {}
   for i = 1, depth do
      r[i] = wrk.format()
   end
   req = table.concat(r)
end

request = function()
   return req
end
