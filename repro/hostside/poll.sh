# shellcheck shell=sh
# The poll (after lib.sh, follow.sh; before rundir.sh, reply.sh). $1 step dir, $2 plan id, $3 index of the key to
# follow (from 1), $4 its log offset, $5 wait (hundredths), $6 chunk, $7 exact (1: a `head -c`
# per log), $8 hold (reply.sh), then the keys.
d=$1; p=$2; i=$3; off=$4; wt=$5; chunk=$6; exact=$7; hold=$8; shift 8
fresh=0 ended=0; keys=$*
j=0
for k in $keys; do j=$((j + 1)); [ $j -lt "$i" ] || { follow; break; }; done
