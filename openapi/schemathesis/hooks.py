"""Schemathesis hooks for Rampart: real path ids, a fresh credential before every call, and a
log of every answer.

`crates/rampart/tests/schemathesis.rs` starts the real server, prepares the users and the
resources below over HTTP, and hands them over in a JSON file named by
`RAMPART_SCHEMATHESIS_FIXTURES`:

    {"base_url": "http://127.0.0.1:PORT",
     "users": {"main": {"email": ..., "password": ...}, ...},
     "ids": {"workspace": "<uuid>", "project": "<uuid>", ...},
     "source_secret": "<the Stripe signing secret of the `source` webhook source>"}

Every answer is appended as one JSON line to `RAMPART_SCHEMATHESIS_LOG` (operation, method,
status, the error body's `code`, a curl command for server errors), from which the test
tabulates the statuses the description does not document; the checks' failures it reads from
schemathesis's NDJSON report.

Path ids are substituted in `before_call`, not `map_path_parameters`: schemathesis 4.32 builds
the coverage phase's cases without the `map_*` hooks, and `before_call` sees every case.
"""

import hashlib
import hmac
import json
import os
import threading
import time
import uuid

import requests
import schemathesis

FIXTURES = json.load(open(os.environ["RAMPART_SCHEMATHESIS_FIXTURES"], encoding="utf-8"))
BASE_URL = FIXTURES["base_url"]
USERS = FIXTURES["users"]
IDS = FIXTURES["ids"]
SOURCE_SECRET = FIXTURES["source_secret"]
LOG_PATH = os.environ["RAMPART_SCHEMATHESIS_LOG"]

SESSION_COOKIE = "__Host-rampart_session"
CSRF_HEADER = "X-CSRF-Token"

# Which fixture replaces a path parameter, by parameter name. `provider` is left as generated:
# no identity provider is configured, so every name is unknown (see README.md).
PATH_IDS = {
    "workspace_id": "workspace",
    "project_id": "project",
    "connection_id": "connection",
    "source_id": "source",
    "endpoint_id": "endpoint",
    "delivery_id": "delivery",
    "invitation_id": "invitation",
    "grant_id": "grant",
    "key_id": "api_key",
    "activity_id": "activity",
    "user_id": "member",
    "action_id": "outbox_action",
}

# Operations that destroy or lock what they are given work on resources of their own, so the
# order in which schemathesis runs the operations never matters.
PATH_OVERRIDES = {
    "deleteWorkspace": {"workspace_id": "workspace_doomed"},
    # Requiring a second factor would shut the fixtures' users out of the main workspace.
    "setWorkspaceMfaRequirement": {"workspace_id": "workspace_mfa"},
    "removeMember": {"user_id": "member_doomed"},
    "deleteProject": {"project_id": "project_doomed"},
    "deleteConnection": {"connection_id": "connection_doomed"},
    "deleteWebhookSource": {"source_id": "source_doomed"},
    "deleteWebhookEndpoint": {"endpoint_id": "endpoint_doomed"},
    "deleteActivity": {"activity_id": "activity_doomed"},
    "revokeSession": {"id": "session"},
}

# The user each operation runs as (default `main`, the owner of every workspace above). Each
# operation that ends credentials, changes the password, counts password failures or changes
# second factors has a user of its own, so it cannot lock the others out.
ACTORS = {
    "revokeAllSessions": "revoke_all",
    "revokeOtherSessions": "revoke_others",
    "revokeSession": "revoke_session",
    "revokeToken": "revoke_token",
    "signOut": "sign_out",
    "changePassword": "password",
    "reauthenticate": "reauth",
    "mfaStatus": "mfa",
    "enrolTotp": "mfa",
    "confirmTotp": "mfa",
    "regenerateRecoveryCodes": "mfa",
    "disableMfa": "mfa",
    "listOutboxActions": "admin",
    "retryOutboxAction": "admin",
    "cancelOutboxAction": "admin",
}

# Operations that check the password take their credential by a password grant: its success
# resets the account's failure count, so the wrong passwords they are sent never add up to a
# lockout. Cookie-only operations sign in before every call anyway.
SIGN_IN_EACH_CALL = {"reauthenticate"}

# Refresh tokens by user, and the lock that keeps one rotation per user at a time.
_refresh = {}
_lock = threading.Lock()
_http = requests.Session()


def operation_id(operation):
    return operation.definition.raw.get("operationId", operation.label)


def _grant(user):
    """A new token family for `user` by password."""
    creds = USERS[user]
    resp = _http.post(
        f"{BASE_URL}/api/v1/auth/token",
        json={"email": creds["email"], "password": creds["password"]},
        timeout=30,
    )
    if resp.status_code != 200:
        raise RuntimeError(f"password grant for fixture user {user!r} answered {resp.status_code}: {resp.text}")
    return resp.json()


def fresh_access_token(user, by_password=False):
    """A new access token for `user`: the refresh token rotated, or a new sign-in when an
    operation under test ended the family (revocation, password change, sign-out) or when
    `by_password` asks for one."""
    with _lock:
        pair = None
        if user in _refresh and not by_password:
            resp = _http.post(
                f"{BASE_URL}/api/v1/auth/token/refresh",
                json={"refresh_token": _refresh[user]},
                timeout=30,
            )
            if resp.status_code == 200:
                pair = resp.json()
        if pair is None:
            pair = _grant(user)
        _refresh[user] = pair["refresh_token"]
        return pair["access_token"]


def fresh_browser_session(user):
    """A new browser session for `user`: its cookie value and CSRF token."""
    creds = USERS[user]
    resp = _http.post(
        f"{BASE_URL}/api/v1/auth/signin",
        json={"email": creds["email"], "password": creds["password"]},
        timeout=30,
    )
    if resp.status_code != 200:
        raise RuntimeError(f"browser sign-in for fixture user {user!r} answered {resp.status_code}: {resp.text}")
    return resp.cookies[SESSION_COOKIE], resp.json()["csrf_token"]


def _is_uuid(value):
    try:
        uuid.UUID(str(value))
        return True
    except ValueError:
        return False


def real_path_ids(op, path_parameters):
    """Real ids for every well-formed id; a malformed one (negative test data) is kept."""
    overrides = PATH_OVERRIDES.get(op, {})
    mapped = dict(path_parameters)
    for name, value in path_parameters.items():
        fixture = overrides.get(name) or PATH_IDS.get(name)
        if fixture is not None and _is_uuid(value):
            mapped[name] = IDS[fixture]
    return mapped


def stripe_signature(body):
    """A valid `Stripe-Signature` for `body` (HMAC-SHA256 of `{t}.{body}`, keyed by the whole
    secret), so inbound deliveries get past verification to what follows it."""
    t = int(time.time())
    mac = hmac.new(SOURCE_SECRET.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def _schemes(operation):
    """The security scheme names the operation accepts, in the description's order."""
    names = []
    for requirement in operation.definition.raw.get("security", []):
        names.extend(requirement.keys())
    return names


@schemathesis.hook
def before_call(context, case, kwargs):
    op = operation_id(case.operation)
    user = ACTORS.get(op, "main")
    creds = USERS[user]
    # Step-up and password change get the real password where a string is sent, so they reach
    # what follows the password check; malformed values (negative data) are left alone.
    if isinstance(case.body, dict):
        if op == "changePassword" and isinstance(case.body.get("current_password"), str):
            case.body["current_password"] = creds["password"]
        if op == "reauthenticate" and isinstance(case.body.get("password"), str):
            case.body["password"] = creds["password"]
    if case.path_parameters:
        case.path_parameters = real_path_ids(op, case.path_parameters)
    schemes = _schemes(case.operation)
    headers = dict(case.headers or {})
    if op == "receiveWebhook" and isinstance(case.body, (bytes, str)):
        body = case.body.encode() if isinstance(case.body, str) else case.body
        headers["Stripe-Signature"] = stripe_signature(body)
    if "BearerAuth" in schemes:
        token = fresh_access_token(user, by_password=op in SIGN_IN_EACH_CALL)
        headers["Authorization"] = f"Bearer {token}"
    elif "CookieAuth" in schemes:
        cookie, csrf = fresh_browser_session(user)
        case.cookies = {**(case.cookies or {}), SESSION_COOKIE: cookie}
        headers[CSRF_HEADER] = csrf
    case.headers = headers


def _log(record):
    with open(LOG_PATH, "a", encoding="utf-8") as log:
        log.write(json.dumps(record, default=str) + "\n")


@schemathesis.hook
def after_call(context, case, response):
    op = operation_id(case.operation)
    code = None
    try:
        body = json.loads(response.content or b"null")
        if isinstance(body, dict):
            code = body.get("code")
    except ValueError:
        pass
    if op == "changePassword" and response.status_code == 200:
        USERS[ACTORS[op]]["password"] = case.body["new_password"]
    _log(
        {
            "kind": "answer",
            "operation": op,
            # The coverage phase also sends methods the path does not serve.
            "method": case.method.upper(),
            "declared_method": case.operation.method.upper(),
            "path": case.operation.path,
            "status": response.status_code,
            "code": code,
            # A reproduction for server errors (credentials filtered out).
            "curl": case.as_curl_command() if response.status_code >= 500 else None,
        }
    )
