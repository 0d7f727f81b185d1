package Test::Nginx::Socket;

# dynpage's own runner for Test::Nginx::Socket's data-driven format.
#
# Test::Nginx cannot be installed from this machine's package registries, so this file
# implements the part of its format that dynpage's suite uses, on Debian's Test::Base:
# sections http_config, main_config, server_config, config, request (plain or eval list),
# pipelined_requests, more_headers, error_code, response_headers, response_headers_like,
# response_body, response_body_like, error_log, no_error_log, grep_error_log (with
# grep_error_log_out: every match of the pattern, each followed by a newline; a qr// is
# matched), wait, timeout,
# must_die;
# functions plan, run_tests, repeat_each, no_shuffle, workers, master_on, master_off,
# log_level, no_long_string, no_root_location, env_to_nginx, add_block_preprocessor,
# server_port. The same .t files run unchanged under the real Test::Nginx::Socket: this file is
# only found through `prove -I t/lib`.
#
# Environment: TEST_NGINX_BINARY (nginx), TEST_NGINX_LOAD_MODULES (space separated .so paths),
# TEST_NGINX_SERVER_PORT (default 1984), TEST_NGINX_SERVROOT (default t/servroot), and every
# $TEST_NGINX_* variable is substituted into the config sections.

use Test::Base -base;
use strict;
use warnings;
use Time::HiRes qw(sleep time);
use IO::Socket::INET;
use POSIX qw(WNOHANG);
use Cwd qw(abs_path);

our @EXPORT = qw(run_tests repeat_each no_shuffle workers master_on master_off
  log_level no_long_string no_root_location env_to_nginx add_block_preprocessor
  server_port server_root timeout);

our $RepeatEach = 1;
our $Workers = 1;
our $MasterOn = 0;
our $LogLevel = 'debug';
our $NoRootLocation = 0;
our $Timeout = 3;
our @EnvToNginx;
our @BlockPreprocessors;
our $ServerPort = $ENV{TEST_NGINX_SERVER_PORT} || 1984;
our $ServRoot = $ENV{TEST_NGINX_SERVROOT} || abs_path('t') . '/servroot';
our $NginxBinary = $ENV{TEST_NGINX_BINARY} || 'nginx';

sub repeat_each (@) { $RepeatEach = shift if @_; $RepeatEach }
sub workers ($) { $Workers = shift }
sub master_on () { $MasterOn = 1 }
sub master_off () { $MasterOn = 0 }
sub log_level ($) { $LogLevel = shift }
sub no_shuffle () { }
sub no_long_string () { }
sub no_root_location () { $NoRootLocation = 1 }
sub env_to_nginx (@) { push @EnvToNginx, @_ }
sub add_block_preprocessor (&) { push @BlockPreprocessors, shift }
sub server_port () { $ServerPort }
sub server_root () { $ServRoot }
sub timeout (@) { $Timeout = shift if @_; $Timeout }

sub expand_env ($) {
    my $s = shift;
    return $s unless defined $s;
    $s =~ s/\$(TEST_NGINX_[_A-Z0-9]+)/defined $ENV{$1} ? $ENV{$1} : die "\$$1 is not set\n"/ge;
    return $s;
}

sub pid_of_nginx () {
    open my $fh, '<', "$ServRoot/logs/nginx.pid" or return;
    my $pid = <$fh>;
    close $fh;
    chomp $pid if defined $pid;
    return $pid;
}

sub stop_nginx () {
    my $pid = pid_of_nginx() or return;
    kill 'QUIT', $pid;
    for (1 .. 300) {
        return unless kill 0, $pid;
        sleep 0.01;
    }
    kill 'KILL', $pid;
    sleep 0.05;
}

sub write_config ($) {
    my $block = shift;
    for my $d ("$ServRoot", "$ServRoot/conf", "$ServRoot/logs", "$ServRoot/html") {
        mkdir $d unless -d $d;
    }
    my $modules = '';
    for my $m (split ' ', $ENV{TEST_NGINX_LOAD_MODULES} || '') {
        $modules .= "load_module $m;\n";
    }
    my $env = join '', map { "env $_;\n" } @EnvToNginx;
    my $main = expand_env($block->main_config) // '';
    my $http = expand_env($block->http_config) // '';
    my $server = expand_env($block->server_config) // '';
    my $config = expand_env($block->config) // '';
    my $master = $MasterOn ? 'on' : 'off';
    my $root = $NoRootLocation ? '' : "        location / { root html; index index.html; }\n";
    my $conf = <<"_EOC_";
$modules
worker_processes $Workers;
daemon on;
master_process $master;
error_log logs/error.log $LogLevel;
pid logs/nginx.pid;
$env
$main
events { worker_connections 1024; }
http {
    access_log logs/access.log;
    default_type text/plain;
    client_body_temp_path $ServRoot/client_body_temp;
    proxy_temp_path $ServRoot/proxy_temp;
    fastcgi_temp_path $ServRoot/fastcgi_temp;
    uwsgi_temp_path $ServRoot/uwsgi_temp;
    scgi_temp_path $ServRoot/scgi_temp;
    $http
    server {
        listen 127.0.0.1:$ServerPort;
        server_name localhost;
        $server
$config
$root    }
}
_EOC_
    open my $fh, '>', "$ServRoot/conf/nginx.conf" or die "cannot write nginx.conf: $!";
    print $fh $conf;
    close $fh;
}

sub start_nginx ($) {
    my $block = shift;
    stop_nginx();
    write_config($block);
    unlink "$ServRoot/logs/error.log", "$ServRoot/logs/access.log", "$ServRoot/logs/nginx.pid";
    my $out = `$NginxBinary -p $ServRoot/ -c conf/nginx.conf 2>&1`;
    my $ok = $? == 0;
    return ($ok, $out) unless $ok;
    for (1 .. 300) {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $ServerPort, Timeout => 1);
        if ($s) { close $s; return (1, $out) }
        sleep 0.01;
    }
    return (0, "nginx did not start listening on $ServerPort\n$out");
}

sub build_request ($$) {
    my ($req, $more_headers) = @_;
    $req =~ s/^\s+//;
    my ($line, $body) = split /\n/, $req, 2;
    $line =~ s/\s+$//;
    my ($method, $uri, $proto) = split /\s+/, $line;
    $uri //= '/';
    $proto //= 'HTTP/1.1';
    my $headers = "Host: localhost\r\nConnection: close\r\n";
    if (defined $more_headers) {
        for my $h (split /\n/, $more_headers) {
            next unless $h =~ /\S/;
            $headers .= "$h\r\n";
        }
    }
    $body = '' unless defined $body;
    $body =~ s/\n\z// if length $body;
    if (length $body) {
        $headers .= "Content-Length: " . length($body) . "\r\n";
    }
    return "$method $uri $proto\r\n$headers\r\n$body";
}

sub send_request ($) {
    my $raw = shift;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $ServerPort, Timeout => $Timeout)
        or return (undef, "connect failed: $!");
    print $s $raw;
    my $resp = '';
    my $deadline = time + $Timeout;
    $s->blocking(1);
    while (time < $deadline) {
        my $rin = '';
        vec($rin, fileno($s), 1) = 1;
        my $n = select(my $rout = $rin, undef, undef, $deadline - time);
        last if $n <= 0;
        my $got = sysread($s, my $buf, 65536);
        last unless $got;
        $resp .= $buf;
    }
    close $s;
    return ($resp, undef);
}

sub parse_response ($) {
    my $resp = shift;
    my ($head, $body) = split /\r\n\r\n/, $resp, 2;
    return unless defined $head;
    my @lines = split /\r\n/, $head;
    my $status_line = shift @lines;
    my ($code) = $status_line =~ m{^HTTP/\d\.\d\s+(\d+)};
    my %h;
    for (@lines) {
        my ($k, $v) = split /:\s*/, $_, 2;
        push @{ $h{lc $k} }, $v;
    }
    $body = '' unless defined $body;
    if (($h{'transfer-encoding'}[0] // '') =~ /chunked/i) {
        my $out = '';
        while ($body =~ s/\A([0-9a-fA-F]+)[^\r\n]*\r\n//) {
            my $len = hex $1;
            last if $len == 0;
            $out .= substr($body, 0, $len);
            substr($body, 0, $len + 2) = '';
        }
        $body = $out;
    }
    return ($code, \%h, $body);
}

sub list_of ($) {
    my $v = shift;
    return ref $v eq 'ARRAY' ? @$v : ($v);
}

sub item ($$) {
    my ($v, $i) = @_;
    return ref $v eq 'ARRAY' ? $v->[$i] : $v;
}

sub check_headers ($$$$) {
    my ($name, $spec, $h, $like) = @_;
    # A hash (from `eval`) or text lines: "Name: value", "!Name" for an absent header.
    my @pairs;
    if (ref $spec eq 'HASH') {
        # A "!Name" key: that header must be absent.
        @pairs = map { /^!\s*(.+)$/ ? [$1, undef] : [$_, $spec->{$_}] } sort keys %$spec;
    } else {
        for my $line (split /\n/, $spec) {
            next unless $line =~ /\S/;
            if ($line =~ /^!\s*([\w-]+)/) {
                push @pairs, [$1, undef];
                next;
            }
            push @pairs, [split /:\s*/, $line, 2];
        }
    }
    for my $pair (@pairs) {
        my ($k, $v) = @$pair;
        if (!defined $v) {
            ok(!exists $h->{lc $k}, "$name - header $k absent");
            next;
        }
        my $got = $h->{lc $k} ? join(', ', @{ $h->{lc $k} }) : undef;
        if ($like) {
            like($got // '', qr/$v/, "$name - header $k like");
        } else {
            is($got, $v, "$name - header $k ok");
        }
    }
}

sub error_log_text () {
    open my $fh, '<', "$ServRoot/logs/error.log" or return '';
    local $/;
    my $t = <$fh>;
    close $fh;
    return $t // '';
}

sub check_log ($$$) {
    my ($name, $spec, $want) = @_;
    my $log = error_log_text();
    my @pats = ref $spec eq 'ARRAY' ? @$spec : (ref $spec ? ($spec) : grep { /\S/ } split /\n/, $spec);
    for my $p (@pats) {
        my $found = ref $p eq 'Regexp' ? $log =~ $p : index($log, $p) >= 0;
        if ($want) {
            ok($found, "$name - error log has: $p");
        } else {
            ok(!$found, "$name - error log lacks: $p");
        }
    }
}

sub run_block ($) {
    my $block = shift;
    stop_nginx();
    $_->($block) for @BlockPreprocessors;
    my $name = $block->name;
    my ($started, $out) = start_nginx($block);
    if (defined $block->must_die) {
        ok(!$started, "$name - nginx refused the config");
        check_log($name, $block->error_log, 1) if defined $block->error_log;
        return;
    }
    unless ($started) {
        fail("$name - nginx started: $out" . error_log_text());
        return;
    }
    my @requests;
    my $pipelined = $block->pipelined_requests;
    if (defined $pipelined) {
        my $raw = join '', map { my $r = build_request($_, $block->more_headers); $r =~ s/Connection: close\r\n/Connection: keep-alive\r\n/; $r } @$pipelined;
        $raw =~ s/Connection: keep-alive(\r\n(?:(?!Connection: ).)*\z)/Connection: close$1/s;
        @requests = ();
        my ($resp, $err) = send_request($raw);
        my $i = 0;
        while (defined $resp && length $resp) {
            my ($code, $h, $rest) = parse_response($resp);
            last unless defined $code;
            my $len = $h->{'content-length'}[0] // 0;
            my $body = substr($rest, 0, $len);
            $resp = substr($rest, $len);
            check_response($block, "$name (req $i)", $i, $code, $h, $body);
            $i++;
        }
        is($i, scalar @$pipelined, "$name - pipelined responses");
    } else {
        my $req = $block->request;
        for my $i (0 .. (ref $req eq 'ARRAY' ? $#$req : 0)) {
            my $raw = build_request(item($req, $i), $block->more_headers);
            my ($resp, $err) = send_request($raw);
            if (!defined $resp) { fail("$name - request: $err"); next }
            my ($code, $h, $body) = parse_response($resp);
            check_response($block, ref $req eq 'ARRAY' ? "$name (req $i)" : $name, $i, $code, $h, $body);
        }
    }
    sleep($block->wait) if $block->wait;
    check_log($name, $block->error_log, 1) if defined $block->error_log;
    check_log($name, $block->no_error_log, 0) if defined $block->no_error_log;
    if (defined $block->grep_error_log) {
        my $pat = $block->grep_error_log;
        $pat = qr/$pat/ unless ref $pat;
        my $log = error_log_text();
        my $got = '';
        $got .= "$&\n" while $log =~ /$pat/g;
        my $want = $block->grep_error_log_out // '';
        if (ref $want eq 'Regexp') {
            like($got, $want, "$name - grep_error_log_out");
        } else {
            is($got, $want, "$name - grep_error_log_out");
        }
    }
}

sub check_response ($$$$$$) {
    my ($block, $name, $i, $code, $h, $body) = @_;
    my $want_code = defined $block->error_code ? item($block->error_code, $i) : 200;
    $want_code =~ s/\s+//g;
    is($code, $want_code, "$name - status code ok");
    check_headers($name, item($block->response_headers, $i), $h, 0) if defined $block->response_headers;
    check_headers($name, item($block->response_headers_like, $i), $h, 1) if defined $block->response_headers_like;
    if (defined $block->response_body) {
        is($body, item($block->response_body, $i), "$name - response_body - response is expected");
    }
    if (defined $block->response_body_like) {
        my $pat = item($block->response_body_like, $i);
        like($body, ref $pat ? $pat : qr/$pat/s, "$name - response_body_like - response is expected");
    }
}

sub run_tests () {
    for my $block (Test::Base::blocks()) {
        for (1 .. $RepeatEach) {
            run_block($block);
        }
    }
    stop_nginx();
}

END { stop_nginx() }

1;
