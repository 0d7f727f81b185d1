# dynpage beside lua-nginx-module in one nginx (Debian's nginx 1.22 with libnginx-mod-http-lua):
# the way a site moves from the Lua path one location at a time. Runs when the suite loads the
# Lua module (`make t NGINX=/usr/sbin/nginx` does); skipped otherwise.
use t::TestDynpage;

BEGIN {
    if (($ENV{TEST_NGINX_LOAD_MODULES} // '') !~ /ngx_http_lua_module/) {
        Test::More::plan(skip_all => 'the Lua module is not loaded (run with NGINX=/usr/sbin/nginx)');
    }
}

plan 'no_plan';
run_tests();

__DATA__

=== TEST 1: Lua locations and dynpage locations side by side in one server
--- redis
HSET dynpage:page:/new 1000 '{"template":"<p>{{ who }} from dynpage</p>","data":{"who":"page"}}'
--- config
location /old { content_by_lua_block { ngx.print("<p>page from lua</p>") } }
location /new { dynpage_page /new; }
--- request eval
["GET /old", "GET /new", "GET /old"]
--- response_body eval
["<p>page from lua</p>", "<p>page from dynpage</p>", "<p>page from lua</p>"]
--- no_error_log
[error]



=== TEST 2: access in Lua, rendering in dynpage: a denied client never reaches the page
--- redis
HSET dynpage:page:/p 1000 '{"template":"members only"}'
--- config
location /p {
    access_by_lua_block {
        if ngx.var.http_x_member ~= "yes" then
            return ngx.exit(ngx.HTTP_FORBIDDEN)
        end
    }
    dynpage_page /p;
}
--- request eval
["GET /p", "GET /p"]
--- more_headers eval
["", "X-Member: yes"]
--- error_code eval
[403, 200]
--- response_body_like eval
[qr/403 Forbidden/, qr/\Amembers only\z/]



=== TEST 3: a variable set in Lua drives dynpage_gray_by and dynpage_var
--- redis
HSET dynpage:page:/g 1000 '{"template":"prod {{ request.uid }}"}'
HSET dynpage:page:/g abVersion '{"template":"gray {{ request.uid }}"}'
HSET dynpage:gray page:/g 100
--- config
location /g {
    set $uid "";
    rewrite_by_lua_block {
        local uid = ngx.var.cookie_uid
        if uid and uid:match("^u%d+$") then ngx.var.uid = uid end
    }
    dynpage_gray_by $uid;
    dynpage_var uid $uid;
    dynpage_page /g;
}
--- request eval
["GET /g", "GET /g", "GET /g"]
--- more_headers eval
["Cookie: uid=u42", "Cookie: uid=bad!", ""]
--- response_body eval
["gray u42", "prod ", "prod "]



=== TEST 4: ngx.location.capture of dynpage locations: a page, an empty page, a missing page
--- redis
HSET dynpage:page:/frag 1000 '{"template":"fragment {{ n }}","data":{"n":7}}'
HSET dynpage:page:/empty 1000 '{"template":""}'
--- config
location /frag { dynpage_page /frag; }
location /empty { dynpage_page /empty; }
location /missing { dynpage_page /missing; }
location /compose {
    content_by_lua_block {
        local a, b, c = ngx.location.capture_multi{ {"/frag"}, {"/empty"}, {"/missing"} }
        ngx.print(a.status, ":", a.body, "|", b.status, ":[", b.body, "]|", c.status)
    }
}
--- request eval
["GET /compose", "GET /compose"]
--- response_body eval
["200:fragment 7|200:[]|404", "200:fragment 7|200:[]|404"]
--- no_error_log
[alert]
--- error_log
dynpage: page "/missing" not found
