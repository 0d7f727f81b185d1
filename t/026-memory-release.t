# Memory the caches let go of goes back to the system: once the worker cache and the kept
# outputs have dropped enough (an eighth of their bounds, at least 256 KB), a fetch thread
# returns the allocator's free pages (malloc_trim), at most once a second, also when idle.
use t::TestDynpage;

plan 'no_plan';
run_tests();

__DATA__

=== TEST 1: a tail of 3,000 pages through 64k caches lets go of more than 256 KB: a fetch thread returns the free memory, and says so at debug level
--- http_config
dynpage_cache_size 64k;
dynpage_output_cache_size 64k;
--- config
dynpage_cache_ttl 60s;
location / { dynpage_page $uri; }
location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/; proxy_read_timeout 60s; }
--- timeout: 60
--- log_level: debug
--- pipelined_requests eval
["GET /ctl/burst?prefix=/gone/&count=3000&rounds=1", "GET /ctl/sleep/1500"]
--- response_body_like eval
["^404=3000\n\$", "slept"]
--- error_log eval
qr/returned free memory to the system: \d+ KB let go of since the last time, in \d+ us/
--- no_error_log
[error]



=== TEST 2: a worker whose caches let go of little does not release anything
--- http_config
dynpage_cache_size 64k;
dynpage_output_cache_size 64k;
--- redis
HSET dynpage:page:/a 1000 '{"template":"a"}'
--- config
dynpage_cache_ttl 60s;
location / { dynpage_page $uri; }
location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/; }
--- log_level: debug
--- pipelined_requests eval
["GET /a", "GET /a", "GET /ctl/sleep/1500"]
--- response_body_like eval
["^a\$", "^a\$", "slept"]
--- no_error_log
returned free memory
[error]
