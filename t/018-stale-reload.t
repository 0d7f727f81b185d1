# Stale serving survives a reload: the last good production output of each page is kept in the
# module's shared memory zone, so new workers, whose caches start empty, still serve it while
# no source answers (within dynpage_stale_ttl). On the code before the zone these were 503s.
use t::TestDynpage;

master_on();
workers(1);
plan 'no_plan';
run_tests();

__DATA__

=== TEST 1: Redis frozen, pages served stale, then nginx -s reload: the new worker serves them stale too; a page never served is a 503
--- redis
HSET dynpage:page:/a 1000 '{"template":"page {{ n }}","data":{"n":1}}'
HSET dynpage:page:/b 1000 '{"template":"other"}'
--- config
dynpage_debug_header on;
dynpage_cache_ttl 100ms;
location / { dynpage_page $uri; }
location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/; }
--- request eval
["GET /a", "GET /ctl/freeze", "GET /ctl/sleep/200", "GET /a", "GET /ctl/reload", "GET /ctl/sleep/800",
 "GET /a", "GET /a", "GET /b", "GET /ctl/thaw"]
--- error_code eval
[200, 200, 200, 200, 200, 200, 200, 200, 503, 200]
--- response_headers_like eval
["X-Dynpage: variant=production; version=1000; source=redis", "", "",
 "X-Dynpage: variant=production; version=1000; source=stale", "", "",
 "X-Dynpage: variant=production; version=1000; source=stale",
 "X-Dynpage: variant=production; version=1000; source=stale", "", ""]
--- response_body_like eval
["^page 1\$", "", "", "^page 1\$", "", "", "^page 1\$", "^page 1\$", "503", ""]
--- timeout: 10



=== TEST 2: dimension mode: each set of data keys keeps its own output across a reload
--- redis
SET item:1 '{"t":"one"}'
SET item:2 '{"t":"two"}'
HSET dynpage:tpl:item 1000 '<p>{{ d.t }} {{ request.device }}</p>'
--- config
dynpage_debug_header on;
dynpage_cache_ttl 100ms;
location /p {
    dynpage_template item;
    dynpage_var device $arg_device;
    dynpage_data d item:$arg_id required;
}
location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/; }
--- request eval
["GET /p?id=1&device=pc", "GET /p?id=2&device=pc", "GET /p?id=1&device=tv", "GET /ctl/freeze",
 "GET /ctl/reload", "GET /ctl/sleep/800",
 "GET /p?id=2&device=pc", "GET /p?id=1&device=pc", "GET /p?id=1&device=tv", "GET /p?id=3&device=pc", "GET /ctl/thaw"]
--- error_code eval
[200, 200, 200, 200, 200, 200, 200, 200, 200, 503, 200]
--- response_body_like eval
["^<p>one pc</p>\$", "^<p>two pc</p>\$", "^<p>one tv</p>\$", "", "", "",
 "^<p>two pc</p>\$", "^<p>one pc</p>\$", "^<p>one tv</p>\$", "503", ""]
--- timeout: 10



=== TEST 3: what the zone keeps serves for dynpage_stale_ttl only
--- redis
HSET dynpage:page:/a 1000 '{"template":"kept"}'
--- config
dynpage_cache_ttl 100ms;
dynpage_stale_ttl 1s;
location / { dynpage_page $uri; }
location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/; }
--- request eval
["GET /a", "GET /ctl/freeze", "GET /ctl/reload", "GET /ctl/sleep/600", "GET /a", "GET /ctl/sleep/900", "GET /a", "GET /ctl/thaw"]
--- error_code eval
[200, 200, 200, 200, 200, 200, 503, 200]
--- response_body_like eval
["^kept\$", "", "", "", "^kept\$", "", "503", ""]
--- timeout: 10



=== TEST 4: dynpage_zone_size has a minimum and is http-level only
--- http_config
dynpage_zone_size 64k;
--- config
location / { dynpage_page $uri; }
--- must_die
--- suppress_stderr
--- error_log eval
qr/\[emerg\] .*"dynpage_zone_size" directive is too small: the minimum is 1m/
