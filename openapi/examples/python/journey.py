"""A whole user journey through the Python client generated from Rampart's OpenAPI description.

Generate the client first (see ../README.md), then run:

    RAMPART_URL=http://127.0.0.1:8080 RAMPART_MAILDIR=/path/to/Maildir \
    RAMPART_WEBHOOK_URL=https://hooks.example.com/rampart python3 journey.py

RAMPART_MAILDIR is where the verification and invitation mails arrive (a Maildir, as a local SMTP
sink writes it); RAMPART_WEBHOOK_URL receives the test delivery. Every request goes through the
generated client: no hand-written HTTP. The last line printed is a JSON summary.
"""

import json
import mailbox
import os
import re
import time
import uuid
from http import HTTPStatus

from rampart_client import AuthenticatedClient, Client
from rampart_client.api.auth import (
    issue_token,
    me,
    refresh_token,
    revoke_token,
    sign_up,
    verify_email,
)
from rampart_client.api.pii import redact_pii
from rampart_client.api.projects import (
    create_project,
    delete_project,
    get_project,
    list_projects,
    update_project,
)
from rampart_client.api.webhooks import create_webhook_endpoint, test_webhook_endpoint
from rampart_client.api.workspaces import (
    accept_invitation,
    create_api_key,
    create_workspace,
    invite,
)
from rampart_client.models import (
    AcceptInvitation,
    Credentials,
    ErrorBody,
    NewApiKeyBody,
    NewInvitation,
    NewProject,
    NewWebhookEndpointBody,
    OneTimeToken,
    ProjectPatch,
    RedactMode,
    RedactRequest,
    RefreshRequest,
    TokenResponse,
    WorkspaceName,
)

BASE_URL = os.environ["RAMPART_URL"]
MAILDIR = os.environ["RAMPART_MAILDIR"]
WEBHOOK_URL = os.environ["RAMPART_WEBHOOK_URL"]
PASSWORD = "correct horse battery staple 42"


def step(name):
    print(f"journey: {name}", flush=True)


def mailed_token(to, link_path, within=60.0):
    """The token of the `…{link_path}#token=<hex>` link in a mail to `to`."""
    pattern = re.compile(re.escape(link_path) + r"#token=([0-9a-f]+)")
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        for message in mailbox.Maildir(MAILDIR, create=False):
            if (message["To"] or "").strip("<>") != to:
                continue
            for part in message.walk():
                if part.get_content_type() == "text/plain":
                    found = pattern.search(part.get_payload(decode=True).decode(errors="replace"))
                    if found:
                        return found.group(1)
        time.sleep(0.05)  # The server's outbox sends mail asynchronously: poll the Maildir.
    raise AssertionError(f"no mail to {to} with a {link_path} link within {within} s")


def signed_in(token):
    return AuthenticatedClient(base_url=BASE_URL, token=token, raise_on_unexpected_status=True)


def sign_up_and_verify(anonymous, email):
    accepted = sign_up.sync(client=anonymous, body=Credentials(email=email, password=PASSWORD))
    assert accepted.status == "accepted", accepted
    token = mailed_token(email, "/auth/verify-email")
    verified = verify_email.sync_detailed(client=anonymous, body=OneTimeToken(token=token))
    assert verified.status_code == HTTPStatus.NO_CONTENT, verified


def token_grant(anonymous, email):
    tokens = issue_token.sync(client=anonymous, body=Credentials(email=email, password=PASSWORD))
    assert isinstance(tokens, TokenResponse), f"no second factor was set up: {tokens}"
    return tokens


def expect_error(response, status, code):
    """An error answer, read through the client's types: `{code, message, request_id}`."""
    assert response.status_code == status, (response.status_code, response.content)
    error = response.parsed
    assert isinstance(error, ErrorBody), f"{status} is not a typed ErrorBody: {response.content!r}"
    assert error.code == code and error.message and error.request_id, error
    return error


def main():
    anonymous = Client(base_url=BASE_URL, raise_on_unexpected_status=True)
    alice_email = f"alice-{uuid.uuid4().hex}@example.com"
    bob_email = f"bob-{uuid.uuid4().hex}@example.com"

    step("sign up and verify the address from the mailed link")
    sign_up_and_verify(anonymous, alice_email)

    step("token grant, then refresh")
    first = token_grant(anonymous, alice_email)
    tokens = refresh_token.sync(client=anonymous, body=RefreshRequest(refresh_token=first.refresh_token))
    assert tokens.access_token != first.access_token
    alice = signed_in(tokens.access_token)
    profile = me.sync(client=alice)
    assert profile.email == alice_email and profile.email_verified

    step("create a workspace and invite a second user")
    workspace = create_workspace.sync(client=alice, body=WorkspaceName(name="Acme"))
    assert workspace.name == "Acme"
    invitation = invite.sync(workspace.id, client=alice, body=NewInvitation(email=bob_email, role="Member"))
    assert invitation.email == bob_email

    step("the second user signs up, verifies and accepts the invitation")
    sign_up_and_verify(anonymous, bob_email)
    bob = signed_in(token_grant(anonymous, bob_email).access_token)
    invitation_token = mailed_token(bob_email, "/invitations/accept")
    member = accept_invitation.sync(
        client=bob, body=AcceptInvitation(workspace_id=workspace.id, token=invitation_token)
    )
    assert member.email == bob_email and member.role == "Member"

    step("projects: create, list, filter, update, delete")
    apollo = create_project.sync(
        workspace.id, client=alice, body=NewProject(name="Apollo", description="To the moon")
    )
    gemini = create_project.sync(workspace.id, client=alice, body=NewProject(name="Gemini"))
    names = {p.name for p in list_projects.sync(workspace.id, client=alice)}
    assert names == {"Apollo", "Gemini"}, names
    filtered = list_projects.sync(workspace.id, client=alice, q="apol")
    assert [p.id for p in filtered] == [apollo.id], filtered
    renamed = update_project.sync(workspace.id, gemini.id, client=alice, body=ProjectPatch(name="Gemini II"))
    assert renamed.name == "Gemini II" and renamed.description == ""
    deleted = delete_project.sync_detailed(workspace.id, apollo.id, client=alice)
    assert deleted.status_code == HTTPStatus.NO_CONTENT, deleted
    assert [p.name for p in list_projects.sync(workspace.id, client=bob)] == ["Gemini II"]

    step("an API key, used as its own credential")
    created = create_api_key.sync(
        workspace.id, client=alice, body=NewApiKeyBody(name="reporting", scopes=["projects.read"])
    )
    assert created.api_key.scopes == ["projects.read"]
    program = AuthenticatedClient(
        base_url=BASE_URL,
        token=created.key,
        prefix="",
        auth_header_name="X-Api-Key",
        raise_on_unexpected_status=True,
    )
    assert [p.id for p in list_projects.sync(workspace.id, client=program)] == [gemini.id]

    step("a webhook endpoint and a test delivery")
    endpoint = create_webhook_endpoint.sync(
        workspace.id,
        client=alice,
        body=NewWebhookEndpointBody(url=WEBHOOK_URL, event_types=["project.created"]),
    )
    assert endpoint.secret.startswith("whsec_") and endpoint.endpoint.enabled
    delivery = test_webhook_endpoint.sync(workspace.id, endpoint.endpoint.id, client=alice)
    assert delivery.endpoint_id == endpoint.endpoint.id

    step("PII redaction")
    text = "Mail jane@example.com, card 4111 1111 1111 1111"
    redacted = redact_pii.sync(client=alice, body=RedactRequest(text=text, mode=RedactMode.TAG))
    assert redacted.redacted == "Mail [EMAIL], card [CREDIT_CARD]", redacted
    assert [(f.kind, f.start, f.end) for f in redacted.findings] == [
        ("email", 5, 21),
        ("credit_card", 28, 47),
    ]

    step("errors are typed: 404 and 403")
    expect_error(
        get_project.sync_detailed(workspace.id, uuid.uuid4(), client=alice), HTTPStatus.NOT_FOUND, "not_found"
    )
    expect_error(
        delete_project.sync_detailed(workspace.id, gemini.id, client=bob), HTTPStatus.FORBIDDEN, "forbidden"
    )

    step("sign out: revoke the token family")
    assert revoke_token.sync_detailed(client=alice).status_code == HTTPStatus.NO_CONTENT
    expect_error(me.sync_detailed(client=alice), HTTPStatus.UNAUTHORIZED, "unauthenticated")
    assert revoke_token.sync_detailed(client=bob).status_code == HTTPStatus.NO_CONTENT

    print(json.dumps({"journey": "done", "webhook_message_id": delivery.message_id}))


if __name__ == "__main__":
    main()
