#!/bin/bash
# SPDX-License-Identifier: MIT
# The bash completion of dskectl, driven the way bash drives it.
#
#   bash test-completion.sh COMPLETION-FILE EXAMPLE-TOPOLOGY

set -u

completion=$(realpath "$1")
example=$(realpath "$2")
failures=0

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1

# shellcheck source=/dev/null
source "$completion"

if [[ $(complete -p dskectl) != *"-F _dskectl"* ]]; then
        echo "FAIL: the file does not register _dskectl for dskectl"
        failures=$((failures + 1))
fi

mkdir -p "sub dir" conf.d
touch a.ini b.ini notes.txt "sub dir/inner.ini"
cat >odd.ini <<'EOF'
# [Client commented] is not a section
; Encryptors=never
[Topology]
BasePort=9000

[Hub h1]
[Hub both]

[Client  alpha ]
Encryptors = a1 a2 ; the first two
	a3
[Client both]
Encryptors=dropped
Encryptors=
Encryptors=b1
EOF

# check EXPECTED CWORD WORD... : complete word CWORD of the command line WORD... and compare the
# sorted candidates with EXPECTED, a list separated by commas.
check() {
        local expected=$1 got want
        COMP_CWORD=$2
        shift 2
        COMP_WORDS=("$@")
        COMP_LINE="$*"
        COMP_POINT=${#COMP_LINE}
        COMPREPLY=()
        _dskectl
        got=$(printf '%s\n' "${COMPREPLY[@]}" | sed '/^$/d' | sort | tr '\n' ' ')
        want=$(printf '%s\n' "$expected" | tr ',' '\n' | sed '/^$/d' | sort | tr '\n' ' ')
        if [[ $got != "$want" ]]; then
                echo "FAIL: '$*' (word $COMP_CWORD): expected [$want], got [$got]"
                failures=$((failures + 1))
        fi
}

# Commands and their actions.
check "topology" 1 dskectl to
check "topology,get-key-pair,bench,status,peers,pools,stop,decommission,check-state,help" 1 dskectl ""
check "peers,pools" 1 dskectl p
check "status,stop" 1 dskectl st
check "up,down,status" 2 dskectl topology ""
check "down" 3 dskectl --json topology d
check "" 3 dskectl stop hank ""

# Options, global and per command.
check "--concurrency" 3 dskectl bench "$example" --con
check "--topology,--timeout" 1 dskectl --t
check "--timeout" 2 dskectl topology --t
check "--http,--help" 2 dskectl status --h
check "--http,--help" 2 dskectl peers --h
check "--help,--json,--run-dir,--base-port,--http,--topology" 3 dskectl --json pools --
check "--size" 2 dskectl get-key-pair --s
check "" 2 dskectl -- -x

# Files and directories.
check "a.ini,b.ini,conf.d,odd.ini,sub dir" 3 dskectl topology up ""
check "a.ini" 2 dskectl bench a
check "sub dir/inner.ini" 2 dskectl bench "sub\\ dir/"
check "a.ini,b.ini,conf.d,odd.ini,sub dir" 2 dskectl --topology ""
check "a.ini,b.ini,conf.d,odd.ini,sub dir" 3 dskectl --topology = ""
check "b.ini" 3 dskectl --topology = b
check "--topology=a.ini" 1 dskectl --topology=a
check "conf.d,sub dir" 2 dskectl --run-dir ""
check "" 2 dskectl --base-port ""
check "" 2 dskectl --http ""

# SAE IDs and node names from the topology.
check "sam,serena,sofia,sunny,susan" 4 dskectl get-key-pair --topology "$example" ""
check "sam,serena,sofia,sunny,susan" 3 dskectl "-t$example" get-key-pair ""
check "serena,sofia,sunny,susan" 5 dskectl get-key-pair --topology "$example" sam s
check "sunny,susan" 3 dskectl bench --master su "$example"
check "sam" 4 dskectl topology up --slave sa "$example"
check "" 2 dskectl get-key-pair ""
check "hank,helen,hilary,holly,hugo,carol,celia,cindy,connie,curtis" 4 \
        dskectl status --topology "$example" ""
check "hank,helen,hilary,holly,hugo" 4 dskectl stop -t "$example" h
check "hank,helen,hilary,holly,hugo" 4 dskectl peers -t "$example" h
check "" 4 dskectl pools --http http://127.0.0.1:8100/hub/hank ""
check "h1,hub/both,client/both,alpha" 3 dskectl --topology=odd.ini pools ""
check "carol,celia,cindy,connie,curtis" 4 dskectl decommission --topology "$example" ""
check "" 6 dskectl decommission --topology "$example" --http http://127.0.0.1:8105/client/carol ""
check "" 4 dskectl get-key-pair --topology missing.ini ""
check "a1,a2,a3,b1" 3 dskectl --topology=odd.ini get-key-pair ""
check "h1,hub/both,client/both,alpha" 5 dskectl stop --topology = odd.ini ""
check "--master=a1,--master=a2,--master=a3" 3 dskectl bench odd.ini --master=a
check "alpha,both" 4 dskectl decommission -t odd.ini ""

if ((failures > 0)); then
        echo "$failures case(s) failed"
        exit 1
fi
echo "All completion cases passed"
