package t::TestDynpage;

# Shared defaults for dynpage's Test::Nginx::Socket suite. Works with the real
# Test::Nginx::Socket and with the project's runner in t/lib.
#
# Sections it adds:
#   --- redis       redis-cli commands run before the block (after FLUSHALL); `{now}`,
#                   `{now+1500}`, `{now-60000}` become wall-clock milliseconds.
# What it sets up:
#   - `dynpage_redis redis://127.0.0.1:$TEST_NGINX_REDIS_PORT;` is prepended to http_config
#     unless the block configures its own dynpage_redis.
#   - a control server on $TEST_NGINX_CONTROL_PORT that configs can reach with proxy_pass:
#     /freeze and /thaw (SIGSTOP/SIGCONT the test Redis), /reload (HUP the test nginx),
#     /sleep/<ms>. The test Redis is thawed before every block.

use Test::Nginx::Socket -base;
use strict;
use warnings;
use IO::Socket::INET;
use Time::HiRes qw(time sleep);
use POSIX ();

our @EXPORT = qw(redis_cli);

my $RedisPort = $ENV{TEST_NGINX_REDIS_PORT}
    or die "TEST_NGINX_REDIS_PORT is not set: run the suite with `make test`\n";
my $RedisCli = $ENV{TEST_NGINX_REDIS_CLI} || 'redis-cli';

sub redis_cli {
    my ($input) = @_;
    my $file = "/tmp/dynpage-test-redis-$$.txt";
    open my $fh, '>', $file or die "cannot write $file: $!";
    print $fh $input;
    close $fh;
    my $out = `$RedisCli -h 127.0.0.1 -p $RedisPort < $file 2>&1`;
    unlink $file;
    die "redis-cli failed: $out" if $? != 0 || $out =~ /^(ERR|WRONGTYPE|\(error\))/m;
    return $out;
}

my ($RedisPid) = redis_cli("INFO server\n") =~ /process_id:(\d+)/;

sub now_ms { int(time * 1000) }

# The control server: a child process answering tiny HTTP requests.
my $ctl = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 16, ReuseAddr => 1)
    or die "control server: $!";
$ENV{TEST_NGINX_CONTROL_PORT} = $ctl->sockport;
my $CtlPid = fork;
die "fork: $!" unless defined $CtlPid;
if ($CtlPid == 0) {
    $SIG{TERM} = sub { POSIX::_exit(0) };
    while (my $c = $ctl->accept) {
        my $line = <$c> // '';
        while (my $h = <$c>) { last if $h =~ /^\r?\n$/ }
        my ($path) = $line =~ m{^\w+\s+(\S+)};
        $path //= '/';
        my $body = "unknown\n";
        if ($path eq '/freeze') { kill 'STOP', $RedisPid; $body = "frozen\n" }
        elsif ($path eq '/thaw') { kill 'CONT', $RedisPid; $body = "thawed\n" }
        elsif ($path =~ m{^/reload}) {
            my $pid = Test::Nginx::Socket::pid_of_nginx();
            kill 'HUP', $pid if $pid;
            $body = "reloaded\n";
        }
        elsif ($path =~ m{^/sleep/(\d+)}) { sleep($1 / 1000); $body = "slept\n" }
        print $c "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
            . length($body) . "\r\n\r\n$body";
        close $c;
    }
    POSIX::_exit(0);
}
close $ctl;

END {
    if ($CtlPid) {
        kill 'TERM', $CtlPid;
        waitpid $CtlPid, 0;
        kill 'CONT', $RedisPid if $RedisPid;
    }
}

add_block_preprocessor(sub {
    my $block = shift;
    kill 'CONT', $RedisPid;
    my $http = $block->http_config // '';
    if ($http !~ /dynpage_redis\s/) {
        $block->set_value(http_config =>
            "dynpage_redis redis://127.0.0.1:\$TEST_NGINX_REDIS_PORT;\n$http");
    }
    my $seed = "FLUSHALL\n";
    if (defined(my $redis = $block->redis)) {
        my $now = now_ms();
        $redis =~ s/\{now(?:([+-])(\d+))?\}/!defined $1 ? $now : $1 eq '+' ? $now + $2 : $now - $2/ge;
        $seed .= $redis;
        $seed .= "\n" unless $seed =~ /\n\z/;
    }
    redis_cli($seed);
});

1;
