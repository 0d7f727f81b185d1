# Automatic downgrade: a version that fails to render (bad JSON, a template error) or fails
# dynpage_guard is replaced by the previous production version, served with source=fallback,
# kept out of caches, logged once at alert with both versions, and retried after the TTL.
use t::TestDynpage;

plan 'no_plan';
run_tests();

__DATA__

=== TEST 1: malformed JSON in the newest page version: the previous version is served, once logged at alert
--- redis
HSET dynpage:page:/a 1000 '{"template":"good one"}'
HSET dynpage:page:/a 2000 '{"template":"broken",'
--- config
dynpage_debug_header on;
location / { dynpage_page $uri; }
--- request eval
["GET /a", "GET /a"]
--- response_body eval
["good one", "good one"]
--- response_headers eval
["X-Dynpage: variant=production; version=1000; source=fallback\nCache-Control: private, no-store",
 "X-Dynpage: variant=production; version=1000; source=fallback"]
--- error_log eval
qr/\[alert\].*dynpage: page "\/a" version 2000 failed: snapshot is not valid JSON.*; serving version 1000 instead/
--- grep_error_log eval
qr/\[\w+\] .*?page "\/a".*?failed.*/
--- grep_error_log_out eval
qr/\A\[alert\] [^\n]*dynpage: page "\/a" version 2000 failed: snapshot is not valid JSON[^\n]*; serving version 1000 instead[^\n]*\n\z/



=== TEST 2: a template release that fails to render falls back to the template's previous version; the fix is seen after the TTL
--- redis
HSET dynpage:tpl:t 100 'v1 {{ title }}'
HSET dynpage:tpl:t 200 'v2 {{ title.missing }}'
HSET dynpage:page:/p 1000 '{"template":{"name":"t"},"data":{"title":"T"}}'
--- config
dynpage_cache_ttl 100ms;
dynpage_debug_header on;
location / { dynpage_page $uri; }
location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/; }
--- request eval
["GET /p", "POST /ctl/redis\nHSET dynpage:tpl:t 300 'v3 {{ title }}'", "GET /ctl/sleep/150", "GET /p"]
--- response_body_like eval
["^v1 T\$", "^1\n\$", "^slept\n\$", "^v3 T\$"]
--- response_headers eval
["X-Dynpage: variant=production; version=1000; source=fallback", "", "",
 "X-Dynpage: variant=production; version=1000; source=redis"]
--- error_log eval
qr/\[alert\].*dynpage: page "\/p" version 1000 \(template "t" version 200\) failed: render failed: .*; serving version 1000 \(template "t" version 100\) instead/



=== TEST 3: dynpage_guard: an output without the marker or too short falls back; a good one is served as is
--- redis
HSET dynpage:page:/g 1000 '{"template":"<html>full page with footer</html>"}'
HSET dynpage:page:/g 2000 '{"template":"<html>cut"}'
HSET dynpage:page:/m 1000 '{"template":"<html>full page with footer</html>"}'
HSET dynpage:page:/m 2000 '{"template":"<html>long enough, but cut before its end"}'
HSET dynpage:page:/ok 1000 '{"template":"<html>fine and long</html>"}'
--- config
dynpage_debug_header on;
dynpage_guard min_bytes=10 contains=</html>;
location / { dynpage_page $uri; }
location /off/ { dynpage_guard off; dynpage_page /g; }
--- pipelined_requests eval
["GET /g", "GET /m", "GET /ok", "GET /off/"]
--- response_body eval
["<html>full page with footer</html>", "<html>full page with footer</html>", "<html>fine and long</html>",
 "<html>cut"]
--- response_headers eval
["X-Dynpage: variant=production; version=1000; source=fallback",
 "X-Dynpage: variant=production; version=1000; source=fallback",
 "X-Dynpage: variant=production; version=1000; source=redis",
 "X-Dynpage: variant=production; version=2000; source=l1"]
--- error_log eval
[qr/\[alert\].*page "\/g" version 2000 failed: output is 9 bytes, under dynpage_guard min_bytes=10; serving version 1000 instead/,
 qr/\[alert\].*page "\/m" version 2000 failed: output does not contain dynpage_guard contains="<\/html>"; serving version 1000 instead/]



=== TEST 4: nothing earlier renders: 500, logged once
--- redis
HSET dynpage:page:/only 1000 '{"template":"{{ nope.x }}"}'
--- config
location / { dynpage_page $uri; }
--- request eval
["GET /only", "GET /only"]
--- error_code eval
[500, 500]
--- grep_error_log eval
qr/\[\w+\] .*?page "\/only".*?failed.*/
--- grep_error_log_out eval
qr/\A\[error\] [^\n]*page "\/only" version 1000 failed: render failed: [^\n]*; no earlier version renders[^\n]*\n\z/



=== TEST 5: dynpage_guard needs known parameters
--- config
location / { dynpage_page $uri; dynpage_guard size=10; }
--- must_die
--- suppress_stderr
--- error_log eval
qr{\[emerg\] .*\Q"dynpage_guard" directive has an unknown parameter "size=10"\E}
