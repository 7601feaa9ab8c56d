#!/usr/bin/env bash
# hfgit in one go: start a server, create users, an organization, repositories and tokens,
# then clone and push with real git. Everything lives in a temporary directory.
#
#   bash examples/quickstart.sh            (needs `hfgit` on PATH, e.g. after `make serve`'s install)
#   PORT=9000 bash examples/quickstart.sh
set -euo pipefail

PORT=${PORT:-8080}
URL="http://127.0.0.1:$PORT"
WORK=$(mktemp -d)
DATA="$WORK/data"
export GIT_TERMINAL_PROMPT=0 GIT_CONFIG_NOSYSTEM=1 HOME="$WORK/home"
mkdir -p "$HOME"
git config --global user.name "Quickstart"
git config --global user.email "quickstart@example.com"
git config --global init.defaultBranch main

hfgit serve --data-dir "$DATA" --port "$PORT" --workers 1 2>"$WORK/serve.log" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 100); do
  python3 -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1] + '/healthz')" "$URL" 2>/dev/null && break
  sleep 0.1
done

admin() { hfgit "$@" --data-dir "$DATA"; }
admin user add alice
admin user add bob
admin org add acme
admin org member acme alice --role write
admin org member acme bob --role read
admin repo create alice/tiny-model --private
admin repo create acme/shared-data --type dataset --private

# Tokens are printed once, on stdout alone; keep them in variables, never in URLs.
ALICE_TOKEN=$(admin token create alice --name laptop --role write)
BOB_TOKEN=$(admin token create bob --name reader --role read)
export ALICE_TOKEN BOB_TOKEN

# A throwaway credential helper hands git the token for the current user; in real use,
# `hfgit login` + `hfgit setup-git` configure git-credential-hf instead.
as_user() {
  local user=$1 var=$2; shift 2
  git -c credential.helper= \
      -c "credential.helper=!f() { test \"\$1\" = get && echo username=$user && echo password=\$$var; }; f" "$@"
}

cd "$WORK"
git init -q model && cd model
echo "weights v1" > weights.txt && git add . && git commit -qm "first weights"
as_user alice ALICE_TOKEN push -q "$URL/alice/tiny-model" main
as_user alice ALICE_TOKEN push -q "$URL/datasets/acme/shared-data" main
echo "alice pushed alice/tiny-model and datasets/acme/shared-data"

cd "$WORK"
as_user bob BOB_TOKEN clone -q "$URL/datasets/acme/shared-data" shared
echo "bob cloned datasets/acme/shared-data: $(cat shared/weights.txt)"

cd shared && echo "bob was here" >> weights.txt && git commit -qam "bob edits"
if as_user bob BOB_TOKEN push -q origin main 2>"$WORK/push.err"; then
  echo "unexpected: bob's read token could push" >&2
  exit 1
fi
echo "bob's push was refused: $(grep -m1 'remote:' "$WORK/push.err" | sed 's/^remote: //')"

if as_user bob BOB_TOKEN ls-remote "$URL/alice/tiny-model" >/dev/null 2>&1; then
  echo "unexpected: bob can see alice's private model" >&2
  exit 1
fi
echo "bob cannot see alice/tiny-model"
echo "quickstart: OK"
