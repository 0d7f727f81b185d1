# Page mode: production version choice, templates, includes, escaping, headers, methods.
use t::TestDynpage;

plan 'no_plan';
run_tests();

__DATA__

=== TEST 1: a published page is rendered from its production version
--- redis
HSET dynpage:page:/a 1000 '{"template":"<h1>{{ title }}</h1>","data":{"title":"Hello"}}'
--- config
location /p/ { dynpage_page $uri; }
location = /a { dynpage_page /a; }
--- request
GET /a
--- response_body: <h1>Hello</h1>
--- response_headers
Content-Type: text/html; charset=utf-8
Cache-Control: public, max-age=5
Last-Modified: Thu, 01 Jan 1970 00:00:01 GMT
--- no_error_log
[error]
