package Test::Nginx::Socket;

# dynpage's own runner for Test::Nginx::Socket's data-driven format.
#
# openresty/test-nginx cannot be installed from this machine's package registries, so this file
# re-implements, on Debian's Test::Base, the part of Test::Nginx::Socket that dynpage's suite
# uses, and behaves as the real one does (checked against openresty/test-nginx cf245a0, see
# /work/shared/test-nginx): the same .t file passes or fails the same way under both. This file
# is only found through `prove -I t/lib` (scripts/prove.sh, HARNESS=own).
#
# Implemented, as in the real harness:
#   - blocks run in random order unless no_shuffle() or TEST_NGINX_NO_SHUFFLE; names get the
#     "$0 " prefix; `--- SKIP` skips a block; block preprocessors run before each block.
#   - per block: the previous nginx is stopped (QUIT), the server root's conf/, logs/, html/ and
#     *_temp are recreated, nginx.conf is written as the real harness writes it (worker_processes,
#     daemon on, master_process, error_log <root>/logs/error.log <level>, pid; env_to_nginx;
#     `load_module` for each of TEST_NGINX_LOAD_MODULES, then main_config; http { access_log,
#     temp paths, default_type text/plain, keepalive_timeout 68000ms, http_config, server {
#     listen <port>; server_name 'localhost'; client_max_body_size 30M; config; location / unless
#     no_root_location() } }, post_main_config, events { accept_mutex off; worker_connections
#     64 }, `user root` when run as root; no *_temp_path for a module `nginx -V` says is left
#     out) and nginx is started as `nginx -e <root>/logs/error.log -p <root>/ -c <conf>`, tried
#     again for a while if it fails (the real one: 30 s; here 5 s), then the file bails out.
#   - $TEST_NGINX_* in config, http_config, main_config, post_main_config, pipelined requests,
#     response_body and grep_error_log_out is replaced by the environment (unset: bail out).
#   - `--- must_die` (optionally an exit code): nginx must refuse to start; then the error log
#     sections are checked; no request is sent. `--- suppress_stderr`: nginx's stderr is not shown.
#   - requests: `--- request` (one, or an `eval` list: one connection each), `--- pipelined_requests`
#     (eval list, sent at once on one keep-alive connection, answers read in order),
#     `--- more_headers` (one text for all, or an eval list, one per request); a request body is
#     trimmed of white space and gets Content-Length; `--- timeout` (s or ms, default 3 s or
#     TEST_NGINX_TIMEOUT: "client socket timed out" fails); `--- wait` (seconds slept after each
#     request but the last, and after the last); repeat_each(n) sends the block's requests n times
#     to the same nginx.
#   - per answer: `--- error_code` (or error_code_like), `--- response_headers` (text lines
#     "Name: value", exact; "!Name": absent) or else `--- response_headers_like` (lines
#     "Name: regex", matched whole: ^regex$), `--- response_body` (exact; an eval qr// is
#     matched) or else `--- response_body_like` (qr/.../s). With several requests each of these
#     must be an eval list, one element per request.
#   - the error log is checked after every request (each answer of a pipeline) and once more at
#     the end, as in the real harness: by default only the lines written since the previous check
#     (the part belonging to that request), the whole log of the block with
#     check_accum_error_log() or TEST_NGINX_CHECK_ACCUM_ERR_LOG. `--- error_log` and
#     `--- no_error_log` (text: one pattern a line, matched as a substring of one log line; eval:
#     a qr// or a list of strings and qr//s, each matched against one line at a time),
#     `--- grep_error_log` (a string or qr//: what it matches in each line, each followed by "\n")
#     with `--- grep_error_log_out` (exact text, or a qr//); `--- log_level`. A log line with
#     [alert], [crit] or [emerg] that no pattern of the block mentions is warned about; a line
#     "Assertion ... failed" fails the block.
#   - functions plan (Test::Base), run_tests, repeat_each, no_shuffle, workers, master_on,
#     master_off, log_level, no_long_string, no_root_location, env_to_nginx,
#     add_block_preprocessor, check_accum_error_log, server_port, server_root, html_dir, timeout,
#     bail_out; environment TEST_NGINX_BINARY, TEST_NGINX_LOAD_MODULES (space separated .so
#     paths), TEST_NGINX_SERVER_PORT or TEST_NGINX_PORT (default 1984), TEST_NGINX_SERVROOT
#     (default t/servroot), TEST_NGINX_LOG_LEVEL, TEST_NGINX_MASTER_PROCESS, TEST_NGINX_SLEEP,
#     TEST_NGINX_NO_CLEAN (leave nginx running at the end); it sets TEST_NGINX_SERVER_ROOT.
#
# Stricter than the real harness, so that a block this runner accepts is also valid there (the
# real one silently checks nothing in these cases): a Perl hash given to response_headers or
# response_headers_like, response_headers together with response_headers_like, and
# response_body together with response_body_like fail the block.

use Test::Base -base;
use strict;
use warnings;
use Time::HiRes qw(sleep time);
use IO::Socket::INET;
use IO::Select;
use POSIX qw(WNOHANG);
use Errno qw(EAGAIN EWOULDBLOCK EINTR);
use File::Spec;
use File::Path qw(remove_tree);
use List::Util qw(shuffle);

our @EXPORT = qw(run_tests repeat_each no_shuffle workers master_on master_off
  log_level no_long_string no_root_location env_to_nginx add_block_preprocessor
  check_accum_error_log server_port server_root html_dir timeout bail_out);

our $RepeatEach = 1;
our $Workers = 1;
our $MasterProcessEnabled = $ENV{TEST_NGINX_MASTER_PROCESS} || 'off';
our $LogLevel = $ENV{TEST_NGINX_LOG_LEVEL} || 'debug';
our $NoRootLocation = 0;
our $NoShuffle = $ENV{TEST_NGINX_NO_SHUFFLE} || 0;
our $CheckAccumErrLog = $ENV{TEST_NGINX_CHECK_ACCUM_ERR_LOG};
our $Timeout = $ENV{TEST_NGINX_TIMEOUT} || 3;
our $TestNginxSleep = $ENV{TEST_NGINX_SLEEP} || 0.015;
our $WorkerConnections = 64;
our @EnvToNginx;
our @BlockPreprocessors;
our $ServerPort = $ENV{TEST_NGINX_SERVER_PORT} || $ENV{TEST_NGINX_PORT} || 1984;
our $ServRoot = $ENV{TEST_NGINX_SERVROOT} || File::Spec->rel2abs('t/servroot');
our $NginxBinary = $ENV{TEST_NGINX_BINARY} || 'nginx';
$ENV{TEST_NGINX_SERVER_ROOT} = $ServRoot;

our $LogDir = "$ServRoot/logs";
our $ErrLogFile = "$LogDir/error.log";
our $AccLogFile = "$LogDir/access.log";
our $HtmlDir = "$ServRoot/html";
our $ConfDir = "$ServRoot/conf";
our $ConfFile = "$ConfDir/nginx.conf";
our $PidFile = "$LogDir/nginx.pid";
our $ErrLogFilePos = 0;

sub value_contains ($$);
sub stop_nginx ($);

sub repeat_each (@) { $RepeatEach = shift if @_; $RepeatEach }
sub workers (@) { $Workers = shift if @_; $Workers }
sub master_on () { $MasterProcessEnabled = 'on' }
sub master_off () { $MasterProcessEnabled = 'off' }
sub log_level (@) { $LogLevel = shift if @_; $LogLevel }
sub no_shuffle () { $NoShuffle = 1 }
sub no_long_string () { }
sub no_root_location () { $NoRootLocation = 1 }
sub check_accum_error_log () { $CheckAccumErrLog = 1 }
sub add_block_preprocessor (&) { unshift @BlockPreprocessors, shift }
sub server_port (@) { $ServerPort = shift if @_; $ServerPort }
sub server_root () { $ServRoot }
sub html_dir () { $HtmlDir }
sub timeout (@) { $Timeout = shift if @_; $Timeout }

sub env_to_nginx (@) {
    die "env_to_nginx: no arguments specified\n" unless @_;
    for my $v (@_) {
        die "env_to_nginx: bad argument value: $v\n" if $v !~ /^[A-Za-z_]/ || $v =~ /\n/;
        push @EnvToNginx, $v;
    }
}

sub bail_out (@) {
    stop_nginx('bail out');
    Test::More::BAIL_OUT(join '', @_);
}

sub parse_time ($) {
    my $tm = shift;
    return $tm unless defined $tm;
    if ($tm =~ s/([^_a-zA-Z])ms$/$1/) { $tm = $tm / 1000 }
    else { $tm =~ s/([^_a-zA-Z])s$/$1/ }
    return $tm;
}

sub expand_env ($$) {
    my ($text, $name) = @_;
    return $text unless defined $text && !ref $text;
    $text =~ s/\$(TEST_NGINX_[_A-Z0-9]+)/
        defined $ENV{$1} ? $ENV{$1} : bail_out("$name - No environment $1 defined.\n")/ge;
    return $text;
}

# --- nginx ---

sub pid_from_pidfile () {
    open my $fh, '<', $PidFile or return;
    my $pid = do { local $/; <$fh> };
    close $fh;
    return unless defined $pid && $pid =~ /(\d+)/;
    return $1;
}

# A zombie (an exited daemon that nobody has reaped yet) is not running.
sub is_running ($) {
    my $pid = shift;
    return 0 unless kill 0, $pid;
    if (open my $st, '<', "/proc/$pid/stat") {
        my $stat = <$st> // '';
        close $st;
        return 0 if $stat =~ /^\d+ \(.*\) Z/s;
    }
    return 1;
}

sub kill_process ($$) {
    my ($pid, $name) = @_;
    kill 'QUIT', $pid;
    my $left = $Timeout;
    while ($left > 0 && is_running($pid)) {
        waitpid($pid, WNOHANG);
        sleep 0.01;
        $left -= 0.01;
    }
    if (is_running($pid)) {
        warn "$name - timeout when waiting for the process $pid to exit\n";
        kill 'KILL', $pid;
        sleep 0.05;
    }
    waitpid($pid, WNOHANG);
}

sub stop_nginx ($) {
    my $name = shift;
    my $pid = pid_from_pidfile() or return;
    kill_process($pid, $name) if is_running($pid);
    unlink $PidFile;
}

sub setup_server_root () {
    if (-d $ServRoot) {
        remove_tree($ConfDir, $HtmlDir, $LogDir, glob("$ServRoot/*_temp"), glob("$ServRoot/*_cache"));
    } else {
        mkdir $ServRoot or bail_out("Failed to do mkdir $ServRoot: $!\n");
    }
    for my $d ($LogDir, $HtmlDir, $ConfDir) {
        mkdir $d or bail_out("Failed to do mkdir $d: $!\n");
    }
    open my $out, '>', "$HtmlDir/index.html" or bail_out("Can't write $HtmlDir/index.html: $!\n");
    print $out '<html><head><title>It works!</title></head><body>It works!</body></html>';
    close $out;
}

sub write_config ($) {
    my $block = shift;
    my $name = $block->name;
    my $main = expand_env($block->main_config, $name) // '';
    my $post_main = expand_env($block->post_main_config, $name) // '';
    my $http = expand_env($block->http_config, $name) // '';
    my $config = expand_env($block->config, $name) // '';
    my $level = $block->log_level || $LogLevel;
    my @modules = map { "load_module $_;" } grep { $_ } split /\s+/, $ENV{TEST_NGINX_LOAD_MODULES} || '';
    $main = join ' ', @modules, $main if @modules;
    my $env = join '', map { my $v = $_; $v = "'$v'" if $v =~ /\s/; "env $v;\n" } @EnvToNginx;
    my $root = $NoRootLocation ? '' : <<"_EOC_";
        location / {
            root $HtmlDir;
            index index.html index.htm;
        }
_EOC_
    # As the real one: no temp path for a module nginx is built without, or that http_config sets.
    our $NginxV //= `$NginxBinary -V 2>&1` // '';
    my $temp = join ' ', map { "${_}_temp_path $ServRoot/${_}_temp;" }
        grep { !($_ eq 'proxy' && $http =~ /\bproxy_temp_path\b/ || $_ eq 'client_body' && $http =~ /\bclient_body_temp_path\b/) }
        grep { $NginxV !~ /--without-http_${_}_module/ }
        qw(client_body proxy fastcgi scgi uwsgi);
    my $user = $> == 0 ? "user root;\n" : '';
    open my $out, '>', $ConfFile or bail_out("Can't open $ConfFile for writing: $!\n");
    print $out <<"_EOC_";
worker_processes  $Workers;
daemon on;
master_process $MasterProcessEnabled;
error_log $ErrLogFile $level;
pid       $PidFile;
$env
$main

http {
    access_log $AccLogFile; $temp

    default_type text/plain;
    keepalive_timeout  68000ms;

$http
    server {
        listen          $ServerPort;
        server_name     'localhost';
        client_max_body_size 30M;

        # Begin test case config...
$config
        # End test case config.

$root    }
}

$post_main

events {
    accept_mutex off;
    worker_connections  $WorkerConnections;
}
$user
_EOC_
    close $out;
}

# Runs nginx; returns its exit status ($?), and what it wrote to stderr (which is also shown,
# unless the block has `--- suppress_stderr`).
sub run_nginx ($) {
    my $block = shift;
    my $err = "$ServRoot/nginx-stderr.txt";
    system("$NginxBinary -e $ErrLogFile -p $ServRoot/ -c $ConfFile > /dev/null 2> $err");
    my $status = $?;
    my $text = '';
    if (open my $fh, '<', $err) { local $/; $text = <$fh> // ''; close $fh }
    unlink $err;
    print STDERR $text if length $text && !defined $block->suppress_stderr;
    return ($status, $text);
}

sub wait_for_port () {
    for (1 .. 300) {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $ServerPort, Timeout => 1);
        if ($s) { close $s; return 1 }
        sleep 0.01;
    }
    return 0;
}

# --- requests ---

sub parse_more_headers ($) {
    my $in = shift // '';
    my $out = '';
    for my $h (split /\n+/, $in) {
        next if $h =~ /^\s*#/;
        my ($key, $val) = split /:\s*/, $h, 2;
        $out .= "$key: " . ($val // '') . "\r\n";
    }
    return $out;
}

sub build_request ($$$;$) {
    my ($name, $req, $conn) = @_;
    my $more = $_[3] // '';
    1 while $req =~ s/^\s*\#[^\n]+\s+|^\s+//gs;
    my ($first, $content) = split /\n/, $req, 2;
    bail_out("$name - Request line should be non-empty") unless defined $first && length $first;
    my ($meth, $url, $ver) = $first =~ /^\s*(\S+)(?:\s+(\S+))?(?:\s+(\S+))?\s*$/
        or bail_out("$name - Request line is not valid: \"$first\"");
    $url //= '/';
    $ver //= 'HTTP/1.1';
    $content //= '';
    my $len = '';
    if ($content ne '' && $more !~ /(?:^|\n)Content-Length:/i) {
        $content =~ s/^\s+|\s+$//gs;
        $len = 'Content-Length: ' . length($content) . "\r\n";
    }
    my $headers = '';
    $headers .= "Host: localhost\r\n" if $more !~ /(?:^|\n)Host:/msi;
    $headers .= "Connection: $conn\r\n" if $more !~ /(?:^|\n)Connection/msi;
    return ("$meth $url $ver\r\n$headers$more$len\r\n$content", uc $meth eq 'HEAD');
}

# One request list per block: [raw request, is HEAD, answers expected on this connection].
sub requests_of ($) {
    my $block = shift;
    my $name = $block->name;
    my $more = $block->more_headers;
    my $more_of = sub {
        my $i = shift;
        return parse_more_headers($more) unless ref $more eq 'ARRAY';
        bail_out("--- more_headers lacks data for the ${i}th request") unless defined $more->[$i];
        return parse_more_headers($more->[$i]);
    };
    if (my $reqs = $block->pipelined_requests) {
        bail_out("$name - invalid entries in --- pipelined_requests") unless ref $reqs eq 'ARRAY';
        my ($raw, @heads) = ('');
        for my $i (0 .. $#$reqs) {
            my $r = expand_env($reqs->[$i], $name);
            my ($one, $head) = build_request($name, $r, $i == $#$reqs ? 'close' : 'keep-alive', $more_of->($i));
            $raw .= $one;
            push @heads, $head;
        }
        return ([[$raw, \@heads]], 1);
    }
    my $req = $block->request;
    bail_out("$name - request empty") unless defined $req;
    if (!ref $req) {
        my ($one, $head) = build_request($name, $req, 'close', $more_of->(0));
        return ([[$one, [$head]]], 0);
    }
    bail_out("$name - invalid ---request : MUST be string or array of requests") unless ref $req eq 'ARRAY';
    my @list;
    for my $i (0 .. $#$req) {
        bail_out("$name - Invalid syntax. $req->[$i] should be a string") if ref $req->[$i];
        my ($one, $head) = build_request($name, $req->[$i], 'close', $more_of->($i));
        push @list, [$one, [$head]];
    }
    return (\@list, @list > 1);
}

# Sends a raw request and reads until the server closes or the timeout: (response, timed out).
sub send_request ($$$) {
    my ($name, $raw, $timeout) = @_;
    my $sock;
    for my $try (1 .. 10) {
        $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $ServerPort, Timeout => $timeout);
        last if $sock;
        warn "$name - Can't connect to 127.0.0.1:$ServerPort: $!\n\tRetry connecting after 0.1 sec\n";
        sleep 0.1;
    }
    unless ($sock) {
        fail("$name - Can't connect to 127.0.0.1:$ServerPort: $!");
        return ('', 0);
    }
    $sock->blocking(0);
    my $sel = IO::Select->new($sock);
    my $deadline = time + $timeout;
    my $off = 0;
    my $resp = '';
    while ($off < length $raw) {
        my $left = $deadline - time;
        return ($resp, 1) if $left <= 0 || !$sel->can_write($left);
        my $n = syswrite($sock, $raw, length($raw) - $off, $off);
        if (!defined $n) {
            next if $! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR;
            last;
        }
        $off += $n;
    }
    while (1) {
        my $left = $deadline - time;
        if ($left <= 0 || !$sel->can_read($left)) {
            close $sock;
            return ($resp, 1);
        }
        my $n = sysread($sock, my $buf, 65536);
        if (!defined $n) {
            next if $! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR;
            last;
        }
        last if $n == 0;
        $resp .= $buf;
    }
    close $sock;
    return ($resp, 0);
}

# Parses one response off the front: (code, headers {lc name => [values]}, raw headers, body, rest).
sub parse_response ($$) {
    my ($raw, $head) = @_;
    return unless defined $raw && $raw =~ /\A(HTTP\/\d\.\d[ \t]+(\d+)[^\r\n]*\r\n)((?:.*?\r\n)?)\r\n/s;
    my ($code, $raw_headers) = ($2, "$1$3");
    my $rest = substr $raw, $+[0];
    my %h;
    for my $line (split /\r\n/, $3) {
        my ($k, $v) = $line =~ /^([^:]+):\s*(.*?)\s*$/ or next;
        push @{ $h{lc $k} }, $v;
    }
    my $body = '';
    my $te = $h{'transfer-encoding'} ? $h{'transfer-encoding'}[0] : '';
    my $len = $h{'content-length'} ? $h{'content-length'}[0] : undef;
    if ($head || $code == 304 || $code == 204 || $code =~ /^1/) {
        # no body
    } elsif ($te eq 'chunked') {
        while ($rest =~ s/\A[ \t]*([0-9a-fA-F]+)[^\r\n]*\r\n//) {
            my $n = hex $1;
            if ($n == 0) { $rest =~ s/\A(?:[^\r\n]+\r\n)*\r\n//; last }
            $body .= substr($rest, 0, $n);
            substr($rest, 0, $n + 2) = '';
        }
    } elsif (defined $len) {
        $body = substr($rest, 0, $len);
        $rest = length($rest) > $len ? substr($rest, $len) : '';
    } else {
        ($body, $rest) = ($rest, '');
    }
    return ($code, \%h, $raw_headers, $body, $rest);
}

sub indexed ($$$$) {
    my ($name, $value, $i, $need_array) = @_;
    if ($need_array) {
        return $value->[$i] if ref $value eq 'ARRAY';
        bail_out("$name - You asked for many requests, the expected results should be arrays as well.");
    }
    return ref $value eq 'ARRAY' ? $value->[0] : $value;
}

sub parse_headers ($) {
    my $s = shift // '';
    my %headers;
    for (split /\n/, $s) {
        s/^\s+|\s+$//g;
        next if $_ eq '';
        if (s/^!\s*//) { $headers{$_} = undef; next }
        my ($key, $val) = split /\s*:\s*/, $_, 2;
        $headers{$key} = $val;
    }
    return \%headers;
}

sub header_value ($$) {
    my ($h, $key) = @_;
    my $v = $h ? $h->{lc $key} : undef;
    return $v ? join(', ', @$v) : undef;
}

sub check_response ($$$$$) {
    my ($block, $i, $need_array, $res, $timed_out) = @_;
    my $name = $block->name;
    my ($code, $h, $raw_headers, $body) = $res ? @$res : (undef, undef, '', undef);

    if (defined $block->error_code_like) {
        my $want = indexed($name, $block->error_code_like, $i, $need_array);
        like($code // '', qr/$want/sm, "$name - status code ok");
    } elsif (defined $block->error_code) {
        is($code // '', indexed($name, $block->error_code, $i, $need_array), "$name - status code ok");
    } else {
        is($code // '', 200, "$name - status code ok");
    }

    my $rh = $block->response_headers;
    my $rhl = $block->response_headers_like;
    if (defined $rh && defined $rhl) {
        fail("$name - response_headers and response_headers_like together: the real Test::Nginx ignores response_headers_like then");
    }
    if (defined $rh) {
        my $spec = indexed($name, $rh, $i, $need_array);
        if (ref $spec) {
            fail("$name - response_headers must be text lines (\"Name: value\", \"!Name\"): the real Test::Nginx checks nothing in a Perl " . ref($spec));
        } else {
            my $headers = parse_headers($spec);
            for my $key (sort keys %$headers) {
                my $val = $headers->{$key};
                if (!defined $val) {
                    unlike($raw_headers, qr/^\s*\Q$key\E\s*:/ms, "$name - header $key not present in the raw headers");
                    next;
                }
                $val =~ s/\$ServerPort\b/$ServerPort/g;
                is(header_value($h, $key) // '', $val, "$name - header $key ok");
            }
        }
    } elsif (defined $rhl) {
        my $spec = indexed($name, $rhl, $i, $need_array);
        if (ref $spec) {
            fail("$name - response_headers_like must be text lines (\"Name: regex\"): the real Test::Nginx checks nothing in a Perl " . ref($spec));
        } else {
            my $headers = parse_headers($spec);
            for my $key (sort keys %$headers) {
                my $val = $headers->{$key} // '';
                like(header_value($h, $key) // '', qr/^$val$/, "$name - header $key like ok");
            }
        }
    }

    my $rb = $block->response_body;
    my $rbl = $block->response_body_like;
    if (defined $rb && defined $rbl) {
        fail("$name - response_body and response_body_like together: the real Test::Nginx ignores response_body_like then");
    }
    if (defined $rb) {
        my $want = indexed($name, $rb, $i, $need_array);
        unless (!defined $want || ref $want) {
            $want =~ s/\$ServerPort\b/$ServerPort/g;
            $want = expand_env($want, $name);
        }
        if (ref $want) {
            like($body, $want, "$name - response_body - like (req $i)");
        } else {
            is($body, $want, "$name - response_body - response is expected (req $i)");
        }
    } elsif (defined $rbl) {
        my $pat = indexed($name, $rbl, $i, $need_array);
        $pat =~ s/\$ServerPort\b/$ServerPort/g;
        like($body, qr/$pat/s, "$name - response_body_like - response is expected (req $i)");
    }
}

# --- the error log ---

sub error_log_data () {
    # Lines logged after the answer was sent (the log phase) are waited for, as the real one does.
    sleep $TestNginxSleep * 3;
    open my $in, '<', $ErrLogFile or return [];
    seek $in, $ErrLogFilePos, 0 if !$CheckAccumErrLog && $ErrLogFilePos > 0;
    my @lines = <$in>;
    $ErrLogFilePos = tell($in) unless $CheckAccumErrLog;
    close $in;
    return \@lines;
}

sub value_contains ($$) {
    my ($val, $pat) = @_;
    return $val =~ /\Q$pat\E/ if !ref $val || ref $val eq 'Regexp';
    if (ref $val eq 'ARRAY') {
        for my $v (@$val) { return 1 if value_contains($v, $pat) }
    }
    return undef;
}

sub patterns_of ($) {
    my $pats = shift;
    if (!ref $pats) {
        chomp $pats;
        return [split /\n+/, $pats];
    }
    return [$pats] if ref $pats eq 'Regexp';
    return [@$pats];
}

sub line_matches ($$) {
    my ($line, $pat) = @_;
    return (ref $pat && $line =~ /$pat/) || $line =~ /\Q$pat\E/;
}

sub check_error_log ($$) {
    my ($block, $repeated) = @_;
    my $name = $block->name;
    my $lines;
    my %warn_about = map { $_ => 1 } qw(alert crit emerg);

    my $grep_pat = $block->grep_error_log;
    if (defined $grep_pat) {
        $grep_pat = $grep_pat->[$repeated] if ref $grep_pat eq 'ARRAY';
        my $expected = $block->grep_error_log_out;
        bail_out("$name - No --- grep_error_log_out defined but --- grep_error_log is defined")
            unless defined $expected;
        $expected = expand_env($expected, $name);
        $expected = $expected->[$repeated] if ref $expected eq 'ARRAY';
        $lines ||= error_log_data();
        my $got = '';
        for my $line (@$lines) {
            # (inline, not line_matches(): $& is the match of the enclosing block)
            if (ref $grep_pat && $line =~ /$grep_pat/ || $line =~ /\Q$grep_pat\E/) {
                my $m = $&;
                $got .= "$m\n" if $m !~ /\n/;
            }
        }
        if (ref $expected eq 'Regexp') {
            like($got, $expected, "$name - grep_error_log_out (req $repeated)");
        } else {
            is($got, $expected, "$name - grep_error_log_out (req $repeated)");
        }
    } elsif (defined $block->grep_error_log_out) {
        bail_out("$name - No --- grep_error_log defined but --- grep_error_log_out is defined");
    }

    if (defined $block->error_log) {
        my $spec = $block->error_log;
        for my $level (keys %warn_about) {
            delete $warn_about{$level} if value_contains($spec, "[$level");
        }
        my $pats = patterns_of($spec);
        $lines ||= error_log_data();
        for my $line (@$lines) {
            for my $pat (@$pats) {
                next unless defined $pat;
                if (line_matches($line, $pat)) {
                    pass("$name - pattern \"$pat\" matches a line in error.log (req $repeated)");
                    undef $pat;
                }
            }
        }
        for my $pat (grep { defined } @$pats) {
            fail("$name - pattern \"$pat\" should match a line in error.log (req $repeated)");
        }
    }

    if (defined $block->no_error_log) {
        my $spec = $block->no_error_log;
        for my $level (keys %warn_about) {
            delete $warn_about{$level} if value_contains($spec, "[$level");
        }
        my $pats = patterns_of($spec);
        my %found;
        $lines ||= error_log_data();
        for my $line (@$lines) {
            for my $pat (@$pats) {
                next unless defined $pat;
                if (line_matches($line, $pat)) {
                    $found{$pat} = 1;
                    (my $ln = $line) =~ s/\n/\\n/g;
                    fail("$name - pattern \"$pat\" should not match any line in error.log but matches line \"$ln\" (req $repeated)");
                }
            }
        }
        for my $pat (@$pats) {
            next if !defined $pat || $found{$pat};
            pass("$name - pattern \"$pat\" does not match a line in error.log (req $repeated)");
        }
    }

    if (%warn_about) {
        $lines ||= error_log_data();
        for my $line (@$lines) {
            for my $level (sort keys %warn_about) {
                if ($line =~ /\[$level\]/) {
                    (my $ln = $line) =~ s/\n//g;
                    warn "WARNING: $name - $ln\n";
                }
            }
        }
    }

    for my $line (@{ $lines || [] }) {
        if ($line =~ /\bAssertion .*?failed\b/) {
            chomp(my $l = $line);
            fail("$name - $l\n");
        }
    }
}

# --- blocks ---

sub run_requests ($$) {
    my ($block, $repeated) = @_;
    my $name = $block->name;
    my ($list, $need_array) = requests_of($block);
    my $timeout = parse_time($block->timeout) // $Timeout;
    my $wait = $block->wait;
    my $idx = 0;
    for my $k (0 .. $#$list) {
        my ($raw, $heads) = @{ $list->[$k] };
        my ($resp, $timed_out) = send_request($name, $raw, $timeout);
        fail("ERROR: client socket timed out - $name\n") if $timed_out;
        for my $j (0 .. $#$heads) {
            my @res = parse_response($resp, $heads->[$j]);
            $resp = @res ? $res[4] : '';
            check_response($block, $idx, $need_array, @res ? \@res : undef, $timed_out);
            my $last = $k == $#$list && $j == $#$heads;
            if (!$last) {
                sleep $wait if $wait;
                check_error_log($block, $repeated);
            }
            $idx++;
        }
        if (length($resp // '') && $resp =~ /\S/) {
            (my $left = $resp) =~ s/([\0-\037\200-\377])/sprintf('\x{%02x}', ord $1)/eg;
            warn "WARNING: $name - unexpected extra bytes after the response: \"$left\"\n";
        }
    }
    sleep $wait if $wait;
    check_error_log($block, $repeated);
}

sub run_block ($) {
    my $block = shift;
    my $name = $block->name;
    return if defined $block->SKIP;
    bail_out("$name - No '--- config' section specified") unless defined $block->config;

    stop_nginx($name);
    setup_server_root();
    write_config($block);

    if (defined(my $must_die = $block->must_die)) {
        for my $i (0 .. $RepeatEach - 1) {
            $ErrLogFilePos = 0;
            my ($status) = run_nginx($block);
            my $exit = $status >> 8;
            if ($status == -1) {
                fail("$name - failed to execute the nginx command line");
            } elsif ($status & 128) {
                fail("$name - nginx core dumped");
            } elsif ($must_die =~ /^\s*(\d+)\s*$/) {
                is($1, $exit, "$name - die with the expected exit code");
            } else {
                isnt($status, 0, "$name - die as expected");
            }
            check_error_log($block, $i);
            if ($status == 0) {
                warn "WARNING: $name - nginx must die but it does not; killing it (req $i)\n";
                sleep 0.05;
                stop_nginx($name);
            }
        }
        return;
    }

    # As the real one, a start that fails is tried again (a port not yet released...) before
    # giving up, here for up to 5 s rather than 30.
    my ($status, $stderr, $waited) = (0, '', 0);
    for my $i (1 .. 100) {
        ($status, $stderr) = run_nginx($block);
        last if $status == 0 || $waited >= 5;
        my $delay = $i * 0.1 > 1 ? 1 : $i * 0.1;
        sleep $delay;
        $waited += $delay;
    }
    if ($status != 0) {
        my $log = '';
        if (open my $fh, '<', $ErrLogFile) { local $/; $log = <$fh> // ''; close $fh }
        $log = join "\n", (split /\n/, $log)[-20 .. -1] if ($log =~ tr/\n//) > 20;
        bail_out("$name - Cannot start nginx (status code $status): $stderr$log");
    }
    sleep $TestNginxSleep;
    wait_for_port() or bail_out("$name - nginx does not listen on port $ServerPort");

    $ErrLogFilePos = 0;
    for my $i (0 .. $RepeatEach - 1) {
        run_requests($block, $i);
    }
}

sub run_tests () {
    $ENV{TEST_NGINX_SERVER_PORT} //= $ServerPort;
    srand($$ + time * 1000000);
    for my $block ($NoShuffle ? Test::Base::blocks() : shuffle Test::Base::blocks()) {
        $_->($block) for @BlockPreprocessors;
        $block->set_value(name => "$0 " . $block->name);
        run_block($block);
    }
}

END {
    # local: waitpid on the daemonized master sets $? to -1, which would become the exit status.
    local $?;
    stop_nginx('END') unless $ENV{TEST_NGINX_NO_CLEAN};
}

1;
