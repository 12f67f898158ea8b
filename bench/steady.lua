-- wrk script for a steady request rate: each connection waits 10 ms between
-- requests, so 20 connections send ~2,000 requests/s (bench/run.sh, Firehose row).
function delay()
    return 10
end
