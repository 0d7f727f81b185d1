# Dimension mode (product detail pages): one template plus one Redis key per dimension, each
# cached and invalidated on its own; page modules (`include … with`) that fail are left out;
# request values (`dynpage_var`) as `request.*`.
use t::TestDynpage;

plan 'no_plan';
run_tests();

__DATA__

=== TEST 1: a product page from three dimensions and two modules; page.* and request.* are there; the second request is an L1 hit
--- redis
HSET dynpage:tpl:item 1000 '<h1>{{ base.title }}</h1>{% include "shopcard" with shop %}{% include "desc" with desc %}|{{ page.key }}@{{ page.version }} {{ page.variant }}|{{ request.device }}'
HSET dynpage:tpl:shopcard 1000 '<b>{{ name }}</b>'
HSET dynpage:tpl:desc 1000 '{{ html | raw }}'
SET item:1:base '{"title":"Kettle <1L>"}'
SET shop:9 '{"name":"Acme"}'
SET item:1:desc:pc '{"html":"<p>steel</p>"}'
--- config
dynpage_debug_header on;
location /item {
    dynpage_template item;
    dynpage_var device $arg_device;
    dynpage_data base item:$arg_id:base required;
    dynpage_data shop shop:$arg_shop;
    dynpage_data desc item:$arg_id:desc:$arg_device;
}
--- request eval
["GET /item?id=1&shop=9&device=pc", "GET /item?id=1&shop=9&device=pc"]
--- response_body eval
["<h1>Kettle &lt;1L&gt;</h1><b>Acme</b><p>steel</p>|item\@1000 production|pc",
 "<h1>Kettle &lt;1L&gt;</h1><b>Acme</b><p>steel</p>|item\@1000 production|pc"]
--- response_headers eval
["X-Dynpage: variant=production; version=1000; source=redis\nCache-Control: public, max-age=5",
 "X-Dynpage: variant=production; version=1000; source=l1"]
--- no_error_log
[warn]
[error]



=== TEST 2: all dimensions of a request are read together, once: one STRLEN and one GETRANGE per key, nothing on an L1 hit
--- redis
HSET dynpage:tpl:item 1000 '{{ a.v }}{{ b.v }}{{ c.v }}'
SET a:1 '{"v":"A"}'
SET b:1 '{"v":"B"}'
SET c:1 '{"v":"C"}'
CONFIG RESETSTAT
--- config
location /p {
    dynpage_template item;
    dynpage_data a a:$arg_id;
    dynpage_data b b:$arg_id;
    dynpage_data c c:$arg_id;
}
location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/; }
--- request eval
["GET /p?id=1", "GET /p?id=1", "POST /ctl/redis\nINFO commandstats"]
--- response_body_like eval
["^ABC\$", "^ABC\$", "cmdstat_strlen:calls=3,.*cmdstat_getrange:calls=3,|cmdstat_getrange:calls=3,.*cmdstat_strlen:calls=3,"]



=== TEST 3: a shop change re-renders every product of that shop on the next request; no product key is touched (events, not the TTL)
--- redis
HSET dynpage:tpl:item 1000 '{{ base.title }} sold by {{ shop.name }}'
SET item:1:base '{"title":"Kettle"}'
SET item:2:base '{"title":"Toaster"}'
SET shop:9 '{"name":"Acme"}'
--- config
dynpage_cache_ttl 1h;
location /item {
    dynpage_template item;
    dynpage_data base item:$arg_id:base required;
    dynpage_data shop shop:$arg_shop;
}
location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/; }
--- request eval
["GET /item?id=1&shop=9", "GET /item?id=2&shop=9",
 "POST /ctl/dynpagectl\ndata\nput\nshop:9\nfile:{\"name\":\"Bolt & Co\"}",
 "GET /ctl/sleep/200",
 "GET /item?id=1&shop=9", "GET /item?id=2&shop=9",
 "POST /ctl/redis\nOBJECT IDLETIME item:1:base"]
--- response_body_like eval
["^Kettle sold by Acme\$", "^Toaster sold by Acme\$", "^exit=0\nshop:9", "slept",
 "^Kettle sold by Bolt &amp; Co\$", "^Toaster sold by Bolt &amp; Co\$", "^\\d+"]



=== TEST 4: missing dimensions: null when optional (an empty key too, logged once), 404 when required
--- redis
HSET dynpage:tpl:item 1000 '[{{ base.title }}|{% if shop %}{{ shop.name }}{% else %}no shop{% endif %}]'
SET item:1:base '{"title":"Kettle"}'
--- config
location /item {
    dynpage_template item;
    dynpage_data base item:$arg_id:base required;
    dynpage_data shop $arg_shop;
}
location /shop {
    dynpage_template item;
    dynpage_data base item:1:base;
    dynpage_data shop $arg_shop required;
}
--- pipelined_requests eval
["GET /item?id=1&shop=shop:404", "GET /item?id=2&shop=shop:9", "GET /item?shop=shop:9", "GET /shop", "GET /item?id=1", "GET /item?id=1"]
--- response_body_like eval
["^\\[Kettle\\|no shop\\]\$", "404 Not Found", "404 Not Found", "404 Not Found", "^\\[Kettle\\|no shop\\]\$", "^\\[Kettle\\|no shop\\]\$"]
--- error_code eval
[200, 404, 404, 404, 200, 200]
--- grep_error_log eval
qr/\[(?:warn|info)\] [^\n]*?(?:the key is empty, rendered as null|not found: required dimension [^\n]*)/
--- grep_error_log_out eval
qr/^\[info\] [^\n]*page "\/item" not found: required dimension "base" \(key "item:2:base"\) does not exist[^\n]*
\[info\] [^\n]*page "\/item" not found: required dimension "base" \(key "item::base"\) does not exist[^\n]*
\[info\] [^\n]*page "\/shop" not found: required dimension "shop" \(key ""\) does not exist[^\n]*
\[warn\] [^\n]*page "\/item": dimension "shop" \(key ""\): the key is empty, rendered as null
$/s



=== TEST 5: a dimension that is not JSON, or over the size limit: null and one log line (a required one: TEST 14)
--- redis
HSET dynpage:tpl:item 1000 '[{{ base.title }}|{{ desc }}]'
SET item:1:base '{"title":"Kettle"}'
SET item:1:desc '{"html": oops'
SETRANGE item:2:desc 1048576 x
--- config
location /item {
    dynpage_template item;
    dynpage_data base item:$arg_id:base required;
    dynpage_data desc item:$arg_desc:desc;
}
--- pipelined_requests eval
["GET /item?id=1&desc=1", "GET /item?id=1&desc=1", "GET /item?id=1&desc=2"]
--- response_body_like eval
["^\\[Kettle\\|\\]\$", "^\\[Kettle\\|\\]\$", "^\\[Kettle\\|\\]\$"]
--- error_code eval
[200, 200, 200]
--- grep_error_log eval
qr/\[(?:warn|error)\] [^\n]*dynpage: page "\/item"[^\n]*/
--- grep_error_log_out eval
qr/^\[warn\] [^\n]*dimension "desc" \(key "item:1:desc"\): not JSON: [^\n]*, rendered as null[^\n]*
\[warn\] [^\n]*dimension "desc" \(key "item:2:desc"\): the value is 1048577 bytes, over the 1048576 byte limit, rendered as null[^\n]*
$/s



=== TEST 6: modules that are missing, fail to render or include themselves are left out, each logged once (a plain include that is missing: TEST 15)
--- redis
HSET dynpage:tpl:home 1000 '<{% include "banner" with hero %}|{% include "gone" with hero %}|{% include "bad" with hero %}|{% include "loop" with hero %}>'
HSET dynpage:tpl:banner 1000 'B:{{ title }}'
HSET dynpage:tpl:bad 1000 '{{ title.deeper }}'
HSET dynpage:tpl:loop 1000 'L{% include "loop" %}'
SET hero:1 '{"title":"Sale"}'
--- config
location /home {
    dynpage_template home;
    dynpage_data hero hero:1;
}
location /strict {
    dynpage_module_errors fail;
    dynpage_template home;
    dynpage_data hero hero:1;
}
--- pipelined_requests eval
["GET /home", "GET /home", "GET /strict"]
--- response_body_like eval
["^<B:Sale\\|\\|\\|>\$", "^<B:Sale\\|\\|\\|>\$", "500 Internal Server Error"]
--- error_code eval
[200, 200, 500]
--- grep_error_log eval
qr/\[(?:warn|error)\] [^\n]*(?:left out|failed): [^,;]*/
--- grep_error_log_out eval
qr/^\[warn\] [^\n]*page "\/home": module "gone" left out: template "gone" does not exist
\[warn\] [^\n]*page "\/home": module "bad" left out: render error: [^\n]*
\[warn\] [^\n]*page "\/home": module "loop" left out: render error: reached maximum include depth \(16\)
\[error\] [^\n]*page "\/strict" template "home" version 1000 failed: module "gone" failed: template "gone" does not exist
$/s



=== TEST 7: dynpage_var in page mode; a location with its own list replaces the inherited one
--- redis
HSET dynpage:page:/p 1000 '{"template":"{{ request.city }}/{{ request.device }}|{% for k, v in request %}{{ k }},{% endfor %}","data":{}}'
HSET dynpage:page:/q 1000 '{"template":"{{ request.city }}|{% for k, v in request %}{{ k }},{% endfor %}","data":{}}'
--- config
dynpage_var city $arg_city;
dynpage_var device $http_x_device;
location /p { dynpage_page /p; }
location /own { dynpage_var city "fixed:$arg_city"; dynpage_page /q; }
--- more_headers
X-Device: <m>
--- request eval
["GET /p?city=Beijing", "GET /own?city=Xi"]
--- response_body eval
["Beijing/&lt;m&gt;|city,device,", "fixed:Xi|city,"]



=== TEST 8: dynpage_data needs dynpage_template
--- config
location / { dynpage_data shop shop:1; }
--- must_die
--- suppress_stderr
--- error_log eval
qr{\[emerg\] .*\Q"dynpage_data" needs "dynpage_template" in the same location\E}



=== TEST 9: a dimension cannot be called page or request
--- config
location / { dynpage_template t; dynpage_data page p:1; }
--- must_die
--- suppress_stderr
--- error_log eval
qr{\[emerg\] .*\Q"dynpage_data" directive cannot name a dimension "page": templates already have "page"\E}



=== TEST 10: dynpage_page and dynpage_template exclude each other
--- config
location / { dynpage_page $uri; dynpage_template t; }
--- must_die
--- suppress_stderr
--- error_log eval
qr{\[emerg\] .*\Q"dynpage_template" directive cannot be used with "dynpage_page" in the same location\E}



=== TEST 11: only "required" may follow a dimension's key
--- config
location / { dynpage_template t; dynpage_data shop shop:1 optional; }
--- must_die
--- suppress_stderr
--- error_log eval
qr{\[emerg\] .*\Q"dynpage_data" directive has invalid parameter "optional": only "required" may follow the key\E}



=== TEST 12: dynpage_var names are identifiers: letters, digits and _, not starting with a digit
--- config
location / { dynpage_template t; dynpage_var 1city $arg_city; }
--- must_die
--- suppress_stderr
--- error_log eval
qr{\[emerg\] .*\Q"dynpage_var" directive has invalid name "1city": use letters, digits and "_", not starting with a digit\E}



=== TEST 13: dynpage_module_errors is skip or fail
--- config
location / { dynpage_template t; dynpage_module_errors ignore; }
--- must_die
--- suppress_stderr
--- error_log eval
qr{\[emerg\] .*\Q"dynpage_module_errors" directive must be "skip" or "fail"\E}



=== TEST 14: a required dimension that is not JSON: 500, logged once
--- redis
HSET dynpage:tpl:item 1000 '[{{ base.title }}|{{ desc }}]'
SET item:3:base '{"title":'
--- config
location /item {
    dynpage_template item;
    dynpage_data base item:$arg_id:base required;
    dynpage_data desc item:$arg_desc:desc;
}
--- request eval
["GET /item?id=3&desc=1", "GET /item?id=3&desc=1"]
--- response_body_like eval
["500 Internal Server Error", "500 Internal Server Error"]
--- error_code eval
[500, 500]
--- grep_error_log eval
qr/\[(?:warn|error)\] [^\n]*dynpage: page "\/item"[^\n]*/
--- grep_error_log_out eval
qr/^\[error\] [^\n]*page "\/item" its data failed: required dimension "base" \(key "item:3:base"\): not JSON: [^\n]*; no earlier version renders[^\n]*
$/s



=== TEST 15: a plain include that is missing fails the page (dimension mode), with one log line
--- redis
HSET dynpage:tpl:layout 1000 '{% include "footer" %}'
--- config
location /layout {
    dynpage_template layout;
}
--- request
GET /layout
--- response_body_like: 500 Internal Server Error
--- error_code: 500
--- grep_error_log eval
qr/\[(?:warn|error)\] [^\n]*(?:left out|failed): [^,;]*/
--- grep_error_log_out eval
qr/^\[error\] [^\n]*page "\/layout" template "layout" version 1000 failed: include failed: template "footer" does not exist
$/s
