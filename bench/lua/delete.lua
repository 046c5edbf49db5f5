-- DELETE /resources/{id} of pre-created ids, each once. Arguments: path prefix, ids file
-- stem (thread N reads <stem>.N, one id a line). When a thread runs out it asks for an id
-- that does not exist (a 404, counted as an error) and counts it in `exhausted`.
local prefix
local ids = {}
local next_id = 0
exhausted = 0

function init(args)
   prefix = args[1]
   for line in io.lines(args[2] .. "." .. tid) do
      ids[#ids + 1] = line
   end
end

function request()
   next_id = next_id + 1
   if next_id > #ids then
      exhausted = exhausted + 1
      return wrk.format("DELETE", prefix .. "bench-ran-out-of-ids")
   end
   return wrk.format("DELETE", prefix .. ids[next_id])
end
