package t::TestTopology;

# A Redis Cluster (3 primaries, 3 replicas) or a Sentinel set (a primary, a replica, three
# sentinels) on free loopback ports, for t/022-cluster.t and t/023-sentinel.t. Load it after
# t::TestDynpage and call, before run_tests():
#
#     topology('cluster');    # or topology('sentinel')
#
# Environment for configs: $TEST_NGINX_CLUSTER_PORT1..6 (the nodes, 1-3 created as the
# primaries), $TEST_NGINX_SENTINEL_PORT1..3, $TEST_NGINX_SENTINEL_PRIMARY_PORT,
# $TEST_NGINX_SENTINEL_REPLICA_PORT, $TEST_NGINX_TOPOLOGY_PORT (the manager below).
#
# Before every block, every primary is flushed (nodes that were killed are started again and
# the set waits until it is whole), then a `--- cluster` or `--- sentinel` section's redis-cli
# commands seed it (`redis-cli -c`, so each write goes to the node owning its key; `{now}` as
# in `--- redis`).
#
# The manager answers (configs reach it with proxy_pass):
#   POST /cli              the body's redis-cli commands (cluster: -c on a primary; sentinel:
#                          on the current primary)
#   POST /dynpagectl       runs dynpagectl with --redis <the set's URL> and the body's lines
#   GET  /owners?keys=a,b  "nodes=<port>,<port>": the primaries serving these keys
#   GET  /failover?key=<k>&cached=<uri>,<uri>&miss=<uri prefix>
#        kills (SIGKILL) the primary serving key <k> (key=subscriber: the one with a pubsub
#        client; sentinel: the primary), then sends GETs
#        to the test nginx until the misses have been answered for 0.5 s after the promotion:
#        each of the cached URIs, and a new URI <miss prefix><n> each round. Answers
#        "promoted_ms=<ms since the kill> cached=<statuses counted> misses_back_ms=<ms from
#        the promotion to the first of the 200s that followed> late_5xx=<5xx after that>
#        verdict=<ok|...>", verdict ok when no cached GET got a 5xx and the misses were back
#        within 2 s of the promotion.
#   GET  /migrate?key=<k>&uris=<uri>,<uri>
#        (cluster) moves the slot of key <k> to another primary the way redis-cli --cluster
#        reshard does (IMPORTING/MIGRATING, MIGRATE key by key, SETSLOT NODE), slowly, while
#        GETs of <uris> go on; answers "slot=<s> keys=<n> statuses=<counted> asking=<ASKING
#        calls at the new owner> moved=<yes|no>".

use strict;
use warnings;
use IO::Socket::INET;
use Time::HiRes qw(time sleep);
use POSIX ();
use Test::Nginx::Socket ();

our @EXPORT = qw(topology);
use Exporter 'import';

my $Cli = $ENV{TEST_NGINX_REDIS_CLI} || 'redis-cli';
my $Dir = "/tmp/dynpage-test-topology-$$";
my ($Kind, $MgrPid);
my %Node;     # port => { pid, args, kind }
my @Order;    # ports in creation order

sub free_port { t::TestDynpage::free_port() }

# A cluster node needs its port and port + 10000 (its bus) free, and a port under 55536.
my %Taken;
sub cluster_port {
    for (1 .. 1000) {
        my $p = 20000 + int(rand(20000));
        next if $Taken{$p} || $Taken{$p + 10000};
        my @probe = map {
            IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $_, Listen => 1, ReuseAddr => 0)
        } ($p, $p + 10000);
        next if grep { !$_ } @probe;
        close $_ for @probe;
        $Taken{$p} = $Taken{$p + 10000} = 1;
        return $p;
    }
    die "no free port pair for a cluster node";
}

sub cli {
    my ($port, $input, @opts) = @_;
    my $file = "$Dir/cli-$$-" . int(rand(1e9)) . ".txt";
    open my $fh, '>', $file or die "cannot write $file: $!";
    print $fh $input;
    close $fh;
    my $out = `$Cli -h 127.0.0.1 -p $port @opts < $file 2>&1`;
    unlink $file;
    return $out;
}

sub one { my ($port, $cmd) = @_; my $o = `$Cli -h 127.0.0.1 -p $port $cmd 2>&1`; return $o }

sub start_node {
    my ($port, @extra) = @_;
    my $n = $Node{$port};
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDOUT, '>', '/dev/null';
        open STDERR, '>', '/dev/null';
        exec('redis-server', @{ $n->{args} }, @extra) or POSIX::_exit(127);
    }
    $n->{pid} = $pid;
    for (1 .. 200) {
        last if one($port, 'PING') =~ /PONG/;
        sleep 0.02;
    }
}

sub add_node {
    my ($port, $kind, @args) = @_;
    $Node{$port} = { kind => $kind, args => \@args };
    push @Order, $port;
    start_node($port);
}

sub alive { my ($port) = @_; return $Node{$port}{pid} && kill(0, $Node{$port}{pid}) }

sub kill_node {
    my ($port, $sig) = @_;
    my $pid = $Node{$port}{pid} or return;
    kill $sig // 'KILL', $pid;
    waitpid $pid, 0;
    $Node{$port}{pid} = 0;
}

sub until_true {
    my ($secs, $check) = @_;
    my $end = time + $secs;
    while (time < $end) {
        return 1 if $check->();
        sleep 0.05;
    }
    return 0;
}

# --- cluster ---

sub cluster_nodes {
    # [port, role, link up?] of every live node.
    my @out;
    for my $port (grep { alive($_) } @Order) {
        my $info = one($port, 'INFO replication');
        my ($role) = $info =~ /role:(\w+)/;
        push @out, [$port, $role // '?', $info =~ /master_link_status:up/ ? 1 : 0];
    }
    return @out;
}

sub primaries { map { $_->[0] } grep { $_->[1] eq 'master' } cluster_nodes() }

sub cluster_whole {
    my @n = cluster_nodes();
    return 0 unless @n == 6;
    for (@n) {
        return 0 unless one($_->[0], 'CLUSTER INFO') =~ /cluster_state:ok/;
        return 0 if $_->[1] eq 'slave' && !$_->[2];
    }
    my @p = grep { $_->[1] eq 'master' } @n;
    return 0 unless @p == 3;
    # Every primary has its replica linked.
    for my $p (@p) {
        return 0 unless one($p->[0], 'INFO replication') =~ /connected_slaves:1/;
    }
    # Every node knows the three replicas (gossip reaches them one by one): a client that reads
    # the slot map from any node then finds a replica for every slot.
    for (@n) {
        my $seen = () = one($_->[0], 'CLUSTER NODES') =~ /\bslave\b/g;
        return 0 unless $seen == 3;
    }
    # ... and lists all six in its slot map: Redis leaves a replica out of CLUSTER SLOTS until
    # its first sync is done, seconds after it is linked.
    for (@n) {
        my $listed = () = one($_->[0], 'CLUSTER SLOTS') =~ /^127\.0\.0\.1$/mg;
        return 0 unless $listed == 6;
    }
    return 1;
}

sub start_cluster {
    for my $i (1 .. 6) {
        my $port = cluster_port();
        mkdir "$Dir/n$port";
        add_node($port, 'cluster', '--bind', '127.0.0.1', '--port', $port, '--cluster-enabled',
            'yes', '--cluster-config-file', "$Dir/n$port/nodes.conf", '--cluster-node-timeout',
            '1000', '--save', '', '--appendonly', 'no', '--repl-diskless-sync-delay', '0',
            '--dir', "$Dir/n$port");
        $ENV{"TEST_NGINX_CLUSTER_PORT$i"} = $port;
    }
    my $nodes = join ' ', map { "127.0.0.1:$_" } @Order;
    my $out = `$Cli --cluster create $nodes --cluster-replicas 1 --cluster-yes 2>&1`;
    die "cluster create failed: $out" if $?;
    until_true(20, \&cluster_whole) or die "the cluster did not come up";
}

sub owner_of {
    my ($key) = @_;
    for my $p (primaries()) {
        my $o = one($p, "CLUSTER COUNTKEYSINSLOT 0");    # any reachable primary
        my ($slot) = one($p, "CLUSTER KEYSLOT '$key'") =~ /(\d+)/;
        my $slots = one($p, 'CLUSTER SLOTS');
        # redis-cli prints each range as lines: start, end, then host, port, id per node.
        my @l = split /\n/, $slots;
        for (my $i = 0; $i + 4 < @l; $i++) {
            next unless $l[$i] =~ /^\d+$/ && $l[$i + 1] =~ /^\d+$/ && $l[$i + 2] =~ /^127\.0\.0\.1$/;
            return ($l[$i + 3], $slot) if $slot >= $l[$i] && $slot <= $l[$i + 1];
        }
    }
    return;
}

sub node_id { my ($port) = @_; my ($id) = one($port, 'CLUSTER MYID') =~ /(\w+)/; $id }

sub reset_cluster {
    my $restarted = 0;
    for my $port (@Order) {
        next if alive($port);
        start_node($port);
        $restarted = 1;
    }
    until_true(20, \&cluster_whole) or warn "the cluster is not whole again\n" if $restarted;
    cli($_, "FLUSHALL\n") for primaries();
}

# --- sentinel ---

sub master_port {
    for my $s (grep { $Node{$_}{kind} eq 'sentinel' && alive($_) } @Order) {
        my $o = one($s, 'SENTINEL get-master-addr-by-name mymaster');
        return $1 if $o =~ /^\d+\.\d+\.\d+\.\d+\n(\d+)/;
    }
    return;
}

sub sentinel_whole {
    my $m = master_port() or return 0;
    return 0 unless alive($m) && one($m, 'ROLE') =~ /^master/;
    return 0 unless one($m, 'INFO replication') =~ /connected_slaves:1/;
    for my $r (grep { $Node{$_}{kind} eq 'data' && $_ != $m } @Order) {
        return 0 unless alive($r) && one($r, 'INFO replication') =~ /master_link_status:up/;
    }
    for my $s (grep { $Node{$_}{kind} eq 'sentinel' } @Order) {
        my $o = one($s, 'SENTINEL master mymaster');
        return 0 unless $o =~ /num-slaves\n1\n/ && $o =~ /num-other-sentinels\n2\n/;
        # As dynpage reads it: up, and linked to its master (sentinels refresh what they know
        # of a replica every 10 s).
        my $r = one($s, 'SENTINEL replicas mymaster');
        return 0 unless $r =~ /flags\nslave\n/ && $r =~ /master-link-status\nok\n/;
    }
    return 1;
}

sub start_sentinel {
    my $primary = free_port();
    my $replica = free_port();
    add_node($primary, 'data', '--bind', '127.0.0.1', '--port', $primary, '--save', '',
        '--appendonly', 'no', '--repl-diskless-sync-delay', '0', '--dir', $Dir);
    add_node($replica, 'data', '--bind', '127.0.0.1', '--port', $replica, '--save', '',
        '--appendonly', 'no', '--repl-diskless-sync-delay', '0', '--dir', $Dir,
        '--replicaof', '127.0.0.1', $primary);
    $ENV{TEST_NGINX_SENTINEL_PRIMARY_PORT} = $primary;
    $ENV{TEST_NGINX_SENTINEL_REPLICA_PORT} = $replica;
    for my $i (1 .. 3) {
        my $port = free_port();
        my $conf = "$Dir/sentinel-$port.conf";
        open my $fh, '>', $conf or die "$conf: $!";
        print $fh "port $port\nbind 127.0.0.1\ndir $Dir\n"
            . "sentinel monitor mymaster 127.0.0.1 $primary 2\n"
            . "sentinel down-after-milliseconds mymaster 1000\n"
            . "sentinel failover-timeout mymaster 10000\n";
        close $fh;
        add_node($port, 'sentinel', $conf, '--sentinel');
        $ENV{"TEST_NGINX_SENTINEL_PORT$i"} = $port;
    }
    until_true(30, \&sentinel_whole) or die "the sentinel set did not come up";
}

sub reset_sentinel {
    my $restarted = 0;
    my $m = master_port();
    for my $port (@Order) {
        next if alive($port);
        # A primary that was killed comes back as a replica of the one promoted meanwhile
        # (as sentinels would make it, only sooner).
        my @as = $Node{$port}{kind} eq 'data' && $m && $m != $port
            ? ('--replicaof', '127.0.0.1', $m) : ();
        start_node($port, @as);
        $restarted = 1;
    }
    until_true(30, \&sentinel_whole) or warn "the sentinel set is not whole again\n" if $restarted;
    $m = master_port();
    cli($m, "FLUSHALL\n") if $m;
}

# --- traffic ---

sub nginx_status {
    my ($uri) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
        PeerPort => Test::Nginx::Socket::server_port(), Timeout => 5) or return 'none';
    print $s "GET $uri HTTP/1.0\r\nHost: localhost\r\n\r\n";
    local $/;
    my $resp = <$s> // '';
    my ($code) = $resp =~ m{^HTTP/1\.\d (\d+)};
    return $code // 'none';
}

sub counted { my ($h) = @_; join(',', map { "$_=$h->{$_}" } sort keys %$h) || 'none' }

sub failover {
    my ($key, $cached, $miss) = @_;
    my ($victim, $promoted_check);
    if ($Kind eq 'cluster') {
        # key=subscriber: the primary nginx's events thread listens on.
        ($victim) = $key eq 'subscriber'
            ? grep { one($_, 'CLIENT LIST TYPE pubsub') =~ /\bid=/ } primaries()
            : owner_of($key);
        return "no owner for $key\n" unless $victim;
        my ($replica) = grep {
            $_->[1] eq 'slave' && one($_->[0], 'INFO replication') =~ /master_port:$victim\b/
        } cluster_nodes();
        return "no replica of $victim\n" unless $replica;
        my $r = $replica->[0];
        $promoted_check = sub {
            one($r, 'ROLE') =~ /^master/ && one($r, 'CLUSTER INFO') =~ /cluster_state:ok/
        };
    }
    else {
        $victim = master_port();
        $promoted_check = sub {
            my $m = master_port();
            $m && $m != $victim && one($m, 'ROLE') =~ /^master/;
        };
    }
    my @cached = split /,/, $cached;
    nginx_status($_) for @cached;    # they are cached before the kill
    my $t0 = time;
    kill_node($victim);
    my (%cached, $tp, $back, $late, $n);
    $late = 0;
    my $checked = 0;
    while (time - $t0 < 15) {
        my $now = time;
        if (!defined $tp && $now - $checked > 0.05) {
            $checked = $now;
            $tp = time if $promoted_check->();
        }
        $cached{ nginx_status($_) }++ for @cached;
        my $code = nginx_status($miss . $n++);
        if (defined $tp) {
            if ($code eq '200') { $back //= time }
            elsif ($code =~ /^5/) {
                if (defined $back) { $late++ }
            }
        }
        last if defined $back && time - $back > 0.5;
        sleep 0.02;
    }
    my $cached_5xx = grep { /^5/ } keys %cached;
    my $promoted_ms = defined $tp ? int(($tp - $t0) * 1000) : 'never';
    my $back_ms = defined $back ? int(($back - $tp) * 1000) : 'never';
    my $verdict = !defined $back ? 'misses-never-back'
        : $cached_5xx ? 'cached-5xx'
        : $back_ms > 2000 ? 'misses-late'
        : $late ? 'misses-failed-again' : 'ok';
    my $line = "killed=$victim promoted_ms=$promoted_ms cached="
        . counted(\%cached) . " misses_back_ms=$back_ms late_5xx=$late verdict=$verdict\n";
    print STDERR "# $Kind failover: $line";
    return "killed=$victim promoted_ms=$promoted_ms cached=" . counted(\%cached)
        . " misses_back_ms=$back_ms late_5xx=$late verdict=$verdict\n";
}

sub migrate {
    my ($key, $uris) = @_;
    my ($src, $slot) = owner_of($key);
    return "no owner for $key\n" unless $src;
    my ($dst) = grep { $_ != $src } primaries();
    my $asking0 = (one($dst, 'INFO commandstats') =~ /cmdstat_asking:calls=(\d+)/)[0] // 0;
    pipe(my $r, my $w) or die "pipe: $!";
    my $stop = "$Dir/stop-traffic";
    unlink $stop;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        close $r;
        my %seen;
        until (-e $stop) {
            $seen{ nginx_status($_) }++ for split /,/, $uris;
            sleep 0.01;
        }
        print $w counted(\%seen);
        close $w;
        POSIX::_exit(0);
    }
    close $w;
    sleep 0.3;
    my $keys = move_slot($slot, $src, $dst, 0.3);
    sleep 0.5;
    open my $f, '>', $stop;
    close $f;
    local $/;
    my $seen = <$r> // '';
    waitpid $pid, 0;
    my $asking = ((one($dst, 'INFO commandstats') =~ /cmdstat_asking:calls=(\d+)/)[0] // 0) - $asking0;
    my ($now) = owner_of($key);
    my $moved = defined $now && $now == $dst ? 'yes' : 'no';
    # Back where it was, so that the other blocks (in any order) find the layout they expect.
    move_slot($slot, $dst, $src, 0);
    return "slot=$slot keys=$keys statuses=$seen asking=$asking moved=$moved\n";
}

# Moves a slot as redis-cli --cluster reshard does, pausing between steps; returns the number
# of keys moved.
sub move_slot {
    my ($slot, $src, $dst, $pause) = @_;
    my ($sid, $did) = (node_id($src), node_id($dst));
    one($dst, "CLUSTER SETSLOT $slot IMPORTING $sid");
    one($src, "CLUSTER SETSLOT $slot MIGRATING $did");
    sleep $pause;
    my @keys = grep { length } split /\n/, one($src, "CLUSTER GETKEYSINSLOT $slot 1000");
    for my $k (@keys) {
        one($src, "MIGRATE 127.0.0.1 $dst '$k' 0 5000");
        sleep $pause;
    }
    one($_, "CLUSTER SETSLOT $slot NODE $did") for ($dst, $src, grep { $_ != $src && $_ != $dst } primaries());
    return scalar @keys;
}

sub set_url {
    if ($Kind eq 'cluster') {
        return 'redis+cluster://' . join(',', map { "127.0.0.1:$_" } @Order[0 .. 2]);
    }
    my @s = grep { $Node{$_}{kind} eq 'sentinel' } @Order;
    return 'redis+sentinel://' . join(',', map { "127.0.0.1:$_" } @s) . '/mymaster';
}

sub seed_port { $Kind eq 'cluster' ? (primaries())[0] : master_port() }

sub run_cli {
    my ($body) = @_;
    my $port = seed_port() or return "no primary\n";
    return cli($port, t::TestDynpage::expand_now($body), $Kind eq 'cluster' ? '-c' : ());
}

sub dynpagectl {
    my ($lines) = @_;
    return t::TestDynpage::dynpagectl($lines, set_url());
}

sub answer {
    my ($c) = @_;
    my $line = <$c> // '';
    my ($path) = $line =~ m{^\w+\s+(\S+)};
    $path //= '/';
    my $len = 0;
    while (my $h = <$c>) {
        last if $h =~ /^\r?\n$/;
        $len = $1 if $h =~ /^Content-Length:\s*(\d+)/i;
    }
    my $body = '';
    read($c, $body, $len) if $len;
    my $out = "unknown\n";
    if ($path eq '/reset') { $Kind eq 'cluster' ? reset_cluster() : reset_sentinel(); $out = "reset\n" }
    elsif ($path eq '/cli') { $out = run_cli($body) }
    elsif ($path eq '/dynpagectl') { $out = dynpagectl($body) }
    elsif ($path eq '/replica-reads') {
        # Replicas that served reads, and that were sent READONLY.
        my ($n, $ro) = (0, 0);
        my @replicas = $Kind eq 'cluster' ? map { $_->[0] } grep { $_->[1] eq 'slave' } cluster_nodes()
            : grep { $Node{$_}{kind} eq 'data' && $_ != (master_port() // 0) } @Order;
        for (map { [$_] } @replicas) {
            my $stats = one($_->[0], 'INFO commandstats');
            $n++ if $stats =~ /cmdstat_(?:hlen|hkeys|hget):calls=[1-9]/;
            $ro++ if $stats =~ /cmdstat_readonly:calls=[1-9]/;
        }
        $out = "replicas=$n readonly=$ro\n";
    }
    elsif ($path =~ m{^/owners\?keys=(.*)$}) {
        my %nodes = map { ((owner_of($_))[0] // 'none') => 1 } split /,/, t::TestDynpage::uri_unescape($1);
        $out = "nodes=" . join(',', sort keys %nodes) . "\n";
    }
    elsif ($path =~ m{^/failover\?key=([^&]*)&cached=([^&]*)&miss=([^&]*)$}) {
        $out = failover(map { t::TestDynpage::uri_unescape($_) } $1, $2, $3);
    }
    elsif ($path =~ m{^/migrate\?key=([^&]*)&uris=([^&]*)$}) {
        $out = migrate(map { t::TestDynpage::uri_unescape($_) } $1, $2);
    }
    print $c "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
        . length($out) . "\r\n\r\n$out";
}

sub topology {
    ($Kind) = @_;
    mkdir $Dir;
    $Kind eq 'cluster' ? start_cluster() : start_sentinel();
    $ENV{TEST_NGINX_TOPOLOGY_URL} = set_url();
    my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 16,
        ReuseAddr => 1) or die "topology manager: $!";
    $ENV{TEST_NGINX_TOPOLOGY_PORT} = $l->sockport;
    # The manager owns the servers from here on (it kills and restarts them); the test process
    # reaches it through /reset before every block.
    $MgrPid = fork // die "fork: $!";
    if ($MgrPid == 0) {
        $SIG{TERM} = sub {
            kill 'KILL', $_ for grep { $_ } map { $Node{$_}{pid} } @Order;
            POSIX::_exit(0);
        };
        $SIG{PIPE} = 'IGNORE';
        while (1) {
            my $c = $l->accept or do { next if $!{EINTR}; last };
            eval { answer($c) };
            warn "topology manager: $@" if $@;
            close $c;
        }
        POSIX::_exit(0);
    }
    close $l;
    # Only the manager may reap or kill the servers now.
    $Node{$_}{pid} = 0 for @Order;
}

sub manager {
    my ($method, $path, $body) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $ENV{TEST_NGINX_TOPOLOGY_PORT},
        Timeout => 60) or die "topology manager: $!";
    $body //= '';
    print $s "$method $path HTTP/1.0\r\nContent-Length: " . length($body) . "\r\n\r\n$body";
    local $/;
    my $resp = <$s> // '';
    $resp =~ s/^.*?\r\n\r\n//s;
    return $resp;
}

Test::Nginx::Socket::add_block_preprocessor(sub {
    my $block = shift;
    return unless $Kind;
    manager('GET', '/reset');
    my $section = $Kind;
    if (defined(my $cmds = eval { $block->$section })) {
        my $out = manager('POST', '/cli', $cmds);
        warn "seeding the $Kind: $out" if $out =~ /ERR|error/;
    }
});

END {
    local $?;
    if ($MgrPid) { kill 'TERM', $MgrPid; waitpid $MgrPid, 0 }
    # A set that failed to come up (before the manager took it over): its servers go too.
    elsif (my @pids = grep { $_ } map { $Node{$_}{pid} } @Order) {
        kill 'KILL', @pids;
        waitpid $_, 0 for @pids;
    }
    system('rm', '-rf', $Dir) if $Kind && -d $Dir;
}

1;
