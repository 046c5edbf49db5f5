-- GET /resources/{id} of a random seeded id. Arguments: path prefix, row count.
local prefix, rows

function init(args)
   prefix, rows = args[1], tonumber(args[2])
   math.randomseed(os.time() * 1000 + tid)
end

function request()
   return wrk.format("GET", prefix .. string.format("r%07d", math.random(0, rows - 1)))
end
