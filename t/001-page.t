# Page mode: version choice, scheduling, rollback pins, templates, includes, escaping,
# headers, methods, bad input.
use t::TestDynpage;

plan 'no_plan';
run_tests();

__DATA__

=== TEST 1: a published page is rendered from its production version
--- redis
HSET dynpage:page:/a 1000 '{"template":"<h1>{{ title }}</h1>","data":{"title":"Hello"}}'
--- config
location = /a { dynpage_page /a; }
--- request
GET /a
--- response_body: <h1>Hello</h1>
--- response_headers
Content-Type: text/html; charset=utf-8
Cache-Control: public, max-age=5
Last-Modified: Thu, 01 Jan 1970 00:00:01 GMT
!X-Dynpage
--- no_error_log
[error]



=== TEST 2: the greatest version that is live wins; a future version is not served yet
--- redis
HSET dynpage:page:/a 1000 '{"template":"one"}'
HSET dynpage:page:/a 2000 '{"template":"two"}'
HSET dynpage:page:/a {now+600000} '{"template":"future"}'
--- config
location / { dynpage_page $uri; }
--- request
GET /a
--- response_body: two



=== TEST 3: a scheduled version goes live by itself at its time, even with a long TTL
--- redis
HSET dynpage:page:/s 1000 '{"template":"before"}'
--- config
dynpage_cache_ttl 60s;
dynpage_debug_header on;
location /s { dynpage_page $uri; }
location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/; }
--- request eval
["POST /ctl/redis\nHSET dynpage:page:/s {now+2500} '{\"template\":\"after\"}'",
 "GET /s", "GET /ctl/sleep/2700", "GET /s"]
--- response_body eval
["1\n", "before", "slept\n", "after"]
--- response_headers_like eval
["", "X-Dynpage: variant=production; version=1000; source=redis", "",
 "X-Dynpage: variant=production; version=(?!1000;)\\d+; source=redis"]



=== TEST 4: a rollback pin selects an older version
--- redis
HSET dynpage:page:/a 1000 '{"template":"one"}'
HSET dynpage:page:/a 2000 '{"template":"two"}'
HSET dynpage:rollback page:/a 1000
--- config
location / { dynpage_page $uri; }
--- request
GET /a
--- response_body: one



=== TEST 5: a pin to a missing version is logged and ignored
--- redis
HSET dynpage:page:/a 1000 '{"template":"one"}'
HSET dynpage:page:/a 2000 '{"template":"two"}'
HSET dynpage:rollback page:/a 1500
--- config
location / { dynpage_page $uri; }
--- request
GET /a
--- response_body: two
--- error_log
page "/a": rollback pin to missing version 1500 ignored



=== TEST 6: a named template uses its production version; an exact version stays fixed
--- redis
HSET dynpage:tpl:item 1000 'old {{ n }}'
HSET dynpage:tpl:item 2000 'new {{ n }}'
HSET dynpage:page:/follow 1000 '{"template":{"name":"item"},"data":{"n":1}}'
HSET dynpage:page:/fixed 1000 '{"template":{"name":"item","version":1000},"data":{"n":2}}'
--- config
location / { dynpage_page $uri; }
--- request eval
["GET /follow", "GET /fixed"]
--- response_body eval
["new 1", "old 2"]
--- response_headers_like eval
["Last-Modified: Thu, 01 Jan 1970 00:00:02 GMT", "Last-Modified: Thu, 01 Jan 1970 00:00:01 GMT"]



=== TEST 7: includes come from the store, transitively
--- redis
HSET dynpage:tpl:banner 1000 '[banner {% include "inner" %}]'
HSET dynpage:tpl:inner 1000 'inner for {{ page.key }}'
HSET dynpage:page:/home 1000 '{"template":"<body>{% include \"banner\" %} {{ t }}</body>","data":{"t":"x"}}'
--- config
location / { dynpage_page $uri; }
--- request
GET /home
--- response_body: <body>[banner inner for /home] x</body>



=== TEST 8: a missing include is a 500 with one log line naming key, version and cause
--- redis
HSET dynpage:page:/home 1000 '{"template":"{% include \"nope\" %}"}'
--- config
location / { dynpage_page $uri; }
--- request
GET /home
--- error_code: 500
--- error_log
dynpage: page "/home" version 1000 failed: include failed: template "nope" does not exist; no earlier version renders



=== TEST 9: output is HTML-escaped by default, | raw writes as-is
--- redis
HSET dynpage:page:/e 1000 '{"template":"{{ s }}|{{ s | raw }}","data":{"s":"<a href=\"x\">&\'</a>"}}'
--- config
location / { dynpage_page $uri; }
--- request
GET /e
--- response_body: &lt;a href=&quot;x&quot;&gt;&amp;&#x27;&lt;/a&gt;|<a href="x">&'</a>



=== TEST 10: no such page is a 404 (and error_page applies)
--- config
location / { dynpage_page $uri; error_page 404 /404.txt; }
location = /404.txt { return 404 "custom not found\n"; }
--- request
GET /missing
--- error_code: 404
--- response_body
custom not found
--- error_log
dynpage: page "/missing" not found: no such page



=== TEST 11: a page whose only version is scheduled is a 404 until then
--- redis
HSET dynpage:page:/later {now+600000} '{"template":"soon"}'
--- config
location / { dynpage_page $uri; }
--- request
GET /later
--- error_code: 404
--- error_log
page has no live version



=== TEST 12: methods other than GET and HEAD get 405
--- redis
HSET dynpage:page:/a 1000 '{"template":"one"}'
--- config
location / { dynpage_page $uri; }
--- request
POST /a
hello
--- error_code: 405



=== TEST 13: HEAD sends the headers without the body
--- redis
HSET dynpage:page:/a 1000 '{"template":"one"}'
--- config
location / { dynpage_page $uri; }
--- request
HEAD /a
--- response_body:
--- response_headers
Content-Length: 3



=== TEST 14: If-None-Match matching the ETag gives 304 without a body; others get 200
--- redis
HSET dynpage:page:/a 1000 '{"template":"one"}'
--- config
location /a { dynpage_page /a; }
location /any { proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/a; proxy_set_header If-None-Match "*"; }
location /other { proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/a; proxy_set_header If-None-Match '"0000000000000000", W/"1"'; }
--- request eval
["GET /any", "GET /other"]
--- error_code eval
[304, 200]
--- response_body eval
["", "one"]
--- response_headers_like eval
['ETag: "[0-9a-f]{16}"', 'ETag: "[0-9a-f]{16}"']



=== TEST 15: If-Modified-Since at or after Last-Modified gives 304
--- redis
HSET dynpage:page:/a 1000 '{"template":"one"}'
--- config
location / { dynpage_page $uri; }
--- more_headers
If-Modified-Since: Thu, 01 Jan 1970 00:00:01 GMT
--- request
GET /a
--- error_code: 304



=== TEST 16: X-Dynpage, content type and max-age follow the directives
--- redis
HSET dynpage:page:/a 1000 '{"template":"one"}'
--- config
dynpage_debug_header on;
dynpage_max_age 60s;
location / { dynpage_page $uri; dynpage_content_type "text/plain; charset=utf-8"; }
--- request
GET /a
--- response_headers
Content-Type: text/plain; charset=utf-8
Cache-Control: public, max-age=60
X-Dynpage: variant=production; version=1000; source=redis



=== TEST 17: malformed snapshot JSON is a 500 with key, version and cause in the log
--- redis
HSET dynpage:page:/bad 1000 '{"template": "x", '
--- config
location / { dynpage_page $uri; }
--- request
GET /bad
--- error_code: 500
--- error_log eval
qr/dynpage: page "\/bad" version 1000 failed: snapshot is not valid JSON: .*line 1.*; no earlier version renders/



=== TEST 18: a template with a syntax error is a 500 naming line and column
--- redis
HSET dynpage:tpl:broken 1000 'ok {{ x '
HSET dynpage:page:/b 1000 '{"template":{"name":"broken"}}'
--- config
location / { dynpage_page $uri; }
--- request
GET /b
--- error_code: 500
--- error_log eval
qr/page "\/b" version 1000 \(template "broken" version 1000\) failed: template "broken" version 1000: template does not compile: .* at line 1, column \d+/



=== TEST 19: a key with bytes that are not UTF-8 is a 404 with one log line; odd but valid keys work
--- redis
HSET "dynpage:page:/a b\"c" 1000 '{"template":"spaced {{ page.key }}"}'
--- config
location / { dynpage_page $uri; }
--- request eval
["GET /%FF%FE", "GET /a%20b%22c"]
--- error_code eval
[404, 200]
--- response_body_like eval
["404 Not Found", "spaced /a b&quot;c"]
--- grep_error_log: is not UTF-8, answering 404
--- grep_error_log_out
is not UTF-8, answering 404



=== TEST 20: dynpage_prefix selects another key space
--- http_config
dynpage_prefix shop1:;
--- redis
HSET shop1:page:/a 1000 '{"template":"shop one"}'
HSET dynpage:page:/a 1000 '{"template":"default"}'
--- config
location / { dynpage_page $uri; }
--- request
GET /a
--- response_body: shop one



=== TEST 21: the key is a complex value
--- redis
HSET dynpage:page:item:42 1000 '{"template":"item {{ page.key }}"}'
--- config
location /item { dynpage_page item:$arg_id; }
--- request
GET /item?id=42
--- response_body: item item:42



=== TEST 22: a render error (missing variable) is a 500 naming the page version
--- redis
HSET dynpage:page:/r 1000 '{"template":"{{ nope.deeper }}"}'
--- config
location / { dynpage_page $uri; }
--- request
GET /r
--- error_code: 500
--- error_log eval
qr/dynpage: page "\/r" version 1000 failed: render failed: /
