# dynpage_background_update: past its TTL, an entry that no event outdated serves for one more TTL
# while one background fetch refreshes it; nobody waits for the refresh. Events still drop
# entries at once.
use t::TestDynpage;

plan 'no_plan';
run_tests();

__DATA__

=== TEST 1: past the TTL, the next request is answered at once from the cached entry (UPDATING) while one background fetch refreshes it; the one after gets the new version (its new snapshot fetched: MISS; the cold page's came with its meta, the refresh brings none)
--- http_config
dynpage_cache_ttl 300ms;
dynpage_background_update on;
--- redis
HSET dynpage:page:/a 1000 '{"template":"one"}'
--- config
location / { dynpage_page $uri; add_header X-Cache $dynpage_cache_status always; }
location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/; }
--- log_level: debug
--- pipelined_requests eval
["GET /a", "GET /a",
 "POST /ctl/redis\nHSET dynpage:page:/a 2000 '{\"template\":\"two\"}'",
 "GET /ctl/sleep/400", "GET /a", "GET /ctl/sleep/100", "GET /a", "GET /a"]
--- response_body_like eval
["^one\$", "^one\$", "^1\n", "^slept\n\$", "^one\$", "^slept\n\$", "^two\$", "^two\$"]
--- response_headers eval
["X-Cache: MISS", "X-Cache: HIT", "", "", "X-Cache: UPDATING", "", "X-Cache: MISS", "X-Cache: HIT"]
--- grep_error_log eval
qr/fetching \d+ keys? for "\/a"|fetched "M[^"]*"/
--- grep_error_log_out
fetching 1 key for "/a"
fetched "M\u{1}page:/a"
fetched "M\u{1}page:/a"
fetching 1 key for "/a"
--- no_error_log
[error]



=== TEST 2: an event still drops the entry at once: the next request waits for the new version (MISS), never UPDATING
--- http_config
dynpage_cache_ttl 60s;
dynpage_background_update on;
--- redis
HSET dynpage:page:/a 1000 '{"template":"one"}'
--- config
location / { dynpage_page $uri; add_header X-Cache $dynpage_cache_status always; }
location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/; }
--- pipelined_requests eval
["GET /a",
 "POST /ctl/redis\nHSET dynpage:page:/a 2000 '{\"template\":\"two\"}'\nPUBLISH dynpage:events dynpage:page:/a",
 "GET /ctl/sleep/200", "GET /a"]
--- response_body_like eval
["^one\$", "^1\n", "^slept\n\$", "^two\$"]
--- response_headers eval
["X-Cache: MISS", "", "", "X-Cache: MISS"]



=== TEST 3: past twice the TTL (the bound), the request waits for a fetch (MISS)
--- http_config
dynpage_cache_ttl 100ms;
dynpage_background_update on;
--- redis
HSET dynpage:page:/a 1000 '{"template":"one"}'
--- config
location / { dynpage_page $uri; add_header X-Cache $dynpage_cache_status always; }
location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/; }
--- pipelined_requests eval
["GET /a",
 "POST /ctl/redis\nHSET dynpage:page:/a 2000 '{\"template\":\"two\"}'",
 "GET /ctl/sleep/300", "GET /a"]
--- response_body_like eval
["^one\$", "^1\n", "^slept\n\$", "^two\$"]
--- response_headers eval
["X-Cache: MISS", "", "", "X-Cache: MISS"]



=== TEST 4: off by default: past the TTL, the request waits for the new version (MISS)
--- http_config
dynpage_cache_ttl 100ms;
--- redis
HSET dynpage:page:/a 1000 '{"template":"one"}'
--- config
location / { dynpage_page $uri; add_header X-Cache $dynpage_cache_status always; }
location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/; }
--- pipelined_requests eval
["GET /a",
 "POST /ctl/redis\nHSET dynpage:page:/a 2000 '{\"template\":\"two\"}'",
 "GET /ctl/sleep/150", "GET /a"]
--- response_body_like eval
["^one\$", "^1\n", "^slept\n\$", "^two\$"]
--- response_headers eval
["X-Cache: MISS", "", "", "X-Cache: MISS"]



=== TEST 5: dynpage_background_update takes on or off
--- config
location / { dynpage_page $uri; dynpage_background_update sometimes; }
--- must_die
--- suppress_stderr
--- error_log eval
qr/\[emerg\] .*"dynpage_background_update" directive must be "on" or "off"/
