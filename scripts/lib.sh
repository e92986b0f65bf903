# lib.sh: shell helpers the bench scripts share. A script sources it after
# `set -euo pipefail`:
#
#     . "$(dirname "$0")/lib.sh"
#
# It only defines functions. say, die and usage_error name the script by
# $prog, which the script sets (prog=${0##*/}); note adds to the script's
# notes array and sets failed=1; free_bytes measures the filesystem mounted
# on $mnt.
#
#     usage              the script's header comment: line 2 up to `set -euo`,
#                        without the leading '# '
#     say MSG...         MSG on stderr, after "$prog: "
#     die MSG...         say MSG, exit 1
#     usage_error MSG... say MSG and how to get help, exit 2
#     note MSG...        keep MSG for the table, mark the pass failed, say it
#     add A B            A + B with two decimals
#     percent PART WHOLE PART of WHOLE in percent with one decimal, or n/a
#     mib BYTES          BYTES in MiB with one decimal
#     human BYTES        123456789 -> 117.7 MiB (negative values keep their
#                        sign)
#     free_bytes         free bytes of $mnt as statfs reports them, after
#                        committing pending work (btrfs counts freed extents
#                        only once its transaction commits)
#     drop_caches        write back and drop the page cache

usage() {
	sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0"
}

say() {
	echo "$prog: $*" >&2
}

die() {
	say "$*"
	exit 1
}

usage_error() {
	say "$*"
	echo "Try '$prog --help'." >&2
	exit 2
}

note() {
	notes+=("$*")
	failed=1
	say "note: $*"
}

add() {
	awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f\n", a + b }'
}

percent() {
	awk -v p="$1" -v w="$2" 'BEGIN { if (w > 0) printf "%.1f%%\n", 100 * p / w; else print "n/a" }'
}

mib() {
	awk -v b="$1" 'BEGIN { printf "%.1f\n", b / 1048576 }'
}

human() {
	local b=${1%.*} sign=
	[[ $b != -* ]] || sign=- b=${b#-}
	echo "$sign$(numfmt --to=iec-i --suffix=B --format=%.1f -- "$b" | sed 's/\([0-9]\)\([A-Z]\)/\1 \2/')"
}

free_bytes() {
	if [ "$(stat -f -c %T "$mnt")" = btrfs ]; then
		btrfs filesystem sync "$mnt" >/dev/null
	fi
	sync -f "$mnt"
	stat -f -c '%f %S' "$mnt" | awk '{ printf "%.0f\n", $1 * $2 }'
}

drop_caches() {
	sync
	echo 3 >/proc/sys/vm/drop_caches
}
