# A panic never reaches nginx: the module built with the test-only feature `test-panic`
# (`make t-panic`) panics on purpose for two page keys; the worker logs it once at alert,
# answers 500 and keeps serving, its other pages and connections untouched. Skipped unless
# TEST_DYNPAGE_PANIC_BUILD is set (the module under test must be that build).
use t::TestDynpage;

BEGIN {
    unless ($ENV{TEST_DYNPAGE_PANIC_BUILD}) {
        Test::More::plan(skip_all => 'needs the test-panic build of the module (make t-panic)');
    }
}

plan 'no_plan';
run_tests();

__DATA__

=== TEST 1: a panic in the content handler is a 500 logged at alert with the key; the same worker serves the next requests
--- redis
HSET dynpage:page:/ok 1000 '{"template":"still {{ w }}","data":{"w":"here"}}'
--- config
location / { dynpage_page $uri; }
--- request eval
["GET /dynpage-test-panic", "GET /ok", "GET /dynpage-test-panic", "GET /ok"]
--- error_code eval
[500, 200, 500, 200]
--- response_body_like eval
[qr/500 Internal Server Error/, qr/\Astill here\z/, qr/500/, qr/\Astill here\z/]
--- error_log eval
qr/\[alert\] .*dynpage: panic in the content handler for page "\/dynpage-test-panic": test-panic: the content handler panics on purpose at src\/handler.rs:\d+/
--- no_error_log
worker process exited
signal 6



=== TEST 2: a panic in a request resumed after its fetch is a 500, the request is finalized, other requests go on (TTL 0: every request fetches the meta, so each resumes)
--- redis
HSET dynpage:page:/dynpage-test-panic-resumed 1000 '{"template":"never"}'
HSET dynpage:page:/ok 1000 '{"template":"fine"}'
--- config
location / { dynpage_page $uri; dynpage_cache_ttl 0; }
--- request eval
["GET /dynpage-test-panic-resumed", "GET /ok", "GET /dynpage-test-panic-resumed"]
--- error_code eval
[500, 200, 500]
--- response_body_like eval
[qr/500/, qr/\Afine\z/, qr/500/]
--- error_log
dynpage: panic in resuming a request for page "/dynpage-test-panic-resumed": test-panic: a resumed request panics on purpose
--- no_error_log
worker process exited
signal 6
