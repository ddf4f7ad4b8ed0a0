// A whole user journey through the TypeScript client generated from Rampart's OpenAPI description
// (@hey-api/openapi-ts with its fetch client).
//
// Generate the client first (see ../README.md), then run:
//
//   RAMPART_URL=http://127.0.0.1:8080 RAMPART_MAILDIR=/path/to/Maildir \
//   RAMPART_WEBHOOK_URL=https://hooks.example.com/rampart npm run journey
//
// RAMPART_MAILDIR is where the verification and invitation mails arrive (a Maildir, as a local
// SMTP sink writes it); RAMPART_WEBHOOK_URL receives the test delivery. Every request goes through
// the generated client: no hand-written HTTP. The last line printed is a JSON summary.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as pause } from "node:timers/promises";

import { type Client, createClient } from "./client/client/index.js";
import {
  acceptInvitation,
  createApiKey,
  createProject,
  createWebhookEndpoint,
  createWorkspace,
  deleteProject,
  type ErrorBody,
  getProject,
  invite,
  issueToken,
  listProjects,
  me,
  redactPii,
  refreshToken,
  revokeToken,
  signUp,
  testWebhookEndpoint,
  type TokenResponse,
  updateProject,
  verifyEmail,
} from "./client/index.js";

const env = (name: string): string => {
  const value = process.env[name];
  if (!value) throw new Error(`set ${name}`);
  return value;
};
const BASE_URL = env("RAMPART_URL");
const MAILDIR = env("RAMPART_MAILDIR");
const WEBHOOK_URL = env("RAMPART_WEBHOOK_URL");
const PASSWORD = "correct horse battery staple 42";

const step = (name: string) => console.log(`journey: ${name}`);

/** The body of a mail as text, whichever transfer encoding the sender chose. */
function mailText(raw: string): { to: string; body: string } {
  const [head = "", ...rest] = raw.replace(/\r\n/g, "\n").split("\n\n");
  const header = (name: string) =>
    head.replace(/\n[ \t]+/g, " ").match(new RegExp(`^${name}:\\s*(.*)$`, "im"))?.[1]?.trim() ?? "";
  let body = rest.join("\n\n");
  const encoding = header("Content-Transfer-Encoding").toLowerCase();
  if (encoding === "quoted-printable") {
    const bytes = body
      .replace(/=\n/g, "")
      .replace(/=([0-9A-F]{2})/gi, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
    body = Buffer.from(bytes, "latin1").toString("utf8");
  } else if (encoding === "base64") {
    body = Buffer.from(body, "base64").toString("utf8");
  }
  return { to: header("To").replace(/^<|>$/g, ""), body };
}

/** The token of the `…{linkPath}#token=<hex>` link in a mail to `to`. */
async function mailedToken(to: string, linkPath: string, withinMs = 60_000): Promise<string> {
  const deadline = Date.now() + withinMs;
  while (Date.now() < deadline) {
    for (const folder of ["new", "cur"]) {
      for (const file of readdirSync(join(MAILDIR, folder))) {
        const mail = mailText(readFileSync(join(MAILDIR, folder, file), "utf8"));
        const token = mail.body.match(new RegExp(`${linkPath}#token=([0-9a-f]+)`))?.[1];
        if (mail.to === to && token) return token;
      }
    }
    await pause(50); // The server's outbox sends mail asynchronously: poll the Maildir.
  }
  throw new Error(`no mail to ${to} with a ${linkPath} link within ${withinMs} ms`);
}

/** A client that presents an access token wherever an operation takes a bearer token. */
const signedIn = (accessToken: string): Client =>
  createClient({ baseUrl: BASE_URL, auth: (scheme) => (scheme.scheme === "bearer" ? accessToken : undefined) });

async function signUpAndVerify(anonymous: Client, email: string): Promise<void> {
  const { data } = await signUp({ client: anonymous, body: { email, password: PASSWORD }, throwOnError: true });
  assert.equal(data.status, "accepted");
  const token = await mailedToken(email, "/auth/verify-email");
  await verifyEmail({ client: anonymous, body: { token }, throwOnError: true });
}

async function tokenGrant(anonymous: Client, email: string): Promise<TokenResponse> {
  const { data } = await issueToken({ client: anonymous, body: { email, password: PASSWORD }, throwOnError: true });
  assert.ok("access_token" in data, "no second factor was set up");
  return data;
}

/** An error answer, read through the client's types: `{code, message, request_id}`. */
function expectError(result: { error?: ErrorBody; response: Response }, status: number, code: string): void {
  assert.equal(result.response.status, status);
  assert.ok(result.error, `${status} without an error body`);
  assert.equal(result.error.code, code);
  assert.ok(result.error.message && result.error.request_id, JSON.stringify(result.error));
}

async function main(): Promise<void> {
  const anonymous = createClient({ baseUrl: BASE_URL });
  const aliceEmail = `alice-${randomUUID()}@example.com`;
  const bobEmail = `bob-${randomUUID()}@example.com`;

  step("sign up and verify the address from the mailed link");
  await signUpAndVerify(anonymous, aliceEmail);

  step("token grant, then refresh");
  const first = await tokenGrant(anonymous, aliceEmail);
  const { data: tokens } = await refreshToken({
    client: anonymous,
    body: { refresh_token: first.refresh_token },
    throwOnError: true,
  });
  assert.notEqual(tokens.access_token, first.access_token);
  const alice = signedIn(tokens.access_token);
  const { data: profile } = await me({ client: alice, throwOnError: true });
  assert.equal(profile.email, aliceEmail);
  assert.ok(profile.email_verified);

  step("create a workspace and invite a second user");
  const { data: workspace } = await createWorkspace({ client: alice, body: { name: "Acme" }, throwOnError: true });
  assert.equal(workspace.name, "Acme");
  const inWorkspace = { workspace_id: workspace.id };
  const { data: invitation } = await invite({
    client: alice,
    path: inWorkspace,
    body: { email: bobEmail, role: "Member" },
    throwOnError: true,
  });
  assert.equal(invitation.email, bobEmail);

  step("the second user signs up, verifies and accepts the invitation");
  await signUpAndVerify(anonymous, bobEmail);
  const bob = signedIn((await tokenGrant(anonymous, bobEmail)).access_token);
  const invitationToken = await mailedToken(bobEmail, "/invitations/accept");
  const { data: member } = await acceptInvitation({
    client: bob,
    body: { workspace_id: workspace.id, token: invitationToken },
    throwOnError: true,
  });
  assert.equal(member.email, bobEmail);
  assert.equal(member.role, "Member");

  step("projects: create, list, filter, update, delete");
  const { data: apollo } = await createProject({
    client: alice,
    path: inWorkspace,
    body: { name: "Apollo", description: "To the moon" },
    throwOnError: true,
  });
  const { data: gemini } = await createProject({
    client: alice,
    path: inWorkspace,
    body: { name: "Gemini" },
    throwOnError: true,
  });
  const { data: all } = await listProjects({ client: alice, path: inWorkspace, throwOnError: true });
  assert.deepEqual(all.map((p) => p.name).sort(), ["Apollo", "Gemini"]);
  const { data: filtered } = await listProjects({
    client: alice,
    path: inWorkspace,
    query: { q: "apol" },
    throwOnError: true,
  });
  assert.deepEqual(filtered.map((p) => p.id), [apollo.id]);
  const { data: renamed } = await updateProject({
    client: alice,
    path: { ...inWorkspace, project_id: gemini.id },
    body: { name: "Gemini II" },
    throwOnError: true,
  });
  assert.equal(renamed.name, "Gemini II");
  assert.equal(renamed.description, "");
  await deleteProject({ client: alice, path: { ...inWorkspace, project_id: apollo.id }, throwOnError: true });
  const { data: left } = await listProjects({ client: bob, path: inWorkspace, throwOnError: true });
  assert.deepEqual(left.map((p) => p.name), ["Gemini II"]);

  step("an API key, used as its own credential");
  const { data: created } = await createApiKey({
    client: alice,
    path: inWorkspace,
    body: { name: "reporting", scopes: ["projects.read"] },
    throwOnError: true,
  });
  assert.deepEqual(created.api_key.scopes, ["projects.read"]);
  const program = createClient({
    baseUrl: BASE_URL,
    auth: (scheme) => (scheme.name === "X-Api-Key" ? created.key : undefined),
  });
  const { data: seen } = await listProjects({ client: program, path: inWorkspace, throwOnError: true });
  assert.deepEqual(seen.map((p) => p.id), [gemini.id]);

  step("a webhook endpoint and a test delivery");
  const { data: endpoint } = await createWebhookEndpoint({
    client: alice,
    path: inWorkspace,
    body: { url: WEBHOOK_URL, event_types: ["project.created"] },
    throwOnError: true,
  });
  assert.ok(endpoint.secret.startsWith("whsec_"));
  assert.ok(endpoint.endpoint.enabled);
  const { data: delivery } = await testWebhookEndpoint({
    client: alice,
    path: { ...inWorkspace, endpoint_id: endpoint.endpoint.id },
    throwOnError: true,
  });
  assert.equal(delivery.endpoint_id, endpoint.endpoint.id);

  step("PII redaction");
  const { data: redacted } = await redactPii({
    client: alice,
    body: { text: "Mail jane@example.com, card 4111 1111 1111 1111", mode: "tag" },
    throwOnError: true,
  });
  assert.equal(redacted.redacted, "Mail [EMAIL], card [CREDIT_CARD]");
  assert.deepEqual(
    redacted.findings.map((f) => [f.kind, f.start, f.end]),
    [
      ["email", 5, 21],
      ["credit_card", 28, 47],
    ],
  );

  step("errors are typed: 404 and 403");
  expectError(await getProject({ client: alice, path: { ...inWorkspace, project_id: randomUUID() } }), 404, "not_found");
  expectError(await deleteProject({ client: bob, path: { ...inWorkspace, project_id: gemini.id } }), 403, "forbidden");

  step("sign out: revoke the token family");
  await revokeToken({ client: alice, throwOnError: true });
  expectError(await me({ client: alice }), 401, "unauthenticated");
  await revokeToken({ client: bob, throwOnError: true });

  console.log(JSON.stringify({ journey: "done", webhook_message_id: delivery.message_id }));
}

await main();
