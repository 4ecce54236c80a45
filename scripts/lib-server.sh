# Shell functions shared by the benchmark scripts (sourced, not run).

# server_process PID COMM: prints the PID of the process named COMM at or
# below PID, following first children (the server below the shell, `ip netns
# exec`, setpriv and timeout, not a helper the server forks itself); PID
# itself if none is found within six levels.
server_process() {
    local p=$1 want=$2 c
    for _ in 1 2 3 4 5 6; do
        [ "$(cat /proc/"$p"/comm 2>/dev/null)" = "$want" ] && break
        c=$(cat /proc/"$p"/task/*/children 2>/dev/null | awk '{print $1; exit}')
        [ -n "$c" ] || break
        p=$c
    done
    echo "$p"
}
