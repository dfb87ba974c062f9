#!/usr/bin/env bash
# End-to-end smoke test of provider.mjs with curl only (python3 for PKCE + JSON).
# Starts a provider on a free port, runs the authorization-code flow without a browser,
# refresh with rotation, revocation, introspection and the admin endpoints, then stops it.
set -euo pipefail
cd "$(dirname "$0")"
./install.sh >/dev/null

TMP=$(mktemp -d)
RU='http://127.0.0.1:8080/callback'   # registered as http://127.0.0.1/callback (native: any port)
export OIDC_PORT=0 OIDC_ACCESS_TOKEN_TTL=2 OIDC_CLIENTS='[
  {"client_id":"basic-client","client_secret":"basic-secret","redirect_uris":["http://127.0.0.1/callback"],"application_type":"native"},
  {"client_id":"post-client","client_secret":"post-secret","redirect_uris":["http://127.0.0.1:8080/callback"],"token_endpoint_auth_method":"client_secret_post"}]'
node provider.mjs >"$TMP/stdout" 2>"$TMP/stderr" &
PID=$!
trap 'kill $PID 2>/dev/null; rm -rf "$TMP"' EXIT
for _ in $(seq 50); do grep -q '^listening on ' "$TMP/stdout" && break; sleep 0.1; done
ISS=$(sed -n 's/^listening on //p' "$TMP/stdout")
[ -n "$ISS" ] || { cat "$TMP/stderr"; exit 1; }
echo "== provider: $ISS"

json() { python3 -c "import json,sys; d=json.load(sys.stdin); print(d$1)"; }
ok() { echo "  ok: $*"; }
check() { local msg=$1; shift; "$@" || fail "$msg"; ok "$msg"; }  # check MSG test-command...
fail() { echo "FAIL: $*"; echo "--- provider stderr:"; cat "$TMP/stderr"; exit 1; }
enc() { python3 -c "import urllib.parse,sys; print(urllib.parse.quote(sys.argv[1], safe=''))" "$1"; }
# "status location" of one request, no redirect following, cookies kept in $JAR
req() { curl -s -o "$TMP/body" -w '%{http_code} %{redirect_url}\n' -c "$JAR" -b "$JAR" "$@"; }

echo "== discovery"
curl -sf "$ISS/.well-known/openid-configuration" >"$TMP/disc"
[ "$(json "['issuer']" <"$TMP/disc")" = "$ISS" ] || fail issuer
for k in authorization_endpoint token_endpoint revocation_endpoint introspection_endpoint userinfo_endpoint; do
  ok "$k = $(json "['$k']" <"$TMP/disc")"
done

# login: returns the code in $CODE. $1 client_id, $2 user, $3 extra authorize params
login() {
  JAR="$TMP/jar-$2"; [ -n "${KEEP_SESSION:-}" ] || rm -f "$JAR"
  read -r VERIFIER CHALLENGE < <(python3 -c "import base64,hashlib,secrets; v=secrets.token_urlsafe(48); print(v, base64.urlsafe_b64encode(hashlib.sha256(v.encode()).digest()).rstrip(b'=').decode())")
  STATE=$(python3 -c 'import secrets; print(secrets.token_urlsafe(16))')
  local q="response_type=code&client_id=$1&redirect_uri=$(enc "$RU")&scope=$(enc 'openid email profile offline_access')&state=$STATE&code_challenge=$CHALLENGE&code_challenge_method=S256$3"
  read -r s loc < <(req "$ISS/auth?$q");            echo "  1 GET  /auth?...            -> $s $loc"
  [ "$s" = 303 ] || fail "authorize: $(cat "$TMP/body")"
  if [[ "$loc" == */interaction/* ]]; then
    local uid=${loc##*/interaction/}
    read -r s loc2 < <(req "$loc");                  echo "  2 GET  /interaction/$uid  -> $s $loc2"
    if [ "$s" = 200 ]; then                          # login form: post the username
      read -r s loc2 < <(req -d "login=$2" -d password=whatever "$ISS/interaction/$uid/login")
      echo "  3 POST /interaction/$uid/login -> $s $loc2"
    fi
    [ "$s" = 303 ] || fail "interaction: $(cat "$TMP/body")"
    read -r s loc < <(req "$loc2");                  echo "  4 GET  /auth/$uid         -> $s $loc"
  fi
  [ "$s" = 303 ] && [[ "$loc" == "$RU?"* ]] || fail "no redirect to client: $s $loc $(cat "$TMP/body")"
  CODE=$(python3 -c "import urllib.parse,sys; q=dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(sys.argv[1]).query)); assert q['state']==sys.argv[2], 'state'; print(q['code'])" "$loc" "$STATE")
}
basic=(-u basic-client:basic-secret)

echo "== authorization code flow (basic-client, user alice, login form)"
login basic-client alice ""
curl -s "${basic[@]}" -d grant_type=authorization_code -d "code=$CODE" -d "redirect_uri=$RU" -d "code_verifier=$VERIFIER" "$ISS/token" >"$TMP/tok"
AT=$(json "['access_token']" <"$TMP/tok") RT=$(json "['refresh_token']" <"$TMP/tok") || fail "token: $(cat "$TMP/tok")"
ok "token response keys: $(json ".keys()" <"$TMP/tok" | python3 -c "import sys; print(sys.stdin.read().strip()[11:-2].replace(\"'\", ''))")"
ok "expires_in=$(json "['expires_in']" <"$TMP/tok") scope='$(json "['scope']" <"$TMP/tok")'"
ok "userinfo: $(curl -sf -H "Authorization: Bearer $AT" "$ISS/me")"
introspect() { curl -s "${basic[@]}" -d "token=$1" "$ISS/token/introspection" | json "['active']"; }
ok "introspect access token: active=$(introspect "$AT")"
echo "== wait for access token expiry (TTL 2s)"
sleep 3
check "access token expired: active=False" [ "$(introspect "$AT")" = False ]
check "userinfo with expired token -> 401" [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $AT" "$ISS/me")" = 401 ]

echo "== refresh (rotation)"
curl -s "${basic[@]}" -d grant_type=refresh_token -d "refresh_token=$RT" "$ISS/token" >"$TMP/tok2"
AT2=$(json "['access_token']" <"$TMP/tok2") RT2=$(json "['refresh_token']" <"$TMP/tok2") || fail "refresh: $(cat "$TMP/tok2")"
check "new refresh token issued (rotated)" [ "$RT2" != "$RT" ]
check "old refresh token inactive, new one active" [ "$(introspect "$RT")$(introspect "$RT2")" = FalseTrue ]

echo "== revocation (RFC 7009) of the current refresh token"
check "revoke -> HTTP 200" [ "$(curl -s -o /dev/null -w '%{http_code}' "${basic[@]}" -d "token=$RT2" -d token_type_hint=refresh_token "$ISS/token/revocation")" = 200 ]
check "after revocation: refresh token and access token of the grant inactive" [ "$(introspect "$RT2")$(introspect "$AT2")" = FalseFalse ]
out=$(curl -s "${basic[@]}" -d grant_type=refresh_token -d "refresh_token=$RT2" "$ISS/token")
check "refresh with revoked token -> $out" [ "$(json "['error']" <<<"$out")" = invalid_grant ]

echo "== second login: post-client (client_secret_post), user bob via login_hint (no form)"
login post-client bob "&login_hint=bob"
post=(-d client_id=post-client -d client_secret=post-secret)
curl -s "${post[@]}" -d grant_type=authorization_code -d "code=$CODE" -d "redirect_uri=$RU" -d "code_verifier=$VERIFIER" "$ISS/token" >"$TMP/tok3"
RT3=$(json "['refresh_token']" <"$TMP/tok3") || fail "token: $(cat "$TMP/tok3")"
ok "got refresh token for bob"
echo "== admin: revoke all grants of bob, then refresh must fail"
ok "POST /test/revoke-grants?sub=bob -> $(curl -s -X POST "$ISS/test/revoke-grants?sub=bob")"
out=$(curl -s "${post[@]}" -d grant_type=refresh_token -d "refresh_token=$RT3" "$ISS/token")
check "refresh -> $out" [ "$(json "['error']" <<<"$out")" = invalid_grant ]

echo "== carol: second authorize in the same cookie jar (session exists -> auto-consent, no login form)"
login basic-client carol ""
KEEP_SESSION=1 login basic-client carol ""
curl -s "${basic[@]}" -d grant_type=authorization_code -d "code=$CODE" -d "redirect_uri=$RU" -d "code_verifier=$VERIFIER" "$ISS/token" >"$TMP/tok4"
RT4=$(json "['refresh_token']" <"$TMP/tok4") || fail "token: $(cat "$TMP/tok4")"
echo "== refresh token reuse after rotation -> invalid_grant and the whole grant is revoked"
RT5=$(curl -s "${basic[@]}" -d grant_type=refresh_token -d "refresh_token=$RT4" "$ISS/token" | json "['refresh_token']")
out=$(curl -s "${basic[@]}" -d grant_type=refresh_token -d "refresh_token=$RT4" "$ISS/token")
check "reuse of rotated-out token -> $out" [ "$(json "['error']" <<<"$out")" = invalid_grant ]
check "newest refresh token of that grant is revoked too: active=False" [ "$(introspect "$RT5")" = False ]

echo "== stats"
curl -s "$ISS/test/stats" | tee "$TMP/stats"; echo
python3 - "$TMP/stats" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
want = dict(code_grants=3, refresh_grants=2, refresh_errors=3, revocations=1, revoked_refresh_tokens=1, logins=2 + 1, consents=1, grants_revoked=3)
bad = {k: (s[k], v) for k, v in want.items() if s[k] != v}
assert not bad, f"unexpected stats (got, want): {bad}"
print("  ok: stats as expected")
EOF
echo "SMOKE TEST PASSED"
