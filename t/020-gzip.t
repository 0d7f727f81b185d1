# dynpage_gzip: a kept output is gzip-compressed once, by the first request that takes gzip,
# and its gzip bytes are served from then on with Content-Encoding, Vary: Accept-Encoding and
# an ETag of their own ("<hex>-gz"); a client that does not take gzip (q-values,
# identity;q=0, garbage in Accept-Encoding) gets the identity bytes, never a 406. nginx's gzip
# filter leaves the gzip bytes alone, and nginx's gunzip filter (a proxy here) turns them back
# into the page. dynpage_brotli likewise with brotli ("<hex>-br"; TEST 14-16).
use t::TestDynpage;

# TEST 11 reloads nginx.
master_on();
workers(1);
plan 'no_plan';
run_tests();

__DATA__

=== TEST 1: compressed once, for the first client that takes gzip; gzip clients get the gzip bytes with their own ETag and Vary, others the identity bytes with Vary
--- redis
HSET dynpage:page:/a 1000 '{"template":"<ul>{% for i in items %}<li>item {{ i }}</li>{% endfor %}</ul>","data":{"items":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20]}}'
--- config
dynpage_cache_ttl 60s;
location / { dynpage_page $uri; dynpage_gzip on; }
--- log_level: debug
--- pipelined_requests eval
["GET /a", "GET /a", "GET /a", "GET /a"]
--- more_headers eval
["Accept-Encoding: gzip, deflate, br", "Accept-Encoding: gzip", "", "Accept-Encoding: gzip"]
--- response_headers_like eval
["Content-Encoding: gzip\nVary: Accept-Encoding\nETag: \"[0-9a-f]{16}-gz\"\nContent-Length: \\d{2,3}",
 "Content-Encoding: gzip\nVary: Accept-Encoding\nETag: \"[0-9a-f]{16}-gz\"",
 "Content-Encoding: \nVary: Accept-Encoding\nETag: \"[0-9a-f]{16}\"\nContent-Length: 320",
 "Content-Encoding: gzip\nVary: Accept-Encoding\nETag: \"[0-9a-f]{16}-gz\""]
--- response_body_like eval
["^\x1f\x8b\x08", "^\x1f\x8b\x08", "^<ul><li>item 1</li>.*<li>item 20</li></ul>\$", "^\x1f\x8b\x08"]
--- grep_error_log eval
qr/rendered "\/a" version \d+|compressed "\/a" version \d+: \d+ bytes to|served the kept output/
--- grep_error_log_out
rendered "/a" version 1000
compressed "/a" version 1000: 320 bytes to
served the kept output
served the kept output
served the kept output
--- no_error_log
[error]



=== TEST 2: HEAD: the gzip bytes' headers and length (compressed by a HEAD too), no body; identity for a client that does not take gzip
--- redis
HSET dynpage:page:/a 1000 '{"template":"<ul>{% for i in items %}<li>item {{ i }}</li>{% endfor %}</ul>","data":{"items":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20]}}'
--- config
dynpage_cache_ttl 60s;
location / { dynpage_page $uri; dynpage_gzip on; }
--- request eval
["HEAD /a", "HEAD /a", "HEAD /a", "GET /a"]
--- more_headers eval
["Accept-Encoding: gzip", "", "Accept-Encoding: gzip", "Accept-Encoding: gzip"]
--- response_headers_like eval
["Content-Encoding: gzip\nVary: Accept-Encoding\nETag: \"[0-9a-f]{16}-gz\"\nContent-Length: \\d{2,3}",
 "Content-Encoding: \nVary: Accept-Encoding\nETag: \"[0-9a-f]{16}\"\nContent-Length: 320",
 "Content-Encoding: gzip\nVary: Accept-Encoding\nETag: \"[0-9a-f]{16}-gz\"\nContent-Length: \\d{2,3}",
 "Content-Encoding: gzip\nVary: Accept-Encoding\nETag: \"[0-9a-f]{16}-gz\"\nContent-Length: \\d{2,3}"]
--- response_body_like eval
["^\$", "^\$", "^\$", "^\x1f\x8b\x08"]
--- no_error_log
[error]



=== TEST 3: the gzip bytes are the page: nginx's gunzip (a proxy that takes gzip for a client that does not) gives back the identity bytes, at any dynpage_gzip_comp_level
--- redis
HSET dynpage:page:/a 1000 '{"template":"<ul>{% for i in items %}<li>item {{ i }}</li>{% endfor %}</ul>","data":{"items":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20]}}'
--- config
dynpage_cache_ttl 60s;
dynpage_gzip on;
location / { dynpage_page $uri; }
location /fast/ { dynpage_page /a; dynpage_gzip_comp_level 1; }
location /small/ { dynpage_page /a; dynpage_gzip_comp_level 9; }
location /gunzip/ {
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/;
    proxy_http_version 1.1;
    proxy_set_header Accept-Encoding gzip;
    gunzip on;
}
--- request eval
["GET /gunzip/a", "GET /gunzip/a", "GET /gunzip/fast/", "GET /gunzip/small/", "GET /a"]
--- more_headers eval
["", "", "", "", "Accept-Encoding: gzip"]
--- response_body_like eval
["^<ul><li>item 1</li><li>item 2</li>.*<li>item 20</li></ul>\$", "^<ul><li>item 1</li>.*<li>item 20</li></ul>\$",
 "^<ul><li>item 1</li>.*<li>item 20</li></ul>\$", "^<ul><li>item 1</li>.*<li>item 20</li></ul>\$", "^\x1f\x8b\x08"]
--- no_error_log
[error]



=== TEST 4: Accept-Encoding with q-values, identity;q=0 and garbage: gzip only where it is taken, identity (200, never 406) otherwise
--- redis
HSET dynpage:page:/a 1000 '{"template":"<p>{% for i in items %}{{ i }} {% endfor %}</p>","data":{"items":["aaaaaaaaaa","aaaaaaaaaa","aaaaaaaaaa","aaaaaaaaaa","aaaaaaaaaa","aaaaaaaaaa"]}}'
--- config
dynpage_cache_ttl 60s;
location / { dynpage_page $uri; dynpage_gzip on; }
--- pipelined_requests eval
["GET /a", "GET /a", "GET /a", "GET /a", "GET /a", "GET /a", "GET /a", "GET /a", "GET /a", "GET /a",
 "GET /a", "GET /a", "GET /a", "GET /a", "GET /a"]
--- more_headers eval
["Accept-Encoding: gzip;q=0",
 "Accept-Encoding: GZIP;Q=0.5",
 "Accept-Encoding: identity;q=0",
 "Accept-Encoding: gzip, identity;q=0",
 "Accept-Encoding: gzip;q=0, identity;q=0",
 "Accept-Encoding: deflate, gzip;q=1.0, *;q=0.5",
 "Accept-Encoding: br;q=1.0, deflate",
 "Accept-Encoding: gzip;q=0.0001",
 "Accept-Encoding: gzip;q=1.5",
 "Accept-Encoding: gzip ; q=0.001",
 "Accept-Encoding: ;;;,,,===\"gzip\"",
 "Accept-Encoding: gzipped, xgzip",
 "Accept-Encoding: \x01\x7f\xff garbage",
 "Accept-Encoding: " . ("a," x 700) . "gzip",
 "Accept-Encoding: deflate gzip;q=0"]
--- response_headers_like eval
["Content-Encoding: \nVary: Accept-Encoding", "Content-Encoding: gzip\nVary: Accept-Encoding",
 "Content-Encoding: \nVary: Accept-Encoding", "Content-Encoding: gzip\nVary: Accept-Encoding",
 "Content-Encoding: \nVary: Accept-Encoding", "Content-Encoding: gzip\nVary: Accept-Encoding",
 "Content-Encoding: \nVary: Accept-Encoding", "Content-Encoding: \nVary: Accept-Encoding",
 "Content-Encoding: \nVary: Accept-Encoding", "Content-Encoding: gzip\nVary: Accept-Encoding",
 "Content-Encoding: \nVary: Accept-Encoding", "Content-Encoding: \nVary: Accept-Encoding",
 "Content-Encoding: \nVary: Accept-Encoding", "Content-Encoding: \nVary: Accept-Encoding",
 "Content-Encoding: \nVary: Accept-Encoding"]
--- response_body_like eval
["^<p>(aaaaaaaaaa ){6}</p>\$", "^\x1f\x8b\x08", "^<p>(aaaaaaaaaa ){6}</p>\$", "^\x1f\x8b\x08",
 "^<p>(aaaaaaaaaa ){6}</p>\$", "^\x1f\x8b\x08", "^<p>(aaaaaaaaaa ){6}</p>\$", "^<p>(aaaaaaaaaa ){6}</p>\$",
 "^<p>(aaaaaaaaaa ){6}</p>\$", "^\x1f\x8b\x08", "^<p>(aaaaaaaaaa ){6}</p>\$", "^<p>(aaaaaaaaaa ){6}</p>\$",
 "^<p>(aaaaaaaaaa ){6}</p>\$", "^<p>(aaaaaaaaaa ){6}</p>\$", "^<p>(aaaaaaaaaa ){6}</p>\$"]
--- no_error_log
[error]



=== TEST 5: If-None-Match with the gzip ETag is a 304 for a client that takes gzip (with that ETag and Vary); a client that does not take gzip gets the identity bytes; the identity ETag revalidates too
--- redis
HSET dynpage:page:/a 1000 '{"template":"<p>{% for i in items %}{{ i }} {% endfor %}</p>","data":{"items":["aaaaaaaaaa","aaaaaaaaaa","aaaaaaaaaa","aaaaaaaaaa","aaaaaaaaaa","aaaaaaaaaa"]}}'
--- config
dynpage_cache_ttl 60s;
location / { dynpage_page $uri; dynpage_gzip on; }
location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/; }
--- request eval
["GET /ctl/conditional?uri=/a&ae=gzip&ae2=gzip", "GET /ctl/conditional?uri=/a&ae=gzip&ae2=gzip%2C+deflate",
 "GET /ctl/conditional?uri=/a&ae=gzip&ae2=", "GET /ctl/conditional?uri=/a&ae=gzip&ae2=gzip;q=0",
 "GET /ctl/conditional?uri=/a&ae=&ae2=gzip", "GET /ctl/conditional?uri=/a&ae=&ae2="]
--- response_body_like eval
["^200 (\"[0-9a-f]{16}-gz\") gzip \\d+, then 304 \\1 identity Accept-Encoding\$",
 "^200 (\"[0-9a-f]{16}-gz\") gzip \\d+, then 304 \\1 identity Accept-Encoding\$",
 "^200 (\"[0-9a-f]{16})-gz\" gzip \\d+, then 200 \\1\" identity Accept-Encoding\$",
 "^200 (\"[0-9a-f]{16})-gz\" gzip \\d+, then 200 \\1\" identity Accept-Encoding\$",
 "^200 (\"[0-9a-f]{16}\") identity 73, then 304 \\1 identity Accept-Encoding\$",
 "^200 (\"[0-9a-f]{16}\") identity 73, then 304 \\1 identity Accept-Encoding\$"]
--- no_error_log
[error]



=== TEST 6: gzip on in the same location: the gzip bytes are not compressed again (the gunzip proxy gets the page back in one step); gzip_vary on gives one Vary header
--- redis
HSET dynpage:page:/a 1000 '{"template":"<p>{% for i in items %}{{ i }} {% endfor %}</p>","data":{"items":["aaaaaaaaaa","aaaaaaaaaa","aaaaaaaaaa","aaaaaaaaaa","aaaaaaaaaa","aaaaaaaaaa"]}}'
--- config
dynpage_cache_ttl 60s;
gzip on;
gzip_min_length 1;
location / { dynpage_page $uri; dynpage_gzip on; }
location /vary/ { dynpage_page /a; dynpage_gzip on; gzip_vary on; }
location /gunzip/ {
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/;
    proxy_http_version 1.1;
    proxy_set_header Accept-Encoding gzip;
    gunzip on;
    gzip off;
}
--- log_level: debug
--- request eval
["GET /a", "GET /a", "GET /gunzip/a", "GET /vary/", "GET /vary/", "GET /a"]
--- more_headers eval
["Accept-Encoding: gzip", "Accept-Encoding: gzip", "", "Accept-Encoding: gzip", "", ""]
--- response_headers_like eval
["Content-Encoding: gzip\nVary: Accept-Encoding\nETag: \"[0-9a-f]{16}-gz\"\nContent-Length: \\d+",
 "Content-Encoding: gzip\nVary: Accept-Encoding\nETag: \"[0-9a-f]{16}-gz\"",
 "Content-Encoding: ",
 "Content-Encoding: gzip\nVary: Accept-Encoding\nETag: \"[0-9a-f]{16}-gz\"",
 "Content-Encoding: \nVary: Accept-Encoding\nETag: \"[0-9a-f]{16}\"",
 "Content-Encoding: \nVary: Accept-Encoding\nETag: \"[0-9a-f]{16}\""]
--- response_body_like eval
["^\x1f\x8b\x08", "^\x1f\x8b\x08", "^<p>(aaaaaaaaaa ){6}</p>\$", "^\x1f\x8b\x08", "^<p>(aaaaaaaaaa ){6}</p>\$",
 "^<p>(aaaaaaaaaa ){6}</p>\$"]
--- no_error_log
[error]



=== TEST 7: a page that is not kept (dynpage_output_cache off) is served identity: nginx's gzip filter compresses it where gzip is on (its weak ETag), dynpage compresses nothing
--- redis
HSET dynpage:page:/a 1000 '{"template":"<p>{% for i in items %}{{ i }} {% endfor %}</p>","data":{"items":["aaaaaaaaaa","aaaaaaaaaa","aaaaaaaaaa","aaaaaaaaaa","aaaaaaaaaa","aaaaaaaaaa"]}}'
--- config
dynpage_cache_ttl 60s;
dynpage_output_cache off;
dynpage_gzip on;
location /plain/ { dynpage_page /a; }
location /filter/ { dynpage_page /a; gzip on; gzip_min_length 1; }
--- log_level: debug
--- pipelined_requests eval
["GET /plain/", "GET /filter/"]
--- more_headers eval
["Accept-Encoding: gzip", "Accept-Encoding: gzip"]
--- response_headers_like eval
["Content-Encoding: \nVary: Accept-Encoding\nETag: \"[0-9a-f]{16}\"",
 "Content-Encoding: gzip\nVary: Accept-Encoding\nETag: W/\"[0-9a-f]{16}\""]
--- response_body_like eval
["^<p>(aaaaaaaaaa ){6}</p>\$", "^\x1f\x8b\x08"]
--- no_error_log
compressed "
[error]



=== TEST 8: dynpage_gzip is off by default (identity, no Vary); a server's setting is inherited by its locations, and off turns it off again
--- redis
HSET dynpage:page:/a 1000 '{"template":"<p>{% for i in items %}{{ i }} {% endfor %}</p>","data":{"items":["aaaaaaaaaa","aaaaaaaaaa","aaaaaaaaaa","aaaaaaaaaa","aaaaaaaaaa","aaaaaaaaaa"]}}'
--- http_config
server {
    listen 127.0.0.1:$TEST_NGINX_EXTRA_PORT;
    dynpage_gzip on;
    location / { dynpage_page /a; }
    location /off/ { dynpage_page /a; dynpage_gzip off; }
}
--- config
location /default/ { dynpage_page /a; }
location /other-server/ { proxy_pass http://127.0.0.1:$TEST_NGINX_EXTRA_PORT/; proxy_http_version 1.1; proxy_set_header Accept-Encoding gzip; }
--- pipelined_requests eval
["GET /default/", "GET /other-server/", "GET /other-server/off/"]
--- more_headers eval
["Accept-Encoding: gzip", "", ""]
--- response_headers_like eval
["Content-Encoding: \nVary: ", "Content-Encoding: gzip\nVary: Accept-Encoding", "Content-Encoding: \nVary: "]
--- response_body_like eval
["^<p>(aaaaaaaaaa ){6}</p>\$", "^\x1f\x8b\x08", "^<p>(aaaaaaaaaa ){6}</p>\$"]
--- no_error_log
[error]



=== TEST 9: predeploy and gray outputs are compressed once each, each to its own bytes; a predeploy gzip response stays private
--- redis
HSET dynpage:page:/a 1000 '{"template":"{% for i in items %}production {% endfor %}","data":{"items":[1,2,3,4,5,6,7,8]}}'
HSET dynpage:page:/a predeploy '{"template":"{% for i in items %}predeploy {% endfor %}","data":{"items":[1,2,3,4,5,6,7,8]}}'
HSET dynpage:page:/a abVersion '{"template":"{% for i in items %}gray {% endfor %}","data":{"items":[1,2,3,4,5,6,7,8]}}'
HSET dynpage:gray page:/a 100
--- config
dynpage_cache_ttl 60s;
dynpage_predeploy_allow 127.0.0.1;
dynpage_gzip on;
location / { dynpage_page $uri; dynpage_gray_by $arg_user; }
location /gunzip/ {
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/;
    proxy_http_version 1.1;
    proxy_set_header Accept-Encoding gzip;
    gunzip on;
}
--- log_level: debug
--- pipelined_requests eval
["GET /a", "GET /a?predeploy=true", "GET /a?user=u1", "GET /gunzip/a", "GET /gunzip/a?predeploy=true",
 "GET /gunzip/a?user=u1"]
--- more_headers eval
["Accept-Encoding: gzip", "Accept-Encoding: gzip", "Accept-Encoding: gzip", "", "", ""]
--- response_headers_like eval
["Content-Encoding: gzip\nCache-Control: public, max-age=5", "Content-Encoding: gzip\nCache-Control: private, no-store",
 "Content-Encoding: gzip\nCache-Control: private, no-store", "Content-Encoding: ", "Content-Encoding: ",
 "Content-Encoding: "]
--- response_body_like eval
["^\x1f\x8b\x08", "^\x1f\x8b\x08", "^\x1f\x8b\x08", "^(production ){8}\$", "^(predeploy ){8}\$", "^(gray ){8}\$"]
--- grep_error_log eval
qr/compressed "\/a" version \w+/
--- grep_error_log_out
compressed "/a" version 1000
compressed "/a" version predeploy
compressed "/a" version abVersion



=== TEST 10: an SSI include of a dynpage_gzip location is a subrequest: it includes the identity bytes
--- redis
HSET dynpage:page:/frag 1000 '{"template":"{% for i in items %}fragment {% endfor %}","data":{"items":[1,2,3,4,5,6,7,8]}}'
--- config
dynpage_cache_ttl 60s;
location /frag { dynpage_page /frag; dynpage_gzip on; }
location = /outer { default_type text/html; ssi on; return 200 '<main><!--# include virtual="/frag" --></main>'; }
--- request eval
["GET /outer", "GET /frag"]
--- more_headers eval
["Accept-Encoding: gzip", "Accept-Encoding: gzip"]
--- response_body_like eval
["^<main>(fragment ){8}</main>\$", "^\x1f\x8b\x08"]
--- no_error_log
[error]



=== TEST 11: Redis down after a reload: the shared zone's stale output is served as identity, with Vary, never claiming gzip
--- redis
HSET dynpage:page:/a 1000 '{"template":"{% for i in items %}page {% endfor %}","data":{"items":[1,2,3,4,5,6,7,8]}}'
--- config
dynpage_cache_ttl 100ms;
dynpage_debug_header on;
location / { dynpage_page $uri; dynpage_gzip on; }
location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/; }
--- request eval
["GET /a", "GET /ctl/freeze", "GET /ctl/reload", "GET /ctl/sleep/800", "GET /a", "GET /ctl/thaw"]
--- more_headers eval
["Accept-Encoding: gzip", "", "", "", "Accept-Encoding: gzip", ""]
--- response_headers_like eval
["Content-Encoding: gzip\nX-Dynpage: .*source=redis", "", "", "",
 "Content-Encoding: \nVary: Accept-Encoding\nX-Dynpage: .*source=stale", ""]
--- response_body_like eval
["^\x1f\x8b\x08", "", "", "", "^(page ){8}\$", ""]
--- timeout: 10



=== TEST 12: nginx -t refuses a dynpage_gzip that is neither on nor off
--- config
location / { dynpage_page $uri; dynpage_gzip maybe; }
--- must_die
--- suppress_stderr
--- error_log eval
qr{\[emerg\] .*\Q"dynpage_gzip" directive must be "on" or "off"\E}



=== TEST 13: nginx -t refuses a dynpage_gzip_comp_level outside 1 to 9
--- config
location / { dynpage_page $uri; dynpage_gzip_comp_level 10; }
--- must_die
--- suppress_stderr
--- error_log eval
qr{\[emerg\] .*\Q"dynpage_gzip_comp_level" directive has invalid value "10": it must be 1 to 9\E}



=== TEST 14: dynpage_brotli: brotli for a client that prefers it or weighs it as gzip (its own ETag, -br), gzip for one that weighs gzip higher; each compressed once per location; a location with one coding serves only that one
--- redis
HSET dynpage:page:/a 1000 '{"template":"<ul>{% for i in items %}<li>item {{ i }}</li>{% endfor %}</ul>","data":{"items":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20]}}'
--- config
dynpage_cache_ttl 60s;
location /both/ { dynpage_page /a; dynpage_gzip on; dynpage_brotli on; }
location /br/ { dynpage_page /a; dynpage_brotli on; dynpage_brotli_comp_level 11; }
location /gz/ { dynpage_page /a; dynpage_gzip on; }
--- log_level: debug
--- pipelined_requests eval
["GET /both/", "GET /both/", "GET /both/", "GET /both/", "GET /both/", "GET /both/", "GET /both/",
 "GET /br/", "GET /br/", "GET /gz/"]
--- more_headers eval
["Accept-Encoding: gzip, deflate, br, zstd", "Accept-Encoding: br;q=0.5, gzip", "Accept-Encoding: br",
 "Accept-Encoding: gzip", "Accept-Encoding: *", "Accept-Encoding: br;q=0, gzip;q=0", "",
 "Accept-Encoding: gzip, br", "Accept-Encoding: gzip", "Accept-Encoding: br"]
--- response_headers_like eval
["Content-Encoding: br\nVary: Accept-Encoding\nETag: \"[0-9a-f]{16}-br\"\nContent-Length: \\d{2,3}",
 "Content-Encoding: gzip\nVary: Accept-Encoding\nETag: \"[0-9a-f]{16}-gz\"\nContent-Length: \\d{2,3}",
 "Content-Encoding: br\nVary: Accept-Encoding\nETag: \"[0-9a-f]{16}-br\"",
 "Content-Encoding: gzip\nVary: Accept-Encoding\nETag: \"[0-9a-f]{16}-gz\"",
 "Content-Encoding: br\nVary: Accept-Encoding\nETag: \"[0-9a-f]{16}-br\"",
 "Content-Encoding: \nVary: Accept-Encoding\nETag: \"[0-9a-f]{16}\"\nContent-Length: 320",
 "Content-Encoding: \nVary: Accept-Encoding\nETag: \"[0-9a-f]{16}\"\nContent-Length: 320",
 "Content-Encoding: br\nVary: Accept-Encoding\nETag: \"[0-9a-f]{16}-br\"",
 "Content-Encoding: \nVary: Accept-Encoding\nETag: \"[0-9a-f]{16}\"",
 "Content-Encoding: \nVary: Accept-Encoding\nETag: \"[0-9a-f]{16}\""]
--- response_body_like eval
["", "^\x1f\x8b\x08", "", "^\x1f\x8b\x08", "", "^<ul><li>item 1</li>", "^<ul><li>item 1</li>", "",
 "^<ul><li>item 1</li>", "^<ul><li>item 1</li>"]
--- grep_error_log eval
qr/(?<=\d )with (?:gzip|br)/
--- grep_error_log_out
with br
with gzip
with br
--- no_error_log
[error]



=== TEST 15: If-None-Match with the brotli ETag is a 304 for a client that takes brotli; a gzip-only client holding it gets gzip
--- redis
HSET dynpage:page:/a 1000 '{"template":"<p>{% for i in items %}{{ i }} {% endfor %}</p>","data":{"items":["aaaaaaaaaa","aaaaaaaaaa","aaaaaaaaaa","aaaaaaaaaa","aaaaaaaaaa","aaaaaaaaaa"]}}'
--- config
dynpage_cache_ttl 60s;
location / { dynpage_page $uri; dynpage_gzip on; dynpage_brotli on; }
location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/; }
--- request eval
["GET /ctl/conditional?uri=/a&ae=br&ae2=gzip%2C+br", "GET /ctl/conditional?uri=/a&ae=br&ae2=gzip"]
--- response_body_like eval
["^200 (\"[0-9a-f]{16}-br\") br \\d+, then 304 \\1 identity Accept-Encoding\$",
 "^200 (\"[0-9a-f]{16})-br\" br \\d+, then 200 \\1-gz\" gzip Accept-Encoding\$"]
--- no_error_log
[error]



=== TEST 16: nginx -t refuses a dynpage_brotli_comp_level outside 0 to 11
--- config
location / { dynpage_page $uri; dynpage_brotli_comp_level 12; }
--- must_die
--- suppress_stderr
--- error_log eval
qr{\[emerg\] .*\Q"dynpage_brotli_comp_level" directive has invalid value "12": it must be 0 to 11\E}
