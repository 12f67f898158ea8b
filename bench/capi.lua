-- wrk script for bench/capi.sh: the pixel hit of bench/run.sh (a Purchase with
-- custom and user data, a browser User-Agent from wrk's -H), spread
-- round-robin over 10 pixels, a unique event_id per request, at a steady rate.
--
--   wrk -t1 -c20 -d20s -H 'User-Agent: ...' -s bench/capi.lua URL -- RATE CONNECTIONS [PIXELS] [TAG] [FIRST]
--
-- Pacing is wrk's delay() hook, as in bench/steady.lua, but against the clock:
-- each request takes the next send slot, 1000/RATE ms after the previous one,
-- and its connection waits for that slot.  With 20 connections at 2,000/s
-- that is each connection ~10 ms apart, like steady.lua's fixed 10 ms, minus
-- the answer time and timer slack that make a fixed delay fall ~5% short.
-- A thread that falls behind (too few connections) does not burst to catch
-- up.  RATE is per wrk thread (capi.sh runs one).  Without LuaJIT's ffi (no
-- clock), it falls back to a fixed CONNECTIONS*1000/RATE ms delay.
--
-- PIXELS (default 10) pixel ids are 1000000001, 1000000002, ... (FIRST, default 0, shifts them
-- up); PIXELS 0 means
-- a random 10-digit pixel id per request (a flood of unknown pixels). RATE 0
-- means unpaced: every connection sends its next request as soon as the answer
-- is in. TAG (default "r") and the thread number go into every event_id, so no
-- two requests of a run share one.
--
-- done() prints one machine-readable line for bench/capi.sh:
--   capi-bench: requests=N p50_us=.. p90_us=.. p99_us=.. p999_us=.. max_us=.. mean_us=.. errors=N non2xx=N

local rate = 2000
local connections = 20
local pixels = 10
local tag = "r"
local first = 0
local counter = 0
local thread_id = 0

-- setup() runs in the main Lua state, once per wrk thread: number them.
local next_thread_id = 1
function setup(thread)
    thread:set("thread_id", next_thread_id)
    next_thread_id = next_thread_id + 1
end

-- A monotonic clock in ms, if LuaJIT's ffi is there.
local now_ms = nil
local has_ffi, ffi = pcall(require, "ffi")
if has_ffi then
    ffi.cdef [[
        typedef struct { long tv_sec; long tv_nsec; } capi_bench_timespec;
        int clock_gettime(int clock_id, capi_bench_timespec *tp);
    ]]
    local ts = ffi.new("capi_bench_timespec")
    local CLOCK_MONOTONIC = 1
    now_ms = function()
        ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
        return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
    end
end

local interval_ms, fixed_delay_ms, next_slot

function init(args)
    rate = tonumber(args[1]) or rate
    connections = tonumber(args[2]) or connections
    pixels = tonumber(args[3]) or pixels
    tag = args[4] or tag
    first = tonumber(args[5]) or 0
    if rate <= 0 then
        -- Unpaced: without a delay() hook wrk sends at once.
        delay = nil
        return
    end
    interval_ms = 1000 / rate
    fixed_delay_ms = math.max(1, math.floor(connections * 1000 / rate + 0.5))
end

local fixed = "&event=Purchase&evat_value=19.99&evat_currency=USD"
    .. "&usat_em=jane.doe%40example.com&usat_ph=%2B1%20650%20555%201212"
    .. "&url=https%3A%2F%2Fshop.example.com%2Fcheckout%3Ffbclid%3DAbC123"

function request()
    counter = counter + 1
    local pixel
    if pixels > 0 then
        pixel = 1000000001 + first + (counter % pixels)
    else
        pixel = string.format("%.0f", math.random(1000000000, 9999999999))
    end
    local path = "/p.gif?pixel_id=" .. pixel .. "&event_id=" .. tag .. "-" .. thread_id .. "-" .. counter .. fixed
    return wrk.format("GET", path)
end

-- Milliseconds this connection waits before its next request.  wrk takes
-- whole ms, so a request may leave up to 1 ms before its slot; the slots
-- themselves, and so the rate, stay exact.
function delay()
    if not now_ms then
        return fixed_delay_ms
    end
    local now = now_ms()
    if not next_slot or next_slot < now then
        next_slot = now
    end
    local wait = next_slot - now
    next_slot = next_slot + interval_ms
    return math.floor(wait)
end

function done(summary, latency, requests)
    local e = summary.errors
    local errors = e.connect + e.read + e.write + e.timeout
    io.write(string.format(
        "capi-bench: requests=%d p50_us=%d p90_us=%d p99_us=%d p999_us=%d max_us=%d mean_us=%.0f errors=%d non2xx=%d\n",
        summary.requests, latency:percentile(50), latency:percentile(90), latency:percentile(99),
        latency:percentile(99.9), latency.max, latency.mean, errors, e.status))
end
