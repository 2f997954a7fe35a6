# repro's shared checkout step (a playbook step `uses: checkout`): exactly COMMIT of REPO_URL as
# a complete git repository in ./src, fetched through a persistent per-host mirror.
# Arguments (the step sets them with `set --`): REPO_URL COMMIT MIRROR_NAME
#
# Why a complete repository and not a worktree of the mirror: Guix pipelines run git inside
# `guix shell --container`, which sees only the current directory and what is exposed. A
# worktree's .git is a file naming the mirror under ~/.cache, outside the container: git there
# says "not a git repository". src/.git here holds every object it needs, copied (not linked)
# from the mirror, so the mirror may be fetched, pruned or deleted while the build runs.
set -eu
repo_url=$1
commit=$2
mirror_name=$3
fail() { printf 'checkout: %s\n' "$*" >&2; exit 1; }
case $commit in ''|*[!0-9a-f]*) fail "commit '$commit' is not a full lowercase hex commit id" ;; esac
[ ${#commit} -eq 40 ] || [ ${#commit} -eq 64 ] || fail "commit '$commit' is not a full commit id"
case $mirror_name in
    ''|.*|*[!A-Za-z0-9_.-]*) fail "mirror_name '$mirror_name' must be [A-Za-z0-9_.-]+, no leading dot" ;;
esac
# A URL starting with '-' would be read by git as an option.
case $repo_url in -*) fail "repo_url '$repo_url' is not a repository URL" ;; esac
[ ! -e src ] || fail "$PWD/src already exists: the work dir is not fresh"

mirrors=$HOME/.cache/repro/mirrors
mirror=$mirrors/$mirror_name.git
mkdir -p -- "$mirrors"
# Rounds and overlapping runs on one host share the mirror: one fetch and copy at a time.
if command -v flock >/dev/null 2>&1; then
    exec 9>>"$mirror.lock"
    flock -w 1800 9 || fail "waited 30 min for the lock on $mirror"
fi
if [ -d "$mirror" ]; then
    # Persistent mirror: a nightly run fetches only the new objects.
    git -C "$mirror" remote set-url origin "$repo_url"
    git -C "$mirror" fetch --prune --quiet origin
else
    # Cloned aside and renamed, so an interrupted first clone never looks like a mirror.
    tmp=$(mktemp -d "$mirrors/.$mirror_name.XXXXXX")
    trap 'rm -rf -- "$tmp"' EXIT
    git clone --mirror --quiet -- "$repo_url" "$tmp/mirror.git"
    mv -- "$tmp/mirror.git" "$mirror"
    trap - EXIT
    rmdir -- "$tmp"
fi
# A --mirror clone has every ref the remote serves (refs/pull/N/head included); a commit no ref
# reaches any more is asked for by id, which GitHub and git daemon allow for reachable objects.
if ! git -C "$mirror" cat-file -e "$commit^{commit}" 2>/dev/null; then
    git -C "$mirror" fetch --quiet origin "$commit" 2>/dev/null || true
fi
git -C "$mirror" cat-file -e "$commit^{commit}" 2>/dev/null || fail "commit $commit is not in $repo_url"

# Made aside and renamed, so a half-made src never passes for a checkout.
rm -rf -- .src.partial
git init --quiet .src.partial
# The exact commit and the tags (Bitcoin Core's guix-build names its version from a tag at HEAD).
git -C .src.partial fetch --quiet --tags -- "$mirror" "$commit"
git -C .src.partial checkout --quiet --detach "$commit"
git -C .src.partial remote add origin "$repo_url"
mv -- .src.partial src
head=$(git -C src rev-parse HEAD)
[ "$head" = "$commit" ] || fail "checked out $head, not $commit"
common=$(git -C src rev-parse --git-common-dir)
[ "$common" = .git ] || fail "src/.git is not a repository of its own (its objects are in $common)"
echo "checkout: $commit from $repo_url in $PWD/src"
