-- POST /resources?id=<unique id>. Arguments: path, id prefix, JSON body.
-- Ids: <prefix><thread>-<counter>, unique per run, DNS-1123 labels.
local path, prefix, body
local counter = 0

function init(args)
   path, prefix, body = args[1], args[2] .. tid .. "-", args[3]
   wrk.headers["Content-Type"] = "application/json"
end

function request()
   counter = counter + 1
   return wrk.format("POST", path .. "?id=" .. prefix .. counter, nil, body)
end
