# nginx's output filters and subrequests treat a dynpage response like a static file: gzip_types,
# charset/charset_types, ssi/ssi_types, sub_filter_types, add_header, expires, Range, SSI
# includes of dynpage locations (an empty page among them) and auth_request in front.
use t::TestDynpage;

plan 'no_plan';
run_tests();

__DATA__

=== TEST 1: gzip_types text/html compresses a page for a client that accepts gzip, and only then
--- redis
HSET dynpage:page:/a 1000 '{"template":"<p>{% for i in items %}{{ i }} {% endfor %}</p>","data":{"items":["aaaaaaaaaa","aaaaaaaaaa","aaaaaaaaaa","aaaaaaaaaa","aaaaaaaaaa","aaaaaaaaaa","aaaaaaaaaa","aaaaaaaaaa"]}}'
--- config
gzip on;
gzip_types text/html;
gzip_min_length 10;
location /a { dynpage_page /a; }
--- request eval
["GET /a", "GET /a"]
--- more_headers eval
["Accept-Encoding: gzip", ""]
--- response_headers eval
["Content-Encoding: gzip\nContent-Type: text/html; charset=utf-8\n!Content-Length",
 "!Content-Encoding\nContent-Length: 95"]
--- response_body_like eval
[qr/\A\x1f\x8b\x08/, qr/\A<p>(aaaaaaaaaa ){8}<\/p>\z/]



=== TEST 2: gzip_types decides for a page of another type, as for any response
--- redis
HSET dynpage:page:/a 1000 '{"template":"{{ t }}","data":{"t":"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"}}'
--- config
gzip on;
gzip_min_length 10;
gzip_types application/x-page;
location /other { dynpage_page /a; dynpage_content_type "application/x-other; charset=utf-8"; }
location /page { dynpage_page /a; dynpage_content_type "application/x-page; charset=utf-8"; }
--- request eval
["GET /other", "GET /page"]
--- more_headers
Accept-Encoding: gzip
--- response_headers eval
["!Content-Encoding\nContent-Type: application/x-other; charset=utf-8", "Content-Encoding: gzip\nContent-Type: application/x-page; charset=utf-8"]



=== TEST 3: a page declares its utf-8 like a proxied response: charset recodes it with override_charset on
--- http_config
charset_map koi8-r utf-8 { C1 D0B0; }
--- redis
HSET dynpage:page:/k 1000 '{"template":"x{{ c }}y","data":{"c":"а"}}'
--- config
location /recode { dynpage_page /k; charset koi8-r; override_charset on; }
location /declared { dynpage_page /k; charset koi8-r; }
location /same { dynpage_page /k; charset utf-8; override_charset on; }
--- request eval
["GET /recode", "GET /declared", "GET /same"]
--- response_headers eval
["Content-Type: text/html; charset=koi8-r", "Content-Type: text/html; charset=utf-8", "Content-Type: text/html; charset=utf-8"]
--- response_body_like eval
[qr/\Ax\xC1y\z/, qr/\Ax\xD0\xB0y\z/, qr/\Ax\xD0\xB0y\z/]
--- no_error_log
[error]



=== TEST 4: charset_types decides for a page type declared without a charset, as for a static file
--- http_config
charset_map koi8-r utf-8 { C1 D0B0; }
--- redis
HSET dynpage:page:/k 1000 '{"template":"x{{ c }}y","data":{"c":"а"}}'
--- config
dynpage_content_type "text/x-page";
source_charset utf-8;
charset koi8-r;
location /untyped { dynpage_page /k; }
location /typed { dynpage_page /k; charset_types text/x-page; }
--- request eval
["GET /untyped", "GET /typed"]
--- response_headers eval
["Content-Type: text/x-page", "Content-Type: text/x-page; charset=koi8-r"]
--- response_body_like eval
[qr/\Ax\xD0\xB0y\z/, qr/\Ax\xC1y\z/]



=== TEST 5: ssi on processes a rendered page; ssi_types decides for another type
--- redis
HSET dynpage:page:/s 1000 '{"template":"[<!--# set var=\"v\" value=\"{{ v }}\" --><!--# echo var=\"v\" -->]","data":{"v":"from-ssi"}}'
--- config
location /html { dynpage_page /s; ssi on; }
location /untyped { dynpage_page /s; ssi on; dynpage_content_type "text/x-page"; }
location /typed { dynpage_page /s; ssi on; ssi_types text/x-page; dynpage_content_type "text/x-page"; }
--- request eval
["GET /html", "GET /untyped", "GET /typed"]
--- response_body eval
["[from-ssi]", "[<!--# set var=\"v\" value=\"from-ssi\" --><!--# echo var=\"v\" -->]", "[from-ssi]"]



=== TEST 6: an SSI include of dynpage locations: each fetched and rendered as a subrequest, an empty page included without an alert
--- redis
HSET dynpage:page:/outer 1000 '{"template":"<main>[<!--# include virtual=\"/frag/1\" -->][<!--# include virtual=\"/frag/empty\" -->][<!--# include virtual=\"/frag/2\" -->]</main>"}'
HSET dynpage:page:/frag/1 1000 '{"template":"one {{ n }}","data":{"n":1}}'
HSET dynpage:page:/frag/2 1000 '{"template":"two {{ n }}","data":{"n":2}}'
HSET dynpage:page:/frag/empty 1000 '{"template":""}'
--- config
location / { dynpage_page $uri; ssi on; }
--- request eval
["GET /outer", "GET /outer", "GET /frag/empty"]
--- response_body eval
["<main>[one 1][][two 2]</main>", "<main>[one 1][][two 2]</main>", ""]
--- no_error_log
[alert]
[error]



=== TEST 7: sub_filter rewrites a page; sub_filter_types decides for another type
--- redis
HSET dynpage:page:/w 1000 '{"template":"Hello, {{ who }}!","data":{"who":"World"}}'
--- config
sub_filter World nginx;
location /html { dynpage_page /w; }
location /untyped { dynpage_page /w; dynpage_content_type "text/x-page"; }
location /typed { dynpage_page /w; dynpage_content_type "text/x-page"; sub_filter_types text/x-page; }
--- request eval
["GET /html", "GET /untyped", "GET /typed"]
--- response_body eval
["Hello, nginx!", "Hello, World!", "Hello, nginx!"]



=== TEST 8: add_header adds; expires replaces dynpage_max_age's Cache-Control of a public page
--- redis
HSET dynpage:page:/a 1000 '{"template":"a"}'
--- config
location /a { dynpage_page /a; add_header X-Test yes; expires 1h; }
location /b { dynpage_page /a; add_header X-Test yes; }
--- request eval
["GET /a", "GET /b"]
--- response_headers_like eval
["X-Test: yes\nCache-Control: max-age=3600\nExpires: .+ GMT", "X-Test: yes\nCache-Control: public, max-age=5"]



=== TEST 9: expires never makes a pre-release response cacheable: private, no-store stays
--- redis
HSET dynpage:page:/a 1000 '{"template":"prod"}'
HSET dynpage:page:/a predeploy '{"template":"pre"}'
--- config
location /a { dynpage_page /a; dynpage_predeploy_allow 127.0.0.1; expires 1h; }
--- request
GET /a?predeploy=true
--- response_body: pre
--- response_headers_like
Cache-Control: private, no-store(, max-age=3600)?



=== TEST 10: a byte range is a 206 from nginx's range filter, as for a static file; If-Range with another ETag gets the whole page
--- redis
HSET dynpage:page:/r 1000 '{"template":"0123456789{{ x }}","data":{"x":"abcdef"}}'
--- config
location /r { dynpage_page /r; }
location /other-etag { proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/r; proxy_set_header If-Range '"0000000000000000"'; proxy_set_header Range bytes=2-5; }
--- request eval
["GET /r", "GET /r", "GET /other-etag"]
--- more_headers eval
["Range: bytes=2-5", "Range: bytes=-3", ""]
--- error_code eval
[206, 206, 200]
--- response_headers eval
["Content-Range: bytes 2-5/16\nContent-Length: 4", "Content-Range: bytes 13-15/16", "!Content-Range"]
--- response_body eval
["2345", "def", "0123456789abcdef"]



=== TEST 11: auth_request in front of a dynpage location: denied is 401 and never rendered, allowed is rendered
--- redis
HSET dynpage:page:/p 1000 '{"template":"secret page"}'
--- config
location = /auth { internal; if ($http_x_token = "yes") { return 204; } return 401; }
location /p { auth_request /auth; dynpage_page /p; }
--- request eval
["GET /p", "GET /p"]
--- more_headers eval
["", "X-Token: yes"]
--- error_code eval
[401, 200]
--- response_body_like eval
[qr/401 Authorization Required/, qr/\Asecret page\z/]



=== TEST 12: the ETag names the output: a dynpage_var value changes it, so another value's ETag never gets a 304 (nor an If-Range 206)
--- redis
HSET dynpage:page:/v 1000 '{"template":"for {{ request.who }}"}'
--- config
location /v { dynpage_var who $arg_who; dynpage_page /v; }
location = /etag-of-a { internal; proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/v?who=a; }
location /same {
    auth_request /etag-of-a;
    auth_request_set $etag $upstream_http_etag;
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/v?who=a;
    proxy_set_header If-None-Match $etag;
}
location /other {
    auth_request /etag-of-a;
    auth_request_set $etag $upstream_http_etag;
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/v?who=b;
    proxy_set_header If-None-Match $etag;
}
location /other-range {
    auth_request /etag-of-a;
    auth_request_set $etag $upstream_http_etag;
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/v?who=b;
    proxy_set_header If-Range $etag;
    proxy_set_header Range bytes=0-2;
}
--- request eval
["GET /same", "GET /other", "GET /other-range"]
--- error_code eval
[304, 200, 200]
--- response_body eval
["", "for b", "for b"]
